//! The types of schema v1: the JSON's own, field by field as `docs/report-format.md` documents
//! them. They mirror the profile's types (`Totals`, `ProfilerStats`, `SiteThread`) instead of
//! embedding them, so that renaming a field of a profile cannot rename a field of the schema;
//! `tests/report_schema.rs` holds a fixed report against a committed file.

use crate::read::mappings::Mapping;
use crate::record::live_record::StackId;
use serde::{Deserialize, Serialize};

/// The value of every report's `format` field.
pub const FORMAT: &str = "heapsampler-heap-report";
/// The schema version this build writes, and the only one it reads.
pub const VERSION: u32 = 1;

/// A heap report (schema v1): exact totals and rates, per-site estimates and rates, leak
/// suspects, and mappings.
///
/// ```
/// use heapsampler::Report;
/// let now = heapsampler::snapshot();
/// let report = Report::from_profile(&now, None, Vec::new(), Vec::new());
/// let text = report.to_string_pretty();
/// assert_eq!(Report::parse(&text).unwrap(), report);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`FORMAT`] (`"heapsampler-heap-report"`).
    pub format: String,
    /// Schema version, [`VERSION`].
    pub version: u32,
    /// Process id of the profiled process.
    pub pid: u32,
    /// Path of the profiled executable (empty when unknown).
    pub program: String,
    /// Wall-clock time of the snapshot, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the window the rates are measured over, milliseconds: since the previous
    /// report, or since the process started for the first one (0 when unknown: rates are 0).
    pub window_ms: u64,
    /// Mean sampling interval T in force, bytes (1 = exact, 0 = off).
    pub sample_interval: u64,
    /// Exact process-wide counters and rates.
    pub totals: ReportTotals,
    /// The profiler's own figures.
    pub profiler: ReportProfiler,
    /// Every call site with something sampled, most estimated live bytes first.
    pub sites: Vec<ReportSite>,
    /// The symbolized frames of every address the sites' stacks use, once per address, in
    /// address order (a stack's addresses repeat across sites; their names are stored once).
    pub locations: Vec<Location>,
    /// Sites whose live bytes keep growing, as judged by the [`LeakDetector`](crate::LeakDetector).
    pub leak_suspects: Vec<LeakSuspect>,
    /// The process's executable mappings, for offline symbolization.
    pub mappings: Vec<Mapping>,
    /// The process's memory beside the heap (resident set, cgroup, the C library's malloc),
    /// read when the report was built; absent in reports of other processes and older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_memory: Option<crate::read::process_memory::ProcessMemory>,
}

/// Exact process-wide counters, and exact rates over the report's window.
///
/// ```
/// let t = heapsampler::report::json::ReportTotals::default();
/// assert_eq!(t.allocated_bytes_per_sec, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportTotals {
    /// The exact counters, as fields of this object.
    #[serde(flatten)]
    pub counts: ReportCounts,
    /// Bytes allocated per second over the window.
    pub allocated_bytes_per_sec: f64,
    /// Objects allocated per second over the window.
    pub allocated_objects_per_sec: f64,
    /// Bytes freed per second over the window.
    pub freed_bytes_per_sec: f64,
    /// Objects freed per second over the window.
    pub freed_objects_per_sec: f64,
}

/// One call site of a report: estimates, rates, stack and top threads. Its frames are
/// [`Report::site_frames`].
///
/// ```
/// let site = heapsampler::report::json::ReportSite::default();
/// assert!(site.addresses.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportSite {
    /// The site's stack id (stable within the process).
    pub stack_id: StackId,
    /// Estimated bytes live now.
    pub live_bytes: f64,
    /// Estimated objects live now.
    pub live_objects: f64,
    /// Estimated bytes allocated here since the process started.
    pub alloc_bytes: f64,
    /// Estimated objects allocated here since the process started.
    pub alloc_objects: f64,
    /// Estimated bytes allocated here per second over the window.
    pub alloc_bytes_per_sec: f64,
    /// Estimated objects allocated here per second over the window.
    pub alloc_objects_per_sec: f64,
    /// Samples taken here since the process started.
    pub samples: u64,
    /// Of those, still live.
    pub live_samples: u64,
    /// Raw return addresses, innermost first; each is symbolized in the report's
    /// `locations` (and `mappings` allow symbolizing them offline).
    pub addresses: Vec<u64>,
    /// The allocating threads, most estimated bytes first.
    pub threads: Vec<ReportThread>,
}

