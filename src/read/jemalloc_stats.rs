//! jemalloc's own figures, when jemalloc is the inner allocator (feature `jemalloc-stats`).
//!
//! The feature links `tikv-jemalloc-ctl`, and with it the one jemalloc of the program (Cargo
//! allows a single `tikv-jemalloc-sys`), built with statistics. Linking it does not make it
//! the inner allocator: the figures are reported only after an allocation through the global
//! allocator was seen counted by jemalloc (its per-thread `thread.allocated`), so a program
//! whose inner allocator is `System` reports none rather than the zeros of an idle jemalloc.

use serde::{Deserialize, Serialize};

/// jemalloc's statistics (`stats.*` of `mallctl`, refreshed by advancing `epoch`), present in
/// [`ProcessMemory::jemalloc`](crate::ProcessMemory::jemalloc) when the crate is built with
/// feature `jemalloc-stats` and jemalloc is the inner allocator (`Sampler<Jemalloc>`).
///
/// `allocated ≤ active ≤ resident`: `active − allocated` is fragmentation inside jemalloc's
/// pages, `resident − active` dirty pages and metadata it keeps, `retained` address space
/// returned to the kernel but kept mapped for reuse (not resident).
///
/// ```
/// let j = heapsampler::JemallocStats { allocated_bytes: 1 << 20, ..Default::default() };
/// assert_eq!(j.retained_bytes, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JemallocStats {
    /// Bytes in blocks the program holds (`stats.allocated`).
    pub allocated_bytes: u64,
    /// Bytes in active pages: allocated blocks and the free space of their pages
    /// (`stats.active`, a multiple of the page size).
    pub active_bytes: u64,
    /// Bytes in resident pages jemalloc maps: active, dirty and metadata (`stats.resident`).
    pub resident_bytes: u64,
    /// Bytes mapped for active extents (`stats.mapped`).
    pub mapped_bytes: u64,
    /// Bytes unmapped from use but kept as address space for reuse (`stats.retained`).
    pub retained_bytes: u64,
    /// Bytes of jemalloc's own metadata (`stats.metadata`).
    pub metadata_bytes: u64,
}

/// The figures now, or `None` without the feature, when jemalloc is not the inner allocator,
/// or when a read fails. Call under the reentrancy guard: the probe allocation must reach the
/// inner allocator, not the profiler's pages.
#[cfg(feature = "jemalloc-stats")]
pub(crate) fn read() -> Option<JemallocStats> {
    use std::sync::OnceLock;
    use tikv_jemalloc_ctl::{epoch, stats};
    // The global (hence inner) allocator is fixed for the life of the program.
    static INNER_IS_JEMALLOC: OnceLock<bool> = OnceLock::new();
    if !*INNER_IS_JEMALLOC.get_or_init(inner_is_jemalloc) {
        return None;
    }
    // The `stats.*` figures are those of the last epoch: advance it to read them as of now.
    epoch::advance().ok()?;
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.ok().map(|v| v as u64);
    Some(JemallocStats {
        allocated_bytes: read(stats::allocated::read())?,
        active_bytes: read(stats::active::read())?,
        resident_bytes: read(stats::resident::read())?,
        mapped_bytes: read(stats::mapped::read())?,
        retained_bytes: read(stats::retained::read())?,
        metadata_bytes: read(stats::metadata::read())?,
    })
}

#[cfg(not(feature = "jemalloc-stats"))]
pub(crate) fn read() -> Option<JemallocStats> {
    None
}

/// Whether a block from the global allocator is one jemalloc counts: this thread's
/// `thread.allocated` grows by its size. Per thread, so other threads cannot confuse it.
#[cfg(feature = "jemalloc-stats")]
fn inner_is_jemalloc() -> bool {
    use std::alloc::Layout;
    const PROBE: usize = 4096;
    let thread_allocated = || {
        // SAFETY: jemalloc documents `thread.allocated` as a `uint64_t`; the name is
        // NUL-terminated. A jemalloc built without statistics answers an error.
        unsafe { tikv_jemalloc_ctl::raw::read::<u64>(b"thread.allocated\0") }.ok()
    };
    let Some(before) = thread_allocated() else {
        return false;
    };
    let layout = Layout::from_size_align(PROBE, 16).expect("a valid layout");
    // Through the global allocator itself (the `#[global_allocator]` static, whatever it is),
    // as the program's blocks go; under the reentrancy guard a `Sampler` passes it straight
    // to its inner allocator.
    // SAFETY: a non-zero size; the block is freed below with the same layout.
    // `black_box`: the compiler may otherwise drop an allocation freed unused.
    let p = std::hint::black_box(unsafe { std::alloc::alloc(layout) });
    if p.is_null() {
        return false;
    }
    let after = thread_allocated();
    // SAFETY: `p` came from `alloc` with this layout and is freed once.
    unsafe { std::alloc::dealloc(p, layout) };
    after.is_some_and(|a| a.wrapping_sub(before) >= PROBE as u64)
}

#[cfg(all(test, feature = "jemalloc-stats"))]
mod tests {
    /// The library's tests run on `System` (no `#[global_allocator]`): jemalloc is linked by
    /// the feature but idle, and must not be reported.
    #[test]
    fn an_idle_jemalloc_is_not_reported() {
        let _guard = crate::sys::guard::enter_guard();
        assert_eq!(super::read(), None);
    }
}
