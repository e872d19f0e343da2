//! The shared allocator state, its two locks, and the allocation and free
//! paths (`pcpu_alloc`, `free_percpu`).
//!
//! # Locks (mm/percpu.c's synchronisation rules)
//!
//! | lock                 | kernel             | protects |
//! |----------------------|--------------------|----------|
//! | [`Inner::state`]     | `pcpu_lock`        | all bookkeeping: the core [`Allocator`], the region table, the balance-thread flags |
//! | `Inner::alloc_mutex` | `pcpu_alloc_mutex` | nothing by itself; serialises chunk creation, population and balance runs |
//!
//! Lock order: `alloc_mutex` before `state`; `state` is never held while
//! waiting for `alloc_mutex`, and never across a system call (`mmap`,
//! `mprotect`, `madvise`, `munmap`, `mincore`). A kick queues the
//! allocator on the balance worker with `state` held (the worker's lock
//! comes after it). Zeroing a new area happens
//! after `state` is dropped. An allocation that fits in populated space takes
//! only `state` (the fast path), so it never waits behind a population or a
//! balance run in progress; frees take only `state`.
//!
//! One divergence from the kernel, which takes `pcpu_alloc_mutex` *before*
//! placing any non-atomic allocation: here an allocation learns that it
//! needs population only after placing it under `state`. It then takes
//! `alloc_mutex` with `try_lock` before dropping `state`; only if that fails
//! (a balance run or another population holds it) is the placed-but-
//! unpopulated area visible to others, counted in `State::in_flight`. Such
//! an area's pages are allocated, so nothing can depopulate or destroy them;
//! only the empty-page counters are transiently low, which can make a
//! concurrent balance run populate a page more or reclaim a page less.

use crate::word_hash::WordMap;
use std::panic::Location;

use pcpu_core::{
    AllocError, AllocFlags, Allocation, Allocator, ChunkId, ClassHint, ProtocolError, Request,
};

use crate::builder::Config;
use crate::error::Error;
use crate::owners::Owners;
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, MutexGuard, SerialGuard, SerialMutex};
use crate::sys::fork::process_tag;
use crate::sys::mmap::{Region, UnitLayout};
use crate::trace::Tracer;
use crate::worker::Worker;

/// Everything the allocator shares between handles, objects and the balance
/// thread.
#[derive(Debug)]
pub(crate) struct Inner {
    /// `pcpu_lock`: all bookkeeping.
    state: Mutex<State>,
    /// `pcpu_alloc_mutex`: serialises chunk creation, population and balance.
    alloc_mutex: SerialMutex,
    /// Signalled when a balance run ends (paired with `state`).
    pub(crate) idle: Condvar,
    /// The validated configuration.
    pub(crate) config: Config,
    /// Identifies this allocator in raw handles and thread caches.
    pub(crate) id: u64,
    /// The process that built it (whose balance worker serves it, if it
    /// balances in the background), as [`process_tag`] names it: a
    /// `fork()`ed child has no worker thread.
    process: u64,
    /// Moved to ask every thread to free its cached areas of this allocator
    /// (`cache` module).
    pub(crate) cache_epoch: AtomicU64,
}

