//! Chunk lists ("slots"): `pcpu_chunk_lists[]`, doubly linked through each
//! chunk's [`Link`](crate::chunk::Link), with O(1) moves to a list's head or tail.
//!
//! Slot numbers: `1..=base` are active slots keyed by the chunk's largest free
//! run, `0` holds full and relegated chunks (never scanned), then come the
//! special slots `sidelined = base + 1`, `free = base + 2`,
//! `to_depopulate = base + 3` (Linux 5.14).

use alloc::vec;
use alloc::vec::Vec;

use crate::chunk::Chunk;

/// `fls`: 1-based index of the highest set bit, 0 for 0.
#[inline]
pub(crate) fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

/// `__pcpu_size_to_slot` with `PCPU_SLOT_BASE_SHIFT = 5`.
#[inline]
pub(crate) fn size_to_slot_raw(bytes: usize) -> usize {
    (fls(bytes) as isize - 5 + 2).max(1) as usize
}

/// Slot numbers of one allocator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLayout {
    pub(crate) unit_size: usize,
    pub(crate) sidelined: usize,
    pub(crate) free: usize,
    pub(crate) to_depopulate: usize,
    pub(crate) nr_slots: usize,
}

impl SlotLayout {
    pub(crate) fn new(unit_size: usize) -> Self {
        let base = size_to_slot_raw(unit_size);
        SlotLayout {
            unit_size,
            sidelined: base + 1,
            free: base + 2,
            to_depopulate: base + 3,
            nr_slots: base + 4,
        }
    }

    /// `pcpu_size_to_slot`.
    #[inline]
    pub(crate) fn size_to_slot(&self, bytes: usize) -> usize {
        if bytes == self.unit_size {
            self.free
        } else {
            size_to_slot_raw(bytes)
        }
    }

    /// `pcpu_chunk_slot`.
    #[inline]
    pub(crate) fn chunk_slot(&self, c: &Chunk) -> usize {
        self.key_slot(slot_key(c))
    }

    /// [`SlotLayout::chunk_slot`] of a chunk whose [`slot_key`] is `key`.
    #[inline]
    fn key_slot(&self, key: i32) -> usize {
        if key == 0 {
            0
        } else {
            self.size_to_slot(key as usize * crate::MIN_ALLOC_SIZE)
        }
    }

    /// The slots `(old, new)` of a chunk whose [`slot_key`] went from `okey`
    /// to `nkey`, for `Allocator::area_changed`, which only asks whether and
    /// which way they differ: equal keys give `(0, 0)` without working the
    /// slots out.
    #[inline]
    pub(crate) fn slot_change(&self, okey: i32, nkey: i32) -> (usize, usize) {
        if okey == nkey {
            (0, 0)
        } else {
            (self.key_slot(okey), self.key_slot(nkey))
        }
    }
}

/// Everything [`SlotLayout::chunk_slot`] depends on: 0 for a full chunk (less
/// than one unit free, or no free run), else the chunk's contig hint.
#[inline]
pub(crate) fn slot_key(c: &Chunk) -> i32 {
    if c.free_bytes < crate::MIN_ALLOC_SIZE as i32 || c.chunk_md.contig_hint == 0 {
        0
    } else {
        c.chunk_md.contig_hint
    }
}

/// Link of a chunk in the slot lists (`NIL`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    prev: u32,
    next: u32,
    /// `NO_SLOT` when the chunk is on no list.
    slot: u16,
}

const NIL: u32 = u32::MAX;
const NO_SLOT: u16 = u16::MAX;
const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    slot: NO_SLOT,
};

#[inline]
fn opt(id: u32) -> Option<u32> {
    (id != NIL).then_some(id)
}

/// Every slot list (`pcpu_chunk_lists`): heads, tails, and each chunk's
/// links, indexed by chunk id (kept here, not in the chunk, so that moving a
/// chunk between lists touches one small array).
///
/// # Invariants
/// - `links[id].slot == s` iff `id` is on list `s`; `prev`/`next` form a
///   doubly linked list from `head[s]` to `tail[s]` of `len[s]` chunks.
/// - Bit `s` of `nonempty` is set iff `len[s] > 0`.
#[derive(Clone, Debug)]
pub(crate) struct Lists {
    head: Vec<u32>,
    tail: Vec<u32>,
    len: Vec<usize>,
    links: Vec<Link>,
    /// Bit `s` set iff slot `s` is non-empty (at most 64 slots).
    nonempty: u64,
}

/// One arena entry.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Vacant,
    /// Id handed out for a chunk being created by the backend: by
    /// `begin_create_chunk`, or (`by_run`) by a balance run, which alone
    /// finishes or releases it.
    Reserved {
        by_run: bool,
    },
    Live(alloc::boxed::Box<Chunk>),
}

