//! The replay engine: feeds trace records through a [`pcpu_core::Allocator`]
//! and measures it against the kernel's own record.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use pcpu_core::{
    AllocError, AllocFlags, Allocation, Allocator, Backend, BackendError, ChunkId, ChunkKind,
    ClassHint, FreeError, Magazine, Policy, SimBackend, MIN_ALLOC_SIZE,
};
use pcpu_trace::{Event, Record};

use crate::refaults::{Refaults, SOON_RUNS};
use crate::report::{Disagreement, PhaseReport, Report, Sample};
use crate::setup::Setup;
use crate::ReplayError;

/// Where allocations go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Our allocator places every allocation.
    Simulate,
    /// Follow the kernel's recorded chunk and offset (population policy only).
    Kernel,
}

/// When the balance work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceTiming {
    /// At the kernel's `pcpu_balance_workfn` kprobe events.
    Recorded,
    /// Right after any allocation or free that schedules it (kernel rules).
    Modelled,
    /// Recorded when the trace has balance events, else modelled.
    Auto,
}

/// Which placement class each allocation gets (policies with class
/// placement only; the Linux policies ignore classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassMode {
    /// No classes: plain first fit.
    None,
    /// The allocating task (pid): its objects are kept contiguous. Each
    /// allocation also carries its call site (the whole `call_site=` text,
    /// hashed), which `Policy::long_lived` learns from.
    Task,
    /// Lifetime classes derived from the trace: objects freed in the same
    /// phase (or never) share pages. The upper bound of what hints can do.
    Derived,
    /// Size classes (slab-like segregation): one page-exclusive class per
    /// power-of-two size bucket (4, 8, 16, ... bytes, see [`size_class`]).
    SizeClass,
    /// Call-site segregation: one page-exclusive class per call site
    /// function (`percpu_ref_init`); allocations without a traced call site
    /// get no class.
    CallSite,
}

/// The size bucket of a `size`-byte allocation under [`ClassMode::SizeClass`]:
/// `log2` of the size rounded up to a power of two (at least 4 bytes, so 2).
pub fn size_class(size: u64) -> u64 {
    u64::from(size.max(4).next_power_of_two().trailing_zeros())
}

/// The class id of a call site function under [`ClassMode::CallSite`] (FNV-1a
/// of the name, so stable across runs).
pub fn call_site_class(function: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in function.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Replay options.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Policy to replay with.
    pub policy: Policy,
    /// Placement mode.
    pub placement: Placement,
    /// Balance timing.
    pub balance: BalanceTiming,
    /// Run the full invariant check after every operation (slow; for tests).
    pub check_invariants: bool,
    /// Skip (and count) what cannot be replayed instead of failing: frees of
    /// unknown pointers, and events that parse but make no sense (an
    /// allocation request the kernel would reject or placed outside the
    /// unit, a kprobe page range outside the chunk).
    pub lenient: bool,
    /// Take a timeline sample every this many records (0: phases only).
    pub sample_every: usize,
    /// Placement classes.
    pub classes: ClassMode,
    /// Keep a log of every page operation of our allocator
    /// ([`Replayer::page_log`]; for thrash and traffic studies).
    pub page_log: bool,
    /// Per-CPU magazines of this many freed areas per request (0: none, as
    /// in Linux). With magazines, a free on CPU `c` goes to `c`'s magazine of
    /// the request's size and alignment (a full one frees its older half),
    /// an allocation on `c` takes from it first, and every balance run drains
    /// all magazines before it works: what a slab-like free cache would cost
    /// the kernel's percpu allocator in memory. Simulated placement only;
    /// reserved allocations and requests above [`MAGAZINE_MAX_SIZE`] bypass
    /// them (as in the `pcpu` crate's thread caches).
    pub magazine: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            policy: Policy::default(),
            placement: Placement::Simulate,
            balance: BalanceTiming::Auto,
            check_invariants: false,
            lenient: false,
            sample_every: 500,
            classes: ClassMode::Task,
            page_log: false,
            magazine: 0,
        }
    }
}

const RESERVED_SERIAL: u32 = u32::MAX;

/// The most chunks a kernel-placement replay keeps at once.
const MAX_KERNEL_CHUNKS: usize = 4096;

/// The most unit bytes (chunks × unit size) a kernel-placement replay keeps
/// at once: a chunk's bitmaps take about 1/128 of its unit, so this bounds
/// them near 512 MiB whatever the unit size (4096 chunks of 512 KiB units
/// are 2 GiB).
const MAX_KERNEL_UNIT_BYTES: usize = 1 << 36;

/// Largest request (bytes) that goes through a magazine
/// ([`ReplayConfig::magazine`]).
pub const MAGAZINE_MAX_SIZE: usize = 256;

/// What a [`PageOp`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageOpKind {
    /// A chunk was created (no page populated).
    CreateChunk,
    /// A chunk was destroyed (its id may be reused afterwards).
    DestroyChunk,
    /// Pages were populated.
    Populate,
    /// Pages were depopulated.
    Depopulate,
}

