//! Function, file, line and inlined calls of addresses from DWARF, one unit at a time.
//!
//! `addr2line::Context` reads the root entry and line-program header of every unit up front
//! and keeps them, then keeps the line and function tables of every unit it touched: in a
//! 49 MB binary that is 14 MiB of tables at the peak of a report. Here one pass over the
//! unit headers keeps only each unit's address ranges (a few bytes each); then the batch's
//! addresses are grouped by unit, and each unit is parsed, its line program streamed (only
//! the current sequence is held) and its tables dropped before the next unit. The rules are
//! `addr2line`'s, kept step for step (which unit, function and row an address gets, how
//! names follow `DW_AT_abstract_origin`/`DW_AT_specification`, how file names are joined), and
//! checked against it (the `dwarf_oracle` tests).

use crate::read::dwarf_function::Function;
use crate::read::dwarf_unit::{self, FAULT_AROUND, R, Release, Result, UnitTables, Units};
use addr2line::gimli::{self, Section};
use gimli::{DebugAbbrevOffset, DebugInfoOffset, Unit};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// Units and abbreviation tables kept parsed at once (a name may refer into another unit).
const CACHED_UNITS: usize = 4;
/// Bytes of debug info read here and there between two releases of all the file's pages.
const RELEASE_EVERY: usize = 6 << 20;
/// Bytes of `.debug_info` passed by the first pass between two releases of them.
const PASSED_EVERY: usize = 1 << 20;

/// One frame found in the DWARF, innermost first: the function's name demangled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DwarfFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

struct UnitInfo {
    offset: DebugInfoOffset<usize>,
    lang: Option<gimli::DwLang>,
}

struct UnitRange {
    begin: u64,
    end: u64,
    unit_id: usize,
    min_begin: u64,
}

/// The DWARF of one object file: the sections and each unit's address ranges.
pub(crate) struct Lookup<'a> {
    dwarf: gimli::Dwarf<R<'a>>,
    units: Vec<UnitInfo>,
    ranges: Box<[UnitRange]>,
    abbrevs: RefCell<Recent<DebugAbbrevOffset<usize>, Arc<gimli::Abbreviations>>>,
    parsed: RefCell<Recent<usize, Rc<Unit<R<'a>>>>>,
    read: Cell<usize>,
    release: Release<'a>,
}

/// The last [`CACHED_UNITS`] values used, least recently used first.
struct Recent<K, V>(Vec<(K, V)>);

