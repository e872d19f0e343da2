//! Questions 1 to 3, on depopulation: how often to run the balance work,
//! which triggers, and whether to pack allocations after depopulation
//! (sidelining).

use std::fmt::Write as _;

use super::Ctx;
use crate::run::{LabError, RunResult};
use crate::study::compare::{best_line, changes, changes_of, pairs};
use crate::study::format::{md_table, question, span};
use crate::study::subjects::{after_kb, mean_over, refill_kb};
use crate::study::sweeps::Results;
use crate::study::writer::{timeline_chart, Writer};

/// §1: how often the balance work should scan and depopulate (balance
/// schedules, reclaim batching).
pub(super) fn how_often(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx {
        subjects, answers, ..
    } = *ctx;
    let Results {
        sched,
        sched_rfc,
        batch,
        ..
    } = ctx.res;
    question(
        md,
        "## 1. How often should the balance work scan and depopulate?",
        &answers[0].1,
    );
    let _ = writeln!(
        md,
        "Dennis: \"What is the right frequency to do depopulation scanning? … Depopulation isn't \
         necessarily as high a priority.\" Roman: the number of candidate chunks is the metric. \
         5.14 answered with no scanning at all: candidates are picked on the free path and the \
         work runs whenever a free queues one. Here the same rules run on demand, at the \
         kernel's recorded runs (real captures), at only every Nth recorded run (a work item \
         that runs N times less often), or from a periodic timer every N allocation/free events \
         (whether scheduled or not). Any trace replays under these schedules with `pcpu compare \
         TRACE --balance every-run=N` or `--balance timer=N`.\n"
    );
    md.push_str(&w.sweep_section(sched, "linux-5.14 rules")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}.\n",
        best_line(subjects, sched)
    );
    let _ = writeln!(
        md,
        "The same schedules for the RFC's rules (`seed-rfc`: marked chunks, grow-or-shrink, slot \
         scan from the top):\n"
    );
    md.push_str(&w.sweep_section(sched_rfc, "seed-rfc rules")?);
    let _ = writeln!(
        md,
        "### 1b. Reclaim batching\n\n\
         5.14 depopulates every queued chunk in one run (with `cond_resched()` between \
         chunks). A run that reclaims at most N chunks and schedules itself again bounds the \
         work per run. On demand that changes nothing here (a free queues one chunk and the run \
         follows at once), so the runs below come from a periodic timer every 1024 \
         allocation/free events, between which chunks queue up.\n"
    );
    md.push_str(&w.sweep_section(
        batch,
        "linux-5.14 rules, every 1024 events, chunks per run varied",
    )?);
    let _ = writeln!(
        md,
        "One chunk per run against all: resident after removals {}, pages depopulated {}: \
         a bounded run leaves memory populated until later runs catch up.\n",
        span(&changes(subjects, batch, "1 chunk", "all", &after_kb)),
        span(&changes_of(subjects, batch, "1 chunk", "all", &|r| r.depopulated_pages))
    );
    Ok(())
}

