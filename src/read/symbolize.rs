//! Address → function, file, line, at report time only, with a process-wide cache.
//!
//! Resolution is slow the first time (the debug info is loaded: tens of milliseconds and
//! thousands of allocations) and about a hash lookup after. It always runs under the
//! reentrancy guard, so its allocations are profiler overhead, never a user site.

use crate::record::countdown;
use crate::sys::lock::ForkMutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

type Cache = HashMap<u64, Arc<[Frame]>>;

/// Bound on cached addresses; past it the cache is cleared and starts over.
const MAX_CACHED: usize = 1 << 18;

static CACHE: ForkMutex<Option<Cache>> = ForkMutex::new(None);
/// Held around every call into the `backtrace` crate's symbolizer, which serialises calls with
/// a lock of its own that `fork()` cannot see: the prepare handler takes this one first, so no
/// thread is inside the symbolizer at a fork and the child's copy of that lock is free (a
/// forked child symbolizing — a leak check finishing — waited for ever otherwise).
static RESOLVING: ForkMutex<()> = ForkMutex::new(());

/// Symbolizes one address (all its inlined frames, innermost first).
pub fn resolve(address: u64) -> Arc<[Frame]> {
    let _guard = countdown::enter_guard();
    if let Some(hit) = CACHE.lock().as_ref().and_then(|c| c.get(&address).cloned()) {
        return hit;
    }
    let mut frames = Vec::new();
    let resolving = RESOLVING.lock();
    backtrace::resolve(address as usize as *mut core::ffi::c_void, |sym| {
        frames.push(Frame {
            address,
            function: sym.name().map(|n| format!("{n:#}")),
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
        });
    });
    drop(resolving);
    if frames.is_empty() {
        frames.push(Frame {
            address,
            function: None,
            file: None,
            line: None,
        });
    }
    let frames: Arc<[Frame]> = frames.into();
    let mut cache = CACHE.lock();
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(address, frames.clone());
    frames
}

pub(crate) fn is_allocator_frame(f: &Frame) -> bool {
    f.function
        .as_deref()
        .is_some_and(crate::read::site_name::is_allocator_function)
}

/// Symbolizes a stack of raw addresses, dropping the allocator's own leading frames.
pub(crate) fn frames_of(addresses: &[u64]) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    for &a in addresses {
        out.extend(resolve(a).iter().cloned());
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

/// Empties the cache (for measuring cold symbolization).
pub fn clear_cache() {
    let _guard = countdown::enter_guard();
    if let Some(c) = CACHE.lock().as_mut() {
        c.clear();
    }
}

/// Hands the symbolizer's lock and the symbol cache's to the `pthread_atfork` handlers, so a
/// child can symbolize.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::lock::ForkLock)) {
    f(&RESOLVING);
    f(&CACHE);
}

/// One symbolized frame. An address with inlined calls yields several frames.
///
/// ```
/// let f = heapsampler::Frame { address: 0x1234, function: Some("main".into()), file: None, line: None };
/// assert_eq!(f.function.as_deref(), Some("main"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The return address this frame was resolved from.
    pub address: u64,
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}
