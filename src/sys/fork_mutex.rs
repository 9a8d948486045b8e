//! A mutex for the profiler's own tables that a forked child can re-initialise.
//!
//! A mutex cannot be reset after `fork()`: if another thread of the parent held it (or waited
//! on it), the child's copy stays locked for ever. This wrapper keeps the raw lock in an
//! `UnsafeCell` so the `pthread_atfork` child handler can overwrite it with a fresh one.
//!
//! On Linux the raw lock is a futex word that never allocates. `parking_lot`'s, which waits in
//! a process-wide table it grows (and never frees) as more threads wait at once, allocated
//! that table inside the program's thread storms, in a waiting thread's malloc arena above
//! the program's blocks: after the storm glibc could not give back the memory below it (RSS
//! after a 32-thread storm with everything freed: 15-90 MB with it, 22-32 MB without, plain
//! `System` 11-48 MB).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use parking_lot::lock_api::{GuardNoSend, RawMutex as _};

#[cfg(target_os = "linux")]
type Raw = futex::FutexMutex;
#[cfg(not(target_os = "linux"))]
type Raw = parking_lot::RawMutex;

#[cfg(target_os = "linux")]
mod futex {
    use core::sync::atomic::{AtomicU32, Ordering};
    use parking_lot::lock_api::{GuardNoSend, RawMutex};

    /// Ulrich Drepper's futex mutex ("Futexes Are Tricky", mutex 2): 0 unlocked, 1 locked,
    /// 2 locked with waiters.
    pub(crate) struct FutexMutex(AtomicU32);

    // SAFETY: `lock` and `try_lock` return only once this thread moved the word from 0, and
    // `unlock` (called by the holder) sets it back to 0: one holder at a time.
    unsafe impl RawMutex for FutexMutex {
        #[allow(clippy::declare_interior_mutable_const)]
        const INIT: Self = FutexMutex(AtomicU32::new(0));
        type Guard = GuardNoSend;

        fn lock(&self) -> GuardNoSend {
            if self
                .0
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                while self.0.swap(2, Ordering::Acquire) != 0 {
                    // SAFETY: waits while the word is 2; the address is a live `u32`. A spurious
                    // or interrupted return only goes round the loop again.
                    unsafe {
                        libc::syscall(
                            libc::SYS_futex,
                            self.0.as_ptr(),
                            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                            2u32,
                            core::ptr::null::<libc::timespec>(),
                        )
                    };
                }
            }
            GuardNoSend::new()
        }

        fn try_lock(&self) -> Option<GuardNoSend> {
            self.0
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
                .then(GuardNoSend::new)
        }

        unsafe fn unlock(&self, _guard: GuardNoSend) {
            if self.0.swap(0, Ordering::Release) == 2 {
                // SAFETY: wakes one waiter on a live `u32`; no memory is touched.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        self.0.as_ptr(),
                        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                        1u32,
                    )
                };
            }
        }

        fn is_locked(&self) -> bool {
            self.0.load(Ordering::Relaxed) != 0
        }
    }
}

/// A mutex over `T` whose raw lock can be re-created in a forked child.
///
/// Aligned to 128 bytes (two cache lines, for the adjacent-line prefetcher): the tables are
/// arrays of these shards, and two threads working on neighbouring shards must not bounce one
/// line between cores.
#[repr(align(128))]
pub(crate) struct ForkMutex<T> {
    raw: UnsafeCell<Raw>,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `raw`, exactly like `parking_lot::Mutex`; the only
// other access to `raw` is `reinit_in_child`, which runs while the process has a single thread.
unsafe impl<T: Send> Sync for ForkMutex<T> {}
// SAFETY: moving the mutex moves the data; `T: Send` makes that sound.
unsafe impl<T: Send> Send for ForkMutex<T> {}

impl<T> ForkMutex<T> {
    pub(crate) const fn new(data: T) -> Self {
        Self {
            raw: UnsafeCell::new(Raw::INIT),
            data: UnsafeCell::new(data),
        }
    }

    fn raw(&self) -> &Raw {
        // SAFETY: `raw` is only written by `reinit_in_child`, when no other thread exists and no
        // guard is alive, so a shared reference here never aliases a write.
        unsafe { &*self.raw.get() }
    }

    pub(crate) fn lock(&self) -> ForkMutexGuard<'_, T> {
        let _state: GuardNoSend = self.raw().lock();
        ForkMutexGuard { mutex: self }
    }

