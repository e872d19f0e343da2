//! Statistics: the global counters of `struct percpu_stats` and the text of
//! `/sys/kernel/debug/percpu_stats` (mm/percpu-stats.c).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::allocator::Allocator;
use crate::chunk::{Chunk, ChunkKind};
use crate::ChunkId;

/// Global allocation statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Lifetime allocations.
    pub nr_alloc: u64,
    /// Lifetime frees.
    pub nr_dealloc: u64,
    /// Live allocations.
    pub nr_cur_alloc: u64,
    /// Peak of `nr_cur_alloc`.
    pub nr_max_alloc: u64,
    /// Live chunks.
    pub nr_chunks: u64,
    /// Peak of `nr_chunks`.
    pub nr_max_chunks: u64,
    /// Smallest allocation (starts at the unit size).
    pub min_alloc_size: u64,
    /// Largest allocation.
    pub max_alloc_size: u64,
    /// Failed allocations (not in the kernel's stats; its tracepoint counts them).
    pub nr_failed: u64,
}

impl GlobalStats {
    pub(crate) fn new(unit_size: u64) -> Self {
        GlobalStats {
            min_alloc_size: unit_size,
            ..Default::default()
        }
    }
    #[inline]
    pub(crate) fn on_alloc(&mut self, size: u64) {
        self.nr_alloc += 1;
        self.nr_cur_alloc += 1;
        self.nr_max_alloc = self.nr_max_alloc.max(self.nr_cur_alloc);
        self.min_alloc_size = self.min_alloc_size.min(size);
        self.max_alloc_size = self.max_alloc_size.max(size);
    }
    #[inline]
    pub(crate) fn on_free(&mut self) {
        self.nr_dealloc += 1;
        self.nr_cur_alloc -= 1;
    }
}

/// Where a chunk is listed ([`Allocator::chunk_list`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkList {
    /// The reserved chunk, on no list (the kernel keeps it apart too).
    Reserved,
    /// An active slot (`pcpu_chunk_lists[slot]`): by free space, the free
    /// slot for a fully free chunk, slot 0 for a relegated one.
    Slot(usize),
    /// Isolated, its empty pages depopulated (`pcpu_sidelined_slot`).
    Sidelined,
    /// Isolated, queued for depopulation (`pcpu_to_depopulate_slot`).
    ToDepopulate,
    /// Off every list while a balance run destroys or shrinks it.
    Detached,
}

/// Per-chunk figures of percpu_stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Live allocations.
    pub nr_alloc: u64,
    /// Largest allocation made from the chunk.
    pub max_alloc_size: u64,
    /// Empty populated pages.
    pub empty_pop_pages: i64,
    /// `chunk_md.first_free`, in bits.
    pub first_bit: i64,
    /// Free bytes.
    pub free_bytes: i64,
    /// `chunk_md.contig_hint * 4`.
    pub contig_bytes: i64,
    /// Sum of free fragments up to the last allocation.
    pub sum_frag: i64,
    /// Largest such fragment.
    pub max_frag: i64,
    /// Smallest live allocation.
    pub cur_min_alloc: i64,
    /// Median live allocation.
    pub cur_med_alloc: i64,
    /// Largest live allocation.
    pub cur_max_alloc: i64,
}

/// `chunk_map_stats`: fragment and allocation-size figures of one chunk.
pub fn chunk_stats(c: &Chunk) -> ChunkStats {
    let map_bits = c.map_bits as usize;
    let end_hidden = (c.end_offset / 4) as usize;
    // Like the kernel: the last set bit is searched over
    // [0, map_bits - end/4 - 1), which leaves the managed region's last bit
    // out; when none is set there, the bit at the search's end decides
    // (`find_last_bit` returns its size). The walk below stops at
    // `last_alloc`, so an allocation that ends on the region's last bit is
    // reported 4 bytes short, as by the kernel.
    let limit = map_bits.saturating_sub(end_hidden + 1);
    let last = c.alloc_map.find_prev_bit(0, limit).unwrap_or(limit);
    let last_alloc = if last < map_bits && c.alloc_map.test(last) {
        last + 1
    } else {
        0
    };
    let mut sizes: Vec<i64> = Vec::new();
    let mut start = (c.start_offset / 4) as usize;
    while start < last_alloc {
        if c.alloc_map.test(start) {
            let end = c.bound_map.find_next_bit(last_alloc, start + 1);
            sizes.push(((end - start) * 4) as i64);
            start = end;
        } else {
            let end = c.alloc_map.find_next_bit(last_alloc, start + 1);
            sizes.push(-(((end - start) * 4) as i64));
            start = end;
        }
    }
    sizes.sort_unstable();
    let mut s = ChunkStats {
        nr_alloc: c.nr_alloc,
        max_alloc_size: c.max_alloc_size,
        empty_pop_pages: c.nr_empty_pop_pages as i64,
        first_bit: c.chunk_md.first_free as i64,
        free_bytes: c.free_bytes as i64,
        contig_bytes: c.chunk_md.contig_hint as i64 * 4,
        ..Default::default()
    };
    let first_pos = sizes.iter().position(|&v| v >= 0);
    for &v in sizes.iter().filter(|&&v| v < 0) {
        s.sum_frag += -v;
        s.max_frag = s.max_frag.max(-v);
    }
    if let Some(i) = first_pos {
        s.cur_min_alloc = sizes[i];
        s.cur_med_alloc = sizes[(i + sizes.len() - 1) / 2];
        s.cur_max_alloc = *sizes.last().unwrap_or(&0);
    }
    s
}

