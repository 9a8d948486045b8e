//! # heapsampler
//!
//! A sampling heap profiler you install as the global allocator: where is the memory going,
//! and what is leaking — cheap enough to leave on in production.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: heapsampler::Sampler<std::alloc::System> =
//!     heapsampler::Sampler::new(std::alloc::System);
//! # fn main() {}
//! ```
//!
//! Any `GlobalAlloc` can be wrapped (jemalloc, mimalloc). From then on every allocation of
//! the program is counted exactly, and about one in every 512 KiB of allocated bytes is
//! *sampled*: its call stack is recorded, and it stands for the objects and bytes around it.
//!
//! | you run | you use | it gives you |
//! |---|---|---|
//! | a service | [`Reporter`], or `HEAPSAMPLER=dir=…` | a JSON [`Report`] every period: live bytes and allocation rates per call site, [`LeakSuspect`]s |
//! | a test suite | [`LeakCheck`] | every allocation of a scope recorded exactly; a failing test names the stacks that leaked |
//! | a terminal | the `heapsampler` tool (feature `cli`) | `top`, `diff`, `leaks`, `flamegraph`, `pprof`, `validate` over report files |
//! | your own code | [`snapshot`], [`totals`] | a [`Profile`] to read, diff or render ([`report`]) |
//!
//! ## Services: periodic reports
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let reports = heapsampler::Reporter::new("heap-reports")
//!     .every(std::time::Duration::from_secs(60))
//!     .start()?; // a background thread; a final report when `reports` is dropped
//! # drop(reports); Ok(()) }
//! ```
//!
//! Every period a JSON [`Report`] (schema in `docs/report-format.md`) is written atomically as
//! `heap-reports/heap-<pid>-<seq>.json`, with per-site live bytes, allocation rates, symbolized
//! stacks, allocating threads and [`LeakSuspect`]s found by a [`LeakDetector`] over the last
//! reports. Operators can do the same without a rebuild:
//! `HEAPSAMPLER=interval=512k,dir=heap-reports,period=60s` ([`env_reporter`]). Renderers for
//! pprof and flamegraphs are in [`report`].
//!
//! ## Test suites: leak checks
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: heapsampler::Sampler<std::alloc::System> =
//! #     heapsampler::Sampler::new(std::alloc::System);
//! # fn main() {
//! let check = heapsampler::LeakCheck::start(); // this thread, exactly, until finished
//! let v: Vec<u32> = (0..100).collect();
//! drop(v);
//! assert!(check.alloc_objects() >= 1);
//! check.assert_no_leaks(); // panics with the leaking call stacks
//! # }
//! ```
//!
//! [`LeakCheck`] records every allocation of the thread that started it, whatever the sample
//! interval, and nothing of other threads — so checks in tests running in parallel do not
//! disturb each other. Work handed to other threads joins with [`LeakCheck::spawn`] or a
//! [`CheckHandle`].
//!
//! ## At a terminal
//!
//! ```sh
//! cargo install heapsampler --features cli
//! heapsampler top heap-reports/heap-22703-000008.json -n 10
//! heapsampler leaks heap-reports --fail-on-leak     # exit status 1 when a site keeps growing
//! heapsampler pprof heap-22703-000008.json -o heap.pb.gz && go tool pprof -top heap.pb.gz
//! ```
//!
//! ## In your own code: read a profile
//!
//! ```
//! let mut profile = heapsampler::snapshot();
//! profile.symbolize();
//! println!("live: {} bytes (exact)", profile.totals.live_bytes);
//! for site in profile.top_sites(3) {
//!     let func = site.frames.first().and_then(|f| f.function.as_deref()).unwrap_or("?");
//!     println!("{:>10.0} live bytes (estimated) at {func}", site.live_bytes);
//! }
//! ```
//!
//! [`totals()`] reads the exact totals alone, allocating nothing.
//!
//! ## How sampling works
//!
//! Each thread walks a Poisson process over the bytes it allocates, with mean interval `T`
//! ([`set_sample_interval`], default [`DEFAULT_SAMPLE_INTERVAL`]). An allocation of `s` bytes
//! is sampled with probability `p = 1 − e^(−s/T)` and stands for `1/p` objects and `s/p`
//! bytes (Horvitz–Thompson weights), so every per-site estimate is unbiased; its relative error
//! is about `√(T/B)` for a site of `B` bytes (`B = 100 T` ⇒ ±10 %), and a site of `B` bytes
//! goes unseen with probability `e^(−B/T)`. `T = 1` records every allocation exactly.
//!
//! The unsampled path costs a thread-local subtraction per `alloc` and a pointer test per
//! `dealloc`: sampled objects are handed out page-aligned, so a free whose address is not
//! page-aligned is known not to be sampled without touching any table. Sampled objects of up
//! to 64 KiB take whole pages of the profiler's own (as in tcmalloc and jemalloc) rather than
//! an aligned block from the inner allocator, which would leave fragments behind in it; larger
//! ones come from the inner allocator, page-aligned. `docs/architecture.md` follows one
//! sampled allocation through the crate.
//!
//! ## Guarantees
//!
//! The allocator never fails the program: nothing in `alloc`/`dealloc`/`realloc` panics or
//! grows without bound. When a table is full, samples are dropped and counted
//! ([`ProfilerStats::samples_dropped`]); the profiler's memory stays within
//! [`Limits::budget_bytes`]. It works before `main`, at thread exit and in a forked child.
//! The profiler's own allocations are never sampled and are reported as overhead.
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `fast-unwind` | on | cached DWARF unwinding (`framehop`) for every capture, about 10× faster than the system unwinder (x86_64 Linux) |
//! | `frame-pointers` | off | a frame-pointer walk for exact recording (leak checks, interval 1), ~1 ns a frame; build with `RUSTFLAGS="-C force-frame-pointers=yes"` |
//! | `pprof` | off | `report::pprof`: gzipped pprof profiles (Go heap-profile shape) |
//! | `flamegraph` | off | `report::flamegraph::svg`: SVG flamegraphs (collapsed stacks need no feature) |
//! | `cli` | off | the `heapsampler` command-line tool (turns on `pprof` and `flamegraph`) |
//! | `jemalloc-stats` | off | jemalloc's statistics in [`ProcessMemory::jemalloc`] when it is the inner allocator (tikv-jemallocator 0.7) |
//!
//! ## Platforms
//!
//! Built and tested on Linux (glibc), x86_64. It needs a Unix (`pthread_atfork`, `mmap`).
//! `fast-unwind` walks x86_64 Linux stacks; `frame-pointers` walks x86_64 and aarch64;
//! elsewhere stacks come from the `backtrace` crate. Report mappings (for offline
//! symbolization) are read on Linux only; other systems write none.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod check;
mod leaks;
mod read;
mod record;
pub mod report;
mod service;
mod sys;
#[cfg(feature = "html")]
pub mod timeline;
mod unwind;

