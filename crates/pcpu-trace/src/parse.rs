//! Line-level parser for ftrace text.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::error::{escape_controls, snippet, ParseError, ParseErrorKind};
use crate::event::{parse_hex, AllocEvent, CallSite, ChunkPages, Event, Flags, Record};

/// What one line of trace text turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// A recognised event.
    Record(Record),
    /// A header/comment line (starting with `#`), without the line terminator.
    Comment(&'a [u8]),
    /// An empty or all-whitespace line.
    Blank,
    /// A well-formed line of an event this crate does not know (e.g. `sched_switch`).
    Unknown {
        /// The event name.
        event: &'a [u8],
    },
}

/// A small fast hash for short byte strings (FxHash-style multiply-rotate).
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Interns short strings (task names, call sites) so that equal values share one
/// allocation. Bounded so that hostile input cannot grow it without limit. Values are
/// decoded lossily, control characters escaped.
#[derive(Debug, Default)]
struct Interner {
    map: HashMap<Box<[u8]>, Arc<str>, BuildHasherDefault<FxHasher>>,
    /// The last value returned (consecutive lines often repeat it); holds only valid UTF-8
    /// text without control characters, so that bytes equal to it decode to it.
    last: Option<Arc<str>>,
}

impl Interner {
    const MAX_ENTRIES: usize = 1 << 16;

    fn get(&mut self, bytes: &[u8]) -> Arc<str> {
        if let Some(v) = &self.last {
            if v.as_bytes() == bytes {
                return Arc::clone(v);
            }
        }
        let s = match self.map.get(bytes) {
            Some(s) => Arc::clone(s),
            None => {
                let s: Arc<str> =
                    Arc::from(escape_controls(&String::from_utf8_lossy(bytes)).as_ref());
                if self.map.len() < Self::MAX_ENTRIES {
                    self.map.insert(bytes.into(), Arc::clone(&s));
                }
                s
            }
        };
        self.last = Some(Arc::clone(&s));
        s
    }
}

/// Parses single lines of ftrace text into [`Record`]s.
///
/// Stateless apart from the string interner; one parser should be reused for a whole trace
/// so that records of the same task share their name.
#[derive(Debug, Default)]
pub struct LineParser {
    tasks: Interner,
    call_sites: Interner,
    gfp_flags: Interner,
}

