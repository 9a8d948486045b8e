//! The process's memory beside the heap: resident set and its parts, the cgroup's limit and
//! usage, and the inner allocator's own figures — so the gap between the live heap and what
//! the kernel charges the process (fragmentation, pages the allocator keeps, the profiler's
//! own share, code and stacks) can be seen next to it.
//!
//! Everything here is read from files the kernel provides and parsed leniently: a missing
//! file, a missing field or a malformed line leaves that figure `None`, never a panic.

use serde::{Deserialize, Serialize};

/// The process's memory as the kernel and the inner allocator see it. Every field is
/// optional: what the platform, the kernel or the allocator does not provide is `None`
/// (absent from JSON).
///
/// ```
/// let m = heapsampler::process_memory();
/// if let (Some(rss), Some(anon)) = (m.rss_bytes, m.anon_bytes) {
///     assert!(anon <= rss);
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// Resident set size (`Rss` of `/proc/self/smaps_rollup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Proportional set size: resident bytes, shared pages divided among their sharers (`Pss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
    /// Resident anonymous memory: heap, stacks, anonymous mappings (`Anonymous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_bytes: Option<u64>,
    /// Resident file-backed and shared memory: code, mapped files, shmem (`Rss` − `Anonymous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Anonymous memory swapped out (`Swap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_bytes: Option<u64>,
    /// The control group's (v2) figures, when the process is in one with a memory controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupMemory>,
    /// glibc malloc's own figures (`mallinfo2`), when the C library has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glibc_malloc: Option<GlibcMallocStats>,
    /// jemalloc's own figures, when it is the inner allocator and the crate is built with
    /// feature `jemalloc-stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jemalloc: Option<crate::read::jemalloc_stats::JemallocStats>,
}

/// A cgroup v2 memory controller's figures (`memory.current`, `memory.max`, `memory.stat`).
///
/// ```
/// let c = heapsampler::CgroupMemory { current_bytes: Some(1 << 20), ..Default::default() };
/// assert!(c.max_bytes.is_none()); // "max": no limit
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMemory {
    /// The cgroup's path below `/sys/fs/cgroup`.
    pub path: String,
    /// Memory charged to the cgroup now (`memory.current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_bytes: Option<u64>,
    /// The hard limit (`memory.max`); `None` when it is `max` (no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Anonymous memory charged (`anon` of `memory.stat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_bytes: Option<u64>,
    /// Page cache charged (`file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Kernel memory charged: stacks, page tables, slab (`kernel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_bytes: Option<u64>,
    /// Shared memory charged (`shmem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shmem_bytes: Option<u64>,
    /// Socket buffers charged (`sock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_bytes: Option<u64>,
}

/// glibc malloc's figures, from `mallinfo2` (over all arenas). They describe the C library's
/// malloc: heapsampler's inner allocator when it is `std::alloc::System` on glibc, and the
/// program's C code in any case.
///
/// ```
/// let g = heapsampler::GlibcMallocStats::default();
/// assert_eq!(g.in_use_bytes, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlibcMallocStats {
    /// Bytes obtained from the system: arenas (`arena`) plus mmapped blocks (`hblkhd`).
    pub system_bytes: u64,
    /// Bytes in allocated blocks (`uordblks` + `hblkhd`).
    pub in_use_bytes: u64,
    /// Bytes in free blocks malloc keeps (`fordblks`): fragmentation and retained memory.
    pub free_bytes: u64,
    /// Of those, at the top of the main heap and releasable by `malloc_trim` (`keepcost`).
    pub releasable_bytes: u64,
}

/// Reads the process's memory figures now: `/proc/self/smaps_rollup`, the cgroup v2 files,
/// glibc's `mallinfo2` (looked up at run time, so builds for other C libraries link and
/// simply report `None`) and, with feature `jemalloc-stats`, jemalloc's statistics. Costs a few file reads; runs under the profiler's reentrancy guard.
///
/// ```
/// let m = heapsampler::process_memory();
/// # #[cfg(target_os = "linux")]
/// assert!(m.rss_bytes.unwrap_or(1) > 0);
/// ```
pub fn process_memory() -> ProcessMemory {
    let _guard = crate::sys::guard::enter_guard();
    let mut m = std::fs::read_to_string("/proc/self/smaps_rollup")
        .map(|t| parse_smaps_rollup(&t))
        .unwrap_or_default();
    m.cgroup = read_cgroup();
    m.glibc_malloc = glibc_mallinfo2();
    m.jemalloc = crate::read::jemalloc_stats::read();
    m
}

