//! `heapsampler top`: the report's header and exact totals, then the top sites.

use crate::format::{self, bytes, int, rate, rel_error};
use crate::input::{self, Loaded};
use crate::{Result, TopBy, Verdict};
use heapsampler::report::json::ReportSite;
use std::io::Write;
use std::path::Path;

pub fn run(
    out: &mut dyn Write,
    path: &Path,
    count: usize,
    by: TopBy,
    json: bool,
) -> Result<Verdict> {
    let loaded = input::load(path)?;
    if json {
        let r = &loaded.report;
        let doc = crate::json::Top {
            report: crate::json::Source::of(path, r),
            by: match by {
                TopBy::Live => "live",
                TopBy::Alloc => "alloc",
                TopBy::Rate => "rate",
            },
            totals: &r.totals,
            sites_total: r.sites.len(),
            sites: ranked(r, count, by)
                .into_iter()
                .map(|s| crate::json::TopSite::of(r, s))
                .collect(),
        };
        crate::json::write(out, &doc)?;
        return Ok(Verdict::Good);
    }
    header(out, &loaded)?;
    writeln!(out)?;
    table(out, &loaded, count, by)?;
    Ok(Verdict::Good)
}

/// Which report, which process, when, how it was sampled, and its exact totals.
pub fn header(out: &mut dyn Write, loaded: &Loaded) -> Result<()> {
    let r = &loaded.report;
    writeln!(out, "report    {}", loaded.name())?;
    let program = if r.program.is_empty() {
        String::new()
    } else {
        format!(", {}", format::escape(&r.program))
    };
    writeln!(out, "process   pid {}{program}", r.pid)?;
    let window = if r.window_ms == 0 {
        "no window (rates unknown)".to_string()
    } else {
        format!("rates over the last {}", format::duration_ms(r.window_ms))
    };
    writeln!(
        out,
        "time      {}, {window}",
        format::timestamp(r.timestamp_ms)
    )?;
    writeln!(out, "sampling  {}", sampling(r.sample_interval))?;
    let t = &r.totals.counts;
    writeln!(out, "totals (exact):")?;
    writeln!(
        out,
        "  live       {:>10}  {} bytes in {} objects; peak {}",
        bytes(t.live_bytes as f64),
        int(t.live_bytes),
        int(t.live_objects),
        bytes(t.peak_live_bytes as f64)
    )?;
    writeln!(
        out,
        "  allocated  {:>10}  {} bytes in {} objects; {}",
        bytes(t.allocated_bytes as f64),
        int(t.allocated_bytes),
        int(t.allocated_objects),
        rate(r.totals.allocated_bytes_per_sec)
    )?;
    writeln!(
        out,
        "  freed      {:>10}  {} bytes in {} objects; {}",
        bytes(t.freed_bytes as f64),
        int(t.freed_bytes),
        int(t.freed_objects),
        rate(r.totals.freed_bytes_per_sec)
    )?;
    writeln!(
        out,
        "  of which the profiler's own: {} allocated, {} freed",
        bytes(t.overhead_allocated_bytes as f64),
        bytes(t.overhead_freed_bytes as f64)
    )?;
    let p = &r.profiler;
    writeln!(
        out,
        "profiler  {} samples ({} live), {} stacks, {} dropped samples",
        int(p.samples),
        int(p.live_samples),
        int(p.stacks),
        int(p.samples_dropped)
    )?;
    if p.own_bytes_budget > 0 {
        writeln!(
            out,
            "memory    profiler holds {} (a budget of {}); {} samples unaligned",
            bytes(p.own_bytes as f64),
            bytes(p.own_bytes_budget as f64),
            int(p.samples_unaligned)
        )?;
    }
    if let Some(line) = process_line(r) {
        writeln!(out, "resident  {line}")?;
    }
    if p.samples_dropped > 0 {
        writeln!(
            out,
            "warning   {} samples were dropped because a table was full: site estimates are \
             too low, {} live not attributed to a site (raise the limits or the sample \
             interval)",
            int(p.samples_dropped),
            bytes(p.unattributed_live_bytes.max(0.0))
        )?;
    }
    Ok(())
}