const EV_ALLOC: &str = "percpu_alloc_percpu";
const EV_FREE: &str = "percpu_free_percpu";
const EV_FAIL: &str = "percpu_alloc_percpu_fail";
const EV_CREATE: &str = "percpu_create_chunk";
const EV_DESTROY: &str = "percpu_destroy_chunk";
const EV_POP: &str = "pcpu_chunk_populated";
const EV_DEPOP: &str = "pcpu_chunk_depopulated";
const EV_BALANCE: &str = "pcpu_balance_workfn";
const EV_MARK: &str = "tracing_mark_write";

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [c, rest @ ..] = s {
        if is_space(*c) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `s` without the one space that separates an `event:` from its payload (a
/// payload's own leading blanks are kept: a marker's text may start with them).
fn strip_one_space(s: &[u8]) -> &[u8] {
    match s {
        [b' ', rest @ ..] => rest,
        s => s,
    }
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., c] = s {
        if is_space(*c) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// `ss.uuuuuu` (or an integer for counter clocks) in seconds.
fn parse_ts(s: &[u8]) -> Option<f64> {
    let (int, frac) = match s.iter().position(|&c| c == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) || (frac.is_empty() && int.len() < s.len()) {
        return None;
    }
    // Only ASCII digits and one dot at this point. Too many digits parse as
    // infinity, which no clock gives (and which would stall a plot's axis).
    std::str::from_utf8(s)
        .ok()?
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite())
}

/// The common ftrace columns of an event line.
struct Prefix<'a> {
    task: &'a [u8],
    pid: i32,
    cpu: u32,
    flags: Option<Flags>,
    ts: f64,
    event: &'a [u8],
    payload: &'a [u8],
}

fn layout(problem: &'static str, line: &[u8]) -> ParseErrorKind {
    ParseErrorKind::Layout {
        problem,
        text: snippet(line),
    }
}

/// Finds `<digits>]` at `s[i..]`; returns the cpu and the index after `]`.
fn parse_cpu_at(s: &[u8], i: usize) -> Option<(u32, usize)> {
    let rest = s.get(i..)?;
    let close = rest.iter().take(12).position(|&c| c == b']')?;
    let cpu = parse_dec(&rest[..close])?;
    Some((u32::try_from(cpu).ok()?, i + close + 1))
}

/// Splits `<padding><task>-<pid>` (with an optional ` (<tgid>)` column after the pid),
/// or `perf script`'s `<padding><comm> <tid>` (`<comm> <pid>/<tid>` with `-F +pid`).
fn split_task_pid(head: &[u8]) -> Option<(&[u8], i32)> {
    let mut head = trim_end(head);
    if let [rest @ .., b')'] = head {
        // record-tgid: `task-pid (tgid)` / `(-------)`
        let open = rest.iter().rposition(|&c| c == b'(')?;
        head = trim_end(&rest[..open]);
    }
    if let Some(dash) = head.iter().rposition(|&c| c == b'-') {
        if let Some(pid) = parse_dec(&head[dash + 1..]) {
            return Some((trim_start(&head[..dash]), i32::try_from(pid).ok()?));
        }
    }
    // perf: the thread id is the last space-separated word (after a `pid/`).
    let space = head.iter().rposition(|&c| is_space(c))?;
    let word = &head[space + 1..];
    let tid = match word.iter().position(|&c| c == b'/') {
        Some(slash) => {
            parse_dec(&word[..slash])?;
            &word[slash + 1..]
        }
        None => word,
    };
    let tid = i32::try_from(parse_dec(tid)?).ok()?;
    let comm = trim_start(trim_end(&head[..space]));
    (!comm.is_empty()).then_some((comm, tid))
}

/// How far into a line the `[cpu]` column may start. The kernel pads the task
/// name to 16 columns and truncates it to 15 bytes (`TASK_COMM_LEN`); with the
/// pid and a record-tgid column the column starts before byte 50. The bound
/// keeps a hostile line from costing time quadratic in its length.
const CPU_COLUMN_WITHIN: usize = 256;

fn parse_prefix(s: &[u8]) -> Result<Prefix<'_>, ParseErrorKind> {
    // The task name may contain spaces, dashes and even brackets: take the first ` [` that
    // is followed by `<digits>]` and preceded by `-<pid>`.
    let mut from = 0;
    let head = &s[..s.len().min(CPU_COLUMN_WITHIN)];
    let (task, pid, cpu, after_cpu) = loop {
        let Some(b) = head[from..]
            .iter()
            .position(|&c| c == b'[')
            .map(|p| p + from)
        else {
            return Err(layout("no `<task>-<pid> [cpu]` columns", s));
        };
        from = b + 1;
        if b == 0 || s[b - 1] != b' ' {
            continue;
        }
        if let Some((cpu, after)) = parse_cpu_at(s, b + 1) {
            if let Some((task, pid)) = split_task_pid(&s[..b - 1]) {
                break (task, pid, cpu, after);
            }
        }
    };
    let rest = &s[after_cpu..];
    if !rest.first().copied().is_some_and(is_space) {
        return Err(layout("no space after `[cpu]`", s));
    }
    let rest = trim_start(rest);
    let tok_end = rest.iter().position(|&c| is_space(c)).unwrap_or(rest.len());
    let tok = &rest[..tok_end];
    let (flags, ts_tok, rest) =
        if tok.last() == Some(&b':') && parse_ts(&tok[..tok.len() - 1]).is_some() {
            (None, tok, &rest[tok_end..])
        } else {
            let flags = Flags::from_bytes(tok).ok_or_else(|| layout("bad flags column", s))?;
            let rest = trim_start(&rest[tok_end..]);
            let end = rest.iter().position(|&c| is_space(c)).unwrap_or(rest.len());
            (Some(flags), &rest[..end], &rest[end..])
        };
    let ts = match ts_tok {
        [t @ .., b':'] => parse_ts(t),
        _ => None,
    }
    .ok_or_else(|| layout("bad timestamp", s))?;
    let rest = trim_start(rest);
    let colon = rest
        .iter()
        .position(|&c| c == b':' || is_space(c))
        .filter(|&i| rest[i] == b':' && i > 0)
        .ok_or_else(|| layout("no `event:` after the timestamp", s))?;
    let mut event = &rest[..colon];
    let mut after = &rest[colon + 1..];
    // perf script names the event with its subsystem: `percpu:percpu_alloc_percpu:`.
    let ident = after
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_')
        .count();
    if ident > 0
        && after.get(ident) == Some(&b':')
        && after.get(ident + 1).map_or(true, |&c| is_space(c))
    {
        event = &after[..ident];
        after = &after[ident + 1..];
    }
    let payload = strip_one_space(after);
    Ok(Prefix {
        task,
        pid,
        cpu,
        flags,
        ts,
        event,
        payload,
    })
}

