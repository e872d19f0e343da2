//! A recording on a running kernel: the replay infers the dynamic chunk
//! already in use, the objects in it that the trace frees, and the first
//! chunk's tail, and then replays strictly, placing every allocation where
//! the kernel did, with the kernel's Percpu from the first marker on.

use pcpu_core::Policy;
use pcpu_replay::*;
use pcpu_trace::{parse_dmesg, ParseOptions, Record, TraceReader};

const PCPU_BASE: u64 = 0xffff_8dc3_bbc0_0000;
/// A dynamic chunk no event creates: above the first chunk's four units.
const CHUNK: u64 = PCPU_BASE + (4 << 20);
const GEOMETRY: &str = "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288";

fn alloc(off: u64, size: u64) -> String {
    format!(
        "  mkdir-100 [001] .....  1.000000: percpu_alloc_percpu: call_site=f+0x1/0x2 reserved=0 is_atomic=0 size={size} align=8 base_addr={CHUNK:x} off={off} ptr={:016x} bytes_alloc=48 gfp_flags=\n",
        CHUNK + off - PCPU_BASE
    )
}

fn free(off: u64) -> String {
    format!(
        "  mkdir-100 [001] .....  1.000000: percpu_free_percpu: base_addr={CHUNK:x} off={off} ptr={:016x}\n",
        CHUNK + off - PCPU_BASE
    )
}

fn marker(name: &str, kb: u64) -> String {
    format!("  pcpu-99 [000] .....  1.000000: tracing_mark_write: PHASE {name} Percpu: {kb} kB\n")
}

fn records(text: &str) -> Vec<Record> {
    TraceReader::new(text.as_bytes())
        .with_options(ParseOptions::strict())
        .collect_trace()
        .unwrap()
        .records
}

/// The kernel's chunk holds two objects of 2048 bytes at 0 and 2048 when
/// tracing starts; the trace allocates after them, frees the first (which
/// it never saw allocated) and allocates into its place.
fn trace(start_kb: u64) -> String {
    [
        marker("START", start_kb),
        alloc(4096, 64),
        free(0),
        alloc(0, 2048),
        alloc(4160, 64),
        marker("END", start_kb),
    ]
    .concat()
}

fn setup(recs: &[Record], prefill: bool) -> Setup {
    let geo = parse_dmesg(GEOMETRY).unwrap();
    Setup::derive(&geo, 4, recs, prefill).unwrap()
}

#[test]
fn the_chunk_in_use_and_its_freed_object_are_inferred() {
    let s = setup(&records(&trace(0)), true);
    assert_eq!(
        s.pre_chunks,
        vec![PreChunk {
            base: CHUNK,
            // The second object: nothing traced covers it, and a 64-byte
            // request that fits it went past it.
            prefill: vec![(2048, 2048)],
        }]
    );
    assert_eq!(
        s.pre_objects,
        vec![PreObject {
            base: CHUNK,
            off: 0,
            // Up to the allocation traced before its free at 4096, but no
            // larger than the largest traced request.
            len: 2048,
            ptr: CHUNK - PCPU_BASE,
        }]
    );
    // The first chunk, tried first, had no room for what went to the
    // dynamic chunk: its whole dynamic area was in use.
    assert_eq!(s.prefill, vec![(0, 28672)]);
    // Without the inference, nothing is.
    let s = setup(&records(&trace(0)), false);
    assert!(s.pre_chunks.is_empty() && s.pre_objects.is_empty() && s.prefill.is_empty());
}

