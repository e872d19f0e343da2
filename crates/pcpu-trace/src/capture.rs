//! Capture folders: a trace plus the kernel's percpu boot lines and meminfo figures.

use std::error::Error;
use std::fmt;
use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use crate::error::ParseError;
use crate::kernel_stats::{parse_stats_snapshots, PercpuStats, StatsSnapshot};
use crate::reader::{open_trace, ParseOptions, Trace, TraceReader};

/// Geometry of the first chunk, from the kernel's percpu boot lines (`dmesg-percpu.txt`):
///
/// ```text
/// percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288
/// pcpu-alloc: s217088 r8192 d28672 u524288 alloc=1*2097152
/// pcpu-alloc: [0] 0 1 2 3
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstChunkGeometry {
    /// Pages per unit used by the first chunk (`Embedded 62 pages/cpu`; for the page
    /// first-chunk allocator, `62 4K pages/cpu`). Derived from `s + r + d` rounded up to
    /// 4 KiB pages when only the `pcpu-alloc:` line is present.
    pub embedded_pages: u32,
    /// Static percpu area size in bytes (`s`).
    pub static_size: u64,
    /// Reserved area size in bytes (`r`).
    pub reserved_size: u64,
    /// Dynamic area size in bytes (`d`).
    pub dyn_size: u64,
    /// Unit size in bytes (`u`); `embedded_pages * 4096` if no line printed it.
    pub unit_size: u64,
    /// Allocation atom size (`alloc=<n>*<atom>`), if printed.
    pub atom_size: Option<u64>,
    /// Allocation size per group, `<n>` × `<atom>` (`alloc=<n>*<atom>`), if
    /// printed.
    pub alloc_size: Option<u64>,
    /// Units per group from the `pcpu-alloc: [g] ...` lines: `Some(cpu)` for a unit mapped
    /// to a CPU, `None` for a padding unit printed as dashes. Empty if no group lines.
    pub groups: Vec<Vec<Option<u32>>>,
}

impl FirstChunkGeometry {
    /// Number of units (padding units included), if the group lines were present.
    pub fn nr_units(&self) -> Option<u32> {
        let n: usize = self.groups.iter().map(Vec::len).sum();
        (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

/// Error from reading a capture's side files.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptureError {
    /// The path does not exist, or the folder has no `trace.txt.gz` / `trace.txt`.
    NoTrace {
        /// The path given.
        path: PathBuf,
    },
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A side file has a line this crate cannot decode.
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was expected.
        message: String,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::NoTrace { path } => write!(
                f,
                "{}: no trace (expected a trace file, or a folder with trace.txt.gz or trace.txt)",
                path.display()
            ),
            CaptureError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CaptureError::Format {
                path,
                line,
                message,
            } => {
                write!(f, "{}:{line}: {message}", path.display())
            }
        }
    }
}

