//! Function, file and line of addresses from an ELF file's DWARF and symbol table, loaded on
//! demand and dropped after use.
//!
//! A report maps the object files it needs (`mmap`, read-only), parses the DWARF units its
//! addresses fall in one at a time (the `dwarf` module), drops the file's pages as it goes,
//! and unmaps everything when it is done: the process keeps only the resolved frames (see the
//! `symbolize` module), never the debug info, whose parsed tables run to tens of MiB in a
//! large binary.

use crate::read::dwarf::Lookup;
use crate::read::dwarf_unit::Release;
use crate::read::frame::Frame;
use addr2line::gimli::{EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSegment};
use std::cell::{Cell, OnceCell};
use std::path::Path;

/// A file mapped read-only, unmapped on drop.
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    /// Maps the whole of `path`. An empty file maps to an empty slice.
    pub(crate) fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: core::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh private read-only mapping of an open file descriptor; the kernel
        // picks the address. The mapping outlives the descriptor, which is closed on return.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    /// Drops the pages of the mapping from the process's resident set (they are read again
    /// from the page cache when touched): parsing debug info touches pages all over a
    /// file, and they would otherwise all stay resident until the report is done.
    pub(crate) fn release_pages(&self) {
        if self.len != 0 {
            // SAFETY: advice on exactly the mapping `open` made; for a private read-only file
            // mapping MADV_DONTNEED only drops resident pages, whose contents are re-read from
            // the file on the next access: every slice of it stays valid.
            unsafe { libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED) };
        }
    }

    /// Drops from the resident set the pages lying wholly inside `part`, a slice of
    /// [`bytes`](Self::bytes) read in order and not needed again.
    pub(crate) fn release_range(&self, part: &[u8]) {
        // SAFETY: `sysconf` only reads a system constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let base = self.ptr as usize;
        let (lo, hi) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
        if self.len == 0 || lo < base || hi > base + self.len || page == 0 {
            return;
        }
        let start = lo.next_multiple_of(page);
        let end = hi - hi % page;
        if start < end {
            // SAFETY: [start, end) is page-aligned and inside the mapping `open` made; as in
            // `release_pages`, MADV_DONTNEED on a private read-only file mapping only drops
            // resident pages, re-read from the file when touched.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes until `drop`; the slice
        // borrows `self`. (A file truncated under us would fault: binaries are replaced by
        // rename in deployments, which leaves this mapping intact.)
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmaps exactly the mapping `open` made; no slice of it outlives `self`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// One `PT_LOAD` segment: where its bytes are in the file and where they are loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// File offset of its first byte (`p_offset`).
    pub offset: u64,
    /// Bytes of it in the file (`p_filesz`).
    pub file_size: u64,
    /// Its link-time virtual address (`p_vaddr`).
    pub vaddr: u64,
}

/// The link-time address (what `addr2line -e` and the DWARF speak) of the byte at
/// `file_offset` of the file, through the `PT_LOAD` segment holding that byte.
pub(crate) fn vaddr_of_file_offset(segments: &[Segment], file_offset: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| s.offset <= file_offset && file_offset - s.offset < s.file_size)
        .map(|s| file_offset - s.offset + s.vaddr)
}

/// The debug info and symbols of one parsed object file, borrowing its bytes.
pub(crate) struct DebugInfo<'a> {
    file: object::File<'a>,
    /// The DWARF's unit index, built on first use (reading a binary's segments needs none).
    lookup: OnceCell<Option<Lookup<'a>>>,
    /// Handed to the lookup: drops the file's pages read so far from the resident set.
    release: Cell<Option<Release<'a>>>,
    /// Built on first use: most addresses are named by the DWARF.
    symbols: OnceCell<object::SymbolMap<object::SymbolMapName<'a>>>,
    /// Its `PT_LOAD` segments.
    pub segments: Vec<Segment>,
    /// Its GNU build-id.
    pub build_id: Option<&'a [u8]>,
}

impl<'a> DebugInfo<'a> {
    /// Parses an object file (ELF, or any format `object` reads). DWARF that cannot be read
    /// (absent, compressed) leaves the symbol table alone to name functions.
    pub(crate) fn parse(data: &'a [u8]) -> Result<DebugInfo<'a>, String> {
        let file = object::File::parse(data).map_err(|e| format!("not an object file: {e}"))?;
        let segments = file
            .segments()
            .map(|s| {
                let (offset, file_size) = s.file_range();
                Segment {
                    offset,
                    file_size,
                    vaddr: s.address(),
                }
            })
            .collect();
        Ok(DebugInfo {
            lookup: OnceCell::new(),
            release: Cell::new(None),
            symbols: OnceCell::new(),
            segments,
            build_id: file.build_id().ok().flatten(),
            file,
        })
    }

    /// Has `release` called as the debug info is read, to drop pages of the mapped file
    /// already read: `Some(bytes)`, those holding `bytes`; `None`, all.
    pub(crate) fn releasing_pages(self, release: impl Fn(Option<&[u8]>) + 'a) -> Self {
        self.release.set(Some(Box::new(release)));
        self
    }

    fn lookup(&self) -> Option<&Lookup<'a>> {
        self.lookup
            .get_or_init(|| {
                let endian = if self.file.is_little_endian() {
                    RunTimeEndian::Little
                } else {
                    RunTimeEndian::Big
                };
                let dwarf = addr2line::gimli::Dwarf::load(|id| {
                    let bytes = self
                        .file
                        .section_by_name(id.name())
                        // Compressed sections would need inflating into memory of our own: skipped.
                        .filter(|s| {
                            s.compressed_file_range()
                                .is_ok_and(|r| r.format == object::CompressionFormat::None)
                        })
                        .and_then(|s| s.data().ok())
                        .unwrap_or(&[]);
                    Ok::<_, ()>(EndianSlice::new(bytes, endian))
                })
                .ok()?;
                let release = self.release.take().unwrap_or_else(|| Box::new(|_| {}));
                Lookup::new(dwarf, release).ok()
            })
            .as_ref()
    }

