//! The class table: each class's regions (the free runs of one chunk it
//! took), bounded, least recently used evicted first (the long-lived
//! class's last), and the growth room new regions keep out of. The
//! placement that uses it is in `classes.rs`.

use alloc::vec::Vec;

use crate::classes::ClassHint;
use crate::long_lived::{Starters, LONG_LIVED};
use crate::long_running::LongRunning;
use crate::short_lived::Transients;
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
/// - `starters`, `bursts`, `transients` and `long_running` keep their own
///   (`long_lived.rs`, `tiling.rs`, `short_lived.rs`, `long_running.rs`).
#[derive(Clone, Debug)]
pub(crate) struct ClassTable {
    entries: Vec<(ClassHint, Region)>,
    capacity: usize,
    tick: u64,
    /// Call sites that start one-object classes (`Policy::long_lived`).
    pub(crate) starters: Starters,
    /// Burst sizes per call site (`Policy::tile_bursts`).
    pub(crate) bursts: Bursts,
    /// Call sites whose first objects die young (`Policy::short_lived`).
    pub(crate) transients: Transients,
    /// Task classes taken for long-running (`Policy::grow_beside`).
    pub(crate) long_running: LongRunning,
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
            transients: Transients::default(),
            long_running: LongRunning::default(),
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
        self.transients.check()?;
        self.long_running.check()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const A: ClassHint = ClassHint::task(1);
    const B: ClassHint = ClassHint::task(2);
    const C: ClassHint = ClassHint::task(3);
    const PAGE: i32 = 1024;

    /// A region of `chunk` (`serial`) never used.
    fn region(chunk: u32, serial: u64, lo: i32, hi: i32) -> Region {
        Region {
            chunk,
            serial,
            lo,
            hi,
            last_use: 0,
        }
    }

    /// `(chunk, serial, lo, hi)` of `class`'s regions, most recently used
    /// first.
    fn places(t: &ClassTable, class: ClassHint) -> Vec<(u32, u64, i32, i32)> {
        t.regions(class)
            .map(|r| (r.chunk, r.serial, r.lo, r.hi))
            .collect()
    }

    /// Place an object (the clock advances), then open `class`'s region
    /// `[lo, hi)` of `chunk` (`serial`) with it.
    fn open_next(t: &mut ClassTable, class: ClassHint, chunk: u32, serial: u64, lo: i32, hi: i32) {
        t.bump();
        t.open(class, chunk, serial, lo, hi);
    }

    /// The clock starts at 0 and counts one tick per placed object.
    #[test]
    fn the_clock_counts_placed_objects() {
        let mut t = ClassTable::new(4);
        assert_eq!(t.tick(), 0);
        for _ in 0..3 {
            t.bump();
        }
        assert_eq!(t.tick(), 3);
    }

    /// A class's regions are its own, most recently used first; touching and
    /// removing act on exactly the region of that class at that place
    /// (chunk, serial and start).
    #[test]
    fn touch_and_remove_act_on_one_region_of_one_class() {
        let mut t = ClassTable::new(16);
        // Each differs from the last in one of start, chunk, serial.
        open_next(&mut t, A, 1, 0, 0, 10);
        open_next(&mut t, A, 2, 0, 10, 20);
        open_next(&mut t, A, 1, 1, 10, 20);
        open_next(&mut t, A, 1, 0, 10, 20);
        open_next(&mut t, B, 3, 0, 0, 10);
        let target = region(1, 0, 10, 20);
        let others = [(1, 1, 10, 20), (2, 0, 10, 20), (1, 0, 0, 10)];
        assert_eq!(places(&t, A)[1..], others);
        assert_eq!(places(&t, B), [(3, 0, 0, 10)]);
        assert!(t.has_regions(A) && t.has_regions(B) && !t.has_regions(C));
        // Regions go by their own last use, not their order in the table.
        t.bump();
        t.touch(A, &region(1, 1, 10, 20));
        let first = |t: &ClassTable| places(t, A)[0];
        assert_eq!(first(&t), (1, 1, 10, 20));
        t.bump();
        t.touch(A, &target);
        assert_eq!(first(&t), (1, 0, 10, 20));
        // Another class's region is not ours to touch or remove.
        t.bump();
        t.touch(A, &region(3, 0, 0, 10));
        assert_eq!(first(&t), (1, 0, 10, 20));
        t.remove(B, &target);
        assert_eq!(places(&t, A).len(), 4);
        t.remove(A, &target);
        assert_eq!(
            places(&t, A),
            [(1, 1, 10, 20), (2, 0, 10, 20), (1, 0, 0, 10)]
        );
        assert_eq!(places(&t, B), [(3, 0, 0, 10)]);
    }

