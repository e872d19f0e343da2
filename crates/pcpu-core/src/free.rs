//! The free path (`free_percpu`, `pcpu_free_area`) and each policy's decision
//! after a free.

use crate::allocator::{Allocator, AreaChange};
use crate::chunk::Chunk;
use crate::error::FreeError;
use crate::policy::PolicyKind;
use crate::slots::{slot_key, Entry, SlotLayout};
use crate::{ChunkId, MIN_ALLOC_SIZE};

// === impl Allocator: free ===

impl Allocator {
    /// Size in bytes of the live allocation at `offset` of `chunk`, or why
    /// there is none.
    pub fn allocation_size(&self, chunk: ChunkId, offset: usize) -> Result<usize, FreeError> {
        let c = self.chunk(chunk).ok_or(FreeError::UnknownChunk(chunk))?;
        if offset % MIN_ALLOC_SIZE != 0 || offset >= c.nr_pages * self.geo.page_size() {
            return Err(FreeError::NotAllocated {
                chunk,
                offset,
                stale: false,
            });
        }
        let bit = (offset / MIN_ALLOC_SIZE) as i32;
        match c.live_area_bits(bit) {
            Some(bits) => Ok(bits as usize * MIN_ALLOC_SIZE),
            None => {
                let stale = c.bound_map.test(bit as usize) && !c.alloc_map.test(bit as usize);
                Err(FreeError::NotAllocated {
                    chunk,
                    offset,
                    stale,
                })
            }
        }
    }

    /// Free the allocation at `offset` of `chunk` (`free_percpu`). Returns its
    /// size. Never touches the backend; may schedule the balance work.
    ///
    /// A free of what is not a live allocation's start is refused
    /// ([`FreeError`]), a double free included, as long as nothing was
    /// allocated there since: an id and offset identify a place, not an
    /// object, so a stale free after the place was reused (in the same chunk,
    /// or in a new chunk that took a destroyed chunk's id) frees the new
    /// owner, as a stale pointer does in the kernel. An embedder that needs
    /// to tell them apart keeps the chunk's [`Chunk::serial`] with the
    /// allocation (the `pcpu` crate's handles do).
    ///
    /// [`Chunk::serial`]: crate::Chunk::serial
    #[doc(alias = "free_percpu")]
    pub fn free(&mut self, chunk: ChunkId, offset: usize) -> Result<usize, FreeError> {
        let id = chunk.0;
        let bit_off = offset / MIN_ALLOC_SIZE;
        let live = match self.arena.get_mut(id as usize).and_then(Entry::chunk_mut) {
            Some(c) if offset % MIN_ALLOC_SIZE == 0 && bit_off < c.map_bits as usize => {
                c.live_area_bits(bit_off as i32).map(|bits| (c, bits))
            }
            _ => None,
        };
        let Some((c, bits)) = live else {
            // Not a live allocation: say why, state unchanged.
            return Err(self.allocation_size(chunk, offset).err().unwrap_or(
                FreeError::NotAllocated {
                    chunk,
                    offset,
                    stale: false,
                },
            ));
        };
        if c.is_cached_at(bit_off) {
            // Its magazine hands it out or frees it.
            return Err(FreeError::Cached { chunk, offset });
        }
        let serial = c.serial;
        let change = free_in(self.layout, c, bit_off as i32, bits);
        if self.policy.short_lived {
            self.classes.transients.freed(id, serial, bit_off as i32);
        }
        self.area_freed(id, change);
        self.after_free(id);
        Ok(bits as usize * MIN_ALLOC_SIZE)
    }

    /// `pcpu_free_area` + relocation + stats.
    pub(crate) fn free_area_in(&mut self, id: u32, bit_off: i32, bits: i32) -> i32 {
        let c = self.arena[id as usize].chunk_mut().expect("live chunk");
        let change = free_in(self.layout, c, bit_off, bits);
        self.area_freed(id, change);
        bits
    }

    /// Relocation and stats after [`free_in`].
    #[inline]
    fn area_freed(&mut self, id: u32, change: AreaChange) {
        self.area_changed(id, change);
        self.stats.on_free();
    }

    /// The policy's decision after a free (`free_percpu`'s tail).
    #[inline]
    pub(crate) fn after_free(&mut self, id: u32) {
        let unit = self.geo.unit_size() as i32;
        let c = self.c(id);
        let fully_free = c.free_bytes == unit;
        match self.policy.kind {
            PolicyKind::Pcpu => {
                if self.should_reclaim(id, c) {
                    self.isolate(id);
                    self.balance_pending = true;
                } else if !c.isolated && fully_free && self.free_slot_has_other(id) {
                    self.balance_pending = true;
                }
            }
            PolicyKind::Linux514 | PolicyKind::Linux61 => {
                if !c.isolated && fully_free {
                    if self.free_slot_has_other(id) {
                        self.balance_pending = true;
                    }
                } else if self.should_reclaim(id, c) {
                    self.isolate(id);
                    self.balance_pending = true;
                }
            }
            PolicyKind::Linux511 => {
                if fully_free && self.free_slot_has_other(id) {
                    self.balance_pending = true;
                }
            }
            PolicyKind::SeedRfc => {
                if fully_free {
                    if self.free_slot_has_other(id) {
                        self.balance_pending = true;
                    }
                } else if c.empty_pop_pages_at_least(c.nr_pages / self.policy.reclaim_divisor + 1)
                    && id != self.first
                    && Some(id) != self.reserved
                {
                    let nslot = self.layout.chunk_slot(c);
                    let mark = !c.depopulate_mark
                        && !c.immutable
                        && self.lists.iter(nslot).any(|p| p != id);
                    if mark {
                        self.cm(id).depopulate_mark = true;
                        self.rfc_nr_marked += 1;
                    }
                    if self.rfc_nr_marked > self.policy.rfc_marked_threshold {
                        self.balance_pending = true;
                    }
                }
            }
        }
    }
}

/// `pcpu_free_area` on chunk `c` plus its allocation count, and what
/// [`Allocator::area_changed`] needs to know afterwards.
#[inline(always)]
fn free_in(layout: SlotLayout, c: &mut Chunk, bit_off: i32, bits: i32) -> AreaChange {
    let okey = slot_key(c);
    let delta = c.free_area(bit_off, bits);
    c.nr_alloc -= 1;
    AreaChange::of(layout, okey, c, delta)
}
