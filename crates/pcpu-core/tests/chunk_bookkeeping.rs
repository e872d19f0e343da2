//! Chunk bookkeeping pinned through the public API (`struct pcpu_chunk` as
//! mm/percpu.c, 6.1, keeps it): the first chunk's hidden head and tail
//! (`pcpu_alloc_first_chunk`), the per-chunk accessors, and the chunk-wide
//! contig hint rebuilt from the block hints (`pcpu_chunk_refresh_hint`,
//! `pcpu_next_md_free_region`). Written from mutation testing of chunk.rs:
//! each test asserts exact values the kernel's bookkeeping gives.

use pcpu_core::*;

const PAGE: usize = 4096;
const BB: usize = PAGE / MIN_ALLOC_SIZE;

/// 4 KiB pages, 2 units of 16 pages; `< static 4000 | reserved 8192 |
/// dynamic 12288 >`: both regions start 4000 bytes into a page and end 96
/// bytes before a page boundary.
fn offset_layout() -> Allocator {
    let fc = FirstChunk {
        static_size: 4000,
        reserved_size: 8192,
        dyn_size: 12288,
    };
    let geo = Geometry::new(PAGE, 2, 16 * PAGE, fc).unwrap();
    Allocator::new(geo, Policy::new(PolicyKind::Linux61))
}

/// One unit of `unit_pages` 4 KiB pages; the first chunk has an 8 KiB
/// dynamic area and nothing else.
fn plain(unit_pages: usize) -> (Allocator, SimBackend) {
    let geo = Geometry::simple(1, unit_pages).unwrap();
    (
        Allocator::new(geo, Policy::new(PolicyKind::Linux61)),
        SimBackend::default(),
    )
}

