//! Background thread writing periodic JSON heap reports.
//!
//! STUB: owned by the reporting work (issue 3).
