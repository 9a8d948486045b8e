//! Read-modify-writes on atomics that only one thread writes at a time.
//!
//! Some shared values have a single writer — a thread's own slot, or a bucket written only under
//! one lock — and readers elsewhere. The writer needs no locked instruction (`lock xadd`,
//! `xchg`: ~5–20 ns each on the cold path, more when the line is contended): a plain load and a
//! plain store are enough, and readers still never see a torn value.
//!
//! Values of several words written that way are published under a sequence count
//! ([`seq_write`], [`seq_read`]): odd while the writer is at it, so a reader that sees the
//! same even count before and after its read saw one write's values, whole.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// An atomic updated by its only writer with a load and a store.
pub(crate) trait SingleWriter {
    /// The atomic's value type.
    type Value: Copy;

    /// Stores `f(old)` and returns `old`. The caller must be the only thread that writes this
    /// atomic until the call returns (its owner, or the holder of the lock guarding it); if it
    /// is not, an update may be lost (never a memory-safety problem).
    fn update_unshared(&self, f: impl FnOnce(Self::Value) -> Self::Value) -> Self::Value;
}

macro_rules! single_writer {
    ($($atomic:ty => $value:ty),*) => {$(
        impl SingleWriter for $atomic {
            type Value = $value;

            #[inline(always)]
            fn update_unshared(&self, f: impl FnOnce($value) -> $value) -> $value {
                let old = self.load(Ordering::Relaxed);
                self.store(f(old), Ordering::Relaxed);
                old
            }
        }
    )*};
}

single_writer!(AtomicU32 => u32, AtomicU64 => u64, AtomicUsize => usize);

/// Runs `write` (relaxed stores to the words `seq` guards) with `seq` odd. The caller is the
/// words' only writer.
pub(crate) fn seq_write(seq: &AtomicU64, write: impl FnOnce()) {
    let before = seq.update_unshared(|s| s.wrapping_add(1));
    fence(Ordering::Release);
    write();
    seq.store(before.wrapping_add(2), Ordering::Release);
}

/// Runs `read` (relaxed loads of the words `seq` guards) until it ran while no write was under
/// way, and returns what it read; `None` after a bounded number of tries (a writer interrupted
/// by `fork()` leaves `seq` odd for ever in the child).
pub(crate) fn seq_read<T>(seq: &AtomicU64, read: impl Fn() -> T) -> Option<T> {
    for _ in 0..1000 {
        let before = seq.load(Ordering::Acquire);
        let value = read();
        fence(Ordering::Acquire);
        if before.is_multiple_of(2) && seq.load(Ordering::Relaxed) == before {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_returns_the_old_value_and_stores_the_new() {
        let a = AtomicU32::new(5);
        assert_eq!(a.update_unshared(|v| v.wrapping_add_signed(-2)), 5);
        assert_eq!(a.load(Ordering::Relaxed), 3);
        let b = AtomicUsize::new(7);
        assert_eq!(b.update_unshared(|_| 0), 7);
        assert_eq!(b.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_sequenced_read_sees_a_whole_write_and_gives_up_on_a_stuck_one() {
        let seq = AtomicU64::new(0);
        let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
        seq_write(&seq, || {
            a.store(1, Ordering::Relaxed);
            b.store(2, Ordering::Relaxed);
        });
        let read = || (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        assert_eq!(seq_read(&seq, read), Some((1, 2)));
        assert_eq!(seq.load(Ordering::Relaxed), 2, "even again after the write");
        seq.store(3, Ordering::Relaxed); // a writer that never finished
        assert_eq!(seq_read(&seq, read), None);
    }
}
