//! Parameter sweeps: one knob varied over a grid, every other setting fixed,
//! replayed over a set of inputs.
//!
//! ```
//! use pcpu_core::Policy;
//! use pcpu_lab::gen::CoverLetter;
//! use pcpu_lab::run::{Input, RunOptions};
//! use pcpu_lab::sweep::{self, Sweep};
//!
//! let input = Input::synthetic(&CoverLetter { parents: 10, children: 3, ..Default::default() }.generate()).unwrap();
//! let s: Sweep = sweep::reclaim_divisor("linux-5.14".parse().unwrap(), &[2, 4, 8]);
//! let results = sweep::run_sweeps(&[input], &[s], &RunOptions::default(), 1, &|_, _| {}).unwrap();
//! assert_eq!(results[0].per_input[0].1.len(), 3);
//! ```

use pcpu_core::{Fit, Policy, Refill};
use pcpu_replay::ClassMode;

use crate::run::{run_many, Input, LabError, RunOptions, RunResult, Schedule, Variant};

/// A knob and the variants that sweep it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// Short identifier (file names, anchors).
    pub id: String,
    /// What is varied (table header).
    pub knob: String,
    /// The points, in order.
    pub variants: Vec<Variant>,
}

impl Sweep {
    /// A sweep of `variants`.
    pub fn new(id: impl Into<String>, knob: impl Into<String>, variants: Vec<Variant>) -> Self {
        Sweep {
            id: id.into(),
            knob: knob.into(),
            variants,
        }
    }

    /// The same sweep with every variant on `schedule`.
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        for v in &mut self.variants {
            v.schedule = schedule;
        }
        self
    }
}

/// `1/d` as a label (`any page` when `d` is so large that the fraction is 0).
fn fraction(d: usize) -> String {
    if d >= 1 << 20 {
        "any page".into()
    } else {
        format!("1/{d}")
    }
}

/// 5.14's candidate rule "at least `nr_pages / d` empty populated pages",
/// for each `d` (Linux: 4).
pub fn reclaim_divisor(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&d| {
            let mut p = base;
            p.reclaim_divisor = d.max(1);
            if d >= 1 << 20 {
                p.reclaim_min_pages = p.reclaim_min_pages.max(1);
            }
            Variant::new(fraction(d), p)
        })
        .collect();
    Sweep::new("reclaim-divisor", "empty fraction to qualify", variants)
}

/// A floor on the candidate rule: at least `n` empty populated pages.
pub fn reclaim_min_pages(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&n| {
            let mut p = base;
            p.reclaim_min_pages = n;
            Variant::new(format!("{n} page{}", if n == 1 { "" } else { "s" }), p)
        })
        .collect();
    Sweep::new("reclaim-min-pages", "minimum empty pages", variants)
}

/// The RFC's "schedule depopulation once more than `t` chunks are marked"
/// (RFC: `t` = 1, i.e. 2 or more candidates), on the `seed-rfc` policy.
pub fn marked_threshold(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&t| {
            let mut p = base;
            p.rfc_marked_threshold = t;
            Variant::new(
                format!("{} chunk{}", t + 1, if t == 0 { "" } else { "s" }),
                p,
            )
        })
        .collect();
    Sweep::new("marked-threshold", "candidates before a run", variants)
}

/// `PCPU_EMPTY_POP_PAGES_LOW/HIGH` pairs (Linux: 2/4): the reserve of empty
/// populated pages that reclaim keeps and the balance work refills.
pub fn empty_pop(base: Policy, values: &[(i32, i32)]) -> Sweep {
    let variants = values
        .iter()
        .map(|&(lo, hi)| {
            let mut p = base;
            p.empty_pop_low = lo;
            p.empty_pop_high = hi;
            Variant::new(format!("{lo}/{hi}"), p)
        })
        .collect();
    Sweep::new("empty-pop", "reserve LOW/HIGH (pages)", variants)
}

