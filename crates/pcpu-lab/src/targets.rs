//! The `pcpu` policy's targets, checked: its figures against linux-5.14 on
//! replays, and how far they hold when the synthetic workloads are generated
//! again with other seeds.
//!
//! ```
//! use pcpu_lab::run::RunOptions;
//! use pcpu_lab::study::Scale;
//! use pcpu_lab::targets;
//!
//! let pairs = targets::seed_pairs(Scale::Small, &[1, 2], &RunOptions::default(), 1).unwrap();
//! assert_eq!(pairs.len(), 10); // 5 workloads x 2 seeds
//! let (change, phase) = pairs[0].worst_phase();
//! assert!(change.is_finite() && !phase.is_empty());
//! ```

use pcpu_core::{Policy, PolicyKind};

use crate::gen::SyntheticTrace;
use crate::run::{
    percent_change, run_many, Input, LabError, PhaseMetrics, RunOptions, RunResult, Schedule,
    Variant,
};
use crate::study::{workloads_seeded, Scale};

/// Label of [`derived_variant`].
pub const DERIVED: &str = "lifetime classes, keep_room";

/// `pcpu` with lifetime classes derived from the trace and
/// `Policy::keep_room` (the best placement the allocator has for lifetime
/// hints), balance work on demand: the derived-classes target's run, and
/// the extra [`seed_pairs_with`] variant for the seeds table of [`section`].
pub fn derived_variant() -> Variant {
    let mut p = Policy::pcpu();
    p.keep_room = true;
    Variant {
        classes: pcpu_replay::ClassMode::Derived,
        schedule: Schedule::Modelled,
        ..Variant::new(DERIVED, p)
    }
}

/// One workload replayed under linux-5.14 and under `pcpu`, both with the
/// balance work on demand.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The generator's name with its parameters (seed left out).
    pub workload: String,
    /// The generator's seed.
    pub seed: u64,
    /// kB of one page over all units (turns kB into pages per unit).
    pub kb_per_page: u64,
    /// linux-5.14.
    pub linux: RunResult,
    /// `pcpu`.
    pub pcpu: RunResult,
    /// The extra variants of [`seed_pairs_with`], in their order.
    pub others: Vec<RunResult>,
}

impl Pair {
    /// The largest Percpu increase of `pcpu` over linux-5.14 at any phase
    /// marker, in percent, and that marker's name.
    pub fn worst_phase(&self) -> (f64, String) {
        worst_phase(&self.pcpu, &self.linux)
    }

    /// The change of the pages `pcpu` populated over the run against
    /// linux-5.14, in percent.
    pub fn traffic(&self) -> f64 {
        percent(self.pcpu.populated_pages, self.linux.populated_pages)
    }
}

/// The largest Percpu increase of `r` over `base` at any phase marker, in
/// percent, and that marker's name (`-inf` and no name without markers).
pub fn worst_phase(r: &RunResult, base: &RunResult) -> (f64, String) {
    r.phase_changes(base).into_iter().zip(&r.phases).fold(
        (f64::NEG_INFINITY, String::new()),
        |(w, n), (c, p)| {
            if c > w {
                (c, p.name.clone())
            } else {
                (w, n)
            }
        },
    )
}

/// `a` against `b` in percent (0 when `b` is 0).
pub fn percent(a: u64, b: u64) -> f64 {
    percent_change(a, b).unwrap_or(0.0)
}

/// The pages per unit `r` has to populate given the Percpu its phase markers
/// show: those populated by the first marker, plus every rise of Percpu from
/// one marker to the next (`kb_per_page`: kB of one page over all units).
/// What a run populates beyond it went away and came back between two
/// markers.
pub fn marker_forced_pages(r: &RunResult, kb_per_page: u64) -> u64 {
    let kpp = kb_per_page.max(1);
    let first = r.phases.first().map_or(0, |p| p.populated_pages);
    let rises: u64 = r
        .phases
        .windows(2)
        .map(|w| w[1].percpu_kb.saturating_sub(w[0].percpu_kb) / kpp)
        .sum();
    first + rises
}

