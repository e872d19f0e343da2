//! Runs, schedules and sweeps on tiny inputs.

use pcpu_core::{Policy, PolicyKind};
use pcpu_lab::gen::{Churn, CoverLetter};
use pcpu_lab::run::{run, run_many, Input, RunOptions, RunResult, Schedule, Variant};
use pcpu_lab::sweep;
use pcpu_replay::ClassMode;
use pcpu_trace::Event;

fn cover() -> Input {
    Input::synthetic(
        &CoverLetter {
            parents: 20,
            children: 4,
            ..CoverLetter::default()
        }
        .generate(),
    )
    .unwrap()
}

fn churn() -> Input {
    Input::synthetic(
        &Churn {
            rounds: 3,
            per_round: 80,
            ..Churn::default()
        }
        .generate(),
    )
    .unwrap()
}

/// Large enough for several chunks (5.14 reclaims a chunk only while the
/// others keep more than EMPTY_POP_PAGES_HIGH empty pages).
fn big_cover() -> Input {
    Input::synthetic(
        &CoverLetter {
            parents: 100,
            children: 10,
            ..CoverLetter::default()
        }
        .generate(),
    )
    .unwrap()
}

fn big_churn() -> Input {
    Input::synthetic(
        &Churn {
            rounds: 3,
            per_round: 700,
            ..Churn::default()
        }
        .generate(),
    )
    .unwrap()
}

/// A copy of `input` with a balance-work record after every `n`th
/// allocation or free (as if recorded from a kernel).
fn with_recorded_runs(input: &Input, n: u64) -> Input {
    let (recs, _) = Schedule::Periodic(n as u32).apply(input);
    Input::new("recorded", recs.into_owned(), input.setup.clone())
}

fn l514() -> Policy {
    Policy::new(PolicyKind::Linux514)
}

/// Everything but the wall time.
fn strip(mut r: RunResult) -> RunResult {
    r.wall_s = 0.0;
    r
}

#[test]
fn schedules_transform_the_balance_events() {
    let input = big_cover();
    let af = input
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::Alloc(_) | Event::Free { .. }))
        .count();
    let count = |s: Schedule, i: &Input| {
        s.apply(i)
            .0
            .iter()
            .filter(|r| matches!(r.event, Event::BalanceWork))
            .count()
    };
    assert_eq!(count(Schedule::Modelled, &input), 0);
    assert_eq!(count(Schedule::Periodic(100), &input), af / 100);
    let rec = with_recorded_runs(&input, 10);
    assert!(rec.has_balance);
    assert_eq!(count(Schedule::Recorded, &rec), af / 10);
    assert_eq!(count(Schedule::EveryNth(4), &rec), af / 10 / 4);
    // Periodic drops the recorded runs and inserts its own.
    assert_eq!(count(Schedule::Periodic(1000), &rec), af / 1000);
    assert!(!Schedule::Recorded.applies(&input));
    assert!(Schedule::EveryNth(2).applies(&rec));
    // Fewer runs, more memory left resident after the removals.
    let v = |s| Variant {
        schedule: s,
        ..Variant::new("x", l514())
    };
    let o = RunOptions::default();
    let every = run(&rec, &v(Schedule::Recorded), &o).unwrap();
    let rare = run(&rec, &v(Schedule::EveryNth(64)), &o).unwrap();
    assert_eq!(every.balance_runs as usize, af / 10);
    assert_eq!(rare.balance_runs as usize, af / 10 / 64);
    assert!(rare.phase("C").unwrap().percpu_kb >= every.phase("C").unwrap().percpu_kb);
}

#[test]
fn phase_metrics_are_cumulative_and_consistent() {
    let input = big_churn();
    let v = Variant::new("5.14", l514());
    let r = run(&input, &v, &RunOptions::default()).unwrap();
    assert_eq!(
        r.phases.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["BOOT", "A", "R1c", "R1", "R2c", "R2", "R3c", "R3", "END"]
    );
    for w in r.phases.windows(2) {
        assert!(w[0].populated_pages <= w[1].populated_pages);
        assert!(w[0].balance_runs <= w[1].balance_runs);
        assert!(w[0].repopulated_pages <= w[1].repopulated_pages);
    }
    let last = r.phases.last().unwrap();
    assert_eq!(last.populated_pages, r.populated_pages);
    assert!(r.thrash_runs_pages <= r.repopulated_pages);
    assert!(r.thrash_events_pages <= r.repopulated_pages);
    assert!(r.repopulated_pages <= r.populated_pages);
    assert!(r.page_ops > 0 && r.balance_runs > 0);
    // Churn re-creates cgroups on depopulated pages: some pages come back.
    assert!(r.repopulated_pages > 0);
    for p in &r.phases {
        assert!(
            p.ideal_kb <= p.floor_kb && p.floor_kb <= p.percpu_kb,
            "{p:?}"
        );
    }
}

