use super::*;

#[test]
fn classes_round_up_to_powers_of_two_pages() {
    let class = |size| class_for(Layout::from_size_align(size, 8).unwrap());
    if !pool_enabled() {
        assert_eq!(class(16), None);
        return;
    }
    assert_eq!(class(1), Some(0));
    assert_eq!(class(4096), Some(0));
    assert_eq!(class(4097), Some(1));
    assert_eq!(class(3 * 4096), Some(2));
    assert_eq!(class(MAX_POOLED), Some(4));
    assert_eq!(class(MAX_POOLED + 1), None);
    assert_eq!(class_for(Layout::from_size_align(64, 8192).unwrap()), None);
}

#[test]
fn a_thread_keeps_one_spare_page_and_hands_it_back_at_exit() {
    if !pool_enabled() {
        return;
    }
    std::thread::spawn(|| {
        // Registers the thread (its exit hook and slot), as its first cold path would.
        crate::record::lifecycle::register_thread();
        let spare = || own_spare().expect("a slot").load(Ordering::Relaxed);
        let a = alloc(0);
        // SAFETY: `a` came from `alloc(0)` and is not used again.
        unsafe { free(a, 0) };
        assert_eq!(spare(), a as usize, "kept as the spare");
        let idle = own_bytes();
        assert_eq!(alloc(0), a, "the spare serves the next class-0 block");
        assert_eq!(own_bytes(), idle - PAGE as u64, "counted while kept");
        let b = alloc(0);
        // SAFETY: as above, for both blocks.
        unsafe { free(a, 0) };
        unsafe { free(b, 0) };
        assert_eq!(spare(), a as usize, "one spare only");
        let slot = thread_slot::current().unwrap();
        thread_slot::release(close_slot);
        assert_eq!(SPARES[slot].0.load(Ordering::Relaxed), 0, "handed back");
        let c = alloc(0);
        // SAFETY: as above.
        unsafe { free(c, 0) };
        assert!(own_spare().is_none(), "none after exit");
        assert_eq!(SPARES[slot].0.load(Ordering::Relaxed), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn blocks_are_page_aligned_distinct_and_reused() {
    if !pool_enabled() {
        return;
    }
    let blocks: Vec<*mut u8> = (0..100).map(|_| alloc(1)).collect();
    for &b in &blocks {
        assert!(!b.is_null());
        assert_eq!(b as usize % PAGE, 0);
        // SAFETY: a live block of 2 pages.
        unsafe { b.write_bytes(0xab, 2 * PAGE) };
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    assert!(
        sorted
            .windows(2)
            .all(|w| w[1] as usize - w[0] as usize >= 2 * PAGE)
    );
    for &b in &blocks {
        // SAFETY: each block came from `alloc(1)` and is not used again.
        unsafe { free(b, 1) };
    }
    assert!(own_bytes() as usize <= CLASSES * (MAX_IDLE_BYTES + CHUNK_BYTES));
    let again = alloc(1);
    assert!(blocks.contains(&again), "a freed block is reused");
    // SAFETY: as above.
    unsafe { free(again, 1) };
}
