//! From compact entries to what is drawn: the reports in time order (a report's index in it
//! is its `data-report-index`), one series per process, site series, growth, leak suspects,
//! downsampling.

use super::entry::{Entry, SitePoint};
use crate::leaks::{LeakDetector, LeakSuspect};
use crate::read::profile::{Profile, Site};
use crate::record::live_record::StackId;
use std::collections::{BTreeMap, HashMap};

/// One process: the reports of one pid between two restarts, in time order.
pub(crate) struct Process {
    pub pid: u32,
    /// Which run of the pid (a restarted process, pid 1 in containers), from 1, of `runs`.
    pub run: usize,
    pub runs: usize,
    /// Indices into [`View::order`], oldest first.
    pub reports: Vec<usize>,
}

impl Process {
    pub(crate) fn label(&self) -> String {
        if self.runs > 1 {
            format!("pid {} (run {} of {})", self.pid, self.run, self.runs)
        } else {
            format!("pid {}", self.pid)
        }
    }
}

/// The reports in time order and grouped into processes.
pub(crate) struct View<'a> {
    pub order: Vec<&'a Entry>,
    pub processes: Vec<Process>,
}

pub(crate) fn view(entries: &[Entry]) -> View<'_> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| (a.timestamp_ms, a.pid, &a.name).cmp(&(b.timestamp_ms, b.pid, &b.name)));
    let mut by_pid: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, e) in order.iter().enumerate() {
        by_pid.entry(e.pid).or_default().push(i);
    }
    let mut processes = Vec::new();
    for (pid, reports) in by_pid {
        // A pid whose cumulative counter goes back down is a new process (the pid was reused).
        let mut runs: Vec<Vec<usize>> = vec![Vec::new()];
        for i in reports {
            let restarted = runs
                .last()
                .and_then(|r| r.last())
                .is_some_and(|&p| order[i].alloc_bytes < order[p].alloc_bytes);
            if restarted {
                runs.push(Vec::new());
            }
            runs.last_mut().expect("one run at least").push(i);
        }
        let n = runs.len();
        for (k, reports) in runs.into_iter().enumerate() {
            processes.push(Process {
                pid,
                run: k + 1,
                runs: n,
                reports,
            });
        }
    }
    processes.sort_by_key(|p| p.reports[0]);
    View { order, processes }
}

/// Live bytes of each site of `ids` in each of `reports` (0 where absent): one pass over
/// their sites.
pub(crate) fn site_series(view: &View, reports: &[usize], ids: &[StackId]) -> Vec<Vec<f64>> {
    site_values(view, reports, ids, |s| s.live)
}

/// As [`site_series`], the estimated bytes each site allocated since its process started
/// (cumulative, so a rate over several reports is the difference of two of them).
pub(crate) fn site_alloc_series(view: &View, reports: &[usize], ids: &[StackId]) -> Vec<Vec<f64>> {
    site_values(view, reports, ids, |s| s.alloc)
}

fn site_values(
    view: &View,
    reports: &[usize],
    ids: &[StackId],
    value: impl Fn(&SitePoint) -> f64,
) -> Vec<Vec<f64>> {
    let slot: HashMap<StackId, usize> = ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    let mut series = vec![vec![0.0; reports.len()]; ids.len()];
    for (j, &i) in reports.iter().enumerate() {
        for s in &view.order[i].sites {
            if let Some(&k) = slot.get(&s.stack_id) {
                series[k][j] += value(s);
            }
        }
    }
    series
}

/// The rate of a cumulative series `ys` over the times `ts` (milliseconds): its change from the
/// first report to the last, per second. `None` over less than a millisecond, or where the
/// series went down (another process's counters).
pub(crate) fn rate_over(ts: &[u64], ys: &[f64]) -> Option<f64> {
    let n = ts.len().min(ys.len());
    let (t0, t1) = (*ts.first()?, *ts.get(n.checked_sub(1)?)?);
    let (y0, y1) = (ys[0], ys[n - 1]);
    (t1 > t0 && y1 >= y0).then(|| (y1 - y0) / ((t1 - t0) as f64 / 1000.0))
}

/// The allocation rate the chart draws for each of one process's reports: the report's own,
/// over its window, unless its window is shorter than a quarter of the process's median
/// interval between reports. The report a service writes as it stops spans a few
/// milliseconds, and its own rate is the burst of that instant (a spike of twice the rate
/// on `leaky_service`); such a report's rate is taken back to the report half a median
/// interval or more before it, from the cumulative allocated bytes.
pub(crate) fn chart_rates(entries: &[&Entry]) -> Vec<f64> {
    let ts: Vec<u64> = entries.iter().map(|e| e.timestamp_ms).collect();
    let mut gaps: Vec<u64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    (0..entries.len())
        .map(|j| {
            let own = entries[j].alloc_rate;
            if j == 0 || 4 * (ts[j] - ts[j - 1]) >= median {
                return own;
            }
            let k = (0..j)
                .rev()
                .find(|&k| 2 * (ts[j] - ts[k]) >= median)
                .unwrap_or(0);
            let alloc = |i: usize| entries[i].alloc_bytes as f64;
            rate_over(&[ts[k], ts[j]], &[alloc(k), alloc(j)]).unwrap_or(own)
        })
        .collect()
}

