//! [`HeapStats`]: the figures of one leak-check scope, read from its slot in `scopes`.

use serde::{Deserialize, Serialize};

/// Heap usage of one leak-check scope: exact counts of the objects allocated in scope.
///
/// Every allocation of a thread in the scope counts, and each `realloc` counts as one
/// allocation and one free. Frees count whichever thread makes them. Objects that existed before
/// the check started are not counted, even when freed inside it.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
/// let check = heapsampler::LeakCheck::start();
/// let v = vec![0u8; 1000];
/// drop(v);
/// let stats = check.stats().expect("fewer than 256 checks at once");
/// assert_eq!(stats.alloc_objects, 1);
/// assert_eq!(stats.peak_live_bytes, 1000);
/// assert_eq!(stats.live_bytes, 0);
/// # check.assert_no_leaks();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapStats {
    /// Objects allocated in scope.
    pub alloc_objects: u64,
    /// Bytes allocated in scope.
    pub alloc_bytes: u64,
    /// Of those objects, how many were freed (by any thread).
    pub free_objects: u64,
    /// Bytes of those objects freed.
    pub free_bytes: u64,
    /// Objects allocated in scope and live now.
    pub live_objects: u64,
    /// Bytes allocated in scope and live now.
    pub live_bytes: u64,
    /// The most bytes allocated in scope that were live at once.
    pub peak_live_bytes: u64,
    /// Objects allocated in scope that the profiler could not record because a table was full
    /// (see [`set_limits`](crate::set_limits)): a non-zero value makes the check incomplete.
    pub unrecorded: u64,
}
