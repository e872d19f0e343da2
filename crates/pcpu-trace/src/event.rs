//! The event model: one [`Record`] per trace line, carrying an [`Event`].
//!
//! Every type here also implements [`Display`](fmt::Display) so that a record prints as one
//! line of ftrace text in the Linux 6.x layout, which the parser in this crate reads back
//! unchanged (see [`crate::write`]).

use std::fmt;
use std::sync::Arc;

/// One parsed trace line: the common ftrace columns plus the decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 1-based line number in the (decompressed) trace text.
    pub line: u64,
    /// Task name (`comm`), without the alignment padding. The kernel prints `<...>` when it
    /// no longer knew the name and `<idle>` for the idle task. Names are interned: records of
    /// the same task share one allocation.
    pub task: Arc<str>,
    /// Process id printed after the task name.
    pub pid: i32,
    /// CPU whose ring buffer held the event (`[003]` is 3).
    pub cpu: u32,
    /// The latency/flags column (`d..1.` in 6.x, `d..1` in older kernels); `None` when the
    /// trace has no such column (`irq-info` off or very old kernels).
    pub flags: Option<Flags>,
    /// Timestamp in seconds, as printed (microsecond resolution for the usual clocks).
    pub ts: f64,
    /// The decoded event.
    pub event: Event,
}

/// A decoded trace event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `percpu_alloc_percpu`: a successful allocation.
    Alloc(AllocEvent),
    /// `percpu_free_percpu`: an area was freed (emitted under `pcpu_lock`).
    Free {
        /// `base_addr` of the chunk holding the area.
        base_addr: u64,
        /// Offset of the area inside the chunk's unit.
        off: u64,
        /// The percpu pointer that was freed.
        ptr: u64,
    },
    /// `percpu_alloc_percpu_fail`: an allocation request failed.
    AllocFail {
        /// Request for the reserved chunk.
        reserved: bool,
        /// Atomic (non-sleeping) request.
        is_atomic: bool,
        /// Requested size in bytes.
        size: u64,
        /// Requested alignment in bytes.
        align: u64,
    },
    /// `percpu_create_chunk`: a new chunk was created.
    CreateChunk {
        /// `base_addr` of the new chunk.
        base_addr: u64,
    },
    /// `percpu_destroy_chunk`: a chunk was destroyed.
    DestroyChunk {
        /// `base_addr` of the destroyed chunk.
        base_addr: u64,
    },
    /// kprobe on `pcpu_chunk_populated(chunk, page_start, page_end)`: pages
    /// `[page_start, page_end)` of the chunk became populated.
    ChunkPopulated(ChunkPages),
    /// kprobe on `pcpu_chunk_depopulated(chunk, page_start, page_end)`: pages
    /// `[page_start, page_end)` of the chunk were depopulated.
    ChunkDepopulated(ChunkPages),
    /// kprobe on `pcpu_balance_workfn`: one run of the asynchronous balance work.
    BalanceWork,
    /// Trace marker `PHASE <name> begin`.
    PhaseBegin {
        /// Phase name (`BOOT`, `A`, `R1c`, ...).
        name: String,
    },
    /// Trace marker `PHASE <name> Percpu: <n> kB`: the `Percpu:` line of `/proc/meminfo`,
    /// read between this phase's `begin` marker and this marker.
    PhasePercpu {
        /// Phase name.
        name: String,
        /// The `Percpu:` figure in KiB.
        kb: u64,
    },
    /// Any other `tracing_mark_write` text (without the trailing newline).
    Marker(String),
}

/// Payload of the `pcpu_chunk_populated` / `pcpu_chunk_depopulated` kprobe events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkPages {
    /// The `struct pcpu_chunk *` (kprobe field `chunk`), if the probe fetched it.
    pub chunk: Option<u64>,
    /// The chunk's `base_addr` (matches `percpu_create_chunk`'s `base_addr`).
    pub base_addr: u64,
    /// First page of the range (inclusive).
    pub page_start: u32,
    /// End of the range (exclusive).
    pub page_end: u32,
}

impl ChunkPages {
    /// Number of pages in `[page_start, page_end)` (0 if the range is inverted).
    pub fn nr_pages(&self) -> u32 {
        self.page_end.saturating_sub(self.page_start)
    }
}

