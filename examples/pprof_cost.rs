//! What rendering `/debug/pprof/heap` costs at 10,000 live call sites, without the socket:
//! the snapshot, symbolization (cache warm after the first render), building the profile,
//! protobuf encoding and gzip, as `heapsampler::http::pprof_heap_bytes` does them.
//!
//! ```text
//! cargo build --release --features http --example pprof_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*pprof_cost*render_warm*' \
//!     target/release/examples/pprof_cost 5
//! ```
//!
//! The sites are those of `benches/http_pprof.rs`: a recursion taking one of two call sites
//! per level, 14 levels deep, recorded exactly (interval 1). The first render warms the
//! symbol cache; the following N (argument, default 20) are timed in thread CPU time.

use heapsampler::Sampler;
use std::alloc::System;
use std::hint::black_box;

#[path = "../benches/support/site_tree.rs"]
mod site_tree;
#[path = "../benches/support/thread_cpu.rs"]
mod thread_cpu;
use site_tree::{LEVELS, SITES, descend};
use thread_cpu::thread_cpu_ms;

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

/// The renders measured (a function of its own, for callgrind's `--toggle-collect`).
#[inline(never)]
fn render_warm(n: usize) -> usize {
    (0..n)
        .map(|_| black_box(heapsampler::http::pprof_heap_bytes()).len())
        .sum()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut out = Vec::with_capacity(SITES as usize);
    heapsampler::set_sample_interval(1);
    for i in 0..SITES {
        descend(i, LEVELS, &mut out);
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let cpu = thread_cpu_ms();
    let first = heapsampler::http::pprof_heap_bytes();
    let first_ms = thread_cpu_ms() - cpu;
    let cpu = thread_cpu_ms();
    let bytes = render_warm(n);
    let warm_ms = (thread_cpu_ms() - cpu) / n.max(1) as f64;
    if let Some(path) = std::env::args().nth(2) {
        std::fs::write(path, &first).expect("write the profile");
    }
    println!(
        "sites={SITES} first_render_cpu_ms={first_ms:.1} warm_render_cpu_ms={warm_ms:.1} \
         gzipped_kib={} renders={n}",
        bytes / n.max(1) / 1024
    );
    drop(out);
}
