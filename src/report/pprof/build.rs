//! The `profile.proto` message of a [`Profile`]: dictionaries (strings, mappings, functions,
//! locations) and one or more samples per site.
//!
//! A scrape of a process with 10,000 sites walks ~350,000 return addresses: per address the
//! work is one lookup in a map with a fast hash (addresses are the process's own, not an
//! attacker's keys), and a site's scratch buffers are reused from site to site.

use super::proto;
use crate::read::mappings::Mapping;
use crate::read::profile::{Frame, Profile, Site, SiteThread};
use crate::record::stack_table::OTHER_THREADS;
use std::collections::HashMap;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Interns strings: index 0 is always "".
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: FastMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The dictionaries being filled.
struct Dictionaries<'m> {
    strings: Strings,
    sorted_maps: Vec<&'m Mapping>,
    functions: Vec<proto::Function>,
    function_ids: FastMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    location_ids: FastMap<(u64, Vec<proto::Line>), u64>,
}

impl Dictionaries<'_> {
    /// The mapping id (1-based) holding `address`, 0 for none.
    fn mapping_of(&self, address: u64) -> u64 {
        let i = self.sorted_maps.partition_point(|m| m.start <= address);
        match i.checked_sub(1) {
            Some(i) if address < self.sorted_maps[i].end => i as u64 + 1,
            _ => 0,
        }
    }

    /// The lines of a location, its functions interned.
    fn lines<'f>(&mut self, frames: impl Iterator<Item = &'f Frame>) -> Vec<proto::Line> {
        frames
            .filter_map(|f| {
                let name = self.strings.get(f.function.as_deref()?);
                let file = self.strings.get(f.file.as_deref().unwrap_or(""));
                let next = self.functions.len() as u64 + 1;
                let id = *self.function_ids.entry((name, file)).or_insert(next);
                if id == next {
                    self.functions.push(proto::Function {
                        id,
                        name,
                        // Left empty on purpose: with `system_name == name`, `go tool
                        // pprof` "demangles" again and strips every `<…>` as if it were
                        // a C++ template, turning `<Vec<T> as Clone>::clone` into
                        // `::clone`. The demangled name is all heapsampler has.
                        system_name: 0,
                        filename: file,
                        start_line: 0,
                    });
                }
                Some(proto::Line {
                    function_id: id,
                    line: f.line.map_or(0, i64::from),
                })
            })
            .collect()
    }

    /// A new location (not interned: the caller knows it is new) at return address
    /// `address`. The location's address is the byte before it, inside the call, as Go's
    /// runtime/pprof writes them: a tool that symbolizes the profile itself
    /// (`go tool pprof -symbolize=local`) looks up the address as given, and a return
    /// address can be the first byte of the next function.
    fn push_location(&mut self, address: u64, line: Vec<proto::Line>) -> u64 {
        let address = address.saturating_sub(1);
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id: self.mapping_of(address),
            address,
            line,
        });
        id
    }

    /// The location of `address` with these frames, interned on both.
    fn location<'f>(&mut self, address: u64, frames: impl Iterator<Item = &'f Frame>) -> u64 {
        let lines = self.lines(frames);
        if let Some(&id) = self.location_ids.get(&(address, lines.clone())) {
            return id;
        }
        let id = self.push_location(address, lines.clone());
        self.location_ids.insert((address, lines), id);
        id
    }
}

/// One distinct address of a profile symbolized while building: its frames, whether they
/// are all the allocator's own, and its location once a sample uses it.
struct Resolved {
    address: u64,
    frames: std::sync::Arc<[Frame]>,
    allocator: bool,
    location: Option<u64>,
}

/// Every distinct address of the profile, symbolized once (through the process-wide cache),
/// indexed by address.
fn resolve_addresses(profile: &Profile) -> (Vec<Resolved>, FastMap<u64, usize>) {
    let mut index: FastMap<u64, usize> = FastMap::default();
    let mut all = Vec::new();
    for &a in profile.sites.iter().flat_map(|s| &s.addresses) {
        if a != 0 && !index.contains_key(&a) {
            index.insert(a, all.len());
            all.push(a);
        }
    }
    let resolved = crate::read::symbolize::resolve_all(&all)
        .into_iter()
        .zip(&all)
        .map(|(frames, &address)| Resolved {
            address,
            allocator: !frames.is_empty()
                && frames
                    .iter()
                    .all(crate::read::symbolize::is_allocator_frame),
            frames,
            location: None,
        })
        .collect();
    (resolved, index)
}

