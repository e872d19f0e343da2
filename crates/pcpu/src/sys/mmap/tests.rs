//! Tests of `sys::mmap`: reservations, population, depopulation, guard
//! pages, fault injection and the counts of resident pages, on real mappings.

use super::*;
use crate::sys::testutil;
use std::hint::black_box;
use std::sync::Arc;

/// A region with guard pages: most tests here check page states by
/// their protection too (`unguarded` for the default).
fn region(nr_units: usize, pages: usize) -> Region {
    Region::reserve(nr_units, pages * page_size(), RegionOptions::guarded()).expect("reserve")
}

/// A region without guard pages (the allocator's default).
fn unguarded(nr_units: usize, pages: usize) -> Region {
    Region::reserve(nr_units, pages * page_size(), RegionOptions::all()).expect("reserve")
}

/// Writes `byte` over pages `pages` of `unit`.
fn fill(r: &Region, unit: usize, pages: Range<usize>, byte: u8) {
    let ps = r.page_size();
    let p = r.addr(unit, pages.start * ps);
    // SAFETY: callers pass a non-empty range of populated pages of a live
    // region, so `p .. p + len` is inside the mapping and read-write; no
    // reference into it exists and no other thread writes these pages.
    unsafe { std::ptr::write_bytes(p.as_ptr(), byte, pages.len() * ps) }
}

/// Whether every byte of pages `pages` of `unit` equals `byte`.
fn all_eq(r: &Region, unit: usize, pages: Range<usize>, byte: u8) -> bool {
    let ps = r.page_size();
    let p = r.addr(unit, pages.start * ps);
    // SAFETY: as in `fill`: populated, in bounds, read-write, and nobody
    // writes these pages while the slice lives.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), pages.len() * ps) };
    s.iter().all(|&b| b == byte)
}

#[test]
fn region_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Region>();
}

#[test]
fn bad_geometry_is_a_typed_error() {
    let ps = page_size();
    let cases = [
        (0, ps, "at least one unit"),
        (2, 0, "must not be zero"),
        (2, ps + 1, "multiple of the page size"),
        (2, ps / 2, "multiple of the page size"),
        (usize::MAX / ps, 2 * ps, "overflows"),
        (2, (isize::MAX as usize / ps) * ps, "overflows"),
    ];
    for (nr_units, unit_size, what) in cases {
        let err = Region::reserve(nr_units, unit_size, RegionOptions::all()).unwrap_err();
        match &err {
            SysError::BadGeometry {
                nr_units: n,
                unit_size: u,
                page_size: p,
                reason,
            } => {
                assert_eq!((*n, *u, *p), (nr_units, unit_size, ps));
                assert!(reason.contains(what), "{reason}");
            }
            other => panic!("expected BadGeometry, got {other:?}"),
        }
        assert_eq!(err.errno(), None);
        let msg = err.to_string();
        assert!(
            msg.contains("bad region geometry") && msg.contains(what),
            "{msg}"
        );
    }
}

#[test]
fn geometry_and_addresses() {
    let ps = page_size();
    let r = region(3, 4);
    assert_eq!(r.nr_units(), 3);
    assert_eq!(r.unit_size(), 4 * ps);
    assert_eq!(r.page_size(), ps);
    assert_eq!(r.pages_per_unit(), 4);
    assert_eq!(r.len(), 12 * ps);
    let base = r.base().as_ptr() as usize;
    assert_eq!(base % ps, 0);
    for u in 0..3 {
        assert_eq!(r.unit_base(u).as_ptr() as usize, base + u * 4 * ps);
        assert_eq!(r.addr(u, 0), r.unit_base(u));
        assert_eq!(
            r.addr(u, 4 * ps - 1).as_ptr() as usize,
            base + (u + 1) * 4 * ps - 1
        );
    }
    assert_eq!(r.populated_pages(), 0);
    assert!(!r.is_populated(0));
    assert!(!r.is_populated(99));
    let dbg = format!("{r:?}");
    assert!(dbg.contains("nr_units: 3"), "{dbg}");
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "out of range")]
fn addr_out_of_range_panics_in_debug_builds() {
    let r = region(2, 1);
    let _ = r.addr(2, 0);
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "out of range")]
fn offset_out_of_range_panics_in_debug_builds() {
    let r = region(2, 1);
    let _ = r.addr(0, page_size());
}

