//! The replay engine: feeds trace records through a [`pcpu_core::Allocator`]
//! and measures it against the kernel's own record.

use std::collections::{BTreeMap, HashMap, HashSet};

use pcpu_core::bitmap::Bitmap;
use pcpu_core::{
    AllocError, AllocFlags, Allocation, Allocator, ChunkId, ChunkKind, ClassHint, FreeError,
    Magazine, MIN_ALLOC_SIZE,
};
use pcpu_trace::{AllocEvent, ChunkPages, Event, Record};

use crate::config::{
    call_site_class, size_class, BalanceTiming, ClassMode, Placement, ReplayConfig, AUTO_DELAY_US,
    MAGAZINE_MAX_SIZE,
};
use crate::kernel_places::KernelPlaces;
use crate::kernel_start::KernelStart;
use crate::page_log::{LogBackend, PageOp};
use crate::page_refs::PageRefs;

use crate::refaults::{Refaults, SOON_RUNS};
use crate::report::{Disagreement, PhaseReport, Report, Sample};
use crate::setup::Setup;
use crate::ReplayError;

const RESERVED_SERIAL: u32 = u32::MAX;
/// With `check_invariants`, the kernel places are checked in full every
/// this many events (and counted after every one).
const PLACES_CHECK_EVERY: u64 = 64;

/// Events a lenient replay skipped that it keeps to name
/// ([`Replayer::first_bad_events`]).
const FIRST_BAD_KEPT: usize = 3;

/// The most chunks a kernel-placement replay keeps at once.
const MAX_KERNEL_CHUNKS: usize = 4096;

/// The most unit bytes (chunks × unit size) a kernel-placement replay keeps
/// at once: a chunk's bitmaps take about 1/128 of its unit, so this bounds
/// them near 512 MiB whatever the unit size (4096 chunks of 512 KiB units
/// are 2 GiB).
const MAX_KERNEL_UNIT_BYTES: usize = 1 << 36;

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

