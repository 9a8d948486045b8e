//! A thread's last recorded stack, so that recording it again skips the stack table's lock.
//!
//! Programs sample the same stack many times in a row (a loop, a hot call path). Recording a
//! sample into the table takes a shard lock, a hash and a lookup, and when two threads record one
//! stack at once they meet on that lock (two threads in `LeakCheck`s, one stack: ~940 ns a pair,
//! `RawMutex::lock_slow` 19 % of the run). So each thread remembers the stack it recorded last;
//! a repeat only adds the sample's weights to the thread's *pending* sums, in a slot of its own,
//! with plain stores. The pending sums go into the site under its shard lock when the thread
//! records another stack, every [`MAX_PENDING_SAMPLES`] samples, and when it exits.
//!
//! Snapshots stay exact: [`for_each_pending`] lets `stacks::collect` add every thread's pending
//! sums to their sites while it holds the shard lock that the owner also takes to flush them, so
//! a sample is seen either in the site or in the pending sums, never in both or neither. Each
//! slot is a sequence lock (one writer, its owner), so a reader never sees a torn update. A
//! cached stack is never evicted ([`for_each_pending`] reports it even with nothing pending).
//! Pending sums sit in the entry of the thread's `thread_slot`; a thread without one records
//! every sample the long way.

use crate::record::live_record::StackId;
use crate::record::weights::SampleInfo;
use crate::sys::single_writer::{seq_read, seq_write};
use crate::sys::thread_slot::{self, MAX_THREAD_SLOTS};
use crate::unwind::capture::MAX_STACK_DEPTH;
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
/// Samples a thread adds to its pending sums before it flushes them into the site.
pub(crate) const MAX_PENDING_SAMPLES: u64 = 256;

/// One thread's pending sums, published for `collect`. Written only by its owner.
#[repr(align(128))]
struct Slot {
    /// Even when stable, odd while the owner writes.
    seq: AtomicU64,
    /// The cached stack (0 = none; stack ids are never 0).
    id: AtomicU32,
    /// The owner's thread-share slot in that site.
    share: AtomicU32,
    objects: AtomicU64,
    bytes: AtomicU64,
    samples: AtomicU64,
}

static SLOTS: [Slot; MAX_THREAD_SLOTS] = [const {
    Slot {
        seq: AtomicU64::new(0),
        id: AtomicU32::new(0),
        share: AtomicU32::new(0),
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        samples: AtomicU64::new(0),
    }
}; MAX_THREAD_SLOTS];

/// A thread's pending sums for one stack, in fixed point like the site's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingSums {
    pub id: StackId,
    pub share: u8,
    pub objects: u64,
    pub bytes: u64,
    pub samples: u64,
}

impl Slot {
    /// Owner only: publishes new values under the sequence lock.
    fn write(&self, id: StackId, share: u8, objects: u64, bytes: u64, samples: u64) {
        seq_write(&self.seq, || {
            self.id.store(id, Ordering::Relaxed);
            self.share.store(share as u32, Ordering::Relaxed);
            self.objects.store(objects, Ordering::Relaxed);
            self.bytes.store(bytes, Ordering::Relaxed);
            self.samples.store(samples, Ordering::Relaxed);
        })
    }

    /// Any thread: a consistent copy, or an unchecked one after a bounded number of retries
    /// (a slot whose owner was mid-write at `fork()` stays odd for ever in the child).
    fn read(&self) -> PendingSums {
        let load = || PendingSums {
            id: self.id.load(Ordering::Relaxed),
            share: self.share.load(Ordering::Relaxed) as u8,
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
        };
        seq_read(&self.seq, load).unwrap_or_else(load)
    }
}

/// The calling thread's cache.
struct Cache {
    len: Cell<usize>,
    frames: UnsafeCell<[usize; MAX_STACK_DEPTH]>,
}

