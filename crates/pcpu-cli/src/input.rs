//! Loading a trace (capture folder, trace file or standard input), resolving
//! the first-chunk geometry and number of units, and building the replay
//! [`Setup`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pcpu_core::{FirstChunk, Geometry, Policy, PolicyKind};
use pcpu_lab::run::Schedule;
use pcpu_replay::{BalanceTiming, ClassMode, Placement, ReplayConfig, ReplayError, Setup};
use pcpu_trace::{
    Capture, CaptureError, Event, FirstChunkGeometry, ParseError, ParseErrorKind, ParseOptions,
    Record, StatsSnapshot, TraceReader,
};

use crate::error::{warn, CliError, CliResult};

/// Page size of every trace this command replays (x86-64).
const PAGE_SIZE: usize = 4096;

/// Read buffer for trace files.
const BUF_SIZE: usize = 256 * 1024;

/// Arguments shared by every subcommand that replays a trace.
#[derive(Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// Capture folder (trace.txt.gz or trace.txt, plus dmesg-percpu.txt), a
    /// trace file (plain text or gzip), or `-` for standard input.
    #[arg(value_name = "CAPTURE")]
    pub(crate) input: PathBuf,

    /// Number of units (possible CPUs), 1 to 65536;
    /// overrides the capture's `pcpu-alloc: [0] ...` lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(crate) units: Option<u32>,

    /// First-chunk geometry as the kernel prints it, e.g.
    /// "s217088 r8192 d28672 u524288" (static, reserved, dynamic and unit
    /// size in bytes); overrides the capture's dmesg-percpu.txt.
    #[arg(long, value_name = "\"sN rN dN uN\"", value_parser = parse_geometry)]
    pub(crate) geometry: Option<FirstChunkGeometry>,

    /// Do not pre-fill the gaps of the first chunk that were in use before
    /// tracing started.
    #[arg(long)]
    pub(crate) no_prefill: bool,

    /// Skip malformed trace lines, frees of unknown pointers and events that
    /// cannot be replayed (invalid requests, offsets or page ranges outside
    /// the unit, chunks destroyed while holding allocations or created
    /// twice), counted and reported on stderr, instead of failing.
    #[arg(long)]
    pub(crate) lenient: bool,

    /// When the balance work runs: `recorded` (at the trace's
    /// pcpu_balance_workfn events), `modelled` (whenever an allocation or
    /// free schedules it, the kernel's rules without delay), `auto`
    /// (recorded when the trace has such events, else modelled),
    /// `every-run=N` (at every Nth recorded run only: a work item N times
    /// rarer), `timer=N` (once every N allocations and frees, scheduled
    /// or not: a periodic timer; the recorded runs are dropped), or
    /// `delay=US` (by the kernel's rules, US microseconds of the trace's
    /// clock after it is scheduled: a work item's latency, for traces
    /// without balance events).
    #[arg(long, value_name = "WHEN", value_parser = parse_balance, default_value = "auto")]
    pub(crate) balance: BalanceArg,

    /// Run the allocator's full invariant check after every event (slow).
    #[arg(long)]
    pub(crate) check: bool,

    /// Placement classes for policies with class placement (`pcpu`): none,
    /// the allocating task (default), lifetime classes derived from the
    /// trace (objects freed in the same phase share pages), power-of-two size
    /// classes, or call sites (page-exclusive).
    #[arg(long, value_enum, default_value_t = ClassArg::Task)]
    pub(crate) classes: ClassArg,

    /// Per-CPU magazines of N freed areas per request size, drained before
    /// every balance run (0, the default: none, as in Linux): what a
    /// slab-like free cache would cost in memory. Simulated placement only.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=65536))]
    pub(crate) magazine: usize,
}

/// `--classes` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassArg {
    /// Plain first fit.
    None,
    /// Keep each task's objects contiguous.
    Task,
    /// Lifetime classes derived from when each object is freed.
    Derived,
    /// Power-of-two size classes, each on pages of its own.
    Size,
    /// One class per call site, each on pages of its own.
    CallSite,
}

