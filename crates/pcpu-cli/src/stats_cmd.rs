//! `pcpu stats`: the allocator's `percpu_stats`, or its page map, at a phase
//! marker.

use clap::Args;
use pcpu_core::{chunk_stats, Allocator, ChunkKind, ChunkList, Policy};
use pcpu_trace::{ChunkStats, Event, PercpuStats, StatsChunkKind};
use serde_json::json;

use crate::error::{emit, CliError, CliResult};
use crate::input::{self, CommonArgs, Progress, RunArgs};
use crate::replay_cmd::{replay_until, Skipped};
use crate::table::{Align, Table};

/// Arguments of `pcpu stats`.
#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Replay up to (and including) the `PHASE <PHASE> Percpu` marker (the
    /// first, if the trace repeats the name).
    #[arg(long, value_name = "PHASE")]
    pub(crate) at: String,

    /// Policy and placement.
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// Print the figures as JSON instead of the kernel's text layout
    /// (fields in docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,

    /// Print the page map instead: every chunk's pages, one character per
    /// page (`#` holds allocations or the first chunk's hidden static or
    /// reserved bytes, `.` populated but empty, `-` unpopulated, `!`
    /// allocated but not yet populated), so that
    /// where the live objects of a mostly empty chunk sit can be seen. The JSON has it too (`page_map` of each chunk).
    #[arg(long, conflicts_with = "json")]
    pub(crate) map: bool,

    /// The capture and the options every replay takes.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Runs `pcpu stats`.
pub(crate) fn run(args: StatsArgs) -> CliResult {
    let progress = Progress::new();
    let loaded = input::load(&args.common, &progress)?;
    loaded.check_runs(&[args.run.policy], args.run.placement.into())?;
    loaded.warn_repeated_phase(&args.at);
    let is_target = |e: &Event| matches!(e, Event::PhasePercpu { name, .. } if *name == args.at);
    let Some(end) = loaded.records.iter().position(|r| is_target(&r.event)) else {
        progress.finish();
        let mut names: Vec<String> = Vec::new();
        for (n, _) in loaded.phase_marks() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        return Err(CliError::usage(if names.is_empty() {
            format!(
                "no phase `{}`: {} has no `PHASE <X> Percpu` markers",
                args.at, loaded.name
            )
        } else {
            format!(
                "no phase `{}` in {}; its phases are: {}",
                args.at,
                loaded.name,
                names.join(", ")
            )
        }));
    };

    progress.stage("replaying", Some(end as u64 + 1), false);
    let cfg = loaded.config(args.run.policy, args.run.placement.into());
    let stop_line = loaded.records[end].line;
    let result = replay_until(&loaded, cfg, &progress, &|r| r.line == stop_line);
    progress.finish();
    let rp = result?;
    Skipped::of(&rp).warn(&args.run.policy.to_string());
    // The kernel's own figures at that marker, if the capture has them
    // (a recording's percpu-stats.txt).
    let kernel = pcpu_trace::snapshot_at(&loaded.kernel_stats, &args.at);
    if args.json {
        let mut v = stats_json(rp.allocator(), &loaded.name, &args.at, &args.run.policy);
        v["kernel"] = kernel.map_or(serde_json::Value::Null, kernel_json);
        let json = serde_json::to_string_pretty(&v)
            .map_err(|e| CliError::replay(format!("cannot encode the figures as JSON: {e}")))?;
        emit(&(json + "\n"))
    } else if args.map {
        emit(&rp.allocator().page_map())
    } else {
        let mut out = rp.allocator().percpu_stats();
        if let Some(k) = kernel {
            out += &beside_kernel(&out, k, &args.at);
        }
        emit(&out)
    }
}

/// Our `percpu_stats` (its text, `ours`) and the kernel's at marker
/// `phase`, chunk by chunk in the order both list them (by slot; the
/// kernel prints no addresses), then the global figures.
fn beside_kernel(ours: &str, kernel: &PercpuStats, phase: &str) -> String {
    // Our own text parses as the kernel's does.
    let Ok(ours) = pcpu_trace::parse_percpu_stats(ours) else {
        return String::new();
    };
    let mut t = Table::new(&[
        ("chunk", Align::Left),
        ("nr_alloc", Align::Right),
        ("free_bytes", Align::Right),
        ("contig_bytes", Align::Right),
        ("empty_pop_pages", Align::Right),
        ("nr_alloc", Align::Right),
        ("free_bytes", Align::Right),
        ("contig_bytes", Align::Right),
        ("empty_pop_pages", Align::Right),
    ]);
    t.group("", 1).group("ours", 4).group("kernel", 4);
    let kind = |c: &ChunkStats| kind_name(c.kind);
    let cells = |c: Option<&ChunkStats>| -> [String; 4] {
        c.map_or_else(
            || std::array::from_fn(|_| String::new()),
            |c| {
                [
                    c.nr_alloc.to_string(),
                    c.free_bytes.to_string(),
                    c.contig_bytes.to_string(),
                    c.empty_pop_pages.to_string(),
                ]
            },
        )
    };
    for i in 0..ours.chunks.len().max(kernel.chunks.len()) {
        let (o, k) = (ours.chunks.get(i), kernel.chunks.get(i));
        let name = match (o, k) {
            (Some(o), Some(k)) if o.kind != k.kind => format!("{} / {}", kind(o), kind(k)),
            (Some(c), _) | (None, Some(c)) => kind(c).to_string(),
            (None, None) => String::new(),
        };
        t.row(std::iter::once(name).chain(cells(o)).chain(cells(k)));
    }
    format!(
        "\nThe kernel's percpu_stats at {phase} (percpu-stats.txt) beside ours, chunks in the \
         order both list them:\n{}\nnr_chunks {} (kernel {}), nr_cur_alloc {} (kernel {}; \
         ours counts traced and inferred objects), empty_pop_pages {} (kernel {})\n",
        t.render(),
        ours.nr_chunks,
        kernel.nr_chunks,
        ours.nr_cur_alloc,
        kernel.nr_cur_alloc,
        ours.empty_pop_pages,
        kernel.empty_pop_pages
    )
}