/// `pcpu_alloc_first_chunk`: the region is rounded out to whole pages, the
/// head (`start_offset`) and tail (`end_offset`) are hidden as allocated
/// bits, every page is populated, and the pages touched by the hidden parts
/// are not empty. The chunk hint starts at the first managed bit and spans
/// the whole managed region.
#[test]
fn first_chunk_regions_hide_head_and_tail() {
    let a = offset_layout();
    let r = a.chunk(a.reserved_chunk().unwrap()).unwrap();
    assert_eq!(r.kind(), ChunkKind::Reserved);
    assert_eq!(r.serial(), 0);
    assert_eq!((r.nr_pages(), r.nr_populated()), (3, 3));
    assert_eq!((r.start_offset(), r.end_offset()), (4000, 96));
    assert_eq!(r.free_bytes(), 8192);
    // Page 0 holds the hidden head, page 2 the hidden tail.
    assert_eq!(r.nr_empty_pop_pages(), 1);
    assert_eq!(
        (0..3).map(|p| r.is_page_used(p)).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(
        (0..3).map(|p| r.is_page_clear(p)).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert!((0..3).all(|p| r.is_page_populated(p)));
    let md = r.chunk_md();
    assert_eq!(
        (md.first_free, md.contig_hint_start, md.contig_hint),
        (1000, 1000, 8192 / 4)
    );
    // 8192 free bytes, 4096 of them on the empty page: one page's worth of
    // room on the two used pages (96 + 4000 bytes).
    assert_eq!(r.room_on_used_pages(), 1);

    let f = a.chunk(a.first_chunk()).unwrap();
    assert_eq!(f.kind(), ChunkKind::First);
    assert_eq!(f.serial(), 0);
    assert_eq!((f.nr_pages(), f.nr_populated()), (4, 4));
    assert_eq!((f.start_offset(), f.end_offset()), (4000, 96));
    assert_eq!(f.free_bytes(), 12288);
    assert_eq!(f.nr_empty_pop_pages(), 2);
    assert_eq!(a.nr_empty_pop_pages(), 2);
    assert_eq!(
        (0..4).map(|p| f.is_page_clear(p)).collect::<Vec<_>>(),
        [false, true, true, false]
    );
    let md = f.chunk_md();
    assert_eq!(
        (md.first_free, md.contig_hint_start, md.contig_hint),
        (1000, 1000, 12288 / 4)
    );
    assert_eq!(f.room_on_used_pages(), 1);
    a.check_invariants().unwrap();
}

/// The managed region of an offset first chunk is exactly
/// `[start_offset, nr_pages * PAGE - end_offset)`: a placement at its first
/// and last 4 bytes succeeds, one 4 bytes outside on either side is refused.
/// The tail's boundary bit lets the last object be freed with its size.
#[test]
fn offset_first_chunk_managed_region_bounds() {
    let mut a = offset_layout();
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let hi = 4 * PAGE - 96;
    for off in [4000 - 4, hi] {
        let e = a
            .alloc_at(&mut b, first, off, 4, 4, AllocFlags::NORMAL)
            .unwrap_err();
        assert!(matches!(e, AllocError::Misplaced { .. }), "{off}: {e}");
    }
    let hint = |a: &Allocator| {
        let md = a.chunk(first).unwrap().chunk_md();
        (md.first_free, md.contig_hint_start, md.contig_hint)
    };
    let lo = a
        .alloc_at(&mut b, first, 4000, 4, 4, AllocFlags::NORMAL)
        .unwrap();
    // The refresh stitches block 0's right_free (23 bits), blocks 1 and 2
    // and block 3's left_free (1000 bits, up to the hidden tail).
    assert_eq!(hint(&a), (1001, 1001, 23 + 2 * BB as i32 + 1000));
    let top = a
        .alloc_at(&mut b, first, hi - 8, 8, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(hint(&a), (1001, 1001, 23 + 2 * BB as i32 + 998));
    a.check_invariants().unwrap();
    let c = a.chunk(first).unwrap();
    assert_eq!(c.nr_alloc(), 2);
    assert_eq!(c.free_bytes(), 12288 - 12);
    assert_eq!(a.free(top.chunk, top.offset).unwrap(), 8);
    assert_eq!(a.free(lo.chunk, lo.offset).unwrap(), 4);
    a.check_invariants().unwrap();
    let c = a.chunk(first).unwrap();
    assert_eq!((c.nr_alloc(), c.free_bytes()), (0, 12288));
    // Both frees stay inside one block and are smaller than a page: the
    // kernel does not rebuild the chunk hint (block 3's free is the "W1"
    // case, block 0's only records a scan hint), so it keeps under-estimating.
    let md = c.chunk_md();
    assert_eq!(
        (md.first_free, md.contig_hint_start, md.contig_hint),
        (1000, 1001, 23 + 2 * BB as i32 + 998)
    );
    assert_eq!((md.scan_hint_start, md.scan_hint), (1000, 24));
}

/// Chunks created on demand are numbered in creation order from 1 (the
/// first and reserved chunks are 0), start fully free and unpopulated, and
/// have no hidden head or tail.
#[test]
fn dynamic_chunks_accessors() {
    let (mut a, mut b) = plain(8);
    let c1 = a.create_chunk(&mut b).unwrap();
    let c2 = a.create_chunk(&mut b).unwrap();
    let c3 = a.create_chunk(&mut b).unwrap();
    let serials: Vec<u64> = [c1, c2, c3]
        .iter()
        .map(|&id| a.chunk(id).unwrap().serial())
        .collect();
    assert_eq!(serials, [1, 2, 3]);
    let c = a.chunk(c2).unwrap();
    assert_eq!(c.kind(), ChunkKind::Dynamic);
    assert_eq!((c.nr_pages(), c.nr_populated()), (8, 0));
    assert_eq!(c.nr_empty_pop_pages(), 0);
    assert_eq!(c.free_bytes(), 8 * PAGE);
    assert_eq!((c.start_offset(), c.end_offset()), (0, 0));
    assert_eq!(c.nr_alloc(), 0);
    assert!(!c.is_isolated());
    assert!((0..8).all(|p| !c.is_page_populated(p) && c.is_page_clear(p)));
    assert!((0..8).all(|p| !c.is_page_used(p)));
    // Fully free and unpopulated: no room that needs no population.
    assert_eq!(c.room_on_used_pages(), 0);
    let md = c.chunk_md();
    assert_eq!(
        (md.first_free, md.contig_hint_start, md.contig_hint),
        (0, 0, (8 * BB) as i32)
    );
}

/// Page state after one small object on page 2 of a fresh chunk: only page
/// 2 is populated and used, every other page is clear; the used page's free
/// bytes are less than a page, so no room on used pages is counted. Once the
/// object is freed, page 2 is populated, clear and empty.
#[test]
fn page_predicates_follow_allocations() {
    let (mut a, mut b) = plain(8);
    let id = a.create_chunk(&mut b).unwrap();
    let o = a
        .alloc_at(&mut b, id, 2 * PAGE + 64, 16, 4, AllocFlags::NORMAL)
        .unwrap();
    let c = a.chunk(id).unwrap();
    assert_eq!(c.nr_populated(), 1);
    assert_eq!(c.nr_alloc(), 1);
    assert_eq!(c.nr_empty_pop_pages(), 0);
    for p in 0..8 {
        assert_eq!(c.is_page_populated(p), p == 2, "page {p} populated");
        assert_eq!(c.is_page_used(p), p == 2, "page {p} used");
        assert_eq!(c.is_page_clear(p), p != 2, "page {p} clear");
    }
    // 4080 free bytes on the used page: no whole page.
    assert_eq!(c.room_on_used_pages(), 0);
    a.free(o.chunk, o.offset).unwrap();
    let c = a.chunk(id).unwrap();
    assert!(c.is_page_populated(2) && c.is_page_clear(2) && !c.is_page_used(2));
    assert_eq!(c.nr_empty_pop_pages(), 1);
    a.check_invariants().unwrap();
}

/// `pcpu_alloc_first_chunk` marks the hidden tail in the boundary map at
/// the end of the managed region, not at bit 0: in a first chunk whose
/// dynamic area starts on a page boundary but ends inside a page, offset 0
/// never allocated is not the start of a former allocation (a plain bad
/// free), while after an allocation there is freed, freeing it again is a
/// double free.
#[test]
fn unaligned_tail_does_not_mark_bit_zero_as_a_boundary() {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 6000,
    };
    let geo = Geometry::new(PAGE, 1, 8 * PAGE, fc).unwrap();
    let mut a = Allocator::new(geo, Policy::new(PolicyKind::Linux61));
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let c = a.chunk(first).unwrap();
    assert_eq!((c.start_offset(), c.end_offset()), (0, 2 * PAGE - 6000));
    let e = a.free(first, 0).unwrap_err();
    assert!(
        matches!(e, FreeError::NotAllocated { stale: false, .. }),
        "{e}"
    );
    // The last 4 bytes of the managed region can be allocated and freed.
    let o = a
        .alloc_at(&mut b, first, 6000 - 4, 4, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.allocation_size(first, o.offset), Ok(4));
    let o0 = a
        .alloc_at(&mut b, first, 0, 8, 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!(a.free(first, o0.offset), Ok(8));
    let e = a.free(first, 0).unwrap_err();
    assert!(
        matches!(e, FreeError::NotAllocated { stale: true, .. }),
        "{e}"
    );
    assert_eq!(a.free(first, o.offset), Ok(4));
    a.check_invariants().unwrap();
}

/// `(first_free, contig_hint_start, contig_hint, scan_hint_start,
/// scan_hint)` of chunk `id`'s chunk-wide hint, in bits.
fn chunk_hint(a: &Allocator, id: ChunkId) -> (i32, i32, i32, i32, i32) {
    let md = a.chunk(id).unwrap().chunk_md();
    (
        md.first_free,
        md.contig_hint_start,
        md.contig_hint,
        md.scan_hint_start,
        md.scan_hint,
    )
}

/// Place `size` bytes at `offset` of chunk `id` (4-byte alignment).
fn put(a: &mut Allocator, b: &mut SimBackend, id: ChunkId, offset: usize, size: usize) {
    a.alloc_at(b, id, offset, size, 4, AllocFlags::NORMAL)
        .unwrap();
    a.check_invariants().unwrap();
}

/// `pcpu_next_md_free_region` stitches a free run across blocks: a block's
/// contig hint that reaches its right edge is its `right_free`, continued
/// through every following fully free block and ended by the first partly
/// used block's `left_free`. The chunk hint then covers the whole run, from
/// its true start (`(i + 1) * block_bits - right_free`).
#[test]
fn chunk_hint_stitches_a_run_across_blocks() {
    let (mut a, mut b) = plain(8);
    let id = a.create_chunk(&mut b).unwrap();
    // Bits [0, 10) used: the rest of the chunk is one run.
    put(&mut a, &mut b, id, 0, 40);
    assert_eq!(chunk_hint(&a, id), (10, 10, 8 * BB as i32 - 10, 0, 0));
    // One bit used 400 bits into block 5: the run from bit 10 ends there.
    put(&mut a, &mut b, id, (5 * BB + 400) * 4, 4);
    assert_eq!(
        chunk_hint(&a, id),
        (10, 10, (5 * BB + 400 - 10) as i32, 0, 0)
    );
    // Now block 0's run shrinks from the left: the stitched run starts at
    // its right_free again.
    put(&mut a, &mut b, id, 40, 4 * 100);
    assert_eq!(
        chunk_hint(&a, id),
        (110, 110, (5 * BB + 400 - 110) as i32, 0, 0)
    );
}

/// A full rebuild of the chunk hint (`pcpu_chunk_refresh_hint` after a free
/// that spans two blocks) finds a run strictly inside a later block by that
/// block's contig hint, at `block * block_bits + contig_hint_start`, and
/// keeps the smaller run found before it as the scan hint.
#[test]
fn chunk_hint_rebuild_finds_a_run_inside_a_block() {
    let (mut a, mut b) = plain(8);
    let id = a.create_chunk(&mut b).unwrap();
    let bb = BB;
    // [0, 1023) | o2 = [1023, 1025) | [1025, 2148) | hole [2148, 2948) |
    // [2948, 8192)
    put(&mut a, &mut b, id, 0, 1023 * 4);
    put(&mut a, &mut b, id, 1023 * 4, 8);
    put(&mut a, &mut b, id, 1025 * 4, (2 * bb + 100 - 1025) * 4);
    put(&mut a, &mut b, id, 2948 * 4, (8 * bb - 2948) * 4);
    assert_eq!(a.chunk(id).unwrap().free_bytes(), 800 * 4);
    assert_eq!(a.free(id, 1023 * 4), Ok(8));
    a.check_invariants().unwrap();
    assert_eq!(chunk_hint(&a, id), (1023, 2148, 800, 1023, 2));
}

/// `pcpu_find_block_fit` / `pcpu_next_fit_region`: a request larger than
/// every block's contig hint takes the first run stitched across a block
/// boundary (a block's `right_free` plus the next block's `left_free`), at
/// the start of that `right_free`, not a later, larger run.
#[test]
fn first_fit_takes_a_run_stitched_across_blocks() {
    // The first chunk: 2 pages, 2048 bits, fully populated.
    let (mut a, mut b) = plain(8);
    let first = a.first_chunk();
    // Block 0: used [0, 100), free [100, 200), used [200, 974),
    // free [974, 1024) (right_free 50). Block 1: free [1024, 1084)
    // (left_free 60), used [1084, 1200), free [1200, 2048).
    put(&mut a, &mut b, first, 0, 400);
    put(&mut a, &mut b, first, 800, (974 - 200) * 4);
    put(&mut a, &mut b, first, 1084 * 4, (1200 - 1084) * 4);
    let req = a.request(110 * 4, 4).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((first, 974 * 4)));
    assert_eq!(a.probe(req, AllocFlags::ATOMIC), Some((first, 974 * 4)));
    let o = a.alloc(&mut b, 110 * 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 974 * 4));
    // 100 bits fit in block 0's own hint.
    let o = a.alloc(&mut b, 100 * 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (first, 100 * 4));
    a.check_invariants().unwrap();
}

/// Populated-only search (atomic, `pcpu_is_populated`): a run that fits
/// only on unpopulated pages is skipped, the search resuming past them; when
/// the walk reaches the chunk's end nothing fits, and an atomic request
/// fails rather than landing on unpopulated pages. A sleepable request
/// takes the same run and populates it.
#[test]
fn atomic_fit_skips_unpopulated_runs_to_the_chunk_end() {
    let (mut a, mut b) = plain(8);
    let id = a.create_chunk(&mut b).unwrap();
    // Page 0 populated by one 4-byte object; pages 1-7 unpopulated.
    put(&mut a, &mut b, id, 0, 4);
    assert_eq!(a.chunk(id).unwrap().nr_populated(), 1);
    let req = a.request(16 << 10, 4).unwrap();
    assert_eq!(a.probe(req, AllocFlags::ATOMIC), None);
    let e = a
        .alloc(&mut b, 16 << 10, 4, AllocFlags::ATOMIC)
        .unwrap_err();
    assert_eq!(e, AllocError::AtomicNoSpace);
    assert_eq!(a.chunk(id).unwrap().nr_alloc(), 1);
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((id, 4)));
    let o = a.alloc(&mut b, 16 << 10, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (id, 4));
    let c = a.chunk(id).unwrap();
    assert_eq!(c.nr_populated(), 5);
    assert!((0..8).all(|p| c.is_page_populated(p) == (p < 5)));
    a.check_invariants().unwrap();
}