/// Least-squares slope of `ys` over the times `ts` (milliseconds), in units per second; 0
/// with fewer than two distinct times.
pub(crate) fn slope(ts: &[u64], ys: &[f64]) -> f64 {
    let n = ts.len().min(ys.len());
    if n < 2 {
        return 0.0;
    }
    let t0 = ts[0] as f64;
    let xs: Vec<f64> = ts[..n].iter().map(|&t| (t as f64 - t0) / 1000.0).collect();
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(&ys[..n]) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// How many of a process's newest reports the leak detector is fed: its window and nine
/// windows of history (a site back at a level it held in them is no suspect). Feeding all of
/// a long series would cost about 1 ms per report of 10,000 sites.
pub(crate) const DETECTOR_REPORTS: usize = 10 * LeakDetector::DEFAULT_WINDOW;

/// The leak suspects as of the process's newest report: its newest [`DETECTOR_REPORTS`]
/// reports fed in order to a [`LeakDetector`] over the default window, as `heapsampler leaks`
/// judges (the older of them are the sites' history).
pub(crate) fn suspects(view: &View, process: &Process) -> Vec<LeakSuspect> {
    let mut detector = LeakDetector::default();
    let mut suspects = Vec::new();
    let mut profile = Profile::default();
    let from = process.reports.len().saturating_sub(DETECTOR_REPORTS);
    for &i in &process.reports[from..] {
        let e = view.order[i];
        profile.pid = e.pid;
        profile.timestamp_ms = e.timestamp_ms;
        profile.sample_interval = e.sample_interval;
        profile.sites.clear();
        profile.sites.extend(e.sites.iter().map(|s| Site {
            stack_id: s.stack_id,
            live_bytes: s.live,
            alloc_bytes: s.alloc,
            ..Site::default()
        }));
        suspects = detector.observe(&profile);
    }
    suspects
}

/// Which of `values` to draw when at most `max` may be: all of them when they fit; else the
/// first, the last, and the lowest and highest of each of `max / 2` buckets, in order (peaks
/// and dips survive, a flat stretch costs two points per bucket).
pub(crate) fn keep(values: &[f64], max: usize) -> Vec<usize> {
    let n = values.len();
    if n <= max.max(2) {
        return (0..n).collect();
    }
    let buckets = (max / 2).max(1);
    let mut kept = vec![0, n - 1];
    for b in 0..buckets {
        let (lo, hi) = (b * n / buckets, (b + 1) * n / buckets);
        if lo >= hi {
            continue;
        }
        let cmp = |&a: &usize, &b: &usize| values[a].total_cmp(&values[b]);
        let min = (lo..hi).min_by(cmp).expect("bucket not empty");
        let max = (lo..hi).max_by(cmp).expect("bucket not empty");
        kept.extend([min, max]);
    }
    kept.sort_unstable();
    kept.dedup();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_all_that_fit_and_peaks_of_the_rest() {
        assert_eq!(keep(&[1.0, 2.0, 3.0], 10), vec![0, 1, 2]);
        let mut values = vec![1.0; 1000];
        values[500] = 99.0;
        values[700] = -5.0;
        let kept = keep(&values, 100);
        assert!(kept.len() <= 102 && kept.contains(&500) && kept.contains(&700));
        assert!(kept.contains(&0) && kept.contains(&999));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn slope_of_a_line() {
        let ts = [0, 1000, 2000, 3000];
        let ys = [10.0, 20.0, 30.0, 40.0];
        assert!((slope(&ts, &ys) - 10.0).abs() < 1e-9);
        assert_eq!(slope(&[5], &[1.0]), 0.0);
    }

    #[test]
    fn a_report_much_shorter_than_the_others_is_charted_over_a_typical_span() {
        // Reports each second allocating 1 MB/s, then one 2 ms later (the one written at exit)
        // whose own window saw a burst of 300 MB/s.
        let entry = |t: u64, alloc: u64, rate: f64| Entry {
            name: String::new(),
            pid: 1,
            timestamp_ms: t,
            sample_interval: 1,
            live_bytes: 0,
            alloc_bytes: alloc,
            alloc_rate: rate,
            sites: Vec::new(),
        };
        let mut es: Vec<Entry> = (0..5)
            .map(|i| entry(1000 * i, 1_000_000 * i, 1e6))
            .collect();
        es.push(entry(4002, 4_000_000 + 600_000, 3e8));
        let refs: Vec<&Entry> = es.iter().collect();
        let rates = chart_rates(&refs);
        assert_eq!(&rates[..5], &[1e6; 5]);
        // Over the last 1,002 ms: 1.6 MB.
        assert!((rates[5] - 1.6e6 / 1.002).abs() < 1.0, "{rates:?}");
        // Evenly spaced reports keep their own rates, and so does a lone report.
        assert_eq!(chart_rates(&refs[..5]), vec![1e6; 5]);
        assert_eq!(chart_rates(&refs[5..]), vec![3e8]);
    }
}
