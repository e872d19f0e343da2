//! The allocator: chunks, slots, global counters, and the alloc and free paths
//! (`pcpu_alloc`, `free_percpu`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use crate::backend::Backend;
use crate::chunk::{Chunk, ChunkKind};
use crate::class_table::ClassTable;
use crate::error::AllocError;
use crate::geometry::Geometry;
use crate::policy::{Fit, Policy, PolicyKind, Refill, SLOT_FAIL_THRESHOLD};
use crate::slots::{slot_key, Entry, Lists, SlotLayout};
use crate::stats::GlobalStats;
use crate::{ChunkId, MIN_ALLOC_SIZE};

/// Allocation flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocFlags {
    /// Atomic context: use populated pages only, never create chunks.
    pub atomic: bool,
    /// Serve from the reserved chunk.
    pub reserved: bool,
}

impl AllocFlags {
    /// A normal (sleepable) allocation.
    pub const NORMAL: AllocFlags = AllocFlags {
        atomic: false,
        reserved: false,
    };
    /// An atomic allocation.
    pub const ATOMIC: AllocFlags = AllocFlags {
        atomic: true,
        reserved: false,
    };
    /// A reserved allocation.
    pub const RESERVED: AllocFlags = AllocFlags {
        atomic: false,
        reserved: true,
    };
}

/// A successful allocation: `[offset, offset + size)` of `chunk`, in every unit.
/// All of it must be zeroed on every unit before use (`zero_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// Chunk.
    pub chunk: ChunkId,
    /// Byte offset in each unit of the chunk, from the chunk's base: the
    /// unit's start for the chunks the backend creates, the page-aligned
    /// start of their region for the first and the reserved chunk
    /// ([`Allocator::unit_offset`] adds it).
    pub offset: usize,
    /// Size in bytes, rounded up to 4.
    pub size: usize,
}

impl Allocation {
    /// The byte range to zero on every unit.
    pub fn zero_range(&self) -> Range<usize> {
        self.offset..self.offset + self.size
    }
    /// Pages (per unit) the allocation touches.
    pub fn pages(&self, page_size: usize) -> Range<usize> {
        self.offset / page_size..(self.offset + self.size).div_ceil(page_size)
    }
}

/// What [`Allocator::area_changed`] needs to know after an area of a chunk
/// was allocated or freed, read while the chunk was at hand.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AreaChange {
    /// Change of the chunk's empty populated pages.
    pub(crate) delta: i32,
    /// Slots before and after, as [`SlotLayout::slot_change`] gives them.
    pub(crate) oslot: usize,
    pub(crate) nslot: usize,
    pub(crate) isolated: bool,
    pub(crate) detached: bool,
}

impl AreaChange {
    /// The change of chunk `c`, whose [`slot_key`] was `okey` before it.
    #[inline]
    pub(crate) fn of(layout: SlotLayout, okey: i32, c: &Chunk, delta: i32) -> Self {
        let (oslot, nslot) = layout.slot_change(okey, slot_key(c));
        AreaChange {
            delta,
            oslot,
            nslot,
            isolated: c.isolated,
            detached: c.detached,
        }
    }
}

/// A validated request: sizes in bits (`bits`, `bit_align`) plus the rounded
/// byte values the tracepoint reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Size rounded up to 4 bytes.
    pub size: usize,
    /// Alignment raised to at least 4.
    pub align: usize,
    pub(crate) bits: i32,
    pub(crate) bit_align: i32,
}