/// [`plain`] with the first chunk filled and a new, unpopulated chunk:
/// only the new chunk has room.
fn one_dynamic_chunk(unit_pages: usize) -> (Allocator, SimBackend, ChunkId) {
    let (mut a, mut b) = plain(unit_pages);
    a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap();
    let id = a.create_chunk(&mut b).unwrap();
    (a, b, id)
}

/// `pcpu_next_fit_region` stitches a run across blocks one block at a time:
/// a block's `right_free` (23 bits) and a fully free block fall short of
/// the 1500 bits requested and the next block's `left_free` is 0, so the
/// run ends there and the search goes on, to the run from bit 2049. (The
/// chunk's scan hint, cleared by the allocation at bit 1000, does not skip
/// the short run.)
#[test]
fn block_fit_does_not_count_a_free_block_twice() {
    let (mut a, mut b, id) = one_dynamic_chunk(8);
    put(&mut a, &mut b, id, 0, 1000 * 4);
    put(&mut a, &mut b, id, 2048 * 4, 4);
    put(&mut a, &mut b, id, 1000 * 4, 4);
    assert_eq!(
        chunk_hint(&a, id),
        (1001, 2049, 8 * BB as i32 - 2049, 1000, 0)
    );
    let req = a.request(1500 * 4, 4).unwrap();
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((id, 2049 * 4)));
    let o = a.alloc(&mut b, 1500 * 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (id, 2049 * 4));
    a.check_invariants().unwrap();
}

