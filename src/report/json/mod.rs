//! JSON heap report, schema v1 (documented field by field in `docs/report-format.md`).
//!
//! A [`Report`] is what the [`Reporter`](crate::Reporter) writes to disk and what tools read
//! back: a symbolized [`Profile`] plus what a reader needs without the process at hand —
//! allocation rates over the window since the previous report, the leak suspects, and the
//! process's mappings for offline symbolization. [`Report::to_profile`] turns a report back into
//! a `Profile`, so the leak detector and [`Profile::diff`] run on files just as on live data.
//!
//! Versioning: `version` changes only when a field is removed, renamed or changes meaning;
//! fields may be added within a version (readers ignore fields they do not know). Readers
//! reject versions they do not know with [`ReportErrorKind::UnsupportedVersion`].

use crate::leaks::LeakSuspect;
use crate::read::mappings::Mapping;
use crate::read::profile::{Frame, Profile, ProfilerStats, Site, SiteThread};
use crate::record::stack_table::StackId;
use crate::record::totals::Totals;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    pub profiler: ProfilerStats,
    /// Every call site with something sampled, most estimated live bytes first.
    pub sites: Vec<ReportSite>,
    /// The symbolized frames of every address the sites' stacks use, once per address, in
    /// address order (a stack's addresses repeat across sites; their names are stored once).
    pub locations: Vec<Location>,
    /// Sites whose live bytes keep growing, as judged by the [`LeakDetector`](crate::LeakDetector).
    pub leak_suspects: Vec<LeakSuspect>,
    /// The process's executable mappings, for offline symbolization.
    pub mappings: Vec<Mapping>,
}

