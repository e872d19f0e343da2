//! Where the kernel placed each live traced object (its chunk serial and
//! offset), so an allocation the kernel placed over live objects finds
//! them: the kernel hands out only free space, so their frees were lost
//! from the trace.
//!
//! Per kernel chunk, as the kernel keeps its own: a bitmap of the 4-byte
//! granules in use and one of object starts, so the check on every
//! allocation costs a few words, and finding the objects it overlaps (rare:
//! a lost free) a search back to the first one's start; the replay then
//! finds their pointers among its live objects.

use pcpu_core::bitmap::Bitmap;

/// The granule: objects are multiples of 4 bytes at offsets aligned to 4.
const GRANULE: usize = 4;

/// The live traced objects by kernel place.
///
/// Invariant: in each chunk, `in_use` is the union of the live objects'
/// granules, `starts` has exactly their first granules set and `objects`
/// counts them (a chunk without any has no entry); objects do not overlap
/// (the replay removes those an allocation overlaps before adding it).
#[derive(Debug)]
pub(crate) struct KernelPlaces {
    /// Granules per chunk unit.
    granules: usize,
    /// By kernel chunk serial plus one (wrapping: the reserved chunk's
    /// serial is `u32::MAX`); serials are small and dense.
    chunks: Vec<Option<Places>>,
}

#[derive(Debug)]
struct Places {
    in_use: Bitmap,
    starts: Bitmap,
    objects: usize,
}

impl KernelPlaces {
    /// Places in chunks of `unit_size` bytes.
    pub(crate) fn new(unit_size: usize) -> Self {
        KernelPlaces {
            granules: unit_size.div_ceil(GRANULE),
            chunks: Vec::new(),
        }
    }

    /// Where chunk `kchunk`'s entry is in `chunks`.
    fn slot(kchunk: u32) -> usize {
        kchunk.wrapping_add(1) as usize
    }

    fn places(&self, kchunk: u32) -> Option<&Places> {
        self.chunks.get(Self::slot(kchunk)).and_then(Option::as_ref)
    }

    /// The granule range of `[off, off + size)`, clamped to the unit (the
    /// replay refuses allocations outside it before they get here).
    fn range(&self, off: u32, size: u32) -> (usize, usize) {
        let start = (off as usize / GRANULE).min(self.granules);
        let end = (off as usize)
            .saturating_add(size.max(1) as usize)
            .div_ceil(GRANULE)
            .min(self.granules);
        (start, end)
    }

    /// An object of `size` bytes at `off` in chunk `kchunk`.
    pub(crate) fn insert(&mut self, kchunk: u32, off: u32, size: u32) {
        let (start, end) = self.range(off, size);
        if start >= end {
            return;
        }
        let granules = self.granules;
        let i = Self::slot(kchunk);
        if self.chunks.len() <= i {
            self.chunks.resize_with(i + 1, || None);
        }
        let p = self.chunks[i].get_or_insert_with(|| Places {
            in_use: Bitmap::new(granules),
            starts: Bitmap::new(granules),
            objects: 0,
        });
        p.in_use.set_range(start, end - start);
        p.starts.set(start);
        p.objects += 1;
    }

    /// The object `insert` added with the same arguments is gone.
    pub(crate) fn remove(&mut self, kchunk: u32, off: u32, size: u32) {
        let (start, end) = self.range(off, size);
        let Some(slot) = self.chunks.get_mut(Self::slot(kchunk)) else {
            return;
        };
        if let Some(p) = slot {
            if start < end && p.starts.test(start) {
                p.in_use.clear_range(start, end - start);
                p.starts.clear(start);
                p.objects -= 1;
                if p.objects == 0 {
                    // The chunk's maps go with its last object (a trace may
                    // create and destroy many chunks).
                    *slot = None;
                }
            }
        }
    }

    /// The offsets of the live objects in chunk `kchunk` that overlap
    /// `[off, off + size)`, lowest first.
    pub(crate) fn overlapping(&self, kchunk: u32, off: u32, size: u32) -> Vec<u32> {
        let (start, end) = self.range(off, size);
        let Some(p) = self.places(kchunk) else {
            return Vec::new();
        };
        if p.in_use.find_next_bit(end, start) >= end {
            return Vec::new();
        }
        // The object covering `start` began at or before it (its granules
        // reach `start` when `start` is in use); then every object starting
        // inside the range.
        let mut found = Vec::new();
        if p.in_use.test(start) {
            if let Some(s) = p.starts.find_prev_bit(0, start + 1) {
                found.push((s * GRANULE) as u32);
            }
        }
        let mut s = p.starts.find_next_bit(end, start + 1);
        while s < end {
            found.push((s * GRANULE) as u32);
            s = p.starts.find_next_bit(end, s + 1);
        }
        found
    }

