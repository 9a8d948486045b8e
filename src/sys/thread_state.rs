//! The hot per-thread state of the recording side: one `const`-initialised thread-local without
//! `Drop`, reachable from the very first allocation before `main` until the last one during
//! thread teardown, and the process-wide counts of what the reentrancy guard let through. The
//! record side's countdown (`record::countdown`) and the guard (`sys::guard`) are the only code
//! that changes it; the packed countdown words and their accounting primitives live here with it.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};
use rand::rngs::SmallRng;

/// Width of the call-count field at the bottom of a packed countdown word.
pub(crate) const COUNT_BITS: u32 = 20;
/// The call-count field of a freshly armed countdown: all ones, so it never borrows first.
pub(crate) const COUNT_FIELD: i64 = (1 << COUNT_BITS) - 1;
/// Allocation sizes from here up skip the packed arithmetic (their packed value would
/// overflow) and are counted on the cold path: exactly the sizes whose multiply by
/// `Hot::unit` overflows (a valid `Layout`'s size is at most `isize::MAX`).
pub(crate) const HUGE: usize = 1 << (63 - COUNT_BITS);
const _: () = assert!(COUNT_BITS == 20, "HOT initialises Hot::unit to 1 << 20");

/// Bytes allocated while the reentrancy guard was held: the profiler's own transient work.
pub(crate) static GUARDED_ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_ALLOC_OBJECTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_FREE_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_FREE_OBJECTS: AtomicU64 = AtomicU64::new(0);

/// Hot per-thread state. `const`-initialised and without `Drop`, so it is reachable from the
/// very first allocation before `main` until the last one during thread teardown.
pub(crate) struct Hot {
    /// Packed: bytes the thread may still allocate before the cold path must run, and calls.
    pub(crate) countdown: Cell<i64>,
    /// Always `1 << COUNT_BITS` of `record::countdown`. Read from here rather than written as a
    /// constant so that the compiler keeps the multiply and its overflow flag (`imul`, `jo`) for
    /// the size test: a constant power of two is turned into a range test of the size and a
    /// shift, which take a copy of the size, and three more instructions on every call.
    pub(crate) unit: Cell<i64>,
    /// What `countdown` was set to at the last arm point.
    pub(crate) armed: Cell<i64>,
    /// Allocated bytes consumed at earlier arm points, not yet flushed.
    pub(crate) alloc_pending_bytes: Cell<u64>,
    /// Allocations counted at earlier arm points, not yet flushed.
    pub(crate) alloc_pending_objects: Cell<u64>,
    /// Packed: bytes the thread may still free before its free totals must be flushed, and calls.
    pub(crate) free_budget: Cell<i64>,
    /// `free_budget` at the last arm point.
    pub(crate) free_armed: Cell<i64>,
    /// Freed bytes charged at earlier arm points, not yet flushed.
    pub(crate) free_pending_bytes: Cell<u64>,
    pub(crate) free_pending_objects: Cell<u64>,
    /// Bytes from the arm point to the next sample point.
    pub(crate) gap: Cell<i64>,
    /// The interval that was in force when `gap` was drawn (1 = exact, 0 = off).
    pub(crate) gap_interval: Cell<u64>,
    /// Last configuration generation seen; 0 = thread not initialised yet.
    pub(crate) config_gen: Cell<u64>,
    /// Reentrancy depth: non-zero while the profiler itself runs on this thread.
    pub(crate) guard: Cell<u32>,
    /// Tag of the active exact-recording scope (a `LeakCheck`), 0 when none.
    pub(crate) scope: Cell<u32>,
    /// Set once the thread-exit hook ran: flush on every call from then on.
    pub(crate) exiting: Cell<bool>,
    /// Set between the `pthread_atfork` prepare handler and the parent or child handler: this
    /// thread holds every table lock, so nothing it does may wait for one.
    pub(crate) forking: Cell<bool>,
    pub(crate) thread: Cell<u32>,
    /// Set once the thread registered (`record::lifecycle`): its exit hook, name and slot.
    pub(crate) registered: Cell<bool>,
    pub(crate) rng: Cell<Option<SmallRng>>,
    /// The last sampled (size, interval) and its weights (w_objects, w_bytes); size 0 = none.
    pub(crate) last_weights: Cell<(u64, u64, u64, u64)>,
    /// The program's countdown and its arm point (packed) and configuration generation when the
    /// outermost guard was entered, given back when it is dropped (see [`enter_guard`]).
    pub(crate) saved_countdown: Cell<(i64, i64, u64)>,
}

