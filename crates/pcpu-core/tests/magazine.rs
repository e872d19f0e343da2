//! Magazines: freed areas kept allocated for reuse in front of the allocator.

use std::collections::HashSet;

use pcpu_core::*;
use proptest::prelude::*;

fn small() -> Allocator {
    Allocator::new(Geometry::simple(2, 16).unwrap(), Policy::default())
}

#[test]
fn last_in_first_out_and_still_allocated() {
    let mut a = small();
    let mut b = SimBackend::default();
    let mut mag = Magazine::new(a.request(8, 8).unwrap(), 4);
    let xs: Vec<_> = (0..3)
        .map(|_| {
            a.alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL)
                .unwrap()
        })
        .collect();
    for &x in &xs {
        a.free_cached(&mut mag, x).unwrap();
        a.check_invariants().unwrap();
    }
    assert_eq!(mag.areas(), &xs[..]);
    assert_eq!((mag.len(), mag.is_empty(), mag.capacity()), (3, false, 4));
    assert_eq!(a.stats().nr_cur_alloc, 3, "cached areas stay allocated");
    let y = a
        .alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(y, xs[2]);
    assert_eq!(a.stats().nr_alloc, 3, "served without the allocator");
    a.free_cached(&mut mag, y).unwrap();
    assert_eq!(a.drain(&mut mag), 3);
    assert!(mag.is_empty());
    assert_eq!(a.stats().nr_cur_alloc, 0);
    a.check_invariants().unwrap();
}

/// The magazine keeps an area's real size, whatever size the handle it
/// was given back with says (the size is checked against the allocation,
/// not trusted).
#[test]
fn a_cached_area_keeps_its_real_size() {
    let mut a = small();
    let mut b = SimBackend::default();
    let mut mag = Magazine::new(a.request(8, 8).unwrap(), 4);
    let x = a
        .alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL)
        .unwrap();
    a.free_cached(&mut mag, Allocation { size: 4, ..x })
        .unwrap();
    assert_eq!(mag.areas(), &[x]);
    let y = a
        .alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!((y, y.size), (x, 8));
    a.free(y.chunk, y.offset).unwrap();
    a.check_invariants().unwrap();
}

