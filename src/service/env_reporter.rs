//! The reporter the `HEAPSAMPLER` variable asks for: started before `main`, or built from the
//! variable by the program ([`Reporter::from_env`]).

use super::env_config::EnvConfig;
use super::reporter::{Reporter, set_env_reporter};
use crate::read::profiler_work;
use std::path::PathBuf;

impl Reporter {
    /// A reporter configured by the `HEAPSAMPLER` environment variable as it was at process
    /// start (`dir` defaults to `heap-reports`, `period` and `keep` to the defaults above), or
    /// `None` when it says `enabled=0`.
    ///
    /// When the variable names a `dir`, a reporter for it was already started before `main`
    /// (see [`env_reporter`](crate::env_reporter)); starting this one replaces it (see [`start`](Self::start)).
    /// This is for programs that start reporting themselves but take `dir`, `period` and
    /// `keep` from the operator: to hold the handle, or after daemonizing (a `fork` keeps no
    /// threads).
    ///
    /// ```
    /// if let Some(reporter) = heapsampler::Reporter::from_env() {
    ///     println!("would write to {}", reporter.dir().display());
    /// }
    /// ```
    pub fn from_env() -> Option<Reporter> {
        profiler_work(|| {
            let cfg = crate::service::env_config::env_config();
            if cfg.enabled == Some(false) {
                return None;
            }
            Some(configured(
                cfg.dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("heap-reports")),
                cfg,
            ))
        })
    }
}

/// Starts the reporter the variable asks for (called from the constructor).
pub(crate) fn start_env_reporter(cfg: &EnvConfig) {
    let Some(dir) = cfg.dir.clone() else { return };
    match configured(dir, cfg).start_inner(false) {
        Ok(handle) => set_env_reporter(handle),
        Err(e) => crate::service::env_config::warn(&format!(
            "HEAPSAMPLER: cannot start the reporter: {e}"
        )),
    }
}

/// A reporter writing to `dir` with the variable's `period`, `keep`, `mode` and `symbolize`
/// where it sets them, the defaults elsewhere.
fn configured(dir: PathBuf, cfg: &EnvConfig) -> Reporter {
    let mut r = Reporter::new(dir);
    if let Some(p) = cfg.period {
        r = r.every(p);
    }
    if let Some(k) = cfg.keep {
        r = r.keep(k);
    }
    if let Some(m) = cfg.mode {
        r = r.mode(m);
    }
    if let Some(on) = cfg.symbolize {
        r = r.symbolize(on);
    }
    r
}
