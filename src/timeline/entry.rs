//! What a timeline keeps of every report it is given: totals for the exact charts and, per
//! site, the few numbers the site charts, the growth column and the leak detector need.

use crate::Report;
use crate::record::live_record::StackId;

/// What is kept of every report: totals for the exact charts, and per site the stack id,
/// estimated live bytes and allocated bytes (24 bytes a site) for the site charts, the
/// growth column and the leak detector.
pub(crate) struct Entry {
    pub name: String,
    pub pid: u32,
    pub timestamp_ms: u64,
    pub sample_interval: u64,
    pub live_bytes: u64,
    pub alloc_bytes: u64,
    pub alloc_rate: f64,
    pub sites: Vec<SitePoint>,
}

/// Read straight from a report's site by the light read (`light.rs`).
#[derive(Clone, Copy, serde::Deserialize)]
pub(crate) struct SitePoint {
    pub stack_id: StackId,
    #[serde(rename = "live_bytes")]
    pub live: f64,
    #[serde(rename = "alloc_bytes")]
    pub alloc: f64,
}

impl Entry {
    pub(crate) fn of(name: &str, r: &Report) -> Entry {
        Entry {
            name: name.to_string(),
            pid: r.pid,
            timestamp_ms: r.timestamp_ms,
            sample_interval: r.sample_interval,
            live_bytes: r.totals.counts.live_bytes,
            alloc_bytes: r.totals.counts.allocated_bytes,
            alloc_rate: r.totals.allocated_bytes_per_sec,
            sites: r
                .sites
                .iter()
                .map(|s| SitePoint {
                    stack_id: s.stack_id,
                    live: s.live_bytes,
                    alloc: s.alloc_bytes,
                })
                .collect(),
        }
    }
}
