//! The seed experiment on real memory: Roman Gushchin's memory-cgroup test
//! (create 1000 parent cgroups with 10 children each, remove the children,
//! then the parents), with each cgroup's per-CPU allocations made by this
//! crate, once per policy.
//!
//! Each *group* allocates what a Linux 6.1 memory cgroup allocates with
//! `alloc_percpu`, in this order (size/alignment in bytes):
//!
//! | object (call site in the trace)          | size | align |
//! |------------------------------------------|------|-------|
//! | `percpu_ref_init`                        | 8    | 8     |
//! | `cgroup_rstat_init`                      | 64   | 8     |
//! | `psi_cgroup_alloc`                       | 128  | 64    |
//! | `percpu_ref_init`                        | 8    | 8     |
//! | `mem_cgroup_css_alloc` (vmstats)         | 1096 | 8     |
//! | `mem_cgroup_css_alloc` (lruvec stats)    | 688  | 8     |
//! | `__percpu_counter_init`                  | 4    | 4     |
//! | `percpu_ref_init` ×2                     | 8    | 8     |
//! | `perf_cgroup_css_alloc`                  | 32   | 8     |
//! | `percpu_ref_init`                        | 8    | 8     |
//!
//! This is the order of one `mkdir`'s allocations in the real 6.1 capture
//! (`kernel-traces/memcg-1000x10-smp4`).
//!
//! As in the kernel, where each cgroup is created by its own `mkdir` process,
//! each group is created by its own short-lived thread (the `pcpu` policy
//! keeps each thread's objects together; the Linux policies do not care).
//! The `+hints` rows run the same policy with lifetime hints: parents in one
//! [`Lifetime`] class, children in another.
//!
//! Groups are created parent first, then its children (parent 0, its
//! children, parent 1, …), so removing the children frees 10 of every 11
//! groups evenly across the chunks: the partially-free case that 5.14's
//! depopulation targets.
//!
//! Phases, each measured after the balance work went idle:
//! `initial` (fresh allocator), `created` (all groups alive), `removed` (the
//! children freed), `end` (everything freed).
//!
//! # Report schema (stable)
//!
//! [`DemoReport`] serialises to JSON as
//!
//! ```json
//! { "units": 2, "page_size": 4096, "groups": 11000,
//!   "policies": [
//!     { "policy": "linux-5.14",
//!       "phases": [ { "name": "initial", "percpu_kb": 32, "resident_kb": 32 }, … ] } ] }
//! ```
//!
//! `percpu_kb` is the allocator's `/proc/meminfo` `Percpu:` figure (populated
//! pages × units × page size); `resident_kb` is the memory the allocator's
//! mappings take (`PerCpuAllocator::resident_bytes`: pages backed by memory,
//! from `/proc/self/pagemap`). Fields are only ever added.

use std::fmt::Write as _;
use std::time::Duration;

use pcpu_core::{Policy, PolicyKind};
use serde::Serialize;

use crate::error::Error;
use crate::hint::{with_lifetime, Lifetime};
use crate::raw::RawPerCpu;
use crate::PerCpuAllocator;

/// Size and alignment of each per-CPU object of one group, in allocation
/// order (see the module docs).
pub const GROUP_OBJECTS: [(usize, usize); 11] = [
    (8, 8),
    (64, 8),
    (128, 64),
    (8, 8),
    (1096, 8),
    (688, 8),
    (4, 4),
    (8, 8),
    (8, 8),
    (32, 8),
    (8, 8),
];

/// The most groups one run creates (`parents × (1 + children)`): each is a
/// thread and ten allocations, and a million already takes minutes.
pub const MAX_GROUPS: usize = 1_000_000;

