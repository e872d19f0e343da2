//! Developer aid: replay a capture and print the fidelity figures (superseded by `pcpu replay`).
use pcpu_replay::*;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let policy = std::env::args().nth(2).unwrap_or("linux-6.1".into());
    let mode = std::env::args().nth(3).unwrap_or("simulate".into());
    let cap = pcpu_trace::Capture::open(&dir).unwrap();
    let t0 = std::time::Instant::now();
    let trace = cap.parse(pcpu_trace::ParseOptions::strict()).unwrap();
    eprintln!("parse {:?}", t0.elapsed());
    let g = cap.geometry.clone().unwrap();
    let units = g.nr_units().unwrap() as usize;
    let setup = Setup::derive(&g, units, &trace.records, true).unwrap();
    eprintln!("prefill {:?}", setup.prefill);
    let cfg = ReplayConfig {
        policy: policy.parse().unwrap(),
        placement: if mode == "kernel" {
            Placement::Kernel
        } else {
            Placement::Simulate
        },
        ..Default::default()
    };
    let (r, _a) = replay("x", &trace.records, setup, cfg, &mut |_, _| {}).unwrap();
    println!(
        "agree {:?} events {} {:.3}s pop {} kpop {:?} depop {} kdepop {:?} fails {} runs {}",
        r.placement_agreement,
        r.events,
        r.elapsed_s,
        r.populated_pages,
        r.kernel_populated_pages,
        r.depopulated_pages,
        r.kernel_depopulated_pages,
        r.failed_allocs,
        r.balance_runs
    );
    for p in &r.phases {
        println!(
            "{:5} ours {:7} kernel {:7?} ideal {:7} floor {:7} kfloor {:7} chunks {}",
            p.name,
            p.percpu_kb,
            p.kernel_percpu_kb,
            p.ideal_kb,
            p.floor_kb,
            p.kernel_floor_kb,
            p.chunks
        );
    }
}
