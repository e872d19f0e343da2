//! Comparisons of two variants of a sweep across the subjects: percent
//! changes, the best variant per subject, and per-subject pairs in kB.

use super::format::{change, pct};
use super::subjects::{after_kb, Subject};
use crate::run::RunResult;
use crate::sweep::SweepResults;

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
