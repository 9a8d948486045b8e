//! Fork safety: every table lock is held across `fork()` so the child inherits consistent
//! tables and unlocked locks (docs/architecture.md, "Rules of the recording side").

use crate::sys::fork_mutex::ForkLock;
use crate::sys::thread_state::with_hot;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Locks of the reading side (the symbolizer's), taken ahead of every table's; null until
/// their owner registers them ([`register_outer_locks`]). The record side never imports the
/// reading side: it learns of these locks this way.
static OUTER: AtomicPtr<&'static [&'static dyn ForkLock]> = AtomicPtr::new(core::ptr::null_mut());

/// Registers `locks` to be taken (in order) ahead of every table lock across `fork()`: their
/// holders may take a table lock after theirs. Call it before any of them is first taken; the
/// first registration stays (there is one such owner, the symbolizer).
pub(crate) fn register_outer_locks(locks: &'static &'static [&'static dyn ForkLock]) {
    let ptr = locks as *const &'static [&'static dyn ForkLock] as *mut _;
    let _ = OUTER.compare_exchange(
        core::ptr::null_mut(),
        ptr,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

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

/// Registers the calling thread on its first cold path: its index, the `fork()` handlers, its
/// name, and its exit hook with a thread slot. Called by the wrapper before
/// `countdown::decide`, so the thread's first batch is published into its slot; waits while
/// the guard is held (the profiler's own work may hold its locks).
#[inline]
pub(crate) fn register_thread() {
    if !with_hot(|h| h.registered.get() || h.guard.get() > 0) {
        register_cold();
    }
}

#[cold]
#[inline(never)]
fn register_cold() {
    with_hot(|h| h.registered.set(true));
    // Registering allocates (the registry may grow, parking_lot sets up its parking data
    // under contention, the destructor list may grow). The real guard, not a bare depth bump,
    // so that the allocations which pass the fast path inside it are charged as the
    // profiler's own when it is dropped, not as the program's at the next arm point.
    let _guard = crate::sys::guard::enter_guard();
    install();
    crate::record::thread_names::register(crate::record::countdown::assign_thread_index());
    if exit_hook_armed() {
        // Only a thread whose exit hook will run may hold a slot: the hook releases it.
        crate::sys::thread_slot::claim();
    }
    #[cfg(test)]
    if let Some(registration_allocates) = ON_REGISTER.with(|c| c.get()) {
        registration_allocates();
    }
}

#[cfg(test)]
thread_local! {
    /// Stands in for allocations made while a thread registers (in unit tests the
    /// wrapper is not the global allocator, so nothing else would pass through here).
    pub(crate) static ON_REGISTER: core::cell::Cell<Option<fn()>> = const { core::cell::Cell::new(None) };
}

/// Every table lock, in one fixed order: the registered outer locks (the symbolizer and the
/// symbol cache), stacks, live
/// blocks, the page pool, thread names, the totals' fold lock, the loader gate, and last the
/// tables' heap (taken while a table's lock is held, so it must come after all of theirs).
/// The cold path never holds two of these at once, so this order cannot deadlock with it.
/// Symbolization's locks come first: their holders allocate and free under the guard, and a
/// free of a page-aligned block looks the live table up (a shard lock), so they may take a
/// table lock after theirs; nothing holding a table lock symbolizes.
fn each_lock(f: &mut dyn FnMut(&'static dyn ForkLock)) {
    // SAFETY: a non-null `OUTER` was stored from a `&'static` reference.
    if let Some(outer) = unsafe { OUTER.load(Ordering::Acquire).as_ref() } {
        for &lock in outer.iter() {
            f(lock);
        }
    }
    crate::record::stack_table::each_fork_lock(f);
    crate::record::live_table::each_fork_lock(f);
    crate::record::page_pool::each_fork_lock(f);
    crate::record::thread_names::each_fork_lock(f);
    crate::record::totals::each_fork_lock(f);
    #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
    crate::unwind::dwarf::each_fork_lock(f);
    crate::sys::table_alloc::each_fork_lock(f);
}

extern "C" fn prepare() {
    crate::sys::guard::enter_fork();
    crate::sys::fork_mutex::fork_pending(true);
    each_lock(&mut |lock| lock.lock_for_fork());
}

extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread just before `fork()` returned here.
    each_lock(&mut |lock| unsafe { lock.unlock_after_fork() });
    crate::sys::fork_mutex::fork_pending(false);
    crate::sys::guard::leave_fork();
}

extern "C" fn child() {
    // SAFETY: the child of `fork()` has exactly one thread, this one, and no guard is alive
    // (the locks were taken by `prepare`, not through guards).
    each_lock(&mut |lock| unsafe { lock.reinit_in_child() });
    crate::sys::fork_mutex::fork_pending(false);
    crate::sys::guard::leave_fork();
    crate::record::countdown::reseed_after_fork();
    // The parent's other threads are gone: their spares go back to the pool, their pending
    // stack sums to their sites, their totals (and the live bytes they held back) to the shared
    // counters, and their slots to the child's threads.
    crate::sys::thread_slot::release_others_in_child(|slot| {
        crate::record::page_pool::close_slot(slot);
        crate::record::stack_table::close_slot(slot);
        crate::record::totals::fold_slot(slot);
    });
}

thread_local! {
    /// Flushes the thread's batched totals when the thread exits.
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

/// Whether the calling thread's exit hook will run (first call: registers it). Only such a
/// thread may hold a thread slot: the hook releases it.
fn exit_hook_armed() -> bool {
    EXIT_HOOK.try_with(|_| {}).is_ok()
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        crate::record::countdown::flush_at_exit();
        // The slot is given up first (no spare kept, no repeat cached from here on), then its
        // spare and pending sums are handed back.
        crate::sys::thread_slot::release(|slot| {
            crate::record::page_pool::close_slot(slot);
            crate::record::stack_table::close_slot(slot);
            // Last: the thread published its final batch above, into the slot.
            crate::record::totals::fold_slot(slot);
        });
        crate::record::thread_names::mark_exited(crate::record::countdown::current_thread());
    }
}
