//! How `heapsampler html` reads a directory: most files lightly (what the charts draw), the
//! ones the page shows in full. The oracle is the page of the same files each read in full
//! (`Timeline::add_file`) in name order: for good and bad files alike it must be the same
//! page, skipped files and their reasons included.
#![cfg(feature = "html")]

#[path = "../benches/support/html_input.rs"]
mod html_input;

use heapsampler::timeline::{Options, Timeline, page_from_dir};
use html_input::{T0, report};
use std::path::PathBuf;

#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

const MIB: f64 = 1048576.0;

/// The JSON of a report of `pid` at `T0 + k` seconds: a sampled leak, a cache, and a site
/// per pid, so that the pids' flamegraphs and tables differ.
fn text(pid: u32, k: u64, allocated: u64) -> String {
    let sites = [
        (1, 8.0 * MIB, "app::cache"),
        (2, (k + 1) as f64 * MIB, "app::leak"),
        (pid, 3.0 * MIB, "app::own"),
    ];
    report(pid, T0 + k * 1000, 65536, allocated, &sites).to_string_pretty()
}

/// The page of every `heap-*.json` file of `dir` read in full, in name order.
fn read_in_full(dir: &TempDir) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("heap-") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    let mut timeline = Timeline::new(Options::default());
    for f in &files {
        timeline.add_file(f);
    }
    timeline.render()
}

/// inferno picks the flamegraphs' warm colours at random: the rest must be equal.
fn uncoloured(page: &str) -> String {
    let mut parts = page.split("rgb(");
    let mut out = parts.next().unwrap().to_string();
    for p in parts {
        out.push_str(&p[p.find(')').unwrap()..]);
    }
    out
}

fn page(dir: &TempDir, threads: usize) -> String {
    let options = Options {
        threads,
        ..Options::default()
    };
    uncoloured(&page_from_dir(&dir.0, &options).unwrap())
}

/// `n` good reports of pid 10, a second apart.
fn pid_10(dir: &TempDir, n: u64) {
    for k in 0..n {
        dir.write(
            &format!("heap-10-{k:06}.json"),
            &text(10, k, (k + 20) << 24),
        );
    }
}

/// Good reports of two pids (one restarted), unsorted locations in the newest report of one,
/// and bad files of every kind the reader names.
#[test]
fn a_directory_makes_the_page_of_its_files_read_in_full() {
    let dir = TempDir::new("same");
    pid_10(&dir, 8);
    // pid 20 restarts after 3 reports (its cumulative counter goes back down).
    for (k, allocated) in [
        (0u64, 9u64 << 30),
        (1, 10 << 30),
        (2, 11 << 30),
        (3, 1 << 24),
    ] {
        dir.write(&format!("heap-20-{k:06}.json"), &text(20, k, allocated));
    }
    let mut newest = report(20, T0 + 4000, 65536, 2 << 24, &[(5, MIB, "zz::last")]);
    newest.locations.reverse();
    dir.write("heap-20-000004.json", &newest.to_string_pretty());
    dir.write("heap-10-000100.json", "garbage");
    dir.write("heap-10-000101.json", &text(10, 1, 1)[..500]);
    dir.write(
        "heap-10-000102.json",
        &text(10, 1, 1).replace("\"version\": 1", "\"version\": 2"),
    );
    dir.write(
        "heap-10-000103.json",
        &text(10, 1, 1).replace("\"timestamp_ms\": 1", "\"timestamp_ms\": 9991"),
    );
    dir.write(
        "heap-10-000104.json",
        &text(10, 1, 1).replacen("\"live_bytes\":", "\"live_bytes\":-", 1),
    );
    dir.write("heap-10-000105.json", "{}");
    let oracle = uncoloured(&read_in_full(&dir));
    assert_eq!(oracle.matches("<li data-file=").count(), 6, "six skipped");
    assert!(
        oracle.contains("zz::last"),
        "pid 20's newest report is shown"
    );
    for threads in [1, 2, 5] {
        assert!(
            page(&dir, threads) == oracle,
            "{threads} threads: another page"
        );
    }
}

/// The newest and the oldest reports are shown in full (table, flamegraphs, their diff), so
/// they are checked in full: one the light read accepts but the full read does not (a value
/// the charts do not draw is out of range) is skipped with the full read's reason, and the
/// report before it (after it, for the oldest) is shown instead.
#[test]
fn a_shown_report_is_checked_in_full_and_the_next_in_line_shown_instead() {
    let dir = TempDir::new("shown");
    for k in 0..6 {
        let mut t = text(10, k, (k + 20) << 24);
        if k == 0 || k == 5 {
            t = t.replacen("\"live_objects\":0.0", "\"live_objects\":1e300", 1);
        }
        dir.write(&format!("heap-10-{k:06}.json"), &t);
    }
    let oracle = uncoloured(&read_in_full(&dir));
    assert!(page(&dir, 2) == oracle, "another page");
    for k in [0, 5] {
        assert!(
            oracle.contains(&format!(
                "<code>heap-10-00000{k}.json</code>: invalid report: \
                 `sites[0].live_objects` is 1e300, not a number from 0 to 2^64"
            )),
            "{k}"
        );
    }
    assert!(oracle.contains("data-reports=\"4\""));
    assert!(oracle.contains("Flamegraphs of the newest report (heap-10-000004.json)"));
    assert!(oracle.contains("from the oldest report (heap-10-000001.json)"));
}

/// A report the page only draws is read for what it draws: a value out of range elsewhere
/// (here an estimate of objects the page never shows) does not keep its points off the
/// charts. Values the charts draw are checked as the full read checks them.
#[test]
fn a_drawn_report_is_checked_for_what_is_drawn() {
    let dir = TempDir::new("drawn");
    pid_10(&dir, 5);
    let flawed = text(10, 2, 22 << 24);
    dir.write(
        "heap-10-000002.json",
        &flawed.replacen("\"live_objects\":0.0", "\"live_objects\":1e300", 1),
    );
    let page = page(&dir, 1);
    assert!(page.contains("data-reports=\"5\""), "drawn");
    assert!(!page.contains("<ul id=\"skipped\""));
    dir.write(
        "heap-10-000002.json",
        &flawed.replacen("\"alloc_bytes\":16777216.0", "\"alloc_bytes\":1e300", 1),
    );
    let page = page_from_dir(&dir.0, &Options::default()).unwrap();
    assert!(page.contains("data-reports=\"4\""), "skipped");
    assert!(page.contains(
        "<code>heap-10-000002.json</code>: invalid report: `sites[0].alloc_bytes` is 1e300"
    ));
}
