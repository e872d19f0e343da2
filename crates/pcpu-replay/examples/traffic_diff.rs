//! Where our page traffic and the kernel's part: replays a capture that has
//! the populate/depopulate kprobes (policy `linux-6.1`, simulated placement,
//! balance at the recorded runs) and, before each recorded
//! `pcpu_balance_workfn`, compares the pages populated and depopulated so
//! far (per unit) with the kernel's kprobes. Prints each change of the
//! difference, with the trace line of that run: the previous run, and the
//! events since, are where to look. With `FROM TO` (trace lines), also
//! prints every page operation of ours made while replaying those lines.
//!
//! `cargo run --release -p pcpu-replay --example traffic_diff -- CAPTURE [FROM TO]`
//!
//! DESIGN.md §9 explains the churn capture's two lasting differences with it.

use pcpu_core::Policy;
use pcpu_replay::{trace_features, PageOpKind, ReplayConfig, Replayer, Setup};
use pcpu_trace::{Capture, Event, ParseOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: traffic_diff CAPTURE [FROM TO]")?;
    let window: Vec<u64> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let cap = Capture::open(&dir)?;
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
    // The kernel's and our cumulative pages (populated, depopulated).
    let (mut kernel, mut ours) = ((0i64, 0i64), (0i64, 0i64));
    let mut logged = 0;
    let mut last = (0i64, 0i64);
    let mut i = 0;
    while i < recs.len() {
        // Racing allocations are replayed in the kernel's order, as
        // `Replayer::run` does.
        let swap = i + 1 < recs.len() && rp.should_swap(&recs[i], &recs[i + 1]);
        let n = if swap { 2 } else { 1 };
        for op in &rp.page_log()[logged..] {
            let k = op.pages.len() as i64;
            match op.kind {
                PageOpKind::Populate => ours.0 += k,
                PageOpKind::Depopulate => ours.1 += k,
                PageOpKind::CreateChunk | PageOpKind::DestroyChunk => {}
            }
        }
        logged = rp.page_log().len();
        if matches!(recs[i].event, Event::BalanceWork) {
            let d = (ours.0 - kernel.0, ours.1 - kernel.1);
            if d != last {
                println!(
                    "line {}: ours - kernel: populated {:+}, depopulated {:+} (ours {} / {})",
                    recs[i].line, d.0, d.1, ours.0, ours.1
                );
                last = d;
            }
        }
        for r in &recs[i..i + n] {
            match &r.event {
                Event::ChunkPopulated(p) => kernel.0 += i64::from(p.nr_pages()),
                Event::ChunkDepopulated(p) => kernel.1 += i64::from(p.nr_pages()),
                _ => {}
            }
        }
        let before = rp.page_log().len();
        if swap {
            rp.feed(&recs[i + 1])?;
            rp.feed(&recs[i])?;
        } else {
            rp.feed(&recs[i])?;
        }
        if let [from, to] = window[..] {
            if (from..=to).contains(&recs[i].line) {
                for op in &rp.page_log()[before..] {
                    println!("  line {}: {op:?}", recs[i].line);
                }
            }
        }
        i += n;
    }
    Ok(())
}
