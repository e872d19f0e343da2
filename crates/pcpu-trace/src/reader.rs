//! Streaming trace reader, gzip detection and whole-trace collection.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::error::{snippet, ParseError, ParseErrorKind};
use crate::event::{EventCounts, Record};
use crate::parse::{Line, LineParser};

/// Buffer size for file and decompressor reads.
const BUF_SIZE: usize = 256 * 1024;

/// The longest line kept (bytes): event lines are a few hundred bytes, so a
/// longer one is malformed, and keeping it whole would let a small gzip fill
/// memory. Its start is kept for the error message, the rest skipped.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one line (with its `\n`, if any) into `buf`, keeping at most
/// [`MAX_LINE`] bytes of it; returns the line's whole length (0 at the end).
fn read_line_bounded<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<u64> {
    let mut len = 0u64;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(len);
        }
        let (used, done) = match chunk.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..used.min(room)]);
        len += used as u64;
        r.consume(used);
        if done {
            return Ok(len);
        }
    }
}

/// How to treat malformed lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// `false` (strict, the default): the first malformed line, or the first report of
    /// lost events ([`ParseErrorKind::LostEvents`]), is returned as an error and reading
    /// stops. `true` (lenient): malformed lines are skipped and counted in
    /// [`ParseStats::malformed`], lost events summed in [`ParseStats::lost_events`]. I/O
    /// errors always stop reading.
    pub lenient: bool,
    /// In lenient mode, how many errors to keep in [`ParseStats::errors`] (default 10).
    pub keep_errors: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            lenient: false,
            keep_errors: 10,
        }
    }
}

impl ParseOptions {
    /// Strict options (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Lenient options: skip and count malformed lines.
    pub fn lenient() -> Self {
        ParseOptions {
            lenient: true,
            ..Self::default()
        }
    }
}

/// Facts from the `#` header of an ftrace text dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeader {
    /// `# tracer: nop` → `nop`.
    pub tracer: Option<String>,
    /// Entries still in the ring buffer (`# entries-in-buffer/entries-written: A/B #P:N`).
    pub entries_in_buffer: Option<u64>,
    /// Entries ever written to the ring buffer.
    pub entries_written: Option<u64>,
    /// Number of CPUs with a buffer (`#P:N`, or `cpus=N` from `trace-cmd report`).
    pub nr_cpus: Option<u32>,
}

impl TraceHeader {
    /// Events lost to ring-buffer overwrites (`entries_written - entries_in_buffer`), when
    /// the header says; a trace to replay should have 0.
    pub fn lost_events(&self) -> Option<u64> {
        Some(
            self.entries_written?
                .saturating_sub(self.entries_in_buffer?),
        )
    }

    fn absorb(&mut self, comment: &[u8]) {
        let Ok(s) = std::str::from_utf8(comment) else {
            return;
        };
        let s = s.trim_start_matches('#').trim();
        if let Some(n) = s.strip_prefix("cpus=") {
            // trace-cmd report's first line.
            self.nr_cpus = n.parse().ok();
        } else if let Some(t) = s.strip_prefix("tracer:") {
            self.tracer = Some(t.trim().to_owned());
        } else if let Some(rest) = s.strip_prefix("entries-in-buffer/entries-written:") {
            let mut words = rest.split_whitespace();
            if let Some((a, b)) = words.next().and_then(|w| w.split_once('/')) {
                self.entries_in_buffer = a.parse().ok();
                self.entries_written = b.parse().ok();
            }
            if let Some(p) = words.find_map(|w| w.strip_prefix("#P:")) {
                self.nr_cpus = p.parse().ok();
            }
        }
    }
}

/// Line and event counts of a (partly) read trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Lines read (including header, blank, unknown and malformed lines).
    pub lines: u64,
    /// `#` header/comment lines.
    pub header_lines: u64,
    /// Empty lines.
    pub blank_lines: u64,
    /// Records produced, by kind.
    pub counts: EventCounts,
    /// Well-formed lines of events this crate does not know (skipped).
    pub unknown: u64,
    /// Skipped unknown events by name.
    pub unknown_events: BTreeMap<String, u64>,
    /// Malformed lines skipped in lenient mode.
    pub malformed: u64,
    /// Events the ring buffer lost, summed over the `CPU:N [LOST M EVENTS]` (and
    /// trace-cmd's `CPU:N [M EVENTS DROPPED]`) lines read in lenient mode (strict mode
    /// stops at the first).
    pub lost_events: u64,
    /// trace-cmd's `CPU:N [EVENTS DROPPED]` lines (lost events, how many not said) read
    /// in lenient mode.
    pub lost_uncounted: u64,
    /// The first such line (0: none).
    pub first_lost_line: u64,
    /// The first malformed-line errors (up to [`ParseOptions::keep_errors`]) in lenient
    /// mode.
    pub errors: Vec<ParseError>,
}

impl ParseStats {
    /// Number of records produced.
    pub fn records(&self) -> u64 {
        self.counts.total()
    }
}

/// A streaming reader of trace records: an iterator over `Result<Record, ParseError>`.
///
/// It reuses one line buffer, so the only per-line allocations are those of the record
/// itself. After an error is yielded (strict mode, or any I/O error) the iterator ends.
#[derive(Debug)]
pub struct TraceReader<R> {
    reader: R,
    buf: Vec<u8>,
    parser: LineParser,
    options: ParseOptions,
    stats: ParseStats,
    header: TraceHeader,
    done: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// Reads plain (already decompressed) ftrace text from `reader`, strict mode. Use
    /// [`from_reader`] to accept gzip too.
    pub fn new(reader: R) -> Self {
        TraceReader {
            reader,
            buf: Vec::with_capacity(512),
            parser: LineParser::new(),
            options: ParseOptions::default(),
            stats: ParseStats::default(),
            header: TraceHeader::default(),
            done: false,
        }
    }