/// `key=value` fields of a payload. A token without `=` (or whose part before `=` is not an
/// identifier) continues the previous value (`call_site=foo+0x1/0x2 [module]`); tokens
/// before the first field are ignored. Each byte is looked at once.
struct Fields<'a> {
    s: &'a [u8],
    pos: usize,
    /// Look-ahead: `(token start, '=' index, token end)` of the next field.
    pending: Option<(usize, usize, usize)>,
}

impl<'a> Fields<'a> {
    fn new(s: &'a [u8]) -> Self {
        Fields {
            s,
            pos: 0,
            pending: None,
        }
    }

    /// Next token from `pos`: `(start, Some(eq) if it is a key=value token, end)`.
    fn token(&mut self) -> Option<(usize, Option<usize>, usize)> {
        let s = self.s;
        let mut i = self.pos;
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        if i == s.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        let eq = (i > start && i < s.len() && s[i] == b'=').then_some(i);
        while i < s.len() && !is_space(s[i]) {
            i += 1;
        }
        self.pos = i;
        Some((start, eq, i))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (start, eq, mut vend) = match self.pending.take() {
            Some(p) => p,
            None => loop {
                if let (a, Some(eq), b) = self.token()? {
                    break (a, eq, b);
                }
            },
        };
        // Absorb continuation tokens up to the next field.
        while let Some((a, e, b)) = self.token() {
            match e {
                Some(e) => {
                    self.pending = Some((a, e, b));
                    break;
                }
                None => vend = b,
            }
        }
        Some((&self.s[start..eq], &self.s[eq + 1..vend]))
    }
}

/// Decoding helpers that produce field-specific errors.
struct Ctx {
    event: &'static str,
}

impl Ctx {
    fn bad(&self, field: &'static str, v: &[u8], expected: &'static str) -> ParseErrorKind {
        ParseErrorKind::BadValue {
            event: self.event,
            field,
            value: snippet(v),
            expected,
        }
    }

    fn req<'a>(
        &self,
        field: &'static str,
        v: Option<&'a [u8]>,
    ) -> Result<&'a [u8], ParseErrorKind> {
        v.ok_or(ParseErrorKind::MissingField {
            event: self.event,
            field,
        })
    }

    fn dec(&self, field: &'static str, v: &[u8]) -> Result<u64, ParseErrorKind> {
        parse_dec(v).ok_or_else(|| self.bad(field, v, "a decimal integer"))
    }

    /// A C `int`/`s32` that must not be negative.
    fn nonneg(&self, field: &'static str, v: &[u8]) -> Result<u64, ParseErrorKind> {
        parse_dec(v).ok_or_else(|| self.bad(field, v, "a non-negative decimal integer"))
    }

    /// A kprobe's page index: a non-negative 32-bit decimal, with a hint when the
    /// probe printed it in hex (a fetch argument without its `:s32` type).
    fn page_index(&self, field: &'static str, v: &[u8]) -> Result<u32, ParseErrorKind> {
        parse_dec(v).and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
            let expected = if v.starts_with(b"0x") {
                "a non-negative 32-bit decimal integer: give the kprobe's page_start and page_end the type :s32"
            } else {
                "a non-negative 32-bit decimal integer"
            };
            self.bad(field, v, expected)
        })
    }

    fn flag(&self, field: &'static str, v: &[u8]) -> Result<bool, ParseErrorKind> {
        match v {
            b"0" => Ok(false),
            b"1" => Ok(true),
            _ => Err(self.bad(field, v, "0 or 1")),
        }
    }

    fn ptr(&self, field: &'static str, v: &[u8]) -> Result<u64, ParseErrorKind> {
        if v == b"(null)" {
            return Ok(0);
        }
        parse_hex(v).ok_or_else(|| {
            self.bad(
                field,
                v,
                "a raw hex pointer (trace with trace_options=nohash-ptr)",
            )
        })
    }
}

