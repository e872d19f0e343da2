//! `pcpu_balance_free`: the first stage of a balance run frees every fully
//! free chunk but the free slot's head, populated or not; the last stage
//! (`empty_only`) frees only those without populated pages. Invariants are
//! checked after every operation.

use pcpu_core::*;

/// One unit of 8 pages; the first chunk's 8 KiB dynamic area filled, so it
/// has no empty page. Chunks `x` and `y` then held objects on `px` and `py`
/// pages (populated) and are fully free again.
fn two_free_chunks(px: usize, py: usize) -> (Allocator, SimBackend, ChunkId, ChunkId) {
    let mut a = Allocator::new(
        Geometry::simple(1, 8).unwrap(),
        Policy::new(PolicyKind::Linux61),
    );
    let mut b = SimBackend::default();
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let x = a.create_chunk(&mut b).unwrap();
    let y = a.create_chunk(&mut b).unwrap();
    for (c, pages) in [(x, px), (y, py)] {
        if pages > 0 {
            a.alloc_at(&mut b, c, 0, pages * 4096, 4, AllocFlags::NORMAL)
                .unwrap();
            a.check_invariants().unwrap();
            a.free(c, 0).unwrap();
        }
        a.check_invariants().unwrap();
    }
    (a, b, x, y)
}

/// Two populated free chunks: the first stage destroys the one that is not
/// the head, so the populate stage sees only the head's empty pages and
/// tops the reserve up to `empty_pop_high` (4) from them.
#[test]
fn the_first_stage_frees_populated_chunks() {
    let (mut a, mut b, x, y) = two_free_chunks(2, 3);
    assert_eq!(a.nr_empty_pop_pages(), 5);
    let r = a.balance(&mut b);
    a.check_invariants().unwrap();
    assert_eq!(r.destroyed, 1, "{r:?}");
    let kept = [x, y].into_iter().find(|&c| a.chunk(c).is_some()).unwrap();
    let kept_pages = if kept == x { 2 } else { 3 };
    let gone_pages = 5 - kept_pages;
    assert_eq!(r.depopulated, gone_pages, "{r:?}");
    assert_eq!(r.populated, 4 - kept_pages, "{r:?}");
    assert_eq!(a.nr_empty_pop_pages(), 4);
}

/// Two free chunks never populated: the first stage destroys the one that
/// is not the head; the populate stage then populates the head's pages.
#[test]
fn the_first_stage_frees_unpopulated_chunks() {
    let (mut a, mut b, _, _) = two_free_chunks(0, 0);
    assert_eq!(a.nr_empty_pop_pages(), 0);
    let r = a.balance(&mut b);
    a.check_invariants().unwrap();
    assert_eq!(
        (r.destroyed, r.depopulated, r.populated),
        (1, 0, 4),
        "{r:?}"
    );
    assert_eq!(a.nr_empty_pop_pages(), 4);
    assert_eq!(a.stats().nr_chunks, 2);
}

/// The last stage frees only free chunks without populated pages, the head
/// spared: chunk `x`, isolated while mostly empty and fully free since, is
/// depopulated by reclaim and returned to the free slot's head
/// (`pcpu_reintegrate_chunk` relocates from slot -1: to the front), so it
/// stays; `y`, behind it, keeps its populated pages and stays too.
#[test]
fn the_last_stage_frees_only_unpopulated_chunks() {
    let (mut a, mut b, x, y) = two_free_chunks(0, 5);
    a.alloc_at(&mut b, x, 0, 4096, 4, AllocFlags::NORMAL)
        .unwrap();
    a.alloc_at(&mut b, x, 4096, 3 * 4096, 4, AllocFlags::NORMAL)
        .unwrap();
    a.check_invariants().unwrap();
    // 3 of 8 pages empty, and 8 empty pages in all: isolated (its empty
    // pages leave the global count).
    a.free(x, 4096).unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    a.free(x, 0).unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 5);
    let r = a.balance(&mut b);
    a.check_invariants().unwrap();
    assert_eq!(
        (r.destroyed, r.depopulated, r.populated),
        (0, 4, 0),
        "{r:?}"
    );
    assert_eq!(a.chunk(x).unwrap().nr_populated(), 0);
    assert_eq!(a.chunk(y).unwrap().nr_populated(), 5);
    assert_eq!(a.nr_empty_pop_pages(), 5);
}
