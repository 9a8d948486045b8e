//! Range checks a report must pass when it is read: numbers a real process can produce.
//!
//! A report is untrusted input (a file anyone could have written). Parsing gives the right
//! types; these checks reject values no profiled process can produce (an estimate of 1e308
//! bytes, a timestamp in the year 584 million), which would otherwise reach renderers and
//! tables as overflows and 300-digit numbers. Strings are not checked here: control
//! characters in names are legal JSON, are escaped by whoever prints them, and are flagged by
//! `heapsampler check`.

use super::json::schema::Report;

/// The largest estimate a report may carry, in bytes, objects or per second: 2^64, the size of
/// the whole address space. Writers clamp to it; readers reject anything above.
pub(crate) const MAX_ESTIMATE: f64 = 18_446_744_073_709_551_616.0;

/// The latest `timestamp_ms` a report may carry: 9999-12-31 23:59:59.999 UTC.
pub(crate) const MAX_TIMESTAMP_MS: u64 = 253_402_300_799_999;

/// Whether `x` is an estimate a report may carry: finite, from 0 to [`MAX_ESTIMATE`].
pub(crate) fn is_estimate(x: f64) -> bool {
    x.is_finite() && (0.0..=MAX_ESTIMATE).contains(&x)
}

/// A number as a message shows it: in full when short, in scientific notation when long.
fn shown(x: f64) -> String {
    if x.is_finite() && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The first value out of range, named by its path in the report (`sites[3].live_bytes`).
pub(crate) fn ranges(r: &Report) -> Result<(), String> {
    if r.timestamp_ms > MAX_TIMESTAMP_MS {
        return Err(format!(
            "`timestamp_ms` is {}, after the year 9999 (at most {MAX_TIMESTAMP_MS})",
            r.timestamp_ms
        ));
    }
    if r.window_ms > r.timestamp_ms {
        return Err(format!(
            "`window_ms` is {}, longer than the time since 1970 (`timestamp_ms` {})",
            r.window_ms, r.timestamp_ms
        ));
    }
    let check = |field: &dyn Fn() -> String, x: f64| {
        if is_estimate(x) {
            Ok(())
        } else {
            Err(format!(
                "`{}` is {}, not a number from 0 to 2^64",
                field(),
                shown(x)
            ))
        }
    };
    let t = &r.totals;
    for (name, x) in [
        ("allocated_bytes_per_sec", t.allocated_bytes_per_sec),
        ("allocated_objects_per_sec", t.allocated_objects_per_sec),
        ("freed_bytes_per_sec", t.freed_bytes_per_sec),
        ("freed_objects_per_sec", t.freed_objects_per_sec),
    ] {
        check(&|| format!("totals.{name}"), x)?;
    }
    for (i, s) in r.sites.iter().enumerate() {
        for (name, x) in [
            ("live_bytes", s.live_bytes),
            ("live_objects", s.live_objects),
            ("alloc_bytes", s.alloc_bytes),
            ("alloc_objects", s.alloc_objects),
            ("alloc_bytes_per_sec", s.alloc_bytes_per_sec),
            ("alloc_objects_per_sec", s.alloc_objects_per_sec),
        ] {
            check(&|| format!("sites[{i}].{name}"), x)?;
        }
        for (j, th) in s.threads.iter().enumerate() {
            check(
                &|| format!("sites[{i}].threads[{j}].alloc_bytes"),
                th.alloc_bytes,
            )?;
            check(
                &|| format!("sites[{i}].threads[{j}].live_bytes"),
                th.live_bytes,
            )?;
        }
    }
    for (i, l) in r.leak_suspects.iter().enumerate() {
        check(
            &|| format!("leak_suspects[{i}].growth_bytes_per_sec"),
            l.growth_bytes_per_sec,
        )?;
        check(&|| format!("leak_suspects[{i}].live_bytes"), l.live_bytes)?;
        if !(0.0..=1.0).contains(&l.confidence) {
            return Err(format!(
                "`leak_suspects[{i}].confidence` is {}, not between 0 and 1",
                shown(l.confidence)
            ));
        }
    }
    if let Some(m) = &r.process_memory
        && let Some(rss) = m.rss_bytes
    {
        for (name, part) in [("anon_bytes", m.anon_bytes), ("file_bytes", m.file_bytes)] {
            if let Some(part) = part.filter(|&p| p > rss) {
                return Err(format!(
                    "`process_memory.{name}` is {part}, more than `process_memory.rss_bytes` ({rss})"
                ));
            }
        }
    }
    Ok(())
}

/// A number as a writer stores it: within `0..=MAX_ESTIMATE` (NaN and infinities are 0), so that
/// every report written reads back.
pub(crate) fn clamp(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, MAX_ESTIMATE)
    } else {
        0.0
    }
}