/// A chunk kind as `stats --json` names it.
fn kind_name(kind: StatsChunkKind) -> &'static str {
    match kind {
        StatsChunkKind::First => "first",
        StatsChunkKind::Reserved => "reserved",
        StatsChunkKind::Dynamic => "dynamic",
    }
}

/// The kernel's `percpu_stats` at the marker as JSON.
fn kernel_json(k: &PercpuStats) -> serde_json::Value {
    let chunks: Vec<serde_json::Value> = k
        .chunks
        .iter()
        .map(|c| {
            json!({
                "kind": kind_name(c.kind),
                "nr_alloc": c.nr_alloc,
                "empty_pop_pages": c.empty_pop_pages,
                "first_bit": c.first_bit,
                "free_bytes": c.free_bytes,
                "contig_bytes": c.contig_bytes,
            })
        })
        .collect();
    json!({
        "nr_chunks": k.nr_chunks,
        "nr_cur_alloc": k.nr_cur_alloc,
        "empty_pop_pages": k.empty_pop_pages,
        "chunks": chunks,
    })
}

/// `percpu_stats` as JSON: the global counters and one entry per chunk.
fn stats_json(a: &Allocator, trace: &str, phase: &str, policy: &Policy) -> serde_json::Value {
    let g = a.stats();
    let geo = a.geometry();
    let fc = geo.first_chunk();
    let chunks: Vec<serde_json::Value> = a
        .chunk_ids()
        .filter_map(|id| {
            let c = a.chunk(id)?;
            let s = chunk_stats(c);
            Some(json!({
                "id": id.0,
                "kind": match c.kind() {
                    ChunkKind::First => "first",
                    ChunkKind::Reserved => "reserved",
                    ChunkKind::Dynamic => "dynamic",
                },
                "isolated": c.is_isolated(),
                "list": match a.chunk_list(id) {
                    Some(ChunkList::Reserved) | None => "reserved".to_string(),
                    Some(ChunkList::Slot(n)) => format!("slot {n}"),
                    Some(ChunkList::Sidelined) => "sidelined".to_string(),
                    Some(ChunkList::ToDepopulate) => "to_depopulate".to_string(),
                    Some(ChunkList::Detached) => "detached".to_string(),
                },
                "nr_pages": c.nr_pages(),
                "nr_populated": c.nr_populated(),
                "nr_alloc": s.nr_alloc,
                "max_alloc_size": s.max_alloc_size,
                "empty_pop_pages": s.empty_pop_pages,
                "first_bit": s.first_bit,
                "free_bytes": s.free_bytes,
                "contig_bytes": s.contig_bytes,
                "sum_frag": s.sum_frag,
                "max_frag": s.max_frag,
                "cur_min_alloc": s.cur_min_alloc,
                "cur_med_alloc": s.cur_med_alloc,
                "cur_max_alloc": s.cur_max_alloc,
                "page_map": c.page_symbols(),
            }))
        })
        .collect();
    json!({
        "trace": trace,
        "phase": phase,
        "policy": policy.to_string(),
        "allocation_info": {
            "unit_size": geo.unit_size(),
            "static_size": fc.static_size,
            "reserved_size": fc.reserved_size,
            "dyn_size": fc.dyn_size,
            "atom_size": geo.atom_size(),
            "alloc_size": geo.alloc_size(),
        },
        "percpu_kb": a.percpu_bytes() / 1024,
        "nr_populated": a.nr_populated(),
        "nr_empty_pop_pages": a.nr_empty_pop_pages(),
        "nr_alloc": g.nr_alloc,
        "nr_dealloc": g.nr_dealloc,
        "nr_cur_alloc": g.nr_cur_alloc,
        "nr_max_alloc": g.nr_max_alloc,
        "nr_chunks": g.nr_chunks,
        "nr_max_chunks": g.nr_max_chunks,
        "min_alloc_size": g.min_alloc_size,
        "max_alloc_size": g.max_alloc_size,
        "nr_failed": g.nr_failed,
        "chunks": chunks,
    })
}
