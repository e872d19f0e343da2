//! Slots, isolation and empty-page accounting: where a chunk is listed, the
//! global populated and empty-page counts, and the reclaim and refault
//! bookkeeping the balance work reads (`pcpu_chunk_relocate`,
//! `pcpu_isolate_chunk`, `pcpu_chunk_populated`, ...).

use core::ops::Range;

use crate::allocator::Allocator;
use crate::chunk::Chunk;
use crate::policy::PolicyKind;

// === impl Allocator: slots, isolation, empty-page accounting ===

impl Allocator {
    /// `pcpu_chunk_relocate(chunk, -1)`: list a chunk that is in no slot
    /// (new, or reintegrated) at the head of its slot. The allocation and
    /// free paths' relocation, from a known old slot, is
    /// [`Allocator::area_changed`]'s.
    pub(crate) fn relocate(&mut self, id: u32) {
        if Some(id) == self.reserved {
            return;
        }
        let c = self.c(id);
        if c.isolated || c.detached {
            return;
        }
        let nslot = self.layout.chunk_slot(c);
        self.lists.move_to(id, nslot, true);
    }

    /// Mirror a chunk's empty-page delta globally (`pcpu_update_empty_pages`).
    #[inline]
    pub(crate) fn account_empty(&mut self, id: u32, delta: i32) {
        if Some(id) != self.reserved {
            self.nr_empty_all += delta;
            if !self.c(id).isolated {
                self.nr_empty_pop_pages += delta;
            }
        }
    }

    /// `pcpu_isolate_chunk`.
    pub(crate) fn isolate(&mut self, id: u32) {
        let c = self.cm(id);
        if c.reclaiming {
            // A concurrent free while the balance run depopulates this chunk:
            // let the run take it again instead of sidelining it (the kernel
            // loses this re-queue when its list_move_tail() runs after it).
            c.requeued = true;
            return;
        }
        if !c.isolated {
            c.isolated = true;
            let n = c.nr_empty_pop_pages;
            self.nr_empty_pop_pages -= n;
        }
        let slot = self.layout.to_depopulate;
        self.lists.move_to(id, slot, true);
    }

    /// `pcpu_reintegrate_chunk`.
    #[inline]
    pub(crate) fn reintegrate(&mut self, id: u32) {
        let c = self.cm(id);
        if c.isolated {
            c.isolated = false;
            let n = c.nr_empty_pop_pages;
            self.nr_empty_pop_pages += n;
            self.relocate(id);
        }
    }

    /// `pcpu_chunk_populated`: pages now backed in every unit.
    pub(crate) fn chunk_populated(&mut self, id: u32, pages: Range<usize>) {
        let n = pages.len();
        if self.policy.refault_reserve_divisor != 0 {
            self.note_refaults(id, pages.clone());
        }
        let d = self.cm(id).mark_populated(pages);
        self.nr_populated += n;
        self.account_empty(id, d);
    }

    /// Pages a balance run populated: those still unpopulated are counted,
    /// and their number returned. An embedder that committed some of them
    /// meanwhile broke the protocol (a non-atomic allocation's population
    /// waits for the run); its pages are not counted twice.
    pub(crate) fn run_populated(&mut self, id: u32, pages: Range<usize>) -> usize {
        let mut n = 0;
        let mut start = pages.start;
        while let Some(run) = self.c(id).next_unpopulated(start..pages.end) {
            start = run.end;
            n += run.len();
            self.chunk_populated(id, run);
        }
        n
    }

    /// `pcpu_chunk_depopulated`.
    pub(crate) fn chunk_depopulated(&mut self, id: u32, pages: Range<usize>) {
        let n = pages.len();
        let d = self.cm(id).mark_depopulated(pages);
        self.nr_populated -= n;
        self.account_empty(id, d);
    }

    /// Pages of chunk `id` that reclaim depopulated get the next clock values.
    pub(crate) fn note_reclaimed(&mut self, id: u32, pages: Range<usize>) {
        if self.policy.refault_reserve_divisor == 0 {
            return;
        }
        let n = pages.len() as u64;
        let mut clock = self.reclaim_clock;
        for stamp in &mut self.cm(id).depop_stamp[pages] {
            clock += 1;
            *stamp = clock;
        }
        self.reclaim_clock = clock;
        // Forget old refaults as reclaim goes on: after depopulating
        // 2 x want pages without a refault, nothing is held back any more.
        self.refault_want = self.refault_want.saturating_sub(n.div_ceil(2));
    }

    /// Pages about to be populated: a page that reclaim depopulated `d` pages
    /// ago refaults, and a reserve of `d` more empty pages would have kept it.
    /// Only refaults the capped reserve could have prevented count.
    fn note_refaults(&mut self, id: u32, pages: Range<usize>) {
        let clock = self.reclaim_clock;
        let cap = self.refault_cap();
        let mut want = self.refault_want;
        for stamp in &mut self.cm(id).depop_stamp[pages] {
            if *stamp != 0 {
                let d = clock - *stamp + 1;
                if d <= cap {
                    want = want.max(d);
                }
                *stamp = 0;
            }
        }
        self.refault_want = want;
    }

