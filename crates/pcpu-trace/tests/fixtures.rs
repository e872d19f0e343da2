//! Tests on the fixtures in `tests/fixtures/` (see its README for how they were cut).

use std::io::Write;
use std::path::{Path, PathBuf};

use pcpu_trace::{
    format_snapshot, from_reader, open_trace, parse_all, parse_dmesg, parse_file,
    parse_meminfo_phases, Capture, CaptureError, Event, EventKind, ParseErrorKind, ParseOptions,
    TraceReader,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pcpu-trace-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn memcg_head_counts() {
    let t = parse_file(fixture("memcg-head/trace.txt.gz"), ParseOptions::strict()).unwrap();
    let c = t.stats.counts;
    assert_eq!(t.stats.lines, 2512);
    assert_eq!(t.stats.header_lines, 12);
    assert_eq!(c.get(EventKind::Alloc), 2410);
    assert_eq!(c.get(EventKind::Free), 21);
    assert_eq!(c.get(EventKind::CreateChunk), 1);
    assert_eq!(c.get(EventKind::ChunkPopulated), 32);
    assert_eq!(c.get(EventKind::BalanceWork), 32);
    assert_eq!(c.get(EventKind::PhaseBegin), 2);
    assert_eq!(c.get(EventKind::PhasePercpu), 2);
    assert_eq!(c.total(), 2500);
    assert_eq!(t.records.len(), 2500);
    assert_eq!((t.stats.unknown, t.stats.malformed), (0, 0));
    assert_eq!(t.header.tracer.as_deref(), Some("nop"));
    assert_eq!(
        (t.header.entries_in_buffer, t.header.entries_written),
        (Some(254402), Some(254402))
    );
    assert_eq!(
        (t.header.nr_cpus, t.header.lost_events()),
        (Some(4), Some(0))
    );

    let first = &t.records[0];
    assert_eq!(first.line, 13);
    match &first.event {
        Event::Alloc(a) => assert_eq!((a.off, a.caller()), (2208, Some("alloc_desc"))),
        e => panic!("{e:?}"),
    }
    // Every alloc line agrees on pcpu_base_addr (raw pointers).
    let bases: std::collections::BTreeSet<u64> = t
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Alloc(a) => Some(a.pcpu_base_addr()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bases.into_iter().collect::<Vec<_>>(),
        vec![0xffff8dc3bbc00000]
    );
    // Timestamps never go backwards in the kernel's merged output.
    assert!(t.records.windows(2).all(|w| w[0].ts <= w[1].ts));
    let phases: Vec<_> = t
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::PhasePercpu { name, kb } => Some((name.as_str(), *kb, r.line)),
            _ => None,
        })
        .collect();
    assert_eq!(phases, vec![("BOOT", 1040, 383), ("A", 1040, 396)]);
}

#[test]
fn every_fixture_line_prints_back_verbatim() {
    let text = pcpu_trace::decompress(std::io::BufReader::new(
        std::fs::File::open(fixture("memcg-head/trace.txt.gz")).unwrap(),
    ))
    .unwrap();
    let lines: Vec<String> = std::io::BufRead::lines(text).map(Result::unwrap).collect();
    let t = parse_file(fixture("memcg-head/trace.txt.gz"), ParseOptions::strict()).unwrap();
    for r in &t.records {
        assert_eq!(
            r.to_string(),
            lines[(r.line - 1) as usize],
            "line {}",
            r.line
        );
    }
}

