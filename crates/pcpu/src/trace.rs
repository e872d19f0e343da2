//! Tracing a program's per-CPU allocations as the kernel traces its own
//! ([`Builder::trace_dir`](crate::Builder::trace_dir)): a capture folder
//! that `pcpu replay`, `pcpu compare`, `pcpu pins` and `pcpu stats` read as
//! they read a kernel's.
//!
//! The folder gets `dmesg-percpu.txt` (the geometry, as the kernel's boot
//! lines give it) and `trace.txt`, the ftrace text of the kernel's percpu
//! tracepoints and of the kprobes `pcpu record` would set:
//! `percpu_alloc_percpu` (the call site is the allocating call's
//! `file:line:column`, the task the thread's name and number),
//! `percpu_free_percpu`, `percpu_create_chunk`, `percpu_destroy_chunk`,
//! `pcpu_chunk_populated` / `pcpu_chunk_depopulated` and
//! `pcpu_balance_workfn` (every balance run), and the phase markers of
//! [`PerCpuAllocator::mark`](crate::PerCpuAllocator::mark) with the
//! allocator's Percpu figure. Every event is written under the allocator's
//! lock, where the core did what it records, so the trace has the core's
//! order. Chunk `base_addr`s are made up, the first chunk's being the
//! percpu base (pointers are `base_addr + off` less it, as the kernel's).
//!
//! A replay of the trace with the policy that made it (and its recorded
//! balance runs) places every allocation where this allocator did, with
//! its Percpu at every marker, when balance runs do not overlap
//! allocations: without the background thread (`balance_now`, `settle`),
//! or with one that ran while nothing allocated. The thread caches keep
//! freed areas allocated, as the core sees them: the trace has the core's
//! allocations, not every `PerCpu` the program made and dropped.

use crate::word_hash::WordMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pcpu_core::{ChunkId, Geometry};

use crate::hint::ThreadName;
use pcpu_trace::{AllocEvent, CallSite, ChunkPages, Event, Record};

/// The percpu base printed in the trace: the first chunk's `base_addr`.
const PCPU_BASE: u64 = 0xffff_e8ff_ffc0_0000;
/// `base_addr` of the first chunk created; each later one 4 GiB lower.
const DYN_TOP: u64 = 0xffff_d8ff_ffc0_0000;
const DYN_STRIDE: u64 = 1 << 32;

/// Thread names the trace keeps at most.
const TASK_NAMES: usize = 4096;

/// A trace being written.
///
/// # Invariants
/// `bases[c]` is `Some` iff chunk `c` is live and not the first chunk (its
/// `base_addr` in this trace); `error` holds the first failed write, after
/// which nothing more is written.
#[derive(Debug)]
pub(crate) struct Tracer {
    out: BufWriter<File>,
    start: Instant,
    first: ChunkId,
    bases: Vec<Option<u64>>,
    created: u64,
    units: u64,
    /// Call sites and thread names, interned.
    sites: WordMap<usize, CallSite>,
    tasks: WordMap<u64, Arc<str>>,
    gfp: Arc<str>,
    /// The line being written (kept for its allocation).
    line: Vec<u8>,
    error: Option<io::Error>,
}

