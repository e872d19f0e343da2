//! `pcpu gen`: write a synthetic workload (pcpu_lab::gen) as a capture
//! folder that `pcpu replay` reads.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pcpu_lab::gen::{Churn, CoverLetter, LargeObjects, Machine, Mix, SyntheticTrace, Workers};

use crate::error::{emit, CliError, CliResult};

/// Arguments of `pcpu gen`.
#[derive(Args, Debug)]
pub(crate) struct GenArgs {
    /// The workload.
    #[command(subcommand)]
    pub(crate) workload: Workload,
}

/// Output folder, seed and machine, shared by every workload.
#[derive(Args, Debug)]
pub(crate) struct GenOut {
    /// Capture folder to write (trace.txt.gz, dmesg-percpu.txt,
    /// capture-params.txt); created if needed.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,

    /// Seed of the pseudo-random choices (same seed, same trace).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,

    /// Units (possible CPUs) of the traced machine, 1 to 8192 (the kernel's largest NR_CPUS).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub(crate) units: u32,

    /// Overwrite a capture in DIR that `pcpu gen` did not write (a real
    /// capture, say); one it wrote is always replaced.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Refuse to overwrite a capture that no generator wrote (its
/// `capture-params.txt` names no `generator=`), unless `--force`.
fn check_out(out: &GenOut) -> Result<(), CliError> {
    let dir = &out.out;
    crate::input::check_out_folder(dir)?;
    let has_capture = [
        "trace.txt.gz",
        "trace.txt",
        "dmesg-percpu.txt",
        "meminfo-phases.txt",
        "capture-params.txt",
    ]
    .iter()
    .any(|n| dir.join(n).exists());
    if !has_capture || out.force {
        return Ok(());
    }
    let params = std::fs::read_to_string(dir.join("capture-params.txt"));
    let why = match &params {
        Ok(p) if p.lines().any(|l| l.starts_with("generator=")) => return Ok(()),
        Ok(_) => "its capture-params.txt names no generator",
        Err(_) => "it has no readable capture-params.txt naming a generator",
    };
    Err(CliError::usage(format!(
        "{}: holds a capture that `pcpu gen` did not write ({why}); refusing to overwrite it \
         (--force overwrites)",
        dir.display()
    )))
}

/// The workloads.
#[derive(Subcommand, Debug)]
pub(crate) enum Workload {
    /// The cover letter's memory cgroups: parents with children, each
    /// created by its own mkdir; remove a fraction of the children (phase C),
    /// then everything (phase D).
    CoverLetter {
        /// Parent cgroups.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        parents: u32,
        /// Children per parent (at most 1,000,000 groups in all).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
        children: u32,
        /// Fraction of the children removed at phase C (0 to 1).
        #[arg(long, default_value_t = 1.0, conflicts_with = "remove_pct")]
        remove: f64,
        /// The same in percent (0 to 100), as `churn` and `mix` take it.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
        remove_pct: Option<u32>,
        /// Output and seed.
        #[command(flatten)]
        out: GenOut,
    },
    /// Steady churn: rounds of creating cgroups, then removing each existing
    /// one with some probability (phases R1c, R1, R2c, R2, ..., END).
    Churn {
        /// Rounds.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
        rounds: u32,
        /// Cgroups created per round (at most 1,000,000 in all rounds).
        #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        per_round: u32,
        /// Chance, in percent, that an existing cgroup is removed in a round.
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(0..=100))]
        remove_pct: u32,
        /// Output and seed.
        #[command(flatten)]
        out: GenOut,
    },
    /// BPF-map-like large objects (1 KiB to 32 KiB) loaded and unloaded in
    /// rounds (phases L1c, L1, L2c, L2, ..., END).
    Bpf {
        /// Rounds.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
        rounds: u32,
        /// Applications loaded per round (at most 1,000,000 in all rounds).
        #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        apps: u32,
        /// Chance, in percent, that a live application is unloaded in a round.
        #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(0..=100))]
        unload_pct: u32,
        /// Smallest large object in bytes.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=32768))]
        min_size: u32,
        /// Largest large object in bytes.
        #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(8..=32768))]
        max_size: u32,
        /// Output and seed.
        #[command(flatten)]
        out: GenOut,
    },
    /// A mix of cgroups, BPF applications and long-lived small objects
    /// (phases M1c, M1, M2c, M2, ..., END).
    Mix {
        /// Rounds.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
        rounds: u32,
        /// Cgroups created per round (at most 1,000,000 cgroups and
        /// applications in all rounds).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        groups: u32,
        /// BPF applications loaded per round.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        apps: u32,
        /// Chance, in percent, that a live cgroup or application is removed.
        #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u32).range(0..=100))]
        remove_pct: u32,
        /// One long-lived small object every this many creations (0: none).
        #[arg(long, default_value_t = 20)]
        long_lived_every: u32,
        /// Output and seed.
        #[command(flatten)]
        out: GenOut,
    },
    /// Long-running workers in overlapping shifts: each opens sessions (a
    /// counter and a statistics block) while the one before it closes most
    /// of its own (phases W1c, W1, W2c, W2, ..., END).
    Workers {
        /// Worker tasks.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
        workers: u32,
        /// Rounds.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
        rounds: u32,
        /// Sessions each worker opens per round (at most 1,000,000 sessions
        /// in all).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        sessions: u32,
        /// Chance, in percent, that a session survives its shift.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
        keep_pct: u32,
        /// Output and seed.
        #[command(flatten)]
        out: GenOut,
    },
}

