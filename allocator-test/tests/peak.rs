//! The peak of live bytes follows a thread's growth even though the thread publishes its counts
//! in batches and holds its change of live bytes back from the shared live counter until that
//! change reaches a batch: the documented bound is two batches per running thread.

use allocator_test as _;
use std::alloc::{Layout, alloc, dealloc};

const BLOCKS: usize = 256;
/// 256 × 64 KiB = 16 MiB live at the worker's peak.
const SIZE: usize = 64 * 1024;

/// One test per binary: nothing else allocates while it measures.
#[test]
fn peak_live_bytes_sees_a_worker_threads_growth_within_the_bound() {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let before = heapsampler::totals();
    std::thread::spawn(|| {
        let layout = Layout::from_size_align(SIZE, 8).unwrap();
        let blocks: Vec<usize> = (0..BLOCKS)
            // SAFETY: non-zero size, valid alignment; freed below with the same layout.
            .map(|_| unsafe { alloc(layout) } as usize)
            .collect();
        for p in blocks {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
    let after = heapsampler::totals();
    let grown = (BLOCKS * SIZE) as u64;
    // Running threads while the worker peaked: libtest's main thread, this one, the worker.
    let slack = 3 * 2 * heapsampler::TOTALS_BATCH_BYTES;
    assert!(
        after.peak_live_bytes + slack >= before.live_bytes + grown,
        "peak {} bytes, live before {} bytes, grown by {grown}",
        after.peak_live_bytes,
        before.live_bytes
    );
    // The vector of pointers is live at the peak as well.
    let at_most = before.live_bytes + grown + (BLOCKS * 8) as u64 + slack;
    assert!(
        after.peak_live_bytes <= before.peak_live_bytes.max(at_most),
        "peak {} bytes, more than {at_most} could ever have been live",
        after.peak_live_bytes
    );
    assert!(
        after.live_bytes < before.live_bytes + slack,
        "live bytes back down: {} after, {} before",
        after.live_bytes,
        before.live_bytes
    );
}
