//! One chunk: the allocation map, the boundary map, the per-page block hints,
//! the chunk-wide hint and the populated-page bitmap (`struct pcpu_chunk`), with
//! the kernel's hint-maintenance algorithms (mm/percpu.c).
//!
//! Everything here is bookkeeping over bit offsets: one bit is
//! [`MIN_ALLOC_SIZE`](crate::MIN_ALLOC_SIZE) bytes, one block is one page.

use alloc::vec::Vec;

use crate::bitmap::Bitmap;
use crate::block::{align_up, BlockMd};
use crate::policy::Fit;
use crate::MIN_ALLOC_SIZE;

/// What a chunk serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// The dynamic area of the first chunk: pre-populated, never depopulated.
    First,
    /// The reserved area of the first chunk: only reserved allocations.
    Reserved,
    /// A chunk created on demand.
    Dynamic,
}

/// A chunk's bookkeeping (`struct pcpu_chunk`).
///
/// # Invariants
/// - `alloc_map` is the ground truth: a set bit is allocated or hidden
///   (`start_offset` / `end_offset`).
/// - `bound_map` (`map_bits + 1` bits) has a bit at the first bit of every live
///   allocation and at the bit just past its end; no bit strictly inside one.
/// - `free_bytes == 4 * (clear bits of alloc_map)`.
/// - `md_blocks[i]` describes bits `[i * block_bits, (i + 1) * block_bits)`.
/// - `nr_populated == |populated|` and `nr_empty_pop_pages ==
///   |{i: populated[i] && md_blocks[i] entirely free}|`, outside the
///   non-atomic allocation window (an area allocated in unpopulated pages is
///   counted as "no longer empty" before the pages are populated).
/// - `isolated` iff the chunk is in the sidelined or to_depopulate slot.
///
/// See [`Chunk::check_invariants`].
#[derive(Clone, Debug)]
pub struct Chunk {
    pub(crate) kind: ChunkKind,
    /// Creation order (0 = reserved/first chunks at setup).
    pub(crate) serial: u64,
    pub(crate) nr_pages: usize,
    pub(crate) block_bits: i32,
    /// `log2(block_bits)`: block index of a bit is `bit >> block_shift`.
    pub(crate) block_shift: u32,
    pub(crate) map_bits: i32,
    pub(crate) alloc_map: Bitmap,
    pub(crate) bound_map: Bitmap,
    pub(crate) md_blocks: Vec<BlockMd>,
    pub(crate) chunk_md: BlockMd,
    pub(crate) populated: Bitmap,
    /// `pcpu` refault-aware reserve: per page, the allocator's reclaim clock
    /// when reclaim last depopulated it (0: not since it was last populated).
    pub(crate) depop_stamp: Vec<u64>,
    /// Starts of the live allocations held by a [`Magazine`](crate::Magazine)
    /// (made at the chunk's first such area): only their magazine may hand
    /// them out or free them.
    pub(crate) cached: Option<Bitmap>,
    pub(crate) nr_populated: usize,
    pub(crate) nr_empty_pop_pages: i32,
    pub(crate) free_bytes: i32,
    pub(crate) start_offset: i32,
    pub(crate) end_offset: i32,
    pub(crate) immutable: bool,
    pub(crate) isolated: bool,
    /// seed-rfc policy: the chunk is marked as a depopulation target.
    pub(crate) depopulate_mark: bool,
    /// Off every slot list while a balance run works on it (seed-rfc shrink,
    /// the RFC's `list_del_init`): allocations cannot find it and frees do
    /// not relocate it.
    pub(crate) detached: bool,
    /// The balance run is depopulating this chunk right now (the head of
    /// `to_depopulate` that reclaim took); nothing may allocate from it.
    pub(crate) reclaiming: bool,
    /// A free queued the chunk for reclaim again while it was being reclaimed
    /// (only possible when the embedder drops its lock during page work).
    pub(crate) requeued: bool,
    /// percpu_stats: live allocations.
    pub(crate) nr_alloc: u64,
    /// percpu_stats: largest allocation ever made from this chunk.
    pub(crate) max_alloc_size: u64,
}

// === impl Chunk: construction ===

