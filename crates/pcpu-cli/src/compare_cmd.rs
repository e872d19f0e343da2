//! `pcpu compare`: replay one trace under several policies side by side.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use pcpu_core::Policy;
use pcpu_replay::{Placement, Report};

use crate::error::{emit, CliError, CliResult};
use crate::input::{self, parse_policy, CommonArgs, PlacementArg, Progress};
use crate::plot;
use crate::replay_cmd::{magazine_hits, run_replay, Replayed, Skipped};
use crate::table::{diff_pct, opt, Align, Table};

/// Arguments of `pcpu compare`.
#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// Comma-separated policies to compare [default: all five:
    /// linux-5.11,seed-rfc,linux-5.14,linux-6.1,pcpu]. Each may carry knobs,
    /// as in `replay --policy` (e.g. `pcpu,pcpu:refault_reserve_divisor=4`).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',', value_parser = parse_policy)]
    pub(crate) policies: Vec<Policy>,

    /// Print the reports as a JSON array (same schema as `replay --json`,
    /// docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,

    /// Also draw Percpu over time for every policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,

    /// Where allocations go: chosen by each policy (simulate), or at the
    /// kernel's recorded chunk and offset for all of them (kernel), so that
    /// only their population and depopulation differ.
    #[arg(long, value_enum, default_value_t = PlacementArg::Simulate)]
    pub(crate) placement: PlacementArg,

    /// Show each policy's difference against this one (one of --policies)
    /// instead of against the kernel's figures [default: the kernel's, or
    /// the first policy when the trace has none, as a generated one].
    #[arg(long, value_name = "NAME", value_parser = parse_policy)]
    pub(crate) baseline: Option<Policy>,

    /// The capture and the options every replay takes.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Runs `pcpu compare`.
pub(crate) fn run(args: CompareArgs) -> CliResult {
    if let Some(p) = &args.plot {
        input::check_output_path(p)?;
    }
    let policies = if args.policies.is_empty() {
        Policy::all().to_vec() // the Linux policies, the RFC and pcpu
    } else {
        input::once_each(args.policies.clone(), "--policies", "compared")
    };

    let baseline = match args.baseline {
        None => None,
        Some(b) => Some(policies.iter().position(|p| *p == b).ok_or_else(|| {
            CliError::usage(format!(
                "--baseline {b} is not one of the compared policies"
            ))
        })?),
    };

    let progress = Progress::new();
    let loaded = input::load(&args.common, &progress)?;
    let placement: Placement = args.placement.into();
    loaded.check_runs(&policies, placement)?;
    progress.stage(
        "replaying",
        Some((loaded.records.len() * policies.len()) as u64),
        false,
    );
    // One thread per policy: the replays are independent and share the records.
    let results: Vec<CliResult<Replayed>> = std::thread::scope(|s| {
        let handles: Vec<_> = policies
            .iter()
            .map(|&policy| {
                let (loaded, progress) = (&loaded, &progress);
                s.spawn(move || run_replay(loaded, loaded.config(policy, placement), progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::replay("a replay thread panicked")))
            })
            .collect()
    });
    progress.finish();
    let mut reports = Vec::with_capacity(results.len());
    // Policies that skipped the same events (a trace not started at boot, lost
    // frees: the trace's faults, not the policy's) share one warning.
    let mut skips: Vec<(Vec<String>, Skipped)> = Vec::new();
    for r in results {
        let Replayed { report, skipped } = r?;
        match skips.iter_mut().find(|(_, s)| *s == skipped) {
            Some((names, _)) => names.push(report.policy.clone()),
            None => skips.push((vec![report.policy.clone()], skipped)),
        }
        reports.push(report);
    }
    for (names, skipped) in &skips {
        skipped.warn(&names.join(", "));
    }

    if args.json {
        let json = serde_json::to_string_pretty(&reports)
            .map_err(|e| CliError::replay(format!("cannot encode the reports as JSON: {e}")))?;
        emit(&(json + "\n"))?;
    } else {
        emit(&render(&reports, loaded.parse_s, baseline))?;
    }
    if let Some(p) = &args.plot {
        plot::compare_plot(p, &reports, &loaded.phase_marks())?;
    }
    Ok(())
}

/// Policy names longer than this are shown as letters with a key.
const LONG_NAME: usize = 24;

