//! Totals stay exact when the program calls heapsampler APIs that allocate under the
//! reentrancy guard between its own allocations: every such API (`stress::apis::every_api`),
//! in a loop, at the default interval, at 4096, at 1 (exact mode) and at 0 (off), on one
//! thread and on several whose threads have exited before each comparison.
//!
//! `guarded_apis --env-child` is the same program started by this one with `HEAPSAMPLER`
//! naming a report directory, so that `env_reporter()` returns a running reporter.
//! `STRESS_TIMING=1` prints how long each step of the compared rounds took.
use heapsampler::DEFAULT_SAMPLE_INTERVAL;
use stress::apis::{ApiState, every_api};
use stress::{assert_totals_match, oracle};

/// Per interval (0: sampling off): rounds of every API with a comparison after each step, then
/// rounds with one comparison each, then rounds on three threads at once. Fewer at the small
/// intervals: there every allocation of the renderers and detectors (unoptimised in a test
/// build) is sampled, and each report holds every site seen so far.
const ROUNDS: [(u64, [usize; 3]); 4] = [
    (DEFAULT_SAMPLE_INTERVAL, [3, 6, 3]),
    (4096, [2, 3, 2]),
    (1, [1, 2, 1]),
    (0, [1, 1, 1]),
];

fn main() {
    if std::env::args().any(|a| a == "--env-child") {
        env_child();
        return;
    }
    let mut passed = 0;

    // Finding 1's case: a guard drop restored a stale countdown (83 MB phantom).
    let mut kept = Vec::new();
    for _ in 0..1000 {
        kept.push(vec![1u8; 100]);
        let _ = heapsampler::Report::parse("not json");
    }
    assert_totals_match("1000 x (a kept vector + Report::parse of a bad report)");
    drop(kept);
    assert_totals_match("after freeing the vectors");
    passed += 1;

    let started = std::time::Instant::now();
    let root = stress::scratch_dir("stress-guarded-apis");
    for (interval, [checked, rounds, threaded]) in ROUNDS {
        heapsampler::set_sample_interval(interval);
        assert_totals_match(&format!("interval {interval}: set"));
        let mut state = ApiState::new(root.join(format!("main-{interval}")), interval);
        for round in 0..checked {
            let mut last = std::time::Instant::now();
            every_api(&mut state, true, &mut |step| {
                assert_totals_match(&format!(
                    "interval {interval}, checked round {round}: after {step}"
                ));
                if std::env::var_os("STRESS_TIMING").is_some() {
                    eprintln!("  {:>8.1} ms {step}", last.elapsed().as_secs_f64() * 1e3);
                }
                last = std::time::Instant::now();
            });
        }
        passed += 1;
        eprintln!(
            "interval {interval}: checked rounds at {:?}",
            started.elapsed()
        );
        for round in 0..rounds {
            every_api(&mut state, true, &mut |_| {});
            assert_totals_match(&format!("interval {interval}, round {round}"));
        }
        passed += 1;
        eprintln!("interval {interval}: rounds at {:?}", started.elapsed());
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let dir = root.join(format!("thread-{interval}-{t}"));
                std::thread::spawn(move || {
                    let mut state = ApiState::new(dir, interval);
                    for _ in 0..threaded {
                        every_api(&mut state, true, &mut |_| {});
                    }
                    state.free_all();
                    state.leaks
                })
            })
            .collect();
        for _ in 0..threaded {
            every_api(&mut state, true, &mut |_| {});
        }
        for w in workers {
            let (planted, caught) = w.join().expect("worker");
            assert_eq!(planted, caught, "every planted leak caught");
        }
        assert_totals_match(&format!(
            "interval {interval}: three threads of every API, two exited"
        ));
        passed += 1;
        eprintln!(
            "interval {interval}: threaded rounds at {:?}",
            started.elapsed()
        );
        state.free_all();
        assert_totals_match(&format!("interval {interval}: everything freed"));
        assert_eq!(state.leaks.0, state.leaks.1, "every planted leak caught");
        passed += 1;
    }
    heapsampler::set_sample_interval(DEFAULT_SAMPLE_INTERVAL);
    let _ = std::fs::remove_dir_all(&root);

    // env_reporter(): a child of this test started with HEAPSAMPLER naming a directory.
    let dir = root.with_extension("env");
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--env-child")
        .env("HEAPSAMPLER", format!("dir={},period=1h", dir.display()))
        .status()
        .expect("child started");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "env child: {status}");
    passed += 1;
    println!("guarded_apis: {passed} passed, 0 failed");
}

/// Under `HEAPSAMPLER=dir=...,period=1h`: the reporter it started is reachable and idle (its
/// thread allocates nothing between reports, but holds what it allocated while starting in its
/// unpublished batch, which no other thread can flush). So the comparison is of the change:
/// across rounds of every API and `env_reporter().dump_now()`/`status()`, heapsampler's totals
/// and the oracle's move by the same amounts.
fn env_child() {
    let reporter = heapsampler::env_reporter().expect("HEAPSAMPLER started a reporter");
    let gap = || {
        let t = heapsampler::totals();
        let o = oracle();
        [
            o.alloc_bytes.wrapping_sub(t.alloc_bytes),
            o.alloc_objects.wrapping_sub(t.alloc_objects),
            o.free_bytes.wrapping_sub(t.free_bytes),
            o.free_objects.wrapping_sub(t.free_objects),
        ]
    };
    // The reporter thread allocates while it starts: wait until it is parked (the gap holds
    // still), or its start would be taken for a drift.
    let mut before = gap();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = gap();
        if now == before && now != [0; 4] {
            break;
        }
        before = now;
    }
    let dir = reporter.config().dir().to_path_buf();
    let mut state = ApiState::new(dir.join("apis"), DEFAULT_SAMPLE_INTERVAL);
    // A reporter of the program's own would replace the environment's.
    state.start_reporters = false;
    for round in 0..3 {
        every_api(&mut state, true, &mut |_| {});
        let path = reporter.dump_now().expect("env reporter dumps");
        heapsampler::Report::read(&path).expect("its report parses");
        let status = reporter.status();
        assert_eq!(status.reports_written, round + 1, "{status:?}");
        assert_eq!(
            before,
            gap(),
            "round {round}: the oracle and the totals moved apart (alloc bytes, allocs, \
             freed bytes, frees; the idle reporter thread's batch is the constant gap)"
        );
    }
    state.free_all();
    assert_eq!(before, gap(), "after freeing everything");
    println!(
        "env child: the idle env reporter thread holds {} B in {} allocations unpublished",
        before[0], before[1]
    );
}
