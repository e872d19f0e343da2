//! "Who pins my memory": which call sites and tasks keep percpu pages
//! resident at a point of a trace.
//!
//! A page is resident when it is populated; it must stay resident while it
//! holds a live byte. For every call site (and every task) this module
//! counts, at a phase marker:
//!
//! * **objects** and **live bytes** (per unit);
//! * **pages touched**: pages holding at least one of its objects;
//! * **pages pinned**: pages on which its objects are the *only* live
//!   objects — freeing them would empty those pages, so a depopulating
//!   policy could give them back;
//! * **share**: every page holding live objects split among the owners on it
//!   in proportion to their live bytes there; the shares add up to the pages
//!   holding live objects (the placement *floor*).
//!
//! Pages resident but holding nothing are reported separately (they are the
//! depopulation policy's business, not any caller's), and so are the static
//! percpu area and the first chunk's bytes allocated before tracing started.

use std::collections::HashMap;
use std::fmt::Write as _;

use pcpu_core::{tally_pins, ChunkId, ChunkKind, Pins};
use pcpu_replay::{ClassMode, ReplayConfig, Replayer};
use pcpu_trace::Event;
use serde::Serialize;

use crate::run::{config, Input, LabError, RunOptions, Variant};

/// Owner name of the first chunk's bytes in use before tracing started.
pub const BEFORE_TRACING: &str = "(allocated before tracing)";
/// Owner name for allocations whose trace line has no call site.
pub const NO_CALL_SITE: &str = "(no call site)";

/// One owner (call site or task).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PinRow {
    /// Call site function, or `task-pid`.
    pub owner: String,
    /// Live objects.
    pub objects: u64,
    /// Live bytes per unit.
    pub bytes: u64,
    /// Pages (per unit) holding at least one of its objects.
    pub pages_touched: u64,
    /// Pages on which its objects are the only live objects.
    pub pages_pinned: u64,
    /// Its byte-proportional share of the pages it touches.
    pub share_pages: f64,
}

/// How [`render`] and [`PinsReport::sort`] order the owners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PinOrder {
    /// Pages on which the owner's objects are alone (what freeing them
    /// would give back), then share.
    #[default]
    Pinned,
    /// Byte-proportional share of the pages the owner touches (how much of
    /// the floor it accounts for), then pinned.
    Share,
}

impl PinOrder {
    /// The order's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            PinOrder::Pinned => "pinned pages",
            PinOrder::Share => "share of the pages",
        }
    }
}

/// The pin report at one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PinsReport {
    /// Trace name.
    pub trace: String,
    /// Phase marker.
    pub phase: String,
    /// Policy replayed.
    pub policy: String,
    /// Placement classes (`none` for first fit).
    pub classes: String,
    /// Units.
    pub units: u64,
    /// Page size.
    pub page_size: u64,
    /// Populated pages per unit (Percpu = this × units × page size).
    pub resident_pages: u64,
    /// Of those, the static and reserved areas (not part of any chunk the
    /// allocator manages).
    pub static_pages: u64,
    /// Populated chunk pages holding at least one live object, or bytes the
    /// first chunk held before tracing started. The replay's `floor_kb`
    /// counts traced objects only, so this can be above it by the pages
    /// only pre-tracing bytes hold (2 per unit on the real captures with
    /// lifetime classes, none under first fit).
    pub used_pages: u64,
    /// Populated chunk pages holding nothing.
    pub empty_pages: u64,
    /// Populated pages of isolated (sidelined or queued) chunks.
    pub isolated_pages: u64,
    /// Live chunks, the first chunk and the reserved chunk (when the
    /// geometry has one) included.
    pub chunks: u64,
    /// Live objects (those allocated before tracing not included).
    pub live_objects: u64,
    /// Live bytes per unit.
    pub live_bytes: u64,
    /// Per call site, most pinned first.
    pub by_call_site: Vec<PinRow>,
    /// Per task, most pinned first.
    pub by_task: Vec<PinRow>,
}

impl PinsReport {
    /// `pages` per unit as kB over all units (like `/proc/meminfo`).
    pub fn kb(&self, pages: f64) -> f64 {
        pages * (self.units * self.page_size) as f64 / 1024.0
    }
}

