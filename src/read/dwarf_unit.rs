//! The tables of one DWARF unit that a batch of addresses needs: its functions' address
//! ranges, the line rows of those addresses (the line program streamed, never kept), its file
//! names, and the inlined calls of the functions hit. Ported from `addr2line` 0.27 (same
//! order of attributes, same sorting and searching), so that the answers are the same.

use crate::read::dwarf::{FAULT_AROUND, Lookup, R, Result};
use addr2line::gimli;
use gimli::{AttributeValue, UnitOffset, UnitRef};
use std::cmp::Ordering;

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
        lookup: &Lookup<'_>,
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

    fn parse_functions(&mut self, lookup: &Lookup<'_>, unit: UnitRef<'_, R<'_>>) -> Result<()> {
        let mut entries = unit.entries_raw(None)?;
        let mut last = 0;
        while !entries.is_empty() {
            let offset = entries.next_offset();
            if offset.0 - last >= 1 << 16 {
                lookup.progress(offset.0 - last);
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
        self.addresses.sort_unstable_by_key(|x| x.range.begin);
        Ok(())
    }

    /// Streams the line program once: only the current sequence's rows are held.
    fn parse_lines(
        &mut self,
        lookup: &Lookup<'_>,
        unit: UnitRef<'_, R<'_>>,
        probes: &[u64],
    ) -> Result<()> {
        let Some(program) = unit.line_program.clone() else {
            return Ok(());
        };
        // (address, file index, line): of one sequence, one row per address (the last).
        let mut sequence: Vec<(u64, u64, u32)> = Vec::new();
        let mut rows = program.rows();
        let mut count = 0usize;
        while let Some((_, row)) = rows.next_row()? {
            count += 1;
            if count.is_multiple_of(1 << 14) {
                lookup.progress(1 << 16);
            }
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

/// An inlined call inside a function.
pub(crate) struct Inlined<'a> {
    pub name: Option<R<'a>>,
    pub call_file: Option<u64>,
    pub call_line: u32,
}

struct InlinedAddress {
    range: gimli::Range,
    call_depth: usize,
    function: usize,
}

/// A `DW_TAG_subprogram` with its inlined calls.
pub(crate) struct Function<'a> {
    pub name: Option<R<'a>>,
    inlined: Vec<Inlined<'a>>,
    addresses: Vec<InlinedAddress>,
}

impl<'a> Function<'a> {
    pub(crate) fn parse(
        lookup: &Lookup<'a>,
        unit: UnitRef<'_, R<'a>>,
        offset: UnitOffset<usize>,
    ) -> Result<Self> {
        let mut entries = unit.entries_raw(Some(offset))?;
        let depth = entries.next_depth();
        let abbrev = entries
            .read_abbreviation()?
            .ok_or(gimli::Error::NoEntryAtGivenOffset(offset.0 as u64))?;
        let mut name = None;
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            match attr.name() {
                gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                    if let Ok(val) = unit.attr_string(attr.value()) {
                        name = Some(val);
                    }
                }
                gimli::DW_AT_name if name.is_none() => {
                    name = unit.attr_string(attr.value()).ok();
                }
                gimli::DW_AT_abstract_origin | gimli::DW_AT_specification if name.is_none() => {
                    name = name_attr(lookup, attr.value(), unit, 16)?;
                }
                _ => {}
            }
        }
        lookup.progress(FAULT_AROUND);
        let mut function = Function {
            name,
            inlined: Vec::new(),
            addresses: Vec::new(),
        };
        function.parse_children(lookup, unit, &mut entries, depth, 0)?;
        // Breadth first: by call depth, then address (see `addr2line`'s `Function::parse`).
        function.addresses.sort_unstable_by(|a, b| {
            (a.call_depth, a.range.begin).cmp(&(b.call_depth, b.range.begin))
        });
        Ok(function)
    }

    /// Walks the children of an entry; the inlined-call depth bounds nothing but the entries
    /// themselves (the loop is iterative per level, recursion per inlined level only, which
    /// the DWARF's nesting bounds).
    fn parse_children(
        &mut self,
        lookup: &Lookup<'a>,
        unit: UnitRef<'_, R<'a>>,
        entries: &mut gimli::EntriesRaw<'_, R<'a>>,
        depth: isize,
        inlined_depth: usize,
    ) -> Result<()> {
        loop {
            let next_depth = entries.next_depth();
            if next_depth <= depth {
                return Ok(());
            }
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            match abbrev.tag() {
                gimli::DW_TAG_subprogram => {
                    entries.skip_attributes(abbrev.attributes())?;
                    while entries.next_depth() > next_depth {
                        if let Some(abbrev) = entries.read_abbreviation()? {
                            entries.skip_attributes(abbrev.attributes())?;
                        }
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    let mut ranges = RangeAttributes::default();
                    let mut inlined = Inlined {
                        name: None,
                        call_file: None,
                        call_line: 0,
                    };
                    for spec in abbrev.attributes() {
                        let attr = entries.read_attribute(*spec)?;
                        match attr.name() {
                            gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                                if let Ok(val) = unit.attr_string(attr.value()) {
                                    inlined.name = Some(val);
                                }
                            }
                            gimli::DW_AT_name => {
                                if inlined.name.is_none() {
                                    inlined.name = unit.attr_string(attr.value()).ok();
                                }
                            }
                            gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                                if inlined.name.is_none() {
                                    inlined.name = name_attr(lookup, attr.value(), unit, 16)?;
                                }
                            }
                            gimli::DW_AT_call_file => {
                                // In DWARF 5, file index 0 is a file; before, it means none.
                                if let AttributeValue::FileIndex(fi) = attr.value()
                                    && (fi > 0 || unit.header.version() >= 5)
                                {
                                    inlined.call_file = Some(fi);
                                }
                            }
                            gimli::DW_AT_call_line => {
                                inlined.call_line = attr.udata_value().unwrap_or(0) as u32;
                            }
                            _ => ranges.read(unit, &attr)?,
                        }
                    }
                    let function = self.inlined.len();
                    self.inlined.push(inlined);
                    let addresses = &mut self.addresses;
                    ranges.for_each_range(unit, |range| {
                        addresses.push(InlinedAddress {
                            range,
                            call_depth: inlined_depth,
                            function,
                        })
                    })?;
                    self.parse_children(lookup, unit, entries, next_depth, inlined_depth + 1)?;
                }
                _ => entries.skip_attributes(abbrev.attributes())?,
            }
        }
    }

    /// The inlined calls holding `probe`, outermost first.
    pub(crate) fn inlined_at(&self, probe: u64) -> Vec<&Inlined<'a>> {
        let mut out = Vec::new();
        let mut addresses = &self.addresses[..];
        loop {
            let depth = out.len();
            let search = addresses.binary_search_by(|r| {
                if r.call_depth != depth {
                    r.call_depth.cmp(&depth)
                } else if r.range.begin > probe {
                    Ordering::Greater
                } else if r.range.end <= probe {
                    Ordering::Less
                } else {
                    Ordering::Equal
                }
            });
            let Ok(index) = search else {
                return out;
            };
            out.push(&self.inlined[addresses[index].function]);
            addresses = &addresses[index + 1..];
        }
    }
}

