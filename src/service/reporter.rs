//! Background thread writing periodic JSON heap reports.
//!
//! Every period the reporter takes a [`snapshot`](crate::snapshot), feeds it to the
//! [`LeakDetector`], symbolizes its distinct addresses (the symbol cache survives between
//! reports, so only new addresses cost anything), renders the JSON report and writes `heap-<pid>-<seq>.json` into its
//! directory atomically, keeping the newest `keep` files of this process. All of it runs under
//! the profiler's reentrancy guard, so the reporter's own allocations are profiler overhead,
//! never a user site.
//!
//! A failing directory (missing, not a directory, full disk) never stops the program: each
//! distinct error is printed once on stderr and kept in [`ReporterHandle::status`], and the
//! next period tries again (creating the directory if needed).

use super::report_files::own_files;
use crate::leaks::LeakDetector;
use crate::read::profiler_work;
use crate::report::json::{Baseline, DEFAULT_FILE_MODE};
use parking_lot::{Condvar, Mutex};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default time between two reports.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
/// Default number of report files kept per process.
pub const DEFAULT_KEEP: usize = 100;
/// Default number of reports the leak detector looks back over.
pub const DEFAULT_LEAK_WINDOW: usize = 10;
/// The shortest period accepted; shorter ones are raised to it.
const MIN_PERIOD: Duration = Duration::from_millis(1);
/// How long the exit hook waits for a report in progress before giving up on the final one.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Configures and starts the background reporter.
///
/// ```no_run
/// use std::time::Duration;
/// let reports = heapsampler::Reporter::new("heap-reports")
///     .every(Duration::from_secs(60))
///     .keep(100)
///     .start()?;
/// // ... the program runs; a final report is written when `reports` is dropped.
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    pub(super) dir: PathBuf,
    pub(super) period: Duration,
    pub(super) keep: usize,
    pub(super) leak_window: usize,
    pub(super) mode: u32,
    pub(super) symbolize: bool,
}

impl Reporter {
    /// A reporter writing into `dir` (created when missing), every [`DEFAULT_PERIOD`],
    /// keeping [`DEFAULT_KEEP`] files, detecting leaks over [`DEFAULT_LEAK_WINDOW`] reports.
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("heap-reports");
    /// assert_eq!(r.period(), heapsampler::DEFAULT_PERIOD);
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Reporter {
        Reporter {
            dir: dir.into(),
            period: DEFAULT_PERIOD,
            keep: DEFAULT_KEEP,
            leak_window: DEFAULT_LEAK_WINDOW,
            mode: DEFAULT_FILE_MODE,
            symbolize: true,
        }
    }

    /// Whether reports carry function names, files and lines (`true`, the default) or only
    /// addresses and mappings (`false`): the process then never loads debug info (no memory
    /// or time spent on it), and `heapsampler symbolize REPORT --binary PATH` fills the names
    /// in later from the same binary. `HEAPSAMPLER=symbolize=0` says the same.
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("r").symbolize(false);
    /// assert!(!r.symbolizes());
    /// ```
    pub fn symbolize(mut self, on: bool) -> Reporter {
        self.symbolize = on;
        self
    }

    /// Whether reports are symbolized in process.
    ///
    /// ```
    /// assert!(heapsampler::Reporter::new("r").symbolizes());
    /// ```
    pub fn symbolizes(&self) -> bool {
        self.symbolize
    }

    /// Creates report files with permission bits `mode` (less the umask; only the `0o777`
    /// bits count) instead of [`DEFAULT_FILE_MODE`], `0o600`: reports hold return and load
    /// addresses and the program's path, so only widen this for a group that needs it. A
    /// directory the reporter creates gets the same bits plus search where read is granted.
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("r").mode(0o640);
    /// assert_eq!(r.file_mode(), 0o640);
    /// ```
    pub fn mode(mut self, mode: u32) -> Reporter {
        self.mode = mode & 0o777;
        self
    }

    /// The permission bits report files are created with.
    ///
    /// ```
    /// assert_eq!(heapsampler::Reporter::new("r").file_mode(), 0o600);
    /// ```
    pub fn file_mode(&self) -> u32 {
        self.mode
    }

    /// Writes a report every `period` (at least 1 ms).
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("r").every(std::time::Duration::from_secs(5));
    /// assert_eq!(r.period().as_secs(), 5);
    /// ```
    pub fn every(mut self, period: Duration) -> Reporter {
        self.period = period.max(MIN_PERIOD);
        self
    }

