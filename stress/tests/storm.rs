//! A thread storm: many threads allocate and free blocks of 1 B–64 KiB through a shared table
//! (so most frees happen on another thread than the allocation), 1000 short threads are
//! created and ended among them, then everything is freed. At the end heapsampler's totals
//! equal the oracle's exactly, and the memory the burst took has gone back: RSS is within
//! 2× that of the same run on plain `System` (this binary run again as a child with
//! `STRESS_ALLOCATOR=system`) + 16 MiB, in one of up to three pairs of runs.
//!
//! Knobs, for measuring by hand (the defaults are the test's):
//! `STORM_THREADS` (32), `STORM_OPS` per thread (50000), `STORM_SHORT` short threads (1000),
//! `STORM_INTERVAL` sampling interval in bytes (default: the profiler's, 512 KiB; 0 = off),
//! `STORM_MEASURE_ONLY=1` prints the figures without comparing them to a System run,
//! `STORM_TRIM=1` also prints RSS after `malloc_trim(0)` (what glibc held free but resident).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use stress::{assert_totals_match, is_plain_system, rss_bytes};

/// Blocks each thread keeps live.
const RING: usize = 64;
/// One freed block in this many goes to another thread to free.
const PASS_EVERY: usize = 4;
/// A thread frees what others passed to it every this many allocations.
const DRAIN_EVERY: usize = 64;
/// Short threads run this many at a time, among the long ones.
const SHORT_WAVE: usize = 8;
const SHORT_OPS: usize = 200;
/// RSS bound: this many times System's, plus [`SLACK`].
const FACTOR: u64 = 2;
const SLACK: u64 = 16 << 20;
/// Pairs of runs the RSS bound is tried on (see `main`).
const ATTEMPTS: usize = 3;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a per-thread stream, no allocation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 1 B–64 KiB, uniform.
    fn size(&mut self) -> usize {
        (self.next() % 65536) as usize + 1
    }
}

/// Blocks passed to a long thread for it to free; closed once it has ended (blocks are then
/// freed by their holder instead, so no inbox fills up behind a thread that is gone).
struct Inbox {
    open: AtomicBool,
    blocks: Mutex<Vec<Vec<u8>>>,
}

