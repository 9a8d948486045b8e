//! Running inside a service: the background reporter and the environment configuration.

pub(crate) mod config;
#[cfg(feature = "http")]
pub mod http;
pub(crate) mod reporter;
