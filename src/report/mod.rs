//! Renderers of a [`Profile`](crate::Profile): JSON (schema v1), pprof, flamegraph.

pub(crate) mod files;
pub mod flamegraph;
pub mod json;
pub mod offline;
pub use crate::read::mappings;
#[cfg(feature = "pprof")]
pub mod pprof;
pub(crate) mod validate;

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a character must not reach a terminal as it is: control characters (C0 such as
/// ESC, CR and LF, DEL, C1) move the cursor, retitle or clear the terminal, or forge lines;
/// line and paragraph separators break lines; bidirectional overrides reorder what is shown.
/// A symbolizer never produces them: in a report's names they are forged.
///
/// ```
/// use heapsampler::report::is_hostile;
/// assert!(is_hostile('\x1b') && is_hostile('\n') && is_hostile('\u{202e}'));
/// assert!(!is_hostile('a') && !is_hostile('ü') && !is_hostile('\\'));
/// ```
pub fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Text from a report (a function or file name, a path) made safe to print: `\n`, `\r` and
/// `\t` for those, `\xHH` for the other ASCII control characters, `\u{HHHH}` for the other
/// characters of [`is_hostile`]; everything else unchanged (borrowed when nothing changes).
///
/// ```
/// use heapsampler::report::escape;
/// assert_eq!(escape("app::main"), "app::main");
/// assert_eq!(escape("evil\x1b[2J\r\nforged"), "evil\\x1b[2J\\r\\nforged");
/// assert_eq!(escape("\u{202e}txt"), "\\u{202e}txt");
/// ```
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hostile) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
