//! Recording a capture on a running kernel through tracefs (`pcpu record`,
//! `pcpu mark`).
//!
//! [`Tracefs::start`] saves the tracing settings it changes, turns the raw
//! pointers and the `percpu` events on in a cleared ring buffer of the given
//! size, and returns a [`Recording`]. [`Recording::finish`] stops tracing,
//! writes the buffer to `trace.txt.gz` and puts the settings back; dropping
//! a recording unfinished (an error, a panic) puts them back too.
//! [`Tracefs::mark_phase`] writes the `PHASE <X> begin` / `PHASE <X>
//! Percpu: <n> kB` markers the replay reads. [`geometry_lines`] turns
//! `/sys/kernel/debug/percpu_stats` and the possible CPUs into the
//! `pcpu-alloc:` lines a capture's geometry is read from, for kernels whose
//! boot log no longer holds them.
//!
//! Such a trace does not start at boot: replay it with `--lenient`
//! (docs/capturing.md).

use std::fmt;
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

/// Where tracefs is mounted on current kernels, then on older ones.
pub const TRACEFS_MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// An error of recording or marking: what failed, on which file.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecordError {
    /// No tracefs (with a `trace_marker`) at the paths tried.
    NoTracefs {
        /// The paths looked at.
        tried: Vec<PathBuf>,
    },
    /// The kernel has no `percpu` trace events.
    NoPercpuEvents {
        /// The events folder looked for.
        path: PathBuf,
    },
    /// Someone else is tracing (a tracer or other events on): recording
    /// would clear their buffer.
    Busy {
        /// What is in use.
        what: String,
    },
    /// A phase name the markers cannot carry.
    BadPhase {
        /// The name given.
        name: String,
    },
    /// `/proc/meminfo` (or the file given) has no `Percpu:` line.
    NoPercpuLine {
        /// The file read.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NoTracefs { tried } => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no tracefs at {} (mount it: `mount -t tracefs nodev /sys/kernel/tracing`)",
                    tried.join(" or ")
                )
            }
            RecordError::NoPercpuEvents { path } => write!(
                f,
                "{}: no percpu trace events in this kernel (CONFIG_TRACEPOINTS)",
                path.display()
            ),
            RecordError::Busy { what } => write!(
                f,
                "tracing is in use ({what}): recording would clear its ring buffer (--force records anyway)"
            ),
            RecordError::BadPhase { name } => write!(
                f,
                "phase name `{}`: give a non-empty name without spaces or control characters",
                name.escape_debug()
            ),
            RecordError::NoPercpuLine { path } => {
                write!(f, "{}: no `Percpu:` line", path.display())
            }
            RecordError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A tracefs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracefs {
    root: PathBuf,
}

/// How [`Tracefs::start`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Ring buffer size per CPU, in KiB.
    pub buffer_kb: u64,
    /// Record even when a tracer or other events are on (their buffer is
    /// cleared and their settings other than the ones saved are left as they
    /// are).
    pub force: bool,
}

/// The settings [`Tracefs::start`] changes, as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Saved {
    tracing_on: String,
    buffer_size_kb: Option<String>,
    /// `Some(true)` when `hash-ptr` was set; `None` when the kernel has no
    /// such option (it hashes nothing, or always does).
    hash_ptr: Option<bool>,
    percpu_enable: String,
}

/// A recording in progress: the `percpu` events go to the ring buffer.
/// [`Recording::finish`] saves it; dropped unfinished, it puts the settings
/// back and saves nothing.
#[derive(Debug)]
pub struct Recording<'a> {
    fs: &'a Tracefs,
    saved: Saved,
    restored: bool,
}

/// What [`Recording::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// The trace file (`trace.txt.gz` in the folder given).
    pub trace_path: PathBuf,
    /// Bytes of trace text saved (before compression).
    pub trace_bytes: u64,
    /// Events the ring buffer overwrote or dropped (the `overrun:` and
    /// `dropped events:` of every CPU): a trace that lost events does not
    /// replay as the kernel ran.
    pub overrun: u64,
}

impl Tracefs {
    /// The tracefs mount at `root` (a folder with a `trace_marker`).
    /// A folder it may not look into (tracefs is root's) is an
    /// [`RecordError::Io`] error of kind `PermissionDenied`.
    pub fn at(root: impl Into<PathBuf>) -> Result<Tracefs, RecordError> {
        let root = root.into();
        let marker = root.join("trace_marker");
        match fs::metadata(&marker) {
            Ok(_) => Ok(Tracefs { root }),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(RecordError::Io {
                path: marker,
                source: e,
            }),
            Err(_) => Err(RecordError::NoTracefs { tried: vec![root] }),
        }
    }

