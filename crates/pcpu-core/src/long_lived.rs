//! Long-lived prediction for task classes (`Policy::long_lived`).
//!
//! Some tasks allocate one percpu object and are gone: a `mount` allocating
//! a mount's counters, an `ip` creating a network device. Their object
//! usually lives as long as the system, and task-contiguous placement puts
//! it wherever that one task's region opened, next to objects that die
//! sooner, where it later pins a page of its own. The allocator learns,
//! per call site, whether the classes that started there (the class's
//! first object came from it) stayed at one object: a class is *single*
//! when [`SINGLE_AFTER`] other class allocations pass without it
//! allocating again. A first object from a site whose classes mostly stayed
//! single goes to one shared class, [`LONG_LIVED`], a page at a time, whose
//! room the other classes keep out of: those objects then share pages with
//! each other instead of each pinning one.
//!
//! Only the call site is used, never the task: the kernel's `mkdir` and
//! `mount` tasks both start with a new pid, and what tells them apart is
//! what their first allocation was for.

use alloc::vec::Vec;

use crate::classes::{ClassHint, ClassPages};

/// The shared class of objects predicted long-lived: page-exclusive
/// regions, one page each.
pub(crate) const LONG_LIVED: ClassHint = ClassHint {
    id: u64::MAX,
    pages: ClassPages::Exclusive,
    site: 0,
};

/// Class allocations after which a class's first object counts as its
/// only one.
pub(crate) const SINGLE_AFTER: u64 = 16;
/// Classes awaiting their verdict (the oldest is settled as single when
/// more start).
const PENDING: usize = 8;
/// Call sites with statistics (the one with the fewest verdicts is
/// forgotten first).
const SITES: usize = 32;
/// A site's counts are halved when their sum passes this, so that the
/// prediction follows a site whose use changes.
const HISTORY: u32 = 64;

/// Verdicts of one call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SiteStats {
    site: u64,
    /// Classes started here that stayed at one object.
    single: u32,
    /// Classes started here that allocated again.
    went_on: u32,
}

/// What the allocator has learnt of call sites that start classes.
///
/// # Invariants
/// - At most [`PENDING`] pending classes, each once; at most [`SITES`]
///   sites, each once.
/// - Each site's `single + went_on` is at most [`HISTORY`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Starters {
    /// (class, the site of its first object, the class clock then).
    pending: Vec<(ClassHint, u64, u64)>,
    sites: Vec<SiteStats>,
}

impl Starters {
    /// `class` allocates at class clock `now` (before placement): settles
    /// the verdicts that are due. Returns whether `class` was awaiting its
    /// verdict (this is its second object).
    pub(crate) fn observe(&mut self, class: ClassHint, now: u64) -> bool {
        let mut went_on = false;
        let mut i = 0;
        while i < self.pending.len() {
            let (c, site, t) = self.pending[i];
            if c == class {
                self.count(site, false);
                self.pending.swap_remove(i);
                went_on = true;
            } else if now.saturating_sub(t) > SINGLE_AFTER {
                self.count(site, true);
                self.pending.swap_remove(i);
            } else {
                i += 1;
            }
        }
        went_on
    }

    /// `class` allocates its first object, from `site`, at clock `now`.
    pub(crate) fn start(&mut self, class: ClassHint, site: u64, now: u64) {
        if self.pending.len() >= PENDING {
            let oldest = (0..self.pending.len())
                .min_by_key(|&i| self.pending[i].2)
                .expect("PENDING > 0");
            let (_, s, _) = self.pending.swap_remove(oldest);
            self.count(s, true);
        }
        self.pending.push((class, site, now));
    }

    /// Did the classes started at `site` mostly stay at one object (at
    /// least two did, and four times as many as went on)?
    pub(crate) fn predicts_single(&self, site: u64) -> bool {
        self.sites
            .iter()
            .find(|e| e.site == site)
            .is_some_and(|e| e.single >= 2 && e.single >= 4 * e.went_on)
    }