fn parse_alloc(
    p: &[u8],
    call_sites: &mut Interner,
    gfps: &mut Interner,
) -> Result<Event, ParseErrorKind> {
    let c = Ctx { event: EV_ALLOC };
    let (mut call_site, mut reserved, mut is_atomic, mut size, mut align) =
        (None, None, None, None, None);
    let (mut base, mut off, mut ptr, mut bytes_alloc, mut gfp) = (None, None, None, None, None);
    for (k, v) in Fields::new(p) {
        match k {
            b"call_site" => call_site = Some(v),
            b"reserved" => reserved = Some(v),
            b"is_atomic" => is_atomic = Some(v),
            b"size" => size = Some(v),
            b"align" => align = Some(v),
            b"base_addr" => base = Some(v),
            b"off" => off = Some(v),
            b"ptr" => ptr = Some(v),
            b"bytes_alloc" => bytes_alloc = Some(v),
            b"gfp_flags" => gfp = Some(v),
            _ => {}
        }
    }
    Ok(Event::Alloc(AllocEvent {
        call_site: match call_site {
            Some(v) if !v.is_empty() => Some(CallSite(call_sites.get(v))),
            Some(v) => return Err(c.bad("call_site", v, "a symbol or address")),
            None => None,
        },
        reserved: c.flag("reserved", c.req("reserved", reserved)?)?,
        is_atomic: c.flag("is_atomic", c.req("is_atomic", is_atomic)?)?,
        size: c.dec("size", c.req("size", size)?)?,
        align: c.dec("align", c.req("align", align)?)?,
        base_addr: c.ptr("base_addr", c.req("base_addr", base)?)?,
        off: c.nonneg("off", c.req("off", off)?)?,
        ptr: c.ptr("ptr", c.req("ptr", ptr)?)?,
        bytes_alloc: bytes_alloc.map(|v| c.dec("bytes_alloc", v)).transpose()?,
        gfp_flags: gfp.map(|v| gfps.get(v)),
    }))
}

fn parse_free(p: &[u8]) -> Result<Event, ParseErrorKind> {
    let c = Ctx { event: EV_FREE };
    let (mut base, mut off, mut ptr) = (None, None, None);
    for (k, v) in Fields::new(p) {
        match k {
            b"base_addr" => base = Some(v),
            b"off" => off = Some(v),
            b"ptr" => ptr = Some(v),
            _ => {}
        }
    }
    Ok(Event::Free {
        base_addr: c.ptr("base_addr", c.req("base_addr", base)?)?,
        off: c.nonneg("off", c.req("off", off)?)?,
        ptr: c.ptr("ptr", c.req("ptr", ptr)?)?,
    })
}

fn parse_fail(p: &[u8]) -> Result<Event, ParseErrorKind> {
    let c = Ctx { event: EV_FAIL };
    let (mut reserved, mut is_atomic, mut size, mut align) = (None, None, None, None);
    for (k, v) in Fields::new(p) {
        match k {
            b"reserved" => reserved = Some(v),
            b"is_atomic" => is_atomic = Some(v),
            b"size" => size = Some(v),
            b"align" => align = Some(v),
            _ => {}
        }
    }
    Ok(Event::AllocFail {
        reserved: c.flag("reserved", c.req("reserved", reserved)?)?,
        is_atomic: c.flag("is_atomic", c.req("is_atomic", is_atomic)?)?,
        size: c.dec("size", c.req("size", size)?)?,
        align: c.dec("align", c.req("align", align)?)?,
    })
}

fn parse_chunk_base(event: &'static str, p: &[u8]) -> Result<u64, ParseErrorKind> {
    let c = Ctx { event };
    let base = Fields::new(p)
        .filter(|(k, _)| *k == b"base_addr")
        .last()
        .map(|(_, v)| v);
    c.ptr("base_addr", c.req("base_addr", base)?)
}

/// Skips the `(symbol+off/size)` probe-address prefix of a kprobe payload.
fn strip_probe_ip(p: &[u8]) -> &[u8] {
    let p = trim_start(p);
    if p.first() == Some(&b'(') {
        if let Some(close) = p.iter().position(|&c| c == b')') {
            return &p[close + 1..];
        }
    }
    p
}

