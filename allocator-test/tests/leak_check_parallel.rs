//! Eight tests, each with its own `LeakCheck`, run in parallel in one process by libtest (or
//! one per process by nextest). One leaks on purpose in a helper with a distinctive name; the
//! others allocate heavily and free. Only the leaking one may report a leak, and its message
//! must name the helper. A noise thread outside every check allocates, frees and leaks all the
//! while: it must not show up in any check.

use allocator_test::panic_message;
use heapsampler::LeakCheck;
use std::collections::HashMap;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

static FINISHED: AtomicUsize = AtomicUsize::new(0);
const TESTS: usize = 8;

/// A thread outside every check that allocates, frees and leaks until the tests are done
/// (bounded: it stops after a few seconds whatever happens).
fn start_noise() {
    static NOISE: Once = Once::new();
    NOISE.call_once(|| {
        std::thread::spawn(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut round = 0u64;
            while FINISHED.load(Ordering::Relaxed) < TESTS && std::time::Instant::now() < until {
                black_box(churn(round));
                if round.is_multiple_of(16) {
                    std::mem::forget(black_box(vec![round as u8; 333]));
                }
                round += 1;
            }
        });
    });
}

/// Allocates heavily and frees everything: boxed slices of many sizes, growing vectors,
/// strings, a hash map.
#[inline(never)]
fn churn(seed: u64) -> u64 {
    let mut total = 0u64;
    for round in 0..40u64 {
        let mut blocks: Vec<Box<[u8]>> = Vec::new();
        for i in 0..40u64 {
            let size = 16 + ((i * 37 + seed * 11 + round) % 2000) as usize;
            blocks.push(vec![i as u8; size].into_boxed_slice());
        }
        let mut map = HashMap::new();
        for i in 0..16u64 {
            map.insert(i, format!("{seed}-{round}-{i}"));
        }
        total += blocks.iter().map(|b| b.len() as u64).sum::<u64>() + map.len() as u64;
    }
    total
}

#[inline(never)]
fn leaky_helper_zq7_forgets_three_buffers() {
    for _ in 0..3 {
        std::mem::forget(black_box(vec![0xABu8; 1000]));
    }
}

fn clean_test(seed: u64) {
    start_noise();
    let check = LeakCheck::start();
    for i in 0..4 {
        black_box(churn(seed * 100 + i));
    }
    let alloc_objects = check.alloc_objects();
    let report = check.finish();
    FINISHED.fetch_add(1, Ordering::Relaxed);
    assert!(
        report.is_clean(),
        "test {seed} reported a leak that is not its own:\n{report}"
    );
    assert!(
        alloc_objects > 4 * 40 * 57,
        "test {seed} recorded only {alloc_objects} objects"
    );
    let stats = report.stats.expect("counters");
    assert_eq!(stats.alloc_objects, stats.free_objects);
    assert_eq!(stats.alloc_bytes, stats.free_bytes);
}

#[test]
fn parallel_1_leaks_on_purpose() {
    start_noise();
    let check = LeakCheck::start();
    black_box(churn(1));
    leaky_helper_zq7_forgets_three_buffers();
    black_box(churn(2));
    let outcome = catch_unwind(AssertUnwindSafe(|| check.assert_no_leaks()));
    FINISHED.fetch_add(1, Ordering::Relaxed);
    let message = panic_message(outcome.expect_err("the leak must be reported"));
    assert!(
        message.starts_with("leak check: 3000 bytes leaked in 3 objects at 1 site"),
        "exactly the helper's three objects, nothing of the other tests or the noise thread:\n{message}"
    );
    // The stack starts with the test's own code: the helper is the first frame shown.
    let first_frame = message.lines().nth(3).unwrap_or_default();
    assert!(
        first_frame.contains("leaky_helper_zq7_forgets_three_buffers"),
        "first frame should be the helper:\n{message}"
    );
    assert!(message.contains("parallel_1_leaks_on_purpose"), "{message}");
}

#[test]
fn parallel_2_clean() {
    clean_test(2);
}

#[test]
fn parallel_3_clean() {
    clean_test(3);
}

#[test]
fn parallel_4_clean() {
    clean_test(4);
}

#[test]
fn parallel_5_clean() {
    clean_test(5);
}

#[test]
fn parallel_6_clean() {
    clean_test(6);
}

#[test]
fn parallel_7_clean() {
    clean_test(7);
}

#[test]
fn parallel_8_clean() {
    clean_test(8);
}