impl<K: PartialEq, V: Clone> Recent<K, V> {
    /// The value of `key`, now the most recently used.
    fn get(&mut self, key: &K) -> Option<V> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        let hit = self.0.remove(i);
        let value = hit.1.clone();
        self.0.push(hit);
        Some(value)
    }

    /// Adds `key`, dropping the least recently used past the bound.
    fn put(&mut self, key: K, value: V) {
        if self.0.len() >= CACHED_UNITS {
            self.0.remove(0);
        }
        self.0.push((key, value));
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl<'a> Lookup<'a> {
    /// Reads every unit's address ranges. `release(Some(bytes))` drops the file's pages
    /// holding `bytes` from the resident set (read in order, not needed again);
    /// `release(None)` all of them (every few MiB of scattered reads).
    pub(crate) fn new(dwarf: gimli::Dwarf<R<'a>>, release: Release<'a>) -> Result<Self> {
        let mut lookup = Lookup {
            dwarf,
            units: Vec::new(),
            ranges: Box::new([]),
            abbrevs: RefCell::new(Recent(Vec::new())),
            parsed: RefCell::new(Recent(Vec::new())),
            read: Cell::new(0),
            release,
        };
        lookup.index()?;
        lookup.abbrevs.borrow_mut().clear();
        (lookup.release)(None);
        Ok(lookup)
    }

    fn abbreviations(&self, offset: DebugAbbrevOffset<usize>) -> Result<Arc<gimli::Abbreviations>> {
        let mut cache = self.abbrevs.borrow_mut();
        if let Some(table) = cache.get(&offset) {
            return Ok(table);
        }
        // `.debug_abbrev` is small (180 KiB in a 49 MB binary): not counted.
        let table = Arc::new(self.dwarf.debug_abbrev.abbreviations(offset)?);
        cache.put(offset, table.clone());
        Ok(table)
    }

    /// Unit `id` with its line program header, for line lookups.
    fn full_unit(&self, offset: DebugInfoOffset<usize>) -> Result<Unit<R<'a>>> {
        let header = self.dwarf.unit_header(offset)?;
        let abbrevs = self.abbreviations(header.debug_abbrev_offset())?;
        self.touched(2 * FAULT_AROUND);
        Unit::new_with_abbreviations(&self.dwarf, header, abbrevs)
    }

    /// Unit `id` parsed for reading its entries (kept among the last few used).
    pub(crate) fn unit(&self, id: usize) -> Result<Rc<Unit<R<'a>>>> {
        if let Some(unit) = self.parsed.borrow_mut().get(&id) {
            return Ok(unit);
        }
        let header = self.dwarf.unit_header(self.units[id].offset)?;
        let abbrevs = self.abbreviations(header.debug_abbrev_offset())?;
        self.touched(FAULT_AROUND);
        let unit = Rc::new(dwarf_unit::light_unit(&self.dwarf, header, abbrevs)?);
        self.parsed.borrow_mut().put(id, unit.clone());
        Ok(unit)
    }

    /// The pass over every unit's header and root entry (`addr2line`'s `ResUnits::parse`).
    fn index(&mut self) -> Result<()> {
        let mut aranges = Vec::new();
        let mut headers = self.dwarf.debug_aranges.headers();
        while let Some(header) = headers.next()? {
            aranges.push((header.debug_info_offset(), header.offset()));
        }
        aranges.sort_unstable_by_key(|i| i.0);

        let mut unit_ranges: Vec<UnitRange> = Vec::new();
        let mut units = self.dwarf.units();
        let info = self.dwarf.debug_info.reader().slice();
        let mut passed = 0;
        while let Some(header) = units.next()? {
            let unit_id = self.units.len();
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let mut need_unit_range = match header.type_() {
                gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } => continue,
                // Only referred to by other units: no address ranges.
                gimli::UnitType::Partial => false,
                _ => true,
            };
            if offset.0 - passed >= PASSED_EVERY {
                self.passed(&info[passed..offset.0]);
                passed = offset.0;
            }
            let Ok(abbrevs) = self.abbreviations(header.debug_abbrev_offset()) else {
                continue;
            };
            // Its line program is not needed yet: only the units an address falls in are
            // parsed whole, later.
            let Ok(unit) = dwarf_unit::light_unit(&self.dwarf, header, abbrevs) else {
                continue;
            };
            let unit = gimli::UnitRef::new(&self.dwarf, &unit);
            let mut lang = None;
            if need_unit_range {
                let mut entries = unit.entries_raw(None)?;
                let Some(abbrev) = entries.read_abbreviation()? else {
                    continue;
                };
                let mut ranges = dwarf_unit::RangeAttributes::default();
                for spec in abbrev.attributes() {
                    let attr = entries.read_attribute(*spec)?;
                    if attr.name() == gimli::DW_AT_language {
                        if let gimli::AttributeValue::Language(val) = attr.value() {
                            lang = Some(val);
                        }
                    } else {
                        ranges.read(unit, &attr)?;
                    }
                }
                // DW_AT_ranges, else .debug_aranges, else DW_AT_low_pc/high_pc, as addr2line.
                let i = match ranges.ranges_offset {
                    Some(_) => None,
                    None => aranges.binary_search_by_key(&offset, |x| x.0).ok(),
                };
                if let Some(mut i) = i {
                    while i > 0 && aranges[i - 1].0 == offset {
                        i -= 1;
                    }
                    for (_, aranges_offset) in aranges[i..].iter().take_while(|x| x.0 == offset) {
                        let aranges_header = self.dwarf.debug_aranges.header(*aranges_offset)?;
                        let mut entries = aranges_header.entries();
                        while let Some(arange) = entries.next().transpose() {
                            let Ok(arange) = arange else {
                                continue;
                            };
                            if arange.length() != 0 {
                                let r = arange.range();
                                unit_ranges.push(UnitRange {
                                    begin: r.begin,
                                    end: r.end,
                                    unit_id,
                                    min_begin: 0,
                                });
                                need_unit_range = false;
                            }
                        }
                    }
                }
                if need_unit_range {
                    need_unit_range = !ranges.for_each_range(unit, |r| {
                        unit_ranges.push(UnitRange {
                            begin: r.begin,
                            end: r.end,
                            unit_id,
                            min_begin: 0,
                        });
                    })?;
                }
            }
            if need_unit_range {
                // No ranges declared: those of the line program's sequences.
                let full = self.full_unit(offset);
                let sequences = full
                    .as_ref()
                    .ok()
                    .map(|u| dwarf_unit::sequence_ranges(gimli::UnitRef::new(&self.dwarf, u)));
                if let Some(Ok(Some(sequences))) = sequences {
                    for r in sequences {
                        unit_ranges.push(UnitRange {
                            begin: r.begin,
                            end: r.end,
                            unit_id,
                            min_begin: 0,
                        });
                    }
                }
            }
            self.units.push(UnitInfo { offset, lang });
        }
        unit_ranges.sort_unstable_by_key(|i| (i.end, i.unit_id));
        let mut min = !0;
        for i in unit_ranges.iter_mut().rev() {
            min = min.min(i.begin);
            i.min_begin = min;
        }
        self.ranges = unit_ranges.into_boxed_slice();
        Ok(())
    }

    /// The units whose ranges hold `probe`, in the order `addr2line` tries them.
    fn candidates(&self, probe: u64) -> impl Iterator<Item = usize> + '_ {
        let high = probe.saturating_add(1);
        let pos = match self.ranges.binary_search_by_key(&probe, |i| i.end) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.ranges[pos..]
            .iter()
            .take_while(move |i| high > i.min_begin)
            .filter(move |i| probe < i.end && high > i.begin)
            .map(|i| i.unit_id)
    }

    /// The frames of each probe (innermost first), or `None` where the DWARF could not be
    /// read for it; an empty list where it says nothing about the address.
    pub(crate) fn find_frames(&self, probes: &[u64]) -> Vec<Option<Vec<DwarfFrame>>> {
        let mut out: Vec<Option<Vec<DwarfFrame>>> = vec![Some(Vec::new()); probes.len()];
        // Probe i waits at its `skip`-th candidate unit.
        let mut queue: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, &p) in probes.iter().enumerate() {
            if let Some(u) = self.candidates(p).next() {
                queue.entry(u).or_default().push((i, 0));
            }
        }
        while let Some((unit_id, mut waiting)) = queue.pop_first() {
            waiting.sort_unstable_by_key(|&(i, _)| probes[i]);
            let unit_probes: Vec<u64> = waiting.iter().map(|&(i, _)| probes[i]).collect();
            let found = self.resolve_unit(unit_id, &unit_probes);
            for (&(i, skip), found) in waiting.iter().zip(found) {
                match found {
                    Found::Frames(frames) => out[i] = Some(frames),
                    Found::Error => out[i] = None,
                    Found::Nothing => {
                        if let Some(next) = self.candidates(probes[i]).nth(skip + 1) {
                            queue.entry(next).or_default().push((i, skip + 1));
                        }
                    }
                }
            }
            // The unit's tables are dropped here, before the next unit is parsed.
            self.parsed.borrow_mut().clear();
            self.abbrevs.borrow_mut().clear();
        }
        out
    }

    /// `addr2line`'s `find_function_or_location` and frame iteration, for the sorted probes
    /// of one unit.
    fn resolve_unit(&self, unit_id: usize, probes: &[u64]) -> Vec<Found> {
        let all_err = || probes.iter().map(|_| Found::Error).collect();
        let Ok(unit) = self.full_unit(self.units[unit_id].offset) else {
            return all_err();
        };
        let unit_ref = gimli::UnitRef::new(&self.dwarf, &unit);
        let Ok(tables) = UnitTables::parse(self, unit_ref, probes) else {
            return all_err();
        };
        let lang = self.units[unit_id].lang;
        let mut functions: HashMap<usize, Result<Function<'a>>> = HashMap::new();
        let mut out = Vec::with_capacity(probes.len());
        for (k, &probe) in probes.iter().enumerate() {
            let function = match tables.function_at(probe) {
                None => None,
                Some(f) => {
                    let parsed = functions
                        .entry(f)
                        .or_insert_with(|| Function::parse(self, unit_ref, tables.offset_of(f)));
                    match parsed {
                        Ok(function) => Some(&*function),
                        Err(_) => {
                            out.push(Found::Error);
                            continue;
                        }
                    }
                }
            };
            let location = tables.location(k);
            out.push(match (function, location) {
                (None, None) => Found::Nothing,
                (None, Some((file, line))) => Found::Frames(vec![DwarfFrame {
                    function: None,
                    file: file.map(str::to_owned),
                    line,
                }]),
                (Some(function), location) => {
                    Found::Frames(frames_of(function, probe, location, &tables, lang))
                }
            });
        }
        out
    }
}