impl Chunk {
    /// A new, fully free and fully unpopulated chunk (`pcpu_alloc_chunk`).
    pub(crate) fn new(kind: ChunkKind, serial: u64, nr_pages: usize, block_bits: i32) -> Self {
        let map_bits = nr_pages as i32 * block_bits;
        Chunk {
            kind,
            serial,
            nr_pages,
            block_bits,
            block_shift: block_bits.trailing_zeros(),
            map_bits,
            alloc_map: Bitmap::new(map_bits as usize),
            bound_map: Bitmap::new(map_bits as usize + 1),
            md_blocks: alloc::vec![BlockMd::new_free(block_bits); nr_pages],
            chunk_md: BlockMd::new_free(map_bits),
            populated: Bitmap::new(nr_pages),
            depop_stamp: alloc::vec![0; nr_pages],
            cached: None,
            nr_populated: 0,
            nr_empty_pop_pages: 0,
            free_bytes: map_bits * crate::MIN_ALLOC_SIZE as i32,
            start_offset: 0,
            end_offset: 0,
            immutable: false,
            isolated: false,
            depopulate_mark: false,
            detached: false,
            reclaiming: false,
            requeued: false,
            nr_alloc: 0,
            max_alloc_size: 0,
        }
    }

    /// A first-chunk region serving `map_size` bytes starting `start_offset`
    /// bytes into its first page (`pcpu_alloc_first_chunk`): pre-populated,
    /// immutable, with the head and tail hidden.
    pub(crate) fn new_region(
        kind: ChunkKind,
        start_offset: usize,
        map_size: usize,
        page_size: usize,
    ) -> Self {
        let block_bits = (page_size / crate::MIN_ALLOC_SIZE) as i32;
        let region = (start_offset + map_size).div_ceil(page_size) * page_size;
        let nr_pages = region / page_size;
        let mut c = Chunk::new(kind, 0, nr_pages, block_bits);
        c.start_offset = start_offset as i32;
        c.end_offset = (region - start_offset - map_size) as i32;
        c.immutable = true;
        c.populated.fill();
        c.nr_populated = nr_pages;
        c.nr_empty_pop_pages = nr_pages as i32;
        c.free_bytes = map_size as i32;
        if c.start_offset != 0 {
            let bits = c.start_offset / 4;
            c.alloc_map.set_range(0, bits as usize);
            c.bound_map.set(0);
            c.bound_map.set(bits as usize);
            c.chunk_md.first_free = bits;
            let d = c.block_update_hint_alloc(0, bits);
            c.nr_empty_pop_pages += d;
        }
        if c.end_offset != 0 {
            let bits = c.end_offset / 4;
            let start = c.map_bits - bits;
            c.alloc_map.set_range(start as usize, bits as usize);
            c.bound_map.set((start_offset + map_size) / 4);
            c.bound_map.set(c.map_bits as usize);
            let d = c.block_update_hint_alloc(start, bits);
            c.nr_empty_pop_pages += d;
        }
        c
    }
}

// === impl Chunk: accessors ===

