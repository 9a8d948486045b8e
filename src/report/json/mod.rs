//! JSON heap report, schema v1 (documented field by field in `docs/report-format.md`).
//!
//! A [`Report`](crate::Report) is what the [`Reporter`](crate::Reporter) writes to disk and what tools read
//! back: a symbolized [`Profile`](crate::Profile) plus what a reader needs without the process at hand —
//! allocation rates over the window since the previous report, the leak suspects, and the
//! process's mappings for offline symbolization. [`Report::to_profile`](crate::Report::to_profile) turns a report back into
//! a `Profile`, so the leak detector and [`Profile::diff`](crate::Profile::diff) run on files just as on live data.
//!
//! Versioning: `version` changes only when a field is removed, renamed or changes meaning;
//! fields may be added within a version (readers ignore fields they do not know). Readers
//! reject versions they do not know with [`ReportErrorKind::UnsupportedVersion`].
//!
//! | file | holds |
//! |---|---|
//! | `schema.rs` | the schema's own types, field by field as `docs/report-format.md` has them |
//! | `build.rs` | a report from a profile (rates, locations) and back |
//! | `io.rs` | parsing, reading, writing, atomic writes |
//! | `line_formatter.rs` | the layout of the text: one site per line |
//! | `report_error.rs` | why a report could not be read |

mod build;
mod io;
mod line_formatter;
pub(crate) mod report_error;
pub(crate) mod schema;
#[cfg(test)]
mod tests;

pub use crate::report::files::MAX_REPORT_BYTES;
pub(crate) use build::Baseline;
pub use io::DEFAULT_FILE_MODE;
pub use report_error::ReportErrorKind;
// `Report`, `ReportError` and `LeakSuspect` are reached from the crate root only.
pub use schema::{
    FORMAT, Location, LocationFrame, ReportCounts, ReportProfiler, ReportSite, ReportThread,
    ReportTotals, VERSION,
};
