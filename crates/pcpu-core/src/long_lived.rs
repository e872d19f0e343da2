//! Long-lived prediction for task classes (`Policy::long_lived`).
//!
//! Some tasks allocate one percpu object and are gone: a `mount` allocating
//! a mount's counters, an `ip` creating a network device. Their object
//! usually lives as long as the system, and task-contiguous placement puts
//! it wherever that one task's region opened, next to objects that die
//! sooner, where it later pins a page of its own. The allocator learns,
//! per call site, whether the classes that started there (the class's
//! first object came from it) stayed at one object: a class is *single*
//! when [`SINGLE_AFTER`] objects of other classes are placed without it
//! allocating again. A first object from a site whose classes mostly stayed
//! single goes to one shared class, [`LONG_LIVED`], a page at a time, whose
//! room the other classes keep out of: those objects then share pages with
//! each other instead of each pinning one.
//!
//! Only the call site is used, never the task: the kernel's `mkdir` and
//! `mount` tasks both start with a new pid, and what tells them apart is
//! what their first allocation was for. Tasks that allocate in one burst
//! are told apart from single ones; tasks that interleave their objects
//! with more than [`SINGLE_AFTER`] objects of others may be taken for
//! single.

use alloc::vec::Vec;

use crate::classes::{ClassHint, ClassPages};
use crate::site_votes::SiteVotes;
#[cfg(test)]
use crate::site_votes::{Votes, HISTORY, SITES};

/// The shared class of objects predicted long-lived: page-exclusive
/// regions, one page each. Its call site is `u64::MAX`, which no class in
/// the class table has (their keys carry no site: `ClassHint::bare`), so
/// no hint can name it.
pub(crate) const LONG_LIVED: ClassHint = ClassHint {
    id: u64::MAX,
    pages: ClassPages::Exclusive,
    site: u64::MAX,
};

/// Objects of other classes placed after which a class's first object
/// counts as its only one.
pub(crate) const SINGLE_AFTER: u64 = 64;
/// Classes awaiting their verdict (one pushed out gets none).
const PENDING: usize = 16;

/// A class that placed its first object and awaits the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    class: ClassHint,
    /// The site of its first object.
    site: u64,
    /// The class clock when it was started.
    since: u64,
    /// Whether its first object went to [`LONG_LIVED`].
    routed: bool,
}

/// What the allocator has learnt of call sites that start classes.
///
/// # Invariants
/// - At most [`PENDING`] pending classes, each once.
/// - `sites` keeps its own (`site_votes.rs`): per site, `yes` counts the
///   classes started there that stayed at one object, `no` those that
///   allocated again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Starters {
    pending: Vec<Pending>,
    sites: SiteVotes,
    /// Objects routed to [`LONG_LIVED`] so far.
    routed: u64,
    /// The last request: (class, clock, where it went), so that a retry
    /// gets the same answer.
    last: Option<(ClassHint, u64, ClassHint)>,
}

