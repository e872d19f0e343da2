//! Parse errors.

use std::error::Error;
use std::fmt;
use std::io;

/// The line layout every event line must have, as shown in error messages.
pub const LAYOUT: &str = "`<task>-<pid> [cpu] ... ts: event:`";

/// An error at one line of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (the line being read for I/O errors; 0 if no line was read).
    pub line: u64,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// What went wrong on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line does not have the ftrace layout [`LAYOUT`].
    Layout {
        /// Which part is missing or wrong, e.g. "no `[cpu]` column".
        problem: &'static str,
        /// The start of the offending line (at most 80 characters).
        text: String,
    },
    /// A known event lacks a required field.
    MissingField {
        /// Event name (`percpu_alloc_percpu`, ...).
        event: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A field value could not be decoded.
    BadValue {
        /// Event name.
        event: &'static str,
        /// Field name.
        field: &'static str,
        /// The value as printed (at most 80 characters).
        value: String,
        /// What was expected, e.g. "a non-negative decimal integer".
        expected: &'static str,
    },
    /// ftrace's `CPU:N [LOST M EVENTS]` (trace-cmd's `CPU:N [M EVENTS DROPPED]`, or
    /// `CPU:N [EVENTS DROPPED]` without a count): the ring buffer of CPU `cpu`
    /// overflowed and `count` events are missing from the trace here.
    LostEvents {
        /// The CPU whose buffer overflowed.
        cpu: u32,
        /// Events lost (`None`: the report does not say how many).
        count: Option<u64>,
    },
    /// The last line of the input has no trailing newline: the trace was cut mid-line.
    Truncated {
        /// The start of the partial line (at most 80 characters).
        text: String,
    },
    /// The line is longer than [`MAX_LINE`](crate::MAX_LINE) bytes (an event line is a
    /// few hundred): its start was kept for the message, the rest skipped.
    TooLong {
        /// The line's length in bytes.
        len: u64,
        /// The start of the line (at most 80 characters).
        text: String,
    },
    /// Reading the input failed (including corrupt or truncated gzip data). Always fatal.
    Io {
        /// The I/O error kind.
        kind: io::ErrorKind,
        /// The error message.
        message: String,
    },
}

impl ParseError {
    /// Builds an I/O error at `line`.
    pub fn io(line: u64, err: &io::Error) -> ParseError {
        ParseError {
            line,
            kind: ParseErrorKind::Io {
                kind: err.kind(),
                message: err.to_string(),
            },
        }
    }

    /// True for [`ParseErrorKind::Io`] (reading cannot go on after it).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, ParseErrorKind::Io { .. })
    }
}

/// `s` with its control characters escaped (`\u{1b}`, `\t`): names and
/// marker texts from a trace end up in tables, plots and messages, where an
/// escape sequence would drive the terminal and a control character makes
/// an SVG file malformed XML.
pub(crate) fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Up to 80 characters of `bytes`, lossily decoded, for error messages;
/// control characters escaped (`\u{1b}`, `\t`), so that a binary file's
/// bytes cannot drive the terminal the message is printed on.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let s = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ParseErrorKind::Layout { problem, text } => {
                write!(f, "expected {LAYOUT} ({problem}), found `{text}`")
            }
            ParseErrorKind::MissingField { event, field } => {
                write!(f, "{event}: missing field `{field}`")
            }
            ParseErrorKind::BadValue {
                event,
                field,
                value,
                expected,
            } => {
                write!(
                    f,
                    "{event}: field `{field}`: expected {expected}, found `{value}`"
                )
            }
            ParseErrorKind::LostEvents { cpu, count } => write!(
                f,
                "the trace lost {} events of CPU {cpu} here (its ring buffer overflowed; \
                 raise trace_buf_size and capture again)",
                match count {
                    Some(n) => n.to_string(),
                    None => "an unknown number of".to_string(),
                }
            ),
            ParseErrorKind::Truncated { text } => {
                write!(f, "truncated line (no trailing newline): `{text}`")
            }
            ParseErrorKind::TooLong { len, text } => write!(
                f,
                "line of {len} bytes, longer than any event line ({} at most): `{text}`",
                crate::MAX_LINE
            ),
            ParseErrorKind::Io { message, .. } => write!(f, "read error: {message}"),
        }
    }
}

impl Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn snippets_escape_control_characters_and_stop_at_80() {
        assert_eq!(snippet(b"a\x1b[2Jb\tc"), "a\\u{1b}[2Jb\\tc");
        assert_eq!(snippet(&[b'x', 0xff, b'y']), "x\u{fffd}y");
        let long = [b'z'; 81];
        assert_eq!(snippet(&long), format!("{}…", "z".repeat(80)));
        assert_eq!(snippet(&long[..80]), "z".repeat(80));
    }
}
