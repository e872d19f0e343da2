//! The balance work's populate stage (`pcpu_balance_populated`, Linux 6.1),
//! its reclaim stage (`pcpu_reclaim_populated`) and the RFC's
//! populate-or-shrink stage (`pcpu_shrink_populated` in the seed patch),
//! pinned through the page operations a run plans. Written from
//! mutation testing of balance.rs: each test drives a whole run step by step
//! ([`Allocator::balance_start`], [`BalanceRun::next`], [`BalanceRun::done`])
//! and asserts the exact operations and counts the kernel's loops give.
//! Invariants are checked after every run.

use std::ops::Range;

use pcpu_core::*;

const PAGE: usize = 4096;

/// Run a whole balance run against `b`, returning the operations planned, in
/// order, and the report.
fn drive(a: &mut Allocator, b: &mut SimBackend) -> (Vec<PageWork>, BalanceReport) {
    drive_with(a, b, |_, _| true)
}

/// [`drive`], calling `unlocked` after each page operation, where the
/// embedder has dropped its lock (frees may run there); the operation
/// succeeds only if the backend's and `unlocked`'s results are both true.
fn drive_with(
    a: &mut Allocator,
    b: &mut SimBackend,
    mut unlocked: impl FnMut(&mut Allocator, &PageWork) -> bool,
) -> (Vec<PageWork>, BalanceReport) {
    let mut run = a.balance_start().unwrap();
    let mut log = Vec::new();
    while let Some(w) = run.next(a) {
        let ok = perform(a, b, &w);
        let ok = unlocked(a, &w) && ok;
        log.push(w);
        assert!(log.len() < 64, "the run does not end: {log:?}");
        run.done(a, ok);
    }
    a.check_invariants().unwrap();
    (log, run.report())
}

/// Perform page operation `w` on `b`: did it succeed?
fn perform(a: &Allocator, b: &mut SimBackend, w: &PageWork) -> bool {
    match w {
        PageWork::Populate { chunk, pages } => b.populate(*chunk, pages.clone()).is_ok(),
        PageWork::Depopulate { chunk, pages } => b.depopulate(*chunk, pages.clone()).is_ok(),
        PageWork::FlushTlb { chunk, pages } => {
            b.flush_tlb(*chunk, pages.clone());
            true
        }
        PageWork::CreateChunk { chunk } => {
            b.create_chunk(*chunk, a.geometry().unit_pages()).is_ok()
        }
        PageWork::DestroyChunk { chunk } => {
            b.destroy_chunk(*chunk);
            true
        }
    }
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

/// A fully populated chunk with objects on pages 0, 6 and 7 and its pages
/// 1-5 empty: more than HIGH in the reserve by itself.
fn five_empty_pages(a: &mut Allocator, b: &mut SimBackend) -> ChunkId {
    let w = chunk_with_objects(a, b, &[0, 6, 7]);
    a.alloc_at(b, w, PAGE, 5 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(w, PAGE).unwrap();
    w
}

fn pop(chunk: ChunkId, pages: Range<usize>) -> PageWork {
    PageWork::Populate { chunk, pages }
}

fn depop(chunk: ChunkId, pages: Range<usize>) -> PageWork {
    PageWork::Depopulate { chunk, pages }
}

fn flush(chunk: ChunkId, pages: Range<usize>) -> PageWork {
    PageWork::FlushTlb { chunk, pages }
}

/// `pcpu_balance_populated` takes at most one chunk per slot: after the
/// first chunk of a slot with unpopulated pages it moves to the next slot
/// (`slot++`), even when another chunk of the same slot has some. `x` and
/// `y` share a slot (contig hints of 3 pages), `x` first; `x`'s 2
/// unpopulated pages leave 2 of the 4 to populate, no later slot has a
/// chunk with unpopulated pages, so a chunk is created, and `retry_pop`
/// (target again: 2) then finds `y`.
#[test]
fn populate_takes_one_chunk_per_slot() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let x = chunk_with_objects(&mut a, &mut b, &[0, 1, 2, 3, 4, 5]);
    let y = chunk_with_objects(&mut a, &mut b, &[0, 3, 6]);
    a.check_invariants().unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 0);
    let (log, r) = drive(&mut a, &mut b);
    let z = ChunkId(3);
    assert_eq!(
        log,
        [
            pop(x, 6..8),
            PageWork::CreateChunk { chunk: z },
            pop(y, 1..3)
        ]
    );
    assert_eq!((r.populated, r.created), (4, 1));
    assert_eq!(a.nr_empty_pop_pages(), 4);
    assert_eq!(a.chunk(z).unwrap().nr_populated(), 0);
}

