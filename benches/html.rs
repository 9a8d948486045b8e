//! The heap timeline page on a big input: 1,000 reports × 10,000 sites (one process, a
//! leaking site, sites wandering around fixed levels), generated synthetically.
//!
//! `add` is the reports going into the timeline as they would from files (the parsing of JSON
//! aside: `cargo bench --bench report` measures it); `render` is the page from them.
//!
//! ```text
//! cargo bench --bench html --features html
//! HTML_BENCH_PAGE=/tmp/big.html cargo bench --bench html --features html   # also keeps the page
//! ```
//!
//! The kept page is what the browser's time is measured on (README, "Heap timeline page").

#[path = "support/html_input.rs"]
mod html_input;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn page(c: &mut Criterion) {
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
    group.finish();
}

criterion_group!(benches, page);
criterion_main!(benches);
