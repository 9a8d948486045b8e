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

mod memo;
mod native;
mod objects;
mod rules;
mod walk;

pub(crate) use walk::walk;

/// Hands the loader gate and framehop's lock to the `pthread_atfork` handlers.
pub(crate) fn each_fork_lock(f: &mut dyn FnMut(&'static dyn crate::sys::fork_mutex::ForkLock)) {
    f(&objects::LOADER_GATE);
    f(&rules::FRAMEHOP);
}

#[cfg(test)]
mod tests;
