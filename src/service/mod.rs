//! Running inside a service: the background reporter and the environment configuration.

pub(crate) mod env_config;
pub(crate) mod env_reporter;
// Not referenced by name: its constructor runs before `main`.
#[cfg(feature = "http")]
pub mod http;
mod report_files;
pub(crate) mod reporter;
mod reporter_write;
mod startup;
