//! Questions 4 and 5, on placement: separate chunks for small objects (the
//! slab idea and per-CPU magazines), and placement by task and by lifetime.

use std::fmt::Write as _;

use super::pins::per_cgroup;
use super::Ctx;
use crate::run::LabError;
use crate::study::compare::{best_line, pairs};
use crate::study::format::{md_table, pct, question};
use crate::study::subjects::{after_kb, floor_kb, ideal_kb, refill_kb};
use crate::study::sweeps::Results;
use crate::study::writer::Writer;
use crate::targets;

/// §4: separate chunks for small objects (size and call-site classes).
pub(super) fn small_objects(md: &mut String, ctx: &Ctx) {
    let Ctx {
        subjects,
        answers,
        per_placement,
        ..
    } = *ctx;
    let Results { place, .. } = ctx.res;
    question(
        md,
        "## 4. Do small objects need their own chunks (the slab idea)?",
        &answers[3].1,
    );
    let _ = writeln!(
        md,
        "Roman: \"probably the right thing to do long-term is to introduce some sort of a slab \
         allocator. At least, we can put small allocations (aka percpu reference counters) into \
         separate chunks.\" Size classes give every power-of-two size bucket pages of its own \
         (page-exclusive regions: the nearest pcpu-core gets to separate chunks); call-site \
         classes do the same per allocating function. Both run on the 5.14 depopulation rules, \
         against Linux's first fit; the floor is what placement alone decides, peak and refill \
         what it costs while the objects are alive.\n"
    );
    let mut rows = Vec::new();
    for s in subjects {
        for r in place.input(&s.input.name).unwrap_or(&[]) {
            rows.push(vec![
                s.short.clone(),
                r.label.clone(),
                after_kb(s, r).to_string(),
                floor_kb(s, r).to_string(),
                ideal_kb(s, r).to_string(),
                refill_kb(s, r).to_string(),
                r.peak_kb.to_string(),
                r.chunks_created.to_string(),
            ]);
        }
    }
    md_table(
        md,
        &[
            "workload",
            "placement (5.14 rules)",
            "after removals kB",
            "floor kB",
            "ideal kB",
            "refill kB",
            "peak kB",
            "chunks created",
        ]
        .map(String::from),
        &rows,
    );
    if let Some((_, first)) = per_placement.first() {
        let _ = writeln!(
            md,
            "Why, on the {} at phase C: pages per surviving cgroup (`mkdir` task) by placement, from the pin report:\n",
            first.trace
        );
        let mut rows = Vec::new();
        for (label, r) in per_placement {
            let (n, touched, pinned) = per_cgroup(r);
            rows.push(vec![
                label.clone(),
                n.to_string(),
                format!("{touched:.2}"),
                format!("{pinned:.2}"),
                (r.kb(r.used_pages as f64) as u64).to_string(),
                r.by_call_site.first().map_or("-".into(), |c| {
                    format!("`{}` ({} pages)", c.owner, c.pages_pinned)
                }),
            ]);
        }
        md_table(
            md,
            &[
                "placement",
                "surviving cgroups",
                "pages touched per cgroup",
                "pages pinned per cgroup",
                "pages holding live objects, kB",
                "call site pinning most",
            ]
            .map(String::from),
            &rows,
        );
        let touched = |l: &str| {
            per_placement
                .iter()
                .find(|(x, _)| x == l)
                .map(|(_, r)| per_cgroup(r))
        };
        if let (Some(ff), Some(sc), Some(lt)) = (
            touched("first fit"),
            touched("size classes"),
            touched("lifetime classes"),
        ) {
            let _ = writeln!(
                md,
                "A cgroup's objects come in {} sizes; with size classes each surviving cgroup is spread over one region per size, among the removed cgroups' objects of that size: {:.2} pages touched ({:.2} pinned alone) per surviving cgroup, against {:.2} ({:.2}) with first fit and {:.2} ({:.2}) with lifetime classes, whose survivors share their pages.\n",
                {
                    let mut sizes: Vec<u32> =
                        crate::gen::MEMCG_GROUP.iter().map(|s| s.size).collect();
                    sizes.sort_unstable();
                    sizes.dedup();
                    sizes.len()
                },
                sc.1,
                sc.2,
                ff.1,
                ff.2,
                lt.1,
                lt.2
            );
        }
    }
}

