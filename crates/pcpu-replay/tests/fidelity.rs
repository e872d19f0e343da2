//! Fidelity against a real kernel: a prefix of the 6.1 churn capture
//! (creation of 1,500 memory cgroups, removal of 80%, the kernel's
//! depopulation work). Our Linux policy must place every allocation where
//! the kernel did and reproduce its Percpu figures and page traffic.

use std::path::PathBuf;

use pcpu_core::Policy;
use pcpu_replay::*;
use pcpu_trace::{Capture, ParseOptions};

fn fixture() -> (pcpu_trace::Trace, Setup) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/churn-r1");
    let cap = Capture::open(&dir).unwrap();
    let trace = cap.parse(ParseOptions::strict()).unwrap();
    let g = cap.geometry.clone().unwrap();
    let setup = Setup::derive(&g, g.nr_units().unwrap() as usize, &trace.records, true).unwrap();
    (trace, setup)
}

fn run(policy: &str, placement: Placement, check: bool) -> Report {
    let (trace, setup) = fixture();
    let cfg = ReplayConfig {
        policy: policy.parse::<Policy>().unwrap(),
        placement,
        check_invariants: check,
        ..Default::default()
    };
    replay("churn-r1", &trace.records, setup, cfg, &mut |_, _| {})
        .unwrap()
        .0
}

#[test]
fn linux_6_1_reproduces_the_kernel_exactly() {
    // Full invariant check after every one of the ~30,000 events.
    let r = run("linux-6.1", Placement::Simulate, true);
    assert_eq!(r.placement_agreement, Some(1.0), "{:#?}", r.disagreements);
    assert_eq!(r.populated_pages, r.kernel_populated_pages.unwrap());
    assert_eq!(r.depopulated_pages, r.kernel_depopulated_pages.unwrap());
    let phases: Vec<_> = r
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.percpu_kb, p.kernel_percpu_kb.unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("BOOT", 1040, 1040),
            ("A", 1040, 1040),
            ("R1c", 13088, 13088),
            ("R1", 8832, 8832)
        ]
    );
    for p in &r.phases {
        assert_eq!(p.floor_kb, p.kernel_floor_kb, "same placement, same floor");
        assert!(p.ideal_kb <= p.floor_kb && p.floor_kb <= p.percpu_kb);
    }
}

/// Kernel placement takes every allocation where the kernel put it, and
/// binds each kernel chunk to the spare chunk our balance work created at the
/// same run, so it reproduces the kernel's figures as simulation does (it
/// made one chunk too many before, and drifted).
#[test]
fn kernel_placement_mode_accepts_every_kernel_placement() {
    let r = run("linux-6.1", Placement::Kernel, true);
    assert_eq!(r.placement_agreement, None);
    assert_eq!(r.failed_allocs, 0);
    assert_eq!(r.populated_pages, r.kernel_populated_pages.unwrap());
    assert_eq!(r.depopulated_pages, r.kernel_depopulated_pages.unwrap());
    let sim = run("linux-6.1", Placement::Simulate, false);
    for (p, q) in r.phases.iter().zip(&sim.phases) {
        assert_eq!(Some(p.percpu_kb), p.kernel_percpu_kb, "{}", p.name);
        assert_eq!(p.chunks, q.chunks, "{}", p.name);
        assert_eq!(p.floor_kb, p.kernel_floor_kb, "{}", p.name);
    }
    assert_eq!(r.chunks_created, sim.chunks_created);
}

#[test]
fn older_policies_keep_more_memory() {
    let old = run("linux-5.11", Placement::Simulate, false);
    let rfc = run("seed-rfc", Placement::Simulate, false);
    let new = run("linux-5.14", Placement::Simulate, false);
    let at = |r: &Report| r.phases.iter().find(|p| p.name == "R1").unwrap().percpu_kb;
    // 5.11 only frees whole chunks: after removing 80% nothing comes back.
    assert_eq!(
        at(&old),
        old.phases
            .iter()
            .find(|p| p.name == "R1c")
            .unwrap()
            .percpu_kb
    );
    assert!(
        at(&new) < at(&rfc) && at(&rfc) < at(&old),
        "{} {} {}",
        at(&new),
        at(&rfc),
        at(&old)
    );
}
