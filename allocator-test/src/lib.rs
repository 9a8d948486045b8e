//! Installs heapsampler as the global allocator for the integration tests, and holds the
//! helpers they share. Every test file starts with `use allocator_test as _;` (or uses a
//! helper) so that this crate, and so the allocator, is linked in.

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

/// The allocator under test.
#[global_allocator]
pub static GLOBAL: heapsampler::Sampler<System> = heapsampler::Sampler::new(System);

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