/// The `kB` figures of `smaps_rollup` (or `smaps`, `status`: same line shape) that matter.
pub(crate) fn parse_smaps_rollup(text: &str) -> ProcessMemory {
    let mut rss = None;
    let mut pss = None;
    let mut anon = None;
    let mut swap = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "Rss" => &mut rss,
            "Pss" => &mut pss,
            "Anonymous" => &mut anon,
            "Swap" => &mut swap,
            _ => continue,
        };
        *slot = parse_kb(rest);
    }
    ProcessMemory {
        rss_bytes: rss,
        pss_bytes: pss,
        anon_bytes: anon,
        file_bytes: rss.zip(anon).map(|(r, a)| r.saturating_sub(a)),
        swap_bytes: swap,
        ..ProcessMemory::default()
    }
}

/// `"   1234 kB"` → 1234 × 1024; anything else → `None`.
fn parse_kb(rest: &str) -> Option<u64> {
    let mut words = rest.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | Some("KB") | Some("kb") => n.checked_mul(1024),
        _ => None,
    }
}

/// The cgroup v2 path of this process: the `0::<path>` line of `/proc/self/cgroup`.
pub(crate) fn parse_cgroup_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/') && !p.split('/').any(|c| c == ".."))
}

/// The selected fields of `memory.stat` (`key value` lines, bytes).
pub(crate) fn parse_memory_stat(text: &str, into: &mut CgroupMemory) {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let slot = match key {
            "anon" => &mut into.anon_bytes,
            "file" => &mut into.file_bytes,
            "kernel" => &mut into.kernel_bytes,
            "shmem" => &mut into.shmem_bytes,
            "sock" => &mut into.sock_bytes,
            _ => continue,
        };
        *slot = value.parse().ok();
    }
}

/// `memory.current` / `memory.max`: a number of bytes, or `max` (no limit: `None`).
pub(crate) fn parse_bytes_or_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn read_cgroup() -> Option<CgroupMemory> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = parse_cgroup_path(&text)?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    // The root cgroup has no `memory.current`: no controller to report on.
    let current = std::fs::read_to_string(dir.join("memory.current")).ok()?;
    let mut c = CgroupMemory {
        path: path.to_string(),
        current_bytes: parse_bytes_or_max(&current),
        max_bytes: std::fs::read_to_string(dir.join("memory.max"))
            .ok()
            .and_then(|t| parse_bytes_or_max(&t)),
        ..CgroupMemory::default()
    };
    if let Ok(stat) = std::fs::read_to_string(dir.join("memory.stat")) {
        parse_memory_stat(&stat, &mut c);
    }
    Some(c)
}

/// glibc's `struct mallinfo2` (glibc ≥ 2.33): ten `size_t` fields.
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

#[cfg(target_os = "linux")]
fn glibc_mallinfo2() -> Option<GlibcMallocStats> {
    use std::sync::OnceLock;
    type MallInfo2Fn = unsafe extern "C" fn() -> MallInfo2;
    static FUNCTION: OnceLock<Option<MallInfo2Fn>> = OnceLock::new();
    let f = (*FUNCTION.get_or_init(|| {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only looks the symbol
        // up; a null result means absent (musl, glibc before 2.33).
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
        // SAFETY: glibc's `mallinfo2` has exactly this signature (no arguments, returns the
        // struct by value), declared in <malloc.h>.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, MallInfo2Fn>(p) })
    }))?;
    // SAFETY: the function is glibc's `mallinfo2`, thread-safe (it takes each arena's lock).
    let m = unsafe { f() };
    Some(GlibcMallocStats {
        system_bytes: (m.arena as u64).saturating_add(m.hblkhd as u64),
        in_use_bytes: (m.uordblks as u64).saturating_add(m.hblkhd as u64),
        free_bytes: m.fordblks as u64,
        releasable_bytes: m.keepcost as u64,
    })
}

