//! Comparisons of two variants of a sweep across the subjects: percent
//! changes, the best variant per subject, and per-subject pairs in kB.

use super::format::{change, pct};
use super::subjects::{after_kb, after_removals_kb, Subject};
use crate::run::RunResult;
use crate::sweep::SweepResults;
use crate::targets::{percent, worst_phase, Pair};

/// Percent changes of variant `a` against `b` under `metric`, one per
/// subject that has both.
pub(super) fn changes<'s>(
    subjects: impl IntoIterator<Item = &'s Subject>,
    res: &SweepResults,
    a: &str,
    b: &str,
    metric: &dyn Fn(&Subject, &RunResult) -> u64,
) -> Vec<f64> {
    subjects
        .into_iter()
        .filter_map(|s| {
            let ra = res.get(&s.input.name, a)?;
            let rb = res.get(&s.input.name, b)?;
            change(metric(s, ra), metric(s, rb))
        })
        .collect()
}

/// Like [`changes`] for any counter of the results.
pub(super) fn changes_of(
    subjects: &[Subject],
    res: &SweepResults,
    a: &str,
    b: &str,
    f: &dyn Fn(&RunResult) -> u64,
) -> Vec<f64> {
    changes(subjects, res, a, b, &|_, r| f(r))
}

/// Subjects on which `label` is within 0.5% of the smallest
/// resident-after-removals of the sweep.
pub(super) fn near_best(subjects: &[Subject], res: &SweepResults, label: &str) -> (usize, usize) {
    let mut k = 0;
    let mut n = 0;
    for s in subjects {
        let Some(rs) = res.input(&s.input.name) else {
            continue;
        };
        let (Some(r), Some(best)) = (
            rs.iter().find(|r| r.label == label),
            rs.iter().map(|r| after_kb(s, r)).min(),
        ) else {
            continue;
        };
        n += 1;
        if after_kb(s, r) as f64 <= best as f64 * 1.005 {
            k += 1;
        }
    }
    (k, n)
}

/// The variant with the smallest resident-after-removals per subject.
pub(super) fn best_line(subjects: &[Subject], res: &SweepResults) -> String {
    subjects
        .iter()
        .filter_map(|s| {
            let rs = res.input(&s.input.name)?;
            let best = rs
                .iter()
                .min_by_key(|r| (after_kb(s, r), r.depopulated_pages))?;
            Some(format!(
                "{} {} ({} kB)",
                s.short,
                best.label,
                after_kb(s, best)
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per subject: `a` against `b` in kB and percent.
pub(super) fn pairs(
    subjects: &[Subject],
    res: &SweepResults,
    a: &str,
    b: &str,
    metric: &dyn Fn(&Subject, &RunResult) -> u64,
) -> String {
    subjects
        .iter()
        .filter_map(|s| {
            let x = metric(s, res.get(&s.input.name, a)?);
            let y = metric(s, res.get(&s.input.name, b)?);
            Some(format!("{} {x} vs {y} kB ({})", s.short, pct(x, y)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One variant's runs over generated traces, each against linux-5.14 on
/// the same trace ([`over_seeds`]).
pub(super) struct OverSeeds {
    /// Traces with a phase more than 1% above linux-5.14.
    pub(super) above: usize,
    /// The largest excess at any phase (percent) and where it is
    /// (`workload seed N, phase`); the first such trace on ties.
    pub(super) largest: (f64, String),
    /// Resident memory after removals against linux-5.14 (percent), one
    /// per trace with a run.
    pub(super) after: Vec<f64>,
}

/// The runs `run` picks from `pairs` (the traces without one are left
/// out) against each pair's linux-5.14 run; `None` without any.
pub(super) fn over_seeds<'p>(
    pairs: impl IntoIterator<Item = &'p Pair>,
    run: impl Fn(&'p Pair) -> Option<&'p RunResult>,
) -> Option<OverSeeds> {
    let mut above = 0;
    let mut largest: Option<(f64, String)> = None;
    let mut after = Vec::new();
    for p in pairs {
        let Some(r) = run(p) else {
            continue;
        };
        let (w, at) = worst_phase(r, &p.linux);
        if w > 1.0 {
            above += 1;
        }
        if largest.as_ref().map_or(true, |(l, _)| w > *l) {
            largest = Some((w, format!("{} seed {}, {at}", p.workload, p.seed)));
        }
        after.push(percent(after_removals_kb(r), after_removals_kb(&p.linux)));
    }
    Some(OverSeeds {
        above,
        largest: largest?,
        after,
    })
}

/// `"lo to hi"`: the smallest and largest of `seeds` (`"0 to 0"` for none).
pub(super) fn seed_span(seeds: impl IntoIterator<Item = u64>) -> String {
    let (mut lo, mut hi) = (u64::MAX, 0);
    for s in seeds {
        lo = lo.min(s);
        hi = hi.max(s);
    }
    format!("{} to {hi}", if lo > hi { 0 } else { lo })
}
