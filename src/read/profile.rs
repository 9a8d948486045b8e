//! [`Profile`]: a snapshot of the totals and the per-site estimates, and the diff of two.

pub use crate::read::frame::Frame;
use crate::record::countdown::WEIGHT_ONE;
use crate::record::live_record::StackId;
use crate::record::stack_table;
use crate::record::totals::{self, Totals};
use crate::record::{countdown, live_table, thread_names};
use core::sync::atomic::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

/// The exact process-wide totals, without building a [`Profile`].
///
/// Allocates nothing, so the difference of two calls around a piece of work is exactly that
/// work's allocations (plus whatever other threads did, within their batch bound).
///
/// ```
/// #[global_allocator]
/// static GLOBAL: heapsampler::Sampler<std::alloc::System> =
///     heapsampler::Sampler::new(std::alloc::System);
///
/// fn main() {
///     let before = heapsampler::totals();
///     let v = vec![0u8; 1000];
///     let after = heapsampler::totals();
///     assert_eq!(after.alloc_bytes - before.alloc_bytes, v.capacity() as u64);
/// }
/// ```
pub fn totals() -> Totals {
    crate::record::countdown::flush_current_thread();
    crate::record::totals::read()
}

/// A point-in-time heap profile: exact totals, and per call site the unbiased estimates.
///
/// Plain data: clone it, serialize it, compare two with [`Profile::diff`]. Frames hold raw
/// addresses until [`Profile::symbolize`] fills in function, file and line.
///
/// ```
/// let profile = heapsampler::snapshot();
/// for site in profile.top_sites(5) {
///     println!("{:>12.0} live bytes at stack {}", site.live_bytes, site.stack_id);
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Process id of the profiled process.
    pub pid: u32,
    /// Wall-clock time of the snapshot, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Mean sampling interval in force, bytes (1 = exact, 0 = off).
    pub sample_interval: u64,
    /// Exact process-wide counters.
    pub totals: Totals,
    /// What the profiler itself holds and did.
    pub profiler: ProfilerStats,
    /// Every call site with something sampled, in no particular order.
    pub sites: Vec<Site>,
}

/// The profiler's own figures.
///
/// ```
/// let stats = heapsampler::snapshot().profiler;
/// assert!(stats.live_samples <= stats.samples);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilerStats {
    /// Samples recorded since the process started.
    pub samples: u64,
    /// Samples that could not be recorded because a table was full.
    pub samples_dropped: u64,
    /// Sampled objects live now.
    pub live_samples: u64,
    /// Distinct stacks held now.
    pub stacks: u64,
    /// Stacks evicted (nothing live, nothing recent) to keep the table bounded.
    pub stacks_evicted: u64,
    /// Bound on distinct stacks.
    pub max_stacks: u64,
    /// Bound on live sampled objects.
    pub max_live_samples: u64,
    /// Bytes held by the profiler's tables now (the live records of sampled blocks in its page
    /// pool included), and pages it keeps for reuse by sampled blocks.
    pub table_bytes: u64,
    /// Bytes the profiler allocated for its own work (symbolization, rendering) since start;
    /// never sampled, never a user site.
    pub overhead_alloc_bytes: u64,
    /// Bound on distinct stacks of samples taken in exact mode (interval 1).
    #[serde(default)]
    pub exact_max_stacks: u64,
    /// Bound on live records in exact mode (interval 1).
    #[serde(default)]
    pub exact_max_live_samples: u64,
    /// Page padding held now by live page-aligned sampled blocks (a small sample takes a
    /// page).
    #[serde(default)]
    pub padding_bytes: u64,
    /// Bound on `padding_bytes`.
    #[serde(default)]
    pub max_padding_bytes: u64,
    /// Samples recorded without page alignment because the padding bound was reached.
    #[serde(default)]
    pub samples_unaligned: u64,
    /// The profiler's own memory now: `table_bytes` + `padding_bytes`.
    #[serde(default)]
    pub own_bytes: u64,
    /// The most `own_bytes` can reach under the limits in force, for the current mode
    /// ([`Limits::budget_bytes`](crate::Limits::budget_bytes)).
    #[serde(default)]
    pub own_bytes_budget: u64,
    /// Live bytes no site accounts for: `totals.live_bytes` − Σ sites' `live_bytes`. Exact in
    /// exact mode (blocks allocated before it started, by the profiler's own work, or whose
    /// sample was dropped); at other intervals it includes the estimates' sampling error.
    #[serde(default)]
    pub unattributed_live_bytes: f64,
}