/// Linux's per-CPU allocator state: pure bookkeeping over offsets.
///
/// # Invariants
/// - Every live chunk other than the reserved chunk is on exactly one slot
///   list, or detached while a balance run destroys it.
/// - `nr_empty_pop_pages == Σ chunk.nr_empty_pop_pages` over live chunks that
///   are neither reserved nor isolated.
/// - `nr_populated == Σ chunk.nr_populated` over dynamic chunks, plus the first
///   chunk's `PFN_DOWN(static + reserved + dyn)`.
///
/// See [`Allocator::check_invariants`].
#[derive(Clone, Debug)]
pub struct Allocator {
    pub(crate) geo: Geometry,
    pub(crate) policy: Policy,
    pub(crate) layout: SlotLayout,
    pub(crate) arena: Vec<Entry>,
    pub(crate) vacant: Vec<u32>,
    pub(crate) lists: Lists,
    pub(crate) first: u32,
    pub(crate) reserved: Option<u32>,
    pub(crate) nr_empty_pop_pages: i32,
    /// Empty populated pages of all chunks but the reserved one, isolated
    /// ones included (the `pcpu` policy's reserve check).
    pub(crate) nr_empty_all: i32,
    pub(crate) nr_populated: usize,
    pub(crate) atomic_alloc_failed: bool,
    pub(crate) balance_pending: bool,
    /// Balance runs started and neither ended nor aborted (0 or 1 when the
    /// embedder serialises runs, as it must).
    pub(crate) open_runs: u32,
    pub(crate) next_serial: u64,
    pub(crate) rfc_nr_marked: usize,
    pub(crate) stats: GlobalStats,
    pub(crate) classes: ClassTable,
    /// Pages depopulated by reclaim so far (the refault clock).
    pub(crate) reclaim_clock: u64,
    /// Largest recent refault distance: extra empty pages that would have
    /// saved the refaults seen lately (decays as reclaim depopulates).
    pub(crate) refault_want: u64,
    /// [`Fit::Next`]: where the last plain allocation ended (chunk, its
    /// serial, bit). A hint only: checked against the chunk before use.
    pub(crate) rover: Option<(u32, u64, i32)>,
}

// === impl Allocator: setup and accessors ===

impl Allocator {
    /// Set up the first chunk (and the reserved chunk when the geometry has
    /// one), as `pcpu_setup_first_chunk` does. The policy's fields are
    /// brought into the ranges [`Policy::set`] accepts ([`Policy::clamped`]):
    /// they are public, and a divisor of 0 or a negative watermark would
    /// otherwise fail deep inside a free or a balance run.
    #[doc(alias = "pcpu_setup_first_chunk")]
    pub fn new(geo: Geometry, policy: Policy) -> Self {
        let policy = policy.clamped();
        let layout = SlotLayout::new(geo.unit_size());
        let fc = geo.first_chunk();
        let page = geo.page_size();
        let mut arena = Vec::new();
        let mut reserved = None;
        let static_start = fc.static_size;
        if fc.reserved_size > 0 {
            let c = Chunk::new_region(
                ChunkKind::Reserved,
                static_start % page,
                fc.reserved_size,
                page,
            );
            arena.push(Entry::Live(Box::new(c)));
            reserved = Some(0);
        }
        let dyn_start = fc.static_size + fc.reserved_size;
        let first = Chunk::new_region(ChunkKind::First, dyn_start % page, fc.dyn_size, page);
        let nr_empty = first.nr_empty_pop_pages;
        arena.push(Entry::Live(Box::new(first)));
        let first_id = arena.len() as u32 - 1;
        let mut a = Allocator {
            geo,
            policy,
            layout,
            arena,
            vacant: Vec::new(),
            lists: Lists::new(layout.nr_slots),
            first: first_id,
            reserved,
            nr_empty_pop_pages: nr_empty,
            nr_empty_all: nr_empty,
            nr_populated: (fc.static_size + fc.reserved_size + fc.dyn_size) / page,
            atomic_alloc_failed: false,
            balance_pending: false,
            open_runs: 0,
            next_serial: 1,
            rfc_nr_marked: 0,
            stats: GlobalStats::new(geo.unit_size() as u64),
            classes: ClassTable::new(policy.class_capacity),
            reclaim_clock: 0,
            refault_want: 0,
            rover: None,
        };
        a.stats.nr_chunks = 1;
        a.stats.nr_max_chunks = 1;
        a.relocate(first_id, None);
        a
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }
    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Global empty populated pages (`pcpu_nr_empty_pop_pages`).
    pub fn nr_empty_pop_pages(&self) -> i32 {
        self.nr_empty_pop_pages
    }
    /// Populated pages per unit over all chunks (`pcpu_nr_populated`).
    pub fn nr_populated(&self) -> usize {
        self.nr_populated
    }
    /// The `/proc/meminfo` `Percpu:` figure in bytes: populated pages × units ×
    /// page size.
    pub fn percpu_bytes(&self) -> u64 {
        (self.nr_populated * self.geo.nr_units() * self.geo.page_size()) as u64
    }
    /// Has an event occurred that schedules the balance work?
    pub fn balance_pending(&self) -> bool {
        self.balance_pending
    }
    /// Global statistics (percpu_stats).
    pub fn stats(&self) -> &GlobalStats {
        &self.stats
    }
    /// Objects the long-lived prediction sent to the shared long-lived
    /// class so far (`Policy::long_lived`; `classes.rs`).
    pub fn long_lived_objects(&self) -> u64 {
        self.classes.starters.routed()
    }
    /// The first chunk's id.
    pub fn first_chunk(&self) -> ChunkId {
        ChunkId(self.first)
    }
    /// The reserved chunk's id, if any.
    pub fn reserved_chunk(&self) -> Option<ChunkId> {
        self.reserved.map(ChunkId)
    }