/// `pcpu_is_populated` checks the pages under the whole candidate area,
/// `[next_hint, contig_hint_start (aligned) + bits)`. While a sleepable
/// allocation waits for its page to be populated (two-phase, the lock
/// dropped), an atomic request must not land beside it on that page: with
/// no populated room anywhere it fails. Once the page is populated, it
/// lands right after the first area.
#[test]
fn atomic_fit_skips_a_page_being_populated() {
    let (mut a, mut b, id) = one_dynamic_chunk(8);
    let req = a.request(400, 4).unwrap();
    let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
    assert_eq!((area.chunk, area.offset), (id, 0));
    let small = a.request(16, 4).unwrap();
    assert_eq!(a.probe(small, AllocFlags::ATOMIC), None);
    assert_eq!(
        a.alloc(&mut b, 16, 4, AllocFlags::ATOMIC).unwrap_err(),
        AllocError::AtomicNoSpace
    );
    let run = a.next_unpopulated(&area).unwrap();
    assert_eq!(run, 0..1);
    b.populate(id, run.clone()).unwrap();
    a.commit_populated(id, run).unwrap();
    a.finish_alloc();
    a.check_invariants().unwrap();
    assert_eq!(a.probe(small, AllocFlags::ATOMIC), Some((id, 400)));
}

