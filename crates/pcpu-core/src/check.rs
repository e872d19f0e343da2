//! The executable invariant checker: a full consistency check of every chunk
//! and of the global counters (the oracles of the reference, section 9).
//! O(map size) per chunk: tests run it after every operation.

use alloc::format;
use alloc::string::String;

use crate::allocator::Allocator;
use crate::chunk::{Chunk, ChunkKind};
use crate::slots::Entry;

/// A violated invariant, described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantError(pub String);

impl core::fmt::Display for InvariantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "percpu invariant violated: {}", self.0)
    }
}

impl core::error::Error for InvariantError {}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(InvariantError(format!($($arg)*)));
        }
    };
}

/// Longest clear run in `[lo, hi)` of the alloc map.
fn max_free_run(c: &Chunk, lo: usize, hi: usize) -> usize {
    c.alloc_map
        .clear_runs(lo, hi)
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
}

impl Chunk {
    /// Check this chunk's invariants (see the type's docs).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let bb = self.block_bits as usize;
        let map_bits = self.map_bits as usize;
        ensure!(self.md_blocks.len() == self.nr_pages, "md_blocks length");
        let hidden = (self.start_offset / 4 + self.end_offset / 4) as usize;
        let set = self.alloc_map.count_ones_in(0, map_bits);
        ensure!(
            self.free_bytes as usize == (map_bits - set) * 4,
            "free_bytes {} != 4 * clear bits {}",
            self.free_bytes,
            map_bits - set
        );
        ensure!(set >= hidden, "hidden bits not allocated");
        if let Some(cached) = &self.cached {
            ensure!(cached.len() == map_bits, "cached map length");
            let mut i = cached.find_next_bit(map_bits, 0);
            while i < map_bits {
                ensure!(
                    self.alloc_map.test(i) && self.bound_map.test(i),
                    "cached bit {i} starts no live allocation"
                );
                i = cached.find_next_bit(map_bits, i + 1);
            }
        }
        // Bound map: no bound bit strictly inside an allocation; every
        // allocated run is covered by bound-delimited allocations.
        let mut pos = (self.start_offset / 4) as usize;
        let end_managed = map_bits - (self.end_offset / 4) as usize;
        while pos < end_managed {
            if self.alloc_map.test(pos) {
                ensure!(
                    self.bound_map.test(pos),
                    "allocated bit {pos} starts no allocation"
                );
                let e = self.bound_map.find_next_bit(map_bits + 1, pos + 1);
                ensure!(
                    e <= end_managed || e == map_bits,
                    "allocation at {pos} runs past the region"
                );
                ensure!(
                    self.alloc_map.count_ones_in(pos, e) == e - pos,
                    "allocation [{pos},{e}) has clear bits"
                );
                pos = e;
            } else {
                pos = self.alloc_map.find_next_bit(end_managed, pos);
            }
        }
        // Block hints.
        let mut empty = 0;
        // The kernel's block refresh (`pcpu_block_refresh_hint`) rescans
        // only past a promoted scan hint, so a block's `left_free` can stay
        // above its real leading free run after an allocation inside it
        // (DESIGN.md §8, "stale left_free"); the chunk refresh then stitches
        // that stale run to the previous block's right edge. The chunk hint
        // may over-estimate by the largest such excess and no more.
        let mut stale_left = 0;
        for (i, b) in self.md_blocks.iter().enumerate() {
            let lo = i * bb;
            let hi = lo + bb;
            let true_max = max_free_run(self, lo, hi) as i32;
            let fully_free = true_max == self.block_bits;
            ensure!(b.nr_bits == self.block_bits, "block {i} nr_bits");
            ensure!(
                b.contig_hint <= true_max,
                "block {i} contig_hint {} > true max {true_max}",
                b.contig_hint
            );
            ensure!(
                (b.contig_hint == self.block_bits) == fully_free,
                "block {i}: contig_hint {} disagrees with fully-free {fully_free}",
                b.contig_hint
            );
            if b.contig_hint > 0 {
                let s = lo + b.contig_hint_start as usize;
                ensure!(
                    self.alloc_map.count_ones_in(s, s + b.contig_hint as usize) == 0,
                    "block {i}: contig hint region [{s}, +{}) not free",
                    b.contig_hint
                );
            }
            if b.scan_hint > 0 {
                // `BlockMd`'s invariant: the kernel's "scan_hint_start >
                // contig_hint_start iff equal" does not hold under its own
                // rules, so only what the allocator relies on is checked.
                ensure!(
                    b.scan_hint <= b.contig_hint,
                    "block {i}: scan_hint > contig_hint"
                );
                let s = lo + b.scan_hint_start as usize;
                ensure!(
                    self.alloc_map.count_ones_in(s, s + b.scan_hint as usize) == 0,
                    "block {i}: scan hint region not free"
                );
            }
            let lead = self.alloc_map.find_next_bit(hi, lo) - lo;
            stale_left = stale_left.max(b.left_free - lead as i32);
            let first_free = self.alloc_map.find_next_zero_bit(hi, lo) - lo;
            ensure!(
                b.first_free as usize <= first_free,
                "block {i}: first_free {} after the first free bit {first_free}",
                b.first_free
            );
            if fully_free && self.populated.test(i) {
                empty += 1;
            }
            // What `room_on_used_pages` counts on: used pages are populated.
            ensure!(
                fully_free || self.populated.test(i),
                "block {i} holds allocations but is not populated"
            );
        }
        ensure!(
            self.nr_empty_pop_pages == empty,
            "chunk nr_empty_pop_pages {} != recount {empty}",
            self.nr_empty_pop_pages
        );
        ensure!(
            self.nr_populated == self.populated.count_ones_in(0, self.nr_pages),
            "nr_populated {} != popcount",
            self.nr_populated
        );
        let true_max = max_free_run(self, 0, map_bits) as i32;
        // A stale `left_free` may since have been corrected by an allocation
        // in its block that did not touch the chunk hint's region (so the
        // chunk hint was not refreshed), taking `stale_left` back to 0 while
        // the chunk hint keeps what was stitched from it. What it claims then
        // still has that shape:
        let hint = self.chunk_md.contig_hint;
        let stitched = hint > 0 && {
            let start = self.chunk_md.contig_hint_start;
            let end = start + hint;
            let last_block = (end - 1) / bb as i32 * bb as i32;
            // A stitch: the run starts in an earlier block (a previous
            // block's `right_free`), its tail is a block's leading part
            // shorter than the block (a stale `left_free` is below the
            // block size), and that tail's first bit is free (an allocation
            // covering a block's first bit always zeroes its `left_free`;
            // one inside the hint's region refreshes the hint).
            start < last_block
                && end <= map_bits as i32
                && end - last_block < bb as i32
                && self
                    .alloc_map
                    .count_ones_in(start as usize, last_block as usize + 1)
                    == 0
        };
        ensure!(
            hint <= true_max + stale_left || stitched,
            "chunk contig_hint {hint} over-estimates the largest free run {true_max}"
        );
        let first = self.alloc_map.find_next_zero_bit(map_bits, 0);
        ensure!(
            self.chunk_md.first_free as usize <= first,
            "chunk first_free {} after first free bit {first}",
            self.chunk_md.first_free
        );
        ensure!(
            self.kind == ChunkKind::Dynamic || self.nr_populated == self.nr_pages,
            "first/reserved chunk lost pages"
        );
        Ok(())
    }
}

