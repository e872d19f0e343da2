//! Random, well-formed traces of nonsense (sizes, alignments, offsets,
//! chunks, page ranges, frees of anything) replayed in every mode: the replay
//! either finishes or returns an error, never panics, and the allocator's
//! invariants hold after every event it accepts.

use pcpu_core::Policy;
use pcpu_replay::*;
use pcpu_trace::{FirstChunkGeometry, ParseOptions, TraceReader};
use proptest::prelude::*;

/// The first chunk's base address of the geometry below, and two others.
const BASES: [u64; 4] = [
    0xffff_8dc3_bbc3_7000,
    0xffff_f075_ffc0_0000,
    0xffff_f075_ffc8_0000,
    // Where additions wrap.
    0xffff_ffff_ffff_f000,
];
/// `pcpu_base_addr` of every allocation (`base_addr + off - ptr`).
const PCPU_BASE: u64 = 0xffff_8dc3_bbc0_0000;

#[derive(Clone, Debug)]
enum Ev {
    Alloc {
        size: u64,
        align: u64,
        base: usize,
        off: u64,
        atomic: bool,
        /// A pointer that does not match `base` and `off` (a corrupt line).
        bogus_ptr: Option<u64>,
    },
    /// Free the `k`th allocation so far (or a made-up pointer when none).
    Free(usize),
    Page {
        populate: bool,
        base: usize,
        start: u32,
        end: u32,
    },
    Balance,
    Create(usize),
    Destroy(usize),
    Phase(u8),
}

fn ev() -> impl Strategy<Value = Ev> {
    // Mostly requests the allocator accepts, so that replays go on long
    // enough to reach odd states; now and then nonsense.
    let size = prop_oneof![
        8 => (1u64..=1024).prop_map(|w| w * 4),
        1 => prop_oneof![Just(0u64), Just(12), Just(32768), Just(32769), 1u64..70_000],
    ];
    let align = prop_oneof![
        8 => prop_oneof![Just(4u64), Just(8), Just(64)],
        1 => prop_oneof![Just(0u64), Just(3), Just(4096), Just(8192)],
    ];
    // Offsets in the unit (the first chunk manages only its dynamic area,
    // bytes 225280 to 253952, so offsets there are drawn from it).
    let off = prop_oneof![
        8 => (0u64..131_072).prop_map(|w| w * 4),
        1 => prop_oneof![0u64..600_000, Just(u64::MAX - 3), Just(1 << 40)],
    ];
    let first_off = (0u64..7168).prop_map(|w| 225_280 + w * 4);
    let bogus = prop_oneof![15 => Just(None), 1 => any::<u64>().prop_map(Some)];
    prop_oneof![
        4 => (size.clone(), align.clone(), prop_oneof![8 => 1usize..3, 1 => Just(3)], off, any::<bool>(), bogus.clone())
            .prop_map(|(size, align, base, off, atomic, bogus_ptr)| Ev::Alloc {
                size, align, base, off, atomic, bogus_ptr
            }),
        2 => (size, align, first_off, any::<bool>(), bogus).prop_map(|(size, align, off, atomic, bogus_ptr)| {
            Ev::Alloc { size, align, base: 0, off, atomic, bogus_ptr }
        }),
        4 => (0usize..64).prop_map(Ev::Free),
        1 => (any::<bool>(), 0usize..3, 0u32..140, 0u32..140)
            .prop_map(|(populate, base, start, end)| Ev::Page { populate, base, start, end }),
        2 => Just(Ev::Balance),
        1 => (0usize..3).prop_map(Ev::Create),
        1 => (0usize..3).prop_map(Ev::Destroy),
        1 => (0u8..4).prop_map(Ev::Phase),
    ]
}

