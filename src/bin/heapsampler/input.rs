//! Reading report files and directories of reports, and the consistency checks of `validate`.

use crate::{CliError, Result};
use heapsampler::report::json::ReportErrorKind;
use heapsampler::{Report, ReportError};
use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A report and the file it came from.
pub struct Loaded {
    pub path: PathBuf,
    pub report: Report,
}

impl Loaded {
    /// The file's name as the user gave it (escaped), for headers and messages.
    pub fn name(&self) -> String {
        crate::format::path(&self.path)
    }
}

/// Reads one report. The error names the file and the problem (not JSON, truncated, not a
/// heapsampler report, unsupported version, missing field, unreadable).
pub fn load(path: &Path) -> Result<Loaded> {
    read(path).map_err(|e| CliError::msg(e.to_string()))
}

fn read(path: &Path) -> std::result::Result<Loaded, ReportError> {
    let mut report = Report::read(path)?;
    // `Report::location` looks addresses up by binary search: a file written by another tool
    // (or edited by hand) with unsorted locations must still symbolize.
    if !report.locations.is_sorted_by_key(|l| l.address) {
        report.locations.sort_by_key(|l| l.address);
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        report,
    })
}

/// Whether a file name is one the reporter writes: `heap-*.json`, not hidden (the reporter's
/// temporary files start with `.`).
pub fn is_report_name(name: &str) -> bool {
    name.starts_with("heap-") && name.ends_with(".json")
}

/// A path to read, and whether it was found by listing a directory (then a file that vanished
/// before it was read was rotated away meanwhile, and is skipped).
pub struct Input {
    pub path: PathBuf,
    pub listed: bool,
}

/// The files named by `inputs`: files as given, directories as their `heap-*.json` files in
/// name order, each file once. A directory without reports is an error.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<Input>> {
    let mut files: Vec<Input> = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(Input {
                path: input.clone(),
                listed: false,
            });
            continue;
        }
        let entries = std::fs::read_dir(input).map_err(|e| {
            CliError::msg(format!(
                "{}: cannot list the directory: {e}",
                input.display()
            ))
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                CliError::msg(format!(
                    "{}: cannot list the directory: {e}",
                    input.display()
                ))
            })?;
            // By bytes: a report whose name is not UTF-8 is still a report (printed lossily).
            let name = entry.file_name();
            if is_report_name(&String::from_utf8_lossy(name.as_bytes())) {
                found.push(entry.path());
            }
        }
        if found.is_empty() {
            return Err(CliError::msg(format!(
                "{}: no heap-*.json reports in this directory",
                input.display()
            )));
        }
        found.sort();
        files.extend(found.into_iter().map(|path| Input { path, listed: true }));
    }
    // A file named twice (`dir dir/heap-1-000003.json`) is one report, not two at one time.
    let mut seen = HashSet::new();
    files
        .retain(|f| seen.insert(std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone())));
    Ok(files)
}

/// Reads an input; `None` for a listed file that disappeared before it could be read.
pub fn load_input(input: &Input) -> Result<Option<Loaded>> {
    match read(&input.path) {
        Ok(loaded) => Ok(Some(loaded)),
        Err(e)
            if input.listed
                && matches!(e.kind(), ReportErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(None)
        }
        Err(e) => Err(CliError::msg(e.to_string())),
    }
}

/// Problems that parsing cannot see but that make a report wrong: unsorted locations, more
/// live samples than samples, suspects of unknown sites, names with control characters.
/// (Numbers out of range are refused by the reader already.)
pub fn consistency_problems(r: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(p) = hostile_names(r) {
        problems.push(p);
    }
    if let Some(w) = r
        .locations
        .windows(2)
        .find(|w| w[0].address >= w[1].address)
    {
        problems.push(format!(
            "`locations` are not sorted by address without repeats (address {} after {})",
            w[1].address, w[0].address
        ));
    }
    for (i, s) in r.sites.iter().enumerate() {
        if s.live_samples > s.samples {
            problems.push(format!(
                "sites[{i}] (stack {}): {} live samples of only {} samples",
                s.stack_id, s.live_samples, s.samples
            ));
        }
    }
    let ids: HashSet<_> = r.sites.iter().map(|s| s.stack_id).collect();
    for (i, l) in r.leak_suspects.iter().enumerate() {
        if !ids.contains(&l.stack_id) {
            problems.push(format!(
                "leak_suspects[{i}]: stack {} is not among the sites",
                l.stack_id
            ));
        }
    }
    let t = &r.totals.counts;
    if t.peak_live_bytes < t.live_bytes {
        problems.push(format!(
            "totals: peak_live_bytes {} is below live_bytes {}",
            t.peak_live_bytes, t.live_bytes
        ));
    }
    problems
}

/// Every text field of a report, named by its path in the report.
fn names(r: &Report) -> impl Iterator<Item = (String, &str)> {
    let program = std::iter::once(("program".to_string(), r.program.as_str()));
    let frames = r.locations.iter().enumerate().flat_map(|(i, l)| {
        l.frames.iter().enumerate().flat_map(move |(j, f)| {
            let at = move |field| format!("locations[{i}].frames[{j}].{field}");
            let function = f.function.as_deref().map(|n| (at("function"), n));
            let file = f.file.as_deref().map(|n| (at("file"), n));
            function.into_iter().chain(file)
        })
    });
    let threads = r.sites.iter().enumerate().flat_map(|(i, s)| {
        s.threads
            .iter()
            .enumerate()
            .map(move |(j, t)| (format!("sites[{i}].threads[{j}].name"), t.name.as_str()))
    });
    let mappings = r.mappings.iter().enumerate().flat_map(|(i, m)| {
        let path = std::iter::once((format!("mappings[{i}].path"), m.path.as_str()));
        let id = m
            .build_id
            .as_deref()
            .map(|b| (format!("mappings[{i}].build_id"), b));
        path.chain(id)
    });
    program.chain(frames).chain(threads).chain(mappings)
}

/// Names with control characters (escape sequences, forged line breaks): no symbolizer writes
/// them, so the file was forged or corrupted. One problem naming the first field and value,
/// and how many other fields have them.
fn hostile_names(r: &Report) -> Option<String> {
    let mut bad = names(r).filter(|(_, text)| text.chars().any(crate::format::is_hostile));
    let (field, text) = bad.next()?;
    let others = match bad.count() {
        0 => String::new(),
        1 => " (and 1 other name)".to_string(),
        n => format!(" (and {n} other names)"),
    };
    // At most 80 characters of the value: enough to recognise it.
    let shown: String = text.chars().take(80).collect();
    Some(format!(
        "`{field}` holds control characters: \"{}\"{others}",
        crate::format::escape(&shown)
    ))
}