/// One operation of our allocator on its backend, logged when
/// [`ReplayConfig::page_log`] is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageOp {
    /// Records fed so far, this one included (1-based index of the record
    /// whose replay did the operation).
    pub event: u64,
    /// Balance runs started so far (the run doing it, when `in_balance`).
    pub balance_run: u64,
    /// Done by a balance run (else by an allocation populating its pages).
    pub in_balance: bool,
    /// What was done.
    pub kind: PageOpKind,
    /// Our chunk id (ids are reused after `DestroyChunk`).
    pub chunk: u32,
    /// Pages per unit (empty for chunk creation and destruction).
    pub pages: std::ops::Range<u32>,
}

/// The replay's backend: counts pages like [`SimBackend`] and optionally
/// logs every operation.
#[derive(Debug, Default)]
struct LogBackend {
    sim: SimBackend,
    /// Pages populated again after a depopulation (ours).
    refaults: Refaults,
    log: Option<Vec<PageOp>>,
    event: u64,
    run: u64,
    in_balance: bool,
}

impl LogBackend {
    fn push(&mut self, kind: PageOpKind, id: ChunkId, pages: std::ops::Range<usize>) {
        if let Some(log) = &mut self.log {
            log.push(PageOp {
                event: self.event,
                balance_run: self.run,
                in_balance: self.in_balance,
                kind,
                chunk: id.0,
                pages: pages.start as u32..pages.end as u32,
            });
        }
    }
}

impl Backend for LogBackend {
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError> {
        self.sim.create_chunk(id, nr_pages)?;
        self.refaults.forget(id.0.into());
        self.push(PageOpKind::CreateChunk, id, 0..0);
        Ok(())
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        self.sim.destroy_chunk(id);
        self.push(PageOpKind::DestroyChunk, id, 0..0);
    }
    fn populate(&mut self, id: ChunkId, pages: std::ops::Range<usize>) -> Result<(), BackendError> {
        self.sim.populate(id, pages.clone())?;
        let p = pages.start as u32..pages.end as u32;
        self.refaults
            .populated(id.0.into(), p, self.run, self.event);
        self.push(PageOpKind::Populate, id, pages);
        Ok(())
    }
    fn depopulate(
        &mut self,
        id: ChunkId,
        pages: std::ops::Range<usize>,
    ) -> Result<(), BackendError> {
        self.sim.depopulate(id, pages.clone())?;
        let p = pages.start as u32..pages.end as u32;
        self.refaults
            .depopulated(id.0.into(), p, self.run, self.event);
        self.push(PageOpKind::Depopulate, id, pages);
        Ok(())
    }
    fn flush_tlb(&mut self, id: ChunkId, pages: std::ops::Range<usize>) {
        self.sim.flush_tlb(id, pages);
    }
}

#[derive(Clone, Debug)]
struct LiveObj {
    ours: Option<Allocation>,
    /// The request's alignment, and whether it may go to a magazine (not
    /// reserved).
    align: u64,
    cacheable: bool,
    kchunk: u32,
    koff: u32,
    size: u32,
    /// Its lifetime class derived from the trace (`ClassMode::Derived` only).
    lifetime: Option<u64>,
    call_site: Option<std::sync::Arc<str>>,
    task: std::sync::Arc<str>,
    pid: i32,
}

/// A live traced object, as placed by our allocator.
#[derive(Clone, Debug)]
pub struct LiveObject {
    /// Our placement (None when our allocator failed it).
    pub ours: Option<Allocation>,
    /// Size in bytes (rounded up to 4).
    pub size: u32,
    /// The kernel call site's function (`percpu_ref_init`), when traced.
    pub call_site: Option<std::sync::Arc<str>>,
    /// The allocating task's name.
    pub task: std::sync::Arc<str>,
    /// The allocating task's pid.
    pub pid: i32,
}

/// Reference-counted set of pages holding live bytes.
#[derive(Default, Debug)]
struct PageRefs {
    refs: HashMap<(u32, u32), u32>,
    pages: u64,
    /// The chunks whose pages `fixed_pages` counts (the first and reserved
    /// chunks, which are never depopulated; `None`: not counted).
    fixed: [Option<u32>; 2],
    /// Of `pages`, those of the `fixed` chunks.
    fixed_pages: u64,
}

impl PageRefs {
    fn new(fixed: [Option<u32>; 2]) -> Self {
        PageRefs {
            fixed,
            ..PageRefs::default()
        }
    }

    fn add(&mut self, chunk: u32, off: u32, size: u32, page: u32, delta: i32) {
        let in_fixed = u64::from(self.fixed.contains(&Some(chunk)));
        for p in off / page..(off + size).div_ceil(page) {
            let e = self.refs.entry((chunk, p)).or_insert(0);
            if delta > 0 {
                if *e == 0 {
                    self.pages += 1;
                    self.fixed_pages += in_fixed;
                }
                *e += 1;
            } else {
                *e -= 1;
                if *e == 0 {
                    self.pages -= 1;
                    self.fixed_pages -= in_fixed;
                    self.refs.remove(&(chunk, p));
                }
            }
        }
    }
}