    /// Where chunk `chunk`'s offsets count from, in bytes from the start of
    /// its unit (the kernel's `chunk->base_addr`): 0 for the chunks the
    /// backend creates; for the first and the reserved chunk, which share the
    /// first chunk's unit with the static area, the page-aligned start of
    /// their region (the static area, and for the first chunk the reserved
    /// area, lie before it).
    ///
    /// ```
    /// use pcpu_core::*;
    /// let g = Geometry::from_kernel_line(
    ///     "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288", 4).unwrap();
    /// let a = Allocator::new(g, Policy::default());
    /// assert_eq!(a.chunk_base(a.reserved_chunk().unwrap()), 217088);
    /// assert_eq!(a.chunk_base(a.first_chunk()), 217088 + 8192);
    /// ```
    pub fn chunk_base(&self, chunk: ChunkId) -> usize {
        let fc = self.geo.first_chunk();
        let page = self.geo.page_size();
        if Some(chunk.0) == self.reserved {
            fc.static_size / page * page
        } else if chunk.0 == self.first {
            (fc.static_size + fc.reserved_size) / page * page
        } else {
            0
        }
    }

    /// Where `a` starts in each unit of its chunk, in bytes from the unit's
    /// start: [`chunk_base`](Self::chunk_base) plus `a.offset`. A CPU's copy
    /// is at that chunk's unit for the CPU plus this.
    pub fn unit_offset(&self, a: &Allocation) -> usize {
        self.chunk_base(a.chunk) + a.offset
    }
    /// A live chunk.
    pub fn chunk(&self, id: ChunkId) -> Option<&Chunk> {
        self.arena.get(id.0 as usize).and_then(Entry::chunk)
    }
    /// Ids of all live chunks, in id order.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.arena
            .iter()
            .enumerate()
            .filter(|(_, e)| e.chunk().is_some())
            .map(|(i, _)| ChunkId(i as u32))
    }
    /// Number of live chunks, the first (and reserved) chunk included.
    pub fn nr_chunks(&self) -> usize {
        self.arena.iter().filter(|e| e.chunk().is_some()).count()
    }

    #[inline]
    pub(crate) fn c(&self, id: u32) -> &Chunk {
        self.arena[id as usize].chunk().expect("live chunk")
    }
    #[inline]
    pub(crate) fn cm(&mut self, id: u32) -> &mut Chunk {
        self.arena[id as usize].chunk_mut().expect("live chunk")
    }

    /// Validate and round a request (`pcpu_alloc` steps 2-3).
    #[inline]
    pub fn request(&self, size: usize, align: usize) -> Result<Request, AllocError> {
        let align = align.max(MIN_ALLOC_SIZE);
        let max = self.geo.max_alloc_size();
        if size == 0 || size > max {
            return Err(AllocError::InvalidSize { size, max });
        }
        let size = size.div_ceil(MIN_ALLOC_SIZE) * MIN_ALLOC_SIZE;
        if size > max {
            return Err(AllocError::InvalidSize { size, max });
        }
        if !align.is_power_of_two() || align > self.geo.page_size() {
            return Err(AllocError::InvalidAlign {
                align,
                max: self.geo.page_size(),
            });
        }
        Ok(Request {
            size,
            align,
            bits: (size / MIN_ALLOC_SIZE) as i32,
            bit_align: (align / MIN_ALLOC_SIZE) as i32,
        })
    }
}

// === impl Allocator: slots, isolation, empty-page accounting ===

impl Allocator {
    /// `pcpu_chunk_relocate`; `oslot = None` stands for the kernel's -1.
    pub(crate) fn relocate(&mut self, id: u32, oslot: Option<usize>) {
        if Some(id) == self.reserved {
            return;
        }
        let c = self.c(id);
        if c.isolated || c.detached {
            return;
        }
        let nslot = self.layout.chunk_slot(c);
        if oslot != Some(nslot) {
            let front = oslot.map_or(true, |o| o < nslot);
            self.lists.move_to(id, nslot, front);
        }
    }

