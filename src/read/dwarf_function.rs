//! A function's name and inlined calls (`addr2line`'s `Function`, ported): its
//! `DW_TAG_subprogram` entry and the `DW_TAG_inlined_subroutine` entries under it, names
//! followed through `DW_AT_abstract_origin`/`DW_AT_specification`, into other units too.

use crate::read::dwarf_unit::{FAULT_AROUND, R, RangeAttributes, Result, Units};
use addr2line::gimli;
use gimli::{AttributeValue, UnitOffset, UnitRef};
use std::cmp::Ordering;

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

/// Nested inlined calls followed at most.
const MAX_INLINED_DEPTH: usize = 1024;

/// A `DW_TAG_subprogram` with its inlined calls.
pub(crate) struct Function<'a> {
    pub name: Option<R<'a>>,
    inlined: Vec<Inlined<'a>>,
    addresses: Vec<InlinedAddress>,
}

impl<'a> Function<'a> {
    pub(crate) fn parse(
        lookup: &dyn Units<'a>,
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
        lookup.touched(FAULT_AROUND);
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

    /// Walks the children of an entry, one call deeper per nested inlined call (bounded:
    /// a corrupt file cannot exhaust the stack; no compiler nests inlining that deep).
    fn parse_children(
        &mut self,
        lookup: &dyn Units<'a>,
        unit: UnitRef<'_, R<'a>>,
        entries: &mut gimli::EntriesRaw<'_, R<'a>>,
        depth: isize,
        inlined_depth: usize,
    ) -> Result<()> {
        if inlined_depth > MAX_INLINED_DEPTH {
            return Err(gimli::Error::NoEntryAtGivenOffset(
                entries.next_offset().0 as u64,
            ));
        }
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
    lookup: &dyn Units<'a>,
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
    lookup: &dyn Units<'a>,
    unit: UnitRef<'_, R<'a>>,
    offset: UnitOffset<usize>,
    recursion_limit: usize,
) -> Result<Option<R<'a>>> {
    lookup.touched(FAULT_AROUND);
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
