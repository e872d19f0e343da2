//! `pcpu record`: record a capture folder on the running kernel while a
//! workload runs; `pcpu mark`: mark a phase of it (pcpu_trace::record).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pcpu_trace::parse_dmesg;
use pcpu_trace::record::{geometry_lines, RecordError, RecordOptions, Tracefs};

use crate::error::{emit, warn, CliError, CliResult, EXIT_REPLAY};

/// The variable `pcpu record` sets for its workload: the tracefs mount, which
/// `pcpu mark` uses when `--tracefs` is not given.
const TRACEFS_VAR: &str = "PCPU_TRACEFS";

/// The variable `pcpu record` sets for its workload when the kernel's
/// `percpu_stats` is readable: the capture's `percpu-stats.txt`, to which
/// `pcpu mark` appends the snapshot at its marker.
const STATS_VAR: &str = "PCPU_STATS_OUT";

/// The capture's file of `percpu_stats` snapshots.
const STATS_FILE: &str = "percpu-stats.txt";

/// Arguments of `pcpu record`.
#[derive(Args, Debug)]
pub(crate) struct RecordArgs {
    /// Capture folder to write (trace.txt.gz, and dmesg-percpu.txt or
    /// geometry.txt); created if needed, refused if it holds a trace.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,

    /// Ring buffer size per CPU, in KiB. A trace that does not fit loses
    /// events (the command says so): raise it and record again.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(64..))]
    pub(crate) buffer_kb: u64,

    /// Record even when a tracer or other trace events are on (their ring
    /// buffer is cleared).
    #[arg(long)]
    pub(crate) force: bool,

    /// The tracefs mount (default: /sys/kernel/tracing, else
    /// /sys/kernel/debug/tracing).
    #[arg(long, value_name = "DIR")]
    pub(crate) tracefs: Option<PathBuf>,

    /// The meminfo file whose `Percpu:` the phase markers carry.
    #[arg(long, hide = true, default_value = "/proc/meminfo")]
    pub(crate) meminfo: PathBuf,

    /// The kernel's percpu_stats (the geometry when the boot log lacks it).
    #[arg(long, hide = true, default_value = "/sys/kernel/debug/percpu_stats")]
    pub(crate) percpu_stats: PathBuf,

    /// The possible CPUs (the number of units beside percpu_stats).
    #[arg(long, hide = true, default_value = "/sys/devices/system/cpu/possible")]
    pub(crate) possible: PathBuf,

    /// A file holding the kernel log, read instead of running `dmesg`.
    #[arg(long, hide = true, value_name = "FILE")]
    pub(crate) dmesg: Option<PathBuf>,

    /// The workload and its arguments, after `--`. It runs with
    /// PCPU_TRACEFS set, so that `pcpu mark NAME` in it marks its phases.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

/// Arguments of `pcpu mark`.
#[derive(Args, Debug)]
pub(crate) struct MarkArgs {
    /// The phase name (no spaces).
    pub(crate) name: String,

    /// The tracefs mount (default: $PCPU_TRACEFS, set by `pcpu record`, else
    /// /sys/kernel/tracing, else /sys/kernel/debug/tracing).
    #[arg(long, value_name = "DIR")]
    pub(crate) tracefs: Option<PathBuf>,

    /// The meminfo file whose `Percpu:` the marker carries.
    #[arg(long, hide = true, default_value = "/proc/meminfo")]
    pub(crate) meminfo: PathBuf,

    /// The kernel's percpu_stats, saved beside the marker (under `pcpu
    /// record`, which names the file in $PCPU_STATS_OUT).
    #[arg(long, hide = true, default_value = "/sys/kernel/debug/percpu_stats")]
    pub(crate) percpu_stats: PathBuf,
}

fn tracefs(given: Option<&Path>) -> CliResult<Tracefs> {
    let found = match given {
        Some(p) => Tracefs::at(p),
        None => match std::env::var_os(TRACEFS_VAR) {
            Some(p) => Tracefs::at(p),
            None => Tracefs::locate(),
        },
    };
    found.map_err(|e| CliError::usage(with_root_hint(&e)))
}

/// The error's message, with a hint when tracefs refused access.
fn with_root_hint(e: &RecordError) -> String {
    match e {
        RecordError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("{e} (tracefs needs root)")
        }
        _ => e.to_string(),
    }
}

