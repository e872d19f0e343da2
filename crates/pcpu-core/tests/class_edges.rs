//! Class placement (`classes.rs`) edge cases: where a class's first object
//! opens its region, which holes its later objects fill, and which policy
//! knobs change either. Small geometries with hand-made holes, so that each
//! test pins one decision. Written from mutation testing of classes.rs.

use pcpu_core::*;

/// 1 unit of 16 pages (64 KiB), an 8 KiB first chunk.
fn small(policy: Policy) -> Allocator {
    Allocator::new(Geometry::simple(1, 16).unwrap(), policy)
}

/// Plain 512-byte objects until the first chunk and the next one, X, are
/// full: X and the objects in X, in address order.
fn fill_first_and_x(a: &mut Allocator, b: &mut SimBackend) -> (ChunkId, Vec<Allocation>) {
    let first = a.first_chunk();
    let mut objs = Vec::new();
    loop {
        let o = a.alloc(b, 512, 8, AllocFlags::NORMAL).unwrap();
        if o.chunk != first {
            objs.push(o);
            break;
        }
    }
    let x = objs[0].chunk;
    while a.chunk(x).unwrap().free_bytes() >= 512 {
        let o = a.alloc(b, 512, 8, AllocFlags::NORMAL).unwrap();
        assert_eq!(o.chunk, x);
        objs.push(o);
    }
    objs.sort_by_key(|o| o.offset);
    (x, objs)
}

/// Fill the first chunk with 512-byte objects (plain, outside any class).
fn fill_first(a: &mut Allocator, b: &mut SimBackend) {
    let first = a.first_chunk();
    while a.chunk(first).unwrap().free_bytes() > 0 {
        a.alloc(b, 512, 8, AllocFlags::NORMAL).unwrap();
    }
}

fn free_at(a: &mut Allocator, objs: &[Allocation], offset: usize) {
    let o = objs.iter().find(|o| o.offset == offset).unwrap();
    a.free(o.chunk, o.offset).unwrap();
}

/// With `backfill`, a task class's new region opens in the first hole of at
/// least three eighths of a page on a page in use: a 512-byte hole on page
/// 0 is too small (it would split the task's objects), a 2 KiB hole on
/// page 1 is enough, though not a whole page.
#[test]
fn backfill_opens_in_a_hole_of_three_eighths_of_a_page() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    let (x, objs) = fill_first_and_x(&mut a, &mut b);
    assert_eq!(objs.len(), 128);
    // Page 0: a 512-byte hole at 512. Page 1: a 2 KiB hole at 4096 + 1024.
    free_at(&mut a, &objs, 512);
    for k in 0..4 {
        free_at(&mut a, &objs, 4096 + 1024 + 512 * k);
    }
    a.check_invariants().unwrap();
    assert!(!a.chunk(x).unwrap().is_isolated());
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!((o.chunk, o.offset), (x, 4096 + 1024));
    // Without `backfill`: plain first fit, the small hole.
    let mut p = Policy::pcpu();
    p.backfill = false;
    let mut a = small(p);
    let (x, objs) = fill_first_and_x(&mut a, &mut b);
    free_at(&mut a, &objs, 512);
    for k in 0..4 {
        free_at(&mut a, &objs, 4096 + 1024 + 512 * k);
    }
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    assert_eq!((o.chunk, o.offset), (x, 512));
}

/// Task 1's 512-byte objects fill the first chunk and chunk X (its region
/// there spans X); returns X and task 1's objects in X.
fn task_fills_x(a: &mut Allocator, b: &mut SimBackend) -> (ChunkId, Vec<Allocation>) {
    let first = a.first_chunk();
    let mut objs = Vec::new();
    loop {
        let o = a
            .alloc_class(b, 512, 8, AllocFlags::NORMAL, ClassHint::task(1))
            .unwrap();
        if o.chunk != first {
            objs.push(o);
            break;
        }
    }
    let x = objs[0].chunk;
    while a.chunk(x).unwrap().free_bytes() >= 512 {
        let o = a
            .alloc_class(b, 512, 8, AllocFlags::NORMAL, ClassHint::task(1))
            .unwrap();
        assert_eq!(o.chunk, x);
        objs.push(o);
    }
    a.check_invariants().unwrap();
    objs.sort_by_key(|o| o.offset);
    (x, objs)
}