/// §2: the triggers (empty fraction, absolute threshold, candidate chunks,
/// reserve of empty pages); the refault-aware reserve is `refault.rs`.
pub(super) fn triggers(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx {
        subjects, answers, ..
    } = *ctx;
    let Results {
        div, minp, mt, ep, ..
    } = ctx.res;
    question(
        md,
        "## 2. Are \"1/4 of pages free\" and \"2 or more candidate chunks\" the right triggers?",
        &answers[1].1,
    );
    let _ = writeln!(
        md,
        "The RFC marked a chunk when more than 1/4 of its pages were free and populated (and it \
         was not alone in its slot), and scheduled depopulation once 2 or more chunks were \
         marked. 5.14 kept the 1/4 rule (as `>=`), dropped the slot and 2-chunk rules, and \
         instead requires the system to keep more than `EMPTY_POP_PAGES_HIGH` empty pages \
         without the chunk. Four knobs are swept, one at a time.\n"
    );
    let _ = writeln!(md, "### 2a. The empty fraction (5.14's `nr_pages / 4`)\n");
    md.push_str(&w.sweep_section(div, "linux-5.14, fraction varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}. Any empty page against 1/4: {}.\n",
        best_line(subjects, div),
        pairs(subjects, div, "any page", "1/4", &after_kb)
    );
    let _ = writeln!(
        md,
        "### 2b. An absolute threshold instead (fraction off, at least N empty pages)\n\n\
         With 128-page chunks, 32 pages is the same threshold as 1/4.\n"
    );
    md.push_str(&w.sweep_section(minp, "linux-5.14, fraction off, minimum varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}.\n",
        best_line(subjects, minp)
    );
    let _ = writeln!(md, "### 2c. The RFC's \"2 or more candidate chunks\"\n");
    md.push_str(&w.sweep_section(mt, "seed-rfc, threshold varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}. One candidate against two: {}.\n",
        best_line(subjects, mt),
        pairs(subjects, mt, "1 chunk", "2 chunks", &after_kb)
    );
    let _ = writeln!(
        md,
        "### 2d. The reserve of empty pages (`EMPTY_POP_PAGES_LOW/HIGH`)\n\n\
         Roman suggested doubling LOW/HIGH when memcg accounting is on; they were never changed. \
         The reserve is both what reclaim leaves populated and what the work refills.\n"
    );
    md.push_str(&w.sweep_section(ep, "linux-5.14, reserve varied")?);
    let _ = writeln!(
        md,
        "Doubled reserve (4/8) against 2/4: {}.\n",
        pairs(subjects, ep, "4/8", "2/4", &after_kb)
    );
    Ok(())
}

/// §3: packing allocations after depopulation (whole policies, sidelining
/// alone, timelines).
pub(super) fn packing(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx {
        cfg,
        subjects,
        answers,
        ..
    } = *ctx;
    let Results {
        pol,
        side,
        side_pcpu,
        ..
    } = ctx.res;
    question(
        md,
        "## 3. Should allocations be packed into fewer chunks after depopulation?",
        &answers[2].1,
    );
    let _ = writeln!(
        md,
        "Dennis proposed sidelining depopulated chunks so that later allocations go to other \
         chunks first; Roman argued depopulated chunks are naturally deprioritised. 5.14 \
         adopted sidelining: a depopulated chunk moves to a slot after all active slots and is \
         reintegrated on first use. The `sideline` knob of `Policy` isolates that one \
         choice: off, reclaim returns a depopulated chunk to its normal slot, everything else \
         unchanged (the sweeps below). The whole policies are compared first: `seed-rfc` \
         leaves depopulated chunks in their slots, `linux-5.14` sidelines, `linux-5.11` \
         depopulates only whole free chunks, and `pcpu` is this project's policy. *Refill* is the resident \
         memory averaged over the phases right after creation ({}); re-populated pages are \
         pages populated again after a depopulation of the same chunk.\n",
        subjects
            .iter()
            .map(|s| format!("{}: {}", s.short, s.refill.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    md.push_str(&w.sweep_section(pol, "whole policies")?);
    let mut rows = Vec::new();
    for s in subjects {
        for r in pol.input(&s.input.name).unwrap_or(&[]) {
            rows.push(vec![
                s.short.clone(),
                r.label.clone(),
                after_kb(s, r).to_string(),
                refill_kb(s, r).to_string(),
                mean_over(r, &s.after, |p| p.chunks).to_string(),
                r.populated_pages.to_string(),
                r.repopulated_pages.to_string(),
                r.thrash_events_pages.to_string(),
            ]);
        }
    }
    md_table(
        md,
        &[
            "workload".to_string(),
            "policy".into(),
            "after removals kB".into(),
            "refill kB".into(),
            "chunks after removals".into(),
            "populated pages".into(),
            "re-populated pages".into(),
            format!("re-populated within {} events", cfg.options.thrash_events),
        ],
        &rows,
    );
    let _ = writeln!(
        md,
        "5.14 against seed-rfc after removals: {}.\n",
        pairs(subjects, pol, "linux-5.14", "seed-rfc", &after_kb)
    );
    let _ = writeln!(
        md,
        "### Sidelining alone\n\n\
         Under 5.14's rules sidelining does more than order the slot walk: a sidelined chunk \
         stays isolated, so every page that later frees empty in it is reclaimed by the next \
         run, while a chunk returned to its slot becomes a candidate again only once a quarter \
         of its pages are empty. `pcpu` qualifies a chunk with any empty page, so there the \
         knob only changes the order in which chunks are reused.\n"
    );
    md.push_str(&w.sweep_section(side, "linux-5.14, sidelining on and off")?);
    let _ = writeln!(
        md,
        "Refill peak, sidelined against kept in slot (5.14 rules): {}.\n",
        pairs(subjects, side, "sidelined", "kept in slot", &refill_kb)
    );
    md.push_str(&w.sweep_section(side_pcpu, "pcpu, sidelining on and off")?);
    Ok(())
}

/// The end of §3: Percpu over time by policy on the cover letter and churn
/// workloads.
pub(super) fn timelines(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx { subjects, .. } = *ctx;
    let Results { pol, .. } = ctx.res;
    for s in subjects
        .iter()
        .filter(|s| s.short.starts_with("cover letter") || s.short.starts_with("churn"))
    {
        let rs: Vec<&RunResult> = pol.input(&s.input.name).unwrap_or(&[]).iter().collect();
        let slug = s
            .short
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let name = format!("study-timeline-{slug}.svg");
        let title = format!("{}: Percpu over time by policy", s.short);
        let svg = timeline_chart(title.clone(), s, &rs)?;
        w.write(&name, &svg)?;
        let _ = writeln!(md, "![{title}]({name})\n");
    }
    Ok(())
}