/// The bookkeeping behind `Inner::state`.
///
/// # Invariants
/// - `regions[c]` is `Some` iff `c` is a live chunk of `core` (created and not
///   destroyed), and that region's populated pages are the chunk's populated
///   pages, outside a population or depopulation in progress (which holds
///   `alloc_mutex`).
/// - The core's counters are exact whenever `alloc_mutex` is free or held
///   by someone who also holds `state`, and `in_flight == 0`.
/// - `kicked` implies `core.balance_pending()` was true when it was set; it is
///   cleared when a balance run starts, and when the worker finds nothing
///   pending. While it is set (and the allocator balances in the
///   background, in the process that built it), its id is in the worker's
///   queue or a run is due to start. In a `fork()`ed child kicks queue
///   nothing.
/// - Every key of `raw` is the start of a live allocation of `core`, made by
///   `alloc_raw` and not freed since; its ticket is below `next_ticket`. No
///   typed area (`Area`, thread caches) is ever a key.
/// - `owners`, when kept, has exactly the live allocations of `core` (its
///   own invariants: `Owners`). `recording` is whether `owners` or `trace`
///   is kept.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) core: Allocator,
    pub(crate) regions: Vec<Option<Arc<Region>>>,
    /// The balance worker has been told of the pending work.
    pub(crate) kicked: bool,
    /// The balance worker that runs the balance work in the background
    /// (background balancing only; taken when the allocator is dropped).
    pub(crate) worker: Option<Arc<Worker>>,
    /// A balance run is in progress.
    pub(crate) running: bool,
    /// Completed balance runs.
    pub(crate) runs: u64,
    /// Page operations of balance runs that failed.
    pub(crate) balance_failures: u64,
    /// Pages (per unit) populated by balance runs, over the allocator's life.
    pub(crate) balance_populated: u64,
    /// Pages (per unit) depopulated by balance runs, over the allocator's life.
    pub(crate) balance_depopulated: u64,
    /// The allocator is being dropped: the worker starts no more runs on it.
    pub(crate) stop: bool,
    /// Allocations placed on unpopulated pages that are waiting for
    /// `alloc_mutex` to populate them. While non-zero, the core's empty-page
    /// counters are transiently low by those pages (exact again once they are
    /// populated or the area is aborted).
    pub(crate) in_flight: usize,
    /// Live raw allocations (`alloc_raw`): `(chunk, offset)` → the
    /// allocation's ticket, unique over the allocator's life. `free_raw` and
    /// `ptr` accept a [`RawPerCpu`](crate::RawPerCpu) only if its ticket is
    /// here, so a stale copy of a freed handle can never reach an allocation
    /// made since at the same place, raw or typed.
    pub(crate) raw: WordMap<(ChunkId, usize), u64>,
    /// The next raw allocation's ticket.
    pub(crate) next_ticket: u64,
    /// Who made each live allocation (`Builder::track_owners`).
    pub(crate) owners: Option<Owners>,
    /// The allocation trace being written (`Builder::trace_dir`).
    pub(crate) trace: Option<Tracer>,
    /// `owners` or `trace` is kept: allocations and frees are recorded.
    pub(crate) recording: bool,
}

impl State {
    /// The region of live chunk `id`.
    pub(crate) fn region(&self, id: ChunkId) -> Arc<Region> {
        Arc::clone(self.mapped(id))
    }

    /// The address arithmetic of live chunk `id`'s region, without taking a
    /// reference on it.
    pub(crate) fn layout(&self, id: ChunkId) -> UnitLayout {
        self.mapped(id).layout()
    }

    /// The region of live chunk `id` (every live chunk has one).
    fn mapped(&self, id: ChunkId) -> &Arc<Region> {
        match self.regions.get(id.0 as usize) {
            Some(Some(r)) => r,
            _ => panic!("pcpu: chunk {} has no region", id.0),
        }
    }

    /// Record the region of a chunk just created.
    pub(crate) fn install(&mut self, id: ChunkId, region: Region) {
        let i = id.0 as usize;
        if self.regions.len() <= i {
            self.regions.resize_with(i + 1, || None);
        }
        debug_assert!(
            self.regions[i].is_none(),
            "chunk id {i} reused while mapped"
        );
        self.regions[i] = Some(Arc::new(region));
        if let Some(t) = &mut self.trace {
            t.create_chunk(id);
        }
    }

    /// Every mapped region.
    pub(crate) fn all_regions(&self) -> Vec<Arc<Region>> {
        self.regions.iter().flatten().cloned().collect()
    }
}

/// Proof that the caller holds `alloc_mutex` of a given [`Inner`]
/// (`lockdep_assert_held(&pcpu_alloc_mutex)` as a type).
#[derive(Debug)]
pub(crate) struct AllocLock<'a> {
    _guard: SerialGuard<'a>,
    inner: &'a Inner,
}

impl AllocLock<'_> {
    /// Is this the `alloc_mutex` of `inner`?
    pub(crate) fn is_for(&self, inner: &Inner) -> bool {
        std::ptr::eq(self.inner, inner)
    }
}

/// A fresh allocation: `[offset, offset + size)` of every unit of `region`,
/// on populated pages, not yet zeroed, referenced by nobody.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) chunk: ChunkId,
    pub(crate) offset: usize,
    pub(crate) size: usize,
    /// The chunk's mapping (kept alive by the allocation: fact A).
    pub(crate) layout: UnitLayout,
}

// === impl Inner: construction and locks ===

