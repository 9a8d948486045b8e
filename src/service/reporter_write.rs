//! Writing one report: the snapshot, symbolization, leak detection and rendering, the atomic
//! write and the rotation, and what the outcome does to the reporter's status.

use super::report_files::{file_name, own_files};
use super::reporter::{Shared, State};
use crate::read::mappings;
use crate::read::profile::snapshot;
use crate::read::profiler_work;
use crate::report::json::Baseline;
use crate::report::json::schema::Report;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

impl Shared {
    /// Writes one report (the final one when `last`), records the outcome, and prints a
    /// distinct error once.
    pub(super) fn write_report(&self, last: bool) -> io::Result<PathBuf> {
        profiler_work(|| {
            let mut state = self.state.lock();
            self.write_locked(&mut state, last)
        })
    }

    pub(super) fn write_locked(&self, state: &mut State, last: bool) -> io::Result<PathBuf> {
        if self.finished.load(Ordering::Acquire) {
            return Err(io::Error::other("the reporter has stopped"));
        }
        if last {
            self.finished.store(true, Ordering::Release);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.render(state)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(io::Error::other(format!(
                    "internal error while reporting: {what}"
                )))
            });
        let mut status = self.status.lock();
        match &result {
            Ok(path) => {
                status.reports_written += 1;
                status.last_path = Some(path.clone());
                status.last_error = None;
                if state.printed_error.take().is_some() {
                    crate::service::env_config::warn(&format!(
                        "heap reports resumed: wrote {}",
                        path.display()
                    ));
                }
            }
            Err(e) => {
                let message = e.to_string();
                status.errors += 1;
                status.last_error = Some(message.clone());
                if state.printed_error.as_ref() != Some(&message) {
                    crate::service::env_config::warn(&format!(
                        "heap report not written: {message}"
                    ));
                    state.printed_error = Some(message);
                }
            }
        }
        result
    }

    /// Snapshot, symbolize, detect, render, write, rotate.
    fn render(&self, state: &mut State) -> io::Result<PathBuf> {
        // Not `Profile::symbolize`: the report symbolizes each distinct address once into its
        // `locations`, which costs a cache lookup per address instead of a copy of every
        // frame of every site.
        let profile = snapshot();
        let suspects = state.detector.observe(&profile);
        let report = Report::build_with(
            &profile,
            state.baseline.as_ref(),
            suspects,
            mappings::current(),
            self.config.symbolize,
        );
        // Rates always cover the time since the previous attempt, written or not: each
        // report states its own window.
        state.baseline = Some(Baseline::of(&profile));
        drop(profile);

        let dir = &self.config.dir;
        crate::report::files::create_dir(dir, self.config.mode).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create directory {}: {e}", dir.display()),
            )
        })?;
        let existing = own_files(dir, self.pid)?;
        // Continue after the files already there: with pid reuse (pid 1 in containers) a new
        // process must not overwrite an earlier one's newest reports.
        let seq = state.seq.max(existing.last().map_or(0, |&(n, _)| n + 1));
        let path =
            report.write_atomic_with_mode(dir, &file_name(self.pid, seq), self.config.mode)?;
        state.seq = seq + 1;
        let excess = (existing.len() + 1).saturating_sub(self.config.keep);
        for (_, old) in existing.iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }
}
