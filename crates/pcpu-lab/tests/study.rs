//! A tiny study end to end: every section written, charts valid, output
//! deterministic, missing captures skipped with a note.

use pcpu_lab::study::{run_study, Scale, StudyConfig};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pcpu-lab-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(out: std::path::PathBuf, threads: usize) -> StudyConfig {
    let mut cfg = StudyConfig::new(out);
    cfg.scale = Scale::Small;
    cfg.threads = threads;
    cfg.captures = vec!["/nonexistent/memcg-1000x10-smp4".into()];
    cfg.command = "pcpu study --small".into();
    cfg.seeds = 2;
    cfg.holdout_seeds = 1;
    cfg
}

#[test]
fn tiny_study_writes_every_section_deterministically() {
    let a = tmp("study-a");
    let b = tmp("study-b");
    let mut cfg_a = config(a.clone(), 2);
    cfg_a.json = true;
    let out = run_study(&cfg_a, &|_| {}).unwrap();
    run_study(&config(b.clone(), 1), &|_| {}).unwrap();
    let md = std::fs::read_to_string(&out.doc).unwrap();
    for heading in [
        "## Answers in brief",
        "## 1. How often should the balance work scan and depopulate?",
        "## 2. Are \"1/4 of pages free\" and \"2 or more candidate chunks\" the right triggers?",
        "## 3. Should allocations be packed into fewer chunks after depopulation?",
        "## 4. Do small objects need their own chunks (the slab idea)?",
        "## 5. Placement: keep each task's objects together, or each lifetime",
        "## 6. Who pins the memory",
        "## 7. Cost",
        "## 8. The `pcpu` policy's targets",
        "## How to reproduce",
    ] {
        assert!(md.contains(heading), "missing {heading}");
    }
    assert!(md.contains("**Answer.**"));
    assert!(md.contains("pcpu study --small"));
    // §3's refill orders: the sweeps, then the seeds they were chosen on and
    // the held-out one, each with a row per order.
    assert!(md.contains("### Which sidelined chunk is refilled first"));
    assert!(md.contains("with seeds 1 to 2 (chosen on;"));
    assert!(md.contains("with seeds 3 to 3 (held out"));
    for order in ["`kernel`", "`fullest`", "`room`"] {
        assert_eq!(
            md.matches(&format!("| {order} | 5 |")).count(),
            1,
            "{order}"
        );
        assert_eq!(
            md.matches(&format!("| {order} | 10 |")).count(),
            1,
            "{order}"
        );
    }
    // §2e: the refault reserves over all the seeds (1 to 3), a row per
    // setting and generator, and what they trade in a sentence.
    let table = table_after(
        &md,
        "The five generators again with seeds 1 to 3 (`pcpu` with each refault",
    );
    assert_eq!(table.len(), 2 + 4 * 5, "{table:?}");
    for setting in ["off", "1/8", "1/5", "1/4"] {
        let rows = table[2..]
            .iter()
            .filter(|l| l.starts_with(&format!("| {setting} | ")))
            .count();
        assert_eq!(rows, 5, "{setting}: {table:?}");
    }
    assert!(
        table[2..].iter().all(|l| l.contains(" | 3 | ")),
        "{table:?}"
    );
    assert!(md.contains("resident after removals against linux-5.14): off: "));
    // §8: the derived lifetime classes over the seeds, one row per
    // generator (2 seeds each), and the least floor they allow.
    assert!(md.contains("Lifetime classes derived from the trace over the same seeds"));
    assert!(md.contains("least possible"));
    assert!(md.contains("Lifetime classes derived from the trace over seeds 3 to 3 (held out"));
    let table = table_after(&md, "Lifetime classes derived from the trace over the same");
    assert_eq!(table.len(), 2 + 5, "{table:?}");
    assert!(
        table[2..].iter().all(|l| l.contains(" | 2 | ")),
        "{table:?}"
    );
    assert!(md.contains("traces whose bound is within 1% meet the target"));
    // §5e: long-running classes off and on, per generator, over the seeds
    // and the held-out seed.
    assert!(md.contains("### 5e. Long-running tasks (`grow_beside`)"));
    let table = table_after(
        &md,
        "The generators again with seeds 1 to 2 (`pcpu` with the rule",
    );
    assert_eq!(table.len(), 2 + 2 * 5, "{table:?}");
    assert!(
        table[2..].iter().all(|l| l.contains(" | 2 | ")),
        "{table:?}"
    );
    assert!(md.contains("The generators again with seeds 3 to 3 (held out"));
    // More workers with fewer sessions: two variants, each over its seeds,
    // and the first-fit comparison over every seed.
    let table = table_after(&md, "More workers with fewer sessions each");
    assert_eq!(table.len(), 2 + 2, "{table:?}");
    assert!(table[2].starts_with("| workers-16x"), "{table:?}");
    assert!(md.contains("Even Linux's own placement does not keep `pcpu` within 1% here"));
    // The missing capture is skipped with a note.
    assert_eq!(out.notes.len(), 1);
    assert!(md.contains("> Note: capture `/nonexistent/memcg-1000x10-smp4` not found"));
    // Every chart referenced exists and is an SVG.
    let mut charts = 0;
    for part in md.split("](").skip(1) {
        let name = &part[..part.find(')').unwrap()];
        if name.ends_with(".svg") {
            let svg = std::fs::read_to_string(a.join(name)).unwrap();
            assert!(
                svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
                "{name}"
            );
            charts += 1;
        }
    }
    assert!(charts >= 9, "{charts} charts");
    assert!(a.join("policy-study.json").is_file());
    // Same bytes with another thread count (no wall times by default).
    let md_b = std::fs::read_to_string(b.join("policy-study.md")).unwrap();
    assert_eq!(md.replace("--json", ""), md_b.replace("--json", ""));
    assert!(!md.contains("wall time, ns"));
}

/// The markdown table (header and separator included) whose paragraph
/// starts with `intro`; empty if there is none.
fn table_after<'m>(md: &'m str, intro: &str) -> Vec<&'m str> {
    md.lines()
        .skip_while(|l| !l.starts_with(intro))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect()
}