/// Exact process-wide counters, and exact rates over the report's window.
///
/// ```
/// let t = heapsampler::report::json::ReportTotals::default();
/// assert_eq!(t.allocated_bytes_per_sec, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportTotals {
    /// The exact counters of [`Totals`], as fields of this object.
    #[serde(flatten)]
    pub counts: Totals,
    /// Bytes allocated per second over the window.
    pub allocated_bytes_per_sec: f64,
    /// Allocations per second over the window.
    pub allocated_objects_per_sec: f64,
    /// Bytes freed per second over the window.
    pub freed_bytes_per_sec: f64,
    /// Frees per second over the window.
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
    /// Estimated blocks live now.
    pub live_objects: f64,
    /// Estimated bytes allocated here since the process started.
    pub alloc_bytes: f64,
    /// Estimated allocations made here since the process started.
    pub alloc_objects: f64,
    /// Estimated bytes allocated here per second over the window.
    pub alloc_bytes_per_sec: f64,
    /// Estimated allocations made here per second over the window.
    pub alloc_objects_per_sec: f64,
    /// Samples taken here since the process started.
    pub samples: u64,
    /// Of those, still live.
    pub live_samples: u64,
    /// Raw return addresses, innermost first; each is symbolized in the report's
    /// `locations` (and `mappings` allow symbolizing them offline).
    pub addresses: Vec<u64>,
    /// The allocating threads, most estimated bytes first.
    pub threads: Vec<SiteThread>,
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
    super::validate::clamp(x)
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
        return addresses
            .into_iter()
            .map(|address| Location {
                address,
                frames: crate::read::symbolize::resolve(address)
                    .iter()
                    .map(to_location_frame)
                    .collect(),
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
        let _guard = crate::record::countdown::enter_guard();
        let baseline = previous.map(Baseline::of);
        Report::build(profile, baseline.as_ref(), leak_suspects, mappings)
    }

    /// [`from_profile`](Self::from_profile) against a kept [`Baseline`].
    pub(crate) fn build(
        profile: &Profile,
        previous: Option<&Baseline>,
        leak_suspects: Vec<LeakSuspect>,
        mappings: Vec<Mapping>,
    ) -> Report {
        let _guard = crate::record::countdown::enter_guard();
        // Cumulative counters of another process cannot be subtracted from ours.
        let previous = previous.filter(|b| b.pid == profile.pid);
        let since = match previous {
            Some(b) => Some(b.timestamp_ms),
            None if profile.pid == std::process::id() => crate::service::config::process_start_ms(),
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
            counts: t,
            allocated_bytes_per_sec: rate(
                t.allocated_bytes.saturating_sub(t0.allocated_bytes) as f64
            ),
            allocated_objects_per_sec: rate(
                t.allocated_objects.saturating_sub(t0.allocated_objects) as f64,
            ),
            freed_bytes_per_sec: rate(t.freed_bytes.saturating_sub(t0.freed_bytes) as f64),
            freed_objects_per_sec: rate(t.freed_objects.saturating_sub(t0.freed_objects) as f64),
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
                        .map(|t| SiteThread {
                            alloc_bytes: finite(t.alloc_bytes),
                            live_bytes: finite(t.live_bytes),
                            ..t.clone()
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
            profiler: profile.profiler.clone(),
            locations: locations_of(profile),
            sites,
            leak_suspects,
            mappings,
        }
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
        let _guard = crate::record::countdown::enter_guard();
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
        let skip = frames
            .iter()
            .take_while(|f| crate::read::symbolize::is_allocator_frame(f))
            .count();
        if skip < frames.len() {
            frames.drain(..skip);
        }
        frames
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
        crate::read::site_name::site_name(names)
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
        let _guard = crate::record::countdown::enter_guard();
        Profile {
            pid: self.pid,
            timestamp_ms: self.timestamp_ms,
            sample_interval: self.sample_interval,
            totals: self.totals.counts,
            profiler: self.profiler.clone(),
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
                    threads: s.threads.clone(),
                })
                .collect(),
        }
    }

    /// Reads a report from JSON text, checking `format` and `version` first so that a wrong
    /// file gets a clear error rather than a list of missing fields.
    ///
    /// ```
    /// use heapsampler::Report;
    /// let err = Report::parse(r#"{"format": "heapsampler-heap-report", "version": 7}"#).unwrap_err();
    /// assert_eq!(err.to_string(), "unsupported report version 7 (this build reads version 1)");
    /// assert!(Report::parse("not json").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Report, ReportError> {
        let _guard = crate::record::countdown::enter_guard();
        check_header(text)?;
        let report: Report = serde_json::from_str(text)
            .map_err(|e| ReportError::from(ReportErrorKind::Invalid(e.to_string())))?;
        super::validate::ranges(&report).map_err(ReportErrorKind::Invalid)?;
        Ok(report)
    }

    /// Reads a report file; errors name the file. A file larger than [`MAX_REPORT_BYTES`] is
    /// refused unread (`/dev/zero` is not a report), and so are values out of range (an
    /// estimate above 2^64, a timestamp after the year 9999): see `docs/report-format.md`.
    ///
    /// ```
    /// let err = heapsampler::Report::read("/nonexistent/heap-1-000001.json").unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent/heap-1-000001.json: cannot read"));
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<Report, ReportError> {
        let path = path.as_ref();
        let _guard = crate::record::countdown::enter_guard();
        let at = |kind: ReportErrorKind| ReportError {
            path: Some(path.to_path_buf()),
            kind,
        };
        let text = super::files::read_limited(path).map_err(|e| at(ReportErrorKind::Io(e)))?;
        Report::parse(&text).map_err(|e| at(e.kind))
    }

    /// The report as JSON, the way the reporter writes it: the top two levels indented, one
    /// site, location or mapping per line (readable, greppable, and about half the size of
    /// fully indented JSON), no trailing newline.
    ///
    /// ```
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let text = r.to_string_pretty();
    /// assert!(text.contains("\n  \"format\": \"heapsampler-heap-report\""));
    /// assert_eq!(heapsampler::Report::parse(&text).unwrap(), r);
    /// ```
    pub fn to_string_pretty(&self) -> String {
        let _guard = crate::record::countdown::enter_guard();
        let mut out = Vec::new();
        // Serializing plain data with string keys and finite numbers into memory cannot fail.
        let _ = self.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            LineFormatter::default(),
        ));
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the report to `w` as [`to_string_pretty`](Self::to_string_pretty) does, plus a
    /// trailing newline.
    ///
    /// ```
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let mut buf = Vec::new();
    /// r.write_to(&mut buf).unwrap();
    /// assert!(buf.ends_with(b"}\n"));
    /// ```
    pub fn write_to(&self, w: impl Write) -> io::Result<()> {
        let _guard = crate::record::countdown::enter_guard();
        let mut w = w;
        self.serialize(&mut serde_json::Serializer::with_formatter(
            &mut w,
            LineFormatter::default(),
        ))
        .map_err(io::Error::other)?;
        w.write_all(b"\n")
    }

    /// Writes the report to `dir/name` atomically and returns the path: the JSON goes to a
    /// hidden temporary file in the same directory (`.name.<pid>.<n>.tmp`, which no
    /// `heap-*.json` pattern matches), is flushed to disk, then renamed over `name`. A reader
    /// sees the old file or the complete new one, never a partial one; on error the temporary
    /// file is removed. Creates `dir` if it is missing. The file is created with mode
    /// [`DEFAULT_FILE_MODE`] (`0o600`, owner only); see
    /// [`write_atomic_with_mode`](Self::write_atomic_with_mode).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-doc-{}", std::process::id()));
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let path = r.write_atomic(&dir, "heap-example.json").unwrap();
    /// assert_eq!(heapsampler::Report::read(&path).unwrap(), r);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic(&self, dir: impl AsRef<Path>, name: &str) -> io::Result<PathBuf> {
        self.write_atomic_with_mode(dir, name, DEFAULT_FILE_MODE)
    }

    /// [`write_atomic`](Self::write_atomic) with the file created with permission bits `mode`
    /// (less the process's umask) instead of [`DEFAULT_FILE_MODE`] (`0o600`). A directory it
    /// creates gets the same bits plus search (`x`) wherever `mode` grants read.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = std::env::temp_dir().join(format!("hs-doc-mode-{}", std::process::id()));
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let path = r.write_atomic_with_mode(&dir, "heap-example.json", 0o640).unwrap();
    /// let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    /// assert_eq!(mode & !0o640, 0, "never more than asked for");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic_with_mode(
        &self,
        dir: impl AsRef<Path>,
        name: &str,
        mode: u32,
    ) -> io::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);
        let _guard = crate::record::countdown::enter_guard();
        let dir = dir.as_ref();
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("report file name {name:?} must be a plain, non-hidden file name"),
            ));
        }
        let context = |what: &str, path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
        };
        super::files::create_dir(dir, mode)
            .map_err(|e| context("cannot create directory", dir, e))?;
        let path = dir.join(name);
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let written = (|| -> io::Result<()> {
            // The mode is set at creation: the file is never readable by others, not even
            // while it is being written.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&temp)?;
            let mut w = io::BufWriter::with_capacity(256 * 1024, file);
            self.write_to(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(context("cannot write", &path, e));
        }
        // Make the rename itself durable; the report is already complete and visible, so a
        // failure here is not worth failing the write for.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(path)
    }
}

