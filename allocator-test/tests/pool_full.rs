//! Sampled blocks of up to 64 KiB take pages from the profiler's pool, whose region holds at
//! most 16,384 pages; their records sit beside those pages (`src/record/pooled.rs`). When the region
//! is used up, sampled blocks come from the inner allocator instead, recorded in the shared
//! live table: nothing fails, nothing is dropped, and every block is found again when freed.

use allocator_test as _;
use std::alloc::{Layout, alloc, dealloc};

/// More single-page samples than the region has pages.
const BLOCKS: usize = 20_000;
const SIZE: usize = 64;

#[inline(never)]
fn pool_filler() -> *mut u8 {
    // SAFETY: non-zero size, valid alignment.
    let p = unsafe { alloc(Layout::from_size_align(SIZE, 8).unwrap()) };
    std::hint::black_box(p)
}

fn live_at_site(profile: &mut heapsampler::Profile) -> (u64, f64) {
    profile.symbolize();
    let sites = profile.sites_in("pool_filler");
    (
        sites.iter().map(|s| s.live_samples).sum(),
        sites.iter().map(|s| s.live_objects).sum(),
    )
}

/// One test per binary: it fills the process's pool.
#[test]
fn a_full_pool_falls_back_to_the_inner_allocator_and_loses_nothing() {
    // Interval 2: every 64-byte allocation is sampled (p ≈ 1) through the Poisson path, so
    // each takes a page from the pool while there is one.
    heapsampler::set_sample_interval(2);
    // The padding bound (64 MiB by default) would record the samples past the pool unaligned
    // instead (tests/small_intervals.rs in the stress crate): lifted here, so that the pool's
    // own fallback is what is tested.
    heapsampler::set_limits(heapsampler::Limits {
        max_padding_bytes: usize::MAX,
        ..Default::default()
    });
    // Twice: the second round reuses blocks the first freed, among them blocks whose memory
    // went back to the system (a class keeps at most 1 MiB resident when idle).
    for round in 0..2 {
        let dropped_before = heapsampler::snapshot().profiler.samples_dropped;
        let blocks: Vec<usize> = (0..BLOCKS).map(|_| pool_filler() as usize).collect();
        let mut during = heapsampler::snapshot();
        assert!(
            blocks.iter().all(|&p| p % 4096 == 0),
            "round {round}: sampled, so page-aligned"
        );
        let (live_samples, live_objects) = live_at_site(&mut during);
        assert_eq!(
            live_samples, BLOCKS as u64,
            "round {round}: every block recorded, pooled or not"
        );
        // p = 1 - e^(-32) at interval 2: the estimate is the count.
        assert!((live_objects - BLOCKS as f64).abs() < 1.0, "{live_objects}");
        assert_eq!(
            during.profiler.samples_dropped, dropped_before,
            "none dropped"
        );
        for &p in &blocks {
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(p as *mut u8, Layout::from_size_align(SIZE, 8).unwrap()) };
        }
        let (live_samples, live_objects) = live_at_site(&mut heapsampler::snapshot());
        assert_eq!(
            (live_samples, live_objects),
            (0, 0.0),
            "round {round}: every block found when freed"
        );
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    heapsampler::set_limits(heapsampler::Limits::default());
}