impl Chunk {
    /// What this chunk serves.
    pub fn kind(&self) -> ChunkKind {
        self.kind
    }
    /// Creation order.
    pub fn serial(&self) -> u64 {
        self.serial
    }
    /// Pages per unit served by this chunk.
    pub fn nr_pages(&self) -> usize {
        self.nr_pages
    }
    /// Populated pages per unit.
    pub fn nr_populated(&self) -> usize {
        self.nr_populated
    }
    /// Populated pages that hold no allocation.
    pub fn nr_empty_pop_pages(&self) -> usize {
        self.nr_empty_pop_pages.max(0) as usize
    }
    /// At least `n` empty populated pages, as the kernel's `int` comparisons
    /// judge it: false while the count is negative (areas placed on pages
    /// not yet populated, which `pcpu_block_update_hint_alloc` already took
    /// off), even for `n == 0`.
    #[inline]
    pub(crate) fn empty_pop_pages_at_least(&self, n: usize) -> bool {
        usize::try_from(self.nr_empty_pop_pages).is_ok_and(|e| e >= n)
    }
    /// Free bytes in the managed region.
    pub fn free_bytes(&self) -> usize {
        self.free_bytes as usize
    }
    /// Is page `page` populated?
    ///
    /// # Panics
    /// If `page >= self.nr_pages()`.
    pub fn is_page_populated(&self, page: usize) -> bool {
        self.populated.test(page)
    }
    /// Does page `page` hold at least one allocated (or hidden) byte?
    ///
    /// # Panics
    /// If `page >= self.nr_pages()`.
    pub fn is_page_used(&self, page: usize) -> bool {
        !self.md_blocks[page].is_empty_block()
    }
    /// Is page `page` clear in the allocation map itself (no allocated or
    /// hidden bit), the ground truth behind the block hints? For a check
    /// that must not rest on the hints, such as the last one before
    /// discarding a page's memory.
    ///
    /// # Panics
    /// If `page >= self.nr_pages()`.
    pub fn is_page_clear(&self, page: usize) -> bool {
        assert!(page < self.nr_pages, "page {page} of {}", self.nr_pages);
        let bb = self.block_bits as usize;
        self.alloc_map.count_ones_in(page * bb, (page + 1) * bb) == 0
    }
    /// Free bytes on the pages that hold allocations, in whole pages,
    /// rounded down: room for small requests that needs no population and no
    /// empty page. Constant time: a page that holds allocations is always
    /// populated (checked by `check_invariants`), so the empty pages are the
    /// populated empty ones and the unpopulated ones.
    pub fn room_on_used_pages(&self) -> usize {
        let page = self.block_bits as usize * MIN_ALLOC_SIZE;
        let empty = self.nr_empty_pop_pages.max(0) as usize + (self.nr_pages - self.nr_populated);
        (self.free_bytes.max(0) as usize).saturating_sub(empty * page) / page
    }
    /// Is the chunk isolated (sidelined or queued for depopulation)?
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }
    /// Live allocations in this chunk.
    pub fn nr_alloc(&self) -> u64 {
        self.nr_alloc
    }
    /// Chunk-wide hints.
    pub fn chunk_md(&self) -> &BlockMd {
        &self.chunk_md
    }
    /// Bytes hidden at the start of the region.
    pub fn start_offset(&self) -> usize {
        self.start_offset as usize
    }
    /// Bytes hidden at the end of the region.
    pub fn end_offset(&self) -> usize {
        self.end_offset as usize
    }

    #[inline]
    fn block_index(&self, bit: i32) -> usize {
        (bit >> self.block_shift) as usize
    }
    #[inline]
    fn block_off(&self, bit: i32) -> i32 {
        bit & (self.block_bits - 1)
    }
    #[inline]
    fn block_base(&self, index: usize) -> i32 {
        index as i32 * self.block_bits
    }
}

// === impl Chunk: hint scans ===

impl Chunk {
    /// `pcpu_next_md_free_region`: next free run described by the block hints,
    /// stitching runs across blocks. Returns `(bit_off, bits)`; `bit_off >=
    /// map_bits` ends the walk.
    #[inline]
    fn next_md_free_region(&self, mut bit_off: i32) -> (i32, i32) {
        let bb = self.block_bits;
        let blocks = &self.md_blocks[..self.nr_pages];
        let mut i = self.block_index(bit_off);
        let mut block_off = self.block_off(bit_off);
        while let Some(block) = blocks.get(i) {
            let bits = block.contig_hint;
            if bits != 0
                && block.contig_hint_start >= block_off
                && bits + block.contig_hint_start < bb
            {
                return (self.block_base(i) + block.contig_hint_start, bits);
            }
            block_off = 0;
            let mut bits = block.right_free;
            bit_off = (i as i32 + 1) * bb - block.right_free;
            i += 1;
            if bits != 0 {
                // Stitch the run across the following blocks.
                for next in &blocks[i..] {
                    bits += next.left_free;
                    if next.left_free != bb {
                        break;
                    }
                }
                return (bit_off, bits);
            }
        }
        (bit_off, 0)
    }

