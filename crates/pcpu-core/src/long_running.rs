//! Long-running task classes (`Policy::grow_beside`).
//!
//! A task class is the allocation stream of one task. For a `mkdir` that is
//! a lifetime: the cgroup's objects die together. For a task that runs on
//! (a server's worker thread, a kernel thread), it is not: the task opens
//! and closes sessions, their objects die one at a time, and keeping them
//! together only makes the class grow onto empty pages while the holes of
//! the sessions closed before it stay empty (in the `workers` workload, 36%
//! above linux-5.14 at the peak).
//!
//! The allocator takes a class for long-running when it would grow onto a
//! page holding nothing, with a page or more of that region before the
//! growth point (or a second region) and [`MIN_OBJECTS`] objects or more
//! there, while a small request (at most a quarter page) fits in a free run
//! of its chunk that starts on a page in use. That object goes into the
//! first such run, and from then on the class's requests take plain first
//! fit, as in Linux: they fill the holes closed sessions leave. A cgroup's
//! burst (eleven objects, about half a page) never qualifies, nor does a
//! BPF application (a few dozen objects, mostly large: with 16 objects one
//! of the mix's was taken and its resident memory after removals rose by
//! 1.5 points), and large requests never count.
//!
//! A task that holds few objects at a time never fills a page. It is taken
//! when it *returns*: a task class starting a region with none left (its
//! objects freed, or the class table forgot it) that started one before,
//! among the last [`SEEN`] classes that did, more than [`RETURN_AFTER`]
//! placements ago. A `mkdir`'s task never
//! allocates again; a worker thread does, at its next session. (With 100
//! workers of 20 sessions a shift, `pcpu` was +60% above linux-5.14 at the
//! worst phase, +9.5% with this.)
//!
//! Many workers running the same code are taken at their first object:
//! when a task class starts a region with none left, the class that last
//! started one from the same call site votes for that site (was it taken
//! by now?), and a site whose votes say yes at least twice and four times
//! as often as no predicts long-running (`site_votes.rs`). A `mkdir`'s
//! class is never taken, so the sites cgroups start from only collect
//! noes. (With 16 workers of 250 sessions a shift, each filled a page at
//! the growth frontier before it was taken: `pcpu` was +10.4% above
//! linux-5.14 at the worst phase, median of seeds 1-4, and is +1.9%.)

use alloc::vec::Vec;

use crate::allocator::{Allocation, Allocator, Request};
use crate::chunk::ChunkKind;
use crate::class_table::Region;
use crate::classes::{ClassHint, ClassPages};
use crate::long_lived::LONG_LIVED;
use crate::site_votes::{SiteVotes, SITES};

/// Long-running classes remembered (the oldest is forgotten first: a task
/// id reused by a new task is forgotten in time).
pub(crate) const LONG_RUNNING: usize = 64;

/// Objects a region holds before its growth point, at least, for its class
/// to be taken for long-running: a worker's page of sessions holds 60 (8
/// and 128 bytes each), a BPF application fewer than 36 in all. Counted as
/// allocation boundaries (`bound_map` bits: one per object placed, where
/// objects are contiguous; an object freed between live ones leaves its
/// end bit).
const MIN_OBJECTS: usize = 32;

/// Task classes remembered as having started a region (a ring: the
/// oldest is overwritten).
pub(crate) const SEEN: usize = 256;

/// Placements by anyone since a class last started a region, at least,
/// for a new start to count as a return: a `mkdir`'s eleven objects come
/// within a few dozen; a worker returns after the others' sessions.
pub(crate) const RETURN_AFTER: u64 = 256;

/// The classes taken for long-running.
///
/// # Invariants
/// - At most [`LONG_RUNNING`] classes, none twice, all bare
///   ([`ClassHint::bare`]) shared-page classes.
/// - `seen` holds at most [`SEEN`] classes, none twice, and
///   `seen_next < SEEN`.
/// - `latest` holds at most [`SITES`] sites, none twice, none 0; `sites`
///   keeps its own (`site_votes.rs`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LongRunning {
    /// Oldest first.
    classes: Vec<ClassHint>,
    /// Classes taken for long-running so far (forgotten ones included).
    taken: u64,
    /// Task classes that started regions lately, with the allocation clock
    /// when they last did (a ring).
    seen: Vec<(ClassHint, u64)>,
    seen_next: usize,
    /// Per call site: was the class that started a region from there
    /// before the latest one taken by the time the latest one started?
    sites: SiteVotes,
    /// The latest class that started a region from each site (oldest
    /// first; at most [`SITES`]).
    latest: Vec<(u64, ClassHint)>,
}

