//! Where the kernel placed each live traced object (its chunk serial and
//! offset), ordered, so an allocation the kernel placed over live objects
//! finds them: the kernel hands out only free space, so their frees were
//! lost from the trace.

use std::collections::BTreeMap;

/// The live traced objects by kernel place.
///
/// Invariant: the ranges `[off, off + size)` of one chunk do not overlap
/// (the replay removes the objects an allocation overlaps before adding
/// it), so at most one object starting below an offset reaches past it.
#[derive(Debug, Default)]
pub(crate) struct KernelPlaces {
    /// (kernel chunk serial, offset) → (pointer, size in bytes).
    by_place: BTreeMap<(u32, u32), (u64, u32)>,
}

impl KernelPlaces {
    pub(crate) fn insert(&mut self, kchunk: u32, off: u32, size: u32, ptr: u64) {
        self.by_place.insert((kchunk, off), (ptr, size));
    }

    pub(crate) fn remove(&mut self, kchunk: u32, off: u32) {
        self.by_place.remove(&(kchunk, off));
    }

    /// The pointers of the live objects in chunk `kchunk` that overlap
    /// `[off, off + size)`, lowest first.
    pub(crate) fn overlapping(&self, kchunk: u32, off: u32, size: u32) -> Vec<u64> {
        let end = off.saturating_add(size.max(1));
        let below = self
            .by_place
            .range((kchunk, 0)..(kchunk, off))
            .next_back()
            .filter(|(&(_, o), &(_, s))| o.saturating_add(s) > off);
        let within = self.by_place.range((kchunk, off)..(kchunk, end));
        below
            .into_iter()
            .chain(within)
            .map(|(_, &(p, _))| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_objects_a_range_overlaps_in_its_chunk_only() {
        let mut k = KernelPlaces::default();
        k.insert(1, 0, 16, 100);
        k.insert(1, 16, 8, 116);
        k.insert(1, 32, 64, 132);
        k.insert(2, 8, 8, 208);
        assert_eq!(k.overlapping(1, 8, 4), vec![100]);
        assert_eq!(k.overlapping(1, 12, 8), vec![100, 116]);
        assert_eq!(k.overlapping(1, 24, 8), Vec::<u64>::new());
        assert_eq!(k.overlapping(1, 24, 12), vec![132]);
        assert_eq!(k.overlapping(1, 40, 4), vec![132]);
        assert_eq!(k.overlapping(1, 96, 4), Vec::<u64>::new());
        assert_eq!(k.overlapping(2, 0, 8), Vec::<u64>::new());
        assert_eq!(k.overlapping(2, 0, 12), vec![208]);
        assert_eq!(k.overlapping(3, 0, 1 << 20), Vec::<u64>::new());
        k.remove(1, 16);
        assert_eq!(k.overlapping(1, 12, 8), vec![100]);
    }
}
