//! Fork safety: every table lock is held across `fork()` so the child inherits consistent
//! tables and unlocked locks (DESIGN.md section 7).

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

/// Locks in one fixed order: stacks, live blocks, thread names, the loader gate. The cold path
/// never holds two of these at once, so this order cannot deadlock with it.
extern "C" fn prepare() {
    crate::stacks::lock_for_fork();
    crate::live::lock_for_fork();
    crate::threads::lock_for_fork();
    #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
    crate::unwind_cached::lock_for_fork();
}

extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread just before `fork()` returned here.
    unsafe {
        #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
        crate::unwind_cached::unlock_after_fork();
        crate::threads::unlock_after_fork();
        crate::live::unlock_after_fork();
        crate::stacks::unlock_after_fork();
    }
}

extern "C" fn child() {
    // SAFETY: the child of `fork()` has exactly one thread, this one, and no guard is alive
    // (the locks were taken by `prepare`, not through guards).
    unsafe {
        #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
        crate::unwind_cached::reinit_in_child();
        crate::threads::reinit_in_child();
        crate::live::reinit_in_child();
        crate::stacks::reinit_in_child();
    }
    crate::sampler::reseed_after_fork();
}
