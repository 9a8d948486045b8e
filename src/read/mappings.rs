//! The process's executable mappings, with each object's GNU build-id, so that a report's raw
//! addresses can be symbolized offline against the exact binaries that produced them.
//!
//! The mappings come from `/proc/self/maps`. Build-ids are read from the loaded objects'
//! `PT_NOTE` segments in memory (via `dl_iterate_phdr`), not from the files on disk: that reads
//! a few hundred bytes instead of opening each binary, needs no ELF crate, and stays right when
//! a binary was replaced or deleted on disk after the process started (a routine deploy).

use serde::{Deserialize, Serialize};

/// One executable mapping of the process.
///
/// ```
/// let maps = heapsampler::report::mappings::current();
/// assert!(maps.iter().all(|m| m.start < m.end));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// File mapped (`""` for an anonymous mapping, `[vdso]` for the kernel's).
    pub path: String,
    /// First address of the mapping; where the object's executable segment starts inside
    /// the mapping's first page (as linkers such as lld place it), that segment's first
    /// address, with `offset` moved along: tools that derive the load bias from the
    /// segment's link-time address (`go tool pprof`) then name the right functions.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Offset in the file of the mapping's first byte.
    pub offset: u64,
    /// The object's GNU build-id in lowercase hex, when it has one.
    #[serde(default)]
    pub build_id: Option<String>,
}

/// The executable mappings of the calling process, in address order, each with its object's
/// build-id when the object has one. Empty when `/proc/self/maps` cannot be read.
///
/// ```
/// let maps = heapsampler::report::mappings::current();
/// # #[cfg(target_os = "linux")]
/// assert!(!maps.is_empty());
/// ```
pub fn current() -> Vec<Mapping> {
    let _guard = crate::sys::guard::enter_guard();
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut maps = parse_maps(&text);
    let objects = loaded_objects();
    for m in &mut maps {
        let object = objects.iter().find(|o| {
            o.ranges
                .iter()
                .any(|&(lo, hi)| lo <= m.start && m.start < hi)
        });
        m.build_id = object.and_then(|o| o.build_id.as_deref()).map(hex);
        if let Some(o) = object {
            start_at_code(m, &o.code);
        }
    }
    maps
}

/// Moves `m`'s start to the executable segment among `code` (each its loaded address and
/// file offset) that begins inside `m`'s first page, when the mapping's own offset agrees
/// that this byte is the segment's first.
fn start_at_code(m: &mut Mapping, code: &[(u64, u64)]) {
    const PAGE: u64 = 4096;
    for &(lo, file_offset) in code {
        let skip = lo.wrapping_sub(m.start);
        if lo > m.start
            && skip < PAGE
            && lo < m.end
            && m.offset.checked_add(skip) == Some(file_offset)
        {
            m.start = lo;
            m.offset = file_offset;
            return;
        }
    }
}

/// Parses the text of a `/proc/<pid>/maps` file, keeping the executable mappings. Lines it
/// cannot read are skipped. Build-ids are left empty.
///
/// ```
/// let text = "55d0c0a00000-55d0c0a42000 r-xp 00004000 fd:01 1234  /usr/bin/app\n\
///             7ffd1000-7ffd3000 rw-p 00000000 00:00 0  [stack]\n";
/// let maps = heapsampler::report::mappings::parse_maps(text);
/// assert_eq!(maps.len(), 1);
/// assert_eq!(maps[0].path, "/usr/bin/app");
/// assert_eq!(maps[0].offset, 0x4000);
/// ```
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _device = fields.next()?;
    let _inode = fields.next()?;
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    // The path is the rest of the line and may contain spaces.
    let path = fields.collect::<Vec<_>>().join(" ");
    Some(Mapping {
        path,
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        build_id: None,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A loaded ELF object: its loaded address ranges, build-id, and where each executable
/// segment begins (loaded address, file offset).
struct Object {
    ranges: Vec<(u64, u64)>,
    build_id: Option<Vec<u8>>,
    code: Vec<(u64, u64)>,
}

#[cfg(target_os = "linux")]
fn loaded_objects() -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects, and `data` points
    // to `out`, which outlives the call and is only touched by the callback on this thread.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut out).cast()) };
    out
}

#[cfg(not(target_os = "linux"))]
fn loaded_objects() -> Vec<Object> {
    Vec::new()
}

const NT_GNU_BUILD_ID: u32 = 3;

// The ELF fields are `u32` on 32-bit targets: the `as u64` casts are needed there.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)]
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of the call, and `data`
    // is the `Vec<Object>` that `loaded_objects` passed in.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Object>>()) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader guarantees `dlpi_phdr` points to `dlpi_phnum` program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let base = info.dlpi_addr as u64;
    let loads: Vec<(u64, u64, bool)> = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD)
        .map(|p| {
            let lo = base.wrapping_add(p.p_vaddr as u64);
            let readable = p.p_flags & libc::PF_R != 0;
            // Only the file-backed part of a segment is sure to hold note bytes.
            (lo, lo.wrapping_add(p.p_filesz as u64), readable)
        })
        .collect();
    let mut build_id = None;
    for p in phdrs.iter().filter(|p| p.p_type == libc::PT_NOTE) {
        let lo = base.wrapping_add(p.p_vaddr as u64);
        let len = p.p_memsz as u64;
        // Read a note segment only when a readable loaded segment covers it entirely, so no
        // byte outside mapped memory is ever touched.
        let covered = loads
            .iter()
            .any(|&(a, b, r)| r && a <= lo && lo.saturating_add(len) <= b);
        if !covered || len == 0 || len > 1 << 20 {
            continue;
        }
        // SAFETY: the range lies inside a readable, file-backed loaded segment of this object,
        // which stays mapped while `dl_iterate_phdr` holds the loader lock.
        let bytes = unsafe { core::slice::from_raw_parts(lo as usize as *const u8, len as usize) };
        let align = if p.p_align as u64 == 8 { 8 } else { 4 };
        if let Some(id) = find_build_id(bytes, align) {
            build_id = Some(id.to_vec());
            break;
        }
    }
    let code = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| (base.wrapping_add(p.p_vaddr as u64), p.p_offset as u64))
        .collect();
    let page = 4096u64;
    out.push(Object {
        code,
        ranges: loads
            .iter()
            .map(|&(lo, hi, _)| (lo & !(page - 1), hi.max(lo)))
            .collect(),
        build_id,
    });
    0
}

