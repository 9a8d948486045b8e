//! Growth-trend leak detection over a series of profiles (DESIGN.md section 9).
//!
//! STUB: owned by the leak-detection work (issue 3). The types below are the contract the
//! reporter and the report renderers use; the detection itself is to be written.

use crate::profile::Profile;
use crate::stacks::StackId;
use serde::{Deserialize, Serialize};

/// A call site whose live bytes keep growing.
///
/// ```
/// let s = heapsampler::LeakSuspect::default();
/// assert_eq!(s.growth_bytes_per_sec, 0.0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakSuspect {
    /// The site's stack id.
    pub stack_id: StackId,
    /// Estimated growth of the site's live bytes, bytes per second.
    pub growth_bytes_per_sec: f64,
    /// How sure the detector is, 0 to 1.
    pub confidence: f64,
    /// How many profiles the verdict rests on.
    pub reports_considered: usize,
    /// The site's estimated live bytes in the newest profile.
    pub live_bytes: f64,
}

/// Keeps the last K profiles' per-site live bytes and names the sites that keep growing.
///
/// ```
/// let mut detector = heapsampler::LeakDetector::new(10);
/// let suspects = detector.observe(&heapsampler::snapshot());
/// assert!(suspects.is_empty());
/// ```
#[derive(Debug)]
pub struct LeakDetector {
    window: usize,
}

impl LeakDetector {
    /// A detector over the last `window` profiles (DESIGN: K = 10 by default).
    pub fn new(window: usize) -> Self {
        LeakDetector { window }
    }

    /// Adds a profile to the window and returns the current suspects.
    pub fn observe(&mut self, _profile: &Profile) -> Vec<LeakSuspect> {
        let _ = self.window;
        Vec::new()
    }
}
