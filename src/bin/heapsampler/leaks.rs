//! `heapsampler leaks`: the leak detector over a series of saved reports.
//!
//! Reports are grouped by process: stack ids and cumulative counters mean nothing across
//! processes. A pid whose counters go back down was reused by a new process (pid 1 in
//! containers), so its reports are split there. Each process's reports are fed in order to a
//! [`LeakDetector`] over the newest `window`, exactly as the reporter judges its own: the
//! older reports are its history (a site below a level it held before is no suspect).

use crate::format::{self, bytes, rate, rel_error};
use crate::input::{self, Loaded};
use crate::{CliError, Result, Verdict};
use heapsampler::{LeakDetector, LeakSuspect};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub fn run(
    out: &mut dyn Write,
    inputs: &[PathBuf],
    window: usize,
    fail_on_leak: bool,
    json: bool,
) -> Result<Verdict> {
    let mut reports = Vec::new();
    for file in input::expand(inputs)? {
        if let Some(loaded) = input::load_input(&file)? {
            reports.push(loaded);
        }
    }
    if reports.is_empty() {
        return Err(CliError::msg(
            "no report left to read (the files were removed while listing)",
        ));
    }
    let series = processes(reports);
    let window = LeakDetector::new(window).window();
    if json {
        let processes: Vec<crate::json::LeakProcess> =
            series.iter().map(|r| judge_json(r, window)).collect();
        let total = processes.iter().map(|p| p.suspects.len()).sum();
        crate::json::write(
            out,
            &crate::json::Leaks {
                processes,
                suspects_total: total,
            },
        )?;
        return Ok(if fail_on_leak && total > 0 {
            Verdict::Bad
        } else {
            Verdict::Good
        });
    }
    let mut total = 0;
    for (i, reports) in series.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        total += judge(out, reports, window)?;
    }
    writeln!(out)?;
    match total {
        0 => writeln!(out, "no leak suspects")?,
        1 => writeln!(out, "1 leak suspect")?,
        n => writeln!(out, "{n} leak suspects")?,
    }
    Ok(if fail_on_leak && total > 0 {
        Verdict::Bad
    } else {
        Verdict::Good
    })
}

/// Splits reports into per-process series in time order, oldest process first.
fn processes(reports: Vec<Loaded>) -> Vec<Vec<Loaded>> {
    let mut by_pid: BTreeMap<u32, Vec<Loaded>> = BTreeMap::new();
    for l in reports {
        by_pid.entry(l.report.pid).or_default().push(l);
    }
    let mut series: Vec<Vec<Loaded>> = Vec::new();
    for (_, mut group) in by_pid {
        group.sort_by(|a, b| {
            a.report
                .timestamp_ms
                .cmp(&b.report.timestamp_ms)
                .then_with(|| a.path.cmp(&b.path))
        });
        let mut current: Vec<Loaded> = Vec::new();
        for l in group {
            let restarted = current.last().is_some_and(|prev| {
                l.report.totals.counts.allocated_bytes < prev.report.totals.counts.allocated_bytes
            });
            if restarted {
                series.push(std::mem::take(&mut current));
            }
            current.push(l);
        }
        series.push(current);
    }
    series.sort_by_key(|s| s.last().map(|l| l.report.timestamp_ms));
    series
}

/// The suspects of one process over its reports (oldest first).
fn suspects_of(reports: &[Loaded], window: usize) -> Vec<LeakSuspect> {
    // One profile at a time: memory stays that of one report and the detector's window.
    let mut detector = LeakDetector::new(window);
    let mut suspects: Vec<LeakSuspect> = Vec::new();
    for l in reports {
        suspects = detector.observe(&l.report.to_profile());
    }
    suspects
}

