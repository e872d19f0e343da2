//! Parser for Linux percpu-allocator traces in ftrace text format, and reader for
//! "capture folders" (a trace plus the kernel's percpu boot lines and meminfo figures).
//!
//! # The format
//!
//! A trace is the text of `/sys/kernel/tracing/trace`: a `#` header, then one line per
//! event:
//!
//! ```text
//!           <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=
//!      kworker/1:1-55      [001] d..1.     4.621798: pcpu_chunk_populated: (pcpu_chunk_populated+0x0/0x50) chunk=0xffff8dc28a542600 base_addr=0xfffff22e3fc00000 page_start=0 page_end=3
//!             init-1       [002] .....     6.678896: tracing_mark_write: PHASE BOOT begin
//! ```
//!
//! i.e. `<task>-<pid> [<cpu>] <flags> <timestamp>: <event>: <payload>`. Task names may
//! contain spaces and dashes (the pid follows the last `-` before ` [`); the flags column
//! is absent in some configurations; a `(<tgid>)` column (`record-tgid`) is skipped.
//!
//! The text of `trace-cmd report` and `perf script` reads the same way:
//!
//! ```text
//!  capture-small.s-18541 [001] 82553.874035: print:                tracing_mark_write: PHASE A begin
//!       capture.sh-16996 [000] 82400.884353: percpu_alloc_percpu:  call_site=mm_init+0x2bf reserved=0 is_atomic=0 size=16 align=8 base_addr=0xffffe8ffffc00000 off=43712 ptr=0x60795bb03ac0 bytes_alloc=64 gfp_flags=GFP_KERNEL
//!          swapper     0 [000] 82402.370540:       percpu:percpu_free_percpu: base_addr=0xffffe8ffffc00000 off=108408 ptr=0x60795bb1a778
//! ```
//!
//! trace-cmd prints no flags column, the marker as the `print` event, and the header
//! lines `cpus=N` (read as [`TraceHeader::nr_cpus`]), `version = N` and `CPU N is empty`;
//! perf prints `<comm> <tid>` (or `<comm> <pid>/<tid>`) and the event with its subsystem
//! (`percpu:percpu_free_percpu`).
//! Payloads are `key=value` fields, read as a map: fields may be reordered, unknown ones are
//! ignored, and the fields that Linux 6.0 added to `percpu_alloc_percpu` (`call_site`,
//! `bytes_alloc`, `gfp_flags`) are optional, so 5.x traces parse too. Pointers are hex with
//! or without `0x`; `gfp_flags=` may be empty (it always is in 6.1's text output).
//!
//! Recognised events ([`Event`]): the five `percpu:` tracepoints, the kprobe events
//! `pcpu_chunk_populated`, `pcpu_chunk_depopulated` and `pcpu_balance_workfn`, and trace
//! markers (`PHASE <X> begin`, `PHASE <X> Percpu: <n> kB`, anything else). Lines of other
//! events are skipped and counted ([`ParseStats::unknown_events`]); `#` and blank lines are
//! skipped. A malformed line is a [`ParseError`] naming the line and what was expected; in
//! lenient mode ([`ParseOptions::lenient`]) such lines are skipped and counted instead. A last
//! line without its newline (a cut trace) is malformed. Control characters in task names,
//! call sites, phase names and marker texts are escaped (`\u{1b}`), so that what a trace
//! holds cannot drive a terminal or break an SVG plot.
//!
//! # Taking a trace from a real kernel
//!
//! Boot with tracing enabled from the start, raw pointers, and a clock that is not switched
//! later (switching clears the buffer):
//!
//! ```text
//! trace_event=percpu:* trace_buf_size=256M trace_clock=mono trace_options=nohash-ptr
//! ```
//!
//! and, for the kernel's own population decisions and balance-work runs, kprobe events (the
//! `+56` is the offset of `base_addr` in `struct pcpu_chunk` for the 6.1 build used by the
//! shared captures; check it for another build):
//!
//! ```text
//! kprobe_event=p:percpu_probe/pcpu_chunk_populated,pcpu_chunk_populated,chunk=%di:x64,base_addr=+56(%di):x64,page_start=%si:s32,page_end=%dx:s32;p:percpu_probe/pcpu_chunk_depopulated,pcpu_chunk_depopulated,chunk=%di:x64,base_addr=+56(%di):x64,page_start=%si:s32,page_end=%dx:s32;p:percpu_probe/pcpu_balance_workfn,pcpu_balance_workfn
//! ```
//!
//! Mark workload phases with `echo "PHASE A begin" > /sys/kernel/tracing/trace_marker`,
//! then read `/proc/meminfo` and write `PHASE A Percpu: <n> kB` the same way. Afterwards save
//! `gzip < /sys/kernel/tracing/trace > trace.txt.gz`, check that the ring buffer lost nothing
//! (`per_cpu/cpu*/stats`: `overrun: 0`), and keep `dmesg | grep -iE 'percpu|pcpu'` as
//! `dmesg-percpu.txt`.
//!
//! # Capture folders
//!
//! [`Capture::open`] reads a folder holding `trace.txt.gz` (or `trace.txt`) and optionally
//! `dmesg-percpu.txt` ([`FirstChunkGeometry`], number of units; or `geometry.txt`, the same
//! lines derived from `percpu_stats` by [`record::geometry_lines`]) and `meminfo-phases.txt`
//! ([`MeminfoPhase`]). [`record`] records one on a running kernel.
//!
//! # Example
//!
//! ```
//! use pcpu_trace::{Event, TraceReader};
//!
//! let text = "\
//!           <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=
//!             init-1       [000] d..1.     4.132541: percpu_free_percpu: base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0
//! ";
//! let records: Vec<_> = TraceReader::new(text.as_bytes()).collect::<Result<_, _>>().unwrap();
//! match &records[0].event {
//!     Event::Alloc(a) => {
//!         assert_eq!((a.size, a.off), (4, 2208));
//!         assert_eq!(a.caller(), Some("alloc_desc"));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! // Records print back as the same ftrace text.
//! assert_eq!(records[1].to_string(), text.lines().nth(1).unwrap());
//! ```
#![forbid(unsafe_code)]

mod capture;
mod error;
mod event;
mod kernel_stats;
pub mod line;
mod parse;
mod reader;
pub mod record;
pub mod write;

pub use capture::{
    parse_dmesg, parse_meminfo_phases, Capture, CaptureError, FirstChunkGeometry, MeminfoPhase,
};
pub use error::{ParseError, ParseErrorKind, LAYOUT};
pub use event::{
    traced_from_creation, AllocEvent, CallSite, ChunkPages, Event, EventCounts, EventKind, Flags,
    Record, FROM_CREATION_MARKER, MAP_FAILED_MARKER, SYNTHETIC_MARKER,
};
pub use kernel_stats::{
    format_snapshot, parse_percpu_stats, parse_stats_snapshots, snapshot_at, ChunkStats,
    PercpuStats, StatsChunkKind, StatsSnapshot,
};
pub use parse::{Line, LineParser};
pub use reader::{
    decompress, from_reader, open_trace, parse_all, parse_file, ParseOptions, ParseStats, Trace,
    TraceHeader, TraceReader, MAX_LINE,
};