/// The pin report of the replay's current state.
pub fn report(rp: &Replayer, input: &Input, phase: &str) -> PinsReport {
    let a = rp.allocator();
    let page = a.geometry().page_size() as u64;
    let units = a.geometry().nr_units() as u64;
    // Owners interned by name; per object: (site, task, chunk, offset, size).
    let mut names: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut index: [HashMap<String, usize>; 2] = [HashMap::new(), HashMap::new()];
    let mut intern = |k: usize, s: &str| -> usize {
        if let Some(&i) = index[k].get(s) {
            return i;
        }
        names[k].push(s.to_string());
        index[k].insert(s.to_string(), names[k].len() - 1);
        names[k].len() - 1
    };
    let mut objs: Vec<(usize, usize, ChunkId, usize, usize)> = Vec::new();
    let mut live_objects = 0;
    let mut live_bytes = 0;
    for o in rp.live_objects() {
        live_objects += 1;
        live_bytes += u64::from(o.size);
        let Some(x) = o.ours else { continue };
        let site = intern(0, o.call_site.as_deref().unwrap_or(NO_CALL_SITE));
        let task = intern(1, &format!("{}-{}", o.task, o.pid));
        objs.push((site, task, x.chunk, x.offset, x.size));
    }
    for (chunk, off, len) in rp.pre_trace_areas() {
        let site = intern(0, BEFORE_TRACING);
        let task = intern(1, BEFORE_TRACING);
        objs.push((site, task, chunk, off, len));
    }
    let page_size = page as usize;
    let by_site = tally_pins(page_size, objs.iter().map(|o| (o.0, o.2, o.3, o.4)));
    let by_task = tally_pins(page_size, objs.iter().map(|o| (o.1, o.2, o.3, o.4)));
    // The prefill pseudo-objects are not traced objects.
    let rows = |k: usize, pins: &Pins| -> Vec<PinRow> {
        let mut rows: Vec<PinRow> = pins
            .owners
            .iter()
            .enumerate()
            .map(|(i, t)| PinRow {
                owner: names[k][i].clone(),
                objects: if names[k][i] == BEFORE_TRACING {
                    0
                } else {
                    t.objects
                },
                bytes: t.bytes,
                pages_touched: t.pages_touched,
                pages_pinned: t.pages_pinned,
                share_pages: t.share_pages,
            })
            .collect();
        sort_rows(&mut rows, PinOrder::Pinned);
        rows
    };
    let by_call_site = rows(0, &by_site);
    let with_objects = by_site.pages;
    let by_task = rows(1, &by_task);
    let mut chunk_pages = 0u64;
    let mut empty = 0u64;
    let mut isolated = 0u64;
    let mut used = 0u64;
    for id in a.chunk_ids() {
        let c = a.chunk(id).expect("live chunk");
        if c.kind() == ChunkKind::Reserved {
            continue;
        }
        for p in 0..c.nr_pages() {
            if !c.is_page_populated(p) {
                continue;
            }
            chunk_pages += 1;
            if c.is_isolated() {
                isolated += 1;
            }
            if with_objects.binary_search(&(id, p)).is_ok() {
                used += 1;
            } else if !c.is_page_used(p) || c.kind() != ChunkKind::First {
                empty += 1;
            } else {
                // First chunk bytes hidden by its start/end offsets.
                used += 1;
            }
        }
    }
    let resident = a.nr_populated() as u64;
    let p = a.policy();
    PinsReport {
        trace: input.name.clone(),
        phase: phase.to_string(),
        policy: p.to_string(),
        classes: String::new(),
        units,
        page_size: page,
        resident_pages: resident,
        static_pages: resident.saturating_sub(chunk_pages),
        used_pages: used,
        empty_pages: empty,
        isolated_pages: isolated,
        chunks: a.nr_chunks() as u64,
        live_objects,
        live_bytes,
        by_call_site,
        by_task,
    }
}

