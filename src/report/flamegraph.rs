//! Flamegraphs of a [`Profile`]: the collapsed-stack text every flamegraph tool reads
//! (`root;…;leaf value`, one line per stack), and, with the `flamegraph` feature, an SVG
//! drawn by the `inferno` crate.
//!
//! Frames are function names, outermost first (a site's inlined frames each get their own
//! entry); a frame that could not be symbolized is its address in hex, and an unsymbolized
//! profile gives address-only stacks. Sites whose stacks read the same are merged. The value
//! is a whole number of estimated bytes (live, or allocated since the start).

use crate::read::profile::{Profile, Site};
use std::collections::BTreeMap;

/// What a flamegraph's widths measure.
///
/// ```
/// use heapsampler::report::flamegraph::FlameValue;
/// assert_eq!(FlameValue::default(), FlameValue::LiveBytes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlameValue {
    /// Estimated bytes live now: where the memory is.
    #[default]
    LiveBytes,
    /// Estimated bytes allocated since the start: where the allocation traffic is.
    AllocBytes,
}

impl FlameValue {
    fn of(self, site: &Site) -> f64 {
        match self {
            FlameValue::LiveBytes => site.live_bytes,
            FlameValue::AllocBytes => site.alloc_bytes,
        }
    }
}

/// The profile as collapsed stacks: one `outermost;…;leaf value` line per distinct stack,
/// sorted, each ending in a newline. Stacks whose value rounds to 0 are left out.
///
/// ```
/// use heapsampler::report::flamegraph::{collapsed, FlameValue};
/// let mut profile = heapsampler::snapshot();
/// profile.symbolize();
/// for line in collapsed(&profile, FlameValue::LiveBytes).lines() {
///     let (stack, bytes) = line.rsplit_once(' ').unwrap();
///     assert!(!stack.is_empty() && bytes.parse::<u64>().is_ok());
/// }
/// ```
pub fn collapsed(profile: &Profile, value: FlameValue) -> String {
    lines(&weights(profile, value), 0)
}

/// Each distinct stack's whole number of bytes (saturating at `u64::MAX`), zeros left out.
fn weights(profile: &Profile, value: FlameValue) -> BTreeMap<String, u64> {
    let mut stacks: BTreeMap<String, f64> = BTreeMap::new();
    for site in &profile.sites {
        let v = value.of(site);
        if v > 0.0 {
            *stacks.entry(stack_of(site)).or_insert(0.0) += v;
        }
    }
    stacks
        .into_iter()
        .map(|(stack, v)| (stack, v.round() as u64))
        .filter(|&(_, v)| v > 0)
        .collect()
}