/// One call site: a distinct stack and its estimates.
///
/// `live_*` and `alloc_*` are Horvitz–Thompson estimates: unbiased, with relative error about
/// √(T/B) for a site of B bytes at interval T (exact at interval 1).
///
/// ```
/// # let profile = heapsampler::snapshot();
/// for site in &profile.sites {
///     assert!(site.live_bytes <= site.alloc_bytes + 1e-6);
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Stable identifier of the stack within this process.
    pub stack_id: StackId,
    /// Raw return addresses, innermost first.
    pub addresses: Vec<u64>,
    /// Symbolized frames, innermost first; empty until [`Profile::symbolize`].
    #[serde(default)]
    pub frames: Vec<Frame>,
    /// Estimated bytes live now.
    pub live_bytes: f64,
    /// Estimated objects live now.
    pub live_objects: f64,
    /// Estimated bytes allocated here since the process started.
    pub alloc_bytes: f64,
    /// Estimated objects allocated here since the process started.
    pub alloc_objects: f64,
    /// Samples taken here.
    pub samples: u64,
    /// Of those, still live.
    pub live_samples: u64,
    /// The allocating threads, most bytes first (at most 8; the last may be "other threads").
    #[serde(default)]
    pub threads: Vec<SiteThread>,
}

/// A thread's share of a site.
///
/// ```
/// # let profile = heapsampler::snapshot();
/// for site in &profile.sites {
///     for t in &site.threads {
///         println!("{}: {:.0} bytes", t.name, t.alloc_bytes);
///     }
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteThread {
    /// The thread's index in this process (`u32::MAX` = all other threads).
    pub thread: u32,
    /// The thread's name, or `thread-<index>`.
    pub name: String,
    /// Estimated bytes this thread allocated here.
    pub alloc_bytes: f64,
    /// Estimated bytes this thread allocated here that are still live.
    pub live_bytes: f64,
}

fn from_fixed(v: u128) -> f64 {
    v as f64 / WEIGHT_ONE as f64
}

/// Takes a snapshot of the heap profile: exact totals and per-site estimates.
///
/// Cheap enough to call every few seconds: it adds up the live table (one pass over the live
/// samples) and copies the stack table, one shard at a time, without stopping allocation.
/// Frames are not symbolized; call [`Profile::symbolize`].
///
/// ```
/// let profile = heapsampler::snapshot();
/// assert_eq!(profile.pid, std::process::id());
/// ```
pub fn snapshot() -> Profile {
    let _guard = crate::sys::guard::enter_guard();
    countdown::flush_current_thread();
    let copies = stack_table::collect();
    // Read before this snapshot allocates its own sites (under the guard, but counted).
    let totals = totals::read();
    let stats = stack_table::stats();
    let mut sites = Vec::with_capacity(copies.len());
    let mut live_samples = 0;
    for copy in copies.iter() {
        live_samples += copy.sums.live_samples;
        let sums = &copy.sums;
        let mut threads: Vec<SiteThread> = sums.threads[..sums.n_threads as usize]
            .iter()
            .map(|t| SiteThread {
                thread: t.thread,
                name: thread_names::name(t.thread),
                alloc_bytes: from_fixed(t.alloc_bytes),
                live_bytes: from_fixed(t.live_bytes),
            })
            .collect();
        threads.sort_by(|a, b| b.alloc_bytes.total_cmp(&a.alloc_bytes));
        sites.push(Site {
            stack_id: copy.id,
            addresses: copy.frames.iter().map(|&a| a as u64).collect(),
            frames: Vec::new(),
            live_bytes: from_fixed(sums.live_bytes),
            live_objects: from_fixed(sums.live_objects),
            alloc_bytes: from_fixed(sums.alloc_bytes),
            alloc_objects: from_fixed(sums.alloc_objects),
            samples: sums.samples,
            live_samples: sums.live_samples,
            threads,
        });
    }
    drop(copies);
    let limits = crate::Limits::current();
    let table_bytes =
        crate::sys::table_alloc::table_bytes() + crate::record::page_pool::own_bytes();
    let padding_bytes = crate::record::budget::padding_bytes();
    let attributed: f64 = sites.iter().map(|s| s.live_bytes).sum();
    let sample_interval = countdown::sample_interval();
    Profile {
        pid: std::process::id(),
        timestamp_ms: now_ms(),
        sample_interval,
        totals,
        profiler: ProfilerStats {
            samples: stats.samples,
            samples_dropped: stats.samples_dropped,
            live_samples,
            stacks: stats.stacks,
            stacks_evicted: stats.stacks_evicted,
            max_stacks: stats.max_stacks,
            max_live_samples: live_table::max_len() as u64,
            table_bytes,
            overhead_alloc_bytes: crate::sys::thread_state::guarded_alloc_bytes(),
            exact_max_stacks: limits.exact_max_stacks as u64,
            exact_max_live_samples: limits.exact_max_live_samples as u64,
            padding_bytes,
            max_padding_bytes: limits.max_padding_bytes as u64,
            samples_unaligned: crate::record::budget::unaligned_samples(),
            own_bytes: table_bytes + padding_bytes,
            own_bytes_budget: limits.budget_bytes(sample_interval == 1),
            unattributed_live_bytes: totals.live_bytes as f64 - attributed,
        },
        sites,
    }
}

