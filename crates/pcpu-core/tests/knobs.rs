//! Policy knobs and rules that change a balance decision: `sideline`, and
//! `pcpu` counting the first chunk's free room toward the reserve.

use pcpu_core::*;

fn allocator(policy: Policy) -> (Allocator, SimBackend) {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    (Allocator::new(g, policy), SimBackend::default())
}

/// Fill several chunks, then free all but one object per 16 KiB, settle.
/// Returns how many chunks are isolated afterwards, the populated pages at
/// the peak, and the allocator.
fn partial_removal(policy: Policy) -> (usize, usize, Allocator) {
    let (mut a, mut b) = allocator(policy);
    let objs: Vec<Allocation> = (0..20_000)
        .map(|_| a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    let peak = a.nr_populated();
    for (i, x) in objs.iter().enumerate() {
        if i % 256 != 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
        if i % 1000 == 0 {
            a.check_invariants().unwrap();
        }
    }
    while a.balance_pending() {
        a.balance(&mut b);
        a.check_invariants().unwrap();
    }
    let isolated = a
        .chunk_ids()
        .filter(|&id| a.chunk(id).is_some_and(|c| c.is_isolated()))
        .count();
    (isolated, peak, a)
}

#[test]
fn sidelining_on_leaves_depopulated_chunks_isolated() {
    let (isolated, _, a) = partial_removal(Policy::new(PolicyKind::Linux514));
    assert!(
        isolated > 0,
        "5.14 sidelines partly used chunks after reclaim"
    );
    // `chunk_list` names the lists `percpu_stats` heads the blocks with.
    let lists: Vec<ChunkList> = a.chunk_ids().filter_map(|id| a.chunk_list(id)).collect();
    let sidelined = lists.iter().filter(|l| **l == ChunkList::Sidelined).count();
    assert_eq!(sidelined, isolated, "settled: none left queued");
    assert_eq!(
        a.percpu_stats().matches("Chunk (sidelined):").count(),
        sidelined
    );
    assert!(matches!(
        a.chunk_list(a.first_chunk()),
        Some(ChunkList::Slot(_))
    ));
    assert_eq!(a.chunk_list(ChunkId(9999)), None);
}

#[test]
fn sidelining_off_returns_them_to_their_slots() {
    for base in [Policy::new(PolicyKind::Linux514), Policy::pcpu()] {
        let mut p = base;
        p.sideline = false;
        let (isolated, peak, a) = partial_removal(p);
        assert_eq!(isolated, 0, "{}: no chunk stays isolated", p.name());
        // Reclaim still gave pages back.
        assert!(a.nr_populated() < peak, "{}", p.name());
    }
}

#[test]
fn policies_print_and_parse_back() {
    for p in Policy::all() {
        // Named defaults print as the bare name.
        assert_eq!(p.to_string(), p.name());
        assert_eq!(p.name().parse::<Policy>(), Ok(p));
        // Every knob set to a non-default value round-trips.
        for knob in KNOBS {
            let mut q = p;
            let value = match knob {
                "sideline" => {
                    if p.sideline {
                        "false"
                    } else {
                        "true"
                    }
                }
                "class_placement" => {
                    if p.class_placement {
                        "false"
                    } else {
                        "true"
                    }
                }
                "keep_room" => {
                    if p.keep_room {
                        "false"
                    } else {
                        "true"
                    }
                }
                "long_lived" => {
                    if p.long_lived {
                        "false"
                    } else {
                        "true"
                    }
                }
                "backfill" => {
                    if p.backfill {
                        "false"
                    } else {
                        "true"
                    }
                }
                "tile_bursts" => {
                    if p.tile_bursts {
                        "false"
                    } else {
                        "true"
                    }
                }
                "grow_beside" => {
                    if p.grow_beside {
                        "false"
                    } else {
                        "true"
                    }
                }
                "short_lived" => {
                    if p.short_lived {
                        "false"
                    } else {
                        "true"
                    }
                }
                "empty_pop_high" => "9",
                "fit" => "best",
                "refill" => {
                    if p.refill == Refill::Room {
                        "kernel"
                    } else {
                        "room"
                    }
                }
                "reclaim_divisor" | "min_run" => "7",
                _ => "3",
            };
            q.set(knob, value).unwrap();
            assert_ne!(q, p, "{knob}={value} changes {}", p.name());
            let s = q.to_string();
            assert!(s.starts_with(p.name()) && s.contains(knob), "{s}");
            assert_eq!(s.parse::<Policy>(), Ok(q), "{s}");
        }
    }
    let mut any = Policy::new(PolicyKind::Linux514);
    any.set("reclaim_divisor", "max").unwrap();
    assert_eq!(any.to_string(), "linux-5.14:reclaim_divisor=max");
}

#[test]
fn bad_knobs_are_rejected_and_change_nothing() {
    let mut p = Policy::pcpu();
    for (k, v) in [
        ("nope", "1"),
        ("sideline", "maybe"),
        ("empty_pop_high", "2000000"),
        ("empty_pop_low", "-1"),
        ("empty_pop_low", "5"), // above HIGH (4)
        ("reclaim_divisor", "-2"),
        ("reclaim_divisor", "0"),
        ("reclaim_batch", "0"),
        ("class_capacity", "0"),
        ("class_capacity", "70000"),
        ("min_run", "lots"),
        ("refill", "lifo"),
        ("keep_room", "sometimes"),
    ] {
        let e = p.set(k, v).unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_eq!(p, Policy::pcpu(), "{k}={v} left the policy unchanged");
    }
    assert!(matches!(
        "pcpu:min_run".parse::<Policy>(),
        Err(PolicyParseError::Malformed(_))
    ));
    // A knob given twice is refused, whatever its values.
    for s in [
        "pcpu:keep_room=true:keep_room=false",
        "linux-5.14:sideline=false: sideline =false",
    ] {
        let e = s.parse::<Policy>().unwrap_err();
        assert!(matches!(e, PolicyParseError::RepeatedKnob(_)), "{s}: {e}");
        assert!(e.to_string().ends_with("given twice"), "{e}");
    }
    let e = "linux-9.9:sideline=true".parse::<Policy>().unwrap_err();
    assert_eq!(e, PolicyParseError::UnknownPolicy("linux-9.9".into()));
    assert!(
        e.to_string().starts_with("unknown policy `linux-9.9`"),
        "{e}"
    );
}

/// LOW and HIGH may come in either order in a policy string, and a policy
/// with both raised prints in a form that parses back.
#[test]
fn watermark_knobs_parse_in_any_order() {
    let a: Policy = "pcpu:empty_pop_low=10:empty_pop_high=20".parse().unwrap();
    let b: Policy = "pcpu:empty_pop_high=20:empty_pop_low=10".parse().unwrap();
    assert_eq!(a, b);
    assert_eq!((a.empty_pop_low, a.empty_pop_high), (10, 20));
    assert_eq!(a.to_string().parse::<Policy>(), Ok(a));
    // HIGH below the default LOW, with LOW lowered after it.
    let c: Policy = "linux-6.1:empty_pop_high=1:empty_pop_low=0"
        .parse()
        .unwrap();
    assert_eq!((c.empty_pop_low, c.empty_pop_high), (0, 1));
    // The pair is still checked once all knobs are set.
    let e = "pcpu:empty_pop_high=20:empty_pop_low=30"
        .parse::<Policy>()
        .unwrap_err();
    assert!(e.to_string().contains("empty_pop_low"), "{e}");
    // Lowering HIGH below the default LOW names both, not a value the user
    // never wrote.
    let e = "linux-6.1:empty_pop_high=1".parse::<Policy>().unwrap_err();
    assert_eq!(e, PolicyParseError::LowAboveHigh { low: 2, high: 1 });
    assert!(e.to_string().contains("empty_pop_high (1)"), "{e}");
}

/// `min_run` above a unit's size: a class's region probe is capped at a
/// whole chunk, so allocations still succeed (they created chunks for ever
/// before).
#[test]
fn min_run_above_the_unit_size_still_allocates() {
    let mut p = Policy::pcpu();
    p.set("min_run", "1000000").unwrap();
    let (mut a, mut b) = allocator(p);
    for i in 0..200u64 {
        a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, ClassHint::task(i % 7))
            .unwrap();
        a.check_invariants().unwrap();
    }
    assert!(a.nr_chunks() <= 10, "{} chunks", a.nr_chunks());
}

