//! Reading what was recorded: snapshots and `Profile`, symbolization (in process, `elf`, and
//! offline), site names, mappings.

pub(crate) mod elf;
pub mod mappings;
pub mod offline;
pub mod process_memory;
pub(crate) mod profile;
pub(crate) mod site_name;
pub mod symbolize;