#[cfg(not(target_os = "linux"))]
fn glibc_mallinfo2() -> Option<GlibcMallocStats> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "\
55d0c0a00000-7ffd1a5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               12345 kB
Pss:               10000 kB
Pss_Anon:           8000 kB
Pss_File:           2000 kB
Pss_Shmem:             0 kB
Shared_Clean:       2345 kB
Anonymous:          8000 kB
Swap:                 12 kB
SwapPss:              12 kB
Locked:                0 kB
";

    #[test]
    fn smaps_rollup_fields() {
        let m = parse_smaps_rollup(ROLLUP);
        assert_eq!(m.rss_bytes, Some(12345 * 1024));
        assert_eq!(m.pss_bytes, Some(10000 * 1024));
        assert_eq!(m.anon_bytes, Some(8000 * 1024));
        assert_eq!(m.file_bytes, Some(4345 * 1024));
        assert_eq!(m.swap_bytes, Some(12 * 1024));
    }

    #[test]
    fn odd_smaps_content_never_panics() {
        for text in [
            "",
            "Rss:",
            "Rss: kB",
            "Rss: -5 kB",
            "Rss: 99999999999999999999 kB",
            "Rss: 18446744073709551615 kB",
            "Rss: 12 MB",
            "Rss 12 kB",
            ":::\n\u{0}\u{202e}",
            "Anonymous: 10 kB\nRss: 5 kB",
        ] {
            let m = parse_smaps_rollup(text);
            assert!(
                m.rss_bytes.is_none() || text.ends_with("Rss: 5 kB"),
                "{text:?}"
            );
        }
        // Anonymous larger than Rss (a torn read): the file part saturates at 0.
        let m = parse_smaps_rollup("Anonymous: 10 kB\nRss: 5 kB");
        assert_eq!(m.file_bytes, Some(0));
    }

    #[test]
    fn cgroup_files() {
        assert_eq!(
            parse_cgroup_path("0::/system.slice/app.service\n"),
            Some("/system.slice/app.service")
        );
        assert_eq!(
            parse_cgroup_path("12:memory:/docker/abc\n0::/\n"),
            Some("/")
        );
        assert_eq!(
            parse_cgroup_path("12:memory:/docker/abc\n"),
            None,
            "v1 only"
        );
        assert_eq!(parse_cgroup_path("0::/../../etc"), None);
        assert_eq!(parse_cgroup_path(""), None);
        assert_eq!(parse_bytes_or_max("max\n"), None);
        assert_eq!(parse_bytes_or_max("536870912\n"), Some(512 << 20));
        assert_eq!(parse_bytes_or_max("-1"), None);
        let mut c = CgroupMemory::default();
        parse_memory_stat(
            "anon 1000\nfile 2000\nkernel 30\nkernel_stack 16\nshmem x\nsock\n\nfoo 1 2 3\n",
            &mut c,
        );
        assert_eq!(c.anon_bytes, Some(1000));
        assert_eq!(c.file_bytes, Some(2000));
        assert_eq!(c.kernel_bytes, Some(30));
        assert_eq!(c.shmem_bytes, None);
        assert_eq!(c.sock_bytes, None);
    }

    #[test]
    fn this_process_has_an_rss_and_glibc_figures() {
        let m = process_memory();
        let rss = m.rss_bytes.expect("smaps_rollup on Linux");
        assert!(rss > 0);
        assert!(m.anon_bytes.unwrap() <= rss);
        #[cfg(target_env = "gnu")]
        {
            let g = m.glibc_malloc.expect("glibc has mallinfo2");
            assert!(g.in_use_bytes <= g.system_bytes);
        }
    }

    #[test]
    fn old_and_partial_json_reads() {
        let m: ProcessMemory = serde_json::from_str("{}").unwrap();
        assert_eq!(m, ProcessMemory::default());
        let m: ProcessMemory =
            serde_json::from_str(r#"{"rss_bytes": 5, "future_field": 1}"#).unwrap();
        assert_eq!(m.rss_bytes, Some(5));
        assert_eq!(
            serde_json::to_string(&ProcessMemory::default()).unwrap(),
            "{}"
        );
    }
}