impl Starters {
    /// Where an object of task class `class` from `site` goes, at class
    /// clock `now` (it advances with every object placed):
    /// [`LONG_LIVED`] or `class` itself. `first`: the class has
    /// no region (this is its first object); `small`: the request may be
    /// predicted. Settles the verdicts that are due. The same request tried
    /// again (after `NeedsChunk`: the same class at the same clock) gets
    /// the same answer and counts once; callers must retry before placing
    /// anything else for a class.
    pub(crate) fn route(
        &mut self,
        class: ClassHint,
        site: u64,
        now: u64,
        first: bool,
        small: bool,
    ) -> ClassHint {
        if let Some((c, t, to)) = self.last {
            if c == class && t == now {
                return to;
            }
        }
        // A first object's retry after another class's request.
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| p.class == class && p.since == now)
        {
            return if p.routed { LONG_LIVED } else { class };
        }
        let to = 'decide: {
            let went_on = self.settle(class, now);
            if went_on || !first || !small || site == 0 {
                break 'decide class;
            }
            let routed = self.predicts_single(site);
            if self.pending.len() >= PENDING {
                // INVARIANT: at most PENDING; the oldest leaves without a
                // verdict (it may be a task interleaved with many others).
                let oldest = (0..self.pending.len())
                    .min_by_key(|&i| self.pending[i].since)
                    .expect("PENDING > 0");
                self.pending.swap_remove(oldest);
            }
            self.pending.push(Pending {
                class,
                site,
                since: now,
                routed,
            });
            if routed {
                self.routed += 1;
                LONG_LIVED
            } else {
                class
            }
        };
        self.last = Some((class, now, to));
        to
    }

    /// A request of `class` at `now` placed nothing after all: forget what
    /// it started (its pending verdict, its routing).
    pub(crate) fn abandon(&mut self, class: ClassHint, now: u64) {
        if self.last.is_some_and(|(c, t, _)| c == class && t == now) {
            if let Some(i) = self
                .pending
                .iter()
                .position(|p| p.class == class && p.since == now)
            {
                if self.pending.swap_remove(i).routed {
                    self.routed = self.routed.saturating_sub(1);
                }
            }
            self.last = None;
        }
    }

    /// Objects routed to [`LONG_LIVED`] so far.
    pub(crate) fn routed(&self) -> u64 {
        self.routed
    }

    /// `class` allocates at `now`: counts the verdicts that are due.
    /// Returns whether `class` was awaiting its verdict (this is its second
    /// object).
    fn settle(&mut self, class: ClassHint, now: u64) -> bool {
        let mut went_on = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = self.pending[i];
            if p.class == class {
                self.count(p.site, false);
                self.pending.swap_remove(i);
                went_on = true;
            } else if now.saturating_sub(p.since) > SINGLE_AFTER {
                self.count(p.site, true);
                self.pending.swap_remove(i);
            } else {
                i += 1;
            }
        }
        went_on
    }

    /// Did the classes started at `site` mostly stay at one object (at
    /// least two did, and four times as many as went on)?
    fn predicts_single(&self, site: u64) -> bool {
        self.sites.predicts(site)
    }

    fn count(&mut self, site: u64, single: bool) {
        self.sites.count(site, single);
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.pending.len() > PENDING {
            return Err(alloc::format!(
                "{} classes pending (at most {PENDING})",
                self.pending.len()
            ));
        }
        for (i, p) in self.pending.iter().enumerate() {
            if self.pending[i + 1..].iter().any(|q| q.class == p.class) {
                return Err(alloc::format!("class {:?} pending twice", p.class));
            }
        }
        self.sites.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNT: u64 = 0x6d6f;
    const MKDIR: u64 = 0x6d6b;

    /// Classes `first_class..first_class + classes` each allocate `n`
    /// objects from `site` in turn (the clock advancing per object), and
    /// return where their first objects went.
    fn run(
        s: &mut Starters,
        now: &mut u64,
        first_class: u64,
        classes: u64,
        site: u64,
        n: u32,
    ) -> Vec<bool> {
        let mut routed = Vec::new();
        for c in first_class..first_class + classes {
            let class = ClassHint::task(c);
            for k in 0..n {
                let to = s.route(class, site, *now, k == 0, true);
                if k == 0 {
                    routed.push(to == LONG_LIVED);
                }
                *now += 1;
                s.check().unwrap();
            }
        }
        routed
    }

    /// `n` mounts, each followed by a burst long enough to settle it: the
    /// site is then predicted single.
    fn mounts_then_bursts(n: u64) -> (Starters, u64) {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..n {
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
        (s, now)
    }

    #[test]
    fn learns_single_sites_and_not_busy_ones() {
        let mut s = Starters::default();
        let mut now = 0;
        // Cgroups: 11 objects each, the first from MKDIR's site.
        run(&mut s, &mut now, 1, 10, MKDIR, 11);
        assert!(!s.predicts_single(MKDIR));
        // Mounts: one object each, between bursts of cgroups.
        let mut routed = Vec::new();
        for i in 0..6 {
            routed.extend(run(&mut s, &mut now, 100 + i, 1, MOUNT, 1));
            run(&mut s, &mut now, 200 + 10 * i, 7, MKDIR, 11);
        }
        assert!(s.predicts_single(MOUNT));
        assert!(!s.predicts_single(MKDIR));
        assert!(
            !s.predicts_single(0x1234),
            "unknown sites are not predicted"
        );
        // The first two mounts teach it; the later ones go long-lived.
        assert_eq!(routed, [false, false, true, true, true, true]);
        assert_eq!(s.routed(), 4);
    }

    #[test]
    fn a_verdict_waits_for_single_after_objects() {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..3 {
            run(&mut s, &mut now, 100 + i, 1, MOUNT, 1);
        }
        // Fewer than SINGLE_AFTER objects placed since: no verdict yet.
        assert!(!s.predicts_single(MOUNT));
        run(&mut s, &mut now, 1, 1, MKDIR, SINGLE_AFTER as u32 + 2);
        assert!(s.predicts_single(MOUNT));
    }

    #[test]
    fn a_retried_request_counts_once() {
        let (mut s, mut now) = mounts_then_bursts(3);
        // A mount's request needs a chunk: tried again at the same clock.
        let before = s.routed();
        let m = ClassHint::task(500);
        assert_eq!(s.route(m, MOUNT, now, true, true), LONG_LIVED);
        assert_eq!(
            s.route(m, MOUNT, now, true, true),
            LONG_LIVED,
            "same answer"
        );
        assert_eq!(s.routed(), before + 1);
        now += 1;
        // Not a second object: the mount is still single.
        run(&mut s, &mut now, 1, 1, MKDIR, SINGLE_AFTER as u32 + 2);
        assert!(s.predicts_single(MOUNT));
        assert_eq!(s.sites.get(MOUNT).map(|e| e.no), Some(0));
    }

    #[test]
    fn a_retried_second_object_stays_with_its_class() {
        let (mut s, mut now) = mounts_then_bursts(3);
        let m = ClassHint::task(500);
        assert_eq!(s.route(m, MOUNT, now, true, true), LONG_LIVED);
        now += 1;
        let routed = s.routed();
        // Its second object (no region of its own yet, so `first`) needs a
        // chunk: asked twice at the same clock, it stays with its class.
        assert_eq!(s.route(m, MOUNT, now, true, true), m);
        assert_eq!(s.route(m, MOUNT, now, true, true), m);
        assert_eq!(s.routed(), routed);
        let went_on = |s: &Starters| s.sites.get(MOUNT).unwrap().no;
        assert_eq!(went_on(&s), 1);
        now += 1;
        // Its third object changes nothing either.
        assert_eq!(s.route(m, MOUNT, now, true, true), m);
        assert_eq!(went_on(&s), 1);
        assert_eq!(s.routed(), routed);
    }

    #[test]
    fn an_abandoned_request_leaves_nothing() {
        let (mut s, now) = mounts_then_bursts(3);
        let m = ClassHint::task(500);
        let (routed, pending) = (s.routed(), s.pending.len());
        assert_eq!(s.route(m, MOUNT, now, true, true), LONG_LIVED);
        s.abandon(m, now);
        assert_eq!((s.routed(), s.pending.len()), (routed, pending));
        s.check().unwrap();
    }

    #[test]
    fn single_after_is_the_boundary() {
        for (after, single) in [(SINGLE_AFTER, false), (SINGLE_AFTER + 1, true)] {
            let mut s = Starters::default();
            s.route(ClassHint::task(1), MOUNT, 0, true, true);
            // Another class's object `after` placements later settles it
            // only past SINGLE_AFTER.
            s.route(ClassHint::task(2), 0, after, false, true);
            let e = s.sites.get(MOUNT);
            assert_eq!(e.map_or(0, |e| e.yes), u32::from(single), "{after}");
        }
    }

    #[test]
    fn a_site_that_changes_use_is_relearnt() {
        let (mut s, mut now) = mounts_then_bursts(6);
        // Now the classes starting at MOUNT go on allocating.
        run(&mut s, &mut now, 300, 3, MOUNT, 3);
        assert!(!s.predicts_single(MOUNT));
    }

    #[test]
    fn pushed_out_classes_get_no_verdict() {
        let mut s = Starters::default();
        let mut now = 0;
        // 40 tasks start at one site, then each allocates 10 more: more
        // than PENDING at once, interleaved. None is judged single.
        let tasks: Vec<ClassHint> = (0..40).map(ClassHint::task).collect();
        for &t in &tasks {
            s.route(t, MKDIR, now, true, true);
            now += 1;
        }
        for _ in 0..10 {
            for &t in &tasks {
                s.route(t, 0, now, false, true);
                now += 1;
            }
        }
        s.check().unwrap();
        let e = s.sites.get(MKDIR);
        assert_eq!(e.map(|e| e.yes), Some(0), "{e:?}");
        assert!(!s.predicts_single(MKDIR));
    }

    #[test]
    fn tables_stay_bounded() {
        let mut s = Starters::default();
        let mut now = 0;
        for i in 0..200 {
            run(&mut s, &mut now, i, 1, i % 50, 1);
        }
        s.check().unwrap();
        assert!(s.sites.entries.len() <= SITES && s.pending.len() <= PENDING);
        // One site, many verdicts: halved, never above HISTORY.
        for i in 0..500 {
            run(&mut s, &mut now, 10_000 + i, 1, MOUNT, 1);
            run(&mut s, &mut now, 100_000 + i, 1, MKDIR, 5);
        }
        s.check().unwrap();
        assert!(s.predicts_single(MOUNT));
    }

    /// A site no class has been counted at (never predicted single).
    const OTHER: u64 = 0x6f74;

    /// [`mounts_then_bursts`]`(n)`, then a mount's first object, routed to
    /// [`LONG_LIVED`] at the returned clock.
    fn a_routed_mount(n: u64) -> (Starters, u64, ClassHint) {
        let (mut s, now) = mounts_then_bursts(n);
        let m = ClassHint::task(500);
        assert_eq!(s.route(m, MOUNT, now, true, true), LONG_LIVED);
        (s, now, m)
    }

    /// A large first object from a site predicted single keeps its class:
    /// only small ones are predicted.
    #[test]
    fn a_large_first_object_is_not_routed() {
        let (mut s, now) = mounts_then_bursts(3);
        let (routed, pending) = (s.routed(), s.pending.len());
        let m = ClassHint::task(500);
        assert_eq!(s.route(m, MOUNT, now, true, false), m);
        assert_eq!((s.routed(), s.pending.len()), (routed, pending));
    }

    /// A routed first object awaiting its retry (`NeedsChunk`): another
    /// class's request at the same clock is decided on its own.
    #[test]
    fn another_class_at_a_routed_request_s_clock_keeps_its_class() {
        let (mut s, now, m) = a_routed_mount(3);
        let o = ClassHint::task(501);
        assert_eq!(s.route(o, OTHER, now, true, true), o);
        // The routed one's retry still gets its answer.
        assert_eq!(s.route(m, MOUNT, now, true, true), LONG_LIVED);
    }

    /// Of two first objects requested at one clock, abandoning the second
    /// leaves the first's pending verdict and routing.
    #[test]
    fn abandoning_one_of_two_requests_at_one_clock_keeps_the_other() {
        let (mut s, now, m) = a_routed_mount(3);
        let o = ClassHint::task(501);
        assert_eq!(s.route(o, OTHER, now, true, true), o);
        let routed = s.routed();
        s.abandon(o, now);
        assert_eq!(s.routed(), routed, "the mount's routing stays");
        assert!(s.pending.iter().any(|p| p.class == m && p.routed));
        assert!(s.pending.iter().all(|p| p.class != o));
        s.check().unwrap();
    }

    /// `abandon` forgets only the request it names: another class's
    /// failure at the same clock leaves a second object's retry with its
    /// class.
    #[test]
    fn abandoning_another_request_keeps_a_retry_s_answer() {
        // Six mounts: still predicted single after one class went on.
        let (mut s, mut now, m) = a_routed_mount(6);
        now += 1;
        // Its second object (no region of its own: `first`) needs a chunk;
        // meanwhile another class's request (one that took no route, as
        // an atomic one) places nothing at the same clock.
        assert_eq!(s.route(m, MOUNT, now, true, true), m);
        s.abandon(ClassHint::task(501), now);
        assert_eq!(s.route(m, MOUNT, now, true, true), m);
    }

    /// With [`SITES`] sites counted, a new one replaces the site with the
    /// fewest verdicts (not the fewest of some other measure).
    #[test]
    fn the_site_with_the_fewest_verdicts_is_forgotten_first() {
        let mut s = Starters::default();
        let count = |s: &mut Starters, site: u64, single: u32, went_on: u32| {
            (0..single).for_each(|_| s.count(site, true));
            (0..went_on).for_each(|_| s.count(site, false));
        };
        // Sites 1..=30 with three verdicts each way, then two single ones:
        // 5 verdicts at FIVE, 1 at ONE.
        const FIVE: u64 = 500;
        const ONE: u64 = 100;
        for site in 1..=SITES as u64 - 2 {
            count(&mut s, site, 3, 3);
        }
        count(&mut s, FIVE, 5, 0);
        count(&mut s, ONE, 1, 0);
        assert_eq!(s.sites.entries.len(), SITES);
        s.count(MOUNT, true);
        s.check().unwrap();
        let known = |s: &Starters, site| s.sites.get(site).is_some();
        assert!(!known(&s, ONE));
        assert!(known(&s, FIVE) && known(&s, 1) && known(&s, MOUNT));
    }

    /// A site keeps [`HISTORY`] verdicts as they are; the one past them
    /// halves both counts.
    #[test]
    fn a_site_s_counts_are_halved_only_past_history() {
        let mut s = Starters::default();
        (0..51).for_each(|_| s.count(MOUNT, true));
        (0..13).for_each(|_| s.count(MOUNT, false));
        let counts = |s: &Starters| s.sites.get(MOUNT).map(|e| (e.yes, e.no));
        assert_eq!(counts(&s), Some((51, 13)));
        assert!(!s.predicts_single(MOUNT));
        s.count(MOUNT, true);
        assert_eq!(counts(&s), Some((26, 6)));
        assert!(s.predicts_single(MOUNT));
    }

    /// `check` accepts the tables at their bounds and reports each broken
    /// invariant: too many pending classes or sites, a class pending twice,
    /// a site counted twice, a site's counts above [`HISTORY`].
    #[test]
    fn check_reports_each_broken_invariant() {
        let pending = |class: u64| Pending {
            class: ClassHint::task(class),
            site: MOUNT,
            since: 0,
            routed: false,
        };
        let site = |site: u64, single: u32| Votes {
            site,
            yes: single,
            no: 0,
        };
        let full = || Starters {
            pending: (0..PENDING as u64).map(pending).collect(),
            sites: SiteVotes {
                entries: (0..SITES as u64).map(|i| site(i, 1)).collect(),
            },
            ..Starters::default()
        };
        let mut at_bounds = full();
        at_bounds.sites.entries[0].yes = HISTORY;
        at_bounds.check().unwrap();
        let broken: [&dyn Fn(&mut Starters); 5] = [
            &|s| s.pending.push(pending(PENDING as u64)),
            &|s| s.sites.entries.push(site(SITES as u64, 1)),
            &|s| s.pending[1] = pending(0),
            &|s| s.sites.entries[1] = site(0, 1),
            &|s| s.sites.entries[2].yes = HISTORY + 1,
        ];
        for (i, f) in broken.iter().enumerate() {
            let mut s = full();
            f(&mut s);
            assert!(s.check().is_err(), "case {i}");
        }
    }
}
