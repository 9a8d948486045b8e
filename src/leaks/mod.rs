//! Growth-trend leak detection over a series of profiles (docs/architecture.md, "Reports and
//! leak detection").
//!
//! The method is described on [`LeakDetector`]; the thresholds below are its knobs, chosen
//! with the scripted scenarios of `allocator-test/tests/leaks.rs` (leak, plateauing cache,
//! oscillation, churn; 1000 seeded series each).
//!
//! | file | holds |
//! |---|---|
//! | `leak_detector.rs` | [`LeakDetector`]: the series of each site and the verdict |
//! | `trend.rs` | the statistics: Theil–Sen slope, Mann–Kendall test, normal tail |

mod leak_detector;
#[cfg(test)]
mod tests;
mod trend;

pub use crate::report::json::schema::LeakSuspect;
pub use leak_detector::LeakDetector;
