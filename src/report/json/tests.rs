//! Tests of building, writing and reading reports.

use super::schema::Report;
use crate::read::profile::{Frame, Profile, Site};
use crate::record::live_record::StackId;
use crate::record::totals::Totals;

fn site(id: StackId, live: f64, alloc: f64, addrs: &[u64]) -> Site {
    Site {
        stack_id: id,
        addresses: addrs.to_vec(),
        live_bytes: live,
        live_objects: live / 16.0,
        alloc_bytes: alloc,
        alloc_objects: alloc / 16.0,
        samples: 3,
        live_samples: 1,
        ..Site::default()
    }
}

fn profile(ts: u64, sites: Vec<Site>, allocated: u64) -> Profile {
    Profile {
        pid: 4242,
        timestamp_ms: ts,
        sample_interval: 4096,
        totals: Totals {
            alloc_bytes: allocated,
            alloc_objects: allocated / 8,
            ..Totals::default()
        },
        sites,
        ..Profile::default()
    }
}

#[test]
fn rates_are_deltas_over_the_window_matched_by_stack_id() {
    let before = profile(
        10_000,
        vec![site(1, 0.0, 1000.0, &[1]), site(2, 5.0, 500.0, &[2])],
        10_000,
    );
    let now = profile(
        12_000,
        vec![
            site(1, 100.0, 5000.0, &[1]),
            site(2, 5.0, 500.0, &[2]),
            site(3, 50.0, 60.0, &[3]),
        ],
        30_000,
    );
    let r = Report::from_profile(&now, Some(&before), vec![], vec![]);
    assert_eq!(r.window_ms, 2000);
    assert_eq!(r.totals.allocated_bytes_per_sec, 10_000.0);
    let by_id = |id| r.sites.iter().find(|s| s.stack_id == id).unwrap();
    assert_eq!(by_id(1).alloc_bytes_per_sec, 2000.0);
    assert_eq!(by_id(1).alloc_objects_per_sec, 125.0);
    assert_eq!(by_id(2).alloc_bytes_per_sec, 0.0);
    // A site new in this window: everything it allocated is in the window.
    assert_eq!(by_id(3).alloc_bytes_per_sec, 30.0);
    let order: Vec<_> = r.sites.iter().map(|s| s.stack_id).collect();
    assert_eq!(
        order,
        vec![1, 3, 2],
        "sites sorted by live bytes, largest first"
    );
}

#[test]
fn a_reused_id_with_other_frames_is_a_new_site_and_no_nan_escapes() {
    let before = profile(1000, vec![site(1, 0.0, 1000.0, &[1, 2])], 0);
    let now = profile(1000, vec![site(1, f64::NAN, 400.0, &[9, 9])], 0);
    let r = Report::from_profile(&now, Some(&before), vec![], vec![]);
    assert_eq!(r.window_ms, 0);
    assert_eq!(
        r.sites[0].alloc_bytes_per_sec, 0.0,
        "zero window gives zero rates"
    );
    assert_eq!(r.sites[0].live_bytes, 0.0);
    let later = profile(3000, vec![site(1, 1.0, 400.0, &[9, 9])], 0);
    let r = Report::from_profile(&later, Some(&before), vec![], vec![]);
    assert_eq!(r.sites[0].alloc_bytes_per_sec, 200.0);
    assert_eq!(Report::parse(&r.to_string_pretty()).unwrap(), r);
}

#[test]
fn layout_indents_two_levels_and_puts_each_site_on_one_line() {
    let p = profile(
        5,
        vec![site(1, 3.0, 4.0, &[10, 20]), site(2, 1.0, 1.0, &[30])],
        64,
    );
    let r = Report::from_profile(&p, None, vec![], vec![]);
    let text = r.to_string_pretty();
    assert!(
        text.starts_with("{\n  \"format\": \"heapsampler-heap-report\",\n  \"version\": 1,"),
        "{text}"
    );
    assert!(
        text.contains("\n  \"totals\": {\n    \"allocated_bytes\": 64,"),
        "{text}"
    );
    assert!(
        text.contains("\n  \"sites\": [\n    {\"stack_id\":1,\"live_bytes\":3.0,"),
        "{text}"
    );
    assert!(
        text.contains("\"addresses\":[10,20],\"threads\":[]},\n    {\"stack_id\":2,"),
        "{text}"
    );
    assert!(text.contains("\n  \"leak_suspects\": [],\n"), "{text}");
    assert!(text.ends_with("\n  \"mappings\": []\n}"), "{text}");
    assert_eq!(Report::parse(&text).unwrap(), r);
}

