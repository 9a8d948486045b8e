//! The heap timeline page (`timeline`, `heapsampler html`) from hand-built reports: one
//! chart point per report, one series per process (a restarted pid split), leak suspects
//! named, skipped files listed, hostile names inert, and the size of a big page.
#![cfg(feature = "html")]

#[path = "../benches/support/html_input.rs"]
mod html_input;

use heapsampler::timeline::{HtmlError, Options, Timeline, page_from_dir};
use html_input::{T0, report};
use std::collections::BTreeSet;
use std::path::PathBuf;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("hs-html-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
    fn report(&self, name: &str, r: &heapsampler::Report) {
        self.write(name, &r.to_string_pretty());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The markup of the element that starts with `start` (up to the next `end`).
fn section<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let at = page
        .find(start)
        .unwrap_or_else(|| panic!("{start} missing"));
    let rest = &page[at..];
    &rest[..rest.find(end).expect("section end")]
}

/// The `data-report-index` values in `markup`.
fn indices(markup: &str) -> Vec<usize> {
    markup
        .split("data-report-index=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

const MIB: f64 = 1048576.0;

/// Two processes (pids 10 and 20), 12 and 4 reports, pid 10 leaking at `app::leak`, and pid
/// 30 restarted after 3 reports (its counters start again).
fn fixture(dir: &TempDir) -> usize {
    let mut n = 0;
    for i in 0..12u64 {
        let sites = [
            (1, 8.0 * MIB, "app::cache"),
            (2, (i + 1) as f64 * MIB, "app::leak"),
        ];
        dir.report(
            &format!("heap-10-{i:06}.json"),
            &report(10, T0 + i * 1000, 1, (100 + i) << 20, &sites),
        );
        n += 1;
    }
    for i in 0..4u64 {
        let sites = [(7, 3.0 * MIB, "other::buffer")];
        dir.report(
            &format!("heap-20-{i:06}.json"),
            &report(20, T0 + 500 + i * 2000, 1, (i + 1) << 24, &sites),
        );
        n += 1;
    }
    for (i, allocated) in [
        (0u64, 50u64 << 20),
        (1, 60 << 20),
        (2, 70 << 20),
        (3, 1 << 20),
        (4, 2 << 20),
    ] {
        let sites = [(3, MIB, "svc::state")];
        dir.report(
            &format!("heap-30-{i:06}.json"),
            &report(30, T0 + 100 + i * 2500, 1, allocated, &sites),
        );
        n += 1;
    }
    n
}

#[test]
fn one_point_per_report_and_one_series_per_process() {
    let dir = TempDir::new("points");
    let n = fixture(&dir);
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let live = section(&page, "<svg id=\"live-heap\"", "</svg>");
    let mut seen = indices(live);
    assert_eq!(seen.len(), n, "one point per report");
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "each report once");
    let series: BTreeSet<&str> = live
        .split("data-series=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    let expected: BTreeSet<&str> = [
        "pid 10",
        "pid 20",
        "pid 30 (run 1 of 2)",
        "pid 30 (run 2 of 2)",
    ]
    .into();
    assert_eq!(series, expected);
    // Report indices follow time: pid 10's first report (T0) is 0, pid 30's (T0 + 100 ms) 1.
    let first_30 = section(live, "data-series=\"pid 30 (run 1 of 2)\"", "</g>");
    assert_eq!(indices(first_30)[0], 1);
    assert_eq!(
        indices(section(live, "data-series=\"pid 10\"", "</g>"))[0],
        0
    );
    // The allocation-rate chart has the same points.
    assert_eq!(
        indices(section(&page, "<svg id=\"alloc-rate\"", "</svg>")).len(),
        n
    );
    assert!(page.contains(&format!("data-reports=\"{n}\"")));
}

#[test]
fn the_leak_is_a_named_suspect_with_growth_and_confidence_the_cache_is_not() {
    let dir = TempDir::new("suspect");
    fixture(&dir);
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let chart = section(&page, "<svg id=\"top-sites\"", "</svg>");
    let leak = section(chart, "data-suspect=\"app::leak\"", "</g>");
    // Growth of 1 MiB per second, as the detector's Theil–Sen slope.
    assert!(
        leak.contains("leak suspect app::leak: +1.0 MiB/s"),
        "{leak}"
    );
    assert_eq!(indices(leak).len(), 12, "one point per report of pid 10");
    assert!(!page.contains("data-suspect=\"app::cache\""));
    let suspects = section(&page, "<ul id=\"suspects\"", "</ul>");
    assert!(suspects.contains("data-suspect=\"app::leak\"") && suspects.contains("confidence"));
    // The table marks it and opens its stack.
    let table = section(&page, "<table id=\"sites\"", "</table>");
    let row = section(table, "data-suspect=\"app::leak\"", "</tr>");
    assert!(
        row.contains("<li>app::main <span class=\"loc\">src/main.rs:7</span></li>"),
        "{row}"
    );
}

#[test]
fn bad_files_are_listed_with_their_reasons() {
    let dir = TempDir::new("skipped");
    fixture(&dir);
    dir.write(
        "heap-99-000001.json",
        "{\"format\": \"heapsampler-heap-report\", \"version\": 2}",
    );
    dir.write("heap-99-000002.json", "{\"format\": \"heapsampler-heap-re");
    dir.write("heap-99-000003.json", "garbage");
    dir.write(".heap-99-000004.json.99.0.tmp", "partial"); // a writer's temporary: not a report
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let skipped = section(&page, "<ul id=\"skipped\"", "</ul>");
    assert_eq!(skipped.matches("<li").count(), 3, "{skipped}");
    assert!(skipped.contains("heap-99-000001.json</code>: unsupported report version 2"));
    assert!(skipped.contains("heap-99-000002.json</code>: truncated report"));
    assert!(skipped.contains("heap-99-000003.json</code>: not a JSON document"));
}

#[test]
fn empty_or_useless_directories_are_errors() {
    let dir = TempDir::new("empty");
    let err = page_from_dir(&dir.0, &Options::default()).unwrap_err();
    assert!(matches!(err, HtmlError::Empty(_)));
    assert!(
        err.to_string()
            .ends_with("no heap-*.json reports in this directory")
    );
    dir.write("heap-1-000001.json", "{}");
    let err = page_from_dir(&dir.0, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no usable report: 1 skipped (first: heap-1-000001.json: not a heapsampler heap report: no `format` field)"
    );
}

#[test]
fn hostile_function_names_are_inert() {
    let evil = "app::<script>alert(1)</script>";
    let quote = "x\"><img src=y onerror=alert(2)>";
    let mut timeline = Timeline::new(Options::default());
    for i in 0..6u64 {
        let sites = [(1, (i + 1) as f64 * MIB, evil), (2, MIB, quote)];
        timeline.add(
            &format!("heap-5-{i:06}.json<b>"),
            report(5, T0 + i * 1000, 1, 1 << 30, &sites),
        );
    }
    let page = timeline.render();
    assert!(
        !page.contains(evil) && !page.contains("<img"),
        "raw markup from a report"
    );
    assert_eq!(
        page.matches("<script>").count(),
        1,
        "only the page's own script"
    );
    assert!(page.contains("app::&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("data-suspect=\"app::&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(page.contains("x&quot;&gt;&lt;img src=y onerror=alert(2)&gt;"));
    assert!(!page.contains("json<b>") && page.contains("heap-5-000000.json&lt;b&gt;"));
}

/// 1,000 reports × 10,000 sites: the page stays under 10 MB (top sites, downsampled series,
/// a bounded table). Its time is measured by `cargo bench --bench html --features html`.
#[test]
fn a_big_input_makes_a_page_under_10_mb() {
    let timeline = html_input::big_timeline(1000, 10_000);
    let page = timeline.render();
    assert!(page.len() <= 10_000_000, "{} bytes", page.len());
    assert_eq!(
        indices(section(&page, "<svg id=\"live-heap\"", "</svg>")).len(),
        1000
    );
    assert!(
        page.contains("data-suspect=\"app::module_7::function_7\""),
        "the leaking site is named"
    );
    let table = section(&page, "<table id=\"sites\"", "</table>");
    assert_eq!(table.matches("<tr data-live").count(), 500);
    assert!(page.contains("The 500 sites holding the most live bytes of 10000 are listed."));
}

/// `heapsampler html`: a page and status 0 for a directory with a usable report; one error
/// line and status 2 for an empty directory or one with nothing usable.
#[cfg(feature = "cli")]
#[test]
fn cli_writes_the_page_or_fails_with_one_line() {
    let run = |dir: &TempDir, out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_heapsampler"))
            .arg("html")
            .arg(&dir.0)
            .arg("-o")
            .arg(dir.0.join(out))
            .output()
            .unwrap()
    };
    let empty = TempDir::new("cli-empty");
    let out = run(&empty, "page.html");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no heap-*.json reports in this directory"),
        "{err}"
    );
    empty.write("heap-1-000001.json", "garbage");
    let out = run(&empty, "page.html");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("no usable report, 1 skipped (first: heap-1-000001.json: not a JSON document"),
        "{err}"
    );
    assert!(!empty.0.join("page.html").exists());

    let dir = TempDir::new("cli-page");
    let n = fixture(&dir);
    dir.write("heap-99-000001.json", "garbage");
    let out = run(&dir, "out.html");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.0.join("out.html")).unwrap();
    assert_eq!(
        indices(section(&page, "<svg id=\"live-heap\"", "</svg>")).len(),
        n
    );
    assert!(section(&page, "<ul id=\"skipped\"", "</ul>").contains("heap-99-000001.json"));
}
