//! `heapsampler diff`: per-site and total changes between two reports.
//!
//! Within one process a stack id names one stack for the process's whole life, so sites are
//! matched by id. Two processes (two runs of a program, or a restarted service that got the
//! same pid) number their stacks independently and load code at different addresses, so
//! their sites are matched by the list of function names of the stack instead; sites whose
//! names read the same are added up on each side.

use crate::format::{self, bytes, delta_error, signed_bytes, signed_int};
use crate::input::{self, Loaded};
use crate::{Result, Verdict};
use heapsampler::Report;
use heapsampler::report::json::ReportSite;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// What identifies a site on both sides.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(u32),
    Names(Vec<String>),
}

#[derive(Default)]
struct Side {
    live_bytes: f64,
    alloc_bytes: f64,
    present: bool,
}

struct Row {
    old: Side,
    new: Side,
    label: (String, Option<String>),
    /// The label unescaped, for JSON (which escapes it itself).
    raw_label: (String, Option<String>),
    /// The stack id, when sites are matched by it.
    stack: Option<u32>,
}

impl Row {
    fn d_live(&self) -> f64 {
        self.new.live_bytes - self.old.live_bytes
    }
    fn d_alloc(&self) -> f64 {
        self.new.alloc_bytes - self.old.alloc_bytes
    }
    /// `new` or `gone`; `None` for a site in both reports.
    fn status(&self) -> Option<&'static str> {
        match (self.old.present, self.new.present) {
            (false, true) => Some("new"),
            (true, false) => Some("gone"),
            _ => None,
        }
    }
}

pub fn run(
    out: &mut dyn Write,
    old_path: &Path,
    new_path: &Path,
    count: usize,
    json: bool,
) -> Result<Verdict> {
    let old = input::load(old_path)?;
    let new = input::load(new_path)?;
    let (o, n) = (&old.report, &new.report);
    let same = same_process(o, n);
    if json {
        let (changed, rows) = changed_rows(o, n, same, count);
        let doc = crate::json::Diff {
            old: crate::json::Source::of(old_path, o),
            new: crate::json::Source::of(new_path, n),
            matched_by: if same { "stack_id" } else { "function_names" },
            totals: total_rows(o, n)
                .into_iter()
                .map(|(name, old, new, _)| crate::json::TotalChange {
                    name,
                    old,
                    new,
                    change: new as i128 - old as i128,
                })
                .collect(),
            sites_changed: changed,
            sites: rows
                .into_iter()
                .map(|row| crate::json::DiffSite {
                    stack_id: row.stack,
                    status: row.status().unwrap_or("changed"),
                    old_live_bytes: row.old.live_bytes,
                    new_live_bytes: row.new.live_bytes,
                    live_bytes_change: row.d_live(),
                    alloc_bytes_change: row.d_alloc(),
                    function: row.raw_label.0,
                    location: row.raw_label.1,
                })
                .collect(),
        };
        crate::json::write(out, &doc)?;
        return Ok(Verdict::Good);
    }

    describe(out, "old", &old, None)?;
    describe(out, "new", &new, Some(o.timestamp_ms))?;
    if same {
        writeln!(
            out,
            "sites matched by stack id (both reports are of process {})",
            n.pid
        )?;
    } else {
        let why = if o.pid == n.pid {
            format!(
                "pid {} twice, but not one process: its counters restarted",
                n.pid
            )
        } else {
            format!("pids {} and {}", o.pid, n.pid)
        };
        writeln!(
            out,
            "sites matched by function names (two processes: {why})"
        )?;
        if [o, n]
            .iter()
            .any(|r| r.locations.is_empty() && !r.sites.is_empty())
        {
            writeln!(
                out,
                "warning: a report has no symbolized frames; sites of two processes match only \
                 by name"
            )?;
        }
    }
    writeln!(out)?;
    totals(out, o, n)?;
    writeln!(out)?;
    sites(out, o, n, same, count)?;
    Ok(Verdict::Good)
}

fn describe(out: &mut dyn Write, role: &str, l: &Loaded, older: Option<u64>) -> Result<()> {
    let r = &l.report;
    let when = match older {
        Some(t0) if r.timestamp_ms >= t0 => {
            format!(", {} later", format::duration_ms(r.timestamp_ms - t0))
        }
        Some(t0) => format!(
            ", {} EARLIER than old",
            format::duration_ms(t0 - r.timestamp_ms)
        ),
        None => String::new(),
    };
    writeln!(
        out,
        "{role}  {}: pid {}, {}{when}, interval {}",
        l.name(),
        r.pid,
        format::timestamp(r.timestamp_ms),
        bytes(r.sample_interval as f64)
    )?;
    Ok(())
}

/// Whether two reports come from one process: same pid, cumulative counters that only grew
/// from the earlier to the later, and no stack id that names two different stacks.
fn same_process(a: &Report, b: &Report) -> bool {
    if a.pid != b.pid {
        return false;
    }
    let (early, late) = if a.timestamp_ms <= b.timestamp_ms {
        (a, b)
    } else {
        (b, a)
    };
    let (e, l) = (&early.totals.counts, &late.totals.counts);
    if l.allocated_bytes < e.allocated_bytes || l.allocated_objects < e.allocated_objects {
        return false;
    }
    let stacks: HashMap<u32, &[u64]> = a
        .sites
        .iter()
        .map(|s| (s.stack_id, s.addresses.as_slice()))
        .collect();
    b.sites.iter().all(|s| {
        stacks
            .get(&s.stack_id)
            .is_none_or(|addresses| *addresses == s.addresses.as_slice())
    })
}

