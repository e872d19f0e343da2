//! Per-block (per-page) allocation metadata: `struct pcpu_block_md`.
//!
//! All fields are in *bits* of the allocation map (one bit = 4 bytes). The same
//! structure describes a whole chunk (`chunk_md`), whose `nr_bits` is the chunk's
//! map size.

/// Free-space hints of one block, or of a whole chunk.
///
/// # Invariants
/// - `scan_hint == 0`, or `scan_hint <= contig_hint` and (for page blocks)
///   the scan hint's region is free. The kernel's header comment also says
///   `scan_hint_start > contig_hint_start` iff `scan_hint == contig_hint`,
///   but its own rules break that (an equal, worse-aligned run before the
///   contig hint can become the scan hint), so it is not an invariant here.
/// - For page blocks the region `[contig_hint_start, contig_hint_start + contig_hint)`
///   is free and `contig_hint == nr_bits` iff the block is entirely free.
/// - For the chunk, `contig_hint` never over-estimates the largest free run.
/// - `first_free` is at or before the first free bit.
///
/// Checked by `Chunk::check_invariants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[doc(alias = "pcpu_block_md")]
pub struct BlockMd {
    /// Largest known free run before the contig hint (best effort; 0 = none).
    pub scan_hint: i32,
    /// Start of `scan_hint`.
    pub scan_hint_start: i32,
    /// Largest free run (exact for blocks, may under-estimate for a chunk).
    pub contig_hint: i32,
    /// Start of `contig_hint`; equal runs prefer the better-aligned start.
    pub contig_hint_start: i32,
    /// Free run touching the first bit.
    pub left_free: i32,
    /// Free run touching the last bit.
    pub right_free: i32,
    /// First free bit (first-fit scan start).
    pub first_free: i32,
    /// Bits covered.
    pub nr_bits: i32,
}

/// `__ffs`: index of the lowest set bit (callers never pass 0).
#[inline]
fn ffs(x: i32) -> u32 {
    (x as u32).trailing_zeros()
}

/// Round `x` up to a multiple of the power of two `align`.
#[inline]
pub(crate) fn align_up(x: i32, align: i32) -> i32 {
    (x + align - 1) & !(align - 1)
}

impl BlockMd {
    /// A fully free block of `nr_bits` bits (`pcpu_init_md_block`).
    pub fn new_free(nr_bits: i32) -> Self {
        BlockMd {
            scan_hint: 0,
            scan_hint_start: 0,
            contig_hint: nr_bits,
            contig_hint_start: 0,
            left_free: nr_bits,
            right_free: nr_bits,
            first_free: 0,
            nr_bits,
        }
    }

    /// Update the hints with a complete free run `[start, end)`
    /// (`pcpu_block_update`).
    ///
    /// The run must lie in the block (`0 <= start < end <= nr_bits`) and be
    /// maximal (bounded by allocated bits or the block's edges), as the
    /// chunk's scans give it; debug builds check the bounds. Other runs
    /// leave the hints meaningless (they are hints: nothing is placed from
    /// them without the bitmap's confirmation).
    #[doc(alias = "pcpu_block_update")]
    #[inline]
    pub fn update(&mut self, start: i32, end: i32) {
        debug_assert!(0 <= start && start < end && end <= self.nr_bits);
        let contig = end - start;
        self.first_free = self.first_free.min(start);
        if start == 0 {
            self.left_free = contig;
        }
        if end == self.nr_bits {
            self.right_free = contig;
        }
        if contig > self.contig_hint {
            if start > self.contig_hint_start {
                if self.contig_hint > self.scan_hint {
                    // The old best run becomes the scan hint.
                    self.scan_hint_start = self.contig_hint_start;
                    self.scan_hint = self.contig_hint;
                } else if start < self.scan_hint_start {
                    // INVARIANT: keep scan_hint_start < contig_hint_start.
                    self.scan_hint = 0;
                }
            } else {
                self.scan_hint = 0;
            }
            self.contig_hint_start = start;
            self.contig_hint = contig;
        } else if contig == self.contig_hint {
            if self.contig_hint_start != 0
                && (start == 0 || ffs(start) > ffs(self.contig_hint_start))
            {
                // Equal run with better alignment.
                self.contig_hint_start = start;
                if start < self.scan_hint_start && self.contig_hint > self.scan_hint {
                    self.scan_hint = 0;
                }
            } else if start > self.scan_hint_start || self.contig_hint > self.scan_hint {
                self.scan_hint_start = start;
                self.scan_hint = contig;
            }
        } else if start < self.contig_hint_start
            && (contig > self.scan_hint
                || (contig == self.scan_hint && start > self.scan_hint_start))
        {
            self.scan_hint_start = start;
            self.scan_hint = contig;
        }
    }

    /// Where to start a first-fit scan for `bits` (`pcpu_next_hint`): past a
    /// scan hint known to be too small, else `first_free`.
    #[inline]
    #[doc(alias = "pcpu_next_hint")]
    pub fn next_hint(&self, bits: i32) -> i32 {
        if self.scan_hint != 0
            && self.contig_hint_start > self.scan_hint_start
            && bits > self.scan_hint
        {
            self.scan_hint_start + self.scan_hint
        } else {
            self.first_free
        }
    }

