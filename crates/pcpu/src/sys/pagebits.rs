//! Page bitmaps of a region: one bit per page index, and the maximal runs of
//! equal bits in a range; and the set of units whose pages a region
//! pre-faults ([`HotUnits`]).

use std::ops::Range;
use std::sync::Arc;

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

/// The units whose pages `Region::populate` makes resident at once (with
/// `MADV_POPULATE_WRITE`); the pages of the other units are made accessible
/// only, and take memory where they are first written (a read before that
/// sees the kernel's shared zero page, which takes none).
///
/// The allocator's default is the units of the CPUs the process may run on:
/// on a machine whose possible CPUs far outnumber those (a VM sized for CPU
/// hot-plug, a container's cpuset), per-CPU objects whose copies are only
/// written on the CPUs that run them take memory on those CPUs only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HotUnits(Option<Arc<[u64]>>);

impl HotUnits {
    /// Every unit (the kernel's behaviour: it populates every possible
    /// CPU's unit).
    pub(crate) fn all() -> Self {
        HotUnits(None)
    }

    /// Only `units` (ids at or above `nr_units` are ignored). A set that
    /// holds every unit is [`HotUnits::all`].
    pub(crate) fn only(units: impl IntoIterator<Item = usize>, nr_units: usize) -> Self {
        let mut bits = vec![0u64; nr_units.div_ceil(64)];
        for u in units.into_iter().filter(|&u| u < nr_units) {
            set_bits(&mut bits, u..u + 1);
        }
        if Runs::new(&bits, 0..nr_units, false).next().is_none() {
            return HotUnits::all();
        }
        HotUnits(Some(bits.into()))
    }

    /// Whether unit `unit` is pre-faulted.
    pub(crate) fn contains(&self, unit: usize) -> bool {
        match &self.0 {
            None => true,
            Some(bits) => unit / 64 < bits.len() && bit(bits, unit),
        }
    }

    /// Whether every unit is.
    pub(crate) fn is_all(&self) -> bool {
        self.0.is_none()
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

    #[test]
    fn hot_units() {
        assert!(HotUnits::all().contains(1000));
        let some = HotUnits::only([0, 2, 70, 500], 72);
        assert!(!some.is_all());
        let members: Vec<_> = (0..80).filter(|&u| some.contains(u)).collect();
        assert_eq!(members, [0, 2, 70]);
        assert!(HotUnits::only(0..3, 3).is_all());
        assert!(HotUnits::only([2, 1, 0, 0], 3).is_all());
        assert!(!HotUnits::only([], 3).contains(0));
    }
}
