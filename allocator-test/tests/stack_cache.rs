//! Repeats of a thread's last recorded stack go to pending sums of its own (see
//! `src/record/stack_cache.rs`). With more threads than there are cache slots, snapshots taken while
//! they run, and threads exiting with pending sums, per-site figures must still be exact.

use allocator_test::config_lock;
use std::alloc::{Layout, alloc, dealloc};
use std::sync::{Arc, Barrier};

/// More than the 512 thread slots (`src/sys/thread_slot.rs`): the last threads to start record
/// every sample the long way.
const THREADS: usize = 600;
const PER_THREAD: usize = 40;
const SIZE: usize = 48;

#[inline(never)]
fn cached_site_alloc() -> *mut u8 {
    // SAFETY: non-zero size, valid alignment.
    let ptr = unsafe { alloc(Layout::from_size_align(SIZE, 8).unwrap()) };
    // Not a tail call: this frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

fn site_sums(profile: &mut heapsampler::Profile) -> (f64, f64, u64, f64) {
    profile.symbolize();
    let sites = profile.sites_in("cached_site_alloc");
    (
        sites.iter().map(|s| s.alloc_bytes).sum(),
        sites.iter().map(|s| s.alloc_objects).sum(),
        sites.iter().map(|s| s.samples).sum(),
        sites.iter().map(|s| s.live_bytes).sum(),
    )
}

/// One test per binary: the counts below are of this site alone, and nothing else runs.
#[test]
fn pending_sums_are_exact_across_many_threads_snapshots_and_exits() {
    let _lock = config_lock();
    heapsampler::set_sample_interval(1);
    // This thread's own repeats stay pending (it neither exits nor records another stack):
    // a snapshot must count them anyway.
    let mine: Vec<usize> = (0..100).map(|_| cached_site_alloc() as usize).collect();
    let (bytes, objects, samples, live) = site_sums(&mut heapsampler::snapshot());
    assert_eq!(
        (objects, samples),
        (100.0, 100),
        "this thread's pending repeats"
    );
    assert_eq!((bytes, live), (100.0 * SIZE as f64, 100.0 * SIZE as f64));
    for p in mine {
        // SAFETY: allocated just above with this layout.
        unsafe { dealloc(p as *mut u8, Layout::from_size_align(SIZE, 8).unwrap()) };
    }
    let start = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                // Half the blocks stay live until the thread is about to exit, so some pending
                // sums are still unflushed when it does.
                let mut kept = Vec::with_capacity(PER_THREAD);
                for i in 0..PER_THREAD {
                    let p = cached_site_alloc();
                    if i % 2 == 0 {
                        kept.push(p as usize);
                    } else {
                        // SAFETY: allocated just above with this layout.
                        unsafe { dealloc(p, Layout::from_size_align(SIZE, 8).unwrap()) };
                    }
                }
                for p in kept {
                    // SAFETY: each kept block was allocated above with this layout.
                    unsafe { dealloc(p as *mut u8, Layout::from_size_align(SIZE, 8).unwrap()) };
                }
            })
        })
        .collect();
    start.wait();
    // Snapshots while the threads run: nothing may break, and no figure may exceed the truth.
    let total = (THREADS * PER_THREAD + 100) as f64;
    for _ in 0..5 {
        let (bytes, objects, _, _) = site_sums(&mut heapsampler::snapshot());
        assert!(objects <= total && bytes <= total * SIZE as f64);
    }
    for h in handles {
        h.join().unwrap();
    }
    let (bytes, objects, samples, live) = site_sums(&mut heapsampler::snapshot());
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    assert_eq!(objects, total, "allocations recorded at the site");
    assert_eq!(bytes, total * SIZE as f64, "bytes recorded at the site");
    assert_eq!(samples, total as u64, "samples at the site");
    assert_eq!(live, 0.0, "everything was freed");
}