/// A replay in progress. Feed records with [`Replayer::feed`], then
/// [`Replayer::finish`].
#[derive(Debug)]
pub struct Replayer {
    a: Allocator,
    backend: LogBackend,
    cfg: ReplayConfig,
    setup: Setup,
    recorded: bool,
    kserial_by_base: HashMap<u64, u32>,
    next_kserial: u32,
    /// Kernel placement: our chunk for each kernel chunk, with its creation
    /// serial (our balance work may destroy a chunk the kernel kept, and a
    /// new chunk may then take its id).
    ours_by_kernel: HashMap<u32, (ChunkId, u64)>,
    live: HashMap<u64, LiveObj>,
    floor: PageRefs,
    kfloor: PageRefs,
    live_bytes: u64,
    compared: u64,
    agreed: u64,
    kpop: u64,
    /// The trace's `pcpu_balance_workfn` events so far (the kernel's runs).
    kruns: u64,
    /// The kernel's re-populated pages, from the kprobes.
    krefaults: Refaults,
    kdepop: u64,
    have_kprobes: bool,
    /// The trace has `pcpu_balance_workfn` events (the kernel's runs).
    have_kruns: bool,
    unknown_frees: u64,
    /// Events that make no sense, skipped in lenient mode.
    bad_events: u64,
    swapped: u64,
    /// The trace says it is synthetic: its phase figures are placeholders.
    synthetic: bool,
    derived: HashMap<u64, u64>,
    /// Live bytes per derived lifetime class (`ClassMode::Derived` only;
    /// classes with no live byte are removed).
    class_bytes: HashMap<u64, u64>,
    /// Per-CPU magazines by (cpu, size, align) ([`ReplayConfig::magazine`]);
    /// ordered, so that draining is deterministic.
    mags: BTreeMap<(u32, usize, usize), Magazine>,
    report: Report,
    base_pages: u64,
    events: u64,
}

impl Replayer {
    /// Start a replay. `has_balance_events` decides `BalanceTiming::Auto`.
    pub fn new(
        setup: Setup,
        cfg: ReplayConfig,
        has_balance_events: bool,
        has_kprobes: bool,
    ) -> Result<Self, ReplayError> {
        let mut a = Allocator::new(setup.geometry, cfg.policy);
        let mut backend = LogBackend {
            log: cfg.page_log.then(Vec::new),
            refaults: Refaults::new(SOON_RUNS, u64::MAX),
            ..LogBackend::default()
        };
        let first = a.first_chunk();
        for &(off, len) in &setup.prefill {
            let mut o = off;
            let max = setup.geometry.max_alloc_size();
            while o < off + len {
                let n = (off + len - o).min(max);
                a.alloc_at(&mut backend, first, o, n, 4, AllocFlags::NORMAL)
                    .map_err(|e| {
                        ReplayError::Setup(format!("pre-filling the first chunk at {o}: {e}"))
                    })?;
                o += n;
            }
        }
        let recorded = match cfg.balance {
            BalanceTiming::Recorded => true,
            BalanceTiming::Modelled => false,
            BalanceTiming::Auto => has_balance_events,
        };
        let base_pages = a.nr_populated() as u64;
        let first_chunk_kb = a.percpu_bytes() / 1024;
        let reserved = a.reserved_chunk().map(|c| c.0);
        let report = Report {
            schema: 1,
            policy: cfg.policy.to_string(),
            placement: match cfg.placement {
                Placement::Simulate => "simulate",
                Placement::Kernel => "kernel",
            }
            .into(),
            balance: if recorded { "recorded" } else { "modelled" }.into(),
            units: setup.geometry.nr_units() as u64,
            page_size: setup.geometry.page_size() as u64,
            first_chunk_kb,
            ..Report::default()
        };
        Ok(Replayer {
            a,
            backend,
            cfg,
            setup,
            recorded,
            kserial_by_base: HashMap::new(),
            next_kserial: 1,
            ours_by_kernel: HashMap::new(),
            live: HashMap::new(),
            floor: PageRefs::new([Some(first.0), reserved]),
            kfloor: PageRefs::new([None, None]),
            live_bytes: 0,
            compared: 0,
            agreed: 0,
            kpop: 0,
            kruns: 0,
            have_kruns: has_balance_events,
            krefaults: Refaults::new(SOON_RUNS, u64::MAX),
            kdepop: 0,
            have_kprobes: has_kprobes,
            unknown_frees: 0,
            bad_events: 0,
            swapped: 0,
            synthetic: false,
            derived: HashMap::new(),
            class_bytes: HashMap::new(),
            mags: BTreeMap::new(),
            report,
            base_pages,
            events: 0,
        })
    }

    /// The allocator being driven.
    pub fn allocator(&self) -> &Allocator {
        &self.a
    }

    fn kb(&self, pages: u64) -> u64 {
        pages * self.setup.geometry.nr_units() as u64 * self.setup.geometry.page_size() as u64
            / 1024
    }

