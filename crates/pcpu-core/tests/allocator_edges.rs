//! The allocator's own bookkeeping (`allocator.rs`, since split into
//! `allocator.rs`, `accounting.rs` and `alloc_path.rs`) pinned through the public
//! API: the figures an embedder reads (`Allocation::zero_range`,
//! `percpu_bytes`), request validation, the global counters kept beside
//! the chunks, and the slot walk's decisions. Written from mutation testing
//! of allocator.rs: each test asserts exact values mm/percpu.c (6.1) gives.

use pcpu_core::*;

const PAGE: usize = 4096;

/// `nr_units` units of `unit_pages` 4 KiB pages; the first chunk has an
/// 8 KiB dynamic area and nothing else.
fn simple(nr_units: usize, unit_pages: usize, policy: Policy) -> (Allocator, SimBackend) {
    let geo = Geometry::simple(nr_units, unit_pages).unwrap();
    (Allocator::new(geo, policy), SimBackend::default())
}

fn linux() -> Policy {
    Policy::new(PolicyKind::Linux61)
}

/// `pcpu_alloc` hands back `ptr` and the caller zeroes `size` bytes from
/// it on every unit (`memset(per_cpu_ptr(ptr, cpu), 0, size)`): the range
/// to zero is exactly `[offset, offset + size)`, with the rounded size.
#[test]
fn zero_range_is_offset_to_offset_plus_size() {
    let (mut a, mut b) = simple(1, 8, linux());
    let first = a.alloc(&mut b, 12, 4, AllocFlags::NORMAL).unwrap();
    let o = a.alloc(&mut b, 10, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((first.offset, o.offset, o.size), (0, 12, 12));
    assert_eq!(o.zero_range(), 12..24);
    assert_eq!(o.zero_range().len(), 12);
    a.check_invariants().unwrap();
}

/// The pages an allocation touches (those that must be populated before
/// its caller may use it) run from the page of its first byte through the
/// page of its last: one crossing a page boundary touches both pages, one
/// ending on a boundary not the next.
#[test]
fn pages_run_from_the_first_byte_to_the_last() {
    let (mut a, mut b) = simple(1, 8, linux());
    let mut place = |size| {
        let o = a.alloc(&mut b, size, 4, AllocFlags::NORMAL).unwrap();
        (o.offset, o.pages(PAGE))
    };
    assert_eq!(place(4000), (0, 0..1));
    assert_eq!(place(200), (4000, 0..2));
    assert_eq!(
        place(2 * PAGE - 4200),
        (4200, 1..2),
        "ends where page 2 starts"
    );
    a.check_invariants().unwrap();
}

/// `/proc/meminfo`'s `Percpu:` is `pcpu_nr_populated * pcpu_nr_units`
/// pages: with 3 units and the first chunk's 2 populated pages that is
/// 2 × 3 × 4096 bytes, and each page a new chunk populates adds 3 pages.
#[test]
fn percpu_bytes_is_populated_pages_times_units_times_page_size() {
    let (mut a, mut b) = simple(3, 8, linux());
    assert_eq!(a.nr_populated(), 2);
    assert_eq!(a.percpu_bytes(), (2 * 3 * PAGE) as u64);
    // Fill the first chunk; the next object needs a new chunk and populates
    // its first page.
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_ne!(o.chunk, a.first_chunk());
    assert_eq!(a.nr_populated(), 3);
    assert_eq!(a.percpu_bytes(), (3 * 3 * PAGE) as u64);
    a.check_invariants().unwrap();
}

/// One unit of 16 4 KiB pages; the first chunk has a `dyn_pages`-page
/// dynamic area and nothing else.
fn one_unit(dyn_pages: usize, policy: Policy) -> (Allocator, SimBackend) {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: dyn_pages * PAGE,
    };
    let geo = Geometry::new(PAGE, 1, 16 * PAGE, fc).unwrap();
    (Allocator::new(geo, policy), SimBackend::default())
}

