//! What a periodic report costs: building and rendering a 10,000-site report with symbols
//! cached (the reporter's steady state), the first report of a process (debug info loaded),
//! symbolization from a cleared cache, and the atomic file write.
//!
//! Run: `cargo bench --bench report`. The profile is synthetic — 10,000 sites of 16 frames
//! drawn from 4,000 distinct addresses inside this binary's code, so symbolization does real
//! debug-info lookups — and the rates are computed against a previous profile.

use criterion::{Criterion, criterion_group, criterion_main};
use heapsampler::report::mappings;
use heapsampler::{Profile, Report, Sampler, Site, SiteThread};
use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

const SITES: usize = 10_000;
const DEPTH: usize = 16;
const DISTINCT_ADDRESSES: usize = 4_000;

/// Distinct addresses spread over this executable's code.
fn code_addresses() -> Vec<u64> {
    let exe = std::env::current_exe().unwrap().display().to_string();
    let text = mappings::current()
        .into_iter()
        .find(|m| m.path == exe)
        .expect("executable mapping");
    let stride = ((text.end - text.start) / DISTINCT_ADDRESSES as u64).max(1);
    (0..DISTINCT_ADDRESSES as u64)
        .map(|i| text.start + i * stride + 1)
        .collect()
}

fn profile(pool: &[u64], timestamp_ms: u64, scale: f64) -> Profile {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let sites = (0..SITES as u32)
        .map(|i| {
            let live = (next() % 1_000_000) as f64;
            Site {
                stack_id: i,
                addresses: (0..DEPTH)
                    .map(|_| pool[next() as usize % pool.len()])
                    .collect(),
                frames: Vec::new(),
                live_bytes: live,
                live_objects: live / 64.0,
                alloc_bytes: live * 10.0 * scale,
                alloc_objects: live / 6.4 * scale,
                samples: 10,
                live_samples: 1,
                threads: vec![
                    SiteThread {
                        thread: 1,
                        name: "worker-1".into(),
                        alloc_bytes: live * 6.0,
                        live_bytes: live,
                    },
                    SiteThread {
                        thread: 2,
                        name: "worker-2".into(),
                        alloc_bytes: live * 4.0,
                        live_bytes: 0.0,
                    },
                ],
            }
        })
        .collect();
    Profile {
        pid: std::process::id(),
        timestamp_ms,
        sample_interval: 512 * 1024,
        sites,
        ..Profile::default()
    }
}

fn report(c: &mut Criterion) {
    let pool = code_addresses();
    let previous = profile(&pool, 1_000_000, 1.0);
    let raw = profile(&pool, 1_060_000, 1.5);
    let maps = mappings::current();

    // The first symbolization of the process loads the debug info: once per process, so it
    // is timed once here rather than by criterion. This is what the reporter does: one
    // lookup per distinct address, into the report's locations.
    let started = Instant::now();
    let first = Report::from_profile(&raw, Some(&previous), vec![], maps.clone());
    println!(
        "first report of {SITES} sites x {DEPTH} frames ({DISTINCT_ADDRESSES} distinct addresses), \
         debug info loaded: {:?}",
        started.elapsed()
    );
    let frames: usize = first.locations.iter().map(|l| l.frames.len()).sum();
    let mut json = Vec::new();
    first.write_to(&mut json).unwrap();
    println!(
        "report: {} locations, {frames} frames, {:.1} MiB of JSON",
        first.locations.len(),
        json.len() as f64 / 1048576.0
    );
    let mut symbolized = raw.clone();
    symbolized.symbolize();

    let mut g = c.benchmark_group("report_10k_sites");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // The reporter's work per period after the snapshot: build (symbols from the warm
    // cache) and render the JSON.
    g.bench_function("render_symbols_cached", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(json.len());
            Report::from_profile(&raw, Some(&previous), vec![], maps.clone())
                .write_to(&mut out)
                .unwrap();
            black_box(out)
        })
    });
    // The same from a profile the caller symbolized (frames grouped back into locations).
    g.bench_function("render_from_symbolized_profile", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(json.len());
            Report::from_profile(&symbolized, Some(&previous), vec![], maps.clone())
                .write_to(&mut out)
                .unwrap();
            black_box(out)
        })
    });
    // Symbolizing every distinct address again, debug info already loaded.
    g.bench_function("build_cleared_symbol_cache", |b| {
        b.iter(|| {
            heapsampler::symbolize::clear_cache();
            black_box(Report::from_profile(
                &raw,
                Some(&previous),
                vec![],
                maps.clone(),
            ))
        })
    });
    // `Profile::symbolize`: a frame list per site (what the reporter avoids).
    g.bench_function("profile_symbolize_warm_cache", |b| {
        b.iter(|| {
            let mut p = raw.clone();
            p.symbolize();
            black_box(p)
        })
    });
    let dir = std::env::temp_dir().join(format!("hs-bench-report-{}", std::process::id()));
    g.bench_function("write_atomic_with_fsync", |b| {
        b.iter(|| first.write_atomic(&dir, "heap-bench.json").unwrap())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, report);
criterion_main!(benches);