    /// The first of [`TRACEFS_MOUNTS`] that is a tracefs (a mount it may not
    /// look into is that error).
    pub fn locate() -> Result<Tracefs, RecordError> {
        for p in TRACEFS_MOUNTS {
            match Tracefs::at(p) {
                Err(RecordError::NoTracefs { .. }) => continue,
                found => return found,
            }
        }
        Err(RecordError::NoTracefs {
            tried: TRACEFS_MOUNTS.iter().map(PathBuf::from).collect(),
        })
    }

    /// The mount's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn read(&self, name: &str) -> Result<String, RecordError> {
        let p = self.path(name);
        fs::read_to_string(&p)
            .map(|s| s.trim().to_owned())
            .map_err(io_err(&p))
    }

    /// Writes `value` to a control file (as `echo value > file` does).
    fn write(&self, name: &str, value: &str) -> Result<(), RecordError> {
        let p = self.path(name);
        fs::write(&p, format!("{value}\n")).map_err(io_err(&p))
    }

    /// Writes one line to `trace_marker`.
    pub fn mark(&self, text: &str) -> Result<(), RecordError> {
        let p = self.path("trace_marker");
        // Appending: tracefs takes each write as one marker; a plain file
        // (a test's) keeps them all.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(io_err(&p))?;
        f.write_all(format!("{text}\n").as_bytes())
            .map_err(io_err(&p))
    }

    /// Marks phase `name`: `PHASE <name> begin`, then the `Percpu:` figure
    /// of `meminfo` (`/proc/meminfo`) as `PHASE <name> Percpu: <n> kB`.
    /// Returns the figure.
    pub fn mark_phase(&self, name: &str, meminfo: &Path) -> Result<u64, RecordError> {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RecordError::BadPhase {
                name: name.to_owned(),
            });
        }
        self.mark(&format!("PHASE {name} begin"))?;
        let kb = meminfo_percpu_kb(meminfo)?;
        self.mark(&format!("PHASE {name} Percpu: {kb} kB"))?;
        Ok(kb)
    }

    /// Starts recording the `percpu` events: saves the settings it changes,
    /// then turns tracing off, sizes and clears the ring buffer, turns raw
    /// pointers (`nohash-ptr`) and the `percpu` events on, and tracing on.
    /// Refuses (changing nothing) when a tracer or other events are on,
    /// unless [`RecordOptions::force`].
    pub fn start(&self, opts: RecordOptions) -> Result<Recording<'_>, RecordError> {
        let events = self.path("events/percpu");
        if !events.join("enable").exists() {
            return Err(RecordError::NoPercpuEvents { path: events });
        }
        if !opts.force {
            let tracer = self.read("current_tracer")?;
            if tracer != "nop" {
                return Err(RecordError::Busy {
                    what: format!("current_tracer is {tracer}"),
                });
            }
            if self.read("events/enable")? != "0" {
                return Err(RecordError::Busy {
                    what: "trace events are on".into(),
                });
            }
        }
        let options = self.read("trace_options")?;
        let hash_ptr = options.lines().find_map(|l| match l.trim() {
            "hash-ptr" => Some(true),
            "nohash-ptr" => Some(false),
            _ => None,
        });
        let saved = Saved {
            tracing_on: self.read("tracing_on")?,
            buffer_size_kb: buffer_kb_to_restore(&self.read("buffer_size_kb")?),
            hash_ptr,
            percpu_enable: self.read("events/percpu/enable")?,
        };
        let rec = Recording {
            fs: self,
            saved,
            restored: false,
        };
        // From here on a failure drops `rec`, which puts the settings back.
        self.write("tracing_on", "0")?;
        self.write("buffer_size_kb", &opts.buffer_kb.to_string())?;
        if rec.saved.hash_ptr.is_some() {
            self.write("trace_options", "nohash-ptr")?;
        }
        let trace = self.path("trace");
        fs::write(&trace, b"").map_err(io_err(&trace))?;
        self.write("events/percpu/enable", "1")?;
        self.write("tracing_on", "1")?;
        Ok(rec)
    }
}

/// The `Percpu:` figure (kB) of a meminfo file.
pub fn meminfo_percpu_kb(meminfo: &Path) -> Result<u64, RecordError> {
    let text = fs::read_to_string(meminfo).map_err(io_err(meminfo))?;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Percpu:")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| RecordError::NoPercpuLine {
            path: meminfo.to_owned(),
        })
}

/// The size to write back to `buffer_size_kb`: its number, or for a buffer
/// not yet expanded (`7 (expanded: 1408)`) the size it expands to.
fn buffer_kb_to_restore(text: &str) -> Option<String> {
    let expanded = text
        .split_once("(expanded:")
        .and_then(|(_, r)| r.trim().trim_end_matches(')').trim().parse::<u64>().ok());
    let plain = text.split_whitespace().next()?.parse::<u64>().ok();
    expanded.or(plain).map(|n| n.to_string())
}

