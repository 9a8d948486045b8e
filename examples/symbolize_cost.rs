//! What symbolizing a report costs in a large binary: the time of the first report and the
//! resident memory it adds, measured in process.
//!
//! ```text
//! benches/symbolize_cost.sh            # both symbolizers, release build, a table
//! cargo run --release --example symbolize_cost -- report [DIR]
//! cargo run --release --example symbolize_cost -- backtrace [DIR]
//! ```
//!
//! The workload is `syn` parsing every `.rs` file under DIR (default: the cargo registry's
//! sources, else this crate's) at a 64 KiB sampling interval, keeping the syntax trees: a few
//! thousand call sites in a binary of tens of MB with full debug info. Then the sites'
//! addresses are symbolized (`report`: heapsampler's symbolizer, as a report does) or resolved
//! with the `backtrace` crate and kept in a cache (`backtrace`: the symbolizer heapsampler
//! used before); then a whole report is built, symbols cached.
//! RSS is read from `/proc/self/status` before, after, and at the peak (reset through
//! `/proc/self/clear_refs` just before).

use heapsampler::{Report, Sampler, report::mappings};
use std::alloc::System;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../benches/support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::thread_cpu_ms;

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

/// Function, file, line: what the old symbolizer's cache kept per frame.
type Resolved = (Option<String>, Option<String>, Option<u32>);

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Page faults of this thread so far (each maps up to 16 pages of a file around the one read).
fn thread_faults() -> i64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage` owned by this frame.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_minflt + usage.ru_majflt
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if out.len() >= limit {
            return;
        }
        if path.is_dir() {
            rust_files(&path, out, limit);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "report".into());
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        home.map(|h| h.join("registry/src"))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    });
    let mut files = Vec::new();
    rust_files(&dir, &mut files, 3000);

    heapsampler::set_sample_interval(64 << 10);
    let trees: Vec<syn::File> = files
        .iter()
        .filter_map(|f| syn::parse_file(&std::fs::read_to_string(f).ok()?).ok())
        .collect();
    let profile = heapsampler::snapshot();
    heapsampler::set_sample_interval(0);
    let mut addresses: Vec<u64> = profile
        .sites
        .iter()
        .flat_map(|s| s.addresses.iter().copied())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let maps = mappings::current();

    let rss_before = status_kib("VmRSS");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let cpu_start = thread_cpu_ms();
    let faults_start = thread_faults();
    let mut kept: HashMap<u64, Vec<Resolved>> = HashMap::new();
    let named = match mode.as_str() {
        "report" => heapsampler::symbolize::resolve_all(&addresses)
            .iter()
            .filter(|frames| frames.iter().any(|f| f.function.is_some()))
            .count(),
        "backtrace" => {
            for &a in &addresses {
                let mut frames = Vec::new();
                backtrace::resolve(a as usize as *mut core::ffi::c_void, |sym| {
                    frames.push((
                        sym.name().map(|n| format!("{n:#}")),
                        sym.filename().map(|p| p.display().to_string()),
                        sym.lineno(),
                    ));
                });
                kept.insert(a, frames);
            }
            kept.values()
                .filter(|f| f.iter().any(|f| f.0.is_some()))
                .count()
        }
        other => {
            eprintln!("symbolize_cost: unknown mode {other:?} (report or backtrace)");
            std::process::exit(2);
        }
    };
    let first = start.elapsed();
    let first_cpu = thread_cpu_ms() - cpu_start;
    let first_faults = thread_faults() - faults_start;
    let rss_after = status_kib("VmRSS");
    let rss_peak = status_kib("VmHWM");
    // Again: every address is in the symbol cache.
    let start = Instant::now();
    if mode == "report" {
        std::hint::black_box(heapsampler::symbolize::resolve_all(&addresses));
    }
    let second = start.elapsed();
    // A whole report of the profile (symbols cached): what the reporter writes.
    let start = Instant::now();
    std::hint::black_box(Report::from_profile(&profile, None, Vec::new(), maps));
    let whole = start.elapsed();
    let binary = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map_or(0, |m| m.len());
    let t = heapsampler::totals();
    println!(
        "mode={mode} binary_mb={:.1} files={} sites={} addresses={} named={named} \
         first_ms={:.1} first_cpu_ms={first_cpu:.1} first_page_faults={first_faults} second_ms={:.1} report_ms={:.1} rss_before_mib={:.1} rss_added_mib={:.1} \
         rss_peak_added_mib={:.1} profiler_overhead_live_mib={:.1}",
        binary as f64 / 1e6,
        trees.len(),
        profile.sites.len(),
        addresses.len(),
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        whole.as_secs_f64() * 1e3,
        rss_before as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0,
        (rss_peak as f64 - rss_before as f64) / 1024.0,
        (t.overhead_alloc_bytes.saturating_sub(t.overhead_free_bytes)) as f64 / (1 << 20) as f64,
    );
    drop(kept);
}
