//! Class-aware placement: objects of one class are kept together so that they
//! do not pin pages shared with objects that die at other times.
//!
//! A class owns a *region* `[lo, hi)` of one chunk (in bits): a free run it
//! took when it last needed room (it keeps its last few). Its allocations go
//! first fit inside its regions, so it back-fills only its own holes: first
//! a hole on a page already in use, oldest region first (nothing else fills
//! the holes a class left behind when an object did not fit), then any room,
//! most recent region first (where the class grows). When no region fits, the
//! class takes a new one with the kernel's own slot walk and first fit, but
//! probing for a larger run, so that it skips the small holes of other
//! classes:
//!
//! * [`ClassPages::Shared`] (a task's objects, no hint from the user): a run of
//!   at least `min_run` bytes; consecutive classes may share a page boundary.
//! * [`ClassPages::Exclusive`] (lifetime classes hinted by the user, or size
//!   classes): whole free pages, so two classes never share a page. With
//!   `Policy::keep_room` it skips the *growth room* of the
//!   [`GROWING_CLASSES`] most recently used other classes (the free part of
//!   a region past some of its objects) and takes a new chunk rather than
//!   cut into it: classes allocating in turn would otherwise interleave page
//!   by page, each switch leaving a page partly used. While chunks wait for
//!   reclaim, or when no chunk can be created, it cuts in after all.
//!
//! With `Policy::backfill`, a task class opens a region, in the chunk the
//! walk chose (a dynamic one), in the first free run of at least three
//! eighths of a page that starts on a page already holding objects, before
//! first fit: after a removal, the refill fills the holes beside the
//! survivors before it spreads onto empty pages (`backfill.rs`). A small
//! request defers an active chunk more than three quarters free to such a
//! run in an isolated chunk, and a chunk queued for reclaim is taken back
//! before a fully free chunk.
//!
//! With `Policy::long_lived`, a task class's first small object from a call
//! site whose classes mostly stayed at one object goes to the shared
//! [`LONG_LIVED`] class instead (`long_lived.rs`): one page at a time (it
//! keeps up to four), whose growth room every other class keeps out of in
//! the same way, cutting in only where `keep_room` would.
//!
//! A class opening a region inside another class's region truncates the
//! other one there. The regions live in the class table (`class_table.rs`):
//! bounded, least recently used evicted first, the long-lived class's last.

use crate::allocator::{AllocFlags, Allocation, Allocator, Request};
use crate::backend::Backend;
use crate::chunk::ChunkKind;
use crate::class_table::{Growing, Region, GROWING_CLASSES, REGIONS_PER_CLASS};
use crate::error::AllocError;
use crate::long_lived::LONG_LIVED;
use crate::policy::PolicyKind;
use crate::slots::Entry;
use crate::tiling::TINY_BITS;
use crate::MIN_ALLOC_SIZE;

/// How a class's regions are carved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassPages {
    /// Contiguous runs that may share a page with a neighbouring class.
    Shared,
    /// Whole pages of its own.
    Exclusive,
}

/// A placement class for one allocation. Build it with [`ClassHint::task`]
/// or [`ClassHint::lifetime`], and [`ClassHint::at_site`] for the call site.
/// Equality and hashing include the site; the allocator keys its classes
/// without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClassHint {
    /// Class identity (a task id, a lifetime class, a size class...).
    pub id: u64,
    /// Region shape.
    pub pages: ClassPages,
    /// The allocation's call site (any stable id; 0: unknown). Not part of
    /// the class: it feeds the long-lived prediction (`Policy::long_lived`).
    pub site: u64,
}

impl ClassHint {
    /// Objects allocated by one task (shared-page regions).
    pub const fn task(id: u64) -> Self {
        ClassHint {
            id,
            pages: ClassPages::Shared,
            site: 0,
        }
    }
    /// Objects expected to die together (page-exclusive regions).
    pub const fn lifetime(id: u64) -> Self {
        ClassHint {
            id,
            pages: ClassPages::Exclusive,
            site: 0,
        }
    }
    /// The same class, allocating from call site `site`.
    pub const fn at_site(self, site: u64) -> Self {
        ClassHint { site, ..self }
    }
    /// The class alone, without its call site (the class tables' key).
    pub(crate) const fn bare(self) -> Self {
        ClassHint { site: 0, ..self }
    }
}

/// The least free run, in bits, a task class opens a region in beside live
/// objects under `Policy::backfill`: three eighths of a page, the middle of
/// what measured alike. On the generated traces of seeds 1 to 100 (400
/// traces, balance work on demand), from 1/4 to 1/2 of a page 2 to 4 of them
/// have a phase more than 1% above linux-5.14 (5 without back-fill), and
/// resident memory after removals is 1.4 to 1.8 points lower; at 5/8 of a
/// page, more than the cgroup of about half a page every generator's tasks
/// allocate, the holes freed cgroups leave stop counting and 28 are above.
pub(crate) const fn backfill_room(block_bits: i32) -> i32 {
    block_bits * 3 / 8
}