pub use check::{CheckHandle, EnteredCheck, LeakCheck, LeakReport, LeakSite};
pub use leaks::{LeakDetector, LeakSuspect};
pub use read::jemalloc_stats::JemallocStats;
pub use read::process_memory::{CgroupMemory, GlibcMallocStats, ProcessMemory, process_memory};
pub use read::profile::{
    Frame, Profile, ProfileDiff, ProfilerStats, Site, SiteDiff, SiteThread, TotalsDiff, snapshot,
    totals,
};
// Per-address symbolization and its cache, for the stress tests: users symbolize a whole
// `Profile` (`Profile::symbolize`) or get a symbolized `Report`.
#[doc(hidden)]
pub use read::symbolize;
pub use record::countdown::{
    DEFAULT_SAMPLE_INTERVAL, sample_interval, set_sample_interval, set_seed,
};
// Hooks of the statistical tests (the allocator-test crate), not part of the API.
#[doc(hidden)]
pub use record::countdown::TOTALS_BATCH_BYTES;
pub use record::heap_stats::HeapStats;
pub use record::limits::{Limits, set_limits};
pub use record::live_record::StackId;
pub use record::sampler::Sampler;
pub use record::totals::Totals;
#[doc(hidden)]
pub use record::weights::sample_probability;
pub use report::json::report_error::ReportError;
pub use report::json::schema::Report;
#[cfg(feature = "http")]
pub use service::http;
pub use service::reporter::{
    DEFAULT_KEEP, DEFAULT_LEAK_WINDOW, DEFAULT_PERIOD, Reporter, ReporterHandle, ReporterStatus,
    env_reporter,
};
pub use unwind::capture::MAX_STACK_DEPTH;
