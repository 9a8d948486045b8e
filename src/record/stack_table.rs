//! Stack capture and the table of call sites.
//!
//! A sampled allocation's stack is captured as raw return addresses (no symbolization), then
//! interned into a [`StackId`] in a sharded table. Each entry also holds the site's cumulative
//! Horvitz–Thompson sums, so recording a sample takes one shard lock — and a repeat of the
//! thread's previous stack none (`stack_cache`). Live sums are not kept here but added up from
//! the live table when the sites are collected. The table is bounded: when full, new stacks
//! are refused and the sample is counted as dropped.

use crate::record::live_record::StackId;
use crate::record::stack_cache::{self, PendingSums};
use crate::record::weights::SampleInfo;
use crate::sys::fork_mutex::ForkMutex;
use crate::sys::table_alloc::{Map, TableAlloc, TableVec, new_map};
use crate::unwind::capture::MAX_STACK_DEPTH;
use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Default bound on distinct stacks held at once.
pub const DEFAULT_MAX_STACKS: usize = 1 << 16;
/// Threads tracked individually per site; the rest share the last slot.
const SITE_THREADS: usize = 8;
/// Thread index standing for "all other threads" in a site's attribution.
pub(crate) const OTHER_THREADS: u32 = u32::MAX;
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;

static MAX_STACKS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_STACKS);
static EXACT_MAX_STACKS: AtomicUsize =
    AtomicUsize::new(crate::record::budget::DEFAULT_EXACT_MAX_STACKS);
static STACK_COUNT: AtomicUsize = AtomicUsize::new(0);
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
    pub alloc_objects: u128,
    pub alloc_bytes: u128,
    pub live_objects: u128,
    pub live_bytes: u128,
    pub samples: u64,
    pub live_samples: u64,
    pub threads: [ThreadShare; SITE_THREADS],
    pub n_threads: u8,
}

impl SiteSums {
    /// Adds a sample's allocation-side weights; returns the thread-share slot it went to.
    fn add_alloc(&mut self, s: &SampleInfo) -> u8 {
        let (c, b) = (s.w_objects as u128, s.w_bytes as u128);
        self.alloc_objects += c;
        self.alloc_bytes += b;
        self.samples += 1;
        let slot = self.slot_of(s.thread);
        if let Some(share) = self.threads.get_mut(slot) {
            share.alloc_bytes += b;
        }
        slot as u8
    }

    /// Adds a thread's pending sums for this site (see `stack_cache`).
    fn add_pending(&mut self, p: &PendingSums) {
        self.alloc_objects += p.objects as u128;
        self.alloc_bytes += p.bytes as u128;
        self.samples += p.samples;
        if let Some(share) = self.threads.get_mut(p.share as usize) {
            share.alloc_bytes += p.bytes as u128;
        }
    }

    /// The thread's share slot, claimed if new; the last slot collects all further threads.
    /// (No indexing that could panic: this runs inside the allocator.)
    fn slot_of(&mut self, thread: u32) -> usize {
        let n = (self.n_threads as usize).min(SITE_THREADS);
        if let Some(i) = self.threads.iter().take(n).position(|t| t.thread == thread) {
            return i;
        }
        let (slot, owner) = if n < SITE_THREADS - 1 {
            (n, thread)
        } else {
            (SITE_THREADS - 1, OTHER_THREADS)
        };
        if slot == n
            && let Some(share) = self.threads.get_mut(slot)
        {
            *share = ThreadShare {
                thread: owner,
                ..Default::default()
            };
            self.n_threads += 1;
        }
        slot
    }
}

struct Site {
    hash: u64,
    frames: TableVec<usize>,
    /// Allocation-side sums and thread slots; changed under the shard lock. Its live fields
    /// stay zero: live sums are added up from the live table when the sites are collected
    /// (see [`collect`]), so neither a sample nor a free touches a shared counter for them.
    sums: SiteSums,
    /// `sums.samples` at the previous collection; unchanged and nothing live means evictable.
    samples_at_collect: u64,
}

/// Boxed so that growing the shard's map moves pointers, not sites.
type SiteBox = allocator_api2::boxed::Box<Site, TableAlloc>;

struct Shard {
    index: hashbrown::HashTable<StackId, TableAlloc>,
    sites: Map<StackId, SiteBox>,
    next: u32,
    /// Samples recorded into this shard since the process started.
    samples: u64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            index: hashbrown::HashTable::new_in(TableAlloc),
            sites: new_map(),
            next: 1,
            samples: 0,
        }
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

