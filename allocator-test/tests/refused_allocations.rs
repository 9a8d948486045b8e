//! A request the inner allocator refuses is not counted: a fallible reservation of an absurd
//! size fails (the program carries on), and the exact totals show no allocation — and, for a
//! refused growth, no free of the old block either, which stays in place — nor does the peak
//! of live bytes move.

use allocator_test::program_traffic;

/// Far beyond any address space: `malloc` refuses it on every machine.
const ABSURD: usize = 1 << 62;

/// One test per binary: nothing else allocates while it measures.
#[test]
fn refused_requests_leave_the_totals_unchanged() {
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    for round in 0..3 {
        let mut empty: Vec<u8> = Vec::new();
        assert_uncounted(&format!("round {round}: a refused allocation"), || {
            assert!(empty.try_reserve_exact(ABSURD).is_err());
        });
        // A growth (`realloc`), refused: the old block stays live, counted once.
        let mut small: Vec<u8> = Vec::with_capacity(100);
        small.push(1);
        assert_uncounted(&format!("round {round}: a refused reallocation"), || {
            assert!(small.try_reserve_exact(ABSURD).is_err());
        });
        assert_eq!(small, [1], "the old block is intact");
    }
    // At the default interval a request this large is always sampled; with sampling off it is
    // not (a plain `realloc` of the old block), and in exact mode every call is recorded.
    for interval in [0, 1] {
        heapsampler::set_sample_interval(interval);
        let mut small: Vec<u8> = Vec::with_capacity(100);
        let mut empty: Vec<u8> = Vec::new();
        assert_uncounted(&format!("interval {interval}: refused requests"), || {
            assert!(small.try_reserve_exact(ABSURD).is_err());
            assert!(empty.try_reserve_exact(ABSURD).is_err());
        });
        heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    }
}

/// Runs `refused` and checks that the program's exact totals did not move, nor the peak of
/// live bytes beyond what other threads may publish meanwhile (libtest's own, within the
/// documented bound).
fn assert_uncounted(what: &str, refused: impl FnOnce()) {
    let before = heapsampler::totals();
    refused();
    let after = heapsampler::totals();
    assert_eq!(program_traffic(&before, &after), [0; 4], "{what}");
    assert!(
        after.peak_live_bytes <= before.peak_live_bytes + 2 * heapsampler::TOTALS_BATCH_BYTES,
        "{what}: peak {} bytes after, {} before",
        after.peak_live_bytes,
        before.peak_live_bytes
    );
}