thread_local! {
    // `const` and without `Drop`: usable from any allocation, including during teardown.
    static CACHE: Cache = const {
        Cache {
            len: Cell::new(0),
            frames: UnsafeCell::new([0; MAX_STACK_DEPTH]),
        }
    };
}

fn own_slot() -> Option<&'static Slot> {
    SLOTS.get(thread_slot::current()?)
}

/// Records a repeat of the thread's cached stack without a lock: its id and the thread's share
/// slot there, or `None` if `frames` is not the cached stack (or the pending sums are full).
pub(crate) fn record_repeat(frames: &[usize], sample: &SampleInfo) -> Option<(StackId, u8)> {
    CACHE.with(|c| {
        let slot = own_slot()?;
        if c.len.get() != frames.len() {
            return None;
        }
        // SAFETY: only this thread touches its cache's frames, and no reference to them is held
        // across calls.
        let cached = unsafe { &*c.frames.get() };
        if cached.get(..frames.len())? != frames {
            return None;
        }
        let id = slot.id.load(Ordering::Relaxed);
        let samples = slot.samples.load(Ordering::Relaxed);
        if id == 0 || samples >= MAX_PENDING_SAMPLES {
            return None;
        }
        let objects = slot
            .objects
            .load(Ordering::Relaxed)
            .checked_add(sample.w_objects)?;
        let bytes = slot
            .bytes
            .load(Ordering::Relaxed)
            .checked_add(sample.w_bytes)?;
        let share = slot.share.load(Ordering::Relaxed) as u8;
        slot.write(id, share, objects, bytes, samples + 1);
        Some((id, share))
    })
}

/// The shard-independent id of the stack the calling thread has pending sums for, if any.
pub(crate) fn pending_id() -> Option<StackId> {
    pending_id_of(thread_slot::current()?)
}

/// Hands the calling thread's pending sums to `add` and zeroes them. The caller holds the lock
/// of the shard of their stack ([`pending_id`]).
pub(crate) fn flush_pending(add: impl FnOnce(&PendingSums)) {
    if let Some(slot) = own_slot() {
        flush_slot(slot, add);
    }
}

/// Zeroes `slot`'s pending sums after handing them to `add`. Only the slot's writer calls it.
fn flush_slot(slot: &Slot, add: impl FnOnce(&PendingSums)) {
    let p = slot.read();
    if p.samples == 0 {
        return;
    }
    add(&p);
    slot.write(p.id, p.share, 0, 0, 0);
}

/// Makes `frames` the calling thread's cached stack (its pending sums must be flushed).
pub(crate) fn remember(frames: &[usize], id: StackId, share: u8) {
    CACHE.with(|c| {
        let Some(slot) = own_slot() else {
            return;
        };
        if slot.samples.load(Ordering::Relaxed) != 0 || frames.len() > MAX_STACK_DEPTH {
            return;
        }
        // SAFETY: only this thread touches its cache's frames; no other reference is alive.
        let cached = unsafe { &mut *c.frames.get() };
        if let Some(dst) = cached.get_mut(..frames.len()) {
            dst.copy_from_slice(frames);
            c.len.set(frames.len());
            slot.write(id, share, 0, 0, 0);
        }
    })
}

/// The pending sums of `slot`, whose thread is exiting, if any; the slot is emptied after `add`
/// has them. Called by the exiting thread (the slot's last writer) with the stack's shard lock
/// held, as for [`flush_pending`] — or, in the child of `fork()`, for a thread that is gone.
pub(crate) fn close_slot(slot: usize, add: impl FnOnce(&PendingSums)) {
    if let Some(slot) = SLOTS.get(slot) {
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq % 2 == 1 {
            // Only in a forked child: the thread was writing when the parent forked. Its sums
            // are torn and are dropped; the count is made even again for the slot's next owner.
            slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        } else {
            flush_slot(slot, add);
        }
        slot.write(0, 0, 0, 0, 0);
    }
}

