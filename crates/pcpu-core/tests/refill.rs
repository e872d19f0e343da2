//! `Policy::refill`: which sidelined chunk an allocation tries first once the
//! active slots have no room. Three sidelined chunks, each first in one order:
//!
//! * `c0`, first in the sidelined list (the kernel's order): one object
//!   every 4 pages;
//! * `c1`, the most free room on used pages: one object on each of its first
//!   96 pages;
//! * `c2`, the fullest: its first 96 pages full.

use pcpu_core::*;

const PAGE: usize = 4096;
const OBJ: usize = 64;

struct Setup {
    a: Allocator,
    b: SimBackend,
    c: [ChunkId; 3],
}

fn setup(refill: &str) -> Setup {
    setup_with(refill, "first")
}

fn setup_with(refill: &str, fit: &str) -> Setup {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    let mut policy = Policy::new(PolicyKind::Linux514);
    policy.set("refill", refill).unwrap();
    policy.set("fit", fit).unwrap();
    let mut a = Allocator::new(g, policy);
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    // Fill the first chunk and three more, then stop at a fifth.
    let mut objs: Vec<Allocation> = Vec::new();
    let mut chunks: Vec<ChunkId> = Vec::new();
    loop {
        let x = a.alloc(&mut b, OBJ, 8, AllocFlags::NORMAL).unwrap();
        if x.chunk != first && !chunks.contains(&x.chunk) {
            chunks.push(x.chunk);
        }
        objs.push(x);
        if chunks.len() == 4 {
            break;
        }
    }
    // Ten pages of the fifth chunk, freed again below: populated empty pages
    // outside c0..c2, which 5.14's free path wants to see before it queues
    // a chunk. The fifth chunk ends up fully free (free slot, walked last).
    let spare: Vec<Allocation> = (0..10 * PAGE / OBJ)
        .map(|_| a.alloc(&mut b, OBJ, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    assert!(spare.iter().all(|x| x.chunk == chunks[3]));
    let c = [chunks[0], chunks[1], chunks[2]];
    let keep = |x: &Allocation| {
        let page = x.offset / PAGE;
        let first_on_page = x.offset % PAGE == 0;
        if x.chunk == c[0] {
            first_on_page && page % 4 == 0
        } else if x.chunk == c[1] {
            first_on_page && page < 96
        } else if x.chunk == c[2] {
            page < 96
        } else {
            true
        }
    };
    // Free all but one object to go of each chunk, then those last ones in
    // reverse chunk order: a free queues its chunk for reclaim only while
    // other chunks hold empty pages (5.14's rule), reclaim takes the most
    // recently queued first, and sidelines at the tail: c0, c1, c2.
    let mut last = Vec::new();
    for id in c {
        let mut gone = objs.iter().filter(|x| x.chunk == id && !keep(x));
        last.push(*gone.next().unwrap());
        for x in gone {
            a.free(x.chunk, x.offset).unwrap();
        }
        a.check_invariants().unwrap();
    }
    for x in spare
        .iter()
        .chain(objs.iter().filter(|x| x.chunk == chunks[3]))
    {
        a.free(x.chunk, x.offset).unwrap();
    }
    for x in last.iter().rev() {
        a.free(x.chunk, x.offset).unwrap();
    }
    // Queued for reclaim, then (below) sidelined: the page map names both.
    let map = a.page_map();
    for id in c {
        let queued = format!("chunk {} (dynamic, to_depopulate)", id.0);
        assert!(map.contains(&queued), "{map}");
    }
    while a.balance_pending() {
        a.balance(&mut b);
        a.check_invariants().unwrap();
    }
    let map = a.page_map();
    for id in c {
        let sidelined = format!("chunk {} (dynamic, sidelined)", id.0);
        assert!(map.contains(&sidelined), "{map}");
        let ch = a.chunk(id).unwrap();
        assert!(
            ch.is_isolated(),
            "{id:?} sidelined: pop {} free {} empty {}",
            ch.nr_populated(),
            ch.free_bytes(),
            ch.nr_empty_pop_pages()
        );
    }
    Setup { a, b, c }
}

fn room(a: &Allocator, id: ChunkId) -> usize {
    a.chunk(id).unwrap().room_on_used_pages()
}

#[test]
fn the_setup_separates_the_three_orders() {
    let s = setup("kernel");
    let [c0, c1, c2] = s.c;
    assert!(room(&s.a, c1) > room(&s.a, c0) && room(&s.a, c0) > room(&s.a, c2));
    let free = |id| s.a.chunk(id).unwrap().free_bytes();
    assert!(free(c2) < free(c1) && free(c2) < free(c0));
}

#[test]
fn each_order_refills_its_chunk_first() {
    for (refill, want) in [("kernel", 0), ("room", 1), ("fullest", 2)] {
        let mut s = setup(refill);
        let req = s.a.request(OBJ, 8).unwrap();
        let probed = s.a.probe(req, AllocFlags::NORMAL).unwrap();
        let x = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
        s.a.check_invariants().unwrap();
        assert_eq!(x.chunk, s.c[want], "refill={refill}");
        // Replay's probe agrees with the allocation.
        assert_eq!(probed, (x.chunk, x.offset), "refill={refill}");
        // A small object reintegrates the chunk it lands in.
        assert!(
            !s.a.chunk(x.chunk).unwrap().is_isolated(),
            "refill={refill}"
        );
    }
}

#[test]
fn atomic_requests_keep_the_kernels_order() {
    for refill in ["room", "fullest"] {
        let mut s = setup(refill);
        // Replay's probe of an atomic request keeps the kernel's order too.
        let req = s.a.request(OBJ, 8).unwrap();
        let probed = s.a.probe(req, AllocFlags::ATOMIC).unwrap();
        let x = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::ATOMIC).unwrap();
        s.a.check_invariants().unwrap();
        assert_eq!(x.chunk, s.c[0], "refill={refill}");
        assert_eq!(probed, (x.chunk, x.offset), "refill={refill}");
    }
}

#[test]
fn a_page_sized_object_leaves_its_sidelined_chunk_sidelined() {
    // The kernel's order reintegrates the chunk.
    let mut s = setup("kernel");
    let x = s.a.alloc(&mut s.b, PAGE, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!(x.chunk, s.c[0]);
    assert!(!s.a.chunk(x.chunk).unwrap().is_isolated());
    // Under `room` it stays sidelined, and the next small object still goes
    // to the chunk with the most room (c1, where the page went too).
    let mut s = setup("room");
    let x = s.a.alloc(&mut s.b, PAGE, 8, AllocFlags::NORMAL).unwrap();
    s.a.check_invariants().unwrap();
    assert_eq!(x.chunk, s.c[1]);
    assert!(s.a.chunk(x.chunk).unwrap().is_isolated());
    let y = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
    s.a.check_invariants().unwrap();
    assert_eq!(y.chunk, s.c[1]);
    // Freeing the page-sized object again leaves a consistent allocator.
    s.a.free(x.chunk, x.offset).unwrap();
    while s.a.balance_pending() {
        s.a.balance(&mut s.b);
    }
    s.a.check_invariants().unwrap();
}

/// Next fit continues after an allocation that refilled a sidelined chunk in
/// a non-kernel order, as after any other: the next search starts in that
/// chunk, after it, not where the previous search left off.
#[test]
fn next_fit_continues_after_a_refill() {
    let mut s = setup_with("room", "next");
    // Next fit first fills the free chunk its last search left off in; the
    // allocation after that refills a sidelined chunk.
    let x = loop {
        let x = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
        if s.c.contains(&x.chunk) {
            break x;
        }
    };
    s.a.check_invariants().unwrap();
    assert_eq!(x.chunk, s.c[1]);
    assert_eq!(x.offset, OBJ, "first fit in c1: beside page 0's object");
    // A hole before it, which first fit would take.
    s.a.free(x.chunk, 0).unwrap();
    s.a.check_invariants().unwrap();
    let y = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
    s.a.check_invariants().unwrap();
    assert_eq!((y.chunk, y.offset), (x.chunk, x.offset + OBJ));
    // First fit takes the hole.
    let mut s = setup_with("room", "first");
    let x = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
    s.a.free(x.chunk, 0).unwrap();
    let y = s.a.alloc(&mut s.b, OBJ, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!((y.chunk, y.offset), (x.chunk, 0));
}
