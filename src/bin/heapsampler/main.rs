//! `heapsampler`: read, compare, judge and render the JSON heap reports that the heapsampler
//! `Reporter` writes (feature `cli`).
//!
//! Subcommands: `top`, `diff`, `leaks`, `flamegraph`, `pprof`, `symbolize`, `html`, `validate`
//! (`check` is an older name for it). Results go to stdout,
//! errors to stderr as one line naming the file and the problem (bad usage too). Names from a
//! report and file names are printed with their control characters escaped
//! ([`heapsampler::report::escape`]): a report is untrusted input.
//!
//! Exit status: 0 when the command did its job; 1 when it did and the answer is "bad"
//! (`leaks --fail-on-leak` found a suspect, `validate` found a bad file); 2 when it could not do
//! its job (unreadable or invalid input, an output file that cannot be written, bad usage).

mod diff;
mod format;
mod html;
mod input;
mod json;
mod leaks;
mod render;
mod symbolize;
mod top;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "heapsampler",
    version,
    about = "Read, compare and render heapsampler heap reports (heap-<pid>-<seq>.json)",
    after_help = "Exit status: 0 = done; 1 = done, and leaks were found (--fail-on-leak) or a \
                  file failed `validate`; 2 = error (bad input, unwritable output, bad usage), \
                  with one line on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The call sites holding or allocating the most memory, with the report's exact totals.
    Top {
        /// The heap report (JSON).
        report: PathBuf,
        /// How many sites to show.
        #[arg(short = 'n', long = "count", default_value_t = 20)]
        count: usize,
        /// What to rank sites by: estimated live bytes, bytes allocated since start, or
        /// allocation rate over the report's window.
        #[arg(long, value_enum, default_value_t = TopBy::Live)]
        by: TopBy,
        /// One JSON document instead of the table (shape: docs/report-format.md).
        #[arg(long)]
        json: bool,
    },
    /// What changed per call site and in the totals between two reports.
    ///
    /// Reports of one process match sites by stack id; reports of two processes (two runs of
    /// one program) match sites by their symbolized function names.
    Diff {
        /// The older report.
        old: PathBuf,
        /// The newer report.
        new: PathBuf,
        /// How many sites to show.
        #[arg(short = 'n', long = "count", default_value_t = 20)]
        count: usize,
        /// One JSON document instead of the tables (shape: docs/report-format.md).
        #[arg(long)]
        json: bool,
    },
    /// Sites whose live bytes keep growing over a series of reports.
    ///
    /// A directory stands for its heap-*.json files. Reports are grouped by process and
    /// ordered by timestamp.
    Leaks {
        /// Report files and/or directories of reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// How many of the newest reports of each process to judge (1 to 1000; below 5 counts
        /// as 5, the fewest that show a trend).
        #[arg(long, default_value_t = 10, value_parser = window_parser())]
        window: usize,
        /// Exit with status 1 when any site is a suspect (for CI).
        #[arg(long)]
        fail_on_leak: bool,
        /// One JSON document instead of the text (shape: docs/report-format.md).
        #[arg(long)]
        json: bool,
    },
    /// A flamegraph of the report as SVG, or as collapsed stacks with --collapsed.
    Flamegraph {
        /// The heap report (JSON).
        report: PathBuf,
        /// Output file; `-` or absent: stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Write the collapsed-stack text (`root;...;leaf bytes`) instead of an SVG.
        #[arg(long)]
        collapsed: bool,
        /// What the widths measure: estimated live bytes or bytes allocated since start.
        #[arg(long, value_enum, default_value_t = FlameBy::Live)]
        by: FlameBy,
    },
    /// The report as a gzipped pprof profile (Go heap-profile shape) for `go tool pprof`.
    Pprof {
        /// The heap report (JSON).
        report: PathBuf,
        /// Output file (`-`: stdout).
        #[arg(short = 'o', long = "output", required = true)]
        output: PathBuf,
    },
    /// Fill in function, file and line of a report written unsymbolized
    /// (`HEAPSAMPLER=symbolize=0`) from the binaries that produced it.
    ///
    /// A binary is matched to the report's mappings by GNU build-id (by file name when either
    /// has none); addresses of other mappings keep what the report had.
    Symbolize {
        /// The heap report (JSON).
        report: PathBuf,
        /// A binary (executable or shared library) the process had loaded; repeat for more.
        #[arg(long = "binary", required = true)]
        binaries: Vec<PathBuf>,
        /// Output file; `-` or absent: stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// The heap timeline of a directory of reports as one self-contained HTML page: live
    /// heap and allocation rate per process, top sites with error bands, leak suspects, a
    /// sortable table of sites with their stacks, flamegraphs. Files that cannot be read are
    /// listed on the page; no usable report at all is an error.
    Html {
        /// The directory of heap-*.json reports.
        dir: PathBuf,
        /// Output file; `-` or absent: stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// How many sites to draw over time (leak suspects are drawn besides).
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// How many sites the table lists.
        #[arg(long, default_value_t = 500)]
        rows: usize,
        /// Threads reading the reports (default: one per core, at most 8).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
    /// Validate report files: JSON, format, version, fields and consistency.
    // `check` was this command's first name: scripts that use it keep working.
    #[command(alias = "check")]
    Validate {
        /// Report files and/or directories of reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// The largest `leaks --window`: the detector compares every pair of reports of a site.
const MAX_WINDOW: u64 = 1000;

fn window_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=MAX_WINDOW)
}

/// What `top` ranks sites by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TopBy {
    /// Estimated bytes live now.
    Live,
    /// Estimated bytes allocated since the process started.
    Alloc,
    /// Estimated bytes allocated per second over the report's window.
    Rate,
}

