//! The `pcpu` policy's targets on the study's synthetic workloads (full
//! size, seed 1), and the helpers the study's targets section uses.

use pcpu_lab::run::{run, Input, RunOptions, RunResult, Schedule, Variant};
use pcpu_lab::study::{workloads, Scale};
use pcpu_lab::targets::{self, Pair};

fn pairs() -> Vec<Pair> {
    targets::seed_pairs(Scale::Full, &[1], &RunOptions::default(), 2).unwrap()
}

#[test]
#[cfg_attr(debug_assertions, ignore = "full-size replays: cargo test --release")]
fn pcpu_meets_its_targets_on_the_study_workloads() {
    let pairs = pairs();
    assert_eq!(pairs.len(), 4);
    for p in &pairs {
        // Never more than 1% above linux-5.14 at any phase.
        let (worst, at) = p.worst_phase();
        assert!(worst <= 1.0, "{}: {worst:+.2}% at {at}", p.workload);
        assert_eq!(p.pcpu.failed_allocs, 0, "{}", p.workload);
    }
    // The cover letter: the floor at C, the peak, resident over floor.
    let cl = &pairs[0];
    assert!(cl.workload.starts_with("cover-letter"));
    let page_kb = 16; // 4 units of 4 KiB pages
    let floor_c = cl.pcpu.phase("C").unwrap().floor_kb / page_kb;
    assert!(floor_c <= 1506, "floor at C {floor_c} pages");
    let b = targets::percent(
        cl.pcpu.phase("B").unwrap().percpu_kb,
        cl.linux.phase("B").unwrap().percpu_kb,
    );
    assert!(b <= 1.0, "B {b:+.2}%");
    let ratio = targets::resident_over_floor(&cl.pcpu, "C").unwrap();
    assert!(ratio <= 1.01, "resident/floor at C {ratio:.3}");
    // Linux stays above it, as on the real capture.
    assert!(targets::resident_over_floor(&cl.linux, "C").unwrap() > ratio);
}

/// A small replay with the given policy, balance on demand.
fn small(policy: &str) -> RunResult {
    let t = workloads(Scale::Small).remove(0);
    let input = Input::synthetic(&t).unwrap();
    let v = Variant {
        schedule: Schedule::Modelled,
        ..Variant::new(policy, policy.parse().unwrap())
    };
    run(&input, &v, &RunOptions::default()).unwrap()
}

#[test]
fn helpers_measure_what_they_say() {
    let linux = small("linux-5.14");
    let pcpu = small("pcpu");
    // Against itself: no change, at the first phase with a figure.
    let (w, at) = targets::worst_phase(&linux, &linux);
    assert_eq!(w, 0.0);
    assert_eq!(at, "BOOT");
    // The worst phase is the largest change, at its phase.
    let (w, at) = targets::worst_phase(&pcpu, &linux);
    let changes = pcpu.phase_changes(&linux);
    assert_eq!(w, changes.iter().copied().fold(f64::MIN, f64::max));
    let i = changes.iter().position(|&c| c == w).unwrap();
    assert_eq!(at, pcpu.phases[i].name);
    assert_eq!(targets::percent(110, 100), 10.0);
    assert_eq!(targets::percent(1, 0), 0.0);
    // Resident over floor outside the first chunk, by hand.
    let c = linux.phase("C").unwrap();
    let by_hand =
        (c.percpu_kb - linux.first_chunk_kb) as f64 / (c.floor_kb - c.first_chunk_floor_kb) as f64;
    assert_eq!(targets::resident_over_floor(&linux, "C"), Some(by_hand));
    assert!(linux.first_chunk_kb > 0 && c.first_chunk_floor_kb <= c.floor_kb);
    assert_eq!(targets::resident_over_floor(&linux, "nonexistent"), None);
    // Floor over ideal: the largest over the phases.
    let (w, at) = targets::worst_floor_over_ideal(&pcpu).unwrap();
    for p in &pcpu.phases {
        assert!(targets::percent(p.floor_kb, p.ideal_kb) <= w, "{at}");
    }
}

#[test]
fn seed_pairs_come_in_seed_then_workload_order() {
    let pairs = targets::seed_pairs(Scale::Small, &[3, 1], &RunOptions::default(), 2).unwrap();
    let order: Vec<(u64, &str)> = pairs
        .iter()
        .map(|p| (p.seed, p.workload.split('-').next().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            (3, "cover"),
            (3, "churn"),
            (3, "bpf"),
            (3, "mix"),
            (1, "cover"),
            (1, "churn"),
            (1, "bpf"),
            (1, "mix")
        ]
    );
    for p in &pairs {
        assert_eq!(p.linux.policy, "linux-5.14");
        assert!(p.pcpu.policy.starts_with("pcpu"));
        assert_eq!(p.linux.schedule, p.pcpu.schedule);
    }
    // Different seeds, different traces.
    assert_ne!(pairs[0].linux.phases, pairs[4].linux.phases);
}