/// The RFC policy with every marked chunk scheduling the work
/// (`rfc_marked_threshold` 0) and `empty_pop_high` = `high`.
fn rfc(high: i32) -> (Allocator, SimBackend) {
    let mut p = Policy::new(PolicyKind::SeedRfc);
    p.rfc_marked_threshold = 0;
    p.empty_pop_high = high;
    p.empty_pop_low = p.empty_pop_low.min(high);
    setup(p)
}

/// A chunk that an object on `pages` (populated) left with empty populated
/// pages: a 4-byte object stays at offset 0, the other is freed. Marked for
/// depopulation by the RFC's free path when another chunk shares its slot.
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

/// The RFC's shrink (`pcpu_shrink_populated`): with the reserve at
/// `empty_pop_high` and a chunk marked, each run of empty populated pages
/// of the marked chunk is depopulated, pages walked forward; a run
/// reaching the chunk's end is depopulated at the end of the walk. `x`
/// keeps objects on pages 0 and 3; pages 1-2 and 4-5 are empty, 6-7 were
/// never populated. `z` shares `x`'s slot, so the free marked `x`.
#[test]
fn rfc_shrink_depopulates_every_empty_run() {
    let (mut a, mut b) = rfc(4);
    let z = chunk_with_objects(&mut a, &mut b, &[0]);
    let x = chunk_with_objects(&mut a, &mut b, &[0, 3]);
    for r in [1..3, 4..6] {
        a.alloc_at(
            &mut b,
            x,
            r.start * PAGE,
            r.len() * PAGE,
            4,
            AllocFlags::NORMAL,
        )
        .unwrap();
    }
    a.free(x, PAGE).unwrap();
    a.free(x, 4 * PAGE).unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 4);
    assert!(a.balance_pending());
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [depop(x, 1..3), depop(x, 4..6)]);
    assert_eq!((r.depopulated, r.populated), (4, 0));
    assert_eq!(a.nr_empty_pop_pages(), 0);
    let c = a.chunk(x).unwrap();
    assert_eq!(c.nr_populated(), 2);
    assert!(c.is_page_populated(0) && c.is_page_populated(3));
    assert_eq!(a.chunk(z).unwrap().nr_populated(), 1);

    // Empty pages up to the chunk's end: one run, closed by the walk's end.
    let (mut a, mut b) = rfc(4);
    chunk_with_objects(&mut a, &mut b, &[0]);
    let x = emptied(&mut a, &mut b, 1..8);
    assert_eq!(a.nr_empty_pop_pages(), 7);
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [depop(x, 1..8)]);
    assert_eq!(r.depopulated, 7);
    assert_eq!(a.chunk(x).unwrap().nr_populated(), 1);
}

