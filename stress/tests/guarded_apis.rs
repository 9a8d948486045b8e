//! Totals stay exact when the program calls heapsampler APIs that allocate under the
//! reentrancy guard between its own allocations.
use stress::assert_totals_match;

fn main() {
    let mut kept = Vec::new();
    for _ in 0..1000 {
        kept.push(vec![1u8; 100]);
        let _ = heapsampler::Report::parse("not json");
    }
    assert_totals_match("1000 x (a kept vector + Report::parse of a bad report)");
    drop(kept);
    assert_totals_match("after freeing the vectors");
    println!("guarded_apis: 1 passed, 0 failed");
}
