//! §2e: page traffic under churn and `pcpu`'s refault-aware reserve, on the
//! study's workloads and over the seeds.

use std::fmt::Write as _;

use pcpu_core::Policy;

use super::Ctx;
use crate::run::{LabError, RunResult, Schedule, Variant};
use crate::study::compare::{over_seeds, seed_span, OverSeeds};
use crate::study::format::{md_table, pct, plural};
use crate::study::writer::Writer;
use crate::targets::{self, percent, Pair};

/// The refault reserves (`1/N` of the pages in use) replayed over the seeds
/// beside `pcpu`'s own setting (off).
const SEED_DIVISORS: [usize; 3] = [8, 5, 4];

/// The label of `pcpu` with refault reserve `1/d` among a pair's others.
fn label(d: usize) -> String {
    format!("refault reserve 1/{d}")
}

/// `pcpu` with each of [`SEED_DIVISORS`], for the seed pairs.
pub(in crate::study) fn seed_variants() -> Vec<Variant> {
    SEED_DIVISORS
        .iter()
        .map(|&d| {
            let mut p = Policy::pcpu();
            p.refault_reserve_divisor = d;
            Variant {
                schedule: Schedule::Modelled,
                ..Variant::new(label(d), p)
            }
        })
        .collect()
}

/// The run of `pair` with refault reserve `1/d` (0: `pcpu` itself, off).
fn reserve_run(pair: &Pair, d: usize) -> Option<&RunResult> {
    if d == Policy::pcpu().refault_reserve_divisor {
        Some(&pair.pcpu)
    } else {
        pair.others.iter().find(|r| r.label == label(d))
    }
}

/// `§2e`.
pub(super) fn refault_reserve(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let subjects = ctx.subjects;
    let pol = ctx.res.pol;
    let rr = ctx.res.rr;
    let _ = writeln!(
        md,
        "### 2e. Page traffic under churn: the refault-aware reserve (`pcpu`)\n\n\
         Packing empties pages completely, so on a churn workload `pcpu` gives back at every \
         trough pages that the next round populates again, where 5.14's scattered placement \
         leaves them pinned. Over one round the pages populated are at least the peak minus \
         the trough, so with equal peaks no policy can both sit lower than 5.14 at the troughs \
         and populate fewer pages than 5.14 does: the two targets meet only where the troughs \
         are equal. `pcpu` therefore adapts: each page that reclaim depopulates gets a stamp \
         from a reclaim clock, and a page populated again `d` reclaimed pages later (a refault) \
         shows that `d` more empty pages would have kept it. Reclaim then stops that many \
         pages above the reserve, capped at a fraction of the pages in use, and the amount \
         decays as reclaim goes on without refaults. Without refaults (the cover letter's \
         one-way removal) it never engages. Where it engages it keeps memory at the troughs to \
         save traffic, and a trough kept above 5.14's breaks the other target; the last table \
         replays the settings over the seeds to show where.\n"
    );
    md.push_str(&w.sweep_section(rr, "pcpu, refault reserve varied")?);
    let mut rows = Vec::new();
    for s in subjects {
        let Some(l) = pol.get(&s.input.name, "linux-5.14") else {
            continue;
        };
        let mut row = vec![s.short.clone(), l.populated_pages.to_string()];
        for r in rr.input(&s.input.name).unwrap_or(&[]) {
            let (worst, _) = targets::worst_phase(r, l);
            row.push(format!(
                "{} ({}), {:+.1}%",
                r.populated_pages,
                pct(r.populated_pages, l.populated_pages),
                worst
            ));
        }
        rows.push(row);
    }
    let mut headers = vec!["workload".to_string(), "linux-5.14 populated".into()];
    headers.extend(
        rr.sweep
            .variants
            .iter()
            .map(|v| format!("pcpu, {}", v.label)),
    );
    let _ = writeln!(
        md,
        "Pages populated over the whole run (change against linux-5.14) and the worst phase \
         against linux-5.14 (largest Percpu increase at any phase marker):\n"
    );
    md_table(md, &headers, &rows);
    let all: Vec<&Pair> = ctx.seed_pairs.iter().chain(ctx.holdout_pairs).collect();
    seeds_table(md, &all);
    Ok(())
}