/// Two marked chunks, `y` ahead of `x` in their slot (a chunk whose slot
/// rises moves to the list's front). The shrink checks the reserve only
/// before each chunk (`pcpu_nr_empty_pop_pages < HIGH` ends it): with
/// `empty_pop_high` 4 the 8 empty pages allow `y`, and the 4 left still
/// allow `x`; with 5, the 4 left after `y` stop it, and `x` keeps its empty
/// pages and its mark (the next run grows by the page missing instead).
#[test]
fn rfc_shrink_checks_the_reserve_before_each_chunk() {
    for high in [4, 5] {
        let (mut a, mut b) = rfc(high);
        chunk_with_objects(&mut a, &mut b, &[0]);
        let x = emptied(&mut a, &mut b, 1..5);
        let y = emptied(&mut a, &mut b, 1..5);
        assert_eq!(a.nr_empty_pop_pages(), 8);
        let (log, r) = drive(&mut a, &mut b);
        if high == 4 {
            assert_eq!(log, [depop(y, 1..5), depop(x, 1..5)]);
            assert_eq!(r.depopulated, 8);
            assert_eq!(a.nr_empty_pop_pages(), 0);
        } else {
            assert_eq!(log, [depop(y, 1..5)]);
            assert_eq!(r.depopulated, 4);
            assert_eq!(a.nr_empty_pop_pages(), 4);
            assert_eq!(a.chunk(x).unwrap().nr_populated(), 5);
            // 4 < 5: grow by one page, from the page slot up (`y`, now
            // with the most unpopulated room, sits in the same slot as
            // `x`, behind it).
            let (log, r) = drive(&mut a, &mut b);
            assert_eq!(r.populated, 1, "{log:?}");
            assert_eq!(a.nr_empty_pop_pages(), 5);
        }
    }
}

/// The RFC grows by what the reserve lacks (`HIGH - nr_empty_pop_pages`),
/// not recomputed after each step: 3 empty pages against 4 populate one
/// page, the first unpopulated page of the first chunk with any, from the
/// page slot up: `z`, ahead of `x` in their slot (the free left `x`'s slot
/// unchanged, so it did not move to the front).
#[test]
fn rfc_grows_by_the_missing_pages() {
    let (mut a, mut b) = rfc(4);
    let z = chunk_with_objects(&mut a, &mut b, &[0]);
    emptied(&mut a, &mut b, 1..4);
    assert_eq!(a.nr_empty_pop_pages(), 3);
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [pop(z, 1..2)]);
    assert_eq!((r.populated, r.depopulated), (1, 0));
    assert_eq!(a.nr_empty_pop_pages(), 4);

    // One empty page against 4: three pages, from one run of `z`'s.
    let (mut a, mut b) = rfc(4);
    let z = chunk_with_objects(&mut a, &mut b, &[0]);
    emptied(&mut a, &mut b, 1..2);
    assert_eq!(a.nr_empty_pop_pages(), 1);
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [pop(z, 1..4)]);
    assert_eq!(r.populated, 3);
    assert_eq!(a.nr_empty_pop_pages(), 4);
}

/// The shrink depopulates only marked chunks (`chunk->depopulate` in the
/// seed patch). `u`, emptied while alone in its slot, is not marked; `x`,
/// which keeps an object on page 4, sits in a lower slot (contig hint under
/// 4 pages) beside `z` and is marked. The walk, slots top down, meets `u`
/// first and passes it by; `x`'s empty pages 1-3 are depopulated, `u`
/// keeps its 4.
#[test]
fn rfc_shrink_skips_unmarked_chunks() {
    let (mut a, mut b) = rfc(4);
    let u = emptied(&mut a, &mut b, 1..5);
    chunk_with_objects(&mut a, &mut b, &[0, 4]);
    let x = chunk_with_objects(&mut a, &mut b, &[4]);
    a.alloc_at(&mut b, x, 0, 4 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(x, 0).unwrap();
    a.alloc_at(&mut b, x, 0, 4, 4, AllocFlags::NORMAL).unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 7);
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [depop(x, 1..4)]);
    assert_eq!(r.depopulated, 3);
    assert_eq!(a.chunk(u).unwrap().nr_empty_pop_pages(), 4);
    assert_eq!(a.nr_empty_pop_pages(), 4);
}

