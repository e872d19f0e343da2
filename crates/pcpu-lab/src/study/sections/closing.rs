//! The document's closing sections: cost (§7), the `pcpu` policy's targets
//! (§8), replay fidelity on the real captures, method and limits, and how to
//! reproduce.

use std::fmt::Write as _;

use super::Ctx;
use crate::study::format::{md_table, pct};
use crate::study::sweeps::Results;
use crate::targets;

/// §7: cost proxies (balance runs, page operations, chunks created, and
/// optionally wall time) per policy.
pub(super) fn cost(md: &mut String, ctx: &Ctx) {
    let Ctx { cfg, subjects, .. } = *ctx;
    let Results { pol, .. } = ctx.res;
    let _ = writeln!(md, "## 7. Cost\n");
    let _ = writeln!(
        md,
        "A replay cannot count instructions. Deterministic proxies: balance runs and backend \
         page operations (populate/depopulate calls) per 1000 allocation/free events, whole \
         policies, balance on demand{}:\n",
        if cfg.timings {
            "; and, as a rough proxy of allocator cost, the replay's wall time per event \
             (varies from run to run)"
        } else {
            ""
        }
    );
    let mut rows = Vec::new();
    for s in subjects {
        for r in pol.input(&s.input.name).unwrap_or(&[]) {
            let per_k = |x: u64| {
                format!(
                    "{:.2}",
                    x as f64 * 1000.0 / r.alloc_free_events.max(1) as f64
                )
            };
            let mut row = vec![
                s.short.clone(),
                r.label.clone(),
                per_k(r.balance_runs),
                per_k(r.page_ops),
                r.chunks_created.to_string(),
            ];
            if cfg.timings {
                row.push(format!(
                    "{:.0}",
                    r.wall_s * 1e9 / r.alloc_free_events.max(1) as f64
                ));
            }
            rows.push(row);
        }
    }
    let mut headers: Vec<String> = [
        "workload",
        "policy",
        "balance runs / 1k events",
        "page ops / 1k events",
        "chunks created",
    ]
    .map(String::from)
    .to_vec();
    if cfg.timings {
        headers.push("replay wall time, ns / event".into());
    }
    md_table(md, &headers, &rows);
    if !cfg.timings {
        let _ = writeln!(
            md,
            "(Wall times are left out so that this file is identical from run to run; \
             `pcpu study --timings` adds them.)\n"
        );
    }
}

/// §8: the `pcpu` policy's targets, through [`targets::section`].
pub(super) fn targets(md: &mut String, ctx: &Ctx) {
    let Ctx {
        subjects,
        seed_pairs,
        ..
    } = *ctx;
    let Results {
        pol, place_pcpu, ..
    } = ctx.res;
    let checked: Vec<targets::Checked> = subjects
        .iter()
        .filter_map(|s| {
            Some(targets::Checked {
                short: &s.short,
                kb_per_page: s.input.kb_per_page(),
                linux: pol.get(&s.input.name, "linux-5.14")?,
                pcpu: pol.get(&s.input.name, "pcpu")?,
                derived: place_pcpu.get(&s.input.name, targets::DERIVED),
                derived_default: place_pcpu.get(&s.input.name, "lifetime classes"),
            })
        })
        .collect();
    targets::section(md, &checked, seed_pairs, ctx.holdout_pairs);
}

