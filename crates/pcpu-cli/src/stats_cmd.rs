//! `pcpu stats`: the allocator's `percpu_stats` at a phase marker.

use clap::Args;
use pcpu_trace::Event;

use crate::error::{emit, CliError, CliResult};
use crate::input::{self, CommonArgs, Progress, RunArgs};
use crate::replay_cmd::{replay_until, Skipped};

/// Arguments of `pcpu stats`.
#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Replay up to (and including) the `PHASE <PHASE> Percpu` marker.
    #[arg(long, value_name = "PHASE")]
    pub(crate) at: String,

    /// Policy and placement.
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// The capture and the options every replay takes.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Runs `pcpu stats`.
pub(crate) fn run(args: StatsArgs) -> CliResult {
    let progress = Progress::new();
    let loaded = input::load(&args.common, &progress)?;
    loaded.check_runs(&[args.run.policy], args.run.placement.into())?;
    let is_target = |e: &Event| matches!(e, Event::PhasePercpu { name, .. } if *name == args.at);
    let Some(end) = loaded.records.iter().position(|r| is_target(&r.event)) else {
        progress.finish();
        let mut names: Vec<String> = Vec::new();
        for (n, _) in loaded.phase_marks() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        return Err(CliError::usage(if names.is_empty() {
            format!(
                "no phase `{}`: {} has no `PHASE <X> Percpu` markers",
                args.at, loaded.name
            )
        } else {
            format!(
                "no phase `{}` in {}; its phases are: {}",
                args.at,
                loaded.name,
                names.join(", ")
            )
        }));
    };

    progress.stage("replaying", Some(end as u64 + 1), false);
    let cfg = loaded.config(args.run.policy, args.run.placement.into());
    let stop_line = loaded.records[end].line;
    let result = replay_until(&loaded, cfg, &progress, &|r| r.line == stop_line);
    progress.finish();
    let rp = result?;
    Skipped::of(&rp).warn(&args.run.policy.to_string());
    emit(&rp.allocator().percpu_stats())
}
