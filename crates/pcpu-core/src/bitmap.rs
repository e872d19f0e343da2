//! Word-based bitmap helpers, the equivalents of the kernel's `find_next_bit`,
//! `find_next_zero_bit`, `find_last_bit`, `bitmap_set` and `bitmap_clear`.
//!
//! All indices are bit indices; `size` bounds a search the way the kernel's
//! `size` argument does: a search that finds nothing returns `size`.

use alloc::vec;
use alloc::vec::Vec;

const W: usize = 64;

/// The panic of a range past the end (kept off the hot path).
#[cold]
#[inline(never)]
#[track_caller]
fn out_of_range(start: usize, len: usize, nbits: usize) -> ! {
    panic!("bits {start}..+{len} of a {nbits}-bit bitmap")
}

/// A fixed-size bitmap stored in 64-bit words.
///
/// # Invariants
/// - `words.len() == nbits.div_ceil(64)`; bits at or above `nbits` are zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
    nbits: usize,
}

impl Bitmap {
    /// A bitmap of `nbits` zero bits.
    pub fn new(nbits: usize) -> Self {
        Bitmap {
            words: vec![0; nbits.div_ceil(W)],
            nbits,
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.nbits
    }

    /// True when the bitmap has no bits at all.
    pub fn is_empty(&self) -> bool {
        self.nbits == 0
    }

    /// Value of bit `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like a slice index.
    #[inline]
    pub fn test(&self, i: usize) -> bool {
        assert!(i < self.nbits, "bit {i} of a {}-bit bitmap", self.nbits);
        self.words[i / W] >> (i % W) & 1 != 0
    }

    /// Set bit `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like a slice index (a bit past the end would break
    /// the invariant silently otherwise).
    #[inline]
    pub fn set(&mut self, i: usize) {
        assert!(i < self.nbits, "bit {i} of a {}-bit bitmap", self.nbits);
        self.words[i / W] |= 1 << (i % W);
    }

    /// Clear bit `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like a slice index.
    #[inline]
    pub fn clear(&mut self, i: usize) {
        assert!(i < self.nbits, "bit {i} of a {}-bit bitmap", self.nbits);
        self.words[i / W] &= !(1 << (i % W));
    }

    /// Set bits `[start, start + len)`.
    ///
    /// # Panics
    /// If the range ends past `len()`, like a slice range.
    #[inline]
    pub fn set_range(&mut self, start: usize, len: usize) {
        self.check_range(start, len);
        self.update_range(start, len, true);
    }

    /// Clear bits `[start, start + len)`.
    ///
    /// # Panics
    /// If the range ends past `len()`, like a slice range.
    #[inline]
    pub fn clear_range(&mut self, start: usize, len: usize) {
        self.check_range(start, len);
        self.update_range(start, len, false);
    }

    /// [`Self::set_range`] for the allocation path, whose ranges are in
    /// bounds by construction (debug builds check): the check measured 3%
    /// of the core's alloc+free pair in instructions.
    #[inline]
    pub(crate) fn set_run(&mut self, start: usize, len: usize) {
        self.update_range(start, len, true);
    }

    /// [`Self::clear_range`] for the free path (see [`Self::set_run`]).
    #[inline]
    pub(crate) fn clear_run(&mut self, start: usize, len: usize) {
        self.update_range(start, len, false);
    }

    #[inline]
    fn check_range(&self, start: usize, len: usize) {
        if start > self.nbits || len > self.nbits - start {
            out_of_range(start, len, self.nbits);
        }
    }

    #[inline]
    fn update_range(&mut self, start: usize, len: usize, value: bool) {
        if len == 0 {
            return;
        }
        let end = start + len;
        debug_assert!(end <= self.nbits);
        if start / W == (end - 1) / W && len < W {
            // Common case: the range lies inside one word.
            let mask = ((1u64 << len) - 1) << (start % W);
            let w = &mut self.words[start / W];
            if value {
                *w |= mask;
            } else {
                *w &= !mask;
            }
            return;
        }
        let (mut i, last) = (start / W, (end - 1) / W);
        while i <= last {
            let lo = if i == start / W { start % W } else { 0 };
            let hi = if i == last { (end - 1) % W + 1 } else { W };
            let mask = if hi - lo == W {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            if value {
                self.words[i] |= mask;
            } else {
                self.words[i] &= !mask;
            }
            i += 1;
        }
    }

    /// Set bits `start` and `start + len` and clear the `len - 1` bits between
    /// them (`len >= 1`): the boundary-map marks of a new allocation of `len`
    /// bits, the same as `set(start)`, `clear_range(start + 1, len - 1)`,
    /// `set(start + len)` in one word update when both ends share a word.
    ///
    /// # Panics
    /// If `len == 0` or bit `start + len` is past the end.
    #[inline]
    pub fn mark_bounds(&mut self, start: usize, len: usize) {
        assert!(
            len >= 1 && start.checked_add(len).is_some_and(|e| e < self.nbits),
            "bounds {start}..={start}+{len} of a {}-bit bitmap",
            self.nbits
        );
        let end = start + len;
        if start / W == end / W {
            let lo = start % W;
            // len <= 63 here, so the shifts stay below 64.
            let inner = ((1u64 << len) - 1) << lo;
            let w = &mut self.words[start / W];
            *w = (*w & !inner) | (1 << lo) | (1 << (end % W));
            return;
        }
        // In bounds: checked above.
        self.set_run(start, 1);
        self.clear_run(start + 1, len - 1);
        self.set_run(end, 1);
    }

    /// Set every bit.
    pub fn fill(&mut self) {
        let n = self.nbits;
        self.set_range(0, n);
    }

    /// First set bit in `[start, size)`, or `size`.
    #[inline]
    pub fn find_next_bit(&self, size: usize, start: usize) -> usize {
        self.find_next(size, start, 0)
    }

    /// First clear bit in `[start, size)`, or `size`.
    #[inline]
    pub fn find_next_zero_bit(&self, size: usize, start: usize) -> usize {
        self.find_next(size, start, u64::MAX)
    }

    #[inline]
    fn find_next(&self, size: usize, start: usize, invert: u64) -> usize {
        debug_assert!(size <= self.nbits);
        if start >= size {
            return size;
        }
        let mut i = start / W;
        let mut word = (self.words[i] ^ invert) & (u64::MAX << (start % W));
        loop {
            if word != 0 {
                let found = i * W + word.trailing_zeros() as usize;
                return found.min(size);
            }
            i += 1;
            if i * W >= size {
                return size;
            }
            word = self.words[i] ^ invert;
        }
    }

    /// Last set bit in `[lo, hi)`, or `None`.
    #[inline]
    pub fn find_prev_bit(&self, lo: usize, hi: usize) -> Option<usize> {
        if hi <= lo {
            return None;
        }
        let mut i = (hi - 1) / W;
        let top = (hi - 1) % W;
        let mut word = self.words[i] & (u64::MAX >> (W - 1 - top));
        loop {
            if word != 0 {
                let found = i * W + (W - 1 - word.leading_zeros() as usize);
                return (found >= lo).then_some(found);
            }
            if i == 0 || i * W <= lo {
                return None;
            }
            i -= 1;
            word = self.words[i];
        }
    }

    /// Number of set bits in `[start, end)`.
    pub fn count_ones_in(&self, start: usize, end: usize) -> usize {
        let mut n = 0;
        let mut i = start;
        while i < end {
            let w = i / W;
            let lo = i % W;
            let hi = (end - w * W).min(W);
            let word = self.words[w] >> lo;
            let width = hi - lo;
            let mask = if width == W {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            n += (word & mask).count_ones() as usize;
            i = w * W + hi;
        }
        n
    }

    /// Call `f(s, e)` for every maximal run of clear bits `[s, e)` within
    /// `[from, to)`, in order (a word-at-a-time `for_each_clear_bitrange_from`).
    #[inline]
    pub fn for_each_clear_run(&self, from: usize, to: usize, f: impl FnMut(usize, usize)) {
        self.for_each_clear_run_known(from, to, 0..0, f);
    }

    /// [`Bitmap::for_each_clear_run`] when the caller knows that every bit of
    /// `clear` is clear: a run starting inside `clear` is searched for its end
    /// from `clear.end` on, not bit by bit from its start. The runs reported
    /// are the same as without the hint (a wrong hint gives wrong runs).
    #[inline]
    pub fn for_each_clear_run_known(
        &self,
        from: usize,
        to: usize,
        clear: core::ops::Range<usize>,
        mut f: impl FnMut(usize, usize),
    ) {
        let mut pos = from;
        while pos < to {
            let s = self.find_next_zero_bit(to, pos);
            if s >= to {
                return;
            }
            let e = if clear.contains(&s) {
                self.find_next_bit(to, clear.end)
            } else {
                self.find_next_bit(to, s)
            };
            f(s, e);
            pos = e;
        }
    }

    /// Iterator over maximal runs of clear bits `[s, e)` within `[from, size)`.
    pub fn clear_runs(&self, from: usize, size: usize) -> Runs<'_> {
        Runs {
            map: self,
            pos: from,
            size,
            set: false,
        }
    }

    /// Iterator over maximal runs of set bits `[s, e)` within `[from, size)`.
    pub fn set_runs(&self, from: usize, size: usize) -> Runs<'_> {
        Runs {
            map: self,
            pos: from,
            size,
            set: true,
        }
    }
}

/// Iterator of bit runs, see [`Bitmap::clear_runs`] and [`Bitmap::set_runs`].
#[derive(Debug)]
pub struct Runs<'a> {
    map: &'a Bitmap,
    pos: usize,
    size: usize,
    set: bool,
}

