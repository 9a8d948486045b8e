//! `/metrics`: the exact totals, rates, the profiler's figures, the process's memory and the
//! live bytes of the top sites, in the OpenMetrics text format (`prometheus-client`).
//!
//! Site labels are bounded: the `N` sites with the most live bytes are named by their
//! function (sites of one function add up), everything else is `site="other"`, so a scrape
//! has at most `N + 1` site series whatever the program does.

use super::context::Context;
use super::rate_window::RateWindow;
use crate::read::profile::{Profile, snapshot};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sites named in `/metrics` (the rest add up in `site="other"`) unless configured otherwise.
pub const DEFAULT_TOP_SITES: usize = 20;

/// The `Content-Type` of [`metrics_text`]: OpenMetrics text, which Prometheus, Grafana Alloy
/// and the OpenTelemetry collector read.
///
/// ```
/// assert!(heapsampler::http::METRICS_CONTENT_TYPE.starts_with("application/openmetrics-text"));
/// ```
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of now in the OpenMetrics text format, for a handler of your own web framework
/// (serve it with [`METRICS_CONTENT_TYPE`]): what `/metrics` serves, with the default number
/// of named sites and rates over the last minute of calls.
///
/// ```
/// let text = heapsampler::http::metrics_text();
/// assert!(text.contains("heapsampler_live_bytes "));
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn metrics_text() -> String {
    static RATES: std::sync::OnceLock<RateWindow> = std::sync::OnceLock::new();
    let _guard = crate::sys::guard::enter_guard();
    let profile = snapshot();
    render_profile(
        &profile,
        RATES.get_or_init(RateWindow::default),
        DEFAULT_TOP_SITES,
        None,
    )
}

/// `/metrics` of a running endpoint.
pub(crate) fn render(context: &Context) -> String {
    let profile = snapshot();
    render_profile(
        &profile,
        &context.rates,
        context.top_sites,
        Some((&context.served, &context.rejected)),
    )
}

fn gauge<N: Into<String>, H: Into<String>>(r: &mut Registry, name: N, help: H, v: f64) {
    r.register(name, help, ConstGauge::new(v));
}

fn counter<N: Into<String>, H: Into<String>>(r: &mut Registry, name: N, help: H, v: u64) {
    r.register(name, help, ConstCounter::new(v));
}

fn render_profile(
    profile: &Profile,
    rates: &RateWindow,
    top: usize,
    endpoint: Option<(&AtomicU64, &AtomicU64)>,
) -> String {
    let mut r = Registry::with_prefix("heapsampler");
    let t = &profile.totals;
    // Exact totals.
    counter(
        &mut r,
        "allocated_bytes",
        "Bytes ever allocated (exact).",
        t.alloc_bytes,
    );
    counter(
        &mut r,
        "allocated_objects",
        "Allocations ever made (exact).",
        t.alloc_objects,
    );
    counter(
        &mut r,
        "freed_bytes",
        "Bytes ever freed (exact).",
        t.free_bytes,
    );
    counter(
        &mut r,
        "freed_objects",
        "Frees ever made (exact).",
        t.free_objects,
    );
    gauge(
        &mut r,
        "live_bytes",
        "Bytes live now (exact).",
        t.live_bytes as f64,
    );
    gauge(
        &mut r,
        "live_objects",
        "Blocks live now (exact).",
        t.live_objects as f64,
    );
    gauge(
        &mut r,
        "peak_live_bytes",
        "Most bytes ever live at once (exact).",
        t.peak_live_bytes as f64,
    );
    counter(
        &mut r,
        "overhead_allocated_bytes",
        "Bytes the profiler allocated for its own work (included in allocated_bytes).",
        t.overhead_alloc_bytes,
    );
    counter(
        &mut r,
        "overhead_freed_bytes",
        "Bytes of the profiler's own work freed (included in freed_bytes).",
        t.overhead_free_bytes,
    );
    // Rates.
    let rate = rates.observe(*t);
    gauge(
        &mut r,
        "allocated_bytes_per_second",
        "Bytes allocated per second over the rate window.",
        rate.alloc_bytes,
    );
    gauge(
        &mut r,
        "allocated_objects_per_second",
        "Allocations per second over the rate window.",
        rate.alloc_objects,
    );
    gauge(
        &mut r,
        "freed_bytes_per_second",
        "Bytes freed per second over the rate window.",
        rate.free_bytes,
    );
    gauge(
        &mut r,
        "freed_objects_per_second",
        "Frees per second over the rate window.",
        rate.free_objects,
    );
    gauge(
        &mut r,
        "rate_window_seconds",
        "The window the per-second rates cover (at most 60 s).",
        rate.window_secs,
    );
    // The profiler.
    let p = &profile.profiler;
    gauge(
        &mut r,
        "sample_interval_bytes",
        "Mean sampling interval (1 = exact, 0 = off).",
        profile.sample_interval as f64,
    );
    counter(&mut r, "samples", "Samples recorded.", p.samples);
    counter(
        &mut r,
        "samples_dropped",
        "Samples dropped because a table was full.",
        p.samples_dropped,
    );
    gauge(
        &mut r,
        "live_samples",
        "Sampled blocks live now.",
        p.live_samples as f64,
    );
    gauge(
        &mut r,
        "stacks",
        "Distinct call stacks held.",
        p.stacks as f64,
    );
    gauge(
        &mut r,
        "own_bytes",
        "The profiler's own memory: tables and page padding.",
        p.own_bytes as f64,
    );
    gauge(
        &mut r,
        "own_bytes_budget",
        "The most own_bytes can reach under the limits.",
        p.own_bytes_budget as f64,
    );
    gauge(
        &mut r,
        "overhead_live_bytes",
        "Bytes of the profiler's own work live now (symbol cache, buffers).",
        t.overhead_alloc_bytes.saturating_sub(t.overhead_free_bytes) as f64,
    );
    if let Some((served, rejected)) = endpoint {
        counter(
            &mut r,
            "http_requests",
            "Requests this endpoint answered.",
            served.load(Ordering::Relaxed),
        );
        counter(
            &mut r,
            "http_rejected",
            "Connections refused with 503 (every worker busy).",
            rejected.load(Ordering::Relaxed),
        );
    }
    process_metrics(&mut r, &crate::read::process_memory::process_memory());
    site_metrics(&mut r, profile, top);
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}