impl Recording<'_> {
    /// Stops tracing, writes the ring buffer to `dir/trace.txt.gz` (the folder
    /// is created) and puts the settings back.
    pub fn finish(mut self, dir: &Path) -> Result<RecordSummary, RecordError> {
        let fs_ = self.fs;
        fs_.write("tracing_on", "0")?;
        let mut overrun = 0u64;
        let per_cpu = fs_.path("per_cpu");
        if let Ok(cpus) = fs::read_dir(&per_cpu) {
            for cpu in cpus.flatten() {
                let stats = cpu.path().join("stats");
                if let Ok(text) = fs::read_to_string(&stats) {
                    // Events overwritten (a full buffer in overwrite mode)
                    // and dropped (a full buffer otherwise): lost either way.
                    overrun += text
                        .lines()
                        .filter_map(|l| {
                            l.strip_prefix("overrun:")
                                .or_else(|| l.strip_prefix("dropped events:"))
                        })
                        .filter_map(|v| v.trim().parse::<u64>().ok())
                        .sum::<u64>();
                }
            }
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let trace_path = dir.join("trace.txt.gz");
        let trace_bytes = save_gzip(&fs_.path("trace"), &trace_path)?;
        // The kernel refuses to resize the ring buffer while `trace` is open
        // (EBUSY): `save_gzip` has closed it.
        self.restore()?;
        Ok(RecordSummary {
            trace_path,
            trace_bytes,
            overrun,
        })
    }

    /// Puts the saved settings back (events first, tracing last); every
    /// setting is tried, the first failure returned.
    fn restore(&mut self) -> Result<(), RecordError> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        let s = &self.saved;
        let fs_ = self.fs;
        let mut first = None;
        let mut try_ = |r: Result<(), RecordError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        try_(fs_.write("events/percpu/enable", &s.percpu_enable));
        if let Some(hashed) = s.hash_ptr {
            try_(fs_.write(
                "trace_options",
                if hashed { "hash-ptr" } else { "nohash-ptr" },
            ));
        }
        if let Some(kb) = &s.buffer_size_kb {
            try_(fs_.write("buffer_size_kb", kb));
        }
        try_(fs_.write("tracing_on", &s.tracing_on));
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        // Best effort: an unfinished recording's error is already on its way.
        let _ = self.restore();
    }
}

/// Copies `src` to `dst` gzipped; returns the bytes read. Both files are
/// closed on return.
fn save_gzip(src: &Path, dst: &Path) -> Result<u64, RecordError> {
    let input = fs::File::open(src).map_err(io_err(src))?;
    let out = fs::File::create(dst).map_err(io_err(dst))?;
    let mut gz =
        flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::default());
    let mut reader = io::BufReader::with_capacity(1 << 16, input);
    let mut bytes = 0u64;
    loop {
        let buf = reader.fill_buf().map_err(io_err(src))?;
        if buf.is_empty() {
            break;
        }
        gz.write_all(buf).map_err(io_err(dst))?;
        let n = buf.len();
        bytes += n as u64;
        reader.consume(n);
    }
    gz.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_err(dst))?;
    Ok(bytes)
}

/// `pcpu-alloc:` lines for a capture's `geometry.txt`, from the text of
/// `/sys/kernel/debug/percpu_stats` (its `unit_size`, `static_size`,
/// `reserved_size`, `dyn_size`, `atom_size`, `alloc_size`) and of
/// `/sys/devices/system/cpu/possible` (`0-3,8-11`). The units are the
/// possible CPUs in one group, padded to whole allocations (`alloc_size /
/// unit_size` units each) as the kernel pads a group; a machine with several
/// NUMA groups has more padding than that. `None` when a size is missing.
pub fn geometry_lines(percpu_stats: &str, possible: &str) -> Option<String> {
    let field = |name: &str| {
        percpu_stats.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    let (unit, s, r, d) = (
        field("unit_size")?,
        field("static_size")?,
        field("reserved_size")?,
        field("dyn_size")?,
    );
    let mut cpus = Vec::new();
    for part in possible.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let a = part.trim().parse::<u32>().ok()?;
                (a, a)
            }
        };
        if b < a || b - a > 65_535 {
            return None;
        }
        cpus.extend(a..=b);
    }
    if cpus.is_empty() || unit == 0 {
        return None;
    }
    let mut out = format!("pcpu-alloc: s{s} r{r} d{d} u{unit}");
    let mut upa = 1;
    if let (Some(atom), Some(alloc)) = (field("atom_size"), field("alloc_size")) {
        if atom > 0 && alloc % atom == 0 && alloc >= unit && alloc % unit == 0 {
            out += &format!(" alloc={}*{atom}", alloc / atom);
            upa = usize::try_from(alloc / unit).ok()?;
        }
    }
    out += "\npcpu-alloc: [0]";
    let padded = cpus.len().div_ceil(upa) * upa;
    for i in 0..padded {
        match cpus.get(i) {
            Some(c) => out += &format!(" {c}"),
            None => out += " --",
        }
    }
    out.push('\n');
    Some(out)
}
