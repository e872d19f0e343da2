//! Issue #5's comparison targets in one table: for every study workload,
//! the `pcpu` policy (with its refault reserve at several settings) against
//! `linux-5.14`, phase by phase and in page traffic.
//!
//! ```text
//! cargo run --release -p pcpu-lab --example targets [CAPTURE_DIR...]
//! ```
//!
//! Balance runs on demand (as in the study); real captures are also replayed
//! at their recorded balance runs.
use pcpu_core::{Policy, PolicyKind};
use pcpu_lab::run::{run, Input, RunOptions, Schedule, Variant};
use pcpu_lab::study::{workloads, Scale};

fn main() {
    let mut inputs: Vec<Input> = workloads(Scale::Full)
        .iter()
        .map(|t| Input::synthetic(t).expect("synthetic input"))
        .collect();
    for dir in std::env::args().skip(1) {
        inputs.push(Input::open(dir.as_ref()).expect("capture"));
    }
    let opts = RunOptions::default();
    let l514 = Policy::new(PolicyKind::Linux514);
    println!(
        "{:<24} {:<10} {:>8} {:>9} {:>9} {:>10}",
        "workload", "variant", "schedule", "worst", "best", "populated"
    );
    for input in &inputs {
        let mut schedules = vec![Schedule::Modelled];
        if input.has_balance {
            schedules.push(Schedule::Recorded);
        }
        for schedule in schedules {
            let base = Variant {
                schedule,
                ..Variant::new("linux-5.14", l514)
            };
            let b = run(input, &base, &opts).expect("replay");
            for div in [0usize, 16, 8, 4] {
                let mut p = Policy::pcpu();
                p.refault_reserve_divisor = div;
                let v = Variant {
                    schedule,
                    ..Variant::new(format!("pcpu/{div}"), p)
                };
                let r = run(input, &v, &opts).expect("replay");
                let diffs = r.phase_changes(&b);
                let worst = diffs.iter().cloned().fold(f64::MIN, f64::max);
                let best = diffs.iter().cloned().fold(f64::MAX, f64::min);
                println!(
                    "{:<24} {:<10} {:>8} {:>+8.1}% {:>+8.1}% {:>5} {:>+5.1}%",
                    input.name,
                    v.label,
                    schedule.label(),
                    worst,
                    best,
                    r.populated_pages,
                    100.0 * (r.populated_pages as f64 / b.populated_pages as f64 - 1.0)
                );
            }
        }
    }
}