    fn kernel_serial(&mut self, base: u64) -> u32 {
        if base == self.setup.first_base {
            return 0;
        }
        if Some(base) == self.setup.reserved_base {
            return RESERVED_SERIAL;
        }
        if let Some(&s) = self.kserial_by_base.get(&base) {
            return s;
        }
        let s = self.next_kserial;
        self.next_kserial += 1;
        self.kserial_by_base.insert(base, s);
        s
    }

    fn our_serial(&self, id: ChunkId) -> u32 {
        let c = self.a.chunk(id).expect("live");
        match c.kind() {
            ChunkKind::First => 0,
            ChunkKind::Reserved => RESERVED_SERIAL,
            ChunkKind::Dynamic => c.serial() as u32,
        }
    }

    fn our_chunk_for(&mut self, kserial: u32, line: u64) -> Result<ChunkId, ReplayError> {
        match kserial {
            0 => return Ok(self.a.first_chunk()),
            RESERVED_SERIAL => {
                return self
                    .a
                    .reserved_chunk()
                    .ok_or(ReplayError::Setup("no reserved chunk".into()))
            }
            _ => {}
        }
        if let Some(&(id, serial)) = self.ours_by_kernel.get(&kserial) {
            if self.a.chunk(id).is_some_and(|c| c.serial() == serial) {
                return Ok(id);
            }
        }
        // A chunk of ours that no kernel chunk is bound to and holds nothing
        // (the spare our balance work created when the kernel's did) is the
        // kernel's new chunk; a second one would only add pages.
        let spare = self
            .a
            .chunk_ids()
            .filter(|&id| {
                self.a.chunk(id).is_some_and(|c| {
                    c.kind() == ChunkKind::Dynamic
                        && c.nr_alloc() == 0
                        && !self
                            .ours_by_kernel
                            .values()
                            .any(|&(b, s)| b == id && s == c.serial())
                })
            })
            .max_by_key(|&id| self.a.chunk(id).map_or(0, |c| c.serial()));
        if let Some(id) = spare {
            let serial = self.a.chunk(id).map_or(0, |c| c.serial());
            self.ours_by_kernel.insert(kserial, (id, serial));
            return Ok(id);
        }
        // Each chunk costs tens of kilobytes of bitmaps: a trace that spreads
        // a few lines over thousands of made-up chunk addresses must not
        // take gigabytes (the captures here use under 50; 4096 chunks of
        // 512 KiB units would be 2 GiB of Percpu per CPU).
        let max = MAX_KERNEL_CHUNKS
            .min(MAX_KERNEL_UNIT_BYTES / self.setup.geometry.unit_size())
            .max(1);
        if self.a.nr_chunks() >= max {
            return Err(ReplayError::Limit {
                line,
                detail: format!(
                    "the trace's allocations lie in more than {max} chunks of {} bytes per unit at once",
                    self.setup.geometry.unit_size()
                ),
            });
        }
        let id = self
            .a
            .create_chunk(&mut self.backend)
            .map_err(|e| ReplayError::Internal(e.to_string()))?;
        let serial = self.a.chunk(id).map_or(0, |c| c.serial());
        self.ours_by_kernel.insert(kserial, (id, serial));
        Ok(id)
    }

    fn maybe_balance(&mut self) {
        if !self.recorded && self.a.balance_pending() {
            self.run_balance();
        }
    }

    /// An area from CPU `cpu`'s magazine for `(size, align)`, if it has one.
    fn take_cached(&mut self, cpu: u32, size: usize, align: usize) -> Option<Allocation> {
        let req = self.a.request(size, align).ok()?;
        let mag = self.mags.get_mut(&(cpu, req.size, req.align))?;
        if mag.is_empty() {
            return None; // the caller places it (by class, when it has one)
        }
        let got = self
            .a
            .alloc_cached(&mut self.backend, mag, AllocFlags::NORMAL)
            .ok()?;
        self.report.magazine_hits += 1;
        Some(got)
    }

    /// Free `x`, allocated for alignment `align`, into CPU `cpu`'s magazine.
    fn free_cached(&mut self, cpu: u32, align: usize, x: Allocation) -> Result<(), FreeError> {
        let req = self
            .a
            .request(x.size, align)
            .expect("a live area's request is valid");
        let cap = self.cfg.magazine;
        let mag = self
            .mags
            .entry((cpu, req.size, req.align))
            .or_insert_with(|| Magazine::new(req, cap));
        self.a.free_cached(mag, x)
    }

    fn run_balance(&mut self) {
        // Magazines give their areas back first, so that reclaim sees them.
        for mag in self.mags.values_mut() {
            self.a.drain(mag);
        }
        self.report.balance_runs += 1;
        self.backend.run = self.report.balance_runs;
        self.backend.in_balance = true;
        self.a.balance(&mut self.backend);
        self.backend.in_balance = false;
    }

