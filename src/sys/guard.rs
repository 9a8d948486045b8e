//! The reentrancy guard: while a thread holds it, its allocations pass straight to the inner
//! allocator, unsampled, and do not advance the sampling process; what they allocate and free
//! is counted as the profiler's own. Also the `fork()` window, during which the forking thread
//! holds every table lock.
//!
//! Entering and an untouched release (nothing allocated or freed, the configuration unchanged)
//! are this file's alone. Any other release settles the thread's batched totals, which is the
//! recording side's arithmetic: it registers that work here ([`on_release`]) rather than this
//! floor importing it.

use crate::sys::thread_state::{Hot, charge_frees, with_hot};
use core::sync::atomic::{AtomicPtr, Ordering};

/// While alive, every allocation of this thread passes straight to the inner allocator,
/// unsampled, and does not advance the sampling process.
pub(crate) struct Guard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// What a release of the outermost guard runs unless it is untouched: a
/// `fn(&Hot, untouched: bool)`, stored as a pointer; null until the recording side registers it.
static RELEASE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers what the release of an outermost guard that allocated or freed runs. Called by the
/// recording side on its cold path, before any guard can have been touched; a load when already
/// registered, so the shared line stays unwritten.
#[inline]
pub(crate) fn on_release(release: fn(&Hot, bool)) {
    let p = release as *mut ();
    if RELEASE.load(Ordering::Relaxed) != p {
        RELEASE.store(p, Ordering::Release);
    }
}

/// Enters the reentrancy guard (nestable).
pub(crate) fn enter_guard() -> Guard {
    with_hot(|h| {
        if h.guard.get() == 0 {
            // The program's countdown is put aside and a zero one put in its place, so the
            // guard's first allocation (rare: a table growing, parking_lot under contention)
            // takes the cold path, which counts it as the profiler's and arms for the guard.
            // Nothing is charged: the program's bytes since its arm point stay in the saved
            // pair, and a guard that allocates nothing gives it back untouched (two cold
            // `charge`s a guard fewer; a sample and its free each take a guard).
            h.saved_countdown
                .set((h.countdown.get(), h.armed.get(), h.config_gen.get()));
            h.countdown.set(0);
            h.armed.set(0);
            // The frees so far are the program's; from here until the drop, the guard's.
            charge_frees(h);
        }
        h.guard.set(h.guard.get() + 1);
    });
    Guard {
        _not_send: core::marker::PhantomData,
    }
}

/// Gives the program its countdown back, as it was when the outermost guard was entered.
fn restore(h: &Hot) {
    let (countdown, armed, _) = h.saved_countdown.get();
    h.guard.set(0);
    h.countdown.set(countdown);
    h.armed.set(armed);
}

impl Drop for Guard {
    fn drop(&mut self) {
        with_hot(|h| {
            if h.guard.get() != 1 {
                h.guard.set(h.guard.get().saturating_sub(1));
                return;
            }
            let untouched = h.countdown.get() == 0
                && h.armed.get() == 0
                && h.free_budget.get() == h.free_armed.get();
            let release = RELEASE.load(Ordering::Acquire);
            if (untouched && h.saved_countdown.get().2 == h.config_gen.get()) || release.is_null() {
                // (Null only where nothing ever reached the recording side's cold path, which
                // is also the only code that arms a countdown: there is nothing to settle.)
                restore(h);
                return;
            }
            // SAFETY: a non-null `RELEASE` was stored by `on_release` from a
            // `fn(&Hot, bool)`; function pointers and data pointers have the same size here.
            let release = unsafe { core::mem::transmute::<*mut (), fn(&Hot, bool)>(release) };
            release(h, untouched);
        });
    }
}

/// Enters the guard for the `fork()` window: from the prepare handler, which is about to take
/// every table lock, to the parent or child handler. Allocations in between (parking_lot may
/// allocate while unlocking a contended lock) go straight to the inner allocator.
pub(crate) fn enter_fork() {
    core::mem::forget(enter_guard());
    with_hot(|h| h.forking.set(true));
}

/// Leaves the window [`enter_fork`] opened (in the parent, or in the child, whose thread-local
/// state is a copy of the parent's).
pub(crate) fn leave_fork() {
    with_hot(|h| h.forking.set(false));
    drop(Guard {
        _not_send: core::marker::PhantomData,
    });
}

/// Whether this thread is inside the `fork()` window and holds every table lock.
pub(crate) fn forking() -> bool {
    with_hot(|h| h.forking.get())
}

/// Whether the calling thread is inside the profiler (the guard is held).
pub(crate) fn in_guard() -> bool {
    with_hot(|h| h.guard.get() > 0)
}