impl Allocator {
    /// Full consistency check: every chunk, slot membership, isolation, and
    /// the global counters. Call outside a two-phase window and outside a
    /// balance run (between `balance_start` and the run's end, detached and
    /// isolated chunks are off their lists on purpose).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        ensure!(
            self.open_run.is_none(),
            "a balance run was started and neither ended nor aborted"
        );
        let mut empty = 0i32;
        let mut empty_all = 0i32;
        let mut populated = 0usize;
        let fc = self.geo.first_chunk();
        for (i, e) in self.arena.iter().enumerate() {
            let Entry::Live(c) = e else { continue };
            let id = i as u32;
            c.check_invariants()
                .map_err(|e| InvariantError(format!("chunk {id}: {}", e.0)))?;
            if Some(id) != self.reserved && !c.isolated {
                empty += c.nr_empty_pop_pages;
            }
            // Only a balance run holds a chunk detached or under reclaim.
            ensure!(
                !c.detached && !c.reclaiming,
                "chunk {id}: detached={} reclaiming={} outside a balance run",
                c.detached,
                c.reclaiming
            );
            if Some(id) != self.reserved {
                empty_all += c.nr_empty_pop_pages;
            }
            if c.kind == ChunkKind::Dynamic {
                populated += c.nr_populated;
            }
            for (page, &stamp) in c.depop_stamp.iter().enumerate() {
                ensure!(
                    stamp == 0 || (!c.populated.test(page) && stamp <= self.reclaim_clock),
                    "chunk {id} page {page}: refault stamp {stamp} on a populated page or \
                     ahead of the reclaim clock {}",
                    self.reclaim_clock
                );
            }
            match self.lists.slot_of(id) {
                None => ensure!(Some(id) == self.reserved, "chunk {id} is on no slot list"),
                Some(slot) => {
                    let slot = slot as usize;
                    ensure!(Some(id) != self.reserved, "reserved chunk on a slot list");
                    let isolated_slot =
                        slot == self.layout.sidelined || slot == self.layout.to_depopulate;
                    ensure!(
                        c.isolated == isolated_slot,
                        "chunk {id}: isolated={} but in slot {slot}",
                        c.isolated
                    );
                    if !isolated_slot && slot != 0 {
                        ensure!(
                            slot == self.layout.chunk_slot(c),
                            "chunk {id} in slot {slot}, expected {}",
                            self.layout.chunk_slot(c)
                        );
                    }
                    ensure!(
                        self.lists.iter(slot).any(|x| x == id),
                        "chunk {id} not found in its list"
                    );
                }
            }
            let full = c.free_bytes == self.geo.unit_size() as i32;
            if c.kind == ChunkKind::Dynamic && full && !c.isolated {
                ensure!(
                    self.lists.slot_of(id) == Some(self.layout.free as u16),
                    "fully free chunk {id} not in the free slot"
                );
            }
        }
        let listed: usize = (0..self.layout.nr_slots).map(|s| self.lists.len(s)).sum();
        ensure!(
            listed == self.nr_chunks() - self.reserved.is_some() as usize,
            "list lengths"
        );
        ensure!(
            self.nr_empty_pop_pages == empty,
            "global nr_empty_pop_pages {} != sum {empty}",
            self.nr_empty_pop_pages
        );
        ensure!(
            self.nr_empty_all == empty_all,
            "nr_empty_all {} != sum {empty_all}",
            self.nr_empty_all
        );
        let base = (fc.static_size + fc.reserved_size + fc.dyn_size) / self.geo.page_size();
        ensure!(
            self.nr_populated == base + populated,
            "global nr_populated {} != {}",
            self.nr_populated,
            base + populated
        );
        self.classes
            .check(self.geo.block_bits() as i32)
            .map_err(InvariantError)?;
        let marked = self
            .arena
            .iter()
            .filter_map(Entry::chunk)
            .filter(|c| c.depopulate_mark)
            .count();
        ensure!(marked == self.rfc_nr_marked, "rfc marked count");
        ensure!(
            self.stats.nr_chunks as usize == self.nr_chunks() - self.reserved.is_some() as usize,
            "stats nr_chunks"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::chunk::{Chunk, ChunkKind};

    /// 8 populated pages of 256 bits each, filled with 1-bit allocations.
    fn full_chunk() -> Chunk {
        let mut c = Chunk::new(ChunkKind::Dynamic, 1, 8, 256);
        c.mark_populated(0..8);
        while let Some(start) = c.find_block_fit(1, 1, false) {
            if c.alloc_area(1, 1, start).is_none() {
                break;
            }
        }
        assert_eq!(c.free_bytes, 0);
        c.check_invariants().unwrap();
        c
    }

    /// A full chunk whose hint claims a whole free page at bit 0: corrupt
    /// (the chunk has no free bit at all), though its run starts and ends
    /// in one block as a stitched one's tail does.
    #[test]
    fn a_full_chunk_claiming_a_free_page_is_rejected() {
        let mut c = full_chunk();
        c.chunk_md.contig_hint_start = 0;
        c.chunk_md.contig_hint = c.block_bits;
        assert!(
            c.check_invariants().is_err(),
            "contig_hint {} at 0 accepted in a chunk with no free bit",
            c.block_bits
        );
    }

    /// Only page 0 free: a hint of a page and a half from bit 0 runs into
    /// page 1, which is fully allocated and whose `left_free` is 0 (no stale
    /// run to stitch): corrupt.
    #[test]
    fn a_hint_running_into_a_full_page_is_rejected() {
        let mut c = full_chunk();
        let bb = c.block_bits;
        for off in 0..bb {
            c.free_area(off, 1);
        }
        c.check_invariants().unwrap();
        assert_eq!(c.md_blocks[1].left_free, 0);
        c.chunk_md.contig_hint_start = 0;
        c.chunk_md.contig_hint = bb + bb / 2;
        assert!(
            c.check_invariants().is_err(),
            "contig_hint {} accepted with a largest free run of {bb}",
            bb + bb / 2
        );
    }
}
