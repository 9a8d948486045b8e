//! jemalloc as the inner allocator: `process_memory` carries its statistics, and they follow
//! a large block the test holds and then frees.

// Not `allocator_test`: this binary installs its own global allocator.
use heapsampler::Sampler;
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Sampler<Jemalloc> = Sampler::new(Jemalloc);

const BIG: usize = 64 << 20;

/// One test per binary: nothing else allocates while it measures.
#[test]
fn jemalloc_figures_are_present_and_follow_a_held_block() {
    let buffer = vec![1u8; BIG];
    let held = heapsampler::process_memory()
        .jemalloc
        .expect("jemalloc is the inner allocator");
    assert!(
        held.allocated_bytes >= BIG as u64,
        "allocated {} while {BIG} are held",
        held.allocated_bytes
    );
    // jemalloc's own invariants (its `mallctl` documentation).
    assert!(held.active_bytes >= held.allocated_bytes, "{held:?}");
    assert!(held.resident_bytes >= held.active_bytes, "{held:?}");
    assert!(held.mapped_bytes >= held.active_bytes, "{held:?}");
    assert!(held.metadata_bytes > 0, "{held:?}");
    // The block was written: its pages are resident, and the kernel agrees.
    let rss = heapsampler::process_memory().rss_bytes.unwrap();
    assert!(rss >= BIG as u64, "RSS {rss}");
    assert_eq!(buffer.iter().map(|&b| b as usize).sum::<usize>(), BIG);

    drop(buffer);
    let freed = heapsampler::process_memory().jemalloc.unwrap();
    // The stats are refreshed at each read (epoch): the free shows, give or take what the
    // test harness allocated meanwhile.
    assert!(
        held.allocated_bytes - freed.allocated_bytes.min(held.allocated_bytes)
            >= (BIG - (1 << 20)) as u64,
        "allocated {} with the block, {} after its free",
        held.allocated_bytes,
        freed.allocated_bytes
    );

    // Reports carry them, and read back.
    let report =
        heapsampler::Report::from_profile(&heapsampler::snapshot(), None, Vec::new(), Vec::new());
    let text = report.to_string_pretty();
    assert!(text.contains("\"jemalloc\""), "{text}");
    let back = heapsampler::Report::parse(&text).unwrap();
    let j = back.process_memory.unwrap().jemalloc.unwrap();
    assert!(j.allocated_bytes > 0 && j.allocated_bytes < held.allocated_bytes);
}