impl LongRunning {
    /// Was `class` taken for long-running (and not forgotten since)?
    #[inline]
    pub(crate) fn contains(&self, class: ClassHint) -> bool {
        !self.classes.is_empty() && self.classes.contains(&class)
    }

    /// Did `class` start a region before (among the last [`SEEN`] classes
    /// that did), more than [`RETURN_AFTER`] placements before `now`? (A
    /// class that lost its region while it allocates, to a chunk taken
    /// for reclaim, starts one again at once.)
    pub(crate) fn returning(&self, class: ClassHint, now: u64) -> bool {
        self.seen
            .iter()
            .any(|&(c, at)| c == class && now.saturating_sub(at) > RETURN_AFTER)
    }

    /// `class` starts a region with none left, its request from `site`:
    /// the class that started one from there before it votes (was it taken
    /// by now?). Do the site's votes predict a long-running class?
    pub(crate) fn start_at(&mut self, site: u64, class: ClassHint) -> bool {
        if site == 0 {
            return false;
        }
        match self.latest.iter().position(|e| e.0 == site) {
            Some(i) => {
                let before = self.latest[i].1;
                if before != class {
                    self.latest[i].1 = class;
                    let taken = self.contains(before);
                    self.sites.count(site, taken);
                }
            }
            None => {
                if self.latest.len() >= SITES {
                    // INVARIANT: at most SITES; the oldest is forgotten.
                    self.latest.remove(0);
                }
                self.latest.push((site, class));
            }
        }
        self.sites.predicts(site)
    }

    /// `class` started a region at `now`, with none left before.
    pub(crate) fn started(&mut self, class: ClassHint, now: u64) {
        if let Some(e) = self.seen.iter_mut().find(|(c, _)| *c == class) {
            e.1 = now;
            return;
        }
        if self.seen.len() < SEEN {
            self.seen.push((class, now));
        } else {
            self.seen[self.seen_next] = (class, now);
            self.seen_next = (self.seen_next + 1) % SEEN;
        }
    }

    /// Take `class` for long-running.
    pub(crate) fn take(&mut self, class: ClassHint) {
        if self.contains(class) {
            return;
        }
        if self.classes.len() >= LONG_RUNNING {
            // INVARIANT: at most LONG_RUNNING; the oldest is forgotten.
            self.classes.remove(0);
        }
        self.classes.push(class);
        self.taken += 1;
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.seen.len() > SEEN || self.seen_next >= SEEN {
            return Err(alloc::format!(
                "{} classes seen, next slot {} (at most {SEEN})",
                self.seen.len(),
                self.seen_next
            ));
        }
        for (i, (c, _)) in self.seen.iter().enumerate() {
            if self.seen[..i].iter().any(|(o, _)| o == c) {
                return Err(alloc::format!("class {c:?} seen twice"));
            }
        }
        if self.latest.len() > SITES {
            return Err(alloc::format!(
                "{} sites' latest classes (at most {SITES})",
                self.latest.len()
            ));
        }
        for (i, (site, _)) in self.latest.iter().enumerate() {
            if *site == 0 || self.latest[..i].iter().any(|(o, _)| o == site) {
                return Err(alloc::format!(
                    "site {site:#x}'s latest class listed twice, or site 0"
                ));
            }
        }
        self.sites.check()?;
        if self.classes.len() > LONG_RUNNING {
            return Err(alloc::format!(
                "{} long-running classes (at most {LONG_RUNNING})",
                self.classes.len()
            ));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if self.classes[..i].contains(c) {
                return Err(alloc::format!("long-running class {c:?} listed twice"));
            }
            if *c != c.bare() || c.pages != ClassPages::Shared {
                return Err(alloc::format!(
                    "long-running class {c:?} is not a bare task class"
                ));
            }
        }
        Ok(())
    }
}

