//! Read-modify-writes on atomics that only one thread writes at a time.
//!
//! Some shared values have a single writer — a thread's own slot, or a bucket written only under
//! one lock — and readers elsewhere. The writer needs no locked instruction (`lock xadd`,
//! `xchg`: ~5–20 ns each on the cold path, more when the line is contended): a plain load and a
//! plain store are enough, and readers still never see a torn value.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
}