/// §4b: per-CPU magazines of freed objects.
pub(super) fn magazines(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx { subjects, .. } = *ctx;
    let Results { mag, .. } = ctx.res;
    let _ = writeln!(
        md,
        "### 4b. The other slab idea: a per-CPU cache of freed objects\n\n\
         The slab allocators answer small-object churn with per-CPU caches of freed objects \
         (magazines); librseq's percpu pool is a free list. `pcpu_core::Magazine` models one in \
         front of the 5.14 rules: a free on CPU *c* goes to *c*'s magazine of that size and \
         alignment (a full one frees its older half), an allocation on *c* takes from it \
         first, and every balance run drains all magazines before it works, so reclaim sees \
         their areas. A cached area stays allocated: the cost is memory, the gain the \
         bookkeeping of each allocation it serves (an alloc+free pair through a magazine \
         takes 8 ns in the core instead of 60 ns, BENCHMARKS.md).\n"
    );
    md.push_str(&w.sweep_section(mag, "linux-5.14 rules, per-CPU magazines varied")?);
    let mut rows = Vec::new();
    for s in subjects {
        let results = mag.input(&s.input.name).unwrap_or(&[]);
        let Some(off) = results.iter().find(|r| r.label == "off") else {
            continue;
        };
        let allocs = off.allocs.max(1);
        let mut row = vec![s.short.clone()];
        for r in results.iter().filter(|r| r.label != "off") {
            let (worst, _) = targets::worst_phase(r, off);
            row.push(format!(
                "{:.1}%, {} ({}), {:+.1}%",
                100.0 * r.magazine_hits as f64 / allocs as f64,
                r.populated_pages,
                pct(r.populated_pages, off.populated_pages),
                worst
            ));
        }
        rows.push(row);
    }
    let mut headers = vec!["workload".to_string()];
    headers.extend(
        mag.sweep
            .variants
            .iter()
            .filter(|v| v.label != "off")
            .map(|v| format!("magazine of {}", v.label)),
    );
    let _ = writeln!(
        md,
        "Per magazine size: allocations served by a magazine, pages populated over the run \
         (change against no magazine) and the worst phase against no magazine (largest Percpu \
         increase at any phase marker):\n"
    );
    md_table(md, &headers, &rows);
    let _ = writeln!(
        md,
        "Magazines serve few allocations on these workloads: cgroups and BPF programs free \
         their per-CPU objects in bulk, long after allocating them, and the next objects of a \
         size mostly come from another task on another CPU after the magazines were drained. \
         What the magazines hold stays populated until the next balance run, which only a free \
         that reaches the allocator schedules: the worst phases are troughs and trace ends{}. So the kernel \
         has little to gain from them, and pcpu-core keeps them opt-in; the `pcpu` crate's \
         thread cache is for the other pattern, programs that allocate and free per-CPU \
         objects at a high rate on one thread, and is bounded per thread.\n",
        subjects
            .iter()
            .find(|s| s.short == "cover letter (syn)")
            .and_then(|s| {
                let on = mag.get(&s.input.name, "32")?.phase("D")?.percpu_kb;
                let off = mag.get(&s.input.name, "off")?.phase("D")?.percpu_kb;
                Some(format!(
                    " (with magazines of 32, the synthetic cover letter's phase D holds {on} kB against {off} kB)"
                ))
            })
            .unwrap_or_default()
    );
    Ok(())
}

