//! Cost per allocation of exact recording inside a `LeakCheck`, at stack depth ~30, on one and
//! two threads (each thread in its own check), against the same loop outside any check.
//! The dhat figure for the same workload comes from `benches/leak_check_dhat.rs`.
//!
//! Run:
//! ```text
//! cargo bench --bench leak_check                                   # default unwinder
//! RUSTFLAGS="-C force-frame-pointers=yes" cargo bench --bench leak_check --features frame-pointers
//! ```

#[path = "support/leak_workload.rs"]
mod workload;

use heapsampler::{LeakCheck, Sampler};
use std::alloc::System;

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

fn in_check() -> LeakCheck {
    LeakCheck::start()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (runs, iters) = if quick { (2, 200) } else { (15, 20_000) };
    let unwinder = if cfg!(feature = "frame-pointers") {
        "frame pointers"
    } else {
        "default unwinder"
    };
    let outside = workload::measure(1, runs, iters * 10, || ());
    workload::report(
        "heapsampler",
        "outside any check (interval 512k)",
        1,
        outside,
    );
    for threads in [1, 2] {
        let ns = workload::measure(threads, runs, iters, in_check);
        workload::report(
            "heapsampler",
            &format!("in LeakCheck, {unwinder}"),
            threads,
            ns,
        );
    }
    let check = LeakCheck::start();
    workload::at_depth(workload::DEPTH, 100);
    check.assert_no_leaks();
}
