//! `LeakCheck` behaviour: threads, frees from other threads, realloc, the check's own
//! bookkeeping, nesting, allow-lists, heap counters, the failure message.

use allocator_test::{config_lock, panic_message};
use heapsampler::{CheckHandle, LeakCheck, LeakReport};
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier, OnceLock, mpsc};

#[inline(never)]
fn leak_bytes(n: usize) {
    std::mem::forget(black_box(vec![0x5Au8; n]));
}

#[inline(never)]
fn leak_in_spawned_thread_k4() {
    std::mem::forget(black_box(vec![1u8; 4321]));
}

#[inline(never)]
fn leak_in_thread_without_opt_in_r9() {
    std::mem::forget(black_box(vec![1u8; 999]));
}

#[test]
fn leak_in_a_thread_spawned_with_the_opt_in_is_caught() {
    let check = LeakCheck::start();
    check.spawn(leak_in_spawned_thread_k4).join().unwrap();
    // The same through a handle entered explicitly, on a scoped thread.
    let handle = check.handle();
    std::thread::scope(|s| {
        s.spawn(move || {
            let entered = handle.enter();
            assert!(entered.is_recording());
            leak_in_spawned_thread_k4();
        });
    });
    let report = check.finish();
    assert_eq!(report.leaked_bytes, 2 * 4321, "{report}");
    assert_eq!(report.leaked_objects, 2, "{report}");
    assert!(
        report.sites.iter().all(|s| s.frames[0]
            .function
            .as_deref()
            .unwrap()
            .contains("leak_in_spawned_thread_k4")),
        "{report}"
    );
}

#[test]
fn leak_in_a_thread_spawned_without_the_opt_in_is_not_caught() {
    let check = LeakCheck::start();
    std::thread::spawn(leak_in_thread_without_opt_in_r9)
        .join()
        .unwrap();
    // Spawning and joining a thread leaves nothing of the check's own thread behind either.
    let report = check.finish();
    assert!(report.is_clean(), "{report}");
    assert!(
        report
            .sites_in("leak_in_thread_without_opt_in_r9")
            .is_empty()
    );
}

#[test]
fn a_handle_can_be_passed_on_by_the_code_under_test() {
    let check = LeakCheck::start();
    // Library code that hands work to a worker can pass along whatever check it runs in.
    let current = CheckHandle::current();
    assert_eq!(current, Some(check.handle()));
    let worker = std::thread::spawn(current.unwrap().wrap(|| leak_bytes(55)));
    worker.join().unwrap();
    assert_eq!(check.finish().leaked_bytes, 55);
    assert_eq!(CheckHandle::current(), None, "finishing ends the scope");
}

#[test]
fn memory_freed_by_another_thread_counts_as_freed() {
    let check = LeakCheck::start();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    // The receiving thread is not in the check: its frees of the check's blocks still count.
    let receiver = std::thread::spawn(move || rx.into_iter().map(|v| v.len()).sum::<usize>());
    for i in 0..200 {
        tx.send(vec![i as u8; 100 + i]).unwrap();
    }
    drop(tx);
    let received = receiver.join().unwrap();
    assert_eq!(received, (0..200).map(|i| 100 + i).sum::<usize>());
    let report = check.finish();
    assert!(report.is_clean(), "{report}");
    let stats = report.stats.unwrap();
    assert!(stats.alloc_objects >= 200);
    assert_eq!(stats.free_objects, stats.alloc_objects, "{stats:?}");
    assert_eq!(stats.live_bytes, 0);
}

#[inline(never)]
fn grow_by_pushing(v: &mut Vec<u32>, n: u32) {
    for i in 0..n {
        v.push(black_box(i));
    }
}

