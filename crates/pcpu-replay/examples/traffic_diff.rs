//! Where our page traffic and the kernel's part. Replays a capture that has
//! the populate/depopulate kprobes (policy `linux-6.1`, simulated placement,
//! balance at the recorded runs) and prints:
//!
//! * before each recorded `pcpu_balance_workfn`, each change of the
//!   difference between the pages populated and depopulated so far (per
//!   unit) and the kernel's kprobes, with the trace line of that run (the
//!   previous run, and the events since, are where to look);
//! * with `--at LINE`, the pages populated in one and not the other once the
//!   trace is replayed up to that line (a phase marker's, say), with the
//!   record that last populated or depopulated each. Chunks are paired in
//!   the order they were created (the n-th chunk the kernel created with our
//!   n-th); chunks that existed before tracing began are left out (the
//!   kprobes never saw their first population);
//! * with `--ops FROM TO`, every page operation of ours made while replaying
//!   trace lines `FROM..=TO`.
//!
//! `cargo run --release -p pcpu-replay --example traffic_diff -- CAPTURE [--at LINE] [--ops FROM TO]`
//!
//! DESIGN.md §9 explains both captures' remaining differences with it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use pcpu_core::Policy;
use pcpu_replay::{trace_features, PageOp, PageOpKind, ReplayConfig, Replayer, Setup};
use pcpu_trace::{Capture, ChunkPages, Event, ParseOptions, Record};

type Error = Box<dyn std::error::Error>;

/// Populated pages per chunk, and for each page the record (trace line for
/// the kernel, record index for ours) that last changed it.
#[derive(Default)]
struct Pages<K: Ord + Copy> {
    chunks: BTreeMap<K, BTreeSet<u32>>,
    last: BTreeMap<(K, u32), (u64, bool)>,
    /// Every chunk created, in order.
    created: Vec<K>,
}

impl<K: Ord + Copy> Pages<K> {
    fn create(&mut self, chunk: K) {
        self.chunks.insert(chunk, BTreeSet::new());
        self.created.push(chunk);
    }
    fn set(&mut self, chunk: K, pages: std::ops::Range<u32>, populated: bool, at: u64) {
        let set = self.chunks.entry(chunk).or_default();
        for p in pages {
            if populated {
                set.insert(p);
            } else {
                set.remove(&p);
            }
            self.last.insert((chunk, p), (at, populated));
        }
    }
}

struct Args {
    capture: String,
    at: Option<u64>,
    ops: Option<(u64, u64)>,
}

fn args() -> Result<Args, Error> {
    let usage = "usage: traffic_diff CAPTURE [--at LINE] [--ops FROM TO]";
    let mut it = std::env::args().skip(1);
    let capture = it.next().ok_or(usage)?;
    let (mut at, mut ops) = (None, None);
    while let Some(a) = it.next() {
        let mut num = || -> Result<u64, Error> { Ok(it.next().ok_or(usage)?.parse()?) };
        match a.as_str() {
            "--at" => at = Some(num()?),
            "--ops" => ops = Some((num()?, num()?)),
            _ => return Err(usage.into()),
        }
    }
    Ok(Args { capture, at, ops })
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let cap = Capture::open(&args.capture)?;
    let trace = cap.parse(ParseOptions::strict())?;
    let geo = cap.geometry.clone().ok_or("the capture has no geometry")?;
    let units = geo.nr_units().ok_or("the capture has no unit count")? as usize;
    let setup = Setup::derive(&geo, units, &trace.records, true)?;
    let cfg = ReplayConfig {
        policy: "linux-6.1".parse::<Policy>()?,
        page_log: true,
        ..Default::default()
    };
    let recs = &trace.records;
    let (has_runs, has_kprobes) = trace_features(recs);
    if !has_runs || !has_kprobes {
        return Err("the trace has no balance-run or populate/depopulate kprobe events".into());
    }
    let mut rp = Replayer::new(setup, cfg, has_runs, has_kprobes)?;
    // Written, not printed: a closed pipe ends the run with an error.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut kernel: Pages<u64> = Pages::default();
    let mut ours: Pages<u32> = Pages::default();
    // Cumulative pages (populated, depopulated): the kernel's, ours.
    let (mut kt, mut ot) = ((0i64, 0i64), (0i64, 0i64));
    let mut logged = 0;
    let mut last = (0i64, 0i64);
    let mut i = 0;
    while i < recs.len() && args.at.map_or(true, |at| recs[i].line <= at) {
        for op in &rp.page_log()[logged..] {
            ours_op(&mut ours, &mut ot, op);
        }
        logged = rp.page_log().len();
        if matches!(recs[i].event, Event::BalanceWork) {
            let d = (ot.0 - kt.0, ot.1 - kt.1);
            if d != last && args.at.is_none() {
                writeln!(
                    out,
                    "line {}: ours - kernel: populated {:+}, depopulated {:+} (ours {} / {})",
                    recs[i].line, d.0, d.1, ot.0, ot.1
                )?;
                last = d;
            }
        }
        let before = rp.page_log().len();
        // One step: this record, or it and the next when they are racing
        // allocations, replayed in the kernel's order.
        let n = rp.run(&recs[i..], &mut |_| {}, &|_| true)?;
        for r in &recs[i..i + n] {
            kernel_event(&mut kernel, &mut kt, r);
        }
        if let Some((from, to)) = args.ops {
            if (from..=to).contains(&recs[i].line) {
                for op in &rp.page_log()[before..] {
                    writeln!(out, "  line {}: {op:?}", recs[i].line)?;
                }
            }
        }
        i += n;
    }
    if let Some(at) = args.at {
        for op in &rp.page_log()[logged..] {
            ours_op(&mut ours, &mut ot, op);
        }
        page_diff(&mut out, &kernel, &ours, at)?;
    }
    out.flush()?;
    Ok(())
}

