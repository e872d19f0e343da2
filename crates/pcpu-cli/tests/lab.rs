//! End-to-end tests of the lab subcommands: `pcpu gen`, `pcpu pins` and
//! `pcpu study`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const SMALL: &str = "tests/fixtures/memcg-small";

fn pcpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcpu"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run pcpu")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pcpu-cli-lab-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    d
}

/// A small cover-letter capture written by `pcpu gen`.
fn small_capture(name: &str, seed: &str) -> PathBuf {
    let dir = tmp(name);
    let o = pcpu(&[
        "gen",
        "cover-letter",
        "--parents",
        "60",
        "--children",
        "10",
        "--seed",
        seed,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("phases BOOT, A, B, C, D"),
        "{}",
        stdout(&o)
    );
    dir
}

#[test]
fn gen_is_deterministic_and_replays() {
    let a = small_capture("gen-a", "7");
    let b = small_capture("gen-b", "7");
    let c = small_capture("gen-c", "8");
    let text = |d: &Path| std::fs::read(d.join("trace.txt.gz")).unwrap();
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    let o = pcpu(&[
        "replay",
        a.to_str().unwrap(),
        "--policy",
        "linux-5.14",
        "--json",
    ]);
    assert_ok(&o);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["BOOT", "A", "B", "C", "D"]);
    assert_eq!(r["placement_agreement"], 1.0);
    assert_eq!(r["failed_allocs"], 0);
}

#[test]
fn pins_reports_call_sites_and_tasks() {
    let dir = small_capture("pins", "1");
    let d = dir.to_str().unwrap();
    // `pcpu pins` at C under linux-5.14, with `extra` arguments.
    let pins_at_c = |extra: &[&str]| {
        let mut args = vec!["pins", d, "--at", "C", "--policy", "linux-5.14"];
        args.extend_from_slice(extra);
        pcpu(&args)
    };
    let o = pins_at_c(&["--top", "3"]);
    assert_ok(&o);
    let text = stdout(&o);
    for needle in [
        "at phase C: policy linux-5.14, first fit placement",
        "resident (Percpu):",
        "holding live objects:",
        "Top 3 of",
        "call sites by pinned pages:",
        "tasks by pinned pages:",
        "mkdir-",
        "pinned: pages (per unit)",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let o = pins_at_c(&["--json"]);
    assert_ok(&o);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["phase"], "C");
    let sites = r["by_call_site"].as_array().unwrap();
    // 60 surviving parents, 11 objects each, plus the boot objects.
    let objects: u64 = sites.iter().map(|s| s["objects"].as_u64().unwrap()).sum();
    assert_eq!(objects, r["live_objects"].as_u64().unwrap());
    let ref_row = sites
        .iter()
        .find(|s| s["owner"] == "percpu_ref_init")
        .unwrap();
    assert_eq!(ref_row["objects"], 300);
    let share: f64 = sites
        .iter()
        .map(|s| s["share_pages"].as_f64().unwrap())
        .sum();
    assert!((share - r["used_pages"].as_f64().unwrap()).abs() < 1e-6);
    // Ordered by share: the rows come in falling share.
    let o = pins_at_c(&["--sort", "share", "--json"]);
    assert_ok(&o);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let shares: Vec<f64> = r["by_call_site"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["share_pages"].as_f64().unwrap())
        .collect();
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "{shares:?}");
    let o = pcpu(&["pins", d, "--at", "C", "--sort", "share", "--top", "2"]);
    assert!(stdout(&o).contains("call sites by share of the pages:"));
    // Unknown phase: a usage error naming the phases.
    let o = pcpu(&["pins", d, "--at", "Z"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no phase `Z`") && err.contains("BOOT, A, B, C, D"),
        "{err}"
    );
}

#[test]
fn pins_on_a_real_capture_counts_the_pre_traced_bytes() {
    let o = pcpu(&["pins", SMALL, "--at", "A", "--json"]);
    assert_ok(&o);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let sites = r["by_call_site"].as_array().unwrap();
    let before = sites
        .iter()
        .find(|s| s["owner"] == "(allocated before tracing)")
        .expect("pre-filled first chunk bytes are attributed");
    assert_eq!(before["objects"], 0);
    assert!(before["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn tiny_study_into_a_temp_dir() {
    let dir = tmp("study");
    let o = pcpu(&[
        "study",
        "--small",
        "--no-captures",
        "--threads",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.starts_with("wrote "), "{text}");
    let md = std::fs::read_to_string(dir.join("policy-study.md")).unwrap();
    assert!(md.contains("# Percpu depopulation and placement: a policy study"));
    assert!(md.contains("--no-captures --small"));
    assert!(dir.join("study-policy.svg").is_file());
    // A file where the folder should be is a usage error.
    let f = tmp("study-file");
    std::fs::write(&f, "x").unwrap();
    let o = pcpu(&["study", "--small", "--out", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // So is a capture named with --capture that is not there (a default
    // one is skipped with a note), before anything runs.
    let o = pcpu(&[
        "study",
        "--small",
        "--capture",
        "/nonexistent",
        "--out",
        tmp("study-missing").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent: not a capture"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}