/// The refault reserves over `pairs` (generated traces, each replayed under
/// linux-5.14, `pcpu` and `pcpu` with each reserve), per workload: traces
/// with a phase above +1% and the largest excess, and the pages populated
/// and resident memory after removals against linux-5.14; then what the
/// settings trade ([`conclusion`]).
fn seeds_table(md: &mut String, pairs: &[&Pair]) {
    // The traces of each workload, in the order the workloads first appear.
    let by_workload: Vec<(&str, Vec<&Pair>)> = targets::workloads(pairs.iter().copied())
        .into_iter()
        .map(|wl| {
            (
                wl,
                pairs.iter().copied().filter(|p| p.workload == wl).collect(),
            )
        })
        .collect();
    let mut rows = Vec::new();
    let mut settings: Vec<Setting> = Vec::new();
    for d in [Policy::pcpu().refault_reserve_divisor]
        .into_iter()
        .chain(SEED_DIVISORS)
    {
        let mut setting = Setting {
            divisor: d,
            above: 0,
            churn_traffic: None,
            churn_after: None,
        };
        for (wl, of) in &by_workload {
            let Some(OverSeeds {
                above,
                largest: (worst, at),
                after,
            }) = over_seeds(of.iter().copied(), |p| reserve_run(p, d))
            else {
                continue;
            };
            let traffic: Vec<f64> = of
                .iter()
                .filter_map(|p| {
                    let r = reserve_run(p, d)?;
                    Some(percent(r.populated_pages, p.linux.populated_pages))
                })
                .collect();
            let (traffic_median, traffic_span) = median_span(traffic);
            let (after_median, after_span) = median_span(after);
            setting.above += above;
            if wl.starts_with("churn") {
                setting.churn_traffic = Some(traffic_median);
                setting.churn_after = Some(after_median);
            }
            rows.push(vec![
                setting_name(d),
                wl.to_string(),
                of.len().to_string(),
                above.to_string(),
                format!("{worst:+.2}% ({at})"),
                format!("{traffic_median:+.1}% ({traffic_span})"),
                format!("{after_median:+.1}% ({after_span})"),
            ]);
        }
        settings.push(setting);
    }
    if rows.is_empty() {
        return;
    }
    let seeds = seed_span(pairs.iter().map(|p| p.seed));
    let _ = writeln!(
        md,
        "The five generators again with seeds {seeds} (`pcpu` with each refault reserve, \
         balance work on demand, against linux-5.14 on the same trace; resident memory after \
         removals averaged over the phases right after removals):\n",
    );
    md_table(
        md,
        &[
            "refault reserve".to_string(),
            "workload".into(),
            "traces".into(),
            "traces with a phase above +1%".into(),
            "worst phase, largest".into(),
            "pages populated, median (range)".into(),
            "resident after removals, median (range)".into(),
        ],
        &rows,
    );
    conclusion(md, &settings);
}

/// One refault reserve over the seeds.
struct Setting {
    /// `1/divisor` of the pages in use (0: off).
    divisor: usize,
    /// Traces with a phase more than 1% above linux-5.14, all workloads.
    above: usize,
    /// On churn, against linux-5.14 (percent, median over the seeds): the
    /// pages populated, and resident memory after removals.
    churn_traffic: Option<f64>,
    churn_after: Option<f64>,
}

/// "off" or "1/N".
fn setting_name(d: usize) -> String {
    if d == 0 {
        "off".into()
    } else {
        format!("1/{d}")
    }
}

/// The median of `v` and its range as text (`v` not empty).
fn median_span(mut v: Vec<f64>) -> (f64, String) {
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (v[0], v[v.len() - 1]);
    (v[v.len() / 2], format!("{lo:+.1}% to {hi:+.1}%"))
}

/// What the settings trade, in two sentences: the ones that keep every
/// trace within +1% and still save churn traffic, against what they cost
/// at the troughs.
fn conclusion(md: &mut String, settings: &[Setting]) {
    let Some(off) = settings.iter().find(|s| s.divisor == 0) else {
        return;
    };
    let said: Vec<String> = settings
        .iter()
        .map(|s| {
            format!(
                "{}: {} above +1%{}",
                setting_name(s.divisor),
                plural(s.above as u64, "trace", "traces"),
                match (s.churn_traffic, s.churn_after) {
                    (Some(t), Some(a)) => format!(", churn {t:+.1}% / {a:+.1}%"),
                    _ => String::new(),
                }
            )
        })
        .collect();
    let _ = write!(
        md,
        "In all (churn: the medians of the pages populated / resident after removals against \
         linux-5.14): {}. ",
        said.join("; ")
    );
    // The most traffic a setting saves with every trace within +1%.
    let best = settings
        .iter()
        .filter(|s| s.divisor != 0 && s.above == 0)
        .filter_map(|s| {
            let saved = off.churn_traffic? - s.churn_traffic?;
            let cost = s.churn_after? - off.churn_after?;
            Some((s, saved, cost))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((s, saved, cost)) if saved >= 1.0 => {
            let _ = writeln!(
                md,
                "Within +1% everywhere, {} saves the most: {saved:.1} points of churn's \
                 populated pages (still {:+.1}% against linux-5.14), for {cost:.1} points more \
                 resident memory after removals. `pcpu` leaves the knob off: the traffic target \
                 stays out of reach with it, and the memory it keeps is what this policy exists \
                 to give back; `{}` turns it on.\n",
                setting_name(s.divisor),
                s.churn_traffic.unwrap_or(0.0),
                format_args!("pcpu:refault_reserve_divisor={}", s.divisor)
            );
        }
        _ => {
            let _ = writeln!(
                md,
                "No reserve saves a point of churn traffic with every trace within +1% of \
                 linux-5.14: the knob stays off in `pcpu`.\n"
            );
        }
    }
}
