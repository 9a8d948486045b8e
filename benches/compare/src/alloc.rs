//! The global allocator, chosen by exactly one cargo feature.

#[cfg(not(any(
    feature = "system",
    feature = "sampler",
    feature = "jemalloc",
    feature = "sampler-jemalloc",
    feature = "jemalloc-prof",
    feature = "mimalloc",
    feature = "sampler-mimalloc",
    feature = "dhat",
    feature = "re_memory",
    feature = "count",
)))]
compile_error!("build with exactly one allocator feature: --features system (see Cargo.toml)");

#[cfg(feature = "system")]
pub const NAME: &str = "system";

#[cfg(feature = "sampler")]
pub const NAME: &str = "sampler";
#[cfg(feature = "sampler")]
#[global_allocator]
static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    heapsampler::Sampler::new(std::alloc::System);

#[cfg(feature = "jemalloc")]
pub const NAME: &str = "jemalloc";
#[cfg(any(feature = "jemalloc", feature = "jemalloc-prof"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "sampler-jemalloc")]
pub const NAME: &str = "sampler-jemalloc";
#[cfg(feature = "sampler-jemalloc")]
#[global_allocator]
static GLOBAL: heapsampler::Sampler<tikv_jemallocator::Jemalloc> =
    heapsampler::Sampler::new(tikv_jemallocator::Jemalloc);

/// jemalloc's own heap profiler, sampling at a mean of 2^19 bytes = 512 KiB (the sampler's
/// default): compiled-in options, read by jemalloc at its first allocation.
#[cfg(feature = "jemalloc-prof")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 45] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
#[cfg(feature = "jemalloc-prof")]
pub const NAME: &str = "jemalloc-prof";

#[cfg(feature = "mimalloc")]
pub const NAME: &str = "mimalloc";
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "sampler-mimalloc")]
pub const NAME: &str = "sampler-mimalloc";
#[cfg(feature = "sampler-mimalloc")]
#[global_allocator]
static GLOBAL: heapsampler::Sampler<mimalloc::MiMalloc> =
    heapsampler::Sampler::new(mimalloc::MiMalloc);

#[cfg(feature = "dhat")]
pub const NAME: &str = "dhat";
#[cfg(feature = "dhat")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

#[cfg(feature = "re_memory")]
pub const NAME: &str = "re_memory";
#[cfg(feature = "re_memory")]
#[global_allocator]
static GLOBAL: re_memory::AccountingAllocator<std::alloc::System> =
    re_memory::AccountingAllocator::new(std::alloc::System);

#[cfg(feature = "count")]
pub const NAME: &str = "count";
#[cfg(feature = "count")]
#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// What must live for the whole run (dhat's profiler), started before any work.
pub fn start() -> impl Drop {
    #[cfg(feature = "re_memory")]
    re_memory::accounting_allocator::set_tracking_callstacks(true);
    Profiler(start_dhat())
}

#[cfg(feature = "dhat")]
fn start_dhat() -> Option<(dhat::Profiler, std::path::PathBuf)> {
    // dhat writes its profile when the profiler drops, as a user's program would; it goes to a
    // temporary file, removed afterwards.
    let path = std::env::temp_dir().join(format!("compare-dhat-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&path).build();
    Some((profiler, path))
}

#[cfg(not(feature = "dhat"))]
fn start_dhat() -> Option<((), std::path::PathBuf)> {
    None
}

pub struct Profiler<P>(Option<(P, std::path::PathBuf)>);

impl<P> Drop for Profiler<P> {
    fn drop(&mut self) {
        if let Some((profiler, path)) = self.0.take() {
            drop(profiler);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Called after the work: prints what the build counts, on stderr.
pub fn finish() {
    #[cfg(feature = "count")]
    counting::print();
    #[cfg(any(
        feature = "sampler",
        feature = "sampler-jemalloc",
        feature = "sampler-mimalloc"
    ))]
    {
        let t = heapsampler::totals();
        eprintln!(
            "heapsampler totals: {} allocations, {} frees, {} bytes allocated, peak {} bytes live",
            t.alloc_objects, t.free_objects, t.alloc_bytes, t.peak_live_bytes
        );
    }
}

#[cfg(feature = "count")]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    /// `System`, counting the calls the program makes of each kind.
    pub struct Counting;

    static CALLS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
    const NAMES: [&str; 4] = ["alloc", "alloc_zeroed", "realloc", "dealloc"];

    // SAFETY: every call is forwarded unchanged to System; the wrapper only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            CALLS[0].fetch_add(1, Relaxed);
            // SAFETY: forwarded from our caller.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            CALLS[1].fetch_add(1, Relaxed);
            // SAFETY: forwarded from our caller.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            CALLS[2].fetch_add(1, Relaxed);
            // SAFETY: forwarded from our caller.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            CALLS[3].fetch_add(1, Relaxed);
            // SAFETY: forwarded from our caller.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    pub fn print() {
        let counts: Vec<u64> = CALLS.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let parts: Vec<String> = NAMES
            .iter()
            .zip(&counts)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        eprintln!("allocator calls: {total} ({})", parts.join(", "));
    }
}