/// Payload of `percpu_alloc_percpu`.
///
/// Kernels before 6.0 print only `reserved is_atomic size align base_addr off ptr`; the
/// fields that 6.0 added are `None` for such traces.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocEvent {
    /// Caller (`call_site=%pS`, 6.0+), e.g. `percpu_ref_init+0x3e/0x120`.
    pub call_site: Option<CallSite>,
    /// Allocation from the reserved chunk.
    pub reserved: bool,
    /// Atomic (non-sleeping) allocation.
    pub is_atomic: bool,
    /// Size in bytes as the allocator saw it (rounded up to a multiple of 4).
    pub size: u64,
    /// Alignment in bytes (at least 4).
    pub align: u64,
    /// `base_addr` of the chunk the area was taken from.
    pub base_addr: u64,
    /// Offset of the area inside the chunk's unit (an `int` in the kernel; never negative).
    pub off: u64,
    /// The returned percpu pointer.
    pub ptr: u64,
    /// Bytes charged for the allocation over all units (6.0+).
    pub bytes_alloc: Option<u64>,
    /// GFP flags as printed (6.0+). The 6.1 captures print this field empty.
    pub gfp_flags: Option<Arc<str>>,
}

impl AllocEvent {
    /// `base_addr + off - ptr`, which equals the kernel's `pcpu_base_addr` when pointers are
    /// printed raw (`nohash-ptr`); the same value on every alloc line of a good trace.
    pub fn pcpu_base_addr(&self) -> u64 {
        self.base_addr.wrapping_add(self.off).wrapping_sub(self.ptr)
    }

    /// Function name of the call site, if the trace has one (see [`CallSite::function`]).
    pub fn caller(&self) -> Option<&str> {
        self.call_site.as_ref().map(CallSite::function)
    }
}

/// The `call_site=` value of an allocation: a symbol such as
/// `percpu_ref_init+0x3e/0x120` (possibly followed by ` [module]`) or a raw address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallSite(pub Arc<str>);

impl CallSite {
    /// The text as printed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The function part: the text before `+` (`percpu_ref_init`), or the whole text when it
    /// has no `+` (a raw address or a bare symbol).
    pub fn function(&self) -> &str {
        let s: &str = &self.0;
        match s.find('+') {
            Some(i) => &s[..i],
            None => s.split(' ').next().unwrap_or(s),
        }
    }

    /// The offset inside the function (`0x3e` in `percpu_ref_init+0x3e/0x120`).
    pub fn offset(&self) -> Option<u64> {
        let s: &str = &self.0;
        let rest = &s[s.find('+')? + 1..];
        let end = rest.find('/').unwrap_or(rest.len());
        parse_hex(&rest.as_bytes()[..end])
    }

    /// The address, when the call site was printed as a raw hex number (no symbol).
    pub fn address(&self) -> Option<u64> {
        parse_hex(self.0.as_bytes())
    }
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `0x`-prefixed or bare hex (1 to 16 digits).
pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = match s {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        _ => s,
    };
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// The ftrace flags column (`irqs-off`, `need-resched`, `hardirq/softirq`, `preempt-depth`,
/// `migrate-disable` in 6.x), kept verbatim (up to 8 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags {
    bytes: [u8; 8],
    len: u8,
}

impl Flags {
    /// Maximum number of characters kept.
    pub const MAX_LEN: usize = 8;

