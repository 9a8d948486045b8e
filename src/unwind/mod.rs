//! Stack capture: frame pointers, stack bounds and cached DWARF unwinding.

#[cfg(all(feature = "fast-unwind", target_arch = "x86_64", target_os = "linux"))]
pub(crate) mod dwarf;
#[cfg(all(
    feature = "frame-pointers",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod frame_pointers;
pub(crate) mod stack_bounds;