/// Permission bits of report files unless configured otherwise: owner read/write only. A
/// report holds return addresses, load addresses (which defeat ASLR) and the program's path.
///
/// ```
/// assert_eq!(heapsampler::report::json::DEFAULT_FILE_MODE, 0o600);
/// ```
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// The largest report file [`Report::read`] reads: 1 GiB (a report of a million sites is a
/// few hundred MiB).
///
/// ```
/// assert_eq!(heapsampler::report::json::MAX_REPORT_BYTES, 1 << 30);
/// ```
pub const MAX_REPORT_BYTES: u64 = 1 << 30;

/// JSON layout of a report: containers down to [`LineFormatter::PRETTY_DEPTH`] are indented
/// like `serde_json`'s pretty printer, deeper ones written compactly. So the report's fields
/// and `totals` read as usual, and each element of `sites`, `locations` and `mappings` takes
/// one line. (Fully indented, the addresses alone take a line each: twice the bytes and the
/// rendering time.)
#[derive(Default)]
struct LineFormatter {
    depth: usize,
    has_value: bool,
}

impl LineFormatter {
    const PRETTY_DEPTH: usize = 2;

    fn newline(&self, w: &mut (impl Write + ?Sized), depth: usize) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn begin_element(&mut self, w: &mut (impl Write + ?Sized), first: bool) -> io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.depth <= Self::PRETTY_DEPTH {
            self.newline(w, self.depth)
        } else {
            Ok(())
        }
    }

    fn end_container(&mut self, w: &mut (impl Write + ?Sized), close: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value && self.depth < Self::PRETTY_DEPTH {
            self.newline(w, self.depth)?;
        }
        w.write_all(close)
    }
}

