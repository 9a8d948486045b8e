//! [`CheckHandle`] and [`EnteredCheck`]: threads joining a check's scope.

use crate::record::countdown;
use crate::record::scopes;
use core::marker::PhantomData;

/// A `Send + Clone` handle on a [`LeakCheck`](crate::LeakCheck)'s scope, for the threads the code under test
/// hands work to.
///
/// A thread that [`enter`](Self::enter)s it is in the check's scope until the guard drops:
/// its allocations are recorded and reported by the check. Entering a check that has already
/// finished does nothing.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
/// let check = heapsampler::LeakCheck::start();
/// let handle = check.handle();
/// std::thread::scope(|s| {
///     s.spawn(handle.wrap(|| drop(vec![0u8; 10])));
/// });
/// check.assert_no_leaks();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckHandle {
    pub(super) tag: u32,
}

impl CheckHandle {
    /// The check whose scope the calling thread is in, if any (and if it can be shared).
    /// Lets library code that spawns workers pass the caller's check along.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// assert!(heapsampler::CheckHandle::current().is_none());
    /// let check = heapsampler::LeakCheck::start();
    /// assert_eq!(heapsampler::CheckHandle::current(), Some(check.handle()));
    /// # check.assert_no_leaks();
    /// ```
    pub fn current() -> Option<CheckHandle> {
        let tag = countdown::current_scope();
        scopes::is_active(tag).then_some(CheckHandle { tag })
    }

    /// Puts the calling thread in the check's scope until the returned guard drops.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let handle = check.handle();
    /// let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    /// let worker = std::thread::spawn(move || {
    ///     let _in_check = handle.enter();
    ///     for v in rx { drop(v) }
    /// });
    /// tx.send(vec![1, 2, 3]).unwrap();
    /// drop(tx);
    /// worker.join().unwrap();
    /// check.assert_no_leaks();
    /// ```
    pub fn enter(&self) -> EnteredCheck {
        if !scopes::is_active(self.tag) {
            return EnteredCheck {
                tag: 0,
                prev: 0,
                _not_send: PhantomData,
            };
        }
        let prev = countdown::enter_scope(self.tag);
        EnteredCheck {
            tag: self.tag,
            prev,
            _not_send: PhantomData,
        }
    }

    /// Wraps `f` so that it runs in the check's scope on whichever thread calls it (for
    /// `std::thread::spawn`, scoped threads, thread pools).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// let job = check.handle().wrap(|| Box::leak(Box::new(5u8)));
    /// std::thread::spawn(job).join().unwrap();
    /// assert_eq!(check.finish().leaked_bytes, 1);
    /// ```
    pub fn wrap<F, T>(self, f: F) -> impl FnOnce() -> T + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
    {
        move || {
            let _in_check = self.enter();
            f()
        }
    }

    /// Spawns a thread that runs `f` in the check's scope.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let check = heapsampler::LeakCheck::start();
    /// check.handle().spawn(|| drop(vec![0u8; 10])).join().unwrap();
    /// check.assert_no_leaks();
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> std::thread::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        std::thread::spawn(self.wrap(f))
    }
}

/// A thread's membership in a check's scope, from [`CheckHandle::enter`]; leaving on drop.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
/// let check = heapsampler::LeakCheck::start();
/// let handle = check.handle();
/// std::thread::spawn(move || assert!(handle.enter().is_recording())).join().unwrap();
/// # check.assert_no_leaks();
/// ```
#[derive(Debug)]
pub struct EnteredCheck {
    tag: u32,
    prev: u32,
    _not_send: PhantomData<*const ()>,
}

impl EnteredCheck {
    /// Whether the thread is being recorded (the check had not finished when entered).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
    /// let handle = heapsampler::LeakCheck::start().handle(); // the check ends at once
    /// assert!(!handle.enter().is_recording());
    /// ```
    pub fn is_recording(&self) -> bool {
        self.tag != 0 && scopes::is_active(self.tag)
    }
}

impl Drop for EnteredCheck {
    fn drop(&mut self) {
        if self.tag != 0 && countdown::current_scope() == self.tag {
            let back = if scopes::is_active(self.prev) {
                self.prev
            } else {
                0
            };
            countdown::leave_scope(back);
        }
    }
}
