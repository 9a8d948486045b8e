//! Periodic JSON heap reports: round trips, atomic writes, failing directories, rates,
//! symbolization, and the reporter's own allocations.

use allocator_test::{config_lock, report_files};
use heapsampler::report::json::{ReportErrorKind, ReportSite};
use heapsampler::{Report, Reporter};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hs-reports-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn calls(report: &Report, site: &ReportSite, needle: &str) -> bool {
    report
        .site_frames(site)
        .iter()
        .any(|f| f.function.as_deref().is_some_and(|n| n.contains(needle)))
}

#[inline(never)]
fn roundtrip_marker_alloc() -> Vec<u8> {
    // 8 MiB at the default 512 KiB interval is sampled with probability 1 − e^(−16).
    std::hint::black_box(vec![7u8; 8 << 20])
}

#[test]
fn report_round_trips_and_names_the_tests_functions() {
    let _l = config_lock();
    let dir = temp_dir("roundtrip");
    let kept = roundtrip_marker_alloc();
    let reports = Reporter::new(&dir)
        .every(Duration::from_secs(3600))
        .start()
        .unwrap();
    let path = reports.dump_now().unwrap();
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        format!("heap-{}-000001.json", std::process::id())
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let report = Report::parse(&text).unwrap();
    // Same content: parsing and writing again gives the same bytes.
    assert_eq!(report.to_string_pretty() + "\n", text);
    assert_eq!(report.format, "heapsampler-heap-report");
    assert_eq!(report.version, 1);
    assert_eq!(report.pid, std::process::id());
    assert_eq!(
        report.program,
        std::env::current_exe().unwrap().display().to_string()
    );
    assert!(report.window_ms > 0, "first window runs from process start");
    assert!(report.totals.counts.live_bytes >= kept.len() as u64);
    let site = report
        .sites
        .iter()
        .find(|s| calls(&report, s, "roundtrip_marker_alloc"))
        .expect("marker site");
    assert!(
        site.live_bytes > 4.0 * 1024.0 * 1024.0,
        "{}",
        site.live_bytes
    );
    assert_eq!(
        report.top_function(site),
        Some("reports::roundtrip_marker_alloc")
    );
    let frames = report.site_frames(site);
    let marker = frames
        .iter()
        .find(|f| f.function.as_deref() == Some("reports::roundtrip_marker_alloc"))
        .unwrap();
    assert!(
        marker
            .file
            .as_deref()
            .is_some_and(|p| p.ends_with("reports.rs")),
        "{marker:?}"
    );
    assert!(marker.line.is_some_and(|l| l > 0), "{marker:?}");
    // Every address of every site is symbolized, once, in the locations table.
    assert!(
        report
            .sites
            .iter()
            .flat_map(|s| &s.addresses)
            .all(|&a| report.location(a).is_some())
    );
    assert!(
        report
            .locations
            .windows(2)
            .all(|w| w[0].address < w[1].address)
    );
    assert!(
        site.threads.iter().any(|t| t.live_bytes > 0.0),
        "{:?}",
        site.threads
    );
    assert!(
        report
            .sites
            .windows(2)
            .all(|w| w[0].live_bytes >= w[1].live_bytes),
        "sorted by live bytes"
    );
    let exe = report.program.clone();
    let main_map = report
        .mappings
        .iter()
        .find(|m| m.path == exe)
        .expect("mapping of the executable");
    assert!(
        main_map.build_id.as_ref().is_some_and(|b| b.len() >= 32),
        "{main_map:?}"
    );
    assert!(
        report
            .mappings
            .iter()
            .any(|m| m.start <= site.addresses[0] && site.addresses[0] < m.end)
    );

    // A report written with write_atomic and read back is equal, field for field, and gives
    // back the profile it was made from, frames included.
    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    let built = Report::from_profile(
        &profile,
        None,
        vec![heapsampler::LeakSuspect::default()],
        vec![],
    );
    let again = Report::read(built.write_atomic(&dir, "heap-manual.json").unwrap()).unwrap();
    assert_eq!(again, built);
    let mut back = again.to_profile();
    back.sites.sort_by_key(|s| s.stack_id);
    profile.sites.sort_by_key(|s| s.stack_id);
    assert_eq!(back, profile);
    // A report made from the unsymbolized profile (the reporter's path) is the same.
    let mut raw = profile.clone();
    raw.sites.iter_mut().for_each(|s| s.frames.clear());
    let from_raw = Report::from_profile(
        &raw,
        None,
        vec![heapsampler::LeakSuspect::default()],
        vec![],
    );
    for (a, b) in from_raw.sites.iter().zip(&built.sites) {
        assert_eq!(from_raw.site_frames(a), built.site_frames(b));
    }
    drop(kept);
    drop(reports);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_version_and_damaged_files_give_clear_errors() {
    let _l = config_lock();
    let dir = temp_dir("version");
    let report = Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    let path = report.write_atomic(&dir, "heap-v.json").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();

    let v2 = dir.join("heap-v2.json");
    std::fs::write(&v2, text.replacen("\"version\": 1", "\"version\": 2", 1)).unwrap();
    let err = Report::read(&v2).unwrap_err();
    assert!(matches!(err.kind(), ReportErrorKind::UnsupportedVersion(2)));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: unsupported report version 2 (this build reads version 1)",
            v2.display()
        )
    );

    let cut = dir.join("heap-cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let err = Report::read(&cut).unwrap_err();
    assert!(matches!(err.kind(), ReportErrorKind::Truncated(_)), "{err}");
    assert!(err.to_string().contains("truncated report"), "{err}");

    let missing = dir.join("heap-missing-field.json");
    std::fs::write(&missing, text.replacen("\"sites\"", "\"sitez\"", 1)).unwrap();
    let err = Report::read(&missing).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid report: missing field `sites`"),
        "{err}"
    );

    let err = Report::read(dir.join("absent.json")).unwrap_err();
    assert!(matches!(err.kind(), ReportErrorKind::Io(_)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_partial_report_is_ever_visible_under_the_final_name() {
    let _l = config_lock();
    let dir = temp_dir("atomic");
    let reports = Reporter::new(&dir)
        .every(Duration::from_millis(2))
        .keep(4)
        .start()
        .unwrap();
    let stop = AtomicBool::new(false);
    let (read_ok, temps_seen) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    reports.dump_now().unwrap();
                }
            });
        }
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if name.ends_with(".tmp") {
                            assert!(name.starts_with(".heap-"), "temporary file {name} is not hidden");
                            temps_seen.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        assert!(name.starts_with("heap-") && name.ends_with(".json"), "stray file {name}");
                        match Report::read(entry.path()) {
                            Ok(_) => {
                                read_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            // Rotation may delete a file between listing and reading.
                            Err(e) if matches!(e.kind(), ReportErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {}
                            Err(e) => panic!("a reader saw a damaged report: {e}"),
                        }
                    }
                }
            });
        }
        wait_until("200 complete reads and 200 reports written", || {
            read_ok.load(Ordering::Relaxed) >= 200 && reports.status().reports_written >= 200
        });
        stop.store(true, Ordering::Relaxed);
    });
    let status = reports.status();
    assert_eq!(status.errors, 0, "{status:?}");
    let last = reports.stop().unwrap();
    let files = report_files(&dir);
    assert_eq!(files.len(), 4, "rotation keeps 4 files: {files:?}");
    assert_eq!(files.last(), Some(&last), "the final report is the newest");
    eprintln!(
        "temporary files seen by readers: {}",
        temps_seen.load(Ordering::Relaxed)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_write_leaves_no_temporary_file() {
    let _l = config_lock();
    let dir = temp_dir("failed-write");
    // The final name is taken by a non-empty directory: the rename must fail.
    std::fs::create_dir_all(dir.join("heap-taken.json").join("inside")).unwrap();
    let report = Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    let err = report.write_atomic(&dir, "heap-taken.json").unwrap_err();
    assert!(err.to_string().contains("heap-taken.json"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the blocking directory remains: {names:?}"
    );
    assert!(
        report.write_atomic(&dir, ".hidden.json").is_err(),
        "hidden names are refused"
    );
    assert!(
        report.write_atomic(&dir, "a/b.json").is_err(),
        "paths are refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rotation_final_report_and_prompt_stop() {
    let _l = config_lock();
    let dir = temp_dir("rotation");
    // Files of another process and other names are left alone.
    std::fs::write(dir.join("heap-1-000001.json"), "{}").unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    let reports = Reporter::new(&dir)
        .every(Duration::from_secs(3600))
        .keep(3)
        .start()
        .unwrap();
    let clash = Reporter::new(&dir).start().unwrap_err();
    assert_eq!(clash.kind(), std::io::ErrorKind::AlreadyExists);
    let written: Vec<PathBuf> = (0..6).map(|_| reports.dump_now().unwrap()).collect();
    let status = reports.status();
    assert_eq!(status.reports_written, 6);
    assert_eq!(status.last_path.as_ref(), written.last());
    let started = Instant::now();
    drop(reports); // must not wait out the hour-long period
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid = std::process::id();
    let ours: Vec<String> = report_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("heap-{pid}-")))
        .collect();
    let expected: Vec<String> = (5..=7).map(|i| format!("heap-{pid}-{i:06}.json")).collect();
    assert_eq!(
        ours, expected,
        "the newest 3, the last being the final report written on drop"
    );
    assert!(dir.join("heap-1-000001.json").exists() && dir.join("notes.txt").exists());
    // A new reporter in the same directory continues the sequence instead of overwriting.
    let next = Reporter::new(&dir).keep(3).start().unwrap();
    let path = next.dump_now().unwrap();
    assert!(
        path.ends_with(format!("heap-{pid}-000008.json")),
        "{}",
        path.display()
    );
    drop(next);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The scenario of an unwritable directory; run in-process here and in a child process by
/// `unwritable_directory_is_reported_once_on_stderr` (stderr can only be read from outside).
fn unwritable_scenario(base: &Path) {
    let blocker = base.join("blocker");
    std::fs::write(&blocker, "a regular file where a directory should be").unwrap();
    // Creating blocker/reports fails with ENOTDIR, even for root.
    let dir = blocker.join("reports");
    let reports = Reporter::new(&dir)
        .every(Duration::from_millis(5))
        .start()
        .unwrap();
    wait_until("repeated failures", || reports.status().errors >= 5);
    let status = reports.status();
    let error = status.last_error.clone().unwrap();
    assert!(
        error.contains("cannot create directory") && error.contains("reports"),
        "{error}"
    );
    assert_eq!(status.reports_written, 0);
    assert!(
        reports.dump_now().is_err(),
        "dump_now reports the error too"
    );
    // The application keeps running, allocating as usual.
    let v: Vec<u64> = (0..100_000).collect();
    assert_eq!(v.len(), 100_000);
    std::fs::remove_file(&blocker).unwrap();
    wait_until("reporting resumes", || {
        reports.status().reports_written >= 2
    });
    assert_eq!(reports.status().last_error, None);
    assert!(report_files(&dir).len() >= 2);
    drop(reports);
}

#[test]
fn unwritable_directory_is_reported_and_reporting_resumes() {
    let _l = config_lock();
    let base = temp_dir("unwritable");
    unwritable_scenario(&base);
    std::fs::remove_dir_all(&base).unwrap();
}

const CHILD: &str = "HS_REPORTS_CHILD";

fn run_child(name: &str, base: &Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, base)
        .env_remove("HEAPSAMPLER")
        .output()
        .unwrap()
}

fn heapsampler_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("heapsampler:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn unwritable_directory_is_reported_once_on_stderr() {
    let base = temp_dir("unwritable-child");
    let out = run_child("child_unwritable", &base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = heapsampler_lines(&out);
    assert_eq!(
        lines.len(),
        2,
        "one line for the error, one when writing resumes: {lines:#?}"
    );
    assert!(
        lines[0].starts_with("heapsampler: heap report not written: cannot create directory"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("Not a directory"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("heapsampler: heap reports resumed: wrote "),
        "{}",
        lines[1]
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
#[ignore = "child process of unwritable_directory_is_reported_once_on_stderr"]
fn child_unwritable() {
    let Ok(base) = std::env::var(CHILD) else {
        return;
    };
    unwritable_scenario(Path::new(&base));
}

#[test]
fn full_disk_is_reported_and_reporting_resumes() {
    // A tiny tmpfs in a private mount namespace: needs root and `unshare`; skipped otherwise.
    let base = temp_dir("full");
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot create a mount namespace here");
        return;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_full_disk",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &base)
        .env_remove("HEAPSAMPLER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if stderr.contains("skipped: cannot mount") {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let lines = heapsampler_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("No space left on device"), "{}", lines[0]);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
#[ignore = "child process of full_disk_is_reported_and_reporting_resumes"]
fn child_full_disk() {
    let Ok(base) = std::env::var(CHILD) else {
        return;
    };
    let mnt = Path::new(&base).join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs");
        return;
    }
    let dir = mnt.join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    // Fill the file system so that no report fits.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let reports = Reporter::new(&dir)
        .every(Duration::from_millis(5))
        .start()
        .unwrap();
    wait_until("ENOSPC errors", || reports.status().errors >= 5);
    assert!(
        reports
            .status()
            .last_error
            .unwrap()
            .contains("No space left on device")
    );
    // The reporter keeps trying every 5 ms, so a listing can catch one attempt's temp file
    // before that attempt removes it; a file left behind would stay and time this out.
    wait_until("failed writes leave nothing behind", || {
        std::fs::read_dir(&dir).unwrap().flatten().next().is_none()
    });
    std::fs::remove_file(&filler).unwrap();
    wait_until("reporting resumes", || {
        reports.status().reports_written >= 1
    });
    drop(reports);
    let _ = Command::new("umount").arg(&mnt).status();
}

#[inline(never)]
fn rate_workload(bytes: usize, block: usize) {
    for _ in 0..bytes / block {
        std::hint::black_box(vec![0u8; block]);
    }
}

/// Estimated bytes allocated in `rate_workload` over the report's window, from the rates.
fn workload_bytes_from_rates(report: &Report) -> f64 {
    let secs = report.window_ms as f64 / 1000.0;
    report
        .sites
        .iter()
        .filter(|s| calls(report, s, "rate_workload"))
        .map(|s| s.alloc_bytes_per_sec * secs)
        .sum()
}

fn measure_rate(bytes: usize, block: usize) -> (Report, f64) {
    let before = heapsampler::snapshot();
    std::thread::sleep(Duration::from_millis(3)); // a window of a few ms at least
    rate_workload(bytes, block);
    let mut now = heapsampler::snapshot();
    now.symbolize();
    let report = Report::from_profile(&now, Some(&before), vec![], vec![]);
    let estimate = workload_bytes_from_rates(&report);
    (report, estimate)
}

#[test]
fn allocation_rates_match_the_true_rate_within_the_sampling_bound() {
    let _l = config_lock();
    // Exact mode: the rate over the window times the window is the workload, to the byte.
    heapsampler::set_sample_interval(1);
    let (report, exact) = measure_rate(1 << 20, 1024);
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    assert!(
        (exact - (1 << 20) as f64).abs() < 1e-6,
        "exact mode: {exact}"
    );
    assert!(report.window_ms >= 3);
    // The exact totals' rate covers at least the workload (other threads add to it).
    let total = report.totals.allocated_bytes_per_sec * report.window_ms as f64 / 1000.0;
    assert!(total >= (1 << 20) as f64, "{total}");

    // Sampled: relative error ~ √(T/B) (one standard deviation of the Horvitz–Thompson
    // estimate of B bytes in blocks much smaller than T).
    let t = 64 * 1024u64;
    let b = 16usize << 20;
    let bound = (t as f64 / b as f64).sqrt();
    heapsampler::set_sample_interval(t);
    let trials = 24;
    let mut within_bound = 0;
    let mut errors = Vec::new();
    for trial in 0..trials {
        heapsampler::set_seed(0x5eed_0000 + trial);
        let (_, estimate) = measure_rate(b, 4096);
        let err = estimate / b as f64 - 1.0;
        errors.push(err);
        assert!(
            err.abs() < 4.5 * bound,
            "trial {trial}: relative error {err:.4} vs bound {bound:.4}"
        );
        within_bound += (err.abs() <= bound) as u32;
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let mean = errors.iter().sum::<f64>() / trials as f64;
    eprintln!("relative errors: {errors:.3?}; mean {mean:.4}; bound {bound:.4}");
    // ~68 % of trials fall within one bound; fewer than 10 of 24 would mean a biased or
    // too-noisy estimate (P < 0.1 % for a correct one).
    assert!(
        within_bound >= 10,
        "only {within_bound} of {trials} trials within √(T/B)"
    );
    // The mean of 24 unbiased trials is within 4 standard errors of zero.
    assert!(
        mean.abs() < 4.0 * bound / (trials as f64).sqrt(),
        "biased: mean error {mean:.4}"
    );
}

#[test]
fn reporter_work_is_overhead_not_a_user_site() {
    let _l = config_lock();
    // A small interval: anything the reporter allocated outside the guard would be sampled.
    heapsampler::set_sample_interval(256);
    let dir = temp_dir("overhead");
    let before = heapsampler::snapshot();
    let reports = Reporter::new(&dir)
        .every(Duration::from_millis(2))
        .keep(2)
        .start()
        .unwrap();
    for _ in 0..5 {
        reports.dump_now().unwrap();
    }
    wait_until("periodic reports on the reporter thread", || {
        reports.status().reports_written >= 20
    });
    drop(reports);
    let mut profile = heapsampler::snapshot();
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    profile.symbolize();
    // Frames of the profiler's own work (std's own backtrace printing is not among them).
    let profiler_work = |f: &str| {
        let f = f.trim_start_matches('<');
        [
            "heapsampler::",
            "backtrace::",
            "addr2line::",
            "gimli::",
            "serde_json::",
            "serde::",
        ]
        .iter()
        .any(|p| f.starts_with(p))
            && !f.starts_with("heapsampler::Sampler")
            && !f.starts_with("heapsampler::record::sampler")
    };
    // std's own backtrace printing (of a panicking test) uses addr2line too: not ours.
    let std_backtrace = |site: &heapsampler::Site| {
        site.calls("std::backtrace_rs") || site.calls("std::sys::backtrace::_print")
    };
    // Other tests of this binary run in parallel and call the API themselves (cloning a
    // `Profile`, say): heapsampler frames under a test function are that test's own work.
    let called_by_a_test = |site: &heapsampler::Site| {
        site.frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .any(|f| f.starts_with("reports::"))
    };
    for site in profile
        .sites
        .iter()
        .filter(|s| !std_backtrace(s) && !called_by_a_test(s))
    {
        for f in site.frames.iter().filter_map(|f| f.function.as_deref()) {
            assert!(
                !profiler_work(f),
                "profiler work shows as a user site ({f}): {:#?}",
                site.frames
            );
        }
        for t in &site.threads {
            assert!(
                !t.name.starts_with("heapsampler"),
                "a site allocated on the reporter thread: {:#?}",
                site.frames
            );
        }
    }
    let overhead = profile.totals.overhead_alloc_bytes - before.totals.overhead_alloc_bytes;
    assert!(
        overhead > 0,
        "the reporter's work is counted as profiler overhead"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
