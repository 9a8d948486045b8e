use crate::record::weights::{exponential_gap, sample_probability, weights};
use rand::Rng;

use super::*;
use crate::record::lifecycle::{ON_REGISTER, register_thread};
use crate::sys::guard::enter_guard;
use crate::sys::thread_state::{guarded_alloc_bytes, guarded_alloc_objects, guarded_free};

/// What the wrapper does with the counts of one allocation the inner allocator grants:
/// the fast path, and the cold path if told.
fn wrapper_alloc(size: usize) {
    if !alloc_fast(size) {
        register_thread();
        decide(size);
        granted(size);
    }
}

#[test]
fn registration_traffic_is_the_profilers_own() {
    // Regression: registration ran under a bare depth bump, so the second and later of
    // its allocations (which pass the fast path) and its batched frees were charged to
    // the program at the next arm point (parking_lot's 1 KiB + 32 B table, seen in CI).
    std::thread::spawn(|| {
        ON_REGISTER.with(|c| {
            c.set(Some(|| {
                wrapper_alloc(1024);
                wrapper_alloc(32);
                free_fast(512);
            }))
        });
        // As `totals()` before a thread's first allocation: arms the free side with a
        // batch, so the registration's free passes the fast path.
        flush_current_thread();
        let guarded_before = (
            guarded_alloc_bytes(),
            guarded_alloc_objects(),
            guarded_free(),
        );
        wrapper_alloc(100);
        free_fast(100);
        // Counted: published into the thread's slot (it claimed one while registering,
        // so every publish after that went there), or still pending.
        let published = totals::own_published();
        let pending = with_hot(|h| {
            rebase(h);
            [
                h.alloc_pending_bytes.get(),
                h.alloc_pending_objects.get(),
                h.free_pending_bytes.get(),
                h.free_pending_objects.get(),
            ]
        });
        let pending: Vec<u64> = pending.iter().zip(published).map(|(p, q)| p + q).collect();
        let guarded = [
            guarded_alloc_bytes() - guarded_before.0,
            guarded_alloc_objects() - guarded_before.1,
            guarded_free().0 - guarded_before.2.0,
            guarded_free().1 - guarded_before.2.1,
        ];
        assert_eq!(guarded, [1056, 2, 512, 1], "the profiler's own");
        let program: Vec<u64> = pending.iter().zip(guarded).map(|(p, g)| p - g).collect();
        assert_eq!(program, [100, 1, 100, 1], "the program's");
    })
    .join()
    .unwrap();
}

