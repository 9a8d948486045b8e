//! Schema v1 of the JSON report, held against a committed file: a fixed report, with every
//! field set, must serialise to exactly `tests/data/report-v1.json` and read back equal. A
//! field renamed, added, dropped or reordered in the schema's types fails here; change the
//! file only together with `docs/report-format.md` (and the version, for anything but an
//! added field).

use heapsampler::Report;
use heapsampler::report::json::{
    FORMAT, Location, LocationFrame, ReportCounts, ReportProfiler, ReportSite, ReportThread,
    ReportTotals, VERSION,
};
use heapsampler::report::mappings::Mapping;

const GOLDEN: &str = include_str!("data/report-v1.json");

/// Every field distinct, so a swap of two fields shows.
fn fixed_report() -> Report {
    Report {
        format: FORMAT.to_string(),
        version: VERSION,
        pid: 4242,
        program: "/srv/app".into(),
        timestamp_ms: 1_764_000_000_123,
        window_ms: 60_000,
        sample_interval: 524_288,
        totals: ReportTotals {
            counts: ReportCounts {
                allocated_bytes: 1_000_001,
                allocated_objects: 1_002,
                freed_bytes: 900_003,
                freed_objects: 904,
                live_bytes: 100_005,
                live_objects: 106,
                peak_live_bytes: 200_007,
                overhead_allocated_bytes: 8,
                overhead_allocated_objects: 9,
                overhead_freed_bytes: 10,
                overhead_freed_objects: 11,
            },
            allocated_bytes_per_sec: 12.5,
            allocated_objects_per_sec: 13.5,
            freed_bytes_per_sec: 14.5,
            freed_objects_per_sec: 15.5,
        },
        profiler: ReportProfiler {
            samples: 16,
            samples_dropped: 17,
            live_samples: 18,
            stacks: 19,
            stacks_evicted: 20,
            max_stacks: 21,
            max_live_samples: 22,
            table_bytes: 23,
            overhead_alloc_bytes: 24,
            exact_max_stacks: 25,
            exact_max_live_samples: 26,
            padding_bytes: 27,
            max_padding_bytes: 28,
            samples_unaligned: 29,
            own_bytes: 30,
            own_bytes_budget: 31,
            unattributed_live_bytes: 32.25,
        },
        sites: vec![ReportSite {
            stack_id: 33,
            live_bytes: 34.5,
            live_objects: 35.5,
            alloc_bytes: 36.5,
            alloc_objects: 37.5,
            alloc_bytes_per_sec: 38.5,
            alloc_objects_per_sec: 39.5,
            samples: 40,
            live_samples: 41,
            addresses: vec![0x1000, 0x2000],
            threads: vec![ReportThread {
                thread: 42,
                name: "worker-1".into(),
                alloc_bytes: 43.5,
                live_bytes: 44.5,
            }],
        }],
        locations: vec![
            Location {
                address: 0x1000,
                frames: vec![
                    LocationFrame {
                        function: Some("app::inner".into()),
                        file: Some("src/inner.rs".into()),
                        line: Some(45),
                    },
                    LocationFrame {
                        function: Some("app::outer".into()),
                        file: None,
                        line: None,
                    },
                ],
            },
            Location {
                address: 0x2000,
                frames: vec![LocationFrame::default()],
            },
        ],
        leak_suspects: vec![heapsampler::LeakSuspect {
            stack_id: 33,
            growth_bytes_per_sec: 46.5,
            confidence: 0.75,
            reports_considered: 47,
            live_bytes: 48.5,
        }],
        mappings: vec![Mapping {
            path: "/srv/app".into(),
            start: 0x40_0000,
            end: 0x50_0000,
            offset: 0x1000,
            build_id: Some("0123abcd".into()),
        }],
        process_memory: None,
    }
}

#[test]
fn a_fixed_report_serialises_to_the_committed_file() {
    let text = fixed_report().to_string_pretty();
    if std::env::var_os("HEAPSAMPLER_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/report-v1.json");
        std::fs::write(path, format!("{text}\n")).unwrap();
    }
    assert_eq!(
        text,
        GOLDEN.trim_end(),
        "schema v1 changed: compare with tests/data/report-v1.json and docs/report-format.md"
    );
}

#[test]
fn the_committed_file_reads_back_as_the_fixed_report() {
    assert_eq!(Report::parse(GOLDEN).unwrap(), fixed_report());
}

#[test]
fn every_field_of_the_file_is_documented() {
    let doc = include_str!("../docs/report-format.md");
    let value: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let mut keys = Vec::new();
    fn walk(v: &serde_json::Value, keys: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    keys.push(k.clone());
                    walk(v, keys);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, keys)),
            _ => {}
        }
    }
    walk(&value, &mut keys);
    let missing: Vec<&String> = keys
        .iter()
        // A key is documented as `key`, or nested as `parent[].key`.
        .filter(|k| !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("[].{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/report-format.md: {missing:?}"
    );
}
