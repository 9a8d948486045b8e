//! The workload shared by the leak-check cost benchmarks (`leak_check`, `leak_check_dhat`):
//! recurse to a fixed depth, then allocate and free a 64-byte block in a loop, so that every
//! recorded allocation carries a stack about [`DEPTH`] frames deep (plus the runner's own).
//! Each binary installs a different global allocator around the same code.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Frames of recursion above the allocating loop.
pub const DEPTH: usize = 30;

/// Recurses `depth` frames (no tail calls: work after the call keeps each frame), then runs
/// `iters` alloc+free pairs of 64 bytes and returns the time they took.
#[inline(never)]
pub fn at_depth(depth: usize, iters: u64) -> Duration {
    if depth == 0 {
        let start = Instant::now();
        for _ in 0..iters {
            let v: Vec<u8> = Vec::with_capacity(black_box(64));
            black_box(&v);
            drop(v);
        }
        return start.elapsed();
    }
    let d = at_depth(depth - 1, iters);
    black_box(depth);
    d
}

/// Median nanoseconds per alloc+free pair over `runs` runs of `iters` pairs each, measured on
/// each of `threads` threads at once (all threads' samples pooled). `setup` runs on every
/// measuring thread before its runs and its result is dropped after them (a leak check's
/// scope, a profiler's thread registration).
pub fn measure<G: 'static>(threads: usize, runs: usize, iters: u64, setup: fn() -> G) -> f64 {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let guard = setup();
                // Warm-up: first-touch costs (stack interning, caches) are not the steady state.
                at_depth(DEPTH, iters / 4 + 1);
                let mut per_pair = Vec::with_capacity(runs);
                barrier.wait();
                for _ in 0..runs {
                    let t = at_depth(DEPTH, iters);
                    per_pair.push(t.as_nanos() as f64 / iters as f64);
                }
                drop(guard);
                per_pair
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by(f64::total_cmp);
    all[all.len() / 2]
}

/// Prints one result line in the format every leak-check bench uses.
pub fn report(tool: &str, mode: &str, threads: usize, ns: f64) {
    println!("{tool:<12} {mode:<34} threads={threads} depth={DEPTH}: {ns:>9.1} ns per alloc+free");
}