    /// Mirror a chunk's empty-page delta globally (`pcpu_update_empty_pages`).
    #[inline]
    pub(crate) fn account_empty(&mut self, id: u32, delta: i32) {
        if Some(id) != self.reserved {
            self.nr_empty_all += delta;
            if !self.c(id).isolated {
                self.nr_empty_pop_pages += delta;
            }
        }
    }

    /// `pcpu_isolate_chunk`.
    pub(crate) fn isolate(&mut self, id: u32) {
        let c = self.cm(id);
        if c.reclaiming {
            // A concurrent free while the balance run depopulates this chunk:
            // let the run take it again instead of sidelining it (the kernel
            // loses this re-queue when its list_move_tail() runs after it).
            c.requeued = true;
            return;
        }
        if !c.isolated {
            c.isolated = true;
            let n = c.nr_empty_pop_pages;
            self.nr_empty_pop_pages -= n;
        }
        let slot = self.layout.to_depopulate;
        self.lists.move_to(id, slot, true);
    }

    /// `pcpu_reintegrate_chunk`.
    #[inline]
    pub(crate) fn reintegrate(&mut self, id: u32) {
        let c = self.cm(id);
        if c.isolated {
            c.isolated = false;
            let n = c.nr_empty_pop_pages;
            self.nr_empty_pop_pages += n;
            self.relocate(id, None);
        }
    }

    /// `pcpu_chunk_populated`: pages now backed in every unit.
    pub(crate) fn chunk_populated(&mut self, id: u32, pages: Range<usize>) {
        let n = pages.len();
        if self.policy.refault_reserve_divisor != 0 {
            self.note_refaults(id, pages.clone());
        }
        let d = self.cm(id).mark_populated(pages);
        self.nr_populated += n;
        self.account_empty(id, d);
    }

    /// `pcpu_chunk_depopulated`.
    pub(crate) fn chunk_depopulated(&mut self, id: u32, pages: Range<usize>) {
        let n = pages.len();
        let d = self.cm(id).mark_depopulated(pages);
        self.nr_populated -= n;
        self.account_empty(id, d);
    }

    /// Pages of chunk `id` that reclaim depopulated get the next clock values.
    pub(crate) fn note_reclaimed(&mut self, id: u32, pages: Range<usize>) {
        if self.policy.refault_reserve_divisor == 0 {
            return;
        }
        let n = pages.len() as u64;
        let mut clock = self.reclaim_clock;
        for stamp in &mut self.cm(id).depop_stamp[pages] {
            clock += 1;
            *stamp = clock;
        }
        self.reclaim_clock = clock;
        // Forget old refaults as reclaim goes on: after depopulating
        // 2 x want pages without a refault, nothing is held back any more.
        self.refault_want = self.refault_want.saturating_sub(n.div_ceil(2));
    }

    /// Pages about to be populated: a page that reclaim depopulated `d` pages
    /// ago refaults, and a reserve of `d` more empty pages would have kept it.
    /// Only refaults the capped reserve could have prevented count.
    fn note_refaults(&mut self, id: u32, pages: Range<usize>) {
        let clock = self.reclaim_clock;
        let cap = self.refault_cap();
        let mut want = self.refault_want;
        for stamp in &mut self.cm(id).depop_stamp[pages] {
            if *stamp != 0 {
                let d = clock - *stamp + 1;
                if d <= cap {
                    want = want.max(d);
                }
                *stamp = 0;
            }
        }
        self.refault_want = want;
    }

    /// The largest refault reserve: `1 / refault_reserve_divisor` of the
    /// pages in use (0 when the knob is off).
    fn refault_cap(&self) -> u64 {
        let div = self.policy.refault_reserve_divisor;
        if div == 0 {
            return 0;
        }
        let in_use = self
            .nr_populated
            .saturating_sub(self.nr_empty_all.max(0) as usize);
        (in_use / div) as u64
    }

    /// Extra empty pages reclaim keeps beyond `empty_pop_high` (`pcpu`'s
    /// refault-aware reserve): the recent refault distance, capped at
    /// `1 / refault_reserve_divisor` of the pages in use.
    pub fn refault_reserve(&self) -> i32 {
        self.refault_want.min(self.refault_cap()) as i32
    }

    /// Reclaim stops once the empty pages (as [`Self::reserve_pages`]
    /// counts them) would drop below this.
    pub(crate) fn reclaim_floor(&self) -> i32 {
        self.policy.empty_pop_high + self.refault_reserve()
    }

