//! The tables of one DWARF unit that a batch of addresses needs: its functions' address
//! ranges, the line rows of those addresses (the line program streamed, never kept), its file
//! names, and the inlined calls of the functions hit. Ported from `addr2line` 0.27 (same
//! order of attributes, same sorting and searching), so that the answers are the same.

use addr2line::gimli::{self, Section};
use gimli::{AttributeValue, UnitOffset, UnitRef};
use std::cmp::Ordering;
use std::rc::Rc;

pub(crate) type R<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;
pub(crate) type Result<T> = std::result::Result<T, gimli::Error>;

/// What reading one scattered item (a unit's first entries, a name) maps: the kernel maps
/// the 16 pages around a page fault.
pub(crate) const FAULT_AROUND: usize = 64 << 10;

/// Drops pages of the mapped file from the resident set: `Some(bytes)`, those holding
/// `bytes` (read in order, not needed again); `None`, all of them.
pub(crate) type Release<'a> = Box<dyn Fn(Option<&[u8]>) + 'a>;

/// The sections and other units, as the tables of one unit need them.
pub(crate) trait Units<'a> {
    fn dwarf(&self) -> &gimli::Dwarf<R<'a>>;
    /// Counts debug info read here and there (names, entries of other units): the file's
    /// pages are all released when enough was read.
    fn touched(&self, bytes: usize);
    /// Releases the pages of a stretch read in order and not needed again.
    fn passed(&self, bytes: &[u8]);
    /// The unit holding the entry at `offset` of `.debug_info`, and the entry's offset in it.
    fn find_unit(
        &self,
        offset: gimli::DebugInfoOffset<usize>,
    ) -> Result<(Rc<gimli::Unit<R<'a>>>, UnitOffset<usize>)>;
}

/// A unit as `gimli::Unit::new` makes it, without what only line lookups need (its name,
/// directory and line program header, which `Unit::new` reads from three more places of the
/// file): enough to read its entries and their names and address ranges.
pub(crate) fn light_unit<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    header: gimli::UnitHeader<R<'a>>,
    abbreviations: std::sync::Arc<gimli::Abbreviations>,
) -> Result<gimli::Unit<R<'a>>> {
    let encoding = header.encoding();
    let mut unit = gimli::Unit {
        str_offsets_base: gimli::DebugStrOffsetsBase::default_for_encoding_and_file(
            encoding,
            dwarf.file_type,
        ),
        addr_base: gimli::DebugAddrBase(0),
        loclists_base: gimli::DebugLocListsBase::default_for_encoding_and_file(
            encoding,
            dwarf.file_type,
        ),
        rnglists_base: gimli::DebugRngListsBase::default_for_encoding_and_file(
            encoding,
            dwarf.file_type,
        ),
        dwo_id: match header.type_() {
            gimli::UnitType::Skeleton(id) | gimli::UnitType::SplitCompilation(id) => Some(id),
            _ => None,
        },
        header,
        abbreviations,
        name: None,
        comp_dir: None,
        low_pc: 0,
        line_program: None,
    };
    let mut low_pc = None;
    {
        let mut entries = unit.header.entries_raw(&unit.abbreviations, None)?;
        let abbrev = entries
            .read_abbreviation()?
            .ok_or(gimli::Error::MissingUnitDie)?;
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            match (attr.name(), attr.value()) {
                (gimli::DW_AT_low_pc, value) => low_pc = Some(value),
                (gimli::DW_AT_str_offsets_base, AttributeValue::DebugStrOffsetsBase(base)) => {
                    unit.str_offsets_base = base;
                }
                (
                    gimli::DW_AT_addr_base | gimli::DW_AT_GNU_addr_base,
                    AttributeValue::DebugAddrBase(base),
                ) => unit.addr_base = base,
                (gimli::DW_AT_loclists_base, AttributeValue::DebugLocListsBase(base)) => {
                    unit.loclists_base = base;
                }
                (
                    gimli::DW_AT_rnglists_base | gimli::DW_AT_GNU_ranges_base,
                    AttributeValue::DebugRngListsBase(base),
                ) => unit.rnglists_base = base,
                (gimli::DW_AT_GNU_dwo_id, AttributeValue::DwoId(id)) if unit.dwo_id.is_none() => {
                    unit.dwo_id = Some(id);
                }
                _ => {}
            }
        }
    }
    if let Some(value) = low_pc
        && let Some(addr) = dwarf.attr_address(&unit, value)?
    {
        unit.low_pc = addr;
    }
    Ok(unit)
}

/// The address attributes of an entry.
#[derive(Default)]
pub(crate) struct RangeAttributes {
    low_pc: Option<u64>,
    high_pc: Option<u64>,
    size: Option<u64>,
    pub(crate) ranges_offset: Option<gimli::RangeListsOffset<usize>>,
}

