//! Offline symbolization: function, file and line for the addresses of a report written
//! without them ([`Reporter::symbolize(false)`](crate::Reporter::symbolize),
//! `HEAPSAMPLER=symbolize=0`), from the binaries that produced it — what
//! `heapsampler symbolize REPORT --binary PATH` does.
//!
//! An address of the report is a run-time address. Its link-time address, the one the debug
//! info speaks, goes through the report's `mappings` and the binary's `PT_LOAD` segments:
//!
//! 1. find the mapping with `start <= address < end`;
//! 2. its file offset: `address - start + offset`;
//! 3. find the `PT_LOAD` segment with `p_offset <= file offset < p_offset + p_filesz`;
//! 4. the link-time address: `file offset - p_offset + p_vaddr`.
//!
//! The file offset itself is not an address (they differ by the segment's `p_vaddr -
//! p_offset`, often a page or more in a Rust binary): given to `addr2line` it names another
//! function.

use crate::Report;
use crate::read::elf::{DebugInfo, Mapped, vaddr_of_file_offset};
use crate::report::json::{Location, LocationFrame};
use crate::report::mappings::Mapping;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What [`symbolize_report`] did.
///
/// ```
/// let s = heapsampler::report::offline::Summary::default();
/// assert_eq!(s.symbolized, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct addresses of the report's sites.
    pub addresses: usize,
    /// Of those, found in a mapping of a given binary and symbolized from it (with a function
    /// name or not).
    pub symbolized: usize,
    /// Of those, with a function name.
    pub named: usize,
}

/// The link-time address of run-time `address`, through `mapping` (which holds it) and the
/// binary's `PT_LOAD` segments: `None` when no segment holds its file offset.
///
/// ```
/// use heapsampler::report::offline::link_address;
/// use heapsampler::report::mappings::Mapping;
/// // A text segment at file offset 0x5000, linked at 0x6000, mapped at 0x7f0000001000.
/// let binary = std::fs::read(std::env::current_exe()?)?;
/// let m = Mapping { start: 0x7f00_0000_1000, end: 0x7f00_0000_9000, offset: 0x5000, ..Mapping::default() };
/// let _ = link_address(&binary, &m, 0x7f00_0000_1234);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn link_address(binary: &[u8], mapping: &Mapping, address: u64) -> Option<u64> {
    let info = DebugInfo::parse(binary).ok()?;
    link_address_in(&info, mapping, address)
}

fn link_address_in(info: &DebugInfo<'_>, mapping: &Mapping, address: u64) -> Option<u64> {
    if !(mapping.start <= address && address < mapping.end) {
        return None;
    }
    let file_offset = (address - mapping.start).checked_add(mapping.offset)?;
    vaddr_of_file_offset(&info.segments, file_offset)
}

/// The file name of a mapping's path, without the kernel's ` (deleted)` suffix.
fn file_name(path: &str) -> &str {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `mapping` was loaded from this binary: same build-id when both have one, else the
/// same file name.
fn matches(mapping: &Mapping, binary: &Path, build_id: Option<&str>) -> bool {
    match (mapping.build_id.as_deref(), build_id) {
        (Some(a), Some(b)) => a == b,
        _ => binary
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == file_name(&mapping.path)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills in the frames (function, file, line, inlined calls) of every address of the
/// report's sites that lies in a mapping of one of `binaries`, from their debug info (or
/// their symbol table without it), replacing what the report had for those addresses.
///
/// A binary matches a mapping by GNU build-id when both have one, else by file name. Fails
/// with a message naming the binary when it cannot be read or matches no mapping.
///
/// ```no_run
/// use heapsampler::{Report, report::offline};
/// let mut report = Report::read("heap-reports/heap-4242-000003.json")?;
/// let summary = offline::symbolize_report(&mut report, &["target/release/my-service".into()])?;
/// println!("{} of {} addresses named", summary.named, summary.addresses);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn symbolize_report(report: &mut Report, binaries: &[PathBuf]) -> Result<Summary, String> {
    let _guard = crate::sys::guard::enter_guard();
    let mut addresses: Vec<u64> = report
        .sites
        .iter()
        .flat_map(|s| s.addresses.iter().copied())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut locations: BTreeMap<u64, Location> = std::mem::take(&mut report.locations)
        .into_iter()
        .map(|l| (l.address, l))
        .collect();
    let mut summary = Summary {
        addresses: addresses.len(),
        ..Summary::default()
    };
    for binary in binaries {
        let shown = binary.display();
        let mapped = Mapped::open(binary).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let info = DebugInfo::parse(mapped.bytes()).map_err(|e| format!("{shown}: {e}"))?;
        let build_id = info.build_id.map(hex);
        let maps: Vec<&Mapping> = report
            .mappings
            .iter()
            .filter(|m| matches(m, binary, build_id.as_deref()))
            .collect();
        if maps.is_empty() {
            report.locations = locations.into_values().collect();
            return Err(format!(
                "{shown} (build-id {}) matches no mapping of the report{}",
                build_id.as_deref().unwrap_or("none"),
                if report.mappings.is_empty() {
                    " (it has none: it was written where mappings are not read)"
                } else {
                    ""
                }
            ));
        }
        // One batch: the debug info is read a unit at a time for all the addresses.
        let batch: Vec<(u64, u64)> = addresses
            .iter()
            .filter_map(|&a| Some((a, maps.iter().find_map(|m| link_address_in(&info, m, a))?)))
            .collect();
        for (&(address, _), frames) in batch.iter().zip(info.frames_all(&batch)) {
            summary.symbolized += 1;
            summary.named += usize::from(frames.iter().any(|f| f.function.is_some()));
            let frames = frames
                .into_iter()
                .map(|f| LocationFrame {
                    function: f.function,
                    file: f.file,
                    line: f.line,
                })
                .collect();
            locations.insert(address, Location { address, frames });
        }
    }
    report.locations = locations.into_values().collect();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::elf::Segment;

    #[test]
    fn file_offsets_become_link_addresses_through_their_segment() {
        // The layout of a PIE linked by lld: text at file offset 0x5000 linked at 0x6000.
        let segments = [
            Segment {
                offset: 0,
                file_size: 0x4f00,
                vaddr: 0,
            },
            Segment {
                offset: 0x5000,
                file_size: 0x20000,
                vaddr: 0x6000,
            },
        ];
        assert_eq!(vaddr_of_file_offset(&segments, 0x5010), Some(0x6010));
        assert_eq!(vaddr_of_file_offset(&segments, 0x10), Some(0x10));
        assert_eq!(vaddr_of_file_offset(&segments, 0x4f80), None);
        assert_eq!(vaddr_of_file_offset(&segments, 0x25000), None);
    }

    #[test]
    fn mappings_match_by_build_id_then_by_name() {
        let m = |path: &str, id: Option<&str>| Mapping {
            path: path.into(),
            build_id: id.map(str::to_string),
            ..Mapping::default()
        };
        let bin = Path::new("/build/out/app");
        assert!(matches(&m("/srv/app", Some("ab")), bin, Some("ab")));
        assert!(!matches(&m("/srv/app", Some("ab")), bin, Some("cd")));
        assert!(matches(&m("/srv/app (deleted)", None), bin, Some("cd")));
        assert!(!matches(&m("/srv/other", None), bin, None));
    }
}
