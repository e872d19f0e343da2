//! The answers in brief, computed from the sweeps, and the headline numbers
//! (both at the top of the document and in [`StudyOutcome`]).
//!
//! [`StudyOutcome`]: super::StudyOutcome

use std::fmt::Write as _;

use super::compare::{changes, changes_of, near_best};
use super::format::{pct, span, verb};
use super::subjects::{after_kb, floor_kb, ideal_kb, refill_kb, Subject};
use super::sweeps::Results;
use crate::run::RunResult;
use crate::sweep::SweepResults;

/// One answer per question: (question, answer).
pub(super) fn answers(subjects: &[Subject], res: &Results) -> Vec<(String, String)> {
    let Results {
        sched,
        batch,
        pol,
        div,
        mt,
        mag,
        side,
        side_pcpu,
        place,
        place_pcpu,
        long_lived,
        backfill,
        tile_bursts,
        ..
    } = *res;
    // Like `changes`, on the real captures only.
    let real_changes =
        |sweep: &SweepResults, a: &str, b: &str, f: &dyn Fn(&Subject, &RunResult) -> u64| {
            changes(
                subjects.iter().filter(|s| !s.input.synthetic),
                sweep,
                a,
                b,
                f,
            )
        };
    let mut answers: Vec<(String, String)> = Vec::new();
    {
        let (k, n) = near_best(subjects, sched, "on demand");
        let late = changes(
            subjects,
            sched,
            "every 16384 events",
            "on demand",
            &after_kb,
        );
        let lead = if k == n {
            "Run it whenever the free path queues a candidate, as 5.14 does: running"
        } else {
            "Running"
        };
        let mut a = format!(
            "{lead} the balance work on demand keeps resident memory within 0.5% of the best schedule on {k} of {n} workloads; a periodic timer every 16384 allocation/free events {}",
            verb(&late, "resident memory after removals")
        );
        let r4 = real_changes(sched, "every 4th run", "recorded", &after_kb);
        let r4runs = real_changes(sched, "every 4th run", "recorded", &|_, r| r.balance_runs);
        let r64 = real_changes(sched, "every 64th run", "recorded", &after_kb);
        if !r4.is_empty() {
            let _ = write!(
                a,
                "; on the real captures, keeping every 4th recorded run changes the balance runs by {} and resident memory by {}, every 64th run changes resident memory by {}",
                span(&r4runs),
                span(&r4),
                span(&r64)
            );
        }
        let b1 = changes(subjects, batch, "1 chunk", "all", &after_kb);
        let _ = write!(
            a,
            ". Batching reclaim does not help: with a timer every 1024 events, one chunk per run instead of all {}",
            verb(&b1, "resident memory after removals")
        );
        a.push('.');
        answers.push(("How often to scan and depopulate".into(), a));
    }
    {
        let half = changes(subjects, div, "1/2", "1/4", &after_kb);
        let any = changes(subjects, div, "any page", "1/4", &after_kb);
        let any_runs = changes_of(subjects, div, "any page", "1/4", &|r| r.balance_runs);
        let (k, n) = near_best(subjects, div, "1/4");
        let one = changes(subjects, mt, "1 chunk", "2 chunks", &after_kb);
        let three = changes(subjects, mt, "3 chunks", "2 chunks", &after_kb);
        let nine = changes(subjects, mt, "9 chunks", "2 chunks", &after_kb);
        let (k2, n2) = near_best(subjects, mt, "2 chunks");
        let a = format!(
            "1/4 is within 0.5% of the best fraction on {k} of {n} workloads; requiring 1/2 {}, while qualifying a chunk with any empty page {} for {} balance runs. \
             \"2 or more candidates\" (seed-rfc) is within 0.5% of its best setting on {k2} of {n2} workloads; 1 candidate {}, 3 {}, 9 {}.",
            verb(&half, "it"),
            verb(&any, "it"),
            span(&any_runs),
            verb(&one, "it"),
            verb(&three, "it"),
            verb(&nine, "it")
        );
        answers.push((
            "\"1/4 of pages free\" and \"2 or more candidate chunks\"".into(),
            a,
        ));
    }
    {
        let v = changes(subjects, side, "sidelined", "kept in slot", &after_kb);
        let rf = changes(subjects, side, "sidelined", "kept in slot", &refill_kb);
        let rep = changes_of(subjects, side, "sidelined", "kept in slot", &|r| {
            r.populated_pages
        });
        let vp = changes(subjects, side_pcpu, "sidelined", "kept in slot", &after_kb);
        let w = changes(subjects, pol, "linux-5.14", "seed-rfc", &after_kb);
        let room = changes(subjects, res.refill, "room", "kernel", &after_kb);
        let full = changes(subjects, res.refill, "fullest", "kernel", &after_kb);
        let room_514 = changes(subjects, res.refill_514, "room", "kernel", &after_kb);
        let a = format!(
            "With everything else 5.14's, sidelining depopulated chunks against keeping them in their slots {}, changes the refill peak by {} and the pages populated by {}; under pcpu's rules it changes resident memory after removals by {}. 5.14's whole design against the RFC's {}. Which sidelined chunk to refill first: against the kernel's order, the fullest first changes resident memory after removals by {} and the one with the most room on its used pages (`pcpu`'s choice) by {} (by {} under 5.14's rules); §3 compares them over the generated traces too.",
            verb(&v, "resident memory after removals"),
            span(&rf),
            span(&rep),
            span(&vp),
            verb(&w, "it"),
            span(&full),
            span(&room),
            span(&room_514)
        );
        answers.push((
            "Packing allocations after depopulation (sidelining)".into(),
            a,
        ));
    }
    {
        let fl = changes(subjects, place, "size classes", "first fit", &floor_kb);
        let re = changes(subjects, place, "size classes", "first fit", &refill_kb);
        let cs = changes(subjects, place, "call-site classes", "first fit", &floor_kb);
        // The other slab idea: per-CPU magazines (32 areas per size).
        let hits: Vec<f64> = subjects
            .iter()
            .filter_map(|s| mag.get(&s.input.name, "32"))
            .map(|r| 100.0 * r.magazine_hits as f64 / r.allocs.max(1) as f64)
            .collect();
        let max_hits = hits.iter().copied().fold(0.0, f64::max);
        let held = changes(subjects, mag, "32", "off", &after_kb);
        let a = format!(
            "Segregating by size (page-exclusive power-of-two classes) {}, and {} at the refill peaks (the phases right after creation); segregating by call site {}. A per-CPU cache of freed objects (magazines of 32) would serve at most {max_hits:.1}% of the allocations and {}.",
            verb(&fl, "the floor after removals"),
            verb(&re, "resident memory"),
            verb(&cs, "the floor"),
            verb(&held, "resident memory after removals")
        );
        answers.push(("Separate chunks for small objects (slab idea)".into(), a));
    }
    {
        let t = changes(subjects, place, "task-contiguous", "first fit", &after_kb);
        let l = changes(subjects, place, "lifetime classes", "first fit", &after_kb);
        let tp = changes(
            subjects,
            place_pcpu,
            "task-contiguous",
            "first fit",
            &after_kb,
        );
        let nf = changes(subjects, place, "next fit", "first fit", &after_kb);
        let bf = changes(subjects, place, "best fit", "first fit", &after_kb);
        // pcpu's rules: lifetime classes with `keep_room` against without.
        let keep = changes(
            subjects,
            place_pcpu,
            crate::targets::DERIVED,
            "lifetime classes",
            &after_kb,
        );
        let ll = changes(subjects, long_lived, "on", "off", &after_kb);
        let bfill = changes(subjects, backfill, "on", "off", &after_kb);
        let tile = changes(subjects, tile_bursts, "on", "off", &after_kb);
        let a = format!(
            "Keeping each allocating task's objects contiguous {} under 5.14's rules ({} under pcpu's); lifetime classes derived from the trace, the upper bound of lifetime hints, {}; under pcpu's rules, keeping classes out of each other's free room (`keep_room`) {}, predicting that the objects of tasks allocating only one live long (`long_lived`, §5b) {}, opening a task's region beside the survivors of the last removal before an empty page (`backfill`, §5c) {}, and starting bursts of a power-of-two fraction of a page on a multiple of their size, their 4-byte objects pooled (`tile_bursts`, §5d) {}. Without classes, next fit {} (consecutive allocations, a cgroup's among them, stay together) and best fit {}.",
            verb(&t, "resident memory after removals"),
            span(&tp),
            verb(&l, "it"),
            verb(&keep, "it further"),
            verb(&ll, "it"),
            verb(&bfill, "it"),
            verb(&tile, "it"),
            verb(&nf, "it"),
            verb(&bf, "it")
        );
        answers.push(("Placement by task and by lifetime".into(), a));
    }

    answers
}

