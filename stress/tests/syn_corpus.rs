//! A real, allocation-heavy program nobody here wrote — `syn` parsing the `.rs` files of the
//! local cargo registry, keeping every fifth syntax tree alive — checked against the oracle at
//! the default interval and in exact mode. Each mode runs in a child process of its own (this
//! binary re-run with the mode as argument), so that exact mode starts before anything else
//! of the program is live.
//!
//! Exact mode: totals equal the oracle, nothing is dropped, and the sites hold every live byte
//! the program allocated since exact mode started — what the profile does not attribute
//! (`unattributed_live_bytes`) is exactly what was live before, plus the profiler's own
//! allocations (the totals' `overhead_*`).

use std::path::{Path, PathBuf};
use stress::{assert_totals_match, oracle};

/// Files parsed at most, and bytes of source: a few seconds in exact mode.
const MAX_FILES: usize = 300;
const MAX_SOURCE_BYTES: u64 = 3 << 20;

fn registry_src() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    home.join("registry").join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The corpus, in path order, capped; the sources are read in full before parsing starts.
fn corpus() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&registry_src(), &mut files);
    let mut sources = Vec::new();
    let mut bytes = 0;
    for path in files {
        if sources.len() >= MAX_FILES || bytes >= MAX_SOURCE_BYTES {
            break;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            bytes += text.len() as u64;
            sources.push(text);
        }
    }
    sources
}

/// Parses every source and keeps every fifth tree: returns the kept trees and how many
/// sources parsed.
fn parse_all(sources: &[String]) -> (Vec<syn::File>, usize) {
    let mut kept = Vec::new();
    let mut parsed = 0;
    for (i, text) in sources.iter().enumerate() {
        if let Ok(file) = syn::parse_file(text) {
            parsed += 1;
            if i % 5 == 0 {
                kept.push(file);
            }
        }
    }
    (kept, parsed)
}

fn sites_live_bytes(profile: &heapsampler::Profile) -> f64 {
    profile.sites.iter().map(|s| s.live_bytes).sum()
}

fn run(mode: &str) {
    if mode == "exact" {
        heapsampler::set_sample_interval(1);
    } else {
        heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    }
    // Everything live now was allocated before exact mode: the profile cannot attribute it.
    let before = oracle().live_bytes();
    let sources = corpus();
    let source_bytes: usize = sources.iter().map(String::len).sum();
    assert!(
        sources.len() >= 50,
        "too few sources under {:?}",
        registry_src()
    );
    let start = std::time::Instant::now();
    let (kept, parsed) = parse_all(&sources);
    let elapsed = start.elapsed();
    if stress::is_plain_system() {
        // The same run on plain System, for comparison (`STRESS_ALLOCATOR=system`).
        println!(
            "syn_corpus on System: {} files parsed in {elapsed:.2?}, {} trees kept; RSS {} MiB",
            parsed,
            kept.len(),
            stress::rss_bytes() >> 20
        );
        return;
    }
    assert_totals_match(&format!("{mode}: after parsing"));
    let live = oracle().live_bytes();
    let t = heapsampler::totals();
    // The profiler's own work allocated through the global allocator (the stack walker's
    // caches): counted in the totals, never a site.
    let overhead = t.overhead_alloc_bytes - t.overhead_free_bytes;
    let profile = heapsampler::snapshot();
    let stats = &profile.profiler;
    println!(
        "syn_corpus {mode}: {} files ({source_bytes} bytes), {parsed} parsed in {elapsed:.2?}, \
         {} trees kept; RSS {} MiB; \
         live {live} B ({before} B before, {overhead} B the profiler's); {} stacks, {} live \
         samples, {} dropped; profiler own {} B of a budget of {} B",
        sources.len(),
        kept.len(),
        stress::rss_bytes() >> 20,
        stats.stacks,
        stats.live_samples,
        stats.samples_dropped,
        stats.own_bytes,
        stats.own_bytes_budget,
    );
    assert!(
        stats.own_bytes <= stats.own_bytes_budget,
        "{mode}: own memory over budget"
    );
    if mode == "exact" {
        assert_eq!(stats.samples_dropped, 0, "exact mode dropped samples");
        let sites = sites_live_bytes(&profile);
        assert_eq!(
            sites as u64,
            live - before - overhead,
            "exact mode: the sites hold every byte the program allocated since exact mode \
             started ({} sites)",
            profile.sites.len()
        );
        assert_eq!(
            stats.unattributed_live_bytes,
            (before + overhead) as f64,
            "exact mode: what the profile does not attribute is what was live before, and the \
             profiler's own"
        );
    }
    drop(profile);
    drop(kept);
    drop(sources);
    assert_totals_match(&format!("{mode}: after freeing the trees"));
}

fn main() {
    if let Some(mode) = std::env::args()
        .nth(1)
        .filter(|m| m == "exact" || m == "512k")
    {
        run(&mode);
        return;
    }
    if stress::is_plain_system() {
        println!("syn_corpus: nothing to check on plain System");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for mode in ["512k", "exact"] {
        let status = std::process::Command::new(&exe)
            .arg(mode)
            .env_remove("HEAPSAMPLER")
            .status()
            .expect("run a child");
        assert!(status.success(), "{mode}: {status}");
    }
    println!("syn_corpus: 2 passed, 0 failed");
}
