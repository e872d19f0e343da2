//! `pcpu replay`: replay one trace with one policy and compare with the
//! kernel.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use pcpu_replay::{ReplayConfig, Replayer, Report};
use pcpu_trace::Record;

use crate::error::{emit, warn, CliError, CliResult};
use crate::input::{self, plural, CommonArgs, Loaded, Progress, RunArgs};
use crate::plot;
use crate::table::{diff_pct, opt, Align, Table};

/// Arguments of `pcpu replay`.
#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Policy and placement.
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// Print the report as JSON (stable schema, fields and units in
    /// docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,

    /// Also draw Percpu over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,

    /// The capture and the options every replay takes.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// A finished replay.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The report (with the trace name set).
    pub(crate) report: Report,
    /// Frees of unknown pointers and events that make no sense, skipped
    /// (`--lenient`).
    pub(crate) skipped: Skipped,
}

/// What a lenient replay skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Frees of pointers with no live traced allocation.
    pub(crate) unknown_frees: u64,
    /// Events that parse but cannot be replayed.
    pub(crate) bad_events: u64,
    /// The first of them, each with its line and what is wrong.
    pub(crate) first_bad: Vec<String>,
    /// Chunks used without a `percpu_create_chunk` event (replayed).
    pub(crate) uncreated_chunks: u64,
    /// Frees the trace lost, replayed where the kernel allocated over
    /// their objects.
    pub(crate) implied_frees: u64,
}

impl Skipped {
    /// What `rp` skipped so far.
    pub(crate) fn of(rp: &Replayer) -> Skipped {
        Skipped {
            unknown_frees: rp.unknown_frees(),
            bad_events: rp.bad_events(),
            first_bad: rp
                .first_bad_events()
                .iter()
                .map(|e| e.to_string())
                .collect(),
            uncreated_chunks: rp.uncreated_chunks(),
            implied_frees: rp.implied_frees(),
        }
    }

    /// Warns about what was skipped, if anything.
    pub(crate) fn warn(&self, policy: &str) {
        let n = self.unknown_frees;
        if n > 0 {
            warn(&format!(
                "{policy}: skipped {n} free{} of pointers with no live traced allocation (--lenient)",
                plural(n)
            ));
        }
        let n = self.implied_frees;
        if n > 0 {
            warn(&format!(
                "{policy}: {n} free{} the trace lost, replayed where the kernel allocated over the object (--lenient)",
                plural(n)
            ));
        }
        let n = self.uncreated_chunks;
        if n > 0 {
            warn(&format!(
                "{policy}: {n} chunk{} used without a percpu_create_chunk event: the trace did not start at boot, and its figures miss what came before (--lenient)",
                plural(n)
            ));
        }
        let n = self.bad_events;
        if n > 0 {
            warn(&format!(
                "{policy}: skipped {n} event{} that cannot be replayed (--lenient); the first:",
                plural(n)
            ));
            for e in &self.first_bad {
                warn(&format!("  {e}"));
            }
        }
    }
}

/// Replays `loaded` with `cfg` up to and including the first record for
/// which `stop` holds (all of it if none), advancing `progress` by one per
/// record.
pub(crate) fn replay_until(
    loaded: &Loaded,
    cfg: ReplayConfig,
    progress: &Progress,
    stop: &dyn Fn(&Record) -> bool,
) -> CliResult<Replayer> {
    let mut rp = Replayer::new(
        loaded.setup.clone(),
        cfg,
        loaded.has_balance,
        loaded.has_kprobes,
    )
    .map_err(|e| loaded.replay_error(&e))?;
    let mut last = 0;
    rp.run(
        &loaded.records,
        &mut |done| {
            progress.inc((done - last) as u64);
            last = done;
        },
        stop,
    )
    .map_err(|e| loaded.replay_error(&e))?;
    Ok(rp)
}

/// Replays all of `loaded` with `cfg`, advancing `progress` by one per record.
pub(crate) fn run_replay(
    loaded: &Loaded,
    cfg: ReplayConfig,
    progress: &Progress,
) -> CliResult<Replayed> {
    let start = Instant::now();
    let rp = replay_until(loaded, cfg, progress, &|_| false)?;
    let skipped = Skipped::of(&rp);
    let mut report = rp.finish(start.elapsed().as_secs_f64());
    report.trace = loaded.name.clone();
    report.attach_kernel_stats(&loaded.kernel_stats);
    if let Some(label) = &loaded.balance_label {
        report.balance = label.clone();
    }
    Ok(Replayed { report, skipped })
}

