//! Building a [`Report`] from a [`Profile`] (rates over the window, locations stored once per
//! address) and turning it back into one.

use super::schema::{
    FORMAT, LeakSuspect, Location, LocationFrame, Report, ReportCounts, ReportProfiler, ReportSite,
    ReportThread, ReportTotals, VERSION,
};
use crate::read::mappings::Mapping;
use crate::read::profile::{Frame, Profile, ProfilerStats, Site, SiteThread, process_start_ms};
use crate::read::site_name::site_name;
use crate::read::{profiler_work, symbolize};
use crate::record::live_record::StackId;
use crate::record::totals::Totals;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Unbiased rates need a previous reading; this is what is kept of one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Baseline {
    pid: u32,
    timestamp_ms: u64,
    totals: Totals,
    /// stack id → (hash of the addresses, alloc bytes, alloc objects).
    sites: HashMap<StackId, (u64, f64, f64)>,
}

impl Baseline {
    pub(crate) fn of(profile: &Profile) -> Baseline {
        Baseline {
            pid: profile.pid,
            timestamp_ms: profile.timestamp_ms,
            totals: profile.totals,
            sites: profile
                .sites
                .iter()
                .map(|s| {
                    (
                        s.stack_id,
                        (hash_addresses(&s.addresses), s.alloc_bytes, s.alloc_objects),
                    )
                })
                .collect(),
        }
    }
}

fn hash_addresses(a: &[u64]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(a)
}

/// JSON cannot hold NaN or infinities (serde_json would write `null`, which then fails to
/// read back), and readers reject estimates above 2^64: a report only ever carries numbers
/// that read back.
fn finite(x: f64) -> f64 {
    crate::report::validate::clamp(x)
}

/// One entry per distinct address of the profile's stacks, in address order.
///
/// A symbolized profile's frames are grouped by the address they came from (per address,
/// the longest run seen: the innermost address of a stack may have lost its allocator frames).
/// A profile of this process that was not symbolized is symbolized here, per address, through
/// the process-wide cache — the reporter's path, which never builds per-site frame lists.
fn locations_of(profile: &Profile) -> Vec<Location> {
    let mut addresses: Vec<u64> = profile
        .sites
        .iter()
        .flat_map(|s| s.addresses.iter().copied())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let symbolized = profile.sites.iter().any(|s| !s.frames.is_empty());
    let to_location_frame = |f: &Frame| LocationFrame {
        function: f.function.clone(),
        file: f.file.clone(),
        line: f.line,
    };
    if !symbolized {
        if profile.pid != std::process::id() {
            return Vec::new();
        }
        let resolved = symbolize::resolve_all(&addresses);
        return addresses
            .into_iter()
            .zip(resolved)
            .map(|(address, frames)| Location {
                address,
                frames: frames.iter().map(to_location_frame).collect(),
            })
            .collect();
    }
    let mut runs: HashMap<u64, &[Frame]> = HashMap::new();
    for site in &profile.sites {
        // A frame run of one address stands for `k` consecutive copies of it in the stack
        // (recursion through one call site): one copy is a run's first `len / k` frames.
        let mut groups = site.addresses.chunk_by(|a, b| a == b);
        for run in site.frames.chunk_by(|a, b| a.address == b.address) {
            let address = run[0].address;
            let Some(k) = groups.by_ref().find(|g| g[0] == address).map(<[u64]>::len) else {
                break;
            };
            let one = &run[..run.len() / k.max(1)];
            let longest = runs.entry(address).or_insert(one);
            if one.len() > longest.len() {
                *longest = one;
            }
        }
    }
    addresses
        .into_iter()
        .filter_map(|address| {
            let run = runs.get(&address)?;
            Some(Location {
                address,
                frames: run.iter().map(to_location_frame).collect(),
            })
        })
        .collect()
}

