//! Property tests: the parser never panics on arbitrary input, and generated records
//! round-trip through their ftrace text and read back from trace-cmd's and perf's.

use std::sync::Arc;

use pcpu_trace::{
    parse_dmesg, parse_meminfo_phases, write, AllocEvent, CallSite, ChunkPages, Event, Flags, Line,
    LineParser, ParseOptions, Record, TraceReader,
};
use proptest::prelude::*;

const SAMPLES: &[&str] = &[
    "          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=",
    "            init-1       [000] d..1.     4.132541: percpu_free_percpu: base_addr=ffff8dc3bbc37000 off=10152 ptr=00000000000397a8",
    "     kworker/1:1-55      [001] d..1.     4.621798: pcpu_chunk_populated: (pcpu_chunk_populated+0x0/0x50) chunk=0xffff8dc28a542600 base_addr=0xfffff22e3fc00000 page_start=0 page_end=3",
    "     kworker/1:1-55      [001] .....     4.618785: pcpu_balance_workfn: (pcpu_balance_workfn+0x0/0x550)",
    "     kworker/1:1-55      [001] .....     4.619722: percpu_create_chunk: base_addr=fffff22e3fc00000",
    "            init-1       [002] .....     6.691243: tracing_mark_write: PHASE BOOT Percpu:             1040 kB",
    "         swapper-1       [000]     0.345678: percpu_alloc_percpu: reserved=0 is_atomic=0 size=16 align=8 base_addr=ffff9a1c7fc00000 off=9216 ptr=0000000000024400",
    "# entries-in-buffer/entries-written: 254402/254402   #P:4",
];

/// Feeds `bytes` through the reader in both modes; checks the line accounting.
fn read_all(bytes: &[u8]) {
    let strict: Vec<_> = TraceReader::new(bytes).collect();
    assert!(strict.iter().filter(|r| r.is_err()).count() <= 1);
    let mut r = TraceReader::new(bytes).with_options(ParseOptions::lenient());
    let n = (&mut r).filter(|x| x.is_ok()).count() as u64;
    let s = r.stats();
    assert_eq!(n, s.records());
    assert_eq!(
        s.lines,
        s.header_lines + s.blank_lines + s.records() + s.unknown + s.malformed
    );
}

fn mutate(line: &str, at: usize, del: usize, ins: &[u8]) -> Vec<u8> {
    let b = line.as_bytes();
    let at = at % (b.len() + 1);
    let end = (at + del).min(b.len());
    let mut out = b[..at].to_vec();
    out.extend_from_slice(ins);
    out.extend_from_slice(&b[end..]);
    out
}

fn task() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_/:<>.#-][A-Za-z0-9_/:<>. #-]{0,14}"
}

fn flags() -> impl Strategy<Value = Option<Flags>> {
    proptest::option::of(
        "[.dDXN][.Nnp][.shHz][.0-9a-f][.0-9]".prop_map(|s| Flags::new(&s).unwrap()),
    )
}

fn pages() -> impl Strategy<Value = ChunkPages> {
    (
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(chunk, base_addr, page_start, page_end)| ChunkPages {
            chunk,
            base_addr,
            page_start,
            page_end,
        })
}

