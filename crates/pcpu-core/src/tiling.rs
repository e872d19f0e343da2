//! Page-tiling bursts for task classes (`Policy::tile_bursts`).
//!
//! Many tasks allocate the same burst of objects: each `mkdir` of a memory
//! cgroup in Linux 6.1 allocates eleven objects, 2052 bytes per unit. Task
//! classes keep a burst contiguous, but bursts of a little over half a page
//! land at every page offset, so that a survivor among removed neighbours
//! pins two pages half the time (1.5 pages per surviving cgroup on the
//! shared memcg capture). Without its 4-byte counter the same burst is
//! exactly 2048 bytes (the alignment hole its 64-byte-aligned object leaves
//! is filled by its own later 8- and 32-byte objects when the burst starts
//! on a 64-byte boundary): bursts of a power-of-two fraction of a page,
//! started on a multiple of their size, tile the pages exactly, and a
//! survivor then pins the one page it fills.
//!
//! So the allocator learns, per call site of a class's first object, how
//! many bytes the last class started there placed (its objects of more than
//! [`TINY_BITS`] bits). A class whose site predicts a burst of a
//! power-of-two size between a quarter page and a page *tiles*: its first
//! region starts on a multiple of that size (in dynamic chunks: the first
//! chunk's pages are populated anyway), and its tiny objects go to the
//! shared long-lived pages (`long_lived.rs`), where they pack densely,
//! instead of lengthening the burst. A burst that turns out larger only
//! starts aligned; one of any other size is not aligned at all.

use alloc::vec::Vec;

/// Objects of at most this many bits (4 bytes: a `percpu_counter`) of a
/// tiling class go to the long-lived pages and are not counted in bursts.
pub(crate) const TINY_BITS: i32 = 1;
/// Call sites remembered (the least recently started forgotten first).
const SITES: usize = 32;
/// Each tiling burst saves up this fraction of its size (1/128: 16 bytes
/// of a 2048-byte burst) for the skip that realigns a later one, and at
/// most one burst's size is saved: over a run of bursts, the holes that
/// realigning leaves are at most 0.8% of their bytes.
const CREDIT_PER_BURST: u64 = 128;

/// The latest class started at one call site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Site {
    site: u64,
    /// The class started last here, and the bits it has placed so far.
    class: u64,
    bits: u64,
    /// Bits the class before it placed (0: none seen yet).
    predicted: u64,
    /// Whether `class` tiles (at `predicted` bits).
    tiles: bool,
    /// The class clock when `class` started.
    started: u64,
    /// Bits a tiling burst may skip to start aligned (saved up by the
    /// bursts before it: [`CREDIT_PER_BURST`] of each).
    credit: u64,
}

/// Burst sizes per call site.
///
/// # Invariants
/// At most [`SITES`] entries, with distinct sites.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bursts {
    sites: Vec<Site>,
    /// What tiling did so far (`Allocator::tiling_stats`).
    pub(crate) stats: TilingStats,
}

/// What page tiling did (`Policy::tile_bursts`; all 0 under other policies),
/// counted when the allocation it concerns succeeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TilingStats {
    /// Bursts started on a multiple of their predicted size.
    pub tiled: u64,
    /// Bursts predicted to tile but placed as untiled ones: aligning them
    /// would have skipped more than their site saved up, or reached into
    /// another class's growth room, or they went to the first chunk (whose
    /// pages are populated anyway).
    pub untiled: u64,
    /// Tiny (4-byte) objects of tiling tasks placed on the shared
    /// long-lived pages instead of in their bursts.
    pub pooled: u64,
}

impl Bursts {
    /// Class `class` placed (or is about to place) its first object, from
    /// call site `site`, at class clock `now`: the burst of the class
    /// started there before it is over. Repeating it for the same class
    /// (a retried request, or a first object that went elsewhere) changes
    /// nothing. `page_bits`: bits per page.
    pub(crate) fn start(&mut self, site: u64, class: u64, now: u64, page_bits: i32) {
        let i = match self.sites.iter().position(|s| s.site == site) {
            Some(i) if self.sites[i].class == class => return,
            Some(i) => i,
            None => {
                if self.sites.len() == SITES {
                    let oldest = (0..self.sites.len()).min_by_key(|&i| self.sites[i].started);
                    if let Some(o) = oldest {
                        self.sites.swap_remove(o);
                    }
                }
                // A new site: no bits placed before, so nothing predicted
                // and nothing saved (filled in below).
                self.sites.push(Site::default());
                self.sites.len() - 1
            }
        };
        let s = &mut self.sites[i];
        let predicted = s.bits;
        let page = page_bits as u64;
        let tiles = predicted.is_power_of_two() && predicted >= page / 4 && predicted <= page;
        let credit = if tiles {
            (s.credit + predicted / CREDIT_PER_BURST).min(predicted)
        } else {
            0
        };
        *s = Site {
            site,
            class,
            bits: 0,
            predicted,
            tiles,
            started: now,
            credit,
        };
    }

    /// Class `class` placed an object of `bits` bits (tiny ones are not
    /// counted: a tiling class puts them elsewhere).
    pub(crate) fn placed(&mut self, class: u64, bits: i32) {
        if bits <= TINY_BITS {
            return;
        }
        if let Some(s) = self.sites.iter_mut().find(|s| s.class == class) {
            s.bits += bits as u64;
        }
    }