impl Iterator for Runs<'_> {
    type Item = core::ops::Range<usize>;
    fn next(&mut self) -> Option<Self::Item> {
        let (s, e) = if self.set {
            let s = self.map.find_next_bit(self.size, self.pos);
            (s, self.map.find_next_zero_bit(self.size, s))
        } else {
            let s = self.map.find_next_zero_bit(self.size, self.pos);
            (s, self.map.find_next_bit(self.size, s))
        };
        if s >= self.size {
            self.pos = self.size;
            return None;
        }
        self.pos = e;
        Some(s..e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_next(b: &Bitmap, size: usize, start: usize, want: bool) -> usize {
        (start..size).find(|&i| b.test(i) == want).unwrap_or(size)
    }

    #[test]
    fn ranges_and_searches_agree_with_naive() {
        let mut b = Bitmap::new(300);
        b.set_range(3, 70);
        b.set_range(130, 1);
        b.set_range(190, 110);
        b.clear_range(200, 5);
        for start in 0..300 {
            for size in [start, 64, 130, 131, 299, 300] {
                if size < start {
                    continue;
                }
                assert_eq!(
                    b.find_next_bit(size, start),
                    naive_next(&b, size, start, true)
                );
                assert_eq!(
                    b.find_next_zero_bit(size, start),
                    naive_next(&b, size, start, false)
                );
            }
        }
        for lo in [0, 3, 64, 100, 131] {
            for hi in lo..300 {
                let naive = (lo..hi).rev().find(|&i| b.test(i));
                assert_eq!(b.find_prev_bit(lo, hi), naive, "lo {lo} hi {hi}");
            }
        }
        assert_eq!(b.count_ones_in(0, 300), 70 + 1 + 105);
        let runs: Vec<_> = b.set_runs(0, 300).collect();
        assert_eq!(runs, [3..73, 130..131, 190..200, 205..300]);
        let clear: Vec<_> = b.clear_runs(0, 300).collect();
        assert_eq!(clear, [0..3, 73..130, 131..190, 200..205]);
    }

    #[test]
    fn mark_bounds_matches_set_clear_set() {
        for start in [0, 1, 30, 62, 63, 64, 100, 127, 190] {
            for len in [1, 2, 3, 31, 62, 63, 64, 65, 100] {
                if start + len >= 300 {
                    continue;
                }
                let mut a = Bitmap::new(300);
                a.set_range(0, 300);
                a.clear_range(start / 2, 70);
                let mut b = a.clone();
                a.mark_bounds(start, len);
                b.set(start);
                b.clear_range(start + 1, len - 1);
                b.set(start + len);
                assert_eq!(a, b, "start {start} len {len}");
            }
        }
    }

    /// `is_empty` means "no bits at all", not "no set bits": a zero-sized map
    /// is empty, a one-bit map is not, whatever its bits hold.
    #[test]
    fn is_empty_counts_bits_not_set_bits() {
        assert!(Bitmap::new(0).is_empty());
        let mut b = Bitmap::new(1);
        assert!(!b.is_empty());
        b.set(0);
        assert!(!b.is_empty());
    }

    /// `for_each_clear_run` reports the same runs as `clear_runs`, including
    /// runs that cross words and a run cut short by `to`, and its hinted form
    /// gives the same runs for a correct hint.
    #[test]
    fn for_each_clear_run_reports_the_clear_runs() {
        let mut b = Bitmap::new(300);
        b.set_range(3, 70);
        b.set_range(130, 1);
        b.set_range(190, 10);
        for (from, to) in [(0, 300), (5, 250), (131, 135)] {
            let want: Vec<_> = b.clear_runs(from, to).collect();
            let mut got = Vec::new();
            b.for_each_clear_run(from, to, |s, e| got.push(s..e));
            assert_eq!(got, want, "from {from} to {to}");
            let mut hinted = Vec::new();
            b.for_each_clear_run_known(from, to, 80..120, |s, e| hinted.push(s..e));
            assert_eq!(hinted, want, "hinted, from {from} to {to}");
        }
        let mut got = Vec::new();
        b.for_each_clear_run(0, 300, |s, e| got.push(s..e));
        assert_eq!(got, [0..3, 73..130, 131..190, 200..300]);
    }

    #[test]
    fn fill_and_word_boundaries() {
        let mut b = Bitmap::new(128);
        b.fill();
        assert_eq!(b.find_next_zero_bit(128, 0), 128);
        b.clear_range(63, 2);
        assert_eq!(b.find_next_zero_bit(128, 0), 63);
        assert_eq!(b.find_next_bit(128, 63), 65);
        assert_eq!(b.find_prev_bit(0, 65), Some(62));
    }

    /// A bit past `len()` but inside the last word's storage: refused
    /// rather than set, which would break the invariant silently.
    #[test]
    #[should_panic(expected = "bit 10 of a 10-bit bitmap")]
    fn set_past_the_end_panics() {
        Bitmap::new(10).set(10);
    }

    #[test]
    #[should_panic(expected = "bit 12 of a 10-bit bitmap")]
    fn test_past_the_end_panics() {
        Bitmap::new(10).test(12);
    }

    #[test]
    #[should_panic(expected = "bits 5..+6 of a 10-bit bitmap")]
    fn set_range_past_the_end_panics() {
        Bitmap::new(10).set_range(5, 6);
    }

    #[test]
    #[should_panic(expected = "of a 10-bit bitmap")]
    fn clear_range_overflowing_panics() {
        Bitmap::new(10).clear_range(usize::MAX, 2);
    }

    #[test]
    #[should_panic(expected = "bounds 4..=4+6 of a 10-bit bitmap")]
    fn mark_bounds_past_the_end_panics() {
        Bitmap::new(10).mark_bounds(4, 6);
    }

    #[test]
    fn ranges_up_to_the_end_are_taken() {
        let mut b = Bitmap::new(10);
        b.set_range(5, 5);
        b.mark_bounds(0, 9);
        assert_eq!((0..10).filter(|&i| b.test(i)).collect::<Vec<_>>(), [0, 9]);
        b.clear_range(9, 1);
        assert!(b.test(0) && !b.test(9));
    }
}
