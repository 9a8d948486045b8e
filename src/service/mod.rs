//! Running inside a service: the background reporter and the environment configuration.

pub(crate) mod config;
// Not referenced by name: its constructor runs before `main`.
#[cfg(feature = "http")]
pub mod http;
pub(crate) mod reporter;
mod startup;
