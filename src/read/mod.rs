//! Reading what was recorded: snapshots and `Profile`, symbolization (in process, `elf`, and
//! for offline use), site names, mappings.

mod dwarf;
mod dwarf_function;
#[cfg(test)]
mod dwarf_oracle;
mod dwarf_unit;
pub(crate) mod elf;
pub(crate) mod frame;
pub mod jemalloc_stats;
pub mod mappings;
pub mod process_memory;
pub(crate) mod profile;
mod profiler_work;
pub(crate) mod site_name;
pub mod symbolize;

pub(crate) use profiler_work::profiler_work;
