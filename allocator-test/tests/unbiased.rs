//! The per-site estimates are unbiased, with the spread docs/architecture.md ("Sampling") promises.
//!
//! For each interval T, 100 seeded runs allocate three interleaved sites of known size —
//! tiny objects, objects around T, objects of several T — each about `SITE_T` × T bytes. Over
//! the runs, the mean relative error of each site's live and allocated estimate must be within
//! ±2 %, and its standard deviation within 1.2·√(T/B). `SITE_T` = 256 puts the ±2 % at more than
//! 3 standard errors of the mean (√(1/256)/√100 = 0.63 %), so a correct sampler passes and a
//! bias of a few percent fails. After each run everything is freed and every site's live
//! estimate must return to exactly zero.

use allocator_test::config_lock;
use heapsampler::Profile;
use std::alloc::{Layout, alloc, dealloc};

const RUNS: u64 = 100;
const SITE_T: u64 = 256;
const NAMES: [&str; 3] = [
    "unbiased_site_tiny",
    "unbiased_site_near_t",
    "unbiased_site_multi_t",
];

#[inline(never)]
fn unbiased_site_tiny(size: usize) -> *mut u8 {
    // A distinct value keeps the compiler from merging the three identical site functions.
    std::hint::black_box(1);
    // SAFETY: non-zero size, valid alignment.
    let ptr = unsafe { alloc(Layout::from_size_align_unchecked(size, 8)) };
    // Not a tail call: the site's own frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

#[inline(never)]
fn unbiased_site_near_t(size: usize) -> *mut u8 {
    // A distinct value keeps the compiler from merging the three identical site functions.
    std::hint::black_box(2);
    // SAFETY: non-zero size, valid alignment.
    let ptr = unsafe { alloc(Layout::from_size_align_unchecked(size, 8)) };
    // Not a tail call: the site's own frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

#[inline(never)]
fn unbiased_site_multi_t(size: usize) -> *mut u8 {
    // A distinct value keeps the compiler from merging the three identical site functions.
    std::hint::black_box(3);
    // SAFETY: non-zero size, valid alignment.
    let ptr = unsafe { alloc(Layout::from_size_align_unchecked(size, 8)) };
    // Not a tail call: the site's own frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

/// Allocates the three sites interleaved: one near-T or multi-T object, then tiny ones, until
/// each site reaches its byte target.
fn allocate(
    t: u64,
    tiny: usize,
    seed: u64,
    blocks: &mut Vec<(*mut u8, usize)>,
) -> ([f64; 3], [f64; 3]) {
    let target = (SITE_T * t) as f64;
    let mut truth = [0f64; 3];
    let mut counts = [0f64; 3];
    let mut x = seed | 1;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while truth.iter().any(|&b| b < target) {
        for site in 0..3 {
            if truth[site] >= target {
                continue;
            }
            let (size, n) = match site {
                0 => (tiny, (t as usize / tiny / 4).max(1)),
                1 => ((t / 2 + rand() % t) as usize, 1),
                _ => ((3 * t + rand() % (2 * t)) as usize, 1),
            };
            for _ in 0..n {
                let ptr = match site {
                    0 => unbiased_site_tiny(size),
                    1 => unbiased_site_near_t(size),
                    _ => unbiased_site_multi_t(size),
                };
                assert!(!ptr.is_null());
                blocks.push((ptr, size));
                truth[site] += size as f64;
                counts[site] += 1.0;
            }
        }
    }
    (truth, counts)
}

fn per_site(profile: &Profile, f: fn(&heapsampler::Site) -> f64) -> [f64; 3] {
    NAMES.map(|n| profile.sites_in(n).iter().map(|s| f(s)).sum())
}

fn symbolized() -> Profile {
    let mut p = heapsampler::snapshot();
    p.symbolize();
    p
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn check_interval(t: u64, tiny: usize) {
    let _lock = config_lock();
    heapsampler::set_sample_interval(t);
    let mut live_err: [Vec<f64>; 3] = Default::default();
    let mut alloc_err: [Vec<f64>; 3] = Default::default();
    let mut count_err: [Vec<f64>; 3] = Default::default();
    let capacity = (SITE_T * t) as usize / tiny + 4 * SITE_T as usize;
    let mut blocks: Vec<(*mut u8, usize)> = Vec::with_capacity(capacity);
    let mut truth_bytes = [0f64; 3];
    let mut previous = symbolized();
    for run in 0..RUNS {
        heapsampler::set_seed(0xb1a5 ^ (t << 8) ^ run);
        blocks.clear();
        let (truth, counts) = allocate(t, tiny, run + 1, &mut blocks);
        let profile = symbolized();
        let live = per_site(&profile, |s| s.live_bytes);
        let live_objects = per_site(&profile, |s| s.live_objects);
        let allocated = per_site(&profile, |s| s.alloc_bytes);
        let allocated_before = per_site(&previous, |s| s.alloc_bytes);
        for s in 0..3 {
            live_err[s].push(live[s] / truth[s] - 1.0);
            alloc_err[s].push((allocated[s] - allocated_before[s]) / truth[s] - 1.0);
            count_err[s].push(live_objects[s] / counts[s] - 1.0);
            truth_bytes[s] += truth[s] / RUNS as f64;
        }
        for &(ptr, size) in &blocks {
            // SAFETY: each block is live and was allocated with this layout.
            unsafe { dealloc(ptr, Layout::from_size_align_unchecked(size, 8)) };
        }
        previous = symbolized();
        let after_free = per_site(&previous, |s| s.live_bytes);
        assert_eq!(
            after_free, [0.0; 3],
            "T={t} run {run}: live estimates must return to zero"
        );
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    for s in 0..3 {
        let bound = 1.2 * (t as f64 / truth_bytes[s]).sqrt();
        for (what, errs) in [
            ("live bytes", &live_err[s]),
            ("allocated bytes", &alloc_err[s]),
        ] {
            let (mean, sd) = mean_sd(errs);
            eprintln!(
                "T={t} {} {what}: mean error {:+.3}%, spread {:.3}% (bound {:.3}%)",
                NAMES[s],
                mean * 100.0,
                sd * 100.0,
                bound * 100.0
            );
            assert!(
                mean.abs() < 0.02,
                "T={t} {}: {what} mean error {:+.3}%",
                NAMES[s],
                mean * 100.0
            );
            assert!(
                sd <= bound,
                "T={t} {}: {what} spread {:.3}% > {:.3}%",
                NAMES[s],
                sd * 100.0,
                bound * 100.0
            );
        }
        // Object counts are unbiased too; their spread depends on the size mix, so only the mean.
        let (mean, _) = mean_sd(&count_err[s]);
        assert!(
            mean.abs() < 0.03,
            "T={t} {}: object count mean error {:+.3}%",
            NAMES[s],
            mean * 100.0
        );
    }
}

#[test]
fn unbiased_at_4k() {
    check_interval(4 << 10, 16);
}

#[test]
fn unbiased_at_64k() {
    check_interval(64 << 10, 32);
}

#[test]
fn unbiased_at_512k() {
    check_interval(512 << 10, 64);
}