impl<'a> Units<'a> for Lookup<'a> {
    fn touched(&self, bytes: usize) {
        let read = self.read.get() + bytes;
        if read >= RELEASE_EVERY {
            self.read.set(0);
            (self.release)(None);
        } else {
            self.read.set(read);
        }
    }

    fn passed(&self, bytes: &[u8]) {
        (self.release)(Some(bytes));
    }

    fn dwarf(&self) -> &gimli::Dwarf<R<'a>> {
        &self.dwarf
    }

    /// The unit holding the entry at `offset` of `.debug_info`, and the entry's offset in it.
    fn find_unit(
        &self,
        offset: DebugInfoOffset<usize>,
    ) -> Result<(Rc<Unit<R<'a>>>, gimli::UnitOffset<usize>)> {
        let id = match self.units.binary_search_by_key(&offset.0, |u| u.offset.0) {
            // There is never an entry at the unit offset or before the first unit.
            Ok(_) | Err(0) => return Err(gimli::Error::NoEntryAtGivenOffset(offset.0 as u64)),
            Err(i) => i - 1,
        };
        let unit = self.unit(id)?;
        let unit_offset = offset
            .to_unit_offset(&unit.header)
            .ok_or(gimli::Error::NoEntryAtGivenOffset(offset.0 as u64))?;
        Ok((unit, unit_offset))
    }
}

