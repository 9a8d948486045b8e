//! What every allocation pays: an alloc+free pair through `System` and through
//! `Sampler<System>`, side by side in one binary, and the cost of one sample (the cold path).
//!
//! Run: `cargo bench --bench alloc` (the `paired/…` lines are printed, not criterion ids). The sampler is called directly, not installed as the
//! global allocator, so criterion's own allocations do not disturb it.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use heapsampler::Sampler;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

static SAMPLER: Sampler<System> = Sampler::new(System);

/// The allocation entry point as a program reaches it: a `#[global_allocator]` is called through
/// the `__rust_alloc` shim, a function of its own with the allocator's `alloc` inlined into it,
/// never inlined into the caller. Both allocators are measured through the same shape.
#[inline(never)]
fn alloc_shim<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: forwarded from `pair`: the layout has a non-zero size.
    unsafe { a.alloc(layout) }
}

/// `__rust_dealloc`'s shape, as [`alloc_shim`].
#[inline(never)]
fn dealloc_shim<A: GlobalAlloc>(a: &A, p: *mut u8, layout: Layout) {
    // SAFETY: forwarded from `pair`: `p` came from `alloc_shim` with this layout.
    unsafe { a.dealloc(p, layout) }
}

fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    let p = alloc_shim(a, layout);
    black_box(p);
    dealloc_shim(a, p, layout);
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

/// The same comparison with both allocators seeing the same inner-allocator state.
///
/// At 4 KiB glibc's cost depends on where its chunk sits (next to the top of the heap, or among
/// free neighbours it must unlink and re-split), and that moves with everything the process did
/// before: `system/4096` above measured anywhere from 14 to 26 ns in one afternoon, and the
/// sampler was "faster" than `System` in some runs. Here every timed chunk of pairs through one
/// allocator alternates with an untimed chunk through the other, so both are timed on the same
/// mixture of heap states, and the difference is the sampler's own cost.
fn fast_path_same_heap(c: &mut Criterion) {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let mut g = c.benchmark_group("alloc_free_pair_same_heap");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    const CHUNK: u64 = 256;
    fn alternate<T: GlobalAlloc, U: GlobalAlloc>(
        timed: &T,
        other: &U,
        l: Layout,
        iters: u64,
    ) -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = CHUNK.min(iters - done);
            let start = Instant::now();
            for _ in 0..n {
                pair(timed, l);
            }
            total += start.elapsed();
            for _ in 0..n {
                pair(other, l);
            }
            done += n;
        }
        total
    }
    for size in [16usize, 256, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.bench_with_input(BenchmarkId::new("system", size), &layout, |b, &l| {
            b.iter_custom(|iters| alternate(&System, &SAMPLER, l, iters))
        });
        g.bench_with_input(BenchmarkId::new("sampler_512k", size), &layout, |b, &l| {
            b.iter_custom(|iters| alternate(&SAMPLER, &System, l, iters))
        });
    }
    g.finish();
}

