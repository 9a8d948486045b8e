//! At small sampling intervals the profiler's own memory stays within its reported budget: a
//! program keeping millions of 48-byte objects, sampled at 4 KiB, 512 B and 64 B, where a
//! page per small sample once cost 1.2 GB (512 B) and 6.7 GB (64 B) for 3.1 M objects. Past
//! the padding bound samples are recorded unaligned, past the live table's bound dropped:
//! both counted. Each interval runs in a child process of its own (this binary re-run), so
//! that its RSS is its own; the same program with sampling off gives the baseline.
//!
//! `SMALL_INTERVALS_OBJECTS` sets the number of objects (default 2,000,000),
//! `SMALL_INTERVALS_MAX_LIVE` the live table's bound (default 2^19).

use stress::{assert_totals_match, rss_bytes};

const OBJECT: usize = 48;
/// The live table's bound in these runs: low enough that 64 B drops samples, and counts them.
const MAX_LIVE_SAMPLES: usize = 1 << 19;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Allocates `n` objects of 48 bytes, each its own block (the point), and keeps them.
#[allow(clippy::vec_box)]
#[inline(never)]
fn retain(n: usize) -> Vec<Box<[u8; OBJECT]>> {
    (0..n).map(|i| Box::new([i as u8; OBJECT])).collect()
}

/// Frees and allocates an object `rounds` times, as a program keeps churning: the cost of a
/// pair with the records held now (printed, not asserted).
#[inline(never)]
fn churn(kept: &mut [Box<[u8; OBJECT]>], rounds: usize) -> f64 {
    let start = std::time::Instant::now();
    for i in 0..rounds {
        let j = i.wrapping_mul(7919) % kept.len();
        // A new block, not the old one reused: the free and the allocation are the point.
        #[allow(clippy::replace_box)]
        {
            kept[j] = Box::new([i as u8; OBJECT]);
        }
    }
    start.elapsed().as_nanos() as f64 / rounds as f64
}

fn run(interval: u64) {
    heapsampler::set_limits(heapsampler::Limits {
        max_live_samples: env_or("SMALL_INTERVALS_MAX_LIVE", MAX_LIVE_SAMPLES),
        ..Default::default()
    });
    heapsampler::set_sample_interval(interval);
    let padding_before = heapsampler::snapshot().profiler.padding_bytes;
    let rss_before = rss_bytes();
    let mut kept = retain(env_or("SMALL_INTERVALS_OBJECTS", 2_000_000));
    assert_totals_match(&format!("interval {interval}: after retaining"));
    let rss = rss_bytes() - rss_before;
    let ns = churn(&mut kept, 200_000);
    let p = heapsampler::snapshot().profiler;
    let n = kept.len();
    drop(kept);
    let padding_after = heapsampler::snapshot().profiler.padding_bytes;
    println!(
        "interval {interval}: {} x {OBJECT} B kept; RSS +{} MiB; own {} MiB (tables {} MiB, \
         padding {} MiB) of a budget of {} MiB; {} live samples, {} unaligned, {} dropped; \
         churn {ns:.0} ns a free+alloc",
        n,
        rss >> 20,
        p.own_bytes >> 20,
        p.table_bytes >> 20,
        p.padding_bytes >> 20,
        p.own_bytes_budget >> 20,
        p.live_samples,
        p.samples_unaligned,
        p.samples_dropped,
    );
    assert!(
        p.own_bytes <= p.own_bytes_budget,
        "interval {interval}: own memory {} over its budget {}",
        p.own_bytes,
        p.own_bytes_budget
    );
    assert!(p.padding_bytes <= p.max_padding_bytes);
    assert_eq!(
        p.own_bytes_budget,
        heapsampler::Limits::current().budget_bytes(false)
    );
    // What the profiler adds to the process is its own memory: RSS beyond sampling off's
    // (passed in by the parent) is within the budget.
    if let Some(off) = std::env::var("SMALL_INTERVALS_RSS_OFF")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let added = rss.saturating_sub(off);
        assert!(
            added <= p.own_bytes_budget,
            "interval {interval}: RSS +{added} B over sampling off, budget {}",
            p.own_bytes_budget
        );
    }
    if interval == 64 && env_or("SMALL_INTERVALS_OBJECTS", 0) == 0 {
        assert!(p.samples_unaligned > 0, "64 B passes the padding bound");
        assert!(p.samples_dropped > 0, "64 B passes the live table's bound");
    }
    assert_eq!(
        padding_after, padding_before,
        "interval {interval}: every freed sample gave its padding back"
    );
    assert_totals_match(&format!("interval {interval}: after freeing"));
}

fn child(interval: u64, rss_off: Option<u64>) -> String {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(interval.to_string()).env_remove("HEAPSAMPLER");
    if let Some(off) = rss_off {
        cmd.env("SMALL_INTERVALS_RSS_OFF", off.to_string());
    }
    let out = cmd.output().expect("run a child");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    assert!(
        out.status.success(),
        "interval {interval}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn main() {
    if let Some(interval) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        run(interval);
        return;
    }
    if stress::is_plain_system() {
        println!("small_intervals: nothing to check on plain System");
        return;
    }
    let off = child(0, None);
    let rss_off: u64 = off
        .split("RSS +")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|mib| mib.parse::<u64>().ok())
        .map(|mib| mib << 20)
        .expect("the baseline's RSS");
    for interval in [4096, 512, 64] {
        child(interval, Some(rss_off));
    }
    println!("small_intervals: 3 passed, 0 failed");
}