fn ours_op(ours: &mut Pages<u32>, total: &mut (i64, i64), op: &PageOp) {
    let k = op.pages.len() as i64;
    match op.kind {
        PageOpKind::CreateChunk => ours.create(op.chunk),
        PageOpKind::DestroyChunk => {
            ours.chunks.remove(&op.chunk);
        }
        PageOpKind::Populate => {
            total.0 += k;
            ours.set(op.chunk, op.pages.clone(), true, op.event);
        }
        PageOpKind::Depopulate => {
            total.1 += k;
            ours.set(op.chunk, op.pages.clone(), false, op.event);
        }
    }
}

fn kernel_event(kernel: &mut Pages<u64>, total: &mut (i64, i64), r: &Record) {
    let pages = |p: &ChunkPages| p.page_start..p.page_end;
    match &r.event {
        Event::ChunkPopulated(p) => {
            total.0 += i64::from(p.nr_pages());
            kernel.set(p.base_addr, pages(p), true, r.line);
        }
        Event::ChunkDepopulated(p) => {
            total.1 += i64::from(p.nr_pages());
            kernel.set(p.base_addr, pages(p), false, r.line);
        }
        Event::CreateChunk { base_addr } => kernel.create(*base_addr),
        Event::DestroyChunk { base_addr } => {
            kernel.chunks.remove(base_addr);
        }
        _ => {}
    }
}

/// The pages populated in one and not the other, chunk by chunk.
fn page_diff(
    out: &mut impl Write,
    kernel: &Pages<u64>,
    ours: &Pages<u32>,
    at: u64,
) -> std::io::Result<()> {
    writeln!(
        out,
        "populated pages at line {at} (kernel: last trace line; ours: last record index)"
    )?;
    // The latest pairing of each live kernel chunk.
    let mut pair = BTreeMap::new();
    for (kb, oid) in kernel.created.iter().zip(&ours.created) {
        pair.insert(*kb, *oid);
    }
    let (mut same, mut unpaired) = (0, 0);
    for (kb, ks) in &kernel.chunks {
        let Some((oid, os)) = pair
            .get(kb)
            .and_then(|o| ours.chunks.get(o).map(|s| (*o, s)))
        else {
            unpaired += 1;
            continue;
        };
        if os == ks {
            same += 1;
            continue;
        }
        writeln!(out, "kernel chunk {kb:#x} = our chunk {oid}:")?;
        for (p, only) in ks
            .difference(os)
            .map(|p| (p, "the kernel"))
            .chain(os.difference(ks).map(|p| (p, "ours")))
        {
            writeln!(
                out,
                "  page {p} populated only in {only}: kernel {:?}, ours {:?}",
                kernel.last.get(&(*kb, *p)),
                ours.last.get(&(oid, *p))
            )?;
        }
    }
    writeln!(
        out,
        "{same} chunks with the same populated pages; {unpaired} kernel chunks without a pair \
         (created {} times by the kernel, {} by ours)",
        kernel.created.len(),
        ours.created.len()
    )?;
    Ok(())
}
