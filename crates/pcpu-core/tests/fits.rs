//! Placement inside the chosen chunk: first fit (Linux), next fit, best fit.

use pcpu_core::*;

fn with_fit(fit: Fit) -> (Allocator, SimBackend) {
    let mut p = Policy::default();
    p.fit = fit;
    (
        Allocator::new(Geometry::simple(2, 16).unwrap(), p),
        SimBackend::default(),
    )
}

/// Holes of 64, 16 and 32 bytes, in that order, in front of the free tail.
fn holes(a: &mut Allocator, b: &mut SimBackend) -> (ChunkId, usize) {
    let sizes = [64, 8, 16, 8, 32, 8];
    let xs: Vec<_> = sizes
        .iter()
        .map(|&s| a.alloc(b, s, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    for i in [0, 2, 4] {
        a.free(xs[i].chunk, xs[i].offset).unwrap();
    }
    a.check_invariants().unwrap();
    (xs[0].chunk, xs[0].offset)
}

#[test]
fn first_fit_takes_the_first_hole_and_best_fit_the_tightest() {
    let (mut a, mut b) = with_fit(Fit::First);
    let (c, base) = holes(&mut a, &mut b);
    let x = a.alloc(&mut b, 16, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (c, base), "the 64-byte hole");

    let (mut a, mut b) = with_fit(Fit::Best);
    let (c, base) = holes(&mut a, &mut b);
    let x = a.alloc(&mut b, 16, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (c, base + 72), "the 16-byte hole");
    let y = a.alloc(&mut b, 24, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(y.offset, base + 96, "the 32-byte hole");
    a.check_invariants().unwrap();
}

#[test]
fn next_fit_continues_after_the_previous_allocation() {
    let (mut a, mut b) = with_fit(Fit::Next);
    let (_, base) = holes(&mut a, &mut b);
    // The last allocation ended at base + 136: the holes before it are
    // skipped until the chunk has no room after it.
    let x = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(x.offset, base + 136);
    let y = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(y.offset, base + 144);
    a.check_invariants().unwrap();
    // The rover is a hint: after its chunk's allocations are freed and
    // balanced away, allocation falls back to the walk.
    let (mut a, mut b) = with_fit(Fit::Next);
    let big: Vec<_> = (0..4)
        .map(|_| a.alloc(&mut b, 16 << 10, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    for x in &big {
        a.free(x.chunk, x.offset).unwrap();
    }
    a.balance(&mut b);
    let z = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(a.allocation_size(z.chunk, z.offset), Ok(8));
    a.check_invariants().unwrap();
}

#[test]
fn atomic_requests_keep_first_fit() {
    let (mut a, mut b) = with_fit(Fit::Best);
    let (c, base) = holes(&mut a, &mut b);
    let x = a.alloc(&mut b, 16, 4, AllocFlags::ATOMIC).unwrap();
    assert_eq!((x.chunk, x.offset), (c, base));
}

#[test]
fn the_fit_knob_prints_and_parses() {
    let p: Policy = "linux-5.14:fit=best".parse().unwrap();
    assert_eq!(p.fit, Fit::Best);
    assert_eq!(p.to_string(), "linux-5.14:fit=best");
    assert_eq!(Policy::default().to_string(), "linux-5.14");
    let mut q = Policy::pcpu();
    q.set("fit", "next").unwrap();
    assert_eq!(q.to_string().parse::<Policy>(), Ok(q));
    let e = q.set("fit", "worst").unwrap_err();
    assert!(e.to_string().contains("first, next or best"), "{e}");
    assert_eq!(q.fit, Fit::Next, "unchanged on error");
}

/// `n` 4-byte objects, allocated in order (side by side in a fresh
/// allocator).
fn fours(a: &mut Allocator, b: &mut SimBackend, n: usize) -> Vec<Allocation> {
    (0..n)
        .map(|_| a.alloc(b, 4, 4, AllocFlags::NORMAL).unwrap())
        .collect()
}

/// Best fit aligns a run's start with the request's own alignment, no more:
/// a 4-byte request takes a 4-byte hole at an odd 4-byte offset (the
/// tightest), not the 8-byte hole after it.
#[test]
fn best_fit_takes_a_hole_at_any_offset_the_alignment_allows() {
    let (mut a, mut b) = with_fit(Fit::Best);
    let xs = fours(&mut a, &mut b, 6);
    let base = xs[0].offset;
    assert_eq!(base % 8, 0);
    // Holes: 4 bytes at base + 4, 8 bytes at base + 12.
    for i in [1, 3, 4] {
        a.free(xs[i].chunk, xs[i].offset).unwrap();
    }
    let x = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (xs[1].chunk, base + 4));
    let y = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(y.offset, base + 12, "the 8-byte hole, at a 4-byte offset");
    a.check_invariants().unwrap();
}

/// Among holes that fit, best fit takes the smallest and, among equals, the
/// lowest; a smaller hole that does not fit is passed over (were it taken
/// as the start, the search would go on from there and skip the first hole).
/// The holes are larger than the request: an exact fit ends the search.
#[test]
fn best_fit_takes_the_lowest_of_equal_holes_and_skips_ones_too_small() {
    let (mut a, mut b) = with_fit(Fit::Best);
    let xs = fours(&mut a, &mut b, 11);
    // Holes: 12 bytes at x1, 4 bytes at x5, 12 bytes at x7; x10 keeps the
    // last one apart from the free tail.
    for i in [1, 2, 3, 5, 7, 8, 9] {
        a.free(xs[i].chunk, xs[i].offset).unwrap();
    }
    let x = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (xs[1].chunk, xs[1].offset));
    a.check_invariants().unwrap();
}

/// Next fit searches on from the rover past room that cannot take the
/// request: past a free run too short for it (the search resumes after
/// the allocated bit that ends the run), and from an unaligned free bit up
/// to the next aligned one. Holes of 4 and 12 bytes at 16 and 24 follow
/// the rover at 8 (left by an 8-byte object placed at 0 by the walk, the
/// chunk being full after the old rover); a 12-byte object skips the first
/// hole for the second. In a fresh allocator, an 8-byte object at 8-byte
/// alignment after a 12-byte one goes to 16.
#[test]
fn next_fit_skips_short_and_unaligned_room_after_the_rover() {
    let (mut a, mut b) = with_fit(Fit::Next);
    let first = a.first_chunk();
    let xs: Vec<_> = [8, 8, 4, 4, 12, 8192 - 36]
        .iter()
        .map(|&s| a.alloc(&mut b, s, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    assert_eq!(
        xs.iter().map(|x| x.offset).collect::<Vec<_>>(),
        [0, 8, 16, 20, 24, 36]
    );
    assert!(xs.iter().all(|x| x.chunk == first));
    for i in [0, 2, 4] {
        a.free(first, xs[i].offset).unwrap();
    }
    let o = a.alloc(&mut b, 8, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 0));
    let o = a.alloc(&mut b, 12, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 24));
    a.check_invariants().unwrap();

    let (mut a, mut b) = with_fit(Fit::Next);
    let x = a.alloc(&mut b, 12, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (first, 0));
    let y = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!((y.chunk, y.offset), (first, 16));
    a.check_invariants().unwrap();
}

/// Best fit measures a hole from its start rounded up to the request's
/// alignment: an 8-byte hole at an odd 4-byte offset cannot hold an
/// 8-byte-aligned object and is passed over, however small. The smallest
/// hole that can, 16 bytes after a 24-byte one, takes it. (Taking the
/// 8-byte hole as the start, the search would go on to the 24-byte hole.)
#[test]
fn best_fit_passes_over_a_hole_too_small_once_aligned() {
    let (mut a, mut b) = with_fit(Fit::Best);
    let xs = fours(&mut a, &mut b, 17);
    let base = xs[0].offset;
    assert_eq!(base % 8, 0);
    // Holes: 8 bytes at base + 4, 24 at base + 16, 16 at base + 48.
    for i in [1, 2, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15] {
        a.free(xs[i].chunk, xs[i].offset).unwrap();
    }
    let x = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!((x.chunk, x.offset), (xs[0].chunk, base + 48));
    a.check_invariants().unwrap();
}