/// A request of at most a quarter page: the long-lived prediction routes
/// only these, and only these defer a mostly free chunk (`backfill`).
const fn is_small(bits: i32, block_bits: i32) -> bool {
    bits <= block_bits / 4
}

// === impl Allocator: class placement ===

impl Allocator {
    /// Allocate like [`Allocator::alloc`], keeping `class`'s objects together
    /// when the policy has class placement (`classes.rs`); the Linux policies
    /// ignore the hint.
    pub fn alloc_class<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        size: usize,
        align: usize,
        flags: AllocFlags,
        class: ClassHint,
    ) -> Result<Allocation, AllocError> {
        let req = self.request(size, align)?;
        let now = self.classes.tick();
        let mut created = false;
        let placed = loop {
            match self.alloc_area_class(req, flags, class) {
                Ok(a) => break Ok(a),
                // A fully free chunk takes any class's request, so one new
                // chunk is enough; should it not be, plain first fit.
                Err(AllocError::NeedsChunk) if created => break self.first_fit_or_fail(req, flags),
                Err(AllocError::NeedsChunk) => match self.create_chunk(backend) {
                    Ok(_) => created = true,
                    // A class asks for a chunk while growth room is free
                    // (`keep_room`, `long_lived`): without a new
                    // chunk, plain first fit (which asks only when nothing
                    // fits).
                    Err(e) => break self.first_fit_or_fail(req, flags).map_err(|_| e),
                },
                Err(e) => break Err(e),
            }
        };
        // Nothing placed after all: the long-lived prediction forgets the
        // request (the retries above were the same request, at the same
        // class clock, which every placement advances).
        let area = match placed {
            Ok(a) => a,
            Err(e) => {
                self.classes.starters.abandon(class.bare(), now);
                return Err(e);
            }
        };
        self.populate_and_finish(backend, area, flags)
            .inspect_err(|_| self.classes.starters.abandon(class.bare(), now))
    }

    /// Two-phase [`Allocator::alloc_class`], step 1 (see
    /// [`Allocator::alloc_area`]). With `Policy::keep_room` or
    /// `Policy::long_lived`, `NeedsChunk` may come while free space is left,
    /// for a class that would have to cut into another class's growth room
    /// (the long-lived page's, or with `keep_room` a recent class's): a
    /// caller that cannot create a chunk then tries
    /// [`Allocator::alloc_area`], which takes any free space. A caller that
    /// retries after creating a chunk does so before any other class
    /// request: the long-lived prediction knows a retry by the class and the
    /// class clock, which every placement advances (retries of two classes
    /// interleaved may be taken for second objects). A request this
    /// allocator's geometry refuses is refused as by `alloc_area`.
    pub fn alloc_area_class(
        &mut self,
        req: Request,
        flags: AllocFlags,
        class: ClassHint,
    ) -> Result<Allocation, AllocError> {
        self.check_request(req)?;
        if !self.policy.class_placement || flags.atomic || flags.reserved {
            return self.alloc_area(req, flags);
        }
        let site = class.site;
        let mut class = class.bare();
        let bb = self.geo.block_bits() as i32;
        // A task class's first small object, from a site whose classes
        // mostly stayed at one object, goes to the long-lived class
        // (`long_lived.rs`; a large one fills pages of its own anyway).
        // Every class-placed task allocation settles verdicts (atomic and
        // reserved ones took plain first fit above).
        // Both learn from a task class's first object (`first`), at the
        // class clock `now`.
        // (One scan of the class table for both.)
        let shared = class.pages == ClassPages::Shared;
        let no_regions = shared
            && (self.policy.uses_call_sites() || self.policy.grow_beside)
            && !self.classes.has_regions(class);
        let first = no_regions && self.policy.uses_call_sites();
        let now = self.classes.tick();
        // A task class's first object from a site whose first objects
        // mostly died young while their class lived goes to plain first
        // fit, outside the class (`short_lived.rs`); every class-placed task
        // allocation settles the verdicts due.
        let watch = self.policy.short_lived && first && site != 0;
        if self.policy.short_lived && class.pages == ClassPages::Shared {
            self.settle_transients(now);
            if watch && self.classes.transients.predicts(site) {
                let a = self.alloc_area(req, flags)?;
                self.watch_first(class, site, &a, now, true);
                return Ok(a);
            }
        }
        // A task class that starts a region again, its objects gone, is a
        // task that returns: long-running too (`long_running.rs`). (It is
        // remembered once its region is open: a retry after a new chunk is
        // not a return.) So is one starting from a call site whose earlier
        // classes were mostly taken. (Both are asked, `|`: the site's vote
        // is counted whether or not the class returns.)
        let task = class;
        let fresh =
            self.policy.grow_beside && no_regions && !self.classes.long_running.contains(class);
        if fresh
            && (self.classes.long_running.returning(class, now)
                | self.classes.long_running.start_at(site, class))
        {
            self.classes.long_running.take(class);
        }
        // A long-running task's objects die one at a time: plain first fit
        // (`long_running.rs`).
        if self.policy.grow_beside && shared && self.classes.long_running.contains(class) {
            return self.alloc_area(req, flags);
        }
        if self.policy.long_lived && class.pages == ClassPages::Shared {
            let small = is_small(req.bits, bb);
            class = self.classes.starters.route(class, site, now, first, small);
        }
        // A tiling class (`tiling.rs`) starts its burst on a multiple of
        // its predicted size and leaves its 4-byte objects to the
        // long-lived pages. (A class the prediction sent there is no task
        // class any more.)
        let mut tile = None;
        if self.policy.tile_bursts && class.pages == ClassPages::Shared {
            if first {
                let page_bits = (self.geo.page_size() / MIN_ALLOC_SIZE) as i32;
                self.classes.bursts.start(site, class.id, now, page_bits);
            }
            if let Some(t) = self.classes.bursts.tile(class.id) {
                if req.bits <= TINY_BITS {
                    let a = self.place_in_class(req, flags, LONG_LIVED, None)?;
                    self.classes.bursts.stats.pooled += 1;
                    return Ok(a);
                } else if first {
                    tile = Some(t);
                }
            }
        }
        let a = self.place_in_class(req, flags, class, tile)?;
        // (A first object the long-lived prediction placed is watched in
        // the long-lived class: whether that class still holds objects.)
        if watch {
            self.watch_first(class, site, &a, now, false);
        }
        if fresh && self.classes.has_regions(task) {
            self.classes.long_running.started(task, now);
        }
        Ok(a)
    }

    /// Place `req` in one of `class`'s regions, else in a new one (`tile`:
    /// the burst size a tiling class's first region starts on a multiple
    /// of).
    fn place_in_class(
        &mut self,
        req: Request,
        flags: AllocFlags,
        class: ClassHint,
        tile: Option<i32>,
    ) -> Result<Allocation, AllocError> {
        // The class's usable regions, most recently used first.
        let mut regions = [None::<Region>; REGIONS_PER_CLASS];
        for (slot, r) in regions.iter_mut().zip(self.classes.regions(class)) {
            let usable = match self.arena.get(r.chunk as usize).and_then(Entry::chunk) {
                // A queued (not yet reclaiming) chunk may be taken back, as a
                // sidelined one is: place() reintegrates it.
                Some(c) => c.serial == r.serial && !c.detached && !c.reclaiming,
                None => false,
            };
            if usable {
                *slot = Some(r);
            } else {
                self.classes.remove(class, &r);
            }
        }
        // First a hole on pages already in use, oldest region first: the
        // holes of a region the class moved on from (an alignment gap, the
        // room an object too large for it left) are filled by nobody else.
        // Then any room, most recent region first: where the class grows.
        // Either way the region used becomes the most recent. (Leaving a
        // region whose hole was filled at its old rank moved the real memcg
        // floor from 1507 to 1509 pages and swapped two churn traces above
        // +1% for one mix trace.)
        for used_pages_only in [true, false] {
            let order = regions.iter().flatten();
            let order: &mut dyn Iterator<Item = &Region> = if used_pages_only {
                &mut order.rev()
            } else {
                &mut { order }
            };
            for r in order {
                let Some(off) = self.fit_in_region(r, req, used_pages_only) else {
                    continue;
                };
                if !used_pages_only && self.policy.grow_beside && class.pages == ClassPages::Shared
                {
                    if let Some(a) = self.grow_beside_used(r, off, req, class) {
                        return Ok(a);
                    }
                }
                if let Some(a) = self.place(r.chunk, req, off) {
                    self.classes.touch(class, r);
                    self.reintegrate_after(r.chunk, req);
                    self.classes.bursts.placed(class.id, req.bits);
                    return Ok(a);
                }
            }
        }
        self.open_region(req, flags, class, tile)
    }

    /// Place `req` at bit `off` of chunk `id` and open a region of `class`
    /// there, up to the next bit in use (`None`: the place refused it).
    fn open_at(&mut self, id: u32, req: Request, class: ClassHint, off: i32) -> Option<Allocation> {
        let a = self.place(id, req, off)?;
        let c = self.c(id);
        let bb = c.block_bits;
        let hi = c
            .alloc_map
            .find_next_bit(c.map_bits as usize, (off + req.bits) as usize) as i32;
        let serial = c.serial;
        // INVARIANT: the long-lived region is one page (its start is
        // page-aligned: exclusive classes probe at page alignment), so the
        // room kept from the others is less than a page.
        let hi = if class == LONG_LIVED {
            hi.min(off + bb)
        } else {
            hi
        };
        self.classes.open(class, id, serial, off, hi);
        self.reintegrate_after(id, req);
        self.classes.bursts.placed(class.id, req.bits);
        Some(a)
    }

    /// Open a new region for `class` and place `req` there: the kernel's
    /// walk and first fit, for a larger run; for a tiling burst (`tile`:
    /// its size in bits), at a multiple of its size in dynamic chunks.
    fn open_region(
        &mut self,
        req: Request,
        flags: AllocFlags,
        class: ClassHint,
        tile: Option<i32>,
    ) -> Result<Allocation, AllocError> {
        let bb = self.geo.block_bits() as i32;
        let (probe_bits, probe_align) = match class.pages {
            // At most a whole chunk, which a new chunk always has free
            // (`min_run` may be set larger than a unit).
            ClassPages::Shared => (
                req.bits.max(
                    (self.policy.min_run / MIN_ALLOC_SIZE)
                        .min(self.geo.unit_size() / MIN_ALLOC_SIZE) as i32,
                ),
                req.bit_align.max(tile.unwrap_or(1)),
            ),
            ClassPages::Exclusive => ((req.bits.max(bb) + bb - 1) / bb * bb, req.bit_align.max(bb)),
        };
        // A tiling burst is aligned in dynamic chunks only: the first
        // chunk's pages are all populated anyway, and an aligned run there
        // would push boot-time tasks into a dynamic chunk.
        let static_align = match class.pages {
            ClassPages::Shared => req.bit_align,
            ClassPages::Exclusive => probe_align,
        };
        let probe_bytes = probe_bits as usize * MIN_ALLOC_SIZE;
        let mut next_slot = self
            .layout
            .size_to_slot(probe_bytes.min(self.geo.unit_size()));
        let mut found = None;
        // The classes whose growth room this one keeps out of (the table
        // does not change during the walk): with `keep_room`, an exclusive
        // class keeps out of the most recently used ones'; with
        // `long_lived`, every class keeps out of the long-lived page's.
        let keeps_recent = class.pages == ClassPages::Exclusive && self.policy.keep_room;
        let growing =
            self.with_long_lived_room(keeps_recent.then(|| self.classes.growing(class)), class);
        // Rather than cut into another class's growth room, a class takes a
        // new chunk; but not while chunks wait for reclaim (the
        // balance work is behind: a chunk now would only add to what it must
        // give back, and without balance runs chunks would pile up). The
        // walk changes no list.
        let may_cut = self.lists.head(self.layout.to_depopulate).is_some();
        // With `backfill`, a task class opens its region, in the chunk the
        // walk chose, in the first free run of `backfill_room` or more that
        // starts on a page holding objects, if there is one: the refill
        // after a removal fills the room beside the survivors, whose pages
        // stay resident anyway, before it spreads onto empty pages. (Across
        // chunks instead, the refills spread over every chunk: 32 of 162
        // traces above +1% of linux-5.14.)
        let backfill = (self.policy.backfill && class.pages == ClassPages::Shared)
            .then_some(backfill_room(bb));
        // The plain first fit, inside another class's growth room.
        let mut cut = None;
        // With `backfill`, a small request whose walk first comes to an
        // active chunk more than three quarters free (the spare chunk a
        // large object opened, the last refill's overflow) takes a run
        // beside the survivors of an isolated chunk first (sidelined, in
        // the refill order, then queued), if there is one: those pages stay
        // resident anyway, the free chunk's would be populated. `deferred`
        // keeps the active chunk's fit meanwhile.
        let mut deferred: Option<(u32, i32)> = None;
        let small = is_small(req.bits, bb);
        'walk: while let Some(slot) = self.lists.next_nonempty(next_slot, self.layout.free) {
            next_slot = slot + 1;
            // With `backfill`, a chunk queued for reclaim is taken back
            // before a fully free chunk (and, as without it, before a new
            // one, below): its survivors pin their pages anyway, while the
            // free chunk's pages would have to be populated. Here outside
            // the growth room the class keeps out of: a free chunk is there.
            // It matters when the balance work runs late (the real churn
            // capture at its recorded balance runs).
            if slot == self.layout.free && backfill.is_some() {
                if let Some(q) = self.queued_fit(
                    probe_bits,
                    probe_align,
                    growing.as_ref(),
                    backfill,
                    deferred.is_some(),
                ) {
                    found = Some(q);
                    break 'walk;
                }
                // Deferring: the queued chunks were looked at, and a free
                // chunk has no survivors to be beside.
                if deferred.is_some() {
                    break 'walk;
                }
            }
            let order = self.refill_order(slot, flags);
            let ids: &mut dyn Iterator<Item = u32> = match &order {
                Some(ids) => &mut ids.iter().copied(),
                None => &mut self.lists.iter(slot),
            };
            for id in ids {
                let c = self.c(id);
                let probe_align = match c.kind {
                    ChunkKind::Dynamic => probe_align,
                    _ => static_align,
                };
                let Some(start) = c.find_block_fit(probe_bits, probe_align, false) else {
                    continue;
                };
                let probe = (probe_bits, probe_align);
                let (beside, off) = self.region_fit(id, start, probe, growing.as_ref(), backfill);
                if growing.is_some() && off.is_none() && may_cut && cut.is_none() {
                    cut = c
                        .probe_area(probe_bits, probe_align, start)
                        .map(|off| (id, off));
                }
                // While deferring, only a run beside survivors is taken.
                if deferred.is_some() {
                    if let Some(b) = beside {
                        found = Some((id, b));
                        break 'walk;
                    }
                    continue;
                }
                let Some(off) = off else {
                    continue;
                };
                // More than three quarters of its bits free.
                let mostly_free =
                    (c.free_bytes / MIN_ALLOC_SIZE as i32) as i64 * 4 > c.map_bits as i64 * 3;
                let dynamic = c.kind == ChunkKind::Dynamic;
                if backfill.is_some()
                    && dynamic
                    && small
                    && mostly_free
                    && slot < self.layout.sidelined
                {
                    deferred = Some((id, off));
                    next_slot = self.layout.sidelined;
                    continue 'walk;
                }
                found = Some((id, off));
                break 'walk;
            }
        }
        // With `backfill` the walk takes a queued chunk back at the free
        // slot, before a fully free chunk; with no free chunk, it still does,
        // before one is mapped (else the new chunk would be mapped, and the
        // retry would take the queued chunk at the new chunk's free slot,
        // leaving it unused).
        if found.is_none()
            && deferred.is_none()
            && backfill.is_some()
            && self.lists.head(self.layout.free).is_none()
        {
            found = self.queued_fit(probe_bits, probe_align, growing.as_ref(), backfill, false);
        }
        if found.is_none() {
            if let Some(d) = deferred {
                // (The walk looked at the queued chunks when it reached the
                // free slot; when that slot is empty, here.)
                let queued = match self.lists.head(self.layout.free) {
                    Some(_) => None,
                    None => {
                        self.queued_fit(probe_bits, probe_align, growing.as_ref(), backfill, true)
                    }
                };
                found = Some(queued.unwrap_or(d));
            }
        }
        // `pcpu` takes a chunk queued for reclaim back before it maps a new
        // one (`Allocator::take_back_queued`).
        if found.is_none() && self.policy.kind == PolicyKind::Pcpu {
            found = self.queued_fit(probe_bits, probe_align, None, backfill, false);
        }
        if found.is_none() {
            found = cut;
        }
        // A tiling burst whose aligned start would skip more bits than its
        // site saved up (`tiling.rs`), or that has none, is placed as an
        // untiled one.
        if let Some(t) = tile {
            let credit = self.classes.bursts.credit(class.id);
            let start = |(id, off)| self.tile_start(id, off, t, probe_bits, growing.as_ref());
            match found.and_then(start) {
                Some((id, off, skip)) if skip <= credit => {
                    self.classes.bursts.spend(class.id, skip);
                    found = Some((id, off));
                }
                _ => {
                    let a = self.open_region(req, flags, class, None)?;
                    self.classes.bursts.stats.untiled += 1;
                    return Ok(a);
                }
            }
        }
        let Some((id, off)) = found else {
            // No chunk has a free run that large (or only in growth room): a
            // new chunk (the walk above includes the free slot, so none is
            // empty).
            return Err(AllocError::NeedsChunk);
        };
        let a = self
            .open_at(id, req, class, off)
            .ok_or(AllocError::NeedsChunk)?;
        // (A burst in the first chunk is not aligned: `tile_start`.)
        if tile.is_some() {
            let dynamic = self.c(id).kind == ChunkKind::Dynamic;
            let stats = &mut self.classes.bursts.stats;
            if dynamic {
                stats.tiled += 1;
            } else {
                stats.untiled += 1;
            }
        }
        Ok(a)
    }

    /// Where a tiling burst (`tile` bits) opens its region in chunk `id`,
    /// given `off`, the fit the walk found for a run of `probe_bits` (at a
    /// multiple of the burst's size, unless back-fill chose a run beside
    /// survivors): at the first multiple of `tile` from `off` if the free
    /// run holds the region from there, with the bits skipped from the
    /// run's start (the caller takes it if the site saved up that many:
    /// `tiling.rs`), unless that is in the growth room of a class of
    /// `growing` (the walk kept `off` out of it); at `off`, skipping
    /// nothing, in a chunk other than a dynamic one (probed unaligned).
    fn tile_start(
        &self,
        id: u32,
        off: i32,
        tile: i32,
        probe_bits: i32,
        growing: Option<&Growing>,
    ) -> Option<(u32, i32, i32)> {
        let c = self.c(id);
        if c.kind != ChunkKind::Dynamic {
            return Some((id, off, 0));
        }
        let run = c
            .alloc_map
            .find_prev_bit(0, off as usize)
            .map_or(0, |b| b as i32 + 1);
        let end = c.alloc_map.find_next_bit(c.map_bits as usize, off as usize) as i32;
        let aligned = (off + tile - 1) / tile * tile;
        if aligned + probe_bits > end {
            return None;
        }
        if let Some(g) = growing {
            let used = |lo: i32, at: i32| {
                (c.alloc_map.find_next_bit(at as usize, lo as usize) as i32) < at
            };
            if self
                .classes
                .growth_room_end(g, id, c.serial, aligned, used)
                .is_some()
            {
                return None;
            }
        }
        Some((id, aligned, aligned - run))
    }

    /// A chunk queued for reclaim (not the one being reclaimed) for a new
    /// region of `(bits, align)`: the first with a fit, outside the growth
    /// room of `growing`'s classes when given, and in it, with `backfill`
    /// (the run length), a run beside survivors first; with `beside_only`,
    /// the first with such a run ([`Allocator::region_fit`]).
    fn queued_fit(
        &self,
        bits: i32,
        align: i32,
        growing: Option<&Growing>,
        backfill: Option<i32>,
        beside_only: bool,
    ) -> Option<(u32, i32)> {
        self.lists
            .iter(self.layout.to_depopulate)
            .filter(|&id| !self.c(id).reclaiming)
            .find_map(|id| {
                let start = self.c(id).find_block_fit(bits, align, false)?;
                let (beside, off) = self.region_fit(id, start, (bits, align), growing, backfill);
                if beside_only { beside } else { off }.map(|off| (id, off))
            })
    }

    /// Where a new region of `(bits, align)` opens in chunk `id`, whose
    /// block hints put a fit at or after bit `start`: with `backfill` (the
    /// run length) in a dynamic chunk, the first run beside survivors
    /// ([`Chunk::first_fit_beside_used`]), and the fit to take, that run or
    /// else the first fit; both outside the growth room of `growing`'s
    /// classes when given. Not in the first chunk: its pages are all
    /// populated and never given back, so nothing is saved there.
    fn region_fit(
        &self,
        id: u32,
        start: i32,
        (bits, align): (i32, i32),
        growing: Option<&Growing>,
        backfill: Option<i32>,
    ) -> (Option<i32>, Option<i32>) {
        let c = self.c(id);
        let backfill = backfill.filter(|_| c.kind == ChunkKind::Dynamic);
        let beside_used = |room| move |pos| c.first_fit_beside_used(pos, bits, align, room);
        match growing {
            Some(g) => {
                let beside = backfill
                    .and_then(|room| self.outside_growth_room(id, g, start, beside_used(room)));
                let plain = |pos| c.first_fit_in(pos, c.map_bits, bits, align);
                (
                    beside,
                    beside.or_else(|| self.outside_growth_room(id, g, start, plain)),
                )
            }
            None => {
                let Some(first) = c.probe_area(bits, align, start) else {
                    return (None, None);
                };
                let beside = backfill.and_then(|room| beside_used(room)(first));
                (beside, beside.or(Some(first)))
            }
        }
    }

    /// First fit of `req` in region `r`; with `used_pages_only`, only if
    /// that fit lies on pages already holding allocations. (Looking further
    /// for a fit on used pages, past a first fit on an empty page, raised
    /// churn troughs: 9 of 160 generated traces above +1% of linux-5.14.)
    fn fit_in_region(&self, r: &Region, req: Request, used_pages_only: bool) -> Option<i32> {
        let c = self.c(r.chunk);
        let bb = c.block_bits;
        let off = c.first_fit_in(r.lo, r.hi, req.bits, req.bit_align)?;
        let mut pages = (off / bb) as usize..=((off + req.bits - 1) / bb) as usize;
        (!used_pages_only || pages.all(|p| c.is_page_used(p))).then_some(off)
    }

    /// `growing` with the long-lived page added (its last entry) where
    /// `class` keeps out of that page's growth room (`Policy::long_lived`:
    /// the page exists and `class` is not it).
    pub(crate) fn with_long_lived_room(
        &self,
        mut growing: Option<Growing>,
        class: ClassHint,
    ) -> Option<Growing> {
        if self.policy.uses_call_sites()
            && class != LONG_LIVED
            && self.classes.has_regions(LONG_LIVED)
        {
            growing
                .get_or_insert(Growing([None; GROWING_CLASSES + 1]))
                .0[GROWING_CLASSES] = Some(LONG_LIVED);
        }
        growing
    }

    /// The first fit `fit` finds in chunk `id` from bit `start` (`fit(pos)`:
    /// the first at or after `pos`) that lies in the growth room of no
    /// class of `growing` ([`ClassTable::growth_room_end`]).
    pub(crate) fn outside_growth_room(
        &self,
        id: u32,
        growing: &Growing,
        start: i32,
        fit: impl Fn(i32) -> Option<i32>,
    ) -> Option<i32> {
        let c = self.c(id);
        let used =
            |lo: i32, off: i32| (c.alloc_map.find_next_bit(off as usize, lo as usize) as i32) < off;
        let mut pos = start;
        loop {
            let off = fit(pos)?;
            match self
                .classes
                .growth_room_end(growing, id, c.serial, off, used)
            {
                None => return Some(off),
                Some(hi) => pos = hi.max(off + 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    use crate::{ChunkId, Geometry, Policy, SimBackend};

    /// A half-page burst, in bits (4 KiB pages).
    const HALF: i32 = 512;
    /// `min_run` under `pcpu`, in bits: a task class's least probe.
    const PROBE: i32 = 16;

    /// `pcpu`'s policy on units of 8 pages (the first chunk's dynamic area
    /// two pages after a one-page static area), and a dynamic chunk's id.
    fn with_dynamic_chunk() -> (Allocator, SimBackend, u32) {
        let g = Geometry::from_kernel_line("s4096 r0 d8192 u32768", 4).unwrap();
        let mut a = Allocator::new(g, Policy::pcpu());
        let mut b = SimBackend::default();
        let ChunkId(id) = a.create_chunk(&mut b).unwrap();
        assert_eq!(a.c(id).kind, ChunkKind::Dynamic);
        (a, b, id)
    }

    /// Place an object of `bits` bits at bit `at` of chunk `id`, populated.
    fn put(a: &mut Allocator, b: &mut SimBackend, id: u32, at: i32, bits: i32) {
        let req = a.request(bits as usize * MIN_ALLOC_SIZE, 4).unwrap();
        let x = a.place(id, req, at).unwrap();
        assert_eq!(x.offset, at as usize * MIN_ALLOC_SIZE);
        a.populate_and_finish(b, x, AllocFlags::NORMAL).unwrap();
        a.check_invariants().unwrap();
    }

    #[test]
    fn a_tiling_start_skips_the_free_bits_before_it_in_its_run() {
        let (mut a, mut b, id) = with_dynamic_chunk();
        put(&mut a, &mut b, id, 1500, 10);
        // The run starts at the chunk's start: all of it is skipped.
        assert_eq!(
            a.tile_start(id, HALF, HALF, PROBE, None),
            Some((id, HALF, HALF))
        );
        // The run [100, 1500): a fit on a multiple stays, and skips the
        // bits from the one after the last object.
        put(&mut a, &mut b, id, 0, 100);
        assert_eq!(
            a.tile_start(id, HALF, HALF, PROBE, None),
            Some((id, HALF, 412))
        );
        assert_eq!(
            a.tile_start(id, 1024, HALF, PROBE, None),
            Some((id, 1024, 924))
        );
        // A fit between multiples starts at the next one. (open_region's
        // fits in dynamic chunks are on a multiple already: it probes at
        // the burst's alignment there.)
        assert_eq!(
            a.tile_start(id, 300, HALF, PROBE, None),
            Some((id, 512, 412))
        );
    }

    #[test]
    fn a_tiling_start_needs_the_probed_run_inside_the_free_run() {
        let (mut a, mut b, id) = with_dynamic_chunk();
        put(&mut a, &mut b, id, 0, 100);
        put(&mut a, &mut b, id, 1500, 10);
        // From 1024 the free run [100, 1500) holds 476 bits, not 477.
        assert_eq!(
            a.tile_start(id, 1024, HALF, 476, None),
            Some((id, 1024, 924))
        );
        assert_eq!(a.tile_start(id, 1024, HALF, 477, None), None);
        // The next multiple after 1100 is past the run's end (though free
        // there): the start is judged by its own run, not `off`'s.
        assert_eq!(a.tile_start(id, 1100, HALF, PROBE, None), None);
    }

    #[test]
    fn a_tiling_start_keeps_out_of_the_long_lived_growth_room() {
        let (mut a, mut b, id) = with_dynamic_chunk();
        let serial = a.c(id).serial;
        // Two long-lived pages: the first has an object at its start, the
        // second only one near its end (the ones before it were freed).
        put(&mut a, &mut b, id, 2048, 1);
        put(&mut a, &mut b, id, 3900, 1);
        a.classes.open(LONG_LIVED, id, serial, 2048, 3072);
        a.classes.open(LONG_LIVED, id, serial, 3072, 4096);
        a.check_invariants().unwrap();
        let mut growing = Growing([None; GROWING_CLASSES + 1]);
        growing.0[GROWING_CLASSES] = Some(LONG_LIVED);
        // Past the first page's object: its growth room. (The walk keeps
        // its own fits out of it; a cut-in fit or a queued chunk's taken
        // without `growing` may lie there.)
        assert_eq!(a.tile_start(id, 2560, HALF, PROBE, Some(&growing)), None);
        assert_eq!(
            a.tile_start(id, 2560, HALF, PROBE, None),
            Some((id, 2560, 511))
        );
        // Before the second page's only object: not growth room.
        let start = Some((id, 3584, 3584 - 2049));
        assert_eq!(a.tile_start(id, 3584, HALF, PROBE, Some(&growing)), start);
    }

    #[test]
    fn a_tiling_start_outside_dynamic_chunks_stays_at_the_fit() {
        let (a, _, _) = with_dynamic_chunk();
        let ChunkId(first) = a.first_chunk();
        // Bit 1100 of the first chunk: free, after its static page.
        assert_eq!(
            a.tile_start(first, 1100, HALF, PROBE, None),
            Some((first, 1100, 0))
        );
    }

    /// The burst sites' call site below.
    const SITE: u64 = 0x51;

    /// Fill the first chunk's free run (after its static page), so that
    /// new regions open in dynamic chunks.
    fn fill_first_chunk(a: &mut Allocator, b: &mut SimBackend) {
        let ChunkId(first) = a.first_chunk();
        let c = a.c(first);
        let lo = c.alloc_map.find_next_zero_bit(c.map_bits as usize, 0) as i32;
        put(a, b, first, lo, c.free_bytes / MIN_ALLOC_SIZE as i32);
        assert_eq!(a.c(first).free_bytes, 0);
    }

    /// Task class `class` starts at `SITE`, whose previous class placed a
    /// half-page burst: it tiles at half a page.
    fn tiling_class(a: &mut Allocator, class: u64) -> ClassHint {
        let page_bits = (a.geo.page_size() / MIN_ALLOC_SIZE) as i32;
        a.classes.bursts.start(SITE, class, 0, page_bits);
        assert_eq!(a.classes.bursts.tile(class), Some(HALF));
        ClassHint::task(class)
    }

    /// Open a region for `class` with `bits` bits, populated, and check the
    /// invariants.
    fn open(
        a: &mut Allocator,
        b: &mut SimBackend,
        class: ClassHint,
        bits: i32,
        tile: Option<i32>,
    ) -> Allocation {
        let req = a.request(bits as usize * MIN_ALLOC_SIZE, 4).unwrap();
        let x = a.open_region(req, AllocFlags::NORMAL, class, tile).unwrap();
        a.populate_and_finish(b, x, AllocFlags::NORMAL).unwrap();
        a.check_invariants().unwrap();
        x
    }

    #[test]
    fn a_region_opens_at_the_first_fit_of_a_chunk_with_room() {
        let (mut a, mut b, id) = with_dynamic_chunk();
        fill_first_chunk(&mut a, &mut b);
        put(&mut a, &mut b, id, 0, 100);
        put(&mut a, &mut b, id, 3000, 10);
        let chunks = a.nr_chunks();
        // No chunk is queued for reclaim: the walk's fit is taken, in the
        // chunk there is, and the region runs to the next object.
        let class = ClassHint::task(7);
        let x = open(&mut a, &mut b, class, 300, None);
        assert_eq!((x.chunk, x.offset), (ChunkId(id), 100 * MIN_ALLOC_SIZE));
        assert_eq!(a.nr_chunks(), chunks);
        let r: Vec<_> = a.classes.regions(class).map(|r| (r.lo, r.hi)).collect();
        assert_eq!(r, [(100, 3000)]);
    }

    #[test]
    fn a_tiling_burst_skips_no_more_than_its_site_saved_up() {
        let (mut a, mut b, id) = with_dynamic_chunk();
        fill_first_chunk(&mut a, &mut b);
        put(&mut a, &mut b, id, 0, 100);
        // Class 1 placed a half-page burst at the site, so class 2 tiles,
        // with 4 bits saved up (1/128 of it). Its aligned start at 512
        // would skip 412 from the free run's start at 100: placed untiled,
        // at the first fit, nothing spent.
        let page_bits = (a.geo.page_size() / MIN_ALLOC_SIZE) as i32;
        a.classes.bursts.start(SITE, 1, 0, page_bits);
        a.classes.bursts.placed(1, HALF);
        let class = tiling_class(&mut a, 2);
        assert_eq!(a.classes.bursts.credit(2), 4);
        let x = open(&mut a, &mut b, class, HALF, Some(HALF));
        assert_eq!((x.chunk, x.offset), (ChunkId(id), 100 * MIN_ALLOC_SIZE));
        assert_eq!(a.classes.bursts.credit(2), 4);
        let s = a.tiling_stats();
        assert_eq!((s.tiled, s.untiled), (0, 1));
        // Class 3 (after class 2's half page) has 8 bits saved up; its free
        // run starts 8 bits before the next multiple: it starts there, and
        // spends them all.
        put(&mut a, &mut b, id, 100 + HALF, 2 * HALF - 8 - (100 + HALF));
        let class = tiling_class(&mut a, 3);
        assert_eq!(a.classes.bursts.credit(3), 8);
        let x = open(&mut a, &mut b, class, HALF, Some(HALF));
        assert_eq!(
            (x.chunk, x.offset),
            (ChunkId(id), 2 * HALF as usize * MIN_ALLOC_SIZE)
        );
        assert_eq!(a.classes.bursts.credit(3), 0);
        let s = a.tiling_stats();
        assert_eq!((s.tiled, s.untiled), (1, 1));
    }
}