/// Linux 6.1, 16-page units, a 6-page first chunk: fill the first chunk
/// and a dynamic chunk X with page-sized objects, free the first chunk
/// (6 empty pages, never reclaimed) and X's pages 8..16. X is isolated
/// (`pcpu_should_reclaim_chunk`: 6 other empty pages > HIGH, X has at
/// least 16 / 4 empty pages), the balance run depopulates its 8 empty
/// pages and sidelines it. Returns X.
fn sidelined_x(a: &mut Allocator, b: &mut SimBackend) -> ChunkId {
    let first = a.first_chunk();
    let mut objs = Vec::new();
    for _ in 0..6 + 16 {
        objs.push(a.alloc(b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
    }
    let x = objs[6].chunk;
    assert!(objs[..6].iter().all(|o| o.chunk == first));
    assert!(objs[6..].iter().all(|o| o.chunk == x));
    for o in objs[..6].iter().chain(&objs[6 + 8..]) {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(a.chunk(x).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 6);
    let r = a.balance(b);
    assert_eq!((r.depopulated, r.populated), (8, 0));
    let c = a.chunk(x).unwrap();
    assert!(c.is_isolated());
    assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (8, 0));
    a.check_invariants().unwrap();
    x
}

/// `pcpu_alloc` walks the sidelined slot after the active ones and calls
/// `pcpu_reintegrate_chunk` on the chunk it places in: a 7-page request
/// that the first chunk's 6 free pages cannot hold lands at page 8 of the
/// sidelined chunk, which is no longer isolated afterwards and is counted
/// in the global empty pages again.
#[test]
fn allocation_from_a_sidelined_chunk_reintegrates_it() {
    let (mut a, mut b) = one_unit(6, linux());
    let x = sidelined_x(&mut a, &mut b);
    let o = a.alloc(&mut b, 7 * PAGE, PAGE, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (x, 8 * PAGE));
    let c = a.chunk(x).unwrap();
    assert!(!c.is_isolated());
    // Pages 8..15 populated again, page 15 still unpopulated.
    assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (15, 0));
    assert_eq!(a.nr_empty_pop_pages(), 6);
    a.check_invariants().unwrap();
}

/// The two-phase protocol: a placement on a new chunk's unpopulated page
/// reports it (`next_unpopulated`), and once committed
/// (`pcpu_chunk_populated`) the page is counted and no longer reported.
#[test]
fn committed_pages_are_counted_and_not_reported_again() {
    let (mut a, mut b) = simple(1, 8, linux());
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let req = a.request(100, 4).unwrap();
    let e = a.alloc_area(req, AllocFlags::NORMAL).unwrap_err();
    assert!(matches!(e, AllocError::NeedsChunk), "{e}");
    let x = a.create_chunk(&mut b).unwrap();
    let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
    assert_eq!((area.chunk, area.offset, area.size), (x, 0, 100));
    assert_eq!(a.chunk(x).unwrap().nr_populated(), 0);
    let run = a.next_unpopulated(&area).unwrap();
    assert_eq!(run, 0..1);
    a.commit_populated(x, run).unwrap();
    assert_eq!(a.next_unpopulated(&area), None);
    assert_eq!(a.chunk(x).unwrap().nr_populated(), 1);
    assert_eq!(a.nr_populated(), 3);
    a.finish_alloc();
    a.check_invariants().unwrap();
}

/// The `pcpu` policy's refault distance (DESIGN §6, refault-aware
/// reserve): reclaim stamps the pages it depopulates with the reclaim
/// clock, and a stamped page populated again `d = clock - stamp + 1` pages
/// later raises the wanted reserve to `d` (if within the cap, 1/divisor of
/// the pages in use). Here reclaim takes pages 12..16 of X (stamps 1..=4,
/// clock 4) and stops at the floor (HIGH = 4, X's other 4 empty pages);
/// page 15, the last depopulated, refaults at distance 1, page 12 at 4.
#[test]
fn refault_distance_is_clock_minus_stamp_plus_one() {
    let mut p = Policy::new(PolicyKind::Pcpu);
    p.refault_reserve_divisor = 1;
    let (mut a, mut b) = one_unit(2, p);
    let mut objs = Vec::new();
    for _ in 0..2 + 16 {
        objs.push(a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
    }
    let x = objs[2].chunk;
    assert!(objs[2..].iter().all(|o| o.chunk == x));
    for o in &objs[2 + 8..] {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(a.chunk(x).unwrap().is_isolated());
    let r = a.balance(&mut b);
    assert_eq!((r.depopulated, r.populated), (4, 0));
    let c = a.chunk(x).unwrap();
    assert_eq!((c.nr_populated(), c.nr_empty_pop_pages()), (12, 4));
    assert!((12..16).all(|p| !c.is_page_populated(p)));
    assert_eq!(a.refault_reserve(), 0);
    a.check_invariants().unwrap();

    a.alloc_at(&mut b, x, 15 * PAGE, PAGE, PAGE, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.refault_reserve(), 1);
    a.alloc_at(&mut b, x, 12 * PAGE, PAGE, PAGE, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.refault_reserve(), 4);
    a.check_invariants().unwrap();
}

/// `pcpu_should_reclaim_chunk`: a chunk is isolated only when the system's
/// empty pages exceed `HIGH + chunk->nr_empty_pop_pages` (strictly), i.e.
/// when the other chunks hold more than HIGH (4) empty pages. X gets 4
/// empty pages (16 / 4, enough on its side): with exactly 4 empty pages in
/// the first chunk it stays put, with 5 it is isolated.
#[test]
fn reclaim_needs_more_than_high_empty_pages_elsewhere() {
    for (first_pages, isolated) in [(4, false), (5, true)] {
        let (mut a, mut b) = one_unit(first_pages, linux());
        let mut objs = Vec::new();
        for _ in 0..first_pages + 16 {
            objs.push(a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
        }
        let x = objs[first_pages].chunk;
        assert!(objs[first_pages..].iter().all(|o| o.chunk == x));
        for o in objs[..first_pages].iter().chain(&objs[first_pages + 12..]) {
            a.free(o.chunk, o.offset).unwrap();
        }
        let c = a.chunk(x).unwrap();
        assert_eq!(c.nr_empty_pop_pages(), 4);
        assert_eq!(
            c.is_isolated(),
            isolated,
            "first chunk: {first_pages} pages"
        );
        // An isolated chunk's empty pages leave the global count.
        let x_pages = if isolated { 0 } else { 4 };
        assert_eq!(a.nr_empty_pop_pages(), (first_pages + x_pages) as i32);
        a.check_invariants().unwrap();
    }
}

/// `free_percpu`: a free that leaves a chunk fully free schedules the
/// balance work only when another chunk is in the free slot already
/// (`list_for_each_entry(pos, free slot) if (pos != chunk)`): Y alone in
/// the free slot schedules nothing; X joining it does.
#[test]
fn fully_free_chunk_schedules_balance_only_beside_another_free_chunk() {
    let (mut a, mut b) = simple(1, 8, linux());
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let big = a.alloc(&mut b, 8 * PAGE, 4, AllocFlags::NORMAL).unwrap();
    let small = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    let (x, y) = (big.chunk, small.chunk);
    assert!(x != a.first_chunk() && y != x && y != a.first_chunk());
    assert!(a.balance_pending());
    a.balance(&mut b);
    assert!(!a.balance_pending());
    a.free(y, small.offset).unwrap();
    assert_eq!(a.chunk(y).unwrap().free_bytes(), 8 * PAGE);
    assert!(!a.balance_pending(), "Y is alone in the free slot");
    a.free(x, big.offset).unwrap();
    assert!(a.balance_pending(), "Y is in the free slot beside X");
    a.check_invariants().unwrap();
}

/// `alloc_at` (replay's kernel placement) checks the whole area: one free
/// first bit is not enough. With 8..12 taken, an 8-byte area at 4 is
/// refused as occupied (and nothing is placed), while one at 0 fits.
#[test]
fn alloc_at_refuses_an_area_whose_tail_is_taken() {
    let (mut a, mut b) = simple(1, 8, linux());
    let first = a.first_chunk();
    a.alloc_at(&mut b, first, 8, 4, 4, AllocFlags::NORMAL)
        .unwrap();
    let e = a
        .alloc_at(&mut b, first, 4, 8, 4, AllocFlags::NORMAL)
        .unwrap_err();
    assert_eq!(
        e,
        AllocError::Occupied {
            chunk: first,
            offset: 4,
            size: 8
        }
    );
    assert_eq!(a.chunk(first).unwrap().nr_alloc(), 1);
    assert_eq!(a.chunk(first).unwrap().free_bytes(), 8192 - 4);
    let o = a
        .alloc_at(&mut b, first, 0, 8, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!((o.chunk, o.offset, o.size), (first, 0, 8));
    a.check_invariants().unwrap();
}

/// `pcpu_alloc`'s walk: a chunk that fails the fit check is moved to slot 0
/// only from a slot below `PCPU_SLOT_FAIL_THRESHOLD` (3). The first chunk,
/// full but for a hole of `hole` bytes at 0, fails a `hole + 8`-byte
/// request, which goes to a new chunk X. A 40-byte hole (slot 3) stays in
/// its slot, so a request the hole fits takes it; a 20-byte hole (slot 2)
/// was moved to slot 0, which no walk visits: the request goes to X.
#[test]
fn failed_fit_moves_a_chunk_to_slot_0_only_below_slot_3() {
    for (hole, stays) in [(40, true), (20, false)] {
        let (mut a, mut b) = simple(1, 8, linux());
        let first = a.first_chunk();
        let h = a.alloc(&mut b, hole, 4, AllocFlags::NORMAL).unwrap();
        a.alloc(&mut b, 8192 - hole, 4, AllocFlags::NORMAL).unwrap();
        a.free(first, h.offset).unwrap();
        let big = a.alloc(&mut b, hole + 8, 4, AllocFlags::NORMAL).unwrap();
        let x = big.chunk;
        assert_ne!(x, first);
        let o = a.alloc(&mut b, hole, 4, AllocFlags::NORMAL).unwrap();
        let want = if stays { (first, 0) } else { (x, hole + 8) };
        assert_eq!((o.chunk, o.offset), want, "hole of {hole} bytes");
        a.check_invariants().unwrap();
    }
}

/// `probe` says where `alloc_area` would place a request, without placing
/// it. Under [`Fit::Next`] that is after the rover: three 4-byte objects,
/// the one at 0 freed, leave the rover at 12, so the probe (and then the
/// allocation) takes 12, not the hole at 0 first fit would take.
#[test]
fn probe_follows_the_next_fit_rover() {
    let mut p = linux();
    p.fit = Fit::Next;
    let (mut a, mut b) = simple(1, 8, p);
    let first = a.first_chunk();
    let objs: Vec<_> = (0..3)
        .map(|_| a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap())
        .collect();
    assert_eq!(objs.iter().map(|o| o.offset).collect::<Vec<_>>(), [0, 4, 8]);
    a.free(first, 0).unwrap();
    let req = a.request(4, 4).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((first, 12)));
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 12));
    // Atomic requests keep first fit: the hole at 0.
    assert_eq!(a.probe(req, AllocFlags::ATOMIC), Some((first, 0)));
    a.check_invariants().unwrap();
}

/// Chunks queued for reclaim (the to_depopulate slot, after the free slot)
/// are not on the kernel's walk: with X queued and the first chunk too
/// small, `probe` under Linux 6.1 says a new chunk is needed, as
/// `alloc_area` does. The `pcpu` policy takes a queued chunk back instead
/// (DESIGN §8): its probe names X's first free page, where the allocation
/// then lands.
#[test]
fn probe_takes_queued_chunks_back_only_under_pcpu() {
    // Linux 6.1: X queued with pages 8..16 free, first chunk 6 pages free.
    let (mut a, mut b) = one_unit(6, linux());
    let first = a.first_chunk();
    let mut objs = Vec::new();
    for _ in 0..6 + 16 {
        objs.push(a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
    }
    let x = objs[6].chunk;
    for o in objs[..6].iter().chain(&objs[6 + 8..]) {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(a.chunk(x).unwrap().is_isolated());
    let req = a.request(7 * PAGE, PAGE).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), None);
    let e = a.alloc_area(req, AllocFlags::NORMAL).unwrap_err();
    assert!(matches!(e, AllocError::NeedsChunk), "{e}");
    let small = a.request(PAGE, PAGE).unwrap();
    assert_eq!(a.probe(small, AllocFlags::NORMAL), Some((first, 0)));

    // pcpu: X queued with pages 8..16 free, the first chunk full.
    let (mut a, mut b) = one_unit(2, Policy::new(PolicyKind::Pcpu));
    let mut objs = Vec::new();
    for _ in 0..2 + 16 {
        objs.push(a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
    }
    let x = objs[2].chunk;
    for o in &objs[2 + 8..] {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(a.chunk(x).unwrap().is_isolated());
    let req = a.request(PAGE, PAGE).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((x, 8 * PAGE)));
    let o = a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (x, 8 * PAGE));
    assert!(!a.chunk(x).unwrap().is_isolated());
    a.check_invariants().unwrap();
}

/// [`Fit::Next`]: the rover is a hint, used only while its chunk is
/// reachable by allocations. The rover ends in X at page 8 (X's pages 0..8
/// hold page-sized objects); freeing X's pages 4..8 isolates X (the first
/// chunk's 6 empty pages are more than HIGH), so the next allocation does
/// not follow the rover into X's free page 8: the walk places it at the
/// start of the first chunk.
#[test]
fn next_fit_rover_in_an_isolated_chunk_is_ignored() {
    let mut p = linux();
    p.fit = Fit::Next;
    let (mut a, mut b) = one_unit(6, p);
    let first = a.first_chunk();
    let mut objs = Vec::new();
    for _ in 0..6 + 8 {
        objs.push(a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap());
    }
    let x = objs[6].chunk;
    assert_eq!((objs[13].chunk, objs[13].offset), (x, 7 * PAGE));
    for o in objs[..6].iter().chain(&objs[6 + 4..]) {
        a.free(o.chunk, o.offset).unwrap();
    }
    assert!(a.chunk(x).unwrap().is_isolated());
    let req = a.request(PAGE, PAGE).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((first, 0)));
    let o = a.alloc(&mut b, PAGE, PAGE, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 0));
    assert!(a.chunk(x).unwrap().is_isolated());
    a.check_invariants().unwrap();
}

