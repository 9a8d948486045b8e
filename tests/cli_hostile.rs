//! The `heapsampler` tool against hostile input: forged names with terminal control
//! characters, numbers no process can produce, absurd arguments, and a corpus of broken
//! files. Every bad input gets exit status 2 and exactly one line on stderr naming it; `validate`
//! judges a file bad (status 1); nothing panics, and nothing reaches the terminal raw.
#![cfg(feature = "cli")]

use heapsampler::{Frame, LeakSuspect, Profile, Report, Site, SiteThread, Totals};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Above any Linux pid: the writer takes frames from the profile and leaves `program` empty.
const PID: u32 = 90_000_002;
const T0: u64 = 1_767_225_600_000;
const EVIL_FUNCTION: &str = "app::evil\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202e}";
const EVIL_FILE: &str = "src/a.rs\r\nFORGED: no leaks\x1b[1A";

#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

fn run(args: &[&dyn AsRef<OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heapsampler"))
        .args(args)
        .env_remove("HEAPSAMPLER")
        .output()
        .expect("run heapsampler")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit status 2 and exactly one stderr line, an error line containing `needle`.
fn assert_one_error_line(o: &Output, needle: &str, what: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("heapsampler: error: "), "{what}: {err}");
    assert!(err.contains(needle), "{what}: {needle:?} not in {err}");
    assert_no_control(&o.stderr, what);
}

/// No control byte but the line feed, no C1 control, no bidirectional override.
fn assert_no_control(bytes: &[u8], what: &str) {
    let s = text(bytes);
    let bad = s
        .chars()
        .find(|&c| c != '\n' && heapsampler::report::is_hostile(c));
    assert_eq!(bad, None, "{what}: control character in output:\n{s}");
}

fn frame(address: u64, function: &str, file: &str) -> Frame {
    Frame {
        address,
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(7),
    }
}

fn site(id: u32, frames: Vec<Frame>, live: f64) -> Site {
    Site {
        stack_id: id,
        addresses: frames.iter().map(|f| f.address).collect(),
        frames,
        live_bytes: live,
        live_objects: 1.0,
        alloc_bytes: live,
        alloc_objects: 1.0,
        samples: 2,
        live_samples: 1,
        threads: vec![SiteThread {
            thread: 1,
            name: "worker\x1b[2K".into(),
            alloc_bytes: live,
            live_bytes: live,
        }],
    }
}

/// A report whose one site is named by forged, control-character-laden names.
fn evil_profile(ts: u64, live: f64) -> Profile {
    let frames = vec![
        frame(0x10, EVIL_FUNCTION, EVIL_FILE),
        frame(0x20, "app::main", "src/main.rs"),
    ];
    Profile {
        pid: PID,
        timestamp_ms: ts,
        sample_interval: 1,
        totals: Totals {
            alloc_bytes: 1 << 30,
            alloc_objects: 100,
            live_bytes: live as u64,
            live_objects: 1,
            peak_live_bytes: 1 << 30,
            ..Totals::default()
        },
        sites: vec![site(1, frames, live)],
        ..Profile::default()
    }
}

fn write_report(dir: &TempDir, name: &str, p: &Profile, suspects: Vec<LeakSuspect>) -> PathBuf {
    let mut report = Report::from_profile(p, None, suspects, Vec::new());
    report.program = "/srv/\x1b[31mapp\r\nFORGED".into();
    report.write_atomic(&dir.0, name).unwrap()
}

#[test]
fn hostile_names_are_escaped_by_every_command() {
    let dir = TempDir::new("names");
    let series: Vec<PathBuf> = (0..6)
        .map(|i| {
            let p = evil_profile(T0 + i * 60_000, (1 + i) as f64 * 1e6);
            write_report(&dir, &format!("heap-{PID}-{i:06}.json"), &p, Vec::new())
        })
        .collect();
    let (first, last) = (&series[0], &series[5]);
    let svg = dir.path("out.svg");
    // Collapsed stacks separate frames by `;`: a name's own become `:`.
    let commands: Vec<(Vec<&dyn AsRef<OsStr>>, &str)> = vec![
        (vec![&"top", last], "app::evil\\x1b]0;pwned"),
        (vec![&"diff", first, last], "app::evil\\x1b]0;pwned"),
        (vec![&"leaks", &dir.0], "app::evil\\x1b]0;pwned"),
        (
            vec![&"flamegraph", last, &"--collapsed"],
            "app::evil\\x1b]0:pwned",
        ),
        (vec![&"flamegraph", last, &"-o", &svg], "wrote"),
    ];
    for (args, needle) in &commands {
        let o = run(args);
        let what = text(args[0].as_ref().as_bytes());
        assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o.stderr));
        assert_no_control(&o.stdout, &what);
        assert_no_control(&o.stderr, &what);
        let out = text(&o.stdout);
        assert!(
            !out.lines().any(|l| l.trim_start().starts_with("FORGED")),
            "{what}: a forged line:\n{out}"
        );
        assert!(out.contains(needle), "{what}:\n{out}");
    }
    let top = text(&run(&[&"top", last]).stdout);
    assert!(top.contains("/srv/\\x1b[31mapp\\r\\nFORGED"), "{top}");
    let leaks = text(&run(&[&"leaks", &dir.0]).stdout);
    assert!(
        leaks.contains("src/a.rs\\r\\nFORGED: no leaks\\x1b[1A:7"),
        "{leaks}"
    );
    let image = std::fs::read_to_string(&svg).unwrap();
    assert_no_control(image.replace(['\t', '\n'], "").as_bytes(), "svg");

    // `validate` flags such a file: status 1, one line naming the first field and the value.
    let o = run(&[&"validate", last]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("`program` holds control characters: \"/srv/\\x1b[31mapp\\r\\nFORGED\" (and 3 other names)"),
        "{err}"
    );
    assert_no_control(&o.stderr, "validate");
}