/// The events as ftrace text.
fn text(events: &[Ev]) -> String {
    let mut out = String::from("# tracer: nop\n#\n");
    let mut ptrs: Vec<u64> = Vec::new();
    let mut t = 1.0f64;
    for e in events {
        t += 0.001;
        let head = format!(
            "          mkdir-{}     [001] .....  {t:10.6}: ",
            100 + ptrs.len() % 7
        );
        let line = match *e {
            Ev::Alloc {
                size,
                align,
                base,
                off,
                atomic,
                bogus_ptr,
            } => {
                let ptr = bogus_ptr
                    .unwrap_or_else(|| BASES[base].wrapping_add(off).wrapping_sub(PCPU_BASE));
                ptrs.push(ptr);
                format!(
                    "percpu_alloc_percpu: call_site=f+0x1/0x2 reserved=0 is_atomic={} size={size} align={align} base_addr={:x} off={off} ptr={ptr:016x} bytes_alloc=48 gfp_flags=",
                    u8::from(atomic),
                    BASES[base]
                )
            }
            Ev::Free(k) => {
                let ptr = ptrs.get(k % ptrs.len().max(1)).copied().unwrap_or(0x1234);
                let base = BASES[k % 3];
                format!(
                    "percpu_free_percpu: base_addr={base:x} off={} ptr={ptr:016x}",
                    ptr.wrapping_add(PCPU_BASE).wrapping_sub(base)
                )
            }
            Ev::Page {
                populate,
                base,
                start,
                end,
            } => format!(
                "{}: (x+0x0/0x50) chunk=0xffff8b9e4b13a600 base_addr=0x{:x} page_start={start} page_end={end}",
                if populate {
                    "pcpu_chunk_populated"
                } else {
                    "pcpu_chunk_depopulated"
                },
                BASES[base]
            ),
            Ev::Balance => "pcpu_balance_workfn: (pcpu_balance_workfn+0x0/0x550)".to_string(),
            Ev::Create(b) => format!("percpu_create_chunk: base_addr={:x}", BASES[b]),
            Ev::Destroy(b) => format!("percpu_destroy_chunk: base_addr={:x}", BASES[b]),
            Ev::Phase(p) => format!("tracing_mark_write: PHASE P{p} Percpu: 1040 kB"),
        };
        out.push_str(&head);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn geometry() -> FirstChunkGeometry {
    FirstChunkGeometry {
        embedded_pages: 62,
        static_size: 217_088,
        reserved_size: 8192,
        dyn_size: 28_672,
        unit_size: 524_288,
        atom_size: None,
        alloc_size: None,
        groups: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nonsense_traces_never_panic_the_replay(
        events in proptest::collection::vec(ev(), 1..200),
        policy in prop_oneof![
            Just("linux-6.1"), Just("linux-5.11"), Just("seed-rfc"), Just("pcpu"),
            Just("pcpu:keep_room=true"), Just("linux-5.14:fit=best:refill=fullest")
        ],
        kernel in any::<bool>(),
        recorded in any::<bool>(),
        lenient in prop_oneof![3 => Just(true), 1 => Just(false)],
        classes in 0usize..5,
        magazine in prop_oneof![Just(0usize), Just(4)],
        prefill in prop_oneof![1 => Just(true), 3 => Just(false)],
    ) {
        let text = text(&events);
        let trace = TraceReader::new(text.as_bytes())
            .with_options(ParseOptions::lenient())
            .collect_trace()
            .expect("lenient parsing of in-memory text");
        let Ok(setup) = Setup::derive(&geometry(), 4, &trace.records, prefill) else {
            return Ok(()); // no allocation at all
        };
        let cfg = ReplayConfig {
            policy: policy.parse::<Policy>().unwrap(),
            placement: if kernel { Placement::Kernel } else { Placement::Simulate },
            balance: if recorded { BalanceTiming::Recorded } else { BalanceTiming::Modelled },
            check_invariants: true,
            lenient,
            classes: [ClassMode::None, ClassMode::Task, ClassMode::Derived, ClassMode::SizeClass, ClassMode::CallSite][classes],
            magazine: if kernel { 0 } else { magazine },
            ..ReplayConfig::default()
        };
        match replay("props", &trace.records, setup, cfg, &mut |_, _| {}) {
            Ok((report, a)) => {
                a.check_invariants().unwrap();
                prop_assert!(report.repopulated_soon_pages <= report.repopulated_pages);
                prop_assert!(report.allocs >= report.failed_allocs);
            }
            Err(ReplayError::Internal(e)) => prop_assert!(false, "internal error: {e}"),
            Err(_) => {}
        }
    }
}

/// One corruption of a trace: line `at` (modulo the line count) loses `del`
/// bytes at `pos` and gains `ins`, or a line of arbitrary bytes is inserted
/// before it.
#[derive(Clone, Debug)]
enum Damage {
    Splice {
        at: usize,
        pos: usize,
        del: usize,
        ins: Vec<u8>,
    },
    Insert {
        at: usize,
        line: Vec<u8>,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    // Digits and field syntax now and then, so that a damaged line still
    // parses as an event with other numbers; any byte otherwise.
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => prop_oneof![Just(b'0'), Just(b'9'), Just(b'f'), Just(b'x'), Just(b'='), Just(b' '), Just(b'-')],
    ];
    prop_oneof![
        3 => (any::<usize>(), any::<usize>(), 0usize..16, proptest::collection::vec(byte, 0..8))
            .prop_map(|(at, pos, del, ins)| Damage::Splice { at, pos, del, ins }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(at, line)| Damage::Insert { at, line }),
    ]
}

/// `events` as ftrace text, then damaged.
fn damaged_text(events: &[Ev], damages: &[Damage]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text(events)
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    for d in damages {
        match d {
            Damage::Splice { at, pos, del, ins } => {
                let n = lines.len();
                let line = &mut lines[at % n];
                let pos = pos % (line.len() + 1);
                let end = (pos + del).min(line.len());
                line.splice(pos..end, ins.iter().copied());
            }
            Damage::Insert { at, line } => {
                let at = at % (lines.len() + 1);
                lines.insert(at, line.clone());
            }
        }
    }
    lines.join(&b'\n')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arbitrary bytes in the lines of a trace (a trace file is untrusted)
    /// reach the parser, strict and lenient, and the replay of what the
    /// lenient parser keeps, strict and lenient, under both placements:
    /// nothing panics, each failure is a typed error naming a line of the
    /// input, and the allocator's invariants hold after a replay.
    #[test]
    fn damaged_traces_are_typed_errors_in_parser_and_replay(
        events in proptest::collection::vec(ev(), 1..60),
        damages in proptest::collection::vec(damage(), 1..12),
        policy in prop_oneof![Just("linux-6.1"), Just("pcpu")],
        prefill in any::<bool>(),
    ) {
        let bytes = damaged_text(&events, &damages);
        let nr_lines = bytes.split(|&b| b == b'\n').count() as u64;
        match TraceReader::new(&bytes[..]).collect_trace() {
            Ok(_) => {}
            Err(e) => {
                prop_assert!((1..=nr_lines).contains(&e.line), "{e}");
                prop_assert!(e.to_string().starts_with(&format!("line {}: ", e.line)), "{e}");
            }
        }
        let trace = TraceReader::new(&bytes[..])
            .with_options(ParseOptions::lenient())
            .collect_trace()
            .expect("lenient parsing of in-memory bytes");
        let setup = match Setup::derive(&geometry(), 4, &trace.records, prefill) {
            Ok(s) => s,
            Err(e @ (ReplayError::NoEvents | ReplayError::Setup(_))) => {
                prop_assert!(!e.to_string().is_empty());
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("setup: {e:?}"))),
        };
        for (lenient, kernel) in [(false, false), (true, false), (false, true), (true, true)] {
            let cfg = ReplayConfig {
                policy: policy.parse::<Policy>().unwrap(),
                placement: if kernel { Placement::Kernel } else { Placement::Simulate },
                check_invariants: true,
                lenient,
                ..ReplayConfig::default()
            };
            match replay("damaged", &trace.records, setup.clone(), cfg, &mut |_, _| {}) {
                Ok((_, a)) => a.check_invariants().unwrap(),
                Err(ReplayError::Internal(e)) => prop_assert!(false, "internal error: {e}"),
                Err(
                    e @ (ReplayError::UnknownFree { line, .. }
                    | ReplayError::Overlap { line, .. }
                    | ReplayError::BadEvent { line, .. }
                    | ReplayError::Limit { line, .. }),
                ) => {
                    prop_assert!((1..=nr_lines).contains(&line), "{e}");
                    prop_assert!(e.to_string().contains(&line.to_string()), "{e}");
                }
                Err(e) => prop_assert!(!e.to_string().is_empty(), "{e:?}"),
            }
        }
    }
}
