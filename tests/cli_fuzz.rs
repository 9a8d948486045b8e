//! Property test of the `heapsampler` command line: random argument lists (subcommands,
//! options with absurd values, good and hostile report files, non-UTF-8 arguments) never make
//! the tool panic or print a control character; bad input exits 2 with exactly one line on
//! stderr. Bounded: 128 runs of the tool (`PROPTEST_CASES` raises it).
#![cfg(feature = "cli")]

use heapsampler::{Frame, Profile, Report, Site, Totals};
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The files the arguments may name, made once: good reports of one process, hostile ones, a
/// directory, a missing file. Outputs go to this directory too (the tool runs in it, and no
/// generated argument holds a `/`).
struct Corpus {
    dir: PathBuf,
    files: Vec<OsString>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hs-cli-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("reports")).unwrap();
        let mut files = Vec::new();
        for i in 0..6u64 {
            let profile = profile(i, "app::leak\x1b[2J\r\nFORGED");
            let report = Report::from_profile(&profile, None, Vec::new(), Vec::new());
            let path = report
                .write_atomic(dir.join("reports"), &format!("heap-9-{i:06}.json"))
                .unwrap();
            files.push(path.into_os_string());
        }
        let good = std::fs::read_to_string(&files[0]).unwrap();
        let hostile: Vec<(&str, Vec<u8>)> = vec![
            ("empty.json", Vec::new()),
            ("garbage.json", b"\x1b[2Jnot json".to_vec()),
            ("truncated.json", good.as_bytes()[..good.len() / 3].to_vec()),
            (
                "v2.json",
                good.replacen("\"version\": 1", "\"version\": 2", 1)
                    .into_bytes(),
            ),
            (
                "huge.json",
                good.replacen("\"live_bytes\":", "\"live_bytes\":1e308,\"x\":", 1)
                    .into_bytes(),
            ),
            (
                "time.json",
                good.replacen("1767225600000", "18446744073709551615", 1)
                    .into_bytes(),
            ),
            ("deep.json", "[".repeat(50_000).into_bytes()),
            ("latin1.json", b"{\"format\": \"heap\xe9\"}".to_vec()),
        ];
        for (name, body) in hostile {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            files.push(path.into_os_string());
        }
        let odd = dir.join(OsString::from_vec(b"heap-\x1b]0;x\x07\xff.json".to_vec()));
        std::fs::write(&odd, &good).unwrap();
        files.push(odd.into_os_string());
        files.push(dir.join("reports").into_os_string());
        files.push(dir.join("missing.json").into_os_string());
        files.push(dir.clone().into_os_string());
        files.push("/dev/null".into());
        Corpus { dir, files }
    })
}

fn profile(i: u64, function: &str) -> Profile {
    let frame = |address, f: &str| Frame {
        address,
        function: Some(f.into()),
        file: Some("src/leak.rs\x1b[1A".into()),
        line: Some(9),
    };
    let live = 1e6 * (i + 1) as f64;
    Profile {
        pid: 90_000_009,
        timestamp_ms: 1_767_225_600_000 + i * 60_000,
        sample_interval: 1,
        totals: Totals {
            alloc_bytes: 1 << 30,
            live_bytes: live as u64,
            peak_live_bytes: 1 << 30,
            ..Totals::default()
        },
        sites: vec![Site {
            stack_id: 1,
            addresses: vec![0x10, 0x20],
            frames: vec![frame(0x10, function), frame(0x20, "app::main")],
            live_bytes: live,
            alloc_bytes: live,
            samples: 1,
            live_samples: 1,
            ..Site::default()
        }],
        ..Profile::default()
    }
}

/// An argument of no particular meaning: numbers, dashes, control characters, bytes that are
/// not UTF-8 — never a `/`, so an output it names stays in the corpus directory.
fn junk() -> impl Strategy<Value = OsString> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string().into()),
        any::<i64>().prop_map(|n| n.to_string().into()),
        Just("18446744073709551616".into()),
        Just("1e308".into()),
        Just("NaN".into()),
        Just("".into()),
        "-{0,2}[a-z\\-=]{0,12}".prop_map(OsString::from),
        "[\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{202e}a-z]{1,8}"
            .prop_map(|s: String| s.replace('\0', "0").into()),
        prop::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..8
        )
        .prop_map(OsString::from_vec),
    ]
}

fn argument() -> impl Strategy<Value = Vec<OsString>> {
    let file = (0..corpus().files.len()).prop_map(|i| vec![corpus().files[i].clone()]);
    let number_option = (
        prop::sample::select(vec!["-n", "--count", "--window"]),
        prop_oneof![
            any::<u64>().prop_map(|n| OsString::from(n.to_string())),
            (0u64..2000).prop_map(|n| OsString::from(n.to_string())),
            junk(),
        ],
    )
        .prop_map(|(o, v)| vec![o.into(), v]);
    let by = prop::sample::select(vec!["live", "alloc", "rate", "size"])
        .prop_map(|v| vec!["--by".into(), v.into()]);
    let output = prop::sample::select(vec!["-", "out.svg", "out.pb.gz", "reports", "."])
        .prop_map(|v| vec!["-o".into(), v.into()]);
    let flag = prop::sample::select(vec!["--collapsed", "--fail-on-leak", "--help", "--"])
        .prop_map(|f| vec![f.into()]);
    prop_oneof![
        4 => file,
        2 => number_option,
        1 => by,
        1 => output,
        1 => flag,
        1 => junk().prop_map(|j| vec![j]),
    ]
}

fn command_line() -> impl Strategy<Value = Vec<OsString>> {
    let sub = prop_oneof![
        9 => prop::sample::select(vec!["top", "diff", "leaks", "flamegraph", "pprof", "validate"])
            .prop_map(OsString::from),
        1 => junk(),
    ];
    (sub, prop::collection::vec(argument(), 0..5)).prop_map(|(sub, args)| {
        std::iter::once(sub)
            .chain(args.into_iter().flatten())
            .collect()
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

fn hostile_char(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| c != '\n' && heapsampler::report::is_hostile(c))
}

#[test]
fn any_command_line_exits_0_1_or_2_with_one_error_line() {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases())
    };
    let started = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&command_line(), |args| {
        let dir: &Path = &corpus().dir;
        let o = Command::new(env!("CARGO_BIN_EXE_heapsampler"))
            .args(&args)
            .current_dir(dir)
            .env_remove("HEAPSAMPLER")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        prop_assert!(
            matches!(code, Some(0..=2)),
            "{args:?}: status {:?}: {err}",
            o.status
        );
        prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
        prop_assert_eq!(hostile_char(&err), None, "{:?}: {}", args, err);
        if code == Some(2) {
            prop_assert_eq!(err.lines().count(), 1, "{:?}: {}", args, err);
            prop_assert!(err.starts_with("heapsampler: error: "), "{args:?}: {err}");
        }
        // Text commands print no control character; renderers may write binary to stdout.
        let textual = ["top", "diff", "leaks", "validate"]
            .iter()
            .any(|c| args[0] == **c);
        if textual {
            let out = String::from_utf8_lossy(&o.stdout);
            prop_assert_eq!(hostile_char(&out), None, "{:?}: {}", args, out);
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&corpus().dir);
    eprintln!(
        "cli fuzz: {} command lines in {:.1} s",
        cases(),
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
}
