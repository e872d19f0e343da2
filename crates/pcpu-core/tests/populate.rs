//! `Allocator::populate_pages`: populating a chunk's pages outside any
//! allocation, as the balance work's populate stage does (replay uses it to
//! restore the empty pages a running kernel had before tracing).

use core::ops::Range;

use pcpu_core::*;

fn linux() -> (Allocator, SimBackend) {
    let geo = Geometry::simple(2, 16).unwrap();
    (
        Allocator::new(geo, Policy::new(PolicyKind::Linux61)),
        SimBackend::default(),
    )
}

/// A backend whose populate fails from its `fail_at`-th call on.
#[derive(Default)]
struct Failing {
    sim: SimBackend,
    calls: usize,
    fail_at: usize,
}

impl Backend for Failing {
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError> {
        self.sim.create_chunk(id, nr_pages)
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        self.sim.destroy_chunk(id);
    }
    fn populate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        self.calls += 1;
        if self.calls >= self.fail_at {
            return Err(BackendError::OutOfMemory);
        }
        self.sim.populate(id, pages)
    }
    fn depopulate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        self.sim.depopulate(id, pages)
    }
}

#[test]
fn populates_only_what_is_unpopulated_and_allocates_nothing() {
    let (mut a, mut b) = linux();
    let id = a.create_chunk(&mut b).unwrap();
    let (bytes, allocs, empty) = (a.percpu_bytes(), a.stats().nr_alloc, a.nr_empty_pop_pages());
    assert_eq!(a.populate_pages(&mut b, id, 2..5), Ok(3));
    assert_eq!(
        a.populate_pages(&mut b, id, 0..8),
        Ok(5),
        "2..5 already were"
    );
    assert_eq!(a.populate_pages(&mut b, id, 3..3), Ok(0));
    let c = a.chunk(id).unwrap();
    assert_eq!(
        (c.nr_populated(), c.nr_empty_pop_pages(), c.nr_alloc()),
        (8, 8, 0)
    );
    assert!((0..16).all(|p| c.is_page_populated(p) == (p < 8)));
    // Two units of 4 KiB pages each; the global empty count follows.
    assert_eq!(a.percpu_bytes(), bytes + 8 * 2 * 4096);
    assert_eq!(a.nr_empty_pop_pages(), empty + 8);
    assert_eq!(b.populated_pages, 8);
    assert_eq!(a.stats().nr_alloc, allocs, "no allocation counted");
    assert!(!a.balance_pending(), "no work scheduled");
    a.check_invariants().unwrap();
    // An allocation there needs no page populated.
    let before = b.populated_pages;
    a.alloc_at(&mut b, id, 4096, 64, 8, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(b.populated_pages, before);
    a.check_invariants().unwrap();
}

#[test]
fn refusals_change_nothing() {
    let (mut a, mut b) = linux();
    let id = a.create_chunk(&mut b).unwrap();
    let snapshot = (a.percpu_bytes(), a.nr_empty_pop_pages(), b.populated_pages);
    let same = |a: &Allocator, b: &SimBackend| {
        (a.percpu_bytes(), a.nr_empty_pop_pages(), b.populated_pages) == snapshot
    };
    assert_eq!(
        a.populate_pages(&mut b, ChunkId(99), 0..1),
        Err(PopulateError::UnknownChunk(ChunkId(99)))
    );
    let e = a.populate_pages(&mut b, id, 15..17).unwrap_err();
    assert_eq!(
        e,
        PopulateError::OutOfRange {
            chunk: id,
            pages: 15..17,
            nr_pages: 16
        }
    );
    assert!(e.to_string().contains("not inside chunk"), "{e}");
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..2;
    assert!(matches!(
        a.populate_pages(&mut b, id, backwards),
        Err(PopulateError::OutOfRange { .. })
    ));
    let run = a.balance_start().unwrap();
    assert_eq!(
        a.populate_pages(&mut b, id, 0..4),
        Err(PopulateError::RunOpen)
    );
    run.abort(&mut a);
    assert!(same(&a, &b));
    a.check_invariants().unwrap();
}

/// A backend failure stops at the failed run; the runs before it stay
/// populated and counted.
#[test]
fn a_backend_failure_keeps_what_was_populated() {
    let (mut a, mut sim) = linux();
    let mut b = Failing {
        fail_at: 2,
        ..Failing::default()
    };
    let id = a.create_chunk(&mut sim).unwrap();
    // Page 1 populated: 0..4 is two runs, 0..1 and 2..4.
    a.populate_pages(&mut sim, id, 1..2).unwrap();
    let e = a.populate_pages(&mut b, id, 0..4).unwrap_err();
    assert_eq!(e, PopulateError::Backend(BackendError::OutOfMemory));
    let c = a.chunk(id).unwrap();
    assert_eq!(c.nr_populated(), 2);
    assert!(c.is_page_populated(0) && !c.is_page_populated(2));
    a.check_invariants().unwrap();
}

/// `forget_pending_balance`: the work a setup's allocations scheduled is
/// forgotten, and nothing else changes; the next trigger schedules it
/// again.
#[test]
fn forgetting_the_pending_balance_changes_nothing_else() {
    let (mut a, mut b) = linux();
    // With no empty page left, an allocation schedules the work.
    let x = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
    assert!(a.balance_pending());
    let (bytes, allocs, empty, chunks) = (
        a.percpu_bytes(),
        a.stats().nr_alloc,
        a.nr_empty_pop_pages(),
        a.nr_chunks(),
    );
    a.forget_pending_balance();
    assert!(!a.balance_pending());
    assert_eq!(
        (
            a.percpu_bytes(),
            a.stats().nr_alloc,
            a.nr_empty_pop_pages(),
            a.nr_chunks()
        ),
        (bytes, allocs, empty, chunks)
    );
    a.check_invariants().unwrap();
    // The next allocation leaving no empty page schedules it again.
    let y = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
    assert!(a.balance_pending());
    a.free(x.chunk, x.offset).unwrap();
    a.free(y.chunk, y.offset).unwrap();
    a.check_invariants().unwrap();
}
