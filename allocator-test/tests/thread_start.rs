//! A thread's first cold path registers the thread with the profiler, which may allocate
//! through the wrapper (parking_lot sets up its parking table when threads contend for the
//! registry's lock). Those allocations are the profiler's own: the program's exact totals must
//! show only what the threads themselves allocated. Contention is up to the scheduler, so this
//! catches a regression only sometimes; `record::countdown::tests::registration_traffic_is_the_profilers_own`
//! pins the mechanism down deterministically.

use allocator_test::program_traffic;
use std::alloc::{Layout, alloc, dealloc};
use std::sync::{Arc, Barrier};

const THREADS: usize = 64;
const SIZE: usize = 200;

/// One test per binary: libtest's own allocations when another test finishes would land in
/// the measured window.
#[test]
fn registering_new_threads_is_not_counted_as_program_traffic() {
    for round in 0..4 {
        // Threads finish starting (and flush what start-up freed) before the window opens.
        let ready = Arc::new(Barrier::new(THREADS + 1));
        let go = Arc::new(Barrier::new(THREADS + 1));
        let done = Arc::new(Barrier::new(THREADS + 1));
        // Threads exit (and free their start-up blocks) only once the totals are read.
        let read = Arc::new(Barrier::new(THREADS + 1));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (ready, go, done, read) =
                    (ready.clone(), go.clone(), done.clone(), read.clone());
                std::thread::spawn(move || {
                    // Flush what thread start-up freed, so the window holds only the workload
                    // (this does not register the thread).
                    heapsampler::totals();
                    ready.wait();
                    go.wait();
                    // The thread's first allocation: its cold path registers the thread, all
                    // threads at once.
                    let layout = Layout::from_size_align(SIZE, 8).unwrap();
                    // SAFETY: non-zero size, valid alignment; freed with the same layout.
                    unsafe { dealloc(std::hint::black_box(alloc(layout)), layout) };
                    heapsampler::totals();
                    done.wait();
                    read.wait();
                })
            })
            .collect();
        ready.wait();
        let before = heapsampler::totals();
        go.wait();
        done.wait();
        let after = heapsampler::totals();
        read.wait();
        for h in handles {
            h.join().unwrap();
        }
        let n = THREADS as u64;
        assert_eq!(
            program_traffic(&before, &after),
            [n * SIZE as u64, n, n * SIZE as u64, n],
            "round {round}: program traffic of {THREADS} threads' first allocations"
        );
    }
}
