//! `heapsampler validate` (alias `check`): validate report files, one verdict line per file.

use crate::input;
use crate::{Result, Verdict};
use std::io::Write;
use std::path::PathBuf;

/// `path: OK (...)` on stdout for a good file, `path: problem` on stderr for a bad one; the
/// verdict is bad when any file is.
pub fn run(out: &mut dyn Write, inputs: &[PathBuf]) -> Result<Verdict> {
    let mut files = Vec::new();
    let mut bad = 0usize;
    let mut bad_inputs = 0usize;
    for i in inputs {
        // A directory without reports is one bad input, not the end of the check.
        match input::expand(std::slice::from_ref(i)) {
            Ok(found) => files.extend(found),
            Err(e) => {
                complain(out, &e.to_string())?;
                bad += 1;
                bad_inputs += 1;
            }
        }
    }
    for file in &files {
        // Read as written: `input::load` repairs what this is to report.
        let r = match heapsampler::Report::read(&file.path) {
            Ok(r) => r,
            Err(e) => {
                complain(out, &e.to_string())?;
                bad += 1;
                continue;
            }
        };
        let r = &r;
        let name = crate::format::path(&file.path);
        let problems = input::consistency_problems(r);
        if problems.is_empty() {
            writeln!(
                out,
                "{}: OK (version {}, pid {}, {}, {} sites, {} leak suspect{})",
                name,
                r.version,
                r.pid,
                crate::format::timestamp(r.timestamp_ms),
                r.sites.len(),
                r.leak_suspects.len(),
                if r.leak_suspects.len() == 1 { "" } else { "s" }
            )?;
        } else {
            complain(
                out,
                &format!("{name}: invalid report: {}", problems.join("; ")),
            )?;
            bad += 1;
        }
    }
    // A directory that could not be listed counts as one input.
    let checked = files.len() + bad_inputs;
    if bad > 0 {
        // One bad file of one: its own line says it all.
        if checked > 1 {
            complain(out, &format!("{bad} of {checked} checked inputs are bad"))?;
        }
        Ok(Verdict::Bad)
    } else {
        Ok(Verdict::Good)
    }
}

/// A line on stderr, after whatever stdout holds so far (the two stay in order on a terminal);
/// escaped, as it may quote a file name.
fn complain(out: &mut dyn Write, line: &str) -> Result<()> {
    out.flush()?;
    let _ = writeln!(std::io::stderr(), "{}", crate::format::escape(line));
    Ok(())
}