/// How far `r` sits below `base` (pages per unit, summed; negative when
/// above) at the markers after which `r`'s Percpu rises: the troughs a
/// refill follows, whose depth decides what the refill populates. Markers
/// pair up by position, as in [`RunResult::phase_changes`]; the count of
/// such markers comes second.
pub fn below_before_rises(r: &RunResult, base: &RunResult, kb_per_page: u64) -> (i64, usize) {
    let kpp = kb_per_page.max(1) as i64;
    let troughs: Vec<i64> = r
        .phases
        .windows(2)
        .zip(&base.phases)
        .filter(|(w, _)| w[1].percpu_kb > w[0].percpu_kb)
        .map(|(w, b)| (b.percpu_kb as i64 - w[0].percpu_kb as i64) / kpp)
        .collect();
    (troughs.iter().sum(), troughs.len())
}

/// Resident memory over the placement floor at phase `name`, both outside
/// the first and reserved chunks (which no policy depopulates): the target's
/// "resident / floor" (issue 5; Linux 1.05 on the memcg capture at C).
pub fn resident_over_floor(r: &RunResult, name: &str) -> Option<f64> {
    let p = r.phase(name)?;
    let resident = p.percpu_kb.checked_sub(r.first_chunk_kb)?;
    let floor = p.floor_kb.checked_sub(p.first_chunk_floor_kb)?;
    (floor > 0).then(|| resident as f64 / floor as f64)
}

/// The placement floor over the ideal at every phase marker with live
/// bytes, in percent: the largest, and that marker's name.
pub fn worst_floor_over_ideal(r: &RunResult) -> Option<(f64, String)> {
    worst_over_ideal(r, |p| Some(p.floor_kb))
}

/// With derived lifetime classes: the least floor that page-exclusive
/// classes allow ([`PhaseMetrics::class_bound_kb`](crate::run::PhaseMetrics::class_bound_kb)) over the ideal, in percent,
/// the largest over the phase markers and that marker's name. `None` when
/// the run has no bound (other class modes).
pub fn worst_class_bound_over_ideal(r: &RunResult) -> Option<(f64, String)> {
    worst_over_ideal(r, |p| p.class_bound_kb)
}

