//! Four threads allocate and free concurrently, each freeing blocks the others allocated:
//! nothing is lost. Totals are exact, and every sampled block's record is gone once freed.

use allocator_test::{config_lock, program_traffic};
use std::alloc::{Layout, alloc, dealloc};
use std::sync::{Arc, Barrier, Mutex};

const THREADS: usize = 4;
const PER_THREAD: usize = 20_000;

#[inline(never)]
fn threads_site_alloc(size: usize) -> *mut u8 {
    // SAFETY: non-zero size, valid alignment.
    let ptr = unsafe { alloc(Layout::from_size_align_unchecked(size, 8)) };
    // Not a tail call: this frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

struct Shared(Mutex<Vec<(usize, usize)>>);

#[derive(Default, Clone, Copy)]
struct Counts {
    alloc_bytes: u64,
    alloc_objects: u64,
    free_bytes: u64,
    free_objects: u64,
}

fn free_block(ptr: usize, size: usize, c: &mut Counts) {
    // SAFETY: `ptr` is a live block of this size, taken out of the shared pool exactly once.
    unsafe { dealloc(ptr as *mut u8, Layout::from_size_align_unchecked(size, 8)) };
    c.free_bytes += size as u64;
    c.free_objects += 1;
}

fn run(interval: u64) {
    let _lock = config_lock();
    heapsampler::set_sample_interval(interval);
    let mut prior = heapsampler::snapshot();
    prior.symbolize();
    let allocated_before: f64 = prior
        .sites_in("threads_site_alloc")
        .iter()
        .map(|s| s.alloc_bytes)
        .sum();
    // The pool never grows: its allocation happens before the measured window.
    let pool = Arc::new(Shared(Mutex::new(Vec::with_capacity(THREADS * PER_THREAD))));
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let go = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let read = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, ready, go, done, read) = (
                pool.clone(),
                ready.clone(),
                go.clone(),
                done.clone(),
                read.clone(),
            );
            std::thread::spawn(move || {
                let mut c = Counts::default();
                let mut x = 0x9e37_79b9u64 + t as u64;
                // Flush what thread start-up did, so the window holds only the workload.
                heapsampler::totals();
                ready.wait();
                go.wait();
                for i in 0..PER_THREAD {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 8 + (x % 8192) as usize;
                    let ptr = threads_site_alloc(size);
                    assert!(!ptr.is_null());
                    c.alloc_bytes += size as u64;
                    c.alloc_objects += 1;
                    // Every other step, free whatever block is newest in the pool: most often
                    // another thread's.
                    let taken = {
                        let mut p = pool.0.lock().unwrap();
                        p.push((ptr as usize, size));
                        if i % 2 == 1 { p.pop() } else { None }
                    };
                    if let Some((ptr, size)) = taken {
                        free_block(ptr, size, &mut c);
                    }
                }
                // Hand this thread's batched counts over before the totals are read (at
                // intervals above 1 a running thread may hold up to TOTALS_BATCH_BYTES).
                heapsampler::totals();
                done.wait();
                read.wait();
                c
            })
        })
        .collect();
    ready.wait();
    let before = heapsampler::totals();
    go.wait();
    done.wait();
    // What is left in the pool is freed here, by a thread that allocated none of it.
    let rest: Vec<(usize, usize)> = std::mem::take(&mut *pool.0.lock().unwrap());
    let mut main_counts = Counts::default();
    for &(ptr, size) in &rest {
        free_block(ptr, size, &mut main_counts);
    }
    let after = heapsampler::totals();
    read.wait();
    let mut truth = main_counts;
    for h in handles {
        let c = h.join().unwrap();
        truth.alloc_bytes += c.alloc_bytes;
        truth.alloc_objects += c.alloc_objects;
        truth.free_bytes += c.free_bytes;
        truth.free_objects += c.free_objects;
    }
    assert_eq!(
        program_traffic(&before, &after),
        [
            truth.alloc_bytes,
            truth.alloc_objects,
            truth.free_bytes,
            truth.free_objects
        ]
    );
    assert_eq!(truth.alloc_bytes, truth.free_bytes);

    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    let sites = profile.sites_in("threads_site_alloc");
    let samples: u64 = sites.iter().map(|s| s.samples).sum();
    let live_samples: u64 = sites.iter().map(|s| s.live_samples).sum();
    let live: f64 = sites.iter().map(|s| s.live_bytes).sum();
    let allocated: f64 = sites.iter().map(|s| s.alloc_bytes).sum();
    assert!(samples > 100, "interval {interval}: only {samples} samples");
    assert_eq!(
        live_samples, 0,
        "interval {interval}: sampled blocks left behind"
    );
    assert_eq!(
        live, 0.0,
        "interval {interval}: live estimate after freeing everything"
    );
    let threads: std::collections::HashSet<u32> = sites
        .iter()
        .flat_map(|s| s.threads.iter().map(|t| t.thread))
        .collect();
    assert!(
        threads.len() >= THREADS,
        "allocations attributed to {} threads",
        threads.len()
    );
    if interval == 1 {
        assert_eq!(allocated - allocated_before, truth.alloc_bytes as f64);
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
}

/// One test per binary: libtest's own allocations when another test finishes would land in
/// the measured window.
#[test]
fn four_threads_free_each_others_blocks_sampled_and_exact() {
    run(4096);
    run(1);
}
