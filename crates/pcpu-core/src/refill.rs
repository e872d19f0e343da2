//! `Policy::refill`: the order in which an allocation that found no room in
//! the active slots tries the sidelined chunks, and when such an allocation
//! leaves its chunk sidelined. The kernel's order (`Refill::Kernel`) is the
//! list's own and stays on `alloc_area`'s hot path; the others are here,
//! off it.

use alloc::vec::Vec;

use crate::allocator::{AllocFlags, Allocation, Allocator, Request};
use crate::policy::{Fit, Refill};

impl Allocator {
    /// [`Allocator::alloc_area`]'s walk of the sidelined slot, in the order
    /// of [`Policy::refill`], then of the free slot. The loop body is
    /// `alloc_area`'s own with `reintegrate_after`; a helper shared by both
    /// cost the exact path 0.5–1.4% more instructions (callgrind,
    /// `examples/pairloop.rs`), so they stay apart.
    #[inline(never)]
    pub(crate) fn alloc_refill(
        &mut self,
        req: Request,
        flags: AllocFlags,
        fit: Fit,
    ) -> Option<Allocation> {
        let ids = self
            .sidelined_by_refill()
            .into_iter()
            .chain(self.lists.iter(self.layout.free).collect::<Vec<_>>());
        for id in ids {
            let c = self.c(id);
            let Some(start) = c.find_block_fit(req.bits, req.bit_align, flags.atomic) else {
                continue;
            };
            let start = c.fit_start(fit, req.bits, req.bit_align, start);
            if let Some(a) = self.place(id, req, start) {
                self.reintegrate_after(id, req);
                if fit == Fit::Next {
                    self.note_rover(id, &a);
                }
                return Some(a);
            }
        }
        None
    }

    /// The chunks of `slot` in the order allocations try them, when that is
    /// not the list's own: the sidelined slot under [`Refill::Fullest`] or
    /// [`Refill::Room`] (not for atomic or reserved requests, which keep the
    /// kernel's order). Ties keep the list's order.
    pub(crate) fn refill_order(&self, slot: usize, flags: AllocFlags) -> Option<Vec<u32>> {
        if slot != self.layout.sidelined
            || self.policy.refill == Refill::Kernel
            || flags.atomic
            || flags.reserved
        {
            return None;
        }
        Some(self.sidelined_by_refill())
    }

    /// The sidelined chunks sorted for [`Policy::refill`] (off the hot path).
    #[inline(never)]
    fn sidelined_by_refill(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.lists.iter(self.layout.sidelined).collect();
        match self.policy.refill {
            Refill::Fullest => ids.sort_by_key(|&id| self.c(id).free_bytes()),
            Refill::Room => {
                ids.sort_by_key(|&id| core::cmp::Reverse(self.c(id).room_on_used_pages()))
            }
            Refill::Kernel => {}
        }
        ids
    }

    /// After `req` was placed in chunk `id`: reintegrate the chunk if it was
    /// isolated (`pcpu_reintegrate_chunk`), except that under
    /// [`Refill::Fullest`] and [`Refill::Room`] an allocation of a page or
    /// more leaves a sidelined chunk sidelined (so the refill order, not the
    /// large objects, decides where small objects go).
    pub(crate) fn reintegrate_after(&mut self, id: u32, req: Request) {
        if !self.c(id).isolated {
            return;
        }
        let keep_sidelined = self.policy.refill != Refill::Kernel
            && req.size >= self.geo.page_size()
            && self.lists.slot_of(id) == Some(self.layout.sidelined as u16);
        if !keep_sidelined {
            self.reintegrate(id);
        }
    }
}