/// The first chunk's dynamic area (7 pages) with its first four pages in use
/// by 64-byte objects, of which every `free_every`th is freed again:
/// 3 empty pages, and free room on the 4 used ones. Returns the pages the
/// balance work then populates to restore the reserve of 4 empty pages.
fn populated_for_the_reserve(policy: Policy, free_every: usize) -> usize {
    let (mut a, mut b) = allocator(policy);
    let objs: Vec<Allocation> = (0..256)
        .map(|_| a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    let first = a.first_chunk();
    assert!(objs.iter().all(|x| x.chunk == first));
    for (i, x) in objs.iter().enumerate() {
        if i % free_every == 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    assert_eq!(a.chunk(first).unwrap().nr_empty_pop_pages(), 3);
    let before = a.nr_populated();
    for _ in 0..4 {
        a.balance(&mut b);
        a.check_invariants().unwrap();
    }
    a.nr_populated() - before
}

#[test]
fn pcpu_counts_the_first_chunks_room_toward_the_reserve() {
    // Linux counts empty pages only: the first chunk has 3 of the 4, so the
    // balance work populates a page of another chunk, whatever the room.
    let linux = Policy::new(PolicyKind::Linux514);
    assert_eq!(populated_for_the_reserve(linux, 2), 1);
    assert_eq!(populated_for_the_reserve(linux, 8), 1);
    // pcpu counts the free bytes on the first chunk's used pages in whole
    // pages: half of 4 pages freed is 2 pages of room, enough.
    assert_eq!(populated_for_the_reserve(Policy::pcpu(), 2), 0);
    // 1 object in 8 freed is half a page of room: not enough.
    assert_eq!(populated_for_the_reserve(Policy::pcpu(), 8), 1);
}

#[test]
fn pcpu_keeps_real_empty_pages_for_page_sized_atomic_requests() {
    // The first chunk full of 8-byte objects, every other one freed: 3.5
    // pages of room, all of it in 8-byte holes, and no empty page there.
    let (mut a, mut b) = allocator(Policy::pcpu());
    let first = a.first_chunk();
    let mut small = Vec::new();
    loop {
        let x = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
        if x.chunk != first {
            a.free(x.chunk, x.offset).unwrap();
            break;
        }
        small.push(x);
    }
    for x in small.iter().step_by(2) {
        a.free(x.chunk, x.offset).unwrap();
    }
    assert_eq!(a.chunk(first).unwrap().nr_empty_pop_pages(), 0);
    assert!(a.chunk(first).unwrap().room_on_used_pages() >= 3);
    // A second chunk's pages come and go.
    let big: Vec<Allocation> = (0..40)
        .map(|_| a.alloc(&mut b, 4096, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    for x in &big {
        a.free(x.chunk, x.offset).unwrap();
    }
    for _ in 0..8 {
        a.balance(&mut b);
        a.check_invariants().unwrap();
    }
    // The room stands in only above EMPTY_POP_PAGES_LOW: that many real
    // empty pages stay, so page-sized atomic requests still succeed.
    let empty: usize = a
        .chunk_ids()
        .filter(|&id| Some(id) != a.reserved_chunk())
        .map(|id| a.chunk(id).unwrap().nr_empty_pop_pages())
        .sum();
    assert!(empty >= EMPTY_POP_PAGES_LOW as usize, "{empty} empty pages");
    for size in [16, 64, 4096] {
        a.alloc(&mut b, size, 8, AllocFlags::ATOMIC)
            .unwrap_or_else(|e| panic!("atomic {size} B: {e}"));
    }
    a.check_invariants().unwrap();
}

#[test]
fn room_on_used_pages_matches_a_page_by_page_count() {
    // Two first-chunk layouts: dynamic area on a page boundary, and not.
    for line in [
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        "percpu: Embedded 62 pages/cpu s217188 r8192 d28572 u524288",
    ] {
        let g = Geometry::from_kernel_line(line, 4).unwrap();
        let (mut a, mut b) = (Allocator::new(g, Policy::pcpu()), SimBackend::default());
        let page = g.page_size();
        let mut live = Vec::new();
        let mut x = 12345u64;
        for i in 0..6000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.is_empty() || x % 3 != 0 {
                let size = [4, 8, 16, 64, 200, 1096, 4096][(x >> 8) as usize % 7];
                live.push(a.alloc(&mut b, size, 8, AllocFlags::NORMAL).unwrap());
            } else {
                let o: Allocation = live.swap_remove((x >> 16) as usize % live.len());
                a.free(o.chunk, o.offset).unwrap();
            }
            if i % 500 == 0 {
                a.balance(&mut b);
            }
            if i % 97 == 0 {
                for id in a.chunk_ids() {
                    let c = a.chunk(id).unwrap();
                    let unused = (0..c.nr_pages()).filter(|&p| !c.is_page_used(p)).count();
                    let want = c.free_bytes().saturating_sub(unused * page) / page;
                    assert_eq!(c.room_on_used_pages(), want, "{line}: chunk {id:?}");
                }
            }
        }
        a.check_invariants().unwrap();
    }
}

/// A policy built field by field may hold values `Policy::set` rejects; the
/// allocator clamps them instead of dividing by zero or failing a clamp in a
/// balance run.
#[test]
fn out_of_range_fields_are_clamped_by_the_allocator() {
    let mut p = Policy::pcpu();
    p.reclaim_divisor = 0;
    p.reclaim_batch = 0;
    p.empty_pop_high = -1;
    p.empty_pop_low = 7;
    p.reclaim_surplus = -3;
    p.class_capacity = 0;
    let q = p.clamped();
    assert_eq!(
        (
            q.reclaim_divisor,
            q.reclaim_batch,
            q.empty_pop_high,
            q.empty_pop_low
        ),
        (1, 1, 0, 0)
    );
    assert_eq!((q.reclaim_surplus, q.class_capacity), (0, 1));
    // `validate` refuses what the allocator would clamp, each field alone,
    // with the error `set` gives for that knob.
    assert_eq!(q.validate(), Ok(()));
    type Spoil = fn(&mut Policy);
    let fields: [(&str, Spoil); 7] = [
        ("reclaim_divisor", |p| p.reclaim_divisor = 0),
        ("reclaim_batch", |p| p.reclaim_batch = 0),
        ("empty_pop_high", |p| p.empty_pop_high = (1 << 20) + 1),
        ("empty_pop_low", |p| p.empty_pop_low = -1),
        ("reclaim_surplus", |p| p.reclaim_surplus = -3),
        ("class_capacity", |p| p.class_capacity = 0),
        ("class_capacity", |p| p.class_capacity = 70_000),
    ];
    for (knob, spoil) in fields {
        let mut bad = Policy::pcpu();
        spoil(&mut bad);
        match bad.validate() {
            Err(PolicyParseError::BadValue { knob: k, .. }) => assert_eq!(k, knob),
            other => panic!("{knob}: {other:?}"),
        }
        assert_ne!(bad.clamped(), bad);
        assert_eq!(bad.clamped().validate(), Ok(()));
    }
    let mut above = Policy::pcpu();
    above.empty_pop_low = 7;
    assert_eq!(
        above.validate(),
        Err(PolicyParseError::LowAboveHigh { low: 7, high: 4 })
    );
    for named in Policy::all() {
        assert_eq!(named.validate(), Ok(()), "{named}");
    }
    for policy in [p, {
        let mut q = p;
        q.kind = PolicyKind::Linux514;
        q
    }] {
        let (mut a, mut b) = allocator(policy);
        assert_eq!(a.policy(), &policy.clamped());
        let objs: Vec<_> = (0..3000)
            .map(|i| {
                a.alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(i % 5))
                    .unwrap()
            })
            .collect();
        for x in objs {
            a.free(x.chunk, x.offset).unwrap();
        }
        for _ in 0..4 {
            a.balance(&mut b);
            a.check_invariants().unwrap();
        }
    }
}

/// Class knobs do nothing without class placement: a Linux policy with one
/// behaves as the plain policy; any other knob, or class placement on,
/// makes a difference.
#[test]
fn class_knobs_are_inert_without_class_placement() {
    let p = |s: &str| s.parse::<Policy>().unwrap();
    let linux = Policy::named(PolicyKind::Linux514);
    assert!(p("linux-5.14:keep_room=true:min_run=64:backfill=true").behaves_as(&linux));
    assert!(!p("linux-5.14:sideline=false").behaves_as(&linux));
    assert!(!p("linux-5.14:class_placement=true").behaves_as(&linux));
    assert!(!p("pcpu:keep_room=true").behaves_as(&Policy::pcpu()));
    assert!(Policy::pcpu().behaves_as(&Policy::pcpu()));
}
