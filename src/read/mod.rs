//! Reading what the process recorded: symbols (`elf`) and offline symbolization (`offline`).

pub(crate) mod elf;
pub mod offline;