    /// `pcpu_next_fit_region`: next candidate start for `alloc_bits` at
    /// `align`; `bit_off == map_bits` means none.
    #[inline(always)]
    fn next_fit_region(&self, alloc_bits: i32, align: i32, mut bit_off: i32) -> (i32, i32) {
        let mut i = self.block_index(bit_off);
        let mut block_off = self.block_off(bit_off);
        let mut bits = 0;
        while i < self.nr_pages {
            let block = &self.md_blocks[i];
            if bits != 0 {
                bits += block.left_free;
                if bits >= alloc_bits {
                    return (bit_off, bits);
                }
                if block.left_free == self.block_bits {
                    i += 1;
                    continue;
                }
            }
            bits = align_up(block.contig_hint_start, align) - block.contig_hint_start;
            if block.contig_hint != 0
                && block.contig_hint_start >= block_off
                && block.contig_hint >= bits + alloc_bits
            {
                let start = block.next_hint(alloc_bits);
                bits += alloc_bits + block.contig_hint_start - start;
                return (self.block_base(i) + start, bits);
            }
            block_off = 0;
            let off = align_up(self.block_bits - block.right_free, align);
            bits = self.block_bits - off;
            bit_off = self.block_base(i) + off;
            if bits >= alloc_bits {
                return (bit_off, bits);
            }
            i += 1;
        }
        (self.map_bits, bits)
    }

    /// `pcpu_is_populated`: are the pages under `[bit_off, bit_off + bits)`
    /// populated? `Err(next)` gives the bit offset past the unpopulated run.
    fn is_populated(&self, bit_off: i32, bits: i32, page_bits: i32) -> Result<(), i32> {
        let shift = page_bits.trailing_zeros();
        let start = (bit_off >> shift) as usize;
        let end = ((bit_off + bits + page_bits - 1) >> shift) as usize;
        let s = self.populated.find_next_zero_bit(end, start);
        if s >= end {
            return Ok(());
        }
        let e = self.populated.find_next_bit(end, s + 1);
        Err(e as i32 * page_bits)
    }

    /// `pcpu_find_block_fit`: bit offset to start the area search for
    /// `alloc_bits` at `align` bits, or `None`.
    #[doc(alias = "pcpu_find_block_fit")]
    #[inline]
    pub(crate) fn find_block_fit(
        &self,
        alloc_bits: i32,
        align: i32,
        pop_only: bool,
    ) -> Option<i32> {
        if !self.chunk_md.check_hint(alloc_bits, align) {
            return None;
        }
        let mut bit_off = self.chunk_md.next_hint(alloc_bits);
        let (mut off, mut bits) = self.next_fit_region(alloc_bits, align, bit_off);
        while off < self.map_bits {
            if !pop_only {
                break;
            }
            match self.is_populated(off, bits, self.block_bits) {
                Ok(()) => break,
                Err(next) => bit_off = next,
            }
            (off, bits) = self.next_fit_region(alloc_bits, align, bit_off);
        }
        (off < self.map_bits).then_some(off)
    }

    /// `pcpu_find_zero_area`: first aligned run of `nr` clear bits in
    /// `[start, size)`, remembering the largest run skipped. Returns a value
    /// `>= size` when nothing fits.
    #[inline(always)]
    fn find_zero_area(
        &self,
        size: usize,
        mut start: usize,
        nr: usize,
        align_mask: usize,
    ) -> (usize, usize, usize) {
        let (mut largest_off, mut largest_bits) = (0usize, 0usize);
        loop {
            let mut index = self.alloc_map.find_next_zero_bit(size, start);
            index = (index + align_mask) & !align_mask;
            let end = index + nr;
            if end > size {
                return (end, largest_off, largest_bits);
            }
            let i = self.alloc_map.find_next_bit(end, index);
            if i < end {
                let area_bits = i - index;
                if area_bits > largest_bits
                    || (area_bits == largest_bits
                        && largest_off != 0
                        && (index == 0 || index.trailing_zeros() > largest_off.trailing_zeros()))
                {
                    largest_off = index;
                    largest_bits = area_bits;
                }
                start = i + 1;
                continue;
            }
            return (index, largest_off, largest_bits);
        }
    }
}

// === impl Chunk: area allocation and free ===

/// Result of [`Chunk::alloc_area`] / [`Chunk::free_area`]: the change of the
/// chunk's empty populated page count, to be mirrored globally by the caller.
pub(crate) type EmptyDelta = i32;

