//! The smallest useful program: install the sampler, allocate from two call sites, read the
//! profile. Run: `cargo run --release --example snapshot`.

use heapsampler::Sampler;
use std::alloc::System;

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

/// Keeps ~64 MiB live in 4 KiB buffers.
#[inline(never)]
fn fill_buffers() -> Vec<Vec<u8>> {
    (0..16 * 1024).map(|i| vec![i as u8; 4096]).collect()
}

/// Allocates ~256 MiB in short-lived strings; nothing stays live.
#[inline(never)]
fn churn_strings() -> usize {
    (0..1_000_000)
        .map(|i| format!("request {i:>250}").len())
        .sum()
}

fn main() {
    heapsampler::set_seed(1);
    let buffers = fill_buffers();
    let total = churn_strings();

    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    let t = &profile.totals;
    println!(
        "exact totals: {} MiB live, {} MiB allocated in {} allocations, peak {} MiB",
        t.live_bytes >> 20,
        t.alloc_bytes >> 20,
        t.alloc_objects,
        t.peak_live_bytes >> 20
    );
    println!(
        "profiler: {} samples at a mean interval of {} KiB, {} stacks, {} KiB of tables",
        profile.profiler.samples,
        profile.sample_interval >> 10,
        profile.profiler.stacks,
        profile.profiler.table_bytes >> 10
    );
    println!("\ntop sites by estimated live bytes:");
    for site in profile.top_sites(3) {
        let func = site
            .frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .find(|f| f.starts_with("snapshot::"))
            .unwrap_or("?");
        println!(
            "  {:>8.1} MiB live, {:>8.1} MiB allocated  {func}",
            site.live_bytes / (1 << 20) as f64,
            site.alloc_bytes / (1 << 20) as f64
        );
    }
    std::hint::black_box((buffers.len(), total));
}
