//! The `heapsampler` command-line tool, run as a process on reports written by the library's
//! JSON writer from hand-built profiles (known functions, numbers and leak series).
#![cfg(feature = "cli")]

use heapsampler::{Frame, Profile, Report, Site, Totals};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output};

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Above any Linux pid (pid_max ≤ 2^22), so never this test's own pid: the writer then takes
/// the frames from the profile and leaves `program` empty.
const PID: u32 = 90_000_001;
const T0: u64 = 1_767_225_600_000;

/// A directory removed at the end of the test.
#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

/// `(address, function, file, line)`, innermost first.
type Stack<'a> = &'a [(u64, &'a str, &'a str, u32)];

const LOAD_TABLE: Stack = &[
    (
        0x1000,
        "alloc::vec::from_elem",
        "/rustc/abc/library/alloc/src/vec/mod.rs",
        3000,
    ),
    (0x2000, "app::load_table", "/home/dev/app/src/table.rs", 41),
    (0x3000, "app::main", "/home/dev/app/src/main.rs", 7),
];
const CACHE_FILL: Stack = &[
    (
        0x1100,
        "hashbrown::raw::RawTable<T>::reserve_rehash",
        "/cargo/hashbrown/src/raw.rs",
        900,
    ),
    (0x2100, "app::cache_fill", "/home/dev/app/src/cache.rs", 88),
    (0x3000, "app::main", "/home/dev/app/src/main.rs", 7),
];
const LEAK_SESSIONS: Stack = &[
    (
        0x2200,
        "app::leak_sessions",
        "/home/dev/app/src/session.rs",
        12,
    ),
    (0x3000, "app::main", "/home/dev/app/src/main.rs", 7),
];
const PARSE: Stack = &[
    (0x2300, "app::parse", "/home/dev/app/src/parse.rs", 5),
    (0x3000, "app::main", "/home/dev/app/src/main.rs", 7),
];

fn site(id: u32, stack: Stack, live: f64, alloc: f64) -> Site {
    Site {
        stack_id: id,
        addresses: stack.iter().map(|f| f.0).collect(),
        frames: stack
            .iter()
            .map(|&(address, function, file, line)| Frame {
                address,
                function: Some(function.into()),
                file: Some(file.into()),
                line: Some(line),
            })
            .collect(),
        live_bytes: live,
        live_objects: (live / 1024.0).round(),
        alloc_bytes: alloc,
        alloc_objects: (alloc / 1024.0).round(),
        samples: 10,
        live_samples: 5,
        threads: Vec::new(),
    }
}

/// Moves a site's stack to other addresses, as another run of the program would have it.
fn relocated(mut s: Site, offset: u64) -> Site {
    for a in &mut s.addresses {
        *a += offset;
    }
    for f in &mut s.frames {
        f.address += offset;
    }
    s
}

fn profile(
    pid: u32,
    ts: u64,
    interval: u64,
    live: u64,
    allocated: u64,
    sites: Vec<Site>,
) -> Profile {
    Profile {
        pid,
        timestamp_ms: ts,
        sample_interval: interval,
        totals: Totals {
            alloc_bytes: allocated,
            alloc_objects: allocated / 64,
            free_bytes: allocated - live,
            free_objects: (allocated - live) / 64,
            live_bytes: live,
            live_objects: live / 64,
            peak_live_bytes: live + 4096,
            ..Totals::default()
        },
        sites,
        ..Profile::default()
    }
}