impl Chunk {
    /// `pcpu_alloc_area` without the relocation: allocate `alloc_bits` at
    /// `align` searching from `start`. Returns the bit offset and the empty
    /// page delta (already applied to `nr_empty_pop_pages`).
    #[doc(alias = "pcpu_alloc_area")]
    #[inline(always)]
    pub(crate) fn alloc_area(
        &mut self,
        alloc_bits: i32,
        align: i32,
        start: i32,
    ) -> Option<(i32, EmptyDelta)> {
        let align_mask = (align.max(1) - 1) as usize;
        let end = (start + alloc_bits + self.block_bits).min(self.map_bits) as usize;
        let (bit_off, area_off, area_bits) =
            self.find_zero_area(end, start as usize, alloc_bits as usize, align_mask);
        if bit_off >= end {
            return None;
        }
        if area_bits != 0 {
            self.block_update_scan(area_off as i32, area_bits as i32);
        }
        let bits = alloc_bits as usize;
        self.alloc_map.set_run(bit_off, bits);
        self.bound_map.mark_bounds(bit_off, bits);
        self.free_bytes -= alloc_bits * 4;
        let bit_off = bit_off as i32;
        if bit_off == self.chunk_md.first_free {
            self.chunk_md.first_free = self
                .alloc_map
                .find_next_zero_bit(self.map_bits as usize, (bit_off + alloc_bits) as usize)
                as i32;
        }
        let delta = self.block_update_hint_alloc(bit_off, alloc_bits);
        self.nr_empty_pop_pages += delta;
        Some((bit_off, delta))
    }

    /// First aligned run of `bits` free bits inside `[lo, hi)`.
    pub(crate) fn first_fit_in(&self, lo: i32, hi: i32, bits: i32, align: i32) -> Option<i32> {
        let (hi, bits) = (hi.min(self.map_bits) as usize, bits as usize);
        let mask = (align.max(1) - 1) as usize;
        let mut pos = lo.max(0) as usize;
        loop {
            let i = self.alloc_map.find_next_zero_bit(hi, pos);
            let i = (i + mask) & !mask;
            if i + bits > hi {
                return None;
            }
            let busy = self.alloc_map.find_next_bit(i + bits, i);
            if busy >= i + bits {
                return Some(i as i32);
            }
            pos = busy + 1;
        }
    }

    /// Start of the smallest free run inside `[lo, hi)` that holds `bits`
    /// bits at `align` (the lowest such run among equals), aligned: best fit.
    pub(crate) fn best_fit_in(&self, lo: i32, hi: i32, bits: i32, align: i32) -> Option<i32> {
        let (hi, bits) = (hi.min(self.map_bits) as usize, bits as usize);
        let mask = (align.max(1) - 1) as usize;
        let mut pos = lo.max(0) as usize;
        let mut best: Option<(usize, usize)> = None; // (run length, aligned start)
        while pos < hi {
            let s = self.alloc_map.find_next_zero_bit(hi, pos);
            if s >= hi {
                break;
            }
            let e = self.alloc_map.find_next_bit(hi, s);
            let a = (s + mask) & !mask;
            if a + bits <= e && best.map_or(true, |(len, _)| e - s < len) {
                best = Some((e - s, a));
                if e - s == bits {
                    break; // nothing fits more tightly
                }
            }
            pos = e + 1;
        }
        best.map(|(_, a)| a as i32)
    }

    /// Where [`Chunk::alloc_area`] starts its search under `fit`, given the
    /// start [`Chunk::find_block_fit`] found: that start (first fit, and next
    /// fit once outside the rover's chunk), or the best-fitting run.
    pub(crate) fn fit_start(&self, fit: Fit, alloc_bits: i32, align: i32, start: i32) -> i32 {
        match fit {
            Fit::Best => self
                .best_fit_in(0, self.map_bits, alloc_bits, align)
                .unwrap_or(start),
            Fit::First | Fit::Next => start,
        }
    }

    /// The bit offset [`Chunk::alloc_area`] would choose, without allocating.
    pub(crate) fn probe_area(&self, alloc_bits: i32, align: i32, start: i32) -> Option<i32> {
        let align_mask = (align.max(1) - 1) as usize;
        let end = (start + alloc_bits + self.block_bits).min(self.map_bits) as usize;
        let (bit_off, _, _) =
            self.find_zero_area(end, start as usize, alloc_bits as usize, align_mask);
        (bit_off < end).then_some(bit_off as i32)
    }