    /// [`lock`](Self::lock) for a caller that holds no other `ForkMutex`, which first lets a
    /// `fork()` under way take its locks (see [`fork_pending`]): a thread that takes this lock
    /// again and again would otherwise keep the unfair lock from the prepare handler.
    pub(crate) fn lock_outermost(&self) -> ForkMutexGuard<'_, T> {
        wait_for_fork();
        self.lock()
    }

    /// Locks and forgets the guard: the `pthread_atfork` prepare handler holds every table lock
    /// across `fork()` so that no table is mid-update in the child.
    pub(crate) fn lock_for_fork(&self) {
        let _state: GuardNoSend = self.raw().lock();
    }

    /// Releases a lock taken by [`lock_for_fork`](Self::lock_for_fork), in the parent.
    ///
    /// # Safety
    /// Must pair with one `lock_for_fork` on this thread.
    pub(crate) unsafe fn unlock_after_fork(&self) {
        // SAFETY: the caller guarantees this thread holds the lock via `lock_for_fork`.
        unsafe { self.raw().unlock(GuardNoSend::new()) }
    }

    /// Replaces the raw lock with a fresh, unlocked one, in the child after `fork()`.
    ///
    /// # Safety
    /// Only in the child handler of `pthread_atfork`: the process has one thread and no guard.
    pub(crate) unsafe fn reinit_in_child(&self) {
        // SAFETY: single-threaded child, no outstanding guard or reference to `raw`.
        unsafe { self.raw.get().write(Raw::INIT) }
    }
}

/// Set from the `fork()` prepare handler to the parent or child handler: callers of
/// [`ForkMutex::lock_outermost`] wait meanwhile. Measured: a thread symbolizing in a loop kept
/// a forking thread waiting for the symbolizer's lock for seconds a fork.
#[cfg(target_os = "linux")]
static FORK_PENDING: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Marks a `fork()` as under way (`true`, in the prepare handler, before its locks) or done
/// (`false`, in the parent and the child handler), waking the threads that waited.
pub(crate) fn fork_pending(pending: bool) {
    #[cfg(target_os = "linux")]
    {
        use core::sync::atomic::Ordering;
        FORK_PENDING.store(u32::from(pending), Ordering::Release);
        if !pending {
            // SAFETY: wakes every waiter on a live `u32`; no memory is touched.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    FORK_PENDING.as_ptr(),
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    i32::MAX,
                )
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pending;
}

/// Waits while a `fork()` is under way (elsewhere than on Linux: returns at once).
fn wait_for_fork() {
    #[cfg(target_os = "linux")]
    {
        use core::sync::atomic::Ordering;
        while FORK_PENDING.load(Ordering::Acquire) != 0 {
            // SAFETY: waits while the word is 1; the address is a live `u32`. A spurious or
            // interrupted return only goes round the loop again; the wake comes from the
            // parent or child handler, which always runs after the prepare handler.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    FORK_PENDING.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    1u32,
                    core::ptr::null::<libc::timespec>(),
                )
            };
        }
    }
}

/// Guard of a [`ForkMutex`]; unlocks on drop.
pub(crate) struct ForkMutexGuard<'a, T> {
    mutex: &'a ForkMutex<T>,
}

impl<T> Deref for ForkMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held, so no other reference to `data` exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for ForkMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for ForkMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard was created by `lock`, so this thread holds the lock.
        unsafe { self.mutex.raw().unlock(GuardNoSend::new()) }
    }
}

/// A lock the `pthread_atfork` handlers hold across `fork()` (see `record::lifecycle`).
pub(crate) trait ForkLock: Sync {
    /// Locks without a guard, in the prepare handler.
    fn lock_for_fork(&self);
    /// Unlocks in the parent.
    ///
    /// # Safety
    /// Must pair with one `lock_for_fork` on this thread.
    unsafe fn unlock_after_fork(&self);
    /// Re-creates the lock unlocked, in the child.
    ///
    /// # Safety
    /// Only in the single-threaded child of `fork()`.
    unsafe fn reinit_in_child(&self);
}

impl<T: Send> ForkLock for ForkMutex<T> {
    fn lock_for_fork(&self) {
        ForkMutex::lock_for_fork(self)
    }
    unsafe fn unlock_after_fork(&self) {
        // SAFETY: forwarded contract.
        unsafe { ForkMutex::unlock_after_fork(self) }
    }
    unsafe fn reinit_in_child(&self) {
        // SAFETY: forwarded contract.
        unsafe { ForkMutex::reinit_in_child(self) }
    }
}