impl Inner {
    /// Set up the core and map + populate the first chunk.
    pub(crate) fn new(config: Config, id: u64) -> Result<Inner, Error> {
        let core = Allocator::new(config.geometry, config.policy);
        let first = core.first_chunk();
        let trace = match &config.trace_dir {
            Some(dir) => Some(Tracer::create(dir, core.geometry(), first).map_err(Error::Trace)?),
            None => None,
        };
        let region = Region::reserve(
            config.units(),
            config.first_chunk_pages * config.page_size(),
            config.region.clone(),
        )?;
        region.populate(0..config.first_chunk_pages)?;
        debug_assert_eq!(
            core.chunk(first).map(|c| c.nr_pages()),
            Some(config.first_chunk_pages)
        );
        let mut state = State {
            core,
            regions: Vec::new(),
            kicked: false,
            worker: None,
            running: false,
            runs: 0,
            balance_failures: 0,
            balance_populated: 0,
            balance_depopulated: 0,
            stop: false,
            in_flight: 0,
            raw: WordMap::default(),
            next_ticket: 1,
            owners: config.track_owners.then(Owners::default),
            recording: config.track_owners || trace.is_some(),
            trace,
        };
        state.install(first, region);
        Ok(Inner {
            state: Mutex::new(state),
            alloc_mutex: SerialMutex::default(),
            idle: Condvar::new(),
            config,
            id,
            process: process_tag(),
            cache_epoch: AtomicU64::new(0),
        })
    }

    /// Lock the bookkeeping (`spin_lock_irqsave(&pcpu_lock)`).
    ///
    /// # Panics
    /// If a panic inside the allocator poisoned the lock: the bookkeeping may
    /// be inconsistent, and depopulating on its say-so could discard live data.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("pcpu: allocator state poisoned by an internal panic")
    }

    /// Lock the bookkeeping even if a panic inside the allocator poisoned
    /// it: only for the last handle's drop, which sets `stop` and lets go of
    /// the balance worker, so that a poisoned allocator still leaves the
    /// worker and is unmapped.
    pub(crate) fn state_for_drop(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take `alloc_mutex` (`mutex_lock(&pcpu_alloc_mutex)`). It guards no data,
    /// so a poisoned lock is simply taken over.
    pub(crate) fn serialise(&self) -> AllocLock<'_> {
        let guard = self.alloc_mutex.lock();
        AllocLock {
            _guard: guard,
            inner: self,
        }
    }

    /// Take `alloc_mutex` if it is free (never blocks, so it may be called
    /// with `state` held).
    fn try_serialise(&self) -> Option<AllocLock<'_>> {
        let guard = self.alloc_mutex.try_lock()?;
        Some(AllocLock {
            _guard: guard,
            inner: self,
        })
    }

    /// Running in a `fork()`ed child of the process that built the allocator
    /// (whose balance worker serves it, if any): the child has no worker
    /// thread.
    pub(crate) fn in_forked_child(&self) -> bool {
        process_tag() != self.process
    }

    /// Queue this allocator on the balance worker if the core scheduled the
    /// balance work and the worker has not been told yet (the kernel's
    /// `pcpu_schedule_balance_work`). Not in a `fork()`ed child, which has no
    /// worker thread (and whose worker lock a parent thread may have held at
    /// the fork).
    pub(crate) fn kick(&self, st: &mut State) {
        if st.core.balance_pending() && !st.kicked {
            st.kicked = true;
            if let Some(w) = &st.worker {
                if !self.in_forked_child() {
                    w.schedule(self.id);
                }
            }
        }
    }
}

// === impl Inner: allocation ===

impl Inner {
    /// Allocate `size` bytes at `align` in every unit (`pcpu_alloc`), not
    /// zeroed. The caller's location is the call site the class placement
    /// learns from (`hint::current_class`): every function between the
    /// public call and here tracks its caller.
    #[track_caller]
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Result<Placed, Error> {
        self.alloc_batch(size, align, 0).map(|(first, _)| first)
    }

