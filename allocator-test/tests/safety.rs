//! The allocator never fails the program: after `fork()` with another thread busy in the
//! allocator, inside thread-local destructors, before `main` and after it, and when its own
//! tables are full.

use allocator_test::config_lock;
use std::alloc::{Layout, alloc, dealloc};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static BEFORE_MAIN_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Runs before `main`, from the ELF constructor table: the allocator must already work.
extern "C" fn allocate_before_main() {
    let v: Vec<u64> = (0..1000).collect();
    let s = format!("{}", v.iter().sum::<u64>());
    BEFORE_MAIN_BYTES.store(v.capacity() * 8 + s.len(), Ordering::SeqCst);
    // After `main` returns (and after every test), allocate again: a crash here makes the test
    // binary exit non-zero, which fails the run.
    // SAFETY: `allocate_after_main` is an `extern "C" fn()` with static lifetime.
    unsafe { libc::atexit(allocate_after_main) };
}

extern "C" fn allocate_after_main() {
    let v = vec![7u8; 1 << 16];
    let s: String = v.iter().take(100).map(|b| char::from(b'0' + b)).collect();
    std::hint::black_box(&s);
    drop(std::hint::black_box(heapsampler::snapshot()));
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = allocate_before_main;

#[test]
fn allocation_works_before_main() {
    assert!(BEFORE_MAIN_BYTES.load(Ordering::SeqCst) >= 8000);
}

#[test]
fn child_after_fork_allocates_while_parent_thread_is_busy() {
    let _lock = config_lock();
    // A tiny interval keeps the busy thread in the cold path (locks held) most of the time.
    heapsampler::set_sample_interval(256);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Stops the busy threads however this test ends: left running after a failure, they would
    // allocate through the tests that follow.
    struct StopOnDrop(std::sync::Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_drop = StopOnDrop(stop.clone());
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    keep.push(vec![0u8; 16 + i % 4096]);
                    if keep.len() > 256 {
                        keep.drain(..128);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    // Fewer rounds where each fork is slow (.ci/valgrind.sh runs this test under memcheck).
    let rounds: u32 = std::env::var("HEAPSAMPLER_TEST_FORK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // A child is hung, not slow, after this long (longer where everything is slow).
    let patience = Duration::from_secs(
        std::env::var("HEAPSAMPLER_TEST_FORK_PATIENCE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    for round in 0..rounds {
        // SAFETY: fork has no preconditions; the child only allocates, snapshots and exits
        // with `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut v: Vec<String> = (0..2000).map(|i| format!("child {i}")).collect();
            v.sort();
            // Snapshot takes every stack-table lock: any lock a parent thread held at the fork
            // would hang here without the atfork handlers.
            let p = heapsampler::snapshot();
            let ok = v.len() == 2000 && p.totals.alloc_bytes > 0;
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let deadline = Instant::now() + patience;
        let mut status = 0;
        loop {
            // SAFETY: `pid` is our child; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own hung child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("round {round}: child {pid} hung after fork (deadlock in the allocator?)");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status),
            "round {round}: child died: status {status}"
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "round {round}: child failed");
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
}

#[inline(never)]
fn tls_destructor_alloc() -> &'static mut [u8] {
    let leaked = Box::leak(vec![1u8; 4321].into_boxed_slice());
    std::hint::black_box(leaked)
}

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        // Runs during thread teardown, after (or before) the profiler's own exit hook.
        let scratch: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        std::hint::black_box(&scratch);
        tls_destructor_alloc();
    }
}

thread_local! {
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

#[test]
fn allocation_inside_thread_local_destructors_is_recorded() {
    let _lock = config_lock();
    heapsampler::set_sample_interval(1);
    std::thread::spawn(|| ON_EXIT.with(|_| {})).join().unwrap();
    let mut p = heapsampler::snapshot();
    p.symbolize();
    let live: f64 = p
        .sites_in("tls_destructor_alloc")
        .iter()
        .map(|s| s.live_bytes)
        .sum();
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    assert_eq!(live, 4321.0);
}

#[inline(never)]
fn flood_leaf() -> *mut u8 {
    // SAFETY: non-zero size, valid alignment.
    let p = unsafe { alloc(Layout::from_size_align_unchecked(24, 8)) };
    std::hint::black_box(p)
}

#[inline(never)]
fn flood_a(depth: u32, bits: u32) -> *mut u8 {
    let p = flood(depth, bits);
    std::hint::black_box(p)
}

#[inline(never)]
fn flood_b(depth: u32, bits: u32) -> *mut u8 {
    let p = flood(depth, bits);
    std::hint::black_box(p)
}

/// Each `bits` value walks a different path of `flood_a`/`flood_b` frames: a distinct stack.
#[inline(never)]
fn flood(depth: u32, bits: u32) -> *mut u8 {
    if depth == 0 {
        return flood_leaf();
    }
    if bits & 1 == 1 {
        flood_a(depth - 1, bits >> 1)
    } else {
        flood_b(depth - 1, bits >> 1)
    }
}

#[test]
fn full_tables_drop_and_count_samples_and_stay_within_bounds() {
    let _lock = config_lock();
    // Interval 1: the exact-mode bounds are the ones that apply.
    heapsampler::set_limits(heapsampler::Limits {
        exact_max_stacks: 300,
        exact_max_live_samples: 500,
        ..Default::default()
    });
    heapsampler::set_sample_interval(1);
    let before = heapsampler::snapshot().profiler;
    let mut blocks = Vec::with_capacity(4096);
    for bits in 0..4096u32 {
        blocks.push(flood(12, bits));
    }
    let during = heapsampler::snapshot().profiler;
    for p in blocks {
        // SAFETY: each block is live with this layout.
        unsafe { dealloc(p, Layout::from_size_align_unchecked(24, 8)) };
    }
    let after = heapsampler::snapshot().profiler;
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    heapsampler::set_limits(heapsampler::Limits::default());
    assert!(
        during.stacks <= 300,
        "stack table grew past its bound: {}",
        during.stacks
    );
    // Blocks sampled before this test (at the default interval) may still be live, held by
    // caches: they count against the sampling bound, not the exact one.
    assert!(
        during.live_samples <= before.live_samples + 500,
        "live table grew past its bound: {} -> {}",
        before.live_samples,
        during.live_samples
    );
    assert!(
        during.samples_dropped >= before.samples_dropped + 3000,
        "drops not counted: {} -> {}",
        before.samples_dropped,
        during.samples_dropped
    );
    assert!(after.live_samples < during.live_samples);
}
