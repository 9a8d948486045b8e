//! Exact process-wide allocation totals.
//!
//! Threads batch their counts (see `sampler`) and publish them at most every
//! [`TOTALS_BATCH_BYTES`](crate::TOTALS_BATCH_BYTES) bytes, so no shared cache line is written
//! on the fast path. A thread's batch is published when it exits, when it takes a snapshot, and
//! on every call in exact mode.
//!
//! A thread holding a `thread_slot` publishes into its slot's own counters, with plain stores:
//! a locked read-modify-write waits for every store the program has in flight, and where the
//! program's frees leave many (glibc splitting 4 KiB blocks from its top chunk), the four a
//! batch took cost ~0.3 ns a pair there (BENCHMARKS.md, session 5). Readers add up the shared
//! counters and every slot's; a thread's slot is folded into the shared counters when it
//! exits, under a sequence count that readers check so a fold is seen whole or not at all.
//! Threads without a slot (more than `thread_slot` has) add to the shared counters directly.
//!
//! The peak is tracked from one shared live-bytes counter. A slot holds its thread's change of
//! live bytes back from it until that change reaches a batch either way: a program that frees
//! about what it allocates then writes no shared line at all, and the counter is never off by
//! more than a batch per thread, plus the thread's unpublished batches.

use crate::sys::fork_mutex::ForkMutex;
use crate::sys::single_writer::{SingleWriter, seq_read, seq_write};
use crate::sys::thread_slot::{self, MAX_THREAD_SLOTS};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Allocation and free counters: cumulative bytes and calls.
#[repr(align(128))]
struct Counters {
    alloc_bytes: AtomicU64,
    alloc_objects: AtomicU64,
    free_bytes: AtomicU64,
    free_objects: AtomicU64,
    /// A slot's live-bytes change not yet added to [`LIVE`] (unused in [`SHARED`]).
    held_live: AtomicI64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            alloc_bytes: AtomicU64::new(0),
            alloc_objects: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            free_objects: AtomicU64::new(0),
            held_live: AtomicI64::new(0),
        }
    }

    fn load(&self) -> [u64; 4] {
        [
            self.alloc_bytes.load(Ordering::Relaxed),
            self.alloc_objects.load(Ordering::Relaxed),
            self.free_bytes.load(Ordering::Relaxed),
            self.free_objects.load(Ordering::Relaxed),
        ]
    }

    fn fields(&self) -> [&AtomicU64; 4] {
        [
            &self.alloc_bytes,
            &self.alloc_objects,
            &self.free_bytes,
            &self.free_objects,
        ]
    }
}

/// Threads without a slot, and the slots of threads that exited.
static SHARED: Counters = Counters::new();
/// Each slot's thread's counters since it claimed the slot; written only by that thread.
static SLOTS: [Counters; MAX_THREAD_SLOTS] = [const { Counters::new() }; MAX_THREAD_SLOTS];
/// Odd while a slot is being folded into `SHARED`; bumped twice per fold.
static FOLDS: AtomicU64 = AtomicU64::new(0);
static FOLD_LOCK: ForkMutex<()> = ForkMutex::new(());
/// Live bytes as published (allocated minus freed), for the peak.
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK_LIVE: AtomicU64 = AtomicU64::new(0);

/// Publishes a thread's batch: `[alloc bytes, alloc calls, free bytes, free calls]`. The
/// batch's live-bytes change reaches the shared live counter (and the peak) once the thread's
/// held-back change reaches `hold` bytes either way (0: at once).
#[inline]
pub(crate) fn publish(batch: [u64; 4], hold: u64) {
    // Compared word by word: the batch was just stored, and one wide load of it would wait for
    // those stores.
    if batch[0] | batch[1] | batch[2] | batch[3] == 0 {
        return;
    }
    let delta = batch[0].wrapping_sub(batch[2]) as i64;
    let delta = match thread_slot::current().and_then(|slot| SLOTS.get(slot)) {
        Some(own) => {
            for (field, add) in own.fields().into_iter().zip(batch) {
                field.update_unshared(|v| v.wrapping_add(add));
            }
            // A program that frees about what it allocates moves its live bytes little from
            // batch to batch: held back, that change costs no shared write at all.
            let held = own.held_live.load(Ordering::Relaxed).wrapping_add(delta);
            if held.unsigned_abs() < hold {
                own.held_live.store(held, Ordering::Relaxed);
                return;
            }
            own.held_live.store(0, Ordering::Relaxed);
            held
        }
        None => {
            for (field, add) in SHARED.fields().into_iter().zip(batch) {
                if add != 0 {
                    field.fetch_add(add, Ordering::Relaxed);
                }
            }
            delta
        }
    };
    add_live(delta);
}

/// Adds a published live-bytes change to the shared live counter and raises the peak.
fn add_live(delta: i64) {
    if delta == 0 {
        return;
    }
    let live = LIVE.fetch_add(delta, Ordering::Relaxed).wrapping_add(delta);
    // A plain load first: the peak rarely moves, and a read-modify-write on every publish
    // would take the line exclusive on every core in turn.
    if live > 0 && live as u64 > PEAK_LIVE.load(Ordering::Relaxed) {
        PEAK_LIVE.fetch_max(live as u64, Ordering::Relaxed);
    }
}