/// Phase names, in order.
pub const PHASES: [&str; 4] = ["initial", "created", "removed", "end"];

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Parent groups (default 1000).
    pub parents: usize,
    /// Children per parent (default 10).
    pub children: usize,
    /// Policies, one fresh allocator each (default linux-5.11, seed-rfc,
    /// linux-5.14, pcpu).
    pub policies: Vec<Policy>,
    /// Policies run once more with lifetime hints (parents and children in
    /// different classes), reported as `<policy>+hints` (default: pcpu).
    /// A policy is named as it prints: knobs off their defaults included.
    pub hinted: Vec<Policy>,
    /// Unit size of the allocators (default 512 KiB).
    pub unit_size: usize,
    /// Units of the allocators (default: the possible CPUs). More units
    /// than possible CPUs stand for a machine with CPUs that never run the
    /// process: their units take no memory (`Builder::prefault`).
    pub units: Option<usize>,
    /// Longest wait for the balance thread to go idle after a phase
    /// (default 30 s).
    pub settle_timeout: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            parents: 1000,
            children: 10,
            policies: vec![
                Policy::new(PolicyKind::Linux511),
                Policy::new(PolicyKind::SeedRfc),
                Policy::new(PolicyKind::Linux514),
                Policy::pcpu(),
            ],
            hinted: vec![Policy::pcpu()],
            unit_size: crate::DEFAULT_UNIT_SIZE,
            units: None,
            settle_timeout: Duration::from_secs(30),
        }
    }
}

impl DemoConfig {
    /// Total groups: `parents × (1 + children)` (saturating: [`run`]
    /// refuses more than [`MAX_GROUPS`]).
    pub fn groups(&self) -> usize {
        self.parents.saturating_mul(self.children.saturating_add(1))
    }
}

/// The measurements of one run; see the module docs for the JSON schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DemoReport {
    /// Units of every allocator (possible CPUs).
    pub units: usize,
    /// Page size in bytes.
    pub page_size: usize,
    /// Groups created per policy.
    pub groups: usize,
    /// One entry per policy, in the configured order.
    pub policies: Vec<PolicyReport>,
}

/// The phases of one policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// Policy name (`linux-5.14`, …).
    pub policy: String,
    /// Measurements in phase order.
    pub phases: Vec<PhaseReport>,
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PhaseReport {
    /// Phase name (see [`PHASES`]).
    pub name: String,
    /// The allocator's `Percpu:` figure in KiB.
    pub percpu_kb: u64,
    /// Resident KiB of the allocator's mappings
    /// ([`PerCpuAllocator::resident_bytes`]).
    pub resident_kb: u64,
}

impl DemoReport {
    /// A plain-text table: one row per phase, `percpu_kb/resident_kb` per
    /// policy.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<8}", "phase");
        for p in &self.policies {
            let _ = write!(out, " {:>22}", format!("{} kB (rss)", p.policy));
        }
        out.push('\n');
        for (i, name) in PHASES.iter().enumerate() {
            let _ = write!(out, "{name:<8}");
            for p in &self.policies {
                let cell = p.phases.get(i).map_or_else(String::new, |ph| {
                    format!("{} ({})", ph.percpu_kb, ph.resident_kb)
                });
                let _ = write!(out, " {cell:>22}");
            }
            out.push('\n');
        }
        out
    }
}