/// An atomic search that reaches the chunk's end without a populated fit
/// ends there (`pcpu_next_fit_region` returns `map_bits`), even when the
/// last block leaves a few free bits: nothing past the last page is
/// looked at. A 64-page chunk (its populated bitmap exactly one word) with
/// objects at the start of pages 0 and 63, page 63's leaving 10 free bits;
/// pages 1-62 are unpopulated.
#[test]
fn atomic_fit_ends_at_the_chunk_end() {
    let (mut a, mut b, id) = one_dynamic_chunk(64);
    put(&mut a, &mut b, id, 0, 4);
    put(&mut a, &mut b, id, 63 * PAGE, PAGE - 40);
    assert_eq!(a.chunk(id).unwrap().nr_populated(), 2);
    let req = a.request(2 * PAGE, 4).unwrap();
    assert_eq!(a.probe(req, AllocFlags::ATOMIC), None);
    assert_eq!(
        a.alloc(&mut b, 2 * PAGE, 4, AllocFlags::ATOMIC)
            .unwrap_err(),
        AllocError::AtomicNoSpace
    );
    assert_eq!(a.probe(req, AllocFlags::NORMAL), Some((id, 4)));
    a.check_invariants().unwrap();
}

/// A populated-only search that skips every candidate finds no fit at all
/// (`pcpu_find_block_fit` returns -1), so the walk moves the chunk to slot 0
/// when it sits below `PCPU_SLOT_FAIL_THRESHOLD`. A sleepable area covers
/// the new chunk but its last 16 bytes (slot 2) and waits for population;
/// an atomic 16-byte request fails there. Once the area is populated, the
/// chunk stays in slot 0: the next 16-byte request maps a new chunk.
#[test]
fn atomic_fit_found_nowhere_moves_the_chunk_to_slot_0() {
    let (mut a, mut b, id) = one_dynamic_chunk(8);
    let req = a.request(8 * PAGE - 16, 4).unwrap();
    let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
    assert_eq!((area.chunk, area.offset), (id, 0));
    assert_eq!(
        a.alloc(&mut b, 16, 4, AllocFlags::ATOMIC).unwrap_err(),
        AllocError::AtomicNoSpace
    );
    while let Some(run) = a.next_unpopulated(&area) {
        b.populate(id, run.clone()).unwrap();
        a.commit_populated(id, run).unwrap();
    }
    a.finish_alloc();
    a.check_invariants().unwrap();
    let o = a.alloc(&mut b, 16, 4, AllocFlags::NORMAL).unwrap();
    assert_ne!(o.chunk, id);
    a.check_invariants().unwrap();
}

