//! Page bitmaps of a region: one bit per page index, and the maximal runs of
//! equal bits in a range.

use std::ops::Range;

/// Bit `i` of `bits`.
pub(crate) fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// Sets the bits of `r`.
pub(crate) fn set_bits(bits: &mut [u64], r: Range<usize>) {
    for i in r {
        bits[i / 64] |= 1 << (i % 64);
    }
}

/// Clears the bits of `r`.
pub(crate) fn clear_bits(bits: &mut [u64], r: Range<usize>) {
    for i in r {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

/// Maximal runs of pages within a range whose bit equals `want`.
pub(crate) struct Runs<'a> {
    bits: &'a [u64],
    next: usize,
    end: usize,
    want: bool,
}

impl<'a> Runs<'a> {
    /// The runs of bits equal to `want` within `r`.
    pub(crate) fn new(bits: &'a [u64], r: Range<usize>, want: bool) -> Self {
        Runs {
            bits,
            next: r.start,
            end: r.end,
            want,
        }
    }
}

impl Iterator for Runs<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while self.next < self.end && bit(self.bits, self.next) != self.want {
            self.next += 1;
        }
        if self.next >= self.end {
            return None;
        }
        let start = self.next;
        while self.next < self.end && bit(self.bits, self.next) == self.want {
            self.next += 1;
        }
        Some(start..self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_iterator() {
        let mut bits = vec![0u64; 2];
        set_bits(&mut bits, 3..5);
        set_bits(&mut bits, 63..66);
        let set: Vec<_> = Runs::new(&bits, 0..128, true).collect();
        assert_eq!(set, [3..5, 63..66]);
        let unset: Vec<_> = Runs::new(&bits, 2..70, false).collect();
        assert_eq!(unset, [2..3, 5..63, 66..70]);
        clear_bits(&mut bits, 4..64);
        let set: Vec<_> = Runs::new(&bits, 0..128, true).collect();
        assert_eq!(set, [3..4, 64..66]);
        assert_eq!(Runs::new(&bits, 10..10, false).count(), 0);
    }
}