/// A class's region in a chunk the balance work is reclaiming is not used:
/// between a reclaim step's planning and its commit, the class's next
/// object goes elsewhere, not into the hole its region keeps in that chunk.
#[test]
fn a_region_in_a_chunk_being_reclaimed_is_not_used() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    let (x, objs) = task_fills_x(&mut a, &mut b);
    // A hole on page 0, and pages 8 to 15 emptied: X is queued for reclaim.
    for o in &objs {
        if o.offset == 512 || o.offset >= 8 * 4096 {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    let mut run = a.balance_start().unwrap();
    let mut seen = false;
    while let Some(w) = run.next(&mut a) {
        if let PageWork::Depopulate { chunk, .. } = w {
            if chunk == x && !seen {
                seen = true;
                let o = a
                    .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
                    .unwrap();
                assert_ne!(o.chunk, x, "placed in a chunk being reclaimed");
            }
        }
        run.done(&mut a, true);
    }
    assert!(seen, "X was reclaimed");
    a.check_invariants().unwrap();
}

/// A lifetime class (whole pages of its own) opens its region in a free run
/// of exactly one page: the first chunk's second page, free after a plain
/// page-sized object took the first, rather than a new chunk.
#[test]
fn a_lifetime_class_opens_its_region_in_an_exactly_free_page() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let page = a.alloc(&mut b, 4096, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!((page.chunk, page.offset), (first, 0));
    for size in [64, 3000] {
        let o = a
            .alloc_class(
                &mut b,
                size,
                8,
                AllocFlags::NORMAL,
                ClassHint::lifetime(size as u64),
            )
            .unwrap();
        a.check_invariants().unwrap();
        if size == 64 {
            assert_eq!((o.chunk, o.offset), (first, 4096));
        } else {
            // No free page is left in the first chunk: a new chunk.
            assert_ne!(o.chunk, first);
            assert_eq!(o.offset, 0);
        }
    }
    assert_eq!(a.nr_chunks(), 2);
}

/// With `backfill`, only an active chunk *more* than three quarters free
/// makes a small request look for a run beside an isolated chunk's
/// survivors first: chunk Y, exactly three quarters free, takes it; with
/// one 512-byte object fewer in Y, the request goes beside the survivors.
#[test]
fn a_chunk_exactly_three_quarters_free_is_not_deferred() {
    let place = |in_y: usize| {
        let mut a = small(Policy::pcpu());
        let mut b = SimBackend::default();
        let (x, objs) = fill_first_and_x(&mut a, &mut b);
        // Chunk Y: `in_y` objects from its start.
        let ys: Vec<Allocation> = (0..in_y)
            .map(|_| a.alloc(&mut b, 512, 8, AllocFlags::NORMAL).unwrap())
            .collect();
        let y = ys[0].chunk;
        assert!(ys.iter().all(|o| o.chunk == y) && y != x);
        // X keeps the first half of page 2: queued, with room beside the
        // survivors.
        for o in &objs {
            if !(o.offset / 4096 == 2 && o.offset % 4096 < 2048) {
                a.free(o.chunk, o.offset).unwrap();
            }
        }
        a.check_invariants().unwrap();
        assert!(a.chunk(x).unwrap().is_isolated());
        assert!(!a.chunk(y).unwrap().is_isolated());
        let o = a
            .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
            .unwrap();
        a.check_invariants().unwrap();
        (o.chunk == x, o.offset)
    };
    // 4 of Y's 16 pages full: exactly three quarters free.
    assert_eq!(place(32), (false, 4 * 4096));
    assert_eq!(place(31), (true, 2 * 4096 + 2048));
}

/// With `backfill`, a small request that reaches a *sidelined* chunk more
/// than three quarters free takes it, holes on its used pages first: the
/// deferral to runs beside survivors is for active chunks only (a sidelined
/// chunk's pages stay resident anyway). Chunk A (sidelined, first in the
/// refill order) has 512-byte holes on 7 used pages; chunk B (queued) a run
/// beside survivors.
#[test]
fn a_mostly_free_sidelined_chunk_is_not_deferred() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let mut objs = Vec::new();
    // The first chunk, then A and B full of 512-byte objects.
    while objs.len() < 16 + 2 * 128 {
        objs.push(a.alloc(&mut b, 512, 8, AllocFlags::NORMAL).unwrap());
    }
    let ca = objs[16].chunk;
    let cb = objs[16 + 128].chunk;
    assert!(ca != first && cb != first && ca != cb);
    assert!(objs[16..].iter().all(|o| o.chunk == ca || o.chunk == cb));
    // A keeps every other object of pages 0 to 6, the first of each page
    // freed: 2 KiB used per page.
    for o in objs.iter().filter(|o| o.chunk == ca) {
        if o.offset >= 7 * 4096 || o.offset / 512 % 2 == 0 {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    for _ in 0..3 {
        a.balance(&mut b);
    }
    a.check_invariants().unwrap();
    // Reclaimed and sidelined, 14 KiB in use: more than three quarters free.
    assert!(a.chunk(ca).unwrap().is_isolated());
    assert_eq!(a.chunk(ca).unwrap().free_bytes(), (64 - 14) << 10);
    // B keeps the first half of page 2: queued.
    for o in objs.iter().filter(|o| o.chunk == cb) {
        if !(o.offset / 4096 == 2 && o.offset % 4096 < 2048) {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert!(a.chunk(cb).unwrap().is_isolated());
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!((o.chunk, o.offset), (ca, 0));
}

/// A class's region in a chunk the balance work is freeing (detached from
/// the lists) is not used: the class's next object, placed between the
/// chunk's depopulation and its destruction, goes to a live chunk.
#[test]
fn a_region_in_a_chunk_being_freed_is_not_used() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    fill_first(&mut a, &mut b);
    // Task 1's region spans chunk Z; its only object is freed again.
    let z = a.create_chunk(&mut b).unwrap();
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    assert_eq!((o.chunk, o.offset), (z, 0));
    a.free(o.chunk, o.offset).unwrap();
    // A second free chunk, W, heads the free slot: the balance work frees Z.
    let w = a.create_chunk(&mut b).unwrap();
    a.check_invariants().unwrap();
    let mut run = a.balance_start().unwrap();
    let mut seen = false;
    while let Some(work) = run.next(&mut a) {
        if work
            == (PageWork::Depopulate {
                chunk: z,
                pages: 0..1,
            })
        {
            seen = true;
            let o = a
                .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
                .unwrap();
            assert_eq!((o.chunk, o.offset), (w, 0), "not in the chunk being freed");
        }
        run.done(&mut a, true);
    }
    assert!(seen, "Z was freed");
    assert!(a.chunk(z).is_none());
    a.check_invariants().unwrap();
}

/// `pcpu` takes a chunk queued for reclaim back before it maps a new one
/// for a class's new region too: a lifetime class (no back-fill) whose only
/// room is the queued chunk X's emptied pages opens its region there.
#[test]
fn a_lifetime_class_takes_a_queued_chunk_back_before_a_new_one() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    let (x, objs) = fill_first_and_x(&mut a, &mut b);
    for o in &objs {
        if o.offset >= 8 * 4096 {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    let chunks = a.nr_chunks();
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::lifetime(1))
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!((o.chunk, o.offset), (x, 8 * 4096));
    assert_eq!(a.nr_chunks(), chunks, "no chunk was mapped");
    assert!(!a.chunk(x).unwrap().is_isolated(), "taken back");
}

/// A class's region in a destroyed chunk is forgotten even when a new chunk
/// reuses the id: the class's next object opens a new region by the walk
/// (at the new chunk's start), not at the old region's offset.
#[test]
fn a_region_does_not_outlive_its_chunk() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    fill_first(&mut a, &mut b);
    // Task 1's region in chunk Z starts at 2 KiB, after a plain object.
    let z = a.create_chunk(&mut b).unwrap();
    let plain = a.alloc(&mut b, 2048, 8, AllocFlags::NORMAL).unwrap();
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    assert_eq!((plain.chunk, plain.offset), (z, 0));
    assert_eq!((o.chunk, o.offset), (z, 2048));
    a.free(plain.chunk, plain.offset).unwrap();
    a.free(o.chunk, o.offset).unwrap();
    // Another free chunk heads the free slot: the balance work destroys Z,
    // and the next chunk created takes its id.
    a.create_chunk(&mut b).unwrap();
    a.balance(&mut b);
    assert!(a.chunk(z).is_none());
    assert_eq!(a.create_chunk(&mut b).unwrap(), z);
    a.check_invariants().unwrap();
    let o = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(1))
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!(o.offset, 0, "a new region, not the old one's place");
}

/// A class fills holes on pages already in use before any room on an empty
/// page, even in an older region: task 1's first region keeps room from
/// the middle of page 0 over its emptied page 1, its second region room on
/// a page its last object uses. A 2 KiB object would reach the empty page
/// in the first region: it goes to the second region.
#[test]
fn a_fit_reaching_onto_an_empty_page_waits_for_the_second_pass() {
    let mut a = small(Policy::pcpu());
    let mut b = SimBackend::default();
    fill_first(&mut a, &mut b);
    let mut alloc = |a: &mut Allocator, task: u64, size: usize| {
        let o = a
            .alloc_class(&mut b, size, 8, AllocFlags::NORMAL, ClassHint::task(task))
            .unwrap();
        a.check_invariants().unwrap();
        o
    };
    // Task 1 fills pages 0 and 1 of chunk X; task 2's region follows.
    let ones: Vec<Allocation> = (0..8).map(|_| alloc(&mut a, 1, 1024)).collect();
    let x = ones[0].chunk;
    assert!(ones
        .iter()
        .enumerate()
        .all(|(i, o)| o.chunk == x && o.offset == 1024 * i));
    assert_eq!(alloc(&mut a, 2, 64).offset, 8192);
    // Task 1's region, [0, 8192), keeps room from 3072 on: page 1 empty.
    for o in &ones[3..] {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(!a.chunk(x).unwrap().is_page_used(1));
    // An object too large for that room opens task 1's second region.
    let big = alloc(&mut a, 1, 8192);
    assert_eq!((big.chunk, big.offset), (x, 8192 + 64));
    // 2 KiB: at 3072 it would reach onto the empty page 1; after the large
    // object it stays on a page in use.
    let o = alloc(&mut a, 1, 2048);
    assert_eq!((o.chunk, o.offset), (x, big.offset + big.size));
    // The next 2 KiB fits on pages in use in neither region (after the last
    // one it reaches onto page 5): the most recent region takes it.
    let o = alloc(&mut a, 1, 2048);
    assert_eq!((o.chunk, o.offset), (x, big.offset + big.size + 2048));
}

/// With `keep_room`, a lifetime class keeps out of another class's growth
/// room, the free part of its region *past some of its objects*: class 2
/// takes a new chunk rather than cut into class 1's region, but once class
/// 1's objects are freed its empty region is room like any other, and
/// class 3 opens its region at its start.
#[test]
fn keep_room_keeps_out_of_growth_room_only_past_live_objects() {
    let mut p = Policy::pcpu();
    p.keep_room = true;
    let mut a = small(p);
    let mut b = SimBackend::default();
    fill_first(&mut a, &mut b);
    let mut alloc = |a: &mut Allocator, class: u64| {
        let o = a
            .alloc_class(
                &mut b,
                64,
                8,
                AllocFlags::NORMAL,
                ClassHint::lifetime(class),
            )
            .unwrap();
        a.check_invariants().unwrap();
        o
    };
    let one = alloc(&mut a, 1);
    assert_eq!(one.offset, 0);
    let two = alloc(&mut a, 2);
    assert_ne!(two.chunk, one.chunk, "class 1's growth room is kept");
    assert_eq!(two.offset, 0);
    a.free(one.chunk, one.offset).unwrap();
    let chunks = a.nr_chunks();
    let three = alloc(&mut a, 3);
    assert_eq!((three.chunk, three.offset), (one.chunk, 0));
    assert_eq!(a.nr_chunks(), chunks);
}