/// What a flamegraph's widths measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlameBy {
    /// Estimated bytes live now.
    Live,
    /// Estimated bytes allocated since the process started.
    Alloc,
}

/// How a command that ran to the end judged its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to complain about.
    Good,
    /// Leaks found (with `--fail-on-leak`) or a bad file in `validate`: exit status 1.
    Bad,
}

/// Why a command could not do its job: exit status 2.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A message that names the file and the problem.
    Msg(String),
    /// Writing the results to stdout failed (a closed pipe is not worth a message).
    Stdout(io::Error),
}

impl CliError {
    pub(crate) fn msg(m: impl Into<String>) -> CliError {
        CliError::Msg(m.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Msg(m) => f.write_str(m),
            CliError::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

/// Only writes to stdout go through `?` on an `io::Error`: other I/O (output files) is mapped
/// by hand with the file's name.
impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Stdout(e)
    }
}

pub(crate) type Result<T> = std::result::Result<T, CliError>;

fn run(cli: Cli, out: &mut dyn Write) -> Result<Verdict> {
    match cli.command {
        Command::Top {
            report,
            count,
            by,
            json,
        } => top::run(out, &report, count, by, json),
        Command::Diff {
            old,
            new,
            count,
            json,
        } => diff::run(out, &old, &new, count, json),
        Command::Leaks {
            inputs,
            window,
            fail_on_leak,
            json,
        } => leaks::run(out, &inputs, window, fail_on_leak, json),
        Command::Flamegraph {
            report,
            output,
            collapsed,
            by,
        } => render::flamegraph(out, &report, output.as_deref(), collapsed, by),
        Command::Pprof { report, output } => render::pprof(out, &report, &output),
        Command::Symbolize {
            report,
            binaries,
            output,
        } => symbolize::run(out, &report, &binaries, output.as_deref()),
        Command::Html {
            dir,
            output,
            top,
            rows,
            threads,
        } => html::run(out, &dir, output.as_deref(), top, rows, threads),
        Command::Validate { inputs } => validate::run(out, &inputs),
    }
}

/// The one line an error gets on stderr, escaped: it may quote a file name or an argument.
fn error_line(message: &str) {
    let _ = writeln!(
        io::stderr(),
        "heapsampler: error: {}",
        heapsampler::report::escape(message)
    );
}

/// Bad usage: clap's message and the usage of the subcommand, on one line, exit status 2.
/// `--help` and `--version` print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            error_line(
                "no subcommand given (top, diff, leaks, flamegraph, pprof, symbolize, html or \
                 validate; \
                 see heapsampler --help)",
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    // clap's message is its first paragraph (`required arguments were not provided:` goes on
    // with the arguments on the next lines); tips and usage follow blank lines.
    let text = e.render().to_string();
    let what: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let what = what.join(" ");
    let what = what.strip_prefix("error: ").unwrap_or(&what);
    match text.lines().find_map(|l| l.trim().strip_prefix("Usage: ")) {
        Some(usage) => error_line(&format!("{what} (usage: {usage})")),
        None => error_line(what),
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    format::set_colour(format::colour_wanted(
        io::IsTerminal::is_terminal(&io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    ));
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|v| {
        out.flush()?;
        Ok(v)
    });
    match result {
        Ok(Verdict::Good) => ExitCode::SUCCESS,
        Ok(Verdict::Bad) => ExitCode::from(1),
        // `heapsampler top r.json | head`: the reader has what it wanted.
        Err(CliError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever was already printed goes out before the error line.
            let _ = out.flush();
            error_line(&e.to_string());
            ExitCode::from(2)
        }
    }
}