/// `pcpu_chunk_relocate` → `__pcpu_chunk_move(chunk, nslot, oslot <
/// nslot)`: a chunk that moves up a slot goes to the front of the new list.
/// Y, created empty, heads the free slot; X, freed whole (slot 0 → free
/// slot), goes in front of it, so the next allocation lands in X.
#[test]
fn chunk_moving_up_a_slot_goes_to_the_front() {
    let (mut a, mut b) = simple(1, 8, linux());
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let big = a.alloc(&mut b, 8 * PAGE, 4, AllocFlags::NORMAL).unwrap();
    let x = big.chunk;
    let y = a.create_chunk(&mut b).unwrap();
    assert_ne!(x, y);
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (y, 0), "Y alone has room");
    a.free(y, 0).unwrap();
    // Y is back in the free slot; X moves there from slot 0.
    a.free(x, big.offset).unwrap();
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (x, 0));
    a.check_invariants().unwrap();
}

/// Every failed allocation is counted once in `nr_failed` (the `fail:`
/// label): two atomic requests that find no populated room, one reserved
/// request without a reserved chunk. Bad requests (size 0) are refused
/// before that and not counted.
#[test]
fn failed_allocations_are_counted_once_each() {
    let (mut a, mut b) = simple(1, 8, linux());
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(a.stats().nr_failed, 0);
    for n in 1..=2 {
        let e = a.alloc(&mut b, 4, 4, AllocFlags::ATOMIC).unwrap_err();
        assert!(matches!(e, AllocError::AtomicNoSpace), "{e}");
        assert_eq!(a.stats().nr_failed, n);
    }
    let e = a.alloc(&mut b, 4, 4, AllocFlags::RESERVED).unwrap_err();
    assert!(matches!(e, AllocError::NoReservedChunk), "{e}");
    assert_eq!(a.stats().nr_failed, 3);
    let e = a.alloc(&mut b, 0, 4, AllocFlags::NORMAL).unwrap_err();
    assert!(matches!(e, AllocError::InvalidSize { .. }), "{e}");
    assert_eq!(a.stats().nr_failed, 3);
    a.check_invariants().unwrap();
}