#[test]
fn fresh_region_has_nothing_resident() {
    let r = region(4, 8);
    assert_eq!(r.resident_pages().unwrap(), 0);
    for u in 0..4 {
        assert_eq!(r.resident_pages_in(u, 0..8).unwrap(), 0);
    }
}

#[test]
fn populate_write_read_every_unit() {
    let r = region(3, 4);
    r.populate(0..4).unwrap();
    assert_eq!(r.populated_pages(), 4);
    assert!((0..4).all(|p| r.is_populated(p)));
    // Populated means resident, before anything was touched.
    assert_eq!(r.resident_pages().unwrap(), 12);
    for u in 0..3 {
        assert_eq!(r.resident_pages_in(u, 0..4).unwrap(), 4);
        assert!(all_eq(&r, u, 0..4, 0), "new memory must read as zero");
    }
    for u in 0..3 {
        fill(&r, u, 0..4, 0xA0 + u as u8);
    }
    for u in 0..3 {
        assert!(all_eq(&r, u, 0..4, 0xA0 + u as u8), "unit {u}");
    }
    // Populating again (all pages already populated) changes nothing.
    r.populate(0..4).unwrap();
    r.populate(1..3).unwrap();
    for u in 0..3 {
        assert!(all_eq(&r, u, 0..4, 0xA0 + u as u8), "unit {u}");
    }
    assert_eq!(r.resident_pages().unwrap(), 12);
}

#[test]
fn single_unit_region() {
    let r = region(1, 3);
    r.populate(0..3).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 3);
    fill(&r, 0, 0..3, 7);
    assert!(all_eq(&r, 0, 0..3, 7));
    // SAFETY: no object or reference lives in the region's pages.
    unsafe { r.depopulate(1..2) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 2);
    r.populate(0..3).unwrap();
    assert!(all_eq(&r, 0, 0..1, 7) && all_eq(&r, 0, 1..2, 0) && all_eq(&r, 0, 2..3, 7));
}

#[test]
fn depopulate_releases_and_repopulate_reads_zero() {
    for r in [region(2, 6), unguarded(2, 6)] {
        depopulate_releases_and_repopulate_reads_zero_in(r);
    }
}

fn depopulate_releases_and_repopulate_reads_zero_in(r: Region) {
    r.populate(0..6).unwrap();
    for u in 0..2 {
        fill(&r, u, 0..6, 0x5A);
    }
    assert_eq!(r.resident_pages().unwrap(), 12);

    // Partial: pages 2..5 of every unit.
    // SAFETY: no object or reference lives in pages 2..5 of any unit.
    unsafe { r.depopulate(2..5) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 6);
    for u in 0..2 {
        assert_eq!(r.resident_pages_in(u, 2..5).unwrap(), 0);
        assert_eq!(r.resident_pages_in(u, 0..2).unwrap(), 2);
        assert_eq!(r.resident_pages_in(u, 5..6).unwrap(), 1);
    }
    assert_eq!(r.populated_pages(), 3);
    assert!(!r.is_populated(2) && !r.is_populated(4) && r.is_populated(5));

    r.populate(2..5).unwrap();
    for u in 0..2 {
        assert!(all_eq(&r, u, 2..5, 0), "repopulated pages read zero");
        assert!(all_eq(&r, u, 0..2, 0x5A) && all_eq(&r, u, 5..6, 0x5A));
    }

    // Whole unit: a single call over the whole mapping.
    // SAFETY: nothing lives in the region.
    unsafe { r.depopulate(0..6) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 0);
    assert_eq!(r.populated_pages(), 0);
    // Depopulating unpopulated pages is a no-op.
    // SAFETY: nothing lives in the region.
    unsafe { r.depopulate(0..6) }.unwrap();
    r.populate(0..6).unwrap();
    for u in 0..2 {
        assert!(all_eq(&r, u, 0..6, 0));
    }
    assert_eq!(r.resident_pages().unwrap(), 12);
}

