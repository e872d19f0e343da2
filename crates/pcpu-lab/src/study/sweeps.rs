//! The sweeps the study runs, their baselines, and their results by role.

use pcpu_core::{Fit, Policy, PolicyKind, Refill};
use pcpu_replay::ClassMode;

use crate::run::Schedule;
use crate::sweep::{self, Sweep, SweepResults};

/// The refill orders the study compares, the kernel's first.
pub(super) const REFILLS: [Refill; 3] = [Refill::Kernel, Refill::Fullest, Refill::Room];

/// The sweeps of the study, in document order. The schedule sweeps vary the
/// balance timing; every other sweep runs the balance work on demand (when
/// the policy's own rules schedule it) on every input, so that synthetic and
/// real traces are treated alike and each policy is judged by its own
/// scheduling rules.
pub(super) fn sweeps() -> Vec<Sweep> {
    let l514 = Policy::new(PolicyKind::Linux514);
    let rfc = Policy::new(PolicyKind::SeedRfc);
    let schedules = [
        Schedule::Modelled,
        Schedule::Recorded,
        Schedule::EveryNth(4),
        Schedule::EveryNth(16),
        Schedule::EveryNth(64),
        Schedule::Periodic(256),
        Schedule::Periodic(1024),
        Schedule::Periodic(4096),
        Schedule::Periodic(16384),
    ];
    let mut sched_rfc = sweep::schedules(rfc, &schedules);
    sched_rfc.id = "schedule-rfc".into();
    let mut sched = sweep::schedules(l514, &schedules);
    sched.id = "schedule-5.14".into();
    let placements = [
        ClassMode::None,
        ClassMode::Task,
        ClassMode::SizeClass,
        ClassMode::CallSite,
        ClassMode::Derived,
    ];
    let mut place_514 = sweep::placements(l514, &placements);
    place_514.id = "placement-5.14".into();
    // Inside the chosen chunk: next fit and best fit against first fit.
    place_514
        .variants
        .extend(sweep::fits(l514, &[Fit::Next, Fit::Best]));
    let mut place_pcpu = sweep::placements(Policy::pcpu(), &placements);
    place_pcpu.id = "placement-pcpu".into();
    // Lifetime classes again with `keep_room` (§8's upper bound).
    place_pcpu.variants.push(crate::targets::derived_variant());
    let mut side_514 = sweep::sideline(l514);
    side_514.id = "sideline-5.14".into();
    let mut side_pcpu = sweep::sideline(Policy::pcpu());
    side_pcpu.id = "sideline-pcpu".into();
    let mut refill = sweep::refill(Policy::pcpu(), &REFILLS);
    refill.id = "refill-pcpu".into();
    let mut refill_514 = sweep::refill(l514, &REFILLS);
    refill_514.id = "refill-5.14".into();
    let any = {
        let mut p = l514;
        p.reclaim_divisor = usize::MAX;
        p
    };
    let on_demand = [
        sweep::policies(&[Policy::new(PolicyKind::Linux511), rfc, l514, Policy::pcpu()]),
        sweep::reclaim_divisor(l514, &[1, 2, 4, 8, 16, 32, usize::MAX]),
        sweep::reclaim_min_pages(any, &[1, 2, 4, 8, 16, 32, 64]),
        sweep::marked_threshold(rfc, &[0, 1, 2, 4, 8, 16]),
        sweep::empty_pop(l514, &[(1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64)]),
        sweep::refault_reserve(Policy::pcpu(), &[0, 32, 16, 8, 4]),
        sweep::magazines(l514, &[0, 8, 32, 128]),
        side_514,
        side_pcpu,
        refill_514,
        refill,
        place_514,
        place_pcpu,
        sweep::long_lived(Policy::pcpu()),
        sweep::backfill(Policy::pcpu()),
        sweep::tile_bursts(Policy::pcpu()),
        sweep::grow_beside(Policy::pcpu()),
    ];
    // Batching matters only when chunks queue up between runs: a periodic
    // work item.
    let batch =
        sweep::reclaim_batch(l514, &[1, 2, 4, usize::MAX]).with_schedule(Schedule::Periodic(1024));
    let mut v = vec![sched, sched_rfc, batch];
    v.extend(
        on_demand
            .into_iter()
            .map(|s| s.with_schedule(Schedule::Modelled)),
    );
    v
}