    /// The bit offset a request of `alloc_bits` at `align` would take in
    /// this chunk under `fit`, without allocating: the block-hint search
    /// ([`Chunk::find_block_fit`], populated pages only with `pop_only`),
    /// [`Chunk::fit_start`], then [`Chunk::probe_area`].
    pub(crate) fn probe_fit(
        &self,
        fit: Fit,
        alloc_bits: i32,
        align: i32,
        pop_only: bool,
    ) -> Option<i32> {
        let start = self.find_block_fit(alloc_bits, align, pop_only)?;
        let start = self.fit_start(fit, alloc_bits, align, start);
        self.probe_area(alloc_bits, align, start)
    }

    /// Size in bits of the live allocation starting at `bit_off`, or `None`
    /// when `bit_off` is not the start of a live allocation.
    #[inline(always)]
    pub(crate) fn live_area_bits(&self, bit_off: i32) -> Option<i32> {
        let lo = self.start_offset / 4;
        let hi = self.map_bits - self.end_offset / 4;
        if bit_off < lo || bit_off >= hi {
            return None;
        }
        let b = bit_off as usize;
        if !self.alloc_map.test(b) || !self.bound_map.test(b) {
            return None;
        }
        let end = self
            .bound_map
            .find_next_bit(self.map_bits as usize + 1, b + 1);
        Some(end as i32 - bit_off)
    }

    /// `pcpu_free_area` without the relocation: free the live allocation of
    /// `bits` bits starting at `bit_off` (its size as found in the boundary
    /// map by [`Chunk::live_area_bits`]). Returns the empty delta.
    #[doc(alias = "pcpu_free_area")]
    #[inline(always)]
    pub(crate) fn free_area(&mut self, bit_off: i32, bits: i32) -> EmptyDelta {
        debug_assert_eq!(self.live_area_bits(bit_off), Some(bits));
        self.alloc_map.clear_run(bit_off as usize, bits as usize);
        self.free_bytes += bits * 4;
        self.chunk_md.first_free = self.chunk_md.first_free.min(bit_off);
        let delta = self.block_update_hint_free(bit_off, bits);
        self.nr_empty_pop_pages += delta;
        delta
    }
}

// === impl Chunk: hint maintenance ===

impl Chunk {
    /// `pcpu_block_update_scan`: feed a run skipped by the area search to its
    /// block's hints, scanning backwards to recover bits lost to alignment.
    fn block_update_scan(&mut self, bit_off: i32, bits: i32) {
        let mut s_off = self.block_off(bit_off);
        let e_off = s_off + bits;
        if e_off > self.block_bits {
            return;
        }
        let idx = self.block_index(bit_off);
        let base = self.block_base(idx) as usize;
        s_off = match self.alloc_map.find_prev_bit(base, base + s_off as usize) {
            Some(l) => (l - base) as i32 + 1,
            None => 0,
        };
        self.md_blocks[idx].update(s_off, e_off);
    }

    /// `pcpu_chunk_refresh_hint`: rebuild the chunk's contig hint from the
    /// block hints.
    #[inline]
    fn chunk_refresh_hint(&mut self, full_scan: bool) {
        let mut bit_off;
        if !full_scan && self.chunk_md.scan_hint != 0 {
            bit_off = self.chunk_md.scan_hint_start + self.chunk_md.scan_hint;
            self.chunk_md.contig_hint_start = self.chunk_md.scan_hint_start;
            self.chunk_md.contig_hint = self.chunk_md.scan_hint;
            self.chunk_md.scan_hint = 0;
        } else {
            bit_off = self.chunk_md.first_free;
            self.chunk_md.contig_hint = 0;
        }
        let (mut off, mut bits) = self.next_md_free_region(bit_off);
        while off < self.map_bits {
            self.chunk_md.update(off, off + bits);
            bit_off = off + bits + 1;
            if bit_off >= self.map_bits {
                // next_md_free_region would return (bit_off, 0): done.
                break;
            }
            (off, bits) = self.next_md_free_region(bit_off);
        }
    }

