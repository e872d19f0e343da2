//! End-to-end tests of the `pcpu` binary on the small fixtures in
//! `tests/fixtures/` (copied from pcpu-trace's: `memcg-small/` is the head of
//! a real 6.1 capture up to phase A; `malformed/` is the same trace with line
//! 115 missing its `off=` field and line 200 replaced by garbage).
//!
//! `UPDATE_GOLDEN=1 cargo test -p pcpu-cli` rewrites `tests/golden/*.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const SMALL: &str = "tests/fixtures/memcg-small";
const MALFORMED: &str = "tests/fixtures/malformed";
const GEOMETRY: &str = "s217088 r8192 d28672 u524288";

/// Runs `pcpu args...` in the package folder, with `stdin` (or none).
fn pcpu_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcpu"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("run pcpu");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // The command may reject its input and exit before reading it all.
        if let Err(e) = pipe.write_all(data) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    child.wait_with_output().expect("wait for pcpu")
}

fn pcpu(args: &[&str]) -> Output {
    pcpu_with_stdin(args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and an empty stderr (no progress bar off a terminal).
/// Runs `pcpu args...`, which must succeed, and parses its standard output
/// as JSON.
/// `pcpu replay - --json` of `trace` on standard input, with the
/// geometry and units given by flags; it must succeed.
/// `pcpu replay` of standard input, with the geometry flags, as JSON.
const REPLAY_STDIN_JSON: [&str; 7] = [
    "replay",
    "-",
    "--geometry",
    GEOMETRY,
    "--units",
    "4",
    "--json",
];

fn replay_stdin_json(trace: &[u8]) -> Value {
    let o = pcpu_with_stdin(&REPLAY_STDIN_JSON, Some(trace));
    assert_ok(&o);
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn json(args: &[&str]) -> Value {
    let o = pcpu(args);
    assert_ok(&o);
    serde_json::from_str(&stdout(&o)).expect("JSON on standard output")
}

/// `pcpu replay CAPTURE --json --balance modelled --policy POLICY`.
fn modelled_replay(capture: &str, policy: &str) -> Value {
    json(&[
        "replay",
        capture,
        "--json",
        "--balance",
        "modelled",
        "--policy",
        policy,
    ])
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status.code(),
        stderr(o)
    );
}

/// Asserts a failure with `code` and a single `pcpu: error:` line containing
/// every one of `needles`.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("pcpu: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pcpu-cli-tests");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

/// The fixture trace, uncompressed text, for standard input tests.
fn small_trace_gz() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(SMALL)
            .join("trace.txt.gz"),
    )
    .expect("fixture")
}

/// Drops the fields that change from run to run.
fn normalise(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.remove("elapsed_s");
            m.remove("events_per_s");
        }
        Value::Array(a) => {
            for r in a.iter_mut() {
                *r = normalise(r.take());
            }
        }
        _ => {}
    }
    v
}

/// Checks that `actual` has every field of `expected` with the same value
/// (recursively; arrays must have the same length). Fields `actual` has beyond
/// `expected` are fine: the JSON schema only ever gains fields. Returns the
/// path of the first difference.
fn contains(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                let av = a.get(k).ok_or_else(|| format!("{p}: missing"))?;
                contains(ev, av, &p)?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: {} elements, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                contains(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: {actual}, expected {expected}")),
    }
}

/// Compares `actual` (normalised) with `tests/golden/<name>` (every golden
/// field must be present with the same value; new fields are allowed), or
/// rewrites the golden file when `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let actual = normalise(serde_json::from_str(actual).expect("valid JSON"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).expect("golden is JSON");
    if let Err(diff) = contains(&expected, &actual, "$") {
        panic!(
            "{} differs from the output at {diff} (run with UPDATE_GOLDEN=1 to accept):\n{}",
            path.display(),
            serde_json::to_string_pretty(&actual).unwrap()
        );
    }
}

