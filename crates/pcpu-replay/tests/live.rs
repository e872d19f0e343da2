//! Fidelity on a recording from a running 6.18 kernel (`pcpu record`, not
//! from boot): the chunks already in use and the objects freed from them
//! are inferred from the trace, and the replay is strict. Our Linux
//! policies were written against 6.1; on 6.18 they place most allocations
//! where the kernel did and follow its Percpu at every phase.

use std::path::PathBuf;

use pcpu_core::Policy;
use pcpu_replay::*;
use pcpu_trace::{Capture, ParseOptions};

fn replay_live(policy: &str, prefill: bool) -> Result<Report, ReplayError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-6.18-memcg");
    let cap = Capture::open(&dir).unwrap();
    let trace = cap.parse(ParseOptions::strict()).unwrap();
    let g = cap.geometry.clone().unwrap();
    let setup = Setup::derive(&g, g.nr_units().unwrap() as usize, &trace.records, prefill)?;
    let cfg = ReplayConfig {
        policy: policy.parse::<Policy>().unwrap(),
        check_invariants: true,
        ..Default::default()
    };
    replay("live", &trace.records, setup, cfg, &mut |_, _| {}).map(|r| r.0)
}

#[test]
fn linux_policies_follow_a_running_kernel() {
    for policy in ["linux-5.14", "linux-6.1"] {
        let r = replay_live(policy, true).unwrap();
        assert_eq!(
            (r.pre_trace_chunks, r.pre_trace_frees, r.uncreated_chunks),
            (2, 3, 0),
            "{policy}"
        );
        // 88% land where the kernel put them. The first that does not comes
        // with the first cgroup: what the chunks held before tracing is
        // inferred, not traced, and so are their block hints.
        let agreement = r.placement_agreement.unwrap();
        assert!(agreement > 0.875, "{policy}: {agreement}");
        // Percpu at every phase within 1% of the kernel's: the same at the
        // first marker (the empty pages it had are populated there), then
        // 8 kB (one page on each of the 2 CPUs) apart at most.
        let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["START", "A", "B", "C", "D", "END"]);
        for p in &r.phases {
            let k = p.kernel_percpu_kb.unwrap();
            assert!(
                p.percpu_kb.abs_diff(k) <= 8,
                "{policy} {}: {} vs {k}",
                p.name,
                p.percpu_kb
            );
        }
        assert_eq!(r.phases[0].percpu_kb, 1032);
        assert_eq!(r.phases[2].kernel_percpu_kb, Some(3184));
    }
}

