//! The readings of the exact totals that `/metrics` turns into per-second rates.

use crate::record::totals::Totals;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the `*_per_second` gauges are measured over (or since the process started,
/// when it is younger).
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Readings of the totals, at least a second apart, over the last [`RATE_WINDOW`].
#[derive(Default)]
pub(crate) struct RateWindow {
    readings: Mutex<VecDeque<(Instant, Totals)>>,
}

/// Per-second rates of the four exact counters.
pub(crate) struct Rates {
    pub(crate) alloc_bytes: f64,
    pub(crate) alloc_objects: f64,
    pub(crate) free_bytes: f64,
    pub(crate) free_objects: f64,
    pub(crate) window_secs: f64,
}

impl RateWindow {
    /// Records `now` and returns the rates against the oldest reading of the window (the
    /// process start for the first scrapes).
    pub(crate) fn observe(&self, now: Totals) -> Rates {
        let at = Instant::now();
        let mut readings = self.readings.lock();
        while readings.len() > 1 && readings[1].0 + RATE_WINDOW <= at {
            readings.pop_front();
        }
        let since = readings
            .front()
            .filter(|(t, _)| *t + RATE_WINDOW > at || readings.len() == 1)
            .map(|&(t, totals)| (at.duration_since(t).as_secs_f64(), totals));
        if readings
            .back()
            .is_none_or(|(t, _)| at.duration_since(*t) >= Duration::from_secs(1))
        {
            readings.push_back((at, now));
        }
        drop(readings);
        let (secs, before) = match since {
            Some((secs, before)) if secs >= 1.0 => (secs, before),
            _ => {
                // Since the process started (its counters started at zero).
                let started = crate::read::profile::process_start_ms().unwrap_or(0);
                let secs = crate::read::profile::now_ms().saturating_sub(started) as f64 / 1000.0;
                (secs, Totals::default())
            }
        };
        let rate = |a: u64, b: u64| {
            if secs > 0.0 {
                a.saturating_sub(b) as f64 / secs
            } else {
                0.0
            }
        };
        Rates {
            alloc_bytes: rate(now.alloc_bytes, before.alloc_bytes),
            alloc_objects: rate(now.alloc_objects, before.alloc_objects),
            free_bytes: rate(now.free_bytes, before.free_bytes),
            free_objects: rate(now.free_objects, before.free_objects),
            window_secs: secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_the_oldest_reading_of_the_window() {
        let w = RateWindow::default();
        let at = |bytes: u64| Totals {
            alloc_bytes: bytes,
            alloc_objects: bytes / 8,
            ..Totals::default()
        };
        // First reading: against the process start.
        let first = w.observe(at(1000));
        assert!(first.window_secs >= 0.0);
        // Put a reading 10 s in the past by hand.
        {
            let mut readings = w.readings.lock();
            readings.clear();
            readings.push_back((Instant::now() - Duration::from_secs(10), at(1000)));
        }
        let r = w.observe(at(21_000));
        assert!((r.window_secs - 10.0).abs() < 0.5, "{}", r.window_secs);
        assert!((r.alloc_bytes - 2000.0).abs() < 100.0, "{}", r.alloc_bytes);
        assert_eq!(w.readings.lock().len(), 2);
    }
}