impl RangeAttributes {
    /// Takes `attr` if it is one of the address attributes.
    pub(crate) fn read<'a>(
        &mut self,
        unit: UnitRef<'_, R<'a>>,
        attr: &gimli::Attribute<R<'a>>,
    ) -> Result<()> {
        match attr.name() {
            gimli::DW_AT_low_pc => match attr.value() {
                AttributeValue::Addr(val) => self.low_pc = Some(val),
                AttributeValue::DebugAddrIndex(index) => self.low_pc = Some(unit.address(index)?),
                _ => {}
            },
            gimli::DW_AT_high_pc => match attr.value() {
                AttributeValue::Addr(val) => self.high_pc = Some(val),
                AttributeValue::DebugAddrIndex(index) => self.high_pc = Some(unit.address(index)?),
                AttributeValue::Udata(val) => self.size = Some(val),
                _ => {}
            },
            gimli::DW_AT_ranges => self.ranges_offset = unit.attr_ranges_offset(attr.value())?,
            _ => {}
        }
        Ok(())
    }

    /// Calls `f` with each non-empty range; whether there was one.
    pub(crate) fn for_each_range(
        &self,
        unit: UnitRef<'_, R<'_>>,
        mut f: impl FnMut(gimli::Range),
    ) -> Result<bool> {
        let mut added_any = false;
        let mut add_range = |range: gimli::Range| {
            if range.begin < range.end {
                f(range);
                added_any = true;
            }
        };
        if let Some(ranges_offset) = self.ranges_offset {
            let mut list = unit.ranges(ranges_offset)?;
            while let Some(range) = list.next()? {
                add_range(range);
            }
        } else if let (Some(begin), Some(end)) = (self.low_pc, self.high_pc) {
            add_range(gimli::Range { begin, end });
        } else if let (Some(begin), Some(size)) = (self.low_pc, self.size) {
            // A -1 tombstone overflows here, and the empty range is dropped.
            add_range(gimli::Range {
                begin,
                end: begin.wrapping_add(size),
            });
        }
        Ok(added_any)
    }
}

/// The address ranges of a unit's line sequences (for units that declare none).
pub(crate) fn sequence_ranges(unit: UnitRef<'_, R<'_>>) -> Result<Option<Vec<gimli::Range>>> {
    let Some(program) = unit.line_program.clone() else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let mut start = None;
    let mut rows = program.rows();
    while let Some((_, row)) = rows.next_row()? {
        if row.end_sequence() {
            if let Some(begin) = start.take()
                && begin < row.address()
            {
                out.push(gimli::Range {
                    begin,
                    end: row.address(),
                });
            }
        } else if start.is_none() {
            start = Some(row.address());
        }
    }
    Ok(Some(out))
}

/// One address range of a `DW_TAG_subprogram` (layout and sort as `addr2line`'s).
struct FunctionAddress {
    range: gimli::Range,
    function: usize,
}

/// What one unit says about a sorted batch of probes.
pub(crate) struct UnitTables {
    functions: Vec<UnitOffset<usize>>,
    addresses: Vec<FunctionAddress>,
    /// Per probe: the file index and line of its row.
    rows: Vec<Option<(u64, u32)>>,
    files: Vec<String>,
}

impl UnitTables {
    pub(crate) fn parse(
        lookup: &dyn Units<'_>,
        unit: UnitRef<'_, R<'_>>,
        probes: &[u64],
    ) -> Result<Self> {
        let mut tables = UnitTables {
            functions: Vec::new(),
            addresses: Vec::new(),
            rows: vec![None; probes.len()],
            files: Vec::new(),
        };
        tables.parse_functions(lookup, unit)?;
        tables.parse_lines(lookup, unit, probes)?;
        Ok(tables)
    }