fn process_metrics(r: &mut Registry, m: &crate::ProcessMemory) {
    let mut opt = |name: &str, help: &str, v: Option<u64>| {
        if let Some(v) = v {
            gauge(r, name, help, v as f64);
        }
    };
    opt(
        "process_rss_bytes",
        "Resident set size (smaps_rollup Rss).",
        m.rss_bytes,
    );
    opt(
        "process_pss_bytes",
        "Proportional set size (smaps_rollup Pss).",
        m.pss_bytes,
    );
    opt(
        "process_anon_bytes",
        "Resident anonymous memory (smaps_rollup Anonymous).",
        m.anon_bytes,
    );
    opt(
        "process_file_bytes",
        "Resident file-backed and shared memory (Rss - Anonymous).",
        m.file_bytes,
    );
    opt(
        "process_swap_bytes",
        "Anonymous memory swapped out.",
        m.swap_bytes,
    );
    if let Some(c) = &m.cgroup {
        opt(
            "cgroup_memory_current_bytes",
            "Memory charged to the cgroup (memory.current).",
            c.current_bytes,
        );
        opt(
            "cgroup_memory_max_bytes",
            "The cgroup's limit (memory.max; absent: none).",
            c.max_bytes,
        );
        opt(
            "cgroup_memory_anon_bytes",
            "Anonymous memory charged (memory.stat anon).",
            c.anon_bytes,
        );
        opt(
            "cgroup_memory_file_bytes",
            "Page cache charged (memory.stat file).",
            c.file_bytes,
        );
        opt(
            "cgroup_memory_kernel_bytes",
            "Kernel memory charged (memory.stat kernel).",
            c.kernel_bytes,
        );
    }
    if let Some(g) = &m.glibc_malloc {
        opt(
            "glibc_malloc_system_bytes",
            "Memory glibc malloc got from the kernel (mallinfo2).",
            Some(g.system_bytes),
        );
        opt(
            "glibc_malloc_in_use_bytes",
            "Bytes in glibc malloc's allocated blocks.",
            Some(g.in_use_bytes),
        );
        opt(
            "glibc_malloc_free_bytes",
            "Bytes in free blocks glibc malloc keeps.",
            Some(g.free_bytes),
        );
        opt(
            "glibc_malloc_releasable_bytes",
            "Of those, releasable by malloc_trim.",
            Some(g.releasable_bytes),
        );
    }
    if let Some(j) = &m.jemalloc {
        for (name, help, v) in [
            (
                "jemalloc_allocated_bytes",
                "jemalloc stats.allocated: bytes in blocks held.",
                j.allocated_bytes,
            ),
            (
                "jemalloc_active_bytes",
                "jemalloc stats.active: bytes in active pages.",
                j.active_bytes,
            ),
            (
                "jemalloc_resident_bytes",
                "jemalloc stats.resident: bytes in resident pages it maps.",
                j.resident_bytes,
            ),
            (
                "jemalloc_mapped_bytes",
                "jemalloc stats.mapped: bytes mapped for active extents.",
                j.mapped_bytes,
            ),
            (
                "jemalloc_retained_bytes",
                "jemalloc stats.retained: address space kept for reuse.",
                j.retained_bytes,
            ),
            (
                "jemalloc_metadata_bytes",
                "jemalloc stats.metadata: its own metadata.",
                j.metadata_bytes,
            ),
        ] {
            opt(name, help, Some(v));
        }
    }
}

