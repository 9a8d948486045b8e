//! Installs heapsampler as the global allocator for the integration tests, and holds the
//! helpers they share. Every test file starts with `use allocator_test as _;` (or uses a
//! helper) so that this crate, and so the allocator, is linked in.

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

/// The allocator under test.
#[global_allocator]
pub static GLOBAL: heapsampler::Sampler<System> = heapsampler::Sampler::new(System);

pub mod leak_sim;

static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// Serialises tests that change process-wide settings (interval, seed, limits) within one
/// test binary; libtest runs tests in parallel threads.
pub fn config_lock() -> MutexGuard<'static, ()> {
    CONFIG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Estimated live bytes summed over the sites whose stack calls `function`.
pub fn live_bytes_in(profile: &heapsampler::Profile, function: &str) -> f64 {
    profile
        .sites_in(function)
        .iter()
        .map(|s| s.live_bytes)
        .sum()
}

/// Estimated allocated bytes summed over the sites whose stack calls `function`.
pub fn alloc_bytes_in(profile: &heapsampler::Profile, function: &str) -> f64 {
    profile
        .sites_in(function)
        .iter()
        .map(|s| s.alloc_bytes)
        .sum()
}

/// The program's own allocation traffic between two [`heapsampler::totals`] readings:
/// `(allocated bytes, allocations, freed bytes, frees)`, without the profiler's own
/// allocations (e.g. parking_lot's bookkeeping when threads contend on a table lock), which
/// are part of the process's heap but counted apart.
pub fn program_traffic(before: &heapsampler::Totals, after: &heapsampler::Totals) -> [u64; 4] {
    let d = |f: fn(&heapsampler::Totals) -> u64| f(after) - f(before);
    [
        d(|t| t.alloc_bytes) - d(|t| t.overhead_alloc_bytes),
        d(|t| t.alloc_objects) - d(|t| t.overhead_alloc_objects),
        d(|t| t.free_bytes) - d(|t| t.overhead_free_bytes),
        d(|t| t.free_objects) - d(|t| t.overhead_free_objects),
    ]
}

/// The `heap-*.json` report files in `dir`, sorted by name (so by pid, then sequence).
pub fn report_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("heap-") && n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

/// The text of a caught panic (`String` or `&str` payloads; empty otherwise).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