    /// Opening a region truncates the region of its chunk it starts in and
    /// forgets those starting inside it; touching ones and other chunks'
    /// (or an earlier use of the chunk's, by serial) stay.
    #[test]
    fn opening_a_region_cuts_only_what_it_overlaps() {
        let mut t = ClassTable::new(16);
        let (d, e) = (ClassHint::task(4), ClassHint::task(5));
        let (other_chunk, other_serial) = (ClassHint::task(6), ClassHint::task(7));
        open_next(&mut t, other_chunk, 2, 0, 45, 200);
        open_next(&mut t, other_serial, 1, 1, 45, 200);
        open_next(&mut t, A, 1, 0, 0, 100);
        open_next(&mut t, B, 1, 0, 50, 80);
        assert_eq!(places(&t, A), [(1, 0, 0, 50)]);
        // Starts inside A, covers B's start: B is gone, not kept empty.
        open_next(&mut t, C, 1, 0, 40, 60);
        assert_eq!(places(&t, A), [(1, 0, 0, 40)]);
        assert!(!t.has_regions(B));
        // Starts at C's end, ends at C's start: C stays whole.
        open_next(&mut t, d, 1, 0, 60, 70);
        open_next(&mut t, e, 1, 0, 30, 40);
        assert_eq!(places(&t, C), [(1, 0, 40, 60)]);
        assert_eq!(places(&t, A), [(1, 0, 0, 30)]);
        assert_eq!(places(&t, other_chunk), [(2, 0, 45, 200)]);
        assert_eq!(places(&t, other_serial), [(1, 1, 45, 200)]);
        t.check(PAGE).unwrap();
    }

    /// A class keeps at most [`REGIONS_PER_CLASS`] regions, dropping its
    /// least recently used one, not another class's.
    #[test]
    fn a_class_drops_its_least_recently_used_region() {
        let mut t = ClassTable::new(16);
        open_next(&mut t, B, 9, 0, 0, 10);
        for chunk in 1..=REGIONS_PER_CLASS as u32 {
            open_next(&mut t, A, chunk, 0, 0, 10);
        }
        t.bump();
        t.touch(A, &region(1, 0, 0, 10));
        open_next(&mut t, A, 5, 0, 0, 10);
        let chunks: Vec<u32> = places(&t, A).iter().map(|p| p.0).collect();
        assert_eq!(chunks, [5, 1, 4, 3]);
        assert_eq!(places(&t, B), [(9, 0, 0, 10)]);
    }

    /// A full table drops its least recently used region, the long-lived
    /// class's only when it is the last one.
    #[test]
    fn a_full_table_drops_the_long_lived_region_last() {
        let mut t = ClassTable::new(3);
        open_next(&mut t, LONG_LIVED, 1, 0, 0, PAGE);
        open_next(&mut t, A, 2, 0, 0, 10);
        open_next(&mut t, B, 3, 0, 0, 10);
        assert!(t.has_regions(A));
        open_next(&mut t, C, 4, 0, 0, 10);
        assert!(!t.has_regions(A));
        assert!(t.has_regions(LONG_LIVED) && t.has_regions(B) && t.has_regions(C));
        let mut one = ClassTable::new(1);
        open_next(&mut one, LONG_LIVED, 1, 0, 0, PAGE);
        open_next(&mut one, A, 2, 0, 0, 10);
        assert!(!one.has_regions(LONG_LIVED) && one.has_regions(A));
    }