/// Live bytes of the top `top` sites by function, and of all others as `site="other"`.
fn site_metrics(r: &mut Registry, profile: &Profile, top: usize) {
    let family = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    let mut sites: Vec<_> = profile.sites.iter().collect();
    sites.sort_by(|a, b| b.live_bytes.total_cmp(&a.live_bytes));
    let (named, rest) = sites.split_at(top.min(sites.len()));
    for site in named {
        let frames = crate::read::symbolize::frames_of(&site.addresses);
        let name =
            crate::read::site_name::site_name(frames.iter().filter_map(|f| f.function.as_deref()))
                .unwrap_or("?");
        // OpenMetrics label values are UTF-8 with `\`, `"` and newlines escaped by the
        // encoder; control characters from a hostile binary are escaped here.
        let label = crate::report::escape(name).into_owned();
        family
            .get_or_create(&vec![("site".to_string(), label)])
            .inc_by(site.live_bytes.max(0.0));
    }
    let other: f64 = rest.iter().map(|s| s.live_bytes.max(0.0)).sum();
    family
        .get_or_create(&vec![("site".to_string(), "other".to_string())])
        .inc_by(other);
    r.register(
        "site_live_bytes",
        "Estimated live bytes of the top sites by function; every other site in site=\"other\".",
        family,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_gauges_only_when_its_figures_are_there() {
        let text = |m: &crate::ProcessMemory| {
            let mut r = Registry::with_prefix("heapsampler");
            process_metrics(&mut r, m);
            let mut out = String::new();
            encode(&mut out, &r).unwrap();
            out
        };
        assert!(!text(&crate::ProcessMemory::default()).contains("jemalloc"));
        let m = crate::ProcessMemory {
            jemalloc: Some(crate::JemallocStats {
                allocated_bytes: 1,
                active_bytes: 2,
                resident_bytes: 3,
                mapped_bytes: 4,
                retained_bytes: 5,
                metadata_bytes: 6,
            }),
            ..Default::default()
        };
        let t = text(&m);
        for (i, name) in [
            "allocated",
            "active",
            "resident",
            "mapped",
            "retained",
            "metadata",
        ]
        .iter()
        .enumerate()
        {
            let line = format!("heapsampler_jemalloc_{name}_bytes {}.0\n", i + 1);
            assert!(t.contains(&line), "{line:?} not in {t}");
        }
    }

    #[test]
    fn site_labels_are_bounded() {
        let _guard = crate::sys::guard::enter_guard();
        let sites = (0..50)
            .map(|i| crate::Site {
                stack_id: i,
                addresses: vec![0x10 + u64::from(i)],
                live_bytes: 100.0 * i as f64,
                ..crate::Site::default()
            })
            .collect();
        let profile = Profile {
            sites,
            ..Profile::default()
        };
        let text = render_profile(&profile, &RateWindow::default(), 5, None);
        let site_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("heapsampler_site_live_bytes{"))
            .collect();
        assert!(site_lines.len() <= 6, "{site_lines:#?}");
        let total: f64 = site_lines
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(total, (0..50).map(|i| 100.0 * i as f64).sum::<f64>());
        assert!(text.contains("heapsampler_site_live_bytes{site=\"other\"} "));
        assert!(text.contains("# TYPE heapsampler_allocated_bytes counter"));
        assert!(text.ends_with("# EOF\n"));
    }
}
