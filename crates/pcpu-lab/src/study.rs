//! The policy study: generates the synthetic workloads, loads the real
//! captures that are present, runs every sweep, and writes
//! `policy-study.md` (plus SVG charts and a JSON dump of every result) that
//! answers the open questions of the seed thread.
//!
//! Every number in the document is computed by the run that writes it; the
//! text around the numbers only compares them. The document is
//! deterministic (same inputs, same bytes) unless wall times are asked for
//! ([`StudyConfig::timings`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pcpu_core::{Fit, Policy, PolicyKind};
use pcpu_replay::ClassMode;
use serde::Serialize;

use crate::gen::{Churn, CoverLetter, LargeObjects, Mix, SyntheticTrace};
use crate::pins::{self, PinsReport};
use crate::plot::{self, CategoryPlot, Line, TimePlot, PALETTE};
use crate::run::{run, Input, LabError, RunOptions, RunResult, Schedule, Variant};
use crate::sweep::{self, Sweep, SweepResults};
use crate::targets;

/// Workload sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The sizes of the shared captures (the study).
    Full,
    /// Tiny workloads (tests, smoke runs).
    Small,
}

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
}

impl StudyConfig {
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
            seeds: 8,
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

/// The synthetic workloads at `scale`, with the generators' default seed.
pub fn workloads(scale: Scale) -> Vec<SyntheticTrace> {
    workloads_seeded(scale, CoverLetter::default().seed)
}

/// The synthetic workloads at `scale`, every generator seeded with `seed`.
pub fn workloads_seeded(scale: Scale, seed: u64) -> Vec<SyntheticTrace> {
    match scale {
        Scale::Full => vec![
            CoverLetter {
                seed,
                ..CoverLetter::default()
            }
            .generate(),
            Churn {
                seed,
                ..Churn::default()
            }
            .generate(),
            LargeObjects {
                seed,
                ..LargeObjects::default()
            }
            .generate(),
            Mix {
                seed,
                ..Mix::default()
            }
            .generate(),
        ],
        Scale::Small => vec![
            CoverLetter {
                parents: 40,
                children: 5,
                seed,
                ..CoverLetter::default()
            }
            .generate(),
            Churn {
                rounds: 3,
                per_round: 120,
                seed,
                ..Churn::default()
            }
            .generate(),
            LargeObjects {
                rounds: 2,
                apps_per_round: 25,
                seed,
                ..LargeObjects::default()
            }
            .generate(),
            Mix {
                rounds: 2,
                groups_per_round: 100,
                apps_per_round: 8,
                seed,
                ..Mix::default()
            }
            .generate(),
        ],
    }
}

/// A study input with its short column label.
struct Subject {
    input: Input,
    short: String,
    /// Phases right after removals (the figure the questions are about).
    after: Vec<String>,
    /// Phases right after (re)creation.
    refill: Vec<String>,
}

fn is_numbered(name: &str, prefix: char) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
}

fn subject(input: Input, short: String) -> Subject {
    let phases = input.phases();
    let mut after: Vec<String> = phases
        .iter()
        .filter(|p| *p == "C" || ['R', 'L', 'M'].iter().any(|&c| is_numbered(p, c)))
        .cloned()
        .collect();
    if after.is_empty() {
        after = phases.clone();
    }
    let refill = phases
        .iter()
        .filter(|p| {
            *p == "B"
                || ['R', 'L', 'M'].iter().any(|&c| {
                    p.strip_prefix(c)
                        .and_then(|r| r.strip_suffix('c'))
                        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                })
        })
        .cloned()
        .collect();
    Subject {
        input,
        short,
        after,
        refill,
    }
}

/// Mean of `f` over the phases `names` of `r` (0 when none match).
fn mean_over(r: &RunResult, names: &[String], f: impl Fn(&crate::run::PhaseMetrics) -> u64) -> u64 {
    let v: Vec<u64> = names.iter().filter_map(|n| r.phase(n)).map(f).collect();
    if v.is_empty() {
        0
    } else {
        (v.iter().sum::<u64>() as f64 / v.len() as f64).round() as u64
    }
}

fn after_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.percpu_kb)
}

fn floor_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.floor_kb)
}

fn ideal_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.after, |p| p.ideal_kb)
}

fn refill_kb(s: &Subject, r: &RunResult) -> u64 {
    mean_over(r, &s.refill, |p| p.percpu_kb)
}

/// `+12.3%` of `a` against `b`.
fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        return "n/a".into();
    }
    format!("{:+.1}%", (a as f64 - b as f64) / b as f64 * 100.0)
}

/// A markdown table; the first column left-aligned, the others right.
pub(crate) fn md_table(out: &mut String, headers: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let aligns: Vec<&str> = (0..headers.len())
        .map(|i| if i == 0 { ":---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// The sweeps of the study, in document order. The schedule sweeps vary the
/// balance timing; every other sweep runs the balance work on demand (when
/// the policy's own rules schedule it) on every input, so that synthetic and
/// real traces are treated alike and each policy is judged by its own
/// scheduling rules.
fn sweeps() -> Vec<Sweep> {
    let l514 = Policy::new(PolicyKind::Linux514);
    let rfc = Policy::new(PolicyKind::SeedRfc);
    let schedules = [
        Schedule::Modelled,
        Schedule::Recorded,
        Schedule::EveryNth(4),
        Schedule::EveryNth(16),
        Schedule::EveryNth(64),
        Schedule::Periodic(256),
        Schedule::Periodic(1024),
        Schedule::Periodic(4096),
        Schedule::Periodic(16384),
    ];
    let mut sched_rfc = sweep::schedules(rfc, &schedules);
    sched_rfc.id = "schedule-rfc".into();
    let mut sched = sweep::schedules(l514, &schedules);
    sched.id = "schedule-5.14".into();
    let placements = [
        ClassMode::None,
        ClassMode::Task,
        ClassMode::SizeClass,
        ClassMode::CallSite,
        ClassMode::Derived,
    ];
    let mut place_514 = sweep::placements(l514, &placements);
    place_514.id = "placement-5.14".into();
    // Inside the chosen chunk: next fit and best fit against first fit.
    place_514
        .variants
        .extend(sweep::fits(l514, &[Fit::Next, Fit::Best]));
    let mut place_pcpu = sweep::placements(Policy::pcpu(), &placements);
    place_pcpu.id = "placement-pcpu".into();
    let mut side_514 = sweep::sideline(l514);
    side_514.id = "sideline-5.14".into();
    let mut side_pcpu = sweep::sideline(Policy::pcpu());
    side_pcpu.id = "sideline-pcpu".into();
    let any = {
        let mut p = l514;
        p.reclaim_divisor = usize::MAX;
        p
    };
    let on_demand = [
        sweep::policies(&[Policy::new(PolicyKind::Linux511), rfc, l514, Policy::pcpu()]),
        sweep::reclaim_divisor(l514, &[1, 2, 4, 8, 16, 32, usize::MAX]),
        sweep::reclaim_min_pages(any, &[1, 2, 4, 8, 16, 32, 64]),
        sweep::marked_threshold(rfc, &[0, 1, 2, 4, 8, 16]),
        sweep::empty_pop(l514, &[(1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64)]),
        sweep::refault_reserve(Policy::pcpu(), &[0, 32, 16, 8, 4]),
        sweep::magazines(l514, &[0, 8, 32, 128]),
        side_514,
        side_pcpu,
        place_514,
        place_pcpu,
    ];
    // Batching matters only when chunks queue up between runs: a periodic
    // work item.
    let batch =
        sweep::reclaim_batch(l514, &[1, 2, 4, usize::MAX]).with_schedule(Schedule::Periodic(1024));
    let mut v = vec![sched, sched_rfc, batch];
    v.extend(
        on_demand
            .into_iter()
            .map(|s| s.with_schedule(Schedule::Modelled)),
    );
    v
}

/// The baseline label of each sweep (Linux's setting).
fn baseline(id: &str) -> &'static str {
    match id {
        "policy" => "linux-5.14",
        "schedule-5.14" | "schedule-rfc" => "on demand",
        "reclaim-divisor" => "1/4",
        "reclaim-min-pages" => "32 pages",
        "marked-threshold" => "2 chunks",
        "empty-pop" => "2/4",
        "refault-reserve" | "magazine" => "off",
        "reclaim-batch" => "all",
        "sideline-5.14" | "sideline-pcpu" => "sidelined",
        _ => "first fit",
    }
}

/// Percent change of `a` against `b`.
fn change(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| (a as f64 - b as f64) / b as f64 * 100.0)
}

/// `−3.1%`, or `−3.1% to +4.0%` for a range.
fn span(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "n/a".into()
    } else if (hi - lo).abs() < 0.05 {
        format!("{lo:+.1}%")
    } else {
        format!("{lo:+.1}% to {hi:+.1}%")
    }
}

