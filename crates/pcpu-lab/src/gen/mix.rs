//! Mixed workloads: cgroups, BPF applications and long-lived small objects.

use super::bpf::{load_app, unload_app};
use super::memcg::{mkdir, MEMCG_TEARDOWN};
use super::{boot, Builder, Machine, ObjId, Site, SyntheticTrace};

/// Long-lived small objects that other subsystems allocate now and then and
/// keep: mounts, network devices, block-device counters.
const LONG_LIVED: [(Site, &str); 4] = [
    (Site::new("alloc_vfsmnt+0x7e/0x1a0", 8, 4), "mount"),
    (Site::new("__percpu_counter_init+0x22/0xa0", 4, 4), "mount"),
    (Site::new("alloc_netdev_mqs+0x5b/0x4a0", 4, 4), "ip"),
    (Site::new("ipv4_mib_init_net+0x2f/0x190", 80, 8), "ip"),
];

/// A mix: each round creates `groups_per_round` memory cgroups and
/// `apps_per_round` BPF applications (see [`super::LargeObjects`]) in a
/// shuffled order, and every `long_lived_every` creations one long-lived
/// small object (mount, network device) that is never freed. Then each
/// cgroup and application is removed with probability `remove_pct`%. At the
/// end all cgroups and applications are removed; the long-lived objects stay
/// and pin whatever pages they landed on.
///
/// Phases: `BOOT`, `A`, `M<r>c` after round r's creations, `M<r>` after its
/// removals, `END`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    /// Rounds.
    pub rounds: u32,
    /// Memory cgroups created per round.
    pub groups_per_round: u32,
    /// BPF applications loaded per round.
    pub apps_per_round: u32,
    /// Chance, in percent, that a live cgroup or application is removed in a
    /// round.
    pub remove_pct: u32,
    /// One long-lived small object every this many creations (0: none).
    pub long_lived_every: u32,
    /// Seed.
    pub seed: u64,
    /// The traced machine.
    pub machine: Machine,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            rounds: 4,
            groups_per_round: 1000,
            apps_per_round: 60,
            remove_pct: 75,
            long_lived_every: 20,
            seed: 1,
            machine: Machine::default(),
        }
    }
}

/// A live unit of the mix.
enum Unit {
    Group(Vec<ObjId>),
    App(Vec<ObjId>),
}

impl Mix {
    /// Trace name, e.g. `mix-4x1000+60-75`.
    pub fn name(&self) -> String {
        format!(
            "mix-{}x{}+{}-{}",
            self.rounds, self.groups_per_round, self.apps_per_round, self.remove_pct
        )
    }

    /// Generates the trace.
    pub fn generate(&self) -> SyntheticTrace {
        let params = format!(
            "mix rounds={} groups_per_round={} apps_per_round={} remove_pct={} long_lived_every={} seed={}",
            self.rounds,
            self.groups_per_round,
            self.apps_per_round,
            self.remove_pct,
            self.long_lived_every,
            self.seed
        );
        let mut t = Builder::new(self.machine, self.seed, &params);
        boot(&mut t);
        t.phase("A");
        let p = f64::from(self.remove_pct.min(100)) / 100.0;
        let mut live: Vec<Unit> = Vec::new();
        let mut created = 0u32;
        for r in 1..=self.rounds {
            let mut kinds: Vec<bool> = std::iter::repeat(true)
                .take(self.groups_per_round as usize)
                .chain(std::iter::repeat(false).take(self.apps_per_round as usize))
                .collect();
            t.rng.shuffle(&mut kinds);
            for is_group in kinds {
                live.push(if is_group {
                    Unit::Group(mkdir(&mut t))
                } else {
                    Unit::App(load_app(&mut t, 1024, 32_768))
                });
                created += 1;
                if self.long_lived_every > 0 && created % self.long_lived_every == 0 {
                    let (site, comm) = LONG_LIVED[t.rng.below(LONG_LIVED.len() as u64) as usize];
                    let ctx = t.process(comm);
                    t.tick(100, 2_000);
                    t.alloc(&ctx, site);
                }
            }
            t.phase(&format!("M{r}c"));
            let mut kept = Vec::new();
            let mut groups = Vec::new();
            for u in live.drain(..) {
                if !t.rng.chance(p) {
                    kept.push(u);
                    continue;
                }
                match u {
                    Unit::Group(g) => groups.push(g),
                    Unit::App(a) => unload_app(&mut t, &a),
                }
            }
            MEMCG_TEARDOWN.run(&mut t, &groups);
            live = kept;
            t.tick(500_000, 500_000);
            t.phase(&format!("M{r}"));
        }
        let mut groups = Vec::new();
        for u in live.drain(..) {
            match u {
                Unit::Group(g) => groups.push(g),
                Unit::App(a) => unload_app(&mut t, &a),
            }
        }
        MEMCG_TEARDOWN.run(&mut t, &groups);
        t.tick(500_000, 500_000);
        t.phase("END");
        t.finish(self.name())
    }
}