    /// Builds the column from its text; `None` if it is empty, longer than
    /// [`Flags::MAX_LEN`], or contains whitespace or non-ASCII characters.
    pub fn new(text: &str) -> Option<Flags> {
        Self::from_bytes(text.as_bytes())
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Flags> {
        if b.is_empty() || b.len() > Self::MAX_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; 8];
        bytes[..b.len()].copy_from_slice(b);
        Some(Flags {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The column text, e.g. `d..1.`.
    pub fn as_str(&self) -> &str {
        // Only ASCII graphic bytes are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    fn at(&self, i: usize) -> u8 {
        if i < usize::from(self.len) {
            self.bytes[i]
        } else {
            b'.'
        }
    }

    /// Interrupts were disabled (`d` or `D` in the first position).
    pub fn irqs_off(&self) -> bool {
        matches!(self.at(0), b'd' | b'D')
    }

    /// The event was recorded in softirq context (`s`, or `H` = hardirq inside softirq).
    pub fn in_softirq(&self) -> bool {
        matches!(self.at(2), b's' | b'H')
    }

    /// The event was recorded in hardirq context (`h`, or `H`).
    pub fn in_hardirq(&self) -> bool {
        matches!(self.at(2), b'h' | b'H')
    }

    /// Preempt depth (fourth position, a hex digit), `None` when printed as `.`.
    pub fn preempt_depth(&self) -> Option<u8> {
        let c = self.at(3);
        (c as char).to_digit(16).map(|d| d as u8)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:?})", self.as_str())
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an [`Event`], for counting and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// [`Event::Alloc`]
    Alloc,
    /// [`Event::Free`]
    Free,
    /// [`Event::AllocFail`]
    AllocFail,
    /// [`Event::CreateChunk`]
    CreateChunk,
    /// [`Event::DestroyChunk`]
    DestroyChunk,
    /// [`Event::ChunkPopulated`]
    ChunkPopulated,
    /// [`Event::ChunkDepopulated`]
    ChunkDepopulated,
    /// [`Event::BalanceWork`]
    BalanceWork,
    /// [`Event::PhaseBegin`]
    PhaseBegin,
    /// [`Event::PhasePercpu`]
    PhasePercpu,
    /// [`Event::Marker`]
    Marker,
}

impl EventKind {
    /// Number of kinds.
    pub const COUNT: usize = 11;

    /// All kinds, in declaration order.
    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::Alloc,
        EventKind::Free,
        EventKind::AllocFail,
        EventKind::CreateChunk,
        EventKind::DestroyChunk,
        EventKind::ChunkPopulated,
        EventKind::ChunkDepopulated,
        EventKind::BalanceWork,
        EventKind::PhaseBegin,
        EventKind::PhasePercpu,
        EventKind::Marker,
    ];

    /// A stable label: the ftrace event name for tracepoints and kprobes
    /// (`percpu_alloc_percpu`, `pcpu_chunk_populated`, ...), and `phase_begin`,
    /// `phase_percpu`, `marker` for the three kinds of trace marker.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Alloc => "percpu_alloc_percpu",
            EventKind::Free => "percpu_free_percpu",
            EventKind::AllocFail => "percpu_alloc_percpu_fail",
            EventKind::CreateChunk => "percpu_create_chunk",
            EventKind::DestroyChunk => "percpu_destroy_chunk",
            EventKind::ChunkPopulated => "pcpu_chunk_populated",
            EventKind::ChunkDepopulated => "pcpu_chunk_depopulated",
            EventKind::BalanceWork => "pcpu_balance_workfn",
            EventKind::PhaseBegin => "phase_begin",
            EventKind::PhasePercpu => "phase_percpu",
            EventKind::Marker => "marker",
        }
    }

    /// The ftrace event name these events are printed under (`tracing_mark_write` for the
    /// three marker kinds).
    pub fn ftrace_event(self) -> &'static str {
        match self {
            EventKind::PhaseBegin | EventKind::PhasePercpu | EventKind::Marker => {
                "tracing_mark_write"
            }
            other => other.name(),
        }
    }

    /// Index of this kind in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Alloc(_) => EventKind::Alloc,
            Event::Free { .. } => EventKind::Free,
            Event::AllocFail { .. } => EventKind::AllocFail,
            Event::CreateChunk { .. } => EventKind::CreateChunk,
            Event::DestroyChunk { .. } => EventKind::DestroyChunk,
            Event::ChunkPopulated(_) => EventKind::ChunkPopulated,
            Event::ChunkDepopulated(_) => EventKind::ChunkDepopulated,
            Event::BalanceWork => EventKind::BalanceWork,
            Event::PhaseBegin { .. } => EventKind::PhaseBegin,
            Event::PhasePercpu { .. } => EventKind::PhasePercpu,
            Event::Marker(_) => EventKind::Marker,
        }
    }
}

/// Event counts by [`EventKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts([u64; EventKind::COUNT]);

