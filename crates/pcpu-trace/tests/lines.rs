//! Line-level parser tests: 6.x and 5.x layouts, tolerance rules and every error kind.

use pcpu_trace::{
    AllocEvent, ChunkPages, Event, Line, LineParser, ParseError, ParseErrorKind, ParseOptions,
    Record, TraceReader,
};

const ALLOC_6X: &str = "          <idle>-0       [000] d..1.     1.428070: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 off=2208 ptr=00000000000378a0 bytes_alloc=24 gfp_flags=";

fn rec(line: &str) -> Record {
    LineParser::new()
        .parse_record(line)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn err(line: &str) -> ParseError {
    match LineParser::new().parse_line(line.as_bytes(), 7) {
        Err(e) => e,
        Ok(l) => panic!("expected an error, got {l:?}"),
    }
}

fn alloc(r: &Record) -> &AllocEvent {
    match &r.event {
        Event::Alloc(a) => a,
        other => panic!("not an alloc: {other:?}"),
    }
}

#[test]
fn alloc_6x() {
    let r = rec(ALLOC_6X);
    assert_eq!(&*r.task, "<idle>");
    assert_eq!((r.pid, r.cpu, r.ts), (0, 0, 1.428070));
    assert_eq!(r.flags.map(|f| f.to_string()).as_deref(), Some("d..1."));
    assert!(r.flags.unwrap().irqs_off());
    assert_eq!(r.flags.unwrap().preempt_depth(), Some(1));
    let a = alloc(&r);
    assert_eq!(
        a.call_site.as_ref().unwrap().as_str(),
        "alloc_desc+0x50/0x250"
    );
    assert_eq!(a.caller(), Some("alloc_desc"));
    assert_eq!(a.call_site.as_ref().unwrap().offset(), Some(0x50));
    assert_eq!(a.call_site.as_ref().unwrap().address(), None);
    assert!(!a.reserved && !a.is_atomic);
    assert_eq!((a.size, a.align, a.off), (4, 4, 2208));
    assert_eq!(a.base_addr, 0xffff8dc3bbc37000);
    assert_eq!(a.ptr, 0x378a0);
    assert_eq!(a.bytes_alloc, Some(24));
    assert_eq!(a.gfp_flags.as_deref(), Some(""));
    assert_eq!(a.pcpu_base_addr(), 0xffff8dc3bbc00000);
    // And it prints back verbatim.
    assert_eq!(r.to_string(), ALLOC_6X);
}

#[test]
fn alloc_5x_without_new_fields_and_without_flags() {
    let line = "         swapper-1       [000]     0.345678: percpu_alloc_percpu: reserved=1 is_atomic=1 size=16 align=8 base_addr=ffff9a1c7fc00000 off=9216 ptr=0000000000024400";
    let r = rec(line);
    assert_eq!(r.flags, None);
    assert_eq!(&*r.task, "swapper");
    let a = alloc(&r);
    assert!(a.reserved && a.is_atomic);
    assert_eq!(
        (a.call_site.as_ref(), a.bytes_alloc, a.gfp_flags.as_ref()),
        (None, None, None)
    );
    assert_eq!(a.caller(), None);
    assert_eq!(r.to_string(), line);
    // Old 4-character flags column.
    let r = rec("         swapper-1       [000] d.s1     0.345678: percpu_free_percpu: base_addr=ffff9a1c7fc00000 off=9216 ptr=0000000000024400");
    assert_eq!(r.flags.unwrap().as_str(), "d.s1");
    assert!(r.flags.unwrap().in_softirq());
}

#[test]
fn reordered_added_and_0x_fields() {
    let r = rec("  a-1 [002] ..... 5.000000: percpu_alloc_percpu: ptr=0x10 off=16 new_field=42 base_addr=0xFFFF0000 size=8 align=8 is_atomic=0 reserved=0 gfp_flags=GFP_KERNEL|__GFP_ACCOUNT bytes_alloc=64");
    let a = alloc(&r);
    assert_eq!(
        (a.ptr, a.off, a.base_addr, a.size),
        (0x10, 16, 0xffff0000, 8)
    );
    assert_eq!(a.gfp_flags.as_deref(), Some("GFP_KERNEL|__GFP_ACCOUNT"));
}

#[test]
fn empty_gfp_flags_in_the_middle_and_call_site_forms() {
    let r = rec("  a-1 [002] ..... 5.000000: percpu_alloc_percpu: gfp_flags= call_site=0xffffffff81234567 reserved=0 is_atomic=0 size=8 align=8 base_addr=1000 off=0 ptr=0");
    let a = alloc(&r);
    assert_eq!(a.gfp_flags.as_deref(), Some(""));
    assert_eq!(
        a.call_site.as_ref().unwrap().address(),
        Some(0xffffffff81234567)
    );
    // A module symbol: `%pS` prints ` [module]` after the offset.
    let r = rec("  a-1 [002] ..... 5.000000: percpu_alloc_percpu: call_site=nf_ct_init+0x1/0x20 [nf_conntrack] reserved=0 is_atomic=0 size=8 align=8 base_addr=1000 off=0 ptr=(null)");
    let a = alloc(&r);
    assert_eq!(
        a.call_site.as_ref().unwrap().as_str(),
        "nf_ct_init+0x1/0x20 [nf_conntrack]"
    );
    assert_eq!(a.caller(), Some("nf_ct_init"));
    assert_eq!(a.ptr, 0);
}

#[test]
fn other_tracepoints() {
    let r = rec("     kworker/1:1-55      [001] .....     4.619722: percpu_create_chunk: base_addr=fffff22e3fc00000");
    assert_eq!(
        r.event,
        Event::CreateChunk {
            base_addr: 0xfffff22e3fc00000
        }
    );
    assert_eq!(&*r.task, "kworker/1:1");
    assert_eq!((r.pid, r.cpu), (55, 1));
    let r = rec("     kworker/0:2-35      [000] .....    88.062024: percpu_destroy_chunk: base_addr=fffff22e3fa00000");
    assert_eq!(
        r.event,
        Event::DestroyChunk {
            base_addr: 0xfffff22e3fa00000
        }
    );
    let r = rec("            init-1       [000] d..1.     4.132541: percpu_free_percpu: base_addr=ffff8dc3bbc37000 off=10152 ptr=00000000000397a8");
    assert_eq!(
        r.event,
        Event::Free {
            base_addr: 0xffff8dc3bbc37000,
            off: 10152,
            ptr: 0x397a8
        }
    );
    let r = rec("            bash-9       [003] .....    13.000000: percpu_alloc_percpu_fail: reserved=0 is_atomic=1 size=65536 align=8");
    assert_eq!(
        r.event,
        Event::AllocFail {
            reserved: false,
            is_atomic: true,
            size: 65536,
            align: 8
        }
    );
}

#[test]
fn kprobes() {
    let line = "     kworker/1:1-55      [001] d..1.     4.621798: pcpu_chunk_populated: (pcpu_chunk_populated+0x0/0x50) chunk=0xffff8dc28a542600 base_addr=0xfffff22e3fc00000 page_start=0 page_end=3";
    let r = rec(line);
    let p = ChunkPages {
        chunk: Some(0xffff8dc28a542600),
        base_addr: 0xfffff22e3fc00000,
        page_start: 0,
        page_end: 3,
    };
    assert_eq!(r.event, Event::ChunkPopulated(p));
    assert_eq!(p.nr_pages(), 3);
    assert_eq!(r.to_string(), line);
    let line = "     kworker/1:3-11299   [001] d..1.    44.768916: pcpu_chunk_depopulated: (pcpu_chunk_depopulated+0x0/0x60) chunk=0xffff8dc3bfe3c780 base_addr=0xfffff22e3fa00000 page_start=44 page_end=47";
    let r = rec(line);
    assert!(matches!(
        r.event,
        Event::ChunkDepopulated(ChunkPages {
            page_start: 44,
            page_end: 47,
            ..
        })
    ));
    assert_eq!(r.to_string(), line);
    let line = "     kworker/1:1-55      [001] .....     4.618785: pcpu_balance_workfn: (pcpu_balance_workfn+0x0/0x550)";
    let r = rec(line);
    assert_eq!(r.event, Event::BalanceWork);
    assert_eq!(r.to_string(), line);
    // Without the `chunk` field, without a symbol, and under another probe name.
    let r = rec("  k-5 [000] ..... 1.000000: pcpu_chunk_populated: (ffffffff8123abcd) base_addr=0x1000 page_start=1 page_end=2");
    assert_eq!(
        r.event,
        Event::ChunkPopulated(ChunkPages {
            chunk: None,
            base_addr: 0x1000,
            page_start: 1,
            page_end: 2
        })
    );
    let r = rec("  k-5 [000] ..... 1.000000: my_probe: (pcpu_chunk_depopulated+0x0/0x60) base_addr=0x1000 page_start=1 page_end=2");
    assert!(matches!(r.event, Event::ChunkDepopulated(_)));
    let r =
        rec("  k-5 [000] ..... 1.000000: p_pcpu_balance_workfn_0: (pcpu_balance_workfn+0x0/0x550)");
    assert_eq!(r.event, Event::BalanceWork);
}

#[test]
fn markers() {
    let line =
        "            init-1       [002] .....     6.678896: tracing_mark_write: PHASE BOOT begin";
    let r = rec(line);
    assert_eq!(
        r.event,
        Event::PhaseBegin {
            name: "BOOT".into()
        }
    );
    assert_eq!(r.to_string(), line);
    let line = "            init-1       [002] .....     6.691243: tracing_mark_write: PHASE BOOT Percpu:             1040 kB";
    let r = rec(line);
    assert_eq!(
        r.event,
        Event::PhasePercpu {
            name: "BOOT".into(),
            kb: 1040
        }
    );
    assert_eq!(r.to_string(), line);
    let r = rec("  init-1 [002] ..... 6.0: tracing_mark_write: PHASE R1c Percpu: 13088");
    assert_eq!(
        r.event,
        Event::PhasePercpu {
            name: "R1c".into(),
            kb: 13088
        }
    );
    let r = rec("  init-1 [002] ..... 6.0: tracing_mark_write: hello: world a=b");
    assert_eq!(r.event, Event::Marker("hello: world a=b".into()));
    let r = rec("  init-1 [002] ..... 6.0: tracing_mark_write: PHASE only");
    assert_eq!(r.event, Event::Marker("PHASE only".into()));
    // A name may hold spaces: it runs up to the last ` begin` / `Percpu:`.
    let r = rec("  init-1 [002] ..... 6.9: tracing_mark_write: PHASE weird name Percpu: 1040 kB");
    assert_eq!(
        r.event,
        Event::PhasePercpu {
            name: "weird name".into(),
            kb: 1040
        }
    );
    let r = rec("  init-1 [002] ..... 6.9: tracing_mark_write: PHASE after begin begin");
    assert_eq!(
        r.event,
        Event::PhaseBegin {
            name: "after begin".into()
        }
    );
    // Text that only starts like a marker stays plain.
    let r = rec("  init-1 [002] ..... 6.9: tracing_mark_write: PHASE X begin extra");
    assert_eq!(r.event, Event::Marker("PHASE X begin extra".into()));
    let r = rec("  init-1 [002] ..... 6.9: tracing_mark_write: PHASE XPercpu: 3 kB");
    assert_eq!(r.event, Event::Marker("PHASE XPercpu: 3 kB".into()));
}

#[test]
fn task_names_with_spaces_dashes_and_brackets() {
    let r = rec(" my task-name-x-1234    [001] d..1    12.000001: percpu_free_percpu: base_addr=1 off=64 ptr=2");
    assert_eq!((&*r.task, r.pid, r.cpu), ("my task-name-x", 1234, 1));
    let r = rec("  a [1]-b-77 [003] ..... 1.5: percpu_create_chunk: base_addr=1");
    assert_eq!((&*r.task, r.pid, r.cpu), ("a [1]-b", 77, 3));
    let r =
        rec("           <...>-37      [001] .....     4.164541: percpu_create_chunk: base_addr=1");
    assert_eq!((&*r.task, r.pid), ("<...>", 37));
    // record-tgid column.
    let r = rec(
        "            bash-1234    (   1234) [001] ..... 1.000000: percpu_create_chunk: base_addr=1",
    );
    assert_eq!((&*r.task, r.pid, r.cpu), ("bash", 1234, 1));
    let r = rec(
        "     kworker/0:1-17      (-------) [000] ..... 1.000000: percpu_create_chunk: base_addr=1",
    );
    assert_eq!((&*r.task, r.pid), ("kworker/0:1", 17));
}

#[test]
fn perf_script_layout() {
    // `perf script`: `<comm> <tid> [cpu] <ts>: <subsystem>:<event>: <payload>`, no
    // flags column, pointers with `0x`, call sites without the function size.
    let r = rec("      capture.sh 16996 [001] 82401.861742:      percpu:percpu_alloc_percpu: call_site=tracing_mark_open+0x106 reserved=0 is_atomic=0 size=8 align=8 base_addr=0xffffe8ffffc00000 off=43744 ptr=0x60795bb03ae0 bytes_alloc=32 gfp_flags=GFP_KERNEL");
    assert_eq!(
        (&*r.task, r.pid, r.cpu, r.flags, r.ts),
        ("capture.sh", 16996, 1, None, 82401.861742)
    );
    let a = alloc(&r);
    assert_eq!(a.caller(), Some("tracing_mark_open"));
    assert_eq!(
        (a.base_addr, a.off, a.ptr),
        (0xffffe8ffffc00000, 43744, 0x60795bb03ae0)
    );
    assert_eq!(a.gfp_flags.as_deref(), Some("GFP_KERNEL"));
    let r = rec("         swapper     0 [000] 82402.370540:       percpu:percpu_free_percpu: base_addr=0xffffe8ffffc00000 off=108408 ptr=0x60795bb1a778");
    assert_eq!((&*r.task, r.pid), ("swapper", 0));
    assert!(matches!(r.event, Event::Free { off: 108408, .. }));
    // `-F +pid` prints `pid/tid`: the thread id is the record's pid, as in ftrace.
    let r = rec("  capture.sh 16996/17001 [001] 1.5: percpu:percpu_free_percpu: base_addr=0x1 off=8 ptr=0x9");
    assert_eq!((&*r.task, r.pid), ("capture.sh", 17001));
    // A comm with spaces, and one ending in `-<digits>` (not an ftrace pid: a space follows).
    let r = rec("  my task 42 [000] 1.0: percpu:percpu_create_chunk: base_addr=0x1");
    assert_eq!((&*r.task, r.pid), ("my task", 42));
    let r = rec("  worker-7 42 [000] 1.0: percpu:percpu_create_chunk: base_addr=0x1");
    assert_eq!((&*r.task, r.pid), ("worker-7", 42));
    // Other subsystems' events are unknown events, named without the subsystem.
    let l = LineParser::new().parse_line(
        b"  bash 1 [000] 1.0: sched:sched_switch: prev_comm=a ==> next_comm=b\n",
        3,
    );
    assert!(
        matches!(
            l,
            Ok(Line::Unknown {
                event: b"sched_switch"
            })
        ),
        "{l:?}"
    );
    // A colon inside an ftrace payload is not a subsystem.
    let r = rec("  init-1 [002] ..... 6.0: tracing_mark_write: note: PHASE A begin");
    assert_eq!(r.event, Event::Marker("note: PHASE A begin".into()));
    // A lone word before the cpu is neither `task-pid` nor `comm tid`.
    let e = err("  bash [000] 1.0: percpu:percpu_create_chunk: base_addr=0x1");
    assert!(matches!(e.kind, ParseErrorKind::Layout { .. }), "{e}");
}

#[test]
fn trace_cmd_report_layout() {
    // `trace-cmd report`: ftrace's columns without flags, libtraceevent's payloads, the
    // trace marker as the `print` event, and a few header lines.
    let r = rec(" capture-small.s-18541 [001] 82553.874035: print:                tracing_mark_write: PHASE A begin");
    assert_eq!((&*r.task, r.pid, r.flags), ("capture-small.s", 18541, None));
    assert_eq!(r.event, Event::PhaseBegin { name: "A".into() });
    let r = rec(" capture-small.s-18541 [001] 82553.877239: print:                tracing_mark_write: PHASE A Percpu: 1856 kB");
    assert_eq!(
        r.event,
        Event::PhasePercpu {
            name: "A".into(),
            kb: 1856
        }
    );
    let r = rec("      capture.sh-16996 [000] 82400.884353: percpu_alloc_percpu:  call_site=mm_init+0x2bf reserved=0 is_atomic=0 size=16 align=8 base_addr=0xffffe8ffffc00000 off=43712 ptr=0x60795bb03ac0 bytes_alloc=64 gfp_flags=GFP_KERNEL");
    assert_eq!((alloc(&r).size, alloc(&r).off), (16, 43712));
    let mut p = LineParser::new();
    for header in ["cpus=2", "version = 6", "CPU 3 is empty", "cpus=64\r\n"] {
        let l = p.parse_line(header.as_bytes(), 1);
        assert!(matches!(l, Ok(Line::Comment(_))), "{header}: {l:?}");
    }
    for not_header in ["cpus=", "cpus=two", "CPU x is empty", "version = 6.1"] {
        assert!(
            p.parse_line(not_header.as_bytes(), 1).is_err(),
            "{not_header}"
        );
    }
    // A `print` event that is not a trace marker (trace_printk) is an unknown event.
    let l = p.parse_line(b"  bash-1 [000] 1.0: print:  do_thing: hello\n", 2);
    assert!(matches!(l, Ok(Line::Unknown { event: b"print" })), "{l:?}");
    // `cpus=N` is the header's number of CPUs.
    let text = "cpus=2\n  bash-1 [000] 1.0: percpu_create_chunk:  base_addr=0x10\n";
    let mut reader = TraceReader::new(text.as_bytes());
    assert_eq!(reader.by_ref().count(), 1);
    assert_eq!(reader.header().nr_cpus, Some(2));
    assert_eq!(reader.stats().header_lines, 1);
}

#[test]
fn control_characters_in_names_and_markers_are_escaped() {
    // A task may name itself anything (prctl), and a marker is any text:
    // escape sequences must not reach a terminal (pins tables, phase names)
    // nor control characters an SVG plot (malformed XML).
    let r = rec("  \x1b]0;pwned\x07\x1b[31mX-5 [001] ..... 1.0: percpu_alloc_percpu: call_site=evil\x1b[2Jfn+0x1/0x2 reserved=0 is_atomic=0 size=4 align=4 base_addr=1 off=4 ptr=1 gfp_flags=\x1b");
    assert_eq!(&*r.task, "\\u{1b}]0;pwned\\u{7}\\u{1b}[31mX");
    let a = alloc(&r);
    assert_eq!(a.caller(), Some("evil\\u{1b}[2Jfn"));
    assert_eq!(a.gfp_flags.as_deref(), Some("\\u{1b}"));
    for (marker, event) in [
        (
            "PHASE \x1b[2JA begin",
            Event::PhaseBegin {
                name: "\\u{1b}[2JA".into(),
            },
        ),
        (
            "PHASE A\x07 Percpu: 5 kB",
            Event::PhasePercpu {
                name: "A\\u{7}".into(),
                kb: 5,
            },
        ),
        ("hello\x1b[0m", Event::Marker("hello\\u{1b}[0m".into())),
    ] {
        let r = rec(&format!(
            "  init-1 [002] ..... 6.0: tracing_mark_write: {marker}"
        ));
        assert_eq!(r.event, event);
    }
    // Printable text beyond ASCII is kept as it is.
    let r = rec("  t\u{e9}-1 [000] ..... 1.0: tracing_mark_write: PHASE B begin");
    assert_eq!(&*r.task, "t\u{e9}");
}

#[test]
fn comments_blank_unknown_and_crlf() {
    let mut p = LineParser::new();
    assert!(matches!(
        p.parse_line(b"# tracer: nop\n", 1),
        Ok(Line::Comment(b"# tracer: nop"))
    ));
    assert!(matches!(p.parse_line(b"   \n", 2), Ok(Line::Blank)));
    assert!(matches!(p.parse_line(b"", 2), Ok(Line::Blank)));
    let l = p.parse_line(
        b"  bash-1 [000] ..... 1.0: sched_switch: prev_comm=a ==> next_comm=b\n",
        3,
    );
    assert!(
        matches!(
            l,
            Ok(Line::Unknown {
                event: b"sched_switch"
            })
        ),
        "{l:?}"
    );
    let l = p.parse_line(
        b"  bash-1 [000] ..... 1.0: percpu_create_chunk: base_addr=10\r\n",
        4,
    );
    match l {
        Ok(Line::Record(r)) => {
            assert_eq!(r.event, Event::CreateChunk { base_addr: 0x10 });
            assert_eq!(r.line, 4);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn interned_task_names_are_shared() {
    let mut p = LineParser::new();
    let a = p
        .parse_record("  bash-1 [000] ..... 1.0: percpu_create_chunk: base_addr=10")
        .unwrap();
    let _ = p
        .parse_record("  init-1 [000] ..... 1.0: percpu_create_chunk: base_addr=10")
        .unwrap();
    let b = p
        .parse_record("  bash-1 [001] ..... 2.0: percpu_destroy_chunk: base_addr=10")
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a.task, &b.task));
}

#[test]
fn layout_errors() {
    let e = err("this line is not an ftrace event line");
    assert_eq!(
        e.to_string(),
        "line 7: expected `<task>-<pid> [cpu] ... ts: event:` (no `<task>-<pid> [cpu]` columns), found `this line is not an ftrace event line`"
    );
    let e = err("  bash-1 [000] ..... 1.0x: percpu_create_chunk: base_addr=10");
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::Layout {
                problem: "bad timestamp",
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("line 7: expected `<task>-<pid> [cpu] ... ts: event:` (bad timestamp)"));
    // A timestamp too long for an f64 is not infinity (a plot of it would
    // never finish its axis).
    let huge = format!(
        "  bash-1 [000] ..... 1{}.0: percpu_create_chunk: base_addr=10",
        "0".repeat(309)
    );
    assert!(
        matches!(
            err(&huge).kind,
            ParseErrorKind::Layout {
                problem: "bad timestamp",
                ..
            }
        ),
        "{}",
        err(&huge)
    );
    assert!(LineParser::new()
        .parse_record(&huge.replace(
            &format!("1{}.0", "0".repeat(309)),
            &format!("1{}.0", "0".repeat(300))
        ))
        .is_ok_and(|r| r.ts == 1e300));
    let e = err("  bash-1 [000] ..... 1.0: percpu_create_chunk base_addr=10");
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::Layout {
                problem: "no `event:` after the timestamp",
                ..
            }
        ),
        "{e}"
    );
    let e = err("  bash-1 [000] ..... 1.0:");
    assert!(matches!(e.kind, ParseErrorKind::Layout { .. }), "{e}");
    let e = err("  bash-1 [000] toolongflags 1.0: percpu_create_chunk: base_addr=10");
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::Layout {
                problem: "bad flags column",
                ..
            }
        ),
        "{e}"
    );
    let e = err("  bash-1 [000]..... 1.0: percpu_create_chunk: base_addr=10");
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::Layout {
                problem: "no space after `[cpu]`",
                ..
            }
        ),
        "{e}"
    );
    let e = err("  bash [000] ..... 1.0: percpu_create_chunk: base_addr=10");
    assert!(matches!(e.kind, ParseErrorKind::Layout { .. }), "{e}");
    // Long lines are cut in the message.
    let long = format!("x{}", "y".repeat(500));
    let e = err(&long);
    assert!(e.to_string().len() < 250, "{e}");
}

