//! Reading what was recorded: snapshots and `Profile`, symbolization, site names, mappings.

pub mod mappings;
pub(crate) mod profile;
pub(crate) mod site_name;
pub mod symbolize;
