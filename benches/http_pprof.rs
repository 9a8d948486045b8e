//! What a scrape of `/debug/pprof/heap` costs in a process with 10,000 live call sites, end
//! to end over a loopback TCP connection: snapshot, symbolization (cache warm after the
//! first request, as for a continuous profiler pulling every 10–60 s), pprof encoding, gzip
//! and the transfer. Also `/metrics` and `/heap.json` of the same process.
//!
//! Run: `cargo bench --features http --bench http_pprof`. The sites are real: a recursion
//! taking one of two call sites per level, 14 levels deep, gives every allocation its own
//! stack; they are recorded exactly (interval 1) and stay live during the measurement.

use criterion::{Criterion, criterion_group, criterion_main};
use heapsampler::Sampler;
use std::alloc::System;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[path = "support/site_tree.rs"]
mod site_tree;
use site_tree::{LEVELS, SITES, descend};

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

fn get(addr: SocketAddr, target: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{target}");
    raw
}

fn bench(c: &mut Criterion) {
    let mut out = Vec::with_capacity(SITES as usize);
    heapsampler::set_sample_interval(1);
    for i in 0..SITES {
        descend(i, LEVELS, &mut out);
    }
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();

    let raw = get(addr, "/debug/pprof/heap");
    let body = &raw[raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let decoded = heapsampler::report::pprof::decode(body).unwrap();
    let ours = decoded
        .samples
        .iter()
        .filter(|s| s.functions.iter().any(|f| f.contains("site_tree::descend")))
        .count();
    assert!(ours >= SITES as usize, "{ours} sites of the recursion");
    println!(
        "profile: {} samples, {} KiB gzipped",
        decoded.samples.len(),
        body.len() / 1024
    );

    let mut group = c.benchmark_group("http");
    group.sample_size(20);
    group.bench_function("GET /debug/pprof/heap, 10,000 sites", |b| {
        b.iter(|| black_box(get(addr, "/debug/pprof/heap")))
    });
    group.bench_function("GET /metrics, 10,000 sites", |b| {
        b.iter(|| black_box(get(addr, "/metrics")))
    });
    group.bench_function("GET /heap.json, 10,000 sites", |b| {
        b.iter(|| black_box(get(addr, "/heap.json")))
    });
    group.finish();
    drop(out);
}

criterion_group!(benches, bench);
criterion_main!(benches);
