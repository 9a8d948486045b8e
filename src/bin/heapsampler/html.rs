//! `heapsampler html`: the heap timeline of a directory of reports as one self-contained
//! HTML page ([`heapsampler::timeline`]).

use crate::{CliError, Result, Verdict};
use heapsampler::timeline::{Options, Timeline};
use std::io::Write;
use std::path::Path;

pub fn run(
    out: &mut dyn Write,
    dir: &Path,
    output: Option<&Path>,
    top: usize,
    rows: usize,
    threads: Option<u16>,
) -> Result<Verdict> {
    let options = Options {
        top_sites: top,
        table_rows: rows,
        title: format!("heap timeline of {}", dir.display()),
        // Reading the reports' JSON is most of the time of a big directory.
        threads: threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            usize::from,
        ),
        ..Options::default()
    };
    let mut timeline = Timeline::new(options);
    timeline
        .add_dir(dir)
        .map_err(|e| CliError::msg(e.to_string()))?;
    if timeline.is_empty() {
        let skipped = timeline.skipped();
        let first = skipped
            .first()
            .map(|k| format!(" (first: {k})"))
            .unwrap_or_default();
        return Err(CliError::msg(format!(
            "{}: no usable report, {} skipped{first}",
            dir.display(),
            skipped.len()
        )));
    }
    let page = timeline.render();
    match output {
        None => out.write_all(page.as_bytes())?,
        Some(p) if p.as_os_str() == "-" => out.write_all(page.as_bytes())?,
        Some(p) => std::fs::write(p, page.as_bytes())
            .map_err(|e| CliError::msg(format!("{}: cannot write: {e}", p.display())))?,
    }
    // The page lists the skipped files; the terminal gets one line about them.
    let skipped = timeline.skipped();
    if let Some(first) = skipped.first() {
        let _ = writeln!(
            std::io::stderr(),
            "heapsampler: warning: {} file(s) skipped, listed on the page (first: {})",
            skipped.len(),
            heapsampler::report::escape(&first.to_string())
        );
    }
    Ok(Verdict::Good)
}
