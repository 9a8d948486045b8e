//! The lowest floor: fork-safe locks, the internal allocator, single-writer cells and thread
//! slots. Imports nothing of the crate.

pub(crate) mod internal_alloc;
pub(crate) mod lock;
pub(crate) mod single_writer;
pub(crate) mod thread_slot;