#[test]
fn a_block_reallocated_in_scope_is_tracked_through_the_realloc() {
    let check = LeakCheck::start();
    let mut v: Vec<u32> = Vec::with_capacity(1);
    grow_by_pushing(&mut v, 1000);
    let capacity = v.capacity();
    let alloc_objects = check.alloc_objects();
    assert!(
        alloc_objects >= 8,
        "each growth is a realloc, counted as an allocation: {alloc_objects}"
    );
    std::mem::forget(v);
    let report = check.finish();
    assert_eq!(
        report.leaked_objects, 1,
        "only the final block is live:\n{report}"
    );
    assert_eq!(report.leaked_bytes, capacity as u64 * 4, "{report}");
    assert!(
        report.sites[0].calls("grow_by_pushing"),
        "the stack is the last realloc's:\n{report}"
    );

    let check = LeakCheck::start();
    let mut v: Vec<u32> = Vec::with_capacity(1);
    grow_by_pushing(&mut v, 1000);
    drop(v);
    check.assert_no_leaks();
}

#[test]
fn a_block_of_the_check_reallocated_by_another_thread_stays_in_the_check() {
    let check = LeakCheck::start();
    let mut v: Vec<u32> = Vec::with_capacity(1);
    v.push(1);
    // A thread outside the check grows the block and keeps it: still the check's leak.
    let kept = std::thread::spawn(move || {
        grow_by_pushing(&mut v, 5000);
        Box::leak(Box::new(v)).capacity()
    })
    .join()
    .unwrap();
    let report = check.finish();
    let site = report
        .sites
        .iter()
        .find(|s| s.calls("grow_by_pushing"))
        .expect("the grown block");
    assert_eq!(site.bytes, kept as u64 * 4, "{report}");
}

#[test]
fn growing_a_buffer_from_before_the_check_is_not_the_checks_allocation() {
    let mut before: Vec<u32> = Vec::with_capacity(1);
    before.push(1);
    let check = LeakCheck::start();
    grow_by_pushing(&mut before, 10_000);
    let report = check.finish();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.unwrap().alloc_objects, 0);
    drop(before);
}

#[test]
fn no_false_leak_from_the_checks_own_bookkeeping_or_symbolization() {
    let outer = LeakCheck::start().allow("no_such_function_anywhere");
    // Cold symbolization (debug info loaded again, thousands of allocations) inside the outer
    // check, by an inner check that has something to symbolize; also reading counters,
    // rendering the report, and an allow-list built in scope.
    heapsampler::symbolize::clear_cache();
    let inner = LeakCheck::start()
        .allow("another_pattern")
        .allow("and_another");
    leak_bytes(24);
    let peak = inner.peak_live_bytes();
    let report = inner.finish();
    let rendered = report.to_string();
    assert!(rendered.contains("leak_bytes"), "{rendered}");
    assert_eq!((report.leaked_bytes, peak), (24, 24));
    drop(report);
    drop(rendered);
    // A profile snapshot, symbolized, inside the check.
    let mut profile = heapsampler::snapshot();
    profile.symbolize();
    drop(profile);
    // The outer check sees exactly the inner check's leak, nothing of the machinery.
    let report = outer.finish();
    assert_eq!(
        (report.leaked_bytes, report.leaked_objects),
        (24, 1),
        "{report}"
    );
    assert!(report.sites[0].calls("leak_bytes"));
}

#[test]
fn a_check_that_finds_nothing_leaves_nothing() {
    for _ in 0..3 {
        let check = LeakCheck::start();
        let report = check.finish();
        assert_eq!(
            report,
            LeakReport {
                stats: report.stats,
                ..Default::default()
            }
        );
        assert_eq!(report.stats.unwrap().alloc_objects, 0);
    }
}