#[test]
fn plain_gzip_and_stdin_like_readers_agree() {
    let gz = std::fs::read(fixture("memcg-head/trace.txt.gz")).unwrap();
    let plain = pcpu_trace::decompress(&gz[..]).map(|mut r| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut v).unwrap();
        v
    });
    let plain = plain.unwrap();
    assert!(plain.starts_with(b"# tracer: nop\n"));
    let dir = scratch_dir("plain");
    let path = dir.join("trace.txt");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&plain)
        .unwrap();
    let a: Vec<_> = open_trace(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let b: Vec<_> = open_trace(fixture("memcg-head/trace.txt.gz"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let c: Vec<_> = from_reader(&gz[..])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let d = parse_all(&plain[..], ParseOptions::strict())
        .unwrap()
        .records;
    assert_eq!(a.len(), 2500);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    // Concatenated gzip members read as one stream.
    let mut two = gz.clone();
    two.extend_from_slice(&gz);
    let n = from_reader(&two[..]).unwrap().filter(|r| r.is_ok()).count();
    assert_eq!(n, 5000);
    // Capture::open on a folder holding trace.txt (not .gz), without side files.
    let cap = Capture::open(&dir).unwrap();
    assert_eq!(cap.trace_path, path);
    assert_eq!((cap.geometry.as_ref(), cap.phases.len()), (None, 0));
    assert_eq!(
        cap.parse(ParseOptions::strict()).unwrap().records.len(),
        2500
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn v5_snippet() {
    let t = parse_file(fixture("v5-format.txt"), ParseOptions::strict()).unwrap();
    assert_eq!(t.records.len(), 11);
    assert_eq!(t.stats.unknown, 1);
    assert_eq!(t.stats.unknown_events.get("sched_switch"), Some(&1));
    assert_eq!(t.header.nr_cpus, Some(2));
    let c = t.stats.counts;
    assert_eq!(
        [
            EventKind::Alloc,
            EventKind::Free,
            EventKind::AllocFail,
            EventKind::CreateChunk,
            EventKind::DestroyChunk
        ]
        .map(|k| c.get(k)),
        [3, 2, 1, 1, 1]
    );
    assert_eq!(
        (
            c.get(EventKind::PhaseBegin),
            c.get(EventKind::PhasePercpu),
            c.get(EventKind::Marker)
        ),
        (1, 1, 1)
    );
    for r in &t.records {
        if let Event::Alloc(a) = &r.event {
            assert_eq!(
                (a.call_site.as_ref(), a.bytes_alloc, a.gfp_flags.as_ref()),
                (None, None, None)
            );
        }
    }
    let odd = &t.records[3];
    assert_eq!((&*odd.task, odd.pid, odd.cpu), ("my task-name-x", 1234, 1));
    let noflags = t.records.iter().filter(|r| r.flags.is_none()).count();
    assert_eq!(noflags, 4);
    assert_eq!(
        t.records.last().unwrap().event,
        Event::Marker("hello world".into())
    );
}

#[test]
fn malformed_fixture_strict_and_lenient() {
    let e = parse_file(fixture("malformed.txt"), ParseOptions::strict()).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(matches!(e.kind, ParseErrorKind::Layout { .. }));

    let t = parse_file(fixture("malformed.txt"), ParseOptions::lenient()).unwrap();
    assert_eq!(t.records.len(), 2);
    assert_eq!(
        t.records.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 10]
    );
    assert_eq!(t.stats.malformed, 8);
    let lines: Vec<u64> = t.stats.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 11]);
    let msgs: Vec<String> = t.stats.errors.iter().map(ToString::to_string).collect();
    assert!(msgs[1].contains("missing field `off`"), "{msgs:?}");
    assert!(
        msgs[2].contains("field `off`: expected a non-negative"),
        "{msgs:?}"
    );
    assert!(msgs[3].contains("nohash-ptr"), "{msgs:?}");
    assert!(msgs[4].contains("bad timestamp"), "{msgs:?}");
    assert!(msgs[5].contains("page_start"), "{msgs:?}");
    assert!(msgs[6].contains("Percpu"), "{msgs:?}");
    assert!(msgs[7].starts_with("line 11: truncated line"), "{msgs:?}");

    let opts = ParseOptions {
        lenient: true,
        keep_errors: 2,
    };
    let t = parse_file(fixture("malformed.txt"), opts).unwrap();
    assert_eq!((t.stats.malformed, t.stats.errors.len()), (8, 2));
}

#[test]
fn cut_gzip_is_a_fatal_io_error_in_both_modes() {
    for opts in [ParseOptions::strict(), ParseOptions::lenient()] {
        let mut r = open_trace(fixture("cut-gzip.txt.gz"))
            .unwrap()
            .with_options(opts);
        let mut ok = 0;
        let mut errs = Vec::new();
        for x in &mut r {
            match x {
                Ok(_) => ok += 1,
                Err(e) => errs.push(e),
            }
        }
        assert!(ok > 200, "{ok}");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].is_io(), "{}", errs[0]);
        assert!(errs[0].to_string().contains("read error"), "{}", errs[0]);
    }
}