    /// The empty pages as the policy counts them: Linux counts only
    /// non-isolated chunks (so many isolated chunks at once can stop reclaim
    /// early); `pcpu` counts every chunk, since an isolated chunk is
    /// reintegrated as soon as an allocation needs it.
    pub(crate) fn empty_pages(&self) -> i32 {
        if self.policy.kind == PolicyKind::Pcpu {
            self.nr_empty_all
        } else {
            self.nr_empty_pop_pages
        }
    }

    /// The reserve that protects atomic allocations, in pages, as the policy
    /// counts it for the balance work's targets: exact up to `cap` (callers
    /// compare against `cap` or less).
    ///
    /// Linux counts the empty pages ([`Self::empty_pages`]). When those fall
    /// short of `cap`, `pcpu` adds the first chunk's free room on its partly
    /// used pages ([`Chunk::room_on_used_pages`]), but only for the part of
    /// the reserve above `empty_pop_low`: the first chunk is never
    /// depopulated, so that room is always there for small atomic requests,
    /// and populating a page of another chunk instead would only keep one
    /// more page resident; the `empty_pop_low` empty pages stay real, for
    /// atomic requests larger than the room's holes (and the allocation-time
    /// check, [`Self::finish_alloc`], counts only those).
    pub(crate) fn reserve_pages(&self, cap: i32) -> i32 {
        let empty = self.empty_pages();
        if self.policy.kind != PolicyKind::Pcpu || empty >= cap {
            return empty;
        }
        // The policy is clamped: `empty_pop_low <= empty_pop_high`.
        let above_low = (self.policy.empty_pop_high - self.policy.empty_pop_low) as usize;
        let room = self.c(self.first).room_on_used_pages().min(above_low);
        empty + room as i32
    }

    /// `pcpu_should_reclaim_chunk` (5.14, percpu-vm.c); `c` is chunk `id`, as
    /// the caller looked it up.
    #[inline]
    pub(crate) fn should_reclaim(&self, id: u32, c: &Chunk) -> bool {
        if id == self.first || Some(id) == self.reserved {
            return false;
        }
        let high = self.policy.empty_pop_high;
        let threshold =
            (c.nr_pages / self.policy.reclaim_divisor).max(self.policy.reclaim_min_pages);
        match self.policy.kind {
            // Reclaim depopulates only down to the reserve, so a chunk holding
            // most of the empty pages can still give back the surplus. An
            // isolated chunk may keep empty pages that are the reserve
            // (`plan_reclaim`): it is queued again only when a page can go.
            // A fully free isolated chunk is always queued: reclaim returns
            // it to the free slot (it can hold nothing that a later free
            // would queue it for).
            PolicyKind::Pcpu => {
                let more = if c.isolated {
                    1
                } else {
                    self.policy.reclaim_surplus.max(1)
                };
                let want = self.reclaim_floor() + more;
                let fully_free = c.free_bytes == self.geo.unit_size() as i32;
                c.nr_empty_pop_pages > 0
                    && ((c.isolated && fully_free)
                        || ((c.isolated || c.empty_pop_pages_at_least(threshold))
                            && self.reserve_pages(want) >= want))
            }
            _ => {
                (c.isolated && c.nr_empty_pop_pages > 0)
                    || (self.nr_empty_pop_pages > high + c.nr_empty_pop_pages
                        && c.empty_pop_pages_at_least(threshold))
            }
        }
    }

