//! Text on the page: every string from a report is untrusted (a forged report can name a
//! function `<script>…`), so it goes through [`html`] or [`attr`]; numbers, sizes and times
//! are formatted here once for the charts and the table.

use std::borrow::Cow;
use std::fmt::Write;

/// Text for an element's content: control characters made visible first (as the CLI prints
/// them, [`crate::report::escape`]), then `&`, `<` and `>` escaped.
pub(crate) fn html(s: &str) -> String {
    html_escape::encode_text(&crate::report::escape(s)).into_owned()
}

/// Text for a double-quoted attribute value (`data-suspect="…"`, `title="…"`).
pub(crate) fn attr(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(&crate::report::escape(s)).into_owned()
}

/// A whole document for an `<iframe srcdoc="…">`: only the quote and `&` need escaping
/// (the control characters of a flamegraph's names were made visible when it was drawn).
pub(crate) fn srcdoc(s: &str) -> Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(s)
}

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A size in binary units: `512 B`, `1.5 KiB`, `10.0 MiB`; negative sizes keep their sign.
pub(crate) fn bytes(b: f64) -> String {
    if !b.is_finite() {
        return "-".to_string();
    }
    let mut v = b.abs();
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let sign = if b < 0.0 && v >= 0.5 { "-" } else { "" };
    if unit == 0 {
        format!("{sign}{v:.0} B")
    } else {
        format!("{sign}{v:.1} {}", UNITS[unit])
    }
}

/// A rate: `1.5 MiB/s`.
pub(crate) fn rate(b_per_sec: f64) -> String {
    format!("{}/s", bytes(b_per_sec))
}

/// The relative standard error √(T/B) of an estimate of `b` bytes at interval `t`: `±3.2%`,
/// `exact` at interval 1.
pub(crate) fn rel_error(t: u64, b: f64) -> String {
    if t == 1 {
        return "exact".to_string();
    }
    if t == 0 || b.is_nan() || b <= 0.0 {
        return String::new();
    }
    let pct = 100.0 * (t as f64 / b).sqrt();
    if pct < 9.95 {
        format!("±{pct:.1}%")
    } else if pct < 999.5 {
        format!("±{pct:.0}%")
    } else {
        "±>999%".to_string()
    }
}

/// A duration given in milliseconds: `250 ms`, `60 s`, `2.5 min`, `1.2 h`, `3.0 d`.
pub(crate) fn duration_ms(ms: f64) -> String {
    let s = ms / 1000.0;
    if ms.abs() < 1000.0 {
        format!("{ms:.0} ms")
    } else if s.abs() < 120.0 {
        format!("{s:.0} s")
    } else if s.abs() < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else if s.abs() < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// A Unix timestamp in milliseconds as `YYYY-MM-DD hh:mm:ss UTC`.
pub(crate) fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let mut out = String::new();
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_inert() {
        assert_eq!(
            html("<script>a&b</script>"),
            "&lt;script&gt;a&amp;b&lt;/script&gt;"
        );
        assert_eq!(attr("x\"><b\x1b"), "x&quot;&gt;&lt;b\\x1b");
        assert_eq!(html("f\u{202e}"), "f\\u{202e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(-3.0 * 1048576.0), "-3.0 MiB");
        assert_eq!(rate(2048.0), "2.0 KiB/s");
        assert_eq!(rel_error(1, 5.0), "exact");
        assert_eq!(rel_error(100, 10_000.0), "±10%");
        assert_eq!(duration_ms(90_000.0), "90 s");
        assert_eq!(timestamp(1_767_225_600_000), "2026-01-01 00:00:00 UTC");
    }
}
