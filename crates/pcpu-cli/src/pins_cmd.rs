//! `pcpu pins`: who pins the resident percpu pages at a phase marker.

use clap::Args;
use pcpu_core::Policy;
use pcpu_lab::pins;
use pcpu_lab::run::Input;
use pcpu_lab::LabError;
use pcpu_replay::Placement;

use crate::error::{emit, CliError, CliResult};
use crate::input::{self, parse_policy, CommonArgs, Progress};

/// Arguments of `pcpu pins`.
#[derive(Args, Debug)]
pub(crate) struct PinsArgs {
    /// Replay up to (and including) the `PHASE <PHASE> Percpu` marker (the
    /// first, if the trace repeats the name).
    #[arg(long, value_name = "PHASE")]
    pub(crate) at: String,

    /// Policy: linux-5.11, seed-rfc, linux-5.14, linux-6.1 or pcpu, optionally
    /// with knobs as in `replay --policy` (`NAME:knob=value:...`).
    #[arg(long, value_name = "NAME", default_value = "linux-6.1", value_parser = parse_policy)]
    pub(crate) policy: Policy,

    /// Show this many call sites and tasks.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) top: usize,

    /// Order owners by `pinned` (pages on which only their objects are
    /// left: what freeing them would give back) or by `share` (their
    /// byte-proportional share of the pages they touch: how much of the
    /// floor they account for).
    #[arg(long, value_enum, default_value_t = SortArg::Pinned)]
    pub(crate) sort: SortArg,

    /// Print the whole report (every call site and task) as JSON (fields and
    /// units in docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,

    /// The capture and the options every replay takes.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// `--sort` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortArg {
    /// Pages pinned alone.
    Pinned,
    /// Share of the pages touched.
    Share,
}

impl From<SortArg> for pins::PinOrder {
    fn from(s: SortArg) -> Self {
        match s {
            SortArg::Pinned => pins::PinOrder::Pinned,
            SortArg::Share => pins::PinOrder::Share,
        }
    }
}

/// A lab error as a command error.
pub(crate) fn lab_error(e: LabError) -> CliError {
    match e {
        LabError::Replay { .. } | LabError::Plot(_) => CliError::replay(e.to_string()),
        _ => CliError::usage(e.to_string()),
    }
}

/// Runs `pcpu pins`.
pub(crate) fn run(args: PinsArgs) -> CliResult {
    let progress = Progress::new();
    let loaded = input::load(&args.common, &progress)?;
    loaded.check_runs(&[args.policy], Placement::Simulate)?;
    loaded.warn_repeated_phase(&args.at);
    let cfg = loaded.config(args.policy, Placement::Simulate);
    let lab_input = Input::new(
        loaded.name.clone(),
        loaded.records.clone(),
        loaded.setup.clone(),
    );
    drop(loaded);
    let mut report = pins::pins_at(&lab_input, &args.at, cfg).map_err(lab_error)?;
    report.sort(args.sort.into());
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::replay(format!("cannot encode the report as JSON: {e}")))?;
        emit(&(json + "\n"))
    } else {
        emit(&pins::render(&report, args.top, args.sort.into()))
    }
}