/// Replays `input` (all of its records, with `cfg`) up to the
/// `PHASE <phase> Percpu` marker, and reports who pins the resident pages
/// there. [`pins_for`] builds the configuration from a [`Variant`].
pub fn pins_at(input: &Input, phase: &str, cfg: ReplayConfig) -> Result<PinsReport, LabError> {
    let classes = if cfg.policy.class_placement {
        cfg.classes
    } else {
        ClassMode::None
    };
    let rp = replay_to_phase(input, phase, cfg)?;
    let mut rep = report(&rp, input, phase);
    rep.classes = crate::sweep::placement_label(classes).to_string();
    Ok(rep)
}

/// Replays `input` with `cfg` up to and including the `PHASE <phase>
/// Percpu` marker; an error naming the trace's phases if it has no such
/// marker.
fn replay_to_phase(input: &Input, phase: &str, cfg: ReplayConfig) -> Result<Replayer, LabError> {
    let is_target = |e: &Event| matches!(e, Event::PhasePercpu { name, .. } if name == phase);
    if !input.records.iter().any(|r| is_target(&r.event)) {
        let phases = input.phases();
        return Err(LabError::Input(if phases.is_empty() {
            format!(
                "no phase `{phase}`: {} has no `PHASE <X> Percpu` markers",
                input.name
            )
        } else {
            format!(
                "no phase `{phase}` in {}; its phases are: {}",
                input.name,
                phases.join(", ")
            )
        }));
    }
    let err = |error| LabError::Replay {
        trace: input.name.clone(),
        error,
    };
    let mut rp = Replayer::new(
        input.setup.clone(),
        cfg,
        input.has_balance,
        input.has_kprobes,
    )
    .map_err(err)?;
    rp.run(&input.records, &mut |_| {}, &|r| is_target(&r.event))
        .map_err(err)?;
    Ok(rp)
}

/// [`pins_at`] for a [`Variant`] (its policy, classes and schedule).
pub fn pins_for(input: &Input, phase: &str, v: &Variant) -> Result<PinsReport, LabError> {
    let (input, cfg) = variant_input(input, v);
    pins_at(&input, phase, cfg)
}

/// The records `v`'s schedule replays and its replay configuration.
fn variant_input(input: &Input, v: &Variant) -> (Input, ReplayConfig) {
    let (records, timing) = v.schedule.apply(input);
    let mut cfg = config(
        v,
        timing,
        &RunOptions {
            sample_every: 0,
            ..RunOptions::default()
        },
    );
    cfg.page_log = false;
    let input = Input::new(
        input.name.clone(),
        records.into_owned(),
        input.setup.clone(),
    );
    (input, cfg)
}

/// The page map (`pcpu stats --map`) of every dynamic chunk at the
/// `PHASE <phase> Percpu` marker under `v`, in chunk-id order: one
/// [`pcpu_core::PageState::symbol`] per page. An error if the trace has no
/// such marker, as for [`pins_for`].
pub fn page_maps_for(input: &Input, phase: &str, v: &Variant) -> Result<Vec<String>, LabError> {
    let (input, cfg) = variant_input(input, v);
    let rp = replay_to_phase(&input, phase, cfg)?;
    let a = rp.allocator();
    Ok(a.chunk_ids()
        .filter_map(|id| a.chunk(id))
        .filter(|c| c.kind() == ChunkKind::Dynamic)
        .map(|c| c.page_symbols())
        .collect())
}

/// Orders `rows` by `order`, ties by bytes and then name.
fn sort_rows(rows: &mut [PinRow], order: PinOrder) {
    rows.sort_by(|x, y| {
        let pinned = y.pages_pinned.cmp(&x.pages_pinned);
        let share = y.share_pages.total_cmp(&x.share_pages);
        match order {
            PinOrder::Pinned => pinned.then(share),
            PinOrder::Share => share.then(pinned),
        }
        .then(y.bytes.cmp(&x.bytes))
        .then(x.owner.cmp(&y.owner))
    });
}

impl PinsReport {
    /// Orders both tables (call sites, tasks) by `order` (the report comes
    /// ordered by [`PinOrder::Pinned`]).
    pub fn sort(&mut self, order: PinOrder) {
        sort_rows(&mut self.by_call_site, order);
        sort_rows(&mut self.by_task, order);
    }
}

