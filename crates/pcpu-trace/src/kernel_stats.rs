//! The kernel's own `/sys/kernel/debug/percpu_stats` (mm/percpu-stats.c),
//! read at the phase markers of a recording: `percpu-stats.txt` in a capture
//! folder, written by `pcpu record` (at START and END) and `pcpu mark`.
//!
//! The file is the text of each snapshot after a line `PHASE <name>`:
//!
//! ```text
//! PHASE START
//! Percpu Memory Statistics
//! ...
//! Global Stats:
//! ----------------------------------------
//!   nr_cur_alloc        :         1190
//!   nr_chunks           :            3
//!   empty_pop_pages     :          220
//! ...
//! Chunk: <- First Chunk
//!   nr_alloc            :          528
//!   empty_pop_pages     :            0
//!   free_bytes          :           20
//! ...
//! ```
//!
//! What a replay takes from it: which chunks the kernel had before tracing
//! and how many empty pages each kept populated (the trace shows neither),
//! and at every marker the kernel's chunks and empty pages beside its own.

/// Which chunk a `percpu_stats` block describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsChunkKind {
    /// `Chunk: <- First Chunk`.
    First,
    /// `Chunk: <- Reserved Chunk`.
    Reserved,
    /// Any other chunk (dynamic, on any list).
    Dynamic,
}

/// One chunk's block of `percpu_stats` (the fields a replay compares;
/// a field the kernel did not print is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkStats {
    /// Which chunk.
    pub kind: StatsChunkKind,
    /// Live allocations in it.
    pub nr_alloc: u64,
    /// Pages populated but holding nothing (per unit).
    pub empty_pop_pages: u64,
    /// The first free bit (`first_bit`, in 4-byte units).
    pub first_bit: u64,
    /// Free bytes (per unit).
    pub free_bytes: u64,
    /// The largest free run (`contig_bytes`).
    pub contig_bytes: u64,
}

/// One `percpu_stats` text: the global counters a replay compares and the
/// chunks in the kernel's list order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PercpuStats {
    /// `nr_chunks` (the reserved chunk not counted, as the kernel counts).
    pub nr_chunks: u64,
    /// `nr_cur_alloc`: live allocations.
    pub nr_cur_alloc: u64,
    /// `empty_pop_pages`: empty populated pages over all chunks (per unit).
    pub empty_pop_pages: u64,
    /// The per-chunk blocks.
    pub chunks: Vec<ChunkStats>,
}

impl PercpuStats {
    /// The dynamic chunks (neither the first nor the reserved one).
    pub fn dynamic_chunks(&self) -> impl Iterator<Item = &ChunkStats> {
        self.chunks
            .iter()
            .filter(|c| c.kind == StatsChunkKind::Dynamic)
    }
}

/// A snapshot of `percpu_stats` at phase marker `phase`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The marker's phase name.
    pub phase: String,
    /// What the kernel printed.
    pub stats: PercpuStats,
}

/// The figures of the first snapshot in `snapshots` taken at phase `name`.
pub fn snapshot_at<'a>(snapshots: &'a [StatsSnapshot], name: &str) -> Option<&'a PercpuStats> {
    snapshots.iter().find(|s| s.phase == name).map(|s| &s.stats)
}

/// Parses the text of `/sys/kernel/debug/percpu_stats`.
///
/// # Errors
/// A message when a required global counter (`nr_chunks`, `nr_cur_alloc`,
/// `empty_pop_pages`) is missing or a number does not parse.
pub fn parse_percpu_stats(text: &str) -> Result<PercpuStats, String> {
    let mut global: [Option<u64>; 3] = [None; 3];
    let mut chunks: Vec<ChunkStats> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Chunk") {
            let kind = if t.contains("First Chunk") {
                StatsChunkKind::First
            } else if t.contains("Reserved Chunk") {
                StatsChunkKind::Reserved
            } else {
                StatsChunkKind::Dynamic
            };
            chunks.push(ChunkStats {
                kind,
                nr_alloc: 0,
                empty_pop_pages: 0,
                first_bit: 0,
                free_bytes: 0,
                contig_bytes: 0,
            });
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let number = || {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("`{key}`: `{}` is not a count", value.trim()))
        };
        match chunks.last_mut() {
            None => {
                let i = match key {
                    "nr_chunks" => 0,
                    "nr_cur_alloc" => 1,
                    "empty_pop_pages" => 2,
                    _ => continue,
                };
                global[i] = Some(number()?);
            }
            Some(c) => {
                let field = match key {
                    "nr_alloc" => &mut c.nr_alloc,
                    "empty_pop_pages" => &mut c.empty_pop_pages,
                    "first_bit" => &mut c.first_bit,
                    "free_bytes" => &mut c.free_bytes,
                    "contig_bytes" => &mut c.contig_bytes,
                    _ => continue,
                };
                *field = number()?;
            }
        }
    }
    let missing = |i: usize, name: &str| global[i].ok_or_else(|| format!("no `{name}` line"));
    Ok(PercpuStats {
        nr_chunks: missing(0, "nr_chunks")?,
        nr_cur_alloc: missing(1, "nr_cur_alloc")?,
        empty_pop_pages: missing(2, "empty_pop_pages")?,
        chunks,
    })
}

