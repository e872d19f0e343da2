//! Generators: determinism, parse round trip, capture folders, and that the
//! traces replay as the workloads intend.

use pcpu_core::Policy;
use pcpu_lab::gen::{
    is_synthetic, Churn, CoverLetter, LargeObjects, Machine, Mix, SyntheticTrace, Workers,
    MEMCG_GROUP,
};
use pcpu_lab::run::{run, Input, RunOptions, RunResult, Schedule, Variant};
use pcpu_trace::{Event, ParseOptions};

fn small_cover(seed: u64) -> SyntheticTrace {
    CoverLetter {
        parents: 30,
        children: 5,
        seed,
        ..CoverLetter::default()
    }
    .generate()
}

fn replay(t: &SyntheticTrace, policy: &str) -> RunResult {
    let input = Input::synthetic(t).unwrap();
    let v = Variant::new(policy, policy.parse::<Policy>().unwrap());
    run(&input, &v, &RunOptions::default()).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pcpu-lab-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn same_seed_same_text_other_seed_other_text() {
    let a = small_cover(3).text();
    assert_eq!(a, small_cover(3).text());
    assert_ne!(a, small_cover(4).text());
    let c = Churn {
        rounds: 2,
        per_round: 50,
        seed: 9,
        ..Churn::default()
    };
    assert_eq!(c.generate().text(), c.generate().text());
}

#[test]
fn trace_text_parses_back_to_the_same_records() {
    for t in [
        small_cover(1),
        LargeObjects {
            rounds: 2,
            apps_per_round: 10,
            ..LargeObjects::default()
        }
        .generate(),
    ] {
        let text = t.text();
        let parsed = pcpu_trace::parse_all(text.as_bytes(), ParseOptions::strict()).unwrap();
        assert_eq!(parsed.stats.malformed, 0);
        assert_eq!(parsed.records, t.records, "{}", t.name);
        assert!(is_synthetic(&parsed.records));
    }
}

#[test]
fn capture_folder_replays_like_the_records() {
    let t = small_cover(1);
    let dir = tmp("capture");
    t.write_capture(&dir).unwrap();
    let dmesg = std::fs::read_to_string(dir.join("dmesg-percpu.txt")).unwrap();
    assert!(dmesg.contains("percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288"));
    let geo = pcpu_trace::parse_dmesg(&dmesg).unwrap();
    assert_eq!(geo, Machine::default().first_chunk_geometry());
    let input = Input::open(&dir).unwrap();
    assert!(input.synthetic);
    assert_eq!(input.phases(), ["BOOT", "A", "B", "C", "D"]);
    // The CLI pre-fills the first chunk of every trace: nothing to pre-fill here.
    let setup = pcpu_replay::Setup::derive(&geo, 4, &input.records, true).expect("setup derives");
    assert!(setup.prefill.is_empty(), "{:?}", setup.prefill);
    let v = Variant::new("5.14", "linux-5.14".parse().unwrap());
    let a = run(&input, &v, &RunOptions::default()).unwrap();
    let b = replay(&t, "linux-5.14");
    assert_eq!(a.phases, b.phases);
}

#[test]
fn cover_letter_c_below_b_with_linux_5_14() {
    // Enough cgroups for several chunks: 5.14 reclaims a chunk only while
    // the others keep more than EMPTY_POP_PAGES_HIGH empty pages.
    let t = CoverLetter {
        parents: 100,
        children: 10,
        ..CoverLetter::default()
    }
    .generate();
    let r = replay(&t, "linux-5.14");
    let p = |n: &str| r.phase(n).unwrap().clone();
    let (b, c, d) = (p("B"), p("C"), p("D"));
    assert!(
        c.percpu_kb < b.percpu_kb,
        "C {} B {}",
        c.percpu_kb,
        b.percpu_kb
    );
    assert!(d.percpu_kb <= c.percpu_kb);
    assert!(c.ideal_kb <= c.floor_kb && c.floor_kb <= c.percpu_kb);
    // No kernel figure for a synthetic trace.
    assert!(r.phases.iter().all(|p| p.kernel_percpu_kb.is_none()));
    // 5.11 cannot give partly used chunks back.
    let old = replay(&t, "linux-5.11");
    assert!(old.phase("C").unwrap().percpu_kb > c.percpu_kb);
    // Parents survive C: 100 of them with 11 objects each (plus boot objects).
    assert_eq!(
        c.live_objects - p("A").live_objects,
        100 * MEMCG_GROUP.len() as u64
    );
    assert_eq!(d.live_objects, p("A").live_objects);
}

#[test]
fn removal_ratio_keeps_some_children() {
    let t = CoverLetter {
        parents: 30,
        children: 6,
        remove_children: 0.5,
        ..CoverLetter::default()
    }
    .generate();
    assert_eq!(t.name, "cover-letter-30x6-rm50");
    let r = replay(&t, "linux-6.1");
    let groups = (r.phase("C").unwrap().live_objects - r.phase("A").unwrap().live_objects)
        / MEMCG_GROUP.len() as u64;
    // 30 parents + about half of 180 children.
    assert!((30 + 60..=30 + 120).contains(&groups), "{groups}");
}

#[test]
fn memcg_group_is_the_captures_cgroup() {
    let mut sizes: Vec<(u32, u32)> = MEMCG_GROUP.iter().map(|s| (s.size, s.align)).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [
            (4, 4),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (8, 8),
            (32, 8),
            (64, 8),
            (128, 64),
            (688, 8),
            (1096, 8)
        ]
    );
    // Each cgroup is allocated by its own mkdir process.
    let t = small_cover(1);
    let mut pids = std::collections::BTreeMap::<i32, usize>::new();
    for r in &t.records {
        if let Event::Alloc(_) = r.event {
            if &*r.task == "mkdir" {
                *pids.entry(r.pid).or_default() += 1;
            }
        }
    }
    assert_eq!(pids.len(), 30 * 6);
    assert!(pids.values().all(|&n| n == 11));
}