#[test]
fn hostile_file_names_are_escaped() {
    let dir = TempDir::new("file-names");
    let mut p = evil_profile(T0, 1e6);
    p.sites[0].frames[0] = frame(0x10, "app::fine", "src/fine.rs");
    p.sites[0].threads[0].name = "worker".into();
    let report = Report::from_profile(&p, None, Vec::new(), Vec::new());
    let name = OsStr::from_bytes(b"heap-\x1b[2J\xff.json");
    std::fs::write(dir.path(name), report.to_string_pretty()).unwrap();
    let o = run(&[&"validate", &dir.0]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_no_control(&o.stdout, "validate");
    assert!(
        text(&o.stdout).contains("heap-\\x1b[2J\u{fffd}.json: OK"),
        "{}",
        text(&o.stdout)
    );
    let o = run(&[&"top", &dir.path(name)]);
    assert_eq!(o.status.code(), Some(0));
    assert_no_control(&o.stdout, "top");
    // An error naming such a file is escaped too.
    std::fs::write(dir.path(name), "{").unwrap();
    assert_one_error_line(&run(&[&"top", &dir.path(name)]), "heap-\\x1b[2J", "top");
}

#[test]
fn absurd_arguments_exit_2_with_one_line() {
    let dir = TempDir::new("args");
    let a = write_report(&dir, "heap-a.json", &evil_profile(T0, 1e6), Vec::new());
    let b = write_report(&dir, "heap-b.json", &evil_profile(T0 + 1, 2e6), Vec::new());
    for window in [
        "18446744073709551615",
        "4294967296",
        "1001",
        "0",
        "-1",
        "ten",
        "",
    ] {
        let o = run(&[&"leaks", &a, &b, &"--window", &window]);
        // clap takes `-1` for an option of its own.
        let needle = if window == "-1" { "'-1'" } else { "--window" };
        assert_one_error_line(&o, needle, window);
    }
    assert_eq!(
        run(&[&"leaks", &a, &b, &"--window", &"1000"]).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&[&"leaks", &a, &b, &"--window", &"3"]).status.code(),
        Some(0)
    );
    let cases: Vec<(Vec<&dyn AsRef<OsStr>>, &str)> = vec![
        (
            vec![&"top", &a, &"-n", &"99999999999999999999999"],
            "--count",
        ),
        (vec![&"top", &a, &"--by", &"size\x1b[2J\r\nFORGED"], "--by"),
        (vec![&"top", &a, &"--bogus"], "--bogus"),
        (vec![&"frobnicate"], "frobnicate"),
        (vec![], "no subcommand"),
        (vec![&"diff", &a], "required"),
        (vec![&"pprof", &a], "--output"),
    ];
    for (args, needle) in &cases {
        assert_one_error_line(&run(args), needle, needle);
    }
    // Asking for help is not an error.
    assert_eq!(run(&[&"--help"]).status.code(), Some(0));
    assert_eq!(run(&[&"top", &"--help"]).status.code(), Some(0));
}

