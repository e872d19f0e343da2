//! The allocation path (`pcpu_alloc`): the slot walk, placement under each
//! fit, population, and the two-phase API an embedder with its own locking
//! drives step by step.

use alloc::boxed::Box;
use core::ops::Range;

use crate::allocator::{AllocFlags, Allocation, Allocator, AreaChange, Request};
use crate::backend::Backend;
use crate::chunk::{Chunk, ChunkKind};
use crate::error::{held, AllocError, PopulateError, ProtocolError};
use crate::policy::{Fit, PolicyKind, Refill, SLOT_FAIL_THRESHOLD};
use crate::slots::{slot_key, Entry};
use crate::{ChunkId, MIN_ALLOC_SIZE};

// === impl Allocator: allocation ===

impl Allocator {
    /// Allocate `size` bytes at `align`, driving `backend` inline for chunk
    /// creation and population (`pcpu_alloc`). The returned range must be
    /// zeroed on every unit.
    #[doc(alias = "pcpu_alloc")]
    pub fn alloc<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        let req = self.request(size, align)?;
        let area = loop {
            match self.alloc_area(req, flags) {
                Ok(a) => break a,
                Err(AllocError::NeedsChunk) => {
                    let id = self.begin_create_chunk();
                    let r = backend.create_chunk(id, self.geo.unit_pages());
                    if let Err(e) = r {
                        held(self.abort_create_chunk(id));
                        return Err(self.fail(req, flags, AllocError::ChunkCreate(e)));
                    }
                    held(self.finish_create_chunk(id));
                }
                Err(e) => return Err(e),
            }
        };
        self.populate_and_finish(backend, area, flags)
    }

    /// Allocate exactly at `offset` of `chunk` (trace replay's `kernel`
    /// placement mode): the area must be free, aligned and inside the chunk's
    /// managed region. Populates like [`Allocator::alloc`].
    ///
    /// The caller decides the place, as the traced kernel did: the area's
    /// pages are populated even for an atomic request (whose pages the kernel
    /// had populated, perhaps at a balance run this allocator did not have),
    /// and `flags.reserved` is not checked against the chunk. It is a
    /// sequential replay API: do not call it while a balance run
    /// ([`Allocator::balance_start`]) or a two-phase allocation is under way.
    pub fn alloc_at<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        chunk: ChunkId,
        offset: usize,
        size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        let req = self.request(size, align)?;
        let occupied = AllocError::Occupied {
            chunk,
            offset,
            size: req.size,
        };
        let misplaced = |reason| AllocError::Misplaced {
            chunk,
            offset,
            size: req.size,
            reason,
        };
        let Some(c) = self.chunk(chunk) else {
            return Err(misplaced("no such chunk"));
        };
        let lo = c.start_offset();
        let hi = c.nr_pages() * self.geo.page_size() - c.end_offset();
        if offset % req.align != 0 {
            return Err(misplaced("not aligned to the request"));
        }
        if offset < lo || offset > hi || hi - offset < req.size {
            return Err(misplaced("not inside the chunk's managed region"));
        }
        let bit = offset / MIN_ALLOC_SIZE;
        if c.alloc_map
            .count_ones_in(bit, bit + req.size / MIN_ALLOC_SIZE)
            != 0
        {
            return Err(occupied);
        }
        let area = self.place(chunk.0, req, bit as i32).ok_or(occupied)?;
        debug_assert_eq!(area.offset, offset);
        self.reintegrate(chunk.0);
        // Populated even for an atomic request: the kernel placed it there,
        // so its pages were populated (see above).
        let populate = AllocFlags {
            atomic: false,
            ..flags
        };
        self.populate_and_finish(backend, area, populate)
    }

    /// Create a chunk now through `backend` (used by replay to follow the
    /// kernel's chunk creations).
    pub fn create_chunk<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
    ) -> Result<ChunkId, AllocError> {
        let id = self.begin_create_chunk();
        match backend.create_chunk(id, self.geo.unit_pages()) {
            Ok(()) => {
                held(self.finish_create_chunk(id));
                Ok(id)
            }
            Err(e) => {
                held(self.abort_create_chunk(id));
                Err(AllocError::ChunkCreate(e))
            }
        }
    }

    /// Populate chunk `chunk`'s unpopulated pages among `pages` through
    /// `backend`, as the balance work's populate stage does
    /// (`pcpu_balance_populated`): no allocation is made, no work
    /// scheduled, no chunk isolated. Returns how many pages it populated.
    /// Replay uses it to restore the empty pages a running kernel had
    /// populated before tracing started.
    ///
    /// # Errors
    /// [`PopulateError`]: an unknown chunk, pages outside it, an open
    /// balance run (nothing changed), or a backend failure (the runs
    /// populated before it stay populated).
    pub fn populate_pages<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        chunk: ChunkId,
        pages: core::ops::Range<usize>,
    ) -> Result<usize, PopulateError> {
        let Some(c) = self.chunk(chunk) else {
            return Err(PopulateError::UnknownChunk(chunk));
        };
        if pages.start > pages.end || pages.end > c.nr_pages() {
            return Err(PopulateError::OutOfRange {
                chunk,
                pages,
                nr_pages: c.nr_pages(),
            });
        }
        if self.open_run.is_some() {
            return Err(PopulateError::RunOpen);
        }
        let mut n = 0;
        let mut start = pages.start;
        while let Some(run) = self.c(chunk.0).next_unpopulated(start..pages.end) {
            backend
                .populate(chunk, run.clone())
                .map_err(PopulateError::Backend)?;
            start = run.end;
            n += run.len();
            self.chunk_populated(chunk.0, run);
        }
        Ok(n)
    }

    /// `pcpu_alloc` from `area_found` on, inline: populate the area's
    /// missing pages (non-atomic) or free it again on failure, then the
    /// post-allocation check.
    pub(crate) fn populate_and_finish<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        area: Allocation,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        if !flags.atomic {
            while let Some(run) = self.next_unpopulated(&area) {
                if let Err(e) = backend.populate(area.chunk, run.clone()) {
                    held(self.abort_area(area, flags));
                    return Err(AllocError::Populate(e));
                }
                held(self.commit_populated(area.chunk, run));
            }
        }
        self.finish_alloc();
        Ok(area)
    }

    /// Two-phase allocation, step 1: place `req` (`pcpu_alloc` up to
    /// `area_found`). Non-atomic: the area may lie on unpopulated pages, see
    /// [`Allocator::next_unpopulated`]. `Err(NeedsChunk)` asks the caller to
    /// create a chunk and retry; other errors are final.
    ///
    /// A request made by another allocator ([`Allocator::request`]) whose
    /// size or alignment this one's geometry refuses is refused as
    /// `request` would refuse it ([`AllocError::InvalidSize`],
    /// [`AllocError::InvalidAlign`]), nothing changed.
    #[inline]
    pub fn alloc_area(
        &mut self,
        req: Request,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        self.check_request(req)?;
        if flags.reserved {
            let Some(rid) = self.reserved else {
                return Err(self.fail(req, flags, AllocError::NoReservedChunk));
            };
            let placed = self
                .c(rid)
                .find_block_fit(req.bits, req.bit_align, flags.atomic)
                .and_then(|start| self.place(rid, req, start));
            return match placed {
                Some(a) => Ok(a),
                None => Err(self.fail(req, flags, AllocError::ReservedFull)),
            };
        }
        let fit = self.fit_for(flags);
        if fit == Fit::Next {
            if let Some(a) = self.place_at_rover(req) {
                return Ok(a);
            }
        }
        let start_slot = self.layout.size_to_slot(req.size);
        let mut next_slot = start_slot;
        // Under a refill order other than the kernel's, the sidelined and
        // free slots are walked by `alloc_refill` (atomic requests keep the
        // kernel's order; reserved ones returned above).
        let refill = self.policy.refill != Refill::Kernel && !flags.atomic;
        let last = if refill {
            self.layout.sidelined - 1
        } else {
            self.layout.free
        };
        while let Some(slot) = self.lists.next_nonempty(next_slot, last) {
            next_slot = slot + 1;
            let mut cur = self.lists.head(slot);
            while let Some(id) = cur {
                let c = self.c(id);
                cur = self.lists.next(id);
                let Some(start) = c.find_block_fit(req.bits, req.bit_align, flags.atomic) else {
                    if slot < SLOT_FAIL_THRESHOLD {
                        self.lists.move_to(id, 0, true);
                    }
                    continue;
                };
                let start = c.fit_start(fit, req.bits, req.bit_align, start);
                if let Some(a) = self.place(id, req, start) {
                    self.reintegrate(id);
                    if fit == Fit::Next {
                        self.note_rover(id, &a);
                    }
                    return Ok(a);
                }
            }
        }
        if refill {
            if let Some(a) = self.alloc_refill(req, flags, fit) {
                return Ok(a);
            }
        }
        if flags.atomic {
            return Err(self.fail(req, flags, AllocError::AtomicNoSpace));
        }
        if self.policy.kind == PolicyKind::Pcpu {
            if let Some(a) = self.take_back_queued(req, fit) {
                return Ok(a);
            }
        }
        // The kernel creates a chunk only when the free slot is empty, else it
        // restarts the walk. The walk above already tried the free slot, and a
        // fully free chunk fits every valid request, so reaching this point
        // means the free slot is empty: a new chunk is needed.
        debug_assert_eq!(self.lists.len(self.layout.free), 0);
        Err(AllocError::NeedsChunk)
    }

    /// `pcpu`: before a new chunk is mapped, a chunk queued for reclaim (not
    /// the one being reclaimed) that has room takes the request and goes
    /// back to its slot. `pcpu` queues a chunk as soon as it has an empty
    /// page, so between a free and the balance run that reclaims, the
    /// active chunks can be full while queued ones have room; Linux maps a
    /// new chunk then, and an allocator whose balance work runs late (or,
    /// in the `pcpu` crate, not at all) would keep mapping chunks.
    fn take_back_queued(&mut self, req: Request, fit: Fit) -> Option<Allocation> {
        let (id, off) = self.queued_room(|c| c.probe_fit(fit, req.bits, req.bit_align, false))?;
        let a = self.place(id, req, off)?;
        self.reintegrate(id);
        Some(a)
    }

    /// The first chunk queued for reclaim, other than the one being
    /// reclaimed, in which `find` finds room, and that room's bit offset.
    /// (Detached chunks are on no list.)
    pub(crate) fn queued_room(&self, find: impl Fn(&Chunk) -> Option<i32>) -> Option<(u32, i32)> {
        self.lists
            .iter(self.layout.to_depopulate)
            .filter(|&id| !self.c(id).reclaiming)
            .find_map(|id| find(self.c(id)).map(|off| (id, off)))
    }

    /// Where [`Allocator::alloc_area`] would place `req` now, without changing
    /// anything: `None` when no chunk has room (a new chunk would be created),
    /// or when `alloc_area` would refuse `req` (another geometry's request).
    /// Replay uses it to order allocations that raced in the kernel.
    pub fn probe(&self, req: Request, flags: AllocFlags) -> Option<(ChunkId, usize)> {
        self.check_request(req).ok()?;
        let fit = self.fit_for(flags);
        // The bit offset `req` would take in chunk `c`.
        let fits_in = |c: &Chunk| c.probe_fit(fit, req.bits, req.bit_align, flags.atomic);
        let fits = |id: u32| fits_in(self.c(id)).map(|b| b as usize * MIN_ALLOC_SIZE);
        if flags.reserved {
            let rid = self.reserved?;
            return fits(rid).map(|o| (ChunkId(rid), o));
        }
        if fit == Fit::Next {
            if let Some((id, bit)) = self.rover_fit(req) {
                return Some((ChunkId(id), bit as usize * MIN_ALLOC_SIZE));
            }
        }
        let mut next_slot = self.layout.size_to_slot(req.size);
        while let Some(slot) = self.lists.next_nonempty(next_slot, self.layout.free) {
            next_slot = slot + 1;
            let found = match self.refill_order(slot, flags) {
                Some(ids) => ids.into_iter().find_map(|id| fits(id).map(|o| (id, o))),
                None => self
                    .lists
                    .iter(slot)
                    .find_map(|id| fits(id).map(|o| (id, o))),
            };
            if let Some((id, o)) = found {
                return Some((ChunkId(id), o));
            }
        }
        // `pcpu` takes a queued chunk back before a new one
        // (`take_back_queued`).
        if self.policy.kind == PolicyKind::Pcpu && !flags.atomic {
            return self
                .queued_room(fits_in)
                .map(|(id, bit)| (ChunkId(id), bit as usize * MIN_ALLOC_SIZE));
        }
        None
    }

    /// The fit inside the chosen chunk for a request with `flags`: the
    /// policy's ([`Policy::fit`], the lab's placement strategies), but
    /// atomic and reserved requests keep the kernel's first fit (its
    /// populated-only search).
    fn fit_for(&self, flags: AllocFlags) -> Fit {
        if flags.atomic || flags.reserved {
            Fit::First
        } else {
            self.policy.fit
        }
    }

    /// [`Fit::Next`]: the first fit for `req` after the rover, in the rover's
    /// chunk when it is still live and reachable by allocations.
    fn rover_fit(&self, req: Request) -> Option<(u32, i32)> {
        let (id, serial, bit) = self.rover?;
        let c = self.arena.get(id as usize)?.chunk()?;
        let reachable = c.serial == serial
            && !c.isolated
            && !c.detached
            && !c.reclaiming
            && Some(id) != self.reserved;
        if !reachable {
            return None;
        }
        let off = c.first_fit_in(bit, c.map_bits, req.bits, req.bit_align)?;
        Some((id, off))
    }

    /// [`Fit::Next`]: place `req` at [`Allocator::rover_fit`], if any.
    fn place_at_rover(&mut self, req: Request) -> Option<Allocation> {
        let (id, off) = self.rover_fit(req)?;
        let a = self.place(id, req, off)?;
        self.note_rover(id, &a);
        Some(a)
    }

    /// [`Fit::Next`]: the next search starts after `a`, in chunk `id`.
    pub(crate) fn note_rover(&mut self, id: u32, a: &Allocation) {
        let serial = self.c(id).serial;
        self.rover = Some((id, serial, ((a.offset + a.size) / MIN_ALLOC_SIZE) as i32));
    }

    /// `pcpu_alloc_area` + relocation + stats (`pcpu_stats_area_alloc`).
    #[inline]
    pub(crate) fn place(&mut self, id: u32, req: Request, start: i32) -> Option<Allocation> {
        let layout = self.layout;
        let c = self.arena[id as usize].chunk_mut()?;
        let okey = slot_key(c);
        let (bit_off, delta) = c.alloc_area(req.bits, req.bit_align, start)?;
        let size = req.size as u64;
        c.nr_alloc += 1;
        c.max_alloc_size = c.max_alloc_size.max(size);
        let change = AreaChange::of(layout, okey, c, delta);
        self.area_changed(id, change);
        self.stats.on_alloc(size);
        // The class clock counts every object placed (`classes.rs`).
        self.classes.bump();
        Some(Allocation {
            chunk: ChunkId(id),
            offset: bit_off as usize * MIN_ALLOC_SIZE,
            size: req.size,
        })
    }

    /// After an area of chunk `id` was allocated or freed:
    /// `pcpu_update_empty_pages` and `pcpu_chunk_relocate`, from what the
    /// caller read in its single chunk lookup.
    #[inline]
    pub(crate) fn area_changed(&mut self, id: u32, ch: AreaChange) {
        if Some(id) == self.reserved {
            return;
        }
        self.nr_empty_all += ch.delta;
        if !ch.isolated {
            self.nr_empty_pop_pages += ch.delta;
        }
        if !ch.isolated && !ch.detached && ch.nslot != ch.oslot {
            self.lists.move_to(id, ch.nslot, ch.oslot < ch.nslot);
        }
    }

    /// Record a failed allocation (`fail:` label): an atomic failure makes the
    /// next balance run populate the maximum.
    pub(crate) fn fail(&mut self, _req: Request, flags: AllocFlags, e: AllocError) -> AllocError {
        self.stats.nr_failed += 1;
        if flags.atomic {
            self.atomic_alloc_failed = true;
            self.balance_pending = true;
        }
        e
    }

    /// Two-phase allocation, step 2: the first unpopulated page run under
    /// `area`, to be populated by the caller and committed with
    /// [`Allocator::commit_populated`].
    ///
    /// Only pages of the chunk are named: an area of an unknown chunk, or
    /// one that does not lie inside its chunk (so not one this allocator
    /// placed: an `Allocation` built by hand, or another geometry's), gives
    /// `None`.
    #[inline]
    pub fn next_unpopulated(&self, area: &Allocation) -> Option<Range<usize>> {
        let c = self.chunk(area.chunk)?;
        if c.nr_populated == c.nr_pages {
            return None;
        }
        let page = self.geo.page_size();
        let end = area.offset.checked_add(area.size)?;
        if end > c.nr_pages * page {
            return None;
        }
        c.next_unpopulated(area.offset / page..end.div_ceil(page))
    }

    /// Two-phase allocation: `pages` of `chunk` were populated by the backend.
    ///
    /// A call that breaks the protocol (an unknown chunk, pages outside the
    /// chunk, a page populated already) is refused and changes nothing
    /// ([`ProtocolError`]).
    pub fn commit_populated(
        &mut self,
        chunk: ChunkId,
        pages: Range<usize>,
    ) -> Result<(), ProtocolError> {
        let c = self
            .chunk(chunk)
            .ok_or(ProtocolError::UnknownChunk(chunk))?;
        if pages.start >= pages.end || pages.end > c.nr_pages {
            let nr_pages = c.nr_pages;
            return Err(ProtocolError::PageRange {
                chunk,
                pages,
                nr_pages,
            });
        }
        let page = c.populated.find_next_bit(pages.end, pages.start);
        if page < pages.end {
            return Err(ProtocolError::AlreadyPopulated { chunk, page });
        }
        self.chunk_populated(chunk.0, pages);
        Ok(())
    }

    /// Two-phase allocation: population failed; free the area again
    /// ("failed to populate").
    ///
    /// An `area` that is not a live allocation of its size, or that a
    /// [`Magazine`] holds, is refused and changes nothing
    /// ([`ProtocolError`]).
    ///
    /// [`Magazine`]: crate::Magazine
    pub fn abort_area(&mut self, area: Allocation, flags: AllocFlags) -> Result<(), ProtocolError> {
        // The area goes back as a cancelled one does, counted as a failure.
        self.cancel_area(area)?;
        self.stats.nr_failed += 1;
        let _ = flags;
        Ok(())
    }

    /// Two-phase allocation: the caller decided not to use an area it just
    /// placed (step 1) and has not populated: free it again. Unlike
    /// [`Allocator::abort_area`] it is not counted as a failure (the
    /// statistics count an allocation and a free).
    ///
    /// An `area` that is not a live allocation of its size, or that a
    /// [`Magazine`] holds, is refused and changes nothing
    /// ([`ProtocolError`]).
    ///
    /// [`Magazine`]: crate::Magazine
    pub fn cancel_area(&mut self, area: Allocation) -> Result<(), ProtocolError> {
        self.own_area(area)?;
        self.free_area_in(
            area.chunk.0,
            (area.offset / MIN_ALLOC_SIZE) as i32,
            (area.size / MIN_ALLOC_SIZE) as i32,
        );
        Ok(())
    }

    /// Two-phase allocation, last step: the kernel's post-allocation check
    /// (schedule the balance work when empty pages run low).
    #[inline]
    pub fn finish_alloc(&mut self) {
        if self.empty_pages() < self.policy.empty_pop_low {
            self.balance_pending = true;
        }
    }

    /// Reserve an id for a chunk about to be created by the backend.
    pub fn begin_create_chunk(&mut self) -> ChunkId {
        self.reserve_id(false)
    }

    /// Reserve an id for a chunk about to be created: for the caller of
    /// [`Allocator::begin_create_chunk`], or for a balance run
    /// ([`PageWork::CreateChunk`](crate::PageWork::CreateChunk)), whose id
    /// only the run finishes or releases.
    pub(crate) fn reserve_id(&mut self, by_run: bool) -> ChunkId {
        let entry = Entry::Reserved { by_run };
        if let Some(id) = self.vacant.pop() {
            self.arena[id as usize] = entry;
            ChunkId(id)
        } else {
            self.arena.push(entry);
            ChunkId(self.arena.len() as u32 - 1)
        }
    }

    /// Two-phase allocation, class placement's way out when no (further)
    /// chunk helps: plain first fit ([`Allocator::alloc_area`]) in any free
    /// space. If even that finds none, the request is counted as failed,
    /// like a failure of [`Allocator::alloc`] (an atomic request also
    /// schedules the balance work, as the kernel's failure path does).
    pub fn first_fit_or_fail(
        &mut self,
        req: Request,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        // Not a failed allocation: a request this geometry refuses.
        self.check_request(req)?;
        self.alloc_area(req, flags)
            .map_err(|e| self.fail(req, flags, e))
    }

    /// The backend failed to create chunk `id`: release the id.
    ///
    /// An id that [`Allocator::begin_create_chunk`] did not reserve is
    /// refused and changes nothing ([`ProtocolError::NotReserved`]), a
    /// balance run's ([`PageWork::CreateChunk`]) included.
    ///
    /// [`PageWork::CreateChunk`]: crate::PageWork::CreateChunk
    pub fn abort_create_chunk(&mut self, id: ChunkId) -> Result<(), ProtocolError> {
        self.release_id(id, false)
    }

    /// [`Allocator::abort_create_chunk`] of an id reserved by
    /// [`Allocator::reserve_id`] for `by_run`.
    pub(crate) fn release_id(&mut self, id: ChunkId, by_run: bool) -> Result<(), ProtocolError> {
        self.reserved_id(id, by_run)?;
        self.arena[id.0 as usize] = Entry::Vacant;
        self.vacant.push(id.0);
        Ok(())
    }

    /// Is `id` reserved for a chunk being created, by a balance run
    /// (`by_run`) or else by `begin_create_chunk`?
    fn reserved_id(&self, id: ChunkId, by_run: bool) -> Result<(), ProtocolError> {
        match self.arena.get(id.0 as usize) {
            Some(&Entry::Reserved { by_run: r }) if r == by_run => Ok(()),
            _ => Err(ProtocolError::NotReserved(id)),
        }
    }

    /// The backend created chunk `id`: install it in the free slot
    /// (`pcpu_create_chunk` + `pcpu_chunk_relocate(chunk, -1)`).
    ///
    /// An id that [`Allocator::begin_create_chunk`] did not reserve is
    /// refused and changes nothing ([`ProtocolError::NotReserved`]): a live
    /// chunk is never replaced, and a balance run's id
    /// ([`PageWork::CreateChunk`]) is finished by the run
    /// ([`BalanceRun::done`]).
    ///
    /// [`PageWork::CreateChunk`]: crate::PageWork::CreateChunk
    /// [`BalanceRun::done`]: crate::BalanceRun::done
    pub fn finish_create_chunk(&mut self, id: ChunkId) -> Result<(), ProtocolError> {
        self.install_chunk(id, false)
    }

    /// [`Allocator::finish_create_chunk`] of an id reserved by
    /// [`Allocator::reserve_id`] for `by_run`.
    pub(crate) fn install_chunk(&mut self, id: ChunkId, by_run: bool) -> Result<(), ProtocolError> {
        self.reserved_id(id, by_run)?;
        let c = Chunk::new(
            ChunkKind::Dynamic,
            self.next_serial,
            self.geo.unit_pages(),
            self.geo.block_bits() as i32,
        );
        self.next_serial += 1;
        self.arena[id.0 as usize] = Entry::Live(Box::new(c));
        self.stats.nr_chunks += 1;
        self.stats.nr_max_chunks = self.stats.nr_max_chunks.max(self.stats.nr_chunks);
        self.relocate(id.0);
        Ok(())
    }

    /// Remove a fully depopulated, detached chunk (`pcpu_destroy_chunk`).
    pub(crate) fn remove_chunk(&mut self, id: u32) {
        debug_assert_eq!(self.c(id).nr_populated, 0);
        self.lists.unlink(id);
        if self.c(id).depopulate_mark {
            self.rfc_nr_marked -= 1;
        }
        self.arena[id as usize] = Entry::Vacant;
        self.vacant.push(id);
        self.stats.nr_chunks -= 1;
    }
}
