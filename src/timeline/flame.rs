//! Flamegraphs on the page: inferno's SVG (see [`crate::report::flamegraph`]), each in a
//! sandboxed `<iframe srcdoc>`. Inline, several inferno SVGs would share element ids and
//! global script names; in their own documents each keeps its zoom and search, and the
//! sandbox lets their script run without reaching the page.

use super::text::{self, html};
use crate::Report;
use crate::report::flamegraph::{self, FlameValue};
use std::fmt::Write;

/// A flamegraph of the report, or a line saying why there is none.
pub(crate) fn of_report(report: &Report, value: FlameValue, title: &str) -> String {
    let profile = report.to_profile();
    match flamegraph::svg(&profile, value, title) {
        Ok(svg) => frame(&String::from_utf8_lossy(&svg), title),
        Err(e) => format!(
            "<p class=\"error\">{}: {}</p>",
            html(title),
            html(&e.to_string())
        ),
    }
}

/// The differential flamegraph from `before` to `after` (live bytes): widths are the newer
/// report's, red where a stack grew, blue where it shrank.
pub(crate) fn diff(before: &Report, after: &Report, title: &str) -> String {
    let old = flamegraph::collapsed(&before.to_profile(), FlameValue::LiveBytes);
    let new = flamegraph::collapsed(&after.to_profile(), FlameValue::LiveBytes);
    if new.is_empty() {
        return format!(
            "<p class=\"note\">{}: the newer report has no sampled live bytes.</p>",
            html(title)
        );
    }
    // Both sides are drawn in the unit of the larger total (see `flamegraph::unit_for`).
    let total = |t: &str| -> u128 {
        t.lines()
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .map(u128::from)
            .sum()
    };
    let (shift, unit) = flamegraph::unit_for(total(&old).max(total(&new)));
    let scaled = |t: &str| -> String {
        let mut out = String::with_capacity(t.len());
        for l in t.lines() {
            if let Some((stack, v)) = l.rsplit_once(' ')
                && let Ok(v) = v.parse::<u64>()
            {
                let _ = writeln!(out, "{stack} {}", v >> shift);
            }
        }
        out
    };
    let (old, new) = (scaled(&old), scaled(&new));
    let mut folded = Vec::new();
    let drawn = inferno::differential::from_readers(
        inferno::differential::Options::default(),
        old.as_bytes(),
        new.as_bytes(),
        &mut folded,
    )
    .and_then(|()| {
        let folded = String::from_utf8_lossy(&folded).into_owned();
        let mut options = inferno::flamegraph::Options::default();
        options.title = title.to_string();
        options.count_name = unit.to_string();
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)?;
        Ok(svg)
    });
    match drawn {
        Ok(svg) => frame(&String::from_utf8_lossy(&svg), title),
        Err(e) => format!(
            "<p class=\"error\">{}: {}</p>",
            html(title),
            html(&e.to_string())
        ),
    }
}

/// The SVG document in an iframe as tall as the picture.
fn frame(svg: &str, title: &str) -> String {
    let height = svg
        .find("<svg")
        .and_then(|at| {
            let rest = &svg[at..];
            let h = rest.find("height=\"")? + 8;
            let end = rest[h..].find('"')?;
            rest[h..h + end].parse::<f64>().ok()
        })
        .unwrap_or(600.0);
    format!(
        "<iframe class=\"flame\" title=\"{}\" sandbox=\"allow-scripts\" style=\"height:{:.0}px\" srcdoc=\"{}\"></iframe>",
        text::attr(title),
        height + 8.0,
        text::srcdoc(svg)
    )
}
