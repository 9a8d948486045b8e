//! The page: header, skipped files, charts, suspects, table, flamegraphs, in one document
//! with its style and script inline.

use super::chart::{self, Axes, COLORS, Line, Point};
use super::entry::Entry;
use super::flame;
use super::series::{self, Process, View};
use super::table::{self, Row};
use super::text::{self, attr, html};
use super::timeline::Timeline;
use crate::Report;
use crate::leaks::{LeakDetector, LeakSuspect};
use crate::report::flamegraph::FlameValue;
use std::fmt::Write;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222;max-width:1300px}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
.chart{width:100%;height:auto;background:#fff}.chart .grid{stroke:#e3e3e3}\
.chart text{font-size:11px;fill:#555}.chart .ylab{text-anchor:end}.chart .xlab{text-anchor:middle}\
.chart polyline{fill:none;stroke-width:1.6}.chart .band{opacity:.18;stroke:none}\
.chart .suspect-label{text-anchor:end;font-weight:bold;font-size:12px}\
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3em 1.2em}\
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}\
.note{color:#666}.error{color:#b00}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #eee;padding:.25em .5em;text-align:left;vertical-align:top}\
td.num{text-align:right;white-space:nowrap}tr.suspect{background:#fff3e0}\
th button{font:inherit;font-weight:bold;border:0;background:none;cursor:pointer;padding:0}\
summary{cursor:pointer;font-family:monospace}.stack{font-family:monospace;font-size:12px}\
.loc{color:#777}.flame{width:100%;border:0}#site-search{width:30em}";

/// How many of a process's newest reports the table's growth column is measured over: the
/// leak detector's window.
const GROWTH_REPORTS: usize = LeakDetector::DEFAULT_WINDOW;

pub(crate) fn render(t: &Timeline) -> String {
    let mut s = String::with_capacity(1 << 20);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1>",
        html(&t.options.title),
        html(&t.options.title)
    );
    if t.entries.is_empty() {
        s.push_str("<p class=\"error\">no usable report.</p>");
    } else {
        body(t, &mut s);
    }
    skipped(t, &mut s);
    let _ = writeln!(s, "<script>{}</script></body></html>", table::SCRIPT);
    s
}

fn body(t: &Timeline, s: &mut String) {
    let view = series::view(&t.entries);
    let (first, last) = (view.order[0], view.order[view.order.len() - 1]);
    let (x0, x1) = (first.timestamp_ms, last.timestamp_ms);
    let _ = write!(
        s,
        "<p id=\"summary\" data-reports=\"{}\" data-processes=\"{}\">{} reports of {} {} from {} to {} ({}).</p>",
        view.order.len(),
        view.processes.len(),
        view.order.len(),
        view.processes.len(),
        if view.processes.len() == 1 {
            "process"
        } else {
            "processes"
        },
        text::timestamp(x0),
        text::timestamp(x1),
        text::duration_ms((x1 - x0) as f64)
    );
    let mut notes = Vec::new();

    // 1. Exact live heap and allocation rate, one series per process.
    let exact = |id: &str,
                 values_of: fn(&[&Entry]) -> Vec<f64>,
                 fmt: fn(f64) -> String,
                 notes: &mut Vec<String>| {
        let mut lines = Vec::new();
        for (k, p) in view.processes.iter().enumerate() {
            let entries: Vec<&Entry> = p.reports.iter().map(|&i| view.order[i]).collect();
            let values = values_of(&entries);
            let kept = series::keep(&values, t.options.max_points);
            if kept.len() < values.len() && id == "live-heap" {
                notes.push(format!(
                    "{}: {} reports drawn as {} points (each stretch keeps its lowest and highest report).",
                    p.label(),
                    values.len(),
                    kept.len()
                ));
            }
            let points = kept
                .into_iter()
                .map(|j| {
                    let e = view.order[p.reports[j]];
                    Point {
                        x_ms: e.timestamp_ms,
                        y: values[j],
                        report: p.reports[j],
                        title: format!(
                            "{} · {} · {}",
                            e.name,
                            text::timestamp(e.timestamp_ms),
                            fmt(values[j])
                        ),
                    }
                })
                .collect();
            lines.push(Line {
                label: p.label(),
                color: COLORS[k % COLORS.len()],
                points,
                band: Vec::new(),
                suspect: None,
            });
        }
        let svg = chart::draw(
            &Axes {
                id,
                x0,
                x1,
                y_fmt: fmt,
            },
            &lines,
        );
        (svg, legend(&lines))
    };
    let (live, live_legend) = exact(
        "live-heap",
        |es| es.iter().map(|e| e.live_bytes as f64).collect(),
        text::bytes,
        &mut notes,
    );
    let (rate, rate_legend) = exact("alloc-rate", series::chart_rates, text::rate, &mut notes);
    let _ = write!(
        s,
        "<h2>Live heap (exact)</h2><figure id=\"live-heap-figure\">{live}{live_legend}</figure>\
         <h2>Allocation rate (exact, over each report's window, or a typical one where it is shorter)</h2><figure id=\"alloc-rate-figure\">{rate}{rate_legend}</figure>"
    );

    // 2. Top sites with error bands; leak suspects.
    let suspects: Vec<Vec<LeakSuspect>> = view
        .processes
        .iter()
        .map(|p| series::suspects(&view, p))
        .collect();
    let newest = newest_runs(t, &view);
    top_sites(t, &view, &newest, &suspects, s);

    // 3. The table.
    let mut candidates: Vec<(usize, &Report, usize)> = Vec::new();
    let mut total = 0;
    for &(pi, report) in &newest {
        total += report.sites.len();
        candidates.extend((0..report.sites.len()).map(|si| (pi, report, si)));
    }
    candidates.sort_by(|a, b| {
        b.1.sites[b.2]
            .live_bytes
            .total_cmp(&a.1.sites[a.2].live_bytes)
    });
    candidates.truncate(t.options.table_rows);
    let mut rows = Vec::with_capacity(candidates.len());
    for &pi in newest.iter().map(|(pi, _)| pi) {
        let p = &view.processes[pi];
        let mine: Vec<_> = candidates.iter().filter(|c| c.0 == pi).collect();
        let recent = &p.reports[p.reports.len().saturating_sub(GROWTH_REPORTS)..];
        let ids: Vec<_> = mine.iter().map(|c| c.1.sites[c.2].stack_id).collect();
        let ys = series::site_series(&view, recent, &ids);
        let allocs = series::site_alloc_series(&view, recent, &ids);
        let ts: Vec<u64> = recent.iter().map(|&i| view.order[i].timestamp_ms).collect();
        for ((c, y), a) in mine.iter().zip(&ys).zip(&allocs) {
            let site = &c.1.sites[c.2];
            rows.push(Row {
                process: p.label(),
                report: c.1,
                site,
                growth: series::slope(&ts, y),
                // Over the same reports as the growth: the newest report alone may span a few
                // milliseconds (a service's last report, written as it stops).
                rate: series::rate_over(&ts, a).unwrap_or(site.alloc_bytes_per_sec),
                suspect: suspects[pi].iter().find(|l| l.stack_id == site.stack_id),
            });
        }
    }
    rows.sort_by(|a, b| b.site.live_bytes.total_cmp(&a.site.live_bytes));
    let _ = write!(
        s,
        "<h2>Sites of each process's newest report</h2>{}",
        table::table(&rows, total, GROWTH_REPORTS)
    );

    // 4. Flamegraphs.
    if let Some((name, latest)) = &t.latest {
        let _ = write!(
            s,
            "<h2>Flamegraphs of the newest report ({})</h2>",
            html(name)
        );
        s.push_str(&flame::of_report(
            latest,
            FlameValue::LiveBytes,
            "live bytes",
        ));
        s.push_str(&flame::of_report(
            latest,
            FlameValue::AllocBytes,
            "bytes allocated since the start",
        ));
        match &t.oldest {
            Some((old_name, oldest)) if old_name != name => {
                let _ = write!(
                    s,
                    "<h2>Change of live bytes from the oldest report ({}) to the newest</h2>\
                     <p class=\"note\">Widths are the newest report's; red: grew, blue: shrank.</p>",
                    html(old_name)
                );
                s.push_str(&flame::diff(oldest, latest, "live bytes, oldest → newest"));
            }
            _ => s.push_str("<p class=\"note\">One report: no change to show.</p>"),
        }
    }
    if !notes.is_empty() {
        s.push_str("<h2>What was left out</h2><ul id=\"downsampled\">");
        for n in notes {
            let _ = write!(s, "<li>{}</li>", html(&n));
        }
        s.push_str("</ul>");
    }
}

/// Each pid's newest run and its newest report (which names its sites).
fn newest_runs<'a>(t: &'a Timeline, view: &View) -> Vec<(usize, &'a Report)> {
    let mut out = Vec::new();
    for (pi, p) in view.processes.iter().enumerate() {
        let last = view.order[p.reports[p.reports.len() - 1]];
        if let Some(report) = t.newest.get(&p.pid)
            && p.run == p.runs
            && report.timestamp_ms == last.timestamp_ms
        {
            out.push((pi, &**report));
        }
    }
    out
}

fn top_sites(
    t: &Timeline,
    view: &View,
    newest: &[(usize, &Report)],
    suspects: &[Vec<LeakSuspect>],
    s: &mut String,
) {
    // The sites holding the most in the newest reports, and every suspect.
    let mut chosen: Vec<(usize, &Report, usize)> = Vec::new();
    for &(pi, r) in newest {
        chosen.extend((0..r.sites.len()).map(|si| (pi, r, si)));
    }
    chosen.sort_by(|a, b| {
        b.1.sites[b.2]
            .live_bytes
            .total_cmp(&a.1.sites[a.2].live_bytes)
    });
    let is_suspect = |c: &(usize, &Report, usize)| {
        suspects[c.0]
            .iter()
            .any(|l| l.stack_id == c.1.sites[c.2].stack_id)
    };
    let all = chosen.len();
    let mut kept: Vec<_> = chosen.iter().take(t.options.top_sites).copied().collect();
    kept.extend(
        chosen
            .iter()
            .skip(t.options.top_sites)
            .filter(|c| is_suspect(c))
            .copied(),
    );
    // One pass over each process's reports for all of its drawn sites.
    let mut series_of: std::collections::HashMap<(usize, crate::StackId), Vec<f64>> =
        Default::default();
    let mut processes: Vec<usize> = kept.iter().map(|c| c.0).collect();
    processes.sort_unstable();
    processes.dedup();
    for pi in processes {
        let ids: Vec<_> = kept
            .iter()
            .filter(|c| c.0 == pi)
            .map(|c| c.1.sites[c.2].stack_id)
            .collect();
        let all = series::site_series(view, &view.processes[pi].reports, &ids);
        series_of.extend(ids.into_iter().map(|id| (pi, id)).zip(all));
    }
    let mut lines = Vec::new();
    let mut suspect_items = String::new();
    for (k, &(pi, report, si)) in kept.iter().enumerate() {
        let p: &Process = &view.processes[pi];
        let site = &report.sites[si];
        let ys = series_of.remove(&(pi, site.stack_id)).unwrap_or_default();
        let name = table::site_name(report, site);
        let idx = series::keep(&ys, t.options.max_points);
        let mut points = Vec::with_capacity(idx.len());
        let mut band = Vec::with_capacity(idx.len());
        for j in idx {
            let e = view.order[p.reports[j]];
            // The standard error of an estimate of B bytes is about √(T·B) (0 when exact).
            let se = match e.sample_interval {
                0 | 1 => 0.0,
                t => (t as f64 * ys[j].max(0.0)).sqrt(),
            };
            band.push((
                e.timestamp_ms,
                (ys[j] - 2.0 * se).max(0.0),
                ys[j] + 2.0 * se,
            ));
            points.push(Point {
                x_ms: e.timestamp_ms,
                y: ys[j],
                report: p.reports[j],
                title: format!(
                    "{name} · {} · {} {}",
                    e.name,
                    text::bytes(ys[j]),
                    text::rel_error(e.sample_interval, ys[j])
                ),
            });
        }
        // Exact reports have no error: no band (an empty path per site would only add bytes).
        if band.iter().all(|&(_, lo, hi)| lo == hi) {
            band.clear();
        }
        let suspect = suspects[pi].iter().find(|l| l.stack_id == site.stack_id).map(|l| {
            let label = format!(
                "leak suspect {name}: +{}, {:.1}% confidence",
                text::rate(l.growth_bytes_per_sec),
                l.confidence * 100.0
            );
            let _ = write!(
                suspect_items,
                "<li data-suspect=\"{}\"><b>{}</b> ({}): grows {} ({} per hour), confidence {:.1}%, \
                 {} live now, over {} reports</li>",
                attr(&name),
                html(&name),
                html(&p.label()),
                html(&text::rate(l.growth_bytes_per_sec)),
                html(&text::bytes(l.growth_bytes_per_sec * 3600.0)),
                l.confidence * 100.0,
                html(&text::bytes(l.live_bytes)),
                l.reports_considered
            );
            (name.clone(), label)
        });
        // Two sites in one function (two call paths) are told apart by their stack ids.
        let twin = kept
            .iter()
            .any(|&(qi, r, qs)| (qi, qs) != (pi, si) && table::site_name(r, &r.sites[qs]) == name);
        let name = if twin {
            format!("{name} (stack {})", site.stack_id)
        } else {
            name
        };
        lines.push(Line {
            label: if newest.len() > 1 {
                format!("{name} ({})", p.label())
            } else {
                name
            },
            color: COLORS[k % COLORS.len()],
            points,
            band,
            suspect,
        });
    }
    let (x0, x1) = (
        view.order[0].timestamp_ms,
        view.order[view.order.len() - 1].timestamp_ms,
    );
    let svg = chart::draw(
        &Axes {
            id: "top-sites",
            x0,
            x1,
            y_fmt: text::bytes,
        },
        &lines,
    );
    let _ = write!(
        s,
        "<h2>Top sites: estimated live bytes</h2><p class=\"note\">The {} of {all} sites holding the \
         most in each process's newest report, and every leak suspect (the leak detector over each \
         process's newest {} reports); shaded: ±2 standard errors (√(T·B) for B bytes at sample \
         interval T).</p><figure id=\"top-sites-figure\">{svg}{}</figure>",
        kept.len(),
        series::DETECTOR_REPORTS,
        legend(&lines)
    );
    s.push_str("<h2>Leak suspects</h2>");
    if suspect_items.is_empty() {
        s.push_str("<p id=\"suspects\">No site keeps growing.</p>");
    } else {
        let _ = write!(s, "<ul id=\"suspects\">{suspect_items}</ul>");
    }
}

fn legend(lines: &[Line]) -> String {
    let mut s = String::from("<ul class=\"legend\">");
    for l in lines {
        let _ = write!(
            s,
            "<li><i style=\"background:{}\"></i>{}</li>",
            l.color,
            html(&l.label)
        );
    }
    s.push_str("</ul>");
    s
}

fn skipped(t: &Timeline, s: &mut String) {
    if t.skipped.is_empty() {
        return;
    }
    let _ = write!(
        s,
        "<h2>Skipped files</h2><p>{} {} could not be used:</p><ul id=\"skipped\">",
        t.skipped.len(),
        if t.skipped.len() == 1 {
            "file"
        } else {
            "files"
        }
    );
    for k in &t.skipped {
        let _ = write!(
            s,
            "<li data-file=\"{}\"><code>{}</code>: {}</li>",
            attr(&k.file),
            html(&k.file),
            html(&k.reason)
        );
    }
    s.push_str("</ul>");
}
