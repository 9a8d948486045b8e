//! Address → function, file, line, at report time only, with a process-wide cache of the
//! resolved frames.
//!
//! On Linux a batch of addresses (one report) maps each object file it needs, parses only the
//! debug info its addresses need, and unmaps it all at the end (`crate::read::elf`): a first
//! report costs tens of milliseconds, and the process keeps only the resolved frames, their
//! names stored once. Elsewhere the `backtrace` crate's symbolizer is used, which keeps the
//! debug info it loaded for the life of the process. Everything runs under the reentrancy
//! guard, so its allocations are profiler overhead, never a user site.

pub use crate::read::frame::Frame;
use crate::sys::fork_mutex::{ForkLock, ForkMutex};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Bound on cached addresses; past it the cache is cleared and starts over.
const MAX_CACHED: usize = 1 << 18;

/// A resolved frame as cached: names shared by every frame that has them.
struct Compact {
    function: Option<Arc<str>>,
    file: Option<Arc<str>>,
    line: Option<u32>,
}

#[derive(Default)]
struct Cache {
    names: HashSet<Arc<str>>,
    frames: HashMap<u64, Box<[Compact]>>,
}

impl Cache {
    fn intern(&mut self, s: Option<String>) -> Option<Arc<str>> {
        let s = s?;
        if let Some(known) = self.names.get(s.as_str()) {
            return Some(known.clone());
        }
        let name: Arc<str> = s.into();
        self.names.insert(name.clone());
        Some(name)
    }

    fn get(&self, address: u64) -> Option<Arc<[Frame]>> {
        let frames = self.frames.get(&address)?;
        Some(
            frames
                .iter()
                .map(|c| Frame {
                    address,
                    function: c.function.as_deref().map(str::to_string),
                    file: c.file.as_deref().map(str::to_string),
                    line: c.line,
                })
                .collect(),
        )
    }

    fn insert(&mut self, address: u64, frames: &[Frame]) {
        if self.frames.len() >= MAX_CACHED {
            self.frames.clear();
            self.names.clear();
        }
        let compact = frames
            .iter()
            .map(|f| Compact {
                function: self.intern(f.function.clone()),
                file: self.intern(f.file.clone()),
                line: f.line,
            })
            .collect();
        self.frames.insert(address, compact);
    }
}

static CACHE: ForkMutex<Option<Cache>> = ForkMutex::new(None);
/// Held around every resolution: one batch at a time maps debug info (two reports at once
/// would hold two copies), and, where the `backtrace` crate's symbolizer is used, around
/// every call into it — it serialises calls with a lock of its own that `fork()` cannot see:
/// the prepare handler takes this one first, so no thread is inside the symbolizer at a fork
/// and the child's copy of that lock is free.
static RESOLVING: ForkMutex<()> = ForkMutex::new(());

/// Symbolizes one address (all its inlined frames, innermost first).
///
/// To symbolize many addresses, [`resolve_all`] loads the debug info once for all of them.
///
/// ```
/// let frames = heapsampler::symbolize::resolve(main as usize as u64 + 1);
/// assert!(!frames.is_empty());
/// # fn main() {}
/// ```
pub fn resolve(address: u64) -> Arc<[Frame]> {
    resolve_all(&[address])
        .pop()
        .unwrap_or_else(|| Arc::new([]))
}

/// Symbolizes a batch of addresses: `out[i]` holds the frames of `addresses[i]` (all its
/// inlined frames, innermost first; one frame without a function when nothing is known).
/// Addresses not in the cache are resolved together, loading each object's debug info once.
///
/// ```
/// let here = main as usize as u64 + 1;
/// let out = heapsampler::symbolize::resolve_all(&[here, here]);
/// assert_eq!(out.len(), 2);
/// # fn main() {}
/// ```
pub fn resolve_all(addresses: &[u64]) -> Vec<Arc<[Frame]>> {
    resolve_batch(addresses, true)
}

/// Like [`resolve_all`], but what is not in the cache is resolved without being added to it:
/// for addresses from outside the process (the endpoint's `/debug/pprof/symbol`), which must
/// not fill the cache or evict the program's own.
#[cfg(feature = "http")]
pub(crate) fn resolve_all_transient(addresses: &[u64]) -> Vec<Arc<[Frame]>> {
    resolve_batch(addresses, false)
}