/// The exact counters compared: name, old, new, whether bytes.
fn total_rows(o: &Report, n: &Report) -> [(&'static str, u64, u64, bool); 7] {
    let (a, b) = (&o.totals.counts, &n.totals.counts);
    [
        ("live bytes", a.live_bytes, b.live_bytes, true),
        ("live blocks", a.live_objects, b.live_objects, false),
        (
            "peak live bytes",
            a.peak_live_bytes,
            b.peak_live_bytes,
            true,
        ),
        (
            "allocated bytes",
            a.allocated_bytes,
            b.allocated_bytes,
            true,
        ),
        (
            "allocations",
            a.allocated_objects,
            b.allocated_objects,
            false,
        ),
        ("freed bytes", a.freed_bytes, b.freed_bytes, true),
        ("frees", a.freed_objects, b.freed_objects, false),
    ]
}

fn totals(out: &mut dyn Write, o: &Report, n: &Report) -> Result<()> {
    writeln!(
        out,
        "{:<18} {:>16} {:>16} {:>16}",
        "totals (exact)", "old", "new", "change"
    )?;
    for (name, x, y, is_bytes) in total_rows(o, n) {
        let change = y as i128 - x as i128;
        if is_bytes {
            writeln!(
                out,
                "{name:<18} {:>16} {:>16} {:>16}  ({} bytes)",
                bytes(x as f64),
                bytes(y as f64),
                signed_bytes(change as f64),
                signed_int(change)
            )?;
        } else {
            writeln!(
                out,
                "{name:<18} {:>16} {:>16} {:>16}",
                format::int(x),
                format::int(y),
                signed_int(change)
            )?;
        }
    }
    Ok(())
}

fn key_of(r: &Report, s: &ReportSite, by_id: bool) -> Key {
    if by_id {
        Key::Id(s.stack_id)
    } else {
        Key::Names(r.site_frames(s).iter().map(format::function).collect())
    }
}

/// How many sites changed, and the `count` that changed most in live bytes.
fn changed_rows(o: &Report, n: &Report, by_id: bool, count: usize) -> (usize, Vec<Row>) {
    let mut rows: HashMap<Key, Row> = HashMap::new();
    for (r, is_new) in [(n, true), (o, false)] {
        for s in &r.sites {
            let row = rows.entry(key_of(r, s, by_id)).or_insert_with(|| Row {
                old: Side::default(),
                new: Side::default(),
                label: format::site_label(r, s),
                raw_label: raw_label(r, s),
                stack: by_id.then_some(s.stack_id),
            });
            let side = if is_new { &mut row.new } else { &mut row.old };
            side.live_bytes += s.live_bytes;
            side.alloc_bytes += s.alloc_bytes;
            side.present = true;
        }
    }
    let mut rows: Vec<Row> = rows
        .into_values()
        .filter(|r| r.d_live() != 0.0 || r.d_alloc() != 0.0)
        .collect();
    rows.sort_by(|a, b| {
        b.d_live()
            .abs()
            .total_cmp(&a.d_live().abs())
            .then(b.d_alloc().abs().total_cmp(&a.d_alloc().abs()))
            .then_with(|| a.label.cmp(&b.label))
    });
    let changed = rows.len();
    rows.truncate(count);
    (changed, rows)
}

/// A site's function and `file:line` as the report has them (not escaped).
fn raw_label(r: &Report, s: &ReportSite) -> (String, Option<String>) {
    let named = crate::json::Named::of(r, s);
    match named.function {
        Some(f) => (
            f,
            named.file.map(|file| match named.line {
                Some(l) => format!("{file}:{l}"),
                None => file,
            }),
        ),
        None => (format::site_label(r, s).0, None),
    }
}

fn sites(out: &mut dyn Write, o: &Report, n: &Report, by_id: bool, count: usize) -> Result<()> {
    let (changed, rows) = changed_rows(o, n, by_id, count);
    writeln!(
        out,
        "{changed} sites changed; top {} by change of live bytes (estimated; ± is the standard \
         error of the change):",
        rows.len()
    )?;
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:>11} {:>11}  {:>11}  {:>10} {:>10}  {:<4}  {:>6}  function (location)",
        "Δ live", "±", "Δ allocated", "old live", "new live", "", "stack"
    )?;
    let t = o.sample_interval.max(n.sample_interval);
    for row in rows {
        let status = row.status().unwrap_or("");
        writeln!(
            out,
            "{:>11} {:>11}  {:>11}  {:>10} {:>10}  {status:<4}  {:>6}  {}",
            signed_bytes(row.d_live()),
            delta_error(t, row.old.live_bytes, row.new.live_bytes),
            signed_bytes(row.d_alloc()),
            bytes(row.old.live_bytes),
            bytes(row.new.live_bytes),
            row.stack
                .map_or_else(|| "-".to_string(), |id| id.to_string()),
            format::label_text(&row.label)
        )?;
    }
    Ok(())
}
