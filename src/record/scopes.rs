//! The table of active leak-check scopes and the allocator's hooks into it.
//!
//! Every check owns one slot of a fixed array for its lifetime, and its tag says which: the low
//! [`SLOT_BITS`] bits of a tag are the slot index, the rest a generation, so the allocator finds a
//! scope's counters with one index and one compare — no search, no lock, no allocation. When
//! every slot is taken a check gets a tag whose slot belongs to someone else: its leaks are still
//! found (they are recognised by tag in the live table), but it has no counters and cannot be
//! shared with other threads. [`claim`] says which it got.
//!
//! A slot is reused once its check finishes. Updaters (the allocator, on any thread) announce
//! themselves in `busy` before they compare the tag, and the finishing check clears the tag and
//! then waits for `busy` to drain, so no update meant for an old check can land in a new one.
//! The thread that owns the check (the only one that can finish it) skips that handshake: its
//! updates cannot race with the release.
//!
//! Live and peak bytes are derived from the allocated and freed sums; they are exact when the
//! scope's allocations and frees do not race on different threads (a racing free can be seen a
//! moment late, so a peak can include a block being freed at that instant).

use crate::record::countdown;
use crate::record::heap_stats::HeapStats;
use crate::record::live_record::LiveRecord;
use crate::record::weights::{Decision, SampleInfo, WEIGHT_ONE};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bits of a tag that index the slot table.
pub(crate) const SLOT_BITS: u32 = 8;
/// Scopes that can be active at once with their own counters.
pub(crate) const SLOTS: usize = 1 << SLOT_BITS;
/// Enclosing checks remembered per scope (nesting deeper than this is not counted further up).
pub(crate) const MAX_NEST: usize = 8;

const FREE: u32 = 0;
const CLAIMED: u32 = 1;

