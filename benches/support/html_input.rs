//! Synthetic heap reports for the timeline page: hand-built sites with known names, and a big
//! input (1,000 reports × 10,000 sites) generated one report at a time.
#![allow(dead_code)]

use heapsampler::Report;
use heapsampler::report::json::{Location, LocationFrame, ReportSite, ReportTotals};
use heapsampler::timeline::{Options, Timeline};

/// 2026-01-01 00:00:00 UTC.
pub const T0: u64 = 1_767_225_600_000;

/// A report of `pid` at `t_ms` whose sites are `(stack id, live bytes, function)`; each site's
/// stack is its own address (named `function`) above a shared `app::main`.
pub fn report(
    pid: u32,
    t_ms: u64,
    interval: u64,
    allocated: u64,
    sites: &[(u32, f64, &str)],
) -> Report {
    let mut r = Report::parse(&empty_json()).expect("an empty report parses");
    r.pid = pid;
    r.timestamp_ms = t_ms;
    r.window_ms = 1000;
    r.sample_interval = interval;
    let live: f64 = sites.iter().map(|s| s.1).sum();
    r.totals = ReportTotals {
        allocated_bytes_per_sec: 1000.0,
        ..ReportTotals::default()
    };
    r.totals.counts.allocated_bytes = allocated.max(live as u64);
    r.totals.counts.live_bytes = live as u64;
    r.totals.counts.freed_bytes = r.totals.counts.allocated_bytes - live as u64;
    r.totals.counts.peak_live_bytes = live as u64;
    for &(id, bytes, function) in sites {
        r.sites.push(ReportSite {
            stack_id: id,
            live_bytes: bytes,
            alloc_bytes: bytes * 2.0,
            alloc_bytes_per_sec: bytes / 10.0,
            samples: 1,
            live_samples: 1,
            addresses: vec![0x10_0000 + u64::from(id) * 16, 0x1000],
            ..ReportSite::default()
        });
        r.locations.push(location(
            0x10_0000 + u64::from(id) * 16,
            function,
            "src/app.rs",
        ));
    }
    r.locations
        .push(location(0x1000, "app::main", "src/main.rs"));
    r.locations.sort_by_key(|l| l.address);
    r.locations.dedup_by_key(|l| l.address);
    r
}

fn location(address: u64, function: &str, file: &str) -> Location {
    Location {
        address,
        frames: vec![LocationFrame {
            function: Some(function.to_string()),
            file: Some(file.to_string()),
            line: Some(7),
        }],
    }
}

fn empty_json() -> String {
    let r = Report::from_profile(&heapsampler::Profile::default(), None, vec![], vec![]);
    r.to_string_pretty()
}

/// `reports` reports of one process with `sites` sites each, added to a timeline as they are
/// made (only the timeline's compact copy stays): see [`big_reports`].
pub fn big_timeline(reports: usize, sites: usize) -> Timeline {
    let mut timeline = Timeline::new(Options::default());
    big_reports(reports, sites, |name, r| timeline.add(&name, r));
    timeline
}

/// `reports` reports of one process with `sites` sites each, handed to `each` with their file
/// names as they are made: sites of 4 addresses from a pool of 400 named functions, live bytes
/// wandering around fixed levels, one site leaking 4 MiB a report.
pub fn big_reports(reports: usize, sites: usize, mut each: impl FnMut(String, Report)) {
    let base = big_report(sites);
    let mut allocated = 0u64;
    for i in 0..reports {
        let mut r = base.clone();
        r.timestamp_ms = T0 + i as u64 * 1000;
        let mut live = 0.0;
        for (k, s) in r.sites.iter_mut().enumerate() {
            let level = 1.0e9 / (k as f64 + 1.0);
            let wobble = 1.0 + 0.1 * ((i * 7 + k) % 13) as f64 / 13.0;
            s.live_bytes = if k == 1 {
                (i as f64 + 1.0) * 4.0 * 1048576.0
            } else {
                level * wobble
            };
            // The leaking site allocates only what it leaks.
            s.alloc_bytes = if k == 1 {
                s.live_bytes
            } else {
                s.live_bytes * 3.0 + i as f64 * 1000.0
            };
            s.alloc_bytes_per_sec = level / 100.0;
            live += s.live_bytes;
        }
        // Cumulative: more than live bytes can swing between two reports.
        allocated += 10_000_000_000;
        r.totals.counts.live_bytes = live as u64;
        r.totals.counts.allocated_bytes = allocated + live as u64;
        r.totals.allocated_bytes_per_sec = 1.0e7;
        each(format!("heap-4242-{i:06}.json"), r);
    }
}

/// One report of pid 4242 with `sites` sites of 4 addresses each from a pool of 400 named
/// functions (the reports of [`big_timeline`] before their values are set).
pub fn big_report(sites: usize) -> Report {
    let mut base = report(4242, T0, 512 * 1024, 0, &[]);
    base.locations.clear();
    for a in 0..400u64 {
        base.locations.push(location(
            0x40_0000 + a * 64,
            &format!("app::module_{}::function_{a}", a % 17),
            &format!("src/module_{}.rs", a % 17),
        ));
    }
    for k in 0..sites as u64 {
        base.sites.push(ReportSite {
            stack_id: k as u32,
            samples: 4,
            live_samples: 2,
            addresses: (0..4)
                .map(|j| 0x40_0000 + ((k * 7 + j * 13) % 400) * 64)
                .collect(),
            ..ReportSite::default()
        });
    }
    base
}