/// Builds the message: dictionaries first, then one or more samples per site. `resolve`:
/// the profile is unsymbolized and of this process; symbolize per distinct address.
pub(super) fn build(profile: &Profile, mappings: &[Mapping], resolve: bool) -> proto::Profile {
    let mut strings = Strings::new();
    let value_type = |strings: &mut Strings, t: &str, u: &str| proto::ValueType {
        r#type: strings.get(t),
        unit: strings.get(u),
    };
    let sample_type = vec![
        value_type(&mut strings, "alloc_objects", "count"),
        value_type(&mut strings, "alloc_space", "bytes"),
        value_type(&mut strings, "inuse_objects", "count"),
        value_type(&mut strings, "inuse_space", "bytes"),
    ];
    let period_type = value_type(&mut strings, "space", "bytes");
    let thread_key = strings.get("thread");
    let symbolized = resolve || profile.sites.iter().any(|s| !s.frames.is_empty());

    let mut sorted_maps: Vec<&Mapping> = mappings.iter().collect();
    sorted_maps.sort_by_key(|m| m.start);
    // The `has_*` flags are set below from what the locations of each mapping really hold.
    let mut mapping: Vec<proto::Mapping> = sorted_maps
        .iter()
        .enumerate()
        .map(|(i, m)| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: strings.get(&m.path),
            build_id: strings.get(m.build_id.as_deref().unwrap_or("")),
            has_functions: false,
            has_filenames: false,
            has_line_numbers: false,
            has_inline_frames: false,
        })
        .collect();
    let mut d = Dictionaries {
        strings,
        sorted_maps,
        functions: Vec::new(),
        function_ids: FastMap::default(),
        locations: Vec::new(),
        location_ids: FastMap::default(),
    };
    let (mut resolved, index) = if resolve {
        resolve_addresses(profile)
    } else {
        Default::default()
    };

    let mut samples = Vec::with_capacity(profile.sites.len());
    let mut stack: Vec<u64> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    let mut split = Split::default();
    for site in &profile.sites {
        stack.clear();
        if resolve {
            // The allocator's own leading addresses left out, as `Profile::symbolize` does
            // (all of them kept when nothing else is there).
            slots.clear();
            slots.extend(site.addresses.iter().filter_map(|a| index.get(a).copied()));
            let skip = slots.iter().take_while(|&&i| resolved[i].allocator).count();
            let skip = if skip == slots.len() { 0 } else { skip };
            for &i in &slots[skip..] {
                let r = &mut resolved[i];
                let id = match r.location {
                    Some(id) => id,
                    None => {
                        let lines = d.lines(r.frames.iter());
                        let id = d.push_location(r.address, lines);
                        r.location = Some(id);
                        id
                    }
                };
                stack.push(id);
            }
        } else {
            for (address, frames) in locations_of(site) {
                stack.push(d.location(address, frames.into_iter()));
            }
        }
        split.site(site, |thread, value| {
            if value.iter().all(|&v| v == 0) {
                return;
            }
            let label = match thread {
                Some(name) => vec![proto::Label {
                    key: thread_key,
                    str: d.strings.get(name),
                    num: 0,
                    num_unit: 0,
                }],
                None => Vec::new(),
            };
            samples.push(proto::Sample {
                location_id: stack.clone(),
                value: value.to_vec(),
                label,
            });
        });
    }

    // A flag claims only what is there: pprof symbolizes a mapping itself unless told it
    // has names, and shows lines only where told it has them.
    for loc in &d.locations {
        let Some(m) = (loc.mapping_id as usize)
            .checked_sub(1)
            .and_then(|i| mapping.get_mut(i))
        else {
            continue;
        };
        // Symbolized in process: an address left without a name has none to find (the vdso,
        // a stripped library), and pprof must not ask the server for it.
        m.has_functions |= symbolized || !loc.line.is_empty();
        m.has_filenames |= loc
            .line
            .iter()
            .any(|l| d.functions[l.function_id as usize - 1].filename != 0);
        m.has_line_numbers |= loc.line.iter().any(|l| l.line > 0);
        m.has_inline_frames |= loc.line.len() > 1;
    }
    let default_sample_type = sample_type[3].r#type;
    let comment = vec![d.strings.get("heapsampler: values are unbiased estimates")];
    proto::Profile {
        sample_type,
        sample: samples,
        mapping,
        location: d.locations,
        function: d.functions,
        time_nanos: (profile.timestamp_ms as i64).saturating_mul(1_000_000),
        duration_nanos: 0,
        period_type: Some(period_type),
        period: profile.sample_interval.min(i64::MAX as u64) as i64,
        comment,
        default_sample_type,
        string_table: d.strings.table,
    }
}