/// `pcpu` stays within 1% of linux-5.14 at every phase of the recording,
/// because of its short-lived prediction: without it, exec's two objects
/// leave a hole at the start of every cgroup's region and the peak (B) is
/// 1.5% above.
#[test]
fn the_pcpu_policy_stays_within_1_percent_of_linux_5_14() {
    let linux = replay_live("linux-5.14", true).unwrap();
    let worst = |policy: &str| -> (String, f64) {
        let r = replay_live(policy, true).unwrap();
        assert_eq!(r.phases.len(), linux.phases.len());
        r.phases
            .iter()
            .zip(&linux.phases)
            .map(|(p, l)| {
                (
                    p.name.clone(),
                    p.percpu_kb as f64 / l.percpu_kb as f64 - 1.0,
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    };
    let (phase, excess) = worst("pcpu");
    assert!(excess <= 0.01, "{phase}: {excess}");
    let (phase, excess) = worst("pcpu:short_lived=false");
    assert!(phase == "B" && excess > 0.01, "{phase}: {excess}");
}

#[test]
fn without_the_inference_it_is_not_from_boot() {
    let e = replay_live("linux-6.1", false).unwrap_err();
    assert!(matches!(e, ReplayError::NotFromBoot { .. }), "{e}");
}

/// A churn recording on the same kernel with the kernel's `percpu_stats`
/// at every marker (`percpu-stats.txt`): 3 rounds of 200 memory cgroups,
/// 80% removed each round. Before tracing, one chunk held objects and one
/// was entirely free, with 223 empty pages populated between them, which
/// the trace alone cannot place (the free chunk is not in it). Where in
/// the chunk in use its 60 were is not known either, and this recording
/// is the one where the lowest free pages, the replay's choice, are not
/// where they were.
fn replay_churn(policy: &str, with_stats: bool) -> Report {
    replay_recording("live-6.18-churn", policy, with_stats, false).unwrap()
}

/// Replays the recording in fixture folder `name`, starting from the
/// kernel's `percpu_stats` at its first marker `with_stats`, and attaches
/// the kernel's figures at the markers to the report.
fn replay_recording(
    name: &str,
    policy: &str,
    with_stats: bool,
    lenient: bool,
) -> Result<Report, ReplayError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let cap = Capture::open(&dir).unwrap();
    let trace = cap.parse(ParseOptions::strict()).unwrap();
    let g = cap.geometry.clone().unwrap();
    let mut setup =
        Setup::derive(&g, g.nr_units().unwrap() as usize, &trace.records, true).unwrap();
    if with_stats {
        setup = setup.with_kernel_stats(&trace.records, &cap.kernel_stats, true);
    }
    let cfg = ReplayConfig {
        policy: policy.parse::<Policy>().unwrap(),
        check_invariants: true,
        lenient,
        ..Default::default()
    };
    let mut r = replay(name, &trace.records, setup, cfg, &mut |_, _| {})?.0;
    r.attach_kernel_stats(&cap.kernel_stats);
    Ok(r)
}

/// The kernel's frees of two processes' `mm_init` objects are missing from
/// the 400-cgroup recording (`live-6.18-lost-frees`); nothing was lost by
/// the ring buffer. The first pair's first object came back at its
/// pointer (line 2123), its second never did: a 24-byte object was placed
/// over its range (line 2142). Strict replay stops at the first; lenient
/// replay frees both where the kernel allocated over them, and then places
/// every allocation where the kernel did (38.8% when only a pointer
/// allocated again implied a free), with the kernel's Percpu and empty
/// pages at every marker.
#[test]
fn frees_the_trace_lost_are_implied_where_the_kernel_allocates_over_them() {
    for policy in ["linux-5.14", "linux-6.1"] {
        let e = replay_recording("live-6.18-lost-frees", policy, true, false).unwrap_err();
        assert!(matches!(e, ReplayError::Overlap { line: 2123, .. }), "{e}");
        let r = replay_recording("live-6.18-lost-frees", policy, true, true).unwrap();
        assert_eq!(r.placement_agreement, Some(1.0), "{policy}");
        assert_eq!(r.implied_frees, 2, "{policy}");
        let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["START", "A", "R1c"]);
        for p in &r.phases {
            assert_eq!(
                (p.percpu_kb, p.empty_pop_pages, p.floor_kb),
                (
                    p.kernel_percpu_kb.unwrap(),
                    p.kernel_empty_pop_pages.unwrap(),
                    p.kernel_floor_kb
                ),
                "{policy} {}",
                p.name
            );
        }
    }
}

#[test]
fn the_kernels_percpu_stats_place_the_empty_pages_before_tracing() {
    for policy in ["linux-5.14", "linux-6.1"] {
        let r = replay_churn(policy, true);
        assert_eq!(r.placement_agreement, Some(1.0), "{policy}");
        // The chunk in use was found by the trace; the free one only by
        // the snapshot, created with its pages.
        assert_eq!(
            (
                r.pre_trace_chunks,
                r.pre_trace_free_chunks,
                r.kernel_stats_unmatched_chunks
            ),
            (1, 1, 0),
            "{policy}"
        );
        assert_eq!(r.pre_trace_top_up_pages, 223);
        let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["START", "A", "R1c", "R1", "R2c", "R2", "R3c", "R3", "END", "END"]
        );
        for p in &r.phases {
            let k = p.kernel_percpu_kb.unwrap();
            let ke = p.kernel_empty_pop_pages.unwrap();
            assert_eq!(p.kernel_chunks, Some(3), "{policy} {}", p.name);
            if p.name.starts_with("R1") {
                // Where in the chunk in use its empty pages lay is not
                // known: the replay puts them on its lowest free pages, and
                // the first round's allocations take them, where the
                // kernel's were higher: 392 kB (12.3%) below at R1c, 120
                // kB above at R1 (the reclaim that follows differs).
                assert!(p.percpu_kb.abs_diff(k) <= 392, "{policy} {}", p.name);
                assert!(p.empty_pop_pages.abs_diff(ke) <= 49, "{policy} {}", p.name);
            } else {
                // Everywhere else, the kernel's own figures exactly.
                assert_eq!(
                    (p.percpu_kb, p.empty_pop_pages),
                    (k, ke),
                    "{policy} {}",
                    p.name
                );
            }
        }
    }
}

/// Without the snapshot the replay puts all 223 empty pages in the chunk
/// the trace shows in use (219: our balance work populated 4 before the
/// first marker), where the first round's allocations take them:
/// Percpu at R1c falls 23% below the kernel's (and stays off after).
#[test]
fn without_the_snapshot_the_empty_pages_are_guessed() {
    let r = replay_churn("linux-6.1", false);
    assert_eq!(
        (r.pre_trace_free_chunks, r.pre_trace_top_up_pages),
        (0, 219)
    );
    let r1c = &r.phases[2];
    assert_eq!(r1c.name, "R1c");
    let k = r1c.kernel_percpu_kb.unwrap() as f64;
    assert!((r1c.percpu_kb as f64) < k * 0.9, "{} vs {k}", r1c.percpu_kb);
    assert!(r.phases.iter().all(|p| p.kernel_empty_pop_pages.is_some()));
}
