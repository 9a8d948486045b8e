//! `go tool pprof` names a profile written without names: `-symbolize=remote` through the
//! endpoint's `/debug/pprof/symbol`, and `-symbolize=local` from the binary itself.

use heapsampler::report::pprof;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    heapsampler::Sampler::new(std::alloc::System);

/// Sends one request and returns the answer's body.
fn send(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    assert!(
        raw.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    raw[end + 4..].to_vec()
}

/// Memory held by a named function, so the profile has a site to find.
#[inline(never)]
fn hold_http_test_memory() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; 64 * 1024]).collect()
}

/// The oracle: the names of the test's site's addresses, as the in-process symbolizer gives
/// them (each address's outermost inlined frame; the allocator's own left out).
fn site_names(snapshot: &heapsampler::Profile) -> Vec<(u64, String)> {
    snapshot
        .sites
        .iter()
        .map(|s| {
            s.addresses
                .iter()
                .map(|&a| (a, heapsampler::symbolize::resolve(a)))
                .collect::<Vec<_>>()
        })
        .find(|frames| {
            frames.iter().any(|(_, f)| {
                f.iter().any(|f| {
                    f.function
                        .as_deref()
                        .is_some_and(|n| n.contains("hold_http_test_memory"))
                })
            })
        })
        .expect("the test's site")
        .into_iter()
        .filter_map(|(a, f)| Some((a, f.last()?.function.clone()?)))
        .filter(|(_, name)| !name.contains("heapsampler::") && !name.starts_with("__rust"))
        .collect()
}

/// Whether `go` can be run; if not, says which check is skipped.
fn go_installed(what: &str) -> bool {
    let found = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok();
    if !found {
        eprintln!("go is not installed: go tool pprof's {what} not checked");
    }
    found
}

/// Runs `go tool pprof ARGS SOURCE` with its home and temporary files in a directory of its
/// own, and returns what it printed; it must succeed. `setup` may put files there first and
/// returns the source (a URL or a file).
fn go_pprof(args: &[&str], setup: impl FnOnce(&std::path::Path) -> String) -> String {
    // One directory per run: the tests run at once.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("hs-go-pprof-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let source = setup(&tmp);
    let out = std::process::Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(source)
        .env("PPROF_TMPDIR", &tmp)
        .env("HOME", &tmp)
        .output()
        .expect("run go tool pprof");
    let _ = std::fs::remove_dir_all(&tmp);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The real client: `go tool pprof -symbolize=remote` reads a profile written without names
/// from a server of this test's, which forwards `/debug/pprof/symbol` to the endpoint, and
/// names the test's site's addresses as the in-process symbolizer does. Skipped (with a
/// note) where `go` is not installed.
#[test]
fn go_tool_pprof_symbolizes_through_the_endpoint() {
    if !go_installed("remote symbolization") {
        return;
    }
    let held = hold_http_test_memory();
    let endpoint = heapsampler::http::serve("127.0.0.1:0").unwrap();
    let upstream = endpoint.local_addr();
    // Written without names: only addresses and the process's mappings.
    let snapshot = heapsampler::snapshot();
    let profile = pprof::render(&snapshot, &heapsampler::report::mappings::current());
    let expected = site_names(&snapshot);
    assert!(expected.len() >= 3, "{expected:?}");
    assert!(
        pprof::decode(&profile)
            .unwrap()
            .samples
            .iter()
            .all(|s| s.functions.is_empty())
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let asked_by_go = asked.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            // The head, then as much body as it announces.
            let (head, body) = loop {
                let Ok(n) = s.read(&mut buf) else {
                    break (String::new(), Vec::new());
                };
                raw.extend_from_slice(&buf[..n]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while raw.len() < end + 4 + length && n > 0 {
                        let n = s.read(&mut buf).unwrap();
                        raw.extend_from_slice(&buf[..n]);
                    }
                    break (head, raw[end + 4..].to_vec());
                }
                if n == 0 {
                    break (String::new(), Vec::new());
                }
            };
            let target = head.split(' ').nth(1).unwrap_or("").to_string();
            let answer = if target.starts_with("/debug/pprof/symbol") {
                asked_by_go.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let method = head.split(' ').next().unwrap_or("GET");
                let mut request = format!(
                    "{method} {target} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(&body);
                send(upstream, &request)
            } else {
                profile.clone()
            };
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                )
                .as_bytes(),
            );
            let _ = s.write_all(&answer);
        }
    });
    let text = go_pprof(&["-symbolize=remote:demangle=none", "-raw"], |_| {
        format!("http://{front}/debug/pprof/heap")
    });
    assert!(
        asked.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "pprof asked for names"
    );
    // `-raw` lists each location as `N: 0xADDRESS M=N NAME :0 s=0`, its address inside the
    // call (one byte before the return address).
    for (address, name) in &expected {
        let address = address - 1;
        let named = text
            .lines()
            .any(|l| l.contains(&format!(" {address:#x} M=")) && l.contains(&format!(" {name} :")));
        assert!(named, "{address:#x} {name} not in\n{text}");
    }
    drop(held);
}

/// `go tool pprof -symbolize=local` reads a profile written without names and names its
/// addresses from the binary named in its mappings: it derives the load bias from the
/// mapping's start and the code segment's link-time address, so a mapping that starts a
/// page before the code (lld's layout) would shift every name. Go's symbolizer gives DWARF's
/// short names: each must be part of the in-process symbolizer's name for the address.
#[test]
fn go_tool_pprof_symbolizes_from_the_binary() {
    if !go_installed("local symbolization") {
        return;
    }
    let held = hold_http_test_memory();
    let snapshot = heapsampler::snapshot();
    let profile = pprof::render(&snapshot, &heapsampler::report::mappings::current());
    let expected = site_names(&snapshot);
    assert!(expected.len() >= 3, "{expected:?}");
    let text = go_pprof(&["-symbolize=local", "-raw"], |dir| {
        let file = dir.join("heap.pb.gz");
        std::fs::write(&file, &profile).unwrap();
        file.display().to_string()
    });
    // `-raw`: `N: 0xADDRESS M=N NAME FILE:LINE s=0`.
    for (address, name) in &expected {
        let needle = format!(" {:#x} M=", address - 1);
        let line = text
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("{needle} not in\n{text}"));
        let go_name = line.split_whitespace().nth(3).unwrap_or("");
        assert!(
            !go_name.is_empty() && name.contains(go_name),
            "{address:#x}: go tool pprof named {go_name:?}, the in-process symbolizer {name:?}\n{line}"
        );
    }
    drop(held);
}
