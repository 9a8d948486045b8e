use super::build::apportion;
use super::*;
use crate::read::profile::{Frame, Site, SiteThread};
use crate::record::stack_table::OTHER_THREADS;
use std::io::Read;

fn frame(address: u64, function: &str, line: u32) -> Frame {
    Frame {
        address,
        function: Some(function.into()),
        file: Some("src/app.rs".into()),
        line: Some(line),
    }
}

fn thread(thread: u32, name: &str, alloc: f64, live: f64) -> SiteThread {
    SiteThread {
        thread,
        name: name.into(),
        alloc_bytes: alloc,
        live_bytes: live,
    }
}

fn sample_profile() -> Profile {
    let a = Site {
        stack_id: 1,
        addresses: vec![0x1010, 0x2020],
        // 0x1010 holds an inlined frame: two lines at one location.
        frames: vec![
            frame(0x1010, "inner", 5),
            frame(0x1010, "outer", 9),
            frame(0x2020, "main", 3),
        ],
        live_bytes: 3000.4,
        live_objects: 30.2,
        alloc_bytes: 10_000.6,
        alloc_objects: 100.5,
        samples: 4,
        live_samples: 2,
        threads: vec![
            thread(1, "main", 6000.0, 1000.0),
            thread(2, "worker", 3000.6, 2000.4),
            thread(OTHER_THREADS, "(other threads)", 1000.0, 0.0),
        ],
    };
    let b = Site {
        stack_id: 2,
        addresses: vec![0x1010, 0x3030],
        frames: vec![
            frame(0x1010, "inner", 5),
            frame(0x1010, "outer", 9),
            frame(0x3030, "other", 1),
        ],
        live_bytes: 512.0,
        live_objects: 1.0,
        alloc_bytes: 512.0,
        alloc_objects: 1.0,
        samples: 1,
        live_samples: 1,
        threads: Vec::new(),
    };
    Profile {
        pid: 1,
        timestamp_ms: 1_700_000_000_000,
        sample_interval: 524_288,
        sites: vec![a, b],
        ..Default::default()
    }
}

fn decode(bytes: &[u8]) -> proto::Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .expect("gzip");
    proto::Profile::decode(raw.as_slice()).expect("protobuf")
}

#[test]
fn round_trips_with_go_heap_shape() {
    let profile = sample_profile();
    let maps = vec![Mapping {
        path: "/usr/bin/app".into(),
        start: 0x1000,
        end: 0x3000,
        offset: 0,
        build_id: Some("abcd".into()),
    }];
    let p = decode(&render(&profile, &maps));
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    let period_type = p.period_type.expect("period type");
    assert_eq!(
        (s(period_type.r#type), s(period_type.unit)),
        ("space", "bytes")
    );
    assert_eq!(p.period, 524_288);
    assert_eq!(s(p.default_sample_type), "inuse_space");
    assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);

    // Sums over samples equal the profile's (rounded) sums, column by column.
    let mut sums = [0i64; 4];
    for sample in &p.sample {
        for (acc, v) in sums.iter_mut().zip(&sample.value) {
            *acc += v;
        }
    }
    let round = |x: f64| x.round() as i64;
    let want = [
        round(100.5) + 1,
        round(10_000.6) + 512,
        round(30.2) + 1,
        round(3000.4) + 512,
    ];
    assert_eq!(sums, want);

    // Thread labels: site 1 splits into main, worker and an unlabelled rest; site 2
    // has no attribution and is one unlabelled sample.
    let thread_key = p
        .string_table
        .iter()
        .position(|x| x == "thread")
        .expect("key") as i64;
    let by_label = |name: Option<&str>| -> Vec<&proto::Sample> {
        p.sample
            .iter()
            .filter(|x| {
                let l = x
                    .label
                    .iter()
                    .find(|l| l.key == thread_key)
                    .map(|l| s(l.str));
                l == name
            })
            .collect()
    };
    let main = by_label(Some("main"));
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].value[1], 6000);
    assert_eq!(main[0].value[3], 1000);
    let worker = by_label(Some("worker"));
    assert_eq!(worker[0].value[1], 3001);
    assert_eq!(worker[0].value[3], 2000);
    assert!(by_label(Some("(other threads)")).is_empty());
    let rest = by_label(None);
    assert_eq!(rest.len(), 2);
    assert_eq!(
        rest.iter().map(|x| x.value[1]).sum::<i64>(),
        10_001 - 9001 + 512
    );
    // Per-site sums hold too: the labelled parts of site 1 plus its rest.
    assert_eq!(
        main[0].value[3] + worker[0].value[3] + rest[0].value[3],
        3000
    );

    // Dictionaries are shared: location 0x1010 (two inlined lines) is stored once.
    assert_eq!(p.location.len(), 3);
    let shared = p
        .location
        .iter()
        .find(|l| l.address == 0x1010 - 1)
        .expect("location");
    let names: Vec<&str> = shared
        .line
        .iter()
        .map(|l| s(p.function[(l.function_id - 1) as usize].name))
        .collect();
    assert_eq!(names, ["inner", "outer"]);
    assert_eq!(p.function.len(), 4);
    assert_eq!(shared.mapping_id, 1);
    assert_eq!(
        p.location
            .iter()
            .find(|l| l.address == 0x3030 - 1)
            .map(|l| l.mapping_id),
        Some(0)
    );
    assert_eq!(s(p.mapping[0].filename), "/usr/bin/app");
    assert_eq!(s(p.mapping[0].build_id), "abcd");
    // Leaf first.
    let leaf = p
        .location
        .iter()
        .position(|l| l.address == 0x1010 - 1)
        .expect("leaf") as u64
        + 1;
    assert!(p.sample.iter().all(|x| x.location_id[0] == leaf));
}