/// Replay fidelity: linux-6.1 against the kernel's own figures on the real
/// captures (only when there are some).
pub(super) fn fidelity(md: &mut String, ctx: &Ctx) {
    let Ctx { fidelity, .. } = *ctx;
    if !fidelity.is_empty() {
        let _ = writeln!(md, "## Replay fidelity on the real captures\n");
        let _ = writeln!(
            md,
            "The numbers above are only as good as the replay: linux-6.1 at the recorded balance \
             points, against the kernel's own `/proc/meminfo` figures.\n"
        );
        let mut rows = Vec::new();
        for r in fidelity {
            for p in &r.phases {
                rows.push(vec![
                    r.input.clone(),
                    p.name.clone(),
                    p.percpu_kb.to_string(),
                    p.kernel_percpu_kb.map_or("–".into(), |k| k.to_string()),
                    p.kernel_percpu_kb
                        .map_or("–".into(), |k| pct(p.percpu_kb, k)),
                ]);
            }
            rows.push(vec![
                r.input.clone(),
                "placement agreement".into(),
                r.placement_agreement.map_or("–".into(), |a| {
                    format!("{:.3}%", (a * 100_000.0).floor() / 1000.0)
                }),
                String::new(),
                String::new(),
            ]);
        }
        md_table(
            md,
            &["capture", "phase", "ours kB", "kernel kB", "diff"].map(String::from),
            &rows,
        );
        let differs = fidelity
            .iter()
            .flat_map(|r| &r.phases)
            .any(|p| p.kernel_percpu_kb.is_some_and(|k| k != p.percpu_kb));
        if differs {
            let _ = writeln!(
                md,
                "Which pages a difference is made of: `cargo run --release -p pcpu-replay \
                 --example traffic_diff -- CAPTURE --at LINE` lists the pages populated in the \
                 kernel and not in the replay (or the reverse) at a phase marker's trace line. \
                 DESIGN.md §9 reads those of the shared captures: each is a page the kernel kept \
                 populated because its balance run lost a re-queue, which a replay cannot time.\n"
            );
        }
    }
}

/// Method and limits.
pub(super) fn method(md: &mut String, ctx: &Ctx) {
    let Ctx { cfg, .. } = *ctx;
    let _ = writeln!(md, "## Method and limits\n");
    let _ = writeln!(
        md,
        "* Replays run pcpu-core's policies (`pcpu_core::Policy`) with simulated placement. \
         Knobs varied: `reclaim_divisor`, `reclaim_min_pages`, `rfc_marked_threshold`, \
         `empty_pop_low/high`, `refault_reserve_divisor`, `sideline`, `fit` (first, next, \
         best), `class_placement` with the replay's class modes (task, size class, call site, \
         derived lifetime), `long_lived`, per-CPU magazines, and the balance schedule.\n\
         * Thrash: a page re-populated within {} balance runs (or {} allocation/free events) of \
         its depopulation, counted per chunk and page from the replay's page-operation log.\n\
         * Sidelining alone (question 3) is the `sideline` knob of `Policy`; the rest of each \
         policy stays as it is.\n\
         * Magazines (4b) are modelled per traced CPU for requests of at most 256 bytes and \
         drained at every balance run. A kernel implementation would also drain them on a \
         timer or under memory pressure: that would lower what they hold at the troughs, not \
         how few allocations they serve.\n\
         * Size and call-site classes are page-exclusive regions inside shared chunks, not \
         separate chunks.\n\
         * The synthetic traces' kernel placement columns come from pcpu-core's linux-6.1 \
         model; their Percpu markers carry no kernel figure (a 0 kB placeholder the lab \
         ignores).\n\
         * `pcpu` is this project's own policy as built for this run; it is being tuned, so \
         its rows change with the code.\n\
         * The targets (§8) are checked on the replays of the questions above{}.\n",
        cfg.options.thrash_runs,
        cfg.options.thrash_events,
        if cfg.seeds > 0 {
            "; the seed table generates each synthetic workload again with other seeds, same \
             parameters"
        } else {
            ""
        }
    );
}

/// How to reproduce the document.
pub(super) fn reproduce(md: &mut String, ctx: &Ctx) {
    let Ctx { cfg, .. } = *ctx;
    let _ = writeln!(md, "## How to reproduce\n");
    let _ = writeln!(
        md,
        "From the repository root (release build; the run takes about two minutes on two cores):\n\n\
         ```sh\ncargo run --release -p pcpu-cli -- {}\n```\n",
        cfg.command.strip_prefix("pcpu ").unwrap_or(&cfg.command)
    );
    let _ = writeln!(
        md,
        "The synthetic workloads are generated in memory from fixed seeds (`pcpu gen <workload> \
         --out DIR` writes any of them as a capture folder). The real captures are read from {}; \
         a missing one is skipped with a note. `--json` also writes every result to \
         `policy-study.json`; `--timings` adds wall times.\n",
        if cfg.captures.is_empty() {
            "nowhere (none given)".to_string()
        } else {
            cfg.captures
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(" and ")
        }
    );
}