/// A replay in progress. Feed records with [`Replayer::feed`], then
/// [`Replayer::finish`].
#[derive(Debug)]
pub struct Replayer {
    pub(crate) a: Allocator,
    backend: LogBackend,
    pub(crate) cfg: ReplayConfig,
    setup: Setup,
    recorded: bool,
    kserial_by_base: HashMap<u64, u32>,
    next_kserial: u32,
    /// Kernel placement: our chunk for each kernel chunk, with its creation
    /// serial (our balance work may destroy a chunk the kernel kept, and a
    /// new chunk may then take its id).
    ours_by_kernel: HashMap<u32, (ChunkId, u64)>,
    /// The values of `ours_by_kernel`, as a set (counted: two kernel chunks
    /// may be bound to one of ours after our balance work destroyed one).
    bound: HashMap<(ChunkId, u64), u32>,
    live: HashMap<u64, LiveObj>,
    /// The same objects by the kernel's chunk and offset.
    kplaces: KernelPlaces,
    /// Objects in use before tracing that the trace frees
    /// ([`Setup::pre_objects`]), by pointer, until freed.
    pre_live: HashMap<u64, Allocation>,
    /// The ranges in use before tracing that the trace never frees (our
    /// chunk, offset, length): [`Setup::prefill`] and each
    /// [`Setup::pre_chunks`] chunk's.
    pre_filled: Vec<(ChunkId, usize, usize)>,
    /// Frees of those so far.
    pre_frees: u64,
    /// Frees the trace lost, replayed when the kernel allocated over their
    /// objects (lenient).
    implied_frees: u64,
    /// Empty pages populated in chunks in use before tracing, as the
    /// kernel had them (per unit): from the kernel's `percpu_stats` when
    /// the replay starts, else at the first phase marker from its Percpu
    /// (`None` until then).
    pre_top_up: Option<u64>,
    /// A delayed balance work (`BalanceTiming::Delayed`, or `Auto` on a
    /// trace of a real kernel): the trace time the pending work was
    /// scheduled at.
    scheduled_at: Option<f64>,
    /// Live traced allocations per kernel chunk serial (a chunk the kernel
    /// destroys holds none).
    live_in_kchunk: HashMap<u32, u64>,
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
    /// The pages of each dynamic chunk the kprobes say the kernel holds
    /// populated (`base_addr` → bitmap), from its first populate event on:
    /// a chunk starts unpopulated, and the kernel populates only
    /// unpopulated runs and depopulates only populated ones.
    kpopulated: HashMap<u64, Bitmap>,
    have_kprobes: bool,
    /// The trace has `pcpu_balance_workfn` events (the kernel's runs).
    have_kruns: bool,
    unknown_frees: u64,
    /// Chunks used without a `percpu_create_chunk` event (lenient).
    uncreated: HashSet<u64>,
    /// Events that make no sense, skipped in lenient mode.
    bad_events: u64,
    /// The first [`FIRST_BAD_KEPT`] of them.
    first_bad: Vec<ReplayError>,
    pub(crate) swapped: u64,
    /// The trace is a userspace allocator's, written in the order its core
    /// placed (`pcpu_trace::FROM_CREATION_MARKER`): nothing is reordered.
    exact_order: bool,
    /// The trace says it is synthetic: its phase figures are placeholders.
    synthetic: bool,
    pub(crate) derived: HashMap<u64, u64>,
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
        fill(
            &mut a,
            &mut backend,
            first,
            &setup.prefill,
            "the first chunk",
        )?;
        let mut pre_filled: Vec<(ChunkId, usize, usize)> =
            setup.prefill.iter().map(|&(o, l)| (first, o, l)).collect();
        let first_chunk_kb = a.percpu_bytes() / 1024;
        // Chunks there before tracing: created and filled in the order the
        // trace first uses them, each bound to its kernel chunk.
        let mut pre_ids = HashMap::from([(setup.first_base, first)]);
        for c in &setup.pre_chunks {
            let id = a
                .create_chunk(&mut backend)
                .map_err(|e| ReplayError::Setup(format!("creating chunk {:#x}: {e}", c.base)))?;
            fill(
                &mut a,
                &mut backend,
                id,
                &c.prefill,
                "a chunk in use before tracing",
            )?;
            pre_filled.extend(c.prefill.iter().map(|&(o, l)| (id, o, l)));
            pre_ids.insert(c.base, id);
        }
        let mut pre_live = HashMap::new();
        for o in &setup.pre_objects {
            let id = *pre_ids.get(&o.base).ok_or_else(|| {
                ReplayError::Setup(format!(
                    "an object in use before tracing at {} in chunk {:#x}, which is not in use before tracing",
                    o.off, o.base
                ))
            })?;
            // One our allocator refuses (a request larger than it allows,
            // from a corrupt trace) is not inferred: its free is then a
            // free of an unknown pointer.
            if let Ok(x) = a.alloc_at(
                &mut backend,
                id,
                o.off,
                o.len,
                MIN_ALLOC_SIZE,
                AllocFlags::NORMAL,
            ) {
                pre_live.insert(o.ptr, x);
            }
        }
        // What it took to set up is not page traffic of the replay.
        backend.sim.populated_pages = 0;
        backend.sim.created = 0;
        if let Some(log) = &mut backend.log {
            log.clear();
        }
        let recorded = match cfg.balance {
            BalanceTiming::Recorded => true,
            BalanceTiming::Modelled | BalanceTiming::Delayed { .. } => false,
            BalanceTiming::Auto => has_balance_events,
        };
        let base_pages = a.nr_populated() as u64;
        let reserved = a.reserved_chunk().map(|c| c.0);
        let kplaces = KernelPlaces::new(setup.geometry.unit_size());
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
        let mut rp = Replayer {
            a,
            backend,
            cfg,
            setup,
            recorded,
            kserial_by_base: HashMap::new(),
            next_kserial: 1,
            ours_by_kernel: HashMap::new(),
            bound: HashMap::new(),
            pre_live,
            pre_filled,
            pre_frees: 0,
            implied_frees: 0,
            pre_top_up: None,
            scheduled_at: None,
            live: HashMap::new(),
            kplaces,
            live_in_kchunk: HashMap::new(),
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
            kpopulated: HashMap::new(),
            have_kprobes: has_kprobes,
            unknown_frees: 0,
            uncreated: HashSet::new(),
            bad_events: 0,
            first_bad: Vec::new(),
            swapped: 0,
            exact_order: false,
            synthetic: false,
            derived: HashMap::new(),
            class_bytes: HashMap::new(),
            mags: BTreeMap::new(),
            report,
            base_pages,
            events: 0,
        };
        for base in rp
            .setup
            .pre_chunks
            .iter()
            .map(|c| c.base)
            .collect::<Vec<_>>()
        {
            let kserial = rp.kernel_serial(base);
            let id = pre_ids[&base];
            let serial = rp.a.chunk(id).map_or(0, |c| c.serial());
            rp.bind(kserial, (id, serial));
        }
        if let Some(ks) = rp.setup.kernel_start.clone() {
            rp.top_up_from_kernel_stats(ks);
        }
        Ok(rp)
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

    /// Is `base` the first or the reserved chunk (there from boot, never
    /// created, populated, depopulated or destroyed by an event)?
    fn boot_chunk(&self, base: u64) -> bool {
        base == self.setup.first_base || Some(base) == self.setup.reserved_base
    }

    /// Is `base` a chunk the trace has: the first or reserved chunk, or one
    /// it created (or, lenient, one already counted as uncreated)?
    fn known_chunk(&self, base: u64) -> bool {
        self.boot_chunk(base)
            || self.kserial_by_base.contains_key(&base)
            || self.uncreated.contains(&base)
    }

