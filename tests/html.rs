//! The heap timeline page (`timeline`, `heapsampler html`) from hand-built reports: one
//! chart point per report, one series per process (a restarted pid split), leak suspects
//! named, skipped files listed, hostile names inert, and the size of a big page.
#![cfg(feature = "html")]

#[path = "../benches/support/html_input.rs"]
mod html_input;

use heapsampler::timeline::{HtmlError, Options, Timeline, page_from_dir};
use html_input::{T0, report};
use std::collections::BTreeSet;

#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

/// Writes `r` into `dir` as the reporter would.
trait WriteReport {
    fn report(&self, name: &str, r: &heapsampler::Report);
}

impl WriteReport for TempDir {
    fn report(&self, name: &str, r: &heapsampler::Report) {
        self.write(name, &r.to_string_pretty());
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
    // The restart splits pid 30 where its cumulative counter went back: 3 reports, then 2.
    let run = |label: &str| indices(section(live, &format!("data-series=\"{label}\""), "</g>"));
    assert_eq!(run("pid 30 (run 1 of 2)").len(), 3);
    assert_eq!(run("pid 30 (run 2 of 2)").len(), 2);
    assert_eq!(run("pid 10").len(), 12);
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
    let label = section(leak, "<text class=\"suspect-label\"", "</text>");
    assert!(
        label.contains(">leak suspect app::leak: +1.0 MiB/s, ") && label.ends_with("% confidence"),
        "{label}"
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

/// Reading the files on several threads makes the same page, skipped files in the same order.
#[test]
fn threads_reading_make_the_same_page() {
    let dir = TempDir::new("threads");
    fixture(&dir);
    dir.write("heap-99-000001.json", "garbage");
    dir.write("heap-10-000005.json", "{}"); // over one of pid 10's reports
    let page = |threads| {
        let options = Options {
            threads,
            ..Options::default()
        };
        page_from_dir(&dir.0, &options).unwrap()
    };
    // inferno picks the flamegraphs' warm colours at random: the rest must be equal.
    let uncoloured = |page: String| {
        let mut parts = page.split("rgb(");
        let mut out = parts.next().unwrap().to_string();
        for p in parts {
            out.push_str(&p[p.find(')').unwrap()..]);
        }
        out
    };
    let page = |threads| uncoloured(page(threads));
    let one = page(1);
    assert_eq!(
        section(&one, "<ul id=\"skipped\"", "</ul>")
            .matches("<li")
            .count(),
        2
    );
    for threads in [2, 3, 64] {
        assert!(one == page(threads), "{threads} threads: another page");
    }
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
    assert!(page.contains("The 10 of 10000 sites holding the most in each process"));
    let top = section(&page, "<svg id=\"top-sites\"", "</svg>");
    assert_eq!(top.matches("data-series=").count(), 10);
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
    // The terminal gets one line about the skipped file; the page lists it.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "heapsampler: warning: 1 file(s) skipped, listed on the page \
         (first: heap-99-000001.json: not a JSON document: expected value at line 1 column 1)"
    );
    let page = std::fs::read_to_string(dir.0.join("out.html")).unwrap();
    assert_eq!(
        indices(section(&page, "<svg id=\"live-heap\"", "</svg>")).len(),
        n
    );
    assert!(section(&page, "<ul id=\"skipped\"", "</ul>").contains("heap-99-000001.json"));
}

/// The values of attribute `name` in `markup`, as numbers.
fn numbers(markup: &str, name: &str) -> Vec<f64> {
    markup
        .split(&format!(" {name}=\""))
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// A report file of a rotated set: the reporter deleted the oldest files of its pid, and the
/// sequence went past 6 digits, so name order is not time order; one series all the same.
#[test]
fn a_rotated_set_is_one_series_in_time_order() {
    let dir = TempDir::new("rotated");
    for (k, seq) in [999_998u64, 999_999, 1_000_000, 1_000_001]
        .into_iter()
        .enumerate()
    {
        let t = T0 + k as u64 * 1000;
        let sites = [(1, (k + 1) as f64 * MIB, "app::grow")];
        dir.report(
            &format!("heap-40-{seq:06}.json"),
            &report(40, t, 1, (k as u64 + 1) << 30, &sites),
        );
    }
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let live = section(&page, "<svg id=\"live-heap\"", "</svg>");
    assert_eq!(live.matches("data-series=").count(), 1, "one series");
    assert!(live.contains("data-series=\"pid 40\""));
    assert_eq!(indices(live), vec![0, 1, 2, 3]);
    let xs = numbers(live, "cx");
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "left to right: {xs:?}");
    let first = section(live, "data-report-index=\"0\"", "</title>");
    assert!(first.contains("<title>heap-40-999998.json"), "{first}");
    let last = section(live, "data-report-index=\"3\"", "</title>");
    assert!(last.contains("<title>heap-40-1000001.json"), "{last}");
}

/// The shaded band of a sampled site is ±2 standard errors, √(T·B) each: at T = 1 MiB and
/// B = 16 MiB, from 8 to 24 MiB. Positions are read against the chart's own zero line and
/// the point, so the check does not depend on the chart's size.
#[test]
fn a_sampled_site_has_a_band_of_two_standard_errors() {
    let mut timeline = Timeline::new(Options::default());
    for i in 0..3u64 {
        let sites = [(1, 16.0 * MIB, "app::held")];
        timeline.add(
            &format!("heap-3-{i:06}.json"),
            report(3, T0 + i * 1000, 1 << 20, 1 << 30, &sites),
        );
    }
    let page = timeline.render();
    let chart = section(&page, "<svg id=\"top-sites\"", "</svg>");
    let zero = numbers(chart, "y1")[0]; // the first grid line is 0 B
    let point = numbers(chart, "cy")[0];
    let per_mib = (zero - point) / 16.0;
    let band = section(chart, "<path class=\"band\"", "/>");
    let d = section(band, "d=\"", "Z");
    let ys: Vec<f64> = d[4..]
        .split('L')
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(ys.len(), 6, "{d}");
    for (k, y) in ys.iter().enumerate() {
        let mib = if k < 3 { 24.0 } else { 8.0 };
        assert!(
            (y - (zero - mib * per_mib)).abs() <= 0.15,
            "{k}: {y} in {d}"
        );
    }
    // One standard error in the table: √(T/B) = 25%.
    let table = section(&page, "<table id=\"sites\"", "</table>");
    assert!(table.contains("<td class=\"num\">±25%</td>"), "{table}");
    // Exact reports (interval 1) have no band.
    let dir = TempDir::new("exact-band");
    fixture(&dir);
    let exact = page_from_dir(&dir.0, &Options::default()).unwrap();
    assert!(!section(&exact, "<svg id=\"top-sites\"", "</svg>").contains("class=\"band\""));
}

/// The flamegraphs of the newest report (live and allocated bytes) and the differential one
/// from the oldest: fixture values, as inferno titles its frames.
#[test]
fn flamegraphs_of_the_newest_report_and_of_the_change() {
    let dir = TempDir::new("flame");
    fixture(&dir);
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let frame = |title: &str| {
        let start = format!("<iframe class=\"flame\" title=\"{title}\"");
        let doc = section(section(&page, &start, "</iframe>"), "srcdoc=\"", "\">");
        doc.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    assert!(page.contains("<h2>Flamegraphs of the newest report (heap-10-000011.json)</h2>"));
    // pid 10's newest report: the leak holds 12 MiB, the cache 8; allocated twice as much.
    let live = frame("live bytes");
    assert!(
        live.contains("<title>app::leak (12,582,912 bytes, 60.00%)</title>"),
        "{live}"
    );
    assert!(live.contains("<title>app::cache (8,388,608 bytes, 40.00%)</title>"));
    let alloc = frame("bytes allocated since the start");
    assert!(alloc.contains("<title>app::leak (25,165,824 bytes, 60.00%)</title>"));
    // From the oldest report (leak 1 MiB, cache 8 MiB): the leak grew by 11 of 20 MiB.
    assert!(page.contains("from the oldest report (heap-10-000000.json) to the newest"));
    let diff = frame("live bytes, oldest → newest");
    assert!(diff.contains("<title>app::leak (12,582,912 bytes, 60.00%; +55.00%)</title>"));
    assert!(diff.contains("<title>app::cache (8,388,608 bytes, 40.00%; 0.00%)</title>"));

    let mut one = Timeline::new(Options::default());
    one.add("only", report(1, T0, 1, 1 << 20, &[(1, MIB, "app::x")]));
    let page = one.render();
    assert_eq!(page.matches("<iframe class=\"flame\"").count(), 2);
    assert!(page.contains("One report: no change to show."));
}

/// Nothing on the page is fetched: no external script, style, font, image or frame, in the
/// page or in the flamegraphs' documents (escaped inside `srcdoc`). Chromium's net log checks
/// the same in scripts/html-screenshot.sh.
#[test]
fn the_page_fetches_nothing() {
    let dir = TempDir::new("offline");
    fixture(&dir);
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let unescaped = page
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&#39;", "'");
    for bad in [
        "<link",
        "<img",
        "<object",
        "<embed",
        "<audio",
        "<video",
        "@import",
        "@font-face",
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "url(\"http",
        "url('http",
        "src=\"//",
        "href=\"//",
    ] {
        assert!(!unescaped.contains(bad), "{bad}");
    }
    assert_eq!(page.matches("<script").count(), 1, "one inline script");
    assert!(page.contains("<style>") && page.matches("<iframe").count() == 3);
    assert_eq!(page.matches(" src=").count(), 0, "iframes are srcdoc");
}

/// Series longer than `max_points` are downsampled, keeping the first and last report and
/// each stretch's extremes, and the page says so.
#[test]
fn a_long_series_is_downsampled_and_the_page_says_so() {
    let options = Options {
        max_points: 100,
        ..Options::default()
    };
    let mut timeline = Timeline::new(options);
    for i in 0..1000u64 {
        let mib = match i {
            537 => 50.0,
            222 => 0.5,
            _ => 4.0,
        };
        let sites = [(1, mib * MIB, "app::steady")];
        timeline.add(
            &format!("heap-7-{i:06}.json"),
            report(7, T0 + i * 1000, 1, (i + 1) << 30, &sites),
        );
    }
    let page = timeline.render();
    for chart in ["live-heap", "top-sites"] {
        let drawn = indices(section(&page, &format!("<svg id=\"{chart}\""), "</svg>"));
        assert!(
            (50..=102).contains(&drawn.len()),
            "{chart}: {}",
            drawn.len()
        );
        for kept in [0, 222, 537, 999] {
            assert!(drawn.contains(&kept), "{chart}: report {kept} kept");
        }
    }
    let drawn = indices(section(&page, "<svg id=\"live-heap\"", "</svg>")).len();
    let note = section(&page, "<ul id=\"downsampled\"", "</ul>");
    assert!(
        note.contains(&format!("pid 7: 1000 reports drawn as {drawn} points")),
        "{note}"
    );
    assert!(
        page.contains("data-reports=\"1000\""),
        "every report counted"
    );
}

/// The table's allocation rate spans the same reports as its growth: a service's last report,
/// written as it stops, covers a few milliseconds in which no site allocated anything sampled.
#[test]
fn the_allocation_rate_spans_the_last_reports_not_the_newest_alone() {
    let dir = TempDir::new("rate");
    // Site 1 allocates 2 MiB a second (cumulative: 2 × live, 1 MiB more live each second).
    for k in 0..6u64 {
        let mut r = report(
            7,
            T0 + k * 1000,
            4096,
            1 << 30,
            &[(1, (k + 1) as f64 * 1048576.0, "app::busy")],
        );
        if k == 5 {
            // The last report: written 2 ms after the one before, nothing sampled since.
            r.timestamp_ms = T0 + 4002;
            r.window_ms = 2;
            r.sites[0].live_bytes = 5.0 * 1048576.0;
            r.sites[0].alloc_bytes = 10.0 * 1048576.0;
            r.sites[0].alloc_bytes_per_sec = 0.0;
        }
        dir.write(&format!("heap-7-{k:06}.json"), &r.to_string_pretty());
    }
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    let table = section(&page, "<table id=\"sites\"", "</table>");
    let rate = numbers(table, "data-rate");
    // From 2 MiB at T0 to 10 MiB at T0 + 4.002 s.
    assert_eq!(rate.len(), 1, "{table}");
    assert!((rate[0] - 8.0 * 1048576.0 / 4.002).abs() < 1.0, "{rate:?}");
}