impl From<ClassArg> for ClassMode {
    fn from(c: ClassArg) -> Self {
        match c {
            ClassArg::None => ClassMode::None,
            ClassArg::Task => ClassMode::Task,
            ClassArg::Derived => ClassMode::Derived,
            ClassArg::Size => ClassMode::SizeClass,
            ClassArg::CallSite => ClassMode::CallSite,
        }
    }
}

/// The policy and placement of a single replay (`replay`, `stats`).
#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    /// Depopulation policy: linux-5.11, seed-rfc, linux-5.14, linux-6.1 or
    /// pcpu, optionally followed by knobs, `NAME:knob=value:knob=value`
    /// (e.g. `linux-5.14:sideline=false`). Knobs: empty_pop_low,
    /// empty_pop_high, reclaim_divisor, reclaim_min_pages,
    /// rfc_marked_threshold, reclaim_surplus, reclaim_batch,
    /// refault_reserve_divisor, sideline, fit (first, next, best), refill
    /// (kernel, fullest, room), class_placement, min_run, class_capacity,
    /// keep_room, long_lived, backfill, grow_beside, tile_bursts, short_lived. `pcpu policies` says what each does,
    /// which policies it affects, and its defaults.
    #[arg(long, value_name = "NAME", default_value = "linux-6.1", value_parser = parse_policy)]
    pub(crate) policy: Policy,

    /// Where allocations go: chosen by our allocator (simulate), or at the
    /// kernel's recorded chunk and offset (kernel).
    #[arg(long, value_enum, default_value_t = PlacementArg::Simulate)]
    pub(crate) placement: PlacementArg,
}

/// `--balance` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BalanceArg {
    /// Recorded when the trace has pcpu_balance_workfn events, else modelled.
    Auto,
    /// At the trace's pcpu_balance_workfn events.
    Recorded,
    /// Whenever an allocation or free schedules the balance work.
    Modelled,
    /// At every Nth of the trace's pcpu_balance_workfn events only.
    EveryRun(u32),
    /// Once every N allocations and frees; the trace's runs dropped.
    Timer(u32),
    /// By the kernel's rules, N microseconds of trace time after it is
    /// scheduled.
    Delay(u32),
}

/// Parses `--balance`.
pub(crate) fn parse_balance(s: &str) -> Result<BalanceArg, String> {
    let count = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| format!("`{s}`: N must be a count from 1 to 1000000"))
    };
    match s {
        "auto" => Ok(BalanceArg::Auto),
        "recorded" => Ok(BalanceArg::Recorded),
        "modelled" => Ok(BalanceArg::Modelled),
        _ => {
            if let Some(v) = s.strip_prefix("every-run=") {
                count(v).map(BalanceArg::EveryRun)
            } else if let Some(v) = s.strip_prefix("timer=") {
                count(v).map(BalanceArg::Timer)
            } else if let Some(v) = s.strip_prefix("delay=") {
                count(v).map(BalanceArg::Delay)
            } else {
                Err(format!(
                    "`{s}`: expected auto, recorded, modelled, every-run=N, timer=N or delay=US"
                ))
            }
        }
    }
}

impl BalanceArg {
    /// Does it need the trace's own balance runs?
    fn needs_runs(self) -> bool {
        matches!(self, BalanceArg::Recorded | BalanceArg::EveryRun(_))
    }

    /// The lab's schedule for the two that rewrite the trace's runs.
    fn rewrite(self) -> Option<Schedule> {
        match self {
            BalanceArg::EveryRun(n) => Some(Schedule::EveryNth(n)),
            BalanceArg::Timer(n) => Some(Schedule::Periodic(n)),
            _ => None,
        }
    }