    /// Chunk `base` is used at `rec` without having been created: an error,
    /// or (lenient) counted.
    fn uncreated_chunk(&mut self, rec: &Record, base: u64) -> Result<(), ReplayError> {
        // No other chunk lies inside the first chunk's units: one there is
        // the first chunk, placed elsewhere by a wrong geometry.
        let offset = base.wrapping_sub(self.setup.pcpu_base);
        let geo = &self.setup.geometry;
        if offset < (geo.unit_size() as u64).saturating_mul(geo.nr_units() as u64) {
            return Err(ReplayError::FirstChunkMismatch {
                line: rec.line,
                base,
                offset,
                expected: self.setup.first_base.wrapping_sub(self.setup.pcpu_base),
            });
        }
        if !self.cfg.lenient {
            return Err(ReplayError::NotFromBoot {
                line: rec.line,
                base,
                kprobe: matches!(
                    rec.event,
                    Event::ChunkPopulated(_) | Event::ChunkDepopulated(_)
                ),
            });
        }
        self.uncreated.insert(base);
        Ok(())
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
        // kernel's new chunk; a second one would only add pages. (`bound`
        // answers at once whether a chunk is bound: a trace of thousands of
        // chunks, each emptied before the next, must not take time cubic in
        // their number.)
        let spare = self
            .a
            .chunk_ids()
            .filter(|&id| {
                self.a.chunk(id).is_some_and(|c| {
                    c.kind() == ChunkKind::Dynamic
                        && c.nr_alloc() == 0
                        && !self.bound.contains_key(&(id, c.serial()))
                })
            })
            .max_by_key(|&id| self.a.chunk(id).map_or(0, |c| c.serial()));
        if let Some(id) = spare {
            let serial = self.a.chunk(id).map_or(0, |c| c.serial());
            self.bind(kserial, (id, serial));
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
        self.bind(kserial, (id, serial));
        Ok(id)
    }

    /// Binds kernel chunk `kserial` to our chunk `ours` (id and serial).
    fn bind(&mut self, kserial: u32, ours: (ChunkId, u64)) {
        self.unbind(kserial);
        self.ours_by_kernel.insert(kserial, ours);
        *self.bound.entry(ours).or_insert(0) += 1;
    }

    /// Forgets kernel chunk `kserial`'s binding, if any.
    fn unbind(&mut self, kserial: u32) {
        if let Some(ours) = self.ours_by_kernel.remove(&kserial) {
            if let Some(n) = self.bound.get_mut(&ours) {
                *n -= 1;
                if *n == 0 {
                    self.bound.remove(&ours);
                }
            }
        }
    }

    /// After an allocation or free at trace time `ts`: run the work it
    /// scheduled now, or with a delay note when it was scheduled.
    fn maybe_balance(&mut self, ts: f64) {
        if self.recorded || !self.a.balance_pending() {
            return;
        }
        match self.balance_delay_us() {
            Some(_) => {
                self.scheduled_at.get_or_insert(ts);
            }
            None => self.run_balance(),
        }
    }

    /// The balance work's delay when it is not recorded: `Delayed`'s; for
    /// `Auto` on a trace of a real kernel without balance events,
    /// [`AUTO_DELAY_US`]; none (on demand) otherwise.
    fn balance_delay_us(&self) -> Option<u32> {
        match self.cfg.balance {
            BalanceTiming::Delayed { us } => Some(us),
            BalanceTiming::Auto if !self.synthetic => Some(AUTO_DELAY_US),
            _ => None,
        }
    }

    /// Before an event at trace time `ts` (a delayed balance work): the
    /// work scheduled at least the delay before it has run.
    fn run_due_balance(&mut self, ts: f64) {
        if self.recorded {
            return;
        }
        let (Some(us), Some(at)) = (self.balance_delay_us(), self.scheduled_at) else {
            return;
        };
        if ts >= at + f64::from(us) * 1e-6 {
            self.scheduled_at = None;
            self.run_balance();
            // Scheduled again during the run: from its end, which is now.
            if self.a.balance_pending() {
                self.scheduled_at = Some(ts);
            }
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
        if !self.cfg.check_invariants {
            return Ok(());
        }
        let checked = self.a.check_invariants().map_err(|e| e.to_string());
        // The kernel places: their count after every event, all of them (a
        // pass over the live objects) every `PLACES_CHECK_EVERY`.
        let checked = checked.and_then(|()| {
            if self.events % PLACES_CHECK_EVERY == 0 {
                self.kplaces
                    .check(self.live.values().map(|o| (o.kchunk, o.koff, o.size)))
            } else if self.kplaces.len() != self.live.len() {
                Err(format!(
                    "{} kernel places for {} live objects",
                    self.kplaces.len(),
                    self.live.len()
                ))
            } else {
                Ok(())
            }
        });
        checked.map_err(|e| ReplayError::Internal(format!("line {}: {e}", rec.line)))
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
    /// Never in a userspace allocator's trace, written in its core's order
    /// (a first-fit probe can mistake a class placement for a race).
    pub fn should_swap(&self, a: &Record, b: &Record) -> bool {
        let (Event::Alloc(ea), Event::Alloc(eb)) = (&a.event, &b.event) else {
            return false;
        };
        if self.cfg.placement != Placement::Simulate || a.cpu == b.cpu || self.exact_order {
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
            Err(e @ ReplayError::BadEvent { .. }) if self.cfg.lenient => {
                self.bad_events += 1;
                if self.first_bad.len() < FIRST_BAD_KEPT {
                    self.first_bad.push(e);
                }
                Ok(())
            }
            r => r,
        }
    }

    /// [`Replayer::feed`]; a `BadEvent` error changes nothing but the event
    /// count.
    fn feed_one(&mut self, rec: &Record) -> Result<(), ReplayError> {
        self.events += 1;
        self.run_due_balance(rec.ts);
        self.backend.event = self.events;
        match &rec.event {
            Event::Alloc(ev) => self.feed_alloc(rec, ev)?,
            Event::Free { ptr, .. } => {
                if !self.feed_free(rec, *ptr)? {
                    return Ok(()); // an unknown pointer, skipped (lenient)
                }
            }
            Event::CreateChunk { base_addr } => self.feed_create(rec, *base_addr)?,
            Event::DestroyChunk { base_addr } => self.feed_destroy(rec, *base_addr)?,
            Event::ChunkPopulated(p) => self.feed_kernel_pages(rec, p, true)?,
            Event::ChunkDepopulated(p) => self.feed_kernel_pages(rec, p, false)?,
            Event::BalanceWork => {
                self.kruns += 1;
                if self.recorded {
                    self.run_balance();
                }
            }
            Event::PhasePercpu { name, kb } => {
                if self.pre_top_up.is_none() {
                    self.top_up_to_percpu(*kb);
                }
                let p = self.phase_report(name, *kb);
                self.report.phases.push(p);
                self.sample(rec.ts);
            }
            Event::Marker(m) if m.starts_with(pcpu_trace::SYNTHETIC_MARKER) => {
                self.synthetic = true
            }
            Event::Marker(m) if m == pcpu_trace::FROM_CREATION_MARKER => self.exact_order = true,
            Event::AllocFail { .. } | Event::PhaseBegin { .. } | Event::Marker(_) => {}
        }
        self.check(rec)?;
        if self.cfg.sample_every > 0 && self.events % self.cfg.sample_every as u64 == 0 {
            self.sample(rec.ts);
        }
        Ok(())
    }

    /// A `percpu_create_chunk` event: refused (before anything changes) for
    /// a chunk that is live already, the first or reserved chunk, or one
    /// created and not destroyed since.
    fn feed_create(&mut self, rec: &Record, base: u64) -> Result<(), ReplayError> {
        let live = if base == self.setup.first_base {
            Some("the first chunk")
        } else if Some(base) == self.setup.reserved_base {
            Some("the reserved chunk")
        } else if self.kserial_by_base.contains_key(&base) {
            Some("a chunk in use, not destroyed since")
        } else {
            None
        };
        if let Some(what) = live {
            return Err(ReplayError::BadEvent {
                line: rec.line,
                detail: format!(
                    "percpu_create_chunk of chunk {base:#x}, which is {what}: the kernel creates a chunk only at a free address"
                ),
            });
        }
        let s = self.next_kserial;
        self.next_kserial += 1;
        self.kserial_by_base.insert(base, s);
        Ok(())
    }

    /// A `percpu_destroy_chunk` event: refused (before anything changes) for
    /// the first or reserved chunk, and for a chunk that still holds traced
    /// allocations (the kernel destroys only empty chunks: a free event was
    /// lost, or the trace is corrupt).
    fn feed_destroy(&mut self, rec: &Record, base: u64) -> Result<(), ReplayError> {
        let bad = |detail: String| ReplayError::BadEvent {
            line: rec.line,
            detail,
        };
        if self.boot_chunk(base) {
            return Err(bad(format!(
                "percpu_destroy_chunk of chunk {base:#x}, the first or reserved chunk, which the kernel never destroys"
            )));
        }
        if !self.known_chunk(base) {
            self.uncreated_chunk(rec, base)?;
        }
        let live = self
            .kserial_by_base
            .get(&base)
            .and_then(|s| self.live_in_kchunk.get(s))
            .copied()
            .unwrap_or(0);
        if live > 0 {
            return Err(bad(format!(
                "percpu_destroy_chunk of chunk {base:#x}, which holds {live} live allocation{}: the kernel destroys only empty chunks (a lost free event, or a corrupt trace)",
                if live == 1 { "" } else { "s" }
            )));
        }
        if let Some(s) = self.kserial_by_base.remove(&base) {
            self.unbind(s);
        }
        self.kpopulated.remove(&base);
        self.krefaults.forget(base);
        Ok(())
    }

    /// Refuse an allocation event the kernel could not have made, or whose
    /// pointer is still live, before anything changes.
    fn check_alloc(&self, rec: &Record, ev: &AllocEvent) -> Result<(), ReplayError> {
        let unit = self.setup.geometry.unit_size() as u64;
        let valid = usize::try_from(ev.size)
            .ok()
            .zip(usize::try_from(ev.align).ok())
            .is_some_and(|(s, a)| self.a.request(s, a).is_ok());
        let bad = |detail: String| ReplayError::BadEvent {
            line: rec.line,
            detail,
        };
        if !valid {
            return Err(bad(format!(
                "size {} align {} is not a valid percpu request",
                ev.size, ev.align
            )));
        }
        if ev.off >= unit || ev.size > unit - ev.off {
            return Err(bad(format!(
                "off={} size={} lies outside the chunk's {unit}-byte unit",
                ev.off, ev.size
            )));
        }
        // Alignments under 4 are 4, as in the kernel and `alloc_at`.
        let min_align = ev.align.max(MIN_ALLOC_SIZE as u64);
        if ev.off % min_align != 0 {
            return Err(bad(format!("off={} is not aligned to {min_align}", ev.off)));
        }
        // With a reserved chunk, reserved requests go there and only there
        // (without one they fall through to the other chunks).
        if let Some(rb) = self.setup.reserved_base {
            if ev.reserved != (ev.base_addr == rb) {
                return Err(bad(if ev.reserved {
                    format!(
                        "reserved=1 allocation in chunk {:#x}, not the reserved chunk {rb:#x}: the kernel places reserved requests in the reserved chunk only",
                        ev.base_addr
                    )
                } else {
                    format!(
                        "reserved=0 allocation in the reserved chunk {rb:#x}: the kernel places only reserved requests there"
                    )
                }));
            }
        }
        if !self.cfg.lenient {
            // A lost free event (implied with --lenient: see `feed_alloc`)
            // or a corrupt trace.
            let detail = if self.live.contains_key(&ev.ptr) {
                format!("pointer {:#x} allocated again while live", ev.ptr)
            } else {
                match self.overlapped(ev).first() {
                    Some(p) => format!(
                        "pointer {:#x} ({} bytes) allocated over live pointer {p:#x}",
                        ev.ptr, ev.size
                    ),
                    None => return Ok(()),
                }
            };
            return Err(ReplayError::Overlap {
                line: rec.line,
                detail: format!(
                    "{detail} (the kernel hands out only free space: the trace lost its free, \
                     or is corrupt; --lenient replays the free there)"
                ),
            });
        }
        Ok(())
    }

    /// The live traced objects that the kernel's placement of `ev` overlaps
    /// (its own pointer included, should it be live).
    fn overlapped(&self, ev: &AllocEvent) -> Vec<u64> {
        let Some(kchunk) = self.kernel_serial_peek(ev.base_addr) else {
            return Vec::new();
        };
        let size4 = ev.size.div_ceil(4).saturating_mul(4);
        let offs = self.kplaces.overlapping(
            kchunk,
            ev.off as u32,
            u32::try_from(size4).unwrap_or(u32::MAX),
        );
        if offs.is_empty() {
            return Vec::new();
        }
        // Their pointers: `base_addr + off` less the percpu base, as the
        // kernel's (`kchunk` is `ev`'s chunk; setup takes the base most
        // lines give, so check); else, rarely, a pass over the live objects.
        offs.into_iter()
            .filter_map(|off| {
                let guess = ev
                    .base_addr
                    .wrapping_add(u64::from(off))
                    .wrapping_sub(self.setup.pcpu_base);
                let at_guess = self
                    .live
                    .get(&guess)
                    .is_some_and(|o| o.kchunk == kchunk && o.koff == off);
                if at_guess {
                    return Some(guess);
                }
                self.live
                    .iter()
                    .find(|(_, o)| o.kchunk == kchunk && o.koff == off)
                    .map(|(&p, _)| p)
            })
            .collect()
    }

    /// The placement class of an allocation under [`ReplayConfig::classes`]
    /// (`lifetime`: its derived class, `ClassMode::Derived` only).
    fn class_for(&self, rec: &Record, ev: &AllocEvent, lifetime: Option<u64>) -> Option<ClassHint> {
        match self.cfg.classes {
            ClassMode::None => None,
            // The call site only feeds `Policy::long_lived` and
            // `Policy::tile_bursts`: not hashed for a policy without them.
            ClassMode::Task => Some(
                ClassHint::task(rec.pid as u64).at_site(
                    ev.call_site
                        .as_ref()
                        .filter(|_| self.a.policy().uses_call_sites())
                        .map_or(0, |c| call_site_class(c.as_str())),
                ),
            ),
            ClassMode::Derived => lifetime.map(ClassHint::lifetime),
            ClassMode::SizeClass => Some(ClassHint::lifetime(size_class(ev.size))),
            ClassMode::CallSite => ev.caller().map(|f| ClassHint::lifetime(call_site_class(f))),
        }
    }

    /// Place an allocation: from a magazine, by our allocator, or where the
    /// kernel did (its chunk `kchunk`). The outer error stops the replay
    /// (kernel placement refused), the inner one is our allocator's failure.
    fn place(
        &mut self,
        rec: &Record,
        ev: &AllocEvent,
        kchunk: u32,
        class: Option<ClassHint>,
        cacheable: bool,
    ) -> Result<Result<Allocation, AllocError>, ReplayError> {
        let flags = AllocFlags {
            atomic: ev.is_atomic,
            reserved: ev.reserved,
        };
        let (size, align) = (ev.size as usize, ev.align as usize);
        if cacheable {
            if let Some(x) = self.take_cached(rec.cpu, size, align) {
                return Ok(Ok(x));
            }
        }
        Ok(match self.cfg.placement {
            Placement::Simulate => match class {
                Some(c) if self.a.policy().class_placement => {
                    self.a.alloc_class(&mut self.backend, size, align, flags, c)
                }
                _ => self.a.alloc(&mut self.backend, size, align, flags),
            },
            Placement::Kernel => {
                let id = self.our_chunk_for(kchunk, rec.line)?;
                let off = ev.off as usize;
                match self
                    .a
                    .alloc_at(&mut self.backend, id, off, size, align, flags)
                {
                    // Nothing changed (alignment and the unit were checked
                    // before, so a chunk newly bound to this kernel chunk
                    // cannot refuse it): skipped with --lenient.
                    Err(e @ AllocError::Occupied { .. }) if !self.cfg.lenient => {
                        return Err(ReplayError::Overlap {
                            line: rec.line,
                            detail: e.to_string(),
                        })
                    }
                    Err(e @ (AllocError::Occupied { .. } | AllocError::Misplaced { .. })) => {
                        return Err(ReplayError::BadEvent {
                            line: rec.line,
                            detail: e.to_string(),
                        })
                    }
                    r => r,
                }
            }
        })
    }

    /// Count whether our allocator placed `x` where the kernel did (chunk
    /// `kchunk`), keeping the first disagreements (simulated placement).
    fn compare_placement(&mut self, rec: &Record, ev: &AllocEvent, kchunk: u32, x: &Allocation) {
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

    fn feed_alloc(&mut self, rec: &Record, ev: &AllocEvent) -> Result<(), ReplayError> {
        self.check_alloc(rec, ev)?;
        // Lenient: the kernel hands out only free space, so the free events
        // of the live objects it allocates over, the same pointer or
        // another, were lost (a 6.18 kernel leaves some untraced; perf
        // drops some): replayed here, where they are implied.
        // (A strict replay refused them in `check_alloc`.)
        let mut lost = if self.cfg.lenient {
            self.overlapped(ev)
        } else {
            Vec::new()
        };
        if self.live.contains_key(&ev.ptr) && !lost.contains(&ev.ptr) {
            lost.push(ev.ptr);
        }
        for ptr in lost {
            self.feed_free(rec, ptr)?;
            self.implied_frees += 1;
        }
        if !self.known_chunk(ev.base_addr) {
            self.uncreated_chunk(rec, ev.base_addr)?;
        }
        let page = self.setup.geometry.page_size() as u32;
        let kchunk = self.kernel_serial(ev.base_addr);
        let lifetime = (self.cfg.classes == ClassMode::Derived)
            .then(|| self.derived.get(&rec.line).copied().unwrap_or(u64::MAX));
        let class = self.class_for(rec, ev, lifetime);
        let cacheable = self.cfg.magazine > 0
            && self.cfg.placement == Placement::Simulate
            && !ev.reserved
            && ev.size as usize <= MAGAZINE_MAX_SIZE;
        let res = self.place(rec, ev, kchunk, class, cacheable)?;
        // Invalid requests were refused before anything changed (a new
        // kernel chunk's serial or binding only comes with an allocation it
        // accepts: see `place`).
        self.report.allocs += 1;
        let ours = match res {
            Ok(x) => Some(x),
            Err(_) => {
                self.report.failed_allocs += 1;
                None
            }
        };
        let size4 = (ev.size.div_ceil(4) * 4) as u32;
        if let Some(x) = ours {
            if self.cfg.placement == Placement::Simulate {
                self.compare_placement(rec, ev, kchunk, &x);
            }
            self.floor.add(x.chunk.0, x.offset as u32, size4, page, 1);
        }
        self.kfloor.add(kchunk, ev.off as u32, size4, page, 1);
        *self.live_in_kchunk.entry(kchunk).or_insert(0) += 1;
        self.live_bytes += u64::from(size4);
        if let Some(l) = lifetime {
            *self.class_bytes.entry(l).or_insert(0) += u64::from(size4);
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
        self.kplaces.insert(kchunk, ev.off as u32, size4);
        let old = self.live.insert(ev.ptr, obj);
        debug_assert!(old.is_none(), "checked before the allocation");
        self.maybe_balance(rec.ts);
        Ok(())
    }

    /// Replay a free; `false` when the pointer is unknown and skipped
    /// (lenient).
    fn feed_free(&mut self, rec: &Record, ptr: u64) -> Result<bool, ReplayError> {
        let Some(obj) = self.live.remove(&ptr) else {
            if let Some(x) = self.pre_live.remove(&ptr) {
                self.a
                    .free(x.chunk, x.offset)
                    .map_err(|e| ReplayError::Internal(format!("line {}: {e}", rec.line)))?;
                self.pre_frees += 1;
                self.maybe_balance(rec.ts);
                return Ok(true);
            }
            if self.cfg.lenient {
                self.unknown_frees += 1;
                return Ok(false);
            }
            return Err(ReplayError::UnknownFree {
                line: rec.line,
                ptr,
            });
        };
        self.kplaces.remove(obj.kchunk, obj.koff, obj.size);
        let page = self.setup.geometry.page_size() as u32;
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
        if let Some(n) = self.live_in_kchunk.get_mut(&obj.kchunk) {
            *n -= 1;
            if *n == 0 {
                self.live_in_kchunk.remove(&obj.kchunk);
            }
        }
        self.live_bytes -= u64::from(obj.size);
        if let Some(l) = obj.lifetime {
            if let Some(b) = self.class_bytes.get_mut(&l) {
                *b -= u64::from(obj.size);
                if *b == 0 {
                    self.class_bytes.remove(&l);
                }
            }
        }
        self.maybe_balance(rec.ts);
        Ok(true)
    }

    /// Count the kernel's populated (`populated`) or depopulated pages from
    /// its kprobe event.
    fn feed_kernel_pages(
        &mut self,
        rec: &Record,
        p: &ChunkPages,
        populated: bool,
    ) -> Result<(), ReplayError> {
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
        if !self.known_chunk(p.base_addr) {
            self.uncreated_chunk(rec, p.base_addr)?;
        }
        self.check_kernel_pages(rec, p, populated)?;
        let range = p.page_start..p.page_end;
        if populated {
            self.kpop += u64::from(p.nr_pages());
            self.krefaults
                .populated(p.base_addr, range, self.kruns, self.events);
        } else {
            self.kdepop += u64::from(p.nr_pages());
            self.krefaults
                .depopulated(p.base_addr, range, self.kruns, self.events);
        }
        Ok(())
    }

    /// Refuse a kprobe page event the kernel could not have made, then
    /// record it: the first and reserved chunks are populated from boot
    /// and never change; a chunk the trace created populates only
    /// unpopulated pages and depopulates only populated ones. Chunks used
    /// without a create event (lenient) are not checked, what came before
    /// being unknown, nor are depopulations in a chunk no populate event
    /// has named (a capture may probe only depopulation).
    fn check_kernel_pages(
        &mut self,
        rec: &Record,
        p: &ChunkPages,
        populated: bool,
    ) -> Result<(), ReplayError> {
        let (start, end) = (p.page_start as usize, p.page_end as usize);
        let what = if populated { "populate" } else { "depopulate" };
        let bad = |detail: String| {
            Err(ReplayError::BadEvent {
                line: rec.line,
                detail,
            })
        };
        if self.boot_chunk(p.base_addr) {
            return bad(format!(
                "{what} of pages {start}..{end} of the first or reserved chunk {:#x}, which are populated from boot and never change",
                p.base_addr
            ));
        }
        if self.uncreated.contains(&p.base_addr) || start == end {
            return Ok(());
        }
        let pages = self.setup.geometry.unit_pages();
        let bits = if populated {
            self.kpopulated
                .entry(p.base_addr)
                .or_insert_with(|| Bitmap::new(pages))
        } else if let Some(bits) = self.kpopulated.get_mut(&p.base_addr) {
            bits
        } else {
            // No populate event for this chunk yet: the trace may probe
            // only depopulation.
            return Ok(());
        };
        let wrong = if populated {
            bits.find_next_bit(end, start)
        } else {
            bits.find_next_zero_bit(end, start)
        };
        if wrong < end {
            let (state, only) = if populated {
                ("populated", "unpopulated")
            } else {
                ("not populated", "populated")
            };
            return bad(format!(
                "{what} of pages {start}..{end} of chunk {:#x}, but page {wrong} is {state}: the kernel {what}s only {only} pages (a lost kprobe event, or a corrupt trace)",
                p.base_addr
            ));
        }
        if populated {
            bits.set_range(start, end - start);
        } else {
            bits.clear_range(start, end - start);
        }
        Ok(())
    }

    /// The empty pages the kernel had populated before tracing, from its
    /// `percpu_stats` at START (`Setup::kernel_start`), when the replay
    /// starts (the snapshot is taken as tracing starts; its reserve is then
    /// there before any event asks for one): each chunk in use before
    /// tracing up to its own count, and the fully free chunks the trace
    /// never uses created with theirs. Where in a chunk is not known: on
    /// its lowest unpopulated pages, where the balance work populates and
    /// where a workload's objects, freed, leave them above the survivors
    /// (first fit fills a chunk from its start). On seven 6.18 churn
    /// recordings this placed the next allocations as the kernel's Percpu
    /// shows on six; on the seventh (the fixture `live-6.18-churn`) they
    /// were higher, and R1c is 12.3% below the kernel's. The highest pages
    /// instead, or the reserve's low and the rest high, fit that one
    /// (+2.8%, +1.8%) and put another 18.3% above. Not page traffic of the
    /// replay.
    fn top_up_from_kernel_stats(&mut self, ks: KernelStart) {
        let added = self.outside_traffic(|rp| {
            let mut added = 0;
            for (base, pages) in ks.empty_pages {
                if let Some(chunk) = rp.pre_chunk(base) {
                    // (Setup populated only pages it filled: none is empty.)
                    added += rp.populate_empty_pages(chunk, pages as u64);
                }
            }
            for pages in ks.free_chunks {
                if let Ok(id) = rp.a.create_chunk(&mut rp.backend) {
                    let serial = rp.a.chunk(id).map_or(0, |c| c.serial());
                    added += rp.populate_empty_pages((id, serial), pages as u64);
                    rp.report.pre_trace_free_chunks += 1;
                }
            }
            added
        });
        self.pre_top_up = Some(added);
        // The state is now the kernel's at START, when nothing said its
        // balance work was pending: what setup's own allocations scheduled
        // (they ran with no empty page populated yet) is not the kernel's.
        self.a.forget_pending_balance();
    }

    /// Without the kernel's `percpu_stats`, at the first phase marker of a
    /// recording that found chunks in use (`Setup::pre_chunks`): populate
    /// as many of their empty pages as the kernel's figure (`kb`) is above
    /// ours, lowest first, in the order the chunks were found. Once; not
    /// page traffic.
    fn top_up_to_percpu(&mut self, kb: u64) {
        let geo = self.setup.geometry;
        let page_bytes_all_units = (geo.nr_units() * geo.page_size()) as u64;
        let ours = self.a.percpu_bytes() / 1024;
        let added = self.outside_traffic(|rp| {
            if rp.synthetic || rp.setup.pre_chunks.is_empty() {
                return 0;
            }
            // (A marker's figure comes from the trace: any number.)
            let mut missing = kb.saturating_sub(ours).saturating_mul(1024) / page_bytes_all_units;
            let mut added = 0;
            let bases: Vec<u64> = rp.setup.pre_chunks.iter().map(|c| c.base).collect();
            for base in bases {
                if let Some(chunk) = rp.pre_chunk(base) {
                    let n = rp.populate_empty_pages(chunk, missing);
                    missing -= n;
                    added += n;
                }
            }
            added
        });
        self.pre_top_up = Some(added);
    }

    /// Runs `f`, keeping what it populates and creates out of the replay's
    /// page traffic and page log.
    fn outside_traffic(&mut self, f: impl FnOnce(&mut Self) -> u64) -> u64 {
        let (pop, created, log) = (
            self.backend.sim.populated_pages,
            self.backend.sim.created,
            self.backend.log.as_ref().map_or(0, Vec::len),
        );
        let added = f(self);
        self.backend.sim.populated_pages = pop;
        self.backend.sim.created = created;
        if let Some(l) = &mut self.backend.log {
            l.truncate(log);
        }
        added
    }

    /// Our chunk (id, serial) bound to the kernel's chunk `base` in use
    /// before tracing, while it lives.
    fn pre_chunk(&self, base: u64) -> Option<(ChunkId, u64)> {
        self.kserial_by_base
            .get(&base)
            .and_then(|k| self.ours_by_kernel.get(k))
            .copied()
    }

    /// Populate up to `quota` of chunk `(id, serial)`'s unpopulated pages
    /// (none of which holds an allocation), lowest first; the number
    /// populated.
    fn populate_empty_pages(&mut self, (id, serial): (ChunkId, u64), quota: u64) -> u64 {
        let mut added = 0;
        for page in 0..self.setup.geometry.unit_pages() {
            if added >= quota {
                break;
            }
            let empty = self.a.chunk(id).is_some_and(|c| {
                c.serial() == serial && !c.is_page_populated(page) && c.is_page_clear(page)
            });
            if empty
                && self
                    .a
                    .populate_pages(&mut self.backend, id, page..page + 1)
                    .is_ok_and(|n| n == 1)
            {
                added += 1;
            }
        }
        added
    }

    /// The figures at a `PHASE <name> Percpu` marker (`kb`: the kernel's).
    fn phase_report(&self, name: &str, kb: u64) -> PhaseReport {
        let page = self.setup.geometry.page_size() as u64;
        PhaseReport {
            name: name.to_string(),
            percpu_kb: self.a.percpu_bytes() / 1024,
            kernel_percpu_kb: (!self.synthetic).then_some(kb),
            ideal_kb: self.kb(self.live_bytes.div_ceil(page)),
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
            class_bound_kb: (self.cfg.classes == ClassMode::Derived)
                .then(|| self.kb(self.class_bytes.values().map(|b| b.div_ceil(page)).sum())),
            empty_pop_pages: u64::try_from(self.a.nr_empty_pop_pages()).unwrap_or(0),
            kernel_empty_pop_pages: None,
            kernel_chunks: None,
        }
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

    /// What is in use now that was allocated before tracing started (our
    /// chunk, offset, length): the ranges pre-filled and the objects from
    /// before tracing not yet freed.
    pub fn pre_trace_areas(&self) -> impl Iterator<Item = (ChunkId, usize, usize)> + '_ {
        self.pre_filled
            .iter()
            .copied()
            .chain(self.pre_live.values().map(|x| (x.chunk, x.offset, x.size)))
    }

    /// Close the replay and produce the report.
    pub fn finish(mut self, elapsed_s: f64) -> Report {
        // Delayed work still pending when the trace ends runs (as the
        // kernel's work item would), so that the totals are complete.
        if self.scheduled_at.take().is_some() {
            self.run_balance();
        }
        let delay = (!self.recorded).then(|| self.balance_delay_us()).flatten();
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
        if let Some(us) = delay {
            r.balance = format!("delay={us}");
        }
        r.populated_pages = self.backend.sim.populated_pages;
        r.depopulated_pages = self.backend.sim.depopulated_pages;
        r.long_lived_objects = self.a.long_lived_objects();
        r.short_lived_objects = self.a.short_lived_objects();
        r.long_running_classes = self.a.long_running_classes();
        let tiling = self.a.tiling_stats();
        r.tiled_bursts = tiling.tiled;
        r.untiled_bursts = tiling.untiled;
        r.tiling_pooled_objects = tiling.pooled;
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
        r.uncreated_chunks = self.uncreated.len() as u64;
        r.implied_frees = self.implied_frees;
        r.unknown_frees = self.unknown_frees;
        r.bad_events = self.bad_events;
        r.pre_trace_chunks = self.setup.pre_chunks.len() as u64;
        r.pre_trace_frees = self.pre_frees;
        r.pre_trace_top_up_pages = self.pre_top_up.unwrap_or(0);
        r.kernel_stats_unmatched_chunks = self
            .setup
            .kernel_start
            .as_ref()
            .map_or(0, |k| k.unmatched as u64);
        self.report
    }

    /// Frees the trace lost, implied in lenient mode when the kernel
    /// allocated over their objects (the same pointer again, or a range
    /// overlapping theirs).
    pub fn implied_frees(&self) -> u64 {
        self.implied_frees
    }

    /// Frees of unknown pointers skipped in lenient mode.
    pub fn unknown_frees(&self) -> u64 {
        self.unknown_frees
    }

    /// Chunks used without a `percpu_create_chunk` event, replayed anyway
    /// in lenient mode (the trace did not start at boot).
    pub fn uncreated_chunks(&self) -> u64 {
        self.uncreated.len() as u64
    }

    /// Events that make no sense (see [`ReplayConfig::lenient`]), skipped in
    /// lenient mode.
    pub fn bad_events(&self) -> u64 {
        self.bad_events
    }

    /// The first of those (at most 3), each naming its line and what is
    /// wrong with it.
    pub fn first_bad_events(&self) -> &[ReplayError] {
        &self.first_bad
    }
}

/// Allocate `ranges` (offset, length) of chunk `id` as in use before
/// tracing, in pieces of at most the largest request; `what` names the
/// chunk in errors.
fn fill(
    a: &mut Allocator,
    backend: &mut LogBackend,
    id: ChunkId,
    ranges: &[(usize, usize)],
    what: &str,
) -> Result<(), ReplayError> {
    let max = a.geometry().max_alloc_size();
    for &(off, len) in ranges {
        // `Setup`'s fields are public: a range made by hand may pass the
        // top of `usize`.
        let end = off.checked_add(len).ok_or_else(|| {
            ReplayError::Setup(format!(
                "pre-filling {what} at {off}: {len} bytes pass the end of the address space"
            ))
        })?;
        let mut o = off;
        while o < end {
            let n = (end - o).min(max);
            a.alloc_at(backend, id, o, n, MIN_ALLOC_SIZE, AllocFlags::NORMAL)
                .map_err(|e| ReplayError::Setup(format!("pre-filling {what} at {o}: {e}")))?;
            o += n;
        }
    }
    Ok(())
}