    fn check(&self, rec: &Record) -> Result<(), ReplayError> {
        if self.cfg.check_invariants {
            self.a
                .check_invariants()
                .map_err(|e| ReplayError::Internal(format!("line {}: {e}", rec.line)))?;
        }
        Ok(())
    }

    fn sample(&mut self, t: f64) {
        let s = Sample {
            t,
            resident_kb: self.a.percpu_bytes() / 1024,
            floor_kb: self.kb(self.floor.pages),
            ideal_kb: self.kb(self
                .live_bytes
                .div_ceil(self.setup.geometry.page_size() as u64)),
            kernel_percpu_kb: self
                .have_kprobes
                .then(|| self.kb((self.base_pages + self.kpop).saturating_sub(self.kdepop))),
        };
        self.report.timeline.push(s);
    }

    /// Should `b` be replayed before `a`? `percpu_alloc_percpu` is emitted
    /// after `pcpu_lock` is dropped, so two allocations racing on different
    /// CPUs can appear in the trace in the opposite order of their placement.
    /// Swap when our allocator would not place `a` where the kernel did, but
    /// would place `b` exactly where the kernel did (simulate mode only).
    pub fn should_swap(&self, a: &Record, b: &Record) -> bool {
        let (Event::Alloc(ea), Event::Alloc(eb)) = (&a.event, &b.event) else {
            return false;
        };
        if self.cfg.placement != Placement::Simulate || a.cpu == b.cpu {
            return false;
        }
        let matches = |ev: &pcpu_trace::AllocEvent| -> bool {
            let Ok(req) = self.a.request(ev.size as usize, ev.align as usize) else {
                return false;
            };
            let flags = AllocFlags {
                atomic: ev.is_atomic,
                reserved: ev.reserved,
            };
            match self.a.probe(req, flags) {
                Some((id, off)) => {
                    off as u64 == ev.off
                        && self.kernel_serial_peek(ev.base_addr) == Some(self.our_serial(id))
                }
                None => false,
            }
        };
        !matches(ea) && matches(eb)
    }

    fn kernel_serial_peek(&self, base: u64) -> Option<u32> {
        if base == self.setup.first_base {
            Some(0)
        } else if Some(base) == self.setup.reserved_base {
            Some(RESERVED_SERIAL)
        } else {
            self.kserial_by_base.get(&base).copied()
        }
    }

    /// Replay one record.
    pub fn feed(&mut self, rec: &Record) -> Result<(), ReplayError> {
        match self.feed_one(rec) {
            Err(ReplayError::BadEvent { .. }) if self.cfg.lenient => {
                self.bad_events += 1;
                Ok(())
            }
            r => r,
        }
    }

