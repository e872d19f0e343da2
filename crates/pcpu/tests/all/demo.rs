//! The demo module: phases, policies and the JSON schema.

use pcpu::demo::{self, DemoConfig, PHASES};
use pcpu::{Policy, PolicyKind};

#[test]
fn small_demo_run_and_schema() {
    let cfg = DemoConfig {
        parents: 100,
        children: 10,
        ..DemoConfig::default()
    };
    let mut calls = 0;
    let report = demo::run(&cfg, &mut |_, done, total| {
        assert!(done <= total);
        calls += 1;
    })
    .unwrap();
    assert!(calls > 0);
    assert_eq!(report.groups, 1100);
    assert_eq!(report.units, pcpu::possible_cpus());
    let names: Vec<_> = report.policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(
        names,
        ["linux-5.11", "seed-rfc", "linux-5.14", "pcpu", "pcpu+hints"]
    );
    for p in &report.policies {
        assert_eq!(
            p.phases
                .iter()
                .map(|ph| ph.name.as_str())
                .collect::<Vec<_>>(),
            PHASES
        );
        // Resident: every unit of the CPUs that run the process (all of
        // them unless the tests run with a narrower affinity), none of the
        // others (the groups' objects are never written).
        let units = report.units as u64;
        for ph in &p.phases {
            assert!(
                ph.resident_kb <= ph.percpu_kb && ph.resident_kb * units >= ph.percpu_kb,
                "{}: {ph:?}",
                p.policy
            );
        }
        let kb: Vec<u64> = p.phases.iter().map(|ph| ph.percpu_kb).collect();
        assert!(kb[1] > 10 * kb[0], "{}: {kb:?}", p.policy);
        match p.policy.as_str() {
            "linux-5.11" => assert_eq!(kb[2], kb[1], "5.11 keeps partial chunks"),
            // The balance thread runs concurrently with the frees, so the exact
            // figure varies a little from run to run.
            _ => assert!(kb[2] * 4 < kb[1] * 3, "{}: {kb:?}", p.policy),
        }
    }
    // Lifetime hints: the parents' objects share pages of their own, so
    // removing the children gives back far more than any policy without them.
    let removed = |name: &str| {
        report
            .policies
            .iter()
            .find(|p| p.policy == name)
            .unwrap()
            .phases[2]
            .percpu_kb
    };
    assert!(
        removed("pcpu+hints") * 2 < removed("linux-5.14"),
        "{report:?}"
    );
    let json = serde_json::to_value(&report).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["groups", "page_size", "policies", "units"]);
    assert_eq!(keys(&json["policies"][0]), ["phases", "policy"]);
    assert_eq!(
        keys(&json["policies"][0]["phases"][0]),
        ["name", "percpu_kb", "resident_kb"]
    );
    assert!(json["policies"][2]["phases"][3]["percpu_kb"].is_u64());
    let table = report.table();
    assert_eq!(table.lines().count(), 1 + PHASES.len());
    assert!(table.contains("linux-5.14"));
}

#[test]
fn demo_with_one_policy_and_no_children() {
    let cfg = DemoConfig {
        parents: 5,
        children: 0,
        policies: vec![Policy::new(PolicyKind::Linux61)],
        hinted: vec![],
        ..DemoConfig::default()
    };
    let report = demo::run(&cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.groups, 5);
    assert_eq!(report.policies.len(), 1);
    assert_eq!(report.policies[0].policy, "linux-6.1");
}

#[test]
fn policies_with_knobs_are_named_with_them() {
    let mut keep = Policy::pcpu();
    keep.keep_room = true;
    let cfg = DemoConfig {
        parents: 5,
        children: 2,
        policies: vec![Policy::pcpu()],
        hinted: vec![keep],
        ..DemoConfig::default()
    };
    let report = demo::run(&cfg, &mut |_, _, _| {}).unwrap();
    let names: Vec<_> = report.policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["pcpu", "pcpu:keep_room=true+hints"]);
}

/// More groups than a run takes, or a count that overflows, is a typed
/// error before anything is allocated (it overflowed or aborted in
/// `Vec::with_capacity`).
#[test]
fn too_many_groups_are_refused() {
    for (parents, children) in [(usize::MAX, 10), (1, usize::MAX), (100_001, 9)] {
        let cfg = DemoConfig {
            parents,
            children,
            ..DemoConfig::default()
        };
        assert!(cfg.groups() > demo::MAX_GROUPS);
        let e = demo::run(&cfg, &mut |_, _, _| panic!("nothing to run")).unwrap_err();
        assert!(
            matches!(e, pcpu::Error::InvalidConfig { .. }) && e.to_string().contains("1,000,000"),
            "{e}"
        );
    }
    assert_eq!(
        DemoConfig {
            parents: 100_000,
            children: 9,
            ..DemoConfig::default()
        }
        .groups(),
        demo::MAX_GROUPS
    );
}