#[test]
fn populate_overlapping_range_keeps_existing_contents() {
    let r = region(3, 8);
    r.populate(2..4).unwrap();
    r.populate(6..7).unwrap();
    for u in 0..3 {
        fill(&r, u, 2..4, 0x11 * (u as u8 + 1));
        fill(&r, u, 6..7, 0xEE);
    }
    // Runs 0..2, 4..6 and 7..8 get populated, the rest is left alone.
    r.populate(0..8).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 24);
    for u in 0..3 {
        assert!(all_eq(&r, u, 2..4, 0x11 * (u as u8 + 1)));
        assert!(all_eq(&r, u, 6..7, 0xEE));
        assert!(all_eq(&r, u, 0..2, 0) && all_eq(&r, u, 4..6, 0) && all_eq(&r, u, 7..8, 0));
    }
}

#[test]
fn empty_ranges_are_noops() {
    let r = region(2, 2);
    r.populate(1..1).unwrap();
    // SAFETY: nothing lives in the region.
    unsafe { r.depopulate(2..2) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 0);
    assert_eq!(r.resident_pages_in(1, 2..2).unwrap(), 0);
}

#[test]
fn bad_ranges_and_units_are_rejected() {
    let r = region(2, 4);
    let reversed = black_box(3)..black_box(2);
    let bad = [reversed, 0..5, 4..5];
    for pages in bad {
        let want = SysError::BadRange {
            pages: pages.clone(),
            pages_per_unit: 4,
        };
        assert_eq!(r.populate(pages.clone()), Err(want.clone()));
        // SAFETY: nothing lives in the region (and the call is rejected).
        assert_eq!(unsafe { r.depopulate(pages.clone()) }, Err(want.clone()));
        assert_eq!(r.resident_pages_in(0, pages.clone()), Err(want.clone()));
        assert!(want.to_string().contains("not within a unit of 4 pages"));
    }
    let err = r.resident_pages_in(2, 0..1).unwrap_err();
    assert_eq!(
        err,
        SysError::BadUnit {
            unit: 2,
            nr_units: 2
        }
    );
    assert_eq!(err.to_string(), "unit 2 out of range (region has 2 units)");
    assert_eq!(r.resident_pages().unwrap(), 0);
}

#[test]
fn reserve_fault_injection() {
    fault::reset();
    fault::fail_next_reserves(2);
    for _ in 0..2 {
        let err = Region::reserve(2, page_size(), RegionOptions::all()).unwrap_err();
        assert_eq!(
            err,
            SysError::Reserve {
                bytes: 2 * page_size(),
                errno: Errno::NOMEM
            }
        );
    }
    assert_eq!(fault::pending_reserve_failures(), 0);
    let r = Region::reserve(2, page_size(), RegionOptions::all()).expect("third reserve succeeds");
    r.populate(0..1).unwrap();
    // Bad geometry is reported before (and without consuming) a failure.
    fault::fail_next_reserves(1);
    assert!(matches!(
        Region::reserve(0, page_size(), RegionOptions::all()),
        Err(SysError::BadGeometry { .. })
    ));
    assert_eq!(fault::pending_reserve_failures(), 1);
    // Knobs are per thread.
    std::thread::spawn(|| Region::reserve(1, page_size(), RegionOptions::all()).map(drop))
        .join()
        .unwrap()
        .expect("other threads are not affected");
    fault::reset();
    assert_eq!(fault::pending_reserve_failures(), 0);
}