#[test]
fn header_errors_are_named() {
    let msg = |t: &str| Report::parse(t).unwrap_err().to_string();
    assert!(msg("").starts_with("truncated report"), "{}", msg(""));
    assert!(
        msg("{nope").starts_with("not a JSON document"),
        "{}",
        msg("{nope")
    );
    assert_eq!(
        msg(r#"{"version": 1}"#),
        "not a heapsampler heap report: no `format` field"
    );
    assert_eq!(
        msg(r#"{"format": "pprof", "version": 1}"#),
        "not a heapsampler heap report: `format` is \"pprof\" (expected \"heapsampler-heap-report\")"
    );
    assert_eq!(
        msg(r#"{"format": "heapsampler-heap-report", "version": 2, "sites": 5}"#),
        "unsupported report version 2 (this build reads version 1)"
    );
    assert_eq!(
        msg(r#"{"format": "heapsampler-heap-report"}"#),
        "invalid report: missing field `version`"
    );
    let m = msg(r#"{"format": "heapsampler-heap-report", "version": 1, "pid": 3}"#);
    assert!(m.starts_with("invalid report: missing field"), "{m}");
}

fn frame(address: u64, f: &str) -> Frame {
    Frame {
        address,
        function: Some(f.into()),
        file: Some("x.rs".into()),
        line: Some(address as u32),
    }
}

/// Frames as a debug build symbolizes them: `Sampler::alloc` inlined into the global
/// allocator shim, whose entry address capture skipped, leaves the wrapper's frame (and
/// std's allocation shims) at the top of the stack.
#[test]
fn a_site_is_never_named_after_the_allocator() {
    let mut p = profile(1, vec![site(1, 1.0, 1.0, &[10, 20, 30])], 0);
    p.sites[0].frames = vec![
        frame(
            10,
            "<heapsampler::allocator::Sampler<A> as core::alloc::global::GlobalAlloc>::alloc",
        ),
        frame(10, "__rustc::__rust_alloc"),
        frame(20, "alloc::alloc::Global::alloc_impl"),
        frame(
            20,
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
        ),
        frame(20, "alloc::raw_vec::RawVecInner<A>::try_allocate_in"),
        frame(30, "leaky_service::Sessions::open"),
    ];
    let r = Report::from_profile(&p, None, vec![], vec![]);
    assert_eq!(
        r.top_function(&r.sites[0]),
        Some("leaky_service::Sessions::open")
    );
    // Only the allocator and the standard library: the first frame that is not the
    // allocator names it.
    p.sites[0].frames.truncate(5);
    p.sites[0].addresses.truncate(2);
    let r = Report::from_profile(&p, None, vec![], vec![]);
    assert_eq!(
        r.top_function(&r.sites[0]),
        Some("alloc::raw_vec::RawVecInner<A>::try_allocate_in")
    );
}

#[test]
fn top_function_skips_library_frames() {
    let mut p = profile(1, vec![site(1, 1.0, 1.0, &[10, 20, 30])], 0);
    p.sites[0].frames = vec![
        frame(10, "alloc::raw_vec::RawVecInner<A>::finish_grow"),
        frame(10, "<T as alloc::slice::hack::ConvertVec>::to_vec"),
        frame(20, "<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
        frame(20, "std::collections::hash::map::HashMap<K,V>::insert"),
        frame(30, "leaky::leak_session_state"),
    ];
    let r = Report::from_profile(&p, None, vec![], vec![]);
    assert_eq!(
        r.top_function(&r.sites[0]),
        Some("leaky::leak_session_state")
    );
    p.sites[0].frames.truncate(2);
    p.sites[0].addresses.truncate(1);
    let r = Report::from_profile(&p, None, vec![], vec![]);
    assert_eq!(
        r.top_function(&r.sites[0]),
        Some("alloc::raw_vec::RawVecInner<A>::finish_grow")
    );
}

#[test]
fn locations_store_each_address_once_and_rebuild_every_sites_frames() {
    // Site 1 recurses through address 20 (three copies); site 2 starts at 20 with its
    // allocator frame already dropped by symbolization.
    let mut p = profile(
        1,
        vec![
            site(1, 1.0, 1.0, &[10, 20, 20, 20, 30]),
            site(2, 2.0, 2.0, &[20, 30]),
        ],
        0,
    );
    let rec = [frame(20, "app::walk"), frame(20, "app::walk_inner")];
    p.sites[0].frames = [
        vec![frame(10, "app::leaf")],
        rec.to_vec(),
        rec.to_vec(),
        rec.to_vec(),
        vec![frame(30, "main")],
    ]
    .concat();
    p.sites[1].frames = vec![frame(20, "app::walk_inner"), frame(30, "main")];
    let r = Report::from_profile(&p, None, vec![], vec![]);
    let addresses: Vec<u64> = r.locations.iter().map(|l| l.address).collect();
    assert_eq!(addresses, vec![10, 20, 30]);
    assert_eq!(
        r.location(20).unwrap().frames.len(),
        2,
        "one copy of the recursive frames"
    );
    let back = r.to_profile();
    for (original, rebuilt) in p.sites.iter().zip(back.sites.iter().rev()) {
        assert_eq!(original.stack_id, rebuilt.stack_id);
        if original.stack_id == 1 {
            assert_eq!(rebuilt.frames, original.frames);
        } else {
            // Both frames of address 20 are known now: the rebuilt stack is the complete one.
            assert_eq!(rebuilt.frames.len(), 3);
            assert_eq!(rebuilt.frames[1..], original.frames[..]);
        }
    }
    assert_eq!(Report::parse(&r.to_string_pretty()).unwrap(), r);
}