/// `kb` of each phase marker with live bytes (where it has one) over the
/// ideal, in percent: the largest, and that marker's name.
fn worst_over_ideal(
    r: &RunResult,
    kb: impl Fn(&PhaseMetrics) -> Option<u64>,
) -> Option<(f64, String)> {
    r.phases
        .iter()
        .filter(|p| p.ideal_kb > 0)
        .filter_map(|p| Some((percent(kb(p)?, p.ideal_kb), p.name.clone())))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The two variants every pair replays.
fn variants() -> [Variant; 2] {
    [
        Variant {
            schedule: Schedule::Modelled,
            ..Variant::new("linux-5.14", Policy::new(PolicyKind::Linux514))
        },
        Variant {
            schedule: Schedule::Modelled,
            ..Variant::new("pcpu", Policy::pcpu())
        },
    ]
}

/// Generates the study's synthetic workloads at `scale` with each seed of
/// `seeds` and replays each under linux-5.14 and `pcpu` on `threads`
/// threads. Pairs come in seed order, then in the study's workload order.
pub fn seed_pairs(
    scale: Scale,
    seeds: &[u64],
    opts: &RunOptions,
    threads: usize,
) -> Result<Vec<Pair>, LabError> {
    seed_pairs_with(scale, seeds, &[], opts, threads)
}

/// [`seed_pairs`], each workload also replayed under `others` (in
/// [`Pair::others`]; their schedules are used as given).
pub fn seed_pairs_with(
    scale: Scale,
    seeds: &[u64],
    others: &[Variant],
    opts: &RunOptions,
    threads: usize,
) -> Result<Vec<Pair>, LabError> {
    let traces = seeds.iter().flat_map(|&seed| {
        workloads_seeded(scale, seed)
            .into_iter()
            .map(move |t| (t, seed))
    });
    pairs_of(traces, others, opts, threads)
}

/// [`seed_pairs_with`] for any generated traces, each with its seed.
pub fn pairs_of(
    traces: impl IntoIterator<Item = (SyntheticTrace, u64)>,
    others: &[Variant],
    opts: &RunOptions,
    threads: usize,
) -> Result<Vec<Pair>, LabError> {
    let mut inputs = Vec::new();
    let mut names = Vec::new();
    for (t, seed) in traces {
        let input = Input::synthetic(&t)?;
        names.push((t.name.clone(), seed, input.kb_per_page()));
        inputs.push(input);
    }
    let all: Vec<Variant> = variants()
        .into_iter()
        .chain(others.iter().cloned())
        .collect();
    let jobs: Vec<(usize, Variant)> = (0..inputs.len())
        .flat_map(|i| all.iter().map(move |v| (i, v.clone())))
        .collect();
    let opts = RunOptions {
        sample_every: 0,
        ..*opts
    };
    let mut results = run_many(&inputs, &jobs, &opts, threads, &|_, _| {}).into_iter();
    let mut pairs = Vec::new();
    for (workload, seed, kb_per_page) in names {
        let mut next = || results.next().expect("one result per variant and input");
        let linux = next()?;
        let pcpu = next()?;
        let others = others.iter().map(|_| next()).collect::<Result<_, _>>()?;
        pairs.push(Pair {
            workload,
            seed,
            kb_per_page,
            linux,
            pcpu,
            others,
        });
    }
    Ok(pairs)
}

/// One study workload's replays for the targets table.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    /// Column label (e.g. `cover letter (real)`).
    pub short: &'a str,
    /// kB of one page over all units (turns kB into pages per unit).
    pub kb_per_page: u64,
    /// linux-5.14, balance on demand.
    pub linux: &'a RunResult,
    /// `pcpu`, balance on demand.
    pub pcpu: &'a RunResult,
    /// `pcpu` with lifetime classes derived from the trace and `keep_room`
    /// ([`derived_variant`]).
    pub derived: Option<&'a RunResult>,
    /// The same with `pcpu`'s default knobs (`keep_room` off).
    pub derived_default: Option<&'a RunResult>,
}

/// A target's verdict.
fn verdict(met: bool) -> String {
    if met { "yes" } else { "**no**" }.into()
}

