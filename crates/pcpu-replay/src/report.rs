//! The replay report and its stable JSON schema.
//!
//! Schema (`pcpu replay --json`, version 1); fields are only ever added:
//! ```text
//! { "schema": 1, "trace": str, "policy": str, "placement": "simulate"|"kernel",
//!   "balance": "recorded"|"modelled",   // `pcpu`: also "every-run=N"|"timer=N"
//!   "units": int, "page_size": int,
//!   "events": int, "elapsed_s": float, "events_per_s": float,
//!   "placement_agreement": float|null,   // fraction of allocations at the kernel's chunk and offset
//!   "allocs": int, "frees": int, "failed_allocs": int, "reordered_allocs": int,
//!   "uncreated_chunks": int,           // chunks used without a create event (lenient)
//!   "implied_frees": int,              // frees the trace lost (lenient)
//!   "unknown_frees": int, "bad_events": int, // skipped (lenient)
//!   "pre_trace_chunks": int, "pre_trace_frees": int, "pre_trace_top_up_pages": int,
//!                                      // in use before tracing: chunks, objects freed, pages
//!   "pre_trace_free_chunks": int, "kernel_stats_unmatched_chunks": int,
//!                                      // from the kernel's percpu_stats at START: fully free
//!                                      // chunks created, chunks with objects not modelled
//!   "magazine_hits": int,              // allocations served by `--magazine` magazines
//!   "long_lived_objects": int,         // allocations the long-lived prediction placed together
//!   "short_lived_objects": int,        // first objects the short-lived prediction kept out of their class
//!   "long_running_classes": int,       // task classes taken for long-running (first fit from then on)
//!   "tiled_bursts": int, "untiled_bursts": int, "tiling_pooled_objects": int, // page tiling
//!   "first_chunk_kb": int,             // the first and reserved chunks, never depopulated
//!   "populated_pages": int, "depopulated_pages": int,              // ours, per unit
//!   "kernel_populated_pages": int|null, "kernel_depopulated_pages": int|null,
//!   "repopulated_pages": int, "repopulated_soon_pages": int,      // ours, per unit
//!   "kernel_repopulated_pages": int|null, "kernel_repopulated_soon_pages": int|null,
//!   "balance_runs": int, "chunks_created": int, "chunks_destroyed": int,
//!   "phases": [ { "name": str, "percpu_kb": int, "kernel_percpu_kb": int|null,
//!                 "ideal_kb": int, "floor_kb": int, "kernel_floor_kb": int,
//!                 "chunks": int, "live_objects": int, "live_bytes": int,
//!                 "populated_pages": int, "depopulated_pages": int,
//!                 "kernel_populated_pages": int|null, "kernel_depopulated_pages": int|null,
//!                 "first_chunk_floor_kb": int,       // of floor_kb, in the first and reserved chunks
//!                 "class_bound_kb": int|null,        // with derived lifetime classes: the least floor
//!                                                    // when no page holds two classes' objects
//!                 "empty_pop_pages": int,            // ours, per unit (percpu_stats' figure)
//!                 "kernel_empty_pop_pages": int|null, "kernel_chunks": int|null } ],
//!                                                    // from the kernel's percpu_stats at the marker
//!   "timeline": [ { "t": float, "resident_kb": int, "floor_kb": int, "ideal_kb": int,
//!                   "kernel_percpu_kb": int|null } ],
//!   "disagreements": [ { "line": int, "size": int, "align": int, "kernel_chunk": int,
//!                        "kernel_off": int, "our_chunk": int, "our_off": int } ] }   // first 20
//! ```
//! All `_kb` figures are for all units (pages × units × page size / 1024),
//! like `/proc/meminfo`.

use serde::Serialize;

use pcpu_trace::StatsSnapshot;

