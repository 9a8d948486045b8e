//! `/debug/pprof/symbol`, as Go's `net/http/pprof` serves it: `go tool pprof` asks it for the
//! function names of a profile's addresses that have none (`-symbolize=remote`, or a profile
//! fetched from the endpoint and written without names).
//!
//! `GET` answers `num_symbols: 1` (pprof only checks that it is not 0). `POST` with a body of
//! `0x`-prefixed addresses joined by `+` (or `GET` with them as the query) answers that line
//! and then `0x<address> <function>` per address with a name (the function whose code holds
//! it, inlined frames aside); unknown addresses are left out. An address is an instruction's,
//! as in Go's handler and in the profiles' locations (which point inside the call).

use std::fmt::Write as _;

/// The answer to a symbol request whose addresses are `input` (the body of a `POST`, the
/// query of a `GET`), or the message of a `400`.
pub(crate) fn answer(input: &[u8]) -> Result<String, String> {
    let addresses = parse_addresses(input)?;
    let mut out = String::from("num_symbols: 1\n");
    if !addresses.is_empty() {
        // The symbolizer takes return addresses (it looks one byte before): one byte on.
        let returns: Vec<u64> = addresses.iter().map(|a| a.saturating_add(1)).collect();
        // Not kept in the symbol cache: a client must not fill it, nor evict the program's.
        let frames = crate::read::symbolize::resolve_all_transient(&returns);
        for (address, frames) in addresses.iter().zip(frames) {
            // One name per address: the outermost of its inlined frames, the function whose
            // code holds it (as the symbol table names it). Go's handler names the innermost,
            // but in Rust that is mostly `core`/`alloc` helpers inlined into the caller.
            if let Some(name) = frames.last().and_then(|f| f.function.as_deref()) {
                // Escaped: a name from a hostile binary must not break the line protocol.
                let _ = writeln!(out, "{address:#x} {}", crate::report::escape(name));
            }
        }
    }
    Ok(out)
}

/// `0x1a2b+0x3c4d…` → the addresses; surrounding whitespace and empty words are ignored, and
/// address 0 (Go's handler skips it too). Anything else is refused, naming the first bad word.
pub(crate) fn parse_addresses(input: &[u8]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for word in input.split(|&b| b == b'+') {
        let word = word.trim_ascii();
        if word.is_empty() {
            continue;
        }
        let hex = word
            .strip_prefix(b"0x")
            .or_else(|| word.strip_prefix(b"0X"))
            .filter(|h| !h.is_empty() && h.len() <= 16 && h.iter().all(u8::is_ascii_hexdigit));
        let Some(hex) = hex else {
            let shown = String::from_utf8_lossy(&word[..word.len().min(40)]);
            return Err(format!(
                "not a 0x-prefixed hexadecimal address: {}; send addresses as 0x1234+0x5678\n",
                crate::report::escape(&shown)
            ));
        };
        // Checked above: 1 to 16 hexadecimal digits.
        let address = hex.iter().fold(0u64, |a, &d| {
            (a << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
        });
        if address != 0 {
            out.push(address);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_or_refused() {
        assert_eq!(parse_addresses(b""), Ok(vec![]));
        assert_eq!(
            parse_addresses(b"0x10+0X2f+0x0+\n0xffffffffffffffff\n"),
            Ok(vec![0x10, 0x2f, u64::MAX])
        );
        assert_eq!(parse_addresses(b"+0x1++"), Ok(vec![1]));
        for bad in [
            &b"0x"[..],
            b"1234",
            b"0x12g",
            b"0x1+x",
            b"0x10000000000000000",
            b"0x1 0x2",
            b"\xff\xfe",
        ] {
            let e = parse_addresses(bad).unwrap_err();
            assert!(e.starts_with("not a 0x-prefixed"), "{e}");
        }
    }

    #[test]
    fn a_function_of_this_binary_is_named() {
        #[inline(never)]
        fn symbol_route_probe() -> u64 {
            std::hint::black_box(7)
        }
        // Its first instruction.
        let address = symbol_route_probe as fn() -> u64 as usize as u64;
        let text =
            crate::read::profiler_work(|| answer(format!("{address:#x}+0x1").as_bytes()).unwrap());
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("num_symbols: 1"));
        let line = lines.next().expect("one named address");
        assert!(
            line.starts_with(&format!("{address:#x} ")) && line.ends_with("symbol_route_probe"),
            "{text}"
        );
        assert_eq!(lines.next(), None, "0x1 has no name: {text}");
    }
}