    /// The flag's text, for reports that name the timing.
    fn label(self) -> Option<String> {
        match self {
            BalanceArg::EveryRun(n) => Some(format!("every-run={n}")),
            BalanceArg::Timer(n) => Some(format!("timer={n}")),
            BalanceArg::Delay(us) => Some(format!("delay={us}")),
            _ => None,
        }
    }

    /// The engine's timing (the two rewrites replay at their runs).
    fn timing(self) -> BalanceTiming {
        match self {
            BalanceArg::Auto => BalanceTiming::Auto,
            BalanceArg::Modelled => BalanceTiming::Modelled,
            BalanceArg::Delay(us) => BalanceTiming::Delayed { us },
            _ => BalanceTiming::Recorded,
        }
    }
}

/// `--placement` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlacementArg {
    /// Our allocator places every allocation.
    Simulate,
    /// Every allocation goes to the kernel's recorded chunk and offset
    /// (population policy only).
    Kernel,
}

impl From<PlacementArg> for Placement {
    fn from(p: PlacementArg) -> Self {
        match p {
            PlacementArg::Simulate => Placement::Simulate,
            PlacementArg::Kernel => Placement::Kernel,
        }
    }
}

/// Parses a policy name (`--policy`, `--policies`).
pub(crate) fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse::<Policy>().map_err(|e| e.to_string())
}

/// `list` without repeats: a policy given twice in `flag` is `done` once
/// (`run`, `compared`), with a warning.
pub(crate) fn once_each(list: Vec<Policy>, flag: &str, done: &str) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    for p in list {
        if out.contains(&p) {
            warn(&format!("{flag}: {p} is given more than once: {done} once"));
        } else {
            out.push(p);
        }
    }
    out
}

/// Parses `--geometry "s217088 r8192 d28672 u524288"`: all four parts, in
/// any order, separated by spaces or commas.
pub(crate) fn parse_geometry(s: &str) -> Result<FirstChunkGeometry, String> {
    let (mut st, mut r, mut d, mut u) = (None, None, None, None);
    for tok in s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        let mut chars = tok.chars();
        let key = chars.next().unwrap_or(' ');
        let value: Option<u64> = chars.as_str().parse().ok();
        let slot = match key {
            's' => &mut st,
            'r' => &mut r,
            'd' => &mut d,
            'u' => &mut u,
            _ => {
                return Err(format!(
                "unexpected `{tok}`: expected \"s<static> r<reserved> d<dynamic> u<unit>\" (bytes)"
            ))
            }
        };
        match value {
            Some(_) if slot.is_some() => return Err(format!("`{key}` given twice")),
            Some(v) => *slot = Some(v),
            None => return Err(format!("`{tok}`: expected a number of bytes after `{key}`")),
        }
    }
    let missing: Vec<&str> = [
        ("s<static>", st),
        ("r<reserved>", r),
        ("d<dynamic>", d),
        ("u<unit>", u),
    ]
    .iter()
    .filter(|(_, v)| v.is_none())
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} (expected \"s<static> r<reserved> d<dynamic> u<unit>\")",
            missing.join(", ")
        ));
    }
    let (st, r, d) = (st.unwrap_or(0), r.unwrap_or(0), d.unwrap_or(0));
    let total = st.saturating_add(r).saturating_add(d);
    let pages = u32::try_from(total.div_ceil(PAGE_SIZE as u64))
        .map_err(|_| "sizes too large".to_string())?;
    Ok(FirstChunkGeometry {
        embedded_pages: pages,
        static_size: st,
        reserved_size: r,
        dyn_size: d,
        unit_size: u.unwrap_or(u64::from(pages) * PAGE_SIZE as u64),
        atom_size: None,
        alloc_size: None,
        groups: Vec::new(),
    })
}

/// A progress bar on stderr, shown only when stderr is a terminal. Cheap to
/// clone (clones share the bar); usable from several threads.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// The current stage's bar (a new one per stage, so that no frame mixes
    /// two stages); `None` when stderr is not a terminal.
    bar: Option<Arc<Mutex<ProgressBar>>>,
}

