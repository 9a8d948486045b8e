//! Reading what was recorded: snapshots and `Profile`, symbolization, site names, mappings.

pub mod mappings;
pub(crate) mod profile;
mod profiler_work;
pub(crate) mod site_name;
pub mod symbolize;

pub(crate) use profiler_work::profiler_work;