/// W2 (DESIGN.md §8, replicated): under the kernel's policies
/// `pcpu_balance_populated` walks the sidelined slot like any other and
/// populates a sidelined chunk. `w` is fully populated with 5 empty pages;
/// `x`, emptied while the reserve was above `HIGH + 2`, is isolated; the
/// first run depopulates its empty pages 1-2 and sidelines it (the reserve
/// stays at 5, nothing to populate). Two pages of `w` then allocated leave
/// 3: the second run populates `x`'s first unpopulated page, no new chunk,
/// and the reserve stays short.
#[test]
fn populate_fills_a_sidelined_chunk_under_linux() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let w = five_empty_pages(&mut a, &mut b);
    assert_eq!(a.nr_empty_pop_pages(), 5);
    let x = emptied(&mut a, &mut b, 1..3);
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 5);
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
    assert_eq!((r.depopulated, r.populated), (2, 0));
    a.alloc_at(&mut b, w, PAGE, 2 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 3);
    let (log, r) = drive(&mut a, &mut b);
    assert_eq!(log, [pop(x, 1..2)]);
    assert_eq!((r.populated, r.created), (1, 0));
    // The sidelined chunk is still isolated: its new empty page does not
    // count for the reserve.
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.chunk(x).unwrap().nr_empty_pop_pages(), 1);
    assert_eq!(a.nr_empty_pop_pages(), 3);
}

// === the reclaim stage ===

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
    let w = five_empty_pages(&mut a, &mut b);
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
    five_empty_pages(&mut a, &mut b);
    let x = chunk_with_objects(&mut a, &mut b, &[0, 6]);
    a.alloc_at(&mut b, x, PAGE, 2 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(x, PAGE).unwrap();
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 5);

    let mut freed = false;
    let (log, r) = drive_with(&mut a, &mut b, |a, w| {
        if matches!(w, PageWork::Depopulate { .. }) && !freed {
            // The lock is dropped: a free runs.
            a.free(x, 6 * PAGE).unwrap();
            freed = true;
        }
        true
    });
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

/// Chunks of 8 pages, 2 units: five filled with page-sized objects, then
/// three freed whole and the others every other page, and with
/// `atomic_fill` atomic requests until one failed: a run then destroys
/// chunks, reclaims or shrinks, and creates one.
fn abort_scenario(policy: Policy, atomic_fill: bool) -> (Allocator, SimBackend, Vec<Allocation>) {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), policy);
    let mut b = SimBackend::default();
    let objs: Vec<_> = (0..40)
        .map(|_| a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap())
        .collect();
    let mut kept = Vec::new();
    for (i, o) in objs.into_iter().enumerate() {
        if i >= 16 || i % 2 == 1 {
            a.free(o.chunk, o.offset).unwrap();
        } else {
            kept.push(o);
        }
    }
    let atomic = AllocFlags {
        atomic: true,
        ..AllocFlags::NORMAL
    };
    if atomic_fill {
        while let Ok(o) = a.alloc(&mut b, PAGE, PAGE, atomic) {
            kept.push(o);
        }
    }
    (a, b, kept)
}

/// Chunks the backend holds, the first chunk (not the backend's) included.
fn backend_chunks(b: &SimBackend) -> u64 {
    b.created - b.destroyed + 1
}

