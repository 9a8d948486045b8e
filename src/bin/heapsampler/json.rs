//! `--json` output of `top`, `diff` and `leaks`: one JSON document on stdout, for scripts.
//!
//! The shapes are stable (fields are only ever added; documented in docs/report-format.md,
//! "CLI JSON output"). Names are the report's own, unescaped: JSON escapes them itself.

use crate::Result;
use heapsampler::Frame;
use heapsampler::Report;
use heapsampler::report::json::ReportSite;
use serde::Serialize;
use std::io::Write;

/// The report a result is about.
#[derive(Serialize)]
pub struct Source<'a> {
    pub file: String,
    pub pid: u32,
    pub program: &'a str,
    pub timestamp_ms: u64,
    pub window_ms: u64,
    pub sample_interval: u64,
}

impl<'a> Source<'a> {
    pub fn of(file: &std::path::Path, r: &'a Report) -> Source<'a> {
        Source {
            file: file.display().to_string(),
            pid: r.pid,
            program: &r.program,
            timestamp_ms: r.timestamp_ms,
            window_ms: r.window_ms,
            sample_interval: r.sample_interval,
        }
    }
}

/// A site's name: its innermost program function and where in it, as `top` prints them.
#[derive(Serialize)]
pub struct Named {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Named {
    pub fn of(r: &Report, s: &ReportSite) -> Named {
        let name = r.top_function(s);
        let frame = name.and_then(|n| {
            r.site_frames(s)
                .into_iter()
                .find(|f| f.function.as_deref() == Some(n))
        });
        Named {
            function: name.map(str::to_string),
            file: frame.as_ref().and_then(|f| f.file.clone()),
            line: frame.and_then(|f| f.line),
        }
    }
}

/// One frame of a stack.
#[derive(Serialize)]
pub struct JsonFrame {
    pub address: u64,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl From<Frame> for JsonFrame {
    fn from(f: Frame) -> JsonFrame {
        JsonFrame {
            address: f.address,
            function: f.function,
            file: f.file,
            line: f.line,
        }
    }
}

/// `top --json`.
#[derive(Serialize)]
pub struct Top<'a> {
    pub report: Source<'a>,
    /// `live`, `alloc` or `rate`.
    pub by: &'static str,
    pub totals: &'a heapsampler::report::json::ReportTotals,
    pub sites_total: usize,
    pub sites: Vec<TopSite>,
}

#[derive(Serialize)]
pub struct TopSite {
    pub stack_id: u32,
    #[serde(flatten)]
    pub name: Named,
    pub live_bytes: f64,
    pub live_objects: f64,
    pub alloc_bytes: f64,
    pub alloc_objects: f64,
    pub alloc_bytes_per_sec: f64,
    pub samples: u64,
    pub live_samples: u64,
}

impl TopSite {
    pub fn of(r: &Report, s: &ReportSite) -> TopSite {
        TopSite {
            stack_id: s.stack_id,
            name: Named::of(r, s),
            live_bytes: s.live_bytes,
            live_objects: s.live_objects,
            alloc_bytes: s.alloc_bytes,
            alloc_objects: s.alloc_objects,
            alloc_bytes_per_sec: s.alloc_bytes_per_sec,
            samples: s.samples,
            live_samples: s.live_samples,
        }
    }
}

/// `diff --json`.
#[derive(Serialize)]
pub struct Diff<'a> {
    pub old: Source<'a>,
    pub new: Source<'a>,
    /// `stack_id` (one process) or `function_names` (two processes).
    pub matched_by: &'static str,
    /// Per exact counter: old, new and change.
    pub totals: Vec<TotalChange>,
    /// Sites whose live or allocated bytes changed.
    pub sites_changed: usize,
    pub sites: Vec<DiffSite>,
}

#[derive(Serialize)]
pub struct TotalChange {
    pub name: &'static str,
    pub old: u64,
    pub new: u64,
    pub change: i128,
}

#[derive(Serialize)]
pub struct DiffSite {
    /// Set when sites are matched by stack id.
    pub stack_id: Option<u32>,
    pub function: String,
    pub location: Option<String>,
    /// `new`, `gone` or `changed`.
    pub status: &'static str,
    pub old_live_bytes: f64,
    pub new_live_bytes: f64,
    pub live_bytes_change: f64,
    pub alloc_bytes_change: f64,
}

/// `leaks --json`.
#[derive(Serialize)]
pub struct Leaks {
    pub processes: Vec<LeakProcess>,
    /// Suspects over all processes.
    pub suspects_total: usize,
}

#[derive(Serialize)]
pub struct LeakProcess {
    pub pid: u32,
    pub program: String,
    pub reports: usize,
    /// Reports the verdict rests on (0: too few to judge).
    pub judged: usize,
    pub newest: String,
    pub suspects: Vec<LeakJson>,
}

#[derive(Serialize)]
pub struct LeakJson {
    pub stack_id: u32,
    pub function: Option<String>,
    pub growth_bytes_per_sec: f64,
    pub confidence: f64,
    pub live_bytes: f64,
    pub reports_considered: usize,
    /// The site's stack in the newest report, innermost first.
    pub frames: Vec<JsonFrame>,
}

/// Writes `value` as pretty JSON and a newline.
pub fn write(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}
