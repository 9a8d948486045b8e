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

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

const SITES: u32 = 10_000;
const LEVELS: u32 = 14; // 2^14 > SITES distinct paths

#[inline(never)]
fn left(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    descend(i, level, out);
    black_box(()); // not a tail call: this frame's return address stays on the stack
}

#[inline(never)]
fn right(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    descend(i, level, out);
    black_box(());
}

#[inline(never)]
fn descend(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    if level == 0 {
        out.push(vec![i as u8; 64].into_boxed_slice());
    } else if (black_box(i) >> (level - 1)) & 1 == 1 {
        left(i, level - 1, out);
    } else {
        right(i, level - 1, out);
    }
}

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
        .filter(|s| {
            s.functions
                .iter()
                .any(|f| f.contains("http_pprof::descend"))
        })
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
