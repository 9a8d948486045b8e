//! A [`Report`] as text and files: parsing and reading (the fields, the header on its own when
//! they fail, then their ranges), writing in the report's line layout, and atomic writes.

use super::line_formatter::LineFormatter;
use super::report_error::{ReportError, ReportErrorKind};
use super::schema::{FORMAT, Report, VERSION};
use crate::read::profiler_work;
use crate::report::{files, validate};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

impl Report {
    /// Reads a report from JSON text, checking `format` and `version` first so that a wrong
    /// file gets a clear error rather than a list of missing fields.
    ///
    /// ```
    /// use heapsampler::Report;
    /// let err = Report::parse(r#"{"format": "heapsampler-heap-report", "version": 7}"#).unwrap_err();
    /// assert_eq!(err.to_string(), "unsupported report version 7 (this build reads version 1)");
    /// assert!(Report::parse("not json").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Report, ReportError> {
        profiler_work(|| {
            // One pass over a good file (the text of a 10,000-site report is ~3 MB); the header
            // is read on its own only to say why a file failed, or when it parsed but is not
            // version 1 of this format.
            let report: Report = match serde_json::from_str(text) {
                Ok(report) => report,
                Err(e) => {
                    check_header(text)?;
                    return Err(ReportErrorKind::Invalid(e.to_string()).into());
                }
            };
            if report.format != FORMAT || report.version != VERSION {
                check_header(text)?;
            }
            validate::ranges(&report).map_err(ReportErrorKind::Invalid)?;
            Ok(report)
        })
    }

    /// Reads a report file; errors name the file. A file larger than [`MAX_REPORT_BYTES`](crate::report::json::MAX_REPORT_BYTES) is
    /// refused unread (`/dev/zero` is not a report), and so are values out of range (an
    /// estimate above 2^64, a timestamp after the year 9999): see `docs/report-format.md`.
    ///
    /// ```
    /// let err = heapsampler::Report::read("/nonexistent/heap-1-000001.json").unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent/heap-1-000001.json: cannot read"));
    /// ```
    pub fn read(path: impl AsRef<Path>) -> Result<Report, ReportError> {
        let path = path.as_ref();
        profiler_work(|| {
            let at = |kind: ReportErrorKind| ReportError::at(path, kind);
            let text = files::read_limited(path).map_err(|e| at(ReportErrorKind::Io(e)))?;
            Report::parse(&text).map_err(|e| at(e.into_kind()))
        })
    }

    /// The report as JSON, the way the reporter writes it: the top two levels indented, one
    /// site, location or mapping per line (readable, greppable, and about half the size of
    /// fully indented JSON), no trailing newline.
    ///
    /// ```
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let text = r.to_string_pretty();
    /// assert!(text.contains("\n  \"format\": \"heapsampler-heap-report\""));
    /// assert_eq!(heapsampler::Report::parse(&text).unwrap(), r);
    /// ```
    pub fn to_string_pretty(&self) -> String {
        profiler_work(|| {
            let mut out = Vec::new();
            // Serializing plain data with string keys and finite numbers into memory cannot fail.
            let _ = self.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out,
                LineFormatter::default(),
            ));
            String::from_utf8(out).unwrap_or_default()
        })
    }

    /// Writes the report to `w` as [`to_string_pretty`](Self::to_string_pretty) does, plus a
    /// trailing newline.
    ///
    /// ```
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let mut buf = Vec::new();
    /// r.write_to(&mut buf).unwrap();
    /// assert!(buf.ends_with(b"}\n"));
    /// ```
    pub fn write_to(&self, w: impl Write) -> io::Result<()> {
        profiler_work(|| {
            let mut w = w;
            self.serialize(&mut serde_json::Serializer::with_formatter(
                &mut w,
                LineFormatter::default(),
            ))
            .map_err(io::Error::other)?;
            w.write_all(b"\n")
        })
    }

    /// Writes the report to `dir/name` atomically and returns the path: the JSON goes to a
    /// hidden temporary file in the same directory (`.name.<pid>.<n>.tmp`, which no
    /// `heap-*.json` pattern matches), is flushed to disk, then renamed over `name`. A reader
    /// sees the old file or the complete new one, never a partial one; on error the temporary
    /// file is removed. Creates `dir` if it is missing. The file is created with mode
    /// [`DEFAULT_FILE_MODE`] (`0o600`, owner only); see
    /// [`write_atomic_with_mode`](Self::write_atomic_with_mode).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-doc-{}", std::process::id()));
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let path = r.write_atomic(&dir, "heap-example.json").unwrap();
    /// assert_eq!(heapsampler::Report::read(&path).unwrap(), r);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic(&self, dir: impl AsRef<Path>, name: &str) -> io::Result<PathBuf> {
        self.write_atomic_with_mode(dir, name, DEFAULT_FILE_MODE)
    }

    /// [`write_atomic`](Self::write_atomic) with the file created with permission bits `mode`
    /// (less the process's umask) instead of [`DEFAULT_FILE_MODE`] (`0o600`). A directory it
    /// creates gets the same bits plus search (`x`) wherever `mode` grants read.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = std::env::temp_dir().join(format!("hs-doc-mode-{}", std::process::id()));
    /// let r = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
    /// let path = r.write_atomic_with_mode(&dir, "heap-example.json", 0o640).unwrap();
    /// let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    /// assert_eq!(mode & !0o640, 0, "never more than asked for");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic_with_mode(
        &self,
        dir: impl AsRef<Path>,
        name: &str,
        mode: u32,
    ) -> io::Result<PathBuf> {
        let dir = dir.as_ref();
        profiler_work(|| self.write_atomic_in(dir, name, mode))
    }

    fn write_atomic_in(&self, dir: &Path, name: &str, mode: u32) -> io::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("report file name {name:?} must be a plain, non-hidden file name"),
            ));
        }
        let context = |what: &str, path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
        };
        files::create_dir(dir, mode).map_err(|e| context("cannot create directory", dir, e))?;
        let path = dir.join(name);
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let written = (|| -> io::Result<()> {
            // The mode is set at creation: the file is never readable by others, not even
            // while it is being written.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o777)
                .open(&temp)?;
            let mut w = io::BufWriter::with_capacity(256 * 1024, file);
            self.write_to(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(context("cannot write", &path, e));
        }
        // Make the rename itself durable; the report is already complete and visible, so a
        // failure here is not worth failing the write for.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(path)
    }
}

