//! The HTTP endpoint through a plain std `TcpStream` client: every route, the pprof read back
//! twice (the crate's decoder, and gzip + protobuf wire format walked by hand), refusals,
//! and the bounds on slow clients and concurrency.

use heapsampler::http::Endpoint;
use heapsampler::report::pprof;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    heapsampler::Sampler::new(std::alloc::System);

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    // A bound so a broken server fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn read_answer(mut s: TcpStream) -> Answer {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..end].to_vec()).expect("ASCII head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Answer {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_answer(s)
}

fn get(addr: SocketAddr, target: &str) -> Answer {
    let a = send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    );
    if let Some(len) = a.header("Content-Length") {
        assert_eq!(len.parse::<usize>().unwrap(), a.body.len(), "{target}");
    }
    a
}

/// Walks protobuf wire format: every field's tag, wire type and length must be consistent
/// and consume the buffer exactly. Returns the number of top-level fields.
fn walk_protobuf(mut b: &[u8]) -> usize {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().expect("truncated varint");
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than 10 bytes");
    }
    let mut fields = 0;
    while !b.is_empty() {
        let key = varint(&mut b);
        assert!(key >> 3 >= 1, "field number 0");
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            1 => b = &b[8..],
            2 => {
                let len = varint(&mut b) as usize;
                assert!(len <= b.len(), "length past the end");
                b = &b[len..];
            }
            5 => b = &b[4..],
            t => panic!("wire type {t}"),
        }
        fields += 1;
    }
    fields
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .expect("gzip stream");
    raw
}

/// Memory held by a named function, so profiles have a site to find.
#[inline(never)]
fn hold_http_test_memory() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; 64 * 1024]).collect()
}