/// Runs `pcpu replay`.
pub(crate) fn run(args: ReplayArgs) -> CliResult {
    if let Some(p) = &args.plot {
        input::check_output_path(p)?;
    }
    let progress = Progress::new();
    let loaded = input::load(&args.common, &progress)?;
    loaded.check_runs(&[args.run.policy], args.run.placement.into())?;
    progress.stage("replaying", Some(loaded.records.len() as u64), false);
    let cfg = loaded.config(args.run.policy, args.run.placement.into());
    let result = run_replay(&loaded, cfg, &progress);
    progress.finish();
    let Replayed { report, skipped } = result?;
    skipped.warn(&report.policy);

    let phases = loaded.phase_marks();
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::replay(format!("cannot encode the report as JSON: {e}")))?;
        emit(&(json + "\n"))?;
    } else {
        emit(&render(&report, loaded.parse_s))?;
    }
    if let Some(p) = &args.plot {
        plot::replay_plot(p, &report, &phases)?;
    }
    Ok(())
}

/// The human-readable report: a table by phase, then summary lines.
pub(crate) fn render(r: &Report, parse_s: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: policy {}, {} placement, {} balance, {} units of {} kB pages",
        r.trace,
        r.policy,
        r.placement,
        r.balance,
        r.units,
        r.page_size / 1024
    );
    out.push('\n');
    // With derived lifetime classes, the least floor they allow too.
    let bound = r.phases.iter().any(|p| p.class_bound_kb.is_some());
    let mut columns = vec![
        ("phase", Align::Left),
        ("Percpu ours kB", Align::Right),
        ("kernel kB", Align::Right),
        ("diff %", Align::Right),
        ("ideal kB", Align::Right),
        ("floor kB", Align::Right),
    ];
    if bound {
        columns.push(("class bound kB", Align::Right));
    }
    columns.extend([("kernel floor kB", Align::Right), ("chunks", Align::Right)]);
    let mut t = Table::new(&columns);
    for p in &r.phases {
        let mut cells = vec![
            p.name.clone(),
            p.percpu_kb.to_string(),
            opt(p.kernel_percpu_kb),
            diff_pct(p.percpu_kb, p.kernel_percpu_kb),
            p.ideal_kb.to_string(),
            p.floor_kb.to_string(),
        ];
        if bound {
            cells.push(opt(p.class_bound_kb));
        }
        cells.extend([p.kernel_floor_kb.to_string(), p.chunks.to_string()]);
        t.row(cells);
    }
    if r.phases.is_empty() {
        t.row(["(the trace has no `PHASE <X> Percpu` markers)"]);
    }
    out.push_str(&t.render());
    out.push('\n');
    let _ = writeln!(
        out,
        "kB over all units; ideal: live traced bytes rounded up to pages; floor: pages holding a \
         live traced byte, under our placement (kernel floor: under the traced one){}",
        if bound {
            "; class bound: the least floor when no page holds two lifetime classes"
        } else {
            ""
        }
    );
    out.push('\n');
    out.push_str(&kernel_stats_table(r));

    let rate = if r.events_per_s >= 1e6 {
        format!("{:.2} M events/s", r.events_per_s / 1e6)
    } else {
        format!("{:.0} events/s", r.events_per_s)
    };
    let mut lines: Vec<(&str, String)> = vec![
        (
            "events",
            format!("{} ({} allocs, {} frees)", r.events, r.allocs, r.frees),
        ),
        (
            "elapsed",
            format!(
                "replay {:.3} s ({rate}), parse {:.3} s",
                r.elapsed_s, parse_s
            ),
        ),
        (
            "placement agreement",
            match r.placement_agreement {
                Some(a) => format!(
                    "{:.2} % of allocations at the kernel's chunk and offset",
                    a * 100.0
                ),
                None if r.placement == "kernel" => "- (kernel placement)".to_string(),
                None => "-".to_string(),
            },
        ),
        (
            "populated pages",
            pages_line(r.populated_pages, r.kernel_populated_pages),
        ),
        (
            "depopulated pages",
            pages_line(r.depopulated_pages, r.kernel_depopulated_pages),
        ),
        (
            "re-populated pages",
            format!(
                "{}; within {} balance runs of their depopulation: ours {}{}",
                pages_line(r.repopulated_pages, r.kernel_repopulated_pages),
                pcpu_replay::SOON_RUNS,
                r.repopulated_soon_pages,
                r.kernel_repopulated_soon_pages
                    .map_or_else(String::new, |k| format!(", kernel {k}"))
            ),
        ),
        (
            "balance runs",
            format!(
                "{} ({}); chunks created {}, destroyed {}",
                r.balance_runs, r.balance, r.chunks_created, r.chunks_destroyed
            ),
        ),
    ];
    if r.pre_trace_chunks > 0 || r.pre_trace_frees > 0 {
        lines.push(("before tracing", pre_trace(r)));
    }
    if r.failed_allocs > 0 {
        lines.push(("failed allocations", r.failed_allocs.to_string()));
    }
    if r.magazine_hits > 0 {
        lines.push(("served by magazines", magazine_hits(r)));
    }
    if r.long_lived_objects > 0 {
        lines.push((
            "predicted long-lived",
            format!(
                "{} of {} allocations (shared pages)",
                r.long_lived_objects, r.allocs
            ),
        ));
    }
    if r.short_lived_objects > 0 {
        lines.push((
            "predicted short-lived",
            format!(
                "{} first objects of task classes placed outside them",
                r.short_lived_objects
            ),
        ));
    }
    if r.long_running_classes > 0 {
        lines.push((
            "long-running tasks",
            format!(
                "{} task classes taken for long-running (plain first fit from then on)",
                r.long_running_classes
            ),
        ));
    }
    if r.tiled_bursts + r.untiled_bursts > 0 {
        lines.push((
            "page-tiling bursts",
            format!(
                "{} started aligned, {} placed untiled; {} 4-byte objects on the long-lived pages",
                r.tiled_bursts, r.untiled_bursts, r.tiling_pooled_objects
            ),
        ));
    }
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        let _ = writeln!(out, "{:<w$}  {v}", format!("{k}:"), w = w + 1);
    }
    out
}