impl Progress {
    /// A bar that draws only when stderr is a terminal.
    pub(crate) fn new() -> Self {
        let bar = io::stderr()
            .is_terminal()
            .then(|| Arc::new(Mutex::new(ProgressBar::hidden())));
        Progress { bar }
    }

    /// The current bar, if drawing.
    fn with(&self, f: impl FnOnce(&mut ProgressBar)) {
        if let Some(b) = &self.bar {
            // A poisoned lock only means another thread panicked while
            // drawing; the bar itself is still usable.
            let mut guard = b.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard);
        }
    }

    /// Starts a stage: `len` units of work (bytes when `bytes`), or unknown.
    pub(crate) fn stage(&self, message: &'static str, len: Option<u64>, bytes: bool) {
        self.with(|bar| {
            let template = match (len.is_some(), bytes) {
                (true, true) => "{spinner} {msg:9} [{bar:40}] {bytes}/{total_bytes} {eta}",
                (true, false) => "{spinner} {msg:9} [{bar:40}] {pos}/{len} events {eta}",
                (false, true) => "{spinner} {msg:9} {bytes} read",
                (false, false) => "{spinner} {msg:9} {pos} events",
            };
            bar.finish_and_clear();
            let next = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                next.set_style(style.progress_chars("=> "));
            }
            next.set_message(message);
            next.enable_steady_tick(Duration::from_millis(120));
            *bar = next;
        });
    }

    /// Adds `n` units of work done.
    pub(crate) fn inc(&self, n: u64) {
        self.with(|bar| bar.inc(n));
    }

    /// Removes the bar (before printing results).
    pub(crate) fn finish(&self) {
        self.with(|bar| bar.finish_and_clear());
    }
}

/// A reader that reports the bytes it reads to a [`Progress`].
struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// A parsed trace, ready to replay.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Trace name for reports (the capture folder's name, the file name, or
    /// `stdin`).
    pub(crate) name: String,
    /// All records in file order.
    pub(crate) records: Vec<Record>,
    /// The traced kernel's allocator setup.
    pub(crate) setup: Setup,
    /// The trace has `pcpu_balance_workfn` events.
    pub(crate) has_balance: bool,
    /// The trace has populate/depopulate kprobe events.
    pub(crate) has_kprobes: bool,
    /// Wall time of reading and parsing the trace.
    pub(crate) parse_s: f64,
    /// The kernel's `percpu_stats` at the markers (a recording's
    /// `percpu-stats.txt`; empty without).
    pub(crate) kernel_stats: Vec<StatsSnapshot>,
    /// `--lenient`.
    lenient: bool,
    /// `--check`.
    check: bool,
    /// `--balance`.
    balance: BalanceTiming,
    /// `--balance every-run=N`, `timer=N` or `delay=US`, which the reports name in
    /// their `balance` field.
    pub(crate) balance_label: Option<String>,
    /// `--classes`.
    classes: ClassMode,
    /// `--magazine`.
    magazine: usize,
}