/// Place the areas `[lo, hi)` (in bits) of chunk `id`, in order.
fn put_bits(a: &mut Allocator, b: &mut SimBackend, id: ChunkId, areas: &[(usize, usize)]) {
    for &(lo, hi) in areas {
        put(a, b, id, lo * 4, (hi - lo) * 4);
    }
}

/// Where a sleepable request of `size` bytes (4-byte aligned) would go.
fn probe_normal(a: &Allocator, size: usize) -> Option<(ChunkId, usize)> {
    a.probe(a.request(size, 4).unwrap(), AllocFlags::NORMAL)
}

/// Free the area starting at bit `bit` of chunk `id`.
fn free_bit(a: &mut Allocator, id: ChunkId, bit: usize) {
    a.free(id, bit * 4).unwrap();
    a.check_invariants().unwrap();
}

/// `pcpu_chunk_refresh_hint(chunk, false)` (an allocation overlapping the
/// chunk's contig hint) promotes the chunk's scan hint to contig hint and
/// scans only the regions after it; it does not rescan from `first_free`.
/// A 700-bit run freed inside block 1 (the "W1" case: only `first_free`
/// learns of it) before the scan hint therefore stays unknown, and the
/// chunk claims 600 bits: a 650-bit request does not go there (the first
/// chunk is full, so the probe finds no chunk).
#[test]
fn chunk_refresh_promotes_the_scan_hint_without_a_rescan_before_it() {
    let (mut a, mut b, id) = one_dynamic_chunk(8);
    // Hole-to-be r (block 1), s (block 2), c (block 3), y (blocks 4-5).
    let (r, s, c, y) = ((1100, 1800), (2148, 2248), (3172, 3772), (4200, 5400));
    let fill = [(0, r.0), r, (r.1, s.0), s, (s.1, c.0), c, (c.1, y.0), y];
    put_bits(&mut a, &mut b, id, &fill);
    put_bits(&mut a, &mut b, id, &[(y.1, 8 * BB)]);
    // Sub-page frees in blocks 2 and 3 (W1), then y across blocks 4 and 5:
    // a full rebuild from first_free (2148) finds s, c and y in turn.
    for bit in [s.0, c.0, y.0] {
        free_bit(&mut a, id, bit);
    }
    assert_eq!(chunk_hint(&a, id), (2148, 4200, 1200, 3172, 600));
    free_bit(&mut a, id, r.0);
    assert_eq!(chunk_hint(&a, id), (1100, 4200, 1200, 3172, 600));
    // Taking y back promotes c; nothing after it is larger.
    put_bits(&mut a, &mut b, id, &[y]);
    assert_eq!(chunk_hint(&a, id), (1100, 3172, 600, 3172, 0));
    assert_eq!(probe_normal(&a, 650 * 4), None);
    // A request the hint admits is placed first fit, in r.
    assert_eq!(probe_normal(&a, 600 * 4), Some((id, 1100 * 4)));
}

/// A chunk hint of 0 bits keeps its start (`pcpu_chunk_refresh_hint` of a
/// full chunk finds no region and changes only `contig_hint`), and
/// `pcpu_block_update_hint_alloc` tests the overlap of that empty region
/// (`pcpu_region_overlap(start, start + 0, ...)`): an allocation placed
/// across the start refreshes the hint. Here the chunk hint stays 0 through
/// two sub-page frees in block 1 (W1) and the refresh finds the 200 bits
/// left, so a small request fits the chunk again.
#[test]
fn an_allocation_across_an_empty_hint_start_refreshes_the_chunk_hint() {
    let (mut a, mut b) = plain(8);
    let id = a.first_chunk();
    put_bits(&mut a, &mut b, id, &[(0, 1500), (1500, 1800), (1800, 2048)]);
    // The last area filled the hint [1800, 2048): the start stays 1800.
    assert_eq!(chunk_hint(&a, id), (2048, 1800, 0, 0, 0));
    free_bit(&mut a, id, 1800);
    free_bit(&mut a, id, 1500);
    assert_eq!(chunk_hint(&a, id), (1500, 1800, 0, 0, 0));
    put_bits(&mut a, &mut b, id, &[(1700, 1900)]);
    assert_eq!(chunk_hint(&a, id), (1500, 1500, 200, 0, 0));
    assert_eq!(probe_normal(&a, 16), Some((id, 1500 * 4)));
}