/// Runs `pcpu mark`.
pub(crate) fn run_mark(args: MarkArgs) -> CliResult {
    let fs = tracefs(args.tracefs.as_deref())?;
    let kb = fs
        .mark_phase(&args.name, &args.meminfo)
        .map_err(|e| CliError::usage(with_root_hint(&e)))?;
    if let Some(out) = std::env::var_os(STATS_VAR) {
        if let Err(e) = save_stats(&args.percpu_stats, Path::new(&out), &args.name, false) {
            warn(&format!(
                "the kernel's percpu_stats at {} not saved: {e}",
                args.name
            ));
        }
    }
    emit(&format!("PHASE {} Percpu: {kb} kB\n", args.name))
}

/// Runs `pcpu record`.
pub(crate) fn run(args: RecordArgs) -> CliResult {
    let dir = &args.out;
    crate::input::check_out_folder(dir)?;
    if let Some(t) = ["trace.txt.gz", "trace.txt"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
    {
        return Err(CliError::usage(format!(
            "{}: a trace is there already; give another folder",
            t.display()
        )));
    }
    let fs = tracefs(args.tracefs.as_deref())?;
    let usage = |e: RecordError| CliError::usage(with_root_hint(&e));
    let rec = fs
        .start(RecordOptions {
            buffer_kb: args.buffer_kb,
            force: args.force,
        })
        .map_err(usage)?;
    // Ctrl-C stops the workload (it gets the signal too), not the
    // recording; SIGTERM or SIGHUP (a closed terminal) is passed on to the
    // workload: either way the capture is still saved and tracefs put back.
    let terminate = catch_signals();
    fs.mark_phase("START", &args.meminfo).map_err(usage)?;
    // The kernel's own figures at the markers, which the trace lacks: the
    // chunks before tracing and their empty pages (the replay's START), and
    // at every marker its empty pages and chunks beside ours.
    let stats_out = dir.join(STATS_FILE);
    let stats_ok = std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| save_stats(&args.percpu_stats, &stats_out, "START", true));
    if let Err(e) = &stats_ok {
        warn(&format!(
            "no percpu_stats snapshots ({e}; debugfs: mount -t debugfs nodev /sys/kernel/debug): \
             the replay then guesses where the empty pages before tracing were from Percpu alone"
        ));
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::usage("no command to run"))?;
    let cannot = |e: std::io::Error| {
        CliError::usage(format!("cannot run {}: {e}", Path::new(program).display()))
    };
    let mut command = Command::new(program);
    command.args(rest).env(TRACEFS_VAR, fs.root());
    if stats_ok.is_ok() {
        // Absolute: the workload may change its directory.
        let abs = std::path::absolute(&stats_out).unwrap_or_else(|_| stats_out.clone());
        command.env(STATS_VAR, abs);
    } else {
        command.env_remove(STATS_VAR);
    }
    let mut child = command.spawn().map_err(cannot)?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(cannot)? {
            break status;
        }
        if terminate.swap(false, Ordering::Relaxed) {
            // The workload may be gone already: nothing to pass on then.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    fs.mark_phase("END", &args.meminfo).map_err(usage)?;
    if stats_ok.is_ok() {
        if let Err(e) = save_stats(&args.percpu_stats, &stats_out, "END", false) {
            warn(&format!("the kernel's percpu_stats at END not saved: {e}"));
        }
    }
    let summary = rec.finish(dir).map_err(usage)?;
    let geometry = save_geometry(&args)?;
    let mut out = format!(
        "{}: {:.1} MB of trace text ({:.1} MB gzipped), from phase START to END; geometry \
         {geometry}{}\n",
        summary.trace_path.display(),
        summary.trace_bytes as f64 / 1e6,
        std::fs::metadata(&summary.trace_path).map_or(0.0, |m| m.len() as f64 / 1e6),
        if stats_ok.is_ok() {
            "; the kernel's percpu_stats at every marker (percpu-stats.txt)"
        } else {
            ""
        }
    );
    out += &format!(
        "replay it with: pcpu replay {} (not traced from boot: what was already in use is \
         inferred from the trace; --lenient skips events that still do not replay)\n",
        dir.display()
    );
    emit(&out)?;
    if summary.overrun > 0 {
        warn(&format!(
            "the ring buffer lost {} events (overwritten or dropped): raise --buffer-kb (now {}) and record again",
            summary.overrun, args.buffer_kb
        ));
    }
    if !status.success() {
        return Err(CliError {
            code: EXIT_REPLAY,
            message: format!("the workload failed ({status}); the capture is saved"),
        });
    }
    Ok(())
}

/// Saves the kernel's `percpu_stats` (read from `stats`) as the snapshot of
/// phase `name` in `out` (`percpu-stats.txt`): appended, or with `fresh`
/// as the file's first. Only text that parses as `percpu_stats` is saved.
fn save_stats(stats: &Path, out: &Path, name: &str, fresh: bool) -> Result<(), String> {
    use std::io::Write;
    let text = std::fs::read_to_string(stats).map_err(|e| format!("{}: {e}", stats.display()))?;
    pcpu_trace::parse_percpu_stats(&text).map_err(|m| format!("{}: {m}", stats.display()))?;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!fresh)
        .truncate(fresh)
        .open(out)
        .and_then(|mut f| f.write_all(pcpu_trace::format_snapshot(name, &text).as_bytes()))
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// From here on, SIGINT no longer ends this process (the workload in the
/// same process group gets Ctrl-C itself), and SIGTERM and SIGHUP set the
/// flag returned, which the wait for the workload passes on to it.
fn catch_signals() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let terminate = Arc::new(AtomicBool::new(false));
    let caught = [
        (signal_hook::consts::SIGINT, &interrupted),
        (signal_hook::consts::SIGTERM, &terminate),
        (signal_hook::consts::SIGHUP, &terminate),
    ]
    .into_iter()
    .try_for_each(|(sig, flag)| signal_hook::flag::register(sig, Arc::clone(flag)).map(drop));
    if let Err(e) = caught {
        warn(&format!(
            "cannot catch signals ({e}): interrupting now leaves tracefs as recording set it"
        ));
    }
    terminate
}