fn resolve_batch(addresses: &[u64], keep: bool) -> Vec<Arc<[Frame]>> {
    register_fork_locks();
    let _guard = crate::sys::guard::enter_guard();
    let mut out: Vec<Option<Arc<[Frame]>>> = {
        let cache = CACHE.lock_outermost();
        addresses
            .iter()
            .map(|&a| cache.as_ref().and_then(|c| c.get(a)))
            .collect()
    };
    let mut missing: Vec<u64> = addresses
        .iter()
        .zip(&out)
        .filter(|(_, hit)| hit.is_none())
        .map(|(&a, _)| a)
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        let resolving = RESOLVING.lock_outermost();
        let resolved = backend(&missing);
        drop(resolving);
        if keep {
            let mut cache = CACHE.lock_outermost();
            let cache = cache.get_or_insert_with(Cache::default);
            for (&a, frames) in missing.iter().zip(&resolved) {
                cache.insert(a, frames);
            }
        }
        for (slot, &a) in out.iter_mut().zip(addresses) {
            if slot.is_none() {
                let i = missing.binary_search(&a).unwrap_or(0);
                *slot = Some(resolved[i].as_slice().into());
            }
        }
    }
    out.into_iter().map(Option::unwrap_or_default).collect()
}

#[cfg(target_os = "linux")]
fn backend(addresses: &[u64]) -> Vec<Vec<Frame>> {
    crate::read::elf::resolve_in_process(addresses)
}

#[cfg(not(target_os = "linux"))]
fn backend(addresses: &[u64]) -> Vec<Vec<Frame>> {
    addresses
        .iter()
        .map(|&address| {
            let mut frames = Vec::new();
            backtrace::resolve(address as usize as *mut core::ffi::c_void, |sym| {
                frames.push(Frame {
                    address,
                    function: sym.name().map(|n| format!("{n:#}")),
                    file: sym.filename().map(|p| p.display().to_string()),
                    line: sym.lineno(),
                });
            });
            if frames.is_empty() {
                frames.push(Frame {
                    address,
                    function: None,
                    file: None,
                    line: None,
                });
            }
            frames
        })
        .collect()
}

pub(crate) fn is_allocator_frame(f: &Frame) -> bool {
    f.function
        .as_deref()
        .is_some_and(crate::read::site_name::is_allocator_function)
}

/// Symbolizes a stack of raw addresses, dropping the allocator's own leading frames.
pub(crate) fn frames_of(addresses: &[u64]) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    for frames in resolve_all(addresses) {
        out.extend(frames.iter().cloned());
    }
    drop_allocator_frames(&mut out);
    out
}

/// Drops a stack's leading allocator frames (the wrapper, std's allocation shims): the one
/// rule for where the code that asked for memory begins, live or read back from a report. A
/// stack of allocator frames only is left whole.
pub(crate) fn drop_allocator_frames(frames: &mut Vec<Frame>) {
    let skip = frames.iter().take_while(|f| is_allocator_frame(f)).count();
    if skip < frames.len() {
        frames.drain(..skip);
    }
}

/// Resolves a batch of addresses into the cache (one load of the debug info), so that
/// per-stack lookups after it do not each load it.
pub(crate) fn prefetch(addresses: &[u64]) {
    drop(resolve_all(addresses));
}

/// Empties the cache (for measuring cold symbolization).
///
/// ```
/// heapsampler::symbolize::clear_cache();
/// ```
pub fn clear_cache() {
    register_fork_locks();
    let _guard = crate::sys::guard::enter_guard();
    *CACHE.lock_outermost() = None;
}

/// The symbolizer's lock and the symbol cache's, in the order the `pthread_atfork` handlers
/// take them (ahead of every table's), so a child can symbolize.
static FORK_LOCKS: &[&dyn ForkLock] = &[&RESOLVING, &CACHE];

/// Hands [`FORK_LOCKS`] to the fork handlers; before either lock is first taken.
fn register_fork_locks() {
    crate::record::lifecycle::register_outer_locks(&FORK_LOCKS);
}

/// Registers the locks before `main`, before any thread could hold them (the registration in
/// [`resolve`] and [`clear_cache`] covers other platforms).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_FORK_LOCKS: extern "C" fn() = {
    extern "C" fn register() {
        register_fork_locks();
    }
    register
};