/// The added cost measured pairwise, on exactly the same heap states: rounds of one timed chunk
/// through each allocator, back to back, the order swapped every round. Printed, not a
/// criterion benchmark: criterion times each benchmark id in its own stretch of the run, and at
/// 4 KiB glibc's cost depends on the heap's history (exact reuse of a free chunk, or
/// split-and-coalesce, ~13 ns a pair dearer). Two ids timed a second apart can each land in a
/// different state (`same_heap/system/4096` at 16 ns and `same_heap/sampler_512k/4096` at 30 ns
/// in one run, while the `System` chunks interleaved into the latter took 28 ns). Here every
/// sampler chunk has a `System` chunk next to it, so the difference is the sampler's own.
fn paired(_: &mut Criterion) {
    /// Pairs timed per allocator in each configuration (2 M, ~40–60 ms at 4 KiB).
    const PAIRS: usize = 2 << 20;
    // Not inlined: the sampler's chunk is then one function reached from one call site (below),
    // so its samples see the same stack round after round, as in a program's allocating loop.
    // (Inlined at two call sites, its stack changed every round and the first sample of each
    // round unwound every frame afresh, ~0.8 µs in session 6's first measurement.)
    #[inline(never)]
    fn chunk<A: GlobalAlloc>(a: &A, l: Layout, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            pair(a, l);
        }
        start.elapsed()
    }
    // Two chunk lengths: switching allocators itself costs the sampler's side ~150–500 ns a
    // switch (measured with sampling off as well: the first pairs after a stretch of `System`
    // run slower), which weighs 0.6–2 ns a pair in chunks of 256 and 16 times less in chunks
    // of 4096 (~80 µs, still short next to the heap-state drift this design guards against).
    // No program switches allocators; both are printed.
    for chunk_len in [256usize, 4096] {
        for (size, interval) in [
            (16usize, heapsampler::DEFAULT_SAMPLE_INTERVAL),
            (256, heapsampler::DEFAULT_SAMPLE_INTERVAL),
            (4096, heapsampler::DEFAULT_SAMPLE_INTERVAL),
            // Sampling off: the unsampled path and the batched totals, without samples.
            (4096, 0),
        ] {
            heapsampler::set_sample_interval(interval);
            let name = if interval == 0 {
                "sampler_off"
            } else {
                "sampler_512k"
            };
            let l = Layout::from_size_align(size, 8).unwrap();
            let rounds = PAIRS / chunk_len;
            // Warm both paths (the sampler's first samples learn the stack's unwind rules).
            for _ in 0..rounds / 8 {
                chunk(&System, l, chunk_len);
                chunk(&SAMPLER, l, chunk_len);
            }
            let (mut system, mut sampler) = (Duration::ZERO, Duration::ZERO);
            let mut diffs = Vec::with_capacity(rounds);
            for round in 0..rounds {
                let system_first = round % 2 == 0;
                let mut y = Duration::ZERO;
                if system_first {
                    y = chunk(&System, l, chunk_len);
                }
                let s = chunk(&SAMPLER, l, chunk_len);
                if !system_first {
                    y = chunk(&System, l, chunk_len);
                }
                system += y;
                sampler += s;
                diffs.push(s.as_nanos() as f64 - y.as_nanos() as f64);
            }
            diffs.sort_by(f64::total_cmp);
            let pairs = (rounds * chunk_len) as f64;
            let (y, s) = (
                system.as_nanos() as f64 / pairs,
                sampler.as_nanos() as f64 / pairs,
            );
            println!(
                "paired/{size} (chunks of {chunk_len}): system {y:.2} ns, {name} {s:.2} ns, \
                 added {:.2} ns a pair (median round {:.2})",
                s - y,
                diffs[rounds / 2] / chunk_len as f64
            );
        }
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
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

/// Three call sites of [`pair`] with different return addresses.
#[inline(never)]
fn site_a(layout: Layout) {
    pair(&SAMPLER, layout);
    // Distinct bodies: identical functions would be merged into one, with one address.
    black_box(1);
}

/// See [`site_a`].
#[inline(never)]
fn site_b(layout: Layout) {
    pair(&SAMPLER, layout);
    black_box(2);
}

/// See [`site_a`].
#[inline(never)]
fn site_c(layout: Layout) {
    pair(&SAMPLER, layout);
    black_box(3);
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
    // Each sample's stack differs from the last two (three call sites, taken in turn): the
    // walk can replay neither of the walks it keeps, so it unwinds the frames that differ and
    // joins the last walk further out, and the stack cache misses — the cost of a sample in a
    // program whose samples come from ever-changing stacks that share their outer frames.
    // Two call sites in turn (`x2`) replay the walk before the last one. Per iteration: one
    // sampled pair per site.
    let sites: [fn(Layout); 3] = [site_a, site_b, site_c];
    for (name, n) in [("sampled_new_stack_x3", 3), ("sampled_two_stacks_x2", 2)] {
        g.bench_function(name, |b| {
            heapsampler::set_sample_interval(2);
            at_depth(30, &mut || {
                b.iter(|| {
                    for site in &sites[..n] {
                        site(layout);
                    }
                })
            });
            heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    fast_path,
    fast_path_same_heap,
    paired,
    with_reporter,
    cold_path
);
criterion_main!(benches);
