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
mod entry;
mod flame;
mod light;
mod lines;
mod load;
mod page;
mod series;
mod table;
mod text;
#[allow(clippy::module_inception)]
mod timeline;

pub use timeline::{HtmlError, Options, Skipped, Timeline};

use std::path::Path;

/// Reading files and rendering: the parts of a [`Timeline`] built on the modules below it.
impl Timeline {
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
    /// The page is the one [`add_file`](Self::add_file) on each file in name order would
    /// make (bad files skipped with the same reasons), read faster: most files are read for
    /// what the charts take from them (header, totals, per site the stack id, live and
    /// allocated bytes; the rest checked as JSON), only the reports the page shows whole
    /// (each pid's newest, the oldest, the newest) in full. A file the light read refuses is
    /// read in full for its reason. The one difference: a file only drawn is checked for the
    /// values drawn, so a value out of range elsewhere in it does not skip it.
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
        return Err(HtmlError::NothingUsable(timeline.skipped().to_vec()));
    }
    Ok(timeline.render())
}
