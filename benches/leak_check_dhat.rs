//! dhat's cost per allocation on the workload of `benches/leak_check.rs` (stack depth ~30,
//! alloc+free of 64 bytes), with `dhat::Alloc` as the global allocator and a testing-mode
//! profiler, on one and two threads. dhat records every allocation of the process. It is run
//! twice: with its default stack depth (10 frames — at depth 30 that is only the recursion,
//! none of the test's own frames) and with 64 frames, the depth heapsampler records.
//!
//! Run: `cargo bench --bench leak_check_dhat`

#[path = "support/leak_workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (runs, iters) = if quick { (2, 50) } else { (7, 2_000) };
    for frames in [10, 64] {
        let profiler = dhat::Profiler::builder()
            .testing()
            .trim_backtraces(Some(frames))
            .file_name(std::env::temp_dir().join("leak_check_dhat.json"))
            .build();
        for threads in [1, 2] {
            let ns = workload::measure(threads, runs, iters, || ());
            workload::report(
                "dhat 0.3",
                &format!("testing mode, {frames} frames"),
                threads,
                ns,
            );
        }
        let stats = dhat::HeapStats::get();
        assert!(
            stats.total_blocks >= iters * runs as u64,
            "dhat recorded the workload"
        );
        drop(profiler);
    }
}