#[test]
fn a_full_magazine_frees_its_older_half() {
    let mut a = small();
    let mut b = SimBackend::default();
    let mut mag = Magazine::new(a.request(4, 4).unwrap(), 8);
    let xs: Vec<_> = (0..9)
        .map(|_| a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    for &x in &xs {
        a.free_cached(&mut mag, x).unwrap();
    }
    // The ninth found 8: the oldest 4 went back, then it was pushed.
    assert_eq!(mag.areas(), &xs[4..]);
    assert_eq!(a.stats().nr_cur_alloc, 5);
    for x in &xs[..4] {
        assert!(a.allocation_size(x.chunk, x.offset).is_err(), "freed");
    }
    a.drain(&mut mag);
    a.check_invariants().unwrap();

    // Capacity 0: straight through.
    let mut none = Magazine::new(a.request(4, 4).unwrap(), 0);
    let x = a
        .alloc_cached(&mut b, &mut none, AllocFlags::NORMAL)
        .unwrap();
    a.free_cached(&mut none, x).unwrap();
    assert_eq!((none.len(), a.stats().nr_cur_alloc), (0, 0));
}

#[test]
fn bad_frees_are_refused_without_change() {
    let mut a = small();
    let mut b = SimBackend::default();
    let mut mag = Magazine::new(a.request(8, 8).unwrap(), 4);
    let x = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    let big = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
    a.free_cached(&mut mag, x).unwrap();
    let before = (a.percpu_stats(), mag.areas().to_vec());

    assert_eq!(
        a.free_cached(&mut mag, x),
        Err(FreeError::Cached {
            chunk: x.chunk,
            offset: x.offset
        })
    );
    assert_eq!(
        a.free_cached(&mut mag, big),
        Err(FreeError::WrongSize {
            chunk: big.chunk,
            offset: big.offset,
            size: 64,
            expected: 8
        })
    );
    let inside = Allocation {
        offset: big.offset + 8,
        ..big
    };
    assert!(matches!(
        a.free_cached(&mut mag, inside),
        Err(FreeError::NotAllocated { stale: false, .. })
    ));
    let gone = Allocation {
        chunk: ChunkId(77),
        ..x
    };
    assert_eq!(
        a.free_cached(&mut mag, gone),
        Err(FreeError::UnknownChunk(ChunkId(77)))
    );
    assert_eq!((a.percpu_stats(), mag.areas().to_vec()), before);
    for e in [
        FreeError::Cached {
            chunk: x.chunk,
            offset: 8,
        },
        FreeError::WrongSize {
            chunk: x.chunk,
            offset: 8,
            size: 64,
            expected: 8,
        },
    ] {
        assert!(e.to_string().contains("offset 8"), "{e}");
    }
    a.check_invariants().unwrap();
}

/// An area held by one magazine belongs to it: a second magazine and a
/// plain `free` refuse it, so no two owners can get it (a helper found that
/// the free-then-realloc path handed one area to two owners before).
#[test]
fn an_area_in_a_magazine_has_no_other_owner() {
    let mut a = small();
    let mut b = SimBackend::default();
    let req = a.request(8, 8).unwrap();
    let (mut m1, mut m2) = (Magazine::new(req, 4), Magazine::new(req, 4));
    let z = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    a.free_cached(&mut m1, z).unwrap();
    let before = (a.percpu_stats(), m1.areas().to_vec());
    let held = FreeError::Cached {
        chunk: z.chunk,
        offset: z.offset,
    };
    assert_eq!(a.free_cached(&mut m2, z), Err(held.clone()));
    assert_eq!(a.free(z.chunk, z.offset), Err(held.clone()));
    assert!(m2.is_empty());
    // Nor may the two-phase protocol take it back.
    let refused = Err(ProtocolError::NotLive {
        area: z,
        cause: held,
    });
    assert_eq!(a.cancel_area(z), refused);
    assert_eq!(a.abort_area(z, AllocFlags::NORMAL), refused);
    assert_eq!((a.percpu_stats(), m1.areas().to_vec()), before);
    a.check_invariants().unwrap();
    // Nothing else can be placed there while m1 holds it.
    let other = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    assert_ne!((other.chunk, other.offset), (z.chunk, z.offset));
    // Handed out again, it is an ordinary live area: freed once, plainly.
    let again = a.alloc_cached(&mut b, &mut m1, AllocFlags::NORMAL).unwrap();
    assert_eq!(again, z);
    a.free(z.chunk, z.offset).unwrap();
    assert!(matches!(
        a.free(z.chunk, z.offset),
        Err(FreeError::NotAllocated { stale: true, .. })
    ));
    // Drained areas are freed and unmarked.
    a.free_cached(&mut m2, other).unwrap();
    assert_eq!(a.drain(&mut m2), 1);
    assert_eq!(a.stats().nr_cur_alloc, 0);
    a.check_invariants().unwrap();
}

/// Clones of a magazine (snapshots) used with one allocator share their
/// areas: each goes to whichever hands it out or drains it first.
#[test]
fn clones_of_a_magazine_never_hand_one_area_out_twice() {
    let mut a = small();
    let mut b = SimBackend::default();
    let mut m1 = Magazine::new(a.request(8, 8).unwrap(), 4);
    let z = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    let y = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    a.free_cached(&mut m1, y).unwrap();
    a.free_cached(&mut m1, z).unwrap();
    let mut m2 = m1.clone();
    assert_eq!(
        a.alloc_cached(&mut b, &mut m1, AllocFlags::NORMAL).unwrap(),
        z
    );
    let other = a.alloc_cached(&mut b, &mut m2, AllocFlags::NORMAL).unwrap();
    assert_eq!(other, y, "z is taken: the clone skips it");
    let next = a.alloc_cached(&mut b, &mut m1, AllocFlags::NORMAL).unwrap();
    assert!(next != z && next != y, "{next:?}");
    a.check_invariants().unwrap();
    // Everything freed once, by its one owner.
    for x in [z, y, next] {
        a.free(x.chunk, x.offset).unwrap();
    }
    assert_eq!((a.drain(&mut m1), a.drain(&mut m2)), (0, 0));
    assert_eq!(a.stats().nr_cur_alloc, 0);
    // Both clones holding an area: the first drain frees it, the second
    // skips it.
    let w = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    a.free_cached(&mut m1, w).unwrap();
    let mut m2 = m1.clone();
    assert_eq!((a.drain(&mut m1), a.drain(&mut m2)), (1, 0));
    assert_eq!(a.stats().nr_cur_alloc, 0);
    a.check_invariants().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random allocs and frees through two magazines, with balance runs
    /// after draining: the areas handed out never overlap, the allocator's
    /// live count is what is held plus what is cached, and the invariants
    /// hold after every step.
    #[test]
    fn magazines_against_a_model(ops in proptest::collection::vec((0u8..4, any::<u16>()), 1..400)) {
        let mut a = small();
        let mut b = SimBackend::default();
        let mut mags = [
            Magazine::new(a.request(8, 8).unwrap(), 6),
            Magazine::new(a.request(24, 4).unwrap(), 3),
        ];
        let mut held: Vec<(usize, Allocation)> = Vec::new();
        for (op, arg) in ops {
            let m = usize::from(arg) % 2;
            match op {
                0 | 1 => {
                    let x = a.alloc_cached(&mut b, &mut mags[m], AllocFlags::NORMAL).unwrap();
                    prop_assert_eq!(x.size, mags[m].request().size);
                    held.push((m, x));
                }
                2 if !held.is_empty() => {
                    let (m, x) = held.swap_remove(usize::from(arg) % held.len());
                    a.free_cached(&mut mags[m], x).unwrap();
                }
                _ => {
                    for mag in &mut mags {
                        a.drain(mag);
                    }
                    a.balance(&mut b);
                }
            }
            a.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let cached: usize = mags.iter().map(Magazine::len).sum();
            prop_assert_eq!(a.stats().nr_cur_alloc as usize, held.len() + cached);
            let mut bytes = HashSet::new();
            let areas = held.iter().map(|h| h.1).chain(mags.iter().flat_map(|g| g.areas().to_vec()));
            for x in areas {
                for off in (x.offset..x.offset + x.size).step_by(4) {
                    prop_assert!(bytes.insert((x.chunk, off)), "overlap at {:?}", x);
                }
            }
        }
    }
}

/// While a magazine holds one allocator's areas, another allocator neither
/// takes from it nor drains it, and refuses to free into it: it dropped the
/// first allocator's area unseen (a review), which then stayed allocated
/// and marked cached there, beyond `free` and `drain`. Emptied, the
/// magazine may serve the other allocator; a clone of the first allocator
/// (a snapshot) is the same allocator.
#[test]
fn a_magazine_holding_one_allocators_areas_serves_no_other() {
    let (mut a, mut b) = (small(), small());
    let mut sim = SimBackend::default();
    let req = a.request(8, 8).unwrap();
    let mut mag = Magazine::new(req, 4);
    let x = a.alloc(&mut sim, 8, 8, AllocFlags::NORMAL).unwrap();
    a.free_cached(&mut mag, x).unwrap();
    // A snapshot (clones of both) is the same allocator's.
    let (mut snap, mut snap_mag) = (a.clone(), mag.clone());
    assert_eq!(
        snap.alloc_cached(&mut sim, &mut snap_mag, AllocFlags::NORMAL)
            .unwrap(),
        x
    );
    snap.check_invariants().unwrap();
    // b: its own allocation, not the magazine's area.
    let y = b
        .alloc_cached(&mut sim, &mut mag, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(mag.areas(), [x]);
    assert_eq!(
        b.free_cached(&mut mag, y),
        Err(FreeError::ForeignMagazine {
            chunk: y.chunk,
            offset: y.offset
        })
    );
    assert!(b
        .free_cached(&mut mag, y)
        .unwrap_err()
        .to_string()
        .contains("another allocator"));
    assert_eq!(b.drain(&mut mag), 0);
    assert_eq!(mag.areas(), [x]);
    b.free(y.chunk, y.offset).unwrap();
    b.check_invariants().unwrap();
    // a still has it, and gets it back.
    assert_eq!(
        a.alloc_cached(&mut sim, &mut mag, AllocFlags::NORMAL)
            .unwrap(),
        x
    );
    a.free(x.chunk, x.offset).unwrap();
    assert_eq!(a.stats().nr_cur_alloc, 0);
    a.check_invariants().unwrap();
    // Empty now: b may use it.
    let z = b.alloc(&mut sim, 8, 8, AllocFlags::NORMAL).unwrap();
    b.free_cached(&mut mag, z).unwrap();
    assert_eq!(b.drain(&mut mag), 1);
    assert_eq!(b.stats().nr_cur_alloc, 0);
}