/// Collapsed-stack lines of the weights divided by `2^shift`, zeros left out.
fn lines(weights: &BTreeMap<String, u64>, shift: u32) -> String {
    let mut out = String::new();
    for (stack, v) in weights {
        let v = v >> shift;
        if v > 0 {
            out.push_str(stack);
            out.push(' ');
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    out
}

/// The site's frames, outermost first, joined by `;`.
fn stack_of(site: &Site) -> String {
    // Address 0 is an unwinder's end marker, not a frame.
    let names: Vec<String> = if site.frames.is_empty() {
        site.addresses
            .iter()
            .rev()
            .filter(|&&a| a != 0)
            .map(|a| format!("{a:#x}"))
            .collect()
    } else {
        site.frames
            .iter()
            .rev()
            .filter(|f| f.address != 0 || f.function.is_some())
            .map(|f| match &f.function {
                Some(name) => clean(name),
                None => format!("{:#x}", f.address),
            })
            .collect()
    };
    if names.is_empty() {
        "[unknown]".to_string()
    } else {
        names.join(";")
    }
}

/// A frame name may not contain the format's separators, nor control characters (the text
/// goes to terminals, and XML cannot hold most of them).
fn clean(name: &str) -> String {
    super::escape(name).replace(';', ":")
}

/// An SVG flamegraph of the profile (feature `flamegraph`), titled `title`.
///
/// ```
/// use heapsampler::report::flamegraph::{svg, FlameValue};
/// let mut profile = heapsampler::snapshot();
/// profile.symbolize();
/// let image = svg(&profile, FlameValue::LiveBytes, "live heap").unwrap();
/// assert!(image.starts_with(b"<?xml"));
/// ```
#[cfg(feature = "flamegraph")]
pub fn svg(profile: &Profile, value: FlameValue, title: &str) -> std::io::Result<Vec<u8>> {
    let weights = weights(profile, value);
    let (shift, unit) = unit_for(weights.values().map(|&v| u128::from(v)).sum());
    let text = lines(&weights, shift);
    if text.is_empty() {
        // inferno refuses input without counts; an empty profile is still a valid picture.
        return Ok(empty_svg(title).into_bytes());
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = unit.to_string();
    // A function's colour follows from its name, not from a random draw: alike in every
    // picture, so pictures compare by colour.
    options.hash = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, text.lines(), &mut out)?;
    Ok(out)
}

/// The binary unit to draw `total` bytes in, and the shift into it. inferno adds the counts
/// up in a u64 and scales them as f64: the unit keeps the total within 2^53 (exact in an f64,
/// far from overflow).
#[cfg(feature = "flamegraph")]
pub(crate) fn unit_for(total: u128) -> (u32, &'static str) {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let unit = (0..UNITS.len())
        .find(|&u| total >> (10 * u) <= 1 << 53)
        .unwrap_or(UNITS.len() - 1);
    (10 * unit as u32, UNITS[unit])
}

#[cfg(feature = "flamegraph")]
fn empty_svg(title: &str) -> String {
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"70\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"600\" y=\"24\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{title}</text>\n\
         <text x=\"600\" y=\"52\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">no sampled bytes</text>\n\
         </svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::profile::Frame;

    fn frame(address: u64, function: Option<&str>) -> Frame {
        Frame {
            address,
            function: function.map(Into::into),
            file: None,
            line: None,
        }
    }

    fn profile() -> Profile {
        let site = |id, frames: Vec<Frame>, live, alloc| Site {
            stack_id: id,
            addresses: frames.iter().map(|f| f.address).collect(),
            frames,
            live_bytes: live,
            alloc_bytes: alloc,
            ..Default::default()
        };
        Profile {
            sites: vec![
                site(
                    1,
                    vec![
                        frame(1, Some("leaf_a")),
                        frame(2, Some("mid")),
                        frame(3, Some("main")),
                    ],
                    100.4,
                    1000.0,
                ),
                // Same symbolized stack as site 1 from another return address: merged.
                site(
                    2,
                    vec![
                        frame(4, Some("leaf_a")),
                        frame(2, Some("mid")),
                        frame(3, Some("main")),
                    ],
                    50.0,
                    0.0,
                ),
                site(
                    3,
                    vec![
                        frame(5, Some("a;b")),
                        frame(0x7f, None),
                        frame(3, Some("main")),
                    ],
                    0.2,
                    300.6,
                ),
                site(
                    4,
                    vec![frame(6, Some("leaf_b")), frame(3, Some("main"))],
                    7.5,
                    7.5,
                ),
                Site {
                    stack_id: 5,
                    addresses: vec![0x10, 0x20, 0],
                    live_bytes: 3.0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn collapsed_by_live_bytes() {
        let text = collapsed(&profile(), FlameValue::LiveBytes);
        // Site 3 rounds to 0 live bytes and is left out; 7.5 rounds to 8.
        assert_eq!(text, "0x20;0x10 3\nmain;leaf_b 8\nmain;mid;leaf_a 150\n");
    }

    #[test]
    fn collapsed_by_alloc_bytes() {
        let text = collapsed(&profile(), FlameValue::AllocBytes);
        assert_eq!(
            text,
            "main;0x7f;a:b 301\nmain;leaf_b 8\nmain;mid;leaf_a 1000\n"
        );
    }

    #[test]
    fn empty_profile_is_empty_text() {
        assert_eq!(collapsed(&Profile::default(), FlameValue::LiveBytes), "");
    }

    #[cfg(feature = "flamegraph")]
    #[test]
    fn svg_names_the_functions() {
        let image = svg(&profile(), FlameValue::LiveBytes, "test heap").expect("svg");
        let text = String::from_utf8(image).expect("utf-8");
        assert!(text.contains("<svg"), "not an svg");
        assert!(text.contains("leaf_a"), "function name missing");
        assert!(text.contains("test heap"));
        // Totals beyond 2^64 bytes are drawn, in a larger unit.
        let mut huge = profile();
        for site in &mut huge.sites {
            site.live_bytes = 1.8e19;
        }
        let image = svg(&huge, FlameValue::LiveBytes, "huge").expect("svg");
        let text = String::from_utf8(image).expect("utf-8");
        assert!(text.contains("leaf_b") && text.contains(" MiB"), "{text}");
        let empty = svg(&Profile::default(), FlameValue::LiveBytes, "a <b>").expect("svg");
        let empty = String::from_utf8(empty).expect("utf-8");
        assert!(
            empty.contains("<svg") && empty.contains("a &lt;b&gt;"),
            "{empty}"
        );
    }

    #[cfg(feature = "flamegraph")]
    #[test]
    fn a_function_keeps_its_colour_from_one_picture_to_the_next() {
        // Two pictures of one profile, and of another holding the same functions, must colour
        // each function alike: a reader compares pictures (the timeline's newest report and
        // its change, two reports side by side) by colour.
        let fills = |p: &Profile| {
            let text =
                String::from_utf8(svg(p, FlameValue::LiveBytes, "t").expect("svg")).expect("utf-8");
            let mut fills = std::collections::BTreeMap::new();
            for g in text.split("<g>").skip(1) {
                let name = g.split("<title>").nth(1).and_then(|t| t.split(' ').next());
                let fill = g.split("fill=\"").nth(1).and_then(|f| f.split('"').next());
                if let (Some(name), Some(fill)) = (name, fill) {
                    fills.insert(name.to_string(), fill.to_string());
                }
            }
            fills
        };
        let first = fills(&profile());
        assert!(
            first.contains_key("leaf_a") && first.contains_key("mid"),
            "{first:?}"
        );
        let mut other = profile();
        other.sites.truncate(2);
        for _ in 0..4 {
            assert_eq!(fills(&profile()), first);
            let again = fills(&other);
            assert_eq!(again["leaf_a"], first["leaf_a"]);
            assert_eq!(again["mid"], first["mid"]);
        }
    }
}
