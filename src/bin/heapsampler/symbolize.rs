//! `symbolize`: fills in the functions, files and lines of a report written without them
//! (`HEAPSAMPLER=symbolize=0`), from the binaries that produced it.

use crate::{CliError, Result, Verdict, input};
use heapsampler::report::offline;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn run(
    out: &mut dyn Write,
    report: &Path,
    binaries: &[PathBuf],
    output: Option<&Path>,
) -> Result<Verdict> {
    let mut loaded = input::load(report)?;
    let name = loaded.name();
    let summary = offline::symbolize_report(&mut loaded.report, binaries).map_err(CliError::msg)?;
    if summary.addresses > 0 && summary.symbolized == 0 {
        return Err(CliError::msg(format!(
            "{name}: no address of the report lies in a mapping of the given binaries"
        )));
    }
    let text = loaded.report.to_string_pretty();
    match output {
        None => out.write_all(text.as_bytes())?,
        Some(p) if p == Path::new("-") => out.write_all(text.as_bytes())?,
        Some(p) => {
            std::fs::write(p, text.as_bytes()).map_err(|e| {
                CliError::msg(format!("{}: cannot write: {e}", crate::format::path(p)))
            })?;
            writeln!(
                out,
                "wrote {}: {} of {} addresses symbolized, {} with a function name",
                crate::format::path(p),
                summary.symbolized,
                summary.addresses,
                summary.named
            )?;
        }
    }
    Ok(Verdict::Good)
}
