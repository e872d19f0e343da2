//! The block-hint primitives on [`BlockMd`] pinned through its public
//! methods: `update` (`pcpu_block_update`) and `next_hint`
//! (`pcpu_next_hint`), on the scan hint, which the allocator's own tests see
//! only as search speed. Each case gives a hint state the allocator can
//! reach, one complete free run, and the exact hints the kernel's rules give
//! (the table in the reference's §3.2). Written from mutation testing of
//! block.rs.

use pcpu_core::*;

/// A block of 128 bits with scan hint `(start, len)` and contig hint
/// `(start, len)`; `first_free` is the first hinted bit, no edge runs.
fn md(scan: (i32, i32), contig: (i32, i32)) -> BlockMd {
    let first_free = if scan.1 != 0 {
        scan.0.min(contig.0)
    } else {
        contig.0
    };
    BlockMd {
        scan_hint_start: scan.0,
        scan_hint: scan.1,
        contig_hint_start: contig.0,
        contig_hint: contig.1,
        left_free: 0,
        right_free: 0,
        first_free,
        nr_bits: 128,
    }
}

/// `(scan_hint_start, scan_hint)` and `(contig_hint_start, contig_hint)`
/// after feeding the free run `[start, end)` to `update`.
fn after(b: BlockMd, start: i32, end: i32) -> ((i32, i32), (i32, i32)) {
    let mut b = b;
    b.update(start, end);
    (
        (b.scan_hint_start, b.scan_hint),
        (b.contig_hint_start, b.contig_hint),
    )
}

/// A run as large as the contig hint with a better start alignment (more
/// trailing zeros) takes the hint; a smaller scan hint it now precedes is
/// dropped (only its length is cleared), any other scan hint is kept — the
/// kernel's test is strict, so a scan hint starting where the run starts
/// survives, and so does an equal one after it.
#[test]
fn equal_run_with_better_alignment_takes_the_contig_hint() {
    // 8 (ffs 3) beats 36 (ffs 2); scan hint at 20 would follow: dropped.
    assert_eq!(after(md((20, 5), (36, 10)), 8, 18), ((20, 0), (8, 10)));
    // Scan hint before the run: kept.
    assert_eq!(after(md((2, 5), (36, 10)), 16, 26), ((2, 5), (16, 10)));
    // Scan hint at the run's start (the run grew out of it): kept.
    assert_eq!(after(md((16, 5), (36, 10)), 16, 26), ((16, 5), (16, 10)));
    // Equal scan hint after the run: kept.
    assert_eq!(after(md((80, 10), (36, 10)), 16, 26), ((80, 10), (16, 10)));
}

/// A run as large as the contig hint without a better alignment leaves the
/// contig hint and becomes the scan hint when it lies after the scan hint or
/// the scan hint is smaller; else nothing changes.
#[test]
fn equal_run_without_better_alignment_may_become_the_scan_hint() {
    // ffs(72) = 3 < ffs(16) = 4; after the equal scan hint at 40.
    assert_eq!(after(md((40, 10), (16, 10)), 72, 82), ((72, 10), (16, 10)));
    // Before a smaller scan hint: it replaces it.
    assert_eq!(after(md((40, 5), (64, 10)), 8, 18), ((8, 10), (64, 10)));
    // Before an equal scan hint: nothing changes.
    assert_eq!(after(md((72, 10), (16, 10)), 40, 50), ((72, 10), (16, 10)));
}

/// A run smaller than the contig hint becomes the scan hint only when it
/// lies before the contig hint and is larger than the scan hint, or as
/// large and after it.
#[test]
fn smaller_run_before_the_contig_hint_may_become_the_scan_hint() {
    assert_eq!(after(md((2, 3), (32, 10)), 10, 15), ((10, 5), (32, 10)));
    assert_eq!(after(md((2, 3), (16, 10)), 40, 45), ((2, 3), (16, 10)));
    assert_eq!(after(md((2, 3), (32, 10)), 10, 13), ((10, 3), (32, 10)));
    assert_eq!(after(md((10, 3), (32, 10)), 2, 5), ((10, 3), (32, 10)));
}

/// `next_hint` skips a too-small scan hint only when it lies strictly
/// before the contig hint; one starting at the contig hint's start (left by
/// a better-aligned equal run that grew out of it) is not skipped.
#[test]
fn next_hint_skips_only_a_scan_hint_before_the_contig_hint() {
    let mut b = md((16, 5), (36, 10));
    b.update(16, 26);
    assert_eq!((b.scan_hint_start, b.contig_hint_start), (16, 16));
    assert_eq!(b.next_hint(8), b.first_free);
    assert_eq!(md((2, 5), (36, 10)).next_hint(8), 7);
}