fn parse_chunk_pages(event: &'static str, p: &[u8]) -> Result<ChunkPages, ParseErrorKind> {
    let c = Ctx { event };
    let (mut chunk, mut base, mut start, mut end) = (None, None, None, None);
    for (k, v) in Fields::new(strip_probe_ip(p)) {
        match k {
            b"chunk" => chunk = Some(v),
            b"base_addr" => base = Some(v),
            b"page_start" => start = Some(v),
            b"page_end" => end = Some(v),
            _ => {}
        }
    }
    Ok(ChunkPages {
        chunk: chunk.map(|v| c.ptr("chunk", v)).transpose()?,
        base_addr: c.ptr("base_addr", c.req("base_addr", base)?)?,
        page_start: c.page_index("page_start", c.req("page_start", start)?)?,
        page_end: c.page_index("page_end", c.req("page_end", end)?)?,
    })
}

/// Decodes the text of a `tracing_mark_write` event (control characters in a
/// phase name or marker text escaped).
fn parse_marker(text: &[u8]) -> Result<Event, ParseErrorKind> {
    let text = match text {
        [t @ .., b'\r'] => t,
        t => t,
    };
    let s = String::from_utf8_lossy(text);
    if let Some(rest) = s.strip_prefix("PHASE ") {
        // The name runs up to the last ` begin` or `Percpu:`, so that it may
        // hold spaces; an empty one is malformed.
        let rest = rest.trim_end();
        let empty_name = || ParseErrorKind::BadValue {
            event: EV_MARK,
            field: "name",
            value: snippet(s.as_bytes()),
            expected: "`PHASE <name> begin` or `PHASE <name> Percpu: <n> kB` with a name",
        };
        if let Some(name) = rest
            .strip_suffix(" begin")
            .or((rest == "begin").then_some(""))
        {
            let name = name.trim();
            if name.is_empty() {
                return Err(empty_name());
            }
            return Ok(Event::PhaseBegin {
                name: escape_controls(name).into_owned(),
            });
        }
        if let Some((name, v)) = rest.rsplit_once("Percpu:") {
            if name.is_empty() || name.ends_with(char::is_whitespace) {
                let name = name.trim();
                if name.is_empty() {
                    return Err(empty_name());
                }
                let v = v.trim();
                let num = v.strip_suffix("kB").unwrap_or(v).trim_end();
                return match parse_dec(num.as_bytes()) {
                    Some(kb) => Ok(Event::PhasePercpu {
                        name: escape_controls(name).into_owned(),
                        kb,
                    }),
                    None => Err(ParseErrorKind::BadValue {
                        event: EV_MARK,
                        field: "Percpu",
                        value: snippet(v.as_bytes()),
                        expected: "`PHASE <name> Percpu: <n> kB`",
                    }),
                };
            }
        }
    }
    Ok(Event::Marker(escape_controls(&s).into_owned()))
}

/// Maps a kprobe symbol to the event it stands for, for probes given other event names.
fn probe_event(payload: &[u8]) -> Option<&'static str> {
    let p = trim_start(payload).strip_prefix(b"(")?;
    let end = p.iter().position(|&c| c == b'+' || c == b')')?;
    match &p[..end] {
        b"pcpu_chunk_populated" => Some(EV_POP),
        b"pcpu_chunk_depopulated" => Some(EV_DEPOP),
        b"pcpu_balance_workfn" => Some(EV_BALANCE),
        _ => None,
    }
}

/// The lines `trace-cmd report` writes before and between events: `cpus=N`,
/// `version = N` and `CPU N is empty`.
fn report_header(line: &[u8]) -> bool {
    let digits = |s: &[u8]| parse_dec(s).is_some();
    let line = trim_end(line);
    if let Some(n) = line.strip_prefix(b"cpus=") {
        return digits(n);
    }
    if let Some(n) = line.strip_prefix(b"version = ") {
        return digits(n);
    }
    line.strip_prefix(b"CPU ")
        .and_then(|r| r.strip_suffix(b" is empty"))
        .is_some_and(digits)
}

/// A trace marker as `trace-cmd report` and `perf script` print it: the `print` event
/// (`ftrace:print`) with the payload `tracing_mark_write: <text>`.
fn print_marker(payload: &[u8]) -> Option<&[u8]> {
    let text = trim_start(payload).strip_prefix(b"tracing_mark_write:")?;
    Some(strip_one_space(text))
}

