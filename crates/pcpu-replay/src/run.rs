//! Whole-trace replay: trace features, phase marks, the racing-allocation
//! order, derived lifetime classes.

use std::collections::HashMap;
use std::time::Instant;

use pcpu_core::Allocator;
use pcpu_trace::{Event, Record};

use crate::config::{ClassMode, ReplayConfig};
use crate::engine::Replayer;
use crate::report::Report;
use crate::setup::Setup;
use crate::ReplayError;

/// Does the trace have `pcpu_balance_workfn` events, and populate/depopulate
/// kprobe events? (Decides `BalanceTiming::Auto` and whether kernel page
/// figures are known.) A userspace allocator's trace
/// (`pcpu_trace::traced_from_creation`) has both, even where its allocator
/// ran no balance work or populated no page.
pub fn trace_features(records: &[Record]) -> (bool, bool) {
    if pcpu_trace::traced_from_creation(records) {
        return (true, true);
    }
    let has_balance = records
        .iter()
        .any(|r| matches!(r.event, Event::BalanceWork));
    let has_kprobes = records.iter().any(|r| {
        matches!(
            r.event,
            Event::ChunkPopulated(_) | Event::ChunkDepopulated(_)
        )
    });
    (has_balance, has_kprobes)
}

/// `(name, timestamp)` of every `PHASE <name> Percpu` marker, in trace order
/// (one per [`PhaseReport`](crate::PhaseReport)).
pub fn phase_marks(records: &[Record]) -> Vec<(String, f64)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::PhasePercpu { name, .. } => Some((name.clone(), r.ts)),
            _ => None,
        })
        .collect()
}

/// Replay `records` with `setup` and `cfg`; `progress(done, total)` is called
/// every 4096 records.
pub fn replay(
    name: &str,
    records: &[Record],
    setup: Setup,
    cfg: ReplayConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Report, Allocator), ReplayError> {
    if !records
        .iter()
        .any(|r| matches!(r.event, Event::Alloc(_) | Event::Free { .. }))
    {
        return Err(ReplayError::NoEvents);
    }
    let (has_balance, has_kprobes) = trace_features(records);
    let start = Instant::now();
    let mut rp = Replayer::new(setup, cfg, has_balance, has_kprobes)?;
    let total = records.len();
    rp.run(records, &mut |done| progress(done, total), &|_| false)?;
    let elapsed = start.elapsed().as_secs_f64();
    let a = rp.a.clone();
    let mut report = rp.finish(elapsed);
    report.trace = name.to_string();
    Ok((report, a))
}

impl Replayer {
    /// Replay `records` in order (the whole trace, from its first record):
    /// derives lifetime classes first when the configuration asks for them,
    /// replays racing allocations in the order the kernel placed them (see
    /// [`Replayer::should_swap`]), calls `progress(records done)` every 4096
    /// records, and stops after the first record for which `stop` is true.
    /// Returns the number of records replayed.
    pub fn run(
        &mut self,
        records: &[Record],
        progress: &mut dyn FnMut(usize),
        stop: &dyn Fn(&Record) -> bool,
    ) -> Result<usize, ReplayError> {
        if self.cfg.classes == ClassMode::Derived && self.derived.is_empty() {
            self.derived = derive_lifetime_classes(records);
        }
        let mut i = 0;
        while i < records.len() {
            let swap = i + 1 < records.len() && self.should_swap(&records[i], &records[i + 1]);
            let n = if swap { 2 } else { 1 };
            if swap {
                self.swapped += 1;
                self.feed(&records[i + 1])?;
                self.feed(&records[i])?;
            } else {
                self.feed(&records[i])?;
            }
            let stopped = records[i..i + n].iter().any(stop);
            i += n;
            if i % 4096 < n {
                progress(i);
            }
            if stopped {
                break;
            }
        }
        progress(i);
        Ok(i)
    }
}

/// Lifetime class of every allocation (keyed by trace line): the index of the
/// phase in which it is freed, or `u64::MAX` when it outlives the trace.
pub fn derive_lifetime_classes(records: &[Record]) -> HashMap<u64, u64> {
    let mut phase = 0u64;
    let mut open: HashMap<u64, u64> = HashMap::new();
    let mut out = HashMap::new();
    for r in records {
        match &r.event {
            Event::PhaseBegin { .. } => phase += 1,
            Event::Alloc(a) => {
                open.insert(a.ptr, r.line);
            }
            Event::Free { ptr, .. } => {
                if let Some(line) = open.remove(ptr) {
                    out.insert(line, phase);
                }
            }
            _ => {}
        }
    }
    for (_, line) in open {
        out.insert(line, u64::MAX);
    }
    out
}
