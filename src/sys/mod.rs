//! The lowest floor: the hot thread state and its reentrancy guard, fork-safe locks, the
//! internal allocator, single-writer cells and thread slots. Imports nothing of the crate.

pub(crate) mod fork_mutex;
pub(crate) mod guard;
pub(crate) mod single_writer;
pub(crate) mod table_alloc;
pub(crate) mod thread_slot;
pub(crate) mod thread_state;