    /// Keeps the newest `n` report files of this process (at least 1), deleting older ones.
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("r").keep(10);
    /// assert_eq!(r.kept(), 10);
    /// ```
    pub fn keep(mut self, n: usize) -> Reporter {
        self.keep = n.max(1);
        self
    }

    /// Looks for leaks over the last `k` reports (at least
    /// [`LeakDetector::MIN_REPORTS`]: fewer cannot show a trend; at most
    /// [`LeakDetector::MAX_WINDOW`]), against the highest level
    /// each site held in all the reports before them (see [`LeakDetector`]).
    ///
    /// ```
    /// let r = heapsampler::Reporter::new("r").leak_window(20);
    /// assert_eq!(r.leak_window_len(), 20);
    /// ```
    pub fn leak_window(mut self, k: usize) -> Reporter {
        self.leak_window = k.clamp(LeakDetector::MIN_REPORTS, LeakDetector::MAX_WINDOW);
        self
    }

    /// The directory reports are written to.
    ///
    /// ```
    /// assert_eq!(heapsampler::Reporter::new("r").dir(), std::path::Path::new("r"));
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The time between two reports.
    ///
    /// ```
    /// assert_eq!(heapsampler::Reporter::new("r").period(), heapsampler::DEFAULT_PERIOD);
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How many report files are kept.
    ///
    /// ```
    /// assert_eq!(heapsampler::Reporter::new("r").kept(), heapsampler::DEFAULT_KEEP);
    /// ```
    pub fn kept(&self) -> usize {
        self.keep
    }

    /// How many reports the leak detector looks back over.
    ///
    /// ```
    /// assert_eq!(heapsampler::Reporter::new("r").leak_window_len(), heapsampler::DEFAULT_LEAK_WINDOW);
    /// ```
    pub fn leak_window_len(&self) -> usize {
        self.leak_window
    }

    /// Starts the background thread (named `heapsampler-reporter`). The first report is
    /// written one period from now. A missing or unwritable directory is not an error here:
    /// it is reported on stderr and in [`ReporterHandle::status`], and retried every period.
    ///
    /// Explicit calls win over the environment: when `HEAPSAMPLER` started a reporter (see
    /// [`env_reporter`]), this one replaces it, whatever its directory. The variable's
    /// reporter writes its final report (closing its series of files) and its thread ends
    /// before this one starts; [`env_reporter`] returns `None` from then on. In the same
    /// directory the numbering of the files goes on. The new reporter has exactly the settings
    /// of this builder (the variable's `period` and `keep` do not carry over; use
    /// [`from_env`](Self::from_env) to start from them); the variable's `interval` stays in
    /// force unless the program calls [`set_sample_interval`](crate::set_sample_interval).
    ///
    /// Fails only when the thread cannot be spawned, or when another reporter the program
    /// started already writes to the same directory (their file names would collide).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-start-{}", std::process::id()));
    /// let reports = heapsampler::Reporter::new(&dir).start()?;
    /// let path = reports.dump_now()?;
    /// assert!(path.exists());
    /// drop(reports); // writes a final report
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start(self) -> io::Result<ReporterHandle> {
        self.start_inner(true)
    }

    /// Starts the reporter; `replace_env`: stop the `HEAPSAMPLER` reporter first (every
    /// reporter but that one itself).
    pub(super) fn start_inner(self, replace_env: bool) -> io::Result<ReporterHandle> {
        profiler_work(|| {
            let abs_dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
            let pid = std::process::id();
            let shared = Arc::new(Shared {
                abs_dir,
                pid,
                state: Mutex::new(State {
                    seq: 1,
                    baseline: None,
                    detector: LeakDetector::new(self.leak_window),
                    printed_error: None,
                }),
                stop: Mutex::new(false),
                wake: Condvar::new(),
                status: Mutex::new(ReporterStatus::default()),
                finished: AtomicBool::new(false),
                config: self,
            });
            {
                let mut registry = REGISTRY.lock();
                registry.retain(|w| w.strong_count() > 0);
                let env = ENV_REPORTER.get().map(|h| Arc::as_ptr(&h.shared));
                let clash = registry.iter().filter_map(Weak::upgrade).find(|o| {
                    o.pid == pid
                        && o.abs_dir == shared.abs_dir
                        && !o.finished.load(Ordering::Acquire)
                        && !(replace_env && env == Some(Arc::as_ptr(o)))
                });
                if let Some(other) = clash {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "a heapsampler reporter of this process already writes to {}",
                            other.abs_dir.display()
                        ),
                    ));
                }
                registry.push(Arc::downgrade(&shared));
            }
            if replace_env {
                stop_env_reporter();
            }
            install_exit_hook();
            let for_thread = shared.clone();
            let thread = std::thread::Builder::new()
                .name("heapsampler-reporter".into())
                .spawn(move || run(for_thread))?;
            Ok(ReporterHandle {
                shared,
                thread: Mutex::new(Some(thread)),
            })
        })
    }
}

