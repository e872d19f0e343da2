//! Memory-cgroup workloads: the cover letter's pattern and steady churn.

use super::{boot, Builder, Machine, ObjId, Site, SyntheticTrace, Teardown};

/// The 11 percpu objects of one memory cgroup on Linux 6.1, in the order a
/// `mkdir` allocates them (as in the shared capture `memcg-1000x10-smp4`):
/// five `percpu_ref`s (8 B), the rstat counters (64 B), the PSI group
/// (128 B, cache-line aligned), the memcg statistics (1096 B and 688 B), a
/// `percpu_counter` (4 B) and perf's cgroup info (32 B).
pub const MEMCG_GROUP: [Site; 11] = [
    Site::new("percpu_ref_init+0x23/0x120", 8, 8),
    Site::new("cgroup_rstat_init+0x67/0x80", 64, 8),
    Site::new("psi_cgroup_alloc+0x43/0xb0", 128, 64),
    Site::new("percpu_ref_init+0x23/0x120", 8, 8),
    Site::new("mem_cgroup_css_alloc+0xf4/0x680", 1096, 8),
    Site::new("mem_cgroup_css_alloc+0x150/0x680", 688, 8),
    Site::new("__percpu_counter_init+0x22/0xa0", 4, 4),
    Site::new("percpu_ref_init+0x23/0x120", 8, 8),
    Site::new("percpu_ref_init+0x23/0x120", 8, 8),
    Site::new("perf_cgroup_css_alloc+0x33/0x60", 32, 8),
    Site::new("percpu_ref_init+0x23/0x120", 8, 8),
];

/// How a cgroup's objects are freed (indices into [`MEMCG_GROUP`]), as in the
/// capture: the refs from RCU callbacks, then the css objects from a worker,
/// PSI and rstat last.
pub(crate) const MEMCG_TEARDOWN: Teardown = Teardown {
    stage1: &[7, 10, 3, 0, 8],
    stage2: &[6, 5, 4, 9],
    stage3: &[2, 1],
    lag2: 2,
    lag3: 8,
};

/// Creates one cgroup: a new `mkdir` process allocating [`MEMCG_GROUP`].
pub(crate) fn mkdir(t: &mut Builder) -> Vec<ObjId> {
    let ctx = t.process("mkdir");
    t.tick(1_500, 5_000);
    t.alloc_all(&ctx, &MEMCG_GROUP)
}

/// The cover letter's workload ("percpu: partial chunk depopulation"):
/// `parents` memory cgroups with `children` children each, every one created
/// by its own `mkdir` process; then a fraction `remove_children` of the
/// children is removed, then everything else.
///
/// Phases: `BOOT`, `A` (before), `B` (all created), `C` (children removed),
/// `D` (all removed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoverLetter {
    /// Parent cgroups (cover letter: 1000).
    pub parents: u32,
    /// Children per parent (cover letter: 10).
    pub children: u32,
    /// Fraction of the children removed at phase C, chosen pseudo-randomly
    /// (cover letter: 1.0, all of them).
    pub remove_children: f64,
    /// Seed.
    pub seed: u64,
    /// The traced machine.
    pub machine: Machine,
}

impl Default for CoverLetter {
    fn default() -> Self {
        CoverLetter {
            parents: 1000,
            children: 10,
            remove_children: 1.0,
            seed: 1,
            machine: Machine::default(),
        }
    }
}

impl CoverLetter {
    /// Trace name, e.g. `cover-letter-1000x10`.
    pub fn name(&self) -> String {
        let mut n = format!("cover-letter-{}x{}", self.parents, self.children);
        if self.remove_children < 1.0 {
            n.push_str(&format!("-rm{:.0}", self.remove_children * 100.0));
        }
        n
    }