/// Folds `slot`'s counters into the shared ones and zeroes them: its thread is exiting (and has
/// published its last batch).
pub(crate) fn fold_slot(slot: usize) {
    let Some(own) = SLOTS.get(slot) else {
        return;
    };
    // parking_lot may allocate when the lock is contended: that is the profiler's own.
    let _guard = crate::sys::guard::enter_guard();
    let _lock = FOLD_LOCK.lock();
    // The lock makes this the sequence count's only writer.
    seq_write(&FOLDS, || {
        for (from, to) in own.fields().into_iter().zip(SHARED.fields()) {
            to.fetch_add(from.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    });
    add_live(own.held_live.swap(0, Ordering::Relaxed));
}

/// The four counters summed over the shared ones and every slot.
fn sum() -> [u64; 4] {
    // A fold moves a slot's counts into the shared ones: a sum taken across one could see them
    // twice or not at all, so it is taken again. Bounded all the same (folds run under a lock
    // that `fork()` takes too, so none is ever half done in a child): after 1000 tries the
    // last sum is used, off by at most the folding threads' counts.
    let read = || {
        let mut total = SHARED.load();
        thread_slot::for_each_claimed(|slot| {
            if let Some(own) = SLOTS.get(slot) {
                for (t, v) in total.iter_mut().zip(own.load()) {
                    *t = t.wrapping_add(v);
                }
            }
        });
        total
    };
    seq_read(&FOLDS, read).unwrap_or_else(read)
}

/// Exact process-wide counters of every allocation made through the [`Sampler`](crate::Sampler).
///
/// Each running thread may hold up to [`TOTALS_BATCH_BYTES`](crate::TOTALS_BATCH_BYTES)
/// allocated and as many freed bytes not yet added (threads that have exited hold none; the
/// thread taking the snapshot holds none). `peak_live_bytes` is the highest live value seen
/// when a thread published its counts: exact in exact mode, otherwise within two batches per
/// running thread (its unpublished counts, and the change of live bytes it holds back from the
/// shared live counter until that change reaches a batch).
///
/// A request larger than [`TOTALS_BATCH_BYTES`](crate::TOTALS_BATCH_BYTES) is counted once the
/// inner allocator has granted it, so a refused one (a null from `alloc` or `realloc`, e.g. a
/// fallible reservation of an absurd size) counts nowhere, peak included; a smaller request is
/// counted when made and stays counted if refused (the process is out of memory then).
///
/// ```
/// let totals = heapsampler::snapshot().totals;
/// assert!(totals.alloc_bytes >= totals.free_bytes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Bytes ever allocated.
    pub alloc_bytes: u64,
    /// Objects ever allocated (a `realloc` counts as one free and one allocation).
    pub alloc_objects: u64,
    /// Bytes ever freed.
    pub free_bytes: u64,
    /// Objects ever freed.
    pub free_objects: u64,
    /// Bytes live now: allocated minus freed.
    pub live_bytes: u64,
    /// Objects live now.
    pub live_objects: u64,
    /// The most bytes ever live at once.
    pub peak_live_bytes: u64,
    /// Of `alloc_bytes`, those the profiler allocated for its own work (symbolizing,
    /// rendering, lock bookkeeping), outside its fixed tables. Never sampled.
    #[serde(default)]
    pub overhead_alloc_bytes: u64,
    /// Of `alloc_objects`, those the profiler made for its own work.
    #[serde(default)]
    pub overhead_alloc_objects: u64,
    /// Of `free_bytes`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_free_bytes: u64,
    /// Of `free_objects`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_free_objects: u64,
}

/// Reads the counters (the caller flushes its own thread first).
pub(crate) fn read() -> Totals {
    let [alloc_bytes, alloc_objects, free_bytes, free_objects] = sum();
    let live_bytes = alloc_bytes.saturating_sub(free_bytes);
    Totals {
        alloc_bytes,
        alloc_objects,
        free_bytes,
        free_objects,
        live_bytes,
        live_objects: alloc_objects.saturating_sub(free_objects),
        peak_live_bytes: PEAK_LIVE.load(Ordering::Relaxed).max(live_bytes),
        overhead_alloc_bytes: crate::sys::thread_state::guarded_alloc_bytes(),
        overhead_alloc_objects: crate::sys::thread_state::guarded_alloc_objects(),
        overhead_free_bytes: crate::sys::thread_state::guarded_free().0,
        overhead_free_objects: crate::sys::thread_state::guarded_free().1,
    }
}

/// What the calling thread published into its slot (zeros without one).
#[cfg(test)]
pub(crate) fn own_published() -> [u64; 4] {
    thread_slot::current()
        .and_then(|slot| SLOTS.get(slot))
        .map_or([0; 4], Counters::load)
}

/// Hands this module's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    f(&FOLD_LOCK);
}