    /// Sets the options (builder style).
    pub fn with_options(mut self, options: ParseOptions) -> Self {
        self.options = options;
        self
    }

    /// Counts so far.
    pub fn stats(&self) -> &ParseStats {
        &self.stats
    }

    /// Header facts seen so far (the header precedes all events).
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Reads everything into a [`Trace`]; in strict mode fails at the first malformed line.
    pub fn collect_trace(mut self) -> Result<Trace, ParseError> {
        let mut records = Vec::new();
        for r in &mut self {
            records.push(r?);
        }
        Ok(Trace {
            records,
            header: self.header,
            stats: self.stats,
        })
    }

    fn fail(&mut self, e: ParseError) -> Option<Result<Record, ParseError>> {
        if let (ParseErrorKind::LostEvents { count, .. }, true) = (&e.kind, self.options.lenient) {
            match count {
                Some(n) => self.stats.lost_events = self.stats.lost_events.saturating_add(*n),
                None => self.stats.lost_uncounted += 1,
            }
            if self.stats.first_lost_line == 0 {
                self.stats.first_lost_line = e.line;
            }
            return None;
        }
        if !e.is_io() && self.options.lenient {
            self.stats.malformed += 1;
            if self.stats.errors.len() < self.options.keep_errors {
                self.stats.errors.push(e);
            }
            None
        } else {
            self.done = true;
            Some(Err(e))
        }
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Record, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            let n = match read_line_bounded(&mut self.reader, &mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    let line = self.stats.lines + 1;
                    return self.fail(ParseError::io(line, &e));
                }
            };
            if n == 0 {
                self.done = true;
                return None;
            }
            self.stats.lines += 1;
            let line_no = self.stats.lines;
            if n > MAX_LINE as u64 {
                let kind = ParseErrorKind::TooLong {
                    len: n,
                    text: snippet(&self.buf),
                };
                if let Some(r) = self.fail(ParseError {
                    line: line_no,
                    kind,
                }) {
                    return Some(r);
                }
                continue;
            }
            let complete = self.buf.last() == Some(&b'\n');
            match self.parser.parse_line(&self.buf, line_no) {
                Ok(Line::Blank) => self.stats.blank_lines += 1,
                Ok(Line::Comment(c)) => {
                    self.stats.header_lines += 1;
                    self.header.absorb(c);
                }
                Ok(_) if !complete => {
                    let kind = ParseErrorKind::Truncated {
                        text: snippet(&self.buf),
                    };
                    if let Some(r) = self.fail(ParseError {
                        line: line_no,
                        kind,
                    }) {
                        return Some(r);
                    }
                }
                Ok(Line::Unknown { event }) => {
                    self.stats.unknown += 1;
                    match self
                        .stats
                        .unknown_events
                        .get_mut(&*String::from_utf8_lossy(event))
                    {
                        Some(n) => *n += 1,
                        None => {
                            let name = String::from_utf8_lossy(event).into_owned();
                            self.stats.unknown_events.insert(name, 1);
                        }
                    }
                }
                Ok(Line::Record(rec)) => {
                    self.stats.counts.add(rec.event.kind());
                    return Some(Ok(rec));
                }
                Err(mut e) => {
                    if !complete {
                        e.kind = ParseErrorKind::Truncated {
                            text: snippet(&self.buf),
                        };
                    }
                    if let Some(r) = self.fail(e) {
                        return Some(r);
                    }
                }
            }
        }
        None
    }
}

/// A whole parsed trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// All records in file order.
    pub records: Vec<Record>,
    /// Header facts.
    pub header: TraceHeader,
    /// Counts (events by kind, unknown and malformed lines).
    pub stats: ParseStats,
}

/// Wraps `reader` in a gzip decoder if its data starts with the gzip magic bytes
/// (`1f 8b`), else returns it as is (buffered). Concatenated gzip members are read as one
/// stream.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn BufRead + 'a>> {
    let head = reader.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(BufReader::with_capacity(
            BUF_SIZE,
            MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// Opens a trace file, plain text or gzip (detected by magic bytes, not by name).
pub fn open_trace(path: impl AsRef<Path>) -> io::Result<TraceReader<Box<dyn BufRead + Send>>> {
    let file = BufReader::with_capacity(BUF_SIZE, File::open(path)?);
    let mut file = file;
    let head = file.fill_buf()?;
    let reader: Box<dyn BufRead + Send> = if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Box::new(BufReader::with_capacity(
            BUF_SIZE,
            MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    };
    Ok(TraceReader::new(reader))
}

/// A trace reader over any buffered input (e.g. locked stdin), plain or gzip.
pub fn from_reader<'a, R: BufRead + 'a>(
    reader: R,
) -> io::Result<TraceReader<Box<dyn BufRead + 'a>>> {
    Ok(TraceReader::new(decompress(reader)?))
}

/// Parses a whole trace from `reader` (plain or gzip).
pub fn parse_all<R: BufRead>(reader: R, options: ParseOptions) -> Result<Trace, ParseError> {
    from_reader(reader)
        .map_err(|e| ParseError::io(0, &e))?
        .with_options(options)
        .collect_trace()
}

/// Parses a whole trace file (plain or gzip).
pub fn parse_file(path: impl AsRef<Path>, options: ParseOptions) -> Result<Trace, ParseError> {
    open_trace(path)
        .map_err(|e| ParseError::io(0, &e))?
        .with_options(options)
        .collect_trace()
}
