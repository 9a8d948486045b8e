//! Line charts drawn as SVG by hand. A plotting crate (plotters' SVG backend) was the other
//! choice; it cannot put attributes on the elements it draws, and every point here carries
//! the report it comes from (`data-report-index`) and every suspect its name
//! (`data-suspect`), which is how the page is checked through its DOM.

use super::text::{self, attr, html};
use std::fmt::Write;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 28.0;

/// Colours of successive series (colour-blind safe, Okabe–Ito).
pub(crate) const COLORS: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

/// One drawn point: a report's value.
pub(crate) struct Point {
    pub x_ms: u64,
    pub y: f64,
    /// The report's index in time order over the whole directory.
    pub report: usize,
    /// The tooltip.
    pub title: String,
}

/// One series.
pub(crate) struct Line {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<Point>,
    /// Error band: (time, low, high), drawn shaded under the line; empty for exact series.
    pub band: Vec<(u64, f64, f64)>,
    /// A leak suspect's function name and its label (growth, confidence).
    pub suspect: Option<(String, String)>,
}

/// What the axes show.
pub(crate) struct Axes<'a> {
    pub id: &'a str,
    /// The first and last report's times: the x axis shows the time since the first.
    pub x0: u64,
    pub x1: u64,
    /// Formats a y value (bytes, bytes/s).
    pub y_fmt: fn(f64) -> String,
}

pub(crate) fn draw(axes: &Axes, lines: &[Line]) -> String {
    let y_max = lines
        .iter()
        .flat_map(|l| {
            l.points
                .iter()
                .map(|p| p.y)
                .chain(l.band.iter().map(|b| b.2))
        })
        .fold(0.0f64, f64::max);
    let (step, top) = nice_step(y_max);
    let span = axes.x1.saturating_sub(axes.x0).max(1) as f64;
    let x = |t: u64| LEFT + (t.saturating_sub(axes.x0)) as f64 / span * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v / top).clamp(0.0, 1.0)) * (HEIGHT - TOP - BOTTOM);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"{}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">",
        axes.id
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= top * 1.0001 {
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"ylab\" x=\"{}\" y=\"{:.1}\">{}</text>",
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            html(&(axes.y_fmt)(v))
        );
        v += step;
    }
    // x labels: time since the first report.
    let x_step = time_step(span);
    let mut t = 0.0;
    while t <= span {
        let px = x(axes.x0 + t as u64);
        let _ = write!(
            s,
            "<text class=\"xlab\" x=\"{px:.1}\" y=\"{}\">{}</text>",
            HEIGHT - 8.0,
            html(&text::duration_ms(t))
        );
        t += x_step;
    }
    for line in lines {
        let _ = write!(
            s,
            "<g class=\"series\" data-series=\"{}\"",
            attr(&line.label)
        );
        if let Some((name, _)) = &line.suspect {
            let _ = write!(s, " data-suspect=\"{}\"", attr(name));
        }
        s.push('>');
        if !line.band.is_empty() {
            s.push_str("<path class=\"band\" fill=\"");
            s.push_str(line.color);
            s.push_str("\" d=\"");
            for (k, &(t, _, hi)) in line.band.iter().enumerate() {
                let _ = write!(
                    s,
                    "{}{:.1},{:.1}",
                    if k == 0 { 'M' } else { 'L' },
                    x(t),
                    y(hi)
                );
            }
            for &(t, lo, _) in line.band.iter().rev() {
                let _ = write!(s, "L{:.1},{:.1}", x(t), y(lo));
            }
            s.push_str("Z\"/>");
        }
        let _ = write!(s, "<polyline stroke=\"{}\" points=\"", line.color);
        for p in &line.points {
            let _ = write!(s, "{:.1},{:.1} ", x(p.x_ms), y(p.y));
        }
        s.push_str("\"/>");
        for p in &line.points {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\" data-report-index=\"{}\" data-value=\"{:.0}\"><title>{}</title></circle>",
                x(p.x_ms),
                y(p.y),
                line.color,
                p.report,
                p.y,
                html(&p.title)
            );
        }
        if let (Some((_, label)), Some(last)) = (&line.suspect, line.points.last()) {
            let _ = write!(
                s,
                "<text class=\"suspect-label\" x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\">{}</text>",
                x(last.x_ms) - 4.0,
                (y(last.y) - 8.0).max(TOP + 10.0),
                line.color,
                html(label)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// A grid step of 1, 2 or 5 × 10^k in the binary unit of `max`, and the axis top (a whole
/// number of steps at or above `max`).
fn nice_step(max: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return (1.0, 1.0);
    }
    let mut unit = 1.0;
    while max / unit >= 1024.0 {
        unit *= 1024.0;
    }
    let raw = max / unit / 5.0;
    let mag = libm::pow(10.0, libm::floor(libm::log10(raw)));
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
        * unit;
    (step, (max / step).ceil().max(1.0) * step)
}

/// A step of the time axis, milliseconds: about 8 labels.
fn time_step(span_ms: f64) -> f64 {
    const STEPS_S: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 86400.0,
    ];
    let raw = span_ms / 8.0 / 1000.0;
    STEPS_S
        .into_iter()
        .find(|&s| s >= raw)
        .unwrap_or((raw / 86400.0).ceil() * 86400.0)
        * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(nice_step(10.0), (2.0, 10.0));
        assert_eq!(nice_step(3.0 * 1048576.0), (1048576.0, 3.0 * 1048576.0));
        assert_eq!(nice_step(0.0), (1.0, 1.0));
        assert_eq!(time_step(60_000.0), 10_000.0);
    }
}