/// A running reporter. Dropping it stops the thread promptly and writes a final report.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("hs-handle-{}", std::process::id()));
/// let handle = heapsampler::Reporter::new(&dir).start()?;
/// handle.dump_now()?;
/// assert_eq!(handle.status().reports_written, 1);
/// let final_report = handle.stop()?;
/// assert!(final_report.exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReporterHandle {
    shared: Arc<Shared>,
    /// Behind a lock so that the `HEAPSAMPLER` reporter, which lives in a static, can be
    /// stopped when the program starts its own.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a reporter has done so far.
///
/// ```
/// let s = heapsampler::ReporterStatus::default();
/// assert_eq!(s.reports_written, 0);
/// assert!(s.last_error.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReporterStatus {
    /// Reports written successfully.
    pub reports_written: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// The error of the latest attempt; `None` once a write succeeds again.
    pub last_error: Option<String>,
    /// The file the latest successful report went to.
    pub last_path: Option<PathBuf>,
}

pub(super) struct Shared {
    pub(super) config: Reporter,
    pub(super) abs_dir: PathBuf,
    /// The process that started the reporter: a forked child has no reporter thread.
    pub(super) pid: u32,
    pub(super) state: Mutex<State>,
    pub(super) stop: Mutex<bool>,
    pub(super) wake: Condvar,
    pub(super) status: Mutex<ReporterStatus>,
    /// The final report was written (or attempted): no more reports.
    pub(super) finished: AtomicBool,
}

pub(super) struct State {
    pub(super) seq: u64,
    pub(super) baseline: Option<Baseline>,
    pub(super) detector: LeakDetector,
    /// The error last printed on stderr, so a persisting error is printed once.
    pub(super) printed_error: Option<String>,
}

/// Every reporter of the process, for the exit hook and the same-directory check.
static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// The directories of this process's reporters still writing, oldest first (the endpoint's
/// timeline page reads them).
#[cfg_attr(not(all(feature = "http", feature = "html")), allow(dead_code))]
pub(crate) fn running_dirs() -> Vec<PathBuf> {
    let pid = std::process::id();
    REGISTRY
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|s| s.pid == pid && !s.finished.load(Ordering::Relaxed))
        .map(|s| s.abs_dir.clone())
        .collect()
}

impl ReporterHandle {
    /// Writes a report now (on the calling thread) and returns its path. Periodic reports go
    /// on as scheduled.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-dump-{}", std::process::id()));
    /// let handle = heapsampler::Reporter::new(&dir).start()?;
    /// let path = handle.dump_now()?;
    /// let report = heapsampler::Report::read(&path).unwrap();
    /// assert_eq!(report.pid, std::process::id());
    /// # drop(handle); std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dump_now(&self) -> io::Result<PathBuf> {
        if std::process::id() != self.shared.pid {
            return Err(io::Error::other(format!(
                "this reporter belongs to process {} (this is a forked child); start a new one",
                self.shared.pid
            )));
        }
        self.shared.write_report(false)
    }

    /// Reports written, errors, the last error and the last file.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-status-{}", std::process::id()));
    /// let handle = heapsampler::Reporter::new(&dir).start()?;
    /// assert_eq!(handle.status().reports_written, 0);
    /// # drop(handle); std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn status(&self) -> ReporterStatus {
        profiler_work(|| self.shared.status.lock().clone())
    }

    /// The reporter's settings.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-cfg-{}", std::process::id()));
    /// let handle = heapsampler::Reporter::new(&dir).keep(3).start()?;
    /// assert_eq!(handle.config().kept(), 3);
    /// # drop(handle); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn config(&self) -> &Reporter {
        &self.shared.config
    }

    /// Stops the thread (without waiting out the period) and writes the final report; returns
    /// its path. Dropping the handle does the same and ignores the result.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("hs-stop-{}", std::process::id()));
    /// let handle = heapsampler::Reporter::new(&dir).start()?;
    /// let last = handle.stop()?;
    /// assert!(last.exists());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(self) -> io::Result<PathBuf> {
        self.shutdown()
    }

    fn shutdown(&self) -> io::Result<PathBuf> {
        profiler_work(|| {
            *self.shared.stop.lock() = true;
            self.shared.wake.notify_all();
            let thread = self.thread.lock().take();
            if let Some(thread) = thread {
                if std::process::id() == self.shared.pid {
                    let _ = thread.join();
                } else {
                    // A forked child has no such thread; joining it would wait for ever.
                    std::mem::forget(thread);
                    return Err(io::Error::other(
                        "reporter of the parent process; nothing written",
                    ));
                }
            }
            self.shared.write_report(true)
        })
    }
}