/// RSS beside the live heap, and the gap between them (what the allocators hold beyond the
/// live blocks, the profiler's own memory, code and stacks).
fn process_line(r: &heapsampler::Report) -> Option<String> {
    let m = r.process_memory.as_ref()?;
    let rss = m.rss_bytes?;
    let live = r.totals.counts.live_bytes;
    let mut line = format!(
        "RSS {}, heap live {} ({:.0}% of RSS), gap {}",
        bytes(rss as f64),
        bytes(live as f64),
        100.0 * live as f64 / rss.max(1) as f64,
        bytes(rss.saturating_sub(live) as f64)
    );
    if r.profiler.own_bytes > 0 {
        line += &format!(" (profiler's own {})", bytes(r.profiler.own_bytes as f64));
    }
    if let Some(g) = &m.glibc_malloc {
        line += &format!("; glibc malloc keeps {} free", bytes(g.free_bytes as f64));
    }
    if let Some(j) = &m.jemalloc {
        line += &format!(
            "; jemalloc {} allocated, {} resident, {} retained",
            bytes(j.allocated_bytes as f64),
            bytes(j.resident_bytes as f64),
            bytes(j.retained_bytes as f64)
        );
    }
    if let Some(max) = m.cgroup.as_ref().and_then(|c| c.max_bytes) {
        line += &format!("; cgroup limit {}", bytes(max as f64));
    }
    Some(line)
}

/// One line on what the sample interval means for the estimates.
pub fn sampling(t: u64) -> String {
    match t {
        0 => "off (interval 0): no site estimates".to_string(),
        1 => "every allocation recorded (interval 1): site numbers are exact".to_string(),
        t => format!(
            "interval T = {}; a site estimate of B bytes is within about ±√(T/B) \
             (B = 100 T = {}: ±10%)",
            bytes(t as f64),
            bytes(100.0 * t as f64)
        ),
    }
}

/// The `count` first sites by `by`, ties by stack id.
fn ranked(r: &heapsampler::Report, count: usize, by: TopBy) -> Vec<&ReportSite> {
    let key = |s: &ReportSite| match by {
        TopBy::Live => s.live_bytes,
        TopBy::Alloc => s.alloc_bytes,
        TopBy::Rate => s.alloc_bytes_per_sec,
    };
    let mut sites: Vec<&ReportSite> = r.sites.iter().collect();
    sites.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.stack_id.cmp(&b.stack_id)));
    sites.truncate(count);
    sites
}

fn table(out: &mut dyn Write, loaded: &Loaded, count: usize, by: TopBy) -> Result<()> {
    let r = &loaded.report;
    let sites = ranked(r, count, by);
    let what = match by {
        TopBy::Live => "live bytes",
        TopBy::Alloc => "allocated bytes",
        TopBy::Rate => "allocation rate",
    };
    writeln!(
        out,
        "top {} of {} sites by {what} (estimated; ± is the standard error):",
        sites.len(),
        r.sites.len()
    )?;
    if sites.is_empty() {
        return Ok(());
    }
    let columns = format!(
        "{:>10} {:>7}  {:>10} {:>7}  {:>12} {:>7}  {:>6}  function (location)",
        "live", "±", "allocated", "±", "alloc rate", "±", "stack"
    );
    writeln!(out, "{}", format::bold(&columns))?;
    let t = r.sample_interval;
    let window_secs = r.window_ms as f64 / 1000.0;
    for s in sites {
        // A rate's error is that of the bytes allocated in the window.
        let rate_error = if r.window_ms == 0 {
            "-".to_string()
        } else {
            rel_error(t, s.alloc_bytes_per_sec * window_secs)
        };
        writeln!(
            out,
            "{:>10} {:>7}  {:>10} {:>7}  {:>12} {:>7}  {:>6}  {}",
            bytes(s.live_bytes),
            rel_error(t, s.live_bytes),
            bytes(s.alloc_bytes),
            rel_error(t, s.alloc_bytes),
            rate(s.alloc_bytes_per_sec),
            rate_error,
            s.stack_id,
            format::label_text(&format::site_label(r, s))
        )?;
    }
    Ok(())
}