#[test]
fn thrash_windows_bound_each_other() {
    let input = big_churn();
    let v = Variant::new("5.14", l514());
    let narrow = RunOptions {
        thrash_runs: 0,
        thrash_events: 0,
        ..RunOptions::default()
    };
    let wide = RunOptions {
        thrash_runs: u64::MAX,
        thrash_events: u64::MAX,
        ..RunOptions::default()
    };
    let a = run(&input, &v, &narrow).unwrap();
    let b = run(&input, &v, &wide).unwrap();
    assert_eq!(b.thrash_runs_pages, b.repopulated_pages);
    assert_eq!(b.thrash_events_pages, b.repopulated_pages);
    assert!(a.thrash_events_pages <= b.thrash_events_pages);
    assert_eq!(a.repopulated_pages, b.repopulated_pages);
}

#[test]
fn sweeps_cover_every_point_and_do_not_depend_on_threads() {
    let inputs = [cover(), churn()];
    let sweeps = [
        sweep::reclaim_divisor(l514(), &[2, 4, usize::MAX]),
        sweep::marked_threshold(Policy::new(PolicyKind::SeedRfc), &[0, 1, 3]),
        sweep::empty_pop(l514(), &[(2, 4), (8, 16)]),
        sweep::placements(
            l514(),
            &[
                ClassMode::None,
                ClassMode::Task,
                ClassMode::SizeClass,
                ClassMode::CallSite,
                ClassMode::Derived,
            ],
        ),
        sweep::schedules(l514(), &[Schedule::Modelled, Schedule::Recorded]),
        sweep::magazines(l514(), &[0, 16]).with_schedule(Schedule::Modelled),
        sweep::reclaim_batch(l514(), &[1, usize::MAX]).with_schedule(Schedule::Periodic(64)),
    ];
    let o = RunOptions::default();
    let one = sweep::run_sweeps(&inputs, &sweeps, &o, 1, &|_, _| {}).unwrap();
    let two = sweep::run_sweeps(&inputs, &sweeps, &o, 2, &|_, _| {}).unwrap();
    for (a, b) in one.iter().zip(&two) {
        for ((na, ra), (nb, rb)) in a.per_input.iter().zip(&b.per_input) {
            assert_eq!(na, nb);
            let ra: Vec<_> = ra.iter().cloned().map(strip).collect();
            let rb: Vec<_> = rb.iter().cloned().map(strip).collect();
            assert_eq!(ra, rb);
        }
    }
    let div = &one[0];
    assert_eq!(
        div.input("cover-letter-20x4")
            .unwrap()
            .iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>(),
        ["1/2", "1/4", "any page"]
    );
    // Recorded runs do not apply to a trace without balance events.
    assert_eq!(one[4].input("churn-3x80-80").unwrap().len(), 1);
    // Class modes are only honoured with class placement.
    let place = &one[3];
    let c = |l: &str| place.get("cover-letter-20x4", l).unwrap();
    assert_eq!(c("first fit").classes, "none");
    assert_eq!(c("size classes").classes, "size");
    assert_eq!(c("call-site classes").classes, "call site");
    // Lifetime classes put the survivors together: the lowest floor at C.
    let floor = |l: &str| c(l).phase("C").unwrap().floor_kb;
    assert!(floor("lifetime classes") < floor("first fit"));
    assert!(floor("lifetime classes") <= floor("task-contiguous"));
    // Magazines: off is Linux (no hit); on, some allocation is served from
    // one, the same objects are live at every phase, and none fails.
    let mag = &one[5];
    let off = mag.get("churn-3x80-80", "off").unwrap();
    let on = mag.get("churn-3x80-80", "16").unwrap();
    assert_eq!(off.magazine_hits, 0);
    assert!(
        on.magazine_hits > 0 && on.magazine_hits < on.allocs,
        "{on:?}"
    );
    assert_eq!((on.allocs, on.failed_allocs), (off.allocs, 0));
    for (a, b) in on.phases.iter().zip(&off.phases) {
        assert_eq!((a.ideal_kb, a.name.as_str()), (b.ideal_kb, b.name.as_str()));
    }
    // Reclaim batches: one chunk per periodic run depopulates no more than
    // all of them, and leaves at least as much resident after removals.
    let b = &one[6];
    let one_chunk = b.get("cover-letter-20x4", "1 chunk").unwrap();
    let all = b.get("cover-letter-20x4", "all").unwrap();
    assert_eq!(one_chunk.balance_runs, all.balance_runs);
    assert!(one_chunk.depopulated_pages <= all.depopulated_pages);
    let c_kb = |r: &RunResult| r.phase("C").unwrap().percpu_kb;
    assert!(c_kb(one_chunk) >= c_kb(all));
    // run_many returns results in job order.
    let jobs = vec![
        (1, Variant::new("a", l514())),
        (0, Variant::new("b", l514())),
    ];
    let rs = run_many(&inputs, &jobs, &o, 2, &|_, _| {});
    assert_eq!(rs[0].as_ref().unwrap().input, "churn-3x80-80");
    assert_eq!(rs[1].as_ref().unwrap().label, "b");
}