    /// Allocate `size` bytes at `align` as [`Inner::alloc`] does, then, under
    /// the same acquisition of `state` (so first fit makes them neighbours),
    /// up to `extra` more areas of the same request. Only the first may need
    /// a new chunk or population; the extras stop before one that would need
    /// either. The extras are in placement order.
    #[track_caller]
    pub(crate) fn alloc_batch(
        &self,
        size: usize,
        align: usize,
        extra: usize,
    ) -> Result<(Placed, Vec<Placed>), Error> {
        if !align.is_power_of_two() {
            // The kernel raises 0..=3 to 4 first; a Rust layout must be a
            // power of two.
            return Err(Error::InvalidAlign {
                align,
                max: self.config.page_size(),
            });
        }
        let site = Location::caller();
        // The Linux policies ignore class hints: skip the thread-local reads.
        let class = if self.config.policy.class_placement {
            crate::hint::current_class(site)
        } else {
            ClassHint::task(0)
        };
        let mut st = self.state();
        let req = st.core.request(size, align)?;
        let first = match st.core.alloc_area_class(req, AllocFlags::NORMAL, class) {
            // Fast path: populated space, only `state` taken.
            Ok(area) if st.core.next_unpopulated(&area).is_none() => {
                self.finish(&mut st, area, req, site, false)
            }
            // The area lies (partly) on unpopulated pages: populate under
            // `alloc_mutex`. The area is allocated, so nobody depopulates or
            // destroys its pages meanwhile. Until they are populated the core
            // counts them as neither empty nor populated (its "non-atomic
            // allocation window"), which the kernel only ever exposes under
            // `pcpu_alloc_mutex`: take it without dropping `state` when it is
            // free, else record the area as in flight (see `State`).
            Ok(area) => {
                if st.recording {
                    Self::trace_placed(&mut st, &area, req, site);
                }
                let placed = match self.try_serialise() {
                    Some(serial) => {
                        drop(st);
                        self.populate_area(&serial, area, false, req, site)
                    }
                    None => {
                        st.in_flight += 1;
                        drop(st);
                        let serial = self.serialise();
                        self.populate_area(&serial, area, true, req, site)
                    }
                };
                return placed.map(|p| (p, Vec::new()));
            }
            Err(AllocError::NeedsChunk) => {
                drop(st);
                let serial = self.serialise();
                let area = self.alloc_creating(&serial, req, class, site)?;
                return self
                    .populate_area(&serial, area, false, req, site)
                    .map(|p| (p, Vec::new()));
            }
            Err(e) => {
                self.kick(&mut st);
                return Err(e.into());
            }
        };
        // The extras never cost a population, a new chunk or a wait for
        // `alloc_mutex`: one that would is given back, and the batch stops.
        let mut extras = Vec::new();
        while extras.len() < extra {
            match st.core.alloc_area_class(req, AllocFlags::NORMAL, class) {
                Ok(area) if st.core.next_unpopulated(&area).is_none() => {
                    extras.push(self.finish(&mut st, area, req, site, false));
                }
                Ok(area) => {
                    held(st.core.cancel_area(area));
                    break;
                }
                Err(_) => break,
            }
        }
        Ok((first, extras))
    }

    /// Retry under `alloc_mutex`, creating chunks until the request is placed.
    fn alloc_creating(
        &self,
        serial: &AllocLock<'_>,
        req: Request,
        class: ClassHint,
        site: &'static Location<'static>,
    ) -> Result<Allocation, Error> {
        debug_assert!(serial.is_for(self));
        let mut st = self.state();
        // Each placement is traced here, with `state` held, in the core's
        // order (`finish` runs after the population, with `state` dropped
        // meanwhile).
        let placed = |st: &mut State, r: Result<Allocation, AllocError>| {
            if let (Ok(area), true) = (&r, st.recording) {
                Self::trace_placed(st, area, req, site);
            }
            r
        };
        let mut created = false;
        loop {
            // Someone may have created a chunk or freed space meanwhile.
            match st.core.alloc_area_class(req, AllocFlags::NORMAL, class) {
                Ok(area) => return placed(&mut st, Ok(area)).map_err(Into::into),
                // A fully free chunk takes any class's request, so one new
                // chunk is enough (as in the core's `alloc_class`); should it
                // not be, plain first fit rather than another mapping.
                Err(AllocError::NeedsChunk) if created => {
                    let r = st.core.first_fit_or_fail(req, AllocFlags::NORMAL);
                    return placed(&mut st, r).map_err(Into::into);
                }
                Err(AllocError::NeedsChunk) => {}
                Err(e) => return Err(e.into()),
            }
            let id = st.core.begin_create_chunk();
            drop(st);
            let reserved = Region::reserve(
                self.config.units(),
                self.config.unit_size(),
                self.config.region.clone(),
            );
            st = self.state();
            match reserved {
                Ok(region) => {
                    held(st.core.finish_create_chunk(id));
                    st.install(id, region);
                    created = true;
                }
                Err(e) => {
                    held(st.core.abort_create_chunk(id));
                    if let Some(t) = &mut st.trace {
                        t.map_failed("a chunk", &e);
                    }
                    // An exclusive lifetime class asks for a chunk rather
                    // than cut into another class's free room: without one,
                    // take any free space (plain first fit).
                    let r = st.core.first_fit_or_fail(req, AllocFlags::NORMAL);
                    return placed(&mut st, r).map_err(|_| e.into());
                }
            }
        }
    }

