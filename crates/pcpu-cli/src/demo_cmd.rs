//! `pcpu demo`: the seed thread's experiment on real memory (the `pcpu`
//! crate), every policy side by side.

use std::io::{self, IsTerminal};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pcpu::demo::{self, DemoConfig};
use pcpu_core::Policy;

use crate::error::{emit, CliError, CliResult};
use crate::input::{once_each, parse_policy};

/// `pcpu demo` arguments.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Parent groups (memory cgroups) to create.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    parents: u32,
    /// Children per parent (at most 1,000,000 groups in all).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    children: u32,
    /// Policies, comma-separated (default: linux-5.11, seed-rfc, linux-5.14,
    /// pcpu).
    #[arg(long, value_delimiter = ',', value_parser = parse_policy)]
    policies: Option<Vec<Policy>>,
    /// Policies to run again with lifetime hints (parents and children in
    /// different classes), comma-separated; `none` for none (default: pcpu).
    #[arg(long, value_delimiter = ',')]
    hinted: Option<Vec<String>>,
    /// Unit size of each allocator in bytes (a multiple of the page size,
    /// 32 KiB to 1 GiB; default: 524288, the userspace allocator's).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(32768..=1 << 30))]
    unit_size: Option<usize>,
    /// Units of each allocator (default: the possible CPUs; fewer are
    /// refused, since every CPU id needs a unit). More stand for
    /// a machine whose other possible CPUs never run the process (a VM sized
    /// for CPU hot-plug): Percpu counts every unit, resident memory only the
    /// units that were written. At most 65535 (the userspace allocator's
    /// limit).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65535))]
    units: Option<u32>,
    /// Print the report as JSON (schema in the `pcpu::demo` documentation).
    #[arg(long)]
    json: bool,
}

/// Runs `pcpu demo`.
pub(crate) fn run(args: DemoArgs) -> CliResult {
    let groups = u64::from(args.parents) * (1 + u64::from(args.children));
    if groups > pcpu::demo::MAX_GROUPS as u64 {
        return Err(CliError::usage(format!(
            "--parents {} --children {} make {groups} groups; at most 1,000,000",
            args.parents, args.children
        )));
    }
    let mut cfg = DemoConfig {
        parents: args.parents as usize,
        children: args.children as usize,
        ..DemoConfig::default()
    };
    if let Some(p) = args.policies {
        cfg.policies = once_each(p, "--policies", "run");
    }
    if let Some(h) = args.hinted {
        let hinted = h
            .iter()
            .filter(|s| s.as_str() != "none")
            .map(|s| parse_policy(s).map_err(|e| CliError::usage(format!("--hinted: {e}"))))
            .collect::<Result<_, _>>()?;
        cfg.hinted = once_each(hinted, "--hinted", "run");
    }
    if let Some(u) = args.unit_size {
        cfg.unit_size = u;
    }
    cfg.units = args.units.map(|u| u as usize);
    let bar = io::stderr().is_terminal().then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let start = Instant::now();
    let result = demo::run(&cfg, &mut |label, done, total| {
        if let Some(b) = &bar {
            b.set_message(label.to_owned());
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = result.map_err(|e| match e {
        // Settings no allocator takes on this machine are usage errors.
        pcpu::Error::TooFewUnits { .. }
        | pcpu::Error::InvalidConfig { .. }
        | pcpu::Error::Geometry(_) => CliError::usage(e.to_string()),
        e => CliError::replay(format!("demo failed: {e}")),
    })?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::replay(format!("cannot encode the report as JSON: {e}")))?;
        return emit(&(json + "\n"));
    }
    let mut out = format!(
        "{} groups ({} parents x (1 + {} children)), {} units of {} kB pages, real memory\n\
         Percpu kB (resident kB), each phase after the balance thread settled\n\n",
        report.groups,
        cfg.parents,
        cfg.children,
        report.units,
        report.page_size / 1024
    );
    out.push_str(&report.table());
    out.push_str("\nremoved/created (the cover letter's C/B):");
    for p in &report.policies {
        if let (Some(b), Some(c)) = (p.phases.get(1), p.phases.get(2)) {
            out.push_str(&format!(
                "  {} {:.2}",
                p.policy,
                c.percpu_kb as f64 / b.percpu_kb.max(1) as f64
            ));
        }
    }
    out.push_str(&format!(
        "\nelapsed: {:.2} s\n",
        start.elapsed().as_secs_f64()
    ));
    emit(&out)
}
