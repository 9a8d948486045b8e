//! The `sites` of a report as the reporter lays them out (one site per line, no spaces
//! inside a line), read without serde: per site the stack id, live and allocated bytes; every
//! other value checked against JSON's grammar and skipped. Three times faster than serde on a
//! site's line, most of which is keys and numbers the timeline does not keep.
//!
//! Anything else (spaces, fields in another order, escapes in strings, deep nesting) is left
//! to serde: [`sites`] returns `None`. Numbers read here
//! are the ones serde reads: `str::parse` rounds correctly, and so does serde_json with
//! `float_roundtrip` (on in this crate).

use super::entry::SitePoint;
use std::ops::Range;

/// Where the top level's `sites` array starts (the reporter's layout).
const SITES: &str = "\n  \"sites\": ";

/// Values nest deeper than this only in files the reporter did not write.
const MAX_DEPTH: usize = 8;

/// The sites of the report `text` and the byte range of their array in it, when the array is
/// laid out as the reporter writes it.
pub(super) fn sites(text: &str) -> Option<(Range<usize>, Vec<SitePoint>)> {
    let start = text.find(SITES)? + SITES.len();
    let mut s = Scan {
        text,
        rest: &text.as_bytes()[start..],
    };
    s.lit("[")?;
    let mut sites = Vec::new();
    if !s.eat(b']') {
        loop {
            s.lit("\n    ")?;
            sites.push(s.site()?);
            if !s.eat(b',') {
                s.lit("\n  ]")?;
                break;
            }
        }
    }
    Some((start..s.at(), sites))
}

struct Scan<'a> {
    text: &'a str,
    /// What is left of `text` to read.
    rest: &'a [u8],
}

impl<'a> Scan<'a> {
    #[inline(always)]
    fn at(&self) -> usize {
        self.text.len() - self.rest.len()
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> bool {
        match self.rest.split_first() {
            Some((&first, rest)) if first == c => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    #[inline(always)]
    fn lit(&mut self, s: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(s.as_bytes())?;
        Some(())
    }

    /// Skips the ASCII digits ahead, eight bytes at a time (a number's end is found without a
    /// branch per digit, which the processor cannot predict); returns how many.
    #[inline(always)]
    fn digits(&mut self) -> usize {
        const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
        const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        let mut n = 0;
        while let Some(chunk) = self.rest.get(n..n + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            // A byte is a digit when its high nibble is 3 and its low nibble at most 9; no
            // sum below carries into the next byte.
            let other =
                ((w & HIGH) ^ 0x3030_3030_3030_3030) | (((w & LOW) + 0x0606_0606_0606_0606) & HIGH);
            let flags = (((other & 0x7F7F_7F7F_7F7F_7F7F) + 0x7F7F_7F7F_7F7F_7F7F) | other)
                & 0x8080_8080_8080_8080;
            if flags != 0 {
                n += flags.trailing_zeros() as usize / 8;
                self.rest = &self.rest[n..];
                return n;
            }
            n += 8;
        }
        n += self.rest[n..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        self.rest = &self.rest[n..];
        n
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Option<&'a str> {
        let from = self.at();
        self.eat(b'-');
        if !self.eat(b'0') {
            self.peek().filter(|c| (b'1'..=b'9').contains(c))?;
            self.digits();
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return None;
            }
        }
        Some(&self.text[from..self.at()])
    }

    #[inline(always)]
    fn float(&mut self) -> Option<f64> {
        self.number()?.parse().ok()
    }

    /// A string without escapes (a name with one is left to serde).
    fn string(&mut self) -> Option<()> {
        self.lit("\"")?;
        let n = self
            .rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        (self.rest[n] == b'"').then(|| self.rest = &self.rest[n + 1..])
    }

    /// Any JSON value without spaces, skipped.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string(),
            b'[' => {
                self.lit("[")?;
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    if !self.eat(b',') {
                        return self.lit("]");
                    }
                }
            }
            b'{' => {
                self.lit("{")?;
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.lit(":")?;
                    self.value(depth + 1)?;
                    if !self.eat(b',') {
                        return self.lit("}");
                    }
                }
            }
            b't' => self.lit("true"),
            b'f' => self.lit("false"),
            b'n' => self.lit("null"),
            _ => self.number().map(drop),
        }
    }

    /// One site's object, its fields in the reporter's order: its stack id, live and
    /// allocated bytes read, the rest checked and skipped.
    fn site(&mut self) -> Option<SitePoint> {
        self.lit("{\"stack_id\":")?;
        let id = self.number()?;
        // A stack id is a whole number: serde reads no fraction, sign or exponent.
        if !id.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let stack_id = id.parse().ok()?;
        self.lit(",\"live_bytes\":")?;
        let live = self.float()?;
        self.lit(",\"live_objects\":")?;
        self.number()?;
        self.lit(",\"alloc_bytes\":")?;
        let alloc = self.float()?;
        for key in [
            ",\"alloc_objects\":",
            ",\"alloc_bytes_per_sec\":",
            ",\"alloc_objects_per_sec\":",
            ",\"samples\":",
            ",\"live_samples\":",
        ] {
            self.lit(key)?;
            self.number()?;
        }
        self.lit(",\"addresses\":")?;
        self.value(1)?;
        self.lit(",\"threads\":")?;
        self.value(1)?;
        self.lit("}")?;
        Some(SitePoint {
            stack_id,
            live,
            alloc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, in every position of a word and past its end, ends a run of digits
    /// where a byte-by-byte look ends it.
    #[test]
    fn digits_end_where_the_first_other_byte_is() {
        let text: String = "0123456789".repeat(3);
        for len in 0..20 {
            for c in 0..=255u8 {
                let mut bytes = text.as_bytes()[..len].to_vec();
                bytes.push(c);
                bytes.extend_from_slice(b"99");
                let expected = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut s = Scan {
                    text: &text,
                    rest: text.as_bytes(),
                };
                assert_eq!(s.digits(), expected, "{len} digits then {c:#x}");
                assert_eq!(s.at(), expected);
            }
        }
    }
}