/// "failed to populate": `pcpu_alloc` frees the placed area again and the
/// allocation fails. The area is gone (the new chunk X is fully free and
/// holds no allocation) and the failure is counted once in `nr_failed`.
#[test]
fn population_failure_frees_the_area_and_counts_one_failure() {
    let geo = Geometry::simple(1, 8).unwrap();
    let mut a = Allocator::new(geo, linux());
    let mut b = FailingBackend::default();
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    b.fail_populate = 1;
    let e = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap_err();
    assert!(
        matches!(e, AllocError::Populate(BackendError::Injected)),
        "{e}"
    );
    assert_eq!(a.stats().nr_failed, 1);
    assert_eq!(a.nr_chunks(), 2);
    let x = a.chunk_ids().last().unwrap();
    let c = a.chunk(x).unwrap();
    assert_eq!(
        (c.nr_alloc(), c.free_bytes(), c.nr_populated()),
        (0, 8 * PAGE, 0)
    );
    // The next try populates and succeeds in the same place.
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (x, 0));
    assert_eq!(a.stats().nr_failed, 1);
    a.check_invariants().unwrap();
}

/// A chunk creation the backend refuses releases the id it reserved: the
/// allocation fails (`ChunkCreate`, counted once) and the next creation
/// gets the same id, 1 (ids are reused; the first chunk is 0).
#[test]
fn refused_chunk_creation_releases_its_id() {
    let geo = Geometry::simple(1, 8).unwrap();
    let mut a = Allocator::new(geo, linux());
    let mut b = FailingBackend::default();
    assert_eq!(a.first_chunk(), ChunkId(0));
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    b.fail_create = 1;
    let e = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap_err();
    assert!(
        matches!(e, AllocError::ChunkCreate(BackendError::Injected)),
        "{e}"
    );
    assert_eq!(a.stats().nr_failed, 1);
    assert_eq!(a.nr_chunks(), 1);
    let o = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (ChunkId(1), 0));
    assert_eq!(a.chunk_ids().collect::<Vec<_>>(), [ChunkId(0), ChunkId(1)]);
    a.check_invariants().unwrap();
}