#[test]
fn populate_fault_injection_rolls_back_whole_unit() {
    fault::reset();
    let r = region(3, 4);
    fault::fail_next_populates(1);
    let err = r.populate(0..4).unwrap_err();
    assert_eq!(
        err,
        SysError::Populate {
            op: SysOp::Prefault,
            unit: None,
            pages: 0..4,
            errno: Errno::NOMEM
        }
    );
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(
        r.resident_pages().unwrap(),
        0,
        "rollback released the pages"
    );
    assert_eq!(r.populated_pages(), 0);
    assert_eq!(fault::pending_populate_failures(), 0);
    r.populate(0..4).unwrap();
    for u in 0..3 {
        assert!(all_eq(&r, u, 0..4, 0));
    }
    fault::reset();
}

#[test]
fn populate_fault_injection_rolls_back_partial_runs() {
    fault::reset();
    let r = region(3, 8);
    r.populate(3..5).unwrap();
    for u in 0..3 {
        fill(&r, u, 3..5, 0xC3);
    }
    let before = r.resident_pages().unwrap();
    assert_eq!(before, 6);

    // Runs 0..3 and 5..8; the injected failure hits the last unit of the
    // last run, after everything else was made accessible and resident.
    fault::fail_next_populates(1);
    let err = r.populate(0..8).unwrap_err();
    assert_eq!(
        err,
        SysError::Populate {
            op: SysOp::Prefault,
            unit: Some(2),
            pages: 5..8,
            errno: Errno::NOMEM
        }
    );
    assert_eq!(r.resident_pages().unwrap(), before, "resident unchanged");
    for u in 0..3 {
        assert_eq!(r.resident_pages_in(u, 0..3).unwrap(), 0);
        assert_eq!(r.resident_pages_in(u, 5..8).unwrap(), 0);
        assert!(all_eq(&r, u, 3..5, 0xC3), "pre-existing pages untouched");
    }
    assert_eq!(r.populated_pages(), 2);
    assert!(r.is_populated(3) && r.is_populated(4) && !r.is_populated(0));

    // A call with nothing to do still consumes an armed failure.
    fault::fail_next_populates(1);
    assert!(r.populate(3..5).is_err());
    assert!(all_eq(&r, 0, 3..5, 0xC3));

    r.populate(0..8).unwrap();
    for u in 0..3 {
        assert!(all_eq(&r, u, 0..3, 0) && all_eq(&r, u, 5..8, 0));
        assert!(all_eq(&r, u, 3..5, 0xC3));
    }
    assert_eq!(r.resident_pages().unwrap(), 24);
    fault::reset();
}

#[test]
fn touch_fallback_populates_and_reads_zero() {
    fault::reset();
    fault::force_touch_fallback(true);
    let r = region(2, 5);
    r.populate(1..4).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 6);
    for u in 0..2 {
        assert!(all_eq(&r, u, 1..4, 0));
        fill(&r, u, 1..4, 0x42);
    }
    // SAFETY: nothing lives in the region.
    unsafe { r.depopulate(1..4) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 0);
    r.populate(0..5).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 10);
    for u in 0..2 {
        assert!(all_eq(&r, u, 0..5, 0));
    }
    fault::reset();
}

#[test]
fn cold_units_are_accessible_but_take_memory_only_where_written() {
    let units = RegionOptions {
        hot: HotUnits::only([0], 3),
        nodes: UnitNodes::none(),
        guard: false,
    };
    let r = Region::reserve(3, 4 * page_size(), units).unwrap();
    r.populate(0..4).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 4);
    // A read maps the shared zero page: still nothing of our own.
    assert!(all_eq(&r, 2, 0..4, 0));
    assert_eq!(r.resident_pages().unwrap(), 4);
    fill(&r, 1, 3..4, 7);
    assert_eq!(r.resident_pages().unwrap(), 5);
    assert_eq!(r.resident_pages_in(1, 0..4).unwrap(), 1);
    assert_eq!(r.resident_pages_in(0, 1..3).unwrap(), 2);
    // SAFETY: no object or reference lives in the region.
    unsafe { r.depopulate(0..4) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 0);
    r.populate(2..4).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 2);
    assert!(all_eq(&r, 1, 2..4, 0));
}

