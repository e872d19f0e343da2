//! [`Stack`]: one class's cached entries, in fixed slots.
//!
//! Why not a `Vec`: an area dropped and another allocated at once (the
//! common churn of short-lived objects) pushes an entry and pops it again
//! a few nanoseconds later. `Vec::push` builds its argument before the
//! capacity check, so the compiler assembled the entry on the stack from
//! the area's fields (8-, 4- and 2-byte stores) and copied it into the
//! vector 16 bytes at a time, and `pop` read it back 16 bytes at a time
//! too: loads the processor cannot forward from the smaller stores still in
//! its store buffer, each waiting for them to retire. Here a push writes
//! the fields into a free slot, and a pop reads them back one by one
//! (BENCHMARKS.md, "The cached pair and the layout of an area": 31.5 →
//! 19.5 ns per cached pair).

use super::Entry;

/// A stack of at most `cap` entries in `cap` fixed slots.
///
/// # Invariants
/// `len <= slots.len()`; `slots[..len]` are `Some` (oldest first), the
/// others `None`.
#[derive(Debug)]
pub(super) struct Stack {
    slots: Box<[Option<Entry>]>,
    len: usize,
}

impl Stack {
    /// An empty stack of `cap` slots.
    pub(super) fn new(cap: usize) -> Stack {
        Stack {
            slots: (0..cap).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots (the most entries it holds).
    pub(super) fn cap(&self) -> usize {
        self.slots.len()
    }

    /// The oldest entry.
    pub(super) fn first(&self) -> Option<&Entry> {
        self.slots.first()?.as_ref()
    }

    /// Take the newest entry. The plain fields are read one by one from
    /// their slot and only the allocator handle is moved out (see the
    /// module's comment).
    #[inline]
    pub(super) fn pop(&mut self) -> Option<Entry> {
        let top = self.len.checked_sub(1)?;
        let slot = self.slots.get_mut(top)?;
        let e = slot.as_ref()?;
        let (base, stride, offset, chunk, units) = (e.base, e.stride, e.offset, e.chunk, e.units);
        let alloc = slot.take()?.alloc;
        self.len = top;
        Some(Entry {
            alloc,
            base,
            stride,
            offset,
            chunk,
            units,
        })
    }

    /// Push the entry `make` gives, written into the first free slot.
    /// When the stack is full `make` is not called (the caller keeps its
    /// area); it may give nothing.
    #[inline]
    pub(super) fn push_with(&mut self, make: impl FnOnce() -> Option<Entry>) {
        let Some(slot) = self.slots.get_mut(self.len) else {
            return;
        };
        // Always true (the invariant); checked so that no entry is
        // dropped, rather than assumed.
        if slot.is_none() {
            *slot = make();
            if slot.is_some() {
                self.len += 1;
            }
        }
    }

    /// Move the `n` oldest entries (all if fewer) to `out`, oldest first.
    pub(super) fn take_oldest(&mut self, n: usize, out: &mut Vec<Entry>) {
        let n = n.min(self.len);
        out.extend(self.slots[..n].iter_mut().filter_map(Option::take));
        // The emptied slots go above the survivors.
        self.slots[..self.len].rotate_left(n);
        self.len -= n;
    }

    /// Move every entry to `out`, oldest first.
    pub(super) fn take_all(&mut self, out: &mut Vec<Entry>) {
        self.take_oldest(self.len, out);
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::NonNull;

    use pcpu_core::ChunkId;

    use super::*;
    use crate::PerCpuAllocator;

    /// An entry naming offset `offset`: never freed (dropping an entry only
    /// drops its allocator handle), so its fields need not be real.
    fn entry(alloc: &PerCpuAllocator, offset: u32) -> Entry {
        Entry {
            alloc: alloc.clone(),
            base: NonNull::dangling(),
            stride: 4096 + offset,
            offset,
            chunk: ChunkId(offset + 1),
            units: (offset + 2) as u16,
        }
    }

    fn quiet() -> PerCpuAllocator {
        PerCpuAllocator::builder()
            .background_balance(false)
            .build()
            .unwrap()
    }

    fn offsets(v: &[Entry]) -> Vec<u32> {
        v.iter().map(|e| e.offset).collect()
    }

    /// Checks the invariant and returns the offsets held, oldest first.
    fn held(s: &Stack) -> Vec<u32> {
        assert!(s.len <= s.slots.len());
        assert!(s.slots[..s.len].iter().all(Option::is_some));
        assert!(s.slots[s.len..].iter().all(Option::is_none));
        s.slots[..s.len]
            .iter()
            .flatten()
            .map(|e| e.offset)
            .collect()
    }

    #[test]
    fn last_in_first_out_with_every_field() {
        let alloc = quiet();
        let mut s = Stack::new(3);
        assert!(s.pop().is_none());
        for o in [8, 16, 24] {
            s.push_with(|| Some(entry(&alloc, o)));
        }
        assert_eq!(held(&s), [8, 16, 24]);
        assert_eq!((s.len(), s.cap()), (3, 3));
        assert_eq!(s.first().map(|e| e.offset), Some(8));
        // Full: `make` is not called.
        s.push_with(|| panic!("a full stack asked for an entry"));
        let e = s.pop().unwrap();
        assert_eq!(
            (e.offset, e.stride, e.chunk, e.units),
            (24, 4096 + 24, ChunkId(25), 26)
        );
        assert_eq!(e.alloc.inner().id, alloc.inner().id);
        assert_eq!(held(&s), [8, 16]);
        // Nothing given: nothing held.
        s.push_with(|| None);
        assert_eq!(held(&s), [8, 16]);
        assert_eq!(s.pop().map(|e| e.offset), Some(16));
        assert_eq!(s.pop().map(|e| e.offset), Some(8));
        assert!(s.pop().is_none());
        assert_eq!(held(&s), Vec::<u32>::new());
        // Every handle the entries held is back.
        drop(e);
        assert_eq!(alloc.handles(), 1);
    }

    #[test]
    fn takes_the_oldest_and_keeps_the_newest_in_order() {
        let alloc = quiet();
        let mut s = Stack::new(5);
        for o in [4, 8, 12, 16, 20] {
            s.push_with(|| Some(entry(&alloc, o)));
        }
        let mut out = Vec::new();
        s.take_oldest(3, &mut out);
        assert_eq!(offsets(&out), [4, 8, 12]);
        assert_eq!(held(&s), [16, 20]);
        assert_eq!((s.len(), s.cap()), (2, 5));
        s.push_with(|| Some(entry(&alloc, 24)));
        assert_eq!(held(&s), [16, 20, 24]);
        s.take_oldest(7, &mut out);
        assert_eq!(offsets(&out), [4, 8, 12, 16, 20, 24]);
        assert_eq!(held(&s), Vec::<u32>::new());
        s.push_with(|| Some(entry(&alloc, 28)));
        s.take_all(&mut out);
        assert_eq!(out.len(), 7);
        assert!(s.first().is_none());
        drop(out);
        assert_eq!(alloc.handles(), 1);
    }

    #[test]
    fn no_slots_holds_nothing() {
        let mut s = Stack::new(0);
        s.push_with(|| panic!("no slot to fill"));
        assert!(s.pop().is_none());
        assert_eq!((s.len(), s.cap()), (0, 0));
    }
}
