//! jemalloc linked (feature `jemalloc-stats`) but not the inner allocator (`Sampler<System>`
//! of `allocator_test`): no jemalloc figures, rather than the zeros of an idle jemalloc.

use allocator_test as _;

#[test]
fn an_idle_jemalloc_is_not_reported() {
    let m = heapsampler::process_memory();
    assert_eq!(m.jemalloc, None);
    assert!(m.rss_bytes.is_some());
    // glibc's figures are the inner allocator's here.
    #[cfg(target_env = "gnu")]
    assert!(m.glibc_malloc.is_some());
}
