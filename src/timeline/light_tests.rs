//! The light read against serde: the sites read line by line are the sites serde reads, bit
//! for bit, and anything laid out otherwise is left to serde.

use super::*;
use crate::report::json::{ReportSite, ReportThread};

/// What a light read keeps, comparable: header, totals, and each site's numbers as bits.
type Kept = (u32, u64, u64, u64, u64, u64, Vec<(u32, u64, u64)>);

fn kept(e: &Entry) -> Kept {
    (
        e.pid,
        e.timestamp_ms,
        e.sample_interval,
        e.live_bytes,
        e.alloc_bytes,
        e.alloc_rate.to_bits(),
        e.sites
            .iter()
            .map(|s| (s.stack_id, s.live.to_bits(), s.alloc.to_bits()))
            .collect(),
    )
}

/// Both ways of reading `text`: line by line where it can be, serde alone.
fn both(text: &str) -> (Option<Entry>, Option<Entry>, bool) {
    let lines = lines::sites(text);
    let by_lines = lines.is_some();
    (
        parse_with(text, "x", lines),
        parse_with(text, "x", None),
        by_lines,
    )
}

fn report(values: &[f64]) -> Report {
    let mut r = Report::from_profile(&crate::Profile::default(), None, vec![], vec![]);
    r.pid = 7;
    r.timestamp_ms = 1_767_225_600_000;
    r.totals.allocated_bytes_per_sec = 0.1;
    for (k, pair) in values.chunks(2).enumerate() {
        r.sites.push(ReportSite {
            stack_id: k as u32 * 977,
            live_bytes: pair[0],
            alloc_bytes: pair[pair.len() - 1],
            live_objects: 3.5,
            alloc_bytes_per_sec: 1e-7,
            samples: 12,
            addresses: vec![0x40_0000, u64::MAX, 0],
            threads: vec![ReportThread {
                thread: 2,
                name: "worker 2 ✓".into(),
                alloc_bytes: 5.0,
                live_bytes: 1.25,
            }],
            ..ReportSite::default()
        });
    }
    r
}

#[test]
fn sites_read_line_by_line_are_those_serde_reads() {
    // Numbers of every shape the writer prints (17 digits, exponents, whole, 0, 2^64), and
    // pseudo-random bit patterns in range.
    let mut values = vec![
        0.0,
        1.0,
        0.1,
        1e-7,
        5e-324,
        123456789.12345679,
        1023076923.076923,
        3069730769.230769,
        1e19,
        1.8446744073709552e19,
        4194304.0,
        100779.30870010077,
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x >> 2);
        if f.is_finite() && f <= 1.8e19 {
            values.push(f);
        }
    }
    let text = report(&values).to_string_pretty();
    let (lines, serde, by_lines) = both(&text);
    assert!(by_lines, "the reporter's layout is read line by line");
    let (lines, serde) = (lines.expect("light"), serde.expect("serde"));
    assert_eq!(lines.sites.len(), values.len().div_ceil(2));
    assert_eq!(kept(&lines), kept(&serde));
    // Decimals longer than any writer prints round as serde rounds them.
    for long in [
        "0.1000000000000000055511151231257827",
        "9007199254740993",
        "123456789012345678901234567890",
        "2.2250738585072011e-308",
        "1E5",
        "0e0",
        "-0.0",
    ] {
        let t = text.replacen("\"live_bytes\":0.0,", &format!("\"live_bytes\":{long},"), 1);
        assert_ne!(t, text);
        let (lines, serde, by_lines) = both(&t);
        assert!(by_lines, "{long}");
        assert_eq!(lines.map(|e| kept(&e)), serde.map(|e| kept(&e)), "{long}");
    }
}

#[test]
fn other_layouts_are_left_to_serde() {
    let text = report(&[1.0, 2.0, 3.0, 4.0]).to_string_pretty();
    for (from, to) in [
        (",\"live_bytes\":", ", \"live_bytes\": "),
        ("{\"stack_id\":0,", "{\"stack_id\":0,\"extra\":[],"),
        ("\"name\":\"worker 2 ✓\"", "\"name\":\"worker\\u0020\""),
        ("\"stack_id\":977", "\"stack_id\":977.0"),
        ("\"stack_id\":977", "\"stack_id\":4294967296"),
        ("\"samples\":12", "\"samples\":012"),
        ("\"addresses\":[", "\"addresses\":[[[[[[[[[[1]]]]]]]]],"),
    ] {
        let t = text.replacen(from, to, 1);
        assert_ne!(t, text, "{to}");
        let (lines, serde, by_lines) = both(&t);
        assert!(!by_lines, "{to}");
        assert_eq!(lines.map(|e| kept(&e)), serde.map(|e| kept(&e)), "{to}");
    }
}

/// Sites laid out as the reporter's but not at the top level: the top level's own `sites`
/// are what serde reads, and the file is left to the full read.
#[test]
fn lines_read_elsewhere_than_the_top_level_are_not_the_sites() {
    let text = report(&[1.0, 2.0]).to_string_pretty();
    let at = text.find("\n  \"sites\": ").unwrap();
    let nested = format!(
        "{}\n  \"profiler_extra\": {{\n  \"sites\": [\n    {}\n  ]}},{}",
        &text[..at],
        "{\"stack_id\":5,\"live_bytes\":9.0,\"live_objects\":0.0,\"alloc_bytes\":9.0,\
         \"alloc_objects\":0.0,\"alloc_bytes_per_sec\":0.0,\"alloc_objects_per_sec\":0.0,\
         \"samples\":1,\"live_samples\":1,\"addresses\":[],\"threads\":[]}",
        &text[at..]
    );
    assert!(Report::parse(&nested).is_ok());
    let (lines, serde, by_lines) = both(&nested);
    assert!(by_lines);
    assert!(lines.is_none(), "left to the full read");
    assert_eq!(serde.map(|e| e.sites[0].stack_id), Some(0));
}

/// The schema's reference report (every field set, threads named) is read line by line, as
/// serde reads it.
#[test]
fn the_reference_report_is_read_line_by_line() {
    let text = include_str!("../../tests/data/report-v1.json");
    let (lines, serde, by_lines) = both(text);
    assert!(by_lines);
    let (lines, serde) = (lines.expect("light"), serde.expect("serde"));
    assert!(!lines.sites.is_empty());
    assert_eq!(kept(&lines), kept(&serde));
}

#[test]
fn a_report_without_sites_is_read_line_by_line() {
    let text = report(&[]).to_string_pretty();
    let (lines, serde, by_lines) = both(&text);
    assert!(by_lines && text.contains("\"sites\": [],"));
    assert_eq!(lines.map(|e| kept(&e)), serde.map(|e| kept(&e)));
}