    /// [`Replayer::feed`]; a `BadEvent` error changes nothing but the event
    /// count.
    fn feed_one(&mut self, rec: &Record) -> Result<(), ReplayError> {
        self.events += 1;
        self.backend.event = self.events;
        let page = self.setup.geometry.page_size() as u32;
        match &rec.event {
            Event::Alloc(ev) => {
                let unit = self.setup.geometry.unit_size() as u64;
                let valid = usize::try_from(ev.size)
                    .ok()
                    .zip(usize::try_from(ev.align).ok())
                    .is_some_and(|(s, a)| self.a.request(s, a).is_ok());
                if !valid {
                    return Err(ReplayError::BadEvent {
                        line: rec.line,
                        detail: format!(
                            "size {} align {} is not a valid percpu request",
                            ev.size, ev.align
                        ),
                    });
                }
                if ev.off >= unit || ev.size > unit - ev.off {
                    return Err(ReplayError::BadEvent {
                        line: rec.line,
                        detail: format!(
                            "off={} size={} lies outside the chunk's {unit}-byte unit",
                            ev.off, ev.size
                        ),
                    });
                }
                // Alignments under 4 are 4, as in the kernel and `alloc_at`.
                let min_align = ev.align.max(MIN_ALLOC_SIZE as u64);
                if ev.off % min_align != 0 {
                    return Err(ReplayError::BadEvent {
                        line: rec.line,
                        detail: format!("off={} is not aligned to {min_align}", ev.off),
                    });
                }
                if self.live.contains_key(&ev.ptr) {
                    // Checked before anything changes: a lost free event
                    // (skipped with --lenient) or a corrupt trace.
                    let detail = format!("pointer {:#x} allocated again while live", ev.ptr);
                    return Err(if self.cfg.lenient {
                        ReplayError::BadEvent {
                            line: rec.line,
                            detail,
                        }
                    } else {
                        ReplayError::Overlap {
                            line: rec.line,
                            detail,
                        }
                    });
                }
                let kchunk = self.kernel_serial(ev.base_addr);
                let flags = AllocFlags {
                    atomic: ev.is_atomic,
                    reserved: ev.reserved,
                };
                let size = ev.size as usize;
                let align = ev.align as usize;
                let lifetime = (self.cfg.classes == ClassMode::Derived)
                    .then(|| self.derived.get(&rec.line).copied().unwrap_or(u64::MAX));
                let class = match self.cfg.classes {
                    ClassMode::None => None,
                    // The call site only feeds `Policy::long_lived`: not
                    // hashed for a policy without it.
                    ClassMode::Task => Some(
                        ClassHint::task(rec.pid as u64).at_site(
                            ev.call_site
                                .as_ref()
                                .filter(|_| self.a.policy().long_lived)
                                .map_or(0, |c| call_site_class(c.as_str())),
                        ),
                    ),
                    ClassMode::Derived => lifetime.map(ClassHint::lifetime),
                    ClassMode::SizeClass => Some(ClassHint::lifetime(size_class(ev.size))),
                    ClassMode::CallSite => {
                        ev.caller().map(|f| ClassHint::lifetime(call_site_class(f)))
                    }
                };
                let cacheable = self.cfg.magazine > 0
                    && self.cfg.placement == Placement::Simulate
                    && !flags.reserved
                    && size <= MAGAZINE_MAX_SIZE;
                let cached = if cacheable {
                    self.take_cached(rec.cpu, size, align)
                } else {
                    None
                };
                let res = match self.cfg.placement {
                    _ if cached.is_some() => Ok(cached.expect("just checked")),
                    Placement::Simulate => match class {
                        Some(c) if self.a.policy().class_placement => {
                            self.a.alloc_class(&mut self.backend, size, align, flags, c)
                        }
                        _ => self.a.alloc(&mut self.backend, size, align, flags),
                    },
                    Placement::Kernel => {
                        let id = self.our_chunk_for(kchunk, rec.line)?;
                        match self.a.alloc_at(
                            &mut self.backend,
                            id,
                            ev.off as usize,
                            size,
                            align,
                            flags,
                        ) {
                            // Nothing changed (alignment and the unit were
                            // checked above, so a chunk newly bound to this
                            // kernel chunk cannot refuse it): skipped with
                            // --lenient.
                            Err(e @ AllocError::Occupied { .. }) if !self.cfg.lenient => {
                                return Err(ReplayError::Overlap {
                                    line: rec.line,
                                    detail: e.to_string(),
                                })
                            }
                            Err(
                                e @ (AllocError::Occupied { .. } | AllocError::Misplaced { .. }),
                            ) => {
                                return Err(ReplayError::BadEvent {
                                    line: rec.line,
                                    detail: e.to_string(),
                                })
                            }
                            r => r,
                        }
                    }
                };
                // Invalid requests were refused above, before anything changed
                // (a new kernel chunk's serial or binding only comes with an
                // allocation it accepts: see the kernel arm).
                self.report.allocs += 1;
                let ours = match res {
                    Ok(x) => Some(x),
                    Err(_) => {
                        self.report.failed_allocs += 1;
                        None
                    }
                };
                let size4 = (size.div_ceil(4) * 4) as u32;
                if let Some(x) = ours {
                    if self.cfg.placement == Placement::Simulate {
                        self.compared += 1;
                        let ours_serial = self.our_serial(x.chunk);
                        if ours_serial == kchunk && x.offset as u64 == ev.off {
                            self.agreed += 1;
                        } else if self.report.disagreements.len() < 20 {
                            self.report.disagreements.push(Disagreement {
                                line: rec.line,
                                size: ev.size,
                                align: ev.align,
                                kernel_chunk: kchunk,
                                kernel_off: ev.off,
                                our_chunk: ours_serial,
                                our_off: x.offset as u64,
                            });
                        }
                    }
                    self.floor.add(x.chunk.0, x.offset as u32, size4, page, 1);
                }
                self.kfloor.add(kchunk, ev.off as u32, size4, page, 1);
                self.live_bytes += size4 as u64;
                if let Some(l) = lifetime {
                    *self.class_bytes.entry(l).or_insert(0) += size4 as u64;
                }
                let obj = LiveObj {
                    ours,
                    align: ev.align,
                    cacheable,
                    kchunk,
                    koff: ev.off as u32,
                    size: size4,
                    lifetime,
                    call_site: ev
                        .call_site
                        .as_ref()
                        .map(|c| std::sync::Arc::from(c.function())),
                    task: rec.task.clone(),
                    pid: rec.pid,
                };
                let old = self.live.insert(ev.ptr, obj);
                debug_assert!(old.is_none(), "checked before the allocation");
                self.maybe_balance();
            }
            Event::Free { ptr, .. } => {
                let Some(obj) = self.live.remove(ptr) else {
                    if self.cfg.lenient {
                        self.unknown_frees += 1;
                        return Ok(());
                    }
                    return Err(ReplayError::UnknownFree {
                        line: rec.line,
                        ptr: *ptr,
                    });
                };
                self.report.frees += 1;
                if let Some(x) = obj.ours {
                    let freed = if obj.cacheable {
                        self.free_cached(rec.cpu, obj.align as usize, x)
                    } else {
                        self.a.free(x.chunk, x.offset).map(drop)
                    };
                    freed.map_err(|e| ReplayError::Internal(format!("line {}: {e}", rec.line)))?;
                    self.floor
                        .add(x.chunk.0, x.offset as u32, obj.size, page, -1);
                }
                self.kfloor.add(obj.kchunk, obj.koff, obj.size, page, -1);
                self.live_bytes -= obj.size as u64;
                if let Some(l) = obj.lifetime {
                    if let Some(b) = self.class_bytes.get_mut(&l) {
                        *b -= obj.size as u64;
                        if *b == 0 {
                            self.class_bytes.remove(&l);
                        }
                    }
                }
                self.maybe_balance();
            }
            Event::CreateChunk { base_addr } => {
                let s = self.next_kserial;
                self.next_kserial += 1;
                self.kserial_by_base.insert(*base_addr, s);
            }
            Event::DestroyChunk { base_addr } => {
                if let Some(s) = self.kserial_by_base.remove(base_addr) {
                    self.ours_by_kernel.remove(&s);
                }
                self.krefaults.forget(*base_addr);
            }
            Event::ChunkPopulated(p) | Event::ChunkDepopulated(p) => {
                let pages = self.setup.geometry.unit_pages();
                if p.page_start > p.page_end || p.page_end as usize > pages {
                    return Err(ReplayError::BadEvent {
                        line: rec.line,
                        detail: format!(
                            "page_start={} page_end={} is not a range of the chunk's {pages} pages",
                            p.page_start, p.page_end
                        ),
                    });
                }
                let range = p.page_start..p.page_end;
                if matches!(rec.event, Event::ChunkPopulated(_)) {
                    self.kpop += u64::from(p.nr_pages());
                    self.krefaults
                        .populated(p.base_addr, range, self.kruns, self.events);
                } else {
                    self.kdepop += u64::from(p.nr_pages());
                    self.krefaults
                        .depopulated(p.base_addr, range, self.kruns, self.events);
                }
            }
            Event::BalanceWork => {
                self.kruns += 1;
                if self.recorded {
                    self.run_balance();
                }
            }
            Event::PhasePercpu { name, kb } => {
                let p = PhaseReport {
                    name: name.clone(),
                    percpu_kb: self.a.percpu_bytes() / 1024,
                    kernel_percpu_kb: (!self.synthetic).then_some(*kb),
                    ideal_kb: self.kb(self.live_bytes.div_ceil(page as u64)),
                    floor_kb: self.kb(self.floor.pages),
                    kernel_floor_kb: self.kb(self.kfloor.pages),
                    chunks: self.a.nr_chunks() as u64,
                    live_objects: self.live.len() as u64,
                    live_bytes: self.live_bytes,
                    populated_pages: self.backend.sim.populated_pages,
                    depopulated_pages: self.backend.sim.depopulated_pages,
                    kernel_populated_pages: self.have_kprobes.then_some(self.kpop),
                    kernel_depopulated_pages: self.have_kprobes.then_some(self.kdepop),
                    first_chunk_floor_kb: self.kb(self.floor.fixed_pages),
                    class_bound_kb: (self.cfg.classes == ClassMode::Derived).then(|| {
                        self.kb(self
                            .class_bytes
                            .values()
                            .map(|b| b.div_ceil(page as u64))
                            .sum())
                    }),
                };
                self.report.phases.push(p);
                self.sample(rec.ts);
            }
            Event::Marker(m) if m.starts_with(pcpu_trace::SYNTHETIC_MARKER) => {
                self.synthetic = true
            }
            Event::AllocFail { .. } | Event::PhaseBegin { .. } | Event::Marker(_) => {}
        }
        self.check(rec)?;
        if self.cfg.sample_every > 0 && self.events % self.cfg.sample_every as u64 == 0 {
            self.sample(rec.ts);
        }
        Ok(())
    }