/// Writes the first-chunk geometry beside the trace: the boot log's percpu
/// lines (`dmesg-percpu.txt`) when they give the sizes and the units, else
/// `geometry.txt` from percpu_stats and the possible CPUs. Says which.
fn save_geometry(args: &RecordArgs) -> CliResult<String> {
    let log = match &args.dmesg {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => Command::new("dmesg")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default(),
    };
    let lines: String = log
        .lines()
        .filter(|l| l.contains("percpu: ") || l.contains("pcpu-alloc: "))
        .map(|l| format!("{l}\n"))
        .collect();
    let write = |name: &str, text: &str| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    };
    let from_log = parse_dmesg(&lines);
    if from_log.as_ref().and_then(|g| g.nr_units()).is_some() {
        write("dmesg-percpu.txt", &lines)?;
        return Ok("from the kernel log (dmesg-percpu.txt)".into());
    }
    let stats = std::fs::read_to_string(&args.percpu_stats).ok();
    let possible = std::fs::read_to_string(&args.possible).ok();
    // Written only when it reads back as a geometry (as `Capture::open`
    // reads geometry.txt: with `parse_dmesg`).
    if let Some(derived) = stats
        .zip(possible)
        .and_then(|(s, p)| geometry_lines(&s, &p))
        .filter(|d| parse_dmesg(d).is_some())
    {
        let text = format!(
            "# derived by pcpu record from {} and {} (not the boot log)\n{derived}",
            args.percpu_stats.display(),
            args.possible.display()
        );
        write("geometry.txt", &text)?;
        return Ok("from percpu_stats (geometry.txt)".into());
    }
    if from_log.is_some() {
        write("dmesg-percpu.txt", &lines)?;
        warn("the kernel log gives the percpu sizes but not the units: pass --units N (the possible CPUs) when replaying");
        return Ok("from the kernel log, without the units (dmesg-percpu.txt)".into());
    }
    warn("no percpu geometry (the boot log's lines are gone and there is no percpu_stats): pass --geometry and --units when replaying");
    Ok("unknown".into())
}
