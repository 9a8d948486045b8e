//! Property tests of the report reader (`Report::parse`): whatever the text, it returns a
//! report whose numbers are in range or an error of one line; it never panics. Bounded: a few
//! hundred cases per property (`PROPTEST_CASES` raises it for a longer run).

use heapsampler::{Frame, LeakSuspect, Profile, Report, Site, SiteThread, Totals};
use proptest::prelude::*;

/// A good report (two sites, a suspect, a mapping) as the writer lays it out.
fn good_text() -> String {
    let frame = |address, f: &str| Frame {
        address,
        function: Some(f.into()),
        file: Some("src/x.rs".into()),
        line: Some(3),
    };
    let site = |id, frames: Vec<Frame>, live| Site {
        stack_id: id,
        addresses: frames.iter().map(|f| f.address).collect(),
        frames,
        live_bytes: live,
        live_objects: 4.0,
        alloc_bytes: 2.0 * live,
        alloc_objects: 8.0,
        samples: 9,
        live_samples: 3,
        threads: vec![SiteThread {
            thread: 1,
            name: "main".into(),
            alloc_bytes: live,
            live_bytes: live,
        }],
    };
    let profile = Profile {
        pid: 90_000_003,
        timestamp_ms: 1_767_225_600_000,
        sample_interval: 4096,
        totals: Totals {
            alloc_bytes: 1 << 20,
            live_bytes: 1 << 19,
            peak_live_bytes: 1 << 20,
            ..Totals::default()
        },
        sites: vec![
            site(
                1,
                vec![frame(0x10, "app::load"), frame(0x20, "app::main")],
                5e5,
            ),
            site(
                2,
                vec![frame(0x30, "app::parse"), frame(0x20, "app::main")],
                1e3,
            ),
        ],
        ..Profile::default()
    };
    let suspect = LeakSuspect {
        stack_id: 1,
        growth_bytes_per_sec: 100.0,
        confidence: 0.99,
        reports_considered: 5,
        live_bytes: 5e5,
    };
    Report::from_profile(&profile, None, vec![suspect], Vec::new()).to_string_pretty()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Reproducible in CI and nothing written to the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(512),
        )
    }
}

/// The reader's contract: no panic; an error is one line; a report read has every number in
/// the documented range.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Report::parse(text) {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.contains('\n'), "two lines: {message}");
            prop_assert!(!message.is_empty());
            prop_assert!(message.len() < 1000, "a long message: {message}");
        }
        Ok(r) => {
            prop_assert!(r.timestamp_ms <= 253_402_300_799_999);
            prop_assert!(r.window_ms <= r.timestamp_ms);
            let estimates = r.sites.iter().flat_map(|s| {
                [
                    s.live_bytes,
                    s.live_objects,
                    s.alloc_bytes,
                    s.alloc_objects,
                    s.alloc_bytes_per_sec,
                    s.alloc_objects_per_sec,
                ]
            });
            for x in estimates {
                prop_assert!((0.0..=1.8446744073709552e19).contains(&x), "{x}");
            }
        }
    }
    Ok(())
}

/// Numbers a hostile file might hold, as JSON text.
fn hostile_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        Just("1e308".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
        Just("NaN".to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999999999999999999999999".to_string()),
        "[0-9]{1,40}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        check(&text)?;
    }

    #[test]
    fn arbitrary_json_values_never_panic(text in r#"[\[\]{}",:0-9a-z\\ .eE+-]{0,200}"#) {
        check(&format!(r#"{{"format":"heapsampler-heap-report","version":1,{text}"#))?;
        check(&text)?;
    }

    #[test]
    fn a_cut_report_is_an_error(cut in 0usize..2000) {
        let good = good_text();
        let cut = cut.min(good.len() - 1);
        if good.is_char_boundary(cut) {
            let result = Report::parse(&good[..cut]);
            prop_assert!(result.is_err());
            check(&good[..cut])?;
        }
    }

    #[test]
    fn any_number_replaced_reads_or_errs(which in any::<prop::sample::Index>(), number in hostile_number()) {
        let good = good_text();
        // Every run of digits in the text is a number of the report.
        let numbers: Vec<(usize, usize)> = good
            .char_indices()
            .filter(|&(i, c)| c.is_ascii_digit() && !good[..i].ends_with(|p: char| p.is_ascii_digit() || p == '.'))
            .map(|(i, _)| {
                let len = good[i..].find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e')).unwrap();
                (i, i + len)
            })
            .collect();
        let (start, end) = numbers[which.index(numbers.len())];
        check(&format!("{}{number}{}", &good[..start], &good[end..]))?;
    }

    #[test]
    fn any_string_in_a_name_reads_back(name in any::<String>()) {
        let good = good_text();
        let escaped = serde_json::to_string(&name).unwrap();
        let text = good.replacen("\"app::load\"", &escaped, 1);
        let r = Report::parse(&text).expect("a name is any string");
        prop_assert!(r.locations.iter().any(|l| l.frames.iter().any(|f| f.function.as_deref() == Some(&name))));
    }
}

#[test]
fn any_bytes_in_a_file_read_or_err_in_one_line() {
    let dir = std::env::temp_dir().join(format!("hs-report-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("heap-1-000001.json");
    let good = good_text().into_bytes();
    // Random bytes, and a good report with random bytes written over part of it.
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (0..good.len(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(move |(at, junk)| {
            let mut b = good.clone();
            let end = (at + junk.len()).min(b.len());
            b.splice(at..end, junk);
            b
        }),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&bytes, |bytes| {
        std::fs::write(&path, &bytes).unwrap();
        match Report::read(&path) {
            Err(e) => {
                prop_assert!(!e.to_string().contains('\n'), "{e}");
                prop_assert!(e.to_string().starts_with(&path.display().to_string()));
            }
            Ok(_) => check(std::str::from_utf8(&bytes).unwrap())?,
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}

#[test]
fn deep_nesting_and_huge_arrays_are_errors_not_crashes() {
    let deep = "[".repeat(100_000);
    let e = Report::parse(&deep).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
    let good = good_text();
    let nested = good.replacen(
        "\"mappings\": []",
        &format!(
            "\"mappings\": [], \"extra\": {}1{}",
            "[".repeat(5000),
            "]".repeat(5000)
        ),
        1,
    );
    // An unknown field is skipped whatever it holds, or refused as too deep: never a crash.
    if let Err(e) = Report::parse(&nested) {
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }
    // A site claiming a million addresses is read (it is only text), and bounded by the file.
    let many = format!("[{}1]", "1,".repeat(1_000_000));
    let big = good.replacen("\"addresses\":[16,32]", &format!("\"addresses\":{many}"), 1);
    let r = Report::parse(&big).expect("long arrays are fine");
    assert_eq!(
        r.sites.iter().map(|s| s.addresses.len()).max(),
        Some(1_000_001)
    );
}
