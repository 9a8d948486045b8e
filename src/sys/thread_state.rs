//! The hot per-thread state of the recording side: one `const`-initialised thread-local without
//! `Drop`, reachable from the very first allocation before `main` until the last one during
//! thread teardown, and the process-wide counts of what the reentrancy guard let through. The
//! record side's countdown (`record::countdown`) is the only code that changes it.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};
use rand::rngs::SmallRng;

/// Bytes allocated while the reentrancy guard was held: the profiler's own transient work.
pub(crate) static GUARDED_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_OBJECTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_FREED_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GUARDED_FREED_OBJECTS: AtomicU64 = AtomicU64::new(0);

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
    pub(crate) alloc_pending: Cell<u64>,
    /// Allocations counted at earlier arm points, not yet flushed.
    pub(crate) alloc_pending_count: Cell<u64>,
    /// Packed: bytes the thread may still free before its free totals must be flushed, and calls.
    pub(crate) free_budget: Cell<i64>,
    /// `free_budget` at the last arm point.
    pub(crate) free_armed: Cell<i64>,
    /// Freed bytes charged at earlier arm points, not yet flushed.
    pub(crate) free_pending: Cell<u64>,
    pub(crate) free_pending_count: Cell<u64>,
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
    pub(crate) rng: Cell<Option<SmallRng>>,
    /// The last sampled (size, interval) and its weights (w_count, w_bytes); size 0 = none.
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
            alloc_pending: Cell::new(0),
            alloc_pending_count: Cell::new(0),
            free_budget: Cell::new(0),
            free_armed: Cell::new(0),
            free_pending: Cell::new(0),
            free_pending_count: Cell::new(0),
            gap: Cell::new(0),
            gap_interval: Cell::new(0),
            config_gen: Cell::new(0),
            guard: Cell::new(0),
            scope: Cell::new(0),
            exiting: Cell::new(false),
            forking: Cell::new(false),
            thread: Cell::new(0),
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
pub(crate) fn guarded_bytes() -> u64 {
    GUARDED_BYTES.load(Ordering::Relaxed)
}

/// Allocations made while the reentrancy guard was held.
pub(crate) fn guarded_objects() -> u64 {
    GUARDED_OBJECTS.load(Ordering::Relaxed)
}

/// Bytes and blocks freed while the reentrancy guard was held.
pub(crate) fn guarded_frees() -> (u64, u64) {
    (
        GUARDED_FREED_BYTES.load(Ordering::Relaxed),
        GUARDED_FREED_OBJECTS.load(Ordering::Relaxed),
    )
}