thread_local! {
    static HOT: Hot = const {
        Hot {
            countdown: Cell::new(0),
            unit: Cell::new(1 << 20),
            armed: Cell::new(0),
            alloc_pending_bytes: Cell::new(0),
            alloc_pending_objects: Cell::new(0),
            free_budget: Cell::new(0),
            free_armed: Cell::new(0),
            free_pending_bytes: Cell::new(0),
            free_pending_objects: Cell::new(0),
            gap: Cell::new(0),
            gap_interval: Cell::new(0),
            config_gen: Cell::new(0),
            guard: Cell::new(0),
            scope: Cell::new(0),
            exiting: Cell::new(false),
            forking: Cell::new(false),
            thread: Cell::new(0),
            registered: Cell::new(false),
            rng: Cell::new(None),
            last_weights: Cell::new((0, 0, 0, 0)),
            saved_countdown: Cell::new((0, 0, 0)),
        }
    };
}

/// Runs `f` on the calling thread's hot state.
#[inline(always)]
pub(crate) fn with_hot<R>(f: impl FnOnce(&Hot) -> R) -> R {
    HOT.with(f)
}

/// Bytes allocated while the reentrancy guard was held.
pub(crate) fn guarded_alloc_bytes() -> u64 {
    GUARDED_ALLOC_BYTES.load(Ordering::Relaxed)
}

/// Allocations made while the reentrancy guard was held.
pub(crate) fn guarded_alloc_objects() -> u64 {
    GUARDED_ALLOC_OBJECTS.load(Ordering::Relaxed)
}

/// Bytes and objects freed while the reentrancy guard was held.
pub(crate) fn guarded_free() -> (u64, u64) {
    (
        GUARDED_FREE_BYTES.load(Ordering::Relaxed),
        GUARDED_FREE_OBJECTS.load(Ordering::Relaxed),
    )
}

/// What one call of `size` bytes takes off a packed countdown; `None` from [`HUGE`] up.
#[inline(always)]
pub(crate) fn packed_of(h: &Hot, size: usize) -> Option<i64> {
    (size as i64)
        .checked_mul(h.unit.get())
        .map(|bytes| bytes | 1)
}

/// A packed countdown armed for `bytes` bytes.
pub(crate) fn armed_word(bytes: i64) -> i64 {
    (bytes << COUNT_BITS) | COUNT_FIELD
}

/// Bytes and calls taken off a packed countdown between `armed` and `now`.
pub(crate) fn unpack(armed: i64, now: i64) -> (u64, u64) {
    // Unsigned: one call just under `HUGE` takes almost 2^63 off, which with the calls before
    // it can pass `i64::MAX`.
    let used = if now > armed {
        0
    } else {
        armed.wrapping_sub(now) as u64
    };
    (used >> COUNT_BITS, used & COUNT_FIELD as u64)
}

/// The free-side half of `record::countdown`'s `charge`: frees since the last arm point become pending, and count
/// as the profiler's own when the guard is held.
pub(crate) fn charge_frees(h: &Hot) {
    let (bytes, calls) = unpack(h.free_armed.get(), h.free_budget.get());
    add_free(h, bytes, calls);
    h.free_armed.set(h.free_budget.get());
}

pub(crate) fn add_free(h: &Hot, bytes: u64, calls: u64) {
    h.free_pending_bytes
        .set(h.free_pending_bytes.get().wrapping_add(bytes));
    h.free_pending_objects
        .set(h.free_pending_objects.get().wrapping_add(calls));
    if h.guard.get() > 0 && calls > 0 {
        GUARDED_FREE_BYTES.fetch_add(bytes, Ordering::Relaxed);
        GUARDED_FREE_OBJECTS.fetch_add(calls, Ordering::Relaxed);
    }
}