/// Finds the GNU build-id in the bytes of a note segment (native byte order, notes padded to
/// `align`).
fn find_build_id(mut notes: &[u8], align: usize) -> Option<&[u8]> {
    let pad = |n: usize| n.div_ceil(align) * align;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    while notes.len() >= 12 {
        let namesz = word(notes, 0)? as usize;
        let descsz = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(pad(namesz))?;
        let desc_end = desc_start.checked_add(descsz)?;
        let next = desc_start.checked_add(pad(descsz))?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(next..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend_from_slice(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    #[test]
    fn finds_the_build_id_after_other_notes() {
        let mut seg = note(b"GNU\0", 1, &[0, 0, 0, 0, 2, 6, 32, 0]);
        seg.extend(note(
            b"GNU\0",
            NT_GNU_BUILD_ID,
            &[0xde, 0xad, 0xbe, 0xef, 0x01],
        ));
        assert_eq!(
            find_build_id(&seg, 4),
            Some(&[0xde, 0xad, 0xbe, 0xef, 0x01][..])
        );
    }

    #[test]
    fn truncated_or_foreign_notes_yield_nothing() {
        let seg = note(b"GNU\0", NT_GNU_BUILD_ID, &[1, 2, 3, 4]);
        assert_eq!(find_build_id(&seg[..seg.len() - 4], 4), None);
        assert_eq!(
            find_build_id(&note(b"Go\0\0", NT_GNU_BUILD_ID, &[1, 2]), 4),
            None
        );
        assert_eq!(find_build_id(&[0xff; 40], 4), None);
    }

    #[test]
    fn parses_paths_with_spaces_and_skips_non_executable() {
        let text = "1000-2000 r-xp 00001000 08:01 42 /opt/my app/bin\n\
                    2000-3000 r--p 00000000 08:01 42 /opt/my app/bin\n\
                    garbage line\n\
                    7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].path, "/opt/my app/bin");
        assert_eq!(
            (maps[0].start, maps[0].end, maps[0].offset),
            (0x1000, 0x2000, 0x1000)
        );
        assert_eq!(maps[1].path, "[vdso]");
    }

    #[test]
    fn a_mapping_starts_where_its_code_segment_does() {
        // lld's layout: the code segment at file offset 0x9d520, loaded 0x1000 further on,
        // inside a mapping of the page at file offset 0x9d000.
        let mapping = |start, offset| Mapping {
            path: "/bin/app".into(),
            start,
            end: 0x5000_0000,
            offset,
            build_id: None,
        };
        let mut m = mapping(0x4000_0000, 0x9d000);
        start_at_code(&mut m, &[(0x4000_0520, 0x9d520)]);
        assert_eq!((m.start, m.offset), (0x4000_0520, 0x9d520));
        // Already at the segment's start, a segment past the first page, or a file offset
        // that disagrees with the mapping's: left alone.
        for (code_start, code_offset) in [
            (0x4000_0000, 0x9d000),
            (0x4000_1520, 0x9e520),
            (0x4000_0520, 0x520),
        ] {
            let mut m = mapping(0x4000_0000, 0x9d000);
            start_at_code(&mut m, &[(code_start, code_offset)]);
            assert_eq!((m.start, m.offset), (0x4000_0000, 0x9d000));
        }
    }

    #[test]
    fn this_executable_has_a_build_id() {
        let exe = std::env::current_exe().unwrap().display().to_string();
        let maps = current();
        let ours: Vec<_> = maps.iter().filter(|m| m.path == exe).collect();
        assert!(
            !ours.is_empty(),
            "no executable mapping of {exe} in {maps:?}"
        );
        // rustc asks the linker for a build-id on Linux; if a toolchain ever stops, this says so.
        assert!(
            ours.iter()
                .all(|m| m.build_id.as_ref().is_some_and(|b| b.len() >= 16)),
            "{ours:?}"
        );
    }
}
