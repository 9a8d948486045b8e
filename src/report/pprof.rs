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

/// The `profile.proto` messages, declared by hand (no build script, no `protoc`): only the
/// fields heapsampler writes. Field numbers are those of github.com/google/pprof.
pub(crate) mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

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
    let message = build(profile, mappings).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
    gz.write_all(&message)?;
    gz.finish()?.flush()
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

/// Builds the message: dictionaries first, then one or more samples per site.
fn build(profile: &Profile, mappings: &[Mapping]) -> proto::Profile {
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
    let symbolized = profile.sites.iter().any(|s| !s.frames.is_empty());

    let mut sorted_maps: Vec<&Mapping> = mappings.iter().collect();
    sorted_maps.sort_by_key(|m| m.start);
    let mapping: Vec<proto::Mapping> = sorted_maps
        .iter()
        .enumerate()
        .map(|(i, m)| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: strings.get(&m.path),
            build_id: strings.get(m.build_id.as_deref().unwrap_or("")),
            has_functions: symbolized,
            has_filenames: symbolized,
            has_line_numbers: symbolized,
            has_inline_frames: symbolized,
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
        for (address, frames) in locations_of(site) {
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
        let named_sum: f64 = parts.iter().sum();
        let mut all = parts;
        all.push((total - named_sum).max(0.0));
        apportion(&all, total.max(0.0).round() as i64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::profile::SiteThread;
    use std::io::Read;

    fn frame(address: u64, function: &str, line: u32) -> Frame {
        Frame {
            address,
            function: Some(function.into()),
            file: Some("src/app.rs".into()),
            line: Some(line),
        }
    }

    fn thread(thread: u32, name: &str, alloc: f64, live: f64) -> SiteThread {
        SiteThread {
            thread,
            name: name.into(),
            alloc_bytes: alloc,
            live_bytes: live,
        }
    }

    fn sample_profile() -> Profile {
        let a = Site {
            stack_id: 1,
            addresses: vec![0x1010, 0x2020],
            // 0x1010 holds an inlined frame: two lines at one location.
            frames: vec![
                frame(0x1010, "inner", 5),
                frame(0x1010, "outer", 9),
                frame(0x2020, "main", 3),
            ],
            live_bytes: 3000.4,
            live_objects: 30.2,
            alloc_bytes: 10_000.6,
            alloc_objects: 100.5,
            samples: 4,
            live_samples: 2,
            threads: vec![
                thread(1, "main", 6000.0, 1000.0),
                thread(2, "worker", 3000.6, 2000.4),
                thread(OTHER_THREADS, "(other threads)", 1000.0, 0.0),
            ],
        };
        let b = Site {
            stack_id: 2,
            addresses: vec![0x1010, 0x3030],
            frames: vec![
                frame(0x1010, "inner", 5),
                frame(0x1010, "outer", 9),
                frame(0x3030, "other", 1),
            ],
            live_bytes: 512.0,
            live_objects: 1.0,
            alloc_bytes: 512.0,
            alloc_objects: 1.0,
            samples: 1,
            live_samples: 1,
            threads: Vec::new(),
        };
        Profile {
            pid: 1,
            timestamp_ms: 1_700_000_000_000,
            sample_interval: 524_288,
            sites: vec![a, b],
            ..Default::default()
        }
    }

    fn decode(bytes: &[u8]) -> proto::Profile {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .expect("gzip");
        proto::Profile::decode(raw.as_slice()).expect("protobuf")
    }

    #[test]
    fn round_trips_with_go_heap_shape() {
        let profile = sample_profile();
        let maps = vec![Mapping {
            path: "/usr/bin/app".into(),
            start: 0x1000,
            end: 0x3000,
            offset: 0,
            build_id: Some("abcd".into()),
        }];
        let p = decode(&render(&profile, &maps));
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        let period_type = p.period_type.expect("period type");
        assert_eq!(
            (s(period_type.r#type), s(period_type.unit)),
            ("space", "bytes")
        );
        assert_eq!(p.period, 524_288);
        assert_eq!(s(p.default_sample_type), "inuse_space");
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);

        // Sums over samples equal the profile's (rounded) sums, column by column.
        let mut sums = [0i64; 4];
        for sample in &p.sample {
            for (acc, v) in sums.iter_mut().zip(&sample.value) {
                *acc += v;
            }
        }
        let round = |x: f64| x.round() as i64;
        let want = [
            round(100.5) + 1,
            round(10_000.6) + 512,
            round(30.2) + 1,
            round(3000.4) + 512,
        ];
        assert_eq!(sums, want);

        // Thread labels: site 1 splits into main, worker and an unlabelled rest; site 2
        // has no attribution and is one unlabelled sample.
        let thread_key = p
            .string_table
            .iter()
            .position(|x| x == "thread")
            .expect("key") as i64;
        let by_label = |name: Option<&str>| -> Vec<&proto::Sample> {
            p.sample
                .iter()
                .filter(|x| {
                    let l = x
                        .label
                        .iter()
                        .find(|l| l.key == thread_key)
                        .map(|l| s(l.str));
                    l == name
                })
                .collect()
        };
        let main = by_label(Some("main"));
        assert_eq!(main.len(), 1);
        assert_eq!(main[0].value[1], 6000);
        assert_eq!(main[0].value[3], 1000);
        let worker = by_label(Some("worker"));
        assert_eq!(worker[0].value[1], 3001);
        assert_eq!(worker[0].value[3], 2000);
        assert!(by_label(Some("(other threads)")).is_empty());
        let rest = by_label(None);
        assert_eq!(rest.len(), 2);
        assert_eq!(
            rest.iter().map(|x| x.value[1]).sum::<i64>(),
            10_001 - 9001 + 512
        );
        // Per-site sums hold too: the labelled parts of site 1 plus its rest.
        assert_eq!(
            main[0].value[3] + worker[0].value[3] + rest[0].value[3],
            3000
        );

        // Dictionaries are shared: location 0x1010 (two inlined lines) is stored once.
        assert_eq!(p.location.len(), 3);
        let shared = p
            .location
            .iter()
            .find(|l| l.address == 0x1010)
            .expect("location");
        let names: Vec<&str> = shared
            .line
            .iter()
            .map(|l| s(p.function[(l.function_id - 1) as usize].name))
            .collect();
        assert_eq!(names, ["inner", "outer"]);
        assert_eq!(p.function.len(), 4);
        assert_eq!(shared.mapping_id, 1);
        assert_eq!(
            p.location
                .iter()
                .find(|l| l.address == 0x3030)
                .map(|l| l.mapping_id),
            Some(0)
        );
        assert_eq!(s(p.mapping[0].filename), "/usr/bin/app");
        assert_eq!(s(p.mapping[0].build_id), "abcd");
        // Leaf first.
        let leaf = p
            .location
            .iter()
            .position(|l| l.address == 0x1010)
            .expect("leaf") as u64
            + 1;
        assert!(p.sample.iter().all(|x| x.location_id[0] == leaf));
    }

    #[test]
    fn unsymbolized_profile_has_address_locations() {
        let mut profile = sample_profile();
        for site in &mut profile.sites {
            site.frames.clear();
            site.addresses.push(0);
        }
        let p = decode(&render(&profile, &[]));
        assert_eq!(p.location.len(), 3);
        assert!(
            p.location
                .iter()
                .all(|l| l.line.is_empty() && l.mapping_id == 0)
        );
        assert!(p.function.is_empty());
    }

    #[test]
    fn apportion_preserves_the_total() {
        assert_eq!(apportion(&[1.0, 1.0, 1.0], 10), [4, 3, 3]);
        assert_eq!(apportion(&[0.0, 0.0], 7), [0, 7]);
        assert_eq!(apportion(&[2.5, 2.5], 5), [3, 2]);
        assert_eq!(apportion(&[1.0], 0), [0]);
        let parts = [0.3, 0.3, 0.4];
        assert_eq!(apportion(&parts, 1).iter().sum::<i64>(), 1);
    }
}