    /// Populate every unpopulated page under `area`, one run at a time with
    /// `state` dropped (`pcpu_alloc` step 12), then finish the allocation. On
    /// failure the area is freed again ("failed to populate").
    /// `in_flight`: the area was counted in `State::in_flight`; `req` and
    /// `site`: the request and the allocating call.
    fn populate_area(
        &self,
        serial: &AllocLock<'_>,
        area: Allocation,
        in_flight: bool,
        req: Request,
        site: &'static Location<'static>,
    ) -> Result<Placed, Error> {
        debug_assert!(serial.is_for(self));
        let mut st = self.state();
        if in_flight {
            st.in_flight -= 1;
        }
        while let Some(run) = st.core.next_unpopulated(&area) {
            let region = st.region(area.chunk);
            drop(st);
            let populated = region.populate(run.clone());
            st = self.state();
            match populated {
                Ok(()) => {
                    if let Some(t) = &mut st.trace {
                        t.pages(area.chunk, run.clone(), true);
                    }
                    held(st.core.commit_populated(area.chunk, run));
                }
                Err(e) => {
                    if let Some(t) = &mut st.trace {
                        t.map_failed(&format!("pages {run:?} of chunk {}", area.chunk.0), &e);
                    }
                    held(st.core.abort_area(area, AllocFlags::NORMAL));
                    // Traced when placed: the trace frees it.
                    if let Some(t) = &mut st.trace {
                        t.free(area.chunk, area.offset);
                    }
                    self.kick(&mut st);
                    return Err(e.into());
                }
            }
        }
        Ok(self.finish(&mut st, area, req, site, true))
    }

    /// `area_found`: the post-allocation balance check, and the handle; the
    /// owner recorded (the caller at `site`, this thread) when owners are
    /// tracked, and the allocation of `req` traced when it is (unless it
    /// was when placed: `traced`). Inlined
    /// into the fast path (measured: called, it cost about 30 instructions
    /// an allocation more).
    #[inline(always)]
    fn finish(
        &self,
        st: &mut State,
        area: Allocation,
        req: Request,
        site: &'static Location<'static>,
        traced: bool,
    ) -> Placed {
        st.core.finish_alloc();
        if st.recording {
            self.record_alloc(st, &area, req, site, traced);
        }
        self.kick(st);
        Placed {
            chunk: area.chunk,
            offset: area.offset,
            size: area.size,
            layout: st.layout(area.chunk),
        }
    }
}

impl Inner {
    /// [`Inner::finish`]'s owner record and trace line, out of its way.
    #[cold]
    #[inline(never)]
    fn record_alloc(
        &self,
        st: &mut State,
        area: &Allocation,
        req: Request,
        site: &'static Location<'static>,
        traced: bool,
    ) {
        if let Some(owners) = &mut st.owners {
            owners.record(self.id, area.chunk, area.offset, area.size, site);
        }
        if !traced {
            Self::trace_placed(st, area, req, site);
        }
    }

    /// The trace line of `area`'s allocation, written where the core placed
    /// it (with `state` held since), so that the trace has the core's order
    /// even when the allocation is finished after others.
    fn trace_placed(
        st: &mut State,
        area: &Allocation,
        req: Request,
        site: &'static Location<'static>,
    ) {
        if let Some(t) = &mut st.trace {
            t.alloc(area.chunk, area.offset, area.size, req.align, site);
        }
    }

    /// An allocation was freed: its owner record and trace line.
    #[cold]
    #[inline(never)]
    fn record_free(st: &mut State, chunk: ChunkId, offset: usize) {
        if let Some(owners) = &mut st.owners {
            owners.forget(chunk, offset);
        }
        if let Some(t) = &mut st.trace {
            t.free(chunk, offset);
        }
    }
}

// === impl Inner: free and look-up ===

