//! The allocator: its state (chunks, slots, global counters), setup
//! (`pcpu_setup_first_chunk`), accessors and request validation. Its paths
//! live beside it: `alloc_path` (`pcpu_alloc`), `free` (`free_percpu`),
//! `accounting` (slots and empty pages), `balance`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use crate::chunk::{Chunk, ChunkKind};
use crate::class_table::ClassTable;
use crate::error::AllocError;
use crate::geometry::Geometry;
use crate::policy::Policy;
use crate::slots::{slot_key, Entry, Lists, SlotLayout};
use crate::stats::GlobalStats;
use crate::tiling::TilingStats;
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
    /// The byte range to zero on every unit: `offset..offset + size`.
    ///
    /// The fields are public, so a value may be made by hand: when
    /// `offset + size` would pass `usize::MAX`, the end saturates at
    /// `usize::MAX` (never wraps, never panics), and the range is then
    /// shorter than `size`. An area the allocator handed out ends inside its
    /// unit, far below that; the allocator refuses such a hand-made area
    /// with a typed error wherever it takes one back.
    ///
    /// ```
    /// use pcpu_core::{Allocation, ChunkId};
    /// let a = Allocation { chunk: ChunkId(1), offset: 12, size: 8 };
    /// assert_eq!(a.zero_range(), 12..20);
    /// let huge = Allocation { chunk: ChunkId(1), offset: usize::MAX - 3, size: 8 };
    /// assert_eq!(huge.zero_range(), usize::MAX - 3..usize::MAX);
    /// ```
    pub fn zero_range(&self) -> Range<usize> {
        self.offset..self.offset.saturating_add(self.size)
    }
    /// Pages (per unit) the allocation touches: those of
    /// [`zero_range`](Self::zero_range), whose end saturates (see there).
    /// A `page_size` of 0 names no pages: the range is empty (`0..0`).
    ///
    /// ```
    /// use pcpu_core::{Allocation, ChunkId};
    /// let a = Allocation { chunk: ChunkId(1), offset: 4000, size: 200 };
    /// assert_eq!(a.pages(4096), 0..2);
    /// assert_eq!(a.pages(0), 0..0);
    /// ```
    pub fn pages(&self, page_size: usize) -> Range<usize> {
        if page_size == 0 {
            return 0..0;
        }
        let bytes = self.zero_range();
        bytes.start / page_size..bytes.end.div_ceil(page_size)
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
    /// This allocator among all made by the process (its balance runs
    /// carry it, so that a run is never driven on another allocator; a clone
    /// shares it, and its runs are told apart by their numbers).
    pub(crate) instance: usize,
    /// Balance runs started so far; the open run's number, when one has
    /// been started and has neither ended nor been aborted (at most one).
    /// Run numbers come from [`next_token`]: distinct across allocators.
    pub(crate) runs_started: u64,
    pub(crate) open_run: Option<u64>,
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
            instance: next_token(0) as usize,
            runs_started: 0,
            open_run: None,
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
        a.relocate(first_id);
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
        // In u64: on a 32-bit target the bytes of all chunks may pass 4 GiB.
        self.nr_populated as u64 * self.geo.nr_units() as u64 * self.geo.page_size() as u64
    }
    /// Has an event occurred that schedules the balance work?
    pub fn balance_pending(&self) -> bool {
        self.balance_pending
    }
    /// Forget that the balance work is scheduled, without running it: for
    /// a state built to be the kernel's at a moment when no work was
    /// pending (a replay starting from the kernel's `percpu_stats`, whose
    /// setup allocations may have scheduled it). Nothing else changes.
    pub fn forget_pending_balance(&mut self) {
        self.balance_pending = false;
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
    /// What page tiling did so far (`Policy::tile_bursts`; `tiling.rs`).
    pub fn tiling_stats(&self) -> TilingStats {
        self.classes.bursts.stats
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
    /// // Any other id counts from 0, a chunk's or not.
    /// assert_eq!(a.chunk_base(ChunkId(u32::MAX)), 0);
    /// ```
    ///
    /// The base follows from the id alone, so any id other than those two
    /// gives 0, whether or not a live chunk has it: an id no chunk has yet
    /// is that of a chunk the backend may create, and the first and the
    /// reserved chunk are never destroyed, so their ids are never reused.
    /// Whether a chunk is live is [`chunk`](Self::chunk)'s to say.
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
    ///
    /// Nothing is checked against the allocator's chunks (as with
    /// `chunk_base`): for an `Allocation` made by hand whose sum would pass
    /// `usize::MAX`, the result saturates at `usize::MAX` (never wraps,
    /// never panics). For an area this allocator handed out it is below
    /// the unit size. [`allocation_size`](Self::allocation_size) says
    /// whether `a` is a live allocation.
    pub fn unit_offset(&self, a: &Allocation) -> usize {
        self.chunk_base(a.chunk).saturating_add(a.offset)
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

impl Allocator {
    /// Is `req` one [`Allocator::request`] would make here? A `Request` of
    /// another allocator, with larger units or pages, may hold a size no
    /// chunk of this one fits (every new chunk would be asked for, in vain)
    /// or an alignment above the page size.
    #[inline]
    pub(crate) fn check_request(&self, req: Request) -> Result<(), AllocError> {
        if req.size > self.geo.max_alloc_size() || req.align > self.geo.page_size() {
            return self.request(req.size, req.align).map(|_| ());
        }
        Ok(())
    }
}

/// A number distinct from every other this process drew (until the counter
/// wraps): for a new allocator, and for each balance run, so that a run is
/// never taken for another allocator's, nor for a clone's (which shares its
/// allocator's `instance`). On a target without atomic pointer-sized
/// operations, `fallback` (runs are then told apart by their allocator's
/// run count only).
pub(crate) fn next_token(fallback: u64) -> u64 {
    #[cfg(target_has_atomic = "ptr")]
    {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let _ = fallback;
        NEXT.fetch_add(1, Ordering::Relaxed) as u64
    }
    #[cfg(not(target_has_atomic = "ptr"))]
    {
        fallback
    }
}