/// A run given up after any of its steps, with its next operation pending
/// (not performed) or not, puts back what it held: the invariants hold, the
/// core and the backend agree on the chunks, and freeing everything and
/// balancing leaves the first chunk and at most one spare, as without the
/// abort. (Dropping the run instead left the chunks it was destroying off
/// every list for good; found by a review.)
#[test]
fn a_run_aborted_after_any_step_leaks_nothing() {
    let mut kinds = std::collections::HashSet::new();
    for (policy, fill) in ["linux-5.11", "seed-rfc", "linux-5.14", "pcpu"]
        .into_iter()
        .flat_map(|p| [(p, false), (p, true)])
    {
        let policy: Policy = policy.parse().unwrap();
        let (mut a, mut b, _) = abort_scenario(policy, fill);
        let (log, _) = drive(&mut a, &mut b);
        kinds.extend(log.iter().map(std::mem::discriminant));
        for k in 0..=log.len() {
            for leave_pending in [false, true] {
                let (mut a, mut b, kept) = abort_scenario(policy, fill);
                let mut run = a.balance_start().unwrap();
                let mut over = false;
                for _ in 0..k {
                    let Some(w) = run.next(&mut a) else {
                        over = true;
                        break;
                    };
                    let ok = perform(&a, &mut b, &w);
                    run.done(&mut a, ok);
                }
                if leave_pending {
                    over |= run.next(&mut a).is_none();
                }
                run.abort(&mut a);
                let at = format!("{policy}, aborted after {k} steps, pending {leave_pending}");
                a.check_invariants().unwrap_or_else(|e| panic!("{at}: {e}"));
                // The work left is pending again; a run that was over (its
                // `next` said so) had none left, and its abort does nothing.
                assert_eq!(a.balance_pending(), !over, "{at}");
                assert_eq!(a.nr_chunks() as u64, backend_chunks(&b), "{at}");
                for o in kept {
                    a.free(o.chunk, o.offset).unwrap();
                }
                for _ in 0..4 {
                    drive(&mut a, &mut b);
                }
                assert!(a.nr_chunks() <= 2, "{at}: {} chunks", a.nr_chunks());
                assert_eq!(a.nr_chunks() as u64, backend_chunks(&b), "{at}");
            }
        }
    }
    assert_eq!(
        kinds.len(),
        5,
        "every kind of page operation was aborted at"
    );
}

/// A run dropped part-way is reported by the invariant check.
#[test]
fn a_dropped_run_is_an_invariant_violation() {
    let (mut a, mut b, _) = abort_scenario(Policy::new(PolicyKind::Linux514), false);
    let mut run = a.balance_start().unwrap();
    let w = run.next(&mut a).unwrap();
    let ok = perform(&a, &mut b, &w);
    run.done(&mut a, ok);
    drop(run);
    let e = a.check_invariants().unwrap_err();
    assert!(
        e.to_string()
            .contains("started and neither ended nor aborted"),
        "{e}"
    );
}

/// Beside `w`'s 5 empty pages, a chunk `x` with objects on pages 0 and 1
/// (their offsets are the page starts) and empty pages 2-3, isolated;
/// pages 4-7 were never populated.
fn isolated_with_empty_2_3(a: &mut Allocator, b: &mut SimBackend) -> ChunkId {
    five_empty_pages(a, b);
    let x = chunk_with_objects(a, b, &[0, 1]);
    a.alloc_at(b, x, 2 * PAGE, 2 * PAGE, 4, AllocFlags::NORMAL)
        .unwrap();
    a.free(x, 2 * PAGE).unwrap();
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 5);
    x
}

/// After depopulating a run, the backward scan resumes below the page that
/// ended it (`i` already looked at, not looked at again): a free that empties
/// that page while the lock is dropped is caught by the chunk's second scan
/// (DESIGN.md §8), with its own flush, not by the same scan. `x`'s pages 2-3
/// are depopulated while page 1's object is freed.
#[test]
fn reclaim_resumes_below_the_page_that_ended_the_run() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let x = isolated_with_empty_2_3(&mut a, &mut b);
    let mut freed = false;
    let (log, r) = drive_with(&mut a, &mut b, |a, w| {
        if matches!(w, PageWork::Depopulate { .. }) && !freed {
            a.free(x, PAGE).unwrap();
            freed = true;
        }
        true
    });
    assert_eq!(
        log,
        [
            depop(x, 2..4),
            flush(x, 2..4),
            depop(x, 1..2),
            flush(x, 1..2)
        ]
    );
    assert_eq!((r.depopulated, r.populated, r.failures), (3, 0, 0));
    let c = a.chunk(x).unwrap();
    assert!(c.is_isolated());
    assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (1, 0));
}