impl Allocator {
    /// `Policy::grow_beside`: `class` (bare, shared pages), whose region `r`
    /// would take `req` at `off`, onto a page holding nothing. With a page
    /// or more of the region before `off` (or a second region) and
    /// [`MIN_OBJECTS`] objects or more there, a small
    /// `req` and a free run for it that starts on a page in use of `r`'s
    /// chunk (a dynamic one; outside the long-lived page's growth room),
    /// `req` is placed at the first such run and `class` is taken for
    /// long-running. `None` (nothing placed, nothing changed) otherwise.
    pub(crate) fn grow_beside_used(
        &mut self,
        r: &Region,
        off: i32,
        req: Request,
        class: ClassHint,
    ) -> Option<Allocation> {
        // Cheapest first: in a pair loop every allocation comes here, its
        // region holding nothing before `off`.
        let c = self.c(r.chunk);
        let bb = c.block_bits;
        if off - r.lo < MIN_OBJECTS as i32
            || class == LONG_LIVED
            || req.bits > bb / 4
            || c.kind != ChunkKind::Dynamic
            || c.bound_map.count_ones_in(r.lo as usize, off as usize) < MIN_OBJECTS
            || (off / bb..=(off + req.bits - 1) / bb).all(|p| c.is_page_used(p as usize))
            || (off - r.lo < bb && self.classes.regions(class).nth(1).is_none())
        {
            return None;
        }
        let growing = self.with_long_lived_room(None, class);
        let beside = |pos| c.first_fit_beside_used(pos, req.bits, req.bit_align, req.bits);
        let at = match &growing {
            Some(g) => self.outside_growth_room(r.chunk, g, 0, beside),
            None => beside(0),
        }?;
        let a = self.place(r.chunk, req, at)?;
        self.reintegrate_after(r.chunk, req);
        self.classes.long_running.take(class);
        Some(a)
    }

    /// Task classes taken for long-running so far (`Policy::grow_beside`):
    /// their requests take plain first fit.
    pub fn long_running_classes(&self) -> u64 {
        self.classes.long_running.taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_forgets_its_oldest_and_lists_none_twice() {
        let mut l = LongRunning::default();
        for id in 0..LONG_RUNNING as u64 + 3 {
            l.take(ClassHint::task(id));
            l.take(ClassHint::task(id));
            l.check().unwrap();
        }
        assert_eq!(l.taken, LONG_RUNNING as u64 + 3);
        assert!(!l.contains(ClassHint::task(2)));
        assert!(l.contains(ClassHint::task(3)));
        assert!(l.contains(ClassHint::task(LONG_RUNNING as u64 + 2)));
    }

    #[test]
    fn a_class_returns_when_seen_among_the_last_ones() {
        let mut l = LongRunning::default();
        let seven = ClassHint::task(7);
        assert!(!l.returning(seven, 1000));
        l.started(seven, 0);
        l.started(seven, 10);
        // A start right after the last is no return; one much later is.
        assert!(!l.returning(seven, 10 + RETURN_AFTER));
        assert!(l.returning(seven, 11 + RETURN_AFTER));
        // SEEN other classes push it out of the ring.
        for id in 100..100 + SEEN as u64 {
            l.started(ClassHint::task(id), 20);
            l.check().unwrap();
        }
        assert!(!l.returning(seven, 10_000));
        l.started(seven, 10_000);
        assert!(l.returning(seven, 20_000));
        assert_eq!(l.seen.len(), SEEN);
        l.check().unwrap();
    }

    #[test]
    fn a_site_predicts_once_the_classes_started_there_were_taken() {
        let mut l = LongRunning::default();
        let site = 0x2e;
        // The first two classes from the site: no verdict on the first
        // until the second starts (it was not taken: no).
        assert!(!l.start_at(site, ClassHint::task(1)));
        assert!(!l.start_at(site, ClassHint::task(2)));
        // A class starting again right after itself does not vote.
        assert!(!l.start_at(site, ClassHint::task(2)));
        // Class 2 and the following ones are taken before the next
        // starts: yes, yes, yes, yes against one no predicts.
        for id in 2..6 {
            l.take(ClassHint::task(id));
            let predicts = l.start_at(site, ClassHint::task(id + 1));
            assert_eq!(predicts, id == 5, "class {id}");
            l.check().unwrap();
        }
        // Site 0 (unknown) never votes nor predicts.
        assert!(!l.start_at(0, ClassHint::task(9)));
        // SITES other sites push the oldest out.
        for s in 1..=SITES as u64 {
            l.start_at(0x1000 + s, ClassHint::task(100 + s));
            l.check().unwrap();
        }
        assert!(!l.latest.iter().any(|e| e.0 == site));
    }

    #[test]
    fn the_check_refuses_a_site_listed_twice() {
        let mut l = LongRunning::default();
        l.latest.push((5, ClassHint::task(1)));
        l.latest.push((5, ClassHint::task(2)));
        assert!(l.check().is_err());
    }

    #[test]
    fn the_check_refuses_a_class_listed_twice() {
        let mut l = LongRunning::default();
        l.classes.push(ClassHint::task(1));
        l.classes.push(ClassHint::task(1));
        assert!(l.check().is_err());
    }
}
