//! Every public heapsampler API that may allocate under its reentrancy guard, called in turn
//! between the program's own allocations (some kept, some freed), for the guarded-API test and
//! the soak.

use heapsampler::report::flamegraph::{self, FlameValue};
use heapsampler::report::{mappings, pprof};
use heapsampler::{
    CheckHandle, LeakCheck, LeakDetector, Limits, Profile, Report, Reporter, symbolize,
};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A function name planted leaks are allocated in; a leak check finds them by it.
pub const PLANTED: &str = "stress::apis::planted_leak";

/// Allocates `bytes` in a function of its own, so its stack names it ([`PLANTED`]).
#[inline(never)]
pub fn planted_leak(bytes: usize) -> Vec<u8> {
    black_box(vec![0xab; bytes])
}

/// One thread's state across rounds of [`every_api`]: a directory of its own for reports,
/// the previous profile (for diffs and rates), a leak detector, the last report's text, and
/// the program's kept allocations.
pub struct ApiState {
    dir: PathBuf,
    previous: Option<Profile>,
    detector: LeakDetector,
    last_report: Option<String>,
    kept: Vec<Vec<u8>>,
    round: u64,
    /// The sampling interval `set_sample_interval` is called with (re-set each round: the
    /// call itself is the API under test, the interval stays what the caller chose).
    pub interval: u64,
    /// Leaks planted in leak checks, and caught: (planted, caught) blocks.
    pub leaks: (u64, u64),
    /// Steps run.
    pub steps: u64,
    /// Forked children that ran and exited as expected.
    pub children: u64,
    /// Whether a round starts a `Reporter` of its own. A program's reporter replaces the one
    /// `HEAPSAMPLER` started, so a round run beside that one must not start any.
    pub start_reporters: bool,
}

impl ApiState {
    /// State writing its reports under `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>, interval: u64) -> Self {
        ApiState {
            dir: dir.into(),
            previous: None,
            detector: LeakDetector::new(5),
            last_report: None,
            kept: Vec::new(),
            round: 0,
            interval,
            leaks: (0, 0),
            steps: 0,
            children: 0,
            start_reporters: true,
        }
    }

    /// The directory reports are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Frees the program's kept allocations and the kept profile.
    pub fn free_all(&mut self) {
        self.kept = Vec::new();
        self.previous = None;
        self.last_report = None;
        self.detector.reset();
    }

    /// The program's own work between two API calls: a few allocations of assorted sizes,
    /// one in three kept (a bounded number), a realloc chain, the rest freed.
    fn program(&mut self, salt: u64) {
        let n = (self.round.wrapping_mul(31).wrapping_add(salt)) as usize;
        let mut grown = Vec::with_capacity(1);
        for i in 0..(8 + n % 8) {
            let size = 1 + (n * 7919 + i * 104_729) % 3000;
            let v = vec![i as u8; size];
            grown.extend_from_slice(&v[..size.min(64)]);
            if (n + i).is_multiple_of(3) {
                if self.kept.len() >= 256 {
                    let at = (n + i) % self.kept.len();
                    self.kept.swap_remove(at);
                }
                self.kept.push(v);
            }
        }
        // A realloc chain, grown past a batch now and then (counted once granted), then shrunk.
        let top = if n.is_multiple_of(16) { 1 << 20 } else { 4096 };
        let mut chain: Vec<u8> = Vec::new();
        while chain.len() < top {
            chain.extend_from_slice(&[n as u8; 512]);
        }
        chain.truncate(100);
        chain.shrink_to_fit();
        // Zeroed memory, and a request the system refuses (counted by neither).
        let zeroed = vec![0u64; 1 + n % 700];
        let mut refused: Vec<u8> = Vec::new();
        assert!(refused.try_reserve_exact(1 << 46).is_err());
        let s = format!("{n:x}-{salt}-{}", grown.len());
        black_box((grown, s, chain, zeroed, refused));
    }
}

