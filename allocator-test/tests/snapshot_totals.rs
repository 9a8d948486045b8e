//! A snapshot's exact totals include every allocation its own thread made before it, at the
//! default interval too, where the thread batches its counts. `snapshot()` flushes the thread
//! under the reentrancy guard, which puts the program's countdown aside: the allocations since
//! the thread's last arm point are in there, and must be flushed all the same.

use allocator_test::program_traffic;
use std::alloc::{Layout, alloc, dealloc};

const BLOCKS: usize = 100;
const SIZE: usize = 64;

/// One test per binary: nothing else allocates while it measures.
#[test]
fn a_snapshot_counts_the_allocations_just_before_it() {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    for round in 0..3 {
        let before = heapsampler::snapshot().totals;
        // Well under a totals batch: without the cold path to flush them, these stay with the
        // thread until something flushes it.
        let mut blocks: Vec<usize> = Vec::with_capacity(BLOCKS);
        for _ in 0..BLOCKS {
            // SAFETY: non-zero size, valid alignment.
            blocks.push(unsafe { alloc(layout) } as usize);
        }
        let after = heapsampler::snapshot().totals;
        let [bytes, objects, _, _] = program_traffic(&before, &after);
        // The vector's buffer is one more allocation.
        let expected = (BLOCKS * SIZE + BLOCKS * 8) as u64;
        assert_eq!(
            (objects, bytes),
            (BLOCKS as u64 + 1, expected),
            "round {round}: the program's allocations between two snapshots"
        );
        for p in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    }
}
