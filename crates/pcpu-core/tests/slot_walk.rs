//! The slot walk (`pcpu_alloc`'s loop over `pcpu_chunk_lists`): every chunk
//! of a slot is tried.

use pcpu_core::*;

/// An allocator whose first two chunks are full of 4-byte objects (a third
/// holds the object that did not fit), and those objects by chunk.
fn two_full_chunks() -> (Allocator, SimBackend, Vec<Vec<Allocation>>) {
    let mut a = Allocator::new(Geometry::simple(2, 4).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let mut by_chunk: Vec<Vec<Allocation>> = Vec::new();
    while by_chunk.len() < 3 {
        let x = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
        match by_chunk.last_mut() {
            Some(v) if v[0].chunk == x.chunk => v.push(x),
            _ => by_chunk.push(vec![x]),
        }
    }
    by_chunk.truncate(2);
    a.check_invariants().unwrap();
    (a, b, by_chunk)
}

/// Frees the 16 consecutive 4-byte objects of `objs` starting at the first
/// whose offset is `rem` modulo 64: a 64-byte run, aligned or not.
fn free_run(a: &mut Allocator, objs: &[Allocation], rem: usize) -> usize {
    let i = objs.iter().position(|x| x.offset % 64 == rem).unwrap();
    for x in &objs[i..i + 16] {
        a.free(x.chunk, x.offset).unwrap();
    }
    objs[i].offset
}

/// Two chunks in one slot, each with one free 64-byte run: when the head's
/// run is misaligned for the request, the walk tries the next chunk of the
/// slot before it looks further (or maps a new chunk).
#[test]
fn the_walk_tries_every_chunk_of_a_slot() {
    let (mut a, mut b, chunks) = two_full_chunks();
    // Freed second, the misaligned run's chunk moves to the front of the
    // slot (a chunk moving to a higher slot goes first).
    let aligned = free_run(&mut a, &chunks[0], 0);
    free_run(&mut a, &chunks[1], 4);
    a.check_invariants().unwrap();
    let before = a.nr_chunks();
    let x = a.alloc(&mut b, 64, 64, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (chunks[0][0].chunk, aligned));
    assert_eq!(a.nr_chunks(), before, "no new chunk");
    a.check_invariants().unwrap();
}

/// A chunk with one 4-byte unit free is not full: it goes to the lowest
/// slot a 4-byte request walks (slot 1; full chunks sit in slot 0, which is
/// never walked), so the unit is found before anything new is mapped. That
/// holds for a unit freed in the chunk's first block: a free inside any other
/// block leaves the chunk's `contig_hint` at 0 (the kernel's W1, DESIGN.md
/// §8), so the chunk stays in slot 0 and the next chunk takes the request.
#[test]
fn one_free_unit_is_found_in_the_first_block() {
    let (mut a, mut b, chunks) = two_full_chunks();
    // A fresh (non-first) chunk of 16 KiB units takes 4096 4-byte objects.
    assert_eq!(chunks[1].len(), 4 * 4096 / 4);
    let third = a.chunk_ids().last().unwrap();

    // Block 1 (W1): not found, the third chunk takes the request.
    let x = chunks[1][1234];
    a.free(x.chunk, x.offset).unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.chunk(x.chunk).unwrap().free_bytes(), 4);
    let y = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(y.chunk, third);
    a.free(y.chunk, y.offset).unwrap();
    let z = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(z.chunk, third);

    // Block 0: found, and no new chunk.
    let x = chunks[0][5];
    assert!(x.offset < 4096);
    a.free(x.chunk, x.offset).unwrap();
    a.check_invariants().unwrap();
    let before = a.nr_chunks();
    let y = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((y.chunk, y.offset), (x.chunk, x.offset));
    assert_eq!(a.nr_chunks(), before, "no new chunk");
    a.check_invariants().unwrap();
}

/// With `backfill`, a class request takes a chunk queued for reclaim back
/// before a fully free chunk, and so before a new one when there is no
/// free chunk. It used to map the new chunk first, and take the queued
/// chunk at the retry anyway, leaving the new chunk unused (found from two
/// cargo-mutants mutants of `Lists::unlink` that left an emptied free
/// slot's bit set: the class walk then visited the empty free slot and took
/// the queued chunk without mapping one).
#[test]
fn backfill_takes_a_queued_chunk_back_before_mapping_one() {
    let policy: Policy =
        "linux-5.14:class_placement=true:backfill=true:empty_pop_low=0:empty_pop_high=0"
            .parse()
            .unwrap();
    let mut a = Allocator::new(Geometry::simple(1, 16).unwrap(), policy);
    let mut b = SimBackend::default();
    let class = ClassHint::task(1);
    // Half-page objects: the first chunk (2 pages) and two chunks of 16
    // pages, full. Each new chunk passed through the free slot.
    let objs: Vec<Allocation> = (0..68)
        .map(|_| {
            a.alloc_class(&mut b, 2048, 8, AllocFlags::NORMAL, class)
                .unwrap()
        })
        .collect();
    assert_eq!(a.nr_chunks(), 3);
    let (c1, c2) = (objs[4].chunk, objs[36].chunk);
    assert!(objs[4..36].iter().all(|x| x.chunk == c1));
    assert!(objs[36..].iter().all(|x| x.chunk == c2));
    // Chunk 2: every other page emptied (no two free pages in a row).
    for p in [0, 2, 4, 6] {
        for x in &objs[36 + 2 * p..36 + 2 * p + 2] {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    // Chunk 1: its first 8 pages emptied, which queues it for reclaim.
    for x in &objs[4..20] {
        a.free(x.chunk, x.offset).unwrap();
    }
    assert_eq!(a.chunk_list(c1), Some(ChunkList::ToDepopulate));
    assert!(matches!(a.chunk_list(c2), Some(ChunkList::Slot(_))));
    a.check_invariants().unwrap();
    // Two pages in a row, for another class (no region of its own): only
    // the queued chunk has them, and it takes them; no chunk is mapped.
    let x = a
        .alloc_class(&mut b, 8192, 8, AllocFlags::NORMAL, ClassHint::task(2))
        .unwrap();
    assert_eq!((x.chunk, a.nr_chunks()), (c1, 3), "{x:?}");
    assert!(matches!(a.chunk_list(c1), Some(ChunkList::Slot(_))));
    a.check_invariants().unwrap();
}