    /// Can `bits` at alignment `align` (bits) fit in the contig hint
    /// (`pcpu_check_block_hint`)? `align` is a power of two of at most the
    /// block's bits, as a request's alignment is once checked (debug builds
    /// check); `bits` past the hint answer false, however large.
    #[inline]
    #[doc(alias = "pcpu_check_block_hint")]
    pub fn check_hint(&self, bits: i32, align: i32) -> bool {
        debug_assert!(align > 0 && align & (align - 1) == 0 && align <= self.nr_bits.max(1));
        let pad = align_up(self.contig_hint_start, align) - self.contig_hint_start;
        pad.saturating_add(bits) <= self.contig_hint
    }

    /// Does the scan hint overlap `[x, y)`?
    #[inline]
    pub(crate) fn scan_overlaps(&self, x: i32, y: i32) -> bool {
        overlap(
            self.scan_hint_start,
            self.scan_hint_start + self.scan_hint,
            x,
            y,
        )
    }

    /// Does the contig hint overlap `[x, y)`?
    #[inline]
    pub(crate) fn contig_overlaps(&self, x: i32, y: i32) -> bool {
        overlap(
            self.contig_hint_start,
            self.contig_hint_start + self.contig_hint,
            x,
            y,
        )
    }

    /// True when the block is entirely free.
    #[inline]
    pub fn is_empty_block(&self) -> bool {
        self.contig_hint == self.nr_bits
    }
}

/// `pcpu_region_overlap`: does `[a, b)` overlap `[x, y)`?
#[inline]
pub(crate) fn overlap(a: i32, b: i32, x: i32, y: i32) -> bool {
    a < y && x < b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_prefers_larger_then_better_aligned() {
        let mut b = BlockMd::new_free(1024);
        b.contig_hint = 0;
        b.left_free = 0;
        b.right_free = 0;
        b.first_free = 1024;
        b.update(10, 20);
        assert_eq!((b.contig_hint_start, b.contig_hint), (10, 10));
        assert_eq!(b.first_free, 10);
        b.update(40, 60);
        assert_eq!((b.contig_hint_start, b.contig_hint), (40, 20));
        assert_eq!((b.scan_hint_start, b.scan_hint), (10, 10));
        // equal run, better aligned (64 has more trailing zeros than 40)
        b.update(64, 84);
        assert_eq!(b.contig_hint_start, 64);
        // equal run, worse aligned after: becomes scan hint
        b.update(100, 120);
        assert_eq!((b.scan_hint_start, b.scan_hint), (100, 20));
        b.update(1000, 1024);
        assert_eq!(b.right_free, 24);
        assert_eq!(b.contig_hint, 24);
    }

    /// A new, larger contig run after the old one, when the old contig hint is
    /// no larger than the scan hint: a scan hint after the new run's start is
    /// dropped (it would sit past the contig hint with a different size); one
    /// before it is kept.
    #[test]
    fn larger_run_drops_only_a_scan_hint_it_would_precede() {
        let base = BlockMd {
            scan_hint: 10,
            scan_hint_start: 40,
            contig_hint: 10,
            contig_hint_start: 10,
            left_free: 0,
            right_free: 0,
            first_free: 10,
            nr_bits: 64,
        };
        let mut b = base;
        b.update(20, 35);
        assert_eq!((b.contig_hint_start, b.contig_hint), (20, 15));
        assert_eq!(
            b.scan_hint, 0,
            "scan hint at 40 would follow the contig hint"
        );

        let mut b = BlockMd {
            scan_hint_start: 2,
            contig_hint_start: 20,
            ..base
        };
        b.update(40, 55);
        assert_eq!((b.contig_hint_start, b.contig_hint), (40, 15));
        assert_eq!((b.scan_hint_start, b.scan_hint), (2, 10), "kept");

        // The kernel's test is strict: a run starting at the scan hint's
        // start (which it grew out of) keeps it (`pcpu_block_update`).
        let mut b = base;
        b.update(40, 55);
        assert_eq!((b.contig_hint_start, b.contig_hint), (40, 15));
        assert_eq!(
            (b.scan_hint_start, b.scan_hint),
            (40, 10),
            "kept at the start"
        );
    }

    #[test]
    fn next_hint_and_check() {
        let mut b = BlockMd::new_free(1024);
        assert!(b.check_hint(1024, 1));
        assert!(!b.check_hint(1025, 1));
        b.contig_hint_start = 3;
        b.contig_hint = 10;
        b.scan_hint_start = 0;
        b.scan_hint = 2;
        b.first_free = 0;
        assert!(b.check_hint(9, 4)); // pad 1 + 9 <= 10
        assert!(!b.check_hint(10, 4));
        assert_eq!(b.next_hint(3), 2);
        assert_eq!(b.next_hint(2), 0);
    }
}