/// The most groups (cgroups, and BPF applications) a workload creates in
/// all: each is about ten allocations, so a million take minutes and a few
/// hundred megabytes; the flags' own ranges multiply to a hundred times more.
const MAX_CREATED: u64 = 1_000_000;

/// Refuses a workload that creates more than [`MAX_CREATED`] groups in all
/// (`flags`: how the flags make `total`, `what`: what it counts).
fn check_created(total: u64, flags: &str, what: &str) -> CliResult {
    if total > MAX_CREATED {
        return Err(CliError::usage(format!(
            "{flags} make {total} {what}; at most 1,000,000"
        )));
    }
    Ok(())
}

fn machine(out: &GenOut) -> Machine {
    Machine {
        units: out.units,
        ..Machine::default()
    }
}

/// Runs `pcpu gen`.
pub(crate) fn run(args: GenArgs) -> CliResult {
    // The output folder first: a bad one fails before minutes of generating.
    let out = match &args.workload {
        Workload::CoverLetter { out, .. }
        | Workload::Churn { out, .. }
        | Workload::Bpf { out, .. }
        | Workload::Mix { out, .. }
        | Workload::Workers { out, .. } => out,
    };
    check_out(out)?;
    let (trace, out): (SyntheticTrace, &GenOut) = match &args.workload {
        Workload::CoverLetter {
            parents,
            children,
            remove,
            remove_pct,
            out,
        } => {
            let remove = &remove_pct.map_or(*remove, |p| f64::from(p) / 100.0);
            check_created(
                u64::from(*parents) * (1 + u64::from(*children)),
                &format!("--parents {parents} --children {children}"),
                "groups",
            )?;
            if !(0.0..=1.0).contains(remove) {
                return Err(CliError::usage(format!(
                    "--remove {remove}: expected a fraction between 0 and 1"
                )));
            }
            let w = CoverLetter {
                parents: *parents,
                children: *children,
                remove_children: *remove,
                seed: out.seed,
                machine: machine(out),
            };
            (w.generate(), out)
        }
        Workload::Churn {
            rounds,
            per_round,
            remove_pct,
            out,
        } => {
            check_created(
                u64::from(*rounds) * u64::from(*per_round),
                &format!("--rounds {rounds} --per-round {per_round}"),
                "cgroups",
            )?;
            let w = Churn {
                rounds: *rounds,
                per_round: *per_round,
                remove_pct: *remove_pct,
                seed: out.seed,
                machine: machine(out),
            };
            (w.generate(), out)
        }
        Workload::Bpf {
            rounds,
            apps,
            unload_pct,
            min_size,
            max_size,
            out,
        } => {
            check_created(
                u64::from(*rounds) * u64::from(*apps),
                &format!("--rounds {rounds} --apps {apps}"),
                "applications",
            )?;
            if min_size > max_size {
                return Err(CliError::usage(format!(
                    "--min-size {min_size} is larger than --max-size {max_size}"
                )));
            }
            let w = LargeObjects {
                rounds: *rounds,
                apps_per_round: *apps,
                unload_pct: *unload_pct,
                min_size: *min_size,
                max_size: *max_size,
                seed: out.seed,
                machine: machine(out),
            };
            (w.generate(), out)
        }
        Workload::Mix {
            rounds,
            groups,
            apps,
            remove_pct,
            long_lived_every,
            out,
        } => {
            check_created(
                u64::from(*rounds) * (u64::from(*groups) + u64::from(*apps)),
                &format!("--rounds {rounds} --groups {groups} --apps {apps}"),
                "cgroups and applications",
            )?;
            let w = Mix {
                rounds: *rounds,
                groups_per_round: *groups,
                apps_per_round: *apps,
                remove_pct: *remove_pct,
                long_lived_every: *long_lived_every,
                seed: out.seed,
                machine: machine(out),
            };
            (w.generate(), out)
        }
        Workload::Workers {
            workers,
            rounds,
            sessions,
            keep_pct,
            out,
        } => {
            check_created(
                u64::from(*workers) * u64::from(*rounds) * u64::from(*sessions),
                &format!("--workers {workers} --rounds {rounds} --sessions {sessions}"),
                "sessions",
            )?;
            let w = Workers {
                workers: *workers,
                rounds: *rounds,
                sessions: *sessions,
                keep_pct: *keep_pct,
                seed: out.seed,
                machine: machine(out),
            };
            (w.generate(), out)
        }
    };
    trace.write_capture(&out.out).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot write the capture: {e}",
            out.out.display()
        ))
    })?;
    let phases: Vec<String> = trace
        .records
        .iter()
        .filter_map(|r| match &r.event {
            pcpu_trace::Event::PhasePercpu { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    emit(&format!(
        "wrote {}: {} ({} records, {} allocations; phases {})\n",
        out.out.display(),
        trace.name,
        trace.records.len(),
        trace.allocs(),
        phases.join(", ")
    ))
}
