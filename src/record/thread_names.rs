//! Names of the threads that allocated, for per-thread attribution in reports.

use crate::sys::fork_mutex::ForkMutex;
use crate::sys::table_alloc::{Map, new_map};

/// Threads remembered at most; beyond this, exited threads are forgotten first, and a thread
/// that still finds no room is reported by index only.
const MAX_THREADS: usize = 4096;

#[derive(Clone, Copy)]
struct Entry {
    name: [u8; 16],
    len: u8,
    exited: bool,
}

static REGISTRY: ForkMutex<Option<Map<u32, Entry>>> = ForkMutex::new(None);

/// Remembers the calling thread's OS name under `index`. Never allocates through the wrapper.
pub(crate) fn register(index: u32) {
    let mut name = [0u8; 16];
    // SAFETY: the buffer is 16 bytes, the size Linux's thread names are limited to, and
    // `pthread_self` is always a valid handle for the calling thread.
    let rc = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), name.len())
    };
    let mut len = if rc == 0 {
        name.iter().position(|&b| b == 0).unwrap_or(0)
    } else {
        0
    };
    // SAFETY: getpid and gettid have no preconditions.
    let is_main = unsafe { libc::getpid() == libc::gettid() };
    if is_main {
        name[..4].copy_from_slice(b"main");
        len = 4;
    }
    let entry = Entry {
        name,
        len: len as u8,
        exited: false,
    };
    let mut guard = REGISTRY.lock();
    let map = guard.get_or_insert_with(new_map);
    if map.len() >= MAX_THREADS {
        map.retain(|_, e| !e.exited);
    }
    if map.len() < MAX_THREADS && map.try_reserve(1).is_ok() {
        map.insert(index, entry);
    }
}

pub(crate) fn mark_exited(index: u32) {
    let mut guard = REGISTRY.lock();
    if let Some(e) = guard.as_mut().and_then(|m| m.get_mut(&index)) {
        e.exited = true;
    }
}

/// The name of thread `index`: its OS name, or `thread-<index>`.
pub(crate) fn name(index: u32) -> String {
    if index == u32::MAX {
        return "(other threads)".to_string();
    }
    let entry = REGISTRY
        .lock()
        .as_ref()
        .and_then(|m| m.get(&index).copied());
    match entry {
        Some(e) if e.len > 0 => String::from_utf8_lossy(&e.name[..e.len as usize]).into_owned(),
        _ => format!("thread-{index}"),
    }
}

/// Hands this module's locks to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    f(&REGISTRY);
}
