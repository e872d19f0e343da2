//! The `pcpu` command: replays Linux percpu allocator traces through
//! `pcpu-core` and compares the result with what the traced kernel did.
//!
//! ```text
//! pcpu replay  <CAPTURE> [--policy P] [--placement simulate|kernel] [--json] [--plot F.svg] ...
//! pcpu compare <CAPTURE> [--policies A,B,...] [--json] [--plot F.svg] ...
//! pcpu stats   <CAPTURE> --at PHASE [--policy P] ...
//! pcpu pins    <CAPTURE> --at PHASE [--policy P] [--top N] [--json] ...
//! pcpu study   --out DIR [--capture DIR]... [--timings]
//! pcpu gen     <WORKLOAD> --out DIR [--seed N] ...
//! pcpu policies
//! pcpu record  --out DIR [--buffer-kb N] -- COMMAND [ARGS]...
//! pcpu mark    NAME
//! ```
//!
//! Every failure is one `pcpu: error: ...` line on stderr; the exit code is 2
//! for usage and input errors and 1 for replay errors.

mod compare_cmd;
mod demo_cmd;
mod error;
mod gen_cmd;
mod input;
mod pins_cmd;
mod plot;
mod policies_cmd;
mod record_cmd;
mod replay_cmd;
mod stats_cmd;
mod study_cmd;
mod table;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use crate::error::{written, CliResult, EXIT_USAGE};

/// Replay Linux percpu allocator traces through pcpu-core and compare the
/// result with what the traced kernel did.
#[derive(Parser, Debug)]
#[command(name = "pcpu", version, about, propagate_version = true)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a trace with one policy: Percpu per phase against the kernel's,
    /// placement agreement, populated/depopulated pages.
    Replay(replay_cmd::ReplayArgs),
    /// Replay a trace under several policies and show them side by side.
    Compare(compare_cmd::CompareArgs),
    /// Print the allocator's percpu_stats, or its page map, at a phase marker.
    Stats(stats_cmd::StatsArgs),
    /// The seed experiment on real memory: create memory-cgroup-like groups,
    /// remove 10 of every 11, and show what each policy gives back.
    Demo(demo_cmd::DemoArgs),
    /// Who pins my memory: per call site and per task, the live objects,
    /// bytes, pages touched and pages pinned at a phase marker.
    Pins(pins_cmd::PinsArgs),
    /// Run the policy study (generators, real captures, sweeps) and write
    /// policy-study.md with its charts.
    Study(study_cmd::StudyArgs),
    /// Write a synthetic workload as a capture folder.
    Gen(gen_cmd::GenArgs),
    /// List the policies, every knob's default under each, and what each
    /// knob does.
    Policies(policies_cmd::PoliciesArgs),
    /// Record a capture on the running kernel (tracefs, as root) while a
    /// command runs: the percpu events, phase markers START and END, the
    /// geometry.
    Record(record_cmd::RecordArgs),
    /// Mark a phase of a recording: `PHASE NAME begin`, then the kernel's
    /// Percpu figure (run it from the workload `pcpu record` runs).
    Mark(record_cmd::MarkArgs),
}

impl Command {
    /// Runs the subcommand.
    fn run(self) -> CliResult {
        match self {
            Command::Replay(a) => replay_cmd::run(a),
            Command::Compare(a) => compare_cmd::run(a),
            Command::Stats(a) => stats_cmd::run(a),
            Command::Demo(a) => demo_cmd::run(a),
            Command::Pins(a) => pins_cmd::run(a),
            Command::Study(a) => study_cmd::run(a),
            Command::Gen(a) => gen_cmd::run(a),
            Command::Policies(a) => policies_cmd::run(a),
            Command::Record(a) => record_cmd::run(a),
            Command::Mark(a) => record_cmd::run_mark(a),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(help_args(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pcpu: error: {e}");
            ExitCode::from(e.code)
        }
    }
}

/// `pcpu help` (clap's help subcommand) takes command names only, so
/// `pcpu help --help`, `pcpu help replay -h` and `pcpu help -- replay` were
/// refused as an "unrecognized subcommand '--help'". After `help`, `-h`,
/// `--help` and `--` are dropped here; a help flag with no command name
/// left asks for the help of `help` itself, as `pcpu help help` does.
fn help_args(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).map_or(true, |a| a != "help") {
        return args;
    }
    let is_flag = |a: &OsString| a == "-h" || a == "--help";
    let rest = args.split_off(2);
    let flagged = rest.iter().any(is_flag);
    let names: Vec<OsString> = rest
        .into_iter()
        .filter(|a| !is_flag(a) && a != "--")
        .collect();
    if names.is_empty() && flagged {
        args.push("help".into());
    }
    args.extend(names);
    args
}

/// Prints help/version as clap renders it, and argument errors as one
/// `pcpu: error:` line (with clap's tips and possible values folded in).
fn clap_failure(e: &clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Help on a full disk is an error, as any output is.
        return match written(e.print().and_then(|()| std::io::stdout().flush())) {
            Err(w) => {
                let _ = writeln!(std::io::stderr(), "pcpu: error: {w}");
                ExitCode::from(w.code)
            }
            Ok(()) => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE)),
        };
    }
    let _ = writeln!(
        std::io::stderr(),
        "pcpu: error: {}",
        one_line_clap(&e.render().to_string())
    );
    ExitCode::from(EXIT_USAGE)
}

/// Folds clap's multi-line error text into one line.
fn one_line_clap(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for l in lines {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            continue;
        }
        msg.push_str(if l.starts_with('[') || msg.ends_with(':') {
            " "
        } else {
            "; "
        });
        msg.push_str(l);
    }
    msg.push_str(" (see --help)");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_flags_after_help_are_dropped() {
        let args = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        for (given, taken) in [
            ("pcpu help --help", "pcpu help help"),
            ("pcpu help -h", "pcpu help help"),
            ("pcpu help replay --help", "pcpu help replay"),
            ("pcpu help -h gen churn", "pcpu help gen churn"),
            ("pcpu help -- replay", "pcpu help replay"),
            ("pcpu help --", "pcpu help"),
            // Left alone: not the help subcommand, or nothing to drop.
            ("pcpu replay --help", "pcpu replay --help"),
            ("pcpu replay help --help", "pcpu replay help --help"),
            ("pcpu help nosuch", "pcpu help nosuch"),
            ("pcpu", "pcpu"),
        ] {
            assert_eq!(help_args(args(given)), args(taken), "{given}");
        }
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let text = "error: invalid value 'x' for '--placement <PLACEMENT>'\n  [possible values: simulate, kernel]\n\n  tip: a similar value exists: 'kernel'\n\nUsage: pcpu replay <CAPTURE>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_clap(text),
            "invalid value 'x' for '--placement <PLACEMENT>' [possible values: simulate, kernel]; \
             tip: a similar value exists: 'kernel' (see --help)"
        );
    }
}
