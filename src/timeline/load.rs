//! Reading report files and directories into a [`Timeline`]: each report added, each file
//! that cannot be used skipped with its reason.

use super::timeline::{HtmlError, Timeline};
use crate::Report;
use crate::ReportError;
use std::path::Path;

/// The name a file is shown by: its file name (the directory is the same for all).
fn shown_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(crate) fn add_file(timeline: &mut Timeline, path: &Path) -> bool {
    let read = Report::read(path);
    add_read(timeline, path, read)
}

/// Adds a report as read from `path`, or notes the file as skipped with the reader's reason.
fn add_read(timeline: &mut Timeline, path: &Path, read: Result<Report, ReportError>) -> bool {
    let name = shown_name(path);
    match read {
        Ok(mut report) => {
            // `Report::location` searches by address: a file with unsorted locations (written
            // by another tool, or by hand) must still name its sites.
            if !report.locations.is_sorted_by_key(|l| l.address) {
                report.locations.sort_by_key(|l| l.address);
            }
            timeline.add(&name, report);
            true
        }
        Err(e) => {
            // The reader's message starts with the path; the page names the file already.
            let full = e.to_string();
            let prefix = format!("{}: ", path.display());
            let reason = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
            timeline.skip(name, reason);
            false
        }
    }
}

/// A file as read: `None` when it was rotated away between the listing and the read (not an
/// error).
fn read(path: &Path) -> Option<Result<Report, ReportError>> {
    path.exists().then(|| Report::read(path))
}

pub(crate) fn add_dir(timeline: &mut Timeline, dir: &Path) -> Result<usize, HtmlError> {
    let listing = |e| HtmlError::Dir(dir.to_path_buf(), e);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("heap-") && name.ends_with(".json") {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Err(HtmlError::Empty(dir.to_path_buf()));
    }
    // Name order is time order within a process (`heap-<pid>-<seq>.json`); the page is built
    // from the files in this order whatever the number of threads reading them.
    files.sort();
    let threads = timeline.options.threads.clamp(1, files.len());
    let mut added = 0;
    if threads == 1 {
        for path in &files {
            if let Some(r) = read(path) {
                added += usize::from(add_read(timeline, path, r));
            }
        }
        return Ok(added);
    }
    // Reader k reads files k, k + threads, …, each handing over one report at a time (a
    // channel of 1: at most two whole reports per reader in memory); this thread takes them
    // in file order.
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..threads)
            .map(|k| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let files = &files;
                scope.spawn(move || {
                    for path in files.iter().skip(k).step_by(threads) {
                        if tx.send(read(path)).is_err() {
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        for (i, path) in files.iter().enumerate() {
            // A reader that stopped (it cannot, short of a bug) leaves its files to this one.
            let r = readers[i % threads].recv().unwrap_or_else(|_| read(path));
            if let Some(r) = r {
                added += usize::from(add_read(timeline, path, r));
            }
        }
    });
    Ok(added)
}
