//! Page-tiling bursts (`Policy::tile_bursts`, on in `pcpu`): bursts of a
//! power-of-two fraction of a page start on a multiple of their size and
//! leave their 4-byte objects to the long-lived pages, so that a survivor
//! among removed neighbours pins one page; bursts of other sizes are placed
//! as without it. The invariants are checked after every operation.
use std::collections::BTreeSet;

use pcpu_core::*;

mod support;

use support::MEMCG_GROUP as MEMCG;

const MKDIR: u64 = 0x51;

fn allocator(tile: bool) -> (Allocator, SimBackend) {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    let mut p = Policy::pcpu();
    p.tile_bursts = tile;
    (Allocator::new(g, p), SimBackend::default())
}

/// `groups` tasks allocating `burst` each (task ids from 1000, one call
/// site), then every task but each `keep`-th freed; the pages of dynamic
/// chunks holding a survivor's object (4-byte objects aside), every
/// allocation in order, and what tiling did.
fn survivors_pages(
    tile: bool,
    burst: &[(usize, usize)],
    groups: u64,
    keep: u64,
) -> (usize, Vec<Allocation>, TilingStats) {
    let (mut a, mut b) = allocator(tile);
    let mut all = Vec::new();
    let mut by_task = Vec::new();
    for t in 0..groups {
        let hint = ClassHint::task(1000 + t).at_site(MKDIR);
        let objs: Vec<Allocation> = burst
            .iter()
            .map(|&(size, align)| {
                let x = a
                    .alloc_class(&mut b, size, align, AllocFlags::NORMAL, hint)
                    .unwrap();
                a.check_invariants().unwrap();
                x
            })
            .collect();
        all.extend(objs.iter().copied());
        by_task.push(objs);
    }
    let page = a.geometry().page_size();
    let mut pinned = BTreeSet::new();
    for (t, objs) in by_task.iter().enumerate() {
        for x in objs {
            if t as u64 % keep != 0 {
                a.free(x.chunk, x.offset).unwrap();
                a.check_invariants().unwrap();
            } else if x.size > 4 && a.chunk(x.chunk).unwrap().kind() == ChunkKind::Dynamic {
                pinned.extend(x.pages(page).map(|p| (x.chunk, p)));
            }
        }
    }
    (pinned.len(), all, a.tiling_stats())
}

#[test]
fn memcg_bursts_tile_the_pages() {
    let (groups, keep) = (440, 11);
    let survivors = groups / keep;
    let (tiled, _, on) = survivors_pages(true, &MEMCG, groups, keep);
    let (untiled, _, off) = survivors_pages(false, &MEMCG, groups, keep);
    // Every task after the first learns the 2048-byte burst: it tiles, or
    // is placed untiled (in the first chunk, or before its site saved up
    // the skip), and its 4-byte counter goes to the long-lived pages.
    assert_eq!(on.tiled + on.untiled, groups - 1, "{on:?}");
    assert!(on.tiled >= (groups - 1) * 2 / 3, "{on:?}");
    assert_eq!(on.pooled, groups - 1, "{on:?}");
    assert_eq!(off, TilingStats::default());
    // The first chunk's survivors are not counted. The bursts in the
    // dynamic chunk start where the first chunk's overflow ended, unaligned,
    // until the site has saved up the bits to skip (1/128 of each burst).
    assert!(
        tiled as u64 <= survivors * 23 / 20,
        "tiled: {tiled} pages for {survivors} survivors"
    );
    assert!(
        untiled as u64 >= survivors * 5 / 4,
        "untiled: {untiled} pages for {survivors} survivors"
    );
}

#[test]
fn bursts_of_other_sizes_are_placed_as_without_tiling() {
    // 2052 bytes with no 4-byte object: not a power of two.
    let burst = [(8, 8), (64, 8), (1096, 8), (688, 8), (196, 4)];
    assert_eq!(burst.iter().map(|o| o.0).sum::<usize>(), 2052);
    let (_, on, stats) = survivors_pages(true, &burst, 60, 3);
    let (_, off, _) = survivors_pages(false, &burst, 60, 3);
    assert_eq!(on, off);
    assert_eq!(stats, TilingStats::default());
}

#[test]
fn a_burst_past_its_prediction_keeps_its_objects_together() {
    // Tasks of the memcg burst teach 2048 bytes (and save up the bits to
    // realign); the last allocates the same and then 3000 bytes more:
    // aligned at its start, its later objects following in its own region.
    let (mut a, mut b) = allocator(true);
    let mut third = Vec::new();
    let last = 199;
    for t in 0..=last {
        let hint = ClassHint::task(1000 + t).at_site(MKDIR);
        let extra: &[(usize, usize)] = if t == last { &[(1000, 8); 3] } else { &[] };
        for &(size, align) in MEMCG.iter().chain(extra) {
            let x = a
                .alloc_class(&mut b, size, align, AllocFlags::NORMAL, hint)
                .unwrap();
            a.check_invariants().unwrap();
            if t == last && size > 4 {
                third.push(x);
            }
        }
    }
    let lo = third.iter().map(|x| x.offset).min().unwrap();
    let hi = third.iter().map(|x| x.offset + x.size).max().unwrap();
    assert!(third.iter().all(|x| x.chunk == third[0].chunk));
    assert_eq!(lo % 2048, 0, "the burst starts on a multiple of 2048");
    assert_eq!(hi - lo, 2048 + 3000, "contiguous");
}
