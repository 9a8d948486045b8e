//! What leak detection costs: a detector over K = 10 profiles of 10,000 sites each.
//!
//! Run: `cargo bench --bench leaks`. Synthetic profiles: 9,900 sites whose live bytes wander
//! by a few sample intervals around a constant (so most of them pass the cheap first check
//! and get the full statistical verdict: the worst case), and 100 that leak.
//!
//! - `observe/steady`: one more profile into a detector that already holds 9 (the reporter's
//!   cost per report).
//! - `observe/ten`: ten profiles into a fresh detector (the CLI judging ten saved reports).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use heapsampler::{LeakDetector, Profile, Site};
use std::hint::black_box;

const SITES: u32 = 10_000;
const LEAKS: u32 = 100;
const T: f64 = 512.0 * 1024.0;

fn profiles() -> Vec<Profile> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..10u64)
        .map(|r| {
            let sites = (0..SITES)
                .map(|id| {
                    let live = if id < LEAKS {
                        (r as f64 + 1.0) * 6.0 * T
                    } else {
                        50.0 * T + (unit() - 0.5) * 20.0 * T
                    };
                    Site {
                        stack_id: id,
                        live_bytes: live,
                        alloc_bytes: live + r as f64 * 30.0 * T,
                        ..Default::default()
                    }
                })
                .collect();
            Profile {
                pid: 1,
                timestamp_ms: r * 60_000,
                sample_interval: T as u64,
                sites,
                ..Default::default()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let profiles = profiles();
    let mut warm = LeakDetector::default();
    for p in &profiles[..9] {
        warm.observe(p);
    }
    let flagged = warm.clone().observe(&profiles[9]).len();
    assert_eq!(flagged, LEAKS as usize, "the synthetic leaks are found");
    let mut group = c.benchmark_group("observe");
    group.bench_function("steady", |b| {
        b.iter_batched(
            || warm.clone(),
            |mut d| black_box(d.observe(&profiles[9])),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("ten", |b| {
        b.iter(|| black_box(LeakDetector::default().suspects_in(&profiles)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