#[test]
fn nested_checks_inner_sees_its_own_outer_sees_everything() {
    let outer = LeakCheck::start();
    leak_bytes(100);
    let inner = LeakCheck::start();
    leak_bytes(10);
    drop(black_box(vec![0u8; 1000]));
    assert_eq!(inner.alloc_objects(), 2);
    assert_eq!(inner.peak_live_bytes(), 1010);
    // The outer check's counters include the inner check's allocations as they happen.
    assert_eq!(outer.alloc_objects(), 3);
    assert_eq!(outer.peak_live_bytes(), 1110);
    let inner_report = inner.finish();
    assert_eq!(inner_report.leaked_bytes, 10, "{inner_report}");
    // Back in the outer scope only.
    leak_bytes(1);
    let report = outer.finish();
    assert_eq!(
        (report.leaked_bytes, report.leaked_objects),
        (111, 3),
        "{report}"
    );
    let stats = report.stats.unwrap();
    assert_eq!((stats.alloc_objects, stats.live_bytes), (4, 111));
}

#[test]
fn nested_inner_leak_freed_before_the_outer_finishes_is_not_an_outer_leak() {
    let outer = LeakCheck::start();
    let inner = LeakCheck::start();
    let kept = black_box(vec![0u8; 64]);
    assert_eq!(inner.finish().leaked_bytes, 64);
    drop(kept);
    let report = outer.finish();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.unwrap().free_objects, 1);
}

#[test]
fn nested_outer_allow_list_applies_to_blocks_handed_over() {
    let outer = LeakCheck::start().allow("leak_bytes");
    let inner = LeakCheck::start();
    leak_bytes(8);
    assert_eq!(inner.finish().leaked_bytes, 8);
    let report = outer.finish();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allowed.len(), 1);
}

#[test]
fn nested_checks_finished_out_of_order_stay_sane() {
    let outer = LeakCheck::start();
    let inner = LeakCheck::start();
    leak_bytes(3);
    let outer_report = outer.finish();
    // The outer check saw the inner one's allocation but it was not handed over yet.
    assert!(outer_report.is_clean(), "{outer_report}");
    leak_bytes(4);
    assert_eq!(inner.finish().leaked_bytes, 7);
    assert_eq!(CheckHandle::current(), None, "no scope left behind");
}

/// Allowed by name: its frame must be on the allocating stack in every build, so it is not
/// inlined and `black_box` keeps the table's construction from being an optimised tail call.
#[inline(never)]
fn cached_table() -> &'static Vec<u64> {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    black_box(TABLE.get_or_init(|| (0..64).collect()))
}

#[test]
fn allow_list_by_function_name_substring() {
    let check = LeakCheck::start();
    black_box(cached_table());
    let report = check.finish();
    // Only the first test to touch the table allocates it; either way nothing may leak when
    // allowed, and without the allow it is reported if this check allocated it.
    let check = LeakCheck::start().allow("cached_table");
    black_box(cached_table());
    leak_bytes(5);
    let allowed = check.finish();
    assert_eq!(allowed.leaked_bytes, 5, "{allowed}");
    if report.leaked_bytes > 0 {
        assert_eq!(report.leaked_bytes, 64 * 8);
        assert!(report.sites[0].calls("cached_table"));
    }
    let check = LeakCheck::start().allow("leak_bytes");
    leak_bytes(6);
    let report = check.finish();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allowed[0].bytes, 6);
}

#[test]
fn printing_inside_a_check_is_not_a_leak() {
    // libtest's output capture buffer is allocated and grown by the first prints of a test.
    let check = LeakCheck::start();
    for i in 0..100 {
        println!("line {i} of output printed inside a leak check, long enough to grow buffers");
        eprintln!("and on stderr {i}");
    }
    check.assert_no_leaks();
}

#[test]
fn heap_usage_assertions_for_the_scope() {
    let check = LeakCheck::start();
    let a = black_box(vec![0u8; 3000]);
    let b = black_box(vec![0u8; 2000]);
    drop(a);
    let c = black_box(vec![0u8; 1000]);
    drop(b);
    drop(c);
    assert_eq!(check.alloc_objects(), 3);
    assert_eq!(check.alloc_bytes(), 6000);
    assert_eq!(check.peak_live_bytes(), 5000);
    assert_eq!(check.live_bytes(), 0);
    check.assert_no_leaks();
}

