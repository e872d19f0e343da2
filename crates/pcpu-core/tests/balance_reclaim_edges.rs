//! The balance work's reclaim stage (`pcpu_reclaim_populated`, Linux 6.1),
//! pinned through the page operations a run plans. Written from mutation
//! testing of balance.rs (`plan_reclaim`): each test drives a whole run step
//! by step ([`Allocator::balance_start`], [`BalanceRun::next`],
//! [`BalanceRun::done`]) and asserts the exact operations and counts the
//! kernel's loop gives. Invariants are checked after every run.

use std::ops::Range;

use pcpu_core::*;

const PAGE: usize = 4096;

/// Run a whole balance run against `b`, returning the operations planned, in
/// order, and the report.
fn drive(a: &mut Allocator, b: &mut SimBackend) -> (Vec<PageWork>, BalanceReport) {
    let unit_pages = a.geometry().unit_pages();
    let mut run = a.balance_start();
    let mut log = Vec::new();
    while let Some(w) = run.next(a) {
        let ok = match &w {
            PageWork::Populate { chunk, pages } => b.populate(*chunk, pages.clone()).is_ok(),
            PageWork::Depopulate { chunk, pages } => b.depopulate(*chunk, pages.clone()).is_ok(),
            PageWork::FlushTlb { chunk, pages } => {
                b.flush_tlb(*chunk, pages.clone());
                true
            }
            PageWork::CreateChunk { chunk } => b.create_chunk(*chunk, unit_pages).is_ok(),
            PageWork::DestroyChunk { chunk } => {
                b.destroy_chunk(*chunk);
                true
            }
        };
        log.push(w);
        run.done(a, ok);
    }
    a.check_invariants().unwrap();
    (log, run.report())
}

/// One unit of 8 pages under `policy`; the first chunk's 8 KiB dynamic area
/// filled, so it has no empty page.
fn setup(policy: Policy) -> (Allocator, SimBackend) {
    let mut a = Allocator::new(Geometry::simple(1, 8).unwrap(), policy);
    let mut b = SimBackend::default();
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    (a, b)
}

/// A new chunk with 4-byte objects at the start of each page of `pages`
/// (those pages populated, not empty).
fn chunk_with_objects(a: &mut Allocator, b: &mut SimBackend, pages: &[usize]) -> ChunkId {
    let c = a.create_chunk(b).unwrap();
    for &p in pages {
        a.alloc_at(b, c, p * PAGE, 4, 4, AllocFlags::NORMAL)
            .unwrap();
    }
    c
}

/// A chunk that an object on `pages` (populated) left with empty populated
/// pages: a 4-byte object stays at offset 0, the other is freed.
fn emptied(a: &mut Allocator, b: &mut SimBackend, pages: Range<usize>) -> ChunkId {
    let c = chunk_with_objects(a, b, &[0]);
    a.alloc_at(
        b,
        c,
        pages.start * PAGE,
        pages.len() * PAGE,
        4,
        AllocFlags::NORMAL,
    )
    .unwrap();
    a.free(c, pages.start * PAGE).unwrap();
    a.check_invariants().unwrap();
    c
}

fn depop(chunk: ChunkId, pages: Range<usize>) -> PageWork {
    PageWork::Depopulate { chunk, pages }
}

/// `pcpu_reclaim_populated` reintegrates the chunk only when
/// `pcpu_nr_empty_pop_pages < PCPU_EMPTY_POP_PAGES_HIGH`: with the reserve
/// exactly at HIGH (4) it goes on. `w` holds 5 empty pages, `x`, emptied
/// while the others kept more than HIGH, is isolated with empty pages 1-2;
/// one page of `w` allocated then leaves the reserve at 4. The run
/// depopulates `x`'s pages 1-2 (one run, the scan going backwards), flushes
/// them, and sidelines `x` (it still holds an object); the reserve, which
/// counts no isolated chunk, stays at 4, so nothing is populated.
#[test]
fn reclaim_goes_on_with_the_reserve_at_high() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let w = chunk_with_objects(&mut a, &mut b, &[0, 6, 7]);
    a.alloc_at(&mut b, w, PAGE, 5 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(w, PAGE).unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 5);
    let x = emptied(&mut a, &mut b, 1..3);
    assert!(a.chunk(x).unwrap().is_isolated());
    a.alloc_at(&mut b, w, PAGE, PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 4);
    assert!(a.balance_pending());
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(
        log,
        [
            depop(x, 1..3),
            PageWork::FlushTlb {
                chunk: x,
                pages: 1..3
            }
        ]
    );
    assert_eq!((r.depopulated, r.populated, r.created), (2, 0, 0));
    let c = a.chunk(x).unwrap();
    assert!(c.is_isolated());
    assert_eq!(c.nr_populated(), 1);
    assert_eq!(c.nr_empty_pop_pages(), 0);
    assert_eq!(a.nr_empty_pop_pages(), 4);
}

/// A free into the chunk being reclaimed, made while the lock is dropped
/// around a depopulation, empties a page the backward scan has already
/// passed. The kernel loses that re-queue (its `list_move_tail()` to the
/// sidelined slot runs after the free isolated the chunk again); `pcpu`
/// scans the chunk again in the same run (DESIGN.md §8). `x` keeps objects
/// on pages 0 and 6 with empty pages 1-2; the free of page 6's object comes
/// while pages 1-2 are depopulated. The run flushes pages 1-2, scans `x`
/// again, depopulates and flushes page 6, and sidelines `x`.
#[test]
fn reclaim_scans_again_a_chunk_freed_into_during_the_run() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let w = chunk_with_objects(&mut a, &mut b, &[0, 6, 7]);
    a.alloc_at(&mut b, w, PAGE, 5 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(w, PAGE).unwrap();
    let x = chunk_with_objects(&mut a, &mut b, &[0, 6]);
    a.alloc_at(&mut b, x, PAGE, 2 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(x, PAGE).unwrap();
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 5);

    let mut run = a.balance_start();
    let mut log = Vec::new();
    let mut freed = false;
    while let Some(w) = run.next(&mut a) {
        let ok = match &w {
            PageWork::Depopulate { chunk, pages } => {
                let ok = b.depopulate(*chunk, pages.clone()).is_ok();
                if !freed {
                    // The lock is dropped: a free runs.
                    a.free(x, 6 * PAGE).unwrap();
                    freed = true;
                }
                ok
            }
            PageWork::FlushTlb { chunk, pages } => {
                b.flush_tlb(*chunk, pages.clone());
                true
            }
            other => panic!("unexpected {other:?}"),
        };
        log.push(w);
        run.done(&mut a, ok);
    }
    a.check_invariants().unwrap();
    let r = run.report();
    assert_eq!(
        log,
        [
            depop(x, 1..3),
            PageWork::FlushTlb {
                chunk: x,
                pages: 1..3
            },
            depop(x, 6..7),
            PageWork::FlushTlb {
                chunk: x,
                pages: 6..7
            },
        ]
    );
    assert_eq!((r.depopulated, r.populated), (3, 0));
    let c = a.chunk(x).unwrap();
    assert!(c.is_isolated());
    assert_eq!(c.nr_populated(), 1);
    assert_eq!(c.nr_empty_pop_pages(), 0);
    assert_eq!(a.nr_empty_pop_pages(), 5);
}