/// Writes the targets section: the targets on the study's workloads, then
/// the synthetic workloads over other seeds (`pairs`, from [`seed_pairs`]),
/// and the derived lifetime classes also over `holdout` seeds (when their
/// pairs carry [`DERIVED`] runs).
pub fn section(md: &mut String, checked: &[Checked], pairs: &[Pair], holdout: &[Pair]) {
    use std::fmt::Write as _;
    let _ = writeln!(md, "## 8. The `pcpu` policy's targets\n");
    let _ = writeln!(
        md,
        "The targets set for the `pcpu` policy, measured on the replays above (balance work on \
         demand, no hints unless said). *Outside the first chunk* leaves out the first chunk, \
         static area included, and the reserved chunk, which no policy depopulates.\n"
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for c in checked {
        let pages = |kb: u64| kb / c.kb_per_page.max(1);
        if let (Some(lc), Some(pc)) = (c.linux.phase("C"), c.pcpu.phase("C")) {
            // The floor target is set for the cover letter's 1000 x 10 cgroups.
            if c.pcpu.input.contains("1000x10") {
                rows.push(vec![
                    "placement floor at C ≤ 1506 pages/unit".into(),
                    c.short.into(),
                    format!("{} (linux-5.14 {})", pages(pc.floor_kb), pages(lc.floor_kb)),
                    verdict(pages(pc.floor_kb) <= 1506),
                ]);
            }
            if let (Some(lb), Some(pb)) = (c.linux.phase("B"), c.pcpu.phase("B")) {
                let ch = percent(pb.percpu_kb, lb.percpu_kb);
                rows.push(vec![
                    "Percpu at B (the peak) within +1% of linux-5.14".into(),
                    c.short.into(),
                    format!("{ch:+.2}%"),
                    verdict(ch <= 1.0),
                ]);
            }
            if let (Some(p), Some(l)) = (
                resident_over_floor(c.pcpu, "C"),
                resident_over_floor(c.linux, "C"),
            ) {
                rows.push(vec![
                    "resident ≤ 1.01 × floor at C, outside the first chunk".into(),
                    c.short.into(),
                    format!("{p:.3} (linux-5.14 {l:.3})"),
                    verdict(p <= 1.01),
                ]);
            }
        }
    }
    for c in checked {
        let (w, at) = worst_phase(c.pcpu, c.linux);
        rows.push(vec![
            "no phase more than +1% above linux-5.14".into(),
            c.short.into(),
            format!("worst {w:+.2}% ({at})"),
            verdict(w <= 1.0),
        ]);
    }
    for c in checked.iter().filter(|c| c.short.contains("churn")) {
        let t = percent(c.pcpu.populated_pages, c.linux.populated_pages);
        rows.push(vec![
            "no more pages populated than linux-5.14 (churn)".into(),
            c.short.into(),
            format!(
                "{} vs {} ({t:+.1}%)",
                c.pcpu.populated_pages, c.linux.populated_pages
            ),
            verdict(t <= 0.0),
        ]);
    }
    for c in checked {
        if let Some((w, at)) = c.derived.and_then(worst_floor_over_ideal) {
            let bound = c
                .derived
                .and_then(worst_class_bound_over_ideal)
                .map(|(b, bat)| format!("; least possible {b:+.2}% ({bat})"))
                .unwrap_or_default();
            rows.push(vec![
                "lifetime classes derived from the trace (`keep_room`): floor within 1% of ideal \
                 at every phase"
                    .into(),
                c.short.into(),
                format!("worst {w:+.2}% ({at}){bound}"),
                verdict(w <= 1.0),
            ]);
        }
    }
    crate::study::md_table(
        md,
        &["target", "workload", "measured", "met"].map(String::from),
        &rows,
    );
    traffic_note(md, checked);
    derived_note(md, checked);
    seeds_table(md, pairs, holdout);
}

/// Why page traffic on churn misses its target: what the troughs force, and
/// how much of `pcpu`'s lead at the troughs populating no more than
/// linux-5.14 would leave.
fn traffic_note(md: &mut String, checked: &[Checked]) {
    use std::fmt::Write as _;
    let _ = write!(
        md,
        "Page traffic on churn cannot meet its target together with the others: over a round \
         the pages populated are at least the peak minus the trough, the peaks are at the \
         floor for both policies, and `pcpu` gives back more at the troughs (§2e sweeps the \
         refault reserve that trades one for the other)."
    );
    for c in checked.iter().filter(|c| c.short.contains("churn")) {
        let kpp = c.kb_per_page;
        let forced = marker_forced_pages(c.pcpu, kpp);
        let (below, n) = below_before_rises(c.pcpu, c.linux, kpp);
        // Raising those troughs by the excess would bring the pages their
        // refills populate down to linux-5.14's.
        let excess = forced as i64 - c.linux.populated_pages as i64;
        let left = (below - excess.max(0)).max(0);
        let share = if below > 0 {
            left as f64 / below as f64 * 100.0
        } else {
            0.0
        };
        let _ = write!(
            md,
            " On {}, `pcpu` populates {} pages per unit, of which the Percpu at its phase markers \
             alone forces {} (linux-5.14: {} populated, {} forced); at the {n} markers a refill follows it is \
             {below} pages per unit below linux-5.14 in total, and with its peaks it could stay \
             only {left} of them ({share:.0}%) below and populate no more than linux-5.14.",
            c.short,
            c.pcpu.populated_pages,
            forced,
            c.linux.populated_pages,
            marker_forced_pages(c.linux, kpp),
        );
    }
    let _ = writeln!(md, "\n");
}

/// Why the derived lifetime classes miss their target: the least floor
/// page-exclusive classes allow, against what the placement reached.
fn derived_note(md: &mut String, checked: &[Checked]) {
    use std::fmt::Write as _;
    // (workload, bound, its phase, measured worst) for the derived runs.
    let runs: Vec<(&str, f64, String, f64)> = checked
        .iter()
        .filter_map(|c| {
            let (w, _) = c.derived.and_then(worst_floor_over_ideal)?;
            let (b, at) = c.derived.and_then(worst_class_bound_over_ideal)?;
            Some((c.short, b, at, w))
        })
        .collect();
    if runs.is_empty() {
        return;
    }
    let out_of_reach: Vec<String> = runs
        .iter()
        .filter(|r| r.1 > 1.0)
        .map(|(w, b, at, m)| format!("{w} {b:+.2}% at {at} (measured worst {m:+.2}%)"))
        .collect();
    let placement: Vec<String> = runs
        .iter()
        .filter(|r| r.1 <= 1.0 && r.3 > 1.0)
        .map(|(w, b, at, m)| format!("{w} {m:+.2}% against {b:+.2}% at {at}"))
        .collect();
    let _ =
        write!(
        md,
        "*Least possible* is the floor of a placement that packs each lifetime class perfectly \
         onto pages of its own (its live bytes rounded up to whole pages, summed over the \
         classes), which is what a lifetime class means: objects of one class share pages, \
         objects of two classes never do. With k classes alive each can leave up to a page \
         partly used, and at the troughs, where little is live, those pages are more than 1% of \
         the ideal. Where this bound itself is above +1%, no placement of page-exclusive classes \
         can meet the target: {}. ",
        if out_of_reach.is_empty() { "nowhere here".into() } else { out_of_reach.join(", ") },
    );
    if placement.is_empty() {
        let _ = write!(
            md,
            "Everywhere else the placement stays within 1%: with `keep_room` a class opens its \
             regions outside the free room of the classes used last (a new chunk rather than \
             cutting into it), so classes allocating in turn do not interleave page by page. "
        );
    } else {
        let _ = write!(
            md,
            "Where it is below and the target is still missed, the rest is placement: {}. ",
            placement.join(", ")
        );
    }
    // The same classes with pcpu's default knobs.
    let default: Vec<String> = checked
        .iter()
        .filter_map(|c| {
            let (d, at) = c.derived_default.and_then(worst_floor_over_ideal)?;
            let (k, _) = c.derived.and_then(worst_floor_over_ideal)?;
            Some(format!("{} {d:+.2}% ({at}; {k:+.2}% with it)", c.short))
        })
        .collect();
    let _ = writeln!(
        md,
        "Without `keep_room` (off by default: with one class per request it would spread \
         requests over more chunks), classes cut into each other's room and the worst phases \
         are: {}.\n",
        default.join(", ")
    );
}

/// Lifetime classes derived from the trace over the seeds (the pairs'
/// [`DERIVED`] runs, when there are any): how many traces meet the 1%
/// target, how many cannot (their page-exclusive bound is above it), and
/// how far placement stays from the bound.
fn derived_seeds_table(md: &mut String, pairs: &[Pair], which: &str) {
    use std::fmt::Write as _;
    let mut rows = Vec::new();
    // Traces whose bound allows the target, and of those, the ones meeting it.
    let (mut feasible, mut met, mut total) = (0, 0, 0);
    for w in workloads(pairs) {
        // (worst floor over ideal, its phase, worst bound over ideal, seed,
        // largest floor over bound at one phase in points of the ideal).
        let runs: Vec<(f64, String, f64, u64, f64)> = pairs
            .iter()
            .filter(|p| p.workload == w)
            .filter_map(|p| {
                let r = p.others.iter().find(|r| r.label == DERIVED)?;
                let (m, at) = worst_floor_over_ideal(r)?;
                let (b, _) = worst_class_bound_over_ideal(r)?;
                let gap = r
                    .phases
                    .iter()
                    .filter(|x| x.ideal_kb > 0)
                    .filter_map(|x| {
                        let over = x.floor_kb as f64 - x.class_bound_kb? as f64;
                        Some(100.0 * over / x.ideal_kb as f64)
                    })
                    .fold(0.0, f64::max);
                Some((m, at, b, p.seed, gap))
            })
            .collect();
        let Some(largest) = runs.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
            continue;
        };
        let gap = runs.iter().map(|r| r.4).fold(0.0, f64::max);
        total += runs.len();
        feasible += runs.iter().filter(|r| r.2 <= 1.0).count();
        met += runs.iter().filter(|r| r.2 <= 1.0 && r.0 <= 1.0).count();
        rows.push(vec![
            w.to_string(),
            runs.len().to_string(),
            runs.iter().filter(|r| r.0 <= 1.0).count().to_string(),
            runs.iter().filter(|r| r.2 > 1.0).count().to_string(),
            format!("{:+.2}% (seed {}, {})", largest.0, largest.3, largest.1),
            format!("{gap:.2}"),
        ]);
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Lifetime classes derived from the trace over {which}, with `pcpu`, `keep_room` and \
         the balance work on demand: the floor against the ideal at the worst phase of each trace, \
         and against the least floor page-exclusive classes allow.\n"
    );
    crate::study::md_table(
        md,
        &[
            "workload",
            "traces",
            "within 1% of ideal at every phase",
            "bound itself above 1%",
            "worst phase, largest",
            "floor above the bound, largest (points of the ideal)",
        ]
        .map(String::from),
        &rows,
    );
    let _ = writeln!(
        md,
        "{met} of the {feasible} traces whose bound is within 1% meet the target; the other {} \
         traces cannot while each class keeps pages of its own.\n",
        total - feasible
    );
}