impl serde_json::ser::Formatter for LineFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end_container(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_element(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end_container(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_element(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.depth <= Self::PRETTY_DEPTH {
            b": "
        } else {
            b":"
        })
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Checks `format` and `version` before the full parse; a single pass over the text that
/// skips every other field.
fn check_header(text: &str) -> Result<(), ReportError> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => ReportErrorKind::Truncated(e),
        serde_json::error::Category::Data => {
            ReportErrorKind::NotAReport("the top level is not a JSON object".into())
        }
        _ => ReportErrorKind::NotJson(e),
    })?;
    match &header.format {
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(other) => {
            return Err(ReportErrorKind::NotAReport(format!(
                "`format` is {} (expected \"{FORMAT}\")",
                abridged(other)
            ))
            .into());
        }
        None => return Err(ReportErrorKind::NotAReport("no `format` field".into()).into()),
    }
    match &header.version {
        Some(v) => match v.as_u64() {
            Some(n) if n == VERSION as u64 => Ok(()),
            Some(n) => Err(ReportErrorKind::UnsupportedVersion(n).into()),
            None => Err(ReportErrorKind::Invalid(format!(
                "`version` is {}, not a whole number",
                abridged(v)
            ))
            .into()),
        },
        None => Err(ReportErrorKind::Invalid("missing field `version`".into()).into()),
    }
}

/// A JSON value as an error message quotes it: compact, at most 60 characters.
fn abridged(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Why a report could not be read; `Display` names the file (when there is one) and the
/// problem.
///
/// ```
/// use heapsampler::{Report, report::json::ReportErrorKind};
/// let err = Report::parse(r#"{"format": "something-else", "version": 1}"#).unwrap_err();
/// assert!(matches!(err.kind(), ReportErrorKind::NotAReport(_)));
/// assert!(err.to_string().contains("not a heapsampler heap report"));
/// ```
#[derive(Debug)]
pub struct ReportError {
    path: Option<PathBuf>,
    kind: ReportErrorKind,
}

/// The kinds of [`ReportError`].
///
/// ```
/// use heapsampler::{Report, report::json::ReportErrorKind};
/// let err = Report::parse(r#"{"format": "heapsa"#).unwrap_err();
/// assert!(matches!(err.kind(), ReportErrorKind::Truncated(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReportErrorKind {
    /// The file could not be read.
    Io(io::Error),
    /// The text is not JSON.
    NotJson(serde_json::Error),
    /// The JSON ends early (a partly written or cut file).
    Truncated(serde_json::Error),
    /// JSON, but not a heapsampler heap report (`format` missing or different).
    NotAReport(String),
    /// A heap report of a schema version this build does not read.
    UnsupportedVersion(u64),
    /// A v1 report with a missing or malformed field.
    Invalid(String),
}