/// The stack whose pending sums `slot` holds, if any (see [`close_slot`]).
pub(crate) fn pending_id_of(slot: usize) -> Option<StackId> {
    let slot = SLOTS.get(slot)?;
    (slot.samples.load(Ordering::Relaxed) > 0).then(|| slot.id.load(Ordering::Relaxed))
}

/// Calls `f` with every thread's cached stack and pending sums (sums may be zero).
pub(crate) fn for_each_pending(mut f: impl FnMut(&PendingSums)) {
    thread_slot::for_each_claimed(|slot| {
        if let Some(p) = SLOTS.get(slot).map(Slot::read)
            && p.id != 0
        {
            f(&p);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_a_slot_left_mid_write_drops_its_sums_and_evens_the_count() {
        // As in a forked child whose parent forked while that slot's thread was writing. The
        // last slot: no unit test's thread gets that far.
        let index = MAX_THREAD_SLOTS - 1;
        let slot = &SLOTS[index];
        slot.write(7, 1, 10, 100, 1);
        slot.seq.fetch_add(1, Ordering::Relaxed);
        let mut handed = None;
        close_slot(index, |p| handed = Some(p.samples));
        assert_eq!(handed, None, "torn sums are not handed on");
        assert_eq!(slot.seq.load(Ordering::Relaxed) % 2, 0, "even again");
        let p = slot.read();
        assert_eq!((p.id, p.samples), (0, 0), "emptied");
        // A whole write is handed on as before.
        slot.write(7, 1, 10, 100, 1);
        close_slot(index, |p| handed = Some(p.samples));
        assert_eq!(handed, Some(1));
    }

    fn sample(bytes: u64) -> SampleInfo {
        SampleInfo {
            w_objects: 1 << 16,
            w_bytes: bytes << 16,
            exact: true,
            tag: 0,
            thread: 1,
        }
    }

    #[test]
    fn repeats_add_up_pending_until_flushed() {
        std::thread::spawn(|| {
            // What registering the thread does (the wrapper is not the global allocator here).
            thread_slot::claim();
            let frames = [0x1000usize, 0x2000, 0x3000];
            assert_eq!(
                record_repeat(&frames, &sample(8)),
                None,
                "nothing cached yet"
            );
            // A made-up stack id, unlikely to clash with another test thread's.
            let id: StackId = 0x7fff_fff0;
            remember(&frames, id, 3);
            assert_eq!(pending_id(), None);
            for _ in 0..10 {
                assert_eq!(record_repeat(&frames, &sample(8)), Some((id, 3)));
            }
            assert_eq!(
                record_repeat(&frames[..2], &sample(8)),
                None,
                "another stack"
            );
            assert_eq!(pending_id(), Some(id));
            let mut seen = None;
            for_each_pending(|p| {
                if p.id == id {
                    seen = Some(*p);
                }
            });
            let p = seen.expect("published");
            assert_eq!(
                (p.objects, p.bytes, p.samples, p.share),
                (10 << 16, 80 << 16, 10, 3)
            );
            let mut flushed = None;
            flush_pending(|p| flushed = Some(*p));
            assert_eq!(flushed.map(|p| p.samples), Some(10));
            assert_eq!(pending_id(), None, "zero after a flush");
            // The pending sums are bounded: past the limit a repeat takes the long way.
            for _ in 0..MAX_PENDING_SAMPLES {
                assert!(record_repeat(&frames, &sample(8)).is_some());
            }
            assert_eq!(record_repeat(&frames, &sample(8)), None);
            let mut at_exit = None;
            thread_slot::release(|slot| close_slot(slot, |p| at_exit = Some(p.samples)));
            assert_eq!(at_exit, Some(MAX_PENDING_SAMPLES), "handed over at exit");
            assert_eq!(
                record_repeat(&frames, &sample(8)),
                None,
                "no cache after exit"
            );
        })
        .join()
        .unwrap();
    }
}
