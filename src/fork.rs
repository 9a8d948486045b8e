//! Fork safety: every table lock is held across `fork()` so the child inherits consistent
//! tables and unlocked locks (DESIGN.md section 7).

use crate::lock::ForkLock;
use core::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Registers the `pthread_atfork` handlers once per process.
pub(crate) fn install() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions with static lifetime that take no
    // arguments, as `pthread_atfork` requires.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

/// Every table lock, in one fixed order: the symbolizer and the symbol cache, stacks, live
/// blocks, the page pool, thread names, the totals' fold lock, the loader gate, and last the
/// tables' heap (taken while a table's lock is held, so it must come after all of theirs).
/// The cold path never holds two of these at once, so this order cannot deadlock with it.
/// Symbolization's locks come first: their holders allocate and free under the guard, and a
/// free of a page-aligned block looks the live table up (a shard lock), so they may take a
/// table lock after theirs; nothing holding a table lock symbolizes.
fn each_lock(f: &mut dyn FnMut(&'static dyn ForkLock)) {
    crate::symbolize::each_fork_lock(f);
    crate::stacks::each_fork_lock(f);
    crate::live::each_fork_lock(f);
    crate::pages::each_fork_lock(f);
    crate::threads::each_fork_lock(f);
    crate::totals::each_fork_lock(f);
    #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
    crate::unwind_cached::each_fork_lock(f);
    crate::internal_alloc::each_fork_lock(f);
}

extern "C" fn prepare() {
    crate::sampler::enter_fork();
    each_lock(&mut |lock| lock.lock_for_fork());
}

extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread just before `fork()` returned here.
    each_lock(&mut |lock| unsafe { lock.unlock_after_fork() });
    crate::sampler::leave_fork();
}

extern "C" fn child() {
    // SAFETY: the child of `fork()` has exactly one thread, this one, and no guard is alive
    // (the locks were taken by `prepare`, not through guards).
    each_lock(&mut |lock| unsafe { lock.reinit_in_child() });
    crate::sampler::leave_fork();
    crate::sampler::reseed_after_fork();
    // The parent's other threads are gone: their spares go back to the pool, their pending
    // stack sums to their sites, their totals (and the live bytes they held back) to the shared
    // counters, and their slots to the child's threads.
    crate::thread_slot::release_others_in_child(|slot| {
        crate::pages::close_slot(slot);
        crate::stacks::close_slot(slot);
        crate::totals::fold_slot(slot);
    });
}