enum Found {
    Frames(Vec<DwarfFrame>),
    Nothing,
    Error,
}

/// `addr2line`'s `FrameIter`: the innermost inlined call first, at the row's location; each
/// outer frame at the call site of the one inside it.
fn frames_of(
    function: &Function<'_>,
    probe: u64,
    location: Option<(Option<&str>, Option<u32>)>,
    tables: &UnitTables,
    lang: Option<gimli::DwLang>,
) -> Vec<DwarfFrame> {
    let mut out = Vec::new();
    let mut next = location.map(|(f, l)| (f.map(str::to_owned), l));
    for inlined in function.inlined_at(probe).into_iter().rev() {
        let (file, line) = next.take().unwrap_or((None, None));
        out.push(DwarfFrame {
            function: inlined.name.map(|n| demangle(n, lang)),
            file,
            line,
        });
        let call_file = inlined
            .call_file
            .and_then(|f| tables.file(f))
            .map(str::to_owned);
        let call_line = (inlined.call_line != 0).then_some(inlined.call_line);
        next = Some((call_file, call_line));
    }
    let (file, line) = next.unwrap_or((None, None));
    out.push(DwarfFrame {
        function: function.name.map(|n| demangle(n, lang)),
        file,
        line,
    });
    out
}

fn demangle(name: R<'_>, lang: Option<gimli::DwLang>) -> String {
    let raw: Cow<'_, str> = String::from_utf8_lossy(name.slice());
    addr2line::demangle_auto(raw, lang).into_owned()
}
