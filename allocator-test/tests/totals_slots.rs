//! Exact totals are summed from per-thread slots (plain stores, no locked instruction), from the
//! shared counters that threads without a slot add to, and from the slots of exited threads,
//! folded into the shared counters. More threads than slots are alive at once here, each
//! allocating more than a batch so that it publishes from its own cold path: the totals must
//! be exact while they all run, and stay exact once they have exited.

use allocator_test::program_traffic;
use std::alloc::{Layout, alloc, dealloc};
use std::sync::{Arc, Barrier};

/// More than `thread_slot::MAX_THREAD_SLOTS` (512).
const THREADS: usize = 600;
const BLOCKS: usize = 160;
/// 160 × 4 KiB = 640 KiB a thread: more than a totals batch (512 KiB).
const SIZE: usize = 4096;
/// One block in this many stays live until the totals are read (~48 MiB over all threads).
const KEEP_EVERY: usize = 8;

/// One test per binary: nothing else allocates while it measures.
#[test]
fn totals_are_exact_with_more_threads_than_slots_and_after_they_exit() {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let go = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let read = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (ready, go, done, read) = (ready.clone(), go.clone(), done.clone(), read.clone());
            std::thread::spawn(move || {
                let layout = Layout::from_size_align(SIZE, 8).unwrap();
                // Registers the thread (claiming a slot while there are any) and flushes what
                // start-up did, outside the window.
                // SAFETY: non-zero size, valid alignment; freed with the same layout.
                unsafe { dealloc(std::hint::black_box(alloc(layout)), layout) };
                heapsampler::totals();
                ready.wait();
                go.wait();
                let mut kept = [0usize; BLOCKS];
                for (i, slot) in kept.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    if i % KEEP_EVERY != 0 {
                        // SAFETY: allocated just above with this layout.
                        unsafe { dealloc(p, layout) };
                    } else {
                        *slot = p as usize;
                    }
                }
                heapsampler::totals();
                done.wait();
                read.wait();
                for p in kept.into_iter().filter(|&p| p != 0) {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { dealloc(p as *mut u8, layout) };
                }
            })
        })
        .collect();
    ready.wait();
    let before = heapsampler::totals();
    go.wait();
    done.wait();
    let running = heapsampler::totals();
    read.wait();
    for h in handles {
        h.join().unwrap();
    }
    let exited = heapsampler::totals();
    let (n, blocks, size) = (THREADS as u64, BLOCKS as u64, SIZE as u64);
    let freed = blocks - blocks.div_ceil(KEEP_EVERY as u64);
    assert_eq!(
        program_traffic(&before, &running),
        [n * blocks * size, n * blocks, n * freed * size, n * freed],
        "while {THREADS} threads run"
    );
    let [alloc_bytes, alloc_objects, free_bytes, free_objects] = program_traffic(&before, &exited);
    // Thread exit frees some of std's own per-thread data too: the allocations are exactly
    // the workload's, and every byte it allocated is freed.
    assert_eq!(
        (alloc_bytes, alloc_objects),
        (n * blocks * size, n * blocks),
        "after they exit"
    );
    assert!(
        free_bytes >= n * blocks * size && free_objects >= n * blocks,
        "after they exit: freed {free_bytes} bytes in {free_objects} frees"
    );
}