/// The median of `v`, sorted ascending (the mean of the middle two for an
/// even count; NaN when empty).
pub(crate) fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The pairs' workloads, each once, in the order they first appear.
pub(crate) fn workloads<'p>(pairs: impl IntoIterator<Item = &'p Pair>) -> Vec<&'p str> {
    let mut out: Vec<&str> = Vec::new();
    for p in pairs {
        if !out.contains(&p.workload.as_str()) {
            out.push(&p.workload);
        }
    }
    out
}

/// The seed robustness table and its summary line.
fn seeds_table(md: &mut String, pairs: &[Pair], holdout: &[Pair]) {
    use std::fmt::Write as _;
    let above = worst_phase_table(md, pairs, "(the study's workloads are seed 1)");
    if above.is_some() {
        cover_letter_floors(md, pairs);
    }
    let above_holdout = worst_phase_table(
        md,
        holdout,
        &format!(
            "(`keep_room` was chosen on seeds 1 to 8; `pcpu`'s task regions' order and \
             long-lived prediction on seeds 1 to {0}, so only seeds above {0} are held out for \
             them; its back-fill on seeds 1 to {1})",
            crate::study::PLACEMENT_TUNED_ON,
            crate::study::BACKFILL_TUNED_ON
        ),
    );
    if above.unwrap_or(0) + above_holdout.unwrap_or(0) > 0 {
        let _ = writeln!(
            md,
            "Where a trace is above, the floor change in parentheses tells placement (a higher \
             floor) from depopulation (the same floor, more pages kept).\n"
        );
    }
    derived_seeds_table(md, pairs, "the same seeds");
    if let (Some(lo), Some(hi)) = (
        holdout.iter().map(|p| p.seed).min(),
        holdout.iter().map(|p| p.seed).max(),
    ) {
        derived_seeds_table(
            md,
            holdout,
            &format!("seeds {lo} to {hi} (held out: `keep_room` was chosen on the ones above)"),
        );
    }
}