impl Error for CaptureError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CaptureError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One line of `meminfo-phases.txt`: `PHASE <X> uptime=<s> Percpu: <kB>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MeminfoPhase {
    /// Phase name.
    pub name: String,
    /// Guest uptime in seconds when /proc/meminfo was read, if printed.
    pub uptime: Option<f64>,
    /// The `Percpu:` figure in KiB.
    pub percpu_kb: u64,
}

/// Strips `s` into the number after a one-letter prefix (`s217088` → 217088).
fn prefixed_num(tok: &str, prefix: char) -> Option<u64> {
    tok.strip_prefix(prefix)?.parse().ok()
}

/// Parses the percpu boot lines of a kernel log. Lines that are not percpu geometry lines
/// are ignored; returns `None` when no geometry line was found. In a log of several boots,
/// the units are those listed after the last `pcpu-alloc: s.. r.. d.. u..` line.
pub fn parse_dmesg(text: &str) -> Option<FirstChunkGeometry> {
    let mut pages: Option<u32> = None;
    let (mut s, mut r, mut d, mut u, mut atom) = (None, None, None, None, None);
    let mut alloc_size = None;
    let mut groups: Vec<Vec<Option<u32>>> = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("percpu: ") {
            let rest = &line[i + "percpu: ".len()..];
            let toks: Vec<&str> = rest.split_whitespace().collect();
            let Some(pc) = toks.iter().position(|t| *t == "pages/cpu") else {
                continue;
            };
            pages = toks[..pc]
                .iter()
                .rev()
                .find_map(|t| t.parse().ok())
                .or(pages);
            for t in &toks[pc + 1..] {
                s = prefixed_num(t, 's').or(s);
                r = prefixed_num(t, 'r').or(r);
                d = prefixed_num(t, 'd').or(d);
                u = prefixed_num(t, 'u').or(u);
            }
        } else if let Some(i) = line.find("pcpu-alloc: ") {
            let rest = &line[i + "pcpu-alloc: ".len()..];
            let toks: Vec<&str> = rest.split_whitespace().collect();
            if toks.first().is_some_and(|t| prefixed_num(t, 's').is_some()) {
                // The unit lines follow this summary line: a log of several
                // boots (the file saved twice, a kern.log) must not add up
                // every boot's units.
                groups.clear();
                for t in &toks {
                    s = s.or(prefixed_num(t, 's'));
                    r = r.or(prefixed_num(t, 'r'));
                    d = d.or(prefixed_num(t, 'd'));
                    u = u.or(prefixed_num(t, 'u'));
                    if let Some(a) = t.strip_prefix("alloc=") {
                        let parsed = a.split_once('*').and_then(|(n, sz)| {
                            let (n, sz) = (n.parse::<u64>().ok()?, sz.parse::<u64>().ok()?);
                            Some((sz, n.checked_mul(sz)))
                        });
                        if let Some((sz, total)) = parsed {
                            atom = Some(sz);
                            alloc_size = total;
                        }
                    }
                }
                continue;
            }
            for t in toks {
                if t.starts_with('[') && t.ends_with(']') {
                    groups.push(Vec::new());
                    continue;
                }
                let unit = if let Ok(cpu) = t.parse::<u32>() {
                    Some(cpu)
                } else if t.bytes().all(|c| c == b'-') {
                    None
                } else {
                    continue;
                };
                if groups.is_empty() {
                    groups.push(Vec::new());
                }
                if let Some(g) = groups.last_mut() {
                    g.push(unit);
                }
            }
        }
    }
    let (s, r, d) = (s?, r?, d?);
    let embedded_pages = match pages {
        Some(p) => p,
        None => u32::try_from(s.checked_add(r)?.checked_add(d)?.div_ceil(4096)).ok()?,
    };
    Some(FirstChunkGeometry {
        embedded_pages,
        static_size: s,
        reserved_size: r,
        dyn_size: d,
        unit_size: u.unwrap_or(u64::from(embedded_pages) * 4096),
        atom_size: atom,
        alloc_size,
        groups,
    })
}

/// Parses `meminfo-phases.txt`: one `PHASE <X> uptime=<s> Percpu: <n> kB` per line (blank
/// lines ignored). Returns the 1-based number and text of the first bad line on error.
pub fn parse_meminfo_phases(text: &str) -> Result<Vec<MeminfoPhase>, (u64, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = (|| {
            let rest = line.strip_prefix("PHASE ")?;
            let (name, rest) = rest.split_once(char::is_whitespace)?;
            let mut uptime = None;
            let mut kb = None;
            let mut toks = rest.split_whitespace();
            while let Some(t) = toks.next() {
                if let Some(v) = t.strip_prefix("uptime=") {
                    uptime = Some(v.parse().ok()?);
                } else if t == "Percpu:" {
                    kb = Some(toks.next()?.parse().ok()?);
                }
            }
            Some(MeminfoPhase {
                name: name.to_owned(),
                uptime,
                percpu_kb: kb?,
            })
        })();
        match parsed {
            Some(p) => out.push(p),
            None => {
                return Err((
                    i as u64 + 1,
                    format!(
                        "expected `PHASE <X> uptime=<s> Percpu: <n> kB`, found `{}`",
                        crate::error::snippet(line.as_bytes())
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// A capture folder (see the crate docs): the trace plus optional side files.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The folder (for a plain trace path, the folder holding the file).
    pub dir: PathBuf,
    /// The trace file (`trace.txt.gz`, `trace.txt`, or the file given).
    pub trace_path: PathBuf,
    /// `dmesg-percpu.txt` if present, else `geometry.txt` (the same `pcpu-alloc:` lines,
    /// derived by `pcpu record` from `percpu_stats`) if present.
    pub dmesg_path: Option<PathBuf>,
    /// First-chunk geometry from that file; `None` if there is none or it has no
    /// geometry line.
    pub geometry: Option<FirstChunkGeometry>,
    /// `meminfo-phases.txt`, if present.
    pub meminfo_path: Option<PathBuf>,
    /// Meminfo figures per phase, in file order (empty if the file is missing).
    pub phases: Vec<MeminfoPhase>,
    /// The kernel's `percpu_stats` at phase markers (`percpu-stats.txt`,
    /// written by `pcpu record` and `pcpu mark`), in file order; empty if
    /// the file is missing.
    pub kernel_stats: Vec<StatsSnapshot>,
}

/// The most bytes read of a side file (`dmesg-percpu.txt`,
/// `meminfo-phases.txt`): a few kilobytes in a capture, so anything near
/// this is not one (a device such as `/dev/zero` would never end).
const MAX_SIDE_FILE: u64 = 16 << 20;

fn read_side(path: &Path) -> Result<Option<String>, CaptureError> {
    let io_error = |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut b = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_SIDE_FILE + 1), &mut b)
        .map_err(io_error)?;
    if b.len() as u64 > MAX_SIDE_FILE {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_SIDE_FILE} bytes: not a capture's side file"),
        )));
    }
    Ok(Some(String::from_utf8_lossy(&b).into_owned()))
}

/// A side file read by [`read_side`] and decoded by `parse` (its errors:
/// a 1-based line and a message); `None` when the file is missing.
fn read_parsed<T>(
    path: &Path,
    parse: fn(&str) -> Result<T, (u64, String)>,
) -> Result<Option<T>, CaptureError> {
    read_side(path)?
        .map(|t| {
            parse(&t).map_err(|(line, message)| CaptureError::Format {
                path: path.to_owned(),
                line,
                message,
            })
        })
        .transpose()
}

impl Capture {
    /// Opens a capture folder, or a plain trace file (then `dmesg-percpu.txt` and
    /// `meminfo-phases.txt` are looked for beside it). Reads the small side files now; the
    /// trace itself is read by [`Capture::reader`] or [`Capture::parse`].
    pub fn open(path: impl AsRef<Path>) -> Result<Capture, CaptureError> {
        Capture::open_inner(path.as_ref(), true).map(|(cap, _)| cap)
    }

    /// [`Capture::open`], but a `meminfo-phases.txt` or `percpu-stats.txt`
    /// that cannot be read or decoded is left out (no phases, no snapshots)
    /// and the first such error returned beside the capture, for tools that
    /// do not need the kernel's own figures.
    pub fn open_without_bad_meminfo(
        path: impl AsRef<Path>,
    ) -> Result<(Capture, Option<CaptureError>), CaptureError> {
        Capture::open_inner(path.as_ref(), false)
    }

    /// Open; with `strict`, a bad meminfo or percpu_stats file is the
    /// error, else it comes back beside the capture.
    fn open_inner(
        path: &Path,
        strict: bool,
    ) -> Result<(Capture, Option<CaptureError>), CaptureError> {
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => CaptureError::NoTrace {
                path: path.to_owned(),
            },
            _ => CaptureError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let (dir, trace_path) = if meta.is_dir() {
            let trace = ["trace.txt.gz", "trace.txt"]
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.is_file())
                .ok_or_else(|| CaptureError::NoTrace {
                    path: path.to_owned(),
                })?;
            (path.to_owned(), trace)
        } else {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            (dir, path.to_owned())
        };
        // The boot log's lines, or the same lines derived by `pcpu record`
        // (`record::geometry_lines`) when the boot log no longer held them.
        let mut dmesg = dir.join("dmesg-percpu.txt");
        let mut dmesg_text = read_side(&dmesg)?;
        if dmesg_text.is_none() {
            dmesg = dir.join("geometry.txt");
            dmesg_text = read_side(&dmesg)?;
        }
        let meminfo = dir.join("meminfo-phases.txt");
        let parsed = read_parsed(&meminfo, parse_meminfo_phases);
        let (phases, meminfo_error) = match parsed {
            Ok(p) => (p, None),
            Err(e) if strict => return Err(e),
            Err(e) => (None, Some(e)),
        };
        let stats_path = dir.join("percpu-stats.txt");
        let stats = read_parsed(&stats_path, parse_stats_snapshots);
        let (kernel_stats, meminfo_error) = match stats {
            Ok(s) => (s.unwrap_or_default(), meminfo_error),
            Err(e) if strict => return Err(e),
            Err(e) => (Vec::new(), meminfo_error.or(Some(e))),
        };
        let cap = Capture {
            geometry: dmesg_text.as_deref().and_then(parse_dmesg),
            dmesg_path: dmesg_text.map(|_| dmesg),
            meminfo_path: phases.as_ref().map(|_| meminfo),
            phases: phases.unwrap_or_default(),
            kernel_stats,
            dir,
            trace_path,
        };
        Ok((cap, meminfo_error))
    }

    /// The folder's name (e.g. `memcg-1000x10-smp4`).
    pub fn name(&self) -> String {
        fs::canonicalize(&self.dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// A streaming reader over the trace (strict mode; see [`TraceReader::with_options`]).
    pub fn reader(&self) -> io::Result<TraceReader<Box<dyn BufRead + Send>>> {
        open_trace(&self.trace_path)
    }

    /// Parses the whole trace.
    pub fn parse(&self, options: ParseOptions) -> Result<Trace, ParseError> {
        crate::reader::parse_file(&self.trace_path, options)
    }

    /// The kernel's `percpu_stats` at phase `name`, if recorded.
    pub fn kernel_stats(&self, name: &str) -> Option<&PercpuStats> {
        crate::kernel_stats::snapshot_at(&self.kernel_stats, name)
    }

    /// The meminfo figure of phase `name`, if recorded.
    pub fn phase(&self, name: &str) -> Option<&MeminfoPhase> {
        self.phases.iter().find(|p| p.name == name)
    }
}