fn program_path(pid: u32) -> String {
    if pid != std::process::id() {
        return String::new();
    }
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

impl Report {
    /// Builds a report from a profile, the previous profile of the same process for the rates
    /// (`None`: rates since the process started), the leak suspects and the mappings. Sites
    /// are sorted by estimated live bytes, largest first. Site rates are
    /// `(alloc now − alloc before) / window`, matching sites by stack id.
    ///
    /// Locations come from the profile's frames when it was symbolized; a profile of this
    /// process that was not is symbolized here, per distinct address, with the process-wide
    /// cache (the first time in a process loads the debug info: tens of milliseconds).
    ///
    /// ```
    /// use heapsampler::{Report, report::mappings};
    /// let before = heapsampler::snapshot();
    /// let now = heapsampler::snapshot();
    /// let report = Report::from_profile(&now, Some(&before), Vec::new(), mappings::current());
    /// assert_eq!(report.window_ms, now.timestamp_ms - before.timestamp_ms);
    /// ```
    pub fn from_profile(
        profile: &Profile,
        previous: Option<&Profile>,
        leak_suspects: Vec<LeakSuspect>,
        mappings: Vec<Mapping>,
    ) -> Report {
        profiler_work(|| {
            let baseline = previous.map(Baseline::of);
            Report::build(profile, baseline.as_ref(), leak_suspects, mappings)
        })
    }

    /// [`from_profile`](Self::from_profile) against a kept [`Baseline`].
    pub(crate) fn build(
        profile: &Profile,
        previous: Option<&Baseline>,
        leak_suspects: Vec<LeakSuspect>,
        mappings: Vec<Mapping>,
    ) -> Report {
        Report::build_with(profile, previous, leak_suspects, mappings, true)
    }

    /// [`build`](Self::build); `symbolize == false` leaves `locations` empty (symbolized
    /// offline later, `heapsampler symbolize`) and loads no debug info.
    pub(crate) fn build_with(
        profile: &Profile,
        previous: Option<&Baseline>,
        leak_suspects: Vec<LeakSuspect>,
        mappings: Vec<Mapping>,
        symbolize: bool,
    ) -> Report {
        profiler_work(|| {
            // Cumulative counters of another process cannot be subtracted from ours.
            let previous = previous.filter(|b| b.pid == profile.pid);
            let since = match previous {
                Some(b) => Some(b.timestamp_ms),
                None if profile.pid == std::process::id() => process_start_ms(),
                None => None,
            };
            let window_ms = since.map_or(0, |s| profile.timestamp_ms.saturating_sub(s));
            let secs = window_ms as f64 / 1000.0;
            let rate = |delta: f64| {
                if secs > 0.0 {
                    finite(delta.max(0.0) / secs)
                } else {
                    0.0
                }
            };
            let t = profile.totals;
            let t0 = previous.map(|b| b.totals).unwrap_or_default();
            let totals = ReportTotals {
                counts: t.into(),
                allocated_bytes_per_sec: rate(t.alloc_bytes.saturating_sub(t0.alloc_bytes) as f64),
                allocated_objects_per_sec: rate(
                    t.alloc_objects.saturating_sub(t0.alloc_objects) as f64
                ),
                freed_bytes_per_sec: rate(t.free_bytes.saturating_sub(t0.free_bytes) as f64),
                freed_objects_per_sec: rate(t.free_objects.saturating_sub(t0.free_objects) as f64),
            };
            let mut sites: Vec<ReportSite> = profile
                .sites
                .iter()
                .map(|s| {
                    let (bytes0, objects0) = previous
                        .and_then(|b| b.sites.get(&s.stack_id))
                        .filter(|(h, _, _)| *h == hash_addresses(&s.addresses))
                        .map_or((0.0, 0.0), |&(_, b, o)| (b, o));
                    ReportSite {
                        stack_id: s.stack_id,
                        live_bytes: finite(s.live_bytes),
                        live_objects: finite(s.live_objects),
                        alloc_bytes: finite(s.alloc_bytes),
                        alloc_objects: finite(s.alloc_objects),
                        alloc_bytes_per_sec: rate(s.alloc_bytes - bytes0),
                        alloc_objects_per_sec: rate(s.alloc_objects - objects0),
                        samples: s.samples,
                        live_samples: s.live_samples,
                        addresses: s.addresses.clone(),
                        threads: s
                            .threads
                            .iter()
                            .map(|t| ReportThread {
                                thread: t.thread,
                                name: t.name.clone(),
                                alloc_bytes: finite(t.alloc_bytes),
                                live_bytes: finite(t.live_bytes),
                            })
                            .collect(),
                    }
                })
                .collect();
            sites.sort_by(|a, b| {
                b.live_bytes
                    .total_cmp(&a.live_bytes)
                    .then(b.alloc_bytes.total_cmp(&a.alloc_bytes))
                    .then(a.stack_id.cmp(&b.stack_id))
            });
            let leak_suspects = leak_suspects
                .into_iter()
                .map(|s| LeakSuspect {
                    growth_bytes_per_sec: finite(s.growth_bytes_per_sec),
                    confidence: finite(s.confidence),
                    live_bytes: finite(s.live_bytes),
                    ..s
                })
                .collect();
            Report {
                format: FORMAT.to_string(),
                version: VERSION,
                pid: profile.pid,
                program: program_path(profile.pid),
                timestamp_ms: profile.timestamp_ms,
                window_ms,
                sample_interval: profile.sample_interval,
                totals,
                profiler: (&profile.profiler).into(),
                locations: if symbolize {
                    locations_of(profile)
                } else {
                    Vec::new()
                },
                sites,
                leak_suspects,
                mappings,
                process_memory: (profile.pid == std::process::id())
                    .then(crate::read::process_memory::process_memory),
            }
        })
    }

    /// The location of `address`, if the report has it.
    ///
    /// ```
    /// let report = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// for site in &report.sites {
    ///     assert!(site.addresses.iter().all(|&a| report.location(a).is_some()));
    /// }
    /// ```
    pub fn location(&self, address: u64) -> Option<&Location> {
        self.locations
            .binary_search_by_key(&address, |l| l.address)
            .ok()
            .map(|i| &self.locations[i])
    }

    /// The symbolized frames of a site, innermost first, without the allocator's own leading
    /// frames: what [`Site::frames`] holds in a symbolized [`Profile`].
    ///
    /// ```
    /// use heapsampler::{Frame, Profile, Report, Site};
    /// let frame = |address, f: &str| Frame { address, function: Some(f.into()), file: None, line: None };
    /// let site = Site {
    ///     addresses: vec![0x10, 0x20],
    ///     frames: vec![frame(0x10, "app::load"), frame(0x20, "app::main")],
    ///     ..Site::default()
    /// };
    /// let profile = Profile { sites: vec![site.clone()], ..Profile::default() };
    /// let report = Report::from_profile(&profile, None, vec![], vec![]);
    /// assert_eq!(report.site_frames(&report.sites[0]), site.frames);
    /// ```
    pub fn site_frames(&self, site: &ReportSite) -> Vec<Frame> {
        profiler_work(|| {
            let mut frames: Vec<Frame> = Vec::new();
            for &address in &site.addresses {
                let Some(location) = self.location(address) else {
                    continue;
                };
                frames.extend(location.frames.iter().map(|f| Frame {
                    address,
                    function: f.function.clone(),
                    file: f.file.clone(),
                    line: f.line,
                }));
            }
            symbolize::drop_allocator_frames(&mut frames);
            frames
        })
    }

    /// The innermost function of a site outside the allocator, the Rust standard library
    /// and hashbrown (`Vec::push`, `String::from`… are skipped): usually the code that asked
    /// for memory. Falls back to the innermost frame that is not the allocator's: a site is
    /// never named after `__rust_alloc` or heapsampler's own `GlobalAlloc::alloc`.
    ///
    /// ```
    /// use heapsampler::{Frame, Profile, Report, Site};
    /// let frame = |address, f: &str| Frame { address, function: Some(f.into()), file: None, line: None };
    /// let site = Site {
    ///     addresses: vec![0x10, 0x20],
    ///     frames: vec![frame(0x10, "alloc::vec::from_elem"), frame(0x20, "app::load_table")],
    ///     ..Site::default()
    /// };
    /// let profile = Profile { sites: vec![site], ..Profile::default() };
    /// let report = Report::from_profile(&profile, None, vec![], vec![]);
    /// assert_eq!(report.top_function(&report.sites[0]), Some("app::load_table"));
    /// ```
    pub fn top_function(&self, site: &ReportSite) -> Option<&str> {
        let names = site
            .addresses
            .iter()
            .filter_map(|&a| self.location(a))
            .flat_map(|l| l.frames.iter())
            .filter_map(|f| f.function.as_deref());
        site_name(names)
    }

    /// The report as a [`Profile`] (rates, suspects and mappings left out, frames rebuilt
    /// from the locations), so the leak detector and [`Profile::diff`] can run on reports
    /// read from files.
    ///
    /// ```
    /// use heapsampler::Report;
    /// let profile = heapsampler::snapshot();
    /// let report = Report::from_profile(&profile, None, Vec::new(), Vec::new());
    /// let back = report.to_profile();
    /// assert_eq!(back.totals, profile.totals);
    /// assert_eq!(back.sites.len(), profile.sites.len());
    /// ```
    pub fn to_profile(&self) -> Profile {
        profiler_work(|| Profile {
            pid: self.pid,
            timestamp_ms: self.timestamp_ms,
            sample_interval: self.sample_interval,
            totals: self.totals.counts.into(),
            profiler: (&self.profiler).into(),
            sites: self
                .sites
                .iter()
                .map(|s| Site {
                    stack_id: s.stack_id,
                    addresses: s.addresses.clone(),
                    frames: self.site_frames(s),
                    live_bytes: s.live_bytes,
                    live_objects: s.live_objects,
                    alloc_bytes: s.alloc_bytes,
                    alloc_objects: s.alloc_objects,
                    samples: s.samples,
                    live_samples: s.live_samples,
                    threads: s.threads.iter().map(SiteThread::from).collect(),
                })
                .collect(),
        })
    }
}

// The schema's types mirror the profile's field by field: a field added to one must be added
// to the other (and to docs/report-format.md), on purpose.

impl From<Totals> for ReportCounts {
    fn from(t: Totals) -> Self {
        ReportCounts {
            allocated_bytes: t.alloc_bytes,
            allocated_objects: t.alloc_objects,
            freed_bytes: t.free_bytes,
            freed_objects: t.free_objects,
            live_bytes: t.live_bytes,
            live_objects: t.live_objects,
            peak_live_bytes: t.peak_live_bytes,
            overhead_allocated_bytes: t.overhead_alloc_bytes,
            overhead_allocated_objects: t.overhead_alloc_objects,
            overhead_freed_bytes: t.overhead_free_bytes,
            overhead_freed_objects: t.overhead_free_objects,
        }
    }
}

impl From<ReportCounts> for Totals {
    fn from(c: ReportCounts) -> Self {
        Totals {
            alloc_bytes: c.allocated_bytes,
            alloc_objects: c.allocated_objects,
            free_bytes: c.freed_bytes,
            free_objects: c.freed_objects,
            live_bytes: c.live_bytes,
            live_objects: c.live_objects,
            peak_live_bytes: c.peak_live_bytes,
            overhead_alloc_bytes: c.overhead_allocated_bytes,
            overhead_alloc_objects: c.overhead_allocated_objects,
            overhead_free_bytes: c.overhead_freed_bytes,
            overhead_free_objects: c.overhead_freed_objects,
        }
    }
}

impl From<&ProfilerStats> for ReportProfiler {
    fn from(p: &ProfilerStats) -> Self {
        ReportProfiler {
            samples: p.samples,
            samples_dropped: p.samples_dropped,
            live_samples: p.live_samples,
            stacks: p.stacks,
            stacks_evicted: p.stacks_evicted,
            max_stacks: p.max_stacks,
            max_live_samples: p.max_live_samples,
            table_bytes: p.table_bytes,
            overhead_alloc_bytes: p.overhead_alloc_bytes,
            exact_max_stacks: p.exact_max_stacks,
            exact_max_live_samples: p.exact_max_live_samples,
            padding_bytes: p.padding_bytes,
            max_padding_bytes: p.max_padding_bytes,
            samples_unaligned: p.samples_unaligned,
            own_bytes: p.own_bytes,
            own_bytes_budget: p.own_bytes_budget,
            unattributed_live_bytes: p.unattributed_live_bytes,
        }
    }
}

impl From<&ReportProfiler> for ProfilerStats {
    fn from(p: &ReportProfiler) -> Self {
        ProfilerStats {
            samples: p.samples,
            samples_dropped: p.samples_dropped,
            live_samples: p.live_samples,
            stacks: p.stacks,
            stacks_evicted: p.stacks_evicted,
            max_stacks: p.max_stacks,
            max_live_samples: p.max_live_samples,
            table_bytes: p.table_bytes,
            overhead_alloc_bytes: p.overhead_alloc_bytes,
            exact_max_stacks: p.exact_max_stacks,
            exact_max_live_samples: p.exact_max_live_samples,
            padding_bytes: p.padding_bytes,
            max_padding_bytes: p.max_padding_bytes,
            samples_unaligned: p.samples_unaligned,
            own_bytes: p.own_bytes,
            own_bytes_budget: p.own_bytes_budget,
            unattributed_live_bytes: p.unattributed_live_bytes,
        }
    }
}

impl From<&ReportThread> for SiteThread {
    fn from(t: &ReportThread) -> Self {
        SiteThread {
            thread: t.thread,
            name: t.name.clone(),
            alloc_bytes: t.alloc_bytes,
            live_bytes: t.live_bytes,
        }
    }
}
