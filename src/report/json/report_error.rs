//! Why a report could not be read: [`ReportError`] and its kinds.

use super::schema::VERSION;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a report could not be read; `Display` names the file (when there is one) and the
/// problem.
///
/// ```
/// use heapsampler::{Report, report::json::ReportErrorKind};
/// let err = Report::parse(r#"{"format": "something-else", "version": 1}"#).unwrap_err();
/// assert!(matches!(err.kind(), ReportErrorKind::NotAReport(_)));
/// assert!(err.to_string().contains("not a heapsampler heap report"));
/// ```
#[derive(Debug)]
pub struct ReportError {
    path: Option<PathBuf>,
    kind: ReportErrorKind,
}

/// The kinds of [`ReportError`].
///
/// ```
/// use heapsampler::{Report, report::json::ReportErrorKind};
/// let err = Report::parse(r#"{"format": "heapsa"#).unwrap_err();
/// assert!(matches!(err.kind(), ReportErrorKind::Truncated(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReportErrorKind {
    /// The file could not be read.
    Io(io::Error),
    /// The text is not JSON.
    NotJson(serde_json::Error),
    /// The JSON ends early (a partly written or cut file).
    Truncated(serde_json::Error),
    /// JSON, but not a heapsampler heap report (`format` missing or different).
    NotAReport(String),
    /// A heap report of a schema version this build does not read.
    UnsupportedVersion(u64),
    /// A v1 report with a missing or malformed field.
    Invalid(String),
}

impl ReportError {
    /// The error `kind` met while reading the file at `path`.
    pub(crate) fn at(path: &Path, kind: ReportErrorKind) -> ReportError {
        ReportError {
            path: Some(path.to_path_buf()),
            kind,
        }
    }

    /// The kind, without the file.
    pub(crate) fn into_kind(self) -> ReportErrorKind {
        self.kind
    }

    /// What went wrong.
    ///
    /// ```
    /// use heapsampler::report::json::ReportErrorKind;
    /// let err = heapsampler::Report::parse("[1, 2]").unwrap_err();
    /// assert!(matches!(err.kind(), ReportErrorKind::NotAReport(_)));
    /// ```
    pub fn kind(&self) -> &ReportErrorKind {
        &self.kind
    }

    /// The file being read, if the report came from one.
    ///
    /// ```
    /// let err = heapsampler::Report::read("/nonexistent.json").unwrap_err();
    /// assert_eq!(err.path(), Some(std::path::Path::new("/nonexistent.json")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl From<ReportErrorKind> for ReportError {
    fn from(kind: ReportErrorKind) -> Self {
        ReportError { path: None, kind }
    }
}

impl fmt::Display for ReportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportErrorKind::Io(e) => write!(f, "cannot read the report: {e}"),
            ReportErrorKind::NotJson(e) => write!(f, "not a JSON document: {e}"),
            ReportErrorKind::Truncated(e) => {
                write!(f, "truncated report, the JSON ends early ({e})")
            }
            ReportErrorKind::NotAReport(why) => write!(f, "not a heapsampler heap report: {why}"),
            ReportErrorKind::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported report version {v} (this build reads version {VERSION})"
                )
            }
            ReportErrorKind::Invalid(why) => write!(f, "invalid report: {why}"),
        }
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => self.kind.fmt(f),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ReportErrorKind::Io(e) => Some(e),
            ReportErrorKind::NotJson(e) | ReportErrorKind::Truncated(e) => Some(e),
            _ => None,
        }
    }
}
