//! Long-running workers in overlapping shifts: the allocation pattern of a
//! server's threads (and of the pins example in `pcpu`), where one
//! long-lived task frees most of its objects while another still
//! allocates.

use super::{boot, Builder, Ctx, Machine, ObjId, Site, SyntheticTrace};

/// A session's counter.
const COUNTER: Site = Site::new("session_open+0x2e/0xb0", 8, 8);
/// A session's statistics block.
const STATS: Site = Site::new("session_open+0x5b/0xb0", 128, 8);

/// Worker tasks that each open sessions (an 8-byte counter and a 128-byte
/// statistics block) and close most of them again, in overlapping shifts.
/// Each round, the first worker opens `sessions` sessions; then each next
/// worker opens its sessions while the one before it closes its own (one
/// operation at a time, in a random interleaving); the last worker then
/// closes alone. A session survives its shift with probability `keep_pct`%
/// and stays open to the end. The workers are the same tasks (pids) in
/// every round, and a round starts with a random worker.
///
/// Phases: `BOOT`, `A`, `W<r>c` when round r's last worker has opened its
/// sessions, `W<r>` after its closes, `END` after closing every survivor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workers {
    /// Worker tasks (at least 1).
    pub workers: u32,
    /// Rounds.
    pub rounds: u32,
    /// Sessions each worker opens per round.
    pub sessions: u32,
    /// Chance, in percent, that a session survives its shift.
    pub keep_pct: u32,
    /// Seed.
    pub seed: u64,
    /// The traced machine.
    pub machine: Machine,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            workers: 4,
            rounds: 4,
            sessions: 2000,
            keep_pct: 5,
            seed: 1,
            machine: Machine::default(),
        }
    }
}

/// Opens one session.
fn open(t: &mut Builder, ctx: &Ctx) -> [ObjId; 2] {
    t.tick(5, 60);
    let counter = t.alloc(ctx, COUNTER);
    t.tick(1, 5);
    [counter, t.alloc(ctx, STATS)]
}

/// Closes one session.
fn close(t: &mut Builder, ctx: &Ctx, session: [ObjId; 2]) {
    t.tick(5, 60);
    t.free(ctx, session[1]);
    t.free(ctx, session[0]);
}

impl Workers {
    /// Trace name, e.g. `workers-4x4x2000-5`.
    pub fn name(&self) -> String {
        format!(
            "workers-{}x{}x{}-{}",
            self.workers, self.rounds, self.sessions, self.keep_pct
        )
    }

    /// Generates the trace.
    pub fn generate(&self) -> SyntheticTrace {
        let params = format!(
            "workers workers={} rounds={} sessions={} keep_pct={} seed={}",
            self.workers, self.rounds, self.sessions, self.keep_pct, self.seed
        );
        let mut t = Builder::new(self.machine, self.seed, &params);
        boot(&mut t);
        t.phase("A");
        let n = self.workers.max(1);
        let ctxs: Vec<Ctx> = (0..n)
            .map(|w| t.fixed(&format!("worker-{w}"), 4000 + w as i32))
            .collect();
        let keep = f64::from(self.keep_pct.min(100)) / 100.0;
        let mut survivors: Vec<([ObjId; 2], usize)> = Vec::new();
        for r in 1..=self.rounds {
            let first = t.rng.below(u64::from(n)) as usize;
            let order: Vec<usize> = (0..n as usize).map(|i| (first + i) % n as usize).collect();
            // The previous worker's sessions still to close, shuffled.
            let mut closing: Vec<[ObjId; 2]> = Vec::new();
            let mut prev = order[0];
            for (i, &w) in order.iter().enumerate() {
                let mut opened = Vec::with_capacity(self.sessions as usize);
                let mut to_open = self.sessions as usize;
                while to_open > 0 || !closing.is_empty() {
                    let left = to_open + closing.len();
                    if t.rng.below(left as u64) < to_open as u64 {
                        opened.push(open(&mut t, &ctxs[w]));
                        to_open -= 1;
                    } else if let Some(s) = closing.pop() {
                        close(&mut t, &ctxs[prev], s);
                    }
                }
                if i + 1 == order.len() {
                    t.phase(&format!("W{r}c"));
                }
                for s in opened {
                    if t.rng.chance(keep) {
                        survivors.push((s, w));
                    } else {
                        closing.push(s);
                    }
                }
                t.rng.shuffle(&mut closing);
                prev = w;
            }
            while let Some(s) = closing.pop() {
                close(&mut t, &ctxs[prev], s);
            }
            t.tick(500_000, 500_000);
            t.phase(&format!("W{r}"));
        }
        for (s, w) in survivors {
            close(&mut t, &ctxs[w], s);
        }
        t.tick(500_000, 500_000);
        t.phase("END");
        t.finish(self.name())
    }
}
