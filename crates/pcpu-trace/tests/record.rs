//! Recording on a stand-in tracefs: a folder of plain files where tracefs has
//! control files. What `pcpu_trace::record` writes to each shows what it
//! would set; what is left at the end, what it restores.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcpu_trace::record::{geometry_lines, RecordError, RecordOptions, Tracefs};
use pcpu_trace::{parse_dmesg, Capture};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pcpu-record-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stand-in tracefs as a kernel leaves it after boot: nothing traced,
/// hashed pointers, a buffer not yet expanded.
fn fake_tracefs(name: &str) -> PathBuf {
    let root = scratch(name);
    for (file, text) in [
        ("trace_marker", ""),
        ("trace", "# tracer: nop\nold contents\n"),
        ("tracing_on", "1\n"),
        ("current_tracer", "nop\n"),
        ("buffer_size_kb", "7 (expanded: 1408)\n"),
        (
            "trace_options",
            "print-parent\nnosym-offset\nhash-ptr\nmarkers\n",
        ),
        ("events/enable", "0\n"),
        ("events/percpu/enable", "0\n"),
        ("per_cpu/cpu0/stats", "entries: 10\noverrun: 0\n"),
        (
            "per_cpu/cpu1/stats",
            "entries: 12\noverrun: 3\ncommit overrun: 0\ndropped events: 2\n",
        ),
    ] {
        let p = root.join(file);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    root
}

fn read(root: &Path, file: &str) -> String {
    fs::read_to_string(root.join(file)).unwrap()
}

/// The control files `start` changes, as they are now.
fn controls(root: &Path) -> [String; 5] {
    [
        "tracing_on",
        "buffer_size_kb",
        "trace_options",
        "events/percpu/enable",
        "current_tracer",
    ]
    .map(|f| read(root, f))
}

fn meminfo(dir: &Path, kb: u64) -> PathBuf {
    let p = dir.join("meminfo");
    fs::write(
        &p,
        format!(
            "MemTotal:       24000000 kB\nPercpu:           {kb} kB\nHugePages_Total:       0\n"
        ),
    )
    .unwrap();
    p
}

const OPTS: RecordOptions = RecordOptions {
    buffer_kb: 4096,
    force: false,
};

#[test]
fn recording_sets_then_restores_and_saves_the_buffer() {
    let root = fake_tracefs("cycle");
    let fs_ = Tracefs::at(&root).unwrap();
    let rec = fs_.start(OPTS).unwrap();
    // While recording: raw pointers, the percpu events, the buffer sized
    // and cleared, tracing on (each file holds the last value written).
    assert_eq!(read(&root, "tracing_on"), "1\n");
    assert_eq!(read(&root, "buffer_size_kb"), "4096\n");
    assert_eq!(read(&root, "trace_options"), "nohash-ptr\n");
    assert_eq!(read(&root, "events/percpu/enable"), "1\n");
    assert_eq!(read(&root, "trace"), "");
    // The kernel's events, and the markers of two phases.
    let events = "# tracer: nop\n            init-1       [000] .....     1.000000: percpu_create_chunk: base_addr=10\n";
    fs::write(root.join("trace"), events).unwrap();
    let mi = meminfo(&root, 872);
    assert_eq!(fs_.mark_phase("A", &mi).unwrap(), 872);
    assert_eq!(fs_.mark_phase("B", &meminfo(&root, 1856)).unwrap(), 1856);
    assert_eq!(
        read(&root, "trace_marker"),
        "PHASE A begin\nPHASE A Percpu: 872 kB\nPHASE B begin\nPHASE B Percpu: 1856 kB\n"
    );
    let out = root.join("capture");
    let summary = rec.finish(&out).unwrap();
    assert_eq!(summary.trace_path, out.join("trace.txt.gz"));
    assert_eq!(summary.trace_bytes, events.len() as u64);
    assert_eq!(summary.overrun, 5);
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(&summary.trace_path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, events);
    // Restored: events off, hashing back, the buffer's expanded size (not
    // the 7 kB of a buffer not yet expanded), tracing as it was.
    assert_eq!(read(&root, "events/percpu/enable"), "0\n");
    assert_eq!(read(&root, "trace_options"), "hash-ptr\n");
    assert_eq!(read(&root, "buffer_size_kb"), "1408\n");
    assert_eq!(read(&root, "tracing_on"), "1\n");
    // The folder reads as a capture (no geometry yet).
    let cap = Capture::open(&out).unwrap();
    assert_eq!(cap.trace_path, summary.trace_path);
    assert!(cap.geometry.is_none());
}

#[test]
fn a_recording_dropped_unfinished_restores_the_settings() {
    let root = fake_tracefs("drop");
    fs::write(root.join("tracing_on"), "0\n").unwrap();
    fs::write(root.join("buffer_size_kb"), "2048\n").unwrap();
    let fs_ = Tracefs::at(&root).unwrap();
    drop(fs_.start(OPTS).unwrap());
    assert_eq!(read(&root, "events/percpu/enable"), "0\n");
    assert_eq!(read(&root, "trace_options"), "hash-ptr\n");
    assert_eq!(read(&root, "buffer_size_kb"), "2048\n");
    assert_eq!(read(&root, "tracing_on"), "0\n");
}

#[test]
fn busy_tracing_is_refused_unless_forced() {
    for (file, value, what) in [
        ("current_tracer", "function\n", "current_tracer is function"),
        ("events/enable", "X\n", "trace events are on"),
    ] {
        let root = fake_tracefs("busy");
        fs::write(root.join(file), value).unwrap();
        let before = controls(&root);
        let fs_ = Tracefs::at(&root).unwrap();
        match fs_.start(OPTS) {
            Err(e @ RecordError::Busy { .. }) => {
                assert!(e.to_string().contains(what), "{e}");
                assert!(e.to_string().contains("--force"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(controls(&root), before, "refused, nothing changed");
        assert_eq!(read(&root, "trace"), "# tracer: nop\nold contents\n");
        let forced = fs_
            .start(RecordOptions {
                force: true,
                ..OPTS
            })
            .unwrap();
        assert_eq!(read(&root, "events/percpu/enable"), "1\n");
        drop(forced);
    }
}

#[test]
fn kernels_without_percpu_events_or_tracefs_are_named() {
    let root = fake_tracefs("noevents");
    fs::remove_dir_all(root.join("events/percpu")).unwrap();
    let e = Tracefs::at(&root).unwrap().start(OPTS).unwrap_err();
    assert!(matches!(e, RecordError::NoPercpuEvents { .. }), "{e}");
    assert!(e.to_string().contains("no percpu trace events"), "{e}");
    let e = Tracefs::at(root.join("nowhere")).unwrap_err();
    assert!(e.to_string().contains("no tracefs at"), "{e}");
    assert!(e.to_string().contains("mount -t tracefs"), "{e}");
}

#[test]
fn phase_markers_need_a_name_and_a_percpu_figure() {
    let root = fake_tracefs("mark");
    let fs_ = Tracefs::at(&root).unwrap();
    let mi = meminfo(&root, 5);
    for bad in ["", "a b", "x\ty", "new\nline"] {
        let e = fs_.mark_phase(bad, &mi).unwrap_err();
        assert!(matches!(e, RecordError::BadPhase { .. }), "{bad:?}: {e}");
    }
    assert_eq!(read(&root, "trace_marker"), "", "nothing marked");
    let no_percpu = root.join("meminfo-old");
    fs::write(&no_percpu, "MemTotal: 1 kB\n").unwrap();
    let e = fs_.mark_phase("A", &no_percpu).unwrap_err();
    assert!(matches!(e, RecordError::NoPercpuLine { .. }), "{e}");
}

const PERCPU_STATS: &str = include_str!("fixtures/live-6.18/percpu_stats.txt");

#[test]
fn geometry_from_percpu_stats_and_the_possible_cpus() {
    let text = geometry_lines(PERCPU_STATS, "0-1\n").unwrap();
    assert_eq!(
        text,
        "pcpu-alloc: s185560 r0 d31528 u1048576 alloc=1*2097152\npcpu-alloc: [0] 0 1\n"
    );
    let g = parse_dmesg(&text).unwrap();
    assert_eq!(
        (g.static_size, g.reserved_size, g.dyn_size, g.unit_size),
        (185560, 0, 31528, 1048576)
    );
    assert_eq!(
        (g.atom_size, g.alloc_size, g.nr_units()),
        (Some(2097152), Some(2097152), Some(2))
    );
    // Three CPUs in allocations of two units: one padding unit.
    let text = geometry_lines(PERCPU_STATS, "0-2").unwrap();
    assert!(text.ends_with("pcpu-alloc: [0] 0 1 2 --\n"), "{text}");
    assert_eq!(parse_dmesg(&text).unwrap().nr_units(), Some(4));
    let text = geometry_lines(PERCPU_STATS, "0,2-3,8").unwrap();
    assert!(text.ends_with("[0] 0 2 3 8\n"), "{text}");
    // What it cannot read.
    for possible in ["", "x", "3-1", "0-1-2"] {
        assert!(
            geometry_lines(PERCPU_STATS, possible).is_none(),
            "{possible:?}"
        );
    }
    let no_unit: String = PERCPU_STATS
        .lines()
        .filter(|l| !l.contains("unit_size"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(geometry_lines(&no_unit, "0-1").is_none());
}

#[test]
fn a_capture_reads_geometry_txt_when_the_boot_log_is_missing() {
    let dir = scratch("geometry-txt");
    fs::write(dir.join("trace.txt"), "").unwrap();
    let lines = geometry_lines(PERCPU_STATS, "0-1").unwrap();
    fs::write(dir.join("geometry.txt"), format!("# derived\n{lines}")).unwrap();
    let cap = Capture::open(&dir).unwrap();
    assert_eq!(cap.dmesg_path, Some(dir.join("geometry.txt")));
    assert_eq!(cap.geometry.as_ref().unwrap().nr_units(), Some(2));
    // The boot log wins when both are there.
    fs::write(
        dir.join("dmesg-percpu.txt"),
        "pcpu-alloc: s217088 r8192 d28672 u524288 alloc=1*2097152\npcpu-alloc: [0] 0 1 2 3\n",
    )
    .unwrap();
    let cap = Capture::open(&dir).unwrap();
    assert_eq!(cap.dmesg_path, Some(dir.join("dmesg-percpu.txt")));
    assert_eq!(cap.geometry.unwrap().nr_units(), Some(4));
}