/// One scope's counters. Own cache line pair: two checks on two threads never share a line.
#[repr(align(128))]
pub(crate) struct Slot {
    state: AtomicU32,
    tag: AtomicU32,
    busy: AtomicU32,
    /// Index of the thread that started the check (0 until known).
    owner: AtomicU32,
    /// Tags of the enclosing checks when this one started, innermost first, 0-terminated.
    ancestors: [AtomicU32; MAX_NEST],
    alloc_objects: AtomicU64,
    alloc_bytes: AtomicU64,
    free_objects: AtomicU64,
    free_bytes: AtomicU64,
    peak_live_bytes: AtomicU64,
    unrecorded: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU32::new(FREE),
            tag: AtomicU32::new(0),
            busy: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            ancestors: [const { AtomicU32::new(0) }; MAX_NEST],
            alloc_objects: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            free_objects: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            peak_live_bytes: AtomicU64::new(0),
            unrecorded: AtomicU64::new(0),
        }
    }

    fn reset(&self) {
        for c in [
            &self.alloc_objects,
            &self.alloc_bytes,
            &self.free_objects,
            &self.free_bytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.owner.store(0, Ordering::Relaxed);
        self.peak_live_bytes.store(0, Ordering::Relaxed);
        self.unrecorded.store(0, Ordering::Relaxed);
        for a in &self.ancestors {
            a.store(0, Ordering::Relaxed);
        }
    }

    fn read(&self) -> HeapStats {
        let alloc_objects = self.alloc_objects.load(Ordering::Relaxed);
        let free_objects = self.free_objects.load(Ordering::Relaxed);
        let alloc_bytes = self.alloc_bytes.load(Ordering::Relaxed);
        let free_bytes = self.free_bytes.load(Ordering::Relaxed);
        HeapStats {
            alloc_objects,
            alloc_bytes,
            free_objects,
            free_bytes,
            live_objects: alloc_objects.saturating_sub(free_objects),
            live_bytes: alloc_bytes.saturating_sub(free_bytes),
            peak_live_bytes: self.peak_live_bytes.load(Ordering::Relaxed),
            unrecorded: self.unrecorded.load(Ordering::Relaxed),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Generation of the next tag; tags are unique until it wraps (2^24 checks in one process).
static NEXT_GEN: AtomicU32 = AtomicU32::new(1);

fn slot_of(tag: u32) -> &'static Slot {
    &TABLE[(tag as usize) & (SLOTS - 1)]
}

/// Whether `tag` names a check that holds its slot now.
pub(crate) fn is_active(tag: u32) -> bool {
    tag != 0 && slot_of(tag).tag.load(Ordering::Acquire) == tag
}

/// A fresh tag, and whether it owns its slot (counters, sharing) or had to go without.
/// `ancestors` are the enclosing checks' tags, innermost first.
pub(crate) fn claim(ancestors: &[u32]) -> (u32, bool) {
    let generation = loop {
        let g = NEXT_GEN.fetch_add(1, Ordering::Relaxed) & ((1 << (32 - SLOT_BITS)) - 1);
        if g != 0 {
            break g;
        }
    };
    let start = (generation as usize).wrapping_mul(0x9e37_79b9) % SLOTS;
    for i in 0..SLOTS {
        let index = (start + i) % SLOTS;
        let slot = &TABLE[index];
        if slot
            .state
            .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.reset();
            for (dst, &src) in slot.ancestors.iter().zip(ancestors) {
                dst.store(src, Ordering::Relaxed);
            }
            let tag = (generation << SLOT_BITS) | index as u32;
            slot.tag.store(tag, Ordering::SeqCst);
            return (tag, true);
        }
    }
    // No slot: a tag whose slot belongs to another check never matches it, so the allocator's
    // updates for this tag are dropped and `is_active` is false.
    ((generation << SLOT_BITS) | (start as u32), false)
}

/// Retires `tag`'s slot and returns its final counters (`None` if it had no slot).
pub(crate) fn release(tag: u32, owns_slot: bool) -> Option<HeapStats> {
    if !owns_slot {
        return None;
    }
    let slot = slot_of(tag);
    if slot.tag.load(Ordering::Relaxed) != tag {
        return None;
    }
    slot.tag.store(0, Ordering::SeqCst);
    // Updaters that saw the old tag are at most a few atomic operations from done.
    while slot.busy.load(Ordering::SeqCst) != 0 {
        core::hint::spin_loop();
        std::thread::yield_now();
    }
    let counters = slot.read();
    slot.state.store(FREE, Ordering::Release);
    Some(counters)
}

/// The counters of an active check, read now.
pub(crate) fn read(tag: u32) -> Option<HeapStats> {
    with_slot(tag, |slot| slot.read())
}

/// Records the calling thread as the owner of the active check `tag` (it started the check).
pub(crate) fn set_owner(tag: u32) {
    let thread = countdown::current_thread();
    with_slot(tag, |slot| slot.owner.store(thread, Ordering::Relaxed));
}

/// Runs `f` on `tag`'s slot if it is active, holding off its release meanwhile.
fn with_slot<R>(tag: u32, f: impl FnOnce(&Slot) -> R) -> Option<R> {
    let slot = slot_of(tag);
    let thread = countdown::current_thread();
    if thread != 0 && slot.owner.load(Ordering::Relaxed) == thread {
        // Only the owner releases the slot, so the tag cannot change under its feet; a stale
        // tag (a finished check) fails the comparison as on the slow path.
        return (slot.tag.load(Ordering::Relaxed) == tag).then(|| f(slot));
    }
    slot.busy.fetch_add(1, Ordering::SeqCst);
    let out = if slot.tag.load(Ordering::SeqCst) == tag {
        Some(f(slot))
    } else {
        None
    };
    slot.busy.fetch_sub(1, Ordering::Release);
    out
}

/// Applies `f` to the scope `tag` and to each enclosing check still active.
fn for_scope_and_ancestors(tag: u32, f: impl Fn(&Slot)) {
    with_slot(tag, |slot| {
        f(slot);
        for ancestor in &slot.ancestors {
            let a = ancestor.load(Ordering::Relaxed);
            if a == 0 {
                break;
            }
            with_slot(a, &f);
        }
    });
}

/// Allocator hook: a block of `size` bytes was recorded under `tag`. Atomics only.
pub(crate) fn on_alloc(tag: u32, size: usize) {
    let size = size as u64;
    for_scope_and_ancestors(tag, |s| {
        s.alloc_objects.fetch_add(1, Ordering::Relaxed);
        let allocated = s.alloc_bytes.fetch_add(size, Ordering::Relaxed) + size;
        let live = allocated.saturating_sub(s.free_bytes.load(Ordering::Relaxed));
        if live > s.peak_live_bytes.load(Ordering::Relaxed) {
            s.peak_live_bytes.fetch_max(live, Ordering::Relaxed);
        }
    });
}

/// Allocator hook: a block of `size` bytes recorded under `tag` was freed (by any thread).
pub(crate) fn on_free(tag: u32, size: usize) {
    let size = size as u64;
    for_scope_and_ancestors(tag, |s| {
        s.free_objects.fetch_add(1, Ordering::Relaxed);
        s.free_bytes.fetch_add(size, Ordering::Relaxed);
    });
}

/// Allocator hook: an allocation in scope `tag` could not be recorded (a table was full).
pub(crate) fn on_unrecorded(tag: u32) {
    for_scope_and_ancestors(tag, |s| {
        s.unrecorded.fetch_add(1, Ordering::Relaxed);
    });
}

/// Allocator hook for `realloc`: a block's membership of a leak check follows it, whichever
/// thread reallocates it. A block of an active check stays in it (recorded exactly under its
/// tag); a block from outside every check stays outside when a thread in a check grows it
/// (libtest's output-capture buffer, a fixture's vector), so it is not the check's allocation.
pub(crate) fn follow_realloc(
    decision: Decision,
    old: Option<&LiveRecord>,
    new_size: usize,
) -> Decision {
    if let Some(tag) = old.map(|r| r.sample.tag).filter(|&t| is_active(t)) {
        return Decision::Sample(SampleInfo {
            w_objects: WEIGHT_ONE,
            w_bytes: (new_size.max(1) as u64).saturating_mul(WEIGHT_ONE),
            exact: true,
            tag,
            thread: countdown::current_thread(),
        });
    }
    match decision {
        Decision::Sample(info) if info.tag != 0 => Decision::Skip,
        d => d,
    }
}

/// The enclosing checks of the active check `tag`, innermost first (empty if inactive).
pub(crate) fn ancestors_of(tag: u32, out: &mut [u32; MAX_NEST]) {
    *out = [0; MAX_NEST];
    with_slot(tag, |slot| {
        for (dst, src) in out.iter_mut().zip(&slot.ancestors) {
            *dst = src.load(Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_allocs_and_frees_and_stop_at_release() {
        let (tag, owns) = claim(&[]);
        assert!(owns && is_active(tag));
        on_alloc(tag, 100);
        on_alloc(tag, 50);
        on_free(tag, 100);
        let c = read(tag).unwrap();
        assert_eq!(
            (
                c.alloc_objects,
                c.alloc_bytes,
                c.free_objects,
                c.live_bytes,
                c.peak_live_bytes
            ),
            (2, 150, 1, 50, 150)
        );
        let last = release(tag, true).unwrap();
        assert_eq!(last, c);
        assert!(!is_active(tag));
        on_alloc(tag, 10); // a late free or alloc of a finished check lands nowhere
        assert!(read(tag).is_none());
    }

    #[test]
    fn nested_scopes_count_in_their_ancestors() {
        let (outer, _) = claim(&[]);
        let (inner, _) = claim(&[outer]);
        on_alloc(inner, 10);
        on_alloc(outer, 5);
        assert_eq!(read(inner).unwrap().alloc_bytes, 10);
        assert_eq!(read(outer).unwrap().alloc_bytes, 15);
        release(inner, true);
        on_free(outer, 10);
        assert_eq!(read(outer).unwrap().live_bytes, 5);
        release(outer, true);
    }
}
