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
//! With `Policy::long_lived`, a task class's first object from a call site
//! whose classes mostly stayed at one object goes to the shared
//! [`LONG_LIVED`] class instead (`long_lived.rs`): one page at a time, whose
//! growth room every other class keeps out of in the same way.
//!
//! A class opening a region inside another class's region truncates the
//! other one there. The table is bounded (least recently used evicted).

use alloc::vec::Vec;

use crate::allocator::{AllocFlags, Allocation, Allocator, Request};
use crate::backend::Backend;
use crate::error::AllocError;
use crate::long_lived::{Starters, LONG_LIVED};
use crate::policy::{Fit, PolicyKind};
use crate::slots::Entry;
use crate::MIN_ALLOC_SIZE;

/// How a class's regions are carved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassPages {
    /// Contiguous runs that may share a page with a neighbouring class.
    Shared,
    /// Whole pages of its own.
    Exclusive,
}

/// A placement class for one allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// Regions remembered per class.
const REGIONS_PER_CLASS: usize = 4;

/// How many other classes, the most recently used, an exclusive class's new
/// region keeps out of (their growth room, `Policy::keep_room`). Bounds the
/// chunks taken for it.
pub(crate) const GROWING_CLASSES: usize = 8;

/// The classes whose growth room an exclusive class keeps out of
/// ([`ClassTable::growing`]).
#[derive(Clone, Copy, Debug)]
/// The last entry is the long-lived class's (`Policy::long_lived`).
pub(crate) struct Growing([Option<ClassHint>; GROWING_CLASSES + 1]);

/// One region of a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) chunk: u32,
    pub(crate) serial: u64,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
    last_use: u64,
}

impl Region {
    fn same_place(&self, o: &Region) -> bool {
        self.chunk == o.chunk && self.serial == o.serial && self.lo == o.lo
    }
}

/// Bounded table of class regions.
///
/// # Invariants
/// - Regions of one chunk never overlap (opening one truncates the others).
/// - At most `capacity` entries, at most `REGIONS_PER_CLASS` per class.
#[derive(Clone, Debug)]
pub(crate) struct ClassTable {
    entries: Vec<(ClassHint, Region)>,
    capacity: usize,
    tick: u64,
    /// Call sites that start one-object classes (`Policy::long_lived`).
    pub(crate) starters: Starters,
}

impl ClassTable {
    /// `capacity` is at least 1, as in every clamped policy.
    pub(crate) fn new(capacity: usize) -> Self {
        ClassTable {
            entries: Vec::new(),
            capacity,
            tick: 0,
            starters: Starters::default(),
        }
    }

    /// The class's regions, most recently used first.
    pub(crate) fn regions(&self, class: ClassHint) -> impl Iterator<Item = Region> {
        // At most REGIONS_PER_CLASS: sort them in a fixed array, no allocation.
        let mut v = [None::<Region>; REGIONS_PER_CLASS];
        let mut n = 0;
        for (_, r) in self.entries.iter().filter(|(c, _)| *c == class) {
            if n < REGIONS_PER_CLASS {
                v[n] = Some(*r);
                n += 1;
            }
        }
        v[..n].sort_unstable_by_key(|r| core::cmp::Reverse(r.map_or(0, |r| r.last_use)));
        v.into_iter().flatten()
    }

    /// The allocation clock (one tick per placed object).
    pub(crate) fn tick(&self) -> u64 {
        self.tick
    }