/// One table: per phase the kernel's Percpu figure and, per policy, ours and
/// the difference against the kernel's (or against `baseline`, an index into
/// `reports`; the first report when the trace has no kernel figures); then
/// populated/depopulated page totals.
pub(crate) fn render(reports: &[Report], parse_s: f64, baseline: Option<usize>) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let no_kernel = first.phases.iter().all(|p| p.kernel_percpu_kb.is_none());
    let baseline = baseline.or((no_kernel && reports.len() > 1).then_some(0));
    let base = baseline.map(|b| &reports[b]);
    let _ = writeln!(
        out,
        "{}: {} events, {} placement, {} balance, {} units of {} kB pages",
        first.trace,
        first.events,
        first.placement,
        first.balance,
        first.units,
        first.page_size / 1024
    );
    out.push('\n');

    let mut columns = vec![("phase", Align::Left), ("kernel kB", Align::Right)];
    for _ in reports {
        columns.push(("ours kB", Align::Right));
        columns.push(("diff %", Align::Right));
    }
    let mut t = Table::new(&columns);
    t.group("Percpu", 2);
    // Long policy names (knobs) would make every column that wide: label the
    // groups with letters then, and print the key under the table.
    let short = reports.iter().any(|r| r.policy.len() > LONG_NAME);
    let label = |k: usize| -> String {
        if short {
            format!("({})", (b'A' + (k % 26) as u8) as char)
        } else {
            reports[k].policy.clone()
        }
    };
    for k in 0..reports.len() {
        if Some(k) == baseline {
            t.group(&format!("{} (baseline)", label(k)), 2);
        } else {
            t.group(&label(k), 2);
        }
    }
    for (i, p) in first.phases.iter().enumerate() {
        let mut row = vec![p.name.clone(), opt(p.kernel_percpu_kb)];
        let against = match base {
            Some(b) => b.phases.get(i).map(|q| q.percpu_kb),
            None => p.kernel_percpu_kb,
        };
        for r in reports {
            match r.phases.get(i) {
                Some(q) => {
                    row.push(q.percpu_kb.to_string());
                    row.push(diff_pct(q.percpu_kb, against));
                }
                None => row.extend(["-".to_string(), "-".to_string()]),
            }
        }
        t.row(row);
    }
    t.rule();
    let pages_row = |label: &str, kernel: Option<u64>, ours: &dyn Fn(&Report) -> u64| {
        let mut row = vec![label.to_string(), opt(kernel)];
        let against = base.map_or(kernel, |b| Some(ours(b)));
        for r in reports {
            row.push(ours(r).to_string());
            row.push(diff_pct(ours(r), against));
        }
        row
    };
    t.row(pages_row(
        "populated pages",
        first.kernel_populated_pages,
        &|r| r.populated_pages,
    ));
    t.row(pages_row(
        "depopulated pages",
        first.kernel_depopulated_pages,
        &|r| r.depopulated_pages,
    ));
    t.row(pages_row(
        "re-populated pages",
        first.kernel_repopulated_pages,
        &|r| r.repopulated_pages,
    ));
    t.row(pages_row(
        &format!("  within {} runs", pcpu_replay::SOON_RUNS),
        first.kernel_repopulated_soon_pages,
        &|r| r.repopulated_soon_pages,
    ));
    out.push_str(&t.render());
    out.push('\n');
    if short {
        for (k, r) in reports.iter().enumerate() {
            let _ = writeln!(out, "{} = {}", label(k), r.policy);
        }
    }
    let _ = writeln!(
        out,
        "pages are per unit, over the whole trace (re-populated: populated again after a depopulation of the same chunk; within {} runs: of balance runs after it); diff % is each policy's against {}",
        pcpu_replay::SOON_RUNS,
        base.map_or_else(|| "the kernel's".to_string(), |b| b.policy.clone())
    );
    let hits: Vec<String> = reports
        .iter()
        .filter(|r| r.magazine_hits > 0)
        .map(|r| format!("{} {}", r.policy, magazine_hits(r)))
        .collect();
    if !hits.is_empty() {
        let _ = writeln!(out, "served by magazines: {}", hits.join(", "));
    }
    let mut agreement = Vec::new();
    let mut timing = Vec::new();
    for r in reports {
        agreement.push(format!(
            "{} {}",
            r.policy,
            r.placement_agreement
                .map_or_else(|| "-".to_string(), |a| format!("{:.2} %", a * 100.0))
        ));
        timing.push(format!("{} {:.3} s", r.policy, r.elapsed_s));
    }
    let _ = writeln!(out, "placement agreement: {}", agreement.join(", "));
    let _ = writeln!(
        out,
        "elapsed: parse {parse_s:.3} s; replay {}",
        timing.join(", ")
    );
    out
}