/// The baseline label of each sweep (Linux's setting).
pub(super) fn baseline(id: &str) -> &'static str {
    match id {
        "policy" => "linux-5.14",
        "schedule-5.14" | "schedule-rfc" => "on demand",
        "reclaim-divisor" => "1/4",
        "reclaim-min-pages" => "32 pages",
        "marked-threshold" => "2 chunks",
        "empty-pop" => "2/4",
        "refault-reserve" | "magazine" | "long-lived" | "backfill" | "tile-bursts"
        | "grow-beside" => "off",
        "reclaim-batch" => "all",
        "sideline-5.14" | "sideline-pcpu" => "sidelined",
        "refill-5.14" | "refill-pcpu" => "kernel",
        _ => "first fit",
    }
}

/// The results of the study's sweeps, one field per sweep of [`sweeps`].
pub(super) struct Results<'a> {
    /// `schedule-5.14`: balance timing under linux-5.14's rules.
    pub(super) sched: &'a SweepResults,
    /// `schedule-rfc`: balance timing under seed-rfc's rules.
    pub(super) sched_rfc: &'a SweepResults,
    /// `reclaim-batch`: chunks reclaimed per run.
    pub(super) batch: &'a SweepResults,
    /// `policy`: the whole policies.
    pub(super) pol: &'a SweepResults,
    /// `reclaim-divisor`: the empty fraction.
    pub(super) div: &'a SweepResults,
    /// `reclaim-min-pages`: an absolute threshold.
    pub(super) minp: &'a SweepResults,
    /// `marked-threshold`: the RFC's candidate chunks.
    pub(super) mt: &'a SweepResults,
    /// `empty-pop`: the reserve of empty pages.
    pub(super) ep: &'a SweepResults,
    /// `refault-reserve`: `pcpu`'s refault-aware reserve.
    pub(super) rr: &'a SweepResults,
    /// `magazine`: per-CPU magazines.
    pub(super) mag: &'a SweepResults,
    /// `sideline-5.14`: sidelining under linux-5.14's rules.
    pub(super) side: &'a SweepResults,
    /// `sideline-pcpu`: sidelining under `pcpu`'s rules.
    pub(super) side_pcpu: &'a SweepResults,
    /// `refill-5.14`: the order sidelined chunks are refilled in, under
    /// linux-5.14's rules.
    pub(super) refill_514: &'a SweepResults,
    /// `refill-pcpu`: the order sidelined chunks are refilled in, under
    /// `pcpu`'s rules.
    pub(super) refill: &'a SweepResults,
    /// `placement-5.14`: placement under linux-5.14's rules.
    pub(super) place: &'a SweepResults,
    /// `placement-pcpu`: placement under `pcpu`'s rules.
    pub(super) place_pcpu: &'a SweepResults,
    /// `long-lived`: `pcpu`'s long-lived prediction off and on.
    pub(super) long_lived: &'a SweepResults,
    /// `backfill`: `pcpu`'s back-fill beside survivors off and on.
    pub(super) backfill: &'a SweepResults,
    /// `tile-bursts`: `pcpu`'s page-tiling bursts off and on.
    pub(super) tile_bursts: &'a SweepResults,
    /// `grow-beside`: `pcpu`'s long-running classes off and on.
    pub(super) grow_beside: &'a SweepResults,
}

impl<'a> Results<'a> {
    /// Picks each sweep out of `results` by id.
    pub(super) fn new(results: &'a [SweepResults]) -> Self {
        let by_id = |id: &str| {
            results
                .iter()
                .find(|r| r.sweep.id == id)
                .expect("sweep present")
        };
        Results {
            sched: by_id("schedule-5.14"),
            sched_rfc: by_id("schedule-rfc"),
            batch: by_id("reclaim-batch"),
            pol: by_id("policy"),
            div: by_id("reclaim-divisor"),
            minp: by_id("reclaim-min-pages"),
            mt: by_id("marked-threshold"),
            ep: by_id("empty-pop"),
            rr: by_id("refault-reserve"),
            mag: by_id("magazine"),
            side: by_id("sideline-5.14"),
            side_pcpu: by_id("sideline-pcpu"),
            refill_514: by_id("refill-5.14"),
            refill: by_id("refill-pcpu"),
            place: by_id("placement-5.14"),
            place_pcpu: by_id("placement-pcpu"),
            long_lived: by_id("long-lived"),
            backfill: by_id("backfill"),
            tile_bursts: by_id("tile-bursts"),
            grow_beside: by_id("grow-beside"),
        }
    }
}