    /// Every page operation so far, when [`ReplayConfig::page_log`] is set
    /// (else empty).
    pub fn page_log(&self) -> &[PageOp] {
        self.backend.log.as_deref().unwrap_or(&[])
    }

    /// Balance runs so far.
    pub fn balance_runs(&self) -> u64 {
        self.report.balance_runs
    }

    /// The live traced objects now (for "who pins my memory" reports).
    pub fn live_objects(&self) -> impl Iterator<Item = LiveObject> + '_ {
        self.live.values().map(|o| LiveObject {
            ours: o.ours,
            size: o.size,
            call_site: o.call_site.clone(),
            task: o.task.clone(),
            pid: o.pid,
        })
    }

    /// Close the replay and produce the report.
    pub fn finish(mut self, elapsed_s: f64) -> Report {
        let r = &mut self.report;
        r.events = self.events;
        r.elapsed_s = elapsed_s;
        r.events_per_s = if elapsed_s > 0.0 {
            self.events as f64 / elapsed_s
        } else {
            0.0
        };
        r.placement_agreement =
            (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64);
        r.populated_pages = self.backend.sim.populated_pages;
        r.depopulated_pages = self.backend.sim.depopulated_pages;
        r.long_lived_objects = self.a.long_lived_objects();
        // Every chunk goes through the backend: made by an allocation, by
        // the balance work, or (kernel placement) where the kernel's was.
        r.chunks_created = self.backend.sim.created;
        r.chunks_destroyed = self.backend.sim.destroyed;
        r.kernel_populated_pages = self.have_kprobes.then_some(self.kpop);
        r.kernel_depopulated_pages = self.have_kprobes.then_some(self.kdepop);
        r.repopulated_pages = self.backend.refaults.pages;
        r.repopulated_soon_pages = self.backend.refaults.within_runs;
        r.kernel_repopulated_pages = self.have_kprobes.then_some(self.krefaults.pages);
        r.kernel_repopulated_soon_pages =
            (self.have_kprobes && self.have_kruns).then_some(self.krefaults.within_runs);
        r.reordered_allocs = self.swapped;
        self.report
    }

    /// Frees of unknown pointers skipped in lenient mode.
    pub fn unknown_frees(&self) -> u64 {
        self.unknown_frees
    }

    /// Events that make no sense (see [`ReplayConfig::lenient`]), skipped in
    /// lenient mode.
    pub fn bad_events(&self) -> u64 {
        self.bad_events
    }
}