#[test]
fn field_errors() {
    let e = err("  <idle>-0 [000] d..1. 1.428480: percpu_alloc_percpu: call_site=alloc_desc+0x50/0x250 reserved=0 is_atomic=0 size=4 align=4 base_addr=ffff8dc3bbc37000 ptr=00000000000378a4 bytes_alloc=24 gfp_flags=");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu: missing field `off`"
    );
    assert_eq!(
        e.kind,
        ParseErrorKind::MissingField {
            event: "percpu_alloc_percpu",
            field: "off"
        }
    );
    let e = err("  a-0 [000] d..1. 1.0: percpu_alloc_percpu: reserved=0 is_atomic=0 size=4 align=4 base_addr=1 off=-8 ptr=1");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu: field `off`: expected a non-negative decimal integer, found `-8`"
    );
    let e = err("  a-0 [000] d..1. 1.0: percpu_alloc_percpu: reserved=0 is_atomic=0 size=4 align=4 base_addr=(____ptrval____) off=8 ptr=1");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu: field `base_addr`: expected a raw hex pointer (trace with trace_options=nohash-ptr), found `(____ptrval____)`"
    );
    let e = err("  a-0 [000] d..1. 1.0: percpu_alloc_percpu: reserved=2 is_atomic=0 size=4 align=4 base_addr=1 off=8 ptr=1");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu: field `reserved`: expected 0 or 1, found `2`"
    );
    let e = err("  a-0 [000] d..1. 1.0: percpu_alloc_percpu: reserved=0 is_atomic=0 size=4k align=4 base_addr=1 off=8 ptr=1");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu: field `size`: expected a decimal integer, found `4k`"
    );
    let e =
        err("  a-0 [000] d..1. 1.0: percpu_free_percpu: base_addr=1 off=8 ptr=12345678901234567");
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::BadValue {
                event: "percpu_free_percpu",
                field: "ptr",
                ..
            }
        ),
        "{e}"
    );
    let e = err("  a-0 [000] d..1. 1.0: percpu_create_chunk:");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_create_chunk: missing field `base_addr`"
    );
    let e = err("  k-1 [001] d..1. 4.0: pcpu_chunk_depopulated: (pcpu_chunk_depopulated+0x0/0x60) chunk=0x1 base_addr=0x2 page_start=-1 page_end=47");
    assert_eq!(
        e.to_string(),
        "line 7: pcpu_chunk_depopulated: field `page_start`: expected a non-negative 32-bit decimal integer, found `-1`"
    );
    let e = err("  k-1 [001] d..1. 4.0: pcpu_chunk_populated: (pcpu_chunk_populated+0x0/0x50) chunk=0x1 base_addr=0x2 page_start=1");
    assert_eq!(
        e.to_string(),
        "line 7: pcpu_chunk_populated: missing field `page_end`"
    );
    let e = err("  k-1 [001] d..1. 4.0: percpu_alloc_percpu_fail: reserved=0 is_atomic=0 size=4");
    assert_eq!(
        e.to_string(),
        "line 7: percpu_alloc_percpu_fail: missing field `align`"
    );
    let e = err("  init-1 [002] ..... 6.0: tracing_mark_write: PHASE BOOT Percpu: lots kB");
    assert_eq!(
        e.to_string(),
        "line 7: tracing_mark_write: field `Percpu`: expected `PHASE <name> Percpu: <n> kB`, found `lots kB`"
    );
    // A phase marker without a name.
    for marker in [
        "PHASE  Percpu: 1040 kB",
        "PHASE Percpu: 1",
        "PHASE  begin",
        "PHASE begin",
    ] {
        let e = err(&format!(
            "  init-1 [002] ..... 6.0: tracing_mark_write: {marker}"
        ));
        assert!(
            e.to_string()
                .starts_with("line 7: tracing_mark_write: field `name`: expected"),
            "{marker}: {e}"
        );
    }
}