#[test]
fn a_flush_inside_the_guard_takes_the_programs_unflushed_allocations() {
    // Regression: the guard puts the program's countdown aside uncharged, and a flush under
    // it (`snapshot()` flushes under the guard) left those allocations out of the totals.
    std::thread::spawn(|| {
        wrapper_alloc(1); // initialises the thread: draws its first gap
        flush_current_thread();
        let gap_before = with_hot(|h| h.gap.get());
        for _ in 0..3 {
            wrapper_alloc(100);
        }
        let guard = enter_guard();
        let flushed_before = totals::read().alloc_objects;
        flush_current_thread();
        let flushed = totals::read().alloc_objects - flushed_before;
        drop(guard);
        let unflushed = with_hot(|h| {
            rebase(h);
            h.alloc_pending_objects.get()
        });
        // Other unit tests may flush at the same time: at least our three went in.
        assert!(flushed >= 3, "flushed {flushed} allocations");
        assert_eq!(unflushed, 0, "none left behind, none counted twice");
        let gap_after = with_hot(|h| h.gap.get());
        assert!(
            gap_before == NEVER || gap_after == (gap_before - 300).max(0),
            "the sampling process advanced by the program's bytes: {gap_before} -> {gap_after}"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn probability_matches_formula() {
    assert_eq!(sample_probability(10, 1), 1.0);
    let p = sample_probability(512 * 1024, 512 * 1024);
    assert!((p - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
    let tiny = sample_probability(1, 1 << 20);
    assert!((tiny - 1.0 / (1u64 << 20) as f64).abs() / tiny < 1e-6);
}

#[test]
fn packed_countdowns_count_bytes_and_calls_apart() {
    let armed = armed_word(BATCH);
    let mut now = armed;
    let mut bytes = 0;
    let mut calls = 0;
    // Any mix of sizes until the countdown goes negative, as the fast path would.
    for size in [1usize, 7, 4096, 1, 100_000, 3, 65_536, 200_000] {
        now = now.wrapping_sub(packed(size));
        bytes += size as u64;
        calls += 1;
        assert_eq!(unpack(armed, now), (bytes, calls));
        assert_eq!(
            now >= 0,
            bytes <= BATCH as u64,
            "negative exactly past the batch"
        );
    }
    // One call of a byte each: the call field never borrows before the countdown is spent.
    let mut now = armed;
    for n in 1..=BATCH as u64 {
        now -= packed(1);
        assert!(now >= 0);
        assert_eq!(unpack(armed, now), (n, n));
    }
    assert!(now - packed(1) < 0);
    // One call just under `HUGE` takes almost 2^63 off: still counted exactly.
    let now = armed - 5 * packed(1);
    let now = now.wrapping_sub(packed(HUGE - 1));
    assert!(now < 0);
    assert_eq!(unpack(armed, now), (5 + HUGE as u64 - 1, 6));
    // A huge size never reaches the packed arithmetic.
    assert!(!alloc_fast(HUGE) && !free_counted(HUGE));
}

#[test]
fn a_forked_child_gives_back_the_other_threads_slots() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        wrapper_alloc(1); // registers the thread, which claims a slot
        ready_tx.send(crate::sys::thread_slot::current()).unwrap();
        let _ = stop_rx.recv();
    });
    let theirs = ready_rx
        .recv()
        .unwrap()
        .expect("the other thread holds a slot");
    wrapper_alloc(1); // registers this thread (and installs the fork handlers)
    // SAFETY: the child reads one atomic and leaves with `_exit`, touching nothing else.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let still_held = crate::sys::thread_slot::is_claimed(theirs);
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(i32::from(still_held)) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    stop_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child still counted the parent's other thread as holding slot {theirs}"
    );
}

#[test]
fn a_guard_publishes_what_it_left_pending() {
    // The guard gives the program its countdown back, with up to a batch still to spend:
    // the guard's own allocations left pending would let the thread hold more than that.
    std::thread::spawn(|| {
        wrapper_alloc(1); // initialises the thread
        flush_current_thread();
        {
            let _guard = enter_guard();
            wrapper_alloc(100); // the guard's first allocation arms its countdown
            wrapper_alloc(1000); // counted on the fast path, charged at the drop
        }
        let pending = with_hot(|h| (h.alloc_pending_bytes.get(), h.alloc_pending_objects.get()));
        assert_eq!(pending, (0, 0), "published when the guard was dropped");
    })
    .join()
    .unwrap();
}

#[test]
fn huge_sizes_are_counted_by_their_real_size() {
    std::thread::spawn(|| {
        wrapper_alloc(1); // initialises the thread
        for size in [HUGE, (1usize << 50) + 12_345, usize::MAX >> 2] {
            flush_current_thread();
            let before = totals::read();
            wrapper_alloc(size);
            free_fast(size);
            flush_current_thread();
            let after = totals::read();
            // Other unit tests flush small amounts meanwhile; none allocates 8 TiB.
            let allocated = after.alloc_bytes.wrapping_sub(before.alloc_bytes);
            let freed = after.free_bytes.wrapping_sub(before.free_bytes);
            for counted in [allocated, freed] {
                assert!(
                    counted >= size as u64 && counted - (size as u64) < 1 << 32,
                    "{size} bytes counted as {counted}"
                );
            }
        }
    })
    .join()
    .unwrap();
}

#[test]
fn remembered_weights_are_the_computed_ones() {
    std::thread::spawn(|| {
        with_hot(|h| {
            for (size, t) in [
                (4096, 512 * 1024),
                (4096, 512 * 1024),
                (100, 4096),
                (4096, 4096),
            ] {
                let m = memo_weights(h, size, t, 7);
                let w = weights(size, t, 7);
                assert_eq!(
                    (m.w_objects, m.w_bytes, m.thread),
                    (w.w_objects, w.w_bytes, 7)
                );
                assert!(!m.exact && m.tag == 0);
            }
        })
    })
    .join()
    .unwrap();
}

#[test]
fn exponential_gaps_have_the_right_mean() {
    let mut rng = SmallRng::seed_from_u64(7);
    let n = 200_000;
    let t = 4096;
    let sum: f64 = (0..n)
        .map(|_| exponential_gap(rng.next_u64(), t) as f64)
        .sum();
    let mean = sum / n as f64;
    // The mean of n Exp(t) draws has standard deviation t/sqrt(n) ≈ 0.22 % of t.
    assert!((mean / t as f64 - 1.0).abs() < 0.01, "mean gap {mean}");
}
