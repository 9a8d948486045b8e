//! CPU time of the calling thread: on a loaded machine wall time says little
//! (`examples/pprof_cost.rs`, `examples/symbolize_cost.rs`).

/// CPU time of this thread, ms.
pub fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}
