//! The light read of a report file: only what a timeline keeps of a report that is not shown
//! in full ([`Entry`]: header, totals, per site the stack id, live and allocated bytes). Every
//! other field (stacks, threads, locations, mappings) is skipped as JSON without being typed
//! or stored. The sites are read line by line when they are laid out as the reporter writes
//! them (`lines.rs`), by serde otherwise.
//!
//! Anything the light read does not accept (not JSON, truncated, another format or version, a
//! value out of range) is read again in full by [`Report::parse`], so a file that cannot be
//! used is skipped with the same reason either way.

use super::entry::{Entry, SitePoint};
use super::lines;
use crate::Report;
use crate::read::profiler_work;
use crate::report::json::report_error::ReportError;
use crate::report::json::{FORMAT, MAX_REPORT_BYTES, VERSION};
use crate::report::validate::{MAX_TIMESTAMP_MS, is_estimate};
use serde::Deserialize;
use std::io::Read as _;
use std::path::Path;

/// A report file as read for a timeline.
pub(crate) enum Read {
    /// Rotated away between the listing and the read (not an error).
    Gone,
    /// Read lightly: the compact copy only.
    Light(Entry),
    /// Read in full: the report, or why the file cannot be used.
    Full(Box<Result<Report, ReportError>>),
}

#[derive(Deserialize)]
struct Light {
    format: String,
    version: u32,
    pid: u32,
    timestamp_ms: u64,
    window_ms: u64,
    sample_interval: u64,
    totals: LightTotals,
    sites: Sites,
}

/// The `sites` of a light read: read by serde, or read line by line (`lines.rs`) and replaced
/// by `null` in the text serde reads. `null` is no report's `sites`: where serde finds an
/// array, the lines read were not the top level's, and the file is read in full.
enum Sites {
    Read(Vec<SitePoint>),
    Elsewhere,
}

impl<'de> Deserialize<'de> for Sites {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sites, D::Error> {
        Ok(Option::deserialize(d)?.map_or(Sites::Elsewhere, Sites::Read))
    }
}

#[derive(Deserialize)]
struct LightTotals {
    allocated_bytes: u64,
    live_bytes: u64,
    allocated_bytes_per_sec: f64,
    allocated_objects_per_sec: f64,
    freed_bytes_per_sec: f64,
    freed_objects_per_sec: f64,
}

/// Reads `path` lightly, or in full when the light read does not accept it.
/// `text` is the reader's buffer, kept from file to file: a new 3 MB buffer per file costs
/// its pages' faults again.
pub(crate) fn read(path: &Path, name: &str, text: &mut String) -> Read {
    if !path.exists() {
        return Read::Gone;
    }
    profiler_work(|| {
        text.clear();
        let read = std::fs::File::open(path)
            .and_then(|f| f.take(MAX_REPORT_BYTES + 1).read_to_string(text));
        if read.is_err() || text.len() as u64 > MAX_REPORT_BYTES {
            // Worded as `Report::read` words it.
            return Read::Full(Box::new(Report::read(path)));
        }
        match parse(text, name) {
            Some(entry) => Read::Light(entry),
            None => Read::Full(Box::new(
                Report::parse(text).map_err(|e| ReportError::at(path, e.into_kind())),
            )),
        }
    })
}

/// The compact copy of the report `text`, when it is a report of this format and version
/// whose read values are in the ranges [`Report::parse`] accepts.
fn parse(text: &str, name: &str) -> Option<Entry> {
    parse_with(text, name, lines::sites(text))
}

/// [`parse`] with the sites read line by line beforehand, if they could be.
fn parse_with(
    text: &str,
    name: &str,
    lines: Option<(std::ops::Range<usize>, Vec<SitePoint>)>,
) -> Option<Entry> {
    let (r, sites): (Light, _) = match lines {
        Some((at, sites)) => {
            let mut rest = String::with_capacity(text.len() - at.len() + 4);
            rest.push_str(&text[..at.start]);
            rest.push_str("null");
            rest.push_str(&text[at.end..]);
            (serde_json::from_str(&rest).ok()?, Some(sites))
        }
        None => (serde_json::from_str(text).ok()?, None),
    };
    let sites = match (r.sites, sites) {
        (Sites::Read(sites), None) | (Sites::Elsewhere, Some(sites)) => sites,
        _ => return None,
    };
    let t = &r.totals;
    let in_range = r.format == FORMAT
        && r.version == VERSION
        && r.timestamp_ms <= MAX_TIMESTAMP_MS
        && r.window_ms <= r.timestamp_ms
        && [
            t.allocated_bytes_per_sec,
            t.allocated_objects_per_sec,
            t.freed_bytes_per_sec,
            t.freed_objects_per_sec,
        ]
        .into_iter()
        .all(is_estimate)
        && sites
            .iter()
            .all(|s| is_estimate(s.live) && is_estimate(s.alloc));
    in_range.then(|| Entry {
        name: name.to_string(),
        pid: r.pid,
        timestamp_ms: r.timestamp_ms,
        sample_interval: r.sample_interval,
        live_bytes: t.live_bytes,
        alloc_bytes: t.allocated_bytes,
        alloc_rate: t.allocated_bytes_per_sec,
        sites,
    })
}

#[cfg(test)]
#[path = "light_tests.rs"]
mod tests;