    /// The frames of each (return address, its link-time address): the call is looked up one
    /// byte before it (a return address is the instruction after the call, which may belong
    /// to the next line or function). Inlined frames innermost first; one frame without a
    /// function when nothing is known.
    pub(crate) fn frames_all(&self, addresses: &[(u64, u64)]) -> Vec<Vec<Frame>> {
        let probes: Vec<u64> = addresses
            .iter()
            .map(|&(_, vaddr)| vaddr.saturating_sub(1))
            .collect();
        let found = match self.lookup() {
            Some(lookup) => lookup.find_frames(&probes),
            None => vec![None; probes.len()],
        };
        addresses
            .iter()
            .zip(found)
            .zip(&probes)
            .map(|((&(address, _), found), &probe)| {
                let out = found
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| Frame {
                        address,
                        function: f.function,
                        file: f.file,
                        line: f.line,
                    })
                    .collect();
                self.with_symbol(out, address, probe)
            })
            .collect()
    }

    /// No debug info for it (C libraries, stripped binaries): the symbol table's name.
    fn with_symbol(&self, mut out: Vec<Frame>, address: u64, probe: u64) -> Vec<Frame> {
        if out.last().is_none_or(|f| f.function.is_none()) {
            let symbols = self.symbols.get_or_init(|| self.file.symbol_map());
            if let Some(sym) = symbols.containing(probe) {
                let name = demangle(sym.name());
                match out.last_mut() {
                    Some(f) => f.function = Some(name),
                    None => out.push(Frame {
                        address,
                        function: Some(name),
                        file: None,
                        line: None,
                    }),
                }
            }
        }
        if out.is_empty() {
            out.push(Frame {
                address,
                function: None,
                file: None,
                line: None,
            });
        }
        out
    }
}

/// A symbol's name demangled as Rust (without the hash), or as it is.
pub(crate) fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}

/// An object loaded in this process: its file, load bias and loaded address ranges.
#[cfg(target_os = "linux")]
struct Loaded {
    path: std::path::PathBuf,
    bias: u64,
    ranges: Vec<(u64, u64)>,
}

#[cfg(target_os = "linux")]
fn loaded_objects() -> Vec<Loaded> {
    let mut out: Vec<Loaded> = Vec::new();
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects, and `data` points
    // to `out`, which outlives the call and is only touched by the callback on this thread.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut out).cast()) };
    out
}

// The ELF fields are `u32` on 32-bit targets: the `as u64` casts are needed there.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)]
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration of the call, and `data`
    // is the `Vec<Loaded>` that `loaded_objects` passed in.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Loaded>>()) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader guarantees `dlpi_phdr` points to `dlpi_phnum` program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let bias = info.dlpi_addr as u64;
    let ranges = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD)
        .map(|p| {
            let lo = bias.wrapping_add(p.p_vaddr as u64);
            (lo, lo.wrapping_add(p.p_memsz as u64))
        })
        .collect();
    let name = if info.dlpi_name.is_null() {
        Default::default()
    } else {
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string valid during the call.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    // The executable comes first with an empty name: `/proc/self/exe` opens it even when the
    // file was replaced or deleted since.
    let path = if name.is_empty() {
        if !out.is_empty() {
            return 0;
        }
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name))
    };
    out.push(Loaded { path, bias, ranges });
    0
}

/// Symbolizes addresses of this process: each object file is mapped and parsed once for the
/// whole batch, then unmapped. `out[i]` holds the frames of `addresses[i]`.
#[cfg(target_os = "linux")]
pub(crate) fn resolve_in_process(addresses: &[u64]) -> Vec<Vec<Frame>> {
    let objects = loaded_objects();
    let unknown = |a: u64| Frame {
        address: a,
        function: None,
        file: None,
        line: None,
    };
    let mut out: Vec<Vec<Frame>> = addresses.iter().map(|&a| vec![unknown(a)]).collect();
    let owner = |a: u64| {
        objects
            .iter()
            .position(|o| o.ranges.iter().any(|&(lo, hi)| lo <= a && a < hi))
    };
    let mut order: Vec<(usize, usize)> = addresses
        .iter()
        .enumerate()
        .filter_map(|(i, &a)| Some((owner(a)?, i)))
        .collect();
    order.sort_unstable();
    for run in order.chunk_by(|a, b| a.0 == b.0) {
        let object = &objects[run[0].0];
        let Ok(mapped) = Mapped::open(&object.path) else {
            continue;
        };
        let Ok(info) = DebugInfo::parse(mapped.bytes()) else {
            continue;
        };
        // Debug info is read once and in order: the pages already read are not needed again.
        let info = info.releasing_pages(|part| match part {
            Some(bytes) => mapped.release_range(bytes),
            None => mapped.release_pages(),
        });
        let batch: Vec<(u64, u64)> = run
            .iter()
            .map(|&(_, i)| (addresses[i], addresses[i].wrapping_sub(object.bias)))
            .collect();
        for (&(_, i), frames) in run.iter().zip(info.frames_all(&batch)) {
            out[i] = frames;
        }
        drop(info);
        mapped.release_pages();
    }
    give_back_freed_memory();
    out
}

/// The parsed debug info (tens of MiB in a large binary) was freed, but glibc keeps freed
/// memory below its heap's top: hand it back to the system, or the process's RSS stays that
/// much higher after its first report.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_freed_memory() {
    // SAFETY: `malloc_trim` only releases free memory of glibc's heap; it is safe to call at
    // any time from any thread.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_freed_memory() {}