    /// The site whose current class is `class`, if that class tiles.
    fn tiling(&self, class: u64) -> Option<&Site> {
        self.sites.iter().find(|s| s.class == class && s.tiles)
    }

    /// The burst size, in bits, class `class` tiles at, if it does.
    pub(crate) fn tile(&self, class: u64) -> Option<i32> {
        i32::try_from(self.tiling(class)?.predicted).ok()
    }

    /// Bits tiling class `class` may skip to start aligned.
    pub(crate) fn credit(&self, class: u64) -> i32 {
        self.tiling(class)
            .map_or(0, |s| i32::try_from(s.credit).unwrap_or(i32::MAX))
    }

    /// Tiling class `class` skipped `bits` bits to start aligned.
    pub(crate) fn spend(&mut self, class: u64, bits: i32) {
        if let Some(s) = self.sites.iter_mut().find(|s| s.class == class) {
            s.credit = s.credit.saturating_sub(bits.max(0) as u64);
        }
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.sites.len() > SITES {
            return Err(alloc::format!(
                "{} burst sites (at most {SITES})",
                self.sites.len()
            ));
        }
        for (i, s) in self.sites.iter().enumerate() {
            if self.sites[..i].iter().any(|t| t.site == s.site) {
                return Err(alloc::format!("burst site {:#x} twice", s.site));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE_BITS: i32 = 1024;

    /// Classes 1, 2, 3 from one site, each placing `bits` in objects of
    /// 8 bytes and one tiny object.
    fn bursts_of(bits: i32) -> Bursts {
        let mut b = Bursts::default();
        for (now, class) in [1u64, 2, 3].into_iter().enumerate() {
            b.start(7, class, now as u64, PAGE_BITS);
            b.placed(class, TINY_BITS);
            for _ in 0..bits / 2 {
                b.placed(class, 2);
            }
        }
        b
    }

    #[test]
    fn a_half_page_burst_tiles_from_the_second_class_on() {
        let b = bursts_of(512);
        assert_eq!(b.tile(1), None);
        assert_eq!(b.tile(3), Some(512));
        // Tiny objects are not counted: class 3 has placed 512 bits.
        let mut b = b;
        b.start(7, 4, 9, PAGE_BITS);
        assert_eq!(b.tile(4), Some(512));
        b.check().unwrap();
    }

    #[test]
    fn other_sizes_do_not_tile() {
        for bits in [514, 128, 2048] {
            assert_eq!(bursts_of(bits).tile(3), None, "{bits} bits");
        }
        assert_eq!(bursts_of(256).tile(3), Some(256));
        assert_eq!(bursts_of(1024).tile(3), Some(1024));
    }

    #[test]
    fn a_repeated_start_keeps_the_count() {
        let mut b = bursts_of(512);
        b.placed(3, 10);
        b.start(7, 3, 5, PAGE_BITS);
        b.start(7, 4, 6, PAGE_BITS);
        // Class 3 placed 522 bits in all: class 4 does not tile.
        assert_eq!(b.tile(4), None);
        // Class 5 places 200 bits, is started again (a retry), then
        // places 312 more: 512 in all, so class 6 tiles.
        b.start(7, 5, 7, PAGE_BITS);
        b.placed(5, 200);
        b.start(7, 5, 8, PAGE_BITS);
        b.placed(5, 312);
        b.start(7, 6, 9, PAGE_BITS);
        assert_eq!(b.tile(6), Some(512));
    }

    #[test]
    fn tiling_bursts_save_up_a_128th_each_up_to_one_burst() {
        let mut b = bursts_of(512);
        // Classes 2 and 3 tiled, 4 bits each; 2 is no longer the site's.
        assert_eq!(b.credit(2), 0);
        assert_eq!(b.credit(3), 8);
        for (n, class) in (4..300u64).enumerate() {
            b.start(7, class, 10 + class, PAGE_BITS);
            b.placed(class, 512);
            let saved = (4 * (n as i32 + 3)).min(512);
            assert_eq!(b.credit(class), saved, "after class {class}");
        }
        // A class other than the site's current one has none to spend.
        assert_eq!(b.credit(298), 0);
        b.spend(299, 500);
        assert_eq!(b.credit(299), 12);
        b.spend(299, 100);
        assert_eq!(b.credit(299), 0);
    }

    #[test]
    fn spending_is_per_site() {
        let mut b = bursts_of(512);
        // Site 8: classes 10 and 11, 256 bits each; 11 tiles.
        for class in [10, 11] {
            b.start(8, class, class, PAGE_BITS);
            b.placed(class, 256);
        }
        assert_eq!((b.credit(3), b.credit(11)), (8, 2));
        b.spend(11, 2);
        assert_eq!((b.credit(3), b.credit(11)), (8, 0));
        // A class that does not tile has nothing, even if another site's
        // current class does.
        b.start(9, 20, 30, PAGE_BITS);
        assert_eq!(b.credit(20), 0);
    }

    #[test]
    fn the_check_finds_a_site_twice() {
        let mut b = bursts_of(512);
        b.check().unwrap();
        let again = b.sites[0];
        b.sites.push(again);
        assert!(b.check().unwrap_err().contains("twice"));
    }

    #[test]
    fn sites_stay_bounded() {
        let mut b = Bursts::default();
        for i in 0..100u64 {
            b.start(i, i, i, PAGE_BITS);
        }
        assert_eq!(b.sites.len(), SITES);
        assert!(b.sites.iter().all(|s| s.site >= 100 - SITES as u64));
        b.check().unwrap();
    }
}
