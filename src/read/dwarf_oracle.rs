//! The unit-at-a-time lookup against `addr2line::Context`, the independent implementation it
//! replaced: the same frames (function, file, line, inlined chain) for every probe.
//!
//! Probes: every function symbol's first bytes, a spread of addresses inside it, and its last
//! byte; in this test binary also the calls of real stacks (captured inside std's sort and
//! hash map code, one byte before each return address, as reports look them up), (debug build: std's optimised, inlined code) and in any binary
//! named by `HEAPSAMPLER_DWARF_ORACLE` (paths separated by `:`, e.g. the release build of
//! examples/symbolize_cost).

use crate::read::dwarf::{DwarfFrame, Lookup};
use crate::read::dwarf_unit::R;
use crate::read::elf::Mapped;
use addr2line::gimli::{self, EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::Path;

fn load<'a>(file: &object::File<'a>) -> gimli::Dwarf<R<'a>> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    gimli::Dwarf::load(|id| {
        let bytes = file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        Ok::<_, ()>(EndianSlice::new(bytes, endian))
    })
    .unwrap()
}

/// What the previous symbolizer returned for `probe`.
fn oracle(ctx: &addr2line::Context<R<'_>>, probe: u64) -> Vec<DwarfFrame> {
    let mut out = Vec::new();
    if let Ok(mut it) = ctx.find_frames(probe).skip_all_loads() {
        while let Ok(Some(f)) = it.next() {
            let function = f
                .function
                .as_ref()
                .and_then(|n| n.demangle().ok())
                .map(|n| n.into_owned());
            let (file, line) = f
                .location
                .map_or((None, None), |l| (l.file.map(str::to_owned), l.line));
            out.push(DwarfFrame {
                function,
                file,
                line,
            });
        }
    }
    out
}

fn probes_of(file: &object::File<'_>, limit: usize) -> Vec<u64> {
    let mut probes = Vec::new();
    let functions: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .map(|s| (s.address(), s.size()))
        .collect();
    // Spread the budget over all functions.
    let per = (limit / functions.len().max(1)).clamp(3, 64) as u64;
    for (start, size) in functions {
        let step = (size / per).max(1);
        let mut a = start;
        while a < start + size {
            probes.push(a);
            a += step;
        }
        probes.push(start + size - 1);
    }
    probes.sort_unstable();
    probes.dedup();
    probes
}

/// Return addresses of stacks of this process, captured inside std's code.
fn real_stacks() -> Vec<u64> {
    thread_local! {
        static IPS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    fn capture() {
        backtrace::trace(|f| {
            IPS.with_borrow_mut(|ips| ips.push(f.ip() as u64));
            true
        });
    }
    let mut v: Vec<u32> = (0..64).rev().collect();
    v.sort_by(|a, b| {
        if *a == 7 {
            capture();
        }
        a.cmp(b)
    });
    #[derive(PartialEq, Eq)]
    struct Key(u32);
    impl std::hash::Hash for Key {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            if self.0 == 3 {
                capture();
            }
            self.0.hash(h);
        }
    }
    let map: std::collections::HashMap<Key, ()> = (0..8).map(|i| (Key(i), ())).collect();
    assert_eq!(map.len(), 8);
    IPS.with_borrow_mut(std::mem::take)
}

/// Where this test binary is loaded: the run-time address of `compare` less its symbol's.
fn load_bias(file: &object::File<'_>) -> u64 {
    let here = compare as *const () as u64;
    let symbol = file
        .symbols()
        .find(|s| {
            s.name()
                .is_ok_and(|n| crate::read::elf::demangle(n).ends_with("dwarf_oracle::compare"))
        })
        .expect("the symbol of `compare`");
    here.wrapping_sub(symbol.address())
}

/// Compares both on `path`; returns (probes, probes with frames, differences shown).
fn compare(path: &Path, limit: usize) -> (usize, usize, Vec<String>) {
    let mapped = Mapped::open(path).unwrap();
    let file = object::File::parse(mapped.bytes()).unwrap();
    let mut probes = probes_of(&file, limit);
    if limit < 100_000 {
        let bias = load_bias(&file);
        let real: Vec<u64> = real_stacks()
            .iter()
            .map(|ip| ip.wrapping_sub(bias).wrapping_sub(1))
            .collect();
        assert!(real.len() > 5, "{} return addresses", real.len());
        // The bias is right: the stacks name the functions that captured them.
        let lookup = Lookup::new(load(&file), Box::new(|_| {})).unwrap();
        let names: Vec<String> = lookup
            .find_frames(&real)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| f.function)
            .collect();
        for expected in ["real_stacks", "sort", "hash"] {
            assert!(
                names.iter().any(|n| n.contains(expected)),
                "no {expected} in {names:?}"
            );
        }
        probes.extend(real);
        probes.sort_unstable();
        probes.dedup();
    }
    let ctx = addr2line::Context::from_dwarf(load(&file)).unwrap();
    let lookup = Lookup::new(load(&file), Box::new(|_| {})).unwrap();
    let found = lookup.find_frames(&probes);
    let mut differences = Vec::new();
    let mut with_frames = 0;
    for (&probe, found) in probes.iter().zip(found) {
        let expected = oracle(&ctx, probe);
        with_frames += usize::from(expected.iter().any(|f| f.function.is_some()));
        let got = found.unwrap_or_default();
        if got != expected {
            differences.push(format!(
                "{}: {probe:#x}\n  addr2line: {expected:?}\n  ours:      {got:?}",
                path.display()
            ));
        }
    }
    (probes.len(), with_frames, differences)
}

#[test]
fn same_frames_as_addr2line() {
    let mut binaries = vec![std::env::current_exe().unwrap()];
    if let Some(more) = std::env::var_os("HEAPSAMPLER_DWARF_ORACLE") {
        binaries.extend(std::env::split_paths(&more));
    }
    for (n, binary) in binaries.iter().enumerate() {
        // This binary (the first) gets the real stacks too.
        let limit = if n == 0 { 40_000 } else { 400_000 };
        let (probes, with_frames, differences) = compare(binary, limit);
        eprintln!(
            "{}: {probes} probes, {with_frames} with a function, {} differences",
            binary.display(),
            differences.len()
        );
        for d in differences.iter().take(20) {
            eprintln!("{d}");
        }
        assert!(probes > 1000, "{probes} probes only");
        assert!(with_frames * 2 > probes, "{with_frames} of {probes} named");
        assert!(differences.is_empty(), "{} differences", differences.len());
    }
}
