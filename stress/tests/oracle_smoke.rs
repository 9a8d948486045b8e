//! The oracle and heapsampler agree on a simple single-threaded program.
use stress::assert_totals_match;

fn main() {
    let mut kept = Vec::new();
    for i in 0..10_000usize {
        let v = vec![i as u8; i % 1000 + 1];
        if i % 7 == 0 {
            kept.push(v);
        }
    }
    let mut s = String::new();
    for i in 0..1000 {
        s.push_str(&i.to_string());
    }
    assert_totals_match("after a mix of kept and freed vectors and a growing string");
    drop(kept);
    drop(s);
    assert_totals_match("after freeing everything");
    println!("oracle_smoke: 1 passed, 0 failed");
}