#[test]
fn every_route_answers_well_formed() {
    let held = hold_http_test_memory();
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();

    let index = get(addr, "/debug/pprof/");
    assert_eq!(index.status, 200);
    let page = String::from_utf8(index.body).unwrap();
    for link in [
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
        "/debug/pprof/symbol",
        "/heap.json",
        "/metrics",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert_eq!(get(addr, "/").status, 200);

    let json = get(addr, "/heap.json");
    assert_eq!(json.status, 200);
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    let id = json.header("X-Heapsampler-Snapshot").unwrap().to_string();
    let report = heapsampler::Report::parse(std::str::from_utf8(&json.body).unwrap()).unwrap();
    assert_eq!(report.pid, std::process::id());
    assert!(report.process_memory.as_ref().unwrap().rss_bytes.unwrap() > 0);

    // The pprof of the same moment: its in-use values are the report's, site by site.
    let heap = get(addr, &format!("/debug/pprof/heap?snapshot={id}&gc=1"));
    assert_eq!(heap.status, 200);
    assert_eq!(heap.header("X-Heapsampler-Snapshot"), Some(id.as_str()));
    assert!(walk_protobuf(&gunzip(&heap.body)) > 4);
    let decoded = pprof::decode(&heap.body).unwrap();
    assert_eq!(decoded.default_sample_type, "inuse_space");
    let types: Vec<&str> = decoded
        .sample_types
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let pprof_inuse: i64 = decoded.samples.iter().map(|s| s.values[3]).sum();
    let json_inuse: i64 = report
        .sites
        .iter()
        .map(|s| s.live_bytes.round() as i64)
        .sum();
    assert_eq!(pprof_inuse, json_inuse);
    let ours: i64 = decoded
        .samples
        .iter()
        .filter(|s| {
            s.functions
                .iter()
                .any(|f| f.contains("hold_http_test_memory"))
        })
        .map(|s| s.values[3])
        .sum();
    assert!(ours > 0, "the test's own site is in the profile");

    let allocs = get(addr, "/debug/pprof/allocs");
    assert_eq!(allocs.status, 200);
    assert_eq!(
        pprof::decode(&allocs.body).unwrap().default_sample_type,
        "alloc_space"
    );

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("Content-Type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(metrics.body).unwrap();
    for name in [
        "heapsampler_live_bytes ",
        "heapsampler_allocated_bytes_total ",
        "heapsampler_samples_dropped_total ",
        "heapsampler_own_bytes ",
        "heapsampler_allocated_bytes_per_second ",
        "heapsampler_process_rss_bytes ",
        "heapsampler_site_live_bytes{site=\"other\"} ",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
    drop(held);
}

/// `/debug/pprof/symbol` as Go's `net/http/pprof` answers it, for `go tool pprof`'s remote
/// symbolization: the addresses of a profile served without names get their functions.
#[test]
fn symbol_names_the_addresses_of_a_profile() {
    let held = hold_http_test_memory();
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    let probe = get(addr, "/debug/pprof/symbol");
    assert_eq!(probe.status, 200);
    assert_eq!(probe.body, b"num_symbols: 1\n");

    // The oracle: the JSON report's locations (the addresses a pprof of the same moment
    // holds), the outermost inlined frame of each being the function whose code holds it.
    let json = get(addr, "/heap.json");
    let report = heapsampler::Report::parse(std::str::from_utf8(&json.body).unwrap()).unwrap();
    let location = report
        .locations
        .iter()
        .find(|l| {
            l.frames.iter().any(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|f| f.contains("hold_http_test_memory"))
            })
        })
        .expect("the test's own location");
    // Inside the call, as a pprof location of it is written.
    let address = location.address - 1;
    let function = location.frames.last().unwrap().function.clone().unwrap();
    // An unknown address (no mapping holds 0x10) is left out.
    let body = format!("{address:#x}+0x10");
    let a = send(
        addr,
        format!(
            "POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let text = String::from_utf8(a.body).unwrap();
    assert_eq!(text, format!("num_symbols: 1\n{address:#x} {function}\n"));
    // The same with the addresses as the query of a GET.
    let a = get(addr, &format!("/debug/pprof/symbol?{body}"));
    assert_eq!(String::from_utf8(a.body).unwrap(), text);

    for (request, status) in [
        (
            "POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 4\r\n\r\n1234".to_string(),
            400,
        ),
        (
            "GET /debug/pprof/symbol?main HTTP/1.1\r\n\r\n".to_string(),
            400,
        ),
        (
            format!(
                "POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                2 << 20
            ),
            413,
        ),
        (
            "POST /debug/pprof/symbol HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
            411,
        ),
        (
            "POST /heap.json HTTP/1.1\r\nContent-Length: 3\r\n\r\n0x1".to_string(),
            405,
        ),
    ] {
        let a = send(addr, request.as_bytes());
        assert_eq!(a.status, status, "{request}");
        assert!(!a.body.is_empty(), "a message");
    }
    // A body that never comes in full: refused after the body deadline, not held forever.
    let mut s = connect(addr);
    s.write_all(b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 100\r\n\r\n0x1")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_answer(s).status, 400, "a body shorter than announced");
    drop(held);
}

#[test]
fn delta_profile_over_seconds() {
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    let fetch = std::thread::spawn(move || get(addr, "/debug/pprof/heap?seconds=1"));
    std::thread::sleep(Duration::from_millis(200));
    let held = hold_http_test_memory();
    let a = fetch.join().unwrap();
    assert_eq!(a.status, 200);
    let decoded = pprof::decode(&a.body).unwrap();
    let grown: i64 = decoded
        .samples
        .iter()
        .filter(|s| {
            s.functions
                .iter()
                .any(|f| f.contains("hold_http_test_memory"))
        })
        .map(|s| s.values[3])
        .sum();
    assert!(
        grown > 0,
        "4 MiB allocated during the window show as growth"
    );
    drop(held);
}

#[test]
fn bad_requests_get_4xx_with_a_message() {
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    let cases: &[(&[u8], u16)] = &[
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (
            b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            413,
        ),
        (b"GET /debug/pprof/heap?seconds=0 HTTP/1.1\r\n\r\n", 400),
        (b"GET /debug/pprof/heap?seconds=9999 HTTP/1.1\r\n\r\n", 400),
        (b"GET /debug/pprof/heap?debug=1 HTTP/1.1\r\n\r\n", 400),
        (b"GET /heap.json?snapshot=abc HTTP/1.1\r\n\r\n", 400),
        (b"GET /heap.json?snapshot=999999999 HTTP/1.1\r\n\r\n", 410),
        (b"GARBAGE\x01\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let a = send(addr, request);
        assert_eq!(a.status, *status, "{}", String::from_utf8_lossy(request));
        assert!(!a.body.is_empty(), "a message");
    }
    // An oversized head: refused once past 8 KiB, without waiting for the rest.
    let mut s = connect(addr);
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(16 * 1024));
    let _ = s.write_all(big.as_bytes());
    let a = read_answer(s);
    assert_eq!(a.status, 431);
    // The server still serves.
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn a_slow_client_does_not_block_another() {
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    let mut slow = connect(addr);
    slow.write_all(b"GET /metrics HT").unwrap(); // and nothing more, for now
    let a = get(addr, "/heap.json");
    assert_eq!(a.status, 200);
    // The slow client, finishing its request later, is served too.
    slow.write_all(b"TP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(slow).status, 200);
}

#[test]
fn connections_past_the_pool_and_its_queue_get_503() {
    let workers = 2;
    let endpoint = Endpoint::new("127.0.0.1:0")
        .workers(workers)
        .start()
        .unwrap();
    let addr = endpoint.local_addr();
    // Clients that send nothing hold a worker each, or a place in the queue, for the head
    // deadline (5 s). The probing below stays well inside it: a held connection answered
    // 408 would free its place and hide the 503 (a test that waited 0.5 s a connection
    // failed this way on a loaded machine).
    let bound = workers * 5; // the pool and its queue of 4 per worker
    let mut conns = Vec::new();
    let mut busy = None;
    let mut first = [0u8; 12];
    for _ in 0..=bound {
        let s = connect(addr);
        // The accept thread hands each connection on in turn: time to place this one.
        std::thread::sleep(Duration::from_millis(30));
        s.set_nonblocking(true).unwrap();
        conns.push(s);
    }
    let started = std::time::Instant::now();
    while busy.is_none() && started.elapsed() < Duration::from_secs(3) {
        for (i, s) in conns.iter_mut().enumerate() {
            if let Ok(n @ 1..) = s.read(&mut first) {
                busy = Some((i, String::from_utf8_lossy(&first[..n]).to_string()));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (answered, busy) = busy.expect("a 503 within workers + queue + 1 connections");
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    // Not before the pool's workers and most of the queue are taken (the workers may not
    // yet have taken their first connections off the queue when the last ones arrive).
    assert!(answered >= bound - workers, "503 to connection {answered}");
    drop(conns);
    // Once they go, the endpoint serves again.
    let mut served = false;
    for _ in 0..50 {
        // A 503 answer may still be reset by the server closing (the client's request
        // unread): retry on any failure.
        let attempt = std::panic::catch_unwind(|| get(addr, "/metrics").status);
        if attempt.ok() == Some(200) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served);
}

#[test]
fn plain_functions_return_the_same_kinds_of_bytes() {
    let p = heapsampler::http::pprof_heap_bytes();
    assert!(walk_protobuf(&gunzip(&p)) > 4);
    assert_eq!(pprof::decode(&p).unwrap().sample_types.len(), 4);
    let report = heapsampler::Report::parse(&heapsampler::http::heap_json()).unwrap();
    assert_eq!(report.pid, std::process::id());
    assert!(heapsampler::http::metrics_text().contains("heapsampler_live_objects "));
}

#[test]
fn stopping_joins_and_frees_the_port() {
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    endpoint.stop();
    // The same port can be bound again: the listener is closed.
    let again = heapsampler::http::serve(&addr.to_string()).unwrap();
    assert_eq!(get(again.local_addr(), "/").status, 200);
}

/// `/` is the heap timeline page of the running reporter's directory (feature `html`), the
/// index without one.
#[cfg(feature = "html")]
#[test]
fn the_root_is_the_timeline_of_the_running_reporter() {
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let addr = endpoint.local_addr();
    let dir = std::env::temp_dir().join(format!("hs-http-timeline-{}", std::process::id()));
    let handle = heapsampler::Reporter::new(&dir)
        .every(Duration::from_secs(3600))
        .start()
        .unwrap();
    let held = hold_http_test_memory();
    for _ in 0..3 {
        handle.dump_now().unwrap();
    }
    let root = get(addr, "/");
    assert_eq!(root.status, 200);
    let page = String::from_utf8(root.body).unwrap();
    assert!(page.contains("heap timeline of process"), "{page:.300}");
    // One point per report on the live-heap chart (each carries its report's index).
    for i in 0..3 {
        assert!(
            page.contains(&format!("data-report-index=\"{i}\"")),
            "report {i} drawn"
        );
    }
    drop(held);
    drop(handle);
    let _ = std::fs::remove_dir_all(&dir);
}
