//! The table of live sampled blocks, and recognising the free of one.
//!
//! A block sampled by the Poisson process is handed out page-aligned (docs/architecture.md, "Recognising the free of a sampled block"), so
//! the free of a block whose address is not page-aligned cannot be a sampled one: an AND, a
//! compare with one read-mostly counter, and a branch. Small sampled blocks take whole pages of
//! their own (`pages`). Blocks recorded with probability 1 (exact mode, `LeakCheck`) keep their
//! natural alignment — a page each would be ruinous — and are counted in [`UNALIGNED_LIVE`]:
//! while that count is non-zero, every free passes the alignment test.
//!
//! Page-aligned frees are not rare in practice: a sampled block, once freed, is recycled by the
//! inner allocator for ordinary blocks of its size class, which are then page-aligned too, and
//! a loop that reuses one block would pay a locked lookup on every free. So a pointer that passes
//! the alignment test meets a second, lock-free filter first: a table of counts of live records
//! per hash bucket. A zero count proves the pointer untracked; only a non-zero one takes a lock.

use crate::record::budget::PAGE;
use crate::record::live_record::LiveRecord;
use crate::sys::fork_mutex::ForkMutex;
use crate::sys::table_alloc::{Map, new_map};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Default bound on live sampled blocks held at once.
pub const DEFAULT_MAX_LIVE_SAMPLES: usize = 1 << 20;
/// The most one live record can cost the live table: its entry and control byte, in a hash
/// table at its lowest load after growing (7/16).
pub(crate) const RECORD_BYTES: u64 =
    ((core::mem::size_of::<(usize, LiveRecord)>() + 1) * 16).div_ceil(7) as u64;
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Keeps the counter alone on its cache line: every free reads it.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// Live records whose address is not page-aligned, counted in units of [`PAGE`] (see
/// [`may_be_tracked`]).
static UNALIGNED_LIVE: Padded = Padded(AtomicUsize::new(0));
static MAX_LIVE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LIVE_SAMPLES);
static EXACT_MAX_LIVE: AtomicUsize =
    AtomicUsize::new(crate::record::budget::DEFAULT_EXACT_MAX_LIVE_SAMPLES);

const FILTER_BITS: u32 = 16;
const _: () = assert!(
    FILTER_BITS >= SHARD_BITS,
    "a filter bucket must lie in one shard"
);
/// Live records per bucket of pointer hashes (256 KiB of zero pages until used). A bucket's
/// top bits are its shard's index, so each bucket is written only under one shard lock: a
/// plain load and store there, no locked read-modify-write (two fewer per sample, ~10 ns).
static FILTER: [AtomicU32; 1 << FILTER_BITS] = [const { AtomicU32::new(0) }; 1 << FILTER_BITS];

fn pointer_hash(ptr: usize) -> u64 {
    // Fibonacci hashing spreads page-aligned addresses, whose low 12 bits are all zero.
    (ptr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline(always)]
fn filter_slot(ptr: usize) -> &'static AtomicU32 {
    &FILTER[(pointer_hash(ptr) >> (64 - FILTER_BITS)) as usize]
}

/// Adds `delta` to `ptr`'s bucket. Only under the lock of `ptr`'s shard, the bucket's only
/// writer; readers (the free path) load it without a lock.
fn filter_add(ptr: usize, delta: i32) {
    let slot = filter_slot(ptr);
    slot.store(
        slot.load(Ordering::Relaxed).wrapping_add_signed(delta),
        Ordering::Relaxed,
    );
}

static TABLE: [ForkMutex<Option<Map<usize, LiveRecord>>>; SHARDS] =
    [const { ForkMutex::new(None) }; SHARDS];

fn shard(ptr: usize) -> &'static ForkMutex<Option<Map<usize, LiveRecord>>> {
    &TABLE[(pointer_hash(ptr) >> (64 - SHARD_BITS)) as usize]
}

/// The free-path test: can `ptr` be a recorded block? False for almost every free, and
/// decided without a lock: the alignment test, then the page pool's region (every block there
/// is a recorded one) or the bucket count.
#[inline(always)]
pub(crate) fn may_be_tracked(ptr: *mut u8) -> bool {
    let p = ptr as usize;
    // One compare for both "page-aligned" and "some record is not": the count is kept in
    // units of a page, so it is 0 (only an offset of 0 passes) or at least a page (every
    // offset passes). Two fewer instructions on every free than the test and the load apart.
    p & (PAGE - 1) <= UNALIGNED_LIVE.0.load(Ordering::Relaxed)
        && (crate::record::page_pool::in_region(p) || filter_slot(p).load(Ordering::Relaxed) != 0)
}