/// Percent changes of variant `a` against `b` under `metric`, one per
/// subject that has both.
fn changes(
    subjects: &[Subject],
    res: &SweepResults,
    a: &str,
    b: &str,
    metric: &dyn Fn(&Subject, &RunResult) -> u64,
) -> Vec<f64> {
    subjects
        .iter()
        .filter_map(|s| {
            let ra = res.get(&s.input.name, a)?;
            let rb = res.get(&s.input.name, b)?;
            change(metric(s, ra), metric(s, rb))
        })
        .collect()
}

/// Like [`changes`] for any counter of the results.
fn changes_of(
    subjects: &[Subject],
    res: &SweepResults,
    a: &str,
    b: &str,
    f: &dyn Fn(&RunResult) -> u64,
) -> Vec<f64> {
    changes(subjects, res, a, b, &|_, r| f(r))
}

/// "lowers … by", "raises … by" or "changes … by" depending on the signs.
fn verb(v: &[f64], what: &str) -> String {
    if v.iter().all(|x| *x < -0.05) {
        format!("lowers {what} on every workload ({})", span(v))
    } else if v.iter().all(|x| *x > 0.05) {
        format!("raises {what} on every workload ({})", span(v))
    } else {
        format!("changes {what} by {}", span(v))
    }
}

/// Subjects on which `label` is within 0.5% of the smallest
/// resident-after-removals of the sweep.
fn near_best(subjects: &[Subject], res: &SweepResults, label: &str) -> (usize, usize) {
    let mut k = 0;
    let mut n = 0;
    for s in subjects {
        let Some(rs) = res.input(&s.input.name) else {
            continue;
        };
        let (Some(r), Some(best)) = (
            rs.iter().find(|r| r.label == label),
            rs.iter().map(|r| after_kb(s, r)).min(),
        ) else {
            continue;
        };
        n += 1;
        if after_kb(s, r) as f64 <= best as f64 * 1.005 {
            k += 1;
        }
    }
    (k, n)
}

