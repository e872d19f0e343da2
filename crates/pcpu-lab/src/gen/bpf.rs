//! Large-object workloads: BPF-map-like applications.

use super::{boot, Builder, Machine, ObjId, Site, SyntheticTrace};

/// Call site of a per-CPU array map's values (one large object per map).
const ARRAY_VALUES: &str = "bpf_map_alloc_percpu+0x6a/0x160";
/// A per-CPU hash map's pre-allocated extra elements.
const HTAB_EXTRA: &str = "htab_map_alloc+0x2c6/0x570";
/// A hash map's per-CPU free-list heads.
const FREELIST: Site = Site::new("pcpu_freelist_init+0x21/0x90", 16, 8);
/// A hash map's bucket-lock counters (`HASHTAB_MAP_LOCK_COUNT` = 8 of them).
const MAP_LOCK: Site = Site::new("htab_map_alloc+0x1b5/0x570", 4, 4);
/// A program's run-time statistics.
const PROG_STATS: Site = Site::new("bpf_prog_alloc+0x3c/0xc0", 32, 16);
/// A program's recursion counter.
const PROG_ACTIVE: Site = Site::new("bpf_prog_alloc_no_stats+0xf2/0x230", 4, 4);

/// BPF-application-like load and unload of large per-CPU objects: each
/// application (its own `bpftool` process) creates 1–3 maps, each either an
/// array map (one object of 1 KiB–32 KiB) or a hash map (extra elements of
/// the same size range, a free list and 8 lock counters), and 1–3 programs
/// (32 B statistics and a 4 B counter). Sizes are log-uniform in
/// `min_size..=max_size`. Each round loads `apps_per_round` applications,
/// then unloads each live one with probability `unload_pct`%.
///
/// Phases: `BOOT`, `A`, `L<r>c` after round r's loads, `L<r>` after its
/// unloads, `END` after unloading everything.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LargeObjects {
    /// Rounds.
    pub rounds: u32,
    /// Applications loaded per round.
    pub apps_per_round: u32,
    /// Chance, in percent, that a live application is unloaded in a round.
    pub unload_pct: u32,
    /// Smallest large object (bytes, ≥ 8).
    pub min_size: u32,
    /// Largest large object (bytes, ≤ 32768).
    pub max_size: u32,
    /// Seed.
    pub seed: u64,
    /// The traced machine.
    pub machine: Machine,
}

impl Default for LargeObjects {
    fn default() -> Self {
        LargeObjects {
            rounds: 4,
            apps_per_round: 150,
            unload_pct: 70,
            min_size: 1024,
            max_size: 32_768,
            seed: 1,
            machine: Machine::default(),
        }
    }
}

/// A size log-uniform in `lo..=hi`, rounded up to 8 bytes (to the multiple
/// of 8 above `lo` when no multiple of 8 lies in `lo..=hi`).
pub(crate) fn log_uniform(t: &mut Builder, lo: u32, hi: u32) -> u32 {
    let (l, h) = (f64::from(lo.max(8)).ln(), f64::from(hi.max(lo).max(8)).ln());
    let x = (l + t.rng.unit() * (h - l)).exp() as u32;
    let lo8 = lo.max(8).div_ceil(8) * 8;
    let hi8 = (hi.max(8) / 8 * 8).max(lo8);
    (x.div_ceil(8) * 8).clamp(lo8, hi8)
}

/// Loads one application: its objects, in allocation order.
pub(crate) fn load_app(t: &mut Builder, min_size: u32, max_size: u32) -> Vec<ObjId> {
    let ctx = t.process("bpftool");
    t.tick(2_000, 20_000);
    let mut objs = Vec::new();
    for _ in 0..t.rng.range(1, 3) {
        let size = log_uniform(t, min_size, max_size);
        t.tick(20, 400);
        if t.rng.chance(0.6) {
            objs.push(t.alloc(&ctx, Site::new(ARRAY_VALUES, size, 8)));
        } else {
            objs.push(t.alloc(&ctx, Site::new(HTAB_EXTRA, size, 8)));
            objs.push(t.alloc(&ctx, FREELIST));
            for _ in 0..8 {
                t.tick(1, 10);
                objs.push(t.alloc(&ctx, MAP_LOCK));
            }
        }
    }
    for _ in 0..t.rng.range(1, 3) {
        t.tick(50, 800);
        objs.extend(t.alloc_all(&ctx, &[PROG_STATS, PROG_ACTIVE]));
    }
    objs
}

/// Unloads an application: programs and maps are freed from RCU callbacks
/// and deferred work, last object first.
pub(crate) fn unload_app(t: &mut Builder, objs: &[ObjId]) {
    let ctx = if t.rng.chance(0.5) {
        t.rcu_ctx()
    } else {
        t.worker_ctx()
    };
    t.tick(500, 5_000);
    for &id in objs.iter().rev() {
        t.tick(2, 60);
        t.free(&ctx, id);
    }
}

impl LargeObjects {
    /// Trace name, e.g. `bpf-4x150-70`.
    pub fn name(&self) -> String {
        format!(
            "bpf-{}x{}-{}",
            self.rounds, self.apps_per_round, self.unload_pct
        )
    }

    /// Generates the trace.
    pub fn generate(&self) -> SyntheticTrace {
        let params = format!(
            "large-objects rounds={} apps_per_round={} unload_pct={} sizes={}..={} seed={}",
            self.rounds,
            self.apps_per_round,
            self.unload_pct,
            self.min_size,
            self.max_size,
            self.seed
        );
        let mut t = Builder::new(self.machine, self.seed, &params);
        boot(&mut t);
        t.phase("A");
        let p = f64::from(self.unload_pct.min(100)) / 100.0;
        let mut apps: Vec<Vec<ObjId>> = Vec::new();
        for r in 1..=self.rounds {
            for _ in 0..self.apps_per_round {
                apps.push(load_app(&mut t, self.min_size, self.max_size));
            }
            t.phase(&format!("L{r}c"));
            let mut kept = Vec::new();
            for app in std::mem::take(&mut apps) {
                if t.rng.chance(p) {
                    unload_app(&mut t, &app);
                } else {
                    kept.push(app);
                }
            }
            apps = kept;
            t.tick(500_000, 500_000);
            t.phase(&format!("L{r}"));
        }
        for app in std::mem::take(&mut apps) {
            unload_app(&mut t, &app);
        }
        t.tick(500_000, 500_000);
        t.phase("END");
        t.finish(self.name())
    }
}