/// §5: placement by task and by lifetime, next fit and best fit.
pub(super) fn placement(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx {
        subjects, answers, ..
    } = *ctx;
    let Results {
        place, place_pcpu, ..
    } = ctx.res;
    question(
        md,
        "## 5. Placement: keep each task's objects together, or each lifetime",
        &answers[4].1,
    );
    let _ = writeln!(
        md,
        "A cgroup's objects are allocated by one `mkdir` and freed together; first fit \
         scatters them over holes left by others, so one surviving cgroup keeps several \
         otherwise free pages resident. Task-contiguous placement keeps each allocating task's \
         objects in one run; lifetime classes (derived from the trace: objects freed in the \
         same phase share pages) are the upper bound of what lifetime hints could do. Next fit \
         and best fit change only where inside the chunk the slot walk chose an object goes \
         (the `fit` knob of `Policy`): next fit continues after the previous allocation, best \
         fit takes the smallest free run that fits.\n"
    );
    md.push_str(&w.sweep_section(place, "linux-5.14 rules, placement varied")?);
    let _ = writeln!(
        md,
        "Floor after removals, task-contiguous against first fit: {}. Lifetime classes against first fit: {}. Next fit against first fit: {}; its cost is at the peaks, refill against first fit: {}.\n",
        pairs(subjects, place, "task-contiguous", "first fit", &floor_kb),
        pairs(subjects, place, "lifetime classes", "first fit", &floor_kb),
        pairs(subjects, place, "next fit", "first fit", &floor_kb),
        pairs(subjects, place, "next fit", "first fit", &refill_kb)
    );
    let _ = writeln!(
        md,
        "The same with the `pcpu` policy's depopulation rules:\n"
    );
    md.push_str(&w.sweep_section(place_pcpu, "pcpu rules, placement varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload, 5.14 rules: {}. With pcpu rules: {}.\n",
        best_line(subjects, place),
        best_line(subjects, place_pcpu)
    );
    Ok(())
}

/// §5b: long-lived prediction for one-object tasks.
pub(super) fn long_lived(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx { subjects, .. } = *ctx;
    let Results { long_lived, .. } = ctx.res;
    let _ = writeln!(
        md,
        "### 5b. Tasks that allocate one object: long-lived prediction\n\n\
         Some tasks allocate one percpu object and exit: `mount` (a mount's counters), `ip` \
         (a network device, a namespace's MIB statistics). Their objects tend to live as long \
         as the system. Task-contiguous placement puts each where that one task's region \
         opened, next to objects that die sooner, where it later pins a page of its own. With \
         `long_lived` (on in `pcpu`) the allocator learns, per call site, whether the tasks \
         whose first object came from it stayed at one object (no second object while the next \
         64 other objects are placed); a small first object from a site whose tasks \
         mostly did goes to one shared long-lived region, a page at a time, whose room other \
         tasks keep out of. A site whose tasks allocate in one burst (a cgroup's `mkdir`) is never \
         predicted; tasks that interleave their objects with many others' could be.\n"
    );
    md.push_str(&w.sweep_section(long_lived, "pcpu rules, long-lived prediction varied")?);
    let mut ends = Vec::new();
    for s in subjects {
        let (Some(off), Some(on)) = (
            long_lived.get(&s.input.name, "off"),
            long_lived.get(&s.input.name, "on"),
        ) else {
            continue;
        };
        let same = on.phases.len() == off.phases.len()
            && on
                .phases
                .iter()
                .zip(&off.phases)
                .all(|(a, b)| a.percpu_kb == b.percpu_kb);
        if same {
            continue;
        }
        let (worst, at) = targets::worst_phase(on, off);
        let end = match (on.phase("END"), off.phase("END")) {
            (Some(a), Some(b)) => format!(
                ", at the end {} kB against {} kB ({})",
                a.percpu_kb,
                b.percpu_kb,
                pct(a.percpu_kb, b.percpu_kb)
            ),
            _ => String::new(),
        };
        ends.push(format!(
            "{}: worst phase against off {worst:+.2}% ({at}){end}",
            s.short
        ));
    }
    if !ends.is_empty() {
        let _ = writeln!(
            md,
            "Where it changes anything: {}. The shared page's room is kept free while other \
             tasks would fill it, which is the cost at the peaks; at the troughs each page \
             given back is populated again by the next round, so more pages are depopulated \
             over the run (the traffic table).\n",
            ends.join("; ")
        );
    } else {
        let _ = writeln!(md, "It changes no phase of these workloads.\n");
    }
    Ok(())
}