fn alloc() -> impl Strategy<Value = AllocEvent> {
    (
        proptest::option::of(
            "[a-z_][a-z0-9_.]{0,20}\\+0x[0-9a-f]{1,4}/0x[0-9a-f]{1,4}( \\[[a-z_]{1,8}\\])?",
        ),
        any::<(bool, bool)>(),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            0..=i32::MAX as u64,
            any::<u64>(),
        ),
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop_oneof![
            Just(""),
            Just("GFP_KERNEL"),
            Just("GFP_KERNEL|__GFP_ACCOUNT")
        ]),
    )
        .prop_map(
            |(cs, (reserved, is_atomic), (size, align, base_addr, off, ptr), bytes_alloc, gfp)| {
                AllocEvent {
                    call_site: cs.map(|s| CallSite(Arc::from(s))),
                    reserved,
                    is_atomic,
                    size,
                    align,
                    base_addr,
                    off,
                    ptr,
                    bytes_alloc,
                    gfp_flags: gfp.map(Arc::from),
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    let name = "[A-Za-z0-9_]{1,8}";
    prop_oneof![
        alloc().prop_map(Event::Alloc),
        (any::<u64>(), 0..=i32::MAX as u64, any::<u64>()).prop_map(|(base_addr, off, ptr)| {
            Event::Free {
                base_addr,
                off,
                ptr,
            }
        }),
        (any::<(bool, bool)>(), any::<u64>(), any::<u64>()).prop_map(
            |((reserved, is_atomic), size, align)| {
                Event::AllocFail {
                    reserved,
                    is_atomic,
                    size,
                    align,
                }
            }
        ),
        any::<u64>().prop_map(|base_addr| Event::CreateChunk { base_addr }),
        any::<u64>().prop_map(|base_addr| Event::DestroyChunk { base_addr }),
        pages().prop_map(Event::ChunkPopulated),
        pages().prop_map(Event::ChunkDepopulated),
        Just(Event::BalanceWork),
        name.prop_map(|name| Event::PhaseBegin { name }),
        (name, any::<u64>()).prop_map(|(name, kb)| Event::PhasePercpu { name, kb }),
        "[ -~]{0,40}"
            .prop_filter("looks like a PHASE marker", |s| !s.starts_with("PHASE "))
            .prop_map(Event::Marker),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        task(),
        0..=i32::MAX,
        0u32..4096,
        flags(),
        0u64..(1u64 << 50),
        event(),
    )
        .prop_map(|(task, pid, cpu, flags, us, event)| Record {
            line: 1,
            task: Arc::from(task),
            pid,
            cpu,
            flags,
            ts: us as f64 / 1e6,
            event,
        })
}

/// `rec` as `trace-cmd report` (`perf == false`) or `perf script` prints it:
/// no flags column; perf with `<comm> <tid>` and the event's subsystem; both
/// with the trace marker as the `print` event.
fn tool_line(rec: &Record, perf: bool) -> String {
    let event = rec.event.to_string();
    let (name, payload) = event.split_once(": ").unwrap_or((&event, ""));
    let (subsystem, name, payload) = match name {
        "tracing_mark_write" => ("ftrace", "print", format!("tracing_mark_write: {payload}")),
        "pcpu_chunk_populated" | "pcpu_chunk_depopulated" | "pcpu_balance_workfn" => {
            ("percpu_probe", name, payload.to_string())
        }
        _ => ("percpu", name, payload.to_string()),
    };
    if perf {
        format!(
            "{:>16} {} [{:03}] {:.6}: {:>20}:{name}: {payload}",
            rec.task, rec.pid, rec.cpu, rec.ts, subsystem
        )
    } else {
        format!(
            "{:>16}-{} [{:03}] {:.6}: {:<20} {payload}",
            rec.task,
            rec.pid,
            rec.cpu,
            rec.ts,
            format!("{name}:")
        )
    }
}

proptest! {
    #[test]
    fn trace_cmd_and_perf_lines_read_as_the_record(
        rec in record(),
        perf in any::<bool>(),
    ) {
        let text = tool_line(&rec, perf);
        match LineParser::new().parse_line(text.as_bytes(), 1) {
            Ok(Line::Record(back)) => {
                let mut expected = rec.clone();
                expected.flags = None;
                if perf {
                    // perf pads the comm on the left: trailing blanks are lost.
                    expected.task = Arc::from(rec.task.trim_end());
                }
                prop_assert_eq!(back, expected, "text: {}", text);
            }
            other => prop_assert!(false, "text {:?} parsed as {:?}", text, other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        read_all(&bytes);
        let _ = LineParser::new().parse_line(&bytes, 1);
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_dmesg(&text);
        let _ = parse_meminfo_phases(&text);
        let _ = pcpu_trace::from_reader(&bytes[..]).map(|r| r.count());
    }

    #[test]
    fn arbitrary_text_lines_never_panic(lines in proptest::collection::vec("[ -~\t]{0,120}", 0..20)) {
        read_all(lines.join("\n").as_bytes());
    }

    #[test]
    fn mutated_real_lines_never_panic(
        picks in proptest::collection::vec(
            (0..SAMPLES.len(), any::<usize>(), 0usize..12, proptest::collection::vec(any::<u8>(), 0..6)),
            1..12,
        )
    ) {
        let mut text = Vec::new();
        for (i, at, del, ins) in picks {
            text.extend(mutate(SAMPLES[i], at, del, &ins));
            text.push(b'\n');
        }
        read_all(&text);
    }

    #[test]
    fn hand_formatted_lines_are_the_display_text(
        rec in record(),
        task in "[ -~é]{0,20}",
        pid in any::<i32>(),
        ts in prop_oneof![any::<f64>(), 0.0..1e7f64, (0u64..1u64 << 40).prop_map(|n| n as f64 / 1e7)],
    ) {
        let mut out = Vec::new();
        pcpu_trace::line::format_record(&mut out, &rec);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{rec}\n"));
        let other = Record { task: Arc::from(task), pid, ts, ..rec };
        let mut out = Vec::new();
        pcpu_trace::line::format_record(&mut out, &other);
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{other}\n"));
    }

    #[test]
    fn generated_records_round_trip(rec in record(), line_no in 1u64..1_000_000) {
        let text = rec.to_string();
        let mut p = LineParser::new();
        match p.parse_line(text.as_bytes(), line_no) {
            Ok(Line::Record(back)) => {
                let mut expected = rec.clone();
                expected.line = line_no;
                prop_assert_eq!(back, expected, "text: {}", text);
            }
            other => prop_assert!(false, "text {:?} parsed as {:?}", text, other),
        }
    }

    #[test]
    fn written_traces_read_back(recs in proptest::collection::vec(record(), 0..20)) {
        let mut out = Vec::new();
        write::write_trace(&mut out, 4, &recs).unwrap();
        let back: Vec<Record> = TraceReader::new(&out[..]).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back.len(), recs.len());
        for (i, (b, r)) in back.iter().zip(&recs).enumerate() {
            prop_assert_eq!(b.line, 13 + i as u64);
            let mut r = r.clone();
            r.line = b.line;
            prop_assert_eq!(b, &r);
        }
    }
}
