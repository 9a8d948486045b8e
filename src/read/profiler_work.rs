//! The profiler's own work done on a program's thread: a report built, parsed or written, a
//! reporter's round. Renderers and the service run it through [`profiler_work`] instead of
//! taking the allocator's reentrancy guard themselves.

/// Runs `f` as the profiler's own work: what it allocates goes straight to the inner
/// allocator, is counted as overhead (`Totals::overhead_*`) and is never sampled, so reading
/// or writing a report cannot bias the program's profile. Nests freely.
pub(crate) fn profiler_work<R>(f: impl FnOnce() -> R) -> R {
    let _guard = crate::sys::guard::enter_guard();
    f()
}