#[test]
fn capture_folder_memcg_small() {
    let cap = Capture::open(fixture("memcg-small")).unwrap();
    assert_eq!(cap.name(), "memcg-small");
    assert_eq!(cap.trace_path, fixture("memcg-small/trace.txt.gz"));
    let g = cap.geometry.clone().unwrap();
    assert_eq!(
        (
            g.embedded_pages,
            g.static_size,
            g.reserved_size,
            g.dyn_size,
            g.unit_size
        ),
        (62, 217088, 8192, 28672, 524288)
    );
    assert_eq!((g.atom_size, g.nr_units()), (Some(2097152), Some(4)));
    assert_eq!(cap.phases.len(), 2);
    assert_eq!(
        cap.phase("A").map(|p| (p.percpu_kb, p.uptime)),
        Some((1040, Some(6.76)))
    );
    let t = cap.parse(ParseOptions::strict()).unwrap();
    assert_eq!(t.stats.lines, 2396);
    let c = t.stats.counts;
    assert_eq!(c.get(EventKind::Alloc), 2296);
    assert_eq!(c.get(EventKind::Free), 21);
    assert_eq!(c.get(EventKind::ChunkPopulated), 31);
    assert_eq!(c.get(EventKind::BalanceWork), 31);
    assert_eq!(c.get(EventKind::CreateChunk), 1);
    assert_eq!(c.total(), 2384);
    // Streaming gives the same records.
    let streamed: Vec<_> = cap.reader().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(streamed, t.records);
}

