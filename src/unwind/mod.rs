//! Stack capture: frame pointers, stack bounds and cached DWARF unwinding.

pub(crate) mod capture;
#[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
pub(crate) mod dwarf;
/// Only in a build that forces frame pointers (`build.rs` reads the flags): anywhere else the
/// chain breaks at the first function built without them, and the default unwinder is used.
#[cfg(all(
    feature = "frame-pointers",
    heapsampler_frame_pointers_forced,
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod frame_pointers;
pub(crate) mod stack_bounds;

use capture::{FrameSink, MAX_STACK_DEPTH, OwnFunctions};

/// Captures the caller's stack into `buf`: raw return addresses, innermost first, without the
/// unwinder's and the allocator's own frames (`own`).
#[inline(never)]
pub(crate) fn capture_stack(buf: &mut [usize; MAX_STACK_DEPTH], own: &OwnFunctions) -> usize {
    let mut sink = FrameSink::new(buf, own);
    #[cfg(all(
        feature = "frame-pointers",
        heapsampler_frame_pointers_forced,
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    if frame_pointers::walk(&mut sink) {
        return sink.finish();
    }
    #[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
    if dwarf::walk(&mut sink) {
        return sink.finish();
    }
    let mut cb = |frame: &backtrace::Frame| sink.push(frame.ip() as usize);
    // SAFETY: `trace_unsynchronized` is unsafe only because it takes no lock; the callback
    // writes into fixed arrays, allocates nothing, and never panics (indices are checked).
    unsafe { backtrace::trace_unsynchronized(&mut cb) };
    sink.finish()
}
