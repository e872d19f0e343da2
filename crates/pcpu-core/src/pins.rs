//! "Who pins my memory": how the pages holding live objects divide among
//! the objects' owners (call sites, tasks, threads: any grouping the
//! embedder chooses). Not in Linux: `pcpu pins` reports it for a replayed
//! trace, and the userspace crate for a running program.
//!
//! Per owner:
//!
//! * **objects** and **bytes** (per unit);
//! * **pages touched**: pages holding at least one of its objects;
//! * **pages pinned**: pages on which its objects are the only ones:
//!   freeing them would empty those pages, which depopulation then gives
//!   back;
//! * **share**: every page holding objects split among the owners on it in
//!   proportion to their bytes there; the shares add up to the pages
//!   holding objects (the placement *floor*).

use alloc::vec::Vec;

use crate::ChunkId;

/// One owner's figures ([`tally_pins`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PinTally {
    /// Objects.
    pub objects: u64,
    /// Their bytes (per unit).
    pub bytes: u64,
    /// Pages (per unit) holding at least one of its objects.
    pub pages_touched: u64,
    /// Pages on which its objects are the only ones.
    pub pages_pinned: u64,
    /// Its byte-proportional share of the pages it touches.
    pub share_pages: f64,
}

/// What [`tally_pins`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pins {
    /// Per owner, indexed by owner (owners without objects have zeros).
    pub owners: Vec<PinTally>,
    /// The pages holding objects, `(chunk, page)`, sorted, each once.
    pub pages: Vec<(ChunkId, usize)>,
}

/// Tally `objects`, each `(owner, chunk, offset, size)` (bytes within the
/// unit; `owner` any index: the result has an entry for each up to the
/// largest), with pages of `page_size` bytes (not 0). Objects must not
/// overlap (live allocations never do); an object of size 0 counts as an
/// object on no page.
pub fn tally_pins(
    page_size: usize,
    objects: impl IntoIterator<Item = (usize, ChunkId, usize, usize)>,
) -> Pins {
    let page = page_size.max(1);
    let mut owners: Vec<PinTally> = Vec::new();
    // (chunk, page, owner, bytes on the page), one per object and page.
    let mut on_pages: Vec<(ChunkId, usize, usize, usize)> = Vec::new();
    for (owner, chunk, offset, size) in objects {
        if owners.len() <= owner {
            owners.resize(owner + 1, PinTally::default());
        }
        owners[owner].objects += 1;
        owners[owner].bytes += size as u64;
        if size == 0 {
            continue;
        }
        let end = offset.saturating_add(size);
        for p in offset / page..end.div_ceil(page) {
            let bytes = end.min((p + 1) * page) - offset.max(p * page);
            on_pages.push((chunk, p, owner, bytes));
        }
    }
    on_pages.sort_unstable_by_key(|&(c, p, o, _)| (c, p, o));
    let mut pages = Vec::new();
    let mut rest = on_pages.as_slice();
    while let Some(&(chunk, p, ..)) = rest.first() {
        let n = rest.iter().take_while(|e| (e.0, e.1) == (chunk, p)).count();
        let (here, tail) = rest.split_at(n);
        rest = tail;
        pages.push((chunk, p));
        let total: usize = here.iter().map(|e| e.3).sum();
        // Sorted by owner within the page: one run per owner.
        let alone = here.first().map(|e| e.2) == here.last().map(|e| e.2);
        let mut i = 0;
        while i < here.len() {
            let owner = here[i].2;
            let m = here[i..].iter().take_while(|e| e.2 == owner).count();
            let bytes: usize = here[i..i + m].iter().map(|e| e.3).sum();
            let t = &mut owners[owner];
            t.pages_touched += 1;
            t.pages_pinned += u64::from(alone);
            t.share_pages += bytes as f64 / total.max(1) as f64;
            i += m;
        }
    }
    Pins { owners, pages }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn a_page_shared_by_two_owners_is_pinned_by_neither() {
        let pins = tally_pins(
            PAGE,
            [
                (0, ChunkId(1), 0, 1024),
                (1, ChunkId(1), 1024, 3072),
                // Owner 0 alone on chunk 2's page 1, across into page 2.
                (0, ChunkId(2), PAGE + 2048, 4096),
                (0, ChunkId(2), 3 * PAGE, 8),
            ],
        );
        assert_eq!(
            pins.pages,
            [
                (ChunkId(1), 0),
                (ChunkId(2), 1),
                (ChunkId(2), 2),
                (ChunkId(2), 3)
            ]
        );
        let (a, b) = (pins.owners[0], pins.owners[1]);
        assert_eq!((a.objects, a.bytes), (3, 1024 + 4096 + 8));
        assert_eq!((a.pages_touched, a.pages_pinned), (4, 3));
        assert_eq!((b.pages_touched, b.pages_pinned), (1, 0));
        assert!((a.share_pages - 3.25).abs() < 1e-12);
        assert!((b.share_pages - 0.75).abs() < 1e-12);
    }

    #[test]
    fn shares_add_up_to_the_pages_holding_objects() {
        let objects: Vec<_> = (0..500)
            .map(|i| (i % 7, ChunkId((i % 3) as u32), i * 40, 8 + (i % 5) * 8))
            .collect();
        let pins = tally_pins(PAGE, objects);
        let shares: f64 = pins.owners.iter().map(|t| t.share_pages).sum();
        assert!((shares - pins.pages.len() as f64).abs() < 1e-9);
        assert_eq!(pins.owners.iter().map(|t| t.objects).sum::<u64>(), 500);
        for t in &pins.owners {
            assert!(t.pages_pinned <= t.pages_touched);
        }
    }

    #[test]
    fn empty_and_zero_sized_objects_touch_no_page() {
        assert_eq!(tally_pins(PAGE, []), Pins::default());
        let pins = tally_pins(PAGE, [(2, ChunkId(0), 64, 0)]);
        assert!(pins.pages.is_empty());
        assert_eq!(pins.owners.len(), 3);
        assert_eq!(pins.owners[2].objects, 1);
    }
}
