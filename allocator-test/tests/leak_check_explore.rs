use allocator_test as _;
use heapsampler::LeakCheck;

#[test]
fn explore_print() {
    let check = LeakCheck::start();
    for i in 0..200 { println!("printing inside the check {i} ........................................"); }
    eprintln!("err");
    let report = check.finish();
    assert!(report.is_clean(), "{report}");
}
