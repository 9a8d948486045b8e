//! Stack capture and the table of call sites.
//!
//! A sampled allocation's stack is captured as raw return addresses (no symbolization), then
//! interned into a [`StackId`] in a sharded table. Each entry also holds the site's
//! Horvitz–Thompson sums, so recording a sample takes one shard lock. The table is bounded:
//! when full, new stacks are refused and the sample is counted as dropped.

use crate::internal_alloc::{Map, TableAlloc, TableVec, new_map};
use crate::lock::ForkMutex;
use crate::sampler::SampleInfo;
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The deepest stack recorded; deeper stacks keep their innermost frames.
pub const MAX_STACK_DEPTH: usize = 64;
/// Default bound on distinct stacks held at once.
pub const DEFAULT_MAX_STACKS: usize = 1 << 16;
/// Threads tracked individually per site; the rest share the last slot.
const SITE_THREADS: usize = 8;
/// Thread index standing for "all other threads" in a site's attribution.
pub(crate) const OTHER_THREADS: u32 = u32::MAX;
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;

/// Identifies a distinct call stack for the life of the process.
pub type StackId = u32;

static MAX_STACKS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_STACKS);
static STACK_COUNT: AtomicUsize = AtomicUsize::new(0);
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static EVICTED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Default)]
pub(crate) struct ThreadShare {
    pub thread: u32,
    pub alloc_bytes: u128,
    pub live_bytes: u128,
}

/// One call site's sums, in fixed point (units of `WEIGHT_ONE`).
#[derive(Clone, Copy, Default)]
pub(crate) struct SiteSums {
    pub alloc_count: u128,
    pub alloc_bytes: u128,
    pub live_count: u128,
    pub live_bytes: u128,
    pub samples: u64,
    pub live_samples: u64,
    pub threads: [ThreadShare; SITE_THREADS],
    pub n_threads: u8,
}

impl SiteSums {
    fn add(&mut self, s: &SampleInfo) {
        let (c, b) = (s.w_count as u128, s.w_bytes as u128);
        self.alloc_count += c;
        self.alloc_bytes += b;
        self.live_count += c;
        self.live_bytes += b;
        self.samples += 1;
        self.live_samples += 1;
        let share = self.share(s.thread);
        share.alloc_bytes += b;
        share.live_bytes += b;
    }

    fn remove_live(&mut self, s: &SampleInfo) {
        let (c, b) = (s.w_count as u128, s.w_bytes as u128);
        self.live_count = self.live_count.saturating_sub(c);
        self.live_bytes = self.live_bytes.saturating_sub(b);
        self.live_samples = self.live_samples.saturating_sub(1);
        let share = self.share(s.thread);
        share.live_bytes = share.live_bytes.saturating_sub(b);
    }

    fn share(&mut self, thread: u32) -> &mut ThreadShare {
        let n = self.n_threads as usize;
        let slot = match self.threads[..n].iter().position(|t| t.thread == thread) {
            Some(i) => i,
            None if n < SITE_THREADS - 1 => {
                self.n_threads += 1;
                self.threads[n] = ThreadShare { thread, ..Default::default() };
                n
            }
            None => {
                let last = SITE_THREADS - 1;
                if n == last {
                    self.n_threads += 1;
                    self.threads[last] = ThreadShare { thread: OTHER_THREADS, ..Default::default() };
                }
                last
            }
        };
        &mut self.threads[slot]
    }
}

struct Site {
    hash: u64,
    frames: TableVec<usize>,
    sums: SiteSums,
    /// `sums.samples` at the previous collection; unchanged and nothing live means evictable.
    samples_at_collect: u64,
}

struct Shard {
    index: hashbrown::HashTable<StackId, TableAlloc>,
    sites: Map<StackId, Site>,
    next: u32,
}

impl Shard {
    fn new() -> Self {
        Shard { index: hashbrown::HashTable::new_in(TableAlloc), sites: new_map(), next: 1 }
    }
}

static TABLE: [ForkMutex<Option<Shard>>; SHARDS] = [const { ForkMutex::new(None) }; SHARDS];

fn hash_frames(frames: &[usize]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x57ac_4a51).hash_one(frames)
}

fn shard_of_hash(hash: u64) -> usize {
    (hash >> (64 - SHARD_BITS)) as usize
}

fn shard_of_id(id: StackId) -> usize {
    (id as usize) & (SHARDS - 1)
}

/// Captures the caller's stack into `buf`: raw return addresses, innermost first.
///
/// `marker` is the address of a local in the outermost cold function of the allocator: frames
/// at or below it (the unwinder, the allocator's internals) and that function's own frame are
/// skipped, so the first address is in the allocator's caller chain.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize; MAX_STACK_DEPTH], marker: usize) -> usize {
    let mut depth = 0;
    let mut skipped_cold_fn = false;
    let mut cb = |frame: &backtrace::Frame| {
        let sp = frame.sp() as usize;
        if sp != 0 && sp <= marker {
            return true;
        }
        if !skipped_cold_fn {
            skipped_cold_fn = true;
            return true;
        }
        if depth < MAX_STACK_DEPTH {
            buf[depth] = frame.ip() as usize;
            depth += 1;
        }
        depth < MAX_STACK_DEPTH
    };
    // SAFETY: `trace_unsynchronized` is unsafe only because it takes no lock; the callback
    // writes into a fixed array, allocates nothing, and never panics (indices are checked above).
    unsafe { backtrace::trace_unsynchronized(&mut cb) };
    depth
}