#[test]
fn a_recording_replays_strictly_where_the_kernel_placed_it() {
    for policy in ["linux-6.1", "linux-5.14", "pcpu"] {
        let cfg = || ReplayConfig {
            policy: policy.parse::<Policy>().unwrap(),
            check_invariants: true,
            ..ReplayConfig::default()
        };
        // Our Percpu before the first marker: the first chunk and the
        // inferred chunk's one page in use; the kernel's is 2 pages per unit
        // more (4 units of 4 kB).
        let probe = Replayer::new(setup(&records(&trace(0)), true), cfg(), false, false).unwrap();
        let ours_kb = probe.allocator().percpu_bytes() / 1024;
        let recs = records(&trace(ours_kb + 32));
        let mut rp = Replayer::new(setup(&recs, true), cfg(), false, false).unwrap();
        for r in &recs {
            rp.feed(r).unwrap();
        }
        let rep = rp.finish(0.0);
        assert_eq!(rep.pre_trace_chunks, 1, "{policy}");
        assert_eq!(rep.pre_trace_frees, 1, "{policy}");
        assert_eq!(rep.pre_trace_top_up_pages, 2, "{policy}");
        assert_eq!(rep.uncreated_chunks, 0, "{policy}");
        // Setting up is not page traffic; the top-up neither.
        assert_eq!(rep.chunks_created, 0, "{policy}");
        assert_eq!(rep.phases[0].percpu_kb, ours_kb + 32, "{policy}");
        if policy.starts_with("linux") {
            assert_eq!(rep.placement_agreement, Some(1.0), "{policy}");
            // The allocation at 4096 took one of the two empty pages; the
            // balance work populates the reserve again (pages 3 to 5).
            assert_eq!(rep.populated_pages, 3, "{policy}");
        }
    }
}

#[test]
fn without_the_inference_a_recording_needs_lenient() {
    let recs = records(&trace(0));
    let geo = parse_dmesg(GEOMETRY).unwrap();
    let setup = Setup::derive(&geo, 4, &recs, false).unwrap();
    let mut rp = Replayer::new(setup, ReplayConfig::default(), false, false).unwrap();
    let e = recs.iter().find_map(|r| rp.feed(r).err()).unwrap();
    assert!(matches!(e, ReplayError::NotFromBoot { .. }), "{e}");
}

/// In a trace from boot, a free of a pointer never allocated in the first
/// chunk is one of its objects from before tracing (tracing starts after
/// the earliest allocations); a second free of a traced pointer is not
/// (the trace allocated that area before it): strict replay stops there.
#[test]
fn a_trace_from_boot_infers_first_chunk_objects_but_not_double_frees() {
    let first = PCPU_BASE + 217_088 + 8192;
    let line = |ev: &str, off: u64| {
        let ptr = first + off - PCPU_BASE;
        match ev {
            "alloc" => format!("  mkdir-100 [001] .....  1.000000: percpu_alloc_percpu: call_site=f+0x1/0x2 reserved=0 is_atomic=0 size=8 align=8 base_addr={first:x} off={off} ptr={ptr:016x} bytes_alloc=48 gfp_flags=\n"),
            _ => format!("  mkdir-100 [001] .....  1.000000: percpu_free_percpu: base_addr={first:x} off={off} ptr={ptr:016x}\n"),
        }
    };
    let text = [
        line("alloc", 64),
        line("free", 0),
        line("free", 64),
        line("free", 64),
    ]
    .concat();
    let recs = records(&text);
    let s = setup(&recs, true);
    assert!(s.pre_chunks.is_empty());
    assert_eq!(
        s.pre_objects
            .iter()
            .map(|o| (o.off, o.len))
            .collect::<Vec<_>>(),
        [(0, 8)]
    );
    let mut rp = Replayer::new(s, ReplayConfig::default(), false, false).unwrap();
    for r in &recs[..3] {
        rp.feed(r).unwrap();
    }
    let e = rp.feed(&recs[3]).unwrap_err();
    assert!(matches!(e, ReplayError::UnknownFree { .. }), "{e}");
}

