//! What `HEAPSAMPLER` starts before `main`: the interval, the reporter, the endpoint. Apart
//! from the parsing (`config`), so that the reporter and the endpoint, which read the
//! settings, are started from above them.

use crate::record::countdown::interval_is_explicit;
use crate::service::env_config::env_config;

/// Whether a [`Sampler`](crate::Sampler) is this program's global allocator: the first
/// allocation of a thread always takes the sampler's cold path, which numbers the thread. A
/// program that only links the library (the `heapsampler` CLI, say) must not start a reporter.
fn sampler_is_global_allocator() -> bool {
    drop(std::hint::black_box(Box::new(0u64)));
    crate::record::countdown::current_thread() != 0
}

/// Applies the variable: the interval (unless the program chose one), then the reporter and
/// the endpoint.
fn apply_env() {
    if !sampler_is_global_allocator() {
        return;
    }
    let cfg = env_config();
    if cfg.enabled == Some(false) {
        if !interval_is_explicit() {
            crate::record::countdown::store_interval(0);
        }
        return;
    }
    if let Some(interval) = cfg.interval
        && !interval_is_explicit()
    {
        crate::record::countdown::store_interval(interval);
    }
    if cfg.dir.is_some() {
        crate::service::env_reporter::start_env_reporter(cfg);
    }
    if let Some(addr) = &cfg.http {
        #[cfg(feature = "http")]
        crate::service::http::start_env_endpoint(addr);
        #[cfg(not(feature = "http"))]
        crate::service::env_config::warn(&format!(
            "HEAPSAMPLER: http={addr} needs heapsampler's `http` feature; no endpoint"
        ));
    }
}

extern "C" fn init_from_env() {
    crate::read::profile::note_process_start();
    // A panic must not unwind out of an `extern "C"` constructor (that aborts the process).
    let _ = std::panic::catch_unwind(apply_env);
}

/// Runs [`init_from_env`] before `main`: the dynamic loader calls every pointer in
/// `.init_array`. `#[used]` keeps the otherwise unreferenced static in the final binary.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT_FROM_ENV: extern "C" fn() = init_from_env;
