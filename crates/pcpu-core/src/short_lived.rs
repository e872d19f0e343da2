//! Short-lived first objects of task classes (`Policy::short_lived`).
//!
//! On Linux 6.2 and later, every `exec` allocates two small percpu objects
//! for the new mm (its CID and its RSS counters) and the process frees them
//! when it exits. For a task like `mkdir` they are the first objects of its
//! class, the cgroup's objects come after them, and those live on: with
//! task-contiguous placement every cgroup's region keeps a hole at its
//! start where the two were. (On a 6.18 recording `pcpu` was 1.2-1.6% above
//! linux-5.14 at the peak because of them: docs/capturing.md.)
//!
//! The allocator learns, per call site, whether a class's first object dies
//! young while the rest of its class lives: freed within [`YOUNG_WITHIN`]
//! ticks of the allocation clock, with the class still holding objects in
//! its regions at the verdict. (A class freed whole, a group of a churn
//! workload, says nothing.) A first object from a site whose first objects
//! mostly died young is placed by plain first fit, outside the class, in
//! the holes the ones before it left: the class's next object is then its
//! first, and the class's region starts with it.

use alloc::vec::Vec;

use crate::allocator::{Allocation, Allocator};
use crate::classes::ClassHint;
use crate::site_votes::SiteVotes;
use crate::slots::Entry;
use crate::MIN_ALLOC_SIZE;

/// Ticks of the allocation clock within which a first object freed counts
/// as dying young.
pub(crate) const YOUNG_WITHIN: u64 = 64;
/// First objects awaiting their verdict (one pushed out gets none).
const PENDING: usize = 16;

/// A class's first object, watched until its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watched {
    class: ClassHint,
    site: u64,
    /// Where it was placed: chunk id, its serial, and the first bit.
    chunk: u32,
    serial: u64,
    bit_off: i32,
    /// The allocation clock when it was placed.
    since: u64,
    /// Freed since.
    freed: bool,
}

/// What the allocator has learnt of call sites whose first objects die
/// young.
///
/// # Invariants
/// - At most [`PENDING`] watched objects, no two at one place.
/// - `sites` keeps its own (`site_votes.rs`): per site, `yes` counts the
///   first objects from there that died young while their class lived,
///   `no` those that outlived [`YOUNG_WITHIN`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Transients {
    watched: Vec<Watched>,
    sites: SiteVotes,
    /// First objects placed by first fit outside their class.
    routed: u64,
}

impl Transients {
    /// Did the first objects from `site` mostly die young (at least two
    /// did, and four times as many as stayed)?
    pub(crate) fn predicts(&self, site: u64) -> bool {
        self.sites.predicts(site)
    }

    /// Watch `class`'s first object, from `site`, placed at (`chunk`,
    /// `serial`, `bit_off`) at clock `now`; `routed`: by first fit, outside
    /// the class.
    pub(crate) fn watch(
        &mut self,
        class: ClassHint,
        site: u64,
        place: (u32, u64, i32),
        now: u64,
        routed: bool,
    ) {
        let (chunk, serial, bit_off) = place;
        if routed {
            self.routed += 1;
        }
        // A place watched before was freed and taken again (or its chunk
        // id reused): the old entry's object is gone either way.
        self.watched
            .retain(|w| (w.chunk, w.bit_off) != (chunk, bit_off));
        if self.watched.len() >= PENDING {
            // INVARIANT: at most PENDING; the oldest leaves without a
            // verdict.
            let oldest = (0..self.watched.len())
                .min_by_key(|&i| self.watched[i].since)
                .expect("PENDING > 0");
            self.watched.swap_remove(oldest);
        }
        self.watched.push(Watched {
            class,
            site,
            chunk,
            serial,
            bit_off,
            since: now,
            freed: false,
        });
    }

    /// The object at (`chunk`, `serial`, `bit_off`) was freed.
    #[inline]
    pub(crate) fn freed(&mut self, chunk: u32, serial: u64, bit_off: i32) {
        if let Some(w) = self
            .watched
            .iter_mut()
            .find(|w| (w.chunk, w.serial, w.bit_off) == (chunk, serial, bit_off))
        {
            w.freed = true;
        }
    }

    /// Count the verdicts due at `now`; `holds(class)`: does the class
    /// still hold objects in its regions?
    pub(crate) fn settle(&mut self, now: u64, holds: impl Fn(ClassHint) -> bool) {
        let mut i = 0;
        while i < self.watched.len() {
            let w = self.watched[i];
            if now.saturating_sub(w.since) > YOUNG_WITHIN {
                self.watched.swap_remove(i);
                if !w.freed {
                    self.count(w.site, false);
                } else if holds(w.class) {
                    self.count(w.site, true);
                }
            } else {
                i += 1;
            }
        }
    }

    /// First objects placed by first fit outside their class so far.
    pub(crate) fn routed(&self) -> u64 {
        self.routed
    }

    fn count(&mut self, site: u64, young: bool) {
        self.sites.count(site, young);
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.watched.len() > PENDING {
            return Err(alloc::format!(
                "{} first objects watched (at most {PENDING})",
                self.watched.len()
            ));
        }
        for (i, w) in self.watched.iter().enumerate() {
            if self.watched[..i]
                .iter()
                .any(|o| (o.chunk, o.bit_off) == (w.chunk, w.bit_off))
            {
                return Err(alloc::format!(
                    "first object at {:?} watched twice",
                    (w.chunk, w.bit_off)
                ));
            }
        }
        self.sites.check()
    }
}

