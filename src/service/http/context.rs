//! What the endpoint's handlers share: the counters of requests served and refused, the
//! snapshots delta profiles are taken against, the rate window of `/metrics`, and the previous
//! `/heap.json` moment with the leak detector fed by them.

use super::moments::Moments;
use super::rate_window::RateWindow;
use crate::leaks::LeakDetector;
use crate::report::json::Baseline;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// What the handlers share.
pub(crate) struct Context {
    pub stopping: AtomicBool,
    pub served: AtomicU64,
    pub rejected: AtomicU64,
    pub top_sites: usize,
    pub moments: Moments,
    pub rates: RateWindow,
    /// The previous `/heap.json` moment (rates) and the leak detector fed by them.
    pub json: Mutex<(Option<Baseline>, LeakDetector)>,
}

impl Context {
    pub fn new(top_sites: usize) -> Context {
        Context {
            stopping: AtomicBool::new(false),
            served: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            top_sites,
            moments: Moments::default(),
            rates: RateWindow::default(),
            json: Mutex::new((None, LeakDetector::new(crate::DEFAULT_LEAK_WINDOW))),
        }
    }
}