/// The text of one snapshot as `percpu-stats.txt` holds it.
pub fn format_snapshot(phase: &str, percpu_stats: &str) -> String {
    let mut s = format!("PHASE {phase}\n{percpu_stats}");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Parses `percpu-stats.txt`: snapshots in file order.
///
/// # Errors
/// The 1-based line and a message: text before the first `PHASE` line, a
/// `PHASE` line without a name, or a snapshot that does not parse (the line
/// of its `PHASE`).
pub fn parse_stats_snapshots(text: &str) -> Result<Vec<StatsSnapshot>, (u64, String)> {
    let mut out = Vec::new();
    let mut open: Option<(u64, String, String)> = None;
    let mut close = |open: Option<(u64, String, String)>| -> Result<(), (u64, String)> {
        if let Some((line, phase, body)) = open {
            let stats = parse_percpu_stats(&body)
                .map_err(|m| (line, format!("the snapshot at phase {phase}: {m}")))?;
            out.push(StatsSnapshot { phase, stats });
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if let Some(rest) = line.strip_prefix("PHASE") {
            let name = rest.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err((n, "expected `PHASE <name>`".into()));
            }
            close(open.take())?;
            open = Some((n, name.to_owned(), String::new()));
        } else if let Some((_, _, body)) = &mut open {
            body.push_str(line);
            body.push('\n');
        } else if !line.trim().is_empty() {
            return Err((
                n,
                format!(
                    "expected `PHASE <name>` before the snapshot, found `{}`",
                    crate::error::snippet(line.as_bytes())
                ),
            ));
        }
    }
    close(open)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a 6.18 kernel printed (2 CPUs, one fully free chunk).
    const LIVE: &str = "Percpu Memory Statistics
Allocation Info:
----------------------------------------
  unit_size           :      1048576
  static_size         :       185496
  reserved_size       :            0
  dyn_size            :        31592
  atom_size           :      2097152
  alloc_size          :      2097152

Global Stats:
----------------------------------------
  nr_alloc            :       254963
  nr_dealloc          :       253771
  nr_cur_alloc        :         1192
  nr_max_alloc        :        23235
  nr_chunks           :            3
  nr_max_chunks       :            6
  min_alloc_size      :            4
  max_alloc_size      :         4096
  empty_pop_pages     :          220

Per Chunk Stats:
----------------------------------------
Chunk: <- First Chunk
  nr_alloc            :          528
  max_alloc_size      :         4096
  empty_pop_pages     :            0
  first_bit           :         3012
  free_bytes          :           20
  contig_bytes        :            4
  sum_frag            :           20

Chunk:
  nr_alloc            :          664
  empty_pop_pages     :            2
  first_bit           :        15212
  free_bytes          :       931244
  contig_bytes        :       922992

Chunk (to_depopulate)
  nr_alloc            :            0
  empty_pop_pages     :          218
  first_bit           :            0
  free_bytes          :      1048576
  contig_bytes        :      1048576
";

    #[test]
    fn the_kernels_text_parses() {
        let s = parse_percpu_stats(LIVE).unwrap();
        assert_eq!(
            (s.nr_chunks, s.nr_cur_alloc, s.empty_pop_pages),
            (3, 1192, 220)
        );
        assert_eq!(s.chunks.len(), 3);
        assert_eq!(s.chunks[0].kind, StatsChunkKind::First);
        assert_eq!((s.chunks[0].nr_alloc, s.chunks[0].free_bytes), (528, 20));
        let d: Vec<_> = s.dynamic_chunks().collect();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].nr_alloc, d[0].empty_pop_pages, d[0].first_bit),
            (664, 2, 15212)
        );
        assert_eq!(
            (d[1].empty_pop_pages, d[1].free_bytes, d[1].contig_bytes),
            (218, 1048576, 1048576)
        );
    }

    #[test]
    fn the_reserved_chunk_is_not_dynamic() {
        let ours = LIVE.replace("Chunk (to_depopulate)", "Chunk: <- Reserved Chunk");
        let s = parse_percpu_stats(&ours).unwrap();
        assert_eq!(s.chunks[2].kind, StatsChunkKind::Reserved);
        assert_eq!(s.dynamic_chunks().count(), 1);
    }

    #[test]
    fn snapshots_split_at_phase_lines() {
        let text = format_snapshot("START", LIVE) + &format_snapshot("R1c", LIVE);
        let snaps = parse_stats_snapshots(&text).unwrap();
        assert_eq!(snaps.len(), 2);
        assert_eq!(
            (snaps[0].phase.as_str(), snaps[1].phase.as_str()),
            ("START", "R1c")
        );
        assert_eq!(snaps[1].stats.chunks.len(), 3);
        assert_eq!(parse_stats_snapshots("").unwrap(), vec![]);
    }

    #[test]
    fn bad_files_say_where() {
        let (line, msg) = parse_stats_snapshots("nr_chunks : 3\n").unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("before the snapshot"), "{msg}");
        let (line, msg) = parse_stats_snapshots("PHASE\n").unwrap_err();
        assert_eq!((line, msg.as_str()), (1, "expected `PHASE <name>`"));
        let text = format_snapshot("A", LIVE) + "PHASE B\n  nr_chunks : x\n";
        let (line, msg) = parse_stats_snapshots(&text).unwrap_err();
        assert_eq!(line, LIVE.lines().count() as u64 + 2);
        assert!(
            msg.contains("phase B") && msg.contains("`x` is not a count"),
            "{msg}"
        );
        let (_, msg) = parse_stats_snapshots("PHASE C\n  nr_chunks : 1\n").unwrap_err();
        assert!(msg.contains("no `nr_cur_alloc` line"), "{msg}");
    }
}
