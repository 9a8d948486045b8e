//! At interval 1 every allocation is recorded with weight 1: per-site estimates and the
//! process-wide totals must equal, to the byte, what the test itself computed.

use allocator_test::{config_lock, program_traffic};
use heapsampler::Profile;
use std::alloc::{Layout, alloc, dealloc, realloc};
use std::sync::{Arc, Barrier};

const SITES: [&str; 3] = ["exact_site_small", "exact_site_large", "exact_site_grow"];

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Truth {
    live_bytes: u64,
    live_objects: u64,
    alloc_bytes: u64,
    alloc_objects: u64,
}

/// Per-site truth plus totals, kept in fixed arrays so the bookkeeping allocates nothing.
#[derive(Default, Clone, Copy, Debug)]
struct Ledger {
    sites: [Truth; 3],
    alloc_bytes: u64,
    alloc_objects: u64,
    free_bytes: u64,
    free_objects: u64,
}

#[inline(never)]
fn exact_site_small(size: usize) -> *mut u8 {
    // SAFETY: size is at least 1 and the alignment is a power of two.
    let ptr = unsafe { alloc(Layout::from_size_align(size, 8).unwrap()) };
    // Not a tail call: the site's own frame must be on the stack when the allocator runs.
    std::hint::black_box(ptr)
}

#[inline(never)]
fn exact_site_large(size: usize) -> *mut u8 {
    // SAFETY: as above.
    let ptr = unsafe { alloc(Layout::from_size_align(size, 16).unwrap()) };
    std::hint::black_box(ptr)
}

#[inline(never)]
fn exact_site_grow(ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: `ptr` is a live block of layout `old`; new_size is non-zero.
    let ptr = unsafe { realloc(ptr, old, new_size) };
    std::hint::black_box(ptr)
}

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    layout: Layout,
    site: usize,
}

/// A deterministic workload: sizes from 1 byte to 8 MiB, allocs, reallocs and frees interleaved.
fn workload(seed: u64, ledger: &mut Ledger, blocks: &mut Vec<Block>) {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for step in 0..3000u64 {
        let r = next();
        match r % 5 {
            0 | 1 => {
                let size = 1 + (next() % 512) as usize;
                let ptr = exact_site_small(size);
                assert!(!ptr.is_null());
                blocks.push(Block {
                    ptr,
                    layout: Layout::from_size_align(size, 8).unwrap(),
                    site: 0,
                });
                ledger.sites[0].alloc(size);
                ledger.alloc(size);
            }
            2 => {
                // Sizes up to 8 MiB, rarely: one in 64 of these steps.
                let size = if step % 64 == 0 {
                    8 << 20
                } else {
                    512 + (next() % (256 << 10)) as usize
                };
                let ptr = exact_site_large(size);
                assert!(!ptr.is_null());
                blocks.push(Block {
                    ptr,
                    layout: Layout::from_size_align(size, 16).unwrap(),
                    site: 1,
                });
                ledger.sites[1].alloc(size);
                ledger.alloc(size);
            }
            3 if !blocks.is_empty() => {
                let i = (next() % blocks.len() as u64) as usize;
                let b = blocks[i];
                let new_size = 1 + (next() % (64 << 10)) as usize;
                let ptr = exact_site_grow(b.ptr, b.layout, new_size);
                assert!(!ptr.is_null());
                ledger.sites[b.site].free(b.layout.size());
                ledger.free(b.layout.size());
                ledger.sites[2].alloc(new_size);
                ledger.alloc(new_size);
                blocks[i] = Block {
                    ptr,
                    layout: Layout::from_size_align(new_size, b.layout.align()).unwrap(),
                    site: 2,
                };
            }
            _ if !blocks.is_empty() => {
                let i = (next() % blocks.len() as u64) as usize;
                let b = blocks.swap_remove(i);
                // SAFETY: `b` is a live block with this layout.
                unsafe { dealloc(b.ptr, b.layout) };
                ledger.sites[b.site].free(b.layout.size());
                ledger.free(b.layout.size());
            }
            _ => {}
        }
    }
}