/// Run the experiment. `progress(label, done, total)` is called as groups are
/// created and freed (label `"<policy>: create"`, `"<policy>: remove
/// children"`, `"<policy>: remove parents"`, `"<policy>: settle"`).
///
/// # Errors
/// Building an allocator or allocating failed ([`Error::Map`] when memory
/// runs out).
pub fn run(
    cfg: &DemoConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<DemoReport, Error> {
    if cfg.groups() > MAX_GROUPS {
        return Err(Error::InvalidConfig {
            setting: "demo groups (parents x (1 + children))",
            value: cfg.groups(),
            reason: "at most 1,000,000",
        });
    }
    let mut report = DemoReport {
        units: 0,
        page_size: 0,
        groups: cfg.groups(),
        policies: Vec::new(),
    };
    let runs = cfg
        .policies
        .iter()
        .map(|&p| (p, false))
        .chain(cfg.hinted.iter().map(|&p| (p, true)));
    for (policy, hints) in runs {
        let mut builder = PerCpuAllocator::builder()
            .policy(policy)
            .unit_size(cfg.unit_size);
        if let Some(units) = cfg.units {
            builder = builder.units(units);
        }
        let alloc = builder.build()?;
        report.units = alloc.units();
        report.page_size = alloc.page_size();
        report
            .policies
            .push(run_policy(&alloc, cfg, hints, progress)?);
    }
    Ok(report)
}

/// One group's objects.
type Group = [RawPerCpu; GROUP_OBJECTS.len()];

fn run_policy(
    alloc: &PerCpuAllocator,
    cfg: &DemoConfig,
    hints: bool,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<PolicyReport, Error> {
    // The policy as it parses back: its name, and any knob set off its
    // default (`pcpu:keep_room=true`).
    let name = if hints {
        format!("{}+hints", alloc.policy())
    } else {
        alloc.policy().to_string()
    };
    let mut phases = Vec::with_capacity(PHASES.len());
    let mut measure =
        |phase: &str, progress: &mut dyn FnMut(&str, usize, usize)| -> Result<(), Error> {
            progress(&format!("{name}: settle"), 0, 1);
            alloc.wait_idle(cfg.settle_timeout);
            progress(&format!("{name}: settle"), 1, 1);
            phases.push(PhaseReport {
                name: phase.to_owned(),
                percpu_kb: alloc.stats().percpu_bytes / 1024,
                resident_kb: alloc.resident_bytes()? / 1024,
            });
            Ok(())
        };
    measure(PHASES[0], progress)?;

    let total = cfg.groups();
    let label = format!("{name}: create");
    let mut parents: Vec<Group> = Vec::with_capacity(cfg.parents);
    let mut children: Vec<Group> = Vec::with_capacity(cfg.parents * cfg.children);
    for _ in 0..cfg.parents {
        parents.push(create_group(alloc, hints.then_some(Lifetime(0)))?);
        for _ in 0..cfg.children {
            children.push(create_group(alloc, hints.then_some(Lifetime(1)))?);
        }
        progress(&label, parents.len() + children.len(), total);
    }
    measure(PHASES[1], progress)?;

    free_groups(
        alloc,
        children,
        &format!("{name}: remove children"),
        progress,
    )?;
    measure(PHASES[2], progress)?;
    free_groups(alloc, parents, &format!("{name}: remove parents"), progress)?;
    measure(PHASES[3], progress)?;
    Ok(PolicyReport {
        policy: name,
        phases,
    })
}

/// Create one group on a thread of its own (the kernel's `mkdir` process).
fn create_group(alloc: &PerCpuAllocator, class: Option<Lifetime>) -> Result<Group, Error> {
    let make = || -> Result<Group, Error> {
        let mut group = [None; GROUP_OBJECTS.len()];
        for (slot, &(size, align)) in group.iter_mut().zip(GROUP_OBJECTS.iter()) {
            let raw = match class {
                Some(c) => with_lifetime(c, || alloc.alloc_raw(size, align)),
                None => alloc.alloc_raw(size, align),
            };
            match raw {
                Ok(raw) => *slot = Some(raw),
                Err(e) => {
                    for raw in group.iter().flatten() {
                        let _ = alloc.free_raw(*raw);
                    }
                    return Err(e);
                }
            }
        }
        Ok(group.map(|r| r.expect("every object allocated")))
    };
    std::thread::scope(|s| {
        s.spawn(make)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn free_groups(
    alloc: &PerCpuAllocator,
    groups: Vec<Group>,
    label: &str,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(), Error> {
    let total = groups.len();
    for (i, group) in groups.into_iter().enumerate() {
        for raw in group {
            alloc.free_raw(raw)?;
        }
        progress(label, i + 1, total);
    }
    Ok(())
}
