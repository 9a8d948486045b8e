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
use crate::read::profile::Profile;
use build::build;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;

mod build;
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
    // Level 1, as Go's runtime/pprof writes its profiles: at 10,000 sites ~3x less work than
    // the default level 6 for a few KiB more.
    let mut gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
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
