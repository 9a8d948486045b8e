//! The timeline being gathered: its options, the compact copy of every report added, the
//! files skipped and why, and the few whole reports the page shows.

use super::entry::Entry;
use crate::Report;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What the page shows and how much of it.
///
/// ```
/// let o = heapsampler::timeline::Options::default();
/// assert_eq!((o.top_sites, o.table_rows, o.max_points, o.threads), (10, 500, 1500, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// Sites drawn over time (besides the leak suspects, always drawn): those holding the
    /// most in each process's newest report.
    pub top_sites: usize,
    /// Rows of the table of sites, most live bytes first.
    pub table_rows: usize,
    /// Most points a chart series draws; longer series are downsampled to it.
    pub max_points: usize,
    /// The page's title.
    pub title: String,
    /// Threads reading the report files of a directory ([`Timeline::add_dir`]); 1 reads them
    /// on the calling thread. Reading JSON is most of the time of a big directory; the page is
    /// the same whatever the number.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            top_sites: 10,
            table_rows: 500,
            max_points: 1500,
            title: "heap timeline".to_string(),
            threads: 1,
        }
    }
}

/// A file that was not used, and why (one line, as [`Report::read`] words it).
///
/// ```
/// let s = heapsampler::timeline::Skipped { file: "heap-1-000002.json".into(), reason: "truncated".into() };
/// assert_eq!(s.to_string(), "heap-1-000002.json: truncated");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The file's name.
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

/// Why no page could be made.
///
/// ```
/// let err = heapsampler::timeline::page_from_dir("/nonexistent".as_ref(), &Default::default()).unwrap_err();
/// assert!(err.to_string().starts_with("/nonexistent: cannot list the directory"));
/// ```
#[derive(Debug)]
pub enum HtmlError {
    /// The directory could not be listed.
    Dir(PathBuf, std::io::Error),
    /// The directory holds no `heap-*.json` file.
    Empty(PathBuf),
    /// No file could be used; each one's reason.
    NothingUsable(Vec<Skipped>),
}

impl fmt::Display for HtmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HtmlError::Dir(dir, e) => {
                write!(f, "{}: cannot list the directory: {e}", dir.display())
            }
            HtmlError::Empty(dir) => {
                write!(
                    f,
                    "{}: no heap-*.json reports in this directory",
                    dir.display()
                )
            }
            HtmlError::NothingUsable(skipped) => {
                write!(f, "no usable report: {} skipped", skipped.len())?;
                if let Some(first) = skipped.first() {
                    write!(f, " (first: {first})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HtmlError {}

/// Reports gathered for a page, kept compactly: add them in any order, then
/// [`render`](Self::render).
///
/// ```
/// use heapsampler::timeline::{Options, Timeline};
/// let mut timeline = Timeline::new(Options::default());
/// timeline.skip("heap-1-000009.json", "truncated report");
/// assert!(timeline.is_empty());
/// assert!(timeline.render().contains("heap-1-000009.json"));
/// ```
pub struct Timeline {
    pub(super) options: Options,
    pub(super) entries: Vec<Entry>,
    pub(super) skipped: Vec<Skipped>,
    /// The newest report of each pid (names its sites and fills the table).
    pub(super) newest: std::collections::BTreeMap<u32, Arc<Report>>,
    /// The oldest and newest reports of all (flamegraphs and their diff), with their names.
    pub(super) oldest: Option<(String, Arc<Report>)>,
    pub(super) latest: Option<(String, Arc<Report>)>,
}

impl Timeline {
    /// An empty timeline.
    ///
    /// ```
    /// let t = heapsampler::timeline::Timeline::new(Default::default());
    /// assert_eq!(t.len(), 0);
    /// ```
    pub fn new(options: Options) -> Timeline {
        Timeline {
            options,
            entries: Vec::new(),
            skipped: Vec::new(),
            newest: Default::default(),
            oldest: None,
            latest: None,
        }
    }

    /// How many reports were added.
    ///
    /// ```
    /// assert_eq!(heapsampler::timeline::Timeline::new(Default::default()).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no report was added.
    ///
    /// ```
    /// assert!(heapsampler::timeline::Timeline::new(Default::default()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The files skipped so far.
    ///
    /// ```
    /// let mut t = heapsampler::timeline::Timeline::new(Default::default());
    /// t.skip("x.json", "not JSON");
    /// assert_eq!(t.skipped()[0].reason, "not JSON");
    /// ```
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Notes a file that was not used; the page lists it with the reason.
    ///
    /// ```
    /// let mut t = heapsampler::timeline::Timeline::new(Default::default());
    /// t.skip("heap-1-000002.json", "unsupported report version 2");
    /// assert_eq!(t.skipped().len(), 1);
    /// ```
    pub fn skip(&mut self, file: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            file: file.into(),
            reason: reason.into(),
        });
    }

    /// Adds a report, named (usually its file name) for the page's tooltips and headings.
    /// Only a compact copy is kept, besides the newest report of each pid and the oldest one.
    ///
    /// ```
    /// let mut t = heapsampler::timeline::Timeline::new(Default::default());
    /// t.add("now", heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]));
    /// assert_eq!(t.len(), 1);
    /// ```
    pub fn add(&mut self, name: &str, report: Report) {
        self.entries.push(Entry::of(name, &report));
        self.offer(name, report);
    }

    /// Keeps `report` if it is the newest of its pid, or the oldest or newest of all, as far
    /// as the reports offered so far go: of equal timestamps, the first offered is the oldest
    /// and the last the newest. Offering the reports that win among some files in file order,
    /// and any others of them, keeps what offering all of those files would.
    pub(super) fn offer(&mut self, name: &str, report: Report) {
        let report = Arc::new(report);
        let key = |r: &Report| r.timestamp_ms;
        if self
            .newest
            .get(&report.pid)
            .is_none_or(|n| key(n) <= key(&report))
        {
            self.newest.insert(report.pid, Arc::clone(&report));
        }
        if self
            .oldest
            .as_ref()
            .is_none_or(|(_, o)| key(&report) < key(o))
        {
            self.oldest = Some((name.to_string(), Arc::clone(&report)));
        }
        if self
            .latest
            .as_ref()
            .is_none_or(|(_, l)| key(l) <= key(&report))
        {
            self.latest = Some((name.to_string(), report));
        }
    }
}