#[test]
fn golden_comparison_allows_new_fields_only() {
    let golden: Value = serde_json::json!({"a": 1, "p": [{"x": 1}]});
    assert!(contains(
        &golden,
        &serde_json::json!({"a": 1, "b": 2, "p": [{"x": 1, "y": 0}]}),
        "$"
    )
    .is_ok());
    assert!(contains(&golden, &serde_json::json!({"a": 2, "p": [{"x": 1}]}), "$").is_err());
    assert!(contains(&golden, &serde_json::json!({"b": 1, "p": [{"x": 1}]}), "$").is_err());
    assert!(contains(&golden, &serde_json::json!({"a": 1, "p": []}), "$").is_err());
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).expect("plot written");
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "not SVG: {}",
        &svg[..svg.len().min(80)]
    );
    assert!(
        svg.contains("<path") || svg.contains("<polyline"),
        "no lines drawn"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn replay_prints_a_table_by_phase() {
    let o = pcpu(&["replay", SMALL]);
    assert_ok(&o);
    assert_eq!(stderr(&o), "");
    let out = stdout(&o);
    assert!(
        out.starts_with(
            "memcg-small: policy linux-6.1, simulate placement, recorded balance, 4 units"
        ),
        "{out}"
    );
    assert!(
        out.contains("phase  Percpu ours kB  kernel kB  diff %  ideal kB  floor kB  kernel floor kB  chunks\n"),
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .expect("phase row");
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        row("BOOT"),
        ["BOOT", "1040", "1040", "+0.0", "96", "112", "112", "3"]
    );
    assert_eq!(
        row("A"),
        ["A", "1040", "1040", "+0.0", "112", "128", "128", "3"]
    );
    for line in [
        "events:               2384 (2296 allocs, 21 frees)",
        "placement agreement:  100.00 % of allocations at the kernel's chunk and offset",
        "populated pages:      ours 93, kernel 93 per unit (+0.0 %)",
        "depopulated pages:    ours 0, kernel 0 per unit (+0.0 %)",
        "balance runs:         31 (recorded); chunks created 1, destroyed 0",
    ] {
        assert!(out.contains(line), "`{line}` not in:\n{out}");
    }
    assert!(
        out.contains("elapsed:") && out.contains("events/s"),
        "{out}"
    );
}

#[test]
fn replay_with_derived_classes_shows_their_bound() {
    let o = pcpu(&["replay", SMALL, "--policy", "pcpu", "--classes", "derived"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("ideal kB  floor kB  class bound kB  kernel floor kB  chunks\n"),
        "{out}"
    );
    // ideal <= class bound <= floor on every phase row.
    let rows: Vec<Vec<u64>> = out
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[4..7].iter().map(|x| x.parse().unwrap()).collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{out}");
    for r in &rows {
        assert!(r[0] <= r[2] && r[2] <= r[1], "ideal, floor, bound {r:?}");
    }
}

#[test]
fn replay_json_matches_golden() {
    let o = pcpu(&["replay", SMALL, "--json"]);
    assert_ok(&o);
    let out = stdout(&o);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["elapsed_s"].is_f64() && v["events_per_s"].is_f64());
    golden("replay-memcg-small.json", &out);
}

#[test]
fn replay_kernel_placement_json_matches_golden() {
    let o = pcpu(&[
        "replay",
        SMALL,
        "--json",
        "--placement",
        "kernel",
        "--policy",
        "linux-5.14",
        "--balance",
        "modelled",
    ]);
    assert_ok(&o);
    golden("replay-memcg-small-kernel-modelled.json", &stdout(&o));
}

#[test]
fn replay_with_invariant_checks_and_no_prefill() {
    let v = json(&[
        "replay",
        SMALL,
        "--check",
        "--no-prefill",
        "--policy",
        "seed-rfc",
        "--json",
    ]);
    assert_eq!(v["policy"], "seed-rfc");
    assert_eq!(v["events"], 2384);
}

#[test]
fn replay_with_per_cpu_magazines() {
    let v = json(&["replay", SMALL, "--magazine", "16", "--check", "--json"]);
    // 13 of the 21 freed areas are allocated again from their CPU's magazine.
    assert_eq!(v["magazine_hits"], 13);
    assert_eq!(
        (v["allocs"].as_u64(), v["failed_allocs"].as_u64()),
        (Some(2296), Some(0))
    );
    assert!(v["placement_agreement"].as_f64().unwrap() < 1.0);
    let plain: Value = json(&["replay", SMALL, "--json"]);
    assert_eq!(plain["magazine_hits"], 0);
}

#[test]
fn replay_reads_standard_input_with_flags_for_geometry() {
    let v = replay_stdin_json(&small_trace_gz());
    assert_eq!(v["trace"], "stdin");
    // Same result as from the capture folder, whose dmesg gives the same geometry.
    let mut from_dir: Value = json(&["replay", SMALL, "--json"]);
    from_dir["trace"] = "stdin".into();
    assert_eq!(normalise(v), normalise(from_dir));
}

#[test]
fn replay_accepts_a_trace_file() {
    // The standard trace file of a capture folder is the capture.
    let v = json(&[
        "replay",
        "tests/fixtures/memcg-small/trace.txt.gz",
        "--json",
    ]);
    let from_dir: Value = json(&["replay", SMALL, "--json"]);
    assert_eq!(normalise(v), normalise(from_dir));
}

#[test]
fn replay_plot_writes_svg() {
    let path = tmp("replay.svg");
    let _ = std::fs::remove_file(&path);
    let o = pcpu(&["replay", SMALL, "--plot", path.to_str().unwrap()]);
    assert_ok(&o);
    assert_svg(&path);
}

#[test]
fn compare_prints_one_table_for_all_policies() {
    let o = pcpu(&["compare", SMALL]);
    assert_ok(&o);
    let out = stdout(&o);
    let header = out
        .lines()
        .find(|l| l.contains("linux-5.11"))
        .expect("group header");
    let pos: Vec<usize> = ["linux-5.11", "seed-rfc", "linux-5.14", "linux-6.1", "pcpu"]
        .iter()
        .map(|p| header.find(p).expect(p))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{header}");
    assert!(
        out.contains("phase") && out.contains("kernel kB") && out.contains("ours kB"),
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        let line = out.lines().find(|l| l.starts_with(name)).expect(name);
        line.split_whitespace()
            .filter(|c| *c != "|")
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("BOOT"),
        [
            "BOOT", "1040", "1040", "+0.0", "1040", "+0.0", "1040", "+0.0", "1040", "+0.0", "1040",
            "+0.0"
        ]
    );
    assert_eq!(row("populated pages")[2..4], ["93", "93"]);
    assert_eq!(row("depopulated pages")[2..4], ["0", "0"]);
}

/// `compare --placement kernel`: every policy places where the kernel did,
/// so only population and depopulation differ; linux-6.1 then matches the
/// kernel exactly on the fixture.
#[test]
fn compare_under_the_kernels_placement() {
    let v = json(&[
        "compare",
        SMALL,
        "--placement",
        "kernel",
        "--policies",
        "linux-6.1,pcpu",
        "--json",
    ]);
    let reports = v.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for r in reports {
        assert_eq!(r["placement"], "kernel");
        assert_eq!(r["failed_allocs"], 0);
    }
    for p in reports[0]["phases"].as_array().unwrap() {
        assert_eq!(p["percpu_kb"], p["kernel_percpu_kb"], "{p}");
    }
}

/// Policies with long names (knobs) are lettered, with a key, so that the
/// table stays narrow.
#[test]
fn compare_letters_long_policy_names() {
    let o = pcpu(&[
        "compare",
        SMALL,
        "--policies",
        "pcpu,pcpu:refault_reserve_divisor=4,linux-5.14:sideline=false",
        "--balance",
        "modelled",
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    for key in [
        "(A) = pcpu\n",
        "(B) = pcpu:refault_reserve_divisor=4\n",
        "(C) = linux-5.14:sideline=false\n",
    ] {
        assert!(out.contains(key), "{key} in {out}");
    }
    let widest = out.lines().take(16).map(str::len).max().unwrap();
    assert!(widest < 100, "{widest} columns:\n{out}");
}

/// `--balance every-run=N` keeps every Nth recorded run, `timer=N` runs the
/// balance work every N allocations and frees instead (the study's §1
/// schedules, for any trace); the report names the schedule.
#[test]
fn balance_schedules_thin_or_replace_the_recorded_runs() {
    let runs = |balance: &str| {
        let v = json(&[
            "replay",
            SMALL,
            "--policy",
            "linux-5.14",
            "--balance",
            balance,
            "--json",
        ]);
        assert_eq!(v["balance"], balance, "{v}");
        v["balance_runs"].as_u64().unwrap()
    };
    let recorded = runs("recorded");
    assert_eq!(recorded, 31);
    assert_eq!(runs("every-run=4"), recorded / 4);
    let v = json(&["replay", SMALL, "--balance", "timer=512", "--json"]);
    let events = v["allocs"].as_u64().unwrap() + v["frees"].as_u64().unwrap();
    assert_eq!(v["balance_runs"].as_u64().unwrap(), events / 512);
    // compare names it too.
    let o = pcpu(&[
        "compare",
        SMALL,
        "--policies",
        "pcpu",
        "--balance",
        "timer=512",
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("timer=512 balance"), "{}", stdout(&o));
    // A work item's latency instead of the recorded runs: the kernel's
    // rules, 50 µs of trace time after each scheduling.
    assert!(runs("delay=50") > 0);
    // `auto` on a recording without balance events is that delay, named.
    let v = json(&["replay", CHURN_STATS, "--json"]);
    assert_eq!(v["balance"], "delay=50", "{v}");
    for bad in ["every-run=0", "timer=x", "sometimes", "delay=0"] {
        assert_fails(
            &pcpu(&["replay", SMALL, "--balance", bad]),
            2,
            &["--balance"],
        );
    }
}

/// `--baseline`: differences against one of the policies, which must be
/// among those compared.
#[test]
fn compare_against_a_baseline_policy() {
    let o = pcpu(&[
        "compare",
        SMALL,
        "--policies",
        "linux-5.11,pcpu",
        "--baseline",
        "linux-5.11",
        "--magazine",
        "8",
        "--balance",
        "modelled",
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("linux-5.11 (baseline)"), "{out}");
    assert!(out.contains("against linux-5.11"), "{out}");
    assert!(out.contains("served by magazines:"), "{out}");
    // The baseline's own differences are zero.
    let a = out.lines().find(|l| l.starts_with('A')).unwrap();
    let cells: Vec<&str> = a.split_whitespace().filter(|c| *c != "|").collect();
    assert_eq!(cells[3], "+0.0", "{a}");
    assert_fails(
        &pcpu(&[
            "compare",
            SMALL,
            "--policies",
            "pcpu",
            "--baseline",
            "seed-rfc",
        ]),
        2,
        &["--baseline seed-rfc", "not one of"],
    );
}

#[test]
fn compare_json_is_an_array_of_reports() {
    let v = json(&[
        "compare",
        SMALL,
        "--policies",
        "linux-5.11,linux-6.1",
        "--json",
    ]);
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["policy"], "linux-5.11");
    assert_eq!(a[1]["policy"], "linux-6.1");
    // Same schema as `replay --json`, and the same report for the same policy.
    let single: Value = json(&["replay", SMALL, "--json"]);
    assert_eq!(normalise(a[1].clone()), normalise(single));
}

#[test]
fn compare_plot_writes_svg() {
    let path = tmp("compare.svg");
    let _ = std::fs::remove_file(&path);
    let o = pcpu(&["compare", SMALL, "--plot", path.to_str().unwrap()]);
    assert_ok(&o);
    assert_svg(&path);
    let svg = std::fs::read_to_string(&path).unwrap();
    for label in [
        "linux-5.11",
        "seed-rfc",
        "linux-5.14",
        "linux-6.1",
        "BOOT",
        "floor",
        "ideal",
        "kernel",
    ] {
        assert!(svg.contains(label), "{label} missing from the plot");
    }
}

#[test]
fn stats_at_a_phase_prints_percpu_stats() {
    let o = pcpu(&["stats", SMALL, "--at", "A"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.starts_with("Percpu Memory Statistics\nAllocation Info:\n"),
        "{out}"
    );
    assert!(
        out.contains("  unit_size           :       524288\n"),
        "{out}"
    );
    assert!(out.contains("Chunk: <- First Chunk\n"), "{out}");
    let nr_alloc = |s: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with("nr_alloc "))
            .map(str::to_string)
            .expect("nr_alloc")
    };
    let boot = pcpu(&["stats", SMALL, "--at", "BOOT", "--policy", "linux-5.14"]);
    assert_ok(&boot);
    assert_ne!(
        nr_alloc(&out),
        nr_alloc(&stdout(&boot)),
        "stats at A and BOOT should differ"
    );
}

/// `stats --map`: one character per page of every chunk, agreeing with each
/// chunk's populated count and with the JSON's `page_map`.
#[test]
fn stats_map_shows_every_page() {
    let o = pcpu(&["stats", SMALL, "--at", "A", "--map"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.starts_with("Page map "), "{out}");
    let s = json(&["stats", SMALL, "--at", "A", "--json"]);
    // The boot log's `alloc=1*2097152`, as the kernel's Allocation Info
    // prints it (and the text output too).
    assert_eq!(s["allocation_info"]["atom_size"], 2097152);
    assert_eq!(s["allocation_info"]["alloc_size"], 2097152);
    assert_eq!(s["allocation_info"]["unit_size"], 524288);
    let text = stdout(&pcpu(&["stats", SMALL, "--at", "A"]));
    assert!(
        text.contains("  atom_size           :      2097152\n"),
        "{text}"
    );
    for c in s["chunks"].as_array().unwrap() {
        let list = c["list"].as_str().unwrap();
        assert_eq!(
            c["isolated"],
            list == "sidelined" || list == "to_depopulate",
            "{c}"
        );
        let map = c["page_map"].as_str().unwrap();
        assert_eq!(map.len() as u64, c["nr_pages"].as_u64().unwrap());
        let populated = map.chars().filter(|&p| p == '#' || p == '.').count();
        assert_eq!(populated as u64, c["nr_populated"].as_u64().unwrap());
        let empty = map.chars().filter(|&p| p == '.').count() as i64;
        assert_eq!(empty, c["empty_pop_pages"].as_i64().unwrap(), "{c}");
        // The text shows the same pages, 64 to a line after the page number.
        let header = format!("chunk {} (", c["id"]);
        let block: String = out
            .split("\nchunk ")
            .map(|b| format!("chunk {b}"))
            .find(|b| b.starts_with(&header))
            .unwrap_or_else(|| panic!("no {header} in {out}"))
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
            .collect();
        assert_eq!(block, map, "chunk {}", c["id"]);
    }
    assert_fails(
        &pcpu(&["stats", SMALL, "--at", "A", "--map", "--json"]),
        2,
        &["--json"],
    );
}

#[test]
fn error_missing_input() {
    assert_fails(
        &pcpu(&["replay", "tests/fixtures/no-such-capture"]),
        2,
        &["no-such-capture", "no such file"],
    );
    assert_fails(&pcpu(&["replay", "tests/fixtures"]), 2, &["no trace"]);
}

#[test]
fn error_malformed_trace_strict() {
    let o = pcpu(&["replay", MALFORMED]);
    assert_fails(&o, 2, &["line 115", "missing field `off`", "--lenient"]);
    assert_eq!(stdout(&o), "");
}

#[test]
fn malformed_trace_lenient_skips_and_reports() {
    let o = pcpu(&["replay", MALFORMED, "--lenient"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("skipped 2 malformed lines"), "{err}");
    assert!(
        err.contains("line 115: percpu_alloc_percpu: missing field `off`"),
        "{err}"
    );
    assert!(err.contains("line 200:"), "{err}");
    // The free of the allocation on line 115, in the first chunk, is now
    // that of an object from before tracing.
    assert!(!err.contains("free of pointers"), "{err}");
    assert!(
        stdout(&o).contains("events:               2382 (2294 allocs, 20 frees)"),
        "{}",
        stdout(&o)
    );
}

/// A live capture from a 6.18 kernel (pcpu-trace's fixture; not started at boot).
const LIVE: &str = "../pcpu-trace/tests/fixtures/live-6.18";
const LIVE_GEOMETRY: [&str; 4] = ["--geometry", "s185560 r0 d31528 u1048576", "--units", "2"];

#[test]
fn trace_cmd_and_perf_text_replay() {
    // trace-cmd report's text, with its phase markers, recorded on a
    // running kernel: the chunk already in use is inferred from the trace
    // (strict replay, no warning), and the Linux models place every
    // allocation where the 6.18 kernel did, with its Percpu at every phase.
    let report = format!("{LIVE}/report.txt.gz");
    let mut args = vec![
        "compare",
        &report,
        "--policies",
        "linux-5.14,linux-6.1,pcpu",
    ];
    args.extend(LIVE_GEOMETRY);
    let o = pcpu(&args);
    assert_ok(&o);
    assert_eq!(stderr(&o), "");
    let out = stdout(&o);
    for phase in ["A", "B", "C", "D"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{phase} "))
                && l.contains("1856 |    1856    +0.0 |    1856    +0.0 |")),
            "{out}"
        );
    }
    assert!(
        out.contains("placement agreement: linux-5.14 100.00 %, linux-6.1 100.00 %"),
        "{out}"
    );
    // Without the inference (--no-prefill) it is a trace that did not start
    // at boot: strict replay stops, lenient replay says so once for the
    // policies that skipped the same (the trace's fault, not theirs).
    args.push("--no-prefill");
    assert_fails(&pcpu(&args), 1, &["without a percpu_create_chunk event"]);
    args.push("--lenient");
    let o = pcpu(&args);
    assert_ok(&o);
    let err = stderr(&o);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("used without a percpu_create_chunk event"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("linux-5.14, linux-6.1, pcpu: 1 chunk"),
        "{err}"
    );
    // perf script's text: its first event frees an object allocated before
    // it started, replayed as such; perf's lost events show as placements
    // that differ from the kernel's.
    let perf = format!("{LIVE}/perf.txt.gz");
    let mut args = vec!["replay", &perf];
    args.extend(LIVE_GEOMETRY);
    let o = pcpu(&args);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("events:               1036 (523 allocs, 511 frees)"),
        "{out}"
    );
    assert!(
        out.contains("1 dynamic chunk already in use (inferred from the trace); 2 objects allocated before tracing freed"),
        "{out}"
    );
    // Without the inference, strict replay stops at that first free.
    args.push("--no-prefill");
    assert_fails(
        &pcpu(&args),
        1,
        &["line 1: free of pointer 0x60795bb03b00", "--lenient"],
    );
}

/// A recording with the kernel's percpu_stats at every marker
/// (pcpu-replay's fixture).
const CHURN_STATS: &str = "../pcpu-replay/tests/fixtures/live-6.18-churn";

/// `pcpu stats` and `pcpu replay` put the kernel's own figures beside ours
/// where the capture has them: at R2c the replay has the kernel's empty
/// pages exactly.
#[test]
fn the_kernels_percpu_stats_beside_ours() {
    let o = pcpu(&["stats", CHURN_STATS, "--at", "R2c"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("The kernel's percpu_stats at R2c (percpu-stats.txt) beside ours"),
        "{out}"
    );
    assert!(out.contains("empty_pop_pages 163 (kernel 163)"), "{out}");
    let s = json(&["stats", CHURN_STATS, "--at", "R2c", "--json"]);
    assert_eq!(s["kernel"]["empty_pop_pages"], 163);
    assert_eq!(s["kernel"]["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(s["kernel"]["chunks"][0]["kind"], "first");
    let o = pcpu(&["replay", CHURN_STATS]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("phase  empty pages ours  kernel  chunks ours  kernel"),
        "{out}"
    );
    assert!(
        out.contains("1 free chunk the trace never uses (the kernel's percpu_stats); 223 empty pages per unit populated from the start, as the kernel's percpu_stats had them"),
        "{out}"
    );
    // Without the snapshot file the figures are not there.
    let r = json(&["replay", SMALL, "--json"]);
    assert!(r["phases"][0]["kernel_empty_pop_pages"].is_null());
}

/// A recording whose kernel left two frees untraced (pcpu-replay's
/// fixture): `pcpu replay` stops at the first allocation over a live
/// object and says what `--lenient` does; with it, the report counts them
/// and every allocation lands where the kernel put it; `compare` warns.
#[test]
fn a_recording_with_lost_frees_replays_with_lenient() {
    let lost = "../pcpu-replay/tests/fixtures/live-6.18-lost-frees";
    let o = pcpu(&["replay", lost]);
    assert_fails(
        &o,
        1,
        &[
            "line 2123",
            "allocated again while live",
            "--lenient replays the free there",
        ],
    );
    let r = json(&["replay", lost, "--lenient", "--json"]);
    assert_eq!(r["implied_frees"], 2);
    assert_eq!(r["unknown_frees"], 0);
    assert_eq!(r["bad_events"], 0);
    assert_eq!(r["placement_agreement"], 1.0);
    let o = pcpu(&["compare", lost, "--lenient", "--policies", "linux-6.1,pcpu"]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains(
            "linux-6.1, pcpu: 2 frees the trace lost, replayed where the kernel allocated over the object (--lenient)"
        ),
        "{}",
        stderr(&o)
    );
}

/// `pcpu record` on a stand-in tracefs (plain files: each holds the last
/// value written, `trace_marker` every marker): the workload runs with
/// PCPU_TRACEFS set and marks a phase with `pcpu mark`; the folder written
/// replays (lenient: not from boot) with the geometry derived from
/// percpu_stats.
#[test]
fn record_and_mark_on_a_stand_in_tracefs() {
    let dir = std::env::temp_dir().join(format!("pcpu-cli-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fs = dir.join("tracefs");
    for (file, text) in [
        ("trace_marker", ""),
        ("trace", ""),
        ("tracing_on", "1\n"),
        ("current_tracer", "nop\n"),
        ("buffer_size_kb", "1408\n"),
        ("trace_options", "hash-ptr\n"),
        ("events/enable", "0\n"),
        ("events/percpu/enable", "0\n"),
        ("per_cpu/cpu0/stats", "overrun: 0\n"),
    ] {
        let p = fs.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let meminfo = dir.join("meminfo");
    std::fs::write(&meminfo, "Percpu:             872 kB\n").unwrap();
    let possible = dir.join("possible");
    std::fs::write(&possible, "0-1\n").unwrap();
    let empty_log = dir.join("dmesg");
    std::fs::write(&empty_log, "").unwrap();
    // The kernel's events: the live 6.18 fixture's tracefs text.
    let mut events = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(LIVE)
                    .join("trace.txt.gz"),
            )
            .unwrap(),
        ),
        &mut events,
    )
    .unwrap();
    let events_file = dir.join("events.txt");
    std::fs::write(&events_file, &events).unwrap();
    let out = dir.join("capture");
    let pcpu_bin = env!("CARGO_BIN_EXE_pcpu");
    let s = |p: &Path| p.display().to_string();
    let (fs_s, out_s, mi_s, pos_s, log_s) =
        (s(&fs), s(&out), s(&meminfo), s(&possible), s(&empty_log));
    // The kernel's percpu_stats: the fixture's allocation info (the
    // geometry), then counters and chunks as a 6.18 kernel prints them.
    let stats_file = dir.join("percpu_stats");
    let head = std::fs::read_to_string(format!(
        "{}/../pcpu-trace/tests/fixtures/live-6.18/percpu_stats.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    std::fs::write(
        &stats_file,
        head + "\nGlobal Stats:\n----------------------------------------\n  \
                nr_cur_alloc        :         1192\n  nr_chunks           :            2\n  \
                empty_pop_pages     :           37\n\nPer Chunk Stats:\n\
                ----------------------------------------\nChunk: <- First Chunk\n  \
                nr_alloc            :          528\n  empty_pop_pages     :            0\n  \
                free_bytes          :           20\n\nChunk:\n  nr_alloc            :          664\n  \
                empty_pop_pages     :           37\n  free_bytes          :       931244\n",
    )
    .unwrap();
    let stats = s(&stats_file);
    // `pcpu mark` saves the kernel's percpu_stats beside its marker, into
    // the file `pcpu record` names in PCPU_STATS_OUT.
    let script = format!(
        "test -n \"$PCPU_STATS_OUT\" && cat '{}' >> \"$PCPU_TRACEFS/trace\" && \
         '{pcpu_bin}' mark B --meminfo '{}' --percpu-stats '{stats}'",
        events_file.display(),
        meminfo.display()
    );
    let args = [
        "record",
        "--out",
        &out_s,
        "--tracefs",
        &fs_s,
        "--meminfo",
        &mi_s,
        "--percpu-stats",
        &stats,
        "--possible",
        &pos_s,
        "--dmesg",
        &log_s,
        "--",
        "sh",
        "-c",
        &script,
    ];
    let o = pcpu(&args);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("geometry from percpu_stats (geometry.txt)"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("--lenient"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("the kernel's percpu_stats at every marker (percpu-stats.txt)"),
        "{}",
        stdout(&o)
    );
    let snapshots = pcpu_trace::parse_stats_snapshots(
        &std::fs::read_to_string(out.join("percpu-stats.txt")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = snapshots.iter().map(|s| s.phase.as_str()).collect();
    assert_eq!(names, ["START", "B", "END"]);
    let fixture =
        pcpu_trace::parse_percpu_stats(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(snapshots.iter().all(|s| s.stats == fixture));
    let markers = std::fs::read_to_string(fs.join("trace_marker")).unwrap();
    assert_eq!(
        markers,
        "PHASE START begin\nPHASE START Percpu: 872 kB\nPHASE B begin\nPHASE B Percpu: 872 kB\nPHASE END begin\nPHASE END Percpu: 872 kB\n"
    );
    // Put back as they were.
    for (file, text) in [
        ("tracing_on", "1\n"),
        ("buffer_size_kb", "1408\n"),
        ("trace_options", "hash-ptr\n"),
        ("events/percpu/enable", "0\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(fs.join(file)).unwrap(),
            text,
            "{file}"
        );
    }
    // The capture replays with the geometry it holds (its phases are the
    // fixture's own markers: the stand-in's `trace_marker` is a plain file).
    let o = pcpu(&["replay", &out_s, "--lenient"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("2 units of 4 kB pages"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("events:               1090 (541 allocs, 541 frees)"),
        "{}",
        stdout(&o)
    );
    // Beside ours, the kernel's empty pages and chunks at the marker that
    // has a snapshot (the fixture's own B).
    let kernel = fixture.empty_pop_pages.to_string();
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("B ")
            && l.split_whitespace().nth(2) == Some(kernel.as_str())
            && l.split_whitespace().nth(4) == Some(&fixture.chunks.len().to_string())),
        "{}",
        stdout(&o)
    );
    // A folder holding a trace is refused before tracing is touched.
    std::fs::write(fs.join("events/percpu/enable"), "untouched\n").unwrap();
    assert_fails(&pcpu(&args), 2, &["a trace is there already"]);
    assert_eq!(
        std::fs::read_to_string(fs.join("events/percpu/enable")).unwrap(),
        "untouched\n"
    );
    // A workload that fails: the capture is still saved, exit 1.
    let out2 = format!("{out_s}2");
    let mut failing = args;
    failing[2] = &out2;
    let last = failing.len() - 1;
    failing[last] = "exit 3";
    std::fs::write(fs.join("events/percpu/enable"), "0\n").unwrap();
    let o = pcpu(&failing);
    assert_fails(&o, 1, &["the workload failed", "the capture is saved"]);
    assert!(Path::new(&out2).join("trace.txt.gz").exists());
    // With the boot log's percpu lines at hand, those lines are kept.
    let out3 = format!("{out_s}3");
    let boot_log = format!("{}/{SMALL}/dmesg-percpu.txt", env!("CARGO_MANIFEST_DIR"));
    let mut with_log = args;
    with_log[2] = &out3;
    with_log[12] = &boot_log;
    assert_eq!(with_log[11], "--dmesg");
    // No percpu_stats (debugfs not mounted): said, and the workload gets
    // no PCPU_STATS_OUT.
    assert_eq!(with_log[7], "--percpu-stats");
    let no_stats = dir.join("no-such-percpu_stats").display().to_string();
    with_log[8] = &no_stats;
    with_log[last] = "test -z \"$PCPU_STATS_OUT\"";
    let o = pcpu(&with_log);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("no percpu_stats snapshots"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&out3).join("percpu-stats.txt").exists());
    assert!(
        stdout(&o).contains("geometry from the kernel log (dmesg-percpu.txt)"),
        "{}",
        stdout(&o)
    );
    let percpu_lines: String = std::fs::read_to_string(&boot_log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("percpu: ") || l.contains("pcpu-alloc: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(percpu_lines.lines().count(), 4);
    assert_eq!(
        std::fs::read_to_string(Path::new(&out3).join("dmesg-percpu.txt")).unwrap(),
        percpu_lines
    );
    assert!(!Path::new(&out3).join("geometry.txt").exists());
    // SIGTERM to the recording (as a service manager or `kill` sends it)
    // is passed on to the workload: it ends, the capture is saved and
    // tracefs put back.
    let out4 = format!("{out_s}4");
    let mut long = args;
    long[2] = &out4;
    long[last] = "exec sleep 60";
    std::fs::write(fs.join("trace_marker"), "").unwrap();
    let mut rec = Command::new(env!("CARGO_BIN_EXE_pcpu"))
        .args(long)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waited = |what: &str, cond: &mut dyn FnMut() -> bool| {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(start.elapsed().as_secs() < 60, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    waited("the recording starts", &mut || {
        std::fs::read_to_string(fs.join("trace_marker"))
            .unwrap()
            .contains("PHASE START Percpu")
    });
    assert_eq!(
        std::fs::read_to_string(fs.join("events/percpu/enable")).unwrap(),
        "1\n"
    );
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", rec.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    waited("the recording ends", &mut || {
        status = rec.try_wait().unwrap();
        status.is_some()
    });
    let o = rec.wait_with_output().unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("the workload failed"), "{}", stderr(&o));
    assert!(Path::new(&out4).join("trace.txt.gz").exists());
    assert_eq!(
        std::fs::read_to_string(fs.join("events/percpu/enable")).unwrap(),
        "0\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn error_unknown_policy() {
    assert_fails(
        &pcpu(&["replay", SMALL, "--policy", "linux-4.0"]),
        2,
        &["linux-4.0", "unknown policy", "linux-6.1"],
    );
    assert_fails(
        &pcpu(&["compare", SMALL, "--policies", "linux-6.1,bogus"]),
        2,
        &["bogus", "unknown policy"],
    );
}

#[test]
fn error_unknown_phase_lists_the_phases() {
    assert_fails(
        &pcpu(&["stats", SMALL, "--at", "Z"]),
        2,
        &["no phase `Z`", "BOOT, A"],
    );
}

#[test]
fn error_no_geometry() {
    let o = pcpu_with_stdin(&["replay", "-"], Some(&small_trace_gz()));
    assert_fails(&o, 2, &["no first-chunk geometry", "--geometry", "--units"]);
    let o = pcpu_with_stdin(
        &["replay", "-", "--geometry", GEOMETRY],
        Some(&small_trace_gz()),
    );
    assert_fails(&o, 2, &["number of units unknown", "--units N"]);
    let o = pcpu_with_stdin(&["replay", "-", "--units", "4"], Some(&small_trace_gz()));
    assert_fails(&o, 2, &["no first-chunk geometry", "--geometry"]);
    // A trace file named on its own: the message names the file.
    let dir = tmp("lone-trace");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("base.txt.gz");
    std::fs::write(&file, small_trace_gz()).unwrap();
    let o = pcpu(&["replay", file.to_str().unwrap()]);
    assert_fails(
        &o,
        2,
        &["base.txt.gz is a trace file with no dmesg-percpu.txt beside it"],
    );
}

#[test]
fn error_bad_geometry() {
    assert_fails(
        &pcpu(&["replay", SMALL, "--geometry", "s1 x2"]),
        2,
        &["--geometry", "x2"],
    );
    assert_fails(
        &pcpu(&["replay", SMALL, "--geometry", "s217088 r8192 d28672 u4096"]),
        2,
        &["exceed the unit size"],
    );
}

/// Help and version that cannot be written (a full disk) are an error, as
/// any other output is: they exited 0 with nothing written.
#[test]
fn help_that_cannot_be_written_fails() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // not Linux
    };
    for args in [&["--help"][..], &["replay", "--help"], &["--version"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_pcpu"))
            .args(args)
            .stdout(full.try_clone().unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_fails(&o, 2, &["cannot write to standard output"]);
    }
    assert_ok(&pcpu(&["--help"]));
}

/// `pcpu help` answers as `--help` does, with the help flags users add to
/// it: `pcpu help --help` printed a clap error ("unrecognized subcommand
/// '--help'"), as did `pcpu help replay --help` and `pcpu help -- replay`.
#[test]
fn help_subcommand_takes_help_flags() {
    let help_of = |args: &[&str]| {
        let o = pcpu(args);
        assert_ok(&o);
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let top = help_of(&["--help"]);
    assert!(top.contains("Usage: pcpu <COMMAND>"), "{top}");
    assert_eq!(help_of(&["help"]), top);
    assert_eq!(help_of(&["help", "--"]), top);
    let help = help_of(&["help", "help"]);
    assert!(help.contains("Usage: pcpu help [COMMAND]..."), "{help}");
    for args in [&["help", "--help"][..], &["help", "-h"]] {
        assert_eq!(help_of(args), help, "{args:?}");
    }
    let replay = help_of(&["replay", "--help"]);
    assert!(
        replay.contains("Usage: pcpu replay [OPTIONS] <CAPTURE>"),
        "{replay}"
    );
    for args in [
        &["help", "replay"][..],
        &["help", "replay", "--help"],
        &["help", "-h", "replay"],
        &["help", "--", "replay"],
    ] {
        assert_eq!(help_of(args), replay, "{args:?}");
    }
    let churn = help_of(&["gen", "churn", "--help"]);
    assert_eq!(help_of(&["help", "gen", "churn", "-h"]), churn);
    // A name that is no command is still an error, on one line.
    assert_fails(&pcpu(&["help", "nosuch"]), 2, &["'nosuch'"]);
    assert_fails(&pcpu(&["help", "replay", "--json"]), 2, &["'--json'"]);
}

/// Lines of other events are skipped, and said so by name (a misnamed
/// percpu event or probe would otherwise vanish unseen).
#[test]
fn other_events_are_named_when_ignored() {
    let mut trace = "\
          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=
"
    .to_string();
    let before = trace.clone();
    for (event, n) in [("sched_switch", 3), ("irq_handler_entry", 1)] {
        for _ in 0..n {
            trace.push_str(&format!(
                "          <idle>-0       [000] d..1.     9.000000: {event}: x=1\n"
            ));
        }
    }
    let o = pcpu_with_stdin(&REPLAY_STDIN_JSON, Some(trace.as_bytes()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("ignored 4 lines of events other than percpu's: sched_switch (3), irq_handler_entry (1)"),
        "{err}"
    );
    let o = pcpu_with_stdin(&REPLAY_STDIN_JSON, Some(before.as_bytes()));
    assert_ok(&o);
    assert!(
        !stderr(&o).contains("other than percpu's"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn error_replay_failure_exits_1() {
    let trace = "\
          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=
            init-1       [000] d..1.     4.132541: percpu_free_percpu: base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0
            init-1       [000] d..1.     4.132541: percpu_free_percpu: base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0
";
    let args = ["replay", "-", "--geometry", GEOMETRY, "--units", "4"];
    let o = pcpu_with_stdin(&args, Some(trace.as_bytes()));
    assert_fails(&o, 1, &["line 3", "0x378a0", "not a live allocation"]);
    let mut lenient = args.to_vec();
    lenient.push("--lenient");
    let o = pcpu_with_stdin(&lenient, Some(trace.as_bytes()));
    assert_ok(&o);
    assert!(stderr(&o).contains("skipped 1 free"), "{}", stderr(&o));
}

/// A ring buffer overflow in the trace (`CPU:N [LOST M EVENTS]`) is named as
/// such, not as a malformed line; `--lenient` replays on and says what is
/// missing. Events a lenient replay skips are named too, each with its line
/// and what is wrong with it (the warning listed causes, not the one found).
#[test]
fn lost_and_skipped_events_are_named() {
    let alloc = "          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=\n";
    let trace = format!("{alloc}CPU:2 [LOST 17 EVENTS]\n");
    let args = ["replay", "-", "--geometry", GEOMETRY, "--units", "4"];
    let o = pcpu_with_stdin(&args, Some(trace.as_bytes()));
    assert_fails(
        &o,
        2,
        &[
            "line 2",
            "lost 17 events of CPU 2",
            "trace_buf_size",
            "--lenient replays",
        ],
    );
    let mut lenient = args.to_vec();
    lenient.push("--lenient");
    let o = pcpu_with_stdin(&lenient, Some(trace.as_bytes()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("the trace lost 17 events (ring buffer overflows, the first at line 2)"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");
    // trace-cmd's reports: one without a count.
    let trace = format!("{alloc}CPU:2 [17 EVENTS DROPPED]\nCPU:3 [EVENTS DROPPED]\n");
    let o = pcpu_with_stdin(&lenient, Some(trace.as_bytes()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("the trace lost 17 events and more at 1 report that does not say how many (ring buffer overflows, the first at line 2)"),
        "{err}"
    );
    // A kprobe populate of the first chunk, which the kernel never makes.
    let populate = "     kworker/0:1-17      [000] d..1.     4.448312: pcpu_chunk_populated: (pcpu_chunk_populated+0x0/0x50) chunk=0xffff8b9e4b13a600 base_addr=0xffff8dc3bbc37000 page_start=0 page_end=1\n";
    let trace = format!("{alloc}{populate}");
    let o = pcpu_with_stdin(&lenient, Some(trace.as_bytes()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("skipped 1 event that cannot be replayed (--lenient); the first:"),
        "{err}"
    );
    assert!(err.contains("  line 2: "), "{err}");
}

/// Inputs from a review that crashed, hung or silently misled the tool:
/// each now fails (or runs) cleanly, with no panic.
#[test]
fn hostile_inputs_fail_cleanly() {
    // In the first chunk: its base is the percpu base plus the static and
    // reserved areas (225280 bytes), and `ptr` is `base_addr + off` less the
    // percpu base.
    let alloc = |off: &str| {
        let ptr = off.parse::<u64>().unwrap().wrapping_add(225_280);
        format!(
            "          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off={off} ptr={ptr:016x} bytes_alloc=24 gfp_flags=\n"
        )
    };
    let stdin = ["replay", "-", "--geometry", GEOMETRY, "--units", "4"];
    let with = |extra: &[&'static str]| {
        let mut v = stdin.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // An offset near the top of the 64-bit range, kernel placement.
    let o = pcpu_with_stdin(
        &with(&["--placement", "kernel", "--no-prefill"]),
        Some(alloc("18446744073709551612").as_bytes()),
    );
    assert_fails(&o, 1, &["line 1", "outside the chunk"]);
    // With --lenient such an event is skipped, counted and reported.
    let mut lenient = with(&["--placement", "kernel", "--no-prefill", "--lenient"]);
    lenient.push("--json");
    let o = pcpu_with_stdin(
        &lenient,
        Some(format!("{}{}", alloc("18446744073709551612"), alloc("2208")).as_bytes()),
    );
    assert_ok(&o);
    assert!(stderr(&o).contains("skipped 1 event"), "{}", stderr(&o));
    // A kprobe page range beyond the chunk.
    let depop = "            init-1       [000] .....     5.0: percpu_probe/pcpu_chunk_depopulated: (pcpu_chunk_depopulated+0x0/0x10) chunk=0xffff8dc3bbc37000 base_addr=0xffff8dc3bbc37000 page_start=0 page_end=2147483647\n";
    let o = pcpu_with_stdin(&stdin, Some(format!("{}{depop}", alloc("2208")).as_bytes()));
    assert_fails(&o, 1, &["line 2", "page_end=2147483647"]);
    // A geometry whose sizes wrap around.
    let o = pcpu_with_stdin(
        &[
            "replay",
            "-",
            "--units",
            "4",
            "--geometry",
            "s18446744073709551613 r0 d28672 u524288",
        ],
        Some(alloc("2208").as_bytes()),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    // One line far longer than any event line.
    let long = format!("{}{}\n", alloc("2208"), "x".repeat(200_000));
    let o = pcpu_with_stdin(&stdin, Some(long.as_bytes()));
    assert_fails(&o, 2, &["line 2", "200001 bytes"]);
    // Brackets a hostile line repeats: linear time, a clear error.
    let brackets = format!("{}{}\n", alloc("2208"), "x [0]".repeat(12_000));
    let o = pcpu_with_stdin(&stdin, Some(brackets.as_bytes()));
    assert_fails(&o, 2, &["line 2", "[cpu]"]);
    // A magazine too large to mean anything.
    assert_fails(
        &pcpu(&["replay", SMALL, "--magazine", "70000"]),
        2,
        &["70000"],
    );
    // `min_run` larger than a unit: the region probe is capped at a chunk.
    let o = pcpu(&["replay", SMALL, "--policy", "pcpu:min_run=600000"]);
    assert_ok(&o);
    // A plot may not overwrite the trace (nor anything but an .svg).
    let plot = tmp("not-a-plot.txt");
    assert_fails(
        &pcpu(&["replay", SMALL, "--plot", plot.to_str().unwrap()]),
        2,
        &[".svg"],
    );
    assert!(!plot.exists());
    // Generator sizes with no multiple of 8 between them, and too many groups.
    let out = tmp("gen-odd-sizes");
    let out = out.to_str().unwrap();
    let o = pcpu(&[
        "gen",
        "bpf",
        "--min-size",
        "9",
        "--max-size",
        "9",
        "--rounds",
        "1",
        "--apps",
        "3",
        "--out",
        out,
    ]);
    assert_ok(&o);
    // A generated trace's clock is made up: `auto` runs its balance work
    // on demand, not a work item's latency later.
    assert_eq!(json(&["replay", out, "--json"])["balance"], "modelled");
    assert_fails(
        &pcpu(&[
            "gen",
            "cover-letter",
            "--parents",
            "100000",
            "--children",
            "1000",
            "--out",
            out,
        ]),
        2,
        &["at most 1,000,000"],
    );
    // The other workloads are bounded the same way (their flags' ranges
    // multiply to a hundred million groups: hours and tens of gigabytes).
    for (args, needle) in [
        (
            &["churn", "--rounds", "1000", "--per-round", "100000"][..],
            "--rounds 1000 --per-round 100000 make 100000000 cgroups",
        ),
        (
            &["bpf", "--rounds", "1000", "--apps", "10000"][..],
            "--rounds 1000 --apps 10000 make 10000000 applications",
        ),
        (
            &["mix", "--rounds", "10", "--groups", "100000", "--apps", "1"][..],
            "--rounds 10 --groups 100000 --apps 1 make 1000010 cgroups and applications",
        ),
        (
            &[
                "workers",
                "--workers",
                "10",
                "--rounds",
                "10",
                "--sessions",
                "10001",
            ][..],
            "--workers 10 --rounds 10 --sessions 10001 make 1000100 sessions",
        ),
    ] {
        let mut a = vec!["gen"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--out", out]);
        assert_fails(&pcpu(&a), 2, &[needle, "at most 1,000,000"]);
    }
    let gen = |extra: &[&str]| {
        let mut a = vec![
            "gen",
            "cover-letter",
            "--parents",
            "4",
            "--children",
            "2",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        pcpu(&a)
    };
    // The removal share in percent, as the other generators take it.
    assert_ok(&gen(&["--remove-pct", "50"]));
    let params = std::fs::read_to_string(Path::new(out).join("capture-params.txt")).unwrap();
    assert!(params.contains("remove_children=0.5"), "{params}");
    // A capture no generator wrote is not overwritten without --force.
    std::fs::write(
        Path::new(out).join("capture-params.txt"),
        "name=real\nsmp=4\n",
    )
    .unwrap();
    assert_fails(&gen(&[]), 2, &["did not write", "--force"]);
    let params = std::fs::read_to_string(Path::new(out).join("capture-params.txt")).unwrap();
    assert_eq!(params, "name=real\nsmp=4\n", "left as it was");
    assert_ok(&gen(&["--force"]));
    // A file where the folder should be is named as such, before the
    // workload is generated (the largest takes minutes; no time is
    // asserted, the project's rule for tests).
    let file = Path::new(out).join("capture-params.txt");
    for size in [
        &["--parents", "4"][..],
        &["--parents", "100000", "--children", "9"],
    ] {
        let mut args = vec!["gen", "cover-letter"];
        args.extend_from_slice(size);
        args.extend(["--out", file.to_str().unwrap()]);
        assert_fails(&pcpu(&args), 2, &["is a file, expected a folder"]);
    }
    // Its own capture is replaced without asking.
    assert_ok(&gen(&[]));
    // A large machine's units (the kernel allows up to 8192): every figure
    // scales with them, and the replay reads the generated geometry back.
    let units = |n: &str| {
        assert_ok(&gen(&["--units", n]));
        let r = json(&["replay", out, "--json"]);
        assert_eq!(r["units"].to_string(), n);
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "B")
            .unwrap()["percpu_kb"]
            .as_u64()
            .unwrap()
    };
    let (four, big) = (units("4"), units("8192"));
    assert_eq!(big, four * 2048, "Percpu at B with 8192 units and 4");
    assert_fails(&gen(&["--units", "8193"]), 2, &["8193"]);
}

/// docs/json.md names every field the JSON outputs carry.
#[test]
fn json_fields_are_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md"))
            .expect("docs/json.md");
    let mut missing = Vec::new();
    let mut check = |v: &Value| {
        for k in v.as_object().expect("object").keys() {
            if !doc.contains(&format!("`{k}`")) {
                missing.push(k.clone());
            }
        }
    };
    let r = json(&["replay", SMALL, "--json", "--classes", "derived"]);
    check(&r);
    check(&r["phases"][0]);
    check(&r["timeline"][0]);
    // The pcpu policy places elsewhere than the kernel did.
    let r = json(&["replay", SMALL, "--json", "--policy", "pcpu"]);
    check(&r["disagreements"][0]);
    let p = json(&["pins", SMALL, "--at", "A", "--json"]);
    check(&p);
    check(&p["by_call_site"][0]);
    let s = json(&["stats", SMALL, "--at", "A", "--json"]);
    check(&s);
    check(&s["chunks"][0]);
    assert!(s["chunks"].as_array().unwrap().len() >= 2);
    assert!(s["kernel"].is_null());
    let s = json(&["stats", CHURN_STATS, "--at", "R2c", "--json"]);
    check(&s["kernel"]);
    check(&s["kernel"]["chunks"][0]);
    assert!(missing.is_empty(), "not in docs/json.md: {missing:?}");
}

/// `pcpu policies` documents every knob and shows every policy's default.
#[test]
fn policies_lists_every_knob_with_its_defaults() {
    let o = pcpu(&["policies"]);
    assert_ok(&o);
    let out = stdout(&o);
    for name in ["linux-5.11", "seed-rfc", "linux-5.14", "linux-6.1", "pcpu"] {
        assert!(out.contains(name), "{name}");
    }
    for knob in pcpu_core::KNOBS {
        assert!(
            out.lines().any(|l| l.starts_with(knob)),
            "{knob} has no row"
        );
        assert!(
            out.contains(&format!("  {knob}: ")),
            "{knob} is not described"
        );
    }
    // pcpu reclaims at any empty page, the kernel at a quarter.
    let row = out
        .lines()
        .find(|l| l.starts_with("reclaim_divisor"))
        .unwrap();
    assert!(row.contains(" 4 ") && row.contains("max"), "{row}");
}

#[test]
fn error_empty_trace() {
    let o = pcpu_with_stdin(
        &["replay", "-", "--geometry", GEOMETRY, "--units", "4"],
        Some(b"# tracer: nop\n"),
    );
    assert_fails(&o, 2, &["no percpu_alloc_percpu"]);
}

/// A trace with frees but no allocation is an input error (exit 2), as an
/// empty one is; so is a demo of more groups than `gen` accepts (it
/// aborted allocating its handles).
#[test]
fn error_inputs_that_cannot_be_replayed_exit_2() {
    let trace = hand_trace(&[
        "percpu_free_percpu: base_addr=ffff000000037000 off=8192 ptr=0000000000039000",
    ]);
    for lenient in [false, true] {
        let mut args = vec!["replay", "-", "--geometry", GEOMETRY, "--units", "4"];
        if lenient {
            args.push("--lenient");
        }
        let o = pcpu_with_stdin(&args, Some(&trace));
        assert_fails(&o, 2, &["no percpu_alloc_percpu"]);
    }
    let o = pcpu(&["demo", "--parents", "1000000", "--children", "1000"]);
    assert_fails(&o, 2, &["1001000000 groups", "at most 1,000,000"]);
}

/// Phase names may hold spaces; `--at` on a repeated name warns that it
/// stops at the first.
#[test]
fn phases_named_with_spaces_and_repeated() {
    let mark = |m: &str| format!("tracing_mark_write: {m}");
    let trace = hand_trace(&[
        ALLOC_A,
        &mark("PHASE weird name Percpu: 1040 kB"),
        &mark("PHASE A Percpu: 1040 kB"),
        &mark("PHASE A Percpu: 1040 kB"),
    ]);
    let v = replay_stdin_json(&trace);
    let names: Vec<_> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["weird name", "A", "A"]);
    let args = ["pins", "-", "--geometry", GEOMETRY, "--units", "4", "--at"];
    let o = pcpu_with_stdin(&[&args[..], &["weird name"]].concat(), Some(&trace));
    assert_ok(&o);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = pcpu_with_stdin(&[&args[..], &["A"]].concat(), Some(&trace));
    assert_ok(&o);
    assert!(
        stderr(&o).contains("phase `A` has 2 `PHASE A Percpu` markers; --at stops at the first"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn error_bad_arguments_are_one_line() {
    assert_fails(
        &pcpu(&["replay", SMALL, "--placement", "nowhere"]),
        2,
        &["nowhere", "simulate, kernel"],
    );
    assert_fails(&pcpu(&["replay"]), 2, &["<CAPTURE>"]);
    assert_fails(&pcpu(&["stats", SMALL]), 2, &["--at"]);
    assert_fails(
        &pcpu(&["replay", SMALL, "--plot", "no-such-dir/x.svg"]),
        2,
        &["no-such-dir"],
    );
}

#[test]
fn demo_runs_on_real_memory() {
    let o = pcpu(&["demo", "--parents", "30", "--children", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for name in [
        "linux-5.11",
        "seed-rfc",
        "linux-5.14",
        "pcpu",
        "pcpu+hints",
        "removed/created",
    ] {
        assert!(out.contains(name), "{name}: {out}");
    }
    let v = json(&[
        "demo",
        "--parents",
        "20",
        "--children",
        "3",
        "--policies",
        "linux-5.14",
        "--hinted",
        "none",
        "--json",
    ]);
    assert_eq!(v["groups"], 80);
    let p = &v["policies"][0];
    assert_eq!(p["policy"], "linux-5.14");
    let names: Vec<&str> = p["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ph| ph["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["initial", "created", "removed", "end"]);
    for ph in p["phases"].as_array().unwrap() {
        assert!(ph["percpu_kb"].is_u64() && ph["resident_kb"].is_u64());
    }
    let o = pcpu(&["demo", "--policies", "linux-9"]);
    assert_eq!(o.status.code(), Some(2));
    let o = pcpu(&["demo", "--units", "0"]);
    assert_eq!(o.status.code(), Some(2));
    // Settings the allocator refuses are usage errors too, named.
    let o = pcpu(&["demo", "--parents", "5", "--unit-size", "40000"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unit_size = 40000"), "{}", stderr(&o));
    if pcpu::possible_cpus() > 1 {
        let o = pcpu(&["demo", "--parents", "5", "--units", "1"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("too few"), "{}", stderr(&o));
    }
    let o = pcpu(&["demo", "--parents", "5", "--hinted", ""]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("pcpu: error: --hinted: unknown policy"),
        "{}",
        stderr(&o)
    );
    // A policy given twice runs once, with a warning.
    let args = ["demo", "--parents", "5", "--children", "1", "--json"];
    let o = pcpu(
        &[
            &args[..],
            &[
                "--policies",
                "pcpu,linux-5.14,pcpu",
                "--hinted",
                "pcpu,pcpu",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--policies: pcpu is given more than once"));
    assert!(stderr(&o).contains("--hinted: pcpu is given more than once"));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pcpu", "linux-5.14", "pcpu+hints"]);
}

#[test]
fn demo_with_more_units_than_cpus_counts_them_but_does_not_fill_them() {
    let possible = pcpu::possible_cpus() as u64;
    let units = 16 * possible;
    let v = json(&[
        "demo",
        "--parents",
        "50",
        "--children",
        "4",
        "--policies",
        "linux-5.14",
        "--hinted",
        "none",
        "--units",
        &units.to_string(),
        "--json",
    ]);
    assert_eq!(v["units"], units);
    let created = &v["policies"][0]["phases"][1];
    let (percpu, resident) = (
        created["percpu_kb"].as_u64().unwrap(),
        created["resident_kb"].as_u64().unwrap(),
    );
    // Every unit counts in Percpu; only the possible CPUs' units are
    // written (the groups are allocated, never written, and zeroing leaves
    // the untouched copies alone).
    assert!(
        resident * units <= percpu * possible && resident > 0,
        "{created}"
    );
}

/// A hand-written 6.x trace: `lines` after a `# tracer` header.
fn hand_trace(lines: &[&str]) -> Vec<u8> {
    let mut t = String::from("# tracer: nop\n");
    for l in lines {
        t.push_str("            init-1       [000] .....     1.000000: ");
        t.push_str(l);
        t.push('\n');
    }
    t.into_bytes()
}

const ALLOC_A: &str = "percpu_alloc_percpu: call_site=foo+0x0/0x10 reserved=0 is_atomic=0 size=8 align=4 base_addr=ffff000000037000 off=4096 ptr=0000000000038000 bytes_alloc=32 gfp_flags=";

#[test]
fn error_free_of_an_unknown_pointer_names_the_line() {
    // Freed twice: the second free's area was traced allocated before it,
    // so it is no object from before tracing either.
    let trace = hand_trace(&[
        ALLOC_A,
        "percpu_free_percpu: base_addr=ffff000000037000 off=4096 ptr=0000000000038000",
        "percpu_free_percpu: base_addr=ffff000000037000 off=4096 ptr=0000000000038000",
    ]);
    let args = ["replay", "-", "--geometry", GEOMETRY, "--units", "4"];
    let o = pcpu_with_stdin(&args, Some(&trace));
    assert_fails(&o, 1, &["line 4", "0x38000", "--lenient"]);
    let mut lenient = args.to_vec();
    lenient.push("--lenient");
    let o = pcpu_with_stdin(&lenient, Some(&trace));
    assert_ok(&o);
    assert!(stderr(&o).contains("skipped 1 free"), "{}", stderr(&o));
}

#[test]
fn error_kernel_placement_overlap_names_the_line() {
    let trace = hand_trace(&[
        ALLOC_A,
        "percpu_alloc_percpu: call_site=foo+0x0/0x10 reserved=0 is_atomic=0 size=8 align=4 base_addr=ffff000000037000 off=4100 ptr=0000000000038004 bytes_alloc=32 gfp_flags=",
    ]);
    let replay = |extra: &[&str]| {
        let args = [
            &["replay", "-", "--geometry", GEOMETRY, "--units", "4"],
            extra,
        ]
        .concat();
        pcpu_with_stdin(&args, Some(&trace))
    };
    let o = replay(&["--placement", "kernel"]);
    assert_fails(&o, 1, &["line 3", "allocated over live pointer 0x38000"]);
    // The kernel hands out only free space: with our own placement too, the
    // trace lost a free (or is corrupt), which --lenient replays there.
    let o = replay(&[]);
    assert_fails(
        &o,
        1,
        &[
            "line 3",
            "(8 bytes) allocated over live pointer 0x38000",
            "the trace lost its free, or is corrupt; --lenient replays the free there",
        ],
    );
    let o = replay(&["--lenient"]);
    assert_ok(&o);
    assert!(
        stderr(&o)
            .contains("1 free the trace lost, replayed where the kernel allocated over the object"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn policies_take_knobs_and_reject_bad_ones() {
    let v = json(&[
        "compare",
        SMALL,
        "--policies",
        "linux-5.14,linux-5.14:sideline=false:reclaim_divisor=8",
        "--json",
    ]);
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["policy"], "linux-5.14");
    assert_eq!(
        a[1]["policy"],
        "linux-5.14:reclaim_divisor=8:sideline=false"
    );
    assert_fails(
        &pcpu(&["replay", SMALL, "--policy", "pcpu:bogus=1"]),
        2,
        &["unknown policy knob `bogus`", "refault_reserve_divisor"],
    );
    assert_fails(
        &pcpu(&["replay", SMALL, "--policy", "pcpu:sideline=maybe"]),
        2,
        &["bad value `maybe`", "`sideline`"],
    );
    assert_fails(
        &pcpu(&["pins", SMALL, "--at", "A", "--policy", "pcpu:min_run"]),
        2,
        &["malformed policy knob `min_run`"],
    );
}

#[test]
fn replay_help_names_every_policy_knob() {
    let o = pcpu(&["replay", "--help"]);
    assert_ok(&o);
    let help = stdout(&o);
    for knob in pcpu_core::KNOBS {
        assert!(help.contains(knob), "`pcpu replay --help` omits {knob}");
    }
}

/// `pcpu replay` reports how many allocations the `pcpu` policy's
/// long-lived prediction placed together: on a mix (mounts and network
/// devices among cgroups), some; with the knob off, or under linux-6.1, none.
#[test]
fn replay_reports_long_lived_objects() {
    let out = tmp("gen-mix-long-lived");
    let out = out.to_str().unwrap();
    let o = pcpu(&[
        "gen", "mix", "--rounds", "2", "--groups", "200", "--apps", "10", "--seed", "1", "--out",
        out,
    ]);
    assert_ok(&o);
    let count = |policy: &str| {
        modelled_replay(out, policy)["long_lived_objects"]
            .as_u64()
            .expect("long_lived_objects")
    };
    assert!(count("pcpu") > 0);
    assert_eq!(count("pcpu:long_lived=false"), 0);
    assert_eq!(count("linux-6.1"), 0);
    let text = stdout(&pcpu(&[
        "replay",
        out,
        "--balance",
        "modelled",
        "--policy",
        "pcpu",
    ]));
    assert!(text.contains("predicted long-lived:"), "{text}");
}

/// A malformed meminfo-phases.txt, which the commands do not use, is a
/// warning, not the end of the run.
#[test]
fn a_bad_meminfo_file_is_only_a_warning() {
    let dir = tmp("bad-meminfo");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["trace.txt.gz", "dmesg-percpu.txt"] {
        std::fs::copy(Path::new(SMALL).join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("meminfo-phases.txt"), "PHASE B\n").unwrap();
    let o = pcpu(&["replay", dir.to_str().unwrap()]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("meminfo-phases.txt:1") && err.contains("ignored"),
        "{err}"
    );
}

/// The warning about the kernel's recorded balance runs names policies that
/// are not the kernel's: not one whose only change is a class knob, which
/// it ignores without class placement. A policy given twice to `compare` is
/// compared once, and said so.
#[test]
fn warnings_name_only_what_matters() {
    let recorded = "at the kernel's recorded times";
    let o = pcpu(&["replay", SMALL, "--policy", "linux-5.14:sideline=false"]);
    assert_ok(&o);
    assert!(stderr(&o).contains(recorded), "{}", stderr(&o));
    let o = pcpu(&["replay", SMALL, "--policy", "linux-5.14:keep_room=true"]);
    assert_ok(&o);
    assert!(!stderr(&o).contains(recorded), "{}", stderr(&o));
    let o = pcpu(&[
        "compare",
        SMALL,
        "--policies",
        "linux-5.14,linux-6.1,linux-5.14",
    ]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("linux-5.14 is given more than once"),
        "{}",
        stderr(&o)
    );
}

/// `demo --help` states the unit size the demo uses when none is given.
#[test]
fn demo_help_states_the_default_unit_size() {
    let o = pcpu(&["demo", "--help"]);
    assert_ok(&o);
    let default = format!(
        "default: {}, the userspace allocator's",
        pcpu::DEFAULT_UNIT_SIZE
    );
    assert!(stdout(&o).contains(&default), "{}", stdout(&o));
}

/// `pcpu gen workers` writes long-running workers' sessions, and `pcpu
/// replay` reports the task classes the `pcpu` policy took for
/// long-running there: with the knob off, or under linux-6.1, none; and
/// with it `pcpu` ends within a few percent of linux-6.1 at the peak,
/// where class placement alone is far above.
#[test]
fn replay_reports_long_running_classes() {
    let out = tmp("gen-workers");
    let out = out.to_str().unwrap();
    let o = pcpu(&[
        "gen",
        "workers",
        "--workers",
        "3",
        "--rounds",
        "2",
        "--sessions",
        "1000",
        "--out",
        out,
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("phases BOOT, A, W1c, W1, W2c, W2, END"));
    let report = |policy: &str| modelled_replay(out, policy);
    let peak = |r: &serde_json::Value| {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["percpu_kb"].as_u64().unwrap())
            .max()
            .unwrap()
    };
    let (on, off, linux) = (
        report("pcpu"),
        report("pcpu:grow_beside=false"),
        report("linux-6.1"),
    );
    assert!(on["long_running_classes"].as_u64().unwrap() >= 2, "{on}");
    assert_eq!(off["long_running_classes"].as_u64(), Some(0));
    assert_eq!(linux["long_running_classes"].as_u64(), Some(0));
    let (on, off, linux) = (peak(&on), peak(&off), peak(&linux));
    assert!(
        on * 100 <= linux * 105,
        "pcpu {on} kB, linux-6.1 {linux} kB"
    );
    assert!(
        off * 100 >= linux * 115,
        "without {off} kB, linux-6.1 {linux} kB"
    );
    let text = stdout(&pcpu(&[
        "replay",
        out,
        "--balance",
        "modelled",
        "--policy",
        "pcpu",
    ]));
    assert!(text.contains("long-running tasks:"), "{text}");
}
