//! Reports written unsymbolized and symbolized offline from the binary: the same frames as
//! the process's own symbolizer, the site named after the function that allocated, and the
//! address recipe of docs/report-format.md checked with binutils' `addr2line`.

use heapsampler::report::offline;
use heapsampler::{Report, Reporter, Sampler};
use std::alloc::System;
use std::path::PathBuf;
use std::process::Command;

#[global_allocator]
static GLOBAL: Sampler<System> = Sampler::new(System);

/// A directory removed at the end of the test.
#[path = "support/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

#[inline(never)]
fn offline_marker_alloc() -> Vec<u8> {
    std::hint::black_box(vec![3u8; 4 << 20])
}

/// An unsymbolized report of this process holding `offline_marker_alloc`'s block, and the
/// block.
fn unsymbolized_report(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    // The interval is process-wide: one test at a time changes it.
    static INTERVAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INTERVAL.lock().unwrap_or_else(|e| e.into_inner());
    // Exact recording: the block is sampled for sure.
    heapsampler::set_sample_interval(1);
    let block = offline_marker_alloc();
    let handle = Reporter::new(&dir.0).symbolize(false).start().unwrap();
    let path = handle.dump_now().unwrap();
    drop(handle);
    heapsampler::set_sample_interval(heapsampler::DEFAULT_SAMPLE_INTERVAL);
    (path, block)
}

fn marker_site(report: &Report) -> &heapsampler::report::json::ReportSite {
    report
        .sites
        .iter()
        .find(|s| {
            s.live_bytes >= (4 << 20) as f64
                && report
                    .top_function(s)
                    .is_some_and(|f| f.ends_with("offline_marker_alloc"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no site named offline_marker_alloc among {:?}",
                report
                    .sites
                    .iter()
                    .take(5)
                    .map(|s| report.top_function(s))
                    .collect::<Vec<_>>()
            )
        })
}

#[test]
fn offline_symbols_equal_the_processs_own() {
    let dir = TempDir::new("same");
    let (path, block) = unsymbolized_report(&dir);
    let mut report = Report::read(&path).unwrap();
    assert!(report.locations.is_empty(), "written unsymbolized");
    assert!(!report.mappings.is_empty());
    let exe = std::env::current_exe().unwrap();
    let summary = offline::symbolize_report(&mut report, &[exe]).unwrap();
    assert!(
        summary.named > 0 && summary.named <= summary.addresses,
        "{summary:?}"
    );

    // Every address symbolized offline has the frames the process's symbolizer gives it
    // (it finds link addresses from the loader's bias, not from the mappings).
    let addresses: Vec<u64> = report.locations.iter().map(|l| l.address).collect();
    let own = heapsampler::symbolize::resolve_all(&addresses);
    for (location, own) in report.locations.iter().zip(&own) {
        let own: Vec<_> = own
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        let offline: Vec<_> = location
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        assert_eq!(offline, own, "address {:#x}", location.address);
    }
    let site = marker_site(&report);
    let frames = report.site_frames(site);
    assert!(frames.iter().any(|f| {
        f.file
            .as_deref()
            .is_some_and(|p| p.ends_with("offline_symbols.rs"))
            && f.line.is_some()
    }));
    drop(block);
}

/// The recipe of docs/report-format.md, step by step with binutils: the mapping gives the file
/// offset, `readelf -lW` the `PT_LOAD` segment, and `addr2line` names the function.
#[test]
fn the_documented_recipe_names_the_function() {
    if Command::new("addr2line").arg("--version").output().is_err()
        || Command::new("readelf").arg("--version").output().is_err()
    {
        eprintln!("binutils not installed: skipped");
        return;
    }
    let dir = TempDir::new("recipe");
    let (path, block) = unsymbolized_report(&dir);
    let report = Report::read(&path).unwrap();
    let exe = std::env::current_exe().unwrap();
    // The innermost address of the site that is in this executable and names the marker.
    let mut symbolized = report.clone();
    offline::symbolize_report(&mut symbolized, std::slice::from_ref(&exe)).unwrap();
    let site = marker_site(&symbolized);
    let address = site
        .addresses
        .iter()
        .copied()
        .find(|&a| {
            symbolized.location(a).is_some_and(|l| {
                l.frames.iter().any(|f| {
                    f.function
                        .as_deref()
                        .is_some_and(|n| n.ends_with("offline_marker_alloc"))
                })
            })
        })
        .expect("an address in offline_marker_alloc");
    // 1. The mapping holding the address, 2. the file offset.
    let m = report
        .mappings
        .iter()
        .find(|m| m.start <= address && address < m.end)
        .unwrap();
    let file_offset = address - m.start + m.offset;
    // 3. The PT_LOAD segment holding the file offset (`readelf -lW`: Type Offset VirtAddr
    // PhysAddr FileSiz MemSiz Flg Align), 4. the link-time address.
    let headers = Command::new("readelf")
        .arg("-lW")
        .arg(&exe)
        .output()
        .unwrap();
    let headers = String::from_utf8(headers.stdout).unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let link = headers
        .lines()
        .map(str::split_whitespace)
        .filter_map(|mut f| {
            (f.next() == Some("LOAD")).then(|| {
                let v: Vec<u64> = f.take(4).map(hex).collect();
                (v[0], v[1], v[3])
            })
        })
        .find(|&(offset, _, filesz)| offset <= file_offset && file_offset < offset + filesz)
        .map(|(offset, vaddr, _)| file_offset - offset + vaddr)
        .expect("a PT_LOAD segment holds the address");
    // A return address: the call is the byte before.
    let out = Command::new("addr2line")
        .args(["-f", "-C", "-i", "-e"])
        .arg(&exe)
        .arg(format!("{:#x}", link - 1))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines().any(|l| l.contains("offline_marker_alloc")),
        "addr2line at {:#x} said {out}",
        link - 1
    );
    drop(block);
}

/// The CLI: `heapsampler symbolize REPORT --binary PATH -o OUT` writes the names.
#[cfg(feature = "cli")]
#[test]
fn the_cli_symbolizes_a_report_file() {
    let dir = TempDir::new("cli");
    let (path, block) = unsymbolized_report(&dir);
    let out = dir.0.join("named.json");
    let run = Command::new(env!("CARGO_BIN_EXE_heapsampler"))
        .arg("symbolize")
        .arg(&path)
        .arg("--binary")
        .arg(std::env::current_exe().unwrap())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let named = Report::read(&out).unwrap();
    marker_site(&named);
    // A binary that is not the one of the report: one line, status 2.
    let wrong = Command::new(env!("CARGO_BIN_EXE_heapsampler"))
        .arg("symbolize")
        .arg(&path)
        .arg("--binary")
        .arg("/bin/sh")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("matches no mapping"), "{err}");
    drop(block);
}