/// Plain-text rendering: the resident total broken down, then the top `top`
/// call sites and tasks, under a title naming `order` (sort the report with
/// it first, [`PinsReport::sort`]).
pub fn render(r: &PinsReport, top: usize, order: PinOrder) -> String {
    let mut out = String::new();
    let kb = |pages: u64| r.kb(pages as f64) as u64;
    let _ = writeln!(
        out,
        "{} at phase {}: policy {}, {} placement, {} units of {} kB pages",
        r.trace,
        r.phase,
        r.policy,
        r.classes,
        r.units,
        r.page_size / 1024
    );
    out.push('\n');
    let lines = [
        (
            "resident (Percpu)",
            format!(
                "{} kB = {} pages per unit in {} chunks",
                kb(r.resident_pages),
                r.resident_pages,
                r.chunks
            ),
        ),
        (
            "  static and reserved areas",
            format!("{} kB ({} pages)", kb(r.static_pages), r.static_pages),
        ),
        (
            "  holding live objects",
            format!(
                "{} kB ({} pages): the floor for this placement, counting bytes allocated before tracing",
                kb(r.used_pages),
                r.used_pages
            ),
        ),
        (
            "  populated but empty",
            format!(
                "{} kB ({} pages): the depopulation policy's to give back",
                kb(r.empty_pages),
                r.empty_pages
            ),
        ),
        (
            "in isolated chunks",
            format!(
                "{} kB ({} populated pages): sidelined or queued for depopulation, used last",
                kb(r.isolated_pages),
                r.isolated_pages
            ),
        ),
        (
            "live objects",
            format!(
                "{} ({} bytes per unit; ideal {} kB)",
                r.live_objects,
                r.live_bytes,
                kb(r.live_bytes.div_ceil(r.page_size))
            ),
        ),
    ];
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        let _ = writeln!(out, "{:<w$} {v}", format!("{k}:"));
    }
    for (title, rows, what) in [
        ("call sites", &r.by_call_site, "call site"),
        ("tasks", &r.by_task, "task"),
    ] {
        out.push('\n');
        let shown = rows.len().min(top);
        let _ = writeln!(
            out,
            "Top {shown} of {} {title} by {}:",
            rows.len(),
            order.name()
        );
        let header = [
            what,
            "objects",
            "live bytes",
            "touched",
            "pinned",
            "pinned kB",
            "share",
            "share kB",
        ];
        let mut table: Vec<[String; 8]> = vec![header.map(String::from)];
        for row in rows.iter().take(top) {
            table.push([
                row.owner.clone(),
                row.objects.to_string(),
                row.bytes.to_string(),
                row.pages_touched.to_string(),
                row.pages_pinned.to_string(),
                kb(row.pages_pinned).to_string(),
                format!("{:.1}", row.share_pages),
                format!("{:.0}", r.kb(row.share_pages)),
            ]);
        }
        if rows.len() > top {
            let rest = &rows[top..];
            table.push([
                format!("({} more)", rest.len()),
                rest.iter().map(|x| x.objects).sum::<u64>().to_string(),
                rest.iter().map(|x| x.bytes).sum::<u64>().to_string(),
                String::new(),
                rest.iter().map(|x| x.pages_pinned).sum::<u64>().to_string(),
                kb(rest.iter().map(|x| x.pages_pinned).sum::<u64>()).to_string(),
                format!("{:.1}", rest.iter().map(|x| x.share_pages).sum::<f64>()),
                format!(
                    "{:.0}",
                    r.kb(rest.iter().map(|x| x.share_pages).sum::<f64>())
                ),
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &table {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        for (n, row) in table.iter().enumerate() {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                if i == 0 {
                    let _ = write!(line, "{c:<w$}", w = widths[0]);
                } else {
                    let _ = write!(line, "  {c:>w$}", w = widths[i]);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if n == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
    }
    out.push('\n');
    out.push_str(
        "pinned: pages (per unit) on which this owner's objects are the only live objects;\n\
         freeing them would empty those pages. share: each page holding live objects split\n\
         among its owners by live bytes (shares add up to the pages holding live objects,\n\
         the figures shown up to their rounding).\n",
    );
    out
}