/// The symbolized frames of one address: several when calls were inlined at it, innermost
/// first.
///
/// ```
/// use heapsampler::report::json::{Location, LocationFrame};
/// let loc = Location {
///     address: 0x1234,
///     frames: vec![LocationFrame { function: Some("my_app::load".into()), file: None, line: Some(3) }],
/// };
/// assert_eq!(loc.frames[0].line, Some(3));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The return address.
    pub address: u64,
    /// Its frames, innermost first; one frame without a function when it could not be
    /// symbolized.
    pub frames: Vec<LocationFrame>,
}

/// One frame of a [`Location`]. Absent fields were not known.
///
/// ```
/// let f = heapsampler::report::json::LocationFrame::default();
/// assert!(f.function.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationFrame {
    /// Demangled function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// The exact process-wide counters of a report (the profile's `Totals`).
///
/// ```
/// let c = heapsampler::report::json::ReportCounts::default();
/// assert_eq!(c.live_bytes, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCounts {
    /// Bytes ever allocated.
    pub allocated_bytes: u64,
    /// Objects ever allocated (a `realloc` counts as one free and one allocation).
    pub allocated_objects: u64,
    /// Bytes ever freed.
    pub freed_bytes: u64,
    /// Objects ever freed.
    pub freed_objects: u64,
    /// Bytes live at the snapshot: allocated minus freed.
    pub live_bytes: u64,
    /// Objects live at the snapshot.
    pub live_objects: u64,
    /// The most bytes ever live at once.
    pub peak_live_bytes: u64,
    /// Of `allocated_bytes`, those the profiler allocated for its own work.
    #[serde(default)]
    pub overhead_allocated_bytes: u64,
    /// Of `allocated_objects`, those the profiler allocated for its own work.
    #[serde(default)]
    pub overhead_allocated_objects: u64,
    /// Of `freed_bytes`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_freed_bytes: u64,
    /// Of `freed_objects`, those the profiler freed while doing its own work.
    #[serde(default)]
    pub overhead_freed_objects: u64,
}

/// The profiler's own figures in a report (the profile's `ProfilerStats`).
///
/// ```
/// let p = heapsampler::report::json::ReportProfiler::default();
/// assert_eq!(p.samples_dropped, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportProfiler {
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
    /// Bytes held by the profiler's tables, and pages kept for reuse by sampled objects.
    pub table_bytes: u64,
    /// Bytes the profiler allocated for its own work since start.
    pub overhead_alloc_bytes: u64,
    /// Bound on distinct stacks of samples taken in exact mode (interval 1).
    #[serde(default)]
    pub exact_max_stacks: u64,
    /// Bound on live records in exact mode (interval 1).
    #[serde(default)]
    pub exact_max_live_samples: u64,
    /// Page padding held by live page-aligned sampled objects.
    #[serde(default)]
    pub padding_bytes: u64,
    /// Bound on `padding_bytes`.
    #[serde(default)]
    pub max_padding_bytes: u64,
    /// Samples recorded without page alignment because the padding bound was reached.
    #[serde(default)]
    pub samples_unaligned: u64,
    /// The profiler's own memory: `table_bytes` + `padding_bytes`.
    #[serde(default)]
    pub own_bytes: u64,
    /// The most `own_bytes` can reach under the limits in force.
    #[serde(default)]
    pub own_bytes_budget: u64,
    /// Live bytes no site accounts for: `totals.live_bytes` − Σ sites' `live_bytes`.
    #[serde(default)]
    pub unattributed_live_bytes: f64,
}

/// A thread's share of a site in a report (the profile's `SiteThread`).
///
/// ```
/// let t = heapsampler::report::json::ReportThread::default();
/// assert!(t.name.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportThread {
    /// The thread's index in the process (`u32::MAX` = all other threads).
    pub thread: u32,
    /// The thread's name, or `thread-<index>`.
    pub name: String,
    /// Estimated bytes this thread allocated at the site.
    pub alloc_bytes: f64,
    /// Estimated bytes this thread allocated at the site that are still live.
    pub live_bytes: f64,
}

/// A call site whose live bytes keep growing: what the [`LeakDetector`](crate::LeakDetector)
/// finds, and what a report's `leak_suspects` hold.
///
/// ```
/// let s = heapsampler::LeakSuspect::default();
/// assert_eq!(s.growth_bytes_per_sec, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakSuspect {
    /// The site's stack id.
    pub stack_id: StackId,
    /// Estimated growth of the site's live bytes, bytes per second (Theil–Sen slope over the
    /// profiles' timestamps; 0 when all of them carry the same millisecond).
    pub growth_bytes_per_sec: f64,
    /// How sure the detector is, 0 to 1.
    pub confidence: f64,
    /// How many profiles the verdict rests on.
    pub reports_considered: usize,
    /// The site's estimated live bytes in the newest profile.
    pub live_bytes: f64,
}