#[test]
fn capture_from_plain_trace_path_and_missing_paths() {
    let cap = Capture::open(fixture("memcg-head/trace.txt.gz")).unwrap();
    assert_eq!(cap.dir, fixture("memcg-head"));
    assert_eq!(cap.geometry.as_ref().and_then(|g| g.nr_units()), Some(4));
    assert!(cap.phases.is_empty() && cap.meminfo_path.is_none());
    let cap = Capture::open(fixture("v5-format.txt")).unwrap();
    assert!(cap.geometry.is_none() && cap.dmesg_path.is_none());

    let e = Capture::open(fixture("does-not-exist")).unwrap_err();
    assert!(matches!(e, CaptureError::NoTrace { .. }));
    let empty = scratch_dir("empty");
    let e = Capture::open(&empty).unwrap_err();
    assert!(e.to_string().contains("no trace"), "{e}");
    // A bad meminfo-phases.txt is reported with its line.
    std::fs::write(empty.join("trace.txt"), "# tracer: nop\n").unwrap();
    std::fs::write(
        empty.join("meminfo-phases.txt"),
        "PHASE A uptime=1 Percpu: 5 kB\nPHASE B\n",
    )
    .unwrap();
    let e = Capture::open(&empty).unwrap_err();
    assert!(matches!(e, CaptureError::Format { line: 2, .. }), "{e}");
    // Tools that do not need it open the capture anyway and get the error.
    let (cap, e) = Capture::open_without_bad_meminfo(&empty).unwrap();
    assert!(
        matches!(e, Some(CaptureError::Format { line: 2, .. })),
        "{e:?}"
    );
    assert!(cap.phases.is_empty() && cap.meminfo_path.is_none());
    // The kernel's percpu_stats snapshots (`pcpu record`): read by phase;
    // a bad file is reported with its line, or left out by those tools.
    std::fs::remove_file(empty.join("meminfo-phases.txt")).unwrap();
    let stats = "nr_cur_alloc : 9\nnr_chunks : 2\nempty_pop_pages : 5\nChunk: <- First Chunk\n\
                 nr_alloc : 9\nChunk:\nempty_pop_pages : 5\nfree_bytes : 1000\n";
    let text = format_snapshot("START", stats) + &format_snapshot("A", stats);
    std::fs::write(empty.join("percpu-stats.txt"), &text).unwrap();
    let cap = Capture::open(&empty).unwrap();
    assert_eq!(cap.kernel_stats.len(), 2);
    let a = cap.kernel_stats("A").unwrap();
    assert_eq!((a.nr_chunks, a.empty_pop_pages, a.chunks.len()), (2, 5, 2));
    assert_eq!(a.chunks[1].free_bytes, 1000);
    assert!(cap.kernel_stats("B").is_none());
    std::fs::write(
        empty.join("percpu-stats.txt"),
        text + "PHASE B\nnr_chunks : lots\n",
    )
    .unwrap();
    let e = Capture::open(&empty).unwrap_err();
    assert!(
        matches!(e, CaptureError::Format { line: 19, .. }) && e.to_string().contains("lots"),
        "{e}"
    );
    let (cap, e) = Capture::open_without_bad_meminfo(&empty).unwrap();
    assert!(
        matches!(e, Some(CaptureError::Format { line: 19, .. })),
        "{e:?}"
    );
    assert!(cap.kernel_stats.is_empty());
    std::fs::remove_file(empty.join("percpu-stats.txt")).unwrap();
    // A side file that never ends (a device) is refused, not read forever.
    std::os::unix::fs::symlink("/dev/zero", empty.join("dmesg-percpu.txt")).unwrap();
    let e = Capture::open(&empty).unwrap_err();
    assert!(
        matches!(e, CaptureError::Io { .. }) && e.to_string().contains("not a capture's side file"),
        "{e}"
    );
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn dmesg_variants() {
    // Timestamps, the page first-chunk allocator, padding units, several groups and lines.
    let text = "\
[    0.1] percpu: 62 4K pages/cpu s217088 r8192 d28672
[    0.2] pcpu-alloc: s217088 r8192 d28672 u262144 alloc=1*2097152
[    0.3] pcpu-alloc: [0] 00 01 02 03 [1] 04 05 -- --
[    0.3] pcpu-alloc: [1] 06 07
";
    let g = parse_dmesg(text).unwrap();
    assert_eq!((g.embedded_pages, g.unit_size), (62, 262144));
    assert_eq!(
        g.groups,
        vec![
            vec![Some(0), Some(1), Some(2), Some(3)],
            vec![Some(4), Some(5), None, None],
            vec![Some(6), Some(7)]
        ]
    );
    assert_eq!(g.nr_units(), Some(10));
    // A log of two boots (the boot lines saved twice, a kern.log): the units
    // are the last boot's, not the sum.
    let boot = "\
[    0.195034] percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288
[    0.195397] pcpu-alloc: s217088 r8192 d28672 u524288 alloc=1*2097152
[    0.195495] pcpu-alloc: [0] 0 1 2 3
";
    let g = parse_dmesg(&format!("{boot}{boot}")).unwrap();
    assert_eq!(g.nr_units(), Some(4));
    let g = parse_dmesg(&format!("{text}{boot}")).unwrap();
    assert_eq!(g.nr_units(), Some(4));
    // Only the pcpu-alloc summary line: pages derived from s+r+d.
    let g = parse_dmesg("pcpu-alloc: s100000 r8192 d20480 u524288 alloc=1*2097152\n").unwrap();
    assert_eq!((g.embedded_pages, g.nr_units()), (32, None));
    assert!(parse_dmesg("percpu: nothing here\n").is_none());
    let p = parse_meminfo_phases(
        "PHASE BOOT uptime=6.68 Percpu:             1040 kB\n\nPHASE X Percpu: 7 kB\n",
    )
    .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[1].name.as_str(), p[1].uptime, p[1].percpu_kb),
        ("X", None, 7)
    );
}

#[test]
fn reader_stats_while_streaming() {
    let mut r: TraceReader<_> = open_trace(fixture("v5-format.txt")).unwrap();
    assert!(r.next().unwrap().is_ok());
    assert_eq!(r.stats().header_lines, 11);
    assert_eq!(r.header().entries_written, Some(12));
    assert_eq!(r.by_ref().count(), 10);
    assert_eq!(r.stats().records(), 11);
}
