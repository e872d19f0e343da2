//! `Policy::backfill`'s search: the first free run beside live objects that
//! a task class opens its region in (`classes.rs`).

use crate::chunk::Chunk;

impl Chunk {
    /// First aligned run of `bits` free bits from bit `lo` that starts on a
    /// page holding allocations and is followed by at least `room` free
    /// bits (itself included): a hole beside live objects. The free runs
    /// are judged one by one, each at its first aligned fit, as
    /// [`Chunk::first_fit_in`] finds them; pages none of whose runs can
    /// qualify are skipped on their block hints: each of their runs ends
    /// inside the page (its last bit or the next page's first is in use)
    /// and is shorter than `room` (the page's `contig_hint`, exact for a
    /// block, is). A fragmented chunk is then crossed a page at a time
    /// rather than a hole at a time.
    pub(crate) fn first_fit_beside_used(
        &self,
        lo: i32,
        bits: i32,
        align: i32,
        room: i32,
    ) -> Option<i32> {
        let bb = self.block_bits;
        let free = |bit: i32| bit < self.map_bits && !self.alloc_map.test(bit as usize);
        let mut pos = lo.max(0);
        loop {
            // Skip the pages none of whose runs can qualify.
            loop {
                let page = (pos / bb) as usize;
                if page >= self.nr_pages {
                    return None;
                }
                let md = &self.md_blocks[page];
                let end_of_page = (page as i32 + 1) * bb;
                let crosses = free(end_of_page - 1) && free(end_of_page);
                if md.is_empty_block() || md.contig_hint >= room || crosses {
                    break;
                }
                pos = end_of_page;
            }
            let off = self.first_fit_in(pos, self.map_bits, bits, align)?;
            let end = self
                .alloc_map
                .find_next_bit(self.map_bits as usize, off as usize) as i32;
            if end - off >= room && self.is_page_used((off / bb) as usize) {
                return Some(off);
            }
            // The next free run (`end` is busy, or the end of the map).
            pos = end.max(off + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use crate::chunk::{Chunk, ChunkKind};

    /// The same search, a run at a time.
    fn reference(c: &Chunk, lo: i32, bits: i32, align: i32, room: i32) -> Option<i32> {
        let mut pos = lo;
        loop {
            let off = c.first_fit_in(pos, c.map_bits, bits, align)?;
            let end = c.alloc_map.find_next_bit(c.map_bits as usize, off as usize) as i32;
            if end - off >= room && c.is_page_used((off / c.block_bits) as usize) {
                return Some(off);
            }
            pos = end.max(off + 1);
        }
    }

    /// A run that leaves its page by one bit is judged whole: the page's own
    /// part (`contig_hint`) is one bit short of `room`, and the page is not
    /// skipped.
    #[test]
    fn a_run_crossing_into_the_next_page_by_one_bit_counts() {
        let mut c = Chunk::new(ChunkKind::Dynamic, 1, 8, 256);
        let bb = c.block_bits;
        let mut offs = Vec::new();
        while let Some(start) = c.find_block_fit(1, 1, false) {
            let Some((off, _)) = c.alloc_area(1, 1, start) else {
                break;
            };
            offs.push(off);
        }
        assert_eq!(offs.len(), c.map_bits as usize);
        let k = 40;
        for off in bb - k..=bb {
            c.free_area(off, 1);
        }
        assert_eq!(c.first_fit_beside_used(0, 1, 1, k + 1), Some(bb - k));
        assert_eq!(c.first_fit_beside_used(0, 1, 1, k + 2), None);
        assert_eq!(reference(&c, 0, 1, 1, k + 1), Some(bb - k));
    }

    proptest! {
        /// Allocations of 1 to 300 bits packed from the start, some freed:
        /// the page-skipping search finds what the run-by-run one does.
        #[test]
        fn skipping_pages_finds_the_same_run(
            sizes in prop::collection::vec((1i32..300, any::<bool>()), 1..200),
            lo in 0i32..4096,
            bits in 1i32..64,
            align_shift in 0u32..4,
            room in 1i32..700,
        ) {
            let mut c = Chunk::new(ChunkKind::Dynamic, 1, 8, 256);
            let mut live = Vec::new();
            for &(n, keep) in &sizes {
                let Some(start) = c.find_block_fit(n, 1, false) else { break };
                let Some((off, _)) = c.alloc_area(n, 1, start) else { break };
                live.push((off, n, keep));
            }
            for &(off, n, keep) in &live {
                if !keep {
                    c.free_area(off, n);
                }
            }
            let align = 1 << align_shift;
            prop_assert_eq!(
                c.first_fit_beside_used(lo, bits, align, room),
                reference(&c, lo, bits, align, room)
            );
        }
    }
}