impl std::fmt::Debug for ReporterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReporterHandle")
            .field("config", &self.shared.config)
            .field("status", &self.status())
            .finish()
    }
}

impl Drop for ReporterHandle {
    fn drop(&mut self) {
        if self.thread.get_mut().is_some() {
            let _ = self.shutdown();
        }
    }
}

/// The reporter the `HEAPSAMPLER` variable started before `main` (when it named a `dir`).
///
/// It is never dropped (it lives in a static); its final report is written by an `atexit`
/// hook when the process exits normally, or when the program starts its own [`Reporter`],
/// which replaces it: from then on this returns `None`.
///
/// ```
/// if let Some(reports) = heapsampler::env_reporter() {
///     let _ = reports.dump_now();
/// }
/// ```
pub fn env_reporter() -> Option<&'static ReporterHandle> {
    ENV_REPORTER
        .get()
        .filter(|_| !ENV_REPLACED.load(Ordering::Acquire))
}

static ENV_REPORTER: OnceLock<ReporterHandle> = OnceLock::new();

/// Keeps the reporter the `HEAPSAMPLER` variable started (`service::env_reporter`).
pub(super) fn set_env_reporter(handle: ReporterHandle) {
    let _ = ENV_REPORTER.set(handle);
}
/// The program started its own reporter: the `HEAPSAMPLER` one was stopped.
static ENV_REPLACED: AtomicBool = AtomicBool::new(false);

/// Stops the `HEAPSAMPLER` reporter (its thread ends, its final report is written), once.
/// A forked child leaves it alone: it has no such thread, and the parent's is not its own.
fn stop_env_reporter() {
    let Some(env) = ENV_REPORTER.get() else {
        return;
    };
    if env.shared.pid == std::process::id() && !ENV_REPLACED.swap(true, Ordering::AcqRel) {
        let _ = env.shutdown();
    }
}

/// The reporter thread: a report every period until told to stop. The whole thread runs
/// under the reentrancy guard: everything it allocates is profiler overhead.
fn run(shared: Arc<Shared>) {
    profiler_work(|| {
        // A killed writer's temporary files go when a reporter starts, not a period later (each
        // report sweeps again). Under the state lock: a `dump_now` may be writing already.
        {
            let _state = shared.state.lock();
            let _ = own_files(&shared.config.dir, shared.pid);
        }
        let period = shared.config.period;
        let mut next = Instant::now() + period;
        loop {
            {
                let mut stop = shared.stop.lock();
                while !*stop && Instant::now() < next {
                    shared.wake.wait_until(&mut stop, next);
                }
                if *stop {
                    return;
                }
            }
            let _ = shared.write_report(false);
            // After a slow write, skip the missed ticks instead of writing a burst.
            next += period;
            let now = Instant::now();
            if next <= now {
                next = now + period;
            }
        }
    })
}

fn install_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` with static lifetime, as `atexit` requires.
        unsafe { libc::atexit(at_exit) };
    });
}

/// Writes the final report of every reporter still running in this process. Statics (such
/// as the `HEAPSAMPLER` reporter) are never dropped, so this is their only final report.
/// Idempotent: a reporter whose final report was written is skipped. Does not need the
/// reporter thread: the report is written on the exiting thread.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        profiler_work(|| {
            let pid = std::process::id();
            let reporters: Vec<Arc<Shared>> = match REGISTRY.try_lock_for(EXIT_WAIT) {
                Some(registry) => registry.iter().filter_map(Weak::upgrade).collect(),
                None => return,
            };
            for shared in reporters.iter().filter(|s| s.pid == pid) {
                *shared.stop.lock() = true;
                shared.wake.notify_all();
                // A report in progress finishes first; a stuck one does not hold up the exit.
                if let Some(mut state) = shared.state.try_lock_for(EXIT_WAIT) {
                    let _ = shared.write_locked(&mut state, true);
                }
            }
        })
    });
}
