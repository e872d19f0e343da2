//! The policy study: generates the synthetic workloads, loads the real
//! captures that are present, runs every sweep, and writes
//! `policy-study.md` (plus SVG charts and a JSON dump of every result) that
//! answers the open questions of the seed thread.
//!
//! Every number in the document is computed by the run that writes it; the
//! text around the numbers only compares them. The document is
//! deterministic (same inputs, same bytes) unless wall times are asked for
//! ([`StudyConfig::timings`]).
//!
//! The code is split by concern: `inputs` (the synthetic
//! [`workloads`](fn@workloads) and the real captures), `subjects` (an input
//! with its labels and metrics), `sweeps` (what runs), `compare` and
//! `format` (how results are compared and put into words), `answers` and
//! `sections` (the document), `writer` and `json` (the files beside it).

mod answers;
mod compare;
mod format;
mod inputs;
mod json;
mod sections;
mod subjects;
mod sweeps;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use pcpu_core::{Policy, PolicyKind};

use crate::pins;
use crate::run::{run, Input, LabError, RunOptions, Schedule, Variant};
use crate::sweep;
use crate::targets;

pub(crate) use format::md_table;
pub use inputs::{workloads, workloads_seeded};

use sections::Ctx;
use sweeps::Results;
use writer::Writer;

/// Workload sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The sizes of the shared captures (the study).
    Full,
    /// Tiny workloads (tests, smoke runs).
    Small,
}

/// `pcpu`'s task regions' order and long-lived prediction were chosen
/// looking at the generated traces of seeds 1 to this (the study says so
/// next to the held-out seeds).
pub const PLACEMENT_TUNED_ON: u64 = 20;

/// `pcpu`'s back-fill beside survivors (`Policy::backfill`), its run
/// length and its deferral threshold were chosen looking at the generated
/// traces of seeds 1 to this.
pub const BACKFILL_TUNED_ON: u64 = 100;

/// `pcpu`'s long-running classes (`Policy::grow_beside`: the run length,
/// small requests only, the object count) were chosen looking at the
/// generated traces of seeds 1 to this.
pub const GROW_BESIDE_TUNED_ON: u64 = 8;

/// §5e replays `workers` with four times the sessions a shift on seeds 1
/// to this.
const SCALED_WORKERS_SEEDS: u64 = 4;

/// What the study runs and where it writes.
#[derive(Clone, Debug)]
pub struct StudyConfig {
    /// Output folder (created if needed).
    pub out: PathBuf,
    /// Real capture folders; missing ones are skipped with a note.
    pub captures: Vec<PathBuf>,
    /// Worker threads.
    pub threads: usize,
    /// Include wall times (makes the document differ between runs).
    pub timings: bool,
    /// Workload sizes.
    pub scale: Scale,
    /// Metric knobs.
    pub options: RunOptions,
    /// The command line to print under "How to reproduce".
    pub command: String,
    /// Also write every result to `policy-study.json`.
    pub json: bool,
    /// The targets section replays the synthetic workloads again with seeds
    /// 1 to `seeds` (0: not at all).
    pub seeds: u64,
    /// §3 checks its choice of refill order on this many further seeds
    /// (`seeds + 1` on), which no default was chosen on (0: not at all).
    pub holdout_seeds: u64,
}

impl StudyConfig {
    /// The default of [`StudyConfig::seeds`].
    pub const DEFAULT_SEEDS: u64 = 8;
    /// The default of [`StudyConfig::holdout_seeds`] (seeds 9 to 40: past
    /// [`PLACEMENT_TUNED_ON`] too).
    pub const DEFAULT_HOLDOUT_SEEDS: u64 = 32;

    /// The study's defaults, writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        StudyConfig {
            out: out.into(),
            captures: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            timings: false,
            scale: Scale::Full,
            options: RunOptions::default(),
            command: "pcpu study --out docs/".into(),
            json: false,
            seeds: Self::DEFAULT_SEEDS,
            holdout_seeds: Self::DEFAULT_HOLDOUT_SEEDS,
        }
    }
}