    fn count(&mut self, site: u64, single: bool) {
        let i = match self.sites.iter().position(|e| e.site == site) {
            Some(i) => i,
            None => {
                if self.sites.len() >= SITES {
                    let least = (0..self.sites.len())
                        .min_by_key(|&i| self.sites[i].single + self.sites[i].went_on)
                        .expect("SITES > 0");
                    self.sites.swap_remove(least);
                }
                self.sites.push(SiteStats {
                    site,
                    single: 0,
                    went_on: 0,
                });
                self.sites.len() - 1
            }
        };
        let e = &mut self.sites[i];
        if single {
            e.single += 1;
        } else {
            e.went_on += 1;
        }
        // INVARIANT: the sum stays at most HISTORY.
        if e.single + e.went_on > HISTORY {
            e.single /= 2;
            e.went_on /= 2;
        }
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.pending.len() > PENDING || self.sites.len() > SITES {
            return Err(alloc::format!(
                "{} classes pending (at most {PENDING}), {} sites (at most {SITES})",
                self.pending.len(),
                self.sites.len()
            ));
        }
        for (i, p) in self.pending.iter().enumerate() {
            if self.pending[i + 1..].iter().any(|q| q.0 == p.0) {
                return Err(alloc::format!("class {:?} pending twice", p.0));
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            if self.sites[i + 1..].iter().any(|t| t.site == s.site) {
                return Err(alloc::format!("site {:#x} counted twice", s.site));
            }
            if s.single + s.went_on > HISTORY {
                return Err(alloc::format!("site {:#x}: {s:?} above {HISTORY}", s.site));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNT: u64 = 0x6d6f;
    const MKDIR: u64 = 0x6d6b;

    /// Classes 1, 2, ... each allocate `n` objects from `site` in turn.
    fn run(s: &mut Starters, now: &mut u64, first_class: u64, classes: u64, site: u64, n: u32) {
        for c in first_class..first_class + classes {
            let class = ClassHint::task(c);
            for k in 0..n {
                *now += 1;
                if !s.observe(class, *now) && k == 0 {
                    s.start(class, site, *now);
                }
                s.check().unwrap();
            }
        }
    }

    #[test]
    fn learns_single_sites_and_not_busy_ones() {
        let mut s = Starters::default();
        let mut now = 0;
        // Cgroups: 11 objects each, the first from MKDIR's site.
        run(&mut s, &mut now, 1, 10, MKDIR, 11);
        assert!(!s.predicts_single(MKDIR));
        // Mounts: one object each, between cgroups.
        for i in 0..4 {
            run(&mut s, &mut now, 100 + i, 1, MOUNT, 1);
            run(&mut s, &mut now, 200 + 10 * i, 2, MKDIR, 11);
        }
        assert!(s.predicts_single(MOUNT));
        assert!(!s.predicts_single(MKDIR));
        assert!(
            !s.predicts_single(0x1234),
            "unknown sites are not predicted"
        );
    }

    #[test]
    fn a_verdict_waits_for_single_after_allocations() {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..3 {
            run(&mut s, &mut now, 100 + i, 1, MOUNT, 1);
        }
        // Fewer than SINGLE_AFTER allocations passed: no verdict yet.
        assert!(!s.predicts_single(MOUNT));
        // SINGLE_AFTER allocations of another class settle them.
        run(&mut s, &mut now, 1, 1, MKDIR, SINGLE_AFTER as u32 + 2);
        assert!(s.predicts_single(MOUNT));
    }

    #[test]
    fn a_site_that_changes_use_is_relearnt() {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..6 {
            run(&mut s, &mut now, 100 + i, 1, MOUNT, 1);
            run(
                &mut s,
                &mut now,
                1000 + i,
                1,
                MKDIR,
                SINGLE_AFTER as u32 + 2,
            );
        }
        assert!(s.predicts_single(MOUNT));
        // Now the classes starting at MOUNT go on allocating.
        run(&mut s, &mut now, 300, 3, MOUNT, 3);
        assert!(!s.predicts_single(MOUNT));
    }

    #[test]
    fn tables_stay_bounded() {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..200 {
            run(&mut s, &mut now, i, 1, i % 50, 1);
        }
        s.check().unwrap();
        assert!(s.sites.len() <= SITES && s.pending.len() <= PENDING);
        // One site, many verdicts: halved, never above HISTORY.
        for i in 0..500 {
            run(&mut s, &mut now, 10_000 + i, 1, MOUNT, 1);
        }
        s.check().unwrap();
        assert!(s.predicts_single(MOUNT));
    }
}
