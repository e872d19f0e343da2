//! `Policy::reclaim_batch`: a balance run reclaims at most that many chunks
//! and schedules the work again for the rest.

use pcpu_core::*;

/// Several chunks, each left with only its last page-sized object: all of
/// them queued for reclaim.
fn queued(batch: usize) -> (Allocator, SimBackend) {
    let mut p = Policy::default();
    p.reclaim_batch = batch;
    let mut a = Allocator::new(Geometry::simple(2, 16).unwrap(), p);
    let mut b = SimBackend::default();
    let page = a.geometry().page_size();
    let xs: Vec<_> = (0..64)
        .map(|_| a.alloc(&mut b, page, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    let first = a.first_chunk();
    for (i, x) in xs.iter().enumerate() {
        let last_in_chunk = xs.get(i + 1).map_or(true, |n| n.chunk != x.chunk);
        if x.chunk != first && !last_in_chunk {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    assert!(a.nr_chunks() >= 4, "{}", a.nr_chunks());
    assert!(a.balance_pending());
    (a, b)
}

#[test]
fn one_chunk_per_run_until_the_queue_is_empty() {
    let (mut all, mut b_all) = queued(usize::MAX);
    let r = all.balance(&mut b_all);
    assert!(!all.balance_pending());
    all.check_invariants().unwrap();

    let (mut one, mut b_one) = queued(1);
    let mut runs = 0;
    let mut depopulated = 0;
    while one.balance_pending() {
        let r1 = one.balance(&mut b_one);
        assert!(r1.depopulated <= r.depopulated);
        depopulated += r1.depopulated;
        runs += 1;
        one.check_invariants().unwrap();
        assert!(runs <= 8, "the queue drains");
    }
    assert!(runs > 1, "the work was spread over several runs");
    assert_eq!(depopulated, r.depopulated);
    assert_eq!(one.nr_populated(), all.nr_populated());
}