impl Entry {
    #[inline]
    pub(crate) fn chunk(&self) -> Option<&Chunk> {
        match self {
            Entry::Live(c) => Some(c),
            _ => None,
        }
    }
    #[inline]
    pub(crate) fn chunk_mut(&mut self) -> Option<&mut Chunk> {
        match self {
            Entry::Live(c) => Some(c),
            _ => None,
        }
    }
}

impl Lists {
    pub(crate) fn new(nr_slots: usize) -> Self {
        assert!(nr_slots <= 64, "at most 64 slots");
        Lists {
            head: vec![NIL; nr_slots],
            tail: vec![NIL; nr_slots],
            len: vec![0; nr_slots],
            links: Vec::new(),
            nonempty: 0,
        }
    }

    /// First chunk of `slot`.
    #[inline]
    pub(crate) fn head(&self, slot: usize) -> Option<u32> {
        opt(self.head[slot])
    }

    /// The chunk after `id` on its list.
    #[inline]
    pub(crate) fn next(&self, id: u32) -> Option<u32> {
        opt(self.links[id as usize].next)
    }

    /// The list `id` is on, if any.
    #[inline]
    pub(crate) fn slot_of(&self, id: u32) -> Option<u16> {
        self.links
            .get(id as usize)
            .and_then(|l| (l.slot != NO_SLOT).then_some(l.slot))
    }

    /// First non-empty slot in `from..=to`.
    #[inline]
    pub(crate) fn next_nonempty(&self, from: usize, to: usize) -> Option<usize> {
        if from > to {
            return None;
        }
        let m = (self.nonempty >> from) << from;
        let m = if to >= 63 {
            m
        } else {
            m & ((1u64 << (to + 1)) - 1)
        };
        (m != 0).then(|| m.trailing_zeros() as usize)
    }

    /// Number of chunks in `slot`.
    pub(crate) fn len(&self, slot: usize) -> usize {
        self.len[slot]
    }

    /// Unlink `id` from whatever list it is on (`list_del_init`).
    #[inline]
    pub(crate) fn unlink(&mut self, id: u32) {
        let Some(&link) = self.links.get(id as usize) else {
            return;
        };
        if link.slot == NO_SLOT {
            return;
        }
        let slot = link.slot as usize;
        if link.prev != NIL {
            self.links[link.prev as usize].next = link.next;
        } else {
            self.head[slot] = link.next;
        }
        if link.next != NIL {
            self.links[link.next as usize].prev = link.prev;
        } else {
            self.tail[slot] = link.prev;
        }
        self.len[slot] -= 1;
        if self.len[slot] == 0 {
            self.nonempty &= !(1u64 << slot);
        }
        self.links[id as usize] = UNLINKED;
    }

    /// `list_move` (head) or `list_move_tail` (tail) of `id` to `slot`.
    #[inline]
    pub(crate) fn move_to(&mut self, id: u32, slot: usize, front: bool) {
        let i = id as usize;
        if i >= self.links.len() {
            self.links.resize(i + 1, UNLINKED);
        }
        self.unlink(id);
        if front {
            let old = self.head[slot];
            self.links[i] = Link {
                prev: NIL,
                next: old,
                slot: slot as u16,
            };
            if old != NIL {
                self.links[old as usize].prev = id;
            } else {
                self.tail[slot] = id;
            }
            self.head[slot] = id;
        } else {
            let old = self.tail[slot];
            self.links[i] = Link {
                prev: old,
                next: NIL,
                slot: slot as u16,
            };
            if old != NIL {
                self.links[old as usize].next = id;
            } else {
                self.head[slot] = id;
            }
            self.tail[slot] = id;
        }
        self.len[slot] += 1;
        self.nonempty |= 1u64 << slot;
    }

    /// Ids in `slot`, head to tail.
    pub(crate) fn iter(&self, slot: usize) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.head[slot];
        core::iter::from_fn(move || {
            let id = opt(cur)?;
            cur = self.links[id as usize].next;
            Some(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_numbers_match_the_kernel_table() {
        assert_eq!(size_to_slot_raw(0), 1);
        assert_eq!(size_to_slot_raw(15), 1);
        assert_eq!(size_to_slot_raw(16), 2);
        assert_eq!(size_to_slot_raw(31), 2);
        assert_eq!(size_to_slot_raw(32), 3);
        assert_eq!(size_to_slot_raw(4096), 10);
        let l = SlotLayout::new(256 << 10);
        assert_eq!(
            (l.sidelined, l.free, l.to_depopulate, l.nr_slots),
            (17, 18, 19, 20)
        );
        let l = SlotLayout::new(640 << 10);
        assert_eq!(l.nr_slots, 21);
        let l = SlotLayout::new(2 << 20);
        assert_eq!(l.nr_slots, 23);
    }
}