    /// `pcpu_block_refresh_hint`: rescan one block. Reproduces the kernel's
    /// behaviour when the promoted scan hint ends at the block's right edge:
    /// nothing is scanned and `right_free` stays 0.
    ///
    /// Called right after `alloc_map` gained an allocation ending at
    /// block-relative bit `alloc_end` (clamped to the block) that overlaps the
    /// block's contig hint. The hint's region was entirely free before that
    /// allocation (a checked invariant), so bits from `max(contig_hint_start,
    /// alloc_end)` to the hint's end are still clear: a run starting there
    /// needs no word-by-word search for its end before the hint's end. The
    /// runs found, and so the `update` calls made, are exactly those of a
    /// full rescan.
    #[inline]
    fn block_refresh_hint(&mut self, index: usize, alloc_end: i32) {
        let base = self.block_base(index) as usize;
        let bb = self.block_bits as usize;
        let block = &mut self.md_blocks[index];
        // Still clear: [known, known_end) (empty when the hint is).
        let known = base + block.contig_hint_start.max(alloc_end) as usize;
        let known_end = base + (block.contig_hint_start + block.contig_hint) as usize;
        let start = if block.scan_hint != 0 {
            let s = block.scan_hint_start + block.scan_hint;
            block.contig_hint_start = block.scan_hint_start;
            block.contig_hint = block.scan_hint;
            block.scan_hint = 0;
            s
        } else {
            block.contig_hint = 0;
            block.first_free
        };
        block.right_free = 0;
        self.alloc_map.for_each_clear_run_known(
            base + start as usize,
            base + bb,
            known..known_end,
            |s, e| block.update((s - base) as i32, (e - base) as i32),
        );
    }

    /// `pcpu_block_update_hint_alloc`. Returns the empty page delta (<= 0).
    #[inline]
    fn block_update_hint_alloc(&mut self, bit_off: i32, bits: i32) -> EmptyDelta {
        let bb = self.block_bits;
        let s_index = self.block_index(bit_off);
        let e_index = self.block_index(bit_off + bits - 1);
        let s_off = self.block_off(bit_off);
        let e_off = self.block_off(bit_off + bits - 1) + 1;
        let mut nr_empty = 0;

        // start block
        {
            let base = self.block_base(s_index) as usize;
            let s_block = &mut self.md_blocks[s_index];
            if s_block.contig_hint == bb {
                nr_empty += 1;
            }
            if s_off == s_block.first_free {
                s_block.first_free = (self
                    .alloc_map
                    .find_next_zero_bit(base + bb as usize, base + (s_off + bits).min(bb) as usize)
                    - base) as i32;
            }
            if s_block.scan_overlaps(s_off, s_off + bits) {
                s_block.scan_hint = 0;
            }
            if s_block.contig_overlaps(s_off, s_off + bits) {
                if s_off == 0 {
                    s_block.left_free = 0;
                }
                self.block_refresh_hint(s_index, (s_off + bits).min(bb));
            } else {
                s_block.left_free = s_block.left_free.min(s_off);
                s_block.right_free = if s_index == e_index {
                    s_block.right_free.min(bb - e_off)
                } else {
                    0
                };
            }
        }

        if s_index != e_index {
            let base = self.block_base(e_index) as usize;
            let mut reset_end = e_index;
            let e_block = &mut self.md_blocks[e_index];
            if e_block.contig_hint == bb {
                nr_empty += 1;
            }
            e_block.first_free = (self
                .alloc_map
                .find_next_zero_bit(base + bb as usize, base + e_off as usize)
                - base) as i32;
            if e_off == bb {
                reset_end = e_index + 1;
            } else {
                if e_off > e_block.scan_hint_start {
                    e_block.scan_hint = 0;
                }
                e_block.left_free = 0;
                if e_off > e_block.contig_hint_start {
                    self.block_refresh_hint(e_index, e_off);
                } else {
                    e_block.right_free = e_block.right_free.min(bb - e_off);
                }
            }
            nr_empty += (e_index - s_index - 1) as i32;
            for block in &mut self.md_blocks[s_index + 1..reset_end] {
                block.scan_hint = 0;
                block.contig_hint = 0;
                block.left_free = 0;
                block.right_free = 0;
            }
        }

        let md = &mut self.chunk_md;
        if md.scan_overlaps(bit_off, bit_off + bits) {
            md.scan_hint = 0;
        }
        if md.contig_overlaps(bit_off, bit_off + bits) {
            self.chunk_refresh_hint(false);
        }
        -nr_empty
    }