/// `pcpu_block_update_hint_free` takes the freed run's end from the block's
/// contig hint only when the freed area ends where that hint starts
/// (`e_off == contig_hint_start`, `e_off` one past the area's last bit). A
/// block filled by a 4-byte object on its last free bit keeps the filled
/// hint's start (0 bits at bit 100); freeing the object gives the block,
/// and the chunk, a 1-bit hint there again, and a 4-byte request fits.
#[test]
fn freeing_a_blocks_last_free_bit_restores_its_hint() {
    let (mut a, mut b) = plain(8);
    let id = a.first_chunk();
    put_bits(&mut a, &mut b, id, &[(0, 100), (101, 2048), (100, 101)]);
    assert_eq!(chunk_hint(&a, id).2, 0);
    free_bit(&mut a, id, 100);
    assert_eq!(chunk_hint(&a, id), (100, 100, 1, 0, 0));
    assert_eq!(probe_normal(&a, 4), Some((id, 400)));
}

/// `pcpu_block_refresh_hint` after an allocation inside a block's contig
/// hint promotes the block's scan hint and rescans from its end
/// (`scan_hint_start + scan_hint`), finding what is left of the old contig
/// hint: block 0 holds free runs [50, 60) (scan hint) and [100, 400)
/// (contig hint); 40 bytes at bit 100 leave [110, 400) as the block's, and
/// the chunk's, largest run, where a 400-byte request goes.
#[test]
fn block_refresh_rescans_after_the_promoted_scan_hint() {
    let (mut a, mut b) = plain(8);
    let id = a.first_chunk();
    put_bits(
        &mut a,
        &mut b,
        id,
        &[(0, 50), (50, 60), (60, 100), (100, 400)],
    );
    put_bits(&mut a, &mut b, id, &[(400, 2048)]);
    free_bit(&mut a, id, 50);
    free_bit(&mut a, id, 100);
    assert_eq!(chunk_hint(&a, id), (50, 100, 300, 50, 10));
    put_bits(&mut a, &mut b, id, &[(100, 110)]);
    assert_eq!(chunk_hint(&a, id), (50, 110, 290, 50, 10));
    assert_eq!(probe_normal(&a, 400), Some((id, 440)));
}

/// `pcpu_alloc_area` searches only `[start, start + bits + block_bits)`
/// from the start `pcpu_find_block_fit` gave. With the stale `left_free`
/// (DESIGN.md §8) block 0's `right_free` (300 bits) and block 1's leading
/// run, 200 bits by `left_free` but 50 in fact, claim 500 bits; a 400-bit
/// request gets that start, finds nothing in the window and the walk moves
/// on, so a new chunk is made although the chunk has 3192 free bits from
/// bit 5000 on, beyond the window.
#[test]
fn a_fit_on_a_stale_left_free_fails_and_the_walk_moves_on() {
    let (mut a, mut b, id) = one_dynamic_chunk(8);
    let fill = [(0, 724), (724, 1024), (1024, 1224), (1224, 1848)];
    put_bits(&mut a, &mut b, id, &fill);
    put_bits(
        &mut a,
        &mut b,
        id,
        &[(1848, 2048), (2048, 5000), (5000, 8 * BB)],
    );
    // Block 1: free [0, 200) (contig hint) and [824, 1024) (scan hint).
    for bit in [724, 1024, 1848] {
        free_bit(&mut a, id, bit);
    }
    // Inside the contig hint, not at its start: the refresh promotes the
    // scan hint and leaves left_free at 200.
    put_bits(&mut a, &mut b, id, &[(1074, 1075)]);
    free_bit(&mut a, id, 5000);
    assert_eq!(chunk_hint(&a, id), (724, 5000, 3192, 724, 500));
    assert_eq!(probe_normal(&a, 1600), None);
    let o = a.alloc(&mut b, 1600, 4, AllocFlags::NORMAL).unwrap();
    assert_ne!(o.chunk, id);
    assert_eq!(o.offset, 0);
    a.check_invariants().unwrap();
}