/// What a study run produced.
#[derive(Clone, Debug)]
pub struct StudyOutcome {
    /// The document.
    pub doc: PathBuf,
    /// Every file written (document first).
    pub files: Vec<PathBuf>,
    /// Replays run.
    pub replays: usize,
    /// Notes (skipped captures).
    pub notes: Vec<String>,
    /// Headline lines (also at the top of the document).
    pub headline: Vec<String>,
    /// Wall time of the whole study (s).
    pub wall_s: f64,
}

/// Runs the study and writes the document. `progress(message)` reports
/// stages.
pub fn run_study(
    cfg: &StudyConfig,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<StudyOutcome, LabError> {
    let start = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|error| LabError::Io {
        path: cfg.out.clone(),
        error,
    })?;
    let mut notes = Vec::new();
    let (subjects, workload_rows) = inputs::load(cfg, progress, &mut notes)?;
    let inputs: Vec<Input> = subjects.iter().map(|s| s.input.clone()).collect();
    let sweeps = sweeps::sweeps();
    let total_jobs: usize = sweeps
        .iter()
        .map(|s| {
            inputs
                .iter()
                .map(|i| s.variants.iter().filter(|v| v.applies(i)).count())
                .sum::<usize>()
        })
        .sum();
    progress(&format!(
        "running {total_jobs} replays on {} threads",
        cfg.threads
    ));
    let results = sweep::run_sweeps(&inputs, &sweeps, &cfg.options, cfg.threads, &|d, n| {
        if d % 50 == 0 || d == n {
            progress(&format!("replays {d}/{n}"));
        }
    })?;
    let res = Results::new(&results);
    // Fidelity: linux-6.1 on the real captures at their recorded balance points.
    let mut fidelity = Vec::new();
    for s in subjects.iter().filter(|s| !s.input.synthetic) {
        let v = Variant {
            schedule: Schedule::Recorded,
            ..Variant::new("linux-6.1", Policy::new(PolicyKind::Linux61))
        };
        fidelity.push(run(&s.input, &v, &cfg.options)?);
    }
    progress("pin reports");
    let mut pin_reports = Vec::new();
    let l514 = Policy::new(PolicyKind::Linux514);
    for s in &subjects {
        let phases = s.input.phases();
        let at = if phases.iter().any(|p| p == "C") {
            "C"
        } else if s.short.starts_with("mix") && phases.iter().any(|p| p == "END") {
            "END"
        } else {
            continue;
        };
        let v = Variant {
            schedule: Schedule::Modelled,
            ..Variant::new("linux-5.14", l514)
        };
        pin_reports.push(pins::pins_for(&s.input, at, &v)?);
    }
    // Where the objects sit on the real cover letter at C (§6).
    let mut page_maps = Vec::new();
    if let Some(s) = subjects
        .iter()
        .find(|s| !s.input.synthetic && s.input.phases().iter().any(|p| p == "C"))
    {
        for (label, policy) in [("linux-5.14", l514), ("pcpu", Policy::pcpu())] {
            let v = Variant {
                schedule: Schedule::Modelled,
                ..Variant::new(label, policy)
            };
            let maps = pins::page_maps_for(&s.input, "C", &v)?;
            page_maps.push((s.input.name.clone(), label.to_string(), maps));
        }
    }
    // Pages per surviving cgroup under each placement (first cover letter).
    let mut per_placement = Vec::new();
    if let Some(s) = subjects
        .iter()
        .find(|s| s.short.starts_with("cover letter"))
    {
        for v in &res.place.sweep.variants {
            per_placement.push((v.label.clone(), pins::pins_for(&s.input, "C", v)?));
        }
    }
    progress("seeds");
    let seeds: Vec<u64> = (1..=cfg.seeds).collect();
    // The other refill orders over the seeds too (§3).
    let others: Vec<Variant> = sweeps::REFILLS
        .iter()
        .filter(|&&r| r != Policy::pcpu().refill)
        .map(|&r| {
            let mut p = Policy::pcpu();
            p.refill = r;
            Variant {
                schedule: Schedule::Modelled,
                ..Variant::new(r.name(), p)
            }
        })
        // Without back-fill (§5c).
        .chain([{
            let mut p = Policy::pcpu();
            p.backfill = false;
            Variant {
                schedule: Schedule::Modelled,
                ..Variant::new(sections::NO_BACKFILL, p)
            }
        }])
        // With long-running classes the other way (§5e).
        .chain([sections::grow_beside_flipped()])
        // Lifetime classes derived from the trace too (§8).
        .chain([targets::derived_variant()])
        // The refault reserves (§2e).
        .chain(sections::refault_seed_variants())
        .collect();
    let seed_pairs =
        targets::seed_pairs_with(cfg.scale, &seeds, &others, &cfg.options, cfg.threads)?;
    let holdout: Vec<u64> = (cfg.seeds + 1..=cfg.seeds + cfg.holdout_seeds).collect();
    let holdout_pairs =
        targets::seed_pairs_with(cfg.scale, &holdout, &others, &cfg.options, cfg.threads)?;
    // `workers` with four times the sessions a shift (§5e).
    let scaled_workers = targets::pairs_of(
        (1..=SCALED_WORKERS_SEEDS).map(|seed| (sections::scaled_workers(cfg.scale, seed), seed)),
        &[],
        &cfg.options,
        cfg.threads,
    )?;
    // `workers` with plain first fit over all those seeds (§5e).
    let workers_first_fit = targets::pairs_of(
        (1..=cfg.seeds + cfg.holdout_seeds)
            .map(|seed| (sections::workers_seeded(cfg.scale, seed), seed)),
        &[sections::workers_first_fit_variant()],
        &cfg.options,
        cfg.threads,
    )?;
    // More workers with fewer sessions each (§5e), the rule flipped too.
    let many_workers = targets::pairs_of(
        sections::MANY_WORKERS.iter().flat_map(|&(n, sessions)| {
            (1..=SCALED_WORKERS_SEEDS)
                .map(move |seed| (sections::many_workers(cfg.scale, n, sessions, seed), seed))
        }),
        &[sections::grow_beside_flipped()],
        &cfg.options,
        cfg.threads,
    )?;
    let replays = total_jobs
        + 2 * scaled_workers.len()
        + 3 * workers_first_fit.len()
        + 3 * many_workers.len()
        + fidelity.len()
        + pin_reports.len()
        + page_maps.len()
        + per_placement.len()
        + (2 + others.len()) * (seed_pairs.len() + holdout_pairs.len());
    progress("writing the document");
    let mut w = Writer {
        cfg,
        subjects: &subjects,
        files: Vec::new(),
    };
    let answers = answers::answers(&subjects, &res);
    let headline = answers::headline(&subjects, &res);
    let ctx = Ctx {
        cfg,
        subjects: &subjects,
        res,
        answers: &answers,
        headline: &headline,
        notes: &notes,
        workload_rows: &workload_rows,
        replays,
        start,
        fidelity: &fidelity,
        pin_reports: &pin_reports,
        page_maps: &page_maps,
        per_placement: &per_placement,
        seed_pairs: &seed_pairs,
        holdout_pairs: &holdout_pairs,
        scaled_workers: &scaled_workers,
        workers_first_fit: &workers_first_fit,
        many_workers: &many_workers,
    };
    let md = sections::document(&ctx, &mut w)?;
    if cfg.json {
        json::write_json(&mut w, &results, cfg.timings)?;
    }
    let doc_path = cfg.out.join("policy-study.md");
    std::fs::write(&doc_path, &md).map_err(|error| LabError::Io {
        path: doc_path.clone(),
        error,
    })?;
    let mut files = vec![doc_path.clone()];
    files.append(&mut w.files);
    let mut headline_out: Vec<String> = answers.iter().map(|(q, a)| format!("{q}: {a}")).collect();
    headline_out.extend(headline);
    Ok(StudyOutcome {
        doc: doc_path,
        files,
        replays,
        notes,
        headline: headline_out,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Does `path` look like a capture folder (or a trace file)?
pub fn is_capture(path: &Path) -> bool {
    path.is_file() || path.join("trace.txt.gz").is_file() || path.join("trace.txt").is_file()
}
