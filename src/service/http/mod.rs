//! An HTTP endpoint for pull-based tools (feature `http`): `go tool pprof`, Prometheus,
//! Parca, Grafana Alloy/Pyroscope read the running process directly.
//!
//! | route | what |
//! |---|---|
//! | `/debug/pprof/heap` | gzipped pprof, Go's heap shape (`inuse_space` default); `?seconds=N`: the change over the next N s; `?gc=1` accepted (nothing to collect) |
//! | `/debug/pprof/allocs` | the same profile with `alloc_space` as the default sample type |
//! | `/debug/pprof/symbol` | function names of addresses, as Go serves them (`go tool pprof`'s remote symbolization) |
//! | `/debug/pprof/` | an index page |
//! | `/heap.json` | the JSON report of now (`docs/report-format.md`) |
//! | `/metrics` | Prometheus/OpenMetrics text: exact totals, rates, the profiler's figures, process memory, live bytes of the top sites |
//!
//! Every answer carries `X-Heapsampler-Snapshot: <id>`; `?snapshot=<id>` on a profile route
//! serves that same moment again (the last 8 are kept), so a pprof and a JSON report can be
//! compared value for value.
//!
//! The server is a fixed pool of threads over std's `TcpListener` (no async runtime), all of
//! it under the profiler's reentrancy guard: its own allocations are profiler overhead, never
//! a site of the program. A client cannot stall it: requests are bounded in size (8 KiB of
//! head; a body only for `/debug/pprof/symbol`, at most 1 MiB) and in time (read and write timeouts), and connections beyond the pool
//! and its queue (4 per worker) get `503` at once.
//!
//! ```no_run
//! # #[global_allocator]
//! # static GLOBAL: heapsampler::Sampler<std::alloc::System> =
//! #     heapsampler::Sampler::new(std::alloc::System);
//! # fn main() -> std::io::Result<()> {
//! let endpoint = heapsampler::http::serve("127.0.0.1:6060")?;
//! // go tool pprof http://127.0.0.1:6060/debug/pprof/heap
//! # drop(endpoint); Ok(()) }
//! ```
//!
//! Users of their own web framework serve [`pprof_heap_bytes`], [`pprof_allocs_bytes`],
//! [`pprof_symbol`], [`metrics_text`] and [`heap_json`] from their handlers (see
//! `examples/axum_endpoint.rs`).

mod context;
mod endpoint;
mod metrics;
mod moments;
mod rate_window;
mod routes;
mod symbol;

pub use endpoint::{DEFAULT_WORKERS, Endpoint, EndpointHandle, serve};
pub use metrics::DEFAULT_TOP_SITES;
pub use metrics::{METRICS_CONTENT_TYPE, metrics_text};

/// The heap profile of now as gzipped pprof bytes (Go's heap shape: `alloc_objects`,
/// `alloc_space`, `inuse_objects`, `inuse_space`; `inuse_space` the default), symbolized,
/// with the process's mappings: what `/debug/pprof/heap` serves.
///
/// ```
/// let bytes = heapsampler::http::pprof_heap_bytes();
/// assert_eq!(&bytes[..2], &[0x1f, 0x8b]); // gzip
/// ```
pub fn pprof_heap_bytes() -> Vec<u8> {
    let _guard = crate::sys::guard::enter_guard();
    let moment = moments::Moment::take();
    routes::render_pprof(&moment.profile, false)
}

/// Like [`pprof_heap_bytes`] with `alloc_space` as the default sample type: what
/// `/debug/pprof/allocs` serves.
///
/// ```
/// let bytes = heapsampler::http::pprof_allocs_bytes();
/// assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
/// ```
pub fn pprof_allocs_bytes() -> Vec<u8> {
    let _guard = crate::sys::guard::enter_guard();
    let moment = moments::Moment::take();
    routes::render_pprof(&moment.profile, true)
}

/// The JSON report of now (rates since the process started, no leak suspects: those need a
/// series of reports): what `/heap.json` serves on its first request.
///
/// ```
/// let text = heapsampler::http::heap_json();
/// let report = heapsampler::Report::parse(&text).unwrap();
/// assert!(report.process_memory.is_some());
/// ```
pub fn heap_json() -> String {
    let _guard = crate::sys::guard::enter_guard();
    let moment = moments::Moment::take();
    crate::Report::build(
        &moment.profile,
        None,
        Vec::new(),
        crate::report::mappings::current(),
    )
    .to_string_pretty()
}

/// The answer of `/debug/pprof/symbol` to `addresses` (a `POST` body or a `GET` query:
/// `0x`-prefixed hexadecimal instruction addresses joined by `+`): `num_symbols: 1`, then
/// `0x<address> <function>` per address this process's binaries name. `Err` holds the
/// message of a `400` (a word that is not an address).
///
/// ```
/// let main_address = heapsampler::http::pprof_symbol as fn(&[u8]) -> _ as usize;
/// let text = heapsampler::http::pprof_symbol(format!("{main_address:#x}").as_bytes()).unwrap();
/// assert!(text.starts_with("num_symbols: 1\n"));
/// assert!(heapsampler::http::pprof_symbol(b"main").is_err());
/// ```
pub fn pprof_symbol(addresses: &[u8]) -> Result<String, String> {
    let _guard = crate::sys::guard::enter_guard();
    symbol::answer(addresses)
}

/// Starts the endpoint `HEAPSAMPLER=http=ADDR` asks for (called from the constructor); it
/// lives until the process exits.
pub(crate) fn start_env_endpoint(addr: &str) {
    static ENV_ENDPOINT: std::sync::OnceLock<EndpointHandle> = std::sync::OnceLock::new();
    let _guard = crate::sys::guard::enter_guard();
    match Endpoint::new(addr).start() {
        Ok(handle) => {
            let _ = ENV_ENDPOINT.set(handle);
        }
        Err(e) => crate::service::env_config::warn(&format!(
            "HEAPSAMPLER: cannot serve http on {addr}: {e}"
        )),
    }
}