/// The kernel's `percpu_stats` at START (`percpu-stats.txt`): each chunk
/// in use before tracing gets its own count of empty pages, on its lowest
/// unpopulated pages, and a free chunk the trace never uses is created
/// with its own.
#[test]
fn the_kernels_snapshot_places_the_empty_pages() {
    // A second chunk, free before tracing, that the trace allocates in.
    let other = PCPU_BASE + (8 << 20);
    let alloc_other = format!(
        "  mkdir-100 [001] .....  1.000000: percpu_alloc_percpu: call_site=f+0x1/0x2 reserved=0 is_atomic=0 size=64 align=8 base_addr={other:x} off=0 ptr={:016x} bytes_alloc=48 gfp_flags=\n",
        other - PCPU_BASE
    );
    let recs = records(&(trace(0) + &alloc_other));
    let block = |nr_alloc: u64, empty: u64, free: u64| {
        format!(
            "Chunk:\n  nr_alloc : {nr_alloc}\n  empty_pop_pages : {empty}\n  free_bytes : {free}\n"
        )
    };
    // The chunk in use (two 2048-byte objects: 4096 bytes used), the free
    // one the trace uses, and one it never does; listed out of order.
    let stats = pcpu_trace::parse_percpu_stats(
        &("nr_cur_alloc : 2\nnr_chunks : 4\nempty_pop_pages : 15\nChunk: <- First Chunk\n  nr_alloc : 9\n"
            .to_string()
            + &block(0, 3, 524_288)
            + &block(2, 5, 520_192)
            + &block(0, 7, 524_288)),
    )
    .unwrap();
    // The snapshot taken at the trace's first marker is the one used.
    let other_stats =
        pcpu_trace::parse_percpu_stats("nr_cur_alloc : 0\nnr_chunks : 1\nempty_pop_pages : 0\n")
            .unwrap();
    let snap = |phase: &str, stats: &pcpu_trace::PercpuStats| pcpu_trace::StatsSnapshot {
        phase: phase.into(),
        stats: stats.clone(),
    };
    let snaps = [snap("END", &other_stats), snap("START", &stats)];
    assert_eq!(first_marker_stats(&recs, &snaps), Some(&stats));
    assert_eq!(first_marker_stats(&recs, &snaps[..1]), None);
    let s = setup(&recs, true).with_kernel_start(&stats, true);
    // The shorthand takes the same snapshot, and none without one.
    assert_eq!(setup(&recs, true).with_kernel_stats(&recs, &snaps, true), s);
    assert_eq!(
        setup(&recs, true).with_kernel_stats(&recs, &snaps[..1], true),
        setup(&recs, true)
    );
    let ks = s.kernel_start.clone().unwrap();
    let mut empty = ks.empty_pages.clone();
    empty.sort();
    assert_eq!(empty, vec![(CHUNK, 5), (other, 3)]);
    assert_eq!((ks.free_chunks.len(), ks.unmatched), (1, 0));
    // Without prefill there is nothing to match the snapshot to.
    assert_eq!(
        setup(&recs, false)
            .with_kernel_start(&stats, false)
            .kernel_start,
        None
    );

    let cfg = ReplayConfig {
        policy: "linux-6.1".parse::<Policy>().unwrap(),
        check_invariants: true,
        ..Default::default()
    };
    // Setup's own allocations, made before any empty page was populated,
    // scheduled the balance work; the snapshot's state had none pending
    // (else the first event would run it: with two free chunks, it
    // destroyed one the kernel kept through a whole recording).
    let plain = Replayer::new(setup(&recs, true), cfg.clone(), false, false).unwrap();
    assert!(plain.allocator().balance_pending());
    let rp = Replayer::new(s, cfg, false, false).unwrap();
    assert!(!rp.allocator().balance_pending());
    let a = rp.allocator();
    let pages = |id: pcpu_core::ChunkId| -> Vec<usize> {
        let c = a.chunk(id).unwrap();
        (0..c.nr_pages())
            .filter(|&p| c.is_page_populated(p))
            .collect()
    };
    let dynamic: Vec<_> = a
        .chunk_ids()
        .filter(|&id| id != a.first_chunk() && Some(id) != a.reserved_chunk())
        .collect();
    assert_eq!(dynamic.len(), 3);
    // Found in use first: the chunk with the objects (page 0 holds them),
    // then the free one the trace uses, then the one created from the
    // snapshot alone.
    // Its 5 on its lowest unpopulated pages, above the objects' page.
    assert_eq!(pages(dynamic[0]), [0, 1, 2, 3, 4, 5]);
    assert_eq!(pages(dynamic[1]), [0, 1, 2]);
    assert_eq!(pages(dynamic[2]), (0..7).collect::<Vec<_>>());
    assert_eq!(a.nr_empty_pop_pages(), 15);
    a.check_invariants().unwrap();
}
