use allocator_test::{config_lock, live_bytes_in};
use std::alloc::{Layout, alloc, dealloc};

#[inline(never)]
fn smoke_site(n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|i| unsafe { alloc(Layout::from_size_align(100 + i, 8).unwrap()) })
        .collect()
}

#[test]
fn exact_mode_smoke() {
    let _l = config_lock();
    heapsampler::set_sample_interval(1);
    let ptrs = smoke_site(10);
    let mut p = heapsampler::snapshot();
    p.symbolize();
    let live = live_bytes_in(&p, "smoke_site");
    for s in p.sites_in("smoke_site") {
        eprintln!("{:?} live {} alloc {}", s.frames.iter().take(4).map(|f| f.function.clone()).collect::<Vec<_>>(), s.live_bytes, s.alloc_bytes);
    }
    assert_eq!(live, (0..10).map(|i| 100.0 + i as f64).sum::<f64>());
    for (i, ptr) in ptrs.into_iter().enumerate() {
        unsafe { dealloc(ptr, Layout::from_size_align(100 + i, 8).unwrap()) };
    }
    let mut p = heapsampler::snapshot();
    p.symbolize();
    assert_eq!(live_bytes_in(&p, "smoke_site"), 0.0);
    eprintln!("{:?}", p.totals);
    eprintln!("{:?}", p.profiler);
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
}
