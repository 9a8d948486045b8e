use super::trend::{kendall_cdfs, normal_cdf, theil_sen};
use super::*;
use crate::read::profile::Profile;
use crate::read::profile::Site;
use crate::record::live_record::StackId;

fn profile(ts: u64, t: u64, sites: &[(StackId, f64, f64)]) -> Profile {
    Profile {
        pid: 7,
        timestamp_ms: ts,
        sample_interval: t,
        sites: sites
            .iter()
            .map(|&(id, live, alloc)| Site {
                stack_id: id,
                live_bytes: live,
                alloc_bytes: alloc,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn kendall_distribution_matches_known_values() {
    let cdfs = kendall_cdfs(6);
    // n = 4: inversion counts 1, 3, 5, 6, 5, 3, 1 of 24.
    let expect = [1.0, 4.0, 9.0, 15.0, 20.0, 23.0, 24.0].map(|c| c / 24.0);
    for (a, b) in cdfs[4].iter().zip(expect) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert!((cdfs[5][0] - 1.0 / 120.0).abs() < 1e-12);
    assert_eq!(cdfs[6].len(), 16);
    assert!((cdfs[6][15] - 1.0).abs() < 1e-12);
}

#[test]
fn normal_cdf_is_accurate() {
    assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
    assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 1e-6);
    assert!((normal_cdf(-3.0) - 0.001_349_898).abs() < 1e-7);
    assert_eq!(normal_cdf(f64::INFINITY), 1.0);
}

#[test]
fn theil_sen_ignores_one_outlier() {
    let mut scratch = Vec::new();
    let y = [0.0, 1.0, 2.0, 100.0, 4.0, 5.0];
    assert_eq!(theil_sen(&y, None, &mut scratch), 1.0);
    let x = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0];
    assert_eq!(theil_sen(&y, Some(&x), &mut scratch), 0.5);
}

#[test]
fn exact_growth_is_flagged_and_flat_is_not() {
    let mut d = LeakDetector::new(10);
    let mut last = Vec::new();
    for r in 0..6u64 {
        let grow = 1000.0 * r as f64;
        last = d.observe(&profile(
            r * 2000,
            1,
            &[(1, grow, grow), (2, 5000.0, 5000.0 + 100.0 * r as f64)],
        ));
    }
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].stack_id, 1);
    assert!((last[0].growth_bytes_per_sec - 500.0).abs() < 1e-9);
    assert_eq!(last[0].reports_considered, 6);
    assert_eq!(last[0].live_bytes, 5000.0);
    assert!(last[0].confidence > 0.99);
}

#[test]
fn too_few_reports_flag_nothing() {
    let mut d = LeakDetector::new(10);
    for r in 0..LeakDetector::MIN_REPORTS as u64 - 1 {
        let v = 1e6 * r as f64;
        assert!(d.observe(&profile(r * 1000, 1, &[(1, v, v)])).is_empty());
    }
    let v = 1e6 * (LeakDetector::MIN_REPORTS - 1) as f64;
    assert_eq!(d.observe(&profile(9000, 1, &[(1, v, v)])).len(), 1);
}

#[test]
fn small_growth_at_a_coarse_interval_is_noise() {
    // Growth of 2 T over the window is below the MIN_GROWTH_INTERVALS floor.
    let t = 1 << 16;
    let mut d = LeakDetector::new(10);
    for r in 0..10u64 {
        let v = (t as f64) * 0.25 * r as f64;
        assert!(d.observe(&profile(r * 1000, t, &[(1, v, v)])).is_empty());
    }
}

#[test]
fn min_growth_is_honoured() {
    let mut d = LeakDetector::new(10).with_min_growth(10_000);
    for r in 0..10u64 {
        let v = 1000.0 * r as f64;
        assert!(d.observe(&profile(r * 1000, 1, &[(1, v, v)])).is_empty());
    }
}

#[test]
fn a_missing_site_counts_as_nothing_live_and_is_forgotten() {
    let mut d = LeakDetector::new(5);
    d.observe(&profile(0, 1, &[(1, 10.0, 10.0)]));
    for r in 1..6 {
        d.observe(&profile(r * 1000, 1, &[]));
    }
    assert_eq!(d.tracked_sites(), 0);
}

#[test]
fn another_process_starts_over() {
    let mut d = LeakDetector::new(10);
    for r in 0..4u64 {
        let v = 1e6 * r as f64;
        d.observe(&profile(r * 1000, 1, &[(1, v, v)]));
    }
    let mut other = profile(5000, 1, &[(1, 5e6, 5e6)]);
    other.pid = 8;
    assert!(d.observe(&other).is_empty());
    assert_eq!(d.len(), 1);
}

#[test]
fn a_rise_to_levels_held_before_is_no_leak() {
    // Exact figures: a pool rises 0 → 9,000 over 10 profiles, falls back, and rises
    // again; the second rise is not flagged until it passes the first one's top.
    let mut d = LeakDetector::new(10);
    let mut ts = 0;
    let mut observe = |v: f64| {
        ts += 1000;
        d.observe(&profile(ts, 1, &[(1, v, 1e9)]))
    };
    let rise: Vec<f64> = (0..10).map(|i| 1000.0 * i as f64).collect();
    let first: Vec<usize> = rise.iter().map(|&v| observe(v).len()).collect();
    assert_eq!(
        first.last(),
        Some(&1),
        "a first rise looks like a leak: {first:?}"
    );
    for i in (0..10).rev() {
        observe(1000.0 * i as f64);
    }
    for &v in &rise {
        assert!(observe(v).is_empty(), "{v} was held before");
    }
    assert_eq!(observe(10_000.0).len(), 1, "a new high");
}

#[test]
fn equal_timestamps_give_zero_rate_but_still_flag() {
    let mut d = LeakDetector::new(10);
    let mut last = Vec::new();
    for r in 0..6u64 {
        let v = 1e6 * r as f64;
        last = d.observe(&profile(42, 1, &[(1, v, v)]));
    }
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].growth_bytes_per_sec, 0.0);
}
