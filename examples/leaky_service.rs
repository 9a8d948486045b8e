//! A small service with one real leak, profiled by heapsampler.
//!
//! ```text
//! cargo run --release --example leaky_service
//! ```
//!
//! Three worker threads serve requests for about 15 seconds. Each request allocates heavily
//! and frees it all (parsing, rendering), fills a bounded response cache that plateaus after
//! a few seconds, and — the bug — keeps a little session state in a global list that nobody
//! ever cleans up. A [`heapsampler::Reporter`] writes a JSON heap report every second into
//! `./heap-reports`; at the end the program reads the last report back and prints the top
//! call sites and the leak suspects. The leak is in `leak_session_state`; the cache and the
//! request churn must not be flagged. `LEAKY_SERVICE_SECONDS=<n>` changes the run time.

use heapsampler::report::json::ReportSite;
use heapsampler::{Report, Reporter, Sampler};
use std::alloc::System;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

/// Requests per second, over all workers.
const REQUESTS_PER_SEC: u64 = 2000;
const WORKERS: u64 = 3;
/// Bytes of session state leaked per request: 3 MB/s in all, about six sample intervals
/// (T = 512 KiB) per one-second report window.
const LEAK_PER_REQUEST: usize = 1536;
/// The cache holds at most this many responses of `CACHE_ENTRY` bytes: 8 MiB when full.
const CACHE_ENTRIES: usize = 4096;
const CACHE_ENTRY: usize = 2048;

/// The bug: session state appended to a global list and never removed.
static SESSIONS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn leak_session_state(request: u64) {
    let state = vec![(request % 251) as u8; LEAK_PER_REQUEST];
    SESSIONS.lock().unwrap().push(state);
}

/// A bounded FIFO cache: fills up, then every insert evicts the oldest entry.
struct ResponseCache {
    map: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

static CACHE: Mutex<Option<ResponseCache>> = Mutex::new(None);

#[inline(never)]
fn cache_response(key: u64, response: &[u8]) {
    let entry = response[..CACHE_ENTRY.min(response.len())].to_vec();
    let mut cache = CACHE.lock().unwrap();
    let cache = cache.get_or_insert_with(|| ResponseCache {
        map: HashMap::with_capacity(CACHE_ENTRIES + 1),
        order: VecDeque::with_capacity(CACHE_ENTRIES + 1),
    });
    if cache.map.insert(key, entry).is_none() {
        cache.order.push_back(key);
    }
    while cache.order.len() > CACHE_ENTRIES {
        if let Some(old) = cache.order.pop_front() {
            cache.map.remove(&old);
        }
    }
}

/// Heavy, short-lived allocation: a request body, a parsed form, a rendered response.
#[inline(never)]
fn render_response(request: u64) -> Vec<u8> {
    let body: Vec<u8> = (0..32 * 1024).map(|i| (i as u64 ^ request) as u8).collect();
    let fields: Vec<String> = body
        .chunks(512)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect();
    let mut response = Vec::with_capacity(64 * 1024);
    for f in &fields {
        response.extend_from_slice(f.as_bytes());
        response.extend_from_slice(&body[..900]);
    }
    response
}

// Not inlined, so that each function below has one call site and so one call stack.
#[inline(never)]
fn handle_request(request: u64) {
    let response = render_response(request);
    // About one request in two misses the cache; the cache fills in about 4 s.
    if request.is_multiple_of(2) {
        cache_response(request, &response);
    }
    leak_session_state(request);
}

fn worker(index: u64, until: Instant) {
    // Opaque to the optimiser: a loop of constant length would be unrolled into several
    // call sites of `handle_request`, each its own call stack (and so its own report site).
    let per_tick = std::hint::black_box(REQUESTS_PER_SEC / WORKERS / 100);
    let mut request = index << 40;
    let mut tick = Instant::now();
    while Instant::now() < until {
        for _ in 0..per_tick {
            handle_request(request);
            request += 1;
        }
        tick += Duration::from_millis(10);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::var("LEAKY_SERVICE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let reports = Reporter::new("heap-reports")
        .every(Duration::from_secs(1))
        .keep(60)
        .start()?;
    println!("serving for {seconds} s; a heap report every second into ./heap-reports ...");
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(i, until))
        })
        .collect::<Result<_, _>>()?;
    for w in workers {
        w.join().expect("worker panicked");
    }
    // The last periodic report covers a full one-second window; the final report written
    // when the reporter stops covers only the moment since then.
    let last = reports.status().last_path.ok_or("no report was written")?;
    let final_report = reports.stop()?;
    println!(
        "last periodic report: {}; final report: {}",
        last.display(),
        final_report.display()
    );

    let report = Report::read(&last)?;
    let t = &report.totals.counts;
    let own = t
        .overhead_allocated_bytes
        .saturating_sub(t.overhead_freed_bytes);
    println!(
        "\nlive heap {:.1} MiB (exact; {:.1} MiB of it the profiler's own symbol tables and \
         buffers), allocating {:.1} MiB/s over the last {:.1} s; sample interval {} KiB",
        t.live_bytes as f64 / 1048576.0,
        own as f64 / 1048576.0,
        report.totals.allocated_bytes_per_sec / 1048576.0,
        report.window_ms as f64 / 1000.0,
        report.sample_interval / 1024
    );
    // The innermost function of a site outside std, for display.
    let name = |site: &ReportSite| report.top_function(site).unwrap_or("?").to_string();
    let table = |title: &str, sites: Vec<&ReportSite>| {
        println!("\n{title}:");
        println!("{:>10} {:>12}  function", "live MiB", "alloc MiB/s");
        for site in sites {
            println!(
                "{:>10.2} {:>12.2}  {}",
                site.live_bytes / 1048576.0,
                site.alloc_bytes_per_sec / 1048576.0,
                name(site)
            );
        }
    };
    table(
        "top sites by live bytes (estimated)",
        report.sites.iter().take(5).collect(),
    );
    let mut by_rate: Vec<&ReportSite> = report.sites.iter().collect();
    by_rate.sort_by(|a, b| b.alloc_bytes_per_sec.total_cmp(&a.alloc_bytes_per_sec));
    table(
        "top sites by allocation rate (estimated)",
        by_rate.into_iter().take(5).collect(),
    );
    println!("\nleak suspects:");
    if report.leak_suspects.is_empty() {
        println!("  (none)");
    }
    let mut named = Vec::new();
    for suspect in &report.leak_suspects {
        let site = report.sites.iter().find(|s| s.stack_id == suspect.stack_id);
        let function = site.map(name).unwrap_or_else(|| "?".into());
        println!(
            "  {function}: growing {:.2} MiB/s, {:.1} MiB live, confidence {:.3} over {} reports",
            suspect.growth_bytes_per_sec / 1048576.0,
            suspect.live_bytes / 1048576.0,
            suspect.confidence,
            suspect.reports_considered
        );
        named.push(function);
    }
    let found_leak = named.iter().any(|n| n.contains("leak_session_state"));
    let false_alarm = named
        .iter()
        .any(|n| n.contains("cache_response") || n.contains("render_response"));
    if found_leak && !false_alarm {
        println!(
            "\nfound the leak in leak_session_state; the cache and the request churn were not flagged"
        );
        Ok(())
    } else {
        println!(
            "\nunexpected verdict: leak found = {found_leak}, cache or churn flagged = {false_alarm}"
        );
        std::process::exit(1)
    }
}
