//! Configuration: explicit API calls, and the `HEAPSAMPLER` environment variable.

use core::sync::atomic::{AtomicBool, Ordering};

static INTERVAL_EXPLICIT: AtomicBool = AtomicBool::new(false);

/// Records that the program chose the interval itself, so the environment cannot override it.
pub(crate) fn note_explicit_interval() {
    INTERVAL_EXPLICIT.store(true, Ordering::Relaxed);
}

/// Whether the program set the interval explicitly.
#[allow(dead_code)]
pub(crate) fn interval_is_explicit() -> bool {
    INTERVAL_EXPLICIT.load(Ordering::Relaxed)
}