/// Interns `frames` and adds the sample's allocation weights to its site;
/// returns the stack and the sample's thread-share slot there. `None` when the stack table is
/// full (or out of memory): the caller drops the sample.
pub(crate) fn record(frames: &[usize], sample: &SampleInfo) -> Option<(StackId, u8)> {
    if let Some(repeat) = stack_cache::record_repeat(frames, sample) {
        return Some(repeat);
    }
    let hash = hash_frames(frames);
    let shard_index = shard_of_hash(hash);
    let (id, slot) = {
        let mut guard = TABLE[shard_index].lock();
        let shard = guard.get_or_insert_with(Shard::new);
        let recorded = record_in(shard, shard_index, hash, frames, sample)?;
        // The thread's pending sums for its previous stack go in now if that stack lives in
        // this shard (one lock for both), else just below.
        if stack_cache::pending_id().is_some_and(|id| shard_of_id(id) == shard_index) {
            stack_cache::flush_pending(|p| add_pending(shard, p));
        }
        recorded
    };
    flush_pending_sums();
    stack_cache::remember(frames, id, slot);
    Some((id, slot))
}

/// Puts the calling thread's pending sums (if any) into their site.
fn flush_pending_sums() {
    if let Some(id) = stack_cache::pending_id() {
        let mut guard = TABLE[shard_of_id(id)].lock();
        if let Some(shard) = guard.as_mut() {
            stack_cache::flush_pending(|p| add_pending(shard, p));
        }
    }
}

/// Puts the pending sums of `slot` into their site and empties it: the slot's thread exits.
pub(crate) fn close_slot(slot: usize) {
    let _guard = crate::sys::guard::enter_guard();
    let mut guard = stack_cache::pending_id_of(slot).map(|id| TABLE[shard_of_id(id)].lock());
    stack_cache::close_slot(slot, |p| {
        if let Some(shard) = guard.as_mut().and_then(|g| g.as_mut()) {
            add_pending(shard, p);
        }
    });
}

/// Adds a thread's pending sums to their site (under the shard's lock). A cached stack is never
/// evicted, so the site is there; were it not, the sums would be dropped, not misattributed.
fn add_pending(shard: &mut Shard, p: &PendingSums) {
    shard.samples += p.samples;
    if let Some(site) = shard.sites.get_mut(&p.id) {
        site.sums.add_pending(p);
    }
}

/// The locked half of [`record`]: finds or interns `frames` in `shard` and adds the sample.
fn record_in(
    shard: &mut Shard,
    shard_index: usize,
    hash: u64,
    frames: &[usize],
    sample: &SampleInfo,
) -> Option<(StackId, u8)> {
    let Shard {
        index,
        sites,
        next,
        samples,
    } = shard;
    let found = index
        .find(hash, |id| {
            sites.get(id).is_some_and(|s| s.frames[..] == *frames)
        })
        .copied();
    let id = match found {
        Some(id) => id,
        None => {
            if STACK_COUNT.load(Ordering::Relaxed) >= max_for(sample)
                || *next >= (u32::MAX >> SHARD_BITS)
            {
                return None;
            }
            let mut copy = TableVec::new_in(TableAlloc);
            copy.try_reserve_exact(frames.len()).ok()?;
            copy.extend_from_slice(frames);
            sites.try_reserve(1).ok()?;
            index
                .try_reserve(1, |id| sites.get(id).map_or(0, |s| s.hash))
                .ok()?;
            let id = (*next << SHARD_BITS) | shard_index as u32;
            *next += 1;
            let site = Site {
                hash,
                frames: copy,
                sums: SiteSums::default(),
                samples_at_collect: 0,
            };
            let site = SiteBox::try_new_in(site, TableAlloc).ok()?;
            sites.insert(id, site);
            index.insert_unique(hash, id, |id| sites.get(id).map_or(0, |s| s.hash));
            STACK_COUNT.fetch_add(1, Ordering::Relaxed);
            id
        }
    };
    let slot = sites.get_mut(&id)?.sums.add_alloc(sample);
    // Counted in the shard, under the lock already held: a process-wide counter here would
    // bounce between cores on every sample.
    *samples += 1;
    Some((id, slot))
}

/// The bound on stacks that applies to a new stack of `sample`: the exact-mode one for an
/// exact-mode sample (interval 1), the usual one otherwise.
fn max_for(sample: &SampleInfo) -> usize {
    if crate::record::budget::exact_mode_sample(sample) {
        EXACT_MAX_STACKS.load(Ordering::Relaxed)
    } else {
        MAX_STACKS.load(Ordering::Relaxed)
    }
}

/// The most one stack can cost the table: its boxed site, its frames at the deepest, and its
/// entries in the shard's map and index, at their lowest load after growing (7/16).
pub(crate) const STACK_BYTES: u64 = (core::mem::size_of::<Site>()
    + MAX_STACK_DEPTH * core::mem::size_of::<usize>()
    + ((core::mem::size_of::<(StackId, SiteBox)>() + 1 + core::mem::size_of::<StackId>() + 1) * 16)
        .div_ceil(7)) as u64;

