//! Reading report files and directories into a [`Timeline`]: each report added, each file
//! that cannot be used skipped with its reason. A directory's files are read lightly but for
//! the few whose whole report the page shows.

use super::entry::Entry;
use super::light::{self, Read};
use super::timeline::{HtmlError, Skipped, Timeline};
use crate::Report;
use crate::ReportError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The name a file is shown by: its file name (the directory is the same for all).
fn shown_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(crate) fn add_file(timeline: &mut Timeline, path: &Path) -> bool {
    match Report::read(path) {
        Ok(report) => {
            let name = shown_name(path);
            timeline.add(&name, sorted(report));
            true
        }
        Err(e) => {
            timeline.skipped.push(skipped(path, &e));
            false
        }
    }
}

/// `Report::location` searches by address: a file with unsorted locations (written by
/// another tool, or by hand) must still name its sites.
fn sorted(mut report: Report) -> Report {
    if !report.locations.is_sorted_by_key(|l| l.address) {
        report.locations.sort_by_key(|l| l.address);
    }
    report
}

/// A file that cannot be used, with the reader's reason.
fn skipped(path: &Path, e: &ReportError) -> Skipped {
    // The reader's message starts with the path; the page names the file already.
    let full = e.to_string();
    let prefix = format!("{}: ", path.display());
    let reason = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
    Skipped {
        file: shown_name(path),
        reason,
    }
}

/// A file as read in full: `None` when it was rotated away between the listing and the read
/// (not an error).
fn read(path: &Path) -> Option<Result<Report, ReportError>> {
    path.exists().then(|| Report::read(path))
}

/// Every file read lightly (see `light.rs`), on `threads` threads each taking the next file
/// not yet taken; in file order.
fn read_all(files: &[PathBuf], threads: usize) -> Vec<Read> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        let mut text = String::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = files.get(i) else {
                return done;
            };
            done.push((i, light::read(path, &shown_name(path), &mut text)));
        }
    };
    let done = if threads == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            let mut done = work();
            for w in workers {
                done.extend(w.join().unwrap_or_default());
            }
            done
        })
    };
    let mut read: Vec<Option<Read>> = files.iter().map(|_| None).collect();
    for (i, r) in done {
        read[i] = Some(r);
    }
    // A reader cannot panic short of a bug; the files it had taken are then read here.
    let mut text = String::new();
    read.into_iter()
        .zip(files)
        .map(|(r, path)| r.unwrap_or_else(|| light::read(path, &shown_name(path), &mut text)))
        .collect()
}

/// The files whose whole report the page may show: each pid's newest, the oldest and the
/// newest of all, chosen as [`Timeline::offer`] chooses among reports offered in file order.
fn shown(entries: &[Option<Entry>]) -> Vec<usize> {
    let mut newest: BTreeMap<u32, usize> = BTreeMap::new();
    let (mut oldest, mut latest): (Option<usize>, Option<usize>) = (None, None);
    let at = |i: usize| entries[i].as_ref().map_or(0, |e| e.timestamp_ms);
    for (i, e) in entries.iter().enumerate() {
        let Some(e) = e else { continue };
        let n = newest.entry(e.pid).or_insert(i);
        if at(*n) <= e.timestamp_ms {
            *n = i;
        }
        if oldest.is_none_or(|o| e.timestamp_ms < at(o)) {
            oldest = Some(i);
        }
        if latest.is_none_or(|l| at(l) <= e.timestamp_ms) {
            latest = Some(i);
        }
    }
    let mut shown: Vec<usize> = newest.into_values().chain(oldest).chain(latest).collect();
    shown.sort_unstable();
    shown.dedup();
    shown
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
    // Most files are read lightly: only what the charts and the table's growth column take
    // from them. Those the page shows in full are then read in full, so they are checked as
    // `Report::read` checks them; one that fails is skipped and the next in line is read.
    let mut entries = Vec::with_capacity(files.len());
    let mut reports: Vec<Option<Report>> = Vec::with_capacity(files.len());
    let mut skips = Vec::new();
    for (i, r) in read_all(&files, threads).into_iter().enumerate() {
        let (entry, report) = match r {
            Read::Full(full) => match *full {
                Ok(report) => (
                    Some(Entry::of(&shown_name(&files[i]), &report)),
                    Some(sorted(report)),
                ),
                Err(e) => {
                    skips.push((i, skipped(&files[i], &e)));
                    (None, None)
                }
            },
            Read::Gone => (None, None),
            Read::Light(entry) => (Some(entry), None),
        };
        entries.push(entry);
        reports.push(report);
    }
    loop {
        let unread: Vec<usize> = shown(&entries)
            .into_iter()
            .filter(|&i| reports[i].is_none())
            .collect();
        if unread.is_empty() {
            break;
        }
        for i in unread {
            match read(&files[i]) {
                Some(Ok(report)) => {
                    // What the page draws comes from the same read as what it shows.
                    entries[i] = Some(Entry::of(&shown_name(&files[i]), &report));
                    reports[i] = Some(sorted(report));
                }
                Some(Err(e)) => {
                    skips.push((i, skipped(&files[i], &e)));
                    entries[i] = None;
                }
                None => entries[i] = None,
            }
        }
    }
    skips.sort_by_key(|s| s.0);
    timeline.skipped.extend(skips.into_iter().map(|s| s.1));
    let mut added = 0;
    for (i, (entry, report)) in entries.into_iter().zip(reports).enumerate() {
        let Some(entry) = entry else { continue };
        timeline.entries.push(entry);
        if let Some(report) = report {
            timeline.offer(&shown_name(&files[i]), report);
        }
        added += 1;
    }
    Ok(added)
}
