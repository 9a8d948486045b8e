//! Running inside a service: the background reporter and the environment configuration.

pub(crate) mod config;
pub(crate) mod reporter;
