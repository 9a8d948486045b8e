//! [`LeakCheck`]: scoped, exact leak checks for tests.
//!
//! A check gives its thread a *tag* and puts it in an exact-recording scope: from then on every
//! allocation the thread makes is recorded with probability 1 and weight 1, its stack captured,
//! and the tag stored in the live record — whatever the global sample interval. Frees are
//! recognised from any thread (exact records are looked up on every free while any is live).
//! Finishing the check collects the live records carrying its tag: those are the leaks. Other
//! threads — other tests under libtest's parallel runner — are never in the scope, so they
//! neither add to nor disturb the result.
//!
//! Heap counters per scope (objects, bytes, live, peak) live in a fixed table of
//! [`scopes::SLOTS`] slots that the allocator updates on its exact-record path (atomics only).
//!
//! After a check finishes, the objects it reported stay in the process-wide profile as exact
//! samples (p = 1, weight 1): they really are live, and counting them with weight 1 keeps every
//! site estimate unbiased. Freeing them later is recognised as usual. While any such record is
//! live, every free in the process looks the live table up (a few nanoseconds): a test process
//! that leaked pays that until it frees or exits.

//!
//! | file | holds |
//! |---|---|
//! | `leak_check.rs` | [`LeakCheck`]: starting, finishing and judging a check |
//! | `check_handle.rs` | [`CheckHandle`] and [`EnteredCheck`]: other threads joining a check |
//! | `library_frames.rs` | which frames are the standard library's or the runtime's own |
//! | `leak_report.rs` | [`LeakReport`] and [`LeakSite`]: what a finished check found |

mod check_handle;
mod leak_check;
mod leak_report;
mod library_frames;
#[cfg(test)]
mod tests;

pub use check_handle::{CheckHandle, EnteredCheck};
pub use leak_check::LeakCheck;
pub use leak_report::{LeakReport, LeakSite};
