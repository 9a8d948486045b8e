//! One allocation-heavy program, built once per global allocator (cargo feature), run side by
//! side by `benches/compare.sh`.
//!
//! `compare WORKLOAD [SCALE]`: WORKLOAD is one of `churn`, `json`, `maps`, `threads`, `grow`,
//! `syn`; SCALE (default 1) multiplies the work (0.02 for callgrind). The program prints one
//! checksum line, so that no work can be optimised away and every build can be seen to do the
//! same work.

mod alloc;
mod workloads;

fn main() {
    let _profiler = alloc::start();
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_default();
    let scale: f64 = match args.next() {
        Some(s) => s.parse().expect("SCALE: a number such as 1 or 0.02"),
        None => 1.0,
    };
    let started = std::time::Instant::now();
    let checksum = match workload.as_str() {
        "churn" => workloads::churn(scale),
        "json" => workloads::json(scale),
        "maps" => workloads::maps(scale),
        "threads" => workloads::threads(scale),
        "grow" => workloads::grow(scale),
        "syn" => workloads::syn(scale),
        _ => {
            eprintln!("usage: compare churn|json|maps|threads|grow|syn [SCALE]");
            std::process::exit(2);
        }
    };
    println!(
        "{workload} scale {scale} allocator {}: checksum {checksum}, {:.3} s",
        alloc::NAME,
        started.elapsed().as_secs_f64()
    );
    alloc::finish();
}