impl Loaded {
    /// Checks the replays a command is about to run, `policies` with
    /// `placement`: a magazine needs simulated placement (an error), and the
    /// settings a user may not expect are noted, each once, naming every
    /// policy concerned: the kernel's recorded balance runs (chosen by
    /// `--balance auto` on a real capture) applied to a policy that is not
    /// the kernel's or with a magazine, and placement classes given to
    /// policies that ignore them.
    pub(crate) fn check_runs(&self, policies: &[Policy], placement: Placement) -> CliResult {
        if self.magazine > 0 && placement == Placement::Kernel {
            return Err(CliError::usage(
                "--magazine needs simulated placement: with --placement kernel every allocation goes where the kernel put it",
            ));
        }
        // The kernel's policy, up to class knobs it ignores.
        let kernel = |p: &Policy| {
            [PolicyKind::Linux514, PolicyKind::Linux61]
                .into_iter()
                .any(|k| p.behaves_as(&Policy::named(k)))
        };
        let names = |ps: &[&Policy]| {
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.balance == BalanceTiming::Auto && self.has_balance {
            let off: Vec<&Policy> = policies
                .iter()
                .filter(|p| !kernel(p) || self.magazine > 0)
                .collect();
            if !off.is_empty() {
                warn(&format!(
                    "{}{} run{} the balance work at the kernel's recorded times (--balance auto on a capture with \
                     pcpu_balance_workfn events); --balance modelled runs it whenever the policy schedules it, as \
                     docs/policy-study.md does",
                    names(&off),
                    if self.magazine > 0 { " (with --magazine)" } else { "" },
                    if off.len() == 1 { "s" } else { "" }
                ));
            }
        }
        if !matches!(self.classes, ClassMode::Task | ClassMode::None) {
            let ignoring: Vec<&Policy> = policies.iter().filter(|p| !p.class_placement).collect();
            if !ignoring.is_empty() {
                warn(&format!(
                    "{} place{} by first fit and ignore{} --classes (add :class_placement=true to use them)",
                    names(&ignoring),
                    if ignoring.len() == 1 { "s" } else { "" },
                    if ignoring.len() == 1 { "s" } else { "" }
                ));
            }
        }
        Ok(())
    }

    /// The replay configuration for `policy` and `placement` under the
    /// shared options.
    pub(crate) fn config(&self, policy: Policy, placement: Placement) -> ReplayConfig {
        ReplayConfig {
            policy,
            placement,
            balance: self.balance,
            check_invariants: self.check,
            lenient: self.lenient,
            classes: self.classes,
            magazine: self.magazine,
            ..ReplayConfig::default()
        }
    }

    /// `(name, timestamp)` of every `PHASE <name> Percpu` marker, in trace
    /// order (one per [`pcpu_replay::PhaseReport`]).
    pub(crate) fn phase_marks(&self) -> Vec<(String, f64)> {
        pcpu_replay::phase_marks(&self.records)
    }

    /// Warns when phase `at` has more than one `PHASE <at> Percpu` marker:
    /// `--at` stops at the first.
    pub(crate) fn warn_repeated_phase(&self, at: &str) {
        let n = self
            .records
            .iter()
            .filter(|r| matches!(&r.event, Event::PhasePercpu { name, .. } if name == at))
            .count();
        if n > 1 {
            crate::error::warn(&format!(
                "{}: phase `{at}` has {n} `PHASE {at} Percpu` markers; --at stops at the first",
                self.name
            ));
        }
    }

    /// Turns a replay error into a command error (exit code 1).
    pub(crate) fn replay_error(&self, e: &ReplayError) -> CliError {
        CliError::replay(format!("{}: replay failed: {e}", self.name))
    }
}

/// Where the trace comes from.
enum Source {
    /// Standard input.
    Stdin,
    /// A capture folder or trace file.
    Capture(Box<Capture>),
}

/// An output folder (`--out`) must be a folder or not exist yet.
pub(crate) fn check_out_folder(dir: &Path) -> CliResult {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{}: is a file, expected a folder",
            dir.display()
        )));
    }
    Ok(())
}

/// Reads the capture or trace named by `args`, resolves geometry and units,
/// and derives the replay setup. Reports skipped lines (lenient mode) and
/// lost events on stderr. On error the progress bar is removed.
pub(crate) fn load(args: &CommonArgs, progress: &Progress) -> CliResult<Loaded> {
    let r = load_inner(args, progress);
    if r.is_err() {
        progress.finish();
    }
    r
}