const ALL_POLICIES: [PolicyKind; 5] = [
    PolicyKind::Linux511,
    PolicyKind::Linux514,
    PolicyKind::Linux61,
    PolicyKind::SeedRfc,
    PolicyKind::Pcpu,
];

/// `free_percpu`, every policy: a free that leaves its chunk partly used
/// and is no reclaim candidate schedules nothing, even with a fully free
/// chunk waiting in the free slot: the free-slot check (`pos != chunk`)
/// applies only to a chunk the free left fully free. Here the first chunk
/// (never reclaimed, never marked) keeps one of its two objects while Y
/// sits in the free slot.
#[test]
fn partial_free_beside_a_free_chunk_schedules_nothing() {
    for kind in ALL_POLICIES {
        let (mut a, mut b) = simple(1, 8, Policy::new(kind));
        let first = a.first_chunk();
        let o1 = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
        let o2 = a.alloc(&mut b, 4, 4, AllocFlags::NORMAL).unwrap();
        assert_eq!((o1.chunk, o2.chunk), (first, first));
        let y = a.create_chunk(&mut b).unwrap();
        a.balance(&mut b);
        assert!(!a.balance_pending(), "{kind:?}");
        assert_eq!(a.chunk(y).unwrap().free_bytes(), 8 * PAGE, "{kind:?}");
        a.free(first, o1.offset).unwrap();
        assert!(!a.balance_pending(), "{kind:?}: the first chunk holds o2");
        a.check_invariants().unwrap();
    }
}