#[test]
fn truncated_and_io_error_messages() {
    let text = format!("{ALLOC_6X}\n{}", &ALLOC_6X[..120]);
    let mut it = TraceReader::new(text.as_bytes());
    assert!(it.next().unwrap().is_ok());
    let e = it.next().unwrap().unwrap_err();
    assert_eq!(e.line, 2);
    assert!(matches!(e.kind, ParseErrorKind::Truncated { .. }));
    assert!(
        e.to_string()
            .starts_with("line 2: truncated line (no trailing newline): `"),
        "{e}"
    );
    assert!(it.next().is_none());
    // A cut line that happens to parse is still reported as truncated.
    let text = format!("{ALLOC_6X}\n{}", &ALLOC_6X[..ALLOC_6X.len() - 15]);
    let errs: Vec<_> = TraceReader::new(text.as_bytes())
        .filter_map(Result::err)
        .collect();
    assert_eq!(errs.len(), 1);
    assert!(matches!(errs[0].kind, ParseErrorKind::Truncated { .. }));
    // But a final header or blank line without newline is fine.
    let text = format!("{ALLOC_6X}\n# end");
    assert!(TraceReader::new(text.as_bytes()).all(|r| r.is_ok()));
    let io = ParseError::io(
        3,
        &std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "boom"),
    );
    assert_eq!(io.to_string(), "line 3: read error: boom");
    assert!(io.is_io());
}