/// The text of a good report with one field's value replaced by `value`: the first
/// occurrence in a site or suspect (written compactly, `"field":1`) if any, else the
/// top-level field.
fn with_value(good: &str, field: &str, value: &str) -> String {
    let compact = format!("\"{field}\":");
    let at = good
        .match_indices(&compact)
        .map(|(i, _)| i)
        .find(|&i| !good[i + compact.len()..].starts_with(' '))
        .or_else(|| good.find(&compact))
        .unwrap_or_else(|| panic!("{field} in {good}"))
        + compact.len();
    let rest = &good[at..];
    let value_start = rest.len() - rest.trim_start().len();
    let end = rest.find([',', '}', '\n']).unwrap();
    format!(
        "{}{}{value}{}",
        &good[..at],
        &rest[..value_start],
        &rest[end..]
    )
}

#[test]
fn numbers_no_process_produces_are_refused() {
    let dir = TempDir::new("numbers");
    let mut p = evil_profile(T0, 1e6);
    p.sites[0].frames[0] = frame(0x10, "app::fine", "src/fine.rs");
    let suspect = LeakSuspect {
        stack_id: 1,
        growth_bytes_per_sec: 10.0,
        confidence: 0.9,
        reports_considered: 5,
        live_bytes: 1e6,
    };
    let good = Report::from_profile(&p, None, vec![suspect], Vec::new()).to_string_pretty();
    let cases = [
        (
            "live_bytes",
            "1e308",
            "`sites[0].live_bytes` is 1e308, not a number from 0 to 2^64",
        ),
        (
            "alloc_bytes",
            "-5.0",
            "`sites[0].alloc_bytes` is -5, not a number from 0 to 2^64",
        ),
        (
            "timestamp_ms",
            "18446744073709551615",
            "`timestamp_ms` is 18446744073709551615, after the year 9999",
        ),
        (
            "window_ms",
            "1767225600001",
            "`window_ms` is 1767225600001, longer than",
        ),
        (
            "confidence",
            "2.5",
            "`leak_suspects[0].confidence` is 2.5, not between 0 and 1",
        ),
        (
            "alloc_bytes_per_sec",
            "3e19",
            "`sites[0].alloc_bytes_per_sec` is 3e19",
        ),
        ("live_objects", "1e400", "invalid report:"),
        ("live_bytes", "NaN", "not a JSON document"),
        ("pid", "-1", "invalid report: invalid value: integer `-1`"),
        (
            "samples",
            "1.5",
            "invalid report: invalid type: floating point `1.5`",
        ),
    ];
    for (i, (field, value, needle)) in cases.iter().enumerate() {
        let path = dir.path(format!("heap-{i}.json"));
        std::fs::write(&path, with_value(&good, field, value)).unwrap();
        let o = run(&[&"top", &path]);
        assert_one_error_line(&o, needle, field);
        assert!(o.stdout.is_empty(), "{field}: {}", text(&o.stdout));
        let o = run(&[&"validate", &path]);
        assert_eq!(o.status.code(), Some(1), "{field}");
        assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains(needle), "{}", text(&o.stderr));
    }

    // The largest values a report may hold draw, print and validate without overflow: four
    // sites of 2^64 bytes each add up to 2^66.
    let big = |id, address| site(id, vec![frame(address, "app::big", "src/big.rs")], 1.8e19);
    p.sites = vec![big(1, 0x10), big(2, 0x20), big(3, 0x30), big(4, 0x40)];
    p.timestamp_ms = 253_402_300_799_999;
    let path = write_report(&dir, "heap-big.json", &p, Vec::new());
    let svg = dir.path("big.svg");
    let o = run(&[&"flamegraph", &path, &"-o", &svg]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run(&[&"top", &path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("15.6 EiB") && out.contains("9999-12-31 23:59:59.999 UTC"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.len() < 200), "{out}");
}

#[test]
fn a_corpus_of_broken_files_gets_one_error_line_from_every_command() {
    let dir = TempDir::new("corpus");
    let mut p = evil_profile(T0, 1e6);
    p.sites[0].frames[0] = frame(0x10, "app::fine", "src/fine.rs");
    p.sites[0].threads[0].name = "worker".into();
    let good_path = dir.path("heap-good.json");
    let report = Report::from_profile(&p, None, Vec::new(), Vec::new());
    std::fs::write(&good_path, report.to_string_pretty()).unwrap();
    let good = report.to_string_pretty();
    let header = "{\"format\": \"heapsampler-heap-report\", \"version\": 1, ";
    let bytes = |s: &str| s.as_bytes().to_vec();
    let corpus: Vec<(&[u8], Vec<u8>, &str)> = vec![
        (b"empty.json", Vec::new(), "truncated report"),
        (
            b"cut.json",
            bytes(&good[..good.len() - 2]),
            "truncated report",
        ),
        (
            b"array.json",
            bytes("[1, 2]"),
            "not a heapsampler heap report",
        ),
        (
            b"v0.json",
            bytes(&good.replacen("\"version\": 1", "\"version\": 0", 1)),
            "unsupported report version 0",
        ),
        (
            b"vstr.json",
            bytes(&good.replacen("\"version\": 1", "\"version\": \"1\"", 1)),
            "`version` is \"1\"",
        ),
        (
            b"nan.json",
            bytes(&with_value(&good, "live_bytes", "NaN")),
            "not a JSON document",
        ),
        (
            b"inf.json",
            bytes(&with_value(&good, "live_bytes", "1e999")),
            "invalid report",
        ),
        (b"deep.json", bytes(&"[".repeat(100_000)), "recursion limit"),
        (
            b"deep-field.json",
            bytes(&format!(
                "{header}\"x\": {}1{}}}",
                "{\"a\":".repeat(100_000),
                "}".repeat(100_000)
            )),
            "invalid report",
        ),
        (
            b"claims.json",
            bytes(&format!(
                "{header}\"sites\": [{}{{}}]}}",
                "{},".repeat(200_000)
            )),
            "invalid report: missing field",
        ),
        (
            b"latin1.json",
            b"{\"format\": \"heap\xe9\"}".to_vec(),
            "valid UTF-8",
        ),
        (
            b"bom.json",
            [b"\xef\xbb\xbf".as_slice(), good.as_bytes()].concat(),
            "not a JSON document",
        ),
        (
            b"surrogate.json",
            bytes(&good.replacen("app::fine", "\\ud800", 1)),
            "invalid report",
        ),
        (
            b"heap-\xff\x1b[2J.json",
            bytes("{"),
            "heap-\u{fffd}\\x1b[2J.json: truncated",
        ),
    ];
    let mut inputs: Vec<(PathBuf, &str)> = corpus
        .iter()
        .map(|(name, body, problem)| {
            let path = dir.path(OsStr::from_bytes(name));
            std::fs::write(&path, body).unwrap();
            (path, *problem)
        })
        .collect();
    inputs.push((dir.path("missing.json"), "No such file"));
    inputs.push((dir.0.clone(), "Is a directory"));
    // Root reads anything: an unreadable file can only be made for another user.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let locked = dir.path("locked.json");
        std::fs::write(&locked, &good).unwrap();
        std::process::Command::new("chmod")
            .arg("000")
            .arg(&locked)
            .status()
            .unwrap();
        inputs.push((locked, "Permission denied"));
    }
    let out = dir.path("out.pb.gz");
    for (path, problem) in &inputs {
        let name = heapsampler::report::escape(&path.display().to_string()).into_owned();
        let commands: Vec<Vec<&dyn AsRef<OsStr>>> = vec![
            vec![&"top", path],
            vec![&"diff", &good_path, path],
            vec![&"leaks", &good_path, path],
            vec![&"flamegraph", path, &"--collapsed"],
            vec![&"pprof", path, &"-o", &out],
        ];
        for args in &commands {
            let what = format!("{} {name}", text(args[0].as_ref().as_bytes()));
            let o = run(args);
            // To `leaks` a directory is its heap-*.json files: this one holds a broken one.
            let leaks = args[0].as_ref() == OsStr::new("leaks");
            let problem = if leaks && path.is_dir() {
                "truncated"
            } else {
                problem
            };
            assert_one_error_line(&o, problem, &what);
            assert!(
                text(&o.stderr).contains(&name),
                "{what}: {}",
                text(&o.stderr)
            );
        }
        if !path.is_dir() {
            let o = run(&[&"validate", path]);
            assert_eq!(o.status.code(), Some(1), "validate {name}");
            let err = text(&o.stderr);
            assert_eq!(err.lines().count(), 1, "validate {name}: {err}");
            assert!(
                err.contains(problem) && err.contains(&name),
                "validate {name}: {err}"
            );
        }
    }
    assert!(!out.exists(), "no output for bad input");
}