impl Tracer {
    /// Create the capture folder `dir` (and its parents) for an allocator of
    /// geometry `geo` whose first chunk is `first`, and write its geometry
    /// and the trace's header.
    pub(crate) fn create(dir: &Path, geo: &Geometry, first: ChunkId) -> io::Result<Tracer> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join("dmesg-percpu.txt"), dmesg(geo))?;
        let mut out = BufWriter::new(File::create(dir.join("trace.txt"))?);
        out.write_all(b"# tracer: nop\n#\n")?;
        let mut t = Tracer {
            out,
            start: Instant::now(),
            first,
            bases: Vec::new(),
            created: 0,
            units: geo.nr_units() as u64,
            sites: WordMap::default(),
            tasks: WordMap::default(),
            gfp: Arc::from("GFP_KERNEL"),
            line: Vec::with_capacity(256),
            error: None,
        };
        t.push(Event::Marker(pcpu_trace::FROM_CREATION_MARKER.to_string()));
        Ok(t)
    }

    /// The chunk's `base_addr`.
    fn base(&self, chunk: ChunkId) -> u64 {
        if chunk == self.first {
            return PCPU_BASE;
        }
        self.bases
            .get(chunk.0 as usize)
            .copied()
            .flatten()
            .unwrap_or(0)
    }

    /// Write one event, as this thread, now.
    fn push(&mut self, event: Event) {
        if self.error.is_some() {
            return;
        }
        let thread = crate::hint::thread_number();
        // A program that spawns threads without end: the names start over
        // (a thread names itself again at its next event, from the name
        // `hint::thread_name` keeps for it, also while it exits).
        if self.tasks.len() >= TASK_NAMES && !self.tasks.contains_key(&thread) {
            self.tasks.clear();
        }
        let task = self
            .tasks
            .entry(thread)
            .or_insert_with(|| match crate::hint::thread_name() {
                ThreadName::Named(name) if !name.contains(char::is_whitespace) => name,
                ThreadName::Named(name) => Arc::from(name.replace(char::is_whitespace, "_")),
                ThreadName::Unnamed => Arc::from("thread"),
                // The kernel's name for a task it no longer knows.
                ThreadName::Unknown => Arc::from("<...>"),
            })
            .clone();
        let record = Record {
            line: 0,
            task,
            pid: i32::try_from(thread).unwrap_or(i32::MAX),
            cpu: u32::try_from(crate::current_cpu()).unwrap_or(0),
            flags: None,
            ts: self.start.elapsed().as_secs_f64(),
            event,
        };
        if let Err(e) = pcpu_trace::write::write_record_with(&mut self.out, &record, &mut self.line)
        {
            self.error = Some(e);
        }
    }

    /// `size` bytes at `align` were allocated at `offset` of `chunk` by the
    /// caller at `site`.
    pub(crate) fn alloc(
        &mut self,
        chunk: ChunkId,
        offset: usize,
        size: usize,
        align: usize,
        site: &'static Location<'static>,
    ) {
        let call_site = self
            .sites
            .entry(std::ptr::from_ref(site) as usize)
            .or_insert_with(|| {
                let name = format!("{}:{}:{}", site.file(), site.line(), site.column());
                CallSite(Arc::from(name.replace(char::is_whitespace, "_")))
            })
            .clone();
        let base = self.base(chunk);
        let (size, off) = (size as u64, offset as u64);
        let event = Event::Alloc(AllocEvent {
            call_site: Some(call_site),
            reserved: false,
            is_atomic: false,
            size,
            align: align.max(4) as u64,
            base_addr: base,
            off,
            ptr: ptr(base, off),
            bytes_alloc: Some(size * self.units),
            gfp_flags: Some(self.gfp.clone()),
        });
        self.push(event);
    }

    /// The allocation at `offset` of `chunk` was freed.
    pub(crate) fn free(&mut self, chunk: ChunkId, offset: usize) {
        let base = self.base(chunk);
        let off = offset as u64;
        self.push(Event::Free {
            base_addr: base,
            off,
            ptr: ptr(base, off),
        });
    }

    /// Chunk `chunk` was created (the first chunk, mapped with the
    /// allocator, is there from the start, as the kernel's).
    pub(crate) fn create_chunk(&mut self, chunk: ChunkId) {
        if chunk == self.first {
            return;
        }
        let base = DYN_TOP.wrapping_sub(self.created.wrapping_mul(DYN_STRIDE));
        self.created += 1;
        let i = chunk.0 as usize;
        if self.bases.len() <= i {
            self.bases.resize(i + 1, None);
        }
        self.bases[i] = Some(base);
        self.push(Event::CreateChunk { base_addr: base });
    }

    /// Chunk `chunk` was destroyed.
    pub(crate) fn destroy_chunk(&mut self, chunk: ChunkId) {
        let base = self.base(chunk);
        if let Some(b) = self.bases.get_mut(chunk.0 as usize) {
            *b = None;
        }
        self.push(Event::DestroyChunk { base_addr: base });
    }

    /// Pages `pages` of `chunk` were populated (`populated`) or
    /// depopulated.
    pub(crate) fn pages(&mut self, chunk: ChunkId, pages: Range<usize>, populated: bool) {
        let p = ChunkPages {
            chunk: None,
            base_addr: self.base(chunk),
            page_start: u32::try_from(pages.start).unwrap_or(u32::MAX),
            page_end: u32::try_from(pages.end).unwrap_or(u32::MAX),
        };
        self.push(if populated {
            Event::ChunkPopulated(p)
        } else {
            Event::ChunkDepopulated(p)
        });
    }

    /// The OS refused memory for `what` (`error`): what the allocator does
    /// next (an allocation takes plain first fit, or fails; the balance
    /// work goes on without the chunk or the pages) a replay does not do,
    /// which the marker tells it.
    pub(crate) fn map_failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.push(Event::Marker(format!(
            "{}: {what}: {error}",
            pcpu_trace::MAP_FAILED_MARKER
        )));
    }

    /// A balance run starts.
    pub(crate) fn balance_run(&mut self) {
        self.push(Event::BalanceWork);
    }

    /// Phase `name` (whitespace made `_`) is marked, with the allocator's
    /// Percpu figure `kb`; the trace is flushed.
    pub(crate) fn phase(&mut self, name: &str, kb: u64) {
        let name = name.replace(char::is_whitespace, "_");
        self.push(Event::PhaseBegin { name: name.clone() });
        self.push(Event::PhasePercpu { name, kb });
        let _ = self.flush();
    }

    /// Write what is buffered; the first error of any write so far.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
        match &self.error {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The percpu pointer the kernel would print: `base_addr + off` less the
/// percpu base.
fn ptr(base: u64, off: u64) -> u64 {
    base.wrapping_add(off).wrapping_sub(PCPU_BASE)
}

/// The kernel's percpu boot lines for geometry `geo`: no static or
/// reserved area, the first chunk's dynamic area, one group of units.
fn dmesg(geo: &Geometry) -> String {
    let fc = geo.first_chunk();
    let (unit, units) = (geo.unit_size(), geo.nr_units());
    let pages = (fc.static_size + fc.reserved_size + fc.dyn_size).div_ceil(geo.page_size());
    let sizes = format!(
        "s{} r{} d{} u{unit}",
        fc.static_size, fc.reserved_size, fc.dyn_size
    );
    let mut s = format!(
        "[    0.000000] percpu: Embedded {pages} pages/cpu {sizes}\n\
         [    0.000000] pcpu-alloc: {sizes} alloc=1*{}\n\
         [    0.000000] pcpu-alloc: [0]",
        unit * units
    );
    for u in 0..units {
        let _ = write!(s, " {u}");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcpu_core::FirstChunk;
    use std::sync::Mutex;

    #[test]
    fn the_thread_names_kept_are_bounded() {
        let dir = std::env::temp_dir().join(format!("pcpu-trace-names-{}", std::process::id()));
        let geo = Geometry::new(
            4096,
            2,
            64 << 10,
            FirstChunk {
                static_size: 0,
                reserved_size: 0,
                dyn_size: 16 << 10,
            },
        )
        .unwrap();
        let t = Mutex::new(Tracer::create(&dir, &geo, ChunkId(0)).unwrap());
        for i in 0..TASK_NAMES + 10 {
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name(format!("t{i}"))
                    .spawn_scoped(s, || t.lock().unwrap().balance_run())
                    .unwrap();
            });
            assert!(t.lock().unwrap().tasks.len() <= TASK_NAMES);
        }
        let mut t = t.into_inner().unwrap();
        t.flush().unwrap();
        // Each thread's line names it.
        let text = fs::read_to_string(dir.join("trace.txt")).unwrap();
        let last = format!("t{}-", TASK_NAMES + 9);
        assert!(text.lines().last().unwrap().trim_start().starts_with(&last));
        let _ = fs::remove_dir_all(&dir);
    }
}