fn write(dir: &TempDir, name: &str, now: &Profile, previous: Option<&Profile>) -> PathBuf {
    let report = Report::from_profile(now, previous, Vec::new(), Vec::new());
    report.write_atomic(&dir.0, name).unwrap()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heapsampler"))
        .args(args)
        // A HEAPSAMPLER variable in the environment would start a reporter in the tool.
        .env_remove("HEAPSAMPLER")
        .output()
        .expect("run heapsampler")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first stdout line containing `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// A report of three sites (two symbolized, one not) with rates over a 10 s window.
fn top_report(dir: &TempDir) -> PathBuf {
    let unsymbolized = Site {
        stack_id: 9,
        addresses: vec![0xdead0],
        live_bytes: KIB,
        alloc_bytes: KIB,
        ..Site::default()
    };
    let before = profile(
        PID,
        T0 - 10_000,
        512 * 1024,
        150_000_000,
        91_000_000_000,
        vec![
            site(7, LOAD_TABLE, 8.0 * MIB, 30.0 * MIB),
            site(8, CACHE_FILL, 2.0 * MIB, 50.0 * MIB),
        ],
    );
    let now = profile(
        PID,
        T0,
        512 * 1024,
        183_633_120,
        91_829_345_123,
        vec![
            site(7, LOAD_TABLE, 10.0 * MIB, 40.0 * MIB),
            site(8, CACHE_FILL, 2.0 * MIB, 100.0 * MIB),
            unsymbolized,
        ],
    );
    write(dir, "heap-top.json", &now, Some(&before))
}

#[test]
fn top_shows_sites_totals_and_errors() {
    let dir = TempDir::new("top");
    let path = top_report(&dir);
    let o = run(&[&"top", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("pid {PID}")), "{text}");
    assert!(text.contains("2026-01-01 00:00:00.000 UTC"), "{text}");
    assert!(text.contains("rates over the last 10.0 s"), "{text}");
    assert!(text.contains("interval T = 512.0 KiB"), "{text}");
    // Exact totals, to the byte.
    assert!(
        text.contains("183,633,120 bytes"),
        "live bytes exact: {text}"
    );
    assert!(text.contains("91,829,345,123 bytes"), "{text}");
    // allocated 829,345,123 bytes in 10 s.
    assert!(text.contains("79.1 MiB/s"), "{text}");

    // The innermost function outside the standard library names the site.
    let load = line_with(&text, "app::load_table (src/table.rs:41)");
    let cells: Vec<&str> = load.split_whitespace().collect();
    // live 10 MiB ± √(T/B) = √(0.5/10) = 22 %; allocated 40 MiB ± 11 %; 1 MiB/s over 10 s
    // is 10 MiB allocated in the window: ± 22 %.
    assert_eq!(
        &cells[..9],
        [
            "10.0", "MiB", "±22%", "40.0", "MiB", "±11%", "1.0", "MiB/s", "±22%"
        ],
        "{load}"
    );
    assert_eq!(cells[9], "7", "the stack id: {load}");
    let cache = line_with(&text, "app::cache_fill (src/cache.rs:88)");
    assert!(cache.contains("5.0 MiB/s"), "{cache}");
    assert!(
        !text.contains("alloc::vec::from_elem") && !text.contains("hashbrown::"),
        "library frames do not name sites: {text}"
    );
    assert!(
        text.contains("0xdead0 (unsymbolized)"),
        "an unsymbolized site is named by its address: {text}"
    );
    assert!(text.contains("top 3 of 3 sites by live bytes"), "{text}");
    let pos = |needle: &str| text.find(needle).unwrap();
    assert!(pos("app::load_table") < pos("app::cache_fill"), "{text}");

    // Ranked by allocated bytes, the cache comes first; -n limits the rows.
    let o = run(&[&"top", &path, &"--by", &"alloc", &"-n", &"1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("top 1 of 3 sites by allocated bytes"),
        "{text}"
    );
    assert!(text.contains("app::cache_fill"), "{text}");
    assert!(!text.contains("app::load_table"), "{text}");

    let o = run(&[&"top", &path, &"--by", &"rate"]);
    let text = stdout(&o);
    let pos = |needle: &str| text.find(needle).unwrap();
    assert!(pos("app::cache_fill") < pos("app::load_table"), "{text}");
}

#[test]
fn top_of_an_exact_report_says_exact() {
    let dir = TempDir::new("exact");
    let now = profile(PID, T0, 1, 4096, 8192, vec![site(1, PARSE, 4096.0, 8192.0)]);
    let path = write(&dir, "heap-exact.json", &now, None);
    let o = run(&[&"top", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("every allocation recorded (interval 1)"),
        "{text}"
    );
    let row = line_with(&text, "app::parse");
    assert!(row.contains("4.0 KiB   exact"), "{row}");
    assert!(text.contains("no window (rates unknown)"), "{text}");
}

#[test]
fn diff_of_one_process_matches_stack_ids() {
    let dir = TempDir::new("diff-same");
    let old = profile(
        PID,
        T0,
        512 * 1024,
        100_000_000,
        1_000_000_000,
        vec![
            site(7, LOAD_TABLE, 2.0 * MIB, 10.0 * MIB),
            site(8, CACHE_FILL, MIB, 5.0 * MIB),
        ],
    );
    let new = profile(
        PID,
        T0 + 60_000,
        512 * 1024,
        108_388_608,
        1_100_000_000,
        vec![
            site(7, LOAD_TABLE, 10.0 * MIB, 40.0 * MIB),
            site(10, PARSE, 3.0 * MIB, 3.0 * MIB),
        ],
    );
    let a = write(&dir, "heap-old.json", &old, None);
    let b = write(&dir, "heap-new.json", &new, Some(&old));
    let o = run(&[&"diff", &a, &b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("sites matched by stack id"), "{text}");
    assert!(text.contains("60.0 s later"), "{text}");
    let live = line_with(&text, "live bytes  ");
    assert!(live.contains("+8,388,608 bytes"), "{live}");
    assert!(live.contains("+8.0 MiB"), "{live}");
    let allocated = line_with(&text, "allocated bytes");
    assert!(allocated.contains("+100,000,000 bytes"), "{allocated}");

    let grew = line_with(&text, "app::load_table");
    let cells: Vec<&str> = grew.split_whitespace().collect();
    // +8 MiB, ± √(T·(2 + 10) MiB) = 2.4 MiB, +30 MiB allocated, 2 → 10 MiB.
    assert_eq!(
        &cells[..10],
        [
            "+8.0", "MiB", "±2.4", "MiB", "+30.0", "MiB", "2.0", "MiB", "10.0", "MiB"
        ],
        "{grew}"
    );
    assert_eq!(cells[10], "7", "the stack id: {grew}");
    let appeared = line_with(&text, "app::parse");
    assert!(
        appeared.contains("+3.0 MiB") && appeared.contains(" new "),
        "{appeared}"
    );
    let gone = line_with(&text, "app::cache_fill");
    assert!(
        gone.contains("-1.0 MiB") && gone.contains(" gone "),
        "{gone}"
    );
    let pos = |needle: &str| text.find(needle).unwrap();
    assert!(
        pos("app::load_table") < pos("app::parse"),
        "largest change first"
    );
    assert!(pos("app::parse") < pos("app::cache_fill"), "{text}");
    assert!(text.contains("3 sites changed"), "{text}");

    // -n limits the rows.
    let o = run(&[&"diff", &a, &b, &"-n", &"1"]);
    let text = stdout(&o);
    assert!(text.contains("app::load_table") && !text.contains("app::parse"));
}

#[test]
fn diff_of_two_runs_matches_function_names() {
    let dir = TempDir::new("diff-runs");
    let old = profile(
        PID,
        T0,
        512 * 1024,
        50_000_000,
        500_000_000,
        vec![
            site(7, LOAD_TABLE, 2.0 * MIB, 10.0 * MIB),
            site(8, CACHE_FILL, MIB, 5.0 * MIB),
        ],
    );
    // The second run numbered its stacks differently and loaded at another address; its
    // stack 7 is another function altogether.
    let new = profile(
        PID + 1,
        T0 + 3_600_000,
        512 * 1024,
        60_000_000,
        400_000_000,
        vec![
            relocated(site(107, LOAD_TABLE, 6.0 * MIB, 12.0 * MIB), 0x5000),
            relocated(site(108, CACHE_FILL, MIB, 5.0 * MIB), 0x5000),
            relocated(site(7, PARSE, 0.5 * MIB, 0.5 * MIB), 0x5000),
        ],
    );
    let a = write(&dir, "heap-run1.json", &old, None);
    let b = write(&dir, "heap-run2.json", &new, None);
    let o = run(&[&"diff", &a, &b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("sites matched by function names"), "{text}");
    let load = line_with(&text, "app::load_table");
    assert!(load.contains("+4.0 MiB"), "{load}");
    assert!(
        !load.contains(" new ") && !load.contains(" gone "),
        "{load}"
    );
    let parse = line_with(&text, "app::parse");
    assert!(
        parse.contains("+512.0 KiB") && parse.contains(" new "),
        "{parse}"
    );
    assert!(
        !text.contains("app::cache_fill"),
        "an unchanged site is not listed: {text}"
    );
    let live = line_with(&text, "live bytes  ");
    assert!(live.contains("+10,000,000 bytes"), "{live}");

    // One pid, but the counters went down: a new process got the pid again.
    let restarted = Profile {
        pid: PID,
        ..new.clone()
    };
    let c = write(&dir, "heap-restart.json", &restarted, None);
    let o = run(&[&"diff", &a, &c]);
    let text = stdout(&o);
    assert!(text.contains("sites matched by function names"), "{text}");
    assert!(
        line_with(&text, "app::load_table").contains("+4.0 MiB"),
        "{text}"
    );
}

/// A series of reports 10 s apart at T = 64 KiB: `app::leak_sessions` gains 1 MiB per report
/// and frees nothing; `app::cache_fill` fills over two reports then stays full while
/// allocating on; `app::load_table` is steady.
fn leak_series(pid: u32, n: usize, leak: bool) -> Vec<Profile> {
    let mut allocated = 1_000_000_000u64;
    (0..n)
        .map(|i| {
            let i_f = i as f64;
            allocated += 50_000_000;
            let mut sites = vec![
                site(7, LOAD_TABLE, 4.0 * MIB, 4.0 * MIB),
                site(
                    8,
                    CACHE_FILL,
                    (i_f + 1.0).min(2.0) * 3.0 * MIB,
                    (i_f + 1.0) * 20.0 * MIB,
                ),
            ];
            if leak {
                sites.push(site(9, LEAK_SESSIONS, (i_f + 1.0) * MIB, (i_f + 1.0) * MIB));
            }
            profile(
                pid,
                T0 + 10_000 * i as u64,
                64 * 1024,
                80_000_000 + i as u64,
                allocated,
                sites,
            )
        })
        .collect()
}

fn write_series(dir: &TempDir, series: &[Profile]) -> Vec<PathBuf> {
    let mut previous = None;
    let mut paths = Vec::new();
    for (i, p) in series.iter().enumerate() {
        let name = format!("heap-{}-{:06}.json", p.pid, i + 1);
        paths.push(write(dir, &name, p, previous));
        previous = Some(p);
    }
    paths
}

#[test]
fn leaks_names_the_growing_site() {
    let dir = TempDir::new("leaks");
    write_series(&dir, &leak_series(PID, 8, true));
    // Files a reader must skip: the reporter's temporary files and anything not heap-*.json.
    std::fs::write(dir.path(".heap-90000001-000009.json.1.0.tmp"), "{\"form").unwrap();
    std::fs::write(dir.path("notes.txt"), "not a report").unwrap();

    let o = run(&[&"leaks", &dir.0]);
    assert!(
        o.status.success(),
        "exit 0 without --fail-on-leak: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    assert!(
        text.contains(&format!("process {PID}: 8 reports")),
        "{text}"
    );
    let head = line_with(&text, "leak suspect #1:");
    assert!(
        head.contains("app::leak_sessions (src/session.rs:12)"),
        "{text}"
    );
    // 1 MiB per 10 s.
    let numbers = line_with(&text, "growth ");
    assert!(
        numbers.contains("growth 102.4 KiB/s (360.0 MiB/h)"),
        "{numbers}"
    );
    assert!(numbers.contains("live now 8.0 MiB"), "{numbers}");
    assert!(numbers.contains("over 8 reports"), "{numbers}");
    assert!(
        text.contains("app::leak_sessions at /home/dev/app/src/session.rs:12"),
        "{text}"
    );
    assert!(
        text.contains("app::main at /home/dev/app/src/main.rs:7"),
        "{text}"
    );
    assert!(!text.contains("leak suspect #2"), "{text}");
    assert!(
        !text.contains("app::cache_fill"),
        "a filled cache is no leak: {text}"
    );
    assert!(text.trim_end().ends_with("1 leak suspect"), "{text}");

    // A file named twice counts once.
    let newest = dir.path(format!("heap-{PID}-000008.json"));
    let o = run(&[&"leaks", &"--fail-on-leak", &dir.0, &newest]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("process {PID}: 8 reports")),
        "{text}"
    );
    assert!(text.contains("app::leak_sessions"), "{text}");
}

#[test]
fn leaks_orders_files_by_time_and_splits_processes() {
    let dir = TempDir::new("leaks-order");
    let mut leaky = write_series(&dir, &leak_series(PID, 6, true));
    let steady = write_series(&dir, &leak_series(PID + 1, 6, false));
    // Given newest first, and mixed with another process's reports.
    leaky.reverse();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"leaks", &"--fail-on-leak"];
    for (a, b) in leaky.iter().zip(&steady) {
        args.push(a);
        args.push(b);
    }
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("process {PID}: 6 reports")),
        "{text}"
    );
    assert!(
        text.contains(&format!("process {}: 6 reports", PID + 1)),
        "{text}"
    );
    assert!(text.contains("app::leak_sessions"), "{text}");
    assert!(text.contains("no site keeps growing"), "{text}");

    // Without the leak, --fail-on-leak passes.
    let o = run(&[
        &"leaks",
        &"--fail-on-leak",
        &steady[0],
        &steady[3],
        &steady[1],
        &steady[2],
        &steady[5],
        &steady[4],
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no leak suspects"));

    // A window shorter than the series judges only the newest reports.
    let o = run(&[
        &"leaks",
        &"--window",
        &"5",
        &leaky[0],
        &leaky[1],
        &leaky[2],
        &leaky[3],
        &leaky[4],
        &leaky[5],
    ]);
    let text = stdout(&o);
    assert!(text.contains("judged on the newest 5"), "{text}");
    assert!(
        line_with(&text, "growth ").contains("over 5 reports"),
        "{text}"
    );

    // Too few reports to judge is said, and is no leak.
    let o = run(&[&"leaks", &"--fail-on-leak", &leaky[0], &leaky[1], &leaky[2]]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("too few reports to judge"),
        "{}",
        stdout(&o)
    );
}

/// Bad inputs: each gives exit status 2, one line on stderr naming the file and the problem,
/// and nothing on stdout.
#[test]
fn bad_inputs_are_named_errors() {
    let dir = TempDir::new("bad");
    let good = write(
        &dir,
        "heap-good.json",
        &profile(PID, T0, 4096, 10, 20, vec![site(1, PARSE, 10.0, 20.0)]),
        None,
    );
    let text = std::fs::read_to_string(&good).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "garbage.json",
            "this is not json".into(),
            "not a JSON document",
        ),
        (
            "truncated.json",
            text[..text.len() / 2].to_string(),
            "truncated report",
        ),
        (
            "v2.json",
            text.replace("\"version\": 1,", "\"version\": 2,"),
            "unsupported report version 2 (this build reads version 1)",
        ),
        (
            "missing.json",
            r#"{"format": "heapsampler-heap-report", "version": 1, "pid": 3}"#.into(),
            "invalid report: missing field",
        ),
        (
            "pprof.json",
            r#"{"format": "pprof", "version": 1}"#.into(),
            "not a heapsampler heap report",
        ),
        (
            "badtype.json",
            text.replace("\"pid\": 90000001", "\"pid\": \"x\""),
            "invalid report: invalid type",
        ),
    ];
    let mut paths = Vec::new();
    for (name, body, problem) in &cases {
        let p = dir.path(name);
        std::fs::write(&p, body).unwrap();
        paths.push((p, *problem));
    }
    paths.push((dir.path("absent.json"), "cannot read the report"));
    paths.push((dir.0.clone(), "cannot read the report"));
    for (p, problem) in &paths {
        let o = run(&[&"top", p]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", p.display());
        assert!(
            err.starts_with(&format!("heapsampler: error: {}: ", p.display())),
            "{err}"
        );
        assert!(err.contains(problem), "{}: {err}", p.display());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
    }
    // Every command names the bad file.
    let (garbage, _) = &paths[0];
    let out = dir.path("out");
    let commands: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        vec![&"diff", &good, garbage],
        vec![&"diff", garbage, &good],
        vec![&"leaks", &good, garbage],
        vec![&"flamegraph", garbage],
        vec![&"pprof", garbage, &"-o", &out],
    ];
    for args in commands {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&garbage.display().to_string()), "{err}");
        assert!(err.contains("not a JSON document"), "{err}");
    }
    assert!(!out.exists(), "no output for bad input");

    // A directory without reports.
    let empty = TempDir::new("bad-empty");
    let o = run(&[&"leaks", &empty.0]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}: no heap-*.json reports", empty.0.display())),
        "{}",
        stderr(&o)
    );
    // An output file that cannot be written.
    let nowhere = dir.path("no-such-dir/heap.pb.gz");
    let o = run(&[&"pprof", &good, &"-o", &nowhere]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}: cannot write", nowhere.display())),
        "{}",
        stderr(&o)
    );
    // Bad usage is clap's exit status 2 too.
    let o = run(&[&"top"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[&"top", &good, &"--by", &"size"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("size"), "{}", stderr(&o));
}

#[test]
fn validate_gives_a_verdict_per_file() {
    let dir = TempDir::new("validate");
    let series = write_series(&dir, &leak_series(PID, 2, true));
    let o = run(&[&"validate", &series[0], &series[1]]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        line_with(&text, &series[0].display().to_string()).contains(": OK (version 1"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");

    // Parses, but a hand-edited file lists its locations out of order.
    let mut report = Report::read(&series[1]).unwrap();
    report.locations.reverse();
    let unsorted = dir.path("heap-unsorted.json");
    std::fs::write(&unsorted, report.to_string_pretty()).unwrap();
    let corrupt = dir.path("heap-corrupt.json");
    std::fs::write(&corrupt, "{\"format\": \"heapsampler-heap-report\", \"vers").unwrap();
    let absent = dir.path("heap-absent.json");

    let o = run(&[&"validate", &series[0], &corrupt, &unsorted, &absent]);
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        out.contains(&format!("{}: OK", series[0].display())),
        "{out}"
    );
    assert_eq!(
        out.lines().count(),
        1,
        "only the good file on stdout: {out}"
    );
    assert!(
        err.contains(&format!("{}: truncated report", corrupt.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: invalid report: `locations` are not sorted",
            unsorted.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: cannot read the report", absent.display())),
        "{err}"
    );
    assert!(err.contains("3 of 4 checked inputs are bad"), "{err}");

    // The other commands still read such a file right.
    let o = run(&[&"top", &unsorted]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("app::leak_sessions (src/session.rs:12)"),
        "{}",
        stdout(&o)
    );

    // A directory checks its reports (and ignores the rest).
    let o = run(&[&"validate", &dir.0]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).matches(": OK").count(), 2, "{}", stdout(&o));
}

/// Just enough of pprof's `profile.proto` to read the values and names back.
#[derive(Clone, PartialEq, prost::Message)]
struct PprofProfile {
    #[prost(message, repeated, tag = "2")]
    sample: Vec<PprofSample>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PprofSample {
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[test]
fn pprof_writes_a_gzipped_profile() {
    use prost::Message;
    let dir = TempDir::new("pprof");
    let path = top_report(&dir);
    let out = dir.path("heap.pb.gz");
    let o = run(&[&"pprof", &path, &"-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&format!("wrote {}", out.display())));
    let gz = std::fs::read(&out).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut raw)
        .expect("gzip decodes");
    let p = PprofProfile::decode(raw.as_slice()).expect("protobuf decodes");
    assert_eq!(p.period, 512 * 1024);
    for name in ["inuse_space", "app::load_table", "app::cache_fill"] {
        assert!(p.string_table.iter().any(|s| s == name), "{name}");
    }
    // inuse_space is the fourth value: the sites' live bytes, unbiased already.
    let live: i64 = p.sample.iter().map(|s| s.value[3]).sum();
    assert_eq!(live, (12.0 * MIB + KIB) as i64);

    // `-o -` writes the bytes to stdout.
    let o = run(&[&"pprof", &path, &"-o", &"-"]);
    assert!(o.status.success());
    assert_eq!(&o.stdout[..2], &[0x1f, 0x8b]);
}

#[test]
fn flamegraph_draws_svg_and_collapsed_stacks() {
    let dir = TempDir::new("flame");
    let path = top_report(&dir);
    let svg = dir.path("heap.svg");
    let o = run(&[&"flamegraph", &path, &"-o", &svg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = std::fs::read_to_string(&svg).unwrap();
    assert!(image.contains("<svg"), "not an svg");
    assert!(image.contains("app::load_table"), "function missing");
    assert!(image.contains(&format!("pid {PID}")), "title missing");

    let o = run(&[&"flamegraph", &path, &"--collapsed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("app::main;app::load_table;alloc::vec::from_elem 10485760\n"),
        "{text}"
    );
    assert!(text.contains("0xdead0 1024\n"), "{text}");

    let o = run(&[&"flamegraph", &path, &"--collapsed", &"--by", &"alloc"]);
    let text = stdout(&o);
    assert!(
        text.contains("app::main;app::load_table;alloc::vec::from_elem 41943040\n"),
        "{text}"
    );

    // Without -o, the SVG goes to stdout.
    let o = run(&[&"flamegraph", &path]);
    assert!(stdout(&o).contains("<svg"));
}

#[test]
fn help_lists_every_subcommand() {
    let o = run(&[&"--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in ["top", "diff", "leaks", "flamegraph", "pprof", "validate"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
    // `check`, the old name of `validate`, is not advertised.
    assert!(!text.contains("check"), "{text}");
}

/// `check` was the first name of `validate`: scripts that call it get the same verdicts.
#[test]
fn check_is_an_alias_of_validate() {
    let dir = TempDir::new("check-alias");
    let series = write_series(&dir, &leak_series(PID, 1, true));
    let corrupt = dir.path("heap-corrupt.json");
    std::fs::write(&corrupt, "{\"format\": \"heapsampler-heap-report\", \"vers").unwrap();
    for args in [
        [&"check" as &dyn AsRef<std::ffi::OsStr>, &series[0]],
        [&"validate", &series[0]],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains(": OK (version 1"), "{}", stdout(&o));
    }
    let old = run(&[&"check", &corrupt]);
    let new = run(&[&"validate", &corrupt]);
    assert_eq!(old.status.code(), Some(1));
    assert_eq!(
        (old.status.code(), stdout(&old), stderr(&old)),
        (new.status.code(), stdout(&new), stderr(&new))
    );
}

/// A pool that rose to 10 MiB, fell back and is rising again: the newest reports alone look
/// like a leak, but over the directory the pool only returns to a level it held before.
#[test]
fn leaks_judges_with_every_report_of_the_process() {
    let dir = TempDir::new("leaks-history");
    let mut allocated = 1_000_000_000u64;
    let series: Vec<Profile> = (0..30u64)
        .map(|i| {
            allocated += 50_000_000;
            // MiB: up 1..=10, down 10..=1, up 1..=10.
            let level = match i {
                0..10 => i + 1,
                10..20 => 20 - i,
                _ => i - 19,
            };
            let pool = site(
                10,
                CACHE_FILL,
                level as f64 * MIB,
                (i + 1) as f64 * 20.0 * MIB,
            );
            profile(
                PID,
                T0 + 10_000 * i,
                64 * 1024,
                80_000_000,
                allocated,
                vec![pool],
            )
        })
        .collect();
    let files = write_series(&dir, &series);
    let o = run(&[&"leaks", &"--fail-on-leak", &dir.0]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(text.contains("judged on the newest 10"), "{text}");
    assert!(text.contains("against the 20 before"), "{text}");
    assert!(text.contains("no leak suspects"), "{text}");
    // The same newest ten reports without their history: a suspect.
    let newest: Vec<&dyn AsRef<std::ffi::OsStr>> = std::iter::once(&"leaks" as _)
        .chain(files[20..].iter().map(|f| f as _))
        .collect();
    let text = stdout(&run(&newest));
    assert!(text.contains("1 leak suspect"), "{text}");
}