/// Interns `frames` and adds the sample's weights to its site. `None` when the stack table is
/// full (or out of memory): the caller drops the sample.
pub(crate) fn record(frames: &[usize], sample: &SampleInfo) -> Option<StackId> {
    let hash = hash_frames(frames);
    let shard_index = shard_of_hash(hash);
    let mut guard = TABLE[shard_index].lock();
    let shard = guard.get_or_insert_with(Shard::new);
    let Shard { index, sites, next } = shard;
    let found = index
        .find(hash, |id| sites.get(id).is_some_and(|s| s.frames[..] == *frames))
        .copied();
    let id = match found {
        Some(id) => id,
        None => {
            if STACK_COUNT.load(Ordering::Relaxed) >= MAX_STACKS.load(Ordering::Relaxed)
                || *next >= (u32::MAX >> SHARD_BITS)
            {
                return None;
            }
            let mut copy = TableVec::new_in(TableAlloc);
            copy.try_reserve_exact(frames.len()).ok()?;
            copy.extend_from_slice(frames);
            sites.try_reserve(1).ok()?;
            index.try_reserve(1, |id| sites.get(id).map_or(0, |s| s.hash)).ok()?;
            let id = (*next << SHARD_BITS) | shard_index as u32;
            *next += 1;
            sites.insert(id, Site { hash, frames: copy, sums: SiteSums::default(), samples_at_collect: 0 });
            index.insert_unique(hash, id, |id| sites.get(id).map_or(0, |s| s.hash));
            STACK_COUNT.fetch_add(1, Ordering::Relaxed);
            id
        }
    };
    if let Some(site) = sites.get_mut(&id) {
        site.sums.add(sample);
    }
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    Some(id)
}

/// Removes a freed sample's weights from its site's live sums.
pub(crate) fn release(stack: StackId, sample: &SampleInfo) {
    let mut guard = TABLE[shard_of_id(stack)].lock();
    if let Some(site) = guard.as_mut().and_then(|s| s.sites.get_mut(&stack)) {
        site.sums.remove_live(sample);
    }
}

/// Counts a sample that could not be recorded.
pub(crate) fn count_dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// A site as copied out of the table.
pub(crate) struct SiteCopy {
    pub id: StackId,
    pub frames: TableVec<usize>,
    pub sums: SiteSums,
}

/// Copies every site out of the table, evicting sites with nothing live and no sample since
/// the previous collection once the table is more than half full.
pub(crate) fn collect() -> TableVec<SiteCopy> {
    let mut out = TableVec::new_in(TableAlloc);
    let evict = STACK_COUNT.load(Ordering::Relaxed) > MAX_STACKS.load(Ordering::Relaxed) / 2;
    for shard in &TABLE {
        let mut guard = shard.lock();
        let Some(shard) = guard.as_mut() else { continue };
        let Shard { index, sites, .. } = shard;
        if evict {
            let mut evicted = 0;
            sites.retain(|_, s| {
                let dead = s.sums.live_samples == 0 && s.sums.samples == s.samples_at_collect;
                evicted += dead as usize;
                !dead
            });
            if evicted > 0 {
                index.retain(|id| sites.contains_key(id));
                STACK_COUNT.fetch_sub(evicted, Ordering::Relaxed);
                EVICTED.fetch_add(evicted as u64, Ordering::Relaxed);
            }
        }
        if out.try_reserve(sites.len()).is_err() {
            continue;
        }
        for (&id, site) in sites.iter_mut() {
            site.samples_at_collect = site.sums.samples;
            let mut frames = TableVec::new_in(TableAlloc);
            if frames.try_reserve_exact(site.frames.len()).is_err() {
                continue;
            }
            frames.extend_from_slice(&site.frames);
            out.push(SiteCopy { id, frames, sums: site.sums });
        }
    }
    out
}

/// Counters of the stack table.
pub(crate) struct StackStats {
    pub samples: u64,
    pub dropped: u64,
    pub stacks: u64,
    pub evicted: u64,
    pub max_stacks: u64,
}

pub(crate) fn stats() -> StackStats {
    StackStats {
        samples: SAMPLES.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
        stacks: STACK_COUNT.load(Ordering::Relaxed) as u64,
        evicted: EVICTED.load(Ordering::Relaxed),
        max_stacks: MAX_STACKS.load(Ordering::Relaxed) as u64,
    }
}

pub(crate) fn set_max_stacks(n: usize) {
    MAX_STACKS.store(n.max(1), Ordering::Relaxed);
}

pub(crate) fn lock_for_fork() {
    for shard in &TABLE {
        shard.lock_for_fork();
    }
}

/// # Safety
/// Pairs with [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    for shard in &TABLE {
        // SAFETY: forwarded contract.
        unsafe { shard.unlock_after_fork() };
    }
}

/// # Safety
/// Only in the single-threaded child after `fork()`.
pub(crate) unsafe fn reinit_in_child() {
    for shard in &TABLE {
        // SAFETY: forwarded contract.
        unsafe { shard.reinit_in_child() };
    }
}