/// Does the trace have `pcpu_balance_workfn` events, and populate/depopulate
/// kprobe events? (Decides `BalanceTiming::Auto` and whether kernel page
/// figures are known.)
pub fn trace_features(records: &[Record]) -> (bool, bool) {
    let has_balance = records
        .iter()
        .any(|r| matches!(r.event, Event::BalanceWork));
    let has_kprobes = records.iter().any(|r| {
        matches!(
            r.event,
            Event::ChunkPopulated(_) | Event::ChunkDepopulated(_)
        )
    });
    (has_balance, has_kprobes)
}

/// `(name, timestamp)` of every `PHASE <name> Percpu` marker, in trace order
/// (one per [`PhaseReport`]).
pub fn phase_marks(records: &[Record]) -> Vec<(String, f64)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::PhasePercpu { name, .. } => Some((name.clone(), r.ts)),
            _ => None,
        })
        .collect()
}

/// Replay `records` with `setup` and `cfg`; `progress(done, total)` is called
/// every 4096 records.
pub fn replay(
    name: &str,
    records: &[Record],
    setup: Setup,
    cfg: ReplayConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Report, Allocator), ReplayError> {
    if !records
        .iter()
        .any(|r| matches!(r.event, Event::Alloc(_) | Event::Free { .. }))
    {
        return Err(ReplayError::NoEvents);
    }
    let (has_balance, has_kprobes) = trace_features(records);
    let start = Instant::now();
    let mut rp = Replayer::new(setup, cfg, has_balance, has_kprobes)?;
    let total = records.len();
    rp.run(records, &mut |done| progress(done, total), &|_| false)?;
    let elapsed = start.elapsed().as_secs_f64();
    let a = rp.a.clone();
    let mut report = rp.finish(elapsed);
    report.trace = name.to_string();
    Ok((report, a))
}

impl Replayer {
    /// Replay `records` in order (the whole trace, from its first record):
    /// derives lifetime classes first when the configuration asks for them,
    /// replays racing allocations in the order the kernel placed them (see
    /// [`Replayer::should_swap`]), calls `progress(records done)` every 4096
    /// records, and stops after the first record for which `stop` is true.
    /// Returns the number of records replayed.
    pub fn run(
        &mut self,
        records: &[Record],
        progress: &mut dyn FnMut(usize),
        stop: &dyn Fn(&Record) -> bool,
    ) -> Result<usize, ReplayError> {
        if self.cfg.classes == ClassMode::Derived && self.derived.is_empty() {
            self.derived = derive_lifetime_classes(records);
        }
        let mut i = 0;
        while i < records.len() {
            let swap = i + 1 < records.len() && self.should_swap(&records[i], &records[i + 1]);
            let n = if swap { 2 } else { 1 };
            if swap {
                self.swapped += 1;
                self.feed(&records[i + 1])?;
                self.feed(&records[i])?;
            } else {
                self.feed(&records[i])?;
            }
            let stopped = records[i..i + n].iter().any(stop);
            i += n;
            if i % 4096 < n {
                progress(i);
            }
            if stopped {
                break;
            }
        }
        progress(i);
        Ok(i)
    }
}

/// Lifetime class of every allocation (keyed by trace line): the index of the
/// phase in which it is freed, or `u64::MAX` when it outlives the trace.
pub fn derive_lifetime_classes(records: &[Record]) -> HashMap<u64, u64> {
    let mut phase = 0u64;
    let mut open: HashMap<u64, u64> = HashMap::new();
    let mut out = HashMap::new();
    for r in records {
        match &r.event {
            Event::PhaseBegin { .. } => phase += 1,
            Event::Alloc(a) => {
                open.insert(a.ptr, r.line);
            }
            Event::Free { ptr, .. } => {
                if let Some(line) = open.remove(ptr) {
                    out.insert(line, phase);
                }
            }
            _ => {}
        }
    }
    for (_, line) in open {
        out.insert(line, u64::MAX);
    }
    out
}