#[test]
fn every_generator_replays_where_the_model_placed() {
    let traces = [
        Churn {
            rounds: 3,
            per_round: 60,
            ..Churn::default()
        }
        .generate(),
        LargeObjects {
            rounds: 2,
            apps_per_round: 20,
            ..LargeObjects::default()
        }
        .generate(),
        Mix {
            rounds: 2,
            groups_per_round: 60,
            apps_per_round: 6,
            ..Mix::default()
        }
        .generate(),
        Workers {
            rounds: 2,
            sessions: 200,
            ..Workers::default()
        }
        .generate(),
    ];
    for t in &traces {
        let input = Input::synthetic(t).unwrap();
        let v = Variant {
            schedule: Schedule::Modelled,
            ..Variant::new("6.1", Policy::new(pcpu_core::PolicyKind::Linux61))
        };
        let r = run(&input, &v, &RunOptions::default()).unwrap();
        assert_eq!(r.failed_allocs, 0, "{}", t.name);
        // The trace's placement columns are linux-6.1's, balanced on demand.
        assert_eq!(r.placement_agreement, Some(1.0), "{}", t.name);
        assert!(r.phases.len() >= 5, "{}", t.name);
        assert_eq!(r.phases.last().unwrap().name, "END");
    }
    // Large objects stay in 1 KiB..=32 KiB.
    for r in &traces[1].records {
        if let Event::Alloc(a) = &r.event {
            let large = matches!(a.caller(), Some("bpf_map_alloc_percpu" | "htab_map_alloc"));
            if large && a.size >= 1024 {
                assert!(a.size <= 32_768 && a.size % 8 == 0);
            }
        }
    }
}

#[test]
fn workers_free_one_at_a_time_while_the_next_allocates() {
    let w = Workers {
        workers: 3,
        rounds: 2,
        sessions: 400,
        keep_pct: 5,
        ..Workers::default()
    };
    let t = w.generate();
    assert_eq!(t.name, "workers-3x2x400-5");
    assert_eq!(t, w.generate());
    // Every session is a counter and a block from one of three tasks,
    // the same in both rounds.
    let mut pids = std::collections::BTreeSet::new();
    let mut allocs = 0;
    // A free between two allocations of another task: shifts overlap.
    let (mut last_alloc_pid, mut overlaps) = (None, 0);
    for r in &t.records {
        match &r.event {
            Event::Alloc(a) if a.caller() == Some("session_open") => {
                assert!(a.size == 8 || a.size == 128);
                pids.insert(r.pid);
                allocs += 1;
                last_alloc_pid = Some(r.pid);
            }
            Event::Free { .. } if last_alloc_pid.is_some_and(|p| p != r.pid) => overlaps += 1,
            _ => {}
        }
    }
    assert_eq!(pids.len(), 3);
    assert_eq!(allocs, 3 * 2 * 400 * 2);
    assert!(
        overlaps > 1000,
        "{overlaps} frees among another worker's allocations"
    );
    // About one session in twenty survives its shift: after round 2 the
    // live bytes (boot objects aside) are far below those at W2c, when the
    // last worker's sessions were all open.
    let r = replay(&t, "linux-5.14");
    let live = |name: &str| r.phase(name).unwrap().ideal_kb - r.phase("A").unwrap().ideal_kb;
    assert!(
        live("W2") * 3 < live("W2c"),
        "{} {}",
        live("W2"),
        live("W2c")
    );
    assert_eq!(r.phases.last().unwrap().name, "END");
}
