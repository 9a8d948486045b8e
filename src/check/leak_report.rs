//! [`LeakReport`]: what a finished leak check found, and its readable rendering.

use crate::read::profile::Frame;
use crate::record::live_record::StackId;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Frames printed per site in a failure message; the full stack stays in [`LeakSite::frames`].
const PRINTED_FRAMES: usize = 16;

use crate::record::heap_stats::HeapStats;

/// Objects allocated at one call site and still live when the check finished.
///
/// ```
/// let site = heapsampler::LeakSite::default();
/// assert!(!site.calls("my_helper"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakSite {
    /// The site's stack id in the process-wide stack table.
    pub stack_id: StackId,
    /// Bytes still live.
    pub bytes: u64,
    /// Objects still live.
    pub objects: u64,
    /// Raw return addresses, innermost first.
    pub addresses: Vec<u64>,
    /// Symbolized frames, innermost first, starting at the first frame outside the allocator
    /// and the standard library's allocation machinery (`alloc::`, `core::`, `hashbrown::`):
    /// the code under test comes first.
    pub frames: Vec<Frame>,
}

impl LeakSite {
    /// Whether a frame's function name contains `needle`.
    ///
    /// ```
    /// let site = heapsampler::LeakSite {
    ///     frames: vec![heapsampler::Frame { function: Some("my_crate::cache_fill".into()), ..Default::default() }],
    ///     ..Default::default()
    /// };
    /// assert!(site.calls("cache_fill"));
    /// ```
    pub fn calls(&self, needle: &str) -> bool {
        self.frames
            .iter()
            .any(|f| f.function.as_deref().is_some_and(|n| n.contains(needle)))
    }
}

/// What a finished [`LeakCheck`](crate::LeakCheck) found: the objects allocated in its scope
/// that are still live, grouped by call site, most bytes first.
///
/// Its `Display` is the message [`LeakCheck::assert_no_leaks`](crate::LeakCheck::assert_no_leaks)
/// panics with.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: heapsampler::Sampler<std::alloc::System> = heapsampler::Sampler::new(std::alloc::System);
/// let check = heapsampler::LeakCheck::start();
/// let kept = Box::leak(Box::new([7u8; 64]));
/// let report = check.finish();
/// assert_eq!(report.leaked_bytes, 64);
/// assert_eq!(report.sites.len(), 1);
/// println!("{report}");
/// # let _ = kept;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakReport {
    /// Bytes leaked: live at finish, allocated in scope, not allowed.
    pub leaked_bytes: u64,
    /// Objects leaked.
    pub leaked_objects: u64,
    /// The leaking sites, most bytes first.
    pub sites: Vec<LeakSite>,
    /// Sites that are live but matched an [`allow`](crate::LeakCheck::allow) pattern.
    pub allowed: Vec<LeakSite>,
    /// The scope's heap usage; `None` when the check ran without counters (more than 256
    /// checks were active at once).
    pub stats: Option<HeapStats>,
}

impl LeakReport {
    /// No leak, and every allocation in scope was recorded.
    ///
    /// ```
    /// assert!(heapsampler::LeakReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.leaked_objects == 0 && self.unrecorded() == 0
    }

    /// Leaking sites whose stack has a function containing `needle`.
    ///
    /// ```
    /// assert!(heapsampler::LeakReport::default().sites_in("helper").is_empty());
    /// ```
    pub fn sites_in(&self, needle: &str) -> Vec<&LeakSite> {
        self.sites.iter().filter(|s| s.calls(needle)).collect()
    }

    fn unrecorded(&self) -> u64 {
        self.stats.map_or(0, |s| s.unrecorded)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_site(f: &mut fmt::Formatter<'_>, site: &LeakSite) -> fmt::Result {
    writeln!(
        f,
        "  {} in {} allocated at:",
        plural(site.bytes, "byte", "bytes"),
        plural(site.objects, "object", "objects")
    )?;
    for (shown, frame) in site.frames.iter().enumerate() {
        let name = frame.function.as_deref().unwrap_or("<unknown>");
        // libtest's and the runtime's frames below the test say nothing about the leak.
        if name.contains("__rust_begin_short_backtrace") || name.starts_with("std::rt::lang_start")
        {
            break;
        }
        if shown == PRINTED_FRAMES {
            writeln!(f, "      ...")?;
            break;
        }
        write!(f, "    {shown:>2}: {name}")?;
        match (&frame.file, frame.line) {
            (Some(file), Some(line)) => writeln!(f, "\n          at {file}:{line}")?,
            (Some(file), None) => writeln!(f, "\n          at {file}")?,
            _ if frame.function.is_none() => writeln!(f, " ({:#x})", frame.address)?,
            _ => writeln!(f)?,
        }
    }
    if site.frames.is_empty() {
        for (i, a) in site.addresses.iter().take(PRINTED_FRAMES).enumerate() {
            writeln!(f, "    {i:>2}: {a:#x}")?;
        }
    }
    Ok(())
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leaked_objects == 0 {
            write!(f, "leak check: no leaks")?;
        } else {
            writeln!(
                f,
                "leak check: {} leaked in {} at {} (allocated in scope, still live at finish)",
                plural(self.leaked_bytes, "byte", "bytes"),
                plural(self.leaked_objects, "object", "objects"),
                plural(self.sites.len() as u64, "site", "sites"),
            )?;
            for site in &self.sites {
                writeln!(f)?;
                write_site(f, site)?;
            }
        }
        let unrecorded = self.unrecorded();
        if unrecorded > 0 {
            write!(
                f,
                "\nleak check incomplete: {} in scope could not be recorded because the \
                 profiler's tables were full (raise heapsampler::set_limits)",
                plural(unrecorded, "object", "objects")
            )?;
        }
        if !self.allowed.is_empty() {
            let bytes: u64 = self.allowed.iter().map(|s| s.bytes).sum();
            let objects: u64 = self.allowed.iter().map(|s| s.objects).sum();
            write!(
                f,
                "\n({} in {} still live but allowed)",
                plural(bytes, "byte", "bytes"),
                plural(objects, "object", "objects")
            )?;
        }
        Ok(())
    }
}