    /// `pcpu_block_update_hint_free`. Returns the empty page delta (>= 0).
    ///
    /// Like Linux (5.2 to 6.19 at least), a free smaller than a page inside one
    /// block other than block 0 only lowers the chunk's `first_free`: the
    /// kernel passes a block-relative end to the chunk-level update, which
    /// makes the run length negative (DESIGN.md, "W1").
    #[inline]
    fn block_update_hint_free(&mut self, bit_off: i32, bits: i32) -> EmptyDelta {
        let bb = self.block_bits;
        let s_index = self.block_index(bit_off);
        let e_index = self.block_index(bit_off + bits - 1);
        let s_off = self.block_off(bit_off);
        let e_off = self.block_off(bit_off + bits - 1) + 1;
        let mut nr_empty = 0;

        let s_base = self.block_base(s_index) as usize;
        let e_base = self.block_base(e_index) as usize;
        let s_block = self.md_blocks[s_index];
        let start = if s_off == s_block.contig_hint + s_block.contig_hint_start {
            s_block.contig_hint_start
        } else {
            match self
                .alloc_map
                .find_prev_bit(s_base, s_base + s_off as usize)
            {
                Some(l) => (l - s_base) as i32 + 1,
                None => 0,
            }
        };
        let e_block = self.md_blocks[e_index];
        let end = if e_off == e_block.contig_hint_start {
            e_block.contig_hint_start + e_block.contig_hint
        } else {
            (self
                .alloc_map
                .find_next_bit(e_base + bb as usize, e_base + e_off as usize)
                - e_base) as i32
        };

        let s_end = if s_index == e_index { end } else { bb };
        if start == 0 && s_end == bb {
            nr_empty += 1;
        }
        self.md_blocks[s_index].update(start, s_end);

        if s_index != e_index {
            if end == bb {
                nr_empty += 1;
            }
            self.md_blocks[e_index].update(0, end);
            nr_empty += (e_index - s_index - 1) as i32;
            for block in &mut self.md_blocks[s_index + 1..e_index] {
                *block = BlockMd::new_free(bb);
            }
        }

        if end - start >= bb || s_index != e_index {
            self.chunk_refresh_hint(true);
        } else if s_index == 0 {
            self.chunk_md.update(start, end);
        } else {
            // W1: contig = end - (base + start) < 0; only first_free changes.
            let abs = self.block_base(s_index) + start;
            self.chunk_md.first_free = self.chunk_md.first_free.min(abs);
        }
        nr_empty
    }
}

// === impl Chunk: population ===

impl Chunk {
    /// `pcpu_chunk_populated` (chunk part): mark `pages` populated, all of
    /// which must be unpopulated. Returns the empty page delta.
    pub(crate) fn mark_populated(&mut self, pages: core::ops::Range<usize>) -> EmptyDelta {
        debug_assert_eq!(self.populated.count_ones_in(pages.start, pages.end), 0);
        let n = pages.len();
        self.populated.set_range(pages.start, n);
        self.nr_populated += n;
        self.nr_empty_pop_pages += n as i32;
        n as i32
    }

    /// `pcpu_chunk_depopulated` (chunk part): the exact inverse.
    pub(crate) fn mark_depopulated(&mut self, pages: core::ops::Range<usize>) -> EmptyDelta {
        debug_assert_eq!(
            self.populated.count_ones_in(pages.start, pages.end),
            pages.len()
        );
        let n = pages.len();
        self.populated.clear_range(pages.start, n);
        self.nr_populated -= n;
        self.nr_empty_pop_pages -= n as i32;
        -(n as i32)
    }

    /// First unpopulated run of pages inside `pages`, if any.
    pub(crate) fn next_unpopulated(
        &self,
        pages: core::ops::Range<usize>,
    ) -> Option<core::ops::Range<usize>> {
        self.populated.clear_runs(pages.start, pages.end).next()
    }
}