/// `free_percpu`, every policy: a free that leaves a chunk fully free,
/// while it is no reclaim candidate, schedules the balance work when
/// another chunk waits in the free slot (`pcpu_balance_free` has a chunk
/// to free), and isolates nothing. X's one page of empty pages is below
/// every policy's reclaim threshold (16 / 4 pages); Y is fully free.
#[test]
fn fully_free_chunk_beside_a_free_chunk_schedules_balance_under_every_policy() {
    for kind in ALL_POLICIES {
        let (mut a, mut b) = one_unit(3, Policy::new(kind));
        let x = a.create_chunk(&mut b).unwrap();
        let y = a.create_chunk(&mut b).unwrap();
        let o = a.alloc_at(&mut b, x, 0, 4, 4, AllocFlags::NORMAL).unwrap();
        assert!(!a.balance_pending(), "{kind:?}");
        assert_eq!(a.chunk(y).unwrap().free_bytes(), 16 * PAGE, "{kind:?}");
        a.free(x, o.offset).unwrap();
        let c = a.chunk(x).unwrap();
        assert_eq!(c.nr_empty_pop_pages(), 1, "{kind:?}");
        assert!(!c.is_isolated(), "{kind:?}");
        assert!(a.balance_pending(), "{kind:?}: Y waits in the free slot");
        assert_eq!(a.nr_empty_pop_pages(), 4, "{kind:?}");
        a.check_invariants().unwrap();
    }
}