#[test]
fn unsymbolized_profile_has_address_locations() {
    let mut profile = sample_profile();
    for site in &mut profile.sites {
        site.frames.clear();
        site.addresses.push(0);
    }
    let p = decode(&render(&profile, &[]));
    assert_eq!(p.location.len(), 3);
    assert!(
        p.location
            .iter()
            .all(|l| l.line.is_empty() && l.mapping_id == 0)
    );
    assert!(p.function.is_empty());
}

#[test]
fn apportion_preserves_the_total() {
    assert_eq!(apportion(&[1.0, 1.0, 1.0], 10), [4, 3, 3]);
    assert_eq!(apportion(&[0.0, 0.0], 7), [0, 7]);
    assert_eq!(apportion(&[2.5, 2.5], 5), [3, 2]);
    assert_eq!(apportion(&[1.0], 0), [0]);
    let parts = [0.3, 0.3, 0.4];
    assert_eq!(apportion(&parts, 1).iter().sum::<i64>(), 1);
}

#[test]
fn mappings_flag_only_what_their_locations_hold() {
    let maps = |profile: &Profile| {
        let maps = vec![
            Mapping {
                path: "/usr/bin/app".into(),
                start: 0x1000,
                end: 0x3000,
                ..Mapping::default()
            },
            Mapping {
                path: "/usr/lib/libc.so.6".into(),
                start: 0x3000,
                end: 0x4000,
                ..Mapping::default()
            },
        ];
        decode(&render(profile, &maps)).mapping
    };
    let flags = |m: &proto::Mapping| {
        (
            m.has_functions,
            m.has_filenames,
            m.has_line_numbers,
            m.has_inline_frames,
        )
    };
    // The app's addresses have names, files, lines and an inlined frame; libc's frame
    // (0x3030) a name only.
    let mut profile = sample_profile();
    for f in profile.sites.iter_mut().flat_map(|s| &mut s.frames) {
        if f.address == 0x3030 {
            (f.file, f.line) = (None, None);
        }
    }
    let m = maps(&profile);
    assert_eq!(flags(&m[0]), (true, true, true, true));
    assert_eq!(flags(&m[1]), (true, false, false, false));
    // Names without lines (a binary without line tables): no line numbers claimed.
    for f in profile.sites.iter_mut().flat_map(|s| &mut s.frames) {
        f.line = None;
    }
    assert_eq!(flags(&maps(&profile)[0]), (true, true, false, true));
    // Unsymbolized: nothing claimed, pprof symbolizes from the binaries itself.
    for site in &mut profile.sites {
        site.frames.clear();
    }
    assert!(
        maps(&profile)
            .iter()
            .all(|m| flags(m) == (false, false, false, false))
    );
}