    /// The largest refault reserve: `1 / refault_reserve_divisor` of the
    /// pages in use (0 when the knob is off).
    fn refault_cap(&self) -> u64 {
        let div = self.policy.refault_reserve_divisor;
        if div == 0 {
            return 0;
        }
        let in_use = self
            .nr_populated
            .saturating_sub(self.nr_empty_all.max(0) as usize);
        (in_use / div) as u64
    }

    /// Extra empty pages reclaim keeps beyond `empty_pop_high` (`pcpu`'s
    /// refault-aware reserve): the recent refault distance, capped at
    /// `1 / refault_reserve_divisor` of the pages in use.
    pub fn refault_reserve(&self) -> i32 {
        self.refault_want.min(self.refault_cap()) as i32
    }

    /// Reclaim stops once the empty pages (as [`Self::reserve_pages`]
    /// counts them) would drop below this.
    pub(crate) fn reclaim_floor(&self) -> i32 {
        self.policy.empty_pop_high + self.refault_reserve()
    }

    /// The empty pages as the policy counts them: Linux counts only
    /// non-isolated chunks (so many isolated chunks at once can stop reclaim
    /// early); `pcpu` counts every chunk, since an isolated chunk is
    /// reintegrated as soon as an allocation needs it.
    pub(crate) fn empty_pages(&self) -> i32 {
        if self.policy.kind == PolicyKind::Pcpu {
            self.nr_empty_all
        } else {
            self.nr_empty_pop_pages
        }
    }

    /// The reserve that protects atomic allocations, in pages, as the policy
    /// counts it for the balance work's targets: exact up to `cap` (callers
    /// compare against `cap` or less).
    ///
    /// Linux counts the empty pages ([`Self::empty_pages`]). When those fall
    /// short of `cap`, `pcpu` adds the first chunk's free room on its partly
    /// used pages ([`Chunk::room_on_used_pages`]), but only for the part of
    /// the reserve above `empty_pop_low`: the first chunk is never
    /// depopulated, so that room is always there for small atomic requests,
    /// and populating a page of another chunk instead would only keep one
    /// more page resident; the `empty_pop_low` empty pages stay real, for
    /// atomic requests larger than the room's holes (and the allocation-time
    /// check, [`Self::finish_alloc`], counts only those).
    pub(crate) fn reserve_pages(&self, cap: i32) -> i32 {
        let empty = self.empty_pages();
        if self.policy.kind != PolicyKind::Pcpu || empty >= cap {
            return empty;
        }
        // The policy is clamped: `empty_pop_low <= empty_pop_high`.
        let above_low = (self.policy.empty_pop_high - self.policy.empty_pop_low) as usize;
        let room = self.c(self.first).room_on_used_pages().min(above_low);
        empty + room as i32
    }

    /// `pcpu_should_reclaim_chunk` (5.14, percpu-vm.c); `c` is chunk `id`, as
    /// the caller looked it up.
    #[inline]
    pub(crate) fn should_reclaim(&self, id: u32, c: &Chunk) -> bool {
        if id == self.first || Some(id) == self.reserved {
            return false;
        }
        let high = self.policy.empty_pop_high;
        let threshold =
            (c.nr_pages / self.policy.reclaim_divisor).max(self.policy.reclaim_min_pages);
        match self.policy.kind {
            // Reclaim depopulates only down to the reserve, so a chunk holding
            // most of the empty pages can still give back the surplus. An
            // isolated chunk may keep empty pages that are the reserve
            // (`plan_reclaim`): it is queued again only when a page can go.
            // A fully free isolated chunk is always queued: reclaim returns
            // it to the free slot (it can hold nothing that a later free
            // would queue it for).
            PolicyKind::Pcpu => {
                let more = if c.isolated {
                    1
                } else {
                    self.policy.reclaim_surplus.max(1)
                };
                let want = self.reclaim_floor() + more;
                let fully_free = c.free_bytes == self.geo.unit_size() as i32;
                c.nr_empty_pop_pages > 0
                    && ((c.isolated && fully_free)
                        || ((c.isolated || c.empty_pop_pages_at_least(threshold))
                            && self.reserve_pages(want) >= want))
            }
            _ => {
                (c.isolated && c.nr_empty_pop_pages > 0)
                    || (self.nr_empty_pop_pages > high + c.nr_empty_pop_pages
                        && c.empty_pop_pages_at_least(threshold))
            }
        }
    }

    pub(crate) fn free_slot_has_other(&self, id: u32) -> bool {
        self.lists.iter(self.layout.free).any(|p| p != id)
    }
}