/// `free_percpu`, Linux 5.14 and 6.1: a free that leaves a chunk fully free
/// never isolates it (`if (!chunk->isolated && chunk->free_bytes ==
/// pcpu_unit_size) ... else if (pcpu_should_reclaim_chunk(chunk))`), even
/// when it would qualify for reclaim: it is `pcpu_balance_free`'s to free.
/// X's 4 empty pages (16 / 4) beside the first chunk's 6 (> HIGH + 4)
/// would make it a candidate. Alone in the free slot it schedules nothing.
/// 5.11 and the RFC never isolate on free; `pcpu` asks
/// `should_reclaim` first and queues it.
#[test]
fn fully_free_chunk_is_isolated_on_free_only_under_pcpu() {
    for kind in ALL_POLICIES {
        let (mut a, mut b) = one_unit(6, Policy::new(kind));
        let x = a.create_chunk(&mut b).unwrap();
        let o = a
            .alloc_at(&mut b, x, 0, 4 * PAGE, 4, AllocFlags::NORMAL)
            .unwrap();
        assert!(!a.balance_pending(), "{kind:?}");
        a.free(x, o.offset).unwrap();
        let pcpu = kind == PolicyKind::Pcpu;
        let c = a.chunk(x).unwrap();
        assert_eq!(c.nr_empty_pop_pages(), 4, "{kind:?}");
        assert_eq!(c.is_isolated(), pcpu, "{kind:?}");
        assert_eq!(a.balance_pending(), pcpu, "{kind:?}");
        // An isolated chunk's empty pages leave the global count.
        assert_eq!(
            a.nr_empty_pop_pages(),
            if pcpu { 6 } else { 10 },
            "{kind:?}"
        );
        a.check_invariants().unwrap();
    }
}

/// The RFC's free path marks a chunk for depopulation only when it has
/// *more* than `nr_pages / 4` empty populated pages
/// (`chunk->nr_empty_pop_pages > chunk->nr_pages / 4`, here `>= 16 / 4 +
/// 1`): X with 4 empty pages of 16 is not marked, with 5 it is. Chunk Z,
/// shaped as X, shares its slot so that a mark can happen; with
/// `rfc_marked_threshold = 0` one mark schedules the balance work.
#[test]
fn rfc_marks_a_chunk_with_more_than_a_quarter_of_its_pages_empty() {
    for n in [4, 5] {
        let mut p = Policy::new(PolicyKind::SeedRfc);
        p.rfc_marked_threshold = 0;
        let (mut a, mut b) = one_unit(3, p);
        let x = a.create_chunk(&mut b).unwrap();
        let z = a.create_chunk(&mut b).unwrap();
        let o = a
            .alloc_at(&mut b, x, 0, n * PAGE, 4, AllocFlags::NORMAL)
            .unwrap();
        for c in [x, z] {
            a.alloc_at(&mut b, c, n * PAGE, PAGE, 4, AllocFlags::NORMAL)
                .unwrap();
        }
        assert!(!a.balance_pending(), "{n}");
        a.free(x, o.offset).unwrap();
        assert_eq!(a.chunk(x).unwrap().nr_empty_pop_pages(), n);
        assert_eq!(a.balance_pending(), n == 5, "{n} empty pages of 16");
        a.check_invariants().unwrap();
    }
}

/// The RFC schedules the balance work once *more than*
/// `rfc_marked_threshold` chunks are marked (default 1: "2 or more"):
/// freeing 5 of X's 16 pages marks X and schedules nothing; the same free
/// in W marks a second chunk and schedules the work. X, W and Z share a
/// slot (each keeps one page at page 5), so every mark can happen.
#[test]
fn rfc_schedules_depopulation_from_the_second_marked_chunk() {
    let (mut a, mut b) = one_unit(3, Policy::new(PolicyKind::SeedRfc));
    assert_eq!(a.policy().rfc_marked_threshold, 1);
    let [x, w, z] = [(); 3].map(|_| a.create_chunk(&mut b).unwrap());
    for c in [x, w] {
        a.alloc_at(&mut b, c, 0, 5 * PAGE, 4, AllocFlags::NORMAL)
            .unwrap();
    }
    for c in [x, w, z] {
        a.alloc_at(&mut b, c, 5 * PAGE, PAGE, 4, AllocFlags::NORMAL)
            .unwrap();
    }
    assert!(!a.balance_pending());
    a.free(x, 0).unwrap();
    assert!(!a.balance_pending(), "one marked chunk");
    a.free(w, 0).unwrap();
    assert!(a.balance_pending(), "two marked chunks");
    a.check_invariants().unwrap();
}