/// `pcpu_region_overlap` is strict: an allocation ending right where the
/// chunk's contig hint starts does not overlap it, so the chunk hint is not
/// rebuilt. Here the chunk claims the 128 bits at 3968, while two 256-bit
/// runs freed in blocks 1 and 3 (W1: only `first_free` learns of them) stay
/// unknown; taking back [3840, 3968) leaves that claim as it is, and a
/// 256-bit request still does not look at the chunk. (A rebuild would find
/// the run at 1536.)
#[test]
fn an_allocation_ending_at_the_chunk_hint_start_keeps_the_chunk_hint() {
    let (mut a, mut b, id) = one_dynamic_chunk(4);
    let fill = [(0, 1536), (1536, 1792), (1792, 3840), (3840, 3968)];
    put_bits(&mut a, &mut b, id, &fill);
    for bit in [1536, 3840] {
        free_bit(&mut a, id, bit);
    }
    let hint = chunk_hint(&a, id);
    assert_eq!((hint.0, hint.1, hint.2), (1536, 3968, 128));
    put_bits(&mut a, &mut b, id, &[(3840, 3968)]);
    assert_eq!(chunk_hint(&a, id), hint);
    assert_eq!(probe_normal(&a, 1024), None);
}

/// `pcpu_find_zero_area` remembers the largest free area it skipped, by
/// its length from the aligned start, and `pcpu_alloc_area` feeds it to
/// its block (`pcpu_block_update_scan`, which scans back to the run's true
/// start) as the block's scan hint; the block refresh that follows
/// promotes that hint and rescans only after it. Block 0 holds free runs
/// A = [143, 352) (209 bits) and B = [436, 640) (204 bits) with no scan
/// hint; a 184-bit request at 128-bit alignment skips A (96 bits from 256)
/// and B (128 bits from 512), so B is fed and A is forgotten: the block,
/// and the chunk's scan hint, claim B. (A full rescan would find A.)
#[test]
fn the_largest_aligned_skipped_run_becomes_the_blocks_hint() {
    let (mut a, mut b) = plain(8);
    let id = a.first_chunk();
    let fill = [(0, 142), (142, 352), (352, 436), (436, 640), (640, 641)];
    put_bits(&mut a, &mut b, id, &fill);
    free_bit(&mut a, id, 142);
    free_bit(&mut a, id, 436);
    // One bit at the scan hint's start clears the block's and the chunk's
    // scan hint.
    put_bits(&mut a, &mut b, id, &[(142, 143)]);
    assert_eq!(chunk_hint(&a, id), (143, 641, 2048 - 641, 142, 0));
    let o = a
        .alloc(&mut b, 184 * 4, 128 * 4, AllocFlags::NORMAL)
        .unwrap();
    assert_eq!((o.chunk, o.offset), (id, 768 * 4));
    assert_eq!(chunk_hint(&a, id), (143, 952, 2048 - 952, 436, 204));
    a.check_invariants().unwrap();
}

/// Among skipped areas of equal length `pcpu_find_zero_area` keeps the
/// best aligned one (whose start has strictly more trailing zeros; the
/// first among equally aligned ones) and never trades it for a shorter
/// area, however well aligned. Block 0 holds free runs of 32 bits at 96,
/// 256, 768, 864 and 916 (starts with 5, 8, 8, 5 and 2 trailing zeros) and
/// of 16 bits at 512, no scan hint; a 64-bit request skips them all for
/// [960, 1024). The run at 256 is fed to the block and promoted by its
/// refresh, which rescans only after it: the chunk's scan hint names it.
/// (Feeding any later run would lose the runs before it.)
#[test]
fn equal_skipped_runs_keep_the_best_aligned_and_shorter_ones_lose() {
    let (mut a, mut b) = plain(8);
    let id = a.first_chunk();
    let runs = [
        (96, 128),
        (256, 288),
        (512, 528),
        (768, 800),
        (864, 896),
        (916, 948),
    ];
    // [600, 640) only serves to clear the scan hints below.
    let mut fill = vec![];
    let mut at = 0;
    for &(lo, hi) in runs[..3].iter().chain(&[(600, 640)]).chain(&runs[3..]) {
        fill.extend([(at, lo), (lo, hi)]);
        at = hi;
    }
    fill.push((at, 960));
    put_bits(&mut a, &mut b, id, &fill);
    for &(lo, _) in runs.iter().chain(&[(600, 640)]) {
        free_bit(&mut a, id, lo);
    }
    // Taking [600, 640) back clears the block's and the chunk's scan hint.
    put_bits(&mut a, &mut b, id, &[(600, 640)]);
    assert_eq!(chunk_hint(&a, id), (96, 960, 2048 - 960, 600, 0));
    let o = a.alloc(&mut b, 64 * 4, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!((o.chunk, o.offset), (id, 960 * 4));
    assert_eq!(chunk_hint(&a, id), (96, 1024, 1024, 256, 32));
    a.check_invariants().unwrap();
}