#[test]
fn failure_message_gives_total_then_each_site_with_the_test_frames_first() {
    let check = LeakCheck::start();
    leak_bytes(700);
    leak_in_spawned_thread_k4();
    let message =
        panic_message(catch_unwind(AssertUnwindSafe(|| check.assert_no_leaks())).unwrap_err());
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "leak check: 5021 bytes leaked in 2 objects at 2 sites (allocated in scope, still live at finish)"
    );
    // Largest site first; each names its bytes and objects, then the stack, program first.
    assert_eq!(lines[2], "  4321 bytes in 1 object allocated at:");
    assert!(lines[3].contains("leak_in_spawned_thread_k4"), "{message}");
    let second = lines
        .iter()
        .position(|l| *l == "  700 bytes in 1 object allocated at:")
        .expect("second site");
    assert!(lines[second + 1].contains("leak_bytes"), "{message}");
    assert!(
        message.contains("failure_message_gives_total_then_each_site"),
        "{message}"
    );
    assert!(
        !message.contains("__rust_begin_short_backtrace"),
        "runner frames are cut:\n{message}"
    );

    let check = LeakCheck::start();
    leak_bytes(10);
    check.assert_leaked_at_most(10);
    let check = LeakCheck::start();
    leak_bytes(11);
    let message = panic_message(
        catch_unwind(AssertUnwindSafe(|| check.assert_leaked_at_most(10))).unwrap_err(),
    );
    assert!(
        message.starts_with("leak budget of 10 bytes exceeded\nleak check: 11 bytes leaked"),
        "{message}"
    );
}

#[test]
fn a_check_is_exact_whatever_the_global_interval() {
    let _config = config_lock();
    for interval in [0, 1, 1 << 30] {
        heapsampler::set_sample_interval(interval);
        let check = LeakCheck::start();
        for _ in 0..10 {
            leak_bytes(3);
        }
        drop(black_box(vec![0u8; 10]));
        let report = check.finish();
        assert_eq!(
            (report.leaked_bytes, report.leaked_objects),
            (30, 10),
            "interval {interval}:\n{report}"
        );
        assert_eq!(report.stats.unwrap().alloc_objects, 11);
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
}

#[test]
fn a_check_dropped_without_finishing_ends_its_scope() {
    let result = catch_unwind(|| {
        let _check = LeakCheck::start();
        panic!("test failed half-way");
    });
    assert!(result.is_err());
    assert_eq!(CheckHandle::current(), None);
    let handle = LeakCheck::start().handle();
    assert!(
        !handle.enter().is_recording(),
        "a finished check cannot be joined"
    );
}

#[inline(never)]
fn leaky_worker_b3(i: usize) {
    std::mem::forget(black_box(vec![i as u8; 2048]));
}

#[test]
fn eight_checks_on_eight_threads_at_the_same_time() {
    // libtest runs as many tests at once as there are cores; this runs eight checks truly
    // at once, whatever the runner: each thread waits for the others inside its check.
    let start = Arc::new(Barrier::new(8));
    let end = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (start, end) = (start.clone(), end.clone());
            std::thread::spawn(move || {
                let check = LeakCheck::start();
                start.wait();
                for round in 0..50 {
                    let v: Vec<String> = (0..20).map(|j| format!("{i}-{round}-{j}")).collect();
                    black_box(v);
                }
                if i == 5 {
                    leaky_worker_b3(i);
                }
                end.wait();
                check.finish()
            })
        })
        .collect();
    let reports: Vec<LeakReport> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, report) in reports.iter().enumerate() {
        if i == 5 {
            assert_eq!(
                (report.leaked_bytes, report.leaked_objects),
                (2048, 1),
                "{report}"
            );
            assert!(
                report.sites[0].frames[0]
                    .function
                    .as_deref()
                    .unwrap()
                    .contains("leaky_worker_b3")
            );
        } else {
            assert!(report.is_clean(), "thread {i}:\n{report}");
        }
        assert!(report.stats.unwrap().alloc_objects > 1000);
    }
}
