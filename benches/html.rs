//! The heap timeline page on a big input: 1,000 reports × 10,000 sites (one process, a
//! leaking site, sites wandering around fixed levels), generated synthetically.
//!
//! `add` is the reports going into the timeline as they would from files (the parsing of JSON
//! aside); `render` is the page from them; `parse` is the JSON reading of one such report
//! file (what `heapsampler html DIR` adds per file).
//!
//! ```text
//! cargo bench --bench html --features html
//! HTML_BENCH_PAGE=/tmp/big.html cargo bench --bench html --features html   # also keeps the page
//! HTML_BENCH_DIR=/tmp/big cargo bench --bench html --features html -- parse   # also writes the
//! # 1,000 report files (2.9 GB), for `heapsampler html /tmp/big -o /tmp/big.html`
//! ```
//!
//! The kept page is what the browser's time is measured on (README, "Heap timeline page").

#[path = "support/html_input.rs"]
mod html_input;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn page(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("HTML_BENCH_DIR") {
        html_input::big_reports(1000, 10_000, |name, r| {
            r.write_atomic(&dir, &name)
                .expect("HTML_BENCH_DIR: cannot write a report");
        });
    }
    let mut group = c.benchmark_group("html");
    group.sample_size(10);
    group.bench_function("add 1000 reports x 10000 sites", |b| {
        b.iter(|| black_box(html_input::big_timeline(1000, 10_000).len()))
    });
    let timeline = html_input::big_timeline(1000, 10_000);
    let page = timeline.render();
    eprintln!("page: {} bytes", page.len());
    if let Some(path) = std::env::var_os("HTML_BENCH_PAGE") {
        std::fs::write(&path, &page).expect("HTML_BENCH_PAGE: cannot write the page");
    }
    group.bench_function("render 1000 reports x 10000 sites", |b| {
        b.iter(|| black_box(timeline.render().len()))
    });
    // One report file as the reporter writes it, its values set as in the timeline's.
    let mut one = html_input::big_report(10_000);
    for (k, s) in one.sites.iter_mut().enumerate() {
        s.live_bytes = 1.0e9 / (k as f64 + 1.0) * 1.05;
        s.alloc_bytes = s.live_bytes * 3.0 + 500_000.0;
        s.alloc_bytes_per_sec = s.live_bytes / 100.0;
    }
    let text = one.to_string_pretty();
    eprintln!("one report file of 10000 sites: {} bytes", text.len());
    group.bench_function("parse 1 report file of 10000 sites", |b| {
        b.iter(|| black_box(heapsampler::Report::parse(&text).unwrap().sites.len()))
    });
    group.finish();
}

criterion_group!(benches, page);
criterion_main!(benches);