    fn parse_functions(&mut self, lookup: &dyn Units<'_>, unit: UnitRef<'_, R<'_>>) -> Result<()> {
        let mut entries = unit.entries_raw(None)?;
        // The unit's bytes: released behind the walk.
        let start = unit.header.debug_info_offset().map(|o| o.0);
        let section = lookup.dwarf().debug_info.reader().slice();
        let passed = |from: usize, to: usize| {
            if let Some(bytes) = start.and_then(|s| section.get(s + from..s + to)) {
                lookup.passed(bytes);
            }
        };
        let mut last = 0;
        while !entries.is_empty() {
            let offset = entries.next_offset();
            if offset.0 - last >= 1 << 18 {
                passed(last, offset.0);
                last = offset.0;
            }
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            if abbrev.tag() != gimli::DW_TAG_subprogram {
                entries.skip_attributes(abbrev.attributes())?;
                continue;
            }
            let mut ranges = RangeAttributes::default();
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec)?;
                ranges.read(unit, &attr)?;
            }
            let function = self.functions.len();
            let addresses = &mut self.addresses;
            if ranges.for_each_range(unit, |range| {
                addresses.push(FunctionAddress { range, function })
            })? {
                self.functions.push(offset);
            }
        }
        passed(last, entries.next_offset().0);
        self.addresses.sort_unstable_by_key(|x| x.range.begin);
        Ok(())
    }

    /// Streams the line program once: only the current sequence's rows are held.
    fn parse_lines(
        &mut self,
        lookup: &dyn Units<'_>,
        unit: UnitRef<'_, R<'_>>,
        probes: &[u64],
    ) -> Result<()> {
        let Some(program) = unit.line_program.clone() else {
            return Ok(());
        };
        // (address, file index, line): of one sequence, one row per address (the last).
        let mut sequence: Vec<(u64, u64, u32)> = Vec::new();
        let program_bytes = program.header().raw_program_buf().slice();
        let mut rows = program.rows();
        while let Some((_, row)) = rows.next_row()? {
            if row.end_sequence() {
                if let Some(&(start, _, _)) = sequence.first() {
                    let end = row.address();
                    if start < end {
                        self.locate(&sequence, start, end, probes);
                    }
                }
                sequence.clear();
                continue;
            }
            let address = row.address();
            let file = row.file_index();
            let line = row.line().map_or(0, |l| l.get() as u32);
            match sequence.last_mut() {
                Some(last) if last.0 == address => *last = (address, file, line),
                _ => sequence.push((address, file, line)),
            }
        }
        lookup.passed(program_bytes);
        let header = rows.header();
        self.files.push(match header.file(0) {
            Some(file) => render_file(unit, file, header)?,
            // DWARF 4 and before may have no file 0.
            None => String::new(),
        });
        let mut index = 1;
        while let Some(file) = header.file(index) {
            self.files.push(render_file(unit, file, header)?);
            index += 1;
        }
        Ok(())
    }

    /// The probes in `[start, end)` take the row at or before them.
    fn locate(&mut self, sequence: &[(u64, u64, u32)], start: u64, end: u64, probes: &[u64]) {
        let first = probes.partition_point(|&p| p < start);
        for (k, &probe) in probes.iter().enumerate().skip(first) {
            if probe >= end {
                break;
            }
            if self.rows[k].is_some() {
                continue;
            }
            let idx = match sequence.binary_search_by(|r| r.0.cmp(&probe)) {
                Ok(x) => x,
                Err(0) => continue,
                Err(x) => x - 1,
            };
            let (_, file, line) = sequence[idx];
            self.rows[k] = Some((file, line));
        }
    }

    /// The index of the function whose range holds `probe`.
    pub(crate) fn function_at(&self, probe: u64) -> Option<usize> {
        let i = self
            .addresses
            .binary_search_by(|a| {
                if probe < a.range.begin {
                    Ordering::Greater
                } else if probe >= a.range.end {
                    Ordering::Less
                } else {
                    Ordering::Equal
                }
            })
            .ok()?;
        Some(self.addresses[i].function)
    }

    pub(crate) fn offset_of(&self, function: usize) -> UnitOffset<usize> {
        self.functions[function]
    }

    /// File and line of the `k`-th probe's row.
    pub(crate) fn location(&self, k: usize) -> Option<(Option<&str>, Option<u32>)> {
        let (file, line) = self.rows[k]?;
        Some((self.file(file), (line != 0).then_some(line)))
    }

    pub(crate) fn file(&self, index: u64) -> Option<&str> {
        self.files
            .get(usize::try_from(index).ok()?)
            .map(String::as_str)
    }
}

fn render_file<'a>(
    unit: UnitRef<'_, R<'a>>,
    file: &gimli::FileEntry<R<'a>>,
    header: &gimli::LineProgramHeader<R<'a>>,
) -> Result<String> {
    let mut path = match unit.comp_dir {
        Some(ref dir) => dir.to_string_lossy().into_owned(),
        None => String::new(),
    };
    // Directory index 0 is the unit's directory.
    if file.directory_index() != 0
        && let Some(directory) = file.directory(header)
    {
        path_push(&mut path, &unit.attr_string(directory)?.to_string_lossy());
    }
    path_push(
        &mut path,
        &unit.attr_string(file.path_name())?.to_string_lossy(),
    );
    Ok(path)
}

fn path_push(path: &mut String, p: &str) {
    if has_forward_slash_root(p) || has_backward_slash_root(p) {
        *path = p.to_string();
    } else {
        let separator = if has_backward_slash_root(path) {
            '\\'
        } else {
            '/'
        };
        if !path.is_empty() && !path.ends_with(separator) {
            path.push(separator);
        }
        *path += p;
    }
}

fn has_forward_slash_root(p: &str) -> bool {
    p.starts_with('/') || p.get(1..3) == Some(":/")
}

fn has_backward_slash_root(p: &str) -> bool {
    p.starts_with('\\') || p.get(1..3) == Some(":\\")
}
