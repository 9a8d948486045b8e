//! `heapsampler flamegraph` and `heapsampler pprof`: a report rendered by the library's
//! renderers, written to a file or stdout.

use crate::input;
use crate::{CliError, FlameBy, Result, Verdict};
use heapsampler::report::flamegraph::{self, FlameValue};
use heapsampler::report::pprof;
use std::io::Write;
use std::path::Path;

pub fn flamegraph(
    out: &mut dyn Write,
    path: &Path,
    output: Option<&Path>,
    collapsed: bool,
    by: FlameBy,
) -> Result<Verdict> {
    let loaded = input::load(path)?;
    let r = &loaded.report;
    let profile = r.to_profile();
    let (value, what) = match by {
        FlameBy::Live => (FlameValue::LiveBytes, "live bytes"),
        FlameBy::Alloc => (FlameValue::AllocBytes, "bytes allocated since start"),
    };
    let data = if collapsed {
        flamegraph::collapsed(&profile, value).into_bytes()
    } else {
        let title = format!(
            "{what} (estimated), pid {}, {}",
            r.pid,
            crate::format::timestamp(r.timestamp_ms)
        );
        flamegraph::svg(&profile, value, &title).map_err(|e| {
            CliError::msg(format!(
                "{}: cannot draw the flamegraph: {e}",
                loaded.name()
            ))
        })?
    };
    write_output(out, output, &data)?;
    Ok(Verdict::Good)
}

pub fn pprof(out: &mut dyn Write, path: &Path, output: &Path) -> Result<Verdict> {
    let loaded = input::load(path)?;
    let r = &loaded.report;
    let data = pprof::render(&r.to_profile(), &r.mappings);
    write_output(out, Some(output), &data)?;
    Ok(Verdict::Good)
}

/// Writes `data` to `output` (and says so on stdout), or to stdout itself when `output` is
/// absent or `-`.
fn write_output(out: &mut dyn Write, output: Option<&Path>, data: &[u8]) -> Result<()> {
    match output {
        None => out.write_all(data)?,
        Some(p) if p == Path::new("-") => out.write_all(data)?,
        Some(p) => {
            std::fs::write(p, data)
                .map_err(|e| CliError::msg(format!("{}: cannot write: {e}", p.display())))?;
            writeln!(
                out,
                "wrote {} ({} bytes)",
                crate::format::path(p),
                crate::format::int(data.len() as u64)
            )?;
        }
    }
    Ok(())
}