impl Inner {
    /// Free the allocation at `offset` of `chunk` (`free_percpu`): an area
    /// a typed handle owned, or (`ticket = Some`) a raw allocation, which
    /// must still be in the live raw table under that ticket. Returns the
    /// freed size.
    pub(crate) fn free(
        &self,
        chunk: ChunkId,
        offset: usize,
        ticket: Option<u64>,
    ) -> Result<usize, Error> {
        let mut st = self.state();
        if let Some(ticket) = ticket {
            check_raw(&st, chunk, offset, ticket)?;
        }
        let size = st.core.free(chunk, offset)?;
        if st.recording {
            Self::record_free(&mut st, chunk, offset);
        }
        if ticket.is_some() {
            st.raw.remove(&(chunk, offset));
        }
        self.kick(&mut st);
        Ok(size)
    }

    /// Record a fresh allocation as raw (`alloc_raw`); returns its ticket.
    pub(crate) fn register_raw(&self, chunk: ChunkId, offset: usize) -> u64 {
        let mut st = self.state();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let old = st.raw.insert((chunk, offset), ticket);
        debug_assert!(old.is_none(), "raw allocation registered twice");
        ticket
    }

    /// Free areas that typed handles owned (thread-cache flushes): one lock
    /// acquisition for all of them.
    pub(crate) fn free_many(&self, areas: impl Iterator<Item = (ChunkId, usize)>) {
        let mut st = Self::free_cached(self.state(), areas);
        self.kick(&mut st);
    }

    /// [`Self::free_many`] for a thread's cache at the thread's exit. In a
    /// `fork()`ed child only if the state lock is free: another parent
    /// thread may have held it at the fork, and in the child nobody will
    /// ever release it. Rather than wait for ever, the areas then stay
    /// allocated (at most one thread cache's, in a process that inherited
    /// the allocator).
    pub(crate) fn free_many_at_exit(&self, areas: impl Iterator<Item = (ChunkId, usize)>) {
        if !self.in_forked_child() {
            return self.free_many(areas);
        }
        // Held (or poisoned): leave them. No balance worker to kick here.
        if let Ok(st) = self.state.try_lock() {
            drop(Self::free_cached(st, areas));
        }
    }

    /// Free cached areas under the state lock `st`, which it gives back.
    fn free_cached<'a>(
        mut st: MutexGuard<'a, State>,
        areas: impl Iterator<Item = (ChunkId, usize)>,
    ) -> MutexGuard<'a, State> {
        for (chunk, offset) in areas {
            if let Err(e) = st.core.free(chunk, offset) {
                // As in `Area`'s drop: only a bug gets here (the lock let go
                // first, so that it is not poisoned).
                drop(st);
                panic!("pcpu: freeing a cached area failed: {e}");
            }
            if st.recording {
                Self::record_free(&mut st, chunk, offset);
            }
        }
        st
    }

    /// The region of the live raw allocation `(chunk, offset)` with
    /// `ticket`, of `size` bytes (checked against the allocation map in
    /// debug builds only: every key of the raw table is a live allocation).
    pub(crate) fn lookup_raw(
        &self,
        chunk: ChunkId,
        offset: usize,
        ticket: u64,
        size: usize,
    ) -> Result<Arc<Region>, Error> {
        let st = self.state();
        check_raw(&st, chunk, offset, ticket)?;
        debug_assert_eq!(
            st.core.allocation_size(chunk, offset).ok(),
            Some(size),
            "a live raw allocation keeps its size"
        );
        Ok(st.region(chunk))
    }
}

/// A raw handle must find its own allocation live: the table holds its
/// ticket at its place. Anything else was freed (a double free, or a stale
/// copy of the handle, even if the place was handed out again since, or its
/// chunk destroyed), or never was a raw allocation: [`Error::NotLive`].
fn check_raw(st: &State, chunk: ChunkId, offset: usize, ticket: u64) -> Result<(), Error> {
    if st.raw.get(&(chunk, offset)) == Some(&ticket) {
        return Ok(());
    }
    Err(Error::NotLive { chunk, offset })
}

/// A step of the core's two-phase protocol that this module drives itself
/// (each id, page run and area it reports is one the core handed out under
/// the same lock): debug builds check it.
fn held(r: Result<(), ProtocolError>) {
    debug_assert!(r.is_ok(), "{}", r.unwrap_err());
}
