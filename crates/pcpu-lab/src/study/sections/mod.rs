//! The document's sections, in document order: each a function that appends
//! its markdown and, where it has charts, writes them through the
//! [`Writer`].

mod backfill;
mod closing;
mod depopulation;
mod intro;
mod long_running;
mod pins;
mod placement;
mod refault;
mod refill;
mod tiling;

use std::time::Instant;

use super::subjects::Subject;
use super::sweeps::Results;
use super::writer::Writer;
use super::StudyConfig;
use crate::pins::PinsReport;
use crate::run::{LabError, RunResult};
use crate::targets::Pair;
pub(super) use backfill::NO_BACKFILL;
pub(super) use long_running::{
    first_fit_variant as workers_first_fit_variant, flipped_variant as grow_beside_flipped,
    many_workers, scaled_workers, workers_seeded, MANY_WORKERS,
};
pub(super) use refault::seed_variants as refault_seed_variants;

/// Everything the sections read: the configuration, the inputs, the sweep
/// results, the replays beside the sweeps, and what the document says first.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a StudyConfig,
    pub(super) subjects: &'a [Subject],
    /// The sweep results by role.
    pub(super) res: Results<'a>,
    /// The answers in brief: (question, answer).
    pub(super) answers: &'a [(String, String)],
    /// Resident after removals by policy, one line per subject.
    pub(super) headline: &'a [String],
    /// Notes (skipped captures).
    pub(super) notes: &'a [String],
    /// The workloads table's rows.
    pub(super) workload_rows: &'a [Vec<String>],
    /// Replays run in all.
    pub(super) replays: usize,
    /// When the study started (for the wall time with `timings`).
    pub(super) start: Instant,
    /// linux-6.1 on the real captures at their recorded balance points.
    pub(super) fidelity: &'a [RunResult],
    /// Pin reports, linux-5.14 rules, first fit.
    pub(super) pin_reports: &'a [PinsReport],
    /// Page maps of the dynamic chunks at phase C of the real cover letter:
    /// (trace, policy, one string per chunk), linux-5.14 and pcpu.
    pub(super) page_maps: &'a [(String, String, Vec<String>)],
    /// Pin reports of the first cover letter at phase C, per placement.
    pub(super) per_placement: &'a [(String, PinsReport)],
    /// The synthetic workloads over other seeds (§8).
    pub(super) seed_pairs: &'a [Pair],
    /// The same over the held-out seeds (§3's check of its choice).
    pub(super) holdout_pairs: &'a [Pair],
    /// `workers` with four times the sessions a shift (§5e).
    pub(super) scaled_workers: &'a [Pair],
    /// `workers` over the seeds and held-out seeds, with `pcpu`'s
    /// depopulation and plain first fit too (§5e).
    pub(super) workers_first_fit: &'a [Pair],
    /// `workers` with more workers and fewer sessions, rule flipped too
    /// (§5e).
    pub(super) many_workers: &'a [Pair],
}

/// Writes the whole document and returns its markdown; charts go through
/// `w`.
pub(super) fn document(ctx: &Ctx, w: &mut Writer) -> Result<String, LabError> {
    let mut md = String::new();
    intro::intro(&mut md, ctx);
    intro::workloads(&mut md, ctx);
    depopulation::how_often(&mut md, ctx, w)?;
    depopulation::triggers(&mut md, ctx, w)?;
    refault::refault_reserve(&mut md, ctx, w)?;
    depopulation::packing(&mut md, ctx, w)?;
    refill::refill_order(&mut md, ctx, w)?;
    depopulation::timelines(&mut md, ctx, w)?;
    placement::small_objects(&mut md, ctx);
    placement::magazines(&mut md, ctx, w)?;
    placement::placement(&mut md, ctx, w)?;
    placement::long_lived(&mut md, ctx, w)?;
    backfill::backfill(&mut md, ctx, w)?;
    tiling::tiling(&mut md, ctx, w)?;
    long_running::long_running(&mut md, ctx, w)?;
    pins::who_pins(&mut md, ctx);
    closing::cost(&mut md, ctx);
    closing::targets(&mut md, ctx);
    closing::fidelity(&mut md, ctx);
    closing::method(&mut md, ctx);
    closing::reproduce(&mut md, ctx);
    Ok(md)
}