impl Allocator {
    /// Count the verdicts on first objects due at `now`.
    pub(crate) fn settle_transients(&mut self, now: u64) {
        // Nothing watched (always so without call sites, as in the
        // userspace crate): nothing to do on this path.
        if self.classes.transients.watched.is_empty() {
            return;
        }
        let mut t = core::mem::take(&mut self.classes.transients);
        t.settle(now, |c| self.class_holds(c));
        self.classes.transients = t;
    }

    /// Does `class` hold objects in one of its regions?
    fn class_holds(&self, class: ClassHint) -> bool {
        self.classes.regions(class).any(|r| {
            self.arena
                .get(r.chunk as usize)
                .and_then(Entry::chunk)
                .is_some_and(|c| {
                    c.serial == r.serial
                        && c.alloc_map.count_ones_in(r.lo as usize, r.hi as usize) > 0
                })
        })
    }

    /// Watch `class`'s first object `a`, from `site`, placed at `now`
    /// (`routed`: by first fit, outside the class).
    pub(crate) fn watch_first(
        &mut self,
        class: ClassHint,
        site: u64,
        a: &Allocation,
        now: u64,
        routed: bool,
    ) {
        let serial = self
            .arena
            .get(a.chunk.0 as usize)
            .and_then(Entry::chunk)
            .map_or(0, |c| c.serial);
        let bit_off = (a.offset / MIN_ALLOC_SIZE) as i32;
        self.classes
            .transients
            .watch(class, site, (a.chunk.0, serial, bit_off), now, routed);
    }

    /// First objects placed by first fit outside their class because their
    /// call site's first objects die young (`Policy::short_lived`).
    pub fn short_lived_objects(&self) -> u64 {
        self.classes.transients.routed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_votes::{Votes, HISTORY, SITES};

    fn class(id: u64) -> ClassHint {
        ClassHint::task(id)
    }

    #[test]
    fn young_only_while_the_class_lives_and_only_within_the_window() {
        let mut t = Transients::default();
        // Two first objects from site 7 freed young while their classes
        // lived: predicted.
        for id in 0..2 {
            t.watch(class(id), 7, (1, 1, id as i32 * 8), 10 * id, false);
            t.freed(1, 1, id as i32 * 8);
        }
        t.settle(10 + YOUNG_WITHIN, |_| true);
        assert!(!t.predicts(7), "the second verdict is not due yet");
        t.settle(11 + YOUNG_WITHIN, |_| true);
        assert!(t.predicts(7));
        // Freed, but the class went with it (a churn group): no verdict.
        t.watch(class(5), 9, (1, 1, 64), 200, false);
        t.freed(1, 1, 64);
        t.settle(300, |_| false);
        assert!(t.sites.get(9).is_none());
        // Outlived the window: stayed, which outweighs two young.
        for (k, at) in [(0u64, 400u64), (1, 500)] {
            t.watch(class(10 + k), 7, (2, 1, k as i32 * 8), at, true);
            t.settle(at + YOUNG_WITHIN + 1, |_| true);
        }
        assert!(!t.predicts(7));
        assert_eq!(t.routed(), 2);
        t.check().unwrap();
    }

    /// A class holds objects while one of its regions has a live object,
    /// not merely while the table keeps its region.
    #[test]
    fn a_class_holds_objects_only_while_one_is_live() {
        use crate::{AllocFlags, Geometry, Policy, SimBackend};
        let g = Geometry::from_kernel_line(
            "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
            4,
        )
        .unwrap();
        let mut a = Allocator::new(g, Policy::pcpu());
        let mut b = SimBackend::default();
        let c = class(7);
        let x: Vec<Allocation> = (0..3)
            .map(|_| {
                a.alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, c.at_site(5))
                    .unwrap()
            })
            .collect();
        assert!(a.class_holds(c.bare()));
        for y in &x[..2] {
            a.free(y.chunk, y.offset).unwrap();
        }
        assert!(a.class_holds(c.bare()));
        a.free(x[2].chunk, x[2].offset).unwrap();
        assert!(a.classes.has_regions(c.bare()));
        assert!(!a.class_holds(c.bare()));
        assert!(!a.class_holds(class(8)));
    }

    #[test]
    fn a_stale_free_or_another_serial_is_not_the_watched_object() {
        let mut t = Transients::default();
        t.watch(class(1), 7, (1, 3, 0), 0, false);
        t.freed(1, 2, 0); // an older chunk with the same id
        t.freed(1, 3, 8); // another object
        t.settle(YOUNG_WITHIN + 1, |_| true);
        assert_eq!(
            t.sites.entries,
            [Votes {
                site: 7,
                yes: 0,
                no: 1
            }]
        );
    }

    #[test]
    fn bounded_and_halved() {
        let mut t = Transients::default();
        for k in 0..(PENDING as u64 + 3) {
            t.watch(class(k), 7, (1, 1, k as i32), k, false);
        }
        assert_eq!(t.watched.len(), PENDING);
        // The oldest left.
        assert_eq!(t.watched.iter().map(|w| w.since).min(), Some(3));
        // The same place again replaces its entry.
        t.watch(class(99), 7, (1, 1, PENDING as i32 + 2), 50, false);
        assert_eq!(t.watched.len(), PENDING);
        t.check().unwrap();
        for _ in 0..=HISTORY {
            t.count(7, true);
        }
        let e = t.sites.get(7).unwrap();
        assert!(e.yes + e.no <= HISTORY);
        for s in 0..(SITES as u64 + 5) {
            t.count(1000 + s, false);
        }
        assert_eq!(t.sites.entries.len(), SITES);
        t.check().unwrap();
    }
}