/// The name an `DW_AT_abstract_origin`/`DW_AT_specification` leads to, in this unit or another.
fn name_attr<'a>(
    lookup: &Lookup<'a>,
    attr: AttributeValue<R<'a>>,
    unit: UnitRef<'_, R<'a>>,
    recursion_limit: usize,
) -> Result<Option<R<'a>>> {
    if recursion_limit == 0 {
        return Ok(None);
    }
    match attr {
        AttributeValue::UnitRef(offset) => name_entry(lookup, unit, offset, recursion_limit),
        AttributeValue::DebugInfoRef(dr) => {
            let (other, offset) = lookup.find_unit(dr)?;
            let other = UnitRef::new(lookup.dwarf(), &other);
            name_entry(lookup, other, offset, recursion_limit)
        }
        _ => Ok(None),
    }
}

fn name_entry<'a>(
    lookup: &Lookup<'a>,
    unit: UnitRef<'_, R<'a>>,
    offset: UnitOffset<usize>,
    recursion_limit: usize,
) -> Result<Option<R<'a>>> {
    lookup.progress(FAULT_AROUND);
    let mut entries = unit.entries_raw(Some(offset))?;
    let abbrev = entries
        .read_abbreviation()?
        .ok_or(gimli::Error::NoEntryAtGivenOffset(offset.0 as u64))?;
    let mut name = None;
    let mut next = None;
    for spec in abbrev.attributes() {
        let attr = entries.read_attribute(*spec)?;
        match attr.name() {
            gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                if let Ok(val) = unit.attr_string(attr.value()) {
                    return Ok(Some(val));
                }
            }
            gimli::DW_AT_name => {
                if let Ok(val) = unit.attr_string(attr.value()) {
                    name = Some(val);
                }
            }
            gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                next = Some(attr.value());
            }
            _ => {}
        }
    }
    if name.is_some() {
        return Ok(name);
    }
    match next {
        Some(next) => name_attr(lookup, next, unit, recursion_limit - 1),
        None => Ok(None),
    }
}
