//! JSON heap report, schema v1 (see docs/report-format.md).
//!
//! STUB: owned by the reporting work (issue 3).