    /// Generates the trace.
    pub fn generate(&self) -> SyntheticTrace {
        let params = format!(
            "cover-letter parents={} children={} remove_children={} seed={}",
            self.parents, self.children, self.remove_children, self.seed
        );
        let mut t = Builder::new(self.machine, self.seed, &params);
        boot(&mut t);
        t.phase("A");
        // (parent, its children) in creation order.
        let mut families: Vec<(Vec<ObjId>, Vec<Vec<ObjId>>)> = Vec::new();
        for _ in 0..self.parents {
            let parent = mkdir(&mut t);
            let children = (0..self.children).map(|_| mkdir(&mut t)).collect();
            families.push((parent, children));
        }
        t.phase("B");
        let mut removed = Vec::new();
        for (_, children) in &mut families {
            let mut kept = Vec::new();
            for c in children.drain(..) {
                if self.remove_children >= 1.0 || t.rng.chance(self.remove_children) {
                    removed.push(c);
                } else {
                    kept.push(c);
                }
            }
            *children = kept;
        }
        MEMCG_TEARDOWN.run(&mut t, &removed);
        t.tick(1_000_000, 1_000_000);
        t.phase("C");
        let mut rest = Vec::new();
        for (parent, children) in families {
            rest.extend(children);
            rest.push(parent);
        }
        MEMCG_TEARDOWN.run(&mut t, &rest);
        t.tick(1_000_000, 1_000_000);
        t.phase("D");
        t.finish(self.name())
    }
}

/// Steady churn, like the shared capture `memcg-churn-smp4`: `rounds` rounds
/// of creating `per_round` cgroups, then removing each existing test cgroup
/// with probability `remove_pct`% (so lifetimes are geometric: most die in
/// their first round, some live for several); at the end everything is
/// removed. New cgroups land on freed space and on partly depopulated chunks.
///
/// Phases: `BOOT`, `A`, then `R<r>c` after round r's creation and `R<r>`
/// after its removals, and `END`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    /// Rounds (capture: 5).
    pub rounds: u32,
    /// Cgroups created per round (capture: 1500).
    pub per_round: u32,
    /// Chance, in percent, that an existing cgroup is removed in a round
    /// (capture: 80).
    pub remove_pct: u32,
    /// Seed.
    pub seed: u64,
    /// The traced machine.
    pub machine: Machine,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            rounds: 5,
            per_round: 1500,
            remove_pct: 80,
            seed: 1,
            machine: Machine::default(),
        }
    }
}

impl Churn {
    /// Trace name, e.g. `churn-5x1500-80`.
    pub fn name(&self) -> String {
        format!(
            "churn-{}x{}-{}",
            self.rounds, self.per_round, self.remove_pct
        )
    }

    /// Generates the trace.
    pub fn generate(&self) -> SyntheticTrace {
        let params = format!(
            "churn rounds={} per_round={} remove_pct={} seed={}",
            self.rounds, self.per_round, self.remove_pct, self.seed
        );
        let mut t = Builder::new(self.machine, self.seed, &params);
        boot(&mut t);
        t.phase("A");
        let mut existing: Vec<Vec<ObjId>> = Vec::new();
        let p = f64::from(self.remove_pct.min(100)) / 100.0;
        for r in 1..=self.rounds {
            for _ in 0..self.per_round {
                existing.push(mkdir(&mut t));
            }
            t.phase(&format!("R{r}c"));
            let (mut gone, mut kept) = (Vec::new(), Vec::new());
            for g in existing.drain(..) {
                if t.rng.chance(p) {
                    gone.push(g);
                } else {
                    kept.push(g);
                }
            }
            existing = kept;
            MEMCG_TEARDOWN.run(&mut t, &gone);
            t.tick(500_000, 500_000);
            t.phase(&format!("R{r}"));
        }
        MEMCG_TEARDOWN.run(&mut t, &existing);
        t.tick(500_000, 500_000);
        t.phase("END");
        debug_assert!(t.live() > 0, "boot objects stay");
        t.finish(self.name())
    }
}