/// Runs every guarded API once (a round), with program allocations between the calls, and
/// calls `check(step)` after each step. Panics when an API misbehaves (a planted leak not
/// caught, a written report that does not read back). `threads` allows the steps that start threads of their
/// own (all joined before the step's check).
pub fn every_api(state: &mut ApiState, threads: bool, check: &mut dyn FnMut(&str)) {
    state.round += 1;
    let round = state.round;
    // On plain System (`STRESS_ALLOCATOR=system`) leak checks record nothing: the same calls
    // are made, their findings not checked.
    let exact = !crate::is_plain_system();
    let step = |state: &mut ApiState, name: &str, f: &mut dyn FnMut(&mut ApiState)| {
        state.program(state.steps);
        f(state);
        state.program(state.steps + 1);
        state.steps += 1;
        name.to_owned()
    };

    let done = step(state, "Report::parse (bad text)", &mut |_| {
        assert!(Report::parse("not json").is_err());
        assert!(Report::parse(r#"{"format": "heapsampler-heap-report", "version": 7}"#).is_err());
    });
    check(&done);
    let done = step(state, "totals", &mut |_| {
        black_box(heapsampler::totals());
    });
    check(&done);
    let mut profile = heapsampler::snapshot();
    check("snapshot");
    let done = step(state, "symbolize", &mut |_| profile.symbolize());
    check(&done);
    let done = step(state, "Profile::diff, top_sites, sites_in", &mut |state| {
        if let Some(previous) = &state.previous {
            black_box(profile.diff(previous));
        }
        black_box(profile.top_sites(5));
        black_box(profile.sites_in("stress"));
    });
    check(&done);
    let done = step(state, "LeakDetector::observe", &mut |state| {
        black_box(state.detector.observe(&profile));
    });
    check(&done);
    let done = step(state, "LeakDetector::suspects_in", &mut |state| {
        let mut fresh = LeakDetector::new(5).with_min_growth(1);
        let series: Vec<Profile> = state.previous.iter().cloned().collect();
        black_box(fresh.suspects_in(&series));
    });
    check(&done);
    let done = step(state, "mappings::current, parse_maps", &mut |_| {
        let maps = mappings::current();
        black_box(mappings::parse_maps(
            "55d0c0a00000-55d0c0a42000 r-xp 00004000 fd:01 1234 /x\n",
        ));
        black_box(maps);
    });
    check(&done);
    let mut report = None;
    let done = step(state, "Report::from_profile", &mut |state| {
        let suspects = state.detector.observe(&profile);
        report = Some(Report::from_profile(
            &profile,
            state.previous.as_ref(),
            suspects,
            mappings::current(),
        ));
    });
    check(&done);
    let report = report.expect("built");
    let done = step(state, "Report::to_string_pretty, parse", &mut |state| {
        let text = report.to_string_pretty();
        assert_eq!(
            Report::parse(&text).expect("a written report parses"),
            report
        );
        state.last_report = Some(text);
    });
    check(&done);
    let done = step(state, "Report::write_to", &mut |_| {
        let mut buf = Vec::new();
        report.write_to(&mut buf).expect("into memory");
        black_box(buf);
    });
    check(&done);
    let done = step(state, "Report::write_atomic, read", &mut |state| {
        let path = report
            .write_atomic(&state.dir, &format!("api-{round}.json"))
            .expect("report written");
        let back = Report::read(&path).expect("report read back");
        assert_eq!(back, report);
        let _ = std::fs::remove_file(path);
    });
    check(&done);
    let done = step(
        state,
        "Report::to_profile, location, site_frames",
        &mut |_| {
            let back = report.to_profile();
            for site in report.sites.iter().take(3) {
                black_box(report.site_frames(site));
                black_box(report.top_function(site));
                for &a in site.addresses.iter().take(2) {
                    black_box(report.location(a));
                }
            }
            black_box(back);
        },
    );
    check(&done);
    let done = step(state, "symbolize::resolve", &mut |_| {
        for site in profile.sites.iter().take(3) {
            for &a in site.addresses.iter().take(3) {
                black_box(symbolize::resolve(a));
            }
        }
        if round.is_multiple_of(16) {
            symbolize::clear_cache();
        }
    });
    check(&done);
    let done = step(state, "flamegraph::collapsed", &mut |_| {
        black_box(flamegraph::collapsed(&profile, FlameValue::LiveBytes));
        black_box(flamegraph::collapsed(&profile, FlameValue::AllocBytes));
    });
    check(&done);
    let done = step(state, "flamegraph::svg", &mut |_| {
        black_box(flamegraph::svg(&profile, FlameValue::LiveBytes, "soak").expect("svg"));
    });
    check(&done);
    let done = step(state, "pprof::render, render_to", &mut |_| {
        let maps = mappings::current();
        black_box(pprof::render(&profile, &maps));
        let mut out = Vec::new();
        pprof::render_to(&profile, &[], &mut out).expect("into memory");
        black_box(out);
    });
    check(&done);
    let done = step(state, "set_sample_interval", &mut |state| {
        heapsampler::set_sample_interval(state.interval);
        assert_eq!(heapsampler::sample_interval(), state.interval);
    });
    check(&done);
    let done = step(state, "set_seed", &mut |state| {
        heapsampler::set_seed(state.round)
    });
    check(&done);
    let done = step(state, "set_limits", &mut |_| {
        heapsampler::set_limits(Limits::default());
    });
    check(&done);
    let done = step(state, "env_reporter, Reporter::from_env", &mut |_| {
        black_box(heapsampler::env_reporter().map(|r| r.status()));
        black_box(Reporter::from_env());
    });
    check(&done);
    if state.start_reporters {
        let done = step(state, "Reporter start/status/dump_now/drop", &mut |state| {
            let dir = state.dir.join(format!("reporter-{round}"));
            let reporter = Reporter::new(&dir)
                .every(Duration::from_secs(3600))
                .keep(2)
                .leak_window(5)
                .start()
                .expect("reporter started");
            let path = reporter.dump_now().expect("report dumped");
            let status = reporter.status();
            assert_eq!(status.reports_written, 1, "{status:?}");
            black_box(format!("{reporter:?}"));
            Report::read(&path).expect("dumped report parses");
            if round.is_multiple_of(2) {
                drop(reporter);
            } else {
                let last = reporter.stop().expect("final report");
                Report::read(&last).expect("final report parses");
            }
            let _ = std::fs::remove_dir_all(&dir);
        });
        check(&done);
    }
    let done = step(
        state,
        "LeakCheck start/stats/finish (a planted leak)",
        &mut |state| {
            let check = LeakCheck::start().allow("no_such_function");
            let freed = vec![1u8; 300];
            let leak = planted_leak(100 + (round % 50) as usize);
            drop(freed);
            black_box((check.stats(), check.alloc_objects(), check.live_bytes()));
            black_box((check.peak_live_bytes(), check.alloc_bytes()));
            let report = check.finish();
            state.leaks.0 += 1;
            let caught = report.sites_in("planted_leak").len() == 1
                && report.leaked_objects == 1
                && report.leaked_bytes == leak.len() as u64;
            if exact {
                assert!(caught, "the planted leak, and only it: {report}");
                state.leaks.1 += 1;
            }
            black_box(report.to_string());
            drop(leak); // freed after the check: the record leaves the profile
        },
    );
    check(&done);
    let done = step(
        state,
        "LeakCheck assert_no_leaks, assert_leaked_at_most",
        &mut |_| {
            let check = LeakCheck::start();
            drop(vec![0u8; 4096]);
            check.assert_no_leaks();
            let check = LeakCheck::start();
            let kept = vec![0u8; 8];
            check.assert_leaked_at_most(8);
            drop(kept);
            // A nested pair.
            let outer = LeakCheck::start();
            let inner = LeakCheck::start();
            drop(String::from("inner"));
            inner.assert_no_leaks();
            outer.assert_no_leaks();
        },
    );
    check(&done);
    if threads {
        let done = step(state, "LeakCheck::spawn, CheckHandle", &mut |state| {
            let check = LeakCheck::start();
            assert_eq!(CheckHandle::current(), Some(check.handle()));
            let sum = check
                .spawn(|| (0..100u64).collect::<Vec<_>>().iter().sum::<u64>())
                .join()
                .expect("joined");
            assert_eq!(sum, 4950);
            let handle = check.handle();
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let worker = std::thread::spawn(move || {
                let entered = handle.enter();
                assert!(entered.is_recording());
                for v in rx {
                    drop(v);
                }
            });
            tx.send(vec![1, 2, 3]).expect("sent");
            drop(tx);
            worker.join().expect("joined");
            check
                .handle()
                .spawn(|| drop(vec![0u8; 10]))
                .join()
                .expect("joined");
            let leaked = check.handle().wrap(|| planted_leak(33));
            let leak = std::thread::spawn(leaked).join().expect("joined");
            let report = check.finish();
            state.leaks.0 += 1;
            if exact {
                assert!(
                    report.leaked_objects == 1 && report.sites_in("planted_leak").len() == 1,
                    "the planted leak of a joined thread, and only it: {report}"
                );
                state.leaks.1 += 1;
            }
            drop(leak);
        });
        check(&done);
    }
    if threads {
        let done = step(
            state,
            "fork (a child that allocates and runs a leak check)",
            &mut |state| {
                if let Err(e) = fork_child(exact) {
                    panic!("round {round}: {e}");
                }
                state.children += 1;
            },
        );
        check(&done);
    }
    // The profile is the program's from here on: kept for the next round's diff.
    state.previous = Some(profile);
    drop(report);
    check("round end");
}

/// Forks a child that allocates (kept, freed, a realloc chain) and, if `leak_check`, runs a
/// leak check with a planted leak, then leaves with `_exit`. The child checks that its totals
/// and the oracle move together: the parent's other threads' unpublished batches are lost in
/// the child (their threads are gone), so the two differ by a constant there. `Ok` when the
/// child exited 0 within 30 s; a hung child is killed.
pub fn fork_child(leak_check: bool) -> Result<(), String> {
    // SAFETY: the child runs the code below on its only thread and leaves with `_exit`, which
    // runs no exit handlers of the parent's; it allocates (heapsampler and glibc are fork-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(|| child_work(leak_check)).unwrap_or(4);
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if waited == pid {
            break;
        }
        if waited < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if std::time::Instant::now() > deadline {
            // Where it hangs, if gdb is there to tell.
            let stacks = std::process::Command::new("gdb")
                .args([
                    "-p",
                    &pid.to_string(),
                    "-batch",
                    "-ex",
                    "thread apply all bt",
                ])
                .output();
            if let Ok(out) = stacks {
                eprintln!(
                    "forked child {pid} hung; its stack:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("forked child {pid} hung for 30 s and was killed"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 2) => Err("forked child: its totals and the oracle moved apart".into()),
        (true, 3) => Err("forked child: its leak check did not catch the planted leak".into()),
        (true, 4) => Err("forked child panicked".into()),
        _ => Err(format!("forked child ended with status {status:#x}")),
    }
}

/// The child's work; its exit code (see [`fork_child`]).
fn child_work(leak_check: bool) -> i32 {
    let gap = || {
        let t = heapsampler::totals();
        let o = crate::oracle();
        [
            o.alloc_bytes.wrapping_sub(t.alloc_bytes),
            o.alloc_objects.wrapping_sub(t.alloc_objects),
            o.free_bytes.wrapping_sub(t.free_bytes),
            o.free_objects.wrapping_sub(t.free_objects),
        ]
    };
    let before = gap();
    let mut kept = Vec::new();
    for i in 0..200usize {
        let v = vec![i as u8; 1 + i * 37 % 5000];
        if i % 4 == 0 {
            kept.push(v);
        }
    }
    let mut chain = Vec::new();
    for i in 0..20_000u32 {
        chain.push(i);
    }
    if leak_check {
        let check = LeakCheck::start();
        let leak = planted_leak(77);
        drop(vec![0u8; 1000]);
        let report = check.finish();
        if report.leaked_objects != 1 || report.sites_in("planted_leak").len() != 1 {
            return 3;
        }
        drop(leak);
    }
    drop((kept, chain));
    if crate::is_plain_system() || gap() == before {
        0
    } else {
        2
    }
}