/// [`load`] without the clean-up.
fn load_inner(args: &CommonArgs, progress: &Progress) -> CliResult<Loaded> {
    let (source, name) = if args.input.as_os_str() == "-" {
        (Source::Stdin, "stdin".to_string())
    } else {
        let path = &args.input;
        if !path.exists() {
            return Err(CliError::usage(format!(
                "{}: no such file or directory",
                path.display()
            )));
        }
        let (cap, meminfo_error) =
            Capture::open_without_bad_meminfo(path).map_err(|e| capture_error(&e))?;
        if let Some(e) = meminfo_error {
            // The kernel's Percpu figures come from the trace's phase
            // markers (the meminfo file only repeats them); without its
            // percpu_stats snapshots the replay goes on as for a capture
            // that has none.
            let why = if e.to_string().contains("percpu-stats.txt") {
                "ignored: the replay goes on without the kernel's percpu_stats"
            } else {
                "ignored: the trace's phase markers are used"
            };
            warn(&format!("{e} ({why})"));
        }
        // The folder's name for a capture folder or its standard trace file,
        // else the file's name.
        let file_name = path
            .file_name()
            .filter(|_| !path.is_dir())
            .map(|n| n.to_string_lossy().into_owned());
        let name = match file_name {
            Some(n) if n != "trace.txt.gz" && n != "trace.txt" => n,
            _ => cap.name(),
        };
        (Source::Capture(Box::new(cap)), name)
    };
    let (geo, units) = resolve_geometry(args, &source)?;

    let options = if args.lenient {
        ParseOptions::lenient()
    } else {
        ParseOptions::strict()
    };
    let start = Instant::now();
    let (trace_label, parsed) = match &source {
        Source::Stdin => {
            progress.stage("reading", None, true);
            let input = Counting {
                inner: io::stdin().lock(),
                progress: progress.clone(),
            };
            (
                "standard input".to_string(),
                read_records(BufReader::with_capacity(BUF_SIZE, input), options),
            )
        }
        Source::Capture(cap) => {
            let label = cap.trace_path.display().to_string();
            let file = File::open(&cap.trace_path)
                .map_err(|e| CliError::usage(format!("{label}: {e}")))?;
            let len = file.metadata().map(|m| m.len()).ok();
            progress.stage("parsing", len, true);
            let input = Counting {
                inner: file,
                progress: progress.clone(),
            };
            (
                label,
                read_records(BufReader::with_capacity(BUF_SIZE, input), options),
            )
        }
    };
    let (records, stats, header) = parsed.map_err(|e| parse_error(&trace_label, &e))?;
    let parse_s = start.elapsed().as_secs_f64();
    // Clear the bar before any warning; the replay stage draws a new one.
    progress.finish();

    if stats.malformed > 0 {
        warn(&format!(
            "{trace_label}: skipped {} malformed line{} (--lenient); the first:",
            stats.malformed,
            plural(stats.malformed)
        ));
        for e in &stats.errors {
            warn(&format!("  {e}"));
        }
    }
    if stats.lost_events > 0 || stats.lost_uncounted > 0 {
        let mut lost = format!("{} event{}", stats.lost_events, plural(stats.lost_events));
        if stats.lost_uncounted > 0 {
            let n = stats.lost_uncounted;
            let verb = if n == 1 { "does" } else { "do" };
            lost += &format!(
                " and more at {n} report{} that {verb} not say how many",
                plural(n)
            );
        }
        warn(&format!(
            "{trace_label}: the trace lost {lost} (ring buffer overflows, the first at line {}): every figure from there on misses them (--lenient)",
            stats.first_lost_line
        ));
    }
    if stats.unknown > 0 {
        // Other events are not an error (a capture may record more), but a
        // misnamed percpu event or probe would land here unseen.
        let mut named: Vec<(&String, &u64)> = stats.unknown_events.iter().collect();
        named.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut list: Vec<String> = named
            .iter()
            .take(5)
            .map(|(n, c)| format!("{n} ({c})"))
            .collect();
        if named.len() > 5 {
            list.push(format!("{} more", named.len() - 5));
        }
        warn(&format!(
            "{trace_label}: ignored {} line{} of events other than percpu's: {}",
            stats.unknown,
            plural(stats.unknown),
            list.join(", ")
        ));
    }
    if let Some(lost) = header.lost_events().filter(|&n| n > 0) {
        warn(&format!(
            "{trace_label}: the ring buffer lost {lost} event{} (entries-written > entries-in-buffer); \
             the replay will not match the kernel",
            plural(lost)
        ));
    }
    if let Some(r) = records.iter().find(
        |r| matches!(&r.event, Event::Marker(m) if m.starts_with(pcpu_trace::MAP_FAILED_MARKER)),
    ) {
        warn(&format!(
            "{trace_label}: line {}: the OS refused the traced allocator memory (a chunk's mapping, \
             or pages to populate or depopulate), which a replay does not emulate: placements and \
             pages may differ from there",
            r.line
        ));
    }
    if !records
        .iter()
        .any(|r| matches!(r.event, Event::Alloc(_) | Event::Free { .. }))
    {
        return Err(CliError::usage(format!(
            "{trace_label}: {}",
            ReplayError::NoEvents
        )));
    }
    let setup = Setup::derive(&geo, units, &records, !args.no_prefill).map_err(|e| match e {
        // What the trace lacks is an input error, as an empty trace is.
        ReplayError::NoEvents | ReplayError::Setup(_) => {
            CliError::usage(format!("{trace_label}: {e}"))
        }
        e => CliError::replay(format!("{name}: {e}")),
    })?;
    // The kernel's own percpu_stats at the first marker of a recording
    // (`percpu-stats.txt`): the chunks before tracing and their empty pages.
    let kernel_stats = match &source {
        Source::Capture(c) => c.kernel_stats.clone(),
        Source::Stdin => Vec::new(),
    };
    let setup = setup.with_kernel_stats(&records, &kernel_stats, !args.no_prefill);
    let (has_balance, has_kprobes) = pcpu_replay::trace_features(&records);
    if args.balance.needs_runs() && !has_balance {
        return Err(CliError::usage(format!(
            "{trace_label}: --balance {}, but the trace has no pcpu_balance_workfn events \
             (a generated trace has none): use --balance modelled or timer=N",
            args.balance.label().unwrap_or_else(|| "recorded".into())
        )));
    }
    let (records, has_balance) = match args.balance.rewrite() {
        Some(schedule) => {
            let records = schedule.apply_to(&records).0.into_owned();
            let has = pcpu_replay::trace_features(&records).0;
            (records, has)
        }
        None => (records, has_balance),
    };
    Ok(Loaded {
        name,
        records,
        setup,
        has_balance,
        has_kprobes,
        parse_s,
        kernel_stats,
        lenient: args.lenient,
        check: args.check,
        balance: args.balance.timing(),
        balance_label: args.balance.label(),
        classes: args.classes.into(),
        magazine: args.magazine,
    })
}

