//! `--json` output of `top`, `diff` and `leaks` (read back as JSON, numbers checked against
//! the reports written), and colour: only on a terminal, never with `NO_COLOR`.
#![cfg(feature = "cli")]

use heapsampler::{Frame, Profile, Report, Site, Totals};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const MIB: f64 = 1024.0 * 1024.0;
/// Above any Linux pid: never this test's own, so the writer takes the profile's frames.
const PID: u32 = 90_000_002;
const T0: u64 = 1_767_225_600_000;

#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

fn site(id: u32, function: &str, line: u32, live: f64, alloc: f64) -> Site {
    let frames = vec![
        Frame {
            address: 0x2000 + u64::from(id),
            function: Some(function.into()),
            file: Some("/home/dev/app/src/lib.rs".into()),
            line: Some(line),
        },
        Frame {
            address: 0x3000,
            function: Some("app::main".into()),
            file: Some("/home/dev/app/src/main.rs".into()),
            line: Some(7),
        },
    ];
    Site {
        stack_id: id,
        addresses: frames.iter().map(|f| f.address).collect(),
        frames,
        live_bytes: live,
        live_objects: 1.0,
        alloc_bytes: alloc,
        alloc_objects: 1.0,
        samples: 4,
        live_samples: 2,
        threads: Vec::new(),
    }
}

/// A profile at `T0 + i` seconds: `app::leak` grows by 1 MiB a second, `app::cache` stays.
fn at(i: u64) -> Profile {
    let leak = (i + 1) as f64 * MIB;
    Profile {
        pid: PID,
        timestamp_ms: T0 + i * 1000,
        sample_interval: 4096,
        totals: Totals {
            alloc_bytes: (100 << 20) + (i << 20),
            alloc_objects: 1000 + i,
            live_bytes: (10 << 20) + (i << 20),
            live_objects: 100 + i,
            ..Totals::default()
        },
        sites: vec![
            site(1, "app::leak", 12, leak, leak),
            site(2, "app::cache", 30, 4.0 * MIB, 8.0 * MIB),
        ],
        ..Profile::default()
    }
}

fn write_series(dir: &TempDir, n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let previous = i.checked_sub(1).map(at);
            Report::from_profile(&at(i), previous.as_ref(), Vec::new(), Vec::new())
                .write_atomic(&dir.0, &format!("heap-{PID}-{i:06}.json"))
                .unwrap()
        })
        .collect()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heapsampler"))
        .args(args)
        .env_remove("HEAPSAMPLER")
        .output()
        .expect("run heapsampler")
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON document on stdout")
}

#[test]
fn top_json_lists_the_ranked_sites() {
    let dir = TempDir::new("top");
    let files = write_series(&dir, 3);
    let v = json(&run(&[&"top", &files[2], &"--json", &"-n", &"1"]));
    assert_eq!(v["by"], "live");
    assert_eq!(v["report"]["pid"], PID);
    assert_eq!(v["report"]["timestamp_ms"], T0 + 2000);
    assert_eq!(v["sites_total"], 2);
    assert_eq!(v["totals"]["live_bytes"], 12u64 << 20);
    let sites = v["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["function"], "app::cache");
    assert_eq!(sites[0]["line"], 30);
    assert_eq!(sites[0]["live_bytes"], 4.0 * MIB);
    let v = json(&run(&[&"top", &files[2], &"--json", &"--by", &"alloc"]));
    assert_eq!(v["by"], "alloc");
    assert_eq!(v["sites"][0]["function"], "app::cache");
    assert_eq!(v["sites"][1]["alloc_bytes"], 3.0 * MIB);
}

#[test]
fn diff_json_gives_the_changes() {
    let dir = TempDir::new("diff");
    let files = write_series(&dir, 4);
    let v = json(&run(&[&"diff", &files[0], &files[3], &"--json"]));
    assert_eq!(v["matched_by"], "stack_id");
    assert_eq!(v["sites_changed"], 1);
    let s = &v["sites"][0];
    assert_eq!(s["function"], "app::leak");
    assert_eq!(s["stack_id"], 1);
    assert_eq!(s["status"], "changed");
    assert_eq!(s["live_bytes_change"], 3.0 * MIB);
    let live = v["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "live bytes")
        .unwrap();
    assert_eq!(live["change"], 3u64 << 20);
}

#[test]
fn leaks_json_names_the_suspect() {
    let dir = TempDir::new("leaks");
    write_series(&dir, 8);
    let o = run(&[&"leaks", &dir.0, &"--json", &"--fail-on-leak"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["suspects_total"], 1);
    let p = &v["processes"][0];
    assert_eq!(p["pid"], PID);
    assert_eq!(p["reports"], 8);
    let s = &p["suspects"][0];
    assert_eq!(s["function"], "app::leak");
    assert_eq!(s["frames"][1]["function"], "app::main");
    let growth = s["growth_bytes_per_sec"].as_f64().unwrap();
    assert!((growth - MIB).abs() < 1.0, "{growth}");
}

/// Runs the command on a pseudo-terminal (util-linux `script`), `NO_COLOR` set or not.
fn on_terminal(args: &str, no_color: bool) -> Option<String> {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_heapsampler")),
        "/dev/null",
    ])
    .env_remove("HEAPSAMPLER")
    .env("TERM", "xterm");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let o = cmd.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = TempDir::new("colour");
    let files = write_series(&dir, 8);
    let top = format!("top {}", files[7].display());
    // Into a pipe: plain text.
    let piped = run(&[&"top", &files[7]]);
    assert!(!piped.stdout.contains(&0x1b));
    let Some(coloured) = on_terminal(&top, false) else {
        eprintln!("`script` not available: terminal half skipped");
        return;
    };
    assert!(coloured.contains("\x1b[1m"), "{coloured:?}");
    let plain = on_terminal(&top, true).unwrap();
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let leaks = format!("leaks {}", dir.0.display());
    assert!(
        on_terminal(&leaks, false)
            .unwrap()
            .contains("\x1b[1;31mleak suspect #1")
    );
}

/// The `resident` line of `top` holds the inner allocator's figures a report carries.
#[test]
fn top_prints_process_memory_with_jemalloc() {
    let dir = TempDir::new("resident");
    let mut report = Report::from_profile(&at(0), None, Vec::new(), Vec::new());
    report.process_memory = Some(heapsampler::ProcessMemory {
        rss_bytes: Some(64 << 20),
        jemalloc: Some(heapsampler::JemallocStats {
            allocated_bytes: 20 << 20,
            active_bytes: 24 << 20,
            resident_bytes: 30 << 20,
            mapped_bytes: 32 << 20,
            retained_bytes: 8 << 20,
            metadata_bytes: 1 << 20,
        }),
        ..Default::default()
    });
    let path = report.write_atomic(&dir.0, "heap.json").unwrap();
    let o = run(&[&"top", &path]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("resident"))
        .unwrap_or_else(|| panic!("no resident line in {text}"));
    assert!(line.contains("RSS 64.0 MiB"), "{line}");
    assert!(
        line.contains("; jemalloc 20.0 MiB allocated, 30.0 MiB resident, 8.0 MiB retained"),
        "{line}"
    );
}
