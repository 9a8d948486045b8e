//! pprof output: a [`Profile`] as a gzipped `profile.proto`, in the shape of Go's heap
//! profiles, so `go tool pprof`, Pyroscope, Parca or speedscope read it as they read Go's.
//!
//! - Sample types, in Go's order: `alloc_objects`/count, `alloc_space`/bytes,
//!   `inuse_objects`/count, `inuse_space`/bytes (the default). `period_type` is
//!   `space`/`bytes` and `period` the sample interval T. The values are the profile's
//!   Horvitz–Thompson estimates, already unbiased, rounded to whole bytes and objects: no
//!   reader must scale them again.
//! - Each site becomes one sample per allocating thread the profile names, labelled
//!   `thread` = the thread's name, plus one unlabelled sample for what is not attributed to a
//!   named thread (the site's "other threads" share and rounding). Within a site the parts
//!   are apportioned so that they add up to exactly the site's rounded totals.
//! - Locations, functions and mappings are shared between samples. A location is one return
//!   address with its inlined frames (innermost first, as pprof wants); an unsymbolized
//!   profile gives address-only locations that pprof can symbolize offline from the mappings.
//!
//! Rendering allocates (the message, the compressed bytes): a caller that must not see these
//! allocations in the next profile renders under the profiler's own accounting, as the
//! reporter does.

use crate::read::mappings::Mapping;
use crate::read::profile::{Frame, Profile, Site};
use crate::record::stack_table::OTHER_THREADS;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;

pub(crate) mod proto;
#[cfg(test)]
mod tests;

/// Renders `profile` as a gzipped pprof protobuf (what `go tool pprof` opens).
///
/// `mappings` are the profiled process's executable mappings (for a live process,
/// [`mappings::current()`](crate::read::mappings::current); for a saved report, the
/// report's own): they let pprof symbolize addresses offline. Symbolize the profile first
/// ([`Profile::symbolize`]) for function names and lines in the output.
///
/// ```
/// let mut profile = heapsampler::snapshot();
/// profile.symbolize();
/// let maps = heapsampler::report::mappings::current();
/// let bytes = heapsampler::report::pprof::render(&profile, &maps);
/// assert_eq!(&bytes[..2], &[0x1f, 0x8b]); // gzip magic
/// ```
pub fn render(profile: &Profile, mappings: &[Mapping]) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = render_to(profile, mappings, &mut out);
    out
}

/// Renders `profile` as a gzipped pprof protobuf into `writer` (see [`render`]).
///
/// ```
/// let profile = heapsampler::snapshot();
/// let mut file = Vec::new();
/// heapsampler::report::pprof::render_to(&profile, &[], &mut file).unwrap();
/// assert!(!file.is_empty());
/// ```
pub fn render_to<W: Write>(
    profile: &Profile,
    mappings: &[Mapping],
    writer: W,
) -> std::io::Result<()> {
    render_with_default(profile, mappings, false, writer)
}

/// [`render_to`] with `alloc_space` as the default sample type when `allocs` (Go's
/// `/debug/pprof/allocs`), `inuse_space` otherwise.
pub(crate) fn render_with_default<W: Write>(
    profile: &Profile,
    mappings: &[Mapping],
    allocs: bool,
    writer: W,
) -> std::io::Result<()> {
    encode_gzipped(profile, mappings, false, allocs, writer)
}

/// A pprof profile read back: what a reader of the file sees, strings resolved.
///
/// ```
/// let bytes = heapsampler::report::pprof::render(&heapsampler::snapshot(), &[]);
/// let decoded = heapsampler::report::pprof::decode(&bytes).unwrap();
/// assert_eq!(decoded.default_sample_type, "inuse_space");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// `(type, unit)` of each value column, e.g. `("inuse_space", "bytes")`.
    pub sample_types: Vec<(String, String)>,
    /// The type of the column readers show by default.
    pub default_sample_type: String,
    /// The sampling period (the sample interval T, bytes).
    pub period: i64,
    /// Every sample.
    pub samples: Vec<DecodedSample>,
}

/// One sample of a [`Decoded`] profile.
///
/// ```
/// let s = heapsampler::report::pprof::DecodedSample::default();
/// assert!(s.functions.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedSample {
    /// Function names of the stack, innermost first (inlined frames included).
    pub functions: Vec<String>,
    /// One value per sample type.
    pub values: Vec<i64>,
    /// `(key, value)` string labels, e.g. `("thread", "main")`.
    pub labels: Vec<(String, String)>,
}

