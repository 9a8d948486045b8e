//! What every allocation pays: an alloc+free pair through `System` and through
//! `Sampler<System>`, side by side in one binary, and the cost of one sample (the cold path).
//!
//! Run: `cargo bench --bench alloc`. The sampler is called directly, not installed as the
//! global allocator, so criterion's own allocations do not disturb it.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use heapsampler::Sampler;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

static SAMPLER: Sampler<System> = Sampler::new(System);

fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: the layout has a non-zero size; the block is freed with the same layout.
    unsafe {
        let p = a.alloc(layout);
        black_box(p);
        a.dealloc(p, layout);
    }
}

fn fast_path(c: &mut Criterion) {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let mut g = c.benchmark_group("alloc_free_pair");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in [16usize, 256, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // Interleaved per size, so both see the same machine state.
        g.bench_with_input(BenchmarkId::new("system", size), &layout, |b, &l| {
            b.iter(|| pair(&System, l))
        });
        g.bench_with_input(BenchmarkId::new("sampler_512k", size), &layout, |b, &l| {
            b.iter(|| pair(&SAMPLER, l))
        });
        // Sampling off: the bare fast path (countdowns, batched totals, the free-path test),
        // without the amortised cost of samples.
        g.bench_with_input(BenchmarkId::new("sampler_off", size), &layout, |b, &l| {
            heapsampler::set_sample_interval(0);
            b.iter(|| pair(&SAMPLER, l));
            heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
        });
    }
    g.finish();
}

/// The same pair with a `Reporter` running (asleep between reports, as in production), to show
/// the reporter costs allocation nothing between reports.
fn with_reporter(c: &mut Criterion) {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let dir = std::env::temp_dir().join(format!("heapsampler-bench-{}", std::process::id()));
    let layout = Layout::from_size_align(256, 8).unwrap();
    let mut g = c.benchmark_group("alloc_free_pair_256_reporter");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("no_reporter", |b| b.iter(|| pair(&SAMPLER, layout)));
    let reporter = heapsampler::Reporter::new(&dir)
        .every(Duration::from_secs(3600))
        .start()
        .expect("start the reporter");
    g.bench_function("reporter_running", |b| b.iter(|| pair(&SAMPLER, layout)));
    g.finish();
    drop(reporter);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Recurses to `depth` frames, then runs `f` there, so stacks are ~`depth` deep.
#[inline(never)]
fn at_depth<R>(depth: usize, f: &mut dyn FnMut() -> R) -> R {
    if depth == 0 {
        return f();
    }
    let r = at_depth(depth - 1, f);
    black_box(&r);
    r
}

fn cold_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_sample_depth_30");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let layout = Layout::from_size_align(64, 8).unwrap();
    // Interval 2: every 64-byte allocation is sampled (p ≈ 1) through the Poisson path, so it
    // is allocated page-aligned and looked up on free. Interval 1: exact mode, no alignment.
    for (name, interval) in [("sampled", 2u64), ("exact", 1)] {
        g.bench_function(name, |b| {
            heapsampler::set_sample_interval(interval);
            at_depth(30, &mut || b.iter(|| pair(&SAMPLER, layout)));
            heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
        });
    }
    g.finish();
}

criterion_group!(benches, fast_path, with_reporter, cold_path);
criterion_main!(benches);