impl ReportError {
    /// What went wrong.
    ///
    /// ```
    /// use heapsampler::report::json::ReportErrorKind;
    /// let err = heapsampler::Report::parse("[1, 2]").unwrap_err();
    /// assert!(matches!(err.kind(), ReportErrorKind::NotAReport(_)));
    /// ```
    pub fn kind(&self) -> &ReportErrorKind {
        &self.kind
    }

    /// The file being read, if the report came from one.
    ///
    /// ```
    /// let err = heapsampler::Report::read("/nonexistent.json").unwrap_err();
    /// assert_eq!(err.path(), Some(std::path::Path::new("/nonexistent.json")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl From<ReportErrorKind> for ReportError {
    fn from(kind: ReportErrorKind) -> Self {
        ReportError { path: None, kind }
    }
}

impl fmt::Display for ReportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportErrorKind::Io(e) => write!(f, "cannot read the report: {e}"),
            ReportErrorKind::NotJson(e) => write!(f, "not a JSON document: {e}"),
            ReportErrorKind::Truncated(e) => {
                write!(f, "truncated report, the JSON ends early ({e})")
            }
            ReportErrorKind::NotAReport(why) => write!(f, "not a heapsampler heap report: {why}"),
            ReportErrorKind::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported report version {v} (this build reads version {VERSION})"
                )
            }
            ReportErrorKind::Invalid(why) => write!(f, "invalid report: {why}"),
        }
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => self.kind.fmt(f),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ReportErrorKind::Io(e) => Some(e),
            ReportErrorKind::NotJson(e) | ReportErrorKind::Truncated(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: StackId, live: f64, alloc: f64, addrs: &[u64]) -> Site {
        Site {
            stack_id: id,
            addresses: addrs.to_vec(),
            live_bytes: live,
            live_objects: live / 16.0,
            alloc_bytes: alloc,
            alloc_objects: alloc / 16.0,
            samples: 3,
            live_samples: 1,
            ..Site::default()
        }
    }

    fn profile(ts: u64, sites: Vec<Site>, allocated: u64) -> Profile {
        Profile {
            pid: 4242,
            timestamp_ms: ts,
            sample_interval: 4096,
            totals: Totals {
                allocated_bytes: allocated,
                allocated_objects: allocated / 8,
                ..Totals::default()
            },
            sites,
            ..Profile::default()
        }
    }

    #[test]
    fn rates_are_deltas_over_the_window_matched_by_stack_id() {
        let before = profile(
            10_000,
            vec![site(1, 0.0, 1000.0, &[1]), site(2, 5.0, 500.0, &[2])],
            10_000,
        );
        let now = profile(
            12_000,
            vec![
                site(1, 100.0, 5000.0, &[1]),
                site(2, 5.0, 500.0, &[2]),
                site(3, 50.0, 60.0, &[3]),
            ],
            30_000,
        );
        let r = Report::from_profile(&now, Some(&before), vec![], vec![]);
        assert_eq!(r.window_ms, 2000);
        assert_eq!(r.totals.allocated_bytes_per_sec, 10_000.0);
        let by_id = |id| r.sites.iter().find(|s| s.stack_id == id).unwrap();
        assert_eq!(by_id(1).alloc_bytes_per_sec, 2000.0);
        assert_eq!(by_id(1).alloc_objects_per_sec, 125.0);
        assert_eq!(by_id(2).alloc_bytes_per_sec, 0.0);
        // A site new in this window: everything it allocated is in the window.
        assert_eq!(by_id(3).alloc_bytes_per_sec, 30.0);
        let order: Vec<_> = r.sites.iter().map(|s| s.stack_id).collect();
        assert_eq!(
            order,
            vec![1, 3, 2],
            "sites sorted by live bytes, largest first"
        );
    }

    #[test]
    fn a_reused_id_with_other_frames_is_a_new_site_and_no_nan_escapes() {
        let before = profile(1000, vec![site(1, 0.0, 1000.0, &[1, 2])], 0);
        let now = profile(1000, vec![site(1, f64::NAN, 400.0, &[9, 9])], 0);
        let r = Report::from_profile(&now, Some(&before), vec![], vec![]);
        assert_eq!(r.window_ms, 0);
        assert_eq!(
            r.sites[0].alloc_bytes_per_sec, 0.0,
            "zero window gives zero rates"
        );
        assert_eq!(r.sites[0].live_bytes, 0.0);
        let later = profile(3000, vec![site(1, 1.0, 400.0, &[9, 9])], 0);
        let r = Report::from_profile(&later, Some(&before), vec![], vec![]);
        assert_eq!(r.sites[0].alloc_bytes_per_sec, 200.0);
        assert_eq!(Report::parse(&r.to_string_pretty()).unwrap(), r);
    }

    #[test]
    fn layout_indents_two_levels_and_puts_each_site_on_one_line() {
        let p = profile(
            5,
            vec![site(1, 3.0, 4.0, &[10, 20]), site(2, 1.0, 1.0, &[30])],
            64,
        );
        let r = Report::from_profile(&p, None, vec![], vec![]);
        let text = r.to_string_pretty();
        assert!(
            text.starts_with("{\n  \"format\": \"heapsampler-heap-report\",\n  \"version\": 1,"),
            "{text}"
        );
        assert!(
            text.contains("\n  \"totals\": {\n    \"allocated_bytes\": 64,"),
            "{text}"
        );
        assert!(
            text.contains("\n  \"sites\": [\n    {\"stack_id\":1,\"live_bytes\":3.0,"),
            "{text}"
        );
        assert!(
            text.contains("\"addresses\":[10,20],\"threads\":[]},\n    {\"stack_id\":2,"),
            "{text}"
        );
        assert!(text.contains("\n  \"leak_suspects\": [],\n"), "{text}");
        assert!(text.ends_with("\n  \"mappings\": []\n}"), "{text}");
        assert_eq!(Report::parse(&text).unwrap(), r);
    }

    #[test]
    fn header_errors_are_named() {
        let msg = |t: &str| Report::parse(t).unwrap_err().to_string();
        assert!(msg("").starts_with("truncated report"), "{}", msg(""));
        assert!(
            msg("{nope").starts_with("not a JSON document"),
            "{}",
            msg("{nope")
        );
        assert_eq!(
            msg(r#"{"version": 1}"#),
            "not a heapsampler heap report: no `format` field"
        );
        assert_eq!(
            msg(r#"{"format": "pprof", "version": 1}"#),
            "not a heapsampler heap report: `format` is \"pprof\" (expected \"heapsampler-heap-report\")"
        );
        assert_eq!(
            msg(r#"{"format": "heapsampler-heap-report", "version": 2, "sites": 5}"#),
            "unsupported report version 2 (this build reads version 1)"
        );
        assert_eq!(
            msg(r#"{"format": "heapsampler-heap-report"}"#),
            "invalid report: missing field `version`"
        );
        let m = msg(r#"{"format": "heapsampler-heap-report", "version": 1, "pid": 3}"#);
        assert!(m.starts_with("invalid report: missing field"), "{m}");
    }

    fn frame(address: u64, f: &str) -> Frame {
        Frame {
            address,
            function: Some(f.into()),
            file: Some("x.rs".into()),
            line: Some(address as u32),
        }
    }

    /// Frames as a debug build symbolizes them: `Sampler::alloc` inlined into the global
    /// allocator shim, whose entry address capture skipped, leaves the wrapper's frame (and
    /// std's allocation shims) at the top of the stack.
    #[test]
    fn a_site_is_never_named_after_the_allocator() {
        let mut p = profile(1, vec![site(1, 1.0, 1.0, &[10, 20, 30])], 0);
        p.sites[0].frames = vec![
            frame(
                10,
                "<heapsampler::record::sampler::Sampler<A> as core::alloc::global::GlobalAlloc>::alloc",
            ),
            frame(10, "__rustc::__rust_alloc"),
            frame(20, "alloc::alloc::Global::alloc_impl"),
            frame(
                20,
                "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
            ),
            frame(20, "alloc::raw_vec::RawVecInner<A>::try_allocate_in"),
            frame(30, "leaky_service::Sessions::open"),
        ];
        let r = Report::from_profile(&p, None, vec![], vec![]);
        assert_eq!(
            r.top_function(&r.sites[0]),
            Some("leaky_service::Sessions::open")
        );
        // Only the allocator and the standard library: the first frame that is not the
        // allocator names it.
        p.sites[0].frames.truncate(5);
        p.sites[0].addresses.truncate(2);
        let r = Report::from_profile(&p, None, vec![], vec![]);
        assert_eq!(
            r.top_function(&r.sites[0]),
            Some("alloc::raw_vec::RawVecInner<A>::try_allocate_in")
        );
    }

    #[test]
    fn top_function_skips_library_frames() {
        let mut p = profile(1, vec![site(1, 1.0, 1.0, &[10, 20, 30])], 0);
        p.sites[0].frames = vec![
            frame(10, "alloc::raw_vec::RawVecInner<A>::finish_grow"),
            frame(10, "<T as alloc::slice::hack::ConvertVec>::to_vec"),
            frame(20, "<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
            frame(20, "std::collections::hash::map::HashMap<K,V>::insert"),
            frame(30, "leaky::leak_session_state"),
        ];
        let r = Report::from_profile(&p, None, vec![], vec![]);
        assert_eq!(
            r.top_function(&r.sites[0]),
            Some("leaky::leak_session_state")
        );
        p.sites[0].frames.truncate(2);
        p.sites[0].addresses.truncate(1);
        let r = Report::from_profile(&p, None, vec![], vec![]);
        assert_eq!(
            r.top_function(&r.sites[0]),
            Some("alloc::raw_vec::RawVecInner<A>::finish_grow")
        );
    }

    #[test]
    fn locations_store_each_address_once_and_rebuild_every_sites_frames() {
        // Site 1 recurses through address 20 (three copies); site 2 starts at 20 with its
        // allocator frame already dropped by symbolization.
        let mut p = profile(
            1,
            vec![
                site(1, 1.0, 1.0, &[10, 20, 20, 20, 30]),
                site(2, 2.0, 2.0, &[20, 30]),
            ],
            0,
        );
        let rec = [frame(20, "app::walk"), frame(20, "app::walk_inner")];
        p.sites[0].frames = [
            vec![frame(10, "app::leaf")],
            rec.to_vec(),
            rec.to_vec(),
            rec.to_vec(),
            vec![frame(30, "main")],
        ]
        .concat();
        p.sites[1].frames = vec![frame(20, "app::walk_inner"), frame(30, "main")];
        let r = Report::from_profile(&p, None, vec![], vec![]);
        let addresses: Vec<u64> = r.locations.iter().map(|l| l.address).collect();
        assert_eq!(addresses, vec![10, 20, 30]);
        assert_eq!(
            r.location(20).unwrap().frames.len(),
            2,
            "one copy of the recursive frames"
        );
        let back = r.to_profile();
        for (original, rebuilt) in p.sites.iter().zip(back.sites.iter().rev()) {
            assert_eq!(original.stack_id, rebuilt.stack_id);
            if original.stack_id == 1 {
                assert_eq!(rebuilt.frames, original.frames);
            } else {
                // Both frames of address 20 are known now: the rebuilt stack is the complete one.
                assert_eq!(rebuilt.frames.len(), 3);
                assert_eq!(rebuilt.frames[1..], original.frames[..]);
            }
        }
        assert_eq!(Report::parse(&r.to_string_pretty()).unwrap(), r);
    }
}