/// Records, parse statistics and header of a whole trace.
type Parsed = (Vec<Record>, pcpu_trace::ParseStats, pcpu_trace::TraceHeader);

/// Reads every record of a plain or gzip trace.
fn read_records<'a, R: BufRead + 'a>(
    input: R,
    options: ParseOptions,
) -> Result<Parsed, ParseError> {
    let mut reader: TraceReader<Box<dyn BufRead + 'a>> = pcpu_trace::from_reader(input)
        .map_err(|e| ParseError::io(0, &e))?
        .with_options(options);
    let mut records = Vec::new();
    for r in &mut reader {
        records.push(r?);
    }
    Ok((records, reader.stats().clone(), reader.header().clone()))
}

/// Resolves the first-chunk geometry and number of units from the flags and
/// the capture, and checks them.
fn resolve_geometry(args: &CommonArgs, source: &Source) -> CliResult<(FirstChunkGeometry, usize)> {
    const GEO_FLAG: &str =
        "--geometry \"s<static> r<reserved> d<dynamic> u<unit>\" (the sizes of the \
                            kernel's `percpu: Embedded N pages/cpu s.. r.. d.. u..` boot line)";
    let cap = match source {
        Source::Capture(c) => Some(c),
        Source::Stdin => None,
    };
    let dmesg_geo = cap.and_then(|c| c.geometry.as_ref());
    let dmesg_units = dmesg_geo.and_then(FirstChunkGeometry::nr_units);
    let geo = args.geometry.clone().or_else(|| dmesg_geo.cloned());
    let units = args.units.or(dmesg_units);
    if let (Some(given), Some(traced)) = (args.units, dmesg_units) {
        if given != traced {
            warn(&format!(
                "--units {given}, but the traced kernel had {traced}: Percpu figures scale with the units, so they no longer compare with the kernel's"
            ));
        }
    }

    let why = match cap {
        None => "standard input has no dmesg-percpu.txt".to_string(),
        Some(c) => match (&c.dmesg_path, dmesg_geo) {
            // A trace file named on its own (its folder was searched).
            (None, _)
                if !c
                    .trace_path
                    .file_name()
                    .is_some_and(|n| n == "trace.txt.gz" || n == "trace.txt") =>
            {
                format!(
                    "{} is a trace file with no dmesg-percpu.txt beside it",
                    c.trace_path.display()
                )
            }
            (None, _) => format!("{} has no dmesg-percpu.txt", c.dir.display()),
            (Some(p), None) => format!("{} has no percpu geometry line", p.display()),
            (Some(p), Some(_)) => {
                format!("{} has no `pcpu-alloc: [0] ...` unit lines", p.display())
            }
        },
    };
    let (geo, units) = match (geo, units) {
        (Some(g), Some(u)) => (g, u as usize),
        (None, Some(_)) => {
            return Err(CliError::usage(format!(
                "no first-chunk geometry: {why}; pass {GEO_FLAG}"
            )))
        }
        (Some(_), None) => {
            return Err(CliError::usage(format!(
                "number of units unknown: {why}; pass --units N (the number of possible CPUs)"
            )))
        }
        (None, None) => {
            return Err(CliError::usage(format!(
                "no first-chunk geometry and number of units: {why}; pass {GEO_FLAG} and --units N"
            )))
        }
    };
    let first = FirstChunk {
        static_size: geo.static_size as usize,
        reserved_size: geo.reserved_size as usize,
        dyn_size: geo.dyn_size as usize,
    };
    Geometry::new(PAGE_SIZE, units, geo.unit_size as usize, first)
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok((geo, units))
}