/// Our empty populated pages and chunks beside the kernel's own
/// `percpu_stats` at the markers that have a snapshot (a recording's
/// `percpu-stats.txt`); nothing without.
fn kernel_stats_table(r: &Report) -> String {
    let with: Vec<_> = r
        .phases
        .iter()
        .filter(|p| p.kernel_empty_pop_pages.is_some() || p.kernel_chunks.is_some())
        .collect();
    if with.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&[
        ("phase", Align::Left),
        ("empty pages ours", Align::Right),
        ("kernel", Align::Right),
        ("chunks ours", Align::Right),
        ("kernel", Align::Right),
    ]);
    for p in with {
        t.row([
            p.name.clone(),
            p.empty_pop_pages.to_string(),
            opt(p.kernel_empty_pop_pages),
            p.chunks.to_string(),
            opt(p.kernel_chunks),
        ]);
    }
    let mut out = t.render();
    out.push('\n');
    out.push_str(
        "empty pages: populated, holding nothing, per unit (percpu_stats' empty_pop_pages); \
         kernel: its percpu_stats at the marker\n\n",
    );
    out
}

/// What the replay inferred was in use before tracing started (a recording
/// on a running kernel).
pub(crate) fn pre_trace(r: &Report) -> String {
    let n = r.pre_trace_chunks;
    let f = r.pre_trace_frees;
    let mut s = format!(
        "{n} dynamic chunk{} already in use (inferred from the trace); {f} object{} allocated before tracing freed",
        plural(n),
        plural(f)
    );
    let from_stats = r.phases.first().is_some_and(|p| p.kernel_chunks.is_some());
    if r.pre_trace_free_chunks > 0 {
        s += &format!(
            "; {} free chunk{} the trace never uses (the kernel's percpu_stats)",
            r.pre_trace_free_chunks,
            plural(r.pre_trace_free_chunks)
        );
    }
    if r.pre_trace_top_up_pages > 0 {
        s += &format!(
            "; {} empty page{} per unit populated {}",
            r.pre_trace_top_up_pages,
            plural(r.pre_trace_top_up_pages),
            if from_stats {
                "from the start, as the kernel's percpu_stats had them"
            } else {
                "at the first marker to match the kernel's Percpu"
            }
        );
    }
    if r.kernel_stats_unmatched_chunks > 0 {
        s += &format!(
            "; {} chunk{} with objects the trace never touches not modelled",
            r.kernel_stats_unmatched_chunks,
            plural(r.kernel_stats_unmatched_chunks)
        );
    }
    s
}

/// `H of N allocations (p %)`: how many allocations magazines served.
pub(crate) fn magazine_hits(r: &Report) -> String {
    format!(
        "{} of {} allocations ({:.1} %)",
        r.magazine_hits,
        r.allocs,
        r.magazine_hits as f64 * 100.0 / r.allocs.max(1) as f64
    )
}

/// `ours N, kernel M (+d %)`, per unit.
fn pages_line(ours: u64, kernel: Option<u64>) -> String {
    match kernel {
        Some(k) => format!(
            "ours {ours}, kernel {k} per unit ({} %)",
            diff_pct(ours, Some(k))
        ),
        None => {
            format!("ours {ours} per unit, kernel - (the trace has no populate/depopulate kprobes)")
        }
    }
}
