//! Exact process-wide allocation totals.
//!
//! Threads batch their counts (see `sampler`) and add them here at most every
//! [`TOTALS_BATCH_BYTES`](crate::TOTALS_BATCH_BYTES) bytes, so no shared cache line is written
//! on the fast path. A thread's batch is flushed when it exits, when it takes a snapshot, and on
//! every call in exact mode.

use core::sync::atomic::{AtomicU64, Ordering};

/// Keeps the allocation and free counters on different cache lines: they are written by
/// different events and should not bounce together.
#[repr(align(128))]
struct Line {
    bytes: AtomicU64,
    count: AtomicU64,
}

static ALLOCATED: Line = Line {
    bytes: AtomicU64::new(0),
    count: AtomicU64::new(0),
};
static FREED: Line = Line {
    bytes: AtomicU64::new(0),
    count: AtomicU64::new(0),
};
static PEAK_LIVE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn flush_alloc(bytes: u64, count: u64) {
    if bytes == 0 && count == 0 {
        return;
    }
    let allocated = ALLOCATED
        .bytes
        .fetch_add(bytes, Ordering::Relaxed)
        .wrapping_add(bytes);
    ALLOCATED.count.fetch_add(count, Ordering::Relaxed);
    let live = allocated.saturating_sub(FREED.bytes.load(Ordering::Relaxed));
    // A plain load first: the peak rarely moves, and a read-modify-write on every flush would
    // take the line exclusive on every core in turn.
    if live > PEAK_LIVE.load(Ordering::Relaxed) {
        PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
    }
}

pub(crate) fn flush_free(bytes: u64, count: u64) {
    if bytes == 0 && count == 0 {
        return;
    }
    FREED.bytes.fetch_add(bytes, Ordering::Relaxed);
    FREED.count.fetch_add(count, Ordering::Relaxed);
}

/// Exact process-wide counters of every allocation made through the [`Sampler`](crate::Sampler).
///
/// Each running thread may hold up to [`TOTALS_BATCH_BYTES`](crate::TOTALS_BATCH_BYTES)
/// allocated and as many freed bytes not yet added (threads that have exited hold none; the
/// thread taking the snapshot holds none). `peak_live_bytes` is the highest live value seen at
/// a flush, so it is exact in exact mode and within the same per-thread bound otherwise.
///
/// ```
/// let totals = heapsampler::snapshot().totals;
/// assert!(totals.allocated_bytes >= totals.freed_bytes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Bytes ever allocated.
    pub allocated_bytes: u64,
    /// Allocations ever made (a `realloc` counts as one free and one allocation).
    pub allocated_objects: u64,
    /// Bytes ever freed.
    pub freed_bytes: u64,
    /// Frees ever made.
    pub freed_objects: u64,
    /// Bytes live now: allocated minus freed.
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_objects: u64,
    /// The most bytes ever live at once.
    pub peak_live_bytes: u64,
    /// Of `allocated_bytes`, those the profiler allocated for its own work (symbolizing,
    /// rendering, lock bookkeeping), outside its fixed tables. Never sampled.
    #[serde(default)]
    pub overhead_allocated_bytes: u64,
    /// Of `allocated_objects`, those the profiler made for its own work.
    #[serde(default)]
    pub overhead_allocated_objects: u64,
    /// Of `freed_bytes`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_freed_bytes: u64,
    /// Of `freed_objects`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_freed_objects: u64,
}

/// Reads the counters (the caller flushes its own thread first).
pub(crate) fn read() -> Totals {
    let freed_bytes = FREED.bytes.load(Ordering::Relaxed);
    let freed_objects = FREED.count.load(Ordering::Relaxed);
    let allocated_bytes = ALLOCATED.bytes.load(Ordering::Relaxed);
    let allocated_objects = ALLOCATED.count.load(Ordering::Relaxed);
    let live_bytes = allocated_bytes.saturating_sub(freed_bytes);
    Totals {
        allocated_bytes,
        allocated_objects,
        freed_bytes,
        freed_objects,
        live_bytes,
        live_objects: allocated_objects.saturating_sub(freed_objects),
        peak_live_bytes: PEAK_LIVE.load(Ordering::Relaxed).max(live_bytes),
        overhead_allocated_bytes: crate::sampler::guarded_bytes(),
        overhead_allocated_objects: crate::sampler::guarded_objects(),
        overhead_freed_bytes: crate::sampler::guarded_frees().0,
        overhead_freed_objects: crate::sampler::guarded_frees().1,
    }
}

/// The exact process-wide totals, without building a [`Profile`](crate::Profile).
///
/// Allocates nothing, so the difference of two calls around a piece of work is exactly that
/// work's allocations (plus whatever other threads did, within their batch bound).
///
/// ```
/// #[global_allocator]
/// static GLOBAL: heapsampler::Sampler<std::alloc::System> =
///     heapsampler::Sampler::new(std::alloc::System);
///
/// fn main() {
///     let before = heapsampler::totals();
///     let v = vec![0u8; 1000];
///     let after = heapsampler::totals();
///     assert_eq!(after.allocated_bytes - before.allocated_bytes, v.capacity() as u64);
/// }
/// ```
pub fn totals() -> Totals {
    crate::sampler::flush_current_thread();
    read()
}
