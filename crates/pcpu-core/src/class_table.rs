//! The class table: each class's regions (the free runs of one chunk it
//! took), bounded, least recently used evicted first (the long-lived
//! class's last), and the growth room new regions keep out of. The
//! placement that uses it is in `classes.rs`.

use alloc::vec::Vec;

use crate::classes::ClassHint;
use crate::long_lived::{Starters, LONG_LIVED};
use crate::tiling::Bursts;

/// Regions remembered per class.
pub(crate) const REGIONS_PER_CLASS: usize = 4;

/// How many other classes, the most recently used, an exclusive class's new
/// region keeps out of (their growth room, `Policy::keep_room`). Bounds the
/// chunks taken for it.
pub(crate) const GROWING_CLASSES: usize = 8;

/// The classes whose growth room a new region keeps out of: with
/// `keep_room`, the [`GROWING_CLASSES`] most recently used others
/// ([`ClassTable::growing`]); in the last entry, the long-lived class
/// (`Policy::long_lived`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Growing(pub(crate) [Option<ClassHint>; GROWING_CLASSES + 1]);

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
/// - Classes are keyed without their call site (`ClassHint::bare`); only
///   [`LONG_LIVED`] has one, so no hint names it.
/// - A [`LONG_LIVED`] region is one page or less, starting at a page
///   boundary (`Allocator::alloc_area_class` cuts it there).
/// - `starters` and `bursts` keep their own (`long_lived.rs`,
///   `tiling.rs`).
#[derive(Clone, Debug)]
pub(crate) struct ClassTable {
    entries: Vec<(ClassHint, Region)>,
    capacity: usize,
    tick: u64,
    /// Call sites that start one-object classes (`Policy::long_lived`).
    pub(crate) starters: Starters,
    /// Burst sizes per call site (`Policy::tile_bursts`).
    pub(crate) bursts: Bursts,
}

impl ClassTable {
    /// `capacity` is at least 1, as in every clamped policy.
    pub(crate) fn new(capacity: usize) -> Self {
        ClassTable {
            entries: Vec::new(),
            capacity,
            tick: 0,
            starters: Starters::default(),
            bursts: Bursts::default(),
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

    /// Does `class` have a region?
    pub(crate) fn has_regions(&self, class: ClassHint) -> bool {
        self.entries.iter().any(|(c, _)| *c == class)
    }

    /// Advance the allocation clock: `Allocator::place` calls it for every
    /// object placed, by any path.
    pub(crate) fn bump(&mut self) {
        self.tick += 1;
    }

    /// The allocation clock (one tick per placed object).
    pub(crate) fn tick(&self) -> u64 {
        self.tick
    }

    /// Mark `region` of `class` as just used (after an object was placed in
    /// it: the stamp, the clock, is then unique).
    pub(crate) fn touch(&mut self, class: ClassHint, region: &Region) {
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

    /// Give `class` the new region `[lo, hi)` of `chunk` (after its first
    /// object was placed there), truncating any other region of that chunk
    /// that overlaps it.
    pub(crate) fn open(&mut self, class: ClassHint, chunk: u32, serial: u64, lo: i32, hi: i32) {
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

    /// Check the invariants (`page_bits`: bits per page).
    pub(crate) fn check(&self, page_bits: i32) -> Result<(), alloc::string::String> {
        self.starters.check()?;
        self.bursts.check()?;
        for (c, r) in &self.entries {
            if *c == LONG_LIVED {
                if r.lo % page_bits != 0 || r.hi - r.lo > page_bits {
                    return Err(alloc::format!("long-lived region {r:?} is not one page"));
                }
            } else if c.site != 0 {
                return Err(alloc::format!("class {c:?} keyed with its call site"));
            }
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