fn lock(inbox: &Inbox) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    inbox.blocks.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ops` allocations of random sizes, each kept for the next [`RING`] allocations of the
/// thread, then freed: by this thread, or every [`PASS_EVERY`]th by another one (it goes to a
/// random inbox, which its owner empties every [`DRAIN_EVERY`] allocations). At the end the
/// thread frees what it holds and what its inbox holds.
fn churn(inboxes: &[Inbox], own: Option<usize>, rng: &mut Rng, ops: usize) {
    let mut ring: Vec<Vec<u8>> = Vec::with_capacity(RING);
    for op in 0..ops {
        let size = rng.size();
        let mut block = Vec::<u8>::with_capacity(size);
        // Touch a byte a page, as a program writing its buffers would: RSS counts touched
        // pages only.
        for i in (0..size).step_by(4096) {
            // SAFETY: `i < size`, within the capacity; a spare byte is written, not read.
            unsafe { block.as_mut_ptr().add(i).write(1) };
        }
        if ring.len() < RING {
            ring.push(block);
        } else {
            let old = std::mem::replace(&mut ring[op % RING], block);
            if op % PASS_EVERY == 0 {
                let to = &inboxes[(rng.next() % inboxes.len() as u64) as usize];
                let mut blocks = lock(to);
                if to.open.load(Ordering::Relaxed) {
                    blocks.push(old);
                }
            } else {
                drop(old);
            }
        }
        if op % DRAIN_EVERY == 0
            && let Some(own) = own
        {
            drop(std::mem::take(&mut *lock(&inboxes[own])));
        }
    }
    drop(ring);
    if let Some(own) = own {
        let mut blocks = lock(&inboxes[own]);
        inboxes[own].open.store(false, Ordering::Relaxed);
        drop(std::mem::take(&mut *blocks));
    }
}

fn storm(threads: usize, ops: usize, short: usize) -> (u64, u64) {
    let inboxes: Vec<Inbox> = (0..threads)
        .map(|_| Inbox {
            open: AtomicBool::new(true),
            blocks: Mutex::new(Vec::new()),
        })
        .collect();
    let inboxes = &inboxes;
    let peak = AtomicU64::new(0);
    // Every thread is joined, not only waited for by its scope: a scope returns once the
    // closures are done, before the threads' exit hooks have published their last batches.
    std::thread::scope(|s| {
        let long: Vec<_> = (0..threads)
            .map(|t| {
                let mut rng = Rng(0x9e37_79b9 + t as u64 * 7919);
                s.spawn(move || churn(inboxes, Some(t), &mut rng, ops))
            })
            .collect();
        // Short threads, a wave at a time, while the long ones run.
        let mut started = 0;
        while started < short {
            let wave = SHORT_WAVE.min(short - started);
            let handles: Vec<_> = (0..wave)
                .map(|i| {
                    let mut rng = Rng(0x5eed + (started + i) as u64 * 104_729);
                    s.spawn(move || churn(inboxes, None, &mut rng, SHORT_OPS))
                })
                .collect();
            handles
                .into_iter()
                .for_each(|h| h.join().expect("a short thread"));
            started += wave;
            peak.fetch_max(rss_bytes(), Ordering::Relaxed);
        }
        long.into_iter()
            .for_each(|h| h.join().expect("a long thread"));
    });
    let peak = peak.load(Ordering::Relaxed).max(rss_bytes());
    // What was passed to threads that had ended: freed here, the last cross-thread frees.
    for inbox in inboxes {
        drop(std::mem::take(&mut *lock(inbox)));
    }
    (peak, rss_bytes())
}

fn main() {
    let threads = knob("STORM_THREADS", 32) as usize;
    let ops = knob("STORM_OPS", 50_000) as usize;
    let short = knob("STORM_SHORT", 1000) as usize;
    if let Ok(interval) = std::env::var("STORM_INTERVAL")
        && let Ok(interval) = interval.parse()
    {
        heapsampler::set_sample_interval(interval);
    }
    let before = rss_bytes();
    let (peak, after) = storm(threads, ops, short);
    let who = if is_plain_system() {
        "system".to_string()
    } else {
        format!("sampler@{}", heapsampler::sample_interval())
    };
    println!(
        "storm {who}: {threads} threads x {ops} ops + {short} short threads: \
         rss before {} KiB, peak {} KiB, after {} KiB",
        before >> 10,
        peak >> 10,
        after >> 10
    );
    println!("rss_after={after}");
    if std::env::var_os("STORM_TRIM").is_some() {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        println!("after malloc_trim: {} KiB", rss_bytes() >> 10);
    }
    if is_plain_system() {
        return;
    }
    assert_totals_match("after the storm, everything freed");
    if std::env::var_os("STORM_MEASURE_ONLY").is_some() {
        return;
    }
    // glibc's figure after a burst varies from run to run with which blocks each arena freed
    // last (plain System alone: 11-48 MB over twelve runs of the default storm), so the bound is
    // held against up to three pairs of runs, the later ones both in fresh processes.
    let mut pairs = Vec::new();
    let mut ours = after;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            ours = rerun(&[("STORM_MEASURE_ONLY", "1")]);
        }
        let system = rerun(&[("STRESS_ALLOCATOR", "system")]);
        pairs.push((ours >> 10, system >> 10));
        if ours <= FACTOR * system + SLACK {
            println!("storm: 1 passed, 0 failed");
            return;
        }
    }
    panic!(
        "RSS after the storm above 2 x System's + 16 MiB in every pair (profiler KiB, System \
         KiB): {pairs:?}"
    );
}

/// Runs this storm again in a child with `env` added; its RSS after the storm.
fn rerun(env: &[(&str, &str)]) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .envs(env.iter().copied())
        .output()
        .expect("the child run starts");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child run {env:?} failed: {text}");
    print!("{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("rss_after="))
        .and_then(|v| v.trim().parse().ok())
        .expect("the child run reports its RSS")
}