/// The worst phase of `pcpu` against linux-5.14 over `pairs`, per workload,
/// and the traces above +1%; `which` says what the seeds are. The number of
/// traces above; `None` (nothing written) when `pairs` is empty.
fn worst_phase_table(md: &mut String, pairs: &[Pair], which: &str) -> Option<usize> {
    use std::fmt::Write as _;
    let workloads = workloads(pairs);
    let seeds: Vec<u64> = {
        let mut s: Vec<u64> = pairs.iter().map(|p| p.seed).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let (Some(lo), Some(hi)) = (seeds.first(), seeds.last()) else {
        return None;
    };
    let _ = writeln!(
        md,
        "The same generators again with seeds {lo} to {hi} {which}: `pcpu` against \
         linux-5.14, balance work on demand. The worst phase is the largest Percpu increase at \
         any phase marker of one trace.\n"
    );
    // Each pair's worst phase, once: (change, phase).
    let worsts: Vec<(f64, String)> = pairs.iter().map(Pair::worst_phase).collect();
    let mut rows = Vec::new();
    for w in &workloads {
        let mine: Vec<&Pair> = pairs.iter().filter(|p| p.workload == *w).collect();
        let mut worst: Vec<(f64, &str, u64)> = pairs
            .iter()
            .zip(&worsts)
            .filter(|(p, _)| p.workload == *w)
            .map(|(p, (c, at))| (*c, at.as_str(), p.seed))
            .collect();
        worst.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n_over = worst.iter().filter(|w| w.0 > 1.0).count();
        let n = worst.len();
        let median = median_of_sorted(&worst.iter().map(|w| w.0).collect::<Vec<_>>());
        let max = &worst[n - 1];
        let traffic: Vec<f64> = mine.iter().map(|p| p.traffic()).collect();
        let t_lo = traffic.iter().copied().fold(f64::INFINITY, f64::min);
        let t_hi = traffic.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        rows.push(vec![
            (*w).to_string(),
            mine.len().to_string(),
            format!("{median:+.2}%"),
            format!("{:+.2}% (seed {}, {})", max.0, max.2, max.1),
            n_over.to_string(),
            format!("{t_lo:+.1}% to {t_hi:+.1}%"),
        ]);
    }
    crate::study::md_table(
        md,
        &[
            "workload",
            "traces",
            "worst phase, median",
            "worst phase, largest",
            "traces with a phase above +1%",
            "pages populated against linux-5.14",
        ]
        .map(String::from),
        &rows,
    );
    let mut above: Vec<String> = Vec::new();
    for (p, &(c, ref at)) in pairs.iter().zip(&worsts) {
        if c > 1.0 {
            let short = p.workload.split('-').next().unwrap_or(&p.workload);
            let floor = match (p.pcpu.phase(at), p.linux.phase(at)) {
                (Some(a), Some(b)) => format!(" (floor {:+.1}%)", percent(a.floor_kb, b.floor_kb)),
                _ => String::new(),
            };
            above.push(format!("{short} seed {} {at} {c:+.1}%{floor}", p.seed));
        }
    }
    let over = above.len();
    let _ = writeln!(
        md,
        "{over} of {} generated traces have a phase more than 1% above linux-5.14{}.\n",
        pairs.len(),
        if above.is_empty() {
            String::new()
        } else {
            format!(": {}", above.join(", "))
        }
    );
    Some(over)
}

/// The placement floor at C over the seeds of the workloads that have a
/// phase C (the cover letter), against the floor target where it applies.
fn cover_letter_floors(md: &mut String, pairs: &[Pair]) {
    use std::fmt::Write as _;
    let floor_c =
        |r: &RunResult, kb_per_page: u64| r.phase("C").map(|c| c.floor_kb / kb_per_page.max(1));
    let floors: Vec<(u64, u64, bool)> = pairs
        .iter()
        .filter_map(|p| {
            Some((
                floor_c(&p.pcpu, p.kb_per_page)?,
                floor_c(&p.linux, p.kb_per_page)?,
                p.workload.contains("1000x10"),
            ))
        })
        .collect();
    if floors.is_empty() {
        return;
    }
    let range = |f: &dyn Fn(&(u64, u64, bool)) -> u64| {
        let lo = floors.iter().map(f).min().unwrap_or(0);
        let hi = floors.iter().map(f).max().unwrap_or(0);
        format!("{lo} to {hi}")
    };
    let target = if floors.iter().all(|f| f.2) {
        let met = floors.iter().filter(|f| f.0 <= 1506).count();
        format!(
            " (at most 1506 on {met} of {}: each surviving parent's burst, 2048 bytes once its \
             counter is pooled, fills one page, where groups of 2052 bytes at random page \
             offsets pinned about 1.5: §5d)",
            floors.len()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "The cover letter's placement floor at C over these seeds, in pages per unit: `pcpu` \
         {}{target}; linux-5.14 {}.\n",
        range(&|f| f.0),
        range(&|f| f.1)
    );
}