/// Wall-clock time the constructor ran (≈ process start), ms since the epoch; 0 = unknown.
static PROCESS_START_MS: AtomicU64 = AtomicU64::new(0);

/// Records the process's start (from the constructor that reads the environment).
pub(crate) fn note_process_start() {
    PROCESS_START_MS.store(now_ms(), Ordering::Relaxed);
}

/// When the process started (as seen by the constructor), ms since the Unix epoch: the
/// window of a process's first report.
pub(crate) fn process_start_ms() -> Option<u64> {
    match PROCESS_START_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(ms),
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Profile {
    /// Fills in every site's [`Frame`]s (function, file, line), using a process-wide cache.
    /// Leading frames inside the allocator itself are left out.
    ///
    /// ```
    /// let mut profile = heapsampler::snapshot();
    /// profile.symbolize();
    /// ```
    pub fn symbolize(&mut self) {
        use crate::read::symbolize;
        let _guard = crate::sys::guard::enter_guard();
        let mut all: Vec<u64> = self
            .sites
            .iter()
            .flat_map(|s| s.addresses.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        // One load of the debug info for all; each site's `frames_of` then only hits the cache.
        symbolize::prefetch(&all);
        for site in &mut self.sites {
            site.frames = symbolize::frames_of(&site.addresses);
        }
    }

    /// The `n` sites with the most estimated live bytes, largest first.
    ///
    /// ```
    /// let profile = heapsampler::snapshot();
    /// assert!(profile.top_sites(3).len() <= 3);
    /// ```
    pub fn top_sites(&self, n: usize) -> Vec<&Site> {
        let mut sites: Vec<&Site> = self.sites.iter().collect();
        sites.sort_by(|a, b| b.live_bytes.total_cmp(&a.live_bytes));
        sites.truncate(n);
        sites
    }

    /// Sites whose symbolized stack has a function containing `needle` (call
    /// [`symbolize`](Self::symbolize) first).
    ///
    /// ```
    /// let mut profile = heapsampler::snapshot();
    /// profile.symbolize();
    /// let live: f64 = profile.sites_in("my_cache").iter().map(|s| s.live_bytes).sum();
    /// assert!(live >= 0.0);
    /// ```
    pub fn sites_in(&self, needle: &str) -> Vec<&Site> {
        self.sites.iter().filter(|s| s.calls(needle)).collect()
    }

    /// Per-site and total changes from `older` to `self` (sites are matched by stack id).
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    ///     heapsampler::Sampler::new(std::alloc::System);
    ///
    /// fn main() {
    ///     let before = heapsampler::snapshot();
    ///     let kept = vec![1u8; 4 << 20];
    ///     let after = heapsampler::snapshot();
    ///     let diff = after.diff(&before);
    ///     assert!(diff.totals.live_bytes >= kept.len() as i64);
    /// }
    /// ```
    pub fn diff(&self, older: &Profile) -> ProfileDiff {
        let old: std::collections::HashMap<StackId, &Site> =
            older.sites.iter().map(|s| (s.stack_id, s)).collect();
        let mut sites: Vec<SiteDiff> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for site in &self.sites {
            seen.insert(site.stack_id);
            let prev = old.get(&site.stack_id);
            let d = SiteDiff {
                stack_id: site.stack_id,
                addresses: site.addresses.clone(),
                frames: site.frames.clone(),
                live_bytes: site.live_bytes - prev.map_or(0.0, |p| p.live_bytes),
                live_objects: site.live_objects - prev.map_or(0.0, |p| p.live_objects),
                alloc_bytes: site.alloc_bytes - prev.map_or(0.0, |p| p.alloc_bytes),
                alloc_objects: site.alloc_objects - prev.map_or(0.0, |p| p.alloc_objects),
            };
            if d.live_bytes != 0.0 || d.alloc_bytes != 0.0 {
                sites.push(d);
            }
        }
        for site in older.sites.iter().filter(|s| !seen.contains(&s.stack_id)) {
            if site.live_bytes != 0.0 {
                sites.push(SiteDiff {
                    stack_id: site.stack_id,
                    addresses: site.addresses.clone(),
                    frames: site.frames.clone(),
                    live_bytes: -site.live_bytes,
                    live_objects: -site.live_objects,
                    alloc_bytes: 0.0,
                    alloc_objects: 0.0,
                });
            }
        }
        sites.sort_by(|a, b| b.live_bytes.abs().total_cmp(&a.live_bytes.abs()));
        let (n, o) = (&self.totals, &older.totals);
        let delta = |a: u64, b: u64| a as i64 - b as i64;
        ProfileDiff {
            window_ms: self.timestamp_ms.saturating_sub(older.timestamp_ms),
            totals: TotalsDiff {
                alloc_bytes: delta(n.alloc_bytes, o.alloc_bytes),
                alloc_objects: delta(n.alloc_objects, o.alloc_objects),
                free_bytes: delta(n.free_bytes, o.free_bytes),
                free_objects: delta(n.free_objects, o.free_objects),
                live_bytes: delta(n.live_bytes, o.live_bytes),
                live_objects: delta(n.live_objects, o.live_objects),
            },
            sites,
        }
    }
}

impl Site {
    /// Whether a symbolized frame's function name contains `needle`.
    ///
    /// ```
    /// let site = heapsampler::Site::default();
    /// assert!(!site.calls("anything"));
    /// ```
    pub fn calls(&self, needle: &str) -> bool {
        self.frames
            .iter()
            .any(|f| f.function.as_deref().is_some_and(|n| n.contains(needle)))
    }
}

/// What changed between two profiles.
///
/// ```
/// let a = heapsampler::snapshot();
/// let b = heapsampler::snapshot();
/// let d = b.diff(&a);
/// assert!(d.window_ms < 60_000);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileDiff {
    /// Time between the two snapshots, milliseconds.
    pub window_ms: u64,
    /// Change of the exact totals.
    pub totals: TotalsDiff,
    /// Sites whose estimates changed, largest live change first.
    pub sites: Vec<SiteDiff>,
}

/// Change of the exact totals between two profiles.
///
/// ```
/// let d = heapsampler::TotalsDiff::default();
/// assert_eq!(d.live_bytes, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalsDiff {
    /// Bytes allocated in the window.
    pub alloc_bytes: i64,
    /// Objects allocated in the window.
    pub alloc_objects: i64,
    /// Bytes freed in the window.
    pub free_bytes: i64,
    /// Objects freed in the window.
    pub free_objects: i64,
    /// Change of live bytes.
    pub live_bytes: i64,
    /// Change of live objects.
    pub live_objects: i64,
}

/// Change of one site's estimates between two profiles.
///
/// ```
/// let d = heapsampler::SiteDiff::default();
/// assert_eq!(d.live_bytes, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteDiff {
    /// The site's stack id.
    pub stack_id: StackId,
    /// Raw return addresses, innermost first.
    pub addresses: Vec<u64>,
    /// Symbolized frames, if the newer profile was symbolized.
    pub frames: Vec<Frame>,
    /// Change of estimated live bytes.
    pub live_bytes: f64,
    /// Change of estimated live objects.
    pub live_objects: f64,
    /// Estimated bytes allocated in the window.
    pub alloc_bytes: f64,
    /// Estimated objects allocated in the window.
    pub alloc_objects: f64,
}