/// A trace parse error as a command error: it names the trace and the line.
fn parse_error(trace: &str, e: &ParseError) -> CliError {
    let text = e.to_string();
    let text = if e.line == 0 {
        text.strip_prefix("line 0: ").unwrap_or(&text).to_string()
    } else {
        text
    };
    let hint = if e.is_io() {
        ""
    } else if matches!(e.kind, ParseErrorKind::LostEvents { .. }) {
        " (--lenient replays the trace anyway, without the lost events)"
    } else {
        " (use --lenient to skip malformed lines)"
    };
    CliError::usage(format!("{trace}: {text}{hint}"))
}

/// A capture folder error as a command error.
fn capture_error(e: &CaptureError) -> CliError {
    CliError::usage(e.to_string())
}

/// `"s"` unless `n` is 1.
pub(crate) fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Checks up front that `path`'s folder exists and that it names an SVG
/// file, so that a bad `--plot` path fails before the replay rather than
/// after it, and never names the trace.
pub(crate) fn check_output_path(path: &Path) -> CliResult {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{}: folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(CliError::usage(format!(
            "{}: is a folder, expected a file name",
            path.display()
        )));
    }
    // Plots only: the extension keeps a slip from overwriting the trace or
    // its side files (trace.txt, dmesg-percpu.txt), which the plot would
    // replace without a trace.
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        return Err(CliError::usage(format!(
            "{}: a plot is written as SVG; give a file name ending in .svg",
            path.display()
        )));
    }
    Ok(())
}
