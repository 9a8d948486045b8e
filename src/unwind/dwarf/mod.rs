//! The default unwinder for exact recording (leak checks, interval 1) and for samples: DWARF
//! CFI unwinding with the unwind rules of the program's frames learnt once per address
//! (through the `framehop` crate) and kept in a table shared by all threads, plus per-thread
//! memos of the last two walks, either replayed when none of the words that decided it
//! changed (a loop may allocate from two places in turn): a few
//! nanoseconds a frame against ~100 ns for `_Unwind_Backtrace`, which searches and interprets
//! the unwind tables again for every frame of every stack (feature `fast-unwind`, on by
//! default).
//!
//! The loaded objects and their `.eh_frame_hdr`/`.eh_frame` (already mapped in memory) are
//! enumerated once with `dl_iterate_phdr`; when a walk reaches an address outside every known
//! object (a library loaded later) the list is rebuilt for the next walk. Stack memory is read
//! only inside the calling thread's live stack, so a wrong rule ends the walk, never faults.
//! Unloading is watched for: the loader counts the objects it ever removed (`dlpi_subs`), and
//! every walk compares that count with the one the object list was built at, so a list that may
//! point into an unloaded object's tables is never used (it is rebuilt, or after
//! [`MAX_REBUILDS`] the system unwinder takes over). Learnt rules belong to one object list.
//!
//! A walk that cannot be replayed whole may still join the previous one: programs sample many
//! stacks that differ only in their inner frames, so when a walk reaches a frame where the
//! previous walk stood (same return address, stack address, and bp where it matters), every
//! word that decided the previous walk from there outward still holds and the lowest word it
//! read is inside this walk's stack, it takes the previous walk's outer frames as they are
//! (~0.42 µs instead of ~0.78 µs a sample at depth 30, see
//! `one_sample_depth_30/sampled_new_stack_x3`).
//!
//! Memory: 64 KiB of rules per object list, framehop's cache (~37 KiB) once per process, and
//! ~12.5 KiB per sampling thread (two memos: the last two walks; a new walk replaces the older).

use crate::sys::internal_alloc::TableAlloc;
use crate::sys::lock::ForkMutex;
use crate::unwind::capture::{FrameSink, MAX_STACK_DEPTH, OwnFunctions};
use core::cell::RefCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder,
};

type Section = &'static [u8];
type Native = UnwinderX86_64<Section, MustNotAllocateDuringUnwind>;
type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// Frames followed at most: the deepest stack kept plus the allocator's own frames.
const MAX_WALK: usize = MAX_STACK_DEPTH + 16;
/// Rebuilds of the object list at most (each leaks the previous list, which other threads may
/// still be reading); past this, walks through unknown objects just stop early.
const MAX_REBUILDS: usize = 16;

mod memo;
mod objects;
mod rules;
mod walk;

use memo::*;
use objects::*;
use rules::*;
pub(crate) use walk::walk;
#[cfg(test)]
use walk::*;

/// Hands the loader gate and framehop's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::lock::ForkLock)) {
    f(&LOADER_GATE);
    f(&FRAMEHOP);
}

#[cfg(test)]
mod tests;