/// Figures at one phase marker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Phase name from the trace marker.
    pub name: String,
    /// Our Percpu figure.
    pub percpu_kb: u64,
    /// The kernel's `/proc/meminfo` Percpu figure.
    pub kernel_percpu_kb: Option<u64>,
    /// Live traced bytes, rounded up to pages, per unit, times units.
    pub ideal_kb: u64,
    /// Pages holding at least one live traced byte, under the placement used.
    pub floor_kb: u64,
    /// The same under the kernel's placement.
    pub kernel_floor_kb: u64,
    /// Our live chunks, the first chunk and the reserved chunk (when the
    /// geometry has one) included.
    pub chunks: u64,
    /// Live traced allocations.
    pub live_objects: u64,
    /// Live traced bytes per unit.
    pub live_bytes: u64,
    /// Our pages populated so far (per unit, cumulative).
    pub populated_pages: u64,
    /// Our pages depopulated so far.
    pub depopulated_pages: u64,
    /// The kernel's, from the kprobe events.
    pub kernel_populated_pages: Option<u64>,
    /// The kernel's, from the kprobe events.
    pub kernel_depopulated_pages: Option<u64>,
    /// Of `floor_kb`, the pages in the first and reserved chunks (never
    /// depopulated, so they are resident under any policy; the same chunks
    /// as `Report::first_chunk_kb`).
    pub first_chunk_floor_kb: u64,
    /// With lifetime classes derived from the trace (`--classes derived`):
    /// the smallest floor of any placement in which no page holds objects
    /// of two classes, each class's live bytes rounded up to whole pages
    /// (times units). `floor_kb - ideal_kb` below this is out of reach for
    /// page-exclusive classes. `None` in the other class modes. A policy
    /// that ignores classes (the `linux-*` policies: first fit) is not
    /// page-exclusive and may have a floor below it.
    pub class_bound_kb: Option<u64>,
    /// Our empty populated pages per unit, as `percpu_stats` counts them
    /// (`empty_pop_pages`: chunks isolated for reclaim not counted).
    #[serde(default)]
    pub empty_pop_pages: u64,
    /// The kernel's `empty_pop_pages` at this marker, from its
    /// `percpu_stats` (`percpu-stats.txt` of a recording); `None` without.
    #[serde(default)]
    pub kernel_empty_pop_pages: Option<u64>,
    /// The kernel's chunks at this marker, counted as `chunks` counts ours
    /// (first and reserved chunks included), from its `percpu_stats`.
    #[serde(default)]
    pub kernel_chunks: Option<u64>,
}

/// One timeline sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Trace timestamp (seconds).
    pub t: f64,
    /// Our Percpu figure.
    pub resident_kb: u64,
    /// Placement floor.
    pub floor_kb: u64,
    /// Ideal.
    pub ideal_kb: u64,
    /// The kernel's Percpu figure reconstructed from kprobes, when known.
    pub kernel_percpu_kb: Option<u64>,
}

/// An allocation placed differently from the kernel (simulate mode).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Disagreement {
    /// Trace line of the allocation.
    pub line: u64,
    /// Requested size.
    pub size: u64,
    /// Requested alignment.
    pub align: u64,
    /// Kernel chunk (creation order; 0 = first chunk).
    pub kernel_chunk: u32,
    /// Kernel offset.
    pub kernel_off: u64,
    /// Our chunk (creation order).
    pub our_chunk: u32,
    /// Our offset.
    pub our_off: u64,
}

/// A whole replay.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Schema version (1).
    pub schema: u32,
    /// Trace name.
    pub trace: String,
    /// Policy name.
    pub policy: String,
    /// `simulate` or `kernel`.
    pub placement: String,
    /// `recorded` or `modelled` (the `pcpu` command names its `--balance
    /// every-run=N` and `timer=N` schedules here instead).
    pub balance: String,
    /// Units (CPUs).
    pub units: u64,
    /// Page size.
    pub page_size: u64,
    /// Trace records processed.
    pub events: u64,
    /// Wall time of the replay itself.
    pub elapsed_s: f64,
    /// Records per second.
    pub events_per_s: f64,
    /// Fraction of allocations placed at the kernel's chunk and offset
    /// (simulate mode only).
    pub placement_agreement: Option<f64>,
    /// Allocations replayed.
    pub allocs: u64,
    /// Frees replayed.
    pub frees: u64,
    /// Allocations that failed in our allocator.
    pub failed_allocs: u64,
    /// Pairs of racing allocations replayed in swapped order (see
    /// `Replayer::should_swap`).
    pub reordered_allocs: u64,
    /// Chunks the trace uses without creating them (a trace that did not
    /// start at boot, replayed with `lenient`; 0 otherwise).
    #[serde(default)]
    pub uncreated_chunks: u64,
    /// Frees the trace lost, replayed where the kernel allocated over
    /// their objects (`lenient`; 0 otherwise). Counted in `frees`.
    #[serde(default)]
    pub implied_frees: u64,
    /// Frees of pointers with no live traced allocation, skipped
    /// (`lenient`; 0 otherwise).
    #[serde(default)]
    pub unknown_frees: u64,
    /// Events that parse but cannot be replayed, skipped (`lenient`; 0
    /// otherwise).
    #[serde(default)]
    pub bad_events: u64,
    /// Dynamic chunks in use before tracing started, inferred from the
    /// trace (a recording on a running kernel; `Setup::pre_chunks`).
    #[serde(default)]
    pub pre_trace_chunks: u64,
    /// Frees of objects allocated before tracing started
    /// (`Setup::pre_objects`).
    #[serde(default)]
    pub pre_trace_frees: u64,
    /// Empty pages of those chunks populated before the replay's own (per
    /// unit): with the kernel's `percpu_stats` at START, from the start,
    /// each chunk's own count (and those of the chunks in
    /// `pre_trace_free_chunks`); without, at the first phase marker, as
    /// many as our Percpu there is below the kernel's.
    #[serde(default)]
    pub pre_trace_top_up_pages: u64,
    /// Fully free chunks the kernel's `percpu_stats` at START lists and the
    /// trace never uses, created when the replay starts with the empty
    /// pages they kept populated.
    #[serde(default)]
    pub pre_trace_free_chunks: u64,
    /// Chunks holding objects that the kernel's `percpu_stats` at START
    /// lists and the trace never touches: not modelled.
    #[serde(default)]
    pub kernel_stats_unmatched_chunks: u64,
    /// Allocations served by a per-CPU magazine (`ReplayConfig::magazine`;
    /// 0 without magazines).
    pub magazine_hits: u64,
    /// Allocations the long-lived prediction sent to the shared long-lived
    /// class (`Policy::long_lived`; 0 with other policies).
    pub long_lived_objects: u64,
    /// First objects the short-lived prediction placed by first fit,
    /// outside their task class (`Policy::short_lived`; 0 with other
    /// policies).
    #[serde(default)]
    pub short_lived_objects: u64,
    /// Task classes taken for long-running, whose requests then took plain
    /// first fit (`Policy::grow_beside`; 0 with other policies).
    #[serde(default)]
    pub long_running_classes: u64,
    /// Task bursts page tiling started on a multiple of their predicted
    /// size (`Policy::tile_bursts`, `pcpu_core::TilingStats`; 0 with other
    /// policies).
    pub tiled_bursts: u64,
    /// Bursts predicted to tile but placed untiled.
    pub untiled_bursts: u64,
    /// 4-byte objects of tiling tasks placed on the long-lived pages.
    pub tiling_pooled_objects: u64,
    /// Resident memory of the first chunk (static area included) and the
    /// reserved chunk, which no policy depopulates (kB, all units).
    pub first_chunk_kb: u64,
    /// Our pages populated (per unit).
    pub populated_pages: u64,
    /// Our pages depopulated (per unit).
    pub depopulated_pages: u64,
    /// The kernel's, from kprobes.
    pub kernel_populated_pages: Option<u64>,
    /// The kernel's, from kprobes.
    pub kernel_depopulated_pages: Option<u64>,
    /// Our pages populated again after a depopulation of the same chunk
    /// (per unit): page traffic a policy could have saved by keeping them.
    pub repopulated_pages: u64,
    /// Of those, within [`SOON_RUNS`](crate::SOON_RUNS) (16) balance runs of
    /// the depopulation (per unit).
    pub repopulated_soon_pages: u64,
    /// The kernel's, from kprobes (its balance runs are the traced ones).
    pub kernel_repopulated_pages: Option<u64>,
    /// The kernel's, within 16 of its balance runs.
    pub kernel_repopulated_soon_pages: Option<u64>,
    /// Balance runs.
    pub balance_runs: u64,
    /// Chunks we created.
    pub chunks_created: u64,
    /// Chunks we destroyed.
    pub chunks_destroyed: u64,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Over time.
    pub timeline: Vec<Sample>,
    /// The first (at most 20) allocations placed differently from the kernel.
    pub disagreements: Vec<Disagreement>,
}