impl EventCounts {
    /// Count for one kind.
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind.index()]
    }

    /// Adds one event of `kind`.
    pub fn add(&mut self, kind: EventKind) {
        self.0[kind.index()] += 1;
    }

    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(kind, count)` for every kind, in [`EventKind::ALL`] order (zero counts included).
    pub fn iter(&self) -> impl Iterator<Item = (EventKind, u64)> + '_ {
        EventKind::ALL.iter().map(move |&k| (k, self.get(k)))
    }
}

impl fmt::Display for EventCounts {
    /// One `name count` pair per line for the non-zero kinds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, n) in self.iter().filter(|&(_, n)| n > 0) {
            writeln!(f, "{:<26} {n}", k.name())?;
        }
        Ok(())
    }
}

/// Symbol text printed in the `(sym+off/size)` prefix of the kprobe events when writing.
/// (The sizes are those of the 6.1.192 Debian build the shared captures come from; the
/// parser ignores this prefix.)
const KPROBE_POPULATED: &str = "(pcpu_chunk_populated+0x0/0x50)";
const KPROBE_DEPOPULATED: &str = "(pcpu_chunk_depopulated+0x0/0x60)";
const KPROBE_BALANCE: &str = "(pcpu_balance_workfn+0x0/0x550)";

fn fmt_chunk_pages(f: &mut fmt::Formatter<'_>, probe: &str, p: &ChunkPages) -> fmt::Result {
    f.write_str(probe)?;
    if let Some(chunk) = p.chunk {
        write!(f, " chunk={chunk:#x}")?;
    }
    write!(
        f,
        " base_addr={:#x} page_start={} page_end={}",
        p.base_addr, p.page_start, p.page_end
    )
}

impl fmt::Display for Event {
    /// Prints `<event>: <payload>` exactly as a 6.1 kernel does (5.x layout for an
    /// [`AllocEvent`] without the 6.0 fields).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind().ftrace_event())?;
        match self {
            Event::Alloc(a) => {
                if let Some(cs) = &a.call_site {
                    write!(f, "call_site={cs} ")?;
                }
                write!(
                    f,
                    "reserved={} is_atomic={} size={} align={} base_addr={:016x} off={} ptr={:016x}",
                    u8::from(a.reserved),
                    u8::from(a.is_atomic),
                    a.size,
                    a.align,
                    a.base_addr,
                    a.off,
                    a.ptr
                )?;
                if let Some(b) = a.bytes_alloc {
                    write!(f, " bytes_alloc={b}")?;
                }
                if let Some(g) = &a.gfp_flags {
                    write!(f, " gfp_flags={g}")?;
                }
                Ok(())
            }
            Event::Free {
                base_addr,
                off,
                ptr,
            } => {
                write!(f, "base_addr={base_addr:016x} off={off} ptr={ptr:016x}")
            }
            Event::AllocFail {
                reserved,
                is_atomic,
                size,
                align,
            } => write!(
                f,
                "reserved={} is_atomic={} size={size} align={align}",
                u8::from(*reserved),
                u8::from(*is_atomic)
            ),
            Event::CreateChunk { base_addr } | Event::DestroyChunk { base_addr } => {
                write!(f, "base_addr={base_addr:016x}")
            }
            Event::ChunkPopulated(p) => fmt_chunk_pages(f, KPROBE_POPULATED, p),
            Event::ChunkDepopulated(p) => fmt_chunk_pages(f, KPROBE_DEPOPULATED, p),
            Event::BalanceWork => f.write_str(KPROBE_BALANCE),
            Event::PhaseBegin { name } => write!(f, "PHASE {name} begin"),
            // /proc/meminfo pads the value to 8 digits after a 16-column label.
            Event::PhasePercpu { name, kb } => write!(f, "PHASE {name} Percpu: {kb:>16} kB"),
            Event::Marker(text) => f.write_str(text),
        }
    }
}

impl fmt::Display for Record {
    /// Prints the record as one ftrace text line (no trailing newline) in the 6.x layout:
    /// `<task:16>-<pid:-7> [<cpu:03>] <flags> <ts:12.6>: <event>: <payload>`. Without
    /// [`Record::flags`] the flags column is left out, as older kernels do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>16}-{:<7} [{:03}] ", self.task, self.pid, self.cpu)?;
        if let Some(flags) = &self.flags {
            write!(f, "{flags} ")?;
        }
        write!(f, "{:>12.6}: {}", self.ts, self.event)
    }
}

/// Trace-marker text that opens a synthetic trace (written by workload
/// generators): its `PHASE <X> Percpu` figures are placeholders, not a
/// kernel's measurement.
pub const SYNTHETIC_MARKER: &str = "PCPU-LAB synthetic trace";

/// Trace-marker text that opens the trace of a userspace allocator
/// (`pcpu::Builder::trace_dir`), traced from its creation: nothing was
/// allocated before it, so a replay infers nothing from its gaps (placed by
/// any policy, not only first fit). Its `PHASE <X> Percpu` figures are the
/// allocator's own.
pub const FROM_CREATION_MARKER: &str = "PCPU userspace allocator, traced from its creation";

/// Trace-marker text (followed by `: `, what failed and the error) that a
/// userspace allocator writes when the OS refused it memory: a new chunk's
/// mapping (it then placed the allocation by plain first fit, or failed
/// it), or pages to populate or depopulate (the allocation failed, or the
/// balance work left the pages as they were). A replay, whose page
/// operations never fail, does none of that: placements and pages may
/// differ from there.
pub const MAP_FAILED_MARKER: &str = "PCPU mapping failed";

/// Does the trace open with [`FROM_CREATION_MARKER`] (phase markers
/// aside)? Such a trace has every balance run and page operation of its
/// allocator, and nothing allocated before it.
pub fn traced_from_creation(records: &[Record]) -> bool {
    records
        .iter()
        .find(|r| {
            !matches!(
                r.event,
                Event::PhaseBegin { .. } | Event::PhasePercpu { .. }
            )
        })
        .is_some_and(|r| matches!(&r.event, Event::Marker(m) if m == FROM_CREATION_MARKER))
}