    pub(crate) fn free_slot_has_other(&self, id: u32) -> bool {
        self.lists.iter(self.layout.free).any(|p| p != id)
    }
}

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
                        self.abort_create_chunk(id);
                        return Err(self.fail(req, flags, AllocError::ChunkCreate(e)));
                    }
                    self.finish_create_chunk(id);
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
                self.finish_create_chunk(id);
                Ok(id)
            }
            Err(e) => {
                self.abort_create_chunk(id);
                Err(AllocError::ChunkCreate(e))
            }
        }
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
                    self.abort_area(area, flags);
                    return Err(AllocError::Populate(e));
                }
                self.commit_populated(area.chunk, run);
            }
        }
        self.finish_alloc();
        Ok(area)
    }

    /// Two-phase allocation, step 1: place `req` (`pcpu_alloc` up to
    /// `area_found`). Non-atomic: the area may lie on unpopulated pages, see
    /// [`Allocator::next_unpopulated`]. `Err(NeedsChunk)` asks the caller to
    /// create a chunk and retry; other errors are final.
    #[inline]
    pub fn alloc_area(
        &mut self,
        req: Request,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
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
    /// anything: `None` when no chunk has room (a new chunk would be created).
    /// Replay uses it to order allocations that raced in the kernel.
    pub fn probe(&self, req: Request, flags: AllocFlags) -> Option<(ChunkId, usize)> {
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
    #[inline]
    pub fn next_unpopulated(&self, area: &Allocation) -> Option<Range<usize>> {
        let c = self.chunk(area.chunk)?;
        if c.nr_populated == c.nr_pages {
            return None;
        }
        c.next_unpopulated(area.pages(self.geo.page_size()))
    }

    /// Two-phase allocation: `pages` of `chunk` were populated by the backend.
    ///
    /// Calls that break the protocol (unknown chunk, pages outside the chunk
    /// or already populated) change nothing (debug builds assert).
    pub fn commit_populated(&mut self, chunk: ChunkId, pages: Range<usize>) {
        let ok = self.chunk(chunk).is_some_and(|c| {
            pages.start < pages.end
                && pages.end <= c.nr_pages
                && c.populated.count_ones_in(pages.start, pages.end) == 0
        });
        debug_assert!(
            ok,
            "commit_populated({chunk:?}, {pages:?}) breaks the protocol"
        );
        if ok {
            self.chunk_populated(chunk.0, pages);
        }
    }

    /// Two-phase allocation: population failed; free the area again
    /// ("failed to populate").
    ///
    /// An `area` that is not a live allocation, or that a [`Magazine`]
    /// holds, changes nothing (debug builds assert).
    ///
    /// [`Magazine`]: crate::Magazine
    pub fn abort_area(&mut self, area: Allocation, flags: AllocFlags) {
        let id = area.chunk.0;
        let live = self.is_own_area(area);
        debug_assert!(live, "abort_area({area:?}): not a live allocation");
        if !live {
            return;
        }
        self.free_area_in(
            id,
            (area.offset / MIN_ALLOC_SIZE) as i32,
            (area.size / MIN_ALLOC_SIZE) as i32,
        );
        self.stats.nr_failed += 1;
        let _ = flags;
    }

    /// Two-phase allocation: the caller decided not to use an area it just
    /// placed (step 1) and has not populated: free it again. Unlike
    /// [`Allocator::abort_area`] it is not counted as a failure (the
    /// statistics count an allocation and a free).
    ///
    /// An `area` that is not a live allocation, or that a [`Magazine`]
    /// holds, changes nothing (debug builds assert).
    ///
    /// [`Magazine`]: crate::Magazine
    pub fn cancel_area(&mut self, area: Allocation) {
        let live = self.is_own_area(area);
        debug_assert!(live, "cancel_area({area:?}): not a live allocation");
        if !live {
            return;
        }
        self.free_area_in(
            area.chunk.0,
            (area.offset / MIN_ALLOC_SIZE) as i32,
            (area.size / MIN_ALLOC_SIZE) as i32,
        );
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
        if let Some(id) = self.vacant.pop() {
            self.arena[id as usize] = Entry::Reserved;
            ChunkId(id)
        } else {
            self.arena.push(Entry::Reserved);
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
        self.alloc_area(req, flags)
            .map_err(|e| self.fail(req, flags, e))
    }

    /// The backend failed to create chunk `id`: release the id.
    ///
    /// An id that was not reserved changes nothing (debug builds assert).
    pub fn abort_create_chunk(&mut self, id: ChunkId) {
        let reserved = matches!(self.arena.get(id.0 as usize), Some(Entry::Reserved));
        debug_assert!(reserved, "abort_create_chunk({id:?}): not reserved");
        if !reserved {
            return;
        }
        self.arena[id.0 as usize] = Entry::Vacant;
        self.vacant.push(id.0);
    }

    /// The backend created chunk `id`: install it in the free slot
    /// (`pcpu_create_chunk` + `pcpu_chunk_relocate(chunk, -1)`).
    ///
    /// An id that was not reserved changes nothing (debug builds assert): a
    /// live chunk is never replaced.
    pub fn finish_create_chunk(&mut self, id: ChunkId) {
        let reserved = matches!(self.arena.get(id.0 as usize), Some(Entry::Reserved));
        debug_assert!(reserved, "finish_create_chunk({id:?}): not reserved");
        if !reserved {
            return;
        }
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
        self.relocate(id.0, None);
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