impl Report {
    /// Puts the kernel's `percpu_stats` snapshots (`percpu-stats.txt` of a
    /// recording) beside our figures at the phase markers: the k-th marker
    /// named X gets the k-th snapshot named X (`kernel_empty_pop_pages`,
    /// `kernel_chunks`). Markers without one are left as they are.
    pub fn attach_kernel_stats(&mut self, snapshots: &[StatsSnapshot]) {
        let mut used = vec![false; snapshots.len()];
        for phase in &mut self.phases {
            let Some(i) =
                (0..snapshots.len()).find(|&i| !used[i] && snapshots[i].phase == phase.name)
            else {
                continue;
            };
            used[i] = true;
            let stats = &snapshots[i].stats;
            phase.kernel_empty_pop_pages = Some(stats.empty_pop_pages);
            phase.kernel_chunks = Some(stats.chunks.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcpu_trace::PercpuStats;

    fn snap(phase: &str, empty: u64, chunks: usize) -> StatsSnapshot {
        StatsSnapshot {
            phase: phase.into(),
            stats: PercpuStats {
                nr_chunks: chunks as u64,
                nr_cur_alloc: 0,
                empty_pop_pages: empty,
                chunks: vec![
                    pcpu_trace::ChunkStats {
                        kind: pcpu_trace::StatsChunkKind::Dynamic,
                        nr_alloc: 0,
                        empty_pop_pages: 0,
                        first_bit: 0,
                        free_bytes: 0,
                        contig_bytes: 0,
                    };
                    chunks
                ],
            },
        }
    }

    #[test]
    fn snapshots_go_to_their_markers_in_order() {
        let mut r = Report::default();
        for name in ["START", "A", "END", "END"] {
            r.phases.push(PhaseReport {
                name: name.into(),
                ..PhaseReport::default()
            });
        }
        r.attach_kernel_stats(&[snap("END", 7, 2), snap("START", 220, 3), snap("END", 9, 4)]);
        let got: Vec<_> = r
            .phases
            .iter()
            .map(|p| (p.kernel_empty_pop_pages, p.kernel_chunks))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(220), Some(3)),
                (None, None),
                (Some(7), Some(2)),
                (Some(9), Some(4))
            ]
        );
    }
}
