//! `pcpu study`: the reproducible policy study (pcpu_lab::study).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use pcpu_lab::study::{self, Scale, StudyConfig};

use crate::error::{emit, warn, CliError, CliResult};
use crate::pins_cmd::lab_error;

/// The real captures the study reads by default.
const CAPTURES: [&str; 2] = ["memcg-1000x10-smp4", "memcg-churn-smp4"];

/// Arguments of `pcpu study`.
#[derive(Args, Debug)]
pub(crate) struct StudyArgs {
    /// Folder to write policy-study.md and its SVG charts into (created if
    /// needed).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,

    /// A real capture folder to include (repeatable) [default:
    /// memcg-1000x10-smp4 and memcg-churn-smp4 in ../shared/kernel-traces
    /// from the current folder, else beside the checkout the binary was
    /// built from; missing ones are skipped with a note]. A capture named
    /// here must exist.
    #[arg(long = "capture", value_name = "DIR")]
    pub(crate) captures: Vec<PathBuf>,

    /// Leave the real captures out (synthetic workloads only).
    #[arg(long, conflicts_with = "captures")]
    pub(crate) no_captures: bool,

    /// Worker threads [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) threads: Option<u16>,

    /// Add wall times to the document (it then differs from run to run).
    #[arg(long)]
    pub(crate) timings: bool,

    /// Also write every result to policy-study.json.
    #[arg(long)]
    pub(crate) json: bool,

    /// Tiny synthetic workloads: a smoke test of the whole pipeline (the
    /// numbers are not the study's). The real captures still run at full
    /// size; with --no-captures it takes a second or two.
    #[arg(long)]
    pub(crate) small: bool,

    /// The targets section replays the synthetic workloads again with seeds
    /// 1 to N, under linux-5.14 and pcpu (0: not at all).
    #[arg(long, value_name = "N", default_value_t = StudyConfig::DEFAULT_SEEDS,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub(crate) seeds: u64,

    /// Section 3 checks its choice of refill order on N further seeds (after
    /// those of --seeds), which no default was chosen on (0: not at all).
    #[arg(long, value_name = "N", default_value_t = StudyConfig::DEFAULT_HOLDOUT_SEEDS,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub(crate) holdout_seeds: u64,
}

/// Where a default capture is: `../shared/kernel-traces/<name>` from the
/// current folder (the repository root), else from this checkout.
fn default_capture(name: &str) -> PathBuf {
    let here = Path::new("../shared/kernel-traces").join(name);
    if here.exists() {
        return here;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kernel-traces");
    match repo.join(name).canonicalize() {
        Ok(p) => p,
        Err(_) => here,
    }
}

/// Runs `pcpu study`.
pub(crate) fn run(args: StudyArgs) -> CliResult {
    let mut cfg = StudyConfig::new(&args.out);
    let mut command = format!("pcpu study --out {}", args.out.display());
    cfg.captures = if args.no_captures {
        command.push_str(" --no-captures");
        Vec::new()
    } else if args.captures.is_empty() {
        CAPTURES.iter().map(|n| default_capture(n)).collect()
    } else {
        for c in &args.captures {
            // A missing default capture is skipped with a note; one named
            // here is wanted in the study.
            if !study::is_capture(c) {
                return Err(CliError::usage(format!(
                    "{}: not a capture (a trace file, or a folder holding trace.txt.gz or trace.txt)",
                    c.display()
                )));
            }
            command.push_str(&format!(" --capture {}", c.display()));
        }
        args.captures.clone()
    };
    if let Some(t) = args.threads {
        cfg.threads = usize::from(t);
    }
    if args.small {
        cfg.scale = Scale::Small;
        command.push_str(" --small");
    }
    if args.timings {
        cfg.timings = true;
        command.push_str(" --timings");
    }
    if args.json {
        cfg.json = true;
        command.push_str(" --json");
    }
    cfg.seeds = args.seeds;
    if args.seeds != StudyConfig::DEFAULT_SEEDS {
        command.push_str(&format!(" --seeds {}", args.seeds));
    }
    cfg.holdout_seeds = args.holdout_seeds;
    if args.holdout_seeds != StudyConfig::DEFAULT_HOLDOUT_SEEDS {
        command.push_str(&format!(" --holdout-seeds {}", args.holdout_seeds));
    }
    cfg.command = command;
    crate::input::check_out_folder(&args.out)?;
    let verbose = std::io::stderr().is_terminal();
    let outcome = study::run_study(&cfg, &|m| {
        if verbose {
            eprintln!("pcpu study: {m}");
        }
    })
    .map_err(lab_error)?;
    for n in &outcome.notes {
        warn(n);
    }
    let size = std::fs::metadata(&outcome.doc).map_or(0, |m| m.len());
    let mut text = format!(
        "wrote {} ({size} bytes) and {} other files in {}: {} replays in {:.1} s\n",
        outcome.doc.display(),
        outcome.files.len() - 1,
        args.out.display(),
        outcome.replays,
        outcome.wall_s
    );
    for h in &outcome.headline {
        text.push_str("  ");
        text.push_str(h);
        text.push('\n');
    }
    emit(&text)
}
