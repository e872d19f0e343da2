//! A study input with its labels, and the per-subject metrics the document
//! compares (resident memory, floor, ideal and refill, averaged over the
//! subject's phases).

use crate::run::{Input, RunResult};

/// A study input with its short column label.
pub(super) struct Subject {
    pub(super) input: Input,
    pub(super) short: String,
    /// Phases right after removals (the figure the questions are about).
    pub(super) after: Vec<String>,
    /// Phases right after (re)creation.
    pub(super) refill: Vec<String>,
}

/// Is `name` `prefix` followed by a number (`R3`)?
fn is_numbered(name: &str, prefix: char) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
}

/// The phases right after removals among `phases` (`C`, `R3`, `L2`, `M1`,
/// `W4`).
pub(super) fn removal_phases<'p>(phases: impl IntoIterator<Item = &'p String>) -> Vec<String> {
    phases
        .into_iter()
        .filter(|p| *p == "C" || ['R', 'L', 'M', 'W'].iter().any(|&c| is_numbered(p, c)))
        .cloned()
        .collect()
}

/// A subject for `input`, its after-removal and refill phases picked from
/// the phase names.
pub(super) fn subject(input: Input, short: String) -> Subject {
    let phases = input.phases();
    let mut after = removal_phases(&phases);
    if after.is_empty() {
        after = phases.clone();
    }
    let refill = phases
        .iter()
        .filter(|p| {
            *p == "B"
                || ['R', 'L', 'M', 'W'].iter().any(|&c| {
                    p.strip_prefix(c)
                        .and_then(|r| r.strip_suffix('c'))
                        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                })
        })
        .cloned()
        .collect();
    Subject {
        input,
        short,
        after,
        refill,
    }
}

/// Mean of `f` over the phases `names` of `r` (0 when none match).
pub(super) fn mean_over(
    r: &RunResult,
    names: &[String],
    f: impl Fn(&crate::run::PhaseMetrics) -> u64,
) -> u64 {
    let v: Vec<u64> = names.iter().filter_map(|n| r.phase(n)).map(f).collect();
    if v.is_empty() {
        0
    } else {
        (v.iter().sum::<u64>() as f64 / v.len() as f64).round() as u64
    }
}

/// Resident memory averaged over `r`'s own phases right after removals
/// (kB): for runs outside the subjects (the seeds' traces).
pub(super) fn after_removals_kb(r: &RunResult) -> u64 {
    let names = removal_phases(r.phases.iter().map(|p| &p.name));
    mean_over(r, &names, |p| p.percpu_kb)
}

/// Resident memory after removals (kB).
pub(super) fn after_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.percpu_kb)
}

/// The floor after removals (kB).
pub(super) fn floor_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.floor_kb)
}

/// The ideal after removals (kB).
pub(super) fn ideal_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.ideal_kb)
}

/// Resident memory right after (re)creation (kB).
pub(super) fn refill_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.refill, |p| p.percpu_kb)
}
