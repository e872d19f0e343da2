//! A trace cut anywhere is a recording started on a running kernel: the
//! replay infers what the chunks held before the cut and replays the rest
//! strictly. Generated traces are consistent (the `linux-6.1` model placed
//! them), so a strict replay of any suffix must go through: every free of
//! an object from before the cut is explained, and nothing the inference
//! adds contradicts a later event.

use pcpu_core::Policy;
use pcpu_lab::gen::{Churn, LargeObjects, Machine};
use pcpu_replay::{replay, ReplayConfig, Setup};
use pcpu_trace::Event;

#[test]
fn any_suffix_of_a_generated_trace_replays_strictly() {
    let traces = [
        Churn {
            rounds: 3,
            per_round: 150,
            seed: 5,
            ..Churn::default()
        }
        .generate(),
        LargeObjects {
            rounds: 3,
            apps_per_round: 20,
            seed: 2,
            ..LargeObjects::default()
        }
        .generate(),
    ];
    let m = Machine::default();
    let geo = m.first_chunk_geometry();
    for t in &traces {
        let n = t.records.len();
        let mut inferred = 0;
        for cut in (1..8).map(|k| n * k / 8) {
            let suffix = &t.records[cut..];
            // A suffix of frees only is refused (no allocation gives the
            // percpu base), as any such trace is.
            let Ok(setup) = Setup::derive(&geo, m.units as usize, suffix, true) else {
                assert!(!suffix.iter().any(|r| matches!(r.event, Event::Alloc(_))));
                continue;
            };
            inferred += setup.pre_chunks.len() + setup.pre_objects.len();
            for policy in ["linux-6.1", "pcpu"] {
                let cfg = ReplayConfig {
                    policy: policy.parse::<Policy>().unwrap(),
                    check_invariants: true,
                    ..ReplayConfig::default()
                };
                let r = replay(&t.name, suffix, setup.clone(), cfg, &mut |_, _| {});
                let (rep, _) =
                    r.unwrap_or_else(|e| panic!("{} cut at {cut}, {policy}: {e}", t.name));
                assert_eq!(rep.uncreated_chunks, 0);
                assert_eq!(rep.pre_trace_chunks as usize, setup.pre_chunks.len());
            }
        }
        assert!(
            inferred > 0,
            "{}: some cut finds chunks or objects in use",
            t.name
        );
    }
}