    /// `growing` is the [`GROWING_CLASSES`] most recently used classes other
    /// than the asking one, each by its most recently used region.
    #[test]
    fn growing_is_the_most_recently_used_other_classes() {
        let mut t = ClassTable::new(32);
        for id in 1..=10 {
            open_next(&mut t, ClassHint::task(id), id as u32, 0, 0, 10);
        }
        // Class 1's first region is its oldest; this one its last use.
        open_next(&mut t, ClassHint::task(1), 20, 0, 0, 10);
        let Growing(g) = t.growing(ClassHint::task(10));
        let mut ids: Vec<u64> = g.iter().flatten().map(|c| c.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(g[GROWING_CLASSES], None);
    }

    /// Growth room is the part of a growing class's region past some of its
    /// objects, in that chunk (and serial): its end is the region's.
    #[test]
    fn growth_room_is_past_a_growing_region_objects() {
        let mut t = ClassTable::new(8);
        open_next(&mut t, A, 1, 0, 0, 100);
        open_next(&mut t, B, 1, 0, 100, 300);
        let mut growing = Growing([None; GROWING_CLASSES + 1]);
        growing.0[0] = Some(A);
        let before = |lo: i32, off: i32| lo < off;
        let always = |_: i32, _: i32| true;
        let room = |chunk, serial, off, used: &dyn Fn(i32, i32) -> bool| {
            t.growth_room_end(&growing, chunk, serial, off, used)
        };
        assert_eq!(room(1, 0, 50, &before), Some(100));
        assert_eq!(room(1, 0, 99, &before), Some(100));
        assert_eq!(room(1, 0, 0, &always), Some(100));
        // No object before `off`; past the region; a class not growing.
        assert_eq!(room(1, 0, 0, &before), None);
        assert_eq!(room(1, 0, 100, &always), None);
        assert_eq!(room(1, 0, 150, &always), None);
        // Another chunk, or another use of this one.
        assert_eq!(room(2, 0, 50, &always), None);
        assert_eq!(room(1, 1, 50, &always), None);
    }

    /// `check` accepts a table at its bounds (full, a class with
    /// [`REGIONS_PER_CLASS`] regions, a one-page long-lived region, touching
    /// or empty regions, overlaps across chunks or serials) and reports each
    /// broken invariant.
    #[test]
    fn check_reports_each_broken_invariant() {
        let at_bounds = || {
            let mut t = ClassTable::new(9);
            t.entries = alloc::vec![
                (B, region(1, 0, 15, 15)),
                (A, region(1, 0, 10, 20)),
                (A, region(1, 0, 0, 10)),
                (B, region(1, 0, 5, 5)),
                (A, region(2, 0, 0, 10)),
                (A, region(1, 1, 0, 10)),
                (C, region(1, 0, 20, 30)),
                (LONG_LIVED, region(1, 0, PAGE, 2 * PAGE)),
                (ClassHint::task(4), region(3, 0, 0, 10)),
            ];
            t
        };
        at_bounds().check(PAGE).unwrap();
        let broken: [&dyn Fn(&mut ClassTable); 7] = [
            &|t| t.entries[0].1.hi = 25,
            &|t| t.entries[7].1 = region(1, 0, PAGE + 1, PAGE + 2),
            &|t| t.entries[7].1.hi = 2 * PAGE + 1,
            &|t| t.entries[6].0 = C.at_site(1),
            &|t| t.entries.push((ClassHint::task(5), region(4, 0, 0, 10))),
            &|t| t.entries[8].0 = A,
            &|t| t.entries[2].1.hi = 11,
        ];
        for (i, f) in broken.iter().enumerate() {
            let mut t = at_bounds();
            f(&mut t);
            assert!(t.check(PAGE).is_err(), "case {i}");
        }
    }
}