/// The `/proc/self/smaps` entry of the mapping that holds `addr` (found
/// by range: a neighbouring mapping with the same flags may have merged
/// with it, so none need start at `addr`).
fn smaps_entry(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let range = |l: &str| {
        let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
        Some(usize::from_str_radix(lo, 16).ok()?..usize::from_str_radix(hi, 16).ok()?)
    };
    let mut lines = smaps
        .lines()
        .skip_while(|l| !range(l).is_some_and(|r| r.contains(&addr)));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no mapping at {addr:x}"));
    let rest = lines.take_while(|l| range(l).is_none());
    std::iter::once(head)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn regions_are_mapped_without_transparent_huge_pages() {
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        return; // no THP in this kernel: no `nh` flag to see
    }
    let r = region(4, 2);
    let vma = smaps_entry(r.base().as_ptr() as usize);
    let flags = vma.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
    assert!(flags.split_whitespace().any(|f| f == "nh"), "{vma}");
}

/// The memory policy of each unit's range, from `/proc/self/numa_maps`
/// (`prefer:0`, `default`, ...): that of the last mapping starting at or
/// below the unit (numa_maps lists mappings by start address only).
fn unit_policies(r: &Region) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
    let starts: Vec<(usize, &str)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let start = usize::from_str_radix(f.next()?, 16).ok()?;
            Some((start, f.next()?))
        })
        .collect();
    (0..r.nr_units())
        .map(|u| {
            let addr = r.unit_base(u).as_ptr() as usize;
            let (_, policy) = starts
                .iter()
                .rev()
                .find(|(start, _)| *start <= addr)
                .unwrap_or_else(|| panic!("no mapping at unit {u}:\n{maps}"));
            (*policy).to_owned()
        })
        .collect()
}

#[test]
fn units_prefer_their_node() {
    // Skipped where the kernel has no NUMA support or a seccomp filter
    // refuses `mbind`: then nothing is set, and nothing can be seen.
    let probe = region(1, 1);
    if !std::path::Path::new("/proc/self/numa_maps").exists()
        || !prefer_node(probe.base().as_ptr().cast(), page_size(), 0)
    {
        return;
    }
    // One node here: node 0 for units 0 and 2 stands for "the CPU's
    // node"; unit 1 has none.
    let units = RegionOptions {
        hot: HotUnits::all(),
        nodes: UnitNodes::from_nodes(vec![Some(0), None, Some(0)]),
        guard: false,
    };
    let r = Region::reserve(3, 2 * page_size(), units).unwrap();
    assert_eq!(unit_policies(&r), ["prefer:0", "default", "prefer:0"]);
    r.populate(0..2).unwrap();
    assert_eq!(r.resident_pages().unwrap(), 6);
    assert_eq!(unit_policies(&r), ["prefer:0", "default", "prefer:0"]);
}

/// The lines of `/proc/self/maps` that overlap `r`.
fn maps_of(r: &Region) -> Vec<String> {
    let (b, e) = (
        r.base().as_ptr() as usize,
        r.base().as_ptr() as usize + r.len(),
    );
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            let range = l.split_whitespace().next().and_then(|r| r.split_once('-'));
            range.is_some_and(|(s, t)| {
                let s = usize::from_str_radix(s, 16).unwrap();
                let t = usize::from_str_radix(t, 16).unwrap();
                s < e && t > b
            })
        })
        .map(str::to_owned)
        .collect()
}

