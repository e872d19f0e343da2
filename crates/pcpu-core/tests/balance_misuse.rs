//! Balance runs used against their protocol: a second run while one is open,
//! a run driven on another allocator, a run used after its end. Each is
//! refused or does nothing; the allocators' state stays consistent (before,
//! a second run or a foreign one wrapped the open-run count and double
//! counted empty pages).

use pcpu_core::*;

/// An allocator with work for the balance run: 20,000 8-byte objects
/// allocated, all but 100 freed (chunks to free and to reclaim).
fn with_work() -> (Allocator, SimBackend) {
    let mut a = Allocator::new(Geometry::simple(2, 16).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let objs: Vec<_> = (0..20_000)
        .map(|_| a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    for x in &objs[100..] {
        a.free(x.chunk, x.offset).unwrap();
    }
    a.check_invariants().unwrap();
    (a, b)
}

/// Perform `w` on `b` (a `SimBackend` never fails).
fn perform(b: &mut SimBackend, w: PageWork, unit_pages: usize) {
    match w {
        PageWork::Populate { chunk, pages } => b.populate(chunk, pages).unwrap(),
        PageWork::Depopulate { chunk, pages } => b.depopulate(chunk, pages).unwrap(),
        PageWork::FlushTlb { chunk, pages } => b.flush_tlb(chunk, pages),
        PageWork::CreateChunk { chunk } => b.create_chunk(chunk, unit_pages).unwrap(),
        PageWork::DestroyChunk { chunk } => b.destroy_chunk(chunk),
    }
}

/// Drive `run` on `a` to its end; the number of operations it did.
fn drive(run: &mut BalanceRun, a: &mut Allocator, b: &mut SimBackend) -> usize {
    let mut n = 0;
    while let Some(w) = run.next(a) {
        perform(b, w, a.geometry().unit_pages());
        run.done(a, true);
        n += 1;
    }
    n
}

fn state(a: &Allocator) -> (String, i32, usize, usize, bool) {
    (
        a.percpu_stats(),
        a.nr_empty_pop_pages(),
        a.nr_populated(),
        a.nr_chunks(),
        a.balance_pending(),
    )
}

#[test]
fn a_second_run_is_refused_while_one_is_open() {
    let (mut a, mut b) = with_work();
    let mut first = a.balance_start().unwrap();
    let w = first.next(&mut a).expect("work to do");
    let before = state(&a);
    assert_eq!(a.balance_start().unwrap_err(), BalanceError::RunOpen);
    assert_eq!(state(&a), before);
    // The whole inline run does nothing either, and says so.
    assert_eq!(a.balance(&mut b), BalanceReport::default());
    assert_eq!(state(&a), before);
    perform(&mut b, w, a.geometry().unit_pages());
    first.done(&mut a, true);
    assert!(drive(&mut first, &mut a, &mut b) > 0);
    a.check_invariants().unwrap();
    // Once the first is over, runs start again.
    let mut again = a.balance_start().unwrap();
    drive(&mut again, &mut a, &mut b);
    a.check_invariants().unwrap();
}

#[test]
fn a_run_does_nothing_to_another_allocator() {
    let (mut a, mut ba) = with_work();
    let (mut other, mut bo) = with_work();
    let mut run = other.balance_start().unwrap();
    let before = state(&a);
    assert_eq!(run.next(&mut a), None);
    run.done(&mut a, true);
    assert_eq!(state(&a), before);
    a.check_invariants().unwrap();
    // `a` runs its own balance work meanwhile, and the foreign run still
    // drives its own allocator afterwards.
    let mut own = a.balance_start().unwrap();
    assert_eq!(run.next(&mut a), None);
    drive(&mut own, &mut a, &mut ba);
    a.check_invariants().unwrap();
    assert!(drive(&mut run, &mut other, &mut bo) > 0);
    other.check_invariants().unwrap();
    // Aborting a run on another allocator leaves that allocator alone.
    let run = other.balance_start().unwrap();
    let before = state(&a);
    run.abort(&mut a);
    assert_eq!(state(&a), before);
    assert_eq!(
        other.check_invariants().unwrap_err().to_string(),
        "percpu invariant violated: a balance run was started and neither ended nor aborted"
    );
}

#[test]
fn a_finished_run_does_nothing() {
    let (mut a, mut b) = with_work();
    let mut run = a.balance_start().unwrap();
    let n = drive(&mut run, &mut a, &mut b);
    assert!(n > 0);
    let report = run.report();
    // A later run is open: the finished one must not touch it.
    let mut later = a.balance_start().unwrap();
    let before = state(&a);
    assert_eq!(run.next(&mut a), None);
    run.done(&mut a, true);
    assert_eq!(run.abort(&mut a), report);
    assert_eq!(state(&a), before);
    drive(&mut later, &mut a, &mut b);
    a.check_invariants().unwrap();
}

#[test]
fn an_aborted_run_lets_the_next_one_start() {
    let (mut a, mut b) = with_work();
    let mut run = a.balance_start().unwrap();
    let w = run.next(&mut a).expect("work to do");
    perform(&mut b, w, a.geometry().unit_pages());
    run.done(&mut a, true);
    run.abort(&mut a);
    a.check_invariants().unwrap();
    assert!(a.balance_pending());
    let mut next = a.balance_start().unwrap();
    assert!(drive(&mut next, &mut a, &mut b) > 0);
    a.check_invariants().unwrap();
}

#[test]
fn a_clones_run_does_nothing_to_the_original() {
    let (mut a, mut b) = with_work();
    let mut clone = a.clone();
    let mut bc = b.clone();
    // Both have started as many runs: the clone's run is still not the
    // original's.
    let mut theirs = clone.balance_start().unwrap();
    let mut ours = a.balance_start().unwrap();
    let before = state(&a);
    assert_eq!(theirs.next(&mut a), None);
    assert_eq!(state(&a), before);
    assert!(drive(&mut ours, &mut a, &mut b) > 0);
    a.check_invariants().unwrap();
    assert!(drive(&mut theirs, &mut clone, &mut bc) > 0);
    clone.check_invariants().unwrap();
    assert_eq!(state(&a), state(&clone), "the same work on each");
}

/// The chunk id of a run's `PageWork::CreateChunk` is the run's:
/// `finish_create_chunk` and `abort_create_chunk` refuse it, so an embedder
/// that reports it as its own creation changes nothing, and the run
/// installs or releases it. Before, either call took it: the run's `done`
/// then hit a debug assertion, and an id aborted and handed out again by
/// `begin_create_chunk` was released under its new owner by the run's
/// `abort`.
#[test]
fn a_runs_chunk_id_is_the_runs() {
    // Every page of both chunks used: the populate stage creates a chunk.
    let setup = || {
        let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
        let mut b = SimBackend::default();
        for _ in 0..10 {
            a.alloc(&mut b, 4096, 4096, AllocFlags::NORMAL).unwrap();
        }
        assert_eq!(a.nr_chunks(), 2);
        let mut run = a.balance_start().unwrap();
        let id = loop {
            match run.next(&mut a).expect("a chunk to create") {
                PageWork::CreateChunk { chunk } => break chunk,
                w => {
                    perform(&mut b, w, a.geometry().unit_pages());
                    run.done(&mut a, true);
                }
            }
        };
        (a, b, run, id)
    };
    for ok in [true, false] {
        let (mut a, mut b, mut run, id) = setup();
        let before = state(&a);
        assert_eq!(
            a.finish_create_chunk(id),
            Err(ProtocolError::NotReserved(id))
        );
        assert_eq!(
            a.abort_create_chunk(id),
            Err(ProtocolError::NotReserved(id))
        );
        assert_eq!(state(&a), before);
        if ok {
            b.create_chunk(id, a.geometry().unit_pages()).unwrap();
        }
        run.done(&mut a, ok);
        assert_eq!(a.chunk(id).is_some(), ok);
        drive(&mut run, &mut a, &mut b);
        a.check_invariants().unwrap();
        assert_eq!(a.nr_chunks(), 2 + usize::from(ok));
    }
    // Aborted, the run releases its id, and no one else's.
    let (mut a, mut b, run, id) = setup();
    run.abort(&mut a);
    let mine = a.begin_create_chunk();
    assert_eq!(mine, id, "the id is free again");
    b.create_chunk(mine, a.geometry().unit_pages()).unwrap();
    a.finish_create_chunk(mine).unwrap();
    a.check_invariants().unwrap();
}

/// An embedder that populates and commits pages a run has planned to
/// populate (breaking the protocol: a non-atomic allocation's population
/// waits for the run, as the kernel's does for `pcpu_alloc_mutex`) has them
/// counted once. Before, the run's `done` counted them a second time in
/// release builds: `nr_populated` above the pages in the bitmaps.
#[test]
fn pages_committed_under_a_runs_populate_count_once() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    for _ in 0..10 {
        a.alloc(&mut b, 4096, 4096, AllocFlags::NORMAL).unwrap();
    }
    let mut run = a.balance_start().unwrap();
    let (chunk, pages) = loop {
        match run.next(&mut a).expect("pages to populate") {
            PageWork::Populate { chunk, pages } => break (chunk, pages),
            w => {
                perform(&mut b, w, a.geometry().unit_pages());
                run.done(&mut a, true);
            }
        }
    };
    // Place pages until one lies on the planned range, and populate the
    // area as a two-phase allocation does.
    let req = a.request(4096, 4096).unwrap();
    let mut overlapped = false;
    for _ in 0..64 {
        let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
        while let Some(r) = a.next_unpopulated(&area) {
            overlapped |= area.chunk == chunk && r.start < pages.end && pages.start < r.end;
            b.populate(area.chunk, r.clone()).unwrap();
            a.commit_populated(area.chunk, r).unwrap();
        }
        if overlapped {
            break;
        }
    }
    assert!(overlapped, "an area on the run's planned pages");
    b.populate(chunk, pages.clone()).unwrap();
    run.done(&mut a, true);
    // (`check_invariants` refuses to look inside an open run.)
    drive(&mut run, &mut a, &mut b);
    a.check_invariants().unwrap();
}