/// Appends the raw return addresses of stack `id` to `out` (nothing if it was evicted or
/// `out` cannot grow). `out` uses the table allocator: it may grow while the shard is locked.
pub(crate) fn frames_of(id: StackId, out: &mut TableVec<usize>) {
    let guard = TABLE[shard_of_id(id)].lock();
    if let Some(site) = guard.as_ref().and_then(|s| s.sites.get(&id))
        && out.try_reserve(site.frames.len()).is_ok()
    {
        out.extend_from_slice(&site.frames);
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

/// Live sums of one stack, added up from the live table (fixed point, like [`SiteSums`]).
#[derive(Clone, Copy, Default)]
struct LiveSums {
    objects: u64,
    bytes: u64,
    samples: u64,
    thread_bytes: [u64; SITE_THREADS],
}

/// Adds up the live records per stack. Sums that could not be stored (out of memory) are
/// left out, as the stack would be.
fn live_sums() -> Map<StackId, LiveSums> {
    let mut sums: Map<StackId, LiveSums> = new_map();
    crate::record::live_table::for_each(|_, rec| {
        if sums.try_reserve(1).is_err() {
            return;
        }
        let s = sums.entry(rec.stack).or_default();
        s.objects = s.objects.wrapping_add(rec.sample.w_objects);
        s.bytes = s.bytes.wrapping_add(rec.sample.w_bytes);
        s.samples += 1;
        if let Some(t) = s.thread_bytes.get_mut(rec.slot as usize) {
            *t = t.wrapping_add(rec.sample.w_bytes);
        }
    });
    sums
}

/// Copies every site out of the table with its live sums, evicting sites with nothing live and
/// no sample since the previous collection once the table is more than half full.
///
/// Live sums are added up here, from the live table, rather than kept per site: that keeps
/// four shared read-modify-writes off every sample and four more off every sampled free. A
/// sample is counted in its site (under the shard lock) just before its live record is
/// inserted; a site seen without live records is evicted only if it also took no sample
/// since the previous collection, so a record still on its way would have to stall for a
/// whole collection period to lose its site (its weights would then be left out of the sites,
/// never attributed to another: stack ids are not reused).
pub(crate) fn collect() -> TableVec<SiteCopy> {
    let mut out = TableVec::new_in(TableAlloc);
    let live = live_sums();
    let evict = STACK_COUNT.load(Ordering::Relaxed) > MAX_STACKS.load(Ordering::Relaxed) / 2;
    for (shard_index, shard) in TABLE.iter().enumerate() {
        let mut guard = shard.lock();
        let Some(shard) = guard.as_mut() else {
            continue;
        };
        // Threads' cached stacks of this shard and their pending sums, read under the lock the
        // owners flush under: each sample is in its site or in a pending sum, not both.
        let mut pending: TableVec<PendingSums> = TableVec::new_in(TableAlloc);
        stack_cache::for_each_pending(|p| {
            if shard_of_id(p.id) == shard_index && pending.try_reserve(1).is_ok() {
                pending.push(*p);
            }
        });
        let Shard { index, sites, .. } = shard;
        if evict {
            let mut evicted = 0;
            sites.retain(|id, s| {
                let dead = !live.contains_key(id)
                    && s.sums.samples == s.samples_at_collect
                    && !pending.iter().any(|p| p.id == *id);
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
            let mut sums = site.sums;
            for p in pending.iter().filter(|p| p.id == id) {
                sums.add_pending(p);
            }
            if let Some(l) = live.get(&id) {
                sums.live_objects = l.objects as u128;
                sums.live_bytes = l.bytes as u128;
                sums.live_samples = l.samples;
                for (share, &bytes) in sums.threads.iter_mut().zip(&l.thread_bytes) {
                    share.live_bytes = bytes as u128;
                }
            }
            out.push(SiteCopy { id, frames, sums });
        }
    }
    out
}

/// Figures of the stack table, as [`ProfilerStats`](crate::ProfilerStats) reports them.
pub(crate) struct StackStats {
    pub samples: u64,
    pub samples_dropped: u64,
    pub stacks: u64,
    pub stacks_evicted: u64,
    pub max_stacks: u64,
    pub exact_max_stacks: u64,
}

pub(crate) fn stats() -> StackStats {
    StackStats {
        samples: TABLE
            .iter()
            .map(|t| t.lock().as_ref().map_or(0, |s| s.samples))
            .sum::<u64>()
            + {
                let mut pending = 0;
                stack_cache::for_each_pending(|p| pending += p.samples);
                pending
            },
        samples_dropped: DROPPED.load(Ordering::Relaxed),
        stacks: STACK_COUNT.load(Ordering::Relaxed) as u64,
        stacks_evicted: EVICTED.load(Ordering::Relaxed),
        max_stacks: MAX_STACKS.load(Ordering::Relaxed) as u64,
        exact_max_stacks: EXACT_MAX_STACKS.load(Ordering::Relaxed) as u64,
    }
}

pub(crate) fn set_max_stacks(n: usize, exact: usize) {
    MAX_STACKS.store(n.max(1), Ordering::Relaxed);
    EXACT_MAX_STACKS.store(exact.max(1), Ordering::Relaxed);
}

/// Hands this module's locks to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    for shard in &TABLE {
        f(shard);
    }
}
