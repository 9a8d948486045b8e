//! A small index of its own for each running thread, for per-thread state that other threads
//! must be able to read.
//!
//! Two things a thread keeps are read by others: its spare page (`pages`, counted in the
//! profiler's own bytes) and its pending stack sums (`stack_cache`, added up by every snapshot).
//! Both live in static arrays, one entry per slot, and a thread finds its entry by the index it
//! claimed here. A static array, not a list of thread-local addresses, so that readers never
//! follow a pointer into another thread's thread-local memory.
//!
//! A thread claims a slot once its exit hook is registered (the hook gives the slot back), so a
//! slot can never outlive its thread. The first [`MAX_THREAD_SLOTS`] threads alive at once get
//! one; later threads go without (their samples take the long way, still counted exactly).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Threads that may hold a slot at once.
pub(crate) const MAX_THREAD_SLOTS: usize = 512;

static CLAIMED: [AtomicBool; MAX_THREAD_SLOTS] =
    [const { AtomicBool::new(false) }; MAX_THREAD_SLOTS];

const NONE: u32 = u32::MAX;

thread_local! {
    // `const` and without `Drop`: read from any allocation, including during teardown.
    static MINE: Cell<u32> = const { Cell::new(NONE) };
}

/// Claims a free slot for the calling thread, if there is one and it has none. Call only once
/// the thread's exit hook is registered: the hook must [`release`] it.
pub(crate) fn claim() {
    let _ = MINE.try_with(|mine| {
        if mine.get() != NONE {
            return;
        }
        let free = CLAIMED.iter().position(|c| {
            !c.load(Ordering::Relaxed)
                && c.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        });
        if let Some(i) = free {
            mine.set(i as u32);
        }
    });
}

/// The calling thread's slot, if it holds one.
#[inline]
pub(crate) fn current() -> Option<usize> {
    match MINE.try_with(Cell::get) {
        Ok(i) if i != NONE => Some(i as usize),
        _ => None,
    }
}

/// Gives the calling thread's slot back, at thread exit: the thread stops using it first, then
/// `close` empties each user's entry, then the slot is free for another thread.
pub(crate) fn release(close: impl FnOnce(usize)) {
    let Ok(i) = MINE.try_with(|mine| mine.replace(NONE)) else {
        return;
    };
    if let Some(claimed) = CLAIMED.get(i as usize) {
        close(i as usize);
        claimed.store(false, Ordering::Release);
    }
}

/// In the child of `fork()`: gives back every slot but the calling thread's, after `close`
/// empties each user's entry. The threads that held them do not exist in the child, and would
/// otherwise keep them (and what they hold back from the shared counters) for ever.
pub(crate) fn release_others_in_child(mut close: impl FnMut(usize)) {
    let mine = current();
    for (i, claimed) in CLAIMED.iter().enumerate() {
        if Some(i) != mine && claimed.load(Ordering::Acquire) {
            close(i);
            claimed.store(false, Ordering::Release);
        }
    }
}

/// Whether some thread holds slot `i`.
#[cfg(test)]
pub(crate) fn is_claimed(i: usize) -> bool {
    CLAIMED.get(i).is_some_and(|c| c.load(Ordering::Acquire))
}

/// Calls `f` with every slot some thread holds.
pub(crate) fn for_each_claimed(mut f: impl FnMut(usize)) {
    for (i, claimed) in CLAIMED.iter().enumerate() {
        if claimed.load(Ordering::Acquire) {
            f(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_while_held_and_reused_after_release() {
        let barrier = &std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let take = || {
                s.spawn(move || {
                    claim();
                    let mine = current();
                    claim();
                    assert_eq!(current(), mine, "one slot per thread");
                    barrier.wait();
                    let mut seen = false;
                    for_each_claimed(|i| seen |= Some(i) == mine);
                    assert!(seen, "listed while held");
                    let mut closed = None;
                    release(|i| closed = Some(i));
                    assert_eq!(closed, mine);
                    assert_eq!(current(), None, "gone after release");
                    mine
                })
            };
            let (a, b) = (take(), take());
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a.is_some() && b.is_some());
        assert_ne!(a, b, "two live threads never share a slot");
    }
}