    /// The number of objects placed.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().flatten().map(|p| p.objects).sum()
    }

    /// Checks the type's invariant against `objects`, the live traced
    /// objects as (kernel chunk, offset, size): each one's granules in use
    /// and its start marked, nothing else, and no chunk entry without one.
    pub(crate) fn check(
        &self,
        objects: impl Iterator<Item = (u32, u32, u32)>,
    ) -> Result<(), String> {
        let mut per_chunk: Vec<(usize, usize)> = vec![(0, 0); self.chunks.len()];
        for (kchunk, off, size) in objects {
            let (start, end) = self.range(off, size);
            let i = Self::slot(kchunk);
            let p = self
                .places(kchunk)
                .ok_or_else(|| format!("kernel chunk {kchunk}: an object at {off}, no places"))?;
            if !p.starts.test(start) || p.in_use.count_ones_in(start, end) != end - start {
                return Err(format!(
                    "kernel chunk {kchunk}: the object at {off} ({size} bytes) is not marked"
                ));
            }
            per_chunk[i].0 += 1;
            per_chunk[i].1 += end - start;
        }
        // (A chunk without an entry holds none of `objects`: each found its
        // entry above.)
        for (i, p) in self.chunks.iter().enumerate() {
            let Some(p) = p else { continue };
            let (objects, granules) = per_chunk[i];
            let n = self.granules;
            let marked = (
                p.objects,
                p.starts.count_ones_in(0, n),
                p.in_use.count_ones_in(0, n),
            );
            if objects == 0 || marked != (objects, objects, granules) {
                let kchunk = (i as u32).wrapping_sub(1);
                return Err(format!(
                    "kernel chunk {kchunk}: {objects} objects of {granules} granules, \
                     places say (objects, starts, granules) {marked:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_objects_a_range_overlaps_in_its_chunk_only() {
        let mut k = KernelPlaces::new(4096);
        k.insert(1, 0, 16);
        k.insert(1, 16, 8);
        k.insert(1, 32, 64);
        k.insert(2, 8, 8);
        k.insert(u32::MAX, 0, 8);
        let none = Vec::<u32>::new();
        assert_eq!(k.overlapping(1, 8, 4), vec![0]);
        assert_eq!(k.overlapping(1, 12, 8), vec![0, 16]);
        assert_eq!(k.overlapping(1, 0, 4096), vec![0, 16, 32]);
        assert_eq!(k.overlapping(1, 24, 8), none);
        assert_eq!(k.overlapping(1, 24, 12), vec![32]);
        assert_eq!(k.overlapping(1, 40, 4), vec![32]);
        assert_eq!(k.overlapping(1, 92, 4), vec![32]);
        assert_eq!(k.overlapping(1, 96, 4), none);
        assert_eq!(k.overlapping(2, 0, 8), none);
        assert_eq!(k.overlapping(2, 0, 12), vec![8]);
        assert_eq!(k.overlapping(2, 4092, 8), none);
        assert_eq!(k.overlapping(3, 0, 1 << 20), none);
        assert_eq!(k.overlapping(u32::MAX, 4, 4), vec![0]);
        k.remove(1, 16, 8);
        assert_eq!(k.overlapping(1, 12, 8), vec![0]);
        assert_eq!(k.overlapping(1, 16, 8), none);
        k.remove(1, 0, 16);
        assert_eq!(k.overlapping(1, 0, 32), none);
        assert_eq!(k.overlapping(1, 0, 36), vec![32]);
        // A remove of what is not there changes nothing.
        k.remove(1, 36, 4);
        assert_eq!(k.overlapping(1, 40, 4), vec![32]);
        // The last object gone, so are the chunk's maps.
        k.remove(1, 32, 64);
        assert!(k.places(1).is_none());
        assert!(k.places(2).is_some());
        assert_eq!(k.len(), 2);
        let live = [(2, 8, 8), (u32::MAX, 0, 8)];
        assert_eq!(k.check(live.into_iter()), Ok(()));
        assert!(
            k.check(live[..1].iter().copied()).is_err(),
            "an object too many"
        );
        assert!(k.check([(2, 8, 8), (u32::MAX, 0, 12)].into_iter()).is_err());
        assert!(k
            .check([(2, 8, 8), (u32::MAX, 0, 8), (1, 0, 4)].into_iter())
            .is_err());
    }
}