/// Without guard pages a region stays one mapping of the process
/// whatever its pages' states (with them, each populated run splits it
/// in every unit: 64 units of 8 pages with every other page populated
/// take 512 mappings, and `vm.max_map_count` is 65530 by default); a failed
/// populate leaves nothing resident; an unpopulated page reads zero.
#[test]
fn an_unguarded_region_stays_one_mapping() {
    let (units, pages) = (64, 8);
    let guarded = region(units, pages);
    let r = unguarded(units, pages);
    for r in [&guarded, &r] {
        for p in (0..pages).step_by(2) {
            r.populate(p..p + 1).unwrap();
        }
    }
    assert_eq!(maps_of(&guarded).len(), units * pages);
    assert_eq!(maps_of(&r).len(), 1, "{:#?}", maps_of(&r));
    assert_eq!(r.resident_pages().unwrap(), units * pages / 2);
    fill(&r, 3, 0..1, 9);
    // SAFETY: no object or reference lives in the region.
    unsafe { r.depopulate(0..pages) }.unwrap();
    assert_eq!(r.resident_pages().unwrap(), 0);
    assert!(all_eq(&r, 3, 0..1, 0) && all_eq(&r, 5, 1..2, 0));
    assert_eq!(r.resident_pages().unwrap(), 0, "reads map the zero page");
    fault::reset();
    fault::fail_next_populates(1);
    assert!(r.populate(2..6).is_err());
    assert_eq!((r.resident_pages().unwrap(), r.populated_pages()), (0, 0));
    fault::reset();
    r.populate(1..7).unwrap();
    assert_eq!(r.resident_pages().unwrap(), units * 6);
    assert_eq!(maps_of(&r).len(), 1);
}

#[test]
fn a_failed_populate_with_cold_units_leaves_nothing_accessible() {
    // Whole units and part of them; the hot unit first, last, or two of
    // three; pre-faulting by advice and by touch. (From a review.)
    let cases = [
        (vec![0], 0..4),
        (vec![1], 0..4),
        (vec![0], 1..3),
        (vec![2], 1..3),
        (vec![0, 2], 0..4),
    ];
    for (hot, pages) in cases {
        for touch in [false, true] {
            fault::reset();
            fault::force_touch_fallback(touch);
            let units = RegionOptions {
                hot: HotUnits::only(hot.clone(), 3),
                nodes: UnitNodes::none(),
                guard: true,
            };
            let r = Region::reserve(3, 4 * page_size(), units).unwrap();
            let before = usize::from(pages.start > 0);
            if before == 1 {
                r.populate(0..1).unwrap();
            }
            fault::fail_next_populates(1);
            assert!(r.populate(pages.clone()).is_err());
            let maps = maps_of(&r);
            let rw = maps.iter().filter(|l| l.contains(" rw")).count();
            assert_eq!(rw, 3 * before, "{hot:?} {pages:?} {maps:#?}");
            assert_eq!(r.resident_pages().unwrap(), before * hot.len());
            r.populate(0..4).unwrap();
            assert_eq!(r.resident_pages().unwrap(), 4 * hot.len());
        }
    }
    fault::reset();
}

#[test]
fn resident_count_spans_several_mincore_batches() {
    let ps = page_size();
    let pages = 3 * 4096 + 17;
    let r = Region::reserve(1, pages * ps, RegionOptions::all()).unwrap();
    r.populate(100..5000).unwrap();
    r.populate(9000..pages).unwrap();
    let want = 4900 + (pages - 9000);
    assert_eq!(r.resident_pages().unwrap(), want);
    assert_eq!(r.resident_pages_in(0, 0..pages).unwrap(), want);
    assert_eq!(r.resident_pages_in(0, 4000..9100).unwrap(), 1100);
}