/// The site's stack as (address, inlined frames innermost first), innermost address first.
/// A symbolized site uses its frames (the allocator's own leading frames already dropped);
/// an unsymbolized one its raw addresses.
/// Address 0 (an unwinder's end marker) is not a location.
fn locations_of(site: &Site) -> Vec<(u64, Vec<&Frame>)> {
    if site.frames.is_empty() {
        return site
            .addresses
            .iter()
            .filter(|&&a| a != 0)
            .map(|&a| (a, Vec::new()))
            .collect();
    }
    let mut out: Vec<(u64, Vec<&Frame>)> = Vec::new();
    for f in site
        .frames
        .iter()
        .filter(|f| f.address != 0 || f.function.is_some())
    {
        match out.last_mut() {
            Some((a, frames)) if *a == f.address => frames.push(f),
            _ => out.push((f.address, vec![f])),
        }
    }
    out
}

/// A named thread's part of one column, before apportioning.
type PartOf<'a> = dyn Fn(&SiteThread) -> f64 + 'a;

/// Splits a site's four values between its named threads (labelled) and the rest
/// (unlabelled, `None`), each column apportioned to add up to the site's rounded total.
/// Threads carry bytes only; their objects are the site's objects in proportion to bytes.
/// Its buffers are reused from site to site.
#[derive(Default)]
struct Split {
    parts: Vec<f64>,
    columns: [Vec<i64>; 4],
    scaled: Vec<f64>,
    order: Vec<usize>,
}

impl Split {
    /// Calls `emit` once per named thread, then once for the rest.
    fn site(&mut self, site: &Site, mut emit: impl FnMut(Option<&str>, [i64; 4])) {
        let named = || site.threads.iter().filter(|t| t.thread != OTHER_THREADS);
        let share = |part: f64, whole: f64| {
            if whole > 0.0 {
                (part / whole).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let columns: [(f64, &PartOf); 4] = [
            (site.alloc_objects, &|t| {
                site.alloc_objects * share(t.alloc_bytes, site.alloc_bytes)
            }),
            (site.alloc_bytes, &|t| t.alloc_bytes.max(0.0)),
            (site.live_objects, &|t| {
                site.live_objects * share(t.live_bytes, site.live_bytes)
            }),
            (site.live_bytes, &|t| t.live_bytes.max(0.0)),
        ];
        for ((total, part), out) in columns.into_iter().zip(&mut self.columns) {
            out.clear();
            self.parts.clear();
            self.parts.extend(named().map(part));
            if total < 0.0 {
                // A delta profile's shrinking site (`/debug/pprof/heap?seconds=N`): one
                // negative value, unlabelled, as in Go's delta profiles.
                out.resize(self.parts.len(), 0);
                out.push(total.round() as i64);
                continue;
            }
            let named_sum: f64 = self.parts.iter().sum();
            self.parts.push((total - named_sum).max(0.0));
            apportion_into(
                &self.parts,
                total.round() as i64,
                out,
                &mut self.scaled,
                &mut self.order,
            );
        }
        let mut names = named().map(|t| Some(t.name.as_str())).chain([None]);
        for i in 0..self.columns[0].len() {
            let c = &self.columns;
            emit(names.next().flatten(), [c[0][i], c[1][i], c[2][i], c[3][i]]);
        }
    }
}

/// Splits the integer `total` in proportion to `parts` (largest remainders get the odd
/// units), so the results are ≥ 0 and add up to `total` exactly. With no weight at all the
/// whole goes to the last part.
#[cfg(test)]
pub(super) fn apportion(parts: &[f64], total: i64) -> Vec<i64> {
    let mut out = Vec::new();
    apportion_into(parts, total, &mut out, &mut Vec::new(), &mut Vec::new());
    out
}

/// [`apportion`] into `out`, with scratch buffers of the caller's.
fn apportion_into(
    parts: &[f64],
    total: i64,
    out: &mut Vec<i64>,
    scaled: &mut Vec<f64>,
    order: &mut Vec<usize>,
) {
    out.clear();
    out.resize(parts.len(), 0);
    if total <= 0 || parts.is_empty() {
        return;
    }
    let sum: f64 = parts.iter().sum();
    if sum <= 0.0 {
        *out.last_mut().expect("non-empty") = total;
        return;
    }
    scaled.clear();
    scaled.extend(parts.iter().map(|p| p / sum * total as f64));
    for (o, s) in out.iter_mut().zip(scaled.iter()) {
        *o = s.floor() as i64;
    }
    let mut left = total - out.iter().sum::<i64>();
    if left <= 0 {
        return;
    }
    order.clear();
    order.extend(0..parts.len());
    order.sort_by(|&a, &b| {
        (scaled[b] - scaled[b].floor()).total_cmp(&(scaled[a] - scaled[a].floor()))
    });
    for &i in order.iter().cycle() {
        if left <= 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
}