/// One process's verdict as `--json` gives it.
fn judge_json(reports: &[Loaded], window: usize) -> crate::json::LeakProcess {
    let last = &reports[reports.len() - 1];
    let r = &last.report;
    let judged = reports.len().min(window);
    let suspects = if judged < LeakDetector::MIN_REPORTS {
        Vec::new()
    } else {
        suspects_of(reports, window)
    };
    crate::json::LeakProcess {
        pid: r.pid,
        program: r.program.clone(),
        reports: reports.len(),
        judged: if judged < LeakDetector::MIN_REPORTS {
            0
        } else {
            judged
        },
        newest: last.path.display().to_string(),
        suspects: suspects
            .iter()
            .map(|s| {
                let site = r.sites.iter().find(|site| site.stack_id == s.stack_id);
                crate::json::LeakJson {
                    stack_id: s.stack_id,
                    function: site
                        .and_then(|site| r.top_function(site))
                        .map(str::to_string),
                    growth_bytes_per_sec: s.growth_bytes_per_sec,
                    confidence: s.confidence,
                    live_bytes: s.live_bytes,
                    reports_considered: s.reports_considered,
                    frames: site.map_or_else(Vec::new, |site| {
                        r.site_frames(site).into_iter().map(Into::into).collect()
                    }),
                }
            })
            .collect(),
    }
}

/// Prints one process's verdict; returns how many suspects it has.
fn judge(out: &mut dyn Write, reports: &[Loaded], window: usize) -> Result<usize> {
    let (first, last) = (&reports[0], &reports[reports.len() - 1]);
    let program = if last.report.program.is_empty() {
        String::new()
    } else {
        format!(" ({})", format::escape(&last.report.program))
    };
    writeln!(
        out,
        "process {}{program}: {} reports, {} to {}",
        last.report.pid,
        reports.len(),
        format::timestamp(first.report.timestamp_ms),
        format::timestamp(last.report.timestamp_ms)
    )?;
    let judged = &reports[reports.len().saturating_sub(window)..];
    if judged.len() < LeakDetector::MIN_REPORTS {
        writeln!(
            out,
            "  too few reports to judge: a trend needs at least {}",
            LeakDetector::MIN_REPORTS
        )?;
        return Ok(0);
    }
    let history = match reports.len() - judged.len() {
        0 => String::new(),
        n => format!(", against the {n} before"),
    };
    writeln!(
        out,
        "  judged on the newest {} ({}, newest {}){history}",
        judged.len(),
        format::duration_ms(last.report.timestamp_ms - judged[0].report.timestamp_ms),
        last.name()
    )?;
    let suspects = suspects_of(reports, window);
    if suspects.is_empty() {
        writeln!(out, "  no site keeps growing")?;
    }
    for (i, s) in suspects.iter().enumerate() {
        suspect(out, i + 1, s, last)?;
    }
    Ok(suspects.len())
}

fn suspect(out: &mut dyn Write, n: usize, s: &LeakSuspect, newest: &Loaded) -> Result<()> {
    let r = &newest.report;
    let site = r.sites.iter().find(|site| site.stack_id == s.stack_id);
    let label = match site {
        Some(site) => format::label_text(&format::site_label(r, site)),
        None => format!("stack {}", s.stack_id),
    };
    writeln!(out)?;
    writeln!(
        out,
        "  {}",
        format::red(&format!("leak suspect #{n}: {label}"))
    )?;
    writeln!(
        out,
        "    growth {} ({}/h), confidence {:.1}%, live now {} ({}), over {} reports",
        rate(s.growth_bytes_per_sec),
        bytes(s.growth_bytes_per_sec * 3600.0),
        s.confidence * 100.0,
        bytes(s.live_bytes),
        rel_error(r.sample_interval, s.live_bytes),
        s.reports_considered
    )?;
    let Some(site) = site else {
        return Ok(());
    };
    writeln!(out, "    stack {} (innermost first):", s.stack_id)?;
    let frames = r.site_frames(site);
    if frames.is_empty() {
        for a in &site.addresses {
            writeln!(out, "      {a:#x}")?;
        }
    }
    for f in &frames {
        match format::location(f) {
            Some(place) => writeln!(out, "      {} at {place}", format::function(f))?,
            None => writeln!(out, "      {}", format::function(f))?,
        }
    }
    Ok(())
}
