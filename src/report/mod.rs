//! Renderers of a [`Profile`](crate::Profile): JSON (schema v1), pprof, flamegraph.

pub mod flamegraph;
pub mod json;
pub mod mappings;
#[cfg(feature = "pprof")]
pub mod pprof;