impl Truth {
    fn alloc(&mut self, size: usize) {
        self.live_bytes += size as u64;
        self.live_objects += 1;
        self.alloc_bytes += size as u64;
        self.alloc_objects += 1;
    }
    fn free(&mut self, size: usize) {
        self.live_bytes -= size as u64;
        self.live_objects -= 1;
    }
}

impl Ledger {
    fn alloc(&mut self, size: usize) {
        self.alloc_bytes += size as u64;
        self.alloc_objects += 1;
    }
    fn free(&mut self, size: usize) {
        self.free_bytes += size as u64;
        self.free_objects += 1;
    }
    fn add(&mut self, o: &Ledger) {
        for (a, b) in self.sites.iter_mut().zip(&o.sites) {
            a.live_bytes += b.live_bytes;
            a.live_objects += b.live_objects;
            a.alloc_bytes += b.alloc_bytes;
            a.alloc_objects += b.alloc_objects;
        }
        self.alloc_bytes += o.alloc_bytes;
        self.alloc_objects += o.alloc_objects;
        self.free_bytes += o.free_bytes;
        self.free_objects += o.free_objects;
    }
}

fn measured(profile: &Profile, function: &str) -> Truth {
    let sites = profile.sites_in(function);
    let sum = |f: fn(&heapsampler::Site) -> f64| sites.iter().map(|s| f(s)).sum::<f64>();
    let exact = |v: f64| {
        assert_eq!(
            v.fract(),
            0.0,
            "{function}: exact mode gave a fractional estimate {v}"
        );
        v as u64
    };
    Truth {
        live_bytes: exact(sum(|s| s.live_bytes)),
        live_objects: exact(sum(|s| s.live_objects)),
        alloc_bytes: exact(sum(|s| s.alloc_bytes)),
        alloc_objects: exact(sum(|s| s.alloc_objects)),
    }
}

struct SendBlocks(Vec<Block>);
// SAFETY: the raw pointers are plain heap blocks owned by this test; moving them between
// threads is what the test is about.
unsafe impl Send for SendBlocks {}

#[test]
fn exact_mode_matches_the_truth_per_site_and_in_totals() {
    let _lock = config_lock();
    heapsampler::set_sample_interval(1);
    const THREADS: usize = 3;
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let measured_all = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (ready, start, done) = (ready.clone(), start.clone(), done.clone());
            let measured_all = measured_all.clone();
            std::thread::spawn(move || {
                let mut ledger = Ledger::default();
                let mut blocks = Vec::with_capacity(4000);
                ready.wait();
                start.wait();
                workload(0x1234_5678 + t, &mut ledger, &mut blocks);
                done.wait();
                // Stay parked (allocating nothing, exiting not) until the totals are read.
                measured_all.wait();
                (ledger, SendBlocks(blocks))
            })
        })
        .collect();
    ready.wait();
    let before = heapsampler::totals();
    start.wait();
    done.wait();
    // The workers are parked at the barrier: in exact mode every call flushed their totals.
    let after = heapsampler::totals();
    measured_all.wait();
    let mut truth = Ledger::default();
    let mut all_blocks = Vec::new();
    for h in handles {
        let (ledger, blocks) = h.join().unwrap();
        truth.add(&ledger);
        all_blocks.extend(blocks.0);
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
    assert!(after.peak_live_bytes >= after.live_bytes);

    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    for (i, name) in SITES.iter().enumerate() {
        assert_eq!(measured(&profile, name), truth.sites[i], "site {name}");
    }
    assert!(
        truth
            .sites
            .iter()
            .all(|s| s.live_objects > 0 && s.alloc_objects > s.live_objects)
    );

    // Free everything from this thread (allocated on others): every site returns to zero.
    for b in all_blocks {
        // SAFETY: each block is live with this layout.
        unsafe { dealloc(b.ptr, b.layout) };
    }
    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    for (i, name) in SITES.iter().enumerate() {
        let m = measured(&profile, name);
        assert_eq!(
            (m.live_bytes, m.live_objects),
            (0, 0),
            "site {name} after freeing"
        );
        assert_eq!(
            m.alloc_bytes, truth.sites[i].alloc_bytes,
            "site {name} cumulative"
        );
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
}