/// A depopulation the backend refuses is not retried by the same scan: the
/// pages stay populated and counted, nothing is flushed, and the scan goes
/// on below the run. `x` keeps its two empty pages, isolated (sidelined).
#[test]
fn reclaim_does_not_retry_a_failed_depopulation() {
    let (mut a, mut b) = setup(Policy::new(PolicyKind::Linux61));
    let x = isolated_with_empty_2_3(&mut a, &mut b);
    let (log, r) = drive_with(&mut a, &mut b, |_, w| {
        !matches!(w, PageWork::Depopulate { .. })
    });
    assert_eq!(log, [depop(x, 2..4)]);
    assert_eq!((r.depopulated, r.populated, r.failures), (0, 0, 1));
    let c = a.chunk(x).unwrap();
    assert!(c.is_isolated());
    assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (4, 2));
    assert_eq!(a.nr_empty_pop_pages(), 5);
}

/// `pcpu`'s reclaim stops before the page that would take its reserve (which
/// counts isolated chunks) below the floor (`empty_pop_high`, no refault
/// reserve): the run of empty pages found so far counts against it, and
/// the page being looked at too, so the scan depopulates only the top of
/// the run that the reserve can spare, and the populate stage has nothing
/// to put back. `w` holds 3 empty pages (emptied while the reserve was
/// short, so not isolated); `x`, emptied after it, is isolated with empty
/// pages 1-3: 6 empty pages against a floor of 4, so 2 can go, pages 2-3
/// (the scan going backwards), and page 1 stays. A page after the run
/// checks the reserve for the whole run again; a run reaching page 0 has
/// none, so the second case, `x` with its object on page 4 and empty pages
/// 0-3 (7 empty pages: 3 can go), pins the check of the page being looked
/// at by itself. (Counting the run, or that page, once too few lets one
/// page more go, and the populate stage then populates a page elsewhere;
/// before this test only the slow churn of `reclaim_floor.rs` saw that.)
#[test]
fn pcpu_reclaim_spares_the_reserve_down_to_the_floor() {
    for object_on in [0, 4] {
        let (mut a, mut b) = setup(Policy::new(PolicyKind::Pcpu));
        assert_eq!(a.policy().empty_pop_high, 4);
        let w = chunk_with_objects(&mut a, &mut b, &[0, 4, 5, 6, 7]);
        a.alloc_at(&mut b, w, PAGE, 3 * PAGE, 4, AllocFlags::NORMAL)
            .unwrap();
        a.free(w, PAGE).unwrap();
        assert!(!a.chunk(w).unwrap().is_isolated());
        let (x, go) = if object_on == 0 {
            (emptied(&mut a, &mut b, 1..4), 2..4)
        } else {
            let x = chunk_with_objects(&mut a, &mut b, &[4]);
            a.alloc_at(&mut b, x, 0, 4 * PAGE, 4, AllocFlags::NORMAL)
                .unwrap();
            a.free(x, 0).unwrap();
            (x, 1..4)
        };
        assert!(a.chunk(x).unwrap().is_isolated());
        assert!(a.balance_pending());
        let (log, r) = drive(&mut a, &mut b);
        assert_eq!(log, [depop(x, go.clone()), flush(x, go.clone())]);
        assert_eq!((r.depopulated, r.populated, r.created), (go.len(), 0, 0));
        let c = a.chunk(x).unwrap();
        assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (2, 1));
        assert!(c.is_page_populated(go.start - 1) && !c.is_page_populated(go.start));
        assert_eq!(a.chunk(w).unwrap().nr_empty_pop_pages(), 3);
    }
}
