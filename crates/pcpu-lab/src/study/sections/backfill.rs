//! §5c: back-filling beside survivors (`Policy::backfill`), on the study's
//! workloads and over the seeds.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{LabError, RunResult};
use crate::study::compare::{changes, over_seeds, seed_span, OverSeeds};
use crate::study::format::{md_table, span};
use crate::study::subjects::after_kb;
use crate::study::writer::Writer;
use crate::study::BACKFILL_TUNED_ON;
use crate::targets::{percent, Pair};

/// Label of the seed replays without back-fill ([`Pair::others`]).
pub(crate) const NO_BACKFILL: &str = "pcpu, backfill off";

/// `§5c`, "Back-filling beside survivors".
pub(super) fn backfill(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx {
        subjects,
        seed_pairs,
        holdout_pairs,
        ..
    } = *ctx;
    let res = ctx.res.backfill;
    let _ = writeln!(
        md,
        "### 5c. Refilling beside the survivors first (`backfill`)\n\n\
         After a removal the survivors are scattered, each pinning its page, and the next \
         round's tasks open their regions with first fit: the lowest free run of the chunk the \
         slot walk chose, often one that starts on an empty page, which then has to be \
         populated while the room beside the survivors stays free. Where a refill ends inside \
         a chunk, that room is what the peak has above the placement floor. With `backfill` (on \
         in `pcpu`) a task opens its region, in the same chunk, in the first free run of at \
         least three eighths of a page that starts on a page already holding objects, and only \
         without one in the first fit. Smaller holes stay with first fit (a task's objects would \
         be split over them); looking across chunks instead spreads every refill over every \
         chunk (32 of 162 traces, seeds 1 to 40 and the two real captures, above +1% of \
         linux-5.14). One exception: a \
         small request whose walk first comes to an active chunk more than three quarters free \
         (the spare chunk a large object opened) takes a run beside the survivors of an \
         isolated chunk first; otherwise the refill goes on in that chunk while isolated \
         chunks keep their room.\n"
    );
    md.push_str(&w.sweep_section(res, "pcpu rules, back-fill varied")?);
    let after = changes(subjects, res, "on", "off", &after_kb);
    let _ = writeln!(
        md,
        "On the study's workloads, back-filling changes resident memory after removals by {}.\n",
        span(&after)
    );
    let chosen = seeds_table(
        md,
        seed_pairs,
        "seen when the rule and its run length were chosen",
    );
    let held = seeds_table(md, holdout_pairs, "");
    if chosen || held {
        let _ = writeln!(
            md,
            "The rule, its run length and its deferral threshold were chosen looking at seeds \
             1 to {BACKFILL_TUNED_ON}, so none of the study's seeds is held out for them; \
             `pcpu study --holdout-seeds 132` adds seeds 41 to 140, of which seeds 101 to 140 \
             were generated after the choice. Back-filling costs page traffic: the pages beside the \
             survivors are filled first, so more whole pages are left empty at the next \
             trough and given back (the traffic table above).\n"
        );
    }
    Ok(())
}

/// The `pcpu` run of `pair` with back-fill `on`, or without it.
fn backfill_run(pair: &Pair, on: bool) -> Option<&RunResult> {
    if on {
        Some(&pair.pcpu)
    } else {
        pair.others.iter().find(|r| r.label == NO_BACKFILL)
    }
}

/// Back-fill on and off over `pairs` (generated traces replayed under
/// linux-5.14, `pcpu` and `pcpu` without back-fill): traces with a phase
/// above +1%, the largest excess, resident memory after removals. False
/// without traces.
fn seeds_table(md: &mut String, pairs: &[Pair], note: &str) -> bool {
    let mut rows = Vec::new();
    for (label, on) in [("off", false), ("on (`pcpu`)", true)] {
        let Some(OverSeeds {
            above,
            largest: (worst, at),
            mut after,
        }) = over_seeds(pairs, |p| backfill_run(p, on))
        else {
            continue;
        };
        let mut traffic: Vec<f64> = pairs
            .iter()
            .filter(|p| p.workload.starts_with("churn"))
            .filter_map(|p| {
                backfill_run(p, on).map(|r| percent(r.populated_pages, p.linux.populated_pages))
            })
            .collect();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        rows.push(vec![
            label.to_string(),
            after.len().to_string(),
            above.to_string(),
            format!("{worst:+.2}% ({at})"),
            format!("{:+.1}%", median(&mut after).unwrap_or(0.0)),
            median(&mut traffic).map_or("n/a".into(), |t| format!("{t:+.1}%")),
        ]);
    }
    if rows.is_empty() {
        return false;
    }
    let seeds = seed_span(pairs.iter().map(|p| p.seed));
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("; {note}")
    };
    let _ = writeln!(
        md,
        "The five generators again with seeds {seeds} (`pcpu` with and without back-fill, \
         balance work on demand, against linux-5.14 on the same trace{note}):\n",
    );
    md_table(
        md,
        &[
            "back-fill".to_string(),
            "traces".into(),
            "traces with a phase above +1%".into(),
            "worst phase, largest".into(),
            "resident after removals, median".into(),
            "pages populated on churn, median".into(),
        ],
        &rows,
    );
    true
}