/// Inserts a record. `false` if its shard is full (the bound is split evenly over the shards,
/// so it is checked under the shard's own lock, with no process-wide counter to bounce between
/// cores) or could not grow. Must run before `ptr` is handed to the program.
pub(crate) fn insert(ptr: *mut u8, record: LiveRecord) -> bool {
    if record.pool != 0 {
        // A pooled block's record sits beside its pages, outside the bound (see `pooled`).
        return crate::record::pooled::insert(ptr as usize, &record);
    }
    let mut guard = shard(ptr as usize).lock();
    let map = guard.get_or_insert_with(new_map);
    let max = if crate::record::budget::exact_mode_sample(&record.sample) {
        &EXACT_MAX_LIVE
    } else {
        &MAX_LIVE
    };
    let per_shard = (max.load(Ordering::Relaxed) / SHARDS).max(1);
    if map.len() >= per_shard || map.try_reserve(1).is_err() {
        return false;
    }
    map.insert(ptr as usize, record);
    // Both counts are raised before the pointer escapes, so any later free of it (on any
    // thread: the pointer's hand-over orders these writes before that free) sees them.
    filter_add(ptr as usize, 1);
    // The unaligned count is shared by every thread recording exactly: its line bounces, so
    // it is raised after the lock is released, not while other threads wait for the shard.
    drop(guard);
    if (ptr as usize) & (PAGE - 1) != 0 {
        UNALIGNED_LIVE.0.fetch_add(PAGE, Ordering::Relaxed);
    }
    true
}

/// Removes and returns the record of `ptr`, if it is a recorded block. Must run before the
/// block goes back to the inner allocator, which may hand the address out again at once.
pub(crate) fn remove(ptr: *mut u8) -> Option<LiveRecord> {
    if crate::record::page_pool::in_region(ptr as usize) {
        return crate::record::pooled::remove(ptr as usize);
    }
    let record = {
        let mut guard = shard(ptr as usize).lock();
        let record = guard.as_mut()?.remove(&(ptr as usize))?;
        filter_add(ptr as usize, -1);
        record
    };
    if (ptr as usize) & (PAGE - 1) != 0 {
        UNALIGNED_LIVE.0.fetch_sub(PAGE, Ordering::Relaxed);
    }
    Some(record)
}

/// The record of `ptr`, left in place.
pub(crate) fn get(ptr: *mut u8) -> Option<LiveRecord> {
    if crate::record::page_pool::in_region(ptr as usize) {
        return crate::record::pooled::get(ptr as usize);
    }
    shard(ptr as usize)
        .lock()
        .as_ref()?
        .get(&(ptr as usize))
        .copied()
}

/// Calls `f` with every live record (one shard locked at a time; `f` must not allocate
/// through the global allocator), then with every pooled block's.
pub(crate) fn for_each(mut f: impl FnMut(usize, &LiveRecord)) {
    for shard in &TABLE {
        let guard = shard.lock();
        if let Some(map) = guard.as_ref() {
            for (&ptr, rec) in map.iter() {
                f(ptr, rec);
            }
        }
    }
    crate::record::pooled::for_each(f);
}

/// Moves every live record tagged `from` to tag `to` (a finished leak check hands its live
/// blocks to the check enclosing it). Tagged records are exact, never pooled, so only the
/// shared table holds them.
pub(crate) fn retag(from: u32, to: u32) {
    for shard in &TABLE {
        let mut guard = shard.lock();
        if let Some(map) = guard.as_mut() {
            for rec in map.values_mut().filter(|r| r.sample.tag == from) {
                rec.sample.tag = to;
            }
        }
    }
}

pub(crate) fn max_len() -> usize {
    MAX_LIVE.load(Ordering::Relaxed)
}

pub(crate) fn exact_max_len() -> usize {
    EXACT_MAX_LIVE.load(Ordering::Relaxed)
}

pub(crate) fn set_max_len(n: usize, exact: usize) {
    MAX_LIVE.store(n.max(1), Ordering::Relaxed);
    EXACT_MAX_LIVE.store(exact.max(1), Ordering::Relaxed);
}

/// Hands this module's locks to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    for shard in &TABLE {
        f(shard);
    }
}
