//! Class-aware placement: objects of one class are kept together so that they
//! do not pin pages shared with objects that die at other times.
//!
//! A class owns a *region* `[lo, hi)` of one chunk (in bits): a free run it
//! took when it last needed room. Its allocations go first fit inside its
//! region, so it back-fills only its own holes. When the region is full, the
//! class takes a new one with the kernel's own slot walk and first fit, but
//! probing for a larger run, so that it skips the small holes of other
//! classes:
//!
//! * [`ClassPages::Shared`] (a task's objects, no hint from the user): a run of
//!   at least `min_run` bytes; consecutive classes may share a page boundary.
//! * [`ClassPages::Exclusive`] (lifetime classes hinted by the user, or size
//!   classes): whole free pages, so two classes never share a page.
//!
//! A class opening a region inside another class's region truncates the
//! other one there. The table is bounded (least recently used evicted).

use alloc::vec::Vec;

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
}

impl ClassHint {
    /// Objects allocated by one task (shared-page regions).
    pub const fn task(id: u64) -> Self {
        ClassHint {
            id,
            pages: ClassPages::Shared,
        }
    }
    /// Objects expected to die together (page-exclusive regions).
    pub const fn lifetime(id: u64) -> Self {
        ClassHint {
            id,
            pages: ClassPages::Exclusive,
        }
    }
}

/// Regions remembered per class.
const REGIONS_PER_CLASS: usize = 4;

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
}

impl ClassTable {
    pub(crate) fn new(capacity: usize) -> Self {
        ClassTable {
            entries: Vec::new(),
            capacity: capacity.max(1),
            tick: 0,
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
            self.evict(|_| true);
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

    /// Drop the least recently used region among classes matching `which`.
    fn evict(&mut self, which: impl Fn(ClassHint) -> bool) {
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
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
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
