//! Reading report files and directories into a [`Timeline`]: each report added, each file
//! that cannot be used skipped with its reason.

use super::timeline::{HtmlError, Timeline};
use crate::Report;
use std::path::Path;

/// The name a file is shown by: its file name (the directory is the same for all).
fn shown_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(crate) fn add_file(timeline: &mut Timeline, path: &Path) -> bool {
    let name = shown_name(path);
    match Report::read(path) {
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
    // Name order is time order within a process (`heap-<pid>-<seq>.json`).
    files.sort();
    let mut added = 0;
    for path in files {
        // A file rotated away between the listing and the read is not an error.
        if !path.exists() {
            continue;
        }
        added += usize::from(add_file(timeline, &path));
    }
    Ok(added)
}
