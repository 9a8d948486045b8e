//! The `HEAPSAMPLER` environment variable, applied before `main` by the library's constructor.
//!
//! Each scenario re-runs this test binary as a child process with the variable set (the
//! variable is read once, at process start), running one `#[ignore]`d child test that checks
//! the settings from the inside; the parent checks the child's stderr and the files it wrote.

use allocator_test::report_files;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CHILD: &str = "HS_ENV_CHILD";

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("hs-env-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the ignored test `name` of this binary in a child process with `HEAPSAMPLER=value`.
fn run_child(name: &str, value: Option<&str>, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, name);
    match value {
        Some(v) => cmd.env("HEAPSAMPLER", v),
        None => cmd.env_remove("HEAPSAMPLER"),
    };
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child test process");
    assert!(
        out.status.success(),
        "child {name} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn heapsampler_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("heapsampler:"))
        .map(str::to_owned)
        .collect()
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

#[test]
fn env_sets_interval_and_starts_reporter_with_final_report_at_exit() {
    let dir = temp_dir("atexit");
    let value = format!("interval=64k,dir={},period=1h,keep=50", dir.display());
    let out = run_child("child_env_reporter_dump_once", Some(&value), &[]);
    assert!(
        heapsampler_lines(&out).is_empty(),
        "no warnings expected: {:?}",
        heapsampler_lines(&out)
    );
    let files = report_files(&dir);
    // One dump_now from the child, then the final report from the atexit hook (the period is
    // an hour, so no periodic report can have been written).
    assert_eq!(files.len(), 2, "{files:?}");
    let first = heapsampler::Report::read(&files[0]).unwrap();
    let last = heapsampler::Report::read(&files[1]).unwrap();
    assert_eq!(first.pid, last.pid);
    assert_eq!(last.sample_interval, 64 * 1024);
    assert!(last.timestamp_ms >= first.timestamp_ms);
    assert!(last.totals.counts.allocated_bytes > first.totals.counts.allocated_bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "child process of env_sets_interval_and_starts_reporter_with_final_report_at_exit"]
fn child_env_reporter_dump_once() {
    if !is_child("child_env_reporter_dump_once") {
        return;
    }
    assert_eq!(
        heapsampler::sample_interval(),
        64 * 1024,
        "interval applied before main"
    );
    let reports = heapsampler::env_reporter().expect("HEAPSAMPLER with dir starts a reporter");
    assert_eq!(reports.config().period(), Duration::from_secs(3600));
    assert_eq!(reports.config().kept(), 50);
    reports.dump_now().unwrap();
    // Explicit calls win over the variable.
    heapsampler::set_sample_interval(4096);
    assert_eq!(heapsampler::sample_interval(), 4096);
    heapsampler::set_sample_interval(64 * 1024);
}

#[test]
fn env_reporter_writes_periodically() {
    let dir = temp_dir("periodic");
    let value = format!("dir={},period=50ms", dir.display());
    run_child("child_env_reporter_periodic", Some(&value), &[]);
    assert!(
        report_files(&dir).len() >= 3,
        "two periodic reports and a final one"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "child process of env_reporter_writes_periodically"]
fn child_env_reporter_periodic() {
    if !is_child("child_env_reporter_periodic") {
        return;
    }
    assert_eq!(
        heapsampler::sample_interval(),
        heapsampler::DEFAULT_SAMPLE_INTERVAL
    );
    let reports = heapsampler::env_reporter().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.status().reports_written < 2 {
        assert!(
            Instant::now() < deadline,
            "no periodic reports: {:?}",
            reports.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_values_warn_once_each_and_keep_defaults() {
    let out = run_child(
        "child_bad_values",
        Some("interval=12x,keep=zero,period=10s,colour=red"),
        &[],
    );
    let lines = heapsampler_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("heapsampler: HEAPSAMPLER: bad value for interval: \"12x\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("using the default, 512k"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("bad value for keep: \"zero\""),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("unknown key \"colour\""), "{}", lines[2]);
}

#[test]
#[ignore = "child process of bad_values_warn_once_each_and_keep_defaults"]
fn child_bad_values() {
    if !is_child("child_bad_values") {
        return;
    }
    assert_eq!(
        heapsampler::sample_interval(),
        heapsampler::DEFAULT_SAMPLE_INTERVAL
    );
    assert!(heapsampler::env_reporter().is_none(), "no dir, no reporter");
    // The good item still applies; the variable is parsed (and warned about) only once.
    let r = heapsampler::Reporter::from_env().unwrap();
    assert_eq!(r.period(), Duration::from_secs(10));
    assert_eq!(r.kept(), heapsampler::DEFAULT_KEEP);
    assert_eq!(r.dir(), Path::new("heap-reports"));
}

#[test]
fn enabled_0_turns_sampling_and_reporting_off() {
    let dir = temp_dir("disabled");
    let value = format!("enabled=0,interval=4k,dir={}", dir.display());
    let out = run_child("child_disabled", Some(&value), &[]);
    assert!(heapsampler_lines(&out).is_empty());
    assert!(report_files(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "child process of enabled_0_turns_sampling_and_reporting_off"]
fn child_disabled() {
    if !is_child("child_disabled") {
        return;
    }
    assert_eq!(heapsampler::sample_interval(), 0);
    assert!(heapsampler::env_reporter().is_none());
    assert!(heapsampler::Reporter::from_env().is_none());
}

#[test]
fn unset_variable_changes_nothing() {
    let out = run_child("child_unset", None, &[]);
    assert!(heapsampler_lines(&out).is_empty());
}

#[test]
#[ignore = "child process of unset_variable_changes_nothing"]
fn child_unset() {
    if !is_child("child_unset") {
        return;
    }
    assert_eq!(
        heapsampler::sample_interval(),
        heapsampler::DEFAULT_SAMPLE_INTERVAL
    );
    assert!(heapsampler::env_reporter().is_none());
    assert_eq!(
        heapsampler::Reporter::from_env().unwrap(),
        heapsampler::Reporter::new("heap-reports")
    );
}

/// Threads of this process named like the reporter thread (`comm` keeps 15 bytes).
fn reporter_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "heapsampler-rep")
        })
        .count()
}

#[test]
fn the_programs_reporter_replaces_the_environments_in_the_same_dir() {
    let dir = temp_dir("replace-same");
    let value = format!("dir={},period=1h", dir.display());
    let extra = [("HS_PROGRAM_DIR", dir.to_str().unwrap())];
    let out = run_child("child_program_reporter", Some(&value), &extra);
    assert!(
        heapsampler_lines(&out).is_empty(),
        "{:?}",
        heapsampler_lines(&out)
    );
    // The variable's reporter: one dump and its final report at the handover; then the
    // program's: one dump and its final report when dropped. One numbered series.
    let files = report_files(&dir);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for (i, name) in names.iter().enumerate() {
        assert!(name.ends_with(&format!("-{:06}.json", i + 1)), "{names:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_programs_reporter_replaces_the_environments_in_another_dir() {
    let env_dir = temp_dir("replace-env");
    let program_dir = temp_dir("replace-program");
    let value = format!("dir={},period=1h", env_dir.display());
    let extra = [("HS_PROGRAM_DIR", program_dir.to_str().unwrap())];
    let out = run_child("child_program_reporter", Some(&value), &extra);
    assert!(
        heapsampler_lines(&out).is_empty(),
        "{:?}",
        heapsampler_lines(&out)
    );
    assert_eq!(
        report_files(&env_dir).len(),
        2,
        "a dump and the handover report"
    );
    assert_eq!(
        report_files(&program_dir).len(),
        2,
        "a dump and the final report"
    );
    std::fs::remove_dir_all(&env_dir).unwrap();
    std::fs::remove_dir_all(&program_dir).unwrap();
}

#[test]
#[ignore = "child process of the_programs_reporter_replaces_the_environments_*"]
fn child_program_reporter() {
    if !is_child("child_program_reporter") {
        return;
    }
    let env = heapsampler::env_reporter().expect("HEAPSAMPLER with dir starts a reporter");
    env.dump_now().unwrap();
    assert_eq!(reporter_threads(), 1);
    let dir = std::env::var("HS_PROGRAM_DIR").unwrap();
    let program = heapsampler::Reporter::new(&dir)
        .every(Duration::from_secs(3600))
        .start()
        .expect("the program's reporter starts");
    assert!(heapsampler::env_reporter().is_none(), "replaced");
    assert!(
        env.dump_now().is_err(),
        "the variable's reporter has stopped"
    );
    assert_eq!(
        env.status().reports_written,
        2,
        "a dump and the handover report"
    );
    // The variable's thread was joined; the program's names itself once it runs.
    assert!(
        reporter_threads() <= 1,
        "the variable's reporter thread is gone"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while reporter_threads() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reporter_threads(), 1, "one reporter runs, the program's");
    assert_eq!(program.config().period(), Duration::from_secs(3600));
    program.dump_now().unwrap();
    // A second reporter of the program for the same directory still collides.
    let again = heapsampler::Reporter::new(&dir).start();
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    program.stop().unwrap();
}

#[test]
fn mode_sets_report_permissions_and_hostile_values_warn_on_one_escaped_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let value = format!("dir={},mode=640,keep=\x1b[2J\r\nFORGED", dir.display());
    let out = run_child("child_env_mode", Some(&value), &[]);
    let lines = heapsampler_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(r#"bad value for keep: "\u{1b}[2J\r\nFORGED""#),
        "{}",
        lines[0]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr}"
    );
    let files = report_files(&dir);
    assert!(!files.is_empty());
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        // The umask can only take bits away: never more than asked for, and the owner's.
        assert_eq!(mode & !0o640, 0, "{}: {mode:o}", f.display());
        assert_eq!(mode & 0o600, 0o600, "{}: {mode:o}", f.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "child process of mode_sets_report_permissions_and_hostile_values_warn_on_one_escaped_line"]
fn child_env_mode() {
    if !is_child("child_env_mode") {
        return;
    }
    let reports = heapsampler::env_reporter().expect("HEAPSAMPLER with dir starts a reporter");
    assert_eq!(reports.config().file_mode(), 0o640);
    assert_eq!(reports.config().kept(), heapsampler::DEFAULT_KEEP);
    reports.dump_now().unwrap();
}
