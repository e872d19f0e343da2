//! One live capture read three ways: the tracefs text, `trace-cmd report` and
//! `perf script` (fixtures in `tests/fixtures/live-6.18/`, see its README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pcpu_trace::{parse_file, CallSite, Event, EventKind, ParseOptions, Record, Trace};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/live-6.18")
        .join(name)
}

fn read(name: &str) -> Trace {
    parse_file(fixture(name), ParseOptions::strict()).unwrap()
}

/// The event with its call site cut to `symbol+offset`: the kernel prints
/// `mm_init+0x2bf/0x4d0`, libtraceevent (trace-cmd, perf) `mm_init+0x2bf`.
fn normalized(e: &Event) -> Event {
    let mut e = e.clone();
    if let Event::Alloc(a) = &mut e {
        if let Some(CallSite(s)) = &a.call_site {
            let short = s.split_once('/').map_or(&**s, |(head, _)| head);
            a.call_site = Some(CallSite(Arc::from(short)));
        }
    }
    e
}

fn is_marker(r: &Record) -> bool {
    matches!(
        r.event.kind(),
        EventKind::PhaseBegin | EventKind::PhasePercpu | EventKind::Marker
    )
}

#[test]
fn trace_cmd_report_reads_as_the_tracefs_text() {
    let ftrace = read("trace.txt.gz");
    let report = read("report.txt.gz");
    assert_eq!(ftrace.header.nr_cpus, Some(2));
    assert_eq!(report.header.nr_cpus, Some(2), "from `cpus=2`");
    assert_eq!(report.stats.header_lines, 1);
    assert_eq!((report.stats.unknown, report.stats.malformed), (0, 0));
    assert_eq!(ftrace.records.len(), 1090);
    assert_eq!(report.records.len(), ftrace.records.len());
    for (f, r) in ftrace.records.iter().zip(&report.records) {
        assert_eq!(
            (f.ts, f.cpu, f.pid, &f.task),
            (r.ts, r.cpu, r.pid, &r.task),
            "line {} / {}",
            f.line,
            r.line
        );
        assert!(f.flags.is_some() && r.flags.is_none());
        assert_eq!(
            normalized(&f.event),
            normalized(&r.event),
            "line {}",
            r.line
        );
    }
    // The phase markers (`print: tracing_mark_write: ...` in trace-cmd's text).
    let phases: Vec<_> = report
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::PhasePercpu { name, kb } => Some((name.as_str(), *kb)),
            _ => None,
        })
        .collect();
    assert_eq!(phases, [("A", 1856), ("B", 1856), ("C", 1856), ("D", 1856)]);
}

/// Per CPU, the records as `(pid, event)`.
fn per_cpu(t: &Trace) -> BTreeMap<u32, Vec<(i32, Event)>> {
    let mut m: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for r in t.records.iter().filter(|r| !is_marker(r)) {
        m.entry(r.cpu)
            .or_default()
            .push((r.pid, normalized(&r.event)));
    }
    m
}

#[test]
fn perf_script_reads_as_a_subsequence_of_the_tracefs_text() {
    let ftrace = read("trace.txt.gz");
    let perf = read("perf.txt.gz");
    assert_eq!((perf.stats.unknown, perf.stats.malformed), (0, 0));
    assert_eq!(perf.header.nr_cpus, None);
    assert!(perf.records.iter().all(|r| r.flags.is_none()));
    // perf records no trace markers.
    assert!(!perf.records.iter().any(is_marker));
    assert_eq!(perf.records.len(), 1036);

    // Every perf record is, per CPU and in order, one of the tracefs records. perf
    // started after tracing did (it misses the first events), and on the way it missed
    // frees that RCU callbacks made in softirq context on an idle CPU (pid 0).
    let (f, p) = (per_cpu(&ftrace), per_cpu(&perf));
    assert_eq!(f.keys().collect::<Vec<_>>(), p.keys().collect::<Vec<_>>());
    let mut skipped_before = 0;
    let mut missed = Vec::new();
    for (cpu, pe) in &p {
        let fe = &f[cpu];
        let start = fe.iter().position(|x| *x == pe[0]).unwrap();
        skipped_before += start;
        let mut i = start;
        for x in pe {
            while fe[i] != *x {
                missed.push((fe[i].0, fe[i].1.kind()));
                i += 1;
            }
            i += 1;
        }
    }
    assert_eq!((skipped_before, missed.len()), (22, 12));
    assert!(
        missed.iter().all(|&m| m == (0, EventKind::Free)),
        "{missed:?}"
    );
}