/// Permission bits of report files unless configured otherwise: owner read/write only. A
/// report holds return addresses, load addresses (which defeat ASLR) and the program's path.
///
/// ```
/// assert_eq!(heapsampler::report::json::DEFAULT_FILE_MODE, 0o600);
/// ```
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// Checks `format` and `version` before the full parse; a single pass over the text that
/// skips every other field.
fn check_header(text: &str) -> Result<(), ReportError> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => ReportErrorKind::Truncated(e),
        serde_json::error::Category::Data => {
            ReportErrorKind::NotAReport("the top level is not a JSON object".into())
        }
        _ => ReportErrorKind::NotJson(e),
    })?;
    match &header.format {
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(other) => {
            return Err(ReportErrorKind::NotAReport(format!(
                "`format` is {} (expected \"{FORMAT}\")",
                abridged(other)
            ))
            .into());
        }
        None => return Err(ReportErrorKind::NotAReport("no `format` field".into()).into()),
    }
    match &header.version {
        Some(v) => match v.as_u64() {
            Some(n) if n == VERSION as u64 => Ok(()),
            Some(n) => Err(ReportErrorKind::UnsupportedVersion(n).into()),
            None => Err(ReportErrorKind::Invalid(format!(
                "`version` is {}, not a whole number",
                abridged(v)
            ))
            .into()),
        },
        None => Err(ReportErrorKind::Invalid("missing field `version`".into()).into()),
    }
}

/// A JSON value as an error message quotes it: compact, at most 60 characters.
fn abridged(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