/// The headline lines: resident memory after removals by policy, per
/// subject.
pub(super) fn headline(subjects: &[Subject], res: &Results) -> Vec<String> {
    let Results { pol, place, .. } = *res;
    let mut headline = Vec::new();
    for s in subjects {
        let (Some(l511), Some(l514r), Some(pc)) = (
            pol.get(&s.input.name, "linux-5.11"),
            pol.get(&s.input.name, "linux-5.14"),
            pol.get(&s.input.name, "pcpu"),
        ) else {
            continue;
        };
        let mut line = format!(
            "{}: linux-5.11 {} kB, linux-5.14 {} kB ({} against 5.11), pcpu {} kB ({} against 5.14); floor {} kB, ideal {} kB",
            s.short,
            after_kb(s, l511),
            after_kb(s, l514r),
            pct(after_kb(s, l514r), after_kb(s, l511)),
            after_kb(s, pc),
            pct(after_kb(s, pc), after_kb(s, l514r)),
            floor_kb(s, l514r),
            ideal_kb(s, l514r)
        );
        if let (Some(t), Some(lt)) = (
            place.get(&s.input.name, "task-contiguous"),
            place.get(&s.input.name, "lifetime classes"),
        ) {
            let _ = write!(
                line,
                "; with 5.14 rules, task-contiguous placement {} kB, lifetime classes {} kB",
                after_kb(s, t),
                after_kb(s, lt)
            );
        }
        headline.push(line);
    }
    headline
}