/// A report of an overflowed ring buffer: ftrace's `CPU:N [LOST M EVENTS]`,
/// trace-cmd's `CPU:N [M EVENTS DROPPED]` and `CPU:N [EVENTS DROPPED]`.
fn lost_events(line: &[u8]) -> Option<ParseErrorKind> {
    let rest = trim_start(line).strip_prefix(b"CPU:")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let cpu = u32::try_from(parse_dec(&rest[..digits])?).ok()?;
    let report = trim_start(trim_end(&rest[digits..]));
    let count = if report == b"[EVENTS DROPPED]" {
        None
    } else if let Some(n) = report
        .strip_prefix(b"[LOST ")
        .and_then(|r| r.strip_suffix(b" EVENTS]"))
    {
        Some(parse_dec(n)?)
    } else {
        let n = report
            .strip_prefix(b"[")?
            .strip_suffix(b" EVENTS DROPPED]")?;
        Some(parse_dec(n)?)
    };
    Some(ParseErrorKind::LostEvents { cpu, count })
}

impl LineParser {
    /// A new parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line (with or without its `\n`/`\r\n` terminator). `line_no` is the
    /// 1-based line number used in the record and in errors.
    ///
    /// Lines starting with `#` (in the first column: a task name may start with `#`), and
    /// `trace-cmd report`'s `cpus=N`, `version = N` and `CPU N is empty` lines, are
    /// [`Line::Comment`]s; empty or all-blank lines are [`Line::Blank`];
    /// well-formed lines of other events are [`Line::Unknown`]. kprobe events are recognised
    /// by their event name or, for probes defined under another name, by the probed symbol.
    pub fn parse_line<'a>(&mut self, line: &'a [u8], line_no: u64) -> Result<Line<'a>, ParseError> {
        let line = match line {
            [l @ .., b'\r', b'\n'] | [l @ .., b'\n'] => l,
            l => l,
        };
        let err = |kind| ParseError {
            line: line_no,
            kind,
        };
        if line.first() == Some(&b'#') || report_header(line) {
            return Ok(Line::Comment(line));
        }
        if trim_start(line).is_empty() {
            return Ok(Line::Blank);
        }
        if let Some(kind) = lost_events(line) {
            return Err(err(kind));
        }
        let pre = parse_prefix(line).map_err(err)?;
        let mut name = pre.event;
        if !matches!(name, b"percpu_alloc_percpu" | b"percpu_free_percpu") {
            if let Some(ev) = probe_event(pre.payload) {
                name = ev.as_bytes();
            }
        }
        let event = match name {
            b"percpu_alloc_percpu" => {
                parse_alloc(pre.payload, &mut self.call_sites, &mut self.gfp_flags)
            }
            b"percpu_free_percpu" => parse_free(pre.payload),
            b"percpu_alloc_percpu_fail" => parse_fail(pre.payload),
            b"percpu_create_chunk" => parse_chunk_base(EV_CREATE, pre.payload)
                .map(|base_addr| Event::CreateChunk { base_addr }),
            b"percpu_destroy_chunk" => parse_chunk_base(EV_DESTROY, pre.payload)
                .map(|base_addr| Event::DestroyChunk { base_addr }),
            b"pcpu_chunk_populated" => {
                parse_chunk_pages(EV_POP, pre.payload).map(Event::ChunkPopulated)
            }
            b"pcpu_chunk_depopulated" => {
                parse_chunk_pages(EV_DEPOP, pre.payload).map(Event::ChunkDepopulated)
            }
            b"pcpu_balance_workfn" => Ok(Event::BalanceWork),
            b"tracing_mark_write" => parse_marker(pre.payload),
            b"print" => match print_marker(pre.payload) {
                Some(text) => parse_marker(text),
                None => return Ok(Line::Unknown { event: pre.event }),
            },
            _ => return Ok(Line::Unknown { event: pre.event }),
        }
        .map_err(err)?;
        Ok(Line::Record(Record {
            line: line_no,
            task: self.tasks.get(pre.task),
            pid: pre.pid,
            cpu: pre.cpu,
            flags: pre.flags,
            ts: pre.ts,
            event,
        }))
    }

    /// Parses one line that must be an event line (not a comment, blank or unknown event):
    /// a convenience for tests and generators.
    pub fn parse_record(&mut self, line: &str) -> Result<Record, ParseError> {
        match self.parse_line(line.as_bytes(), 1)? {
            Line::Record(r) => Ok(r),
            _ => Err(ParseError {
                line: 1,
                kind: layout("not a percpu event line", line.as_bytes()),
            }),
        }
    }
}