fn p(out: &mut String, name: &str, v: i64) {
    let _ = writeln!(out, "  {name:<20}: {v:>12}");
}

fn chunk_block(out: &mut String, header: &str, c: &Chunk) {
    let s = chunk_stats(c);
    out.push_str(header);
    p(out, "nr_alloc", s.nr_alloc as i64);
    p(out, "max_alloc_size", s.max_alloc_size as i64);
    p(out, "empty_pop_pages", s.empty_pop_pages);
    p(out, "first_bit", s.first_bit);
    p(out, "free_bytes", s.free_bytes);
    p(out, "contig_bytes", s.contig_bytes);
    p(out, "sum_frag", s.sum_frag);
    p(out, "max_frag", s.max_frag);
    p(out, "cur_min_alloc", s.cur_min_alloc);
    p(out, "cur_med_alloc", s.cur_med_alloc);
    p(out, "cur_max_alloc", s.cur_max_alloc);
    out.push('\n');
}

impl Allocator {
    /// The text of `/sys/kernel/debug/percpu_stats` (5.14 to 6.19 layout).
    pub fn percpu_stats(&self) -> String {
        let mut out = String::new();
        let fc = self.geo.first_chunk();
        let g = &self.stats;
        out.push_str("Percpu Memory Statistics\nAllocation Info:\n");
        out.push_str("----------------------------------------\n");
        p(&mut out, "unit_size", self.geo.unit_size() as i64);
        p(&mut out, "static_size", fc.static_size as i64);
        p(&mut out, "reserved_size", fc.reserved_size as i64);
        p(&mut out, "dyn_size", fc.dyn_size as i64);
        p(&mut out, "atom_size", self.geo.atom_size() as i64);
        p(&mut out, "alloc_size", self.geo.alloc_size() as i64);
        out.push('\n');
        out.push_str("Global Stats:\n----------------------------------------\n");
        p(&mut out, "nr_alloc", g.nr_alloc as i64);
        p(&mut out, "nr_dealloc", g.nr_dealloc as i64);
        p(&mut out, "nr_cur_alloc", g.nr_cur_alloc as i64);
        p(&mut out, "nr_max_alloc", g.nr_max_alloc as i64);
        p(&mut out, "nr_chunks", g.nr_chunks as i64);
        p(&mut out, "nr_max_chunks", g.nr_max_chunks as i64);
        p(&mut out, "min_alloc_size", g.min_alloc_size as i64);
        p(&mut out, "max_alloc_size", g.max_alloc_size as i64);
        p(&mut out, "empty_pop_pages", self.nr_empty_pop_pages as i64);
        out.push('\n');
        out.push_str("Per Chunk Stats:\n----------------------------------------\n");
        if let Some(r) = self.reserved {
            chunk_block(&mut out, "Chunk: <- Reserved Chunk\n", self.c(r));
        }
        for slot in 0..self.layout.nr_slots {
            for id in self.lists.iter(slot) {
                let header = match self.chunk_list(ChunkId(id)) {
                    _ if id == self.first => "Chunk: <- First Chunk\n",
                    Some(ChunkList::ToDepopulate) => "Chunk (to_depopulate)\n",
                    Some(ChunkList::Sidelined) => "Chunk (sidelined):\n",
                    _ => "Chunk:\n",
                };
                chunk_block(&mut out, header, self.c(id));
            }
        }
        out
    }

    /// Which list chunk `id` is on (`None`: no such chunk), as
    /// `percpu_stats` heads its block.
    pub fn chunk_list(&self, id: ChunkId) -> Option<ChunkList> {
        let c = self.chunk(id)?;
        if c.kind == ChunkKind::Reserved {
            return Some(ChunkList::Reserved);
        }
        Some(match self.lists.slot_of(id.0) {
            None => ChunkList::Detached,
            Some(s) if usize::from(s) == self.layout.to_depopulate => ChunkList::ToDepopulate,
            Some(s) if usize::from(s) == self.layout.sidelined => ChunkList::Sidelined,
            Some(s) => ChunkList::Slot(usize::from(s)),
        })
    }

    /// The `/proc/meminfo` line: `Percpu:         NNNN kB`.
    pub fn meminfo_line(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "Percpu:         {:>8} kB", self.percpu_bytes() / 1024);
        s
    }
}