#[test]
fn strict_stops_lenient_counts() {
    let text = format!("{ALLOC_6X}\nnot a line\n{ALLOC_6X}\n");
    let strict: Vec<_> = TraceReader::new(text.as_bytes()).collect();
    assert_eq!(strict.len(), 2);
    assert!(strict[1].is_err());
    let mut lenient = TraceReader::new(text.as_bytes()).with_options(ParseOptions::lenient());
    let ok: Vec<_> = (&mut lenient).collect::<Result<_, _>>().unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[1].line, 3);
    assert_eq!(lenient.stats().malformed, 1);
    assert_eq!(lenient.stats().errors[0].line, 2);
    assert_eq!(lenient.stats().records(), 2);
}

/// ftrace's `CPU:N [LOST M EVENTS]` is named as lost events (not a malformed
/// line): strict reading stops there, lenient reading sums the events lost
/// and goes on; near misses stay malformed lines.
#[test]
fn lost_events_are_named() {
    let text =
        format!("{ALLOC_6X}\nCPU:3 [LOST 42 EVENTS]\n{ALLOC_6X}\n  CPU:1 [LOST 8 EVENTS] \n");
    let strict: Vec<_> = TraceReader::new(text.as_bytes()).collect();
    assert_eq!(strict.len(), 2);
    let e = strict[1].as_ref().unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(
        e.kind,
        ParseErrorKind::LostEvents {
            cpu: 3,
            count: Some(42)
        }
    );
    assert!(e.to_string().contains("lost 42 events of CPU 3"), "{e}");
    assert!(e.to_string().contains("trace_buf_size"), "{e}");
    let mut lenient = TraceReader::new(text.as_bytes()).with_options(ParseOptions::lenient());
    let ok: Vec<_> = (&mut lenient).collect::<Result<_, _>>().unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(lenient.stats().lost_events, 50);
    assert_eq!(lenient.stats().first_lost_line, 2);
    assert_eq!(lenient.stats().malformed, 0);
    // trace-cmd's reports, with and without a count.
    let text = format!("{ALLOC_6X}\nCPU:7 [204600 EVENTS DROPPED]\nCPU:2 [EVENTS DROPPED]\n");
    let strict: Vec<_> = TraceReader::new(text.as_bytes()).collect();
    let e = strict[1].as_ref().unwrap_err();
    assert_eq!(
        e.kind,
        ParseErrorKind::LostEvents {
            cpu: 7,
            count: Some(204600)
        }
    );
    let e = LineParser::new()
        .parse_line(b"CPU:2 [EVENTS DROPPED]", 9)
        .unwrap_err();
    assert_eq!(
        e.kind,
        ParseErrorKind::LostEvents {
            cpu: 2,
            count: None
        }
    );
    assert!(
        e.to_string()
            .contains("lost an unknown number of events of CPU 2"),
        "{e}"
    );
    let mut lenient = TraceReader::new(text.as_bytes()).with_options(ParseOptions::lenient());
    assert_eq!((&mut lenient).filter(|r| r.is_ok()).count(), 1);
    let s = lenient.stats();
    assert_eq!(
        (s.lost_events, s.lost_uncounted, s.first_lost_line),
        (204600, 1, 2)
    );
    for near in [
        "CPU:x [LOST 4 EVENTS]",
        "CPU:1 [LOST four EVENTS]",
        "CPU:1 [LOST 4 EVENT]",
        "CPU:1 [4 EVENTS DROPED]",
        "CPU:1 [four EVENTS DROPPED]",
        "CPU:1 [EVENTS DROPPED",
    ] {
        let err = LineParser::new()
            .parse_line(near.as_bytes(), 7)
            .unwrap_err();
        assert!(
            !matches!(err.kind, ParseErrorKind::LostEvents { .. }),
            "{near}: {err}"
        );
    }
}