/// Chunks reclaimed per balance run (Linux: all queued; `usize::MAX`).
pub fn reclaim_batch(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&n| {
            let mut p = base;
            p.reclaim_batch = n;
            let label = match n {
                usize::MAX => "all".to_string(),
                1 => "1 chunk".to_string(),
                n => format!("{n} chunks"),
            };
            Variant::new(label, p)
        })
        .collect();
    Sweep::new("reclaim-batch", "chunks reclaimed per run", variants)
}

/// `pcpu`'s refault-aware reserve: after refaults, reclaim keeps up to
/// `1/d` of the pages in use as extra empty pages (`0`: off).
pub fn refault_reserve(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&d| {
            let mut p = base;
            p.refault_reserve_divisor = d;
            let label = if d == 0 {
                "off".into()
            } else {
                format!("1/{d}")
            };
            Variant::new(label, p)
        })
        .collect();
    Sweep::new(
        "refault-reserve",
        "refault reserve (of pages in use)",
        variants,
    )
}

/// Sidelining on and off: after reclaim, a depopulated chunk that still
/// holds allocations goes to the sidelined slot (5.14) or back to its slot.
pub fn sideline(base: Policy) -> Sweep {
    let variants = [true, false]
        .into_iter()
        .map(|on| {
            let mut p = base;
            p.sideline = on;
            Variant::new(if on { "sidelined" } else { "kept in slot" }, p)
        })
        .collect();
    Sweep::new("sideline", "depopulated chunks", variants)
}

/// A switch of `Policy` off and on (variants labelled `off` and `on`).
fn switch(base: Policy, id: &str, knob: &str, set: fn(&mut Policy, bool)) -> Sweep {
    let variants = [false, true]
        .into_iter()
        .map(|on| {
            let mut p = base;
            set(&mut p, on);
            Variant::new(if on { "on" } else { "off" }, p)
        })
        .collect();
    Sweep::new(id, knob, variants)
}

/// Long-lived prediction off and on (`Policy::long_lived`).
pub fn long_lived(base: Policy) -> Sweep {
    switch(base, "long-lived", "long-lived prediction", |p, on| {
        p.long_lived = on
    })
}

/// Back-filling beside survivors off and on (`Policy::backfill`).
pub fn backfill(base: Policy) -> Sweep {
    switch(base, "backfill", "back-fill beside survivors", |p, on| {
        p.backfill = on
    })
}

/// Page-tiling bursts off and on (`Policy::tile_bursts`).
pub fn tile_bursts(base: Policy) -> Sweep {
    switch(base, "tile-bursts", "page-tiling bursts", |p, on| {
        p.tile_bursts = on
    })
}

/// Long-running task classes off and on (`Policy::grow_beside`).
pub fn grow_beside(base: Policy) -> Sweep {
    switch(base, "grow-beside", "long-running classes", |p, on| {
        p.grow_beside = on
    })
}

/// The order in which allocations try sidelined chunks (`Policy::refill`),
/// one variant per value, labelled by its name (`kernel`, `fullest`,
/// `room`).
pub fn refill(base: Policy, values: &[Refill]) -> Sweep {
    let variants = values
        .iter()
        .map(|&r| {
            let mut p = base;
            p.refill = r;
            Variant::new(r.name(), p)
        })
        .collect();
    Sweep::new("refill", "sidelined chunks tried", variants)
}

/// Per-CPU magazines of freed areas in front of `base` (`0`: none, as in
/// Linux): the slab allocators' free cache, drained before each balance run.
pub fn magazines(base: Policy, values: &[usize]) -> Sweep {
    let variants = values
        .iter()
        .map(|&n| Variant {
            magazine: n,
            ..Variant::new(
                if n == 0 {
                    "off".to_string()
                } else {
                    n.to_string()
                },
                base,
            )
        })
        .collect();
    Sweep::new("magazine", "per-CPU magazine (areas per size)", variants)
}

