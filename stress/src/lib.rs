//! Installs `Counting<Sampler<System>>` (or `Counting<System>`, see [`Switch`]) as the global allocator: an **independent oracle**
//! (its own atomics, no code shared with heapsampler) counts every call the program makes, so
//! heapsampler's exact totals can be held against it to the byte and the call.
//!
//! Every test and binary of this crate links it (`use stress as _;` or a helper), so every one
//! of them runs under the oracle.

pub mod apis;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::alloc::System;

/// Counts the calls its inner allocator grants: allocations and frees, bytes and calls. A
/// `realloc` counts as a free of the old block and an allocation of the new one, as the profiler
/// accounts for it. A refused request (null) is not counted.
pub struct Counting<A> {
    inner: A,
}

static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);
static FREE_BYTES: AtomicU64 = AtomicU64::new(0);
static FREE_CALLS: AtomicU64 = AtomicU64::new(0);

impl<A> Counting<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Counting { inner }
    }
}

fn count_alloc(size: usize) {
    ALLOC_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
}

fn count_free(size: usize) {
    FREE_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    FREE_CALLS.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `inner`; the wrapper only counts.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: forwarded from our caller.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

/// `Sampler<System>`, or plain `System` when the process was started with
/// `STRESS_ALLOCATOR=system` in its environment: the same binary, run twice, measures the
/// profiler against the allocator it wraps (RSS bounds). Decided at the first call, from the
/// environment read without allocating, and never changed after.
pub struct Switch {
    sampler: heapsampler::Sampler<System>,
}

/// 0: not decided yet; 1: `Sampler<System>`; 2: plain `System`.
static MODE: AtomicU8 = AtomicU8::new(0);

#[inline]
fn plain_system() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: `getenv` reads the environment without allocating; the name is a valid
            // NUL-terminated string, and the result is only read before this returns.
            let value = unsafe { libc::getenv(c"STRESS_ALLOCATOR".as_ptr()) };
            // SAFETY: a non-null result of `getenv` points to a NUL-terminated string.
            let system = !value.is_null() && unsafe { CStr::from_ptr(value) } == c"system";
            MODE.store(if system { 2 } else { 1 }, Ordering::Relaxed);
            system
        }
    }
}

/// Whether this process runs on plain `System` (`STRESS_ALLOCATOR=system`) rather than the
/// profiler; heapsampler's totals are all zero then.
pub fn is_plain_system() -> bool {
    plain_system()
}

// SAFETY: every call goes to one of two allocators, chosen once per process, so a block is
// always freed by the allocator that gave it.
unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe {
            if plain_system() {
                System.alloc(layout)
            } else {
                self.sampler.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe {
            if plain_system() {
                System.alloc_zeroed(layout)
            } else {
                self.sampler.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe {
            if plain_system() {
                System.dealloc(ptr, layout)
            } else {
                self.sampler.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe {
            if plain_system() {
                System.realloc(ptr, layout, new_size)
            } else {
                self.sampler.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// The allocator under test, wrapped by the oracle.
#[global_allocator]
pub static GLOBAL: Counting<Switch> = Counting::new(Switch {
    sampler: heapsampler::Sampler::new(System),
});

/// Resident memory of this process now, in bytes (`/proc/self/statm`), 0 if unreadable.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// What the oracle has counted so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OracleCounts {
    /// Bytes of every granted allocation (and of every realloc's new block).
    pub alloc_bytes: u64,
    /// Granted allocations.
    pub alloc_objects: u64,
    /// Bytes freed.
    pub free_bytes: u64,
    /// Frees.
    pub free_objects: u64,
}

impl OracleCounts {
    /// Bytes live: allocated minus freed.
    pub fn live_bytes(&self) -> u64 {
        self.alloc_bytes.wrapping_sub(self.free_bytes)
    }
}

/// Reads the oracle's counters (allocates nothing).
pub fn oracle() -> OracleCounts {
    OracleCounts {
        alloc_bytes: ALLOC_BYTES.load(Ordering::Relaxed),
        alloc_objects: ALLOC_CALLS.load(Ordering::Relaxed),
        free_bytes: FREE_BYTES.load(Ordering::Relaxed),
        free_objects: FREE_CALLS.load(Ordering::Relaxed),
    }
}

/// Asserts that heapsampler's exact totals equal the oracle's counts to the byte and the call.
/// Call it when no other thread is allocating (the totals of running threads are batched; both
/// readings must see the same moment).
pub fn assert_totals_match(context: &str) {
    if is_plain_system() {
        return;
    }
    let t = heapsampler::totals();
    let o = oracle();
    let ours = [
        t.alloc_bytes,
        t.alloc_objects,
        t.free_bytes,
        t.free_objects,
        t.live_bytes,
    ];
    let truth = [
        o.alloc_bytes,
        o.alloc_objects,
        o.free_bytes,
        o.free_objects,
        o.live_bytes(),
    ];
    assert_eq!(
        ours, truth,
        "{context}: heapsampler totals [alloc bytes, allocs, freed bytes, frees, live] \
         differ from the oracle's"
    );
}

/// A fresh directory for report files, `<name>-<pid>`: under `/dev/shm` where it exists (the
/// reporter syncs every file it writes, tens of milliseconds on a disk and nothing in memory;
/// durability is not what these programs test), else under the temporary directory.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("{name}-{}", std::process::id()))
}
