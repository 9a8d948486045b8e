//! A heap timeline as one self-contained HTML page (feature `html`): exact live heap and
//! allocation rate over time per process, the top sites' estimated live bytes with their
//! error bands and the leak suspects, a sortable and searchable table of sites with their
//! stacks, and the flamegraphs of the newest report and of the change since the oldest.
//!
//! The page needs no network: charts are SVG drawn here (every point carries
//! `data-report-index`, every suspect `data-suspect`, so the page can be checked through its
//! DOM), flamegraphs are inferno's SVG in sandboxed `<iframe srcdoc>`s, and a few lines of
//! inline script sort and filter the table. Every name from a report is escaped: a report is
//! untrusted input.
//!
//! Big inputs stay usable: reports are kept compactly as they are added (per site: stack id,
//! live and allocated bytes), chart series of more than [`Options::max_points`] reports are
//! downsampled (each bucket keeps its lowest and highest report), only the top sites are
//! drawn and [`Options::table_rows`] are listed; the page says what it left out.
//!
//! ```
//! use heapsampler::timeline::{Options, Timeline};
//! let mut timeline = Timeline::new(Options::default());
//! let report = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
//! timeline.add("heap-1-000001.json", report);
//! let page = timeline.render();
//! assert!(page.starts_with("<!DOCTYPE html>") && page.contains("data-report-index=\"0\""));
//! ```

mod chart;
mod flame;
mod load;
mod page;
mod series;
mod table;
mod text;

use crate::Report;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the page shows and how much of it.
///
/// ```
/// let o = heapsampler::timeline::Options::default();
/// assert_eq!((o.top_sites, o.table_rows, o.max_points), (10, 500, 1500));
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            top_sites: 10,
            table_rows: 500,
            max_points: 1500,
            title: "heap timeline".to_string(),
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
    options: Options,
    entries: Vec<load::Entry>,
    skipped: Vec<Skipped>,
    /// The newest report of each pid (names its sites and fills the table).
    newest: std::collections::BTreeMap<u32, Arc<Report>>,
    /// The oldest and newest reports of all (flamegraphs and their diff), with their names.
    oldest: Option<(String, Arc<Report>)>,
    latest: Option<(String, Arc<Report>)>,
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
        self.entries.push(load::Entry::of(name, &report));
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

    /// Reads a report file and adds it, or notes it as skipped with the reader's reason.
    /// Returns whether it was added.
    ///
    /// ```
    /// let mut t = heapsampler::timeline::Timeline::new(Default::default());
    /// assert!(!t.add_file("/nonexistent/heap-1-000001.json".as_ref()));
    /// assert!(t.skipped()[0].reason.starts_with("cannot read"));
    /// ```
    pub fn add_file(&mut self, path: &Path) -> bool {
        load::add_file(self, path)
    }

    /// Adds every `heap-*.json` file of `dir` (hidden temporary files are not reports),
    /// skipping those that cannot be used. Returns how many were added.
    ///
    /// ```
    /// let mut t = heapsampler::timeline::Timeline::new(Default::default());
    /// assert!(t.add_dir("/nonexistent".as_ref()).is_err());
    /// ```
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, HtmlError> {
        load::add_dir(self, dir)
    }

    /// The page: one self-contained HTML document.
    ///
    /// ```
    /// let page = heapsampler::timeline::Timeline::new(Default::default()).render();
    /// assert!(page.contains("no usable report"));
    /// ```
    pub fn render(&self) -> String {
        page::render(self)
    }
}

/// The page of every report in `dir`: an error when the directory cannot be listed, holds no
/// report, or none of its reports can be used; files that cannot be used are listed on the
/// page with the reason.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("hs-html-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let report = heapsampler::Report::from_profile(&heapsampler::snapshot(), None, vec![], vec![]);
/// report.write_atomic(&dir, "heap-1-000001.json").unwrap();
/// let page = heapsampler::timeline::page_from_dir(&dir, &Default::default()).unwrap();
/// assert!(page.contains("heap-1-000001.json"));
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn page_from_dir(dir: &Path, options: &Options) -> Result<String, HtmlError> {
    let mut timeline = Timeline::new(options.clone());
    timeline.add_dir(dir)?;
    if timeline.is_empty() {
        return Err(HtmlError::NothingUsable(timeline.skipped));
    }
    Ok(timeline.render())
}
