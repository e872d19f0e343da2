//! The command's error type, its exit codes, and writing to standard output.

use std::fmt;
use std::io::{self, Write};

/// Exit code for usage and input errors (bad flags, unreadable or malformed
/// input, missing geometry, unknown phase).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code for replay errors (the trace parsed, but the replay failed).
pub(crate) const EXIT_REPLAY: u8 = 1;

/// A failure to report as one `pcpu: error: ...` line, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    /// Process exit code ([`EXIT_USAGE`] or [`EXIT_REPLAY`]).
    pub(crate) code: u8,
    /// The message (one line, without the `pcpu: error: ` prefix).
    pub(crate) message: String,
}

impl CliError {
    /// A usage or input error (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: one_line(message.into()),
        }
    }

    /// A replay error (exit code 1).
    pub(crate) fn replay(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_REPLAY,
            message: one_line(message.into()),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Folds a message onto one line (error texts from libraries may hold newlines).
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        s
    }
}

/// Result of a subcommand.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// Writes `text` to standard output. A closed pipe (`pcpu ... | head`) is not
/// an error: the reader has seen what it wanted.
pub(crate) fn emit(text: &str) -> CliResult {
    let mut out = io::stdout().lock();
    written(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// The outcome of a write to standard output: a closed pipe is not an
/// error, anything else (a full disk) is.
pub(crate) fn written(r: io::Result<()>) -> CliResult {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::usage(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Prints a warning line on standard error.
pub(crate) fn warn(message: &str) {
    // Nothing sensible is left to do if stderr itself fails.
    let _ = writeln!(io::stderr(), "pcpu: warning: {message}");
}