/// The variant with the smallest resident-after-removals per subject.
fn best_line(subjects: &[Subject], res: &SweepResults) -> String {
    subjects
        .iter()
        .filter_map(|s| {
            let rs = res.input(&s.input.name)?;
            let best = rs
                .iter()
                .min_by_key(|r| (after_kb(s, r), r.depopulated_pages))?;
            Some(format!(
                "{} {} ({} kB)",
                s.short,
                best.label,
                after_kb(s, best)
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per subject: `a` against `b` in kB and percent.
fn pairs(
    subjects: &[Subject],
    res: &SweepResults,
    a: &str,
    b: &str,
    metric: &dyn Fn(&Subject, &RunResult) -> u64,
) -> String {
    subjects
        .iter()
        .filter_map(|s| {
            let x = metric(s, res.get(&s.input.name, a)?);
            let y = metric(s, res.get(&s.input.name, b)?);
            Some(format!("{} {x} vs {y} kB ({})", s.short, pct(x, y)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

struct Writer<'a> {
    cfg: &'a StudyConfig,
    subjects: &'a [Subject],
    files: Vec<PathBuf>,
}

impl Writer<'_> {
    fn write(&mut self, name: &str, text: &str) -> Result<(), LabError> {
        let path = self.cfg.out.join(name);
        std::fs::write(&path, text).map_err(|error| LabError::Io {
            path: path.clone(),
            error,
        })?;
        self.files.push(path);
        Ok(())
    }

    /// Resident-after-removals table (kB, and % against the baseline) of a
    /// sweep, plus a traffic table, plus a chart; returns the markdown.
    fn sweep_section(&mut self, res: &SweepResults, what: &str) -> Result<String, LabError> {
        let mut md = String::new();
        let base = baseline(&res.sweep.id);
        let mut headers = vec![res.sweep.knob.clone()];
        headers.extend(self.subjects.iter().map(|s| s.short.clone()));
        let mut rows = Vec::new();
        let mut traffic = Vec::new();
        let cats: Vec<String> = res.sweep.variants.iter().map(|v| v.label.clone()).collect();
        let mut series: Vec<(String, Vec<Option<f64>>)> = self
            .subjects
            .iter()
            .map(|s| (s.short.clone(), vec![None; cats.len()]))
            .collect();
        for (ci, v) in res.sweep.variants.iter().enumerate() {
            let label = if v.label == base {
                format!("**{}**", v.label)
            } else {
                v.label.clone()
            };
            let mut row = vec![label.clone()];
            let mut trow = vec![label];
            for (si, s) in self.subjects.iter().enumerate() {
                let base_r = res.get(&s.input.name, base);
                match res.get(&s.input.name, &v.label) {
                    Some(r) => {
                        let a = after_kb(s, r);
                        let b = base_r.map_or(0, |b| after_kb(s, b));
                        row.push(format!("{a} ({})", pct(a, b)));
                        if b > 0 {
                            series[si].1[ci] = Some(a as f64 / b as f64 * 100.0);
                        }
                        trow.push(format!(
                            "{} / {} / {}",
                            r.depopulated_pages, r.thrash_runs_pages, r.balance_runs
                        ));
                    }
                    None => {
                        row.push("–".into());
                        trow.push("–".into());
                    }
                }
            }
            rows.push(row);
            traffic.push(trow);
        }
        let _ = writeln!(
            md,
            "Resident memory after removals ({what}), kB, and the change against **{base}**:\n"
        );
        md_table(&mut md, &headers, &rows);
        let _ = writeln!(
            md,
            "Page traffic (pages per unit): depopulated / re-populated within {} balance runs of their depopulation / balance runs:\n",
            self.cfg.options.thrash_runs
        );
        md_table(&mut md, &headers, &traffic);
        let svg_name = format!("study-{}.svg", res.sweep.id);
        let chart = CategoryPlot {
            title: format!("Resident after removals by {} ({what})", res.sweep.knob),
            x_desc: res.sweep.knob.clone(),
            y_desc: format!("% of {base}"),
            categories: cats,
            series,
            reference: Some((format!("{base} = 100 %"), 100.0)),
        };
        let svg = plot::render_category_plot(&chart).map_err(LabError::Plot)?;
        self.write(&svg_name, &svg)?;
        let _ = writeln!(md, "![{}]({svg_name})\n", chart.title);
        Ok(md)
    }
}

/// A timeline chart of several results on one input.
fn timeline_chart(title: String, s: &Subject, rs: &[&RunResult]) -> Result<String, LabError> {
    let mut p = TimePlot {
        title,
        ..TimePlot::default()
    };
    for (i, r) in rs.iter().enumerate() {
        p.lines.push(Line::solid(
            r.label.clone(),
            plot::series(&r.timeline, |x| Some(x.resident_kb)),
            PALETTE[i % PALETTE.len()],
        ));
    }
    if let Some(first) = rs.first() {
        let marks = s.input.phase_marks();
        let meminfo = marks
            .iter()
            .zip(&first.phases)
            .filter_map(|((_, t), p)| p.kernel_percpu_kb.map(|kb| (*t, kb as f64)))
            .collect();
        plot::reference_lines(
            &mut p,
            &first.timeline,
            format!("floor ({})", sweep::placement_label(ClassMode::None)),
            meminfo,
            &marks,
        );
    }
    plot::render_time_plot(&p).map_err(LabError::Plot)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn pins_md(md: &mut String, r: &PinsReport, top: usize) {
    let kb = |p: u64| r.kb(p as f64) as u64;
    let _ = writeln!(
        md,
        "**{}** at phase {} ({}, {}): resident {} kB; {} kB hold live objects, {} kB are populated but empty, {} kB are the static area.\n",
        r.trace,
        r.phase,
        r.policy,
        r.classes,
        kb(r.resident_pages),
        kb(r.used_pages),
        kb(r.empty_pages),
        kb(r.static_pages)
    );
    let headers: Vec<String> = [
        "call site",
        "objects",
        "live bytes",
        "pages touched",
        "pages pinned",
        "pinned kB",
        "share kB",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = r
        .by_call_site
        .iter()
        .take(top)
        .map(|x| {
            vec![
                format!("`{}`", x.owner),
                x.objects.to_string(),
                x.bytes.to_string(),
                x.pages_touched.to_string(),
                x.pages_pinned.to_string(),
                kb(x.pages_pinned).to_string(),
                format!("{:.0}", r.kb(x.share_pages)),
            ]
        })
        .collect();
    md_table(md, &headers, &rows);
    let tasks = &r.by_task;
    let pinning = tasks.iter().filter(|t| t.pages_pinned > 0).count() as u64;
    let _ = writeln!(
        md,
        "By task: {} own live objects, {} the sole owner of at least one page; the top one, `{}`, pins {}.\n",
        plural(tasks.len() as u64, "task", "tasks"),
        plural(pinning, "is", "are"),
        tasks.first().map_or("-", |t| t.owner.as_str()),
        plural(tasks.first().map_or(0, |t| t.pages_pinned), "page", "pages"),
    );
}

/// Averages over the `mkdir` tasks (one per surviving cgroup) of a pin
/// report: (cgroups, pages touched per cgroup, pages pinned per cgroup).
fn per_cgroup(r: &PinsReport) -> (u64, f64, f64) {
    let rows: Vec<_> = r
        .by_task
        .iter()
        .filter(|t| t.owner.starts_with("mkdir-"))
        .collect();
    let n = rows.len().max(1) as f64;
    (
        rows.len() as u64,
        rows.iter().map(|t| t.pages_touched).sum::<u64>() as f64 / n,
        rows.iter().map(|t| t.pages_pinned).sum::<u64>() as f64 / n,
    )
}

/// JSON dump of the results.
#[derive(Serialize)]
struct Dump<'a> {
    sweeps: Vec<DumpSweep<'a>>,
}

#[derive(Serialize)]
struct DumpSweep<'a> {
    id: &'a str,
    knob: &'a str,
    results: Vec<&'a RunResult>,
}

/// Loads the inputs: synthetic workloads, then the captures that exist.
fn load(
    cfg: &StudyConfig,
    progress: &(dyn Fn(&str) + Sync),
    notes: &mut Vec<String>,
) -> Result<(Vec<Subject>, Vec<Vec<String>>), LabError> {
    progress("generating workloads");
    let mut subjects = Vec::new();
    let mut rows = Vec::new();
    let short_syn = ["cover letter", "churn", "bpf maps", "mix"];
    for (t, short) in workloads(cfg.scale).iter().zip(short_syn) {
        rows.push(vec![
            format!("{short} (syn)"),
            format!("`{}`", t.name),
            t.allocs().to_string(),
            format!("`{}`", t.params),
        ]);
        subjects.push(subject(Input::synthetic(t)?, format!("{short} (syn)")));
    }
    for path in &cfg.captures {
        if !is_capture(path) {
            notes.push(format!(
                "capture `{}` not found: skipped (pass its folder with --capture)",
                path.display()
            ));
            continue;
        }
        progress(&format!("loading {}", path.display()));
        let input = Input::open(path)?;
        let short = if input.name.contains("churn") {
            "churn (real)".to_string()
        } else if input.name.contains("1000x10") {
            "cover letter (real)".to_string()
        } else {
            format!("{} (real)", input.name)
        };
        let allocs = input
            .records
            .iter()
            .filter(|r| matches!(r.event, pcpu_trace::Event::Alloc(_)))
            .count();
        rows.push(vec![
            short.clone(),
            format!("`{}`", input.name),
            allocs.to_string(),
            "real Linux 6.1 capture".into(),
        ]);
        subjects.push(subject(input, short));
    }
    Ok((subjects, rows))
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
    let (subjects, workload_rows) = load(cfg, progress, &mut notes)?;
    let inputs: Vec<Input> = subjects.iter().map(|s| s.input.clone()).collect();
    let sweeps = sweeps();
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
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.sweep.id == id)
            .expect("sweep present")
    };
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
    // Pages per surviving cgroup under each placement (first cover letter).
    let mut per_placement = Vec::new();
    if let Some(s) = subjects
        .iter()
        .find(|s| s.short.starts_with("cover letter"))
    {
        for v in &by_id("placement-5.14").sweep.variants {
            per_placement.push((v.label.clone(), pins::pins_for(&s.input, "C", v)?));
        }
    }
    progress("seeds");
    let seeds: Vec<u64> = (1..=cfg.seeds).collect();
    let seed_pairs = targets::seed_pairs(cfg.scale, &seeds, &cfg.options, cfg.threads)?;
    let replays = total_jobs
        + fidelity.len()
        + pin_reports.len()
        + per_placement.len()
        + 2 * seed_pairs.len();
    progress("writing the document");
    let mut w = Writer {
        cfg,
        subjects: &subjects,
        files: Vec::new(),
    };
    let sched = by_id("schedule-5.14");
    let pol = by_id("policy");
    let div = by_id("reclaim-divisor");
    let minp = by_id("reclaim-min-pages");
    let mt = by_id("marked-threshold");
    let ep = by_id("empty-pop");
    let rr = by_id("refault-reserve");
    let mag = by_id("magazine");
    let batch = by_id("reclaim-batch");
    let side = by_id("sideline-5.14");
    let side_pcpu = by_id("sideline-pcpu");
    let place = by_id("placement-5.14");
    let place_pcpu = by_id("placement-pcpu");
    let real: Vec<&Subject> = subjects.iter().filter(|s| !s.input.synthetic).collect();
    let real_only =
        |res: &SweepResults, a: &str, b: &str, f: &dyn Fn(&Subject, &RunResult) -> u64| {
            real.iter()
                .filter_map(|s| {
                    let ra = res.get(&s.input.name, a)?;
                    let rb = res.get(&s.input.name, b)?;
                    change(f(s, ra), f(s, rb))
                })
                .collect::<Vec<f64>>()
        };

    // ---- Answers, computed.
    let mut answers: Vec<(String, String)> = Vec::new();
    {
        let (k, n) = near_best(&subjects, sched, "on demand");
        let late = changes(
            &subjects,
            sched,
            "every 16384 events",
            "on demand",
            &after_kb,
        );
        let lead = if k == n {
            "Run it whenever the free path queues a candidate, as 5.14 does: running"
        } else {
            "Running"
        };
        let mut a = format!(
            "{lead} the balance work on demand keeps resident memory within 0.5% of the best schedule on {k} of {n} workloads; a periodic timer every 16384 allocation/free events {}",
            verb(&late, "resident memory after removals")
        );
        let r4 = real_only(sched, "every 4th run", "recorded", &after_kb);
        let r4runs = real_only(sched, "every 4th run", "recorded", &|_, r| r.balance_runs);
        let r64 = real_only(sched, "every 64th run", "recorded", &after_kb);
        if !r4.is_empty() {
            let _ = write!(
                a,
                "; on the real captures, keeping every 4th recorded run changes the balance runs by {} and resident memory by {}, every 64th run changes resident memory by {}",
                span(&r4runs),
                span(&r4),
                span(&r64)
            );
        }
        let b1 = changes(&subjects, batch, "1 chunk", "all", &after_kb);
        let _ = write!(
            a,
            ". Batching reclaim does not help: with a timer every 1024 events, one chunk per run instead of all {}",
            verb(&b1, "resident memory after removals")
        );
        a.push('.');
        answers.push(("How often to scan and depopulate".into(), a));
    }
    {
        let half = changes(&subjects, div, "1/2", "1/4", &after_kb);
        let any = changes(&subjects, div, "any page", "1/4", &after_kb);
        let any_runs = changes_of(&subjects, div, "any page", "1/4", &|r| r.balance_runs);
        let (k, n) = near_best(&subjects, div, "1/4");
        let one = changes(&subjects, mt, "1 chunk", "2 chunks", &after_kb);
        let three = changes(&subjects, mt, "3 chunks", "2 chunks", &after_kb);
        let nine = changes(&subjects, mt, "9 chunks", "2 chunks", &after_kb);
        let (k2, n2) = near_best(&subjects, mt, "2 chunks");
        let a = format!(
            "1/4 is within 0.5% of the best fraction on {k} of {n} workloads; requiring 1/2 {}, while qualifying a chunk with any empty page {} for {} balance runs. \
             \"2 or more candidates\" (seed-rfc) is within 0.5% of its best setting on {k2} of {n2} workloads; 1 candidate {}, 3 {}, 9 {}.",
            verb(&half, "it"),
            verb(&any, "it"),
            span(&any_runs),
            verb(&one, "it"),
            verb(&three, "it"),
            verb(&nine, "it")
        );
        answers.push((
            "\"1/4 of pages free\" and \"2 or more candidate chunks\"".into(),
            a,
        ));
    }
    {
        let v = changes(&subjects, side, "sidelined", "kept in slot", &after_kb);
        let rf = changes(&subjects, side, "sidelined", "kept in slot", &refill_kb);
        let rep = changes_of(&subjects, side, "sidelined", "kept in slot", &|r| {
            r.populated_pages
        });
        let vp = changes(&subjects, side_pcpu, "sidelined", "kept in slot", &after_kb);
        let w = changes(&subjects, pol, "linux-5.14", "seed-rfc", &after_kb);
        let a = format!(
            "With everything else 5.14's, sidelining depopulated chunks against keeping them in their slots {}, changes the refill peak by {} and the pages populated by {}; under pcpu's rules it changes resident memory after removals by {}. 5.14's whole design against the RFC's {}.",
            verb(&v, "resident memory after removals"),
            span(&rf),
            span(&rep),
            span(&vp),
            verb(&w, "it")
        );
        answers.push((
            "Packing allocations after depopulation (sidelining)".into(),
            a,
        ));
    }
    {
        let fl = changes(&subjects, place, "size classes", "first fit", &floor_kb);
        let re = changes(&subjects, place, "size classes", "first fit", &refill_kb);
        let cs = changes(
            &subjects,
            place,
            "call-site classes",
            "first fit",
            &floor_kb,
        );
        // The other slab idea: per-CPU magazines (32 areas per size).
        let hits: Vec<f64> = subjects
            .iter()
            .filter_map(|s| mag.get(&s.input.name, "32"))
            .map(|r| 100.0 * r.magazine_hits as f64 / r.allocs.max(1) as f64)
            .collect();
        let max_hits = hits.iter().copied().fold(0.0, f64::max);
        let held = changes(&subjects, mag, "32", "off", &after_kb);
        let a = format!(
            "Segregating by size (page-exclusive power-of-two classes) {}, and {} while the workload is at its peak; segregating by call site {}. A per-CPU cache of freed objects (magazines of 32) would serve at most {max_hits:.1}% of the allocations and {}.",
            verb(&fl, "the floor after removals"),
            verb(&re, "resident memory"),
            verb(&cs, "the floor"),
            verb(&held, "resident memory after removals")
        );
        answers.push(("Separate chunks for small objects (slab idea)".into(), a));
    }
    {
        let t = changes(&subjects, place, "task-contiguous", "first fit", &after_kb);
        let l = changes(&subjects, place, "lifetime classes", "first fit", &after_kb);
        let tp = changes(
            &subjects,
            place_pcpu,
            "task-contiguous",
            "first fit",
            &after_kb,
        );
        let nf = changes(&subjects, place, "next fit", "first fit", &after_kb);
        let bf = changes(&subjects, place, "best fit", "first fit", &after_kb);
        let a = format!(
            "Keeping each allocating task's objects contiguous {} under 5.14's rules ({} under pcpu's); lifetime classes derived from the trace, the upper bound of lifetime hints, {}. Without classes, next fit {} (consecutive allocations, a cgroup's among them, stay together) and best fit {}.",
            verb(&t, "resident memory after removals"),
            span(&tp),
            verb(&l, "it"),
            verb(&nf, "it"),
            verb(&bf, "it")
        );
        answers.push(("Placement by task and by lifetime".into(), a));
    }

    // ---- Headline numbers.
    let mut headline = Vec::new();
    for s in &subjects {
        let (Some(l511), Some(l514r), Some(pc)) = (
            pol.get(&s.input.name, "linux-5.11"),
            pol.get(&s.input.name, "linux-5.14"),
            pol.get(&s.input.name, "pcpu"),
        ) else {
            continue;
        };
        let mut line = format!(
            "{}: linux-5.11 {} kB, linux-5.14 {} kB ({} against 5.11), pcpu {} kB ({} against 5.14); floor {} kB, ideal {} kB",
            s.short,
            after_kb(s, l511),
            after_kb(s, l514r),
            pct(after_kb(s, l514r), after_kb(s, l511)),
            after_kb(s, pc),
            pct(after_kb(s, pc), after_kb(s, l514r)),
            floor_kb(s, l514r),
            ideal_kb(s, l514r)
        );
        if let (Some(t), Some(lt)) = (
            place.get(&s.input.name, "task-contiguous"),
            place.get(&s.input.name, "lifetime classes"),
        ) {
            let _ = write!(
                line,
                "; with 5.14 rules, task-contiguous placement {} kB, lifetime classes {} kB",
                after_kb(s, t),
                after_kb(s, lt)
            );
        }
        headline.push(line);
    }

    let mut md = String::new();
    let _ = writeln!(md, "# Percpu depopulation and placement: a policy study\n");
    let _ = writeln!(
        md,
        "Generated by `{}` ({} replays{}). Every number in this file comes from that run; \
         rerun the command to regenerate it and its charts.\n",
        cfg.command,
        replays,
        if cfg.timings {
            format!(", {:.1} s", start.elapsed().as_secs_f64())
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        md,
        "The questions are those left open in the seed thread (\"[PATCH rfc 3/4] percpu: on \
         demand chunk depopulation\", Roman Gushchin and Dennis Zhou, March 2021): how often to \
         scan and depopulate; whether \"more than 1/4 of pages free\" and \"2 or more candidate \
         chunks\" are the right triggers; whether allocations should be packed into fewer chunks \
         after depopulation; whether small objects need their own chunks. A last question looks \
         at placement by allocating task and by lifetime.\n"
    );
    let _ = writeln!(
        md,
        "**The measure.** *Resident after removals* is the resident percpu memory \
         (`/proc/meminfo` Percpu: populated pages × units × 4 KiB) averaged over the phase \
         markers that follow a removal ({}). The *floor* is the memory of the pages that hold at \
         least one live byte under the placement used: no depopulation policy can go below it. \
         The *ideal* is the live bytes rounded up to whole pages.\n",
        subjects
            .iter()
            .map(|s| format!("{}: {}", s.short, s.after.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(md, "## Answers in brief\n");
    for (q, a) in &answers {
        let _ = writeln!(md, "* **{q}.** {a}");
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "Resident after removals by policy (balance work on demand):\n"
    );
    for h in &headline {
        let _ = writeln!(md, "* {h}");
    }
    md.push('\n');
    for n in &notes {
        let _ = writeln!(md, "> Note: {n}\n");
    }

    // ---- Workloads.
    let _ = writeln!(md, "## Workloads\n");
    md_table(
        &mut md,
        &["workload", "trace", "allocations", "generator / source"].map(String::from),
        &workload_rows,
    );
    let _ = writeln!(
        md,
        "Synthetic traces come from `pcpu_lab::gen` with fixed seeds (`pcpu gen` writes them as \
         capture folders for `pcpu replay`). They use the call sites of the real captures, one \
         `mkdir` process per cgroup and one `bpftool` process per BPF application, the \
         cgroup teardown order seen in the capture (refs from RCU callbacks, then the css \
         objects from a worker), and a boot phase. They have no kernel Percpu figure and no \
         balance-work events.\n\n\
         **Balance timing.** Except in question 1, every replay runs the balance work *on \
         demand*: right after an allocation or free that schedules it under the policy's own \
         rules. This treats synthetic and real traces alike and judges each policy by its own \
         scheduling (the real captures' recorded `pcpu_balance_workfn` points are those of \
         Linux 6.1). Question 1 varies the timing.\n"
    );

    // ---- Q1.
    let _ = writeln!(
        md,
        "## 1. How often should the balance work scan and depopulate?\n"
    );
    let _ = writeln!(md, "**Answer.** {}\n", answers[0].1);
    let _ = writeln!(
        md,
        "Dennis: \"What is the right frequency to do depopulation scanning? … Depopulation isn't \
         necessarily as high a priority.\" Roman: the number of candidate chunks is the metric. \
         5.14 answered with no scanning at all: candidates are picked on the free path and the \
         work runs whenever a free queues one. Here the same rules run on demand, at the \
         kernel's recorded runs (real captures), at only every Nth recorded run (a work item \
         that runs N times less often), or from a periodic timer every N allocation/free events \
         (whether scheduled or not).\n"
    );
    md.push_str(&w.sweep_section(sched, "linux-5.14 rules")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}.\n",
        best_line(&subjects, sched)
    );
    let _ = writeln!(
        md,
        "The same schedules for the RFC's rules (`seed-rfc`: marked chunks, grow-or-shrink, slot \
         scan from the top):\n"
    );
    md.push_str(&w.sweep_section(by_id("schedule-rfc"), "seed-rfc rules")?);
    let _ = writeln!(
        md,
        "### 1b. Reclaim batching\n\n\
         5.14 depopulates every queued chunk in one run (with `cond_resched()` between \
         chunks). A run that reclaims at most N chunks and schedules itself again bounds the \
         work per run. On demand that changes nothing here (a free queues one chunk and the run \
         follows at once), so the runs below come from a periodic timer every 1024 \
         allocation/free events, between which chunks queue up.\n"
    );
    md.push_str(&w.sweep_section(
        batch,
        "linux-5.14 rules, every 1024 events, chunks per run varied",
    )?);
    let _ = writeln!(
        md,
        "One chunk per run against all: resident after removals {}, pages depopulated {}: \
         a bounded run leaves memory populated until later runs catch up.\n",
        span(&changes(&subjects, batch, "1 chunk", "all", &after_kb)),
        span(&changes_of(&subjects, batch, "1 chunk", "all", &|r| r.depopulated_pages))
    );

    // ---- Q2.
    let _ = writeln!(
        md,
        "## 2. Are \"1/4 of pages free\" and \"2 or more candidate chunks\" the right triggers?\n"
    );
    let _ = writeln!(md, "**Answer.** {}\n", answers[1].1);
    let _ = writeln!(
        md,
        "The RFC marked a chunk when more than 1/4 of its pages were free and populated (and it \
         was not alone in its slot), and scheduled depopulation once 2 or more chunks were \
         marked. 5.14 kept the 1/4 rule (as `>=`), dropped the slot and 2-chunk rules, and \
         instead requires the system to keep more than `EMPTY_POP_PAGES_HIGH` empty pages \
         without the chunk. Four knobs are swept, one at a time.\n"
    );
    let _ = writeln!(md, "### 2a. The empty fraction (5.14's `nr_pages / 4`)\n");
    md.push_str(&w.sweep_section(div, "linux-5.14, fraction varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}. Any empty page against 1/4: {}.\n",
        best_line(&subjects, div),
        pairs(&subjects, div, "any page", "1/4", &after_kb)
    );
    let _ = writeln!(
        md,
        "### 2b. An absolute threshold instead (fraction off, at least N empty pages)\n\n\
         With 128-page chunks, 32 pages is the same threshold as 1/4.\n"
    );
    md.push_str(&w.sweep_section(minp, "linux-5.14, fraction off, minimum varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}.\n",
        best_line(&subjects, minp)
    );
    let _ = writeln!(md, "### 2c. The RFC's \"2 or more candidate chunks\"\n");
    md.push_str(&w.sweep_section(mt, "seed-rfc, threshold varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload: {}. One candidate against two: {}.\n",
        best_line(&subjects, mt),
        pairs(&subjects, mt, "1 chunk", "2 chunks", &after_kb)
    );
    let _ = writeln!(
        md,
        "### 2d. The reserve of empty pages (`EMPTY_POP_PAGES_LOW/HIGH`)\n\n\
         Roman suggested doubling LOW/HIGH when memcg accounting is on; they were never changed. \
         The reserve is both what reclaim leaves populated and what the work refills.\n"
    );
    md.push_str(&w.sweep_section(ep, "linux-5.14, reserve varied")?);
    let _ = writeln!(
        md,
        "Doubled reserve (4/8) against 2/4: {}.\n",
        pairs(&subjects, ep, "4/8", "2/4", &after_kb)
    );
    let _ = writeln!(
        md,
        "### 2e. Page traffic under churn: the refault-aware reserve (`pcpu`)\n\n\
         Packing empties pages completely, so on a churn workload `pcpu` gives back at every \
         trough pages that the next round populates again, where 5.14's scattered placement \
         leaves them pinned. Over one round the pages populated are at least the peak minus \
         the trough, so with equal peaks no policy can both sit lower than 5.14 at the troughs \
         and populate fewer pages than 5.14 does: the two targets meet only where the troughs \
         are equal. `pcpu` therefore adapts: each page that reclaim depopulates gets a stamp \
         from a reclaim clock, and a page populated again `d` reclaimed pages later (a refault) \
         shows that `d` more empty pages would have kept it. Reclaim then stops that many \
         pages above the reserve, capped at a fraction of the pages in use, and the amount \
         decays as reclaim goes on without refaults. Without refaults (the cover letter's \
         one-way removal) it never engages, but a few refaults before a removal are enough \
         to hold pages back: at 1/16 the real cover-letter capture keeps 14 more empty pages \
         per unit at phase C with the recorded balance runs. So the knob is off by default, and \
         the table shows what each setting trades.\n"
    );
    md.push_str(&w.sweep_section(rr, "pcpu, refault reserve varied")?);
    let mut rows = Vec::new();
    for s in &subjects {
        let Some(l) = pol.get(&s.input.name, "linux-5.14") else {
            continue;
        };
        let mut row = vec![s.short.clone(), l.populated_pages.to_string()];
        for r in rr.input(&s.input.name).unwrap_or(&[]) {
            let worst = r.phase_changes(l).into_iter().fold(f64::MIN, f64::max);
            row.push(format!(
                "{} ({}), {:+.1}%",
                r.populated_pages,
                pct(r.populated_pages, l.populated_pages),
                worst
            ));
        }
        rows.push(row);
    }
    let mut headers = vec!["workload".to_string(), "linux-5.14 populated".into()];
    headers.extend(
        rr.sweep
            .variants
            .iter()
            .map(|v| format!("pcpu, {}", v.label)),
    );
    let _ = writeln!(
        md,
        "Pages populated over the whole run (change against linux-5.14) and the worst phase \
         against linux-5.14 (largest Percpu increase at any phase marker):\n"
    );
    md_table(&mut md, &headers, &rows);

    // ---- Q3.
    let _ = writeln!(
        md,
        "## 3. Should allocations be packed into fewer chunks after depopulation?\n"
    );
    let _ = writeln!(md, "**Answer.** {}\n", answers[2].1);
    let _ = writeln!(
        md,
        "Dennis proposed sidelining depopulated chunks so that later allocations go to other \
         chunks first; Roman argued depopulated chunks are naturally deprioritised. 5.14 \
         adopted sidelining: a depopulated chunk moves to a slot after all active slots and is \
         reintegrated on first use. The `sideline` knob of `Policy` isolates that one \
         choice: off, reclaim returns a depopulated chunk to its normal slot, everything else \
         unchanged (the sweeps below). The whole policies are compared first: `seed-rfc` \
         leaves depopulated chunks in their slots, `linux-5.14` sidelines, `linux-5.11` \
         depopulates only whole free chunks, and `pcpu` is this project's policy. *Refill* is the resident \
         memory averaged over the phases right after creation ({}); re-populated pages are \
         pages populated again after a depopulation of the same chunk.\n",
        subjects
            .iter()
            .map(|s| format!("{}: {}", s.short, s.refill.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    md.push_str(&w.sweep_section(pol, "whole policies")?);
    let mut rows = Vec::new();
    for s in &subjects {
        for r in pol.input(&s.input.name).unwrap_or(&[]) {
            rows.push(vec![
                s.short.clone(),
                r.label.clone(),
                after_kb(s, r).to_string(),
                refill_kb(s, r).to_string(),
                mean_over(r, &s.after, |p| p.chunks).to_string(),
                r.populated_pages.to_string(),
                r.repopulated_pages.to_string(),
                r.thrash_events_pages.to_string(),
            ]);
        }
    }
    md_table(
        &mut md,
        &[
            "workload".to_string(),
            "policy".into(),
            "after removals kB".into(),
            "refill kB".into(),
            "chunks after removals".into(),
            "populated pages".into(),
            "re-populated pages".into(),
            format!("re-populated within {} events", cfg.options.thrash_events),
        ],
        &rows,
    );
    let _ = writeln!(
        md,
        "5.14 against seed-rfc after removals: {}.\n",
        pairs(&subjects, pol, "linux-5.14", "seed-rfc", &after_kb)
    );
    let _ = writeln!(
        md,
        "### Sidelining alone\n\n\
         Under 5.14's rules sidelining does more than order the slot walk: a sidelined chunk \
         stays isolated, so every page that later frees empty in it is reclaimed by the next \
         run, while a chunk returned to its slot becomes a candidate again only once a quarter \
         of its pages are empty. `pcpu` qualifies a chunk with any empty page, so there the \
         knob only changes the order in which chunks are reused.\n"
    );
    md.push_str(&w.sweep_section(side, "linux-5.14, sidelining on and off")?);
    let _ = writeln!(
        md,
        "Refill peak, sidelined against kept in slot (5.14 rules): {}.\n",
        pairs(&subjects, side, "sidelined", "kept in slot", &refill_kb)
    );
    md.push_str(&w.sweep_section(side_pcpu, "pcpu, sidelining on and off")?);
    for s in subjects
        .iter()
        .filter(|s| s.short.starts_with("cover letter") || s.short.starts_with("churn"))
    {
        let rs: Vec<&RunResult> = pol.input(&s.input.name).unwrap_or(&[]).iter().collect();
        let slug = s
            .short
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let name = format!("study-timeline-{slug}.svg");
        let title = format!("{}: Percpu over time by policy", s.short);
        let svg = timeline_chart(title.clone(), s, &rs)?;
        w.write(&name, &svg)?;
        let _ = writeln!(md, "![{title}]({name})\n");
    }

    // ---- Q4.
    let _ = writeln!(
        md,
        "## 4. Do small objects need their own chunks (the slab idea)?\n"
    );
    let _ = writeln!(md, "**Answer.** {}\n", answers[3].1);
    let _ = writeln!(
        md,
        "Roman: \"probably the right thing to do long-term is to introduce some sort of a slab \
         allocator. At least, we can put small allocations (aka percpu reference counters) into \
         separate chunks.\" Size classes give every power-of-two size bucket pages of its own \
         (page-exclusive regions: the nearest pcpu-core gets to separate chunks); call-site \
         classes do the same per allocating function. Both run on the 5.14 depopulation rules, \
         against Linux's first fit; the floor is what placement alone decides, peak and refill \
         what it costs while the objects are alive.\n"
    );
    let mut rows = Vec::new();
    for s in &subjects {
        for r in place.input(&s.input.name).unwrap_or(&[]) {
            rows.push(vec![
                s.short.clone(),
                r.label.clone(),
                after_kb(s, r).to_string(),
                floor_kb(s, r).to_string(),
                ideal_kb(s, r).to_string(),
                refill_kb(s, r).to_string(),
                r.peak_kb.to_string(),
                r.chunks_created.to_string(),
            ]);
        }
    }
    md_table(
        &mut md,
        &[
            "workload",
            "placement (5.14 rules)",
            "after removals kB",
            "floor kB",
            "ideal kB",
            "refill kB",
            "peak kB",
            "chunks created",
        ]
        .map(String::from),
        &rows,
    );
    if let Some((_, first)) = per_placement.first() {
        let _ = writeln!(
            md,
            "Why, on the {} at phase C: pages per surviving cgroup (`mkdir` task) by placement, from the pin report:\n",
            first.trace
        );
        let mut rows = Vec::new();
        for (label, r) in &per_placement {
            let (n, touched, pinned) = per_cgroup(r);
            rows.push(vec![
                label.clone(),
                n.to_string(),
                format!("{touched:.2}"),
                format!("{pinned:.2}"),
                (r.kb(r.used_pages as f64) as u64).to_string(),
                r.by_call_site.first().map_or("-".into(), |c| {
                    format!("`{}` ({} pages)", c.owner, c.pages_pinned)
                }),
            ]);
        }
        md_table(
            &mut md,
            &[
                "placement",
                "surviving cgroups",
                "pages touched per cgroup",
                "pages pinned per cgroup",
                "pages holding live objects, kB",
                "call site pinning most",
            ]
            .map(String::from),
            &rows,
        );
        let touched = |l: &str| {
            per_placement
                .iter()
                .find(|(x, _)| x == l)
                .map(|(_, r)| per_cgroup(r))
        };
        if let (Some(ff), Some(sc), Some(lt)) = (
            touched("first fit"),
            touched("size classes"),
            touched("lifetime classes"),
        ) {
            let _ = writeln!(
                md,
                "A cgroup's objects come in {} sizes; with size classes each surviving cgroup is spread over one region per size, among the removed cgroups' objects of that size: {:.2} pages touched ({:.2} pinned alone) per surviving cgroup, against {:.2} ({:.2}) with first fit and {:.2} ({:.2}) with lifetime classes, whose survivors share their pages.\n",
                {
                    let mut sizes: Vec<u32> =
                        crate::gen::MEMCG_GROUP.iter().map(|s| s.size).collect();
                    sizes.sort_unstable();
                    sizes.dedup();
                    sizes.len()
                },
                sc.1,
                sc.2,
                ff.1,
                ff.2,
                lt.1,
                lt.2
            );
        }
    }

    // ---- Q4b: magazines.
    let _ = writeln!(
        md,
        "### 4b. The other slab idea: a per-CPU cache of freed objects\n\n\
         The slab allocators answer small-object churn with per-CPU caches of freed objects \
         (magazines); librseq's percpu pool is a free list. `pcpu_core::Magazine` models one in \
         front of the 5.14 rules: a free on CPU *c* goes to *c*'s magazine of that size and \
         alignment (a full one frees its older half), an allocation on *c* takes from it \
         first, and every balance run drains all magazines before it works, so reclaim sees \
         their areas. A cached area stays allocated: the cost is memory, the gain the \
         bookkeeping of each allocation it serves (an alloc+free pair through a magazine \
         takes 14 ns in the core instead of 61 ns, BENCHMARKS.md).\n"
    );
    md.push_str(&w.sweep_section(mag, "linux-5.14 rules, per-CPU magazines varied")?);
    let mut rows = Vec::new();
    for s in &subjects {
        let results = mag.input(&s.input.name).unwrap_or(&[]);
        let Some(off) = results.iter().find(|r| r.label == "off") else {
            continue;
        };
        let allocs = off.allocs.max(1);
        let mut row = vec![s.short.clone()];
        for r in results.iter().filter(|r| r.label != "off") {
            let worst = r.phase_changes(off).into_iter().fold(f64::MIN, f64::max);
            row.push(format!(
                "{:.1}%, {} ({}), {:+.1}%",
                100.0 * r.magazine_hits as f64 / allocs as f64,
                r.populated_pages,
                pct(r.populated_pages, off.populated_pages),
                worst
            ));
        }
        rows.push(row);
    }
    let mut headers = vec!["workload".to_string()];
    headers.extend(
        mag.sweep
            .variants
            .iter()
            .filter(|v| v.label != "off")
            .map(|v| format!("magazine of {}", v.label)),
    );
    let _ = writeln!(
        md,
        "Per magazine size: allocations served by a magazine, pages populated over the run \
         (change against no magazine) and the worst phase against no magazine (largest Percpu \
         increase at any phase marker):\n"
    );
    md_table(&mut md, &headers, &rows);
    let _ = writeln!(
        md,
        "Magazines serve few allocations on these workloads: cgroups and BPF programs free \
         their per-CPU objects in bulk, long after allocating them, and the next objects of a \
         size mostly come from another task on another CPU after the magazines were drained. \
         What the magazines hold stays populated until the next balance run, which only a free \
         that reaches the allocator schedules: the worst phases are troughs and trace ends{}. So the kernel \
         has little to gain from them, and pcpu-core keeps them opt-in; the `pcpu` crate's \
         thread cache is for the other pattern, programs that allocate and free per-CPU \
         objects at a high rate on one thread, and is bounded per thread.\n",
        subjects
            .iter()
            .find(|s| s.short == "cover letter (syn)")
            .and_then(|s| {
                let on = mag.get(&s.input.name, "32")?.phase("D")?.percpu_kb;
                let off = mag.get(&s.input.name, "off")?.phase("D")?.percpu_kb;
                Some(format!(
                    " (with magazines of 32, the synthetic cover letter's phase D holds {on} kB against {off} kB)"
                ))
            })
            .unwrap_or_default()
    );

    // ---- Q5.
    let _ = writeln!(
        md,
        "## 5. Placement: keep each task's objects together, or each lifetime\n"
    );
    let _ = writeln!(md, "**Answer.** {}\n", answers[4].1);
    let _ = writeln!(
        md,
        "A cgroup's objects are allocated by one `mkdir` and freed together; first fit \
         scatters them over holes left by others, so one surviving cgroup keeps several \
         otherwise free pages resident. Task-contiguous placement keeps each allocating task's \
         objects in one run; lifetime classes (derived from the trace: objects freed in the \
         same phase share pages) are the upper bound of what lifetime hints could do. Next fit \
         and best fit change only where inside the chunk the slot walk chose an object goes \
         (the `fit` knob of `Policy`): next fit continues after the previous allocation, best \
         fit takes the smallest free run that fits.\n"
    );
    md.push_str(&w.sweep_section(place, "linux-5.14 rules, placement varied")?);
    let _ = writeln!(
        md,
        "Floor after removals, task-contiguous against first fit: {}. Lifetime classes against first fit: {}. Next fit against first fit: {}; its cost is at the peaks, refill against first fit: {}.\n",
        pairs(&subjects, place, "task-contiguous", "first fit", &floor_kb),
        pairs(&subjects, place, "lifetime classes", "first fit", &floor_kb),
        pairs(&subjects, place, "next fit", "first fit", &floor_kb),
        pairs(&subjects, place, "next fit", "first fit", &refill_kb)
    );
    let _ = writeln!(
        md,
        "The same with the `pcpu` policy's depopulation rules:\n"
    );
    md.push_str(&w.sweep_section(place_pcpu, "pcpu rules, placement varied")?);
    let _ = writeln!(
        md,
        "Smallest resident per workload, 5.14 rules: {}. With pcpu rules: {}.\n",
        best_line(&subjects, place),
        best_line(&subjects, place_pcpu)
    );

    // ---- Q6: pins.
    let _ = writeln!(md, "## 6. Who pins the memory\n");
    let _ = writeln!(
        md,
        "`pcpu pins <capture> --at <phase>` replays up to a phase and attributes every resident \
         page: *pinned* pages hold live objects of one call site only (freeing them would \
         empty the page); *share* splits each page among the call sites on it by live bytes \
         (shares add up to the pages holding live objects). Linux 5.14 rules, first fit:\n"
    );
    for r in &pin_reports {
        pins_md(&mut md, r, 6);
    }

    // ---- Cost.
    let _ = writeln!(md, "## 7. Cost\n");
    let _ = writeln!(
        md,
        "A replay cannot count instructions. Deterministic proxies: balance runs and backend \
         page operations (populate/depopulate calls) per 1000 allocation/free events, whole \
         policies, balance on demand{}:\n",
        if cfg.timings {
            "; and, as a rough proxy of allocator cost, the replay's wall time per event \
             (varies from run to run)"
        } else {
            ""
        }
    );
    let mut rows = Vec::new();
    for s in &subjects {
        for r in pol.input(&s.input.name).unwrap_or(&[]) {
            let per_k = |x: u64| {
                format!(
                    "{:.2}",
                    x as f64 * 1000.0 / r.alloc_free_events.max(1) as f64
                )
            };
            let mut row = vec![
                s.short.clone(),
                r.label.clone(),
                per_k(r.balance_runs),
                per_k(r.page_ops),
                r.chunks_created.to_string(),
            ];
            if cfg.timings {
                row.push(format!(
                    "{:.0}",
                    r.wall_s * 1e9 / r.alloc_free_events.max(1) as f64
                ));
            }
            rows.push(row);
        }
    }
    let mut headers: Vec<String> = [
        "workload",
        "policy",
        "balance runs / 1k events",
        "page ops / 1k events",
        "chunks created",
    ]
    .map(String::from)
    .to_vec();
    if cfg.timings {
        headers.push("replay wall time, ns / event".into());
    }
    md_table(&mut md, &headers, &rows);
    if !cfg.timings {
        let _ = writeln!(
            md,
            "(Wall times are left out so that this file is identical from run to run; \
             `pcpu study --timings` adds them.)\n"
        );
    }

    // ---- Targets.
    let checked: Vec<targets::Checked> = subjects
        .iter()
        .filter_map(|s| {
            let g = s.input.setup.geometry;
            Some(targets::Checked {
                short: &s.short,
                kb_per_page: (g.nr_units() * g.page_size() / 1024) as u64,
                linux: pol.get(&s.input.name, "linux-5.14")?,
                pcpu: pol.get(&s.input.name, "pcpu")?,
                derived: place_pcpu.get(&s.input.name, "lifetime classes"),
            })
        })
        .collect();
    targets::section(&mut md, &checked, &seed_pairs);

    // ---- Fidelity.
    if !fidelity.is_empty() {
        let _ = writeln!(md, "## Replay fidelity on the real captures\n");
        let _ = writeln!(
            md,
            "The numbers above are only as good as the replay: linux-6.1 at the recorded balance \
             points, against the kernel's own `/proc/meminfo` figures.\n"
        );
        let mut rows = Vec::new();
        for r in &fidelity {
            for p in &r.phases {
                rows.push(vec![
                    r.input.clone(),
                    p.name.clone(),
                    p.percpu_kb.to_string(),
                    p.kernel_percpu_kb.map_or("–".into(), |k| k.to_string()),
                    p.kernel_percpu_kb
                        .map_or("–".into(), |k| pct(p.percpu_kb, k)),
                ]);
            }
            rows.push(vec![
                r.input.clone(),
                "placement agreement".into(),
                r.placement_agreement.map_or("–".into(), |a| {
                    format!("{:.3}%", (a * 100_000.0).floor() / 1000.0)
                }),
                String::new(),
                String::new(),
            ]);
        }
        md_table(
            &mut md,
            &["capture", "phase", "ours kB", "kernel kB", "diff"].map(String::from),
            &rows,
        );
    }

    // ---- Method, reproduce.
    let _ = writeln!(md, "## Method and limits\n");
    let _ = writeln!(
        md,
        "* Replays run pcpu-core's policies (`pcpu_core::Policy`) with simulated placement. \
         Knobs varied: `reclaim_divisor`, `reclaim_min_pages`, `rfc_marked_threshold`, \
         `empty_pop_low/high`, `refault_reserve_divisor`, `sideline`, `fit` (first, next, \
         best), `class_placement` with the replay's class modes (task, size class, call site, \
         derived lifetime), per-CPU magazines, and the balance schedule.\n\
         * Thrash: a page re-populated within {} balance runs (or {} allocation/free events) of \
         its depopulation, counted per chunk and page from the replay's page-operation log.\n\
         * Sidelining alone (question 3) is the `sideline` knob of `Policy`; the rest of each \
         policy stays as it is.\n\
         * Magazines (4b) are modelled per traced CPU for requests of at most 256 bytes and \
         drained at every balance run. A kernel implementation would also drain them on a \
         timer or under memory pressure: that would lower what they hold at the troughs, not \
         how few allocations they serve.\n\
         * Size and call-site classes are page-exclusive regions inside shared chunks, not \
         separate chunks.\n\
         * The synthetic traces' kernel placement columns come from pcpu-core's linux-6.1 \
         model; their Percpu markers carry no kernel figure (a 0 kB placeholder the lab \
         ignores).\n\
         * `pcpu` is this project's own policy as built for this run; it is being tuned, so \
         its rows change with the code.\n\
         * The targets (§8) are checked on the replays of the questions above; the seed table \
         generates each synthetic workload again with other seeds, same parameters.\n",
        cfg.options.thrash_runs, cfg.options.thrash_events
    );
    let _ = writeln!(md, "## How to reproduce\n");
    let _ = writeln!(
        md,
        "From the repository root (release build; the run takes well under a minute on two cores):\n\n\
         ```sh\ncargo run --release -p pcpu-cli -- {}\n```\n",
        cfg.command.strip_prefix("pcpu ").unwrap_or(&cfg.command)
    );
    let _ = writeln!(
        md,
        "The synthetic workloads are generated in memory from fixed seeds (`pcpu gen <workload> \
         --out DIR` writes any of them as a capture folder). The real captures are read from {}; \
         a missing one is skipped with a note. `--json` also writes every result to \
         `policy-study.json`; `--timings` adds wall times.\n",
        if cfg.captures.is_empty() {
            "nowhere (none given)".to_string()
        } else {
            cfg.captures
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(" and ")
        }
    );

    if cfg.json {
        let dump = Dump {
            sweeps: results
                .iter()
                .map(|r| DumpSweep {
                    id: &r.sweep.id,
                    knob: &r.sweep.knob,
                    results: r.per_input.iter().flat_map(|(_, v)| v.iter()).collect(),
                })
                .collect(),
        };
        let mut json = serde_json::to_string(&dump).expect("results serialise");
        json.push('\n');
        if !cfg.timings {
            json = strip_wall(&json);
        }
        w.write("policy-study.json", &json)?;
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

/// Replaces the value of every `"wall_s":` field by 0 so that the JSON is
/// deterministic.
fn strip_wall(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"wall_s\":") {
        let (head, tail) = rest.split_at(i + "\"wall_s\":".len());
        out.push_str(head);
        let end = tail.find([',', '}', '\n']).unwrap_or(tail.len());
        out.push('0');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Does `path` look like a capture folder (or a trace file)?
pub fn is_capture(path: &Path) -> bool {
    path.is_file() || path.join("trace.txt.gz").is_file() || path.join("trace.txt").is_file()
}
