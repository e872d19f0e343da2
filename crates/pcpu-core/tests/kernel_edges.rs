//! The kernel's behaviour (6.1-era mm/percpu.c, mm/percpu-stats.c) on paths
//! the two real traces do not exercise: the stats walk's bound, a free while
//! placed pages wait for population, an atomic failure while the balance
//! work creates a chunk. Each test asserts what the kernel does.

use pcpu_core::*;

fn geo_1x8() -> Geometry {
    // 4 KiB pages, one unit of 8 pages (32 KiB); first chunk: 8 KiB dynamic.
    Geometry::simple(1, 8).unwrap()
}

/// One unit of `unit_pages` 4 KiB pages, whose first chunk has a
/// `dyn_size`-byte dynamic area and nothing else.
fn one_unit(dyn_size: usize, unit_pages: usize, policy: Policy) -> (Allocator, SimBackend) {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size,
    };
    let geo = Geometry::new(4096, 1, unit_pages * 4096, fc).unwrap();
    (Allocator::new(geo, policy), SimBackend::default())
}

/// `chunk_map_stats` (percpu-stats.c) bounds the walk by `last_alloc`:
/// `end = find_next_bit(chunk->bound_map, last_alloc, start + 1)`, where
/// `last_alloc` is one past the last set bit below the chunk's last managed
/// bit (`find_last_bit(alloc_map, map_bits - end_offset/4 - 1)`). An
/// allocation that ends at the end of the managed region is therefore
/// reported one bit (4 bytes) short. A chunk filled by one 32 KiB object:
/// the kernel prints cur_min/med/max_alloc = 32764.
#[test]
fn stats_allocation_ending_at_chunk_end_is_reported_4_bytes_short() {
    let mut a = Allocator::new(geo_1x8(), Policy::new(PolicyKind::Linux61));
    let mut b = SimBackend::default();
    let o = a.alloc(&mut b, 32768, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(o.offset, 0);
    let s = chunk_stats(a.chunk(o.chunk).unwrap());
    assert_eq!(
        (s.cur_min_alloc, s.cur_med_alloc, s.cur_max_alloc),
        (32764, 32764, 32764),
        "kernel: the walk stops at last_alloc = map_bits - 1"
    );
}

/// Same bound, with many small objects: a dynamic chunk filled with 8-byte
/// objects (first fit) ends with one whose last bit is the chunk's last bit.
/// The kernel's sorted sizes start with a 4: cur_min_alloc = 4.
#[test]
fn stats_full_chunk_of_8_byte_objects_reports_min_4() {
    let mut a = Allocator::new(geo_1x8(), Policy::new(PolicyKind::Linux61));
    let mut b = SimBackend::default();
    // Fill the first chunk (8 KiB) and one dynamic chunk (32 KiB).
    let mut last = None;
    for _ in 0..(8192 + 32768) / 8 {
        last = Some(a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.offset, 32768 - 8);
    let s = chunk_stats(a.chunk(last.chunk).unwrap());
    assert_eq!(s.cur_min_alloc, 4, "kernel: the last object counts 4 bytes");
    assert_eq!(s.cur_max_alloc, 8);
}

/// `chunk_map_stats`: when no bit below the last managed bit is set,
/// `find_last_bit` returns its size argument, and `test_bit` of that bit
/// decides; a 4-byte object at the chunk's last bit makes
/// `last_alloc = map_bits`, so the kernel reports the free run before it as
/// a fragment and the object itself (sum_frag = max_frag = 32764, cur_* = 4).
#[test]
fn stats_lone_object_on_last_bit_is_counted() {
    let mut a = Allocator::new(geo_1x8(), Policy::new(PolicyKind::Linux61));
    let mut b = SimBackend::default();
    let c = a.create_chunk(&mut b).unwrap();
    a.alloc_at(&mut b, c, 32764, 4, 4, AllocFlags::NORMAL)
        .unwrap();
    a.check_invariants().unwrap();
    let s = chunk_stats(a.chunk(c).unwrap());
    assert_eq!(
        (s.sum_frag, s.max_frag, s.cur_min_alloc, s.cur_max_alloc),
        (32764, 32764, 4, 4)
    );
}

/// `pcpu_should_reclaim_chunk` (percpu-vm.c) compares the chunk's
/// `nr_empty_pop_pages` as an `int`: `chunk->nr_empty_pop_pages >=
/// chunk->nr_pages / 4`. Between placing a non-atomic area on unpopulated
/// empty pages and populating them, that count is negative
/// (`pcpu_block_update_hint_alloc` already took those blocks off); a free
/// into the chunk in that window (free_percpu takes only pcpu_lock, so it
/// can run then) does not isolate it in the kernel (a cast to `usize` made
/// -2 pass the ¼ test).
/// One unit of 16 pages; the first chunk's 10 dynamic pages hold objects
/// at the start of pages 1, 3, 5, 7 and 9: five empty pages, no free run
/// of 8 KiB.
fn window_setup(policy: Policy) -> (Allocator, SimBackend) {
    let (mut a, mut b) = one_unit(10 * 4096, 16, policy);
    let first = a.first_chunk();
    for p in [1, 3, 5, 7, 9] {
        a.alloc_at(&mut b, first, p * 4096, 4, 4, AllocFlags::NORMAL)
            .unwrap();
    }
    assert_eq!(a.nr_empty_pop_pages(), 5);
    (a, b)
}

/// Step 1 of a two-phase allocation of 8 KiB, page aligned: it lands on
/// pages 1-2 of `c`, both unpopulated, and the population window opens
/// (the chunk's empty-page count goes negative until they are populated).
fn place_on_unpopulated_pages(a: &mut Allocator, c: ChunkId) {
    let req = a.request(8192, 4096).unwrap();
    let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
    assert_eq!((area.chunk, area.offset), (c, 4096));
    assert_eq!(a.next_unpopulated(&area), Some(1..3));
}

/// A new dynamic chunk with two small objects on page 0.
fn two_small_objects(a: &mut Allocator, b: &mut SimBackend) -> ChunkId {
    let c = a.create_chunk(b).unwrap();
    a.alloc_at(b, c, 0, 4, 4, AllocFlags::NORMAL).unwrap();
    a.alloc_at(b, c, 8, 4, 4, AllocFlags::NORMAL).unwrap();
    c
}

#[test]
fn free_during_population_window_does_not_isolate() {
    let (mut a, mut b) = window_setup(Policy::new(PolicyKind::Linux61));
    let c = two_small_objects(&mut a, &mut b);
    a.check_invariants().unwrap();
    place_on_unpopulated_pages(&mut a, c);
    // The window: a free into c (page 0 keeps an object).
    a.free(c, 8).unwrap();
    assert!(
        !a.chunk(c).unwrap().is_isolated(),
        "kernel: -2 >= 16 / 4 is false, the chunk is not isolated"
    );
    assert!(!a.balance_pending(), "kernel: need_balance stays false");
}

/// `pcpu_balance_populated`: after creating a chunk it does `goto retry_pop`,
/// which re-reads `pcpu_atomic_alloc_failed` first ("if atomic allocation
/// failed previously, always populate the maximum amount") and clears it. An
/// atomic allocation may fail while the work creates the chunk
/// (`pcpu_create_chunk` runs with pcpu_lock dropped and atomic allocations do
/// not take pcpu_alloc_mutex): the kernel then populates HIGH = 4 pages, not
/// the 2 the reserve lacks.
#[test]
fn retry_after_chunk_creation_honours_atomic_failure() {
    let mut a = Allocator::new(geo_1x8(), Policy::new(PolicyKind::Linux61));
    let mut b = SimBackend::default();
    assert_eq!(a.nr_empty_pop_pages(), 2);
    let mut run = a.balance_start().unwrap();
    let mut populated = 0;
    let mut failed_once = false;
    while let Some(w) = run.next(&mut a) {
        let ok = match &w {
            PageWork::CreateChunk { chunk } => {
                if !failed_once {
                    failed_once = true;
                    // While the chunk is being created: an atomic 16 KiB
                    // request finds no populated room and fails.
                    let e = a.alloc(&mut b, 16384, 4, AllocFlags::ATOMIC);
                    assert!(e.is_err());
                }
                b.create_chunk(*chunk, 8).is_ok()
            }
            PageWork::Populate { chunk, pages } => {
                populated += pages.len();
                b.populate(*chunk, pages.clone()).is_ok()
            }
            PageWork::Depopulate { chunk, pages } => b.depopulate(*chunk, pages.clone()).is_ok(),
            PageWork::FlushTlb { .. } => true,
            PageWork::DestroyChunk { chunk } => {
                b.destroy_chunk(*chunk);
                true
            }
        };
        run.done(&mut a, ok);
    }
    assert!(failed_once);
    a.check_invariants().unwrap();
    assert_eq!(
        populated, 4,
        "kernel: retry_pop sees pcpu_atomic_alloc_failed and populates HIGH"
    );
}

// ---- Neighbouring paths ----

/// `pcpu_alloc` fail path (atomic: `pcpu_atomic_alloc_failed = true`, work
/// scheduled) and `pcpu_balance_populated`: `nr_to_pop = HIGH` although the
/// global count is already above HIGH; no chunk has unpopulated pages, so a
/// chunk is created; `retry_pop` then computes clamp(HIGH - 5) = 0.
#[test]
fn matching_atomic_failure_boost_creates_a_chunk_and_populates_nothing() {
    let (mut a, mut b) = one_unit(5 * 4096, 16, Policy::new(PolicyKind::Linux61));
    assert!(a.alloc(&mut b, 24576, 4, AllocFlags::ATOMIC).is_err());
    assert!(a.balance_pending());
    let r = a.balance(&mut b);
    assert_eq!((r.created, r.populated), (1, 0));
    a.check_invariants().unwrap();
}

/// `pcpu_reclaim_populated`: a queued chunk is reintegrated, nothing
/// depopulated, when `pcpu_nr_empty_pop_pages < HIGH` at its first page.
#[test]
fn matching_reclaim_reintegrates_below_high() {
    let (mut a, mut b) = one_unit(5 * 4096, 8, Policy::new(PolicyKind::Linux61));
    let c = a.create_chunk(&mut b).unwrap();
    for p in 0..4 {
        a.alloc_at(&mut b, c, p * 4096, 4096, 4, AllocFlags::NORMAL)
            .unwrap();
    }
    a.free(c, 3 * 4096).unwrap();
    assert!(!a.chunk(c).unwrap().is_isolated());
    a.free(c, 2 * 4096).unwrap();
    assert!(a.chunk(c).unwrap().is_isolated());
    assert_eq!(a.nr_empty_pop_pages(), 5);
    let f = a.first_chunk();
    a.alloc_at(&mut b, f, 0, 4096, 4, AllocFlags::NORMAL)
        .unwrap();
    a.alloc_at(&mut b, f, 4096, 4096, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.nr_empty_pop_pages(), 3);
    let r = a.balance(&mut b);
    assert_eq!(r.depopulated, 0);
    assert_eq!(r.populated, 0);
    assert!(!a.chunk(c).unwrap().is_isolated());
    assert_eq!(a.chunk(c).unwrap().nr_populated(), 4);
    assert_eq!(a.nr_empty_pop_pages(), 5);
    a.check_invariants().unwrap();
}

/// The stats walk's bound leaves out the hidden end of a chunk (`end_offset`,
/// the first chunk's room after its dynamic area): the last bit searched is
/// the managed region's last, so a first chunk filled with 8-byte objects
/// reports its last one 4 bytes short, as a dynamic chunk does.
#[test]
fn stats_bound_leaves_the_hidden_end_out() {
    let (mut a, mut b) = one_unit(8000, 8, Policy::new(PolicyKind::Linux61));
    let first = a.first_chunk();
    let c = a.chunk(first).unwrap();
    let (lo, hi) = (c.start_offset(), c.nr_pages() * 4096 - c.end_offset());
    assert!(c.end_offset() > 0, "a hidden end");
    for off in (lo..hi).step_by(8) {
        a.alloc_at(&mut b, first, off, 8, 8, AllocFlags::NORMAL)
            .unwrap();
    }
    a.check_invariants().unwrap();
    let s = chunk_stats(a.chunk(first).unwrap());
    assert_eq!((s.cur_min_alloc, s.cur_max_alloc), (4, 8), "{s:?}");
}

/// The RFC's free path compares the chunk's empty pages as an `int` too
/// (`chunk->nr_empty_pop_pages > chunk->nr_pages / 4` in the seed patch): a
/// free while placed pages wait for population (count -2) marks nothing.
/// Chunk `d`, in the same slot, is there so that a mark could happen.
#[test]
fn rfc_free_during_population_window_marks_nothing() {
    let mut p = Policy::new(PolicyKind::SeedRfc);
    p.rfc_marked_threshold = 0;
    let (mut a, mut b) = window_setup(p);
    let c = two_small_objects(&mut a, &mut b);
    let d = two_small_objects(&mut a, &mut b);
    // d as c will be once the area is placed: the same slot.
    a.alloc_at(&mut b, d, 4096, 8192, 4096, AllocFlags::NORMAL)
        .unwrap();
    a.check_invariants().unwrap();
    assert!(!a.balance_pending());
    place_on_unpopulated_pages(&mut a, c);
    a.free(c, 8).unwrap();
    assert!(
        !a.balance_pending(),
        "the RFC: -2 > 16 / 4 is false, the chunk is not marked"
    );
}

/// With a static and a reserved area, the first and reserved chunks'
/// offsets count from the page-aligned start of their region:
/// `unit_offset` puts every allocation past the areas before it in the
/// unit, and no two live allocations overlap there. (A review read the
/// offsets as unit offsets, which put both inside the static area.)
#[test]
fn unit_offsets_of_the_first_and_reserved_chunks_skip_the_static_area() {
    let fc = FirstChunk {
        static_size: 5000,
        reserved_size: 2048,
        dyn_size: 6000,
    };
    let g = Geometry::new(4096, 2, 4096 * 8, fc).unwrap();
    let mut a = Allocator::new(g, Policy::default());
    let mut b = SimBackend::default();
    let reserved = AllocFlags {
        reserved: true,
        ..AllocFlags::NORMAL
    };
    let r = a.alloc(&mut b, 8, 8, reserved).unwrap();
    let n = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    assert_eq!(
        (r.chunk, n.chunk),
        (a.reserved_chunk().unwrap(), a.first_chunk())
    );
    assert_eq!((a.chunk_base(r.chunk), a.chunk_base(n.chunk)), (4096, 4096));
    let (ru, nu) = (a.unit_offset(&r), a.unit_offset(&n));
    assert!((5000..5000 + 2048).contains(&ru), "{r:?}: {ru}");
    assert!((7048..7048 + 6000).contains(&nu), "{n:?}: {nu}");
    // A chunk the backend creates counts from its unit's start.
    let big = a.alloc(&mut b, 16384, 8, AllocFlags::NORMAL).unwrap();
    assert_ne!(big.chunk, a.first_chunk());
    assert_eq!(a.unit_offset(&big), big.offset);
    a.check_invariants().unwrap();
}