    /// Mark `region` of `class` as just used.
    pub(crate) fn touch(&mut self, class: ClassHint, region: &Region) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|(c, r)| *c == class && r.same_place(region))
        {
            e.1.last_use = tick;
        }
    }

    /// Forget one region of a class (its chunk went away or is unusable).
    pub(crate) fn remove(&mut self, class: ClassHint, region: &Region) {
        self.entries
            .retain(|(c, r)| !(*c == class && r.same_place(region)));
    }

    /// Give `class` the new region `[lo, hi)` of `chunk`, truncating any
    /// other region of that chunk that overlaps it.
    pub(crate) fn open(&mut self, class: ClassHint, chunk: u32, serial: u64, lo: i32, hi: i32) {
        self.tick += 1;
        for (_, r) in self.entries.iter_mut() {
            if r.chunk == chunk && r.serial == serial && r.lo <= lo && lo < r.hi {
                r.hi = lo;
            }
            if r.chunk == chunk && r.serial == serial && lo <= r.lo && r.lo < hi {
                // INVARIANT: no overlap; the older region starts inside ours.
                r.hi = r.lo;
            }
        }
        // Regions truncated to nothing are forgotten.
        self.entries.retain(|(_, r)| r.lo < r.hi);
        // A class keeps a few regions, so that the tail of one it moved on
        // from is still filled by its own later (smaller) objects.
        let mine = self.entries.iter().filter(|(c, _)| *c == class).count();
        if mine >= REGIONS_PER_CLASS {
            self.evict(|c| c == class);
        }
        if self.entries.len() >= self.capacity {
            // The long-lived region goes last: the classes it serves each
            // used it once, so it is rarely the most recently used.
            if !self.evict(|c| c != LONG_LIVED) {
                self.evict(|_| true);
            }
        }
        let region = Region {
            chunk,
            serial,
            lo,
            hi,
            last_use: self.tick,
        };
        self.entries.push((class, region));
    }

    /// The [`GROWING_CLASSES`] most recently used classes other than
    /// `class` (a class's last use is its most recently used region's), the
    /// ones whose growth room [`Self::growth_room_end`] keeps free. Ticks
    /// are unique, so the set is well defined.
    pub(crate) fn growing(&self, class: ClassHint) -> Growing {
        let mut top = [None::<(ClassHint, u64)>; GROWING_CLASSES];
        let last = |e: &Option<(ClassHint, u64)>| e.map_or(0, |(_, t)| t);
        // A class's last use only rises as its regions go by, and the least
        // of `top` never falls: a class ends up here iff it is among the
        // most recent, with its own last use.
        for (c, r) in &self.entries {
            if *c == class {
                continue;
            }
            let slot = match top.iter().position(|e| e.is_some_and(|(k, _)| k == *c)) {
                Some(i) => i,
                None => (0..GROWING_CLASSES)
                    .min_by_key(|&i| last(&top[i]))
                    .expect("GROWING_CLASSES > 0"),
            };
            if r.last_use > last(&top[slot]) {
                top[slot] = Some((*c, r.last_use));
            }
        }
        let mut g = [None; GROWING_CLASSES + 1];
        for (g, t) in g.iter_mut().zip(top) {
            *g = t.map(|(c, _)| c);
        }
        Growing(g)
    }

    /// The end of the region of a class of `growing` whose growth room holds
    /// bit `off` of `chunk` (`serial`): `off` lies in its region past some
    /// of its objects (`used(lo, off)`: is a bit of `[lo, off)` allocated?).
    /// `None` when `off` is no such room.
    pub(crate) fn growth_room_end(
        &self,
        growing: &Growing,
        chunk: u32,
        serial: u64,
        off: i32,
        used: impl Fn(i32, i32) -> bool,
    ) -> Option<i32> {
        self.entries
            .iter()
            .filter(|(c, r)| {
                r.chunk == chunk
                    && r.serial == serial
                    && r.lo <= off
                    && off < r.hi
                    && growing.0.contains(&Some(*c))
                    && used(r.lo, off)
            })
            .map(|(_, r)| r.hi)
            .max()
    }

    /// Drop the least recently used region among classes matching `which`;
    /// false if none matches.
    fn evict(&mut self, which: impl Fn(ClassHint) -> bool) -> bool {
        let oldest = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| which(*c))
            .min_by_key(|(_, (_, r))| r.last_use)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            self.entries.swap_remove(i);
        }
        oldest.is_some()
    }

    /// Check the invariants.
    /// `page_bits`: bits per page, which a long-lived region never exceeds.
    pub(crate) fn check(&self, page_bits: i32) -> Result<(), alloc::string::String> {
        self.starters.check()?;
        if let Some((c, r)) = self
            .entries
            .iter()
            .find(|(c, r)| c.site != 0 || (*c == LONG_LIVED && r.hi - r.lo > page_bits))
        {
            return Err(alloc::format!(
                "class region {c:?} {r:?}: a site in the key, or a long-lived region over a page"
            ));
        }
        if self.entries.len() > self.capacity {
            return Err(alloc::format!(
                "{} class regions, capacity {}",
                self.entries.len(),
                self.capacity
            ));
        }
        for (i, (a, ra)) in self.entries.iter().enumerate() {
            let mine = self.entries.iter().filter(|(c, _)| c == a).count();
            if mine > REGIONS_PER_CLASS {
                return Err(alloc::format!("class {a:?} has {mine} regions"));
            }
            for (b, rb) in &self.entries[i + 1..] {
                let nonempty = ra.lo < ra.hi && rb.lo < rb.hi;
                if nonempty
                    && ra.chunk == rb.chunk
                    && ra.serial == rb.serial
                    && ra.lo < rb.hi
                    && rb.lo < ra.hi
                {
                    return Err(alloc::format!(
                        "class regions of {a:?} {ra:?} and {b:?} {rb:?} overlap"
                    ));
                }
            }
        }
        Ok(())
    }
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
        let mut created = false;
        let area = loop {
            match self.alloc_area_class(req, flags, class) {
                Ok(a) => break a,
                // A fully free chunk takes any class's request, so one new
                // chunk is enough; should it not be, plain first fit.
                Err(AllocError::NeedsChunk) if created => {
                    break self.first_fit_or_fail(req, flags)?
                }
                Err(AllocError::NeedsChunk) => match self.create_chunk(backend) {
                    Ok(_) => created = true,
                    // A class asks for a chunk while growth room is free
                    // (`keep_room`, `long_lived`): without a new
                    // chunk, plain first fit (which asks only when nothing
                    // fits).
                    Err(e) => break self.first_fit_or_fail(req, flags).map_err(|_| e)?,
                },
                Err(e) => return Err(e),
            }
        };
        self.populate_and_finish(backend, area, flags)
    }

    /// Two-phase [`Allocator::alloc_class`], step 1 (see
    /// [`Allocator::alloc_area`]). With `Policy::keep_room` or
    /// `Policy::long_lived`, `NeedsChunk` may come while free space is left,
    /// for a class that would have to cut into another class's growth room
    /// (the long-lived page's, or with `keep_room` a recent class's): a
    /// caller that cannot create
    /// a chunk then tries [`Allocator::alloc_area`], which takes any free
    /// space.
    pub fn alloc_area_class(
        &mut self,
        req: Request,
        flags: AllocFlags,
        class: ClassHint,
    ) -> Result<Allocation, AllocError> {
        if !self.policy.class_placement || flags.atomic || flags.reserved {
            return self.alloc_area(req, flags);
        }
        let site = class.site;
        let mut class = class.bare();
        // A task class's first object, from a site whose classes mostly
        // stayed at one object, goes to the long-lived class (`long_lived.rs`).
        // Every task-class allocation settles verdicts; only a small first
        // object with a known site starts one (a large one fills pages of
        // its own anyway).
        if self.policy.long_lived && class.pages == ClassPages::Shared {
            let now = self.classes.tick();
            let went_on = self.classes.starters.observe(class, now);
            let small = req.bits <= self.geo.block_bits() as i32 / 4;
            if site != 0 && small && !went_on && self.classes.regions(class).next().is_none() {
                self.classes.starters.start(class, site, now);
                if self.classes.starters.predicts_single(site) {
                    class = LONG_LIVED;
                }
            }
        }
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
        let bb = self.geo.block_bits() as i32;
        for used_pages_only in [true, false] {
            let order = regions.iter().flatten();
            let order: &mut dyn Iterator<Item = &Region> = if used_pages_only {
                &mut order.rev()
            } else {
                &mut { order }
            };
            for r in order {
                let c = self.c(r.chunk);
                let Some(off) = c.first_fit_in(r.lo, r.hi, req.bits, req.bit_align) else {
                    continue;
                };
                let mut pages = (off / bb) as usize..=((off + req.bits - 1) / bb) as usize;
                if used_pages_only && !pages.all(|p| c.is_page_used(p)) {
                    continue;
                }
                if let Some(a) = self.place(r.chunk, req, off) {
                    self.classes.touch(class, r);
                    self.reintegrate_after(r.chunk, req);
                    return Ok(a);
                }
            }
        }
        // Open a new region: the kernel's walk and first fit, for a larger run.
        let (probe_bits, probe_align) = match class.pages {
            // At most a whole chunk, which a new chunk always has free
            // (`min_run` may be set larger than a unit).
            ClassPages::Shared => (
                req.bits.max(
                    (self.policy.min_run / MIN_ALLOC_SIZE)
                        .min(self.geo.unit_size() / MIN_ALLOC_SIZE) as i32,
                ),
                req.bit_align,
            ),
            ClassPages::Exclusive => ((req.bits.max(bb) + bb - 1) / bb * bb, req.bit_align.max(bb)),
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
        let mut growing = keeps_recent.then(|| self.classes.growing(class));
        if self.policy.long_lived
            && class != LONG_LIVED
            && self.classes.regions(LONG_LIVED).next().is_some()
        {
            growing
                .get_or_insert(Growing([None; GROWING_CLASSES + 1]))
                .0[GROWING_CLASSES] = Some(LONG_LIVED);
        }
        // Rather than cut into another class's growth room, a class takes a
        // new chunk; but not while chunks wait for reclaim (the
        // balance work is behind: a chunk now would only add to what it must
        // give back, and without balance runs chunks would pile up). The
        // walk changes no list.
        let may_cut = self.lists.head(self.layout.to_depopulate).is_some();
        // The plain first fit, inside another class's growth room.
        let mut cut = None;
        'walk: while let Some(slot) = self.lists.next_nonempty(next_slot, self.layout.free) {
            next_slot = slot + 1;
            let order = self.refill_order(slot, flags);
            let ids: &mut dyn Iterator<Item = u32> = match &order {
                Some(ids) => &mut ids.iter().copied(),
                None => &mut self.lists.iter(slot),
            };
            for id in ids {
                let c = self.c(id);
                let Some(start) = c.find_block_fit(probe_bits, probe_align, false) else {
                    continue;
                };
                let off = match &growing {
                    Some(growing) => {
                        // Only `keep_room` looks past the kernel's window.
                        let off = self.outside_growth_room(
                            id,
                            growing,
                            start,
                            (probe_bits, probe_align),
                            !keeps_recent,
                        );
                        if off.is_none() && may_cut && cut.is_none() {
                            cut = c
                                .probe_area(probe_bits, probe_align, start)
                                .map(|off| (id, off));
                        }
                        off
                    }
                    None => c.probe_area(probe_bits, probe_align, start),
                };
                if let Some(off) = off {
                    found = Some((id, off));
                    break 'walk;
                }
            }
        }
        // `pcpu` takes a chunk queued for reclaim back before it maps a new
        // one (`Allocator::take_back_queued`).
        if found.is_none() && self.policy.kind == PolicyKind::Pcpu {
            found = self.queued_room(|c| c.probe_fit(Fit::First, probe_bits, probe_align, false));
        }
        if found.is_none() {
            found = cut;
        }
        let Some((id, off)) = found else {
            // No chunk has a free run that large (or only in growth room): a
            // new chunk (the walk above includes the free slot, so none is
            // empty).
            return Err(AllocError::NeedsChunk);
        };
        let a = self.place(id, req, off).ok_or(AllocError::NeedsChunk)?;
        let c = self.c(id);
        let hi = c
            .alloc_map
            .find_next_bit(c.map_bits as usize, (off + req.bits) as usize) as i32;
        let serial = c.serial;
        // The long-lived region is one page: its room is kept from others.
        let hi = if class == LONG_LIVED {
            hi.min(off + bb)
        } else {
            hi
        };
        self.classes.open(class, id, serial, off, hi);
        self.reintegrate_after(id, req);
        Ok(a)
    }

    /// First fit of `(bits, align)` in chunk `id` from bit `start` that
    /// lies in the growth room of no class of `growing`
    /// ([`ClassTable::growth_room_end`]). `bounded`: the first try searches
    /// only the kernel's window ([`Chunk::probe_area`]), as the walk without
    /// growth room does (the same placement while no growth room is hit);
    /// each try past a growth room, and every try unbounded, searches the
    /// rest of the chunk.
    fn outside_growth_room(
        &self,
        id: u32,
        growing: &Growing,
        start: i32,
        (bits, align): (i32, i32),
        bounded: bool,
    ) -> Option<i32> {
        let c = self.c(id);
        let used =
            |lo: i32, off: i32| (c.alloc_map.find_next_bit(off as usize, lo as usize) as i32) < off;
        let mut pos = start;
        loop {
            let off = if bounded && pos == start {
                c.probe_area(bits, align, pos)?
            } else {
                c.first_fit_in(pos, c.map_bits, bits, align)?
            };
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