/// Balance schedules for one policy.
pub fn schedules(base: Policy, values: &[Schedule]) -> Sweep {
    let variants = values
        .iter()
        .map(|&s| Variant {
            schedule: s,
            ..Variant::new(s.label(), base)
        })
        .collect();
    Sweep::new("schedule", "balance runs", variants)
}

/// Whole policies side by side.
pub fn policies(values: &[Policy]) -> Sweep {
    let variants = values.iter().map(|&p| Variant::new(p.name(), p)).collect();
    Sweep::new("policy", "policy", variants)
}

/// Label of a placement mode.
pub fn placement_label(c: ClassMode) -> &'static str {
    match c {
        ClassMode::None => "first fit",
        ClassMode::Task => "task-contiguous",
        ClassMode::SizeClass => "size classes",
        ClassMode::CallSite => "call-site classes",
        ClassMode::Derived => "lifetime classes",
    }
}

/// Placement modes over one depopulation policy: Linux's first fit
/// (`ClassMode::None`, class placement off) and class placements (on).
pub fn placements(base: Policy, values: &[ClassMode]) -> Sweep {
    let variants = values
        .iter()
        .map(|&c| {
            let mut p = base;
            p.class_placement = c != ClassMode::None;
            Variant {
                classes: c,
                ..Variant::new(placement_label(c), p)
            }
        })
        .collect();
    Sweep::new("placement", "placement", variants)
}

/// Fits other than Linux's first fit inside the chosen chunk
/// ([`Policy::fit`]): labels `next fit` and `best fit`, plain placement.
pub fn fits(base: Policy, values: &[Fit]) -> Vec<Variant> {
    values
        .iter()
        .map(|&f| {
            let mut p = base;
            p.class_placement = false;
            p.fit = f;
            Variant {
                classes: ClassMode::None,
                ..Variant::new(format!("{} fit", f.name()), p)
            }
        })
        .collect()
}

/// The results of one sweep: per input, one result per applicable variant.
#[derive(Clone, Debug)]
pub struct SweepResults {
    /// The sweep.
    pub sweep: Sweep,
    /// `(input name, results in variant order)`; variants that do not apply
    /// to an input (see [`Variant::applies`]) are left out.
    pub per_input: Vec<(String, Vec<RunResult>)>,
}

impl SweepResults {
    /// The results for `input`.
    pub fn input(&self, input: &str) -> Option<&[RunResult]> {
        self.per_input
            .iter()
            .find(|(n, _)| n == input)
            .map(|(_, r)| r.as_slice())
    }

    /// The result of variant `label` on `input`.
    pub fn get(&self, input: &str, label: &str) -> Option<&RunResult> {
        self.input(input)?.iter().find(|r| r.label == label)
    }
}

/// Runs every sweep over every input on `threads` threads (deterministic
/// results whatever the thread count). `progress(done, total)` after each
/// replay.
pub fn run_sweeps(
    inputs: &[Input],
    sweeps: &[Sweep],
    opts: &RunOptions,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<SweepResults>, LabError> {
    let mut jobs = Vec::new();
    for s in sweeps {
        for (i, input) in inputs.iter().enumerate() {
            for v in &s.variants {
                if v.applies(input) {
                    jobs.push((i, v.clone()));
                }
            }
        }
    }
    let mut results = run_many(inputs, &jobs, opts, threads, progress).into_iter();
    let mut out = Vec::new();
    for s in sweeps {
        let mut per_input = Vec::new();
        for input in inputs {
            let mut rs = Vec::new();
            for v in &s.variants {
                if v.applies(input) {
                    rs.push(results.next().expect("one result per job")?);
                }
            }
            per_input.push((input.name.clone(), rs));
        }
        out.push(SweepResults {
            sweep: s.clone(),
            per_input,
        });
    }
    Ok(out)
}