/// Reads a gzipped pprof profile (as [`render`] writes, or any `profile.proto`); the error
/// names what is wrong (gzip, protobuf, an index out of range).
///
/// ```
/// assert!(heapsampler::report::pprof::decode(b"not gzip").is_err());
/// ```
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    let p = proto::Profile::decode(raw.as_slice()).map_err(|e| format!("not a profile: {e}"))?;
    let string = |i: i64| -> Result<String, String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .cloned()
            .ok_or_else(|| format!("string index {i} out of range"))
    };
    let functions: HashMap<u64, String> = p
        .function
        .iter()
        .map(|f| Ok((f.id, string(f.name)?)))
        .collect::<Result<_, String>>()?;
    let locations: HashMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let mut samples = Vec::with_capacity(p.sample.len());
    for s in &p.sample {
        let mut names = Vec::new();
        for id in &s.location_id {
            let l = locations
                .get(id)
                .ok_or_else(|| format!("location {id} missing"))?;
            for line in &l.line {
                let name = functions
                    .get(&line.function_id)
                    .ok_or_else(|| format!("function {} missing", line.function_id))?;
                names.push(name.clone());
            }
        }
        let labels = s
            .label
            .iter()
            .map(|l| Ok((string(l.key)?, string(l.str)?)))
            .collect::<Result<_, String>>()?;
        samples.push(DecodedSample {
            functions: names,
            values: s.value.clone(),
            labels,
        });
    }
    Ok(Decoded {
        sample_types: p
            .sample_type
            .iter()
            .map(|t| Ok((string(t.r#type)?, string(t.unit)?)))
            .collect::<Result<_, String>>()?,
        default_sample_type: string(p.default_sample_type)?,
        period: p.period,
        samples,
    })
}

/// Interns strings: index 0 is always "".
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
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

/// The profile built (`resolve`: symbolized here per distinct address), `alloc_space` its
/// default sample type when `allocs`, encoded and gzipped into `writer`.
fn encode_gzipped<W: Write>(
    profile: &Profile,
    mappings: &[Mapping],
    resolve: bool,
    allocs: bool,
    writer: W,
) -> std::io::Result<()> {
    let mut message = build(profile, mappings, resolve);
    if allocs {
        message.default_sample_type = message.sample_type[1].r#type;
    }
    let message = message.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
    gz.write_all(&message)?;
    gz.finish()?.flush()
}

/// [`render_with_default`] of an unsymbolized profile of this process, symbolized here per
/// distinct address through the process-wide cache, without copying every site's frames
/// (what the HTTP endpoint serves: ~10x less work than `Profile::symbolize` at 10,000 sites).
#[cfg(feature = "http")]
pub(crate) fn render_resolving<W: Write>(
    profile: &Profile,
    mappings: &[Mapping],
    allocs: bool,
    writer: W,
) -> std::io::Result<()> {
    encode_gzipped(profile, mappings, true, allocs, writer)
}

/// The site's addresses with their resolved frames, the allocator's own leading addresses
/// left out (as `Profile::symbolize` does); an address already given a location is listed
/// without frames (the caller reuses its location).
fn resolved_locations<'a>(
    site: &Site,
    resolved: &'a HashMap<u64, std::sync::Arc<[Frame]>>,
    known: &HashMap<u64, u64>,
) -> Vec<(u64, Vec<&'a Frame>)> {
    let frames_of = |a: &u64| resolved.get(a).map_or(&[][..], |f| &f[..]);
    let addresses: Vec<u64> = site.addresses.iter().copied().filter(|&a| a != 0).collect();
    let skip = addresses
        .iter()
        .take_while(|a| {
            let f = frames_of(a);
            !f.is_empty() && f.iter().all(crate::read::symbolize::is_allocator_frame)
        })
        .count();
    let skip = if skip == addresses.len() { 0 } else { skip };
    addresses[skip..]
        .iter()
        .map(|a| {
            if known.contains_key(a) {
                (*a, Vec::new())
            } else {
                (*a, frames_of(a).iter().collect())
            }
        })
        .collect()
}

/// Builds the message: dictionaries first, then one or more samples per site. `resolve`:
/// the profile is unsymbolized and of this process; symbolize per distinct address.
fn build(profile: &Profile, mappings: &[Mapping], resolve: bool) -> proto::Profile {
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
    let resolved: Option<HashMap<u64, std::sync::Arc<[Frame]>>> = resolve.then(|| {
        let mut all: Vec<u64> = profile
            .sites
            .iter()
            .flat_map(|s| s.addresses.iter().copied())
            .filter(|&a| a != 0)
            .collect();
        all.sort_unstable();
        all.dedup();
        let frames = crate::read::symbolize::resolve_all(&all);
        all.into_iter().zip(frames).collect()
    });
    // Resolving: address → its location, so each address is interned once.
    let mut address_ids: HashMap<u64, u64> = HashMap::new();

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
    let mapping_of = |address: u64| -> u64 {
        let i = sorted_maps.partition_point(|m| m.start <= address);
        match i.checked_sub(1) {
            Some(i) if address < sorted_maps[i].end => i as u64 + 1,
            _ => 0,
        }
    };

    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(i64, i64), u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: HashMap<(u64, Vec<proto::Line>), u64> = HashMap::new();
    let mut samples = Vec::new();

    for site in &profile.sites {
        let mut stack = Vec::new();
        let site_locations = match &resolved {
            Some(r) => resolved_locations(site, r, &address_ids),
            None => locations_of(site),
        };
        for (address, frames) in site_locations {
            if resolve && let Some(&id) = address_ids.get(&address) {
                stack.push(id);
                continue;
            }
            let lines: Vec<proto::Line> = frames
                .iter()
                .filter_map(|f| {
                    let name = strings.get(f.function.as_deref()?);
                    let file = strings.get(f.file.as_deref().unwrap_or(""));
                    let next = functions.len() as u64 + 1;
                    let id = *function_ids.entry((name, file)).or_insert(next);
                    if id == next {
                        functions.push(proto::Function {
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
                .collect();
            let next = locations.len() as u64 + 1;
            let id = *location_ids.entry((address, lines.clone())).or_insert(next);
            if id == next {
                locations.push(proto::Location {
                    id,
                    mapping_id: mapping_of(address),
                    address,
                    line: lines,
                });
            }
            if resolve {
                address_ids.insert(address, id);
            }
            stack.push(id);
        }
        for (thread, value) in split_by_thread(site) {
            if value.iter().all(|&v| v == 0) {
                continue;
            }
            let label = match thread {
                Some(name) => vec![proto::Label {
                    key: thread_key,
                    str: strings.get(name),
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
        }
    }

    // A flag claims only what is there: pprof symbolizes a mapping itself unless told it
    // has names, and shows lines only where told it has them.
    for loc in &locations {
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
            .any(|l| functions[l.function_id as usize - 1].filename != 0);
        m.has_line_numbers |= loc.line.iter().any(|l| l.line > 0);
        m.has_inline_frames |= loc.line.len() > 1;
    }
    let default_sample_type = sample_type[3].r#type;
    proto::Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        time_nanos: (profile.timestamp_ms as i64).saturating_mul(1_000_000),
        duration_nanos: 0,
        period_type: Some(period_type),
        period: profile.sample_interval.min(i64::MAX as u64) as i64,
        comment: vec![strings.get("heapsampler: values are unbiased estimates")],
        default_sample_type,
        string_table: strings.table,
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

/// The site's four values split between its named threads (labelled) and the rest
/// (unlabelled, `None`), each column apportioned to add up to the site's rounded total.
/// Threads carry bytes only; their objects are the site's objects in proportion to bytes.
fn split_by_thread(site: &Site) -> Vec<(Option<&str>, [i64; 4])> {
    let named: Vec<_> = site
        .threads
        .iter()
        .filter(|t| t.thread != OTHER_THREADS)
        .collect();
    let share = |part: f64, whole: f64| {
        if whole > 0.0 {
            (part / whole).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let column = |total: f64, parts: Vec<f64>| {
        if total < 0.0 {
            // A delta profile's shrinking site (`/debug/pprof/heap?seconds=N`): one negative
            // value, unlabelled, as in Go's delta profiles.
            let mut all = vec![0; parts.len()];
            all.push(total.round() as i64);
            return all;
        }
        let named_sum: f64 = parts.iter().sum();
        let mut all = parts;
        all.push((total - named_sum).max(0.0));
        apportion(&all, total.round() as i64)
    };
    let alloc_objects = column(
        site.alloc_objects,
        named
            .iter()
            .map(|t| site.alloc_objects * share(t.alloc_bytes, site.alloc_bytes))
            .collect(),
    );
    let alloc_space = column(
        site.alloc_bytes,
        named.iter().map(|t| t.alloc_bytes.max(0.0)).collect(),
    );
    let inuse_objects = column(
        site.live_objects,
        named
            .iter()
            .map(|t| site.live_objects * share(t.live_bytes, site.live_bytes))
            .collect(),
    );
    let inuse_space = column(
        site.live_bytes,
        named.iter().map(|t| t.live_bytes.max(0.0)).collect(),
    );
    (0..=named.len())
        .map(|i| {
            let thread = named.get(i).map(|t| t.name.as_str());
            (
                thread,
                [
                    alloc_objects[i],
                    alloc_space[i],
                    inuse_objects[i],
                    inuse_space[i],
                ],
            )
        })
        .collect()
}

/// Splits the integer `total` in proportion to `parts` (largest remainders get the odd
/// units), so the results are ≥ 0 and add up to `total` exactly. With no weight at all the
/// whole goes to the last part.
fn apportion(parts: &[f64], total: i64) -> Vec<i64> {
    let sum: f64 = parts.iter().sum();
    let mut out = vec![0i64; parts.len()];
    if total <= 0 || parts.is_empty() {
        return out;
    }
    if sum <= 0.0 {
        *out.last_mut().expect("non-empty") = total;
        return out;
    }
    let scaled: Vec<f64> = parts.iter().map(|p| p / sum * total as f64).collect();
    for (o, s) in out.iter_mut().zip(&scaled) {
        *o = s.floor() as i64;
    }
    let mut left = total - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
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
    out
}