#[test]
fn concurrent_disjoint_populate_and_depopulate() {
    const THREADS: usize = 4;
    const PAGES_EACH: usize = 3;
    let r = Arc::new(region(3, THREADS * PAGES_EACH));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let mine = t * PAGES_EACH..(t + 1) * PAGES_EACH;
                for round in 0..20u8 {
                    r.populate(mine.clone()).unwrap();
                    for u in 0..3 {
                        assert!(all_eq(&r, u, mine.clone(), 0));
                        fill(&r, u, mine.clone(), round ^ t as u8 ^ 0x80);
                    }
                    for u in 0..3 {
                        assert!(all_eq(&r, u, mine.clone(), round ^ t as u8 ^ 0x80));
                    }
                    // SAFETY: only this thread uses pages `mine`, and no
                    // reference into them is live.
                    unsafe { r.depopulate(mine.clone()) }.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(r.resident_pages().unwrap(), 0);
    assert_eq!(r.populated_pages(), 0);
}

// ---- tests that must die or change limits: run in a child process ----

/// Child: touches page 1 of unit `unit` after `setup`; the parent expects
/// SIGSEGV.
fn expect_segv(name: &str, setup: fn(&Region)) {
    let test = testutil::test_name(module_path!(), name);
    if testutil::is_child(&test) {
        testutil::child_disable_core_dumps();
        let r = region(2, 3);
        setup(&r);
        testutil::child_ready();
        let p = r.addr(1, page_size());
        // SAFETY: deliberately unsound-looking probe of a page that is
        // PROT_NONE: the access must fault (SIGSEGV) and kill this child
        // before any value is produced. A volatile read of a `u8` through a
        // raw pointer creates no reference.
        let v = unsafe { p.as_ptr().read_volatile() };
        eprintln!("read {v} from an unpopulated page");
        testutil::child_done();
        return;
    }
    let out = testutil::run_child(&test, &[]);
    testutil::assert_child_killed_by(&out, libc::SIGSEGV);
}

#[test]
fn access_to_never_populated_page_faults() {
    expect_segv("access_to_never_populated_page_faults", |r| {
        r.populate(0..1).unwrap();
        r.populate(2..3).unwrap();
    });
}

#[test]
fn access_to_depopulated_page_faults() {
    expect_segv("access_to_depopulated_page_faults", |r| {
        r.populate(0..3).unwrap();
        fill(r, 1, 0..3, 0xFF);
        // SAFETY: nothing lives in the region.
        unsafe { r.depopulate(1..2) }.unwrap();
    });
}

#[test]
fn access_to_rolled_back_page_faults() {
    expect_segv("access_to_rolled_back_page_faults", |r| {
        fault::fail_next_populates(1);
        r.populate(0..3).unwrap_err();
    });
}

/// The probe itself is sound when the page is populated: the child
/// survives (guards against the SIGSEGV tests passing for another reason).
#[test]
fn access_to_populated_page_survives() {
    let test = testutil::test_name(module_path!(), "access_to_populated_page_survives");
    if testutil::is_child(&test) {
        testutil::child_disable_core_dumps();
        let r = region(2, 3);
        r.populate(0..3).unwrap();
        testutil::child_ready();
        let p = r.addr(1, page_size());
        // SAFETY: page 1 of unit 1 is populated and the region alive.
        let v = unsafe { p.as_ptr().read_volatile() };
        assert_eq!(v, 0);
        testutil::child_done();
        return;
    }
    let out = testutil::run_child(&test, &[]);
    testutil::assert_child_passed(&out);
}

/// A real `mmap` failure (address-space limit) surfaces as a typed
/// `SysError::Reserve`. The limit is lowered only in a child process.
#[test]
fn reserve_beyond_rlimit_as_is_a_typed_error() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let test = testutil::test_name(module_path!(), "reserve_beyond_rlimit_as_is_a_typed_error");
    if testutil::is_child(&test) {
        const GIB: usize = 1 << 30;
        let hard = getrlimit(Resource::As).maximum;
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(GIB as u64),
                maximum: hard,
            },
        )
        .expect("lower RLIMIT_AS in the child");
        testutil::child_ready();
        let err = Region::reserve(8, GIB, RegionOptions::all()).unwrap_err();
        assert_eq!(
            err,
            SysError::Reserve {
                bytes: 8 * GIB,
                errno: Errno::NOMEM
            }
        );
        eprintln!("{err}");
        // A small reservation still fits.
        let r = Region::reserve(2, page_size(), RegionOptions::all()).unwrap();
        r.populate(0..1).unwrap();
        testutil::child_done();
        return;
    }
    let out = testutil::run_child(&test, &[]);
    testutil::assert_child_passed(&out);
    assert!(testutil::stderr(&out).contains("cannot reserve 8589934592 bytes"));
}
