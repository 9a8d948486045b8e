//! Number, size, time and frame formatting shared by the subcommands.

use heapsampler::Frame;
use heapsampler::Report;
use heapsampler::report::json::ReportSite;
pub use heapsampler::report::{escape, is_hostile};
use std::path::Path;

/// Whether output is coloured: set once by `main` (see [`colour_wanted`]).
static COLOUR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Colour only on a terminal, never with `NO_COLOR` set to anything non-empty
/// (<https://no-color.org>) or on a `dumb` terminal.
pub fn colour_wanted(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

pub fn set_colour(on: bool) {
    COLOUR.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn paint(text: &str, code: &str) -> String {
    if COLOUR.load(std::sync::atomic::Ordering::Relaxed) {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Column headers.
pub fn bold(text: &str) -> String {
    paint(text, "1")
}

/// What needs attention (a leak suspect).
pub fn red(text: &str) -> String {
    paint(text, "1;31")
}

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A path as printed: lossy for names that are not UTF-8, escaped like [`escape`] (`is_hostile`
/// says which characters are).
pub fn path(p: &Path) -> String {
    escape(&p.display().to_string()).into_owned()
}

/// A size in binary units: `512 B`, `1.5 KiB`, `10.0 MiB`, up to `EiB`, then scientific
/// (`1.0e30 B`). Estimates are fractional; a size below 1 KiB is shown in whole bytes.
pub fn bytes(b: f64) -> String {
    if !b.is_finite() {
        return "-".to_string();
    }
    let mut v = b.abs();
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 1024.0 {
        return format!("{b:.1e} B");
    }
    let sign = if b < 0.0 { "-" } else { "" };
    if unit == 0 {
        let whole = v.round();
        if whole == 0.0 {
            return "0 B".to_string();
        }
        format!("{sign}{whole:.0} B")
    } else {
        format!("{sign}{v:.1} {}", UNITS[unit])
    }
}

/// A change of size with its sign: `+1.5 MiB`, `-512 B`, `0 B`.
pub fn signed_bytes(b: f64) -> String {
    let s = bytes(b);
    if b > 0.0 && s != "0 B" {
        format!("+{s}")
    } else {
        s
    }
}

/// A rate in bytes per second.
pub fn rate(b_per_sec: f64) -> String {
    format!("{}/s", bytes(b_per_sec))
}

/// A whole number with thousands separators: `344,444`.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed whole number with thousands separators and a sign: `+5,556`, `-3`, `0`.
pub fn signed_int(n: i128) -> String {
    let magnitude = int(n.unsigned_abs().min(u64::MAX as u128) as u64);
    match n {
        0 => "0".to_string(),
        n if n > 0 => format!("+{magnitude}"),
        _ => format!("-{magnitude}"),
    }
}

/// The relative standard error √(T/B) of an estimate of `b` bytes at sample interval `t`,
/// as `±x%`: `exact` at interval 1, `-` when there is nothing to estimate.
pub fn rel_error(t: u64, b: f64) -> String {
    if t == 1 {
        return "exact".to_string();
    }
    if t == 0 || b.is_nan() || b <= 0.0 {
        return "-".to_string();
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

/// The standard error, in bytes, of the change of an estimate from `b0` to `b1` bytes at
/// interval `t`: at most √(T·(B₀+B₁)) (see `LeakDetector`). `exact` at interval 1.
pub fn delta_error(t: u64, b0: f64, b1: f64) -> String {
    if t == 1 {
        return "exact".to_string();
    }
    let v = t as f64 * (b0.max(0.0) + b1.max(0.0));
    if t == 0 || v.is_nan() || v <= 0.0 {
        return "-".to_string();
    }
    format!("±{}", bytes(v.sqrt()))
}

/// A duration given in milliseconds: `250 ms`, `60.0 s`, `2.5 min`, `1.2 h`, `3.0 d`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// A Unix timestamp in milliseconds as `YYYY-MM-DD hh:mm:ss.mmm UTC`.
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
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

/// A frame's function name, or its address when it could not be symbolized.
pub fn function(frame: &Frame) -> String {
    match &frame.function {
        Some(f) => escape(f).into_owned(),
        None => format!("{:#x}", frame.address),
    }
}

/// A frame's `file:line`, with the file shortened to its last two path components (the
/// standard library's `/rustc/<hash>/library/...` paths and long absolute paths read badly in
/// a table); `None` when unknown.
pub fn short_location(frame: &Frame) -> Option<String> {
    let file = escape(frame.file.as_deref()?);
    let file = file.as_ref();
    let parts: Vec<&str> = file.rsplit('/').take(3).collect();
    let short = if parts.len() == 3 {
        format!("{}/{}", parts[1], parts[0])
    } else {
        file.to_string()
    };
    Some(match frame.line {
        Some(line) => format!("{short}:{line}"),
        None => short,
    })
}

/// A frame's full `file:line`; `None` when unknown.
pub fn location(frame: &Frame) -> Option<String> {
    let file = escape(frame.file.as_deref()?);
    Some(match frame.line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    })
}

/// What a table calls a site: its first function outside the allocator and the standard
/// library ([`Report::top_function`]) and that frame's short `file:line`; an unsymbolized
/// site is named by its innermost address.
pub fn site_label(report: &Report, site: &ReportSite) -> (String, Option<String>) {
    let frames = report.site_frames(site);
    if let Some(name) = report.top_function(site) {
        let place = frames
            .iter()
            .find(|f| f.function.as_deref() == Some(name))
            .and_then(short_location);
        return (escape(name).into_owned(), place);
    }
    match site.addresses.iter().find(|&&a| a != 0) {
        Some(a) => (format!("{a:#x}"), Some("unsymbolized".to_string())),
        None => ("[unknown]".to_string(), None),
    }
}

/// `function (file:line)`, or just the function.
pub fn label_text((function, place): &(String, Option<String>)) -> String {
    match place {
        Some(p) => format!("{function} ({p})"),
        None => function.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        let xterm = Some(OsStr::new("xterm-256color"));
        assert!(colour_wanted(true, None, xterm));
        assert!(colour_wanted(true, Some(OsStr::new("")), xterm));
        assert!(!colour_wanted(false, None, xterm));
        assert!(!colour_wanted(true, Some(OsStr::new("1")), xterm));
        assert!(!colour_wanted(true, None, Some(OsStr::new("dumb"))));
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(0.4), "0 B");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(10.0 * 1024.0 * 1024.0), "10.0 MiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        assert_eq!(signed_bytes(8.0 * 1048576.0), "+8.0 MiB");
        assert_eq!(signed_bytes(-512.0), "-512 B");
        assert_eq!(signed_bytes(0.2), "0 B");
        assert_eq!(rate(3.0 * 1048576.0), "3.0 MiB/s");
        assert_eq!(bytes(16.0 * 1024f64.powi(6)), "16.0 EiB");
        assert_eq!(bytes(1e308), "1.0e308 B");
        assert_eq!(bytes(-1e30), "-1.0e30 B");
    }

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(escape("app::main"), "app::main");
        assert!(matches!(
            escape("C:\\src\\ü.rs"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("a\x1b]0;pwn\x07\r\nFORGED\tx\x7f\u{9b}2J\u{202e}"),
            "a\\x1b]0;pwn\\x07\\r\\nFORGED\\tx\\x7f\\u{9b}2J\\u{202e}"
        );
        assert!(!escape("\u{2028}").contains('\u{2028}'));
    }

    #[test]
    fn integers() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(183_633_120), "183,633,120");
        assert_eq!(signed_int(5556), "+5,556");
        assert_eq!(signed_int(-1_000_000), "-1,000,000");
    }

    #[test]
    fn errors() {
        // 100 T: ±10 %; 1000 T: ±3.2 %.
        assert_eq!(rel_error(1000, 100_000.0), "±10%");
        assert_eq!(rel_error(1000, 1_000_000.0), "±3.2%");
        assert_eq!(rel_error(1, 5.0), "exact");
        assert_eq!(rel_error(512, 0.0), "-");
        assert_eq!(rel_error(0, 10.0), "-");
        assert_eq!(rel_error(1_000_000, 1.0), "±>999%");
        assert_eq!(delta_error(1024, 1024.0, 3072.0), "±2.0 KiB");
        assert_eq!(delta_error(1, 1.0, 2.0), "exact");
    }

    #[test]
    fn times() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(timestamp(1_767_225_600_000), "2026-01-01 00:00:00.000 UTC");
        assert_eq!(timestamp(951_827_696_789), "2000-02-29 12:34:56.789 UTC");
        assert_eq!(duration_ms(250), "250 ms");
        assert_eq!(duration_ms(60_000), "60.0 s");
        assert_eq!(duration_ms(150_000), "2.5 min");
        assert_eq!(duration_ms(3 * 86_400_000), "3.0 d");
    }

    #[test]
    fn frames() {
        let f = Frame {
            address: 0x10,
            function: None,
            file: Some("/home/me/app/src/cache.rs".into()),
            line: Some(7),
        };
        assert_eq!(function(&f), "0x10");
        assert_eq!(short_location(&f).as_deref(), Some("src/cache.rs:7"));
        assert_eq!(location(&f).as_deref(), Some("/home/me/app/src/cache.rs:7"));
        let g = Frame {
            file: Some("src/api.rs".into()),
            line: None,
            ..f
        };
        assert_eq!(short_location(&g).as_deref(), Some("src/api.rs"));
    }
}
