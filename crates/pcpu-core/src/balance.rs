//! The balance work (`pcpu_balance_workfn`) as a step-by-step state machine.
//!
//! The kernel runs the balance work holding `pcpu_alloc_mutex` and drops
//! `pcpu_lock` around every page operation. Here each page operation is a
//! [`PageWork`] item: [`BalanceRun::next`] plans it under the caller's lock,
//! the caller performs it (lock dropped if it likes), and
//! [`BalanceRun::done`] commits its result under the lock again. Between the
//! two, frees may run, and atomic allocations (which never populate), but
//! never on a chunk that the run is depopulating (isolated or detached
//! chunks are invisible to them). Everything else is serialised with the
//! run by the caller, as the kernel's `pcpu_alloc_mutex` does: other balance
//! runs, chunk creation, and non-atomic allocations, whose population
//! ([`Allocator::next_unpopulated`] to [`Allocator::commit_populated`])
//! would otherwise populate the pages of a planned
//! [`PageWork::Populate`] a second time (the allocator then counts them
//! once, but the backend did the work twice). [`Allocator::balance`] drives
//! a whole run inline.
//!
//! A run holds chunks off the lists while it works on them (chunks to
//! destroy, the chunk under reclaim): drive it until [`BalanceRun::next`]
//! returns `None`, or give it up with [`BalanceRun::abort`], never just drop
//! it. One run at a time: [`Allocator::balance_start`] refuses a second one
//! while the first is open, and a run drives only the allocator that
//! started it (given another, or once over, it plans and commits nothing).

use alloc::vec::Vec;
use core::ops::Range;

use crate::allocator::Allocator;
use crate::backend::Backend;
use crate::error::{held, BalanceError};
use crate::policy::Stage;
use crate::{ChunkId, ChunkKind};

/// One page operation planned by a balance run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageWork {
    /// Populate `pages` of `chunk` in every unit.
    Populate {
        /// Chunk.
        chunk: ChunkId,
        /// Pages per unit.
        pages: Range<usize>,
    },
    /// Depopulate `pages` of `chunk` in every unit (they hold no live data).
    Depopulate {
        /// Chunk.
        chunk: ChunkId,
        /// Pages per unit.
        pages: Range<usize>,
    },
    /// Batched TLB flush after depopulating pages of a live chunk.
    FlushTlb {
        /// Chunk.
        chunk: ChunkId,
        /// Lowest to highest page depopulated.
        pages: Range<usize>,
    },
    /// Create chunk `chunk` (id already reserved, for the run: `done`
    /// installs it, or releases it on failure; `finish_create_chunk` and
    /// `abort_create_chunk` refuse it).
    CreateChunk {
        /// Chunk id to create.
        chunk: ChunkId,
    },
    /// Destroy `chunk` (fully depopulated, no allocation).
    DestroyChunk {
        /// Chunk.
        chunk: ChunkId,
    },
}

/// What one balance run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceReport {
    /// Pages per unit populated.
    pub populated: usize,
    /// Pages per unit depopulated (reclaim and chunk destruction).
    pub depopulated: usize,
    /// Chunks created.
    pub created: usize,
    /// Chunks destroyed.
    pub destroyed: usize,
    /// Backend operations that failed.
    pub failures: usize,
}

#[derive(Clone, Debug)]
struct ReclaimChunk {
    id: u32,
    i: isize,
    end: isize,
    lo: usize,
    hi: usize,
    reintegrate: bool,
    scanned: bool,
    flushed: bool,
}

#[derive(Clone, Debug)]
enum State {
    Start,
    Free {
        to_free: Vec<u32>,
        idx: usize,
    },
    Reclaim {
        cur: Option<ReclaimChunk>,
        /// Chunks taken so far (`Policy::reclaim_batch`).
        taken: usize,
    },
    Populate {
        nr_to_pop: i32,
        recompute: bool,
        slot: usize,
        chunk: Option<u32>,
        cursor: usize,
    },
    Shrink {
        list: Vec<u32>,
        idx: usize,
        cur: Option<(u32, usize, Option<usize>)>,
    },
    Done,
}

/// One balance run in progress; see the module docs. Drive it to its end or
/// [`abort`](BalanceRun::abort) it: dropping it part-way leaves the chunks
/// it took off the lists off them for good. Not `Clone`: two copies of a run
/// would commit its work twice.
///
/// # Invariants
/// While `open`, it is its allocator's open run: the allocator's `instance`
/// is `owner` and its `open_run` is `Some(serial)`. Only then do
/// [`next`](BalanceRun::next), [`done`](BalanceRun::done) and
/// [`abort`](BalanceRun::abort) touch the allocator.
#[derive(Debug)]
#[must_use = "a balance run must be driven to its end or aborted"]
pub struct BalanceRun {
    /// The run has neither ended nor been aborted.
    open: bool,
    /// The allocator that started it, and its number there.
    owner: usize,
    serial: u64,
    stage: usize,
    state: State,
    pending: Option<PageWork>,
    report: BalanceReport,
}

impl Allocator {
    /// Start a balance run (the work item begins executing): clears the
    /// pending flag; triggers during the run set it again. Refused, with
    /// nothing changed, while a run of this allocator is open.
    pub fn balance_start(&mut self) -> Result<BalanceRun, BalanceError> {
        if self.open_run.is_some() {
            return Err(BalanceError::RunOpen);
        }
        self.balance_pending = false;
        self.runs_started += 1;
        let serial = crate::allocator::next_token(self.runs_started);
        self.open_run = Some(serial);
        Ok(BalanceRun {
            open: true,
            owner: self.instance,
            serial,
            stage: 0,
            state: State::Start,
            pending: None,
            report: BalanceReport::default(),
        })
    }

    /// Run a whole balance run inline against `backend`. While a run started
    /// with [`Allocator::balance_start`] is open, it does nothing and returns
    /// an empty report: that run is the balance work in progress, and the
    /// work stays pending ([`Allocator::balance_pending`]) for the next.
    #[doc(alias = "pcpu_balance_workfn")]
    pub fn balance<B: Backend + ?Sized>(&mut self, backend: &mut B) -> BalanceReport {
        let Ok(mut run) = self.balance_start() else {
            return BalanceReport::default();
        };
        while let Some(w) = run.next(self) {
            let ok = match &w {
                PageWork::Populate { chunk, pages } => {
                    backend.populate(*chunk, pages.clone()).is_ok()
                }
                PageWork::Depopulate { chunk, pages } => {
                    backend.depopulate(*chunk, pages.clone()).is_ok()
                }
                PageWork::FlushTlb { chunk, pages } => {
                    backend.flush_tlb(*chunk, pages.clone());
                    true
                }
                PageWork::CreateChunk { chunk } => {
                    backend.create_chunk(*chunk, self.geo.unit_pages()).is_ok()
                }
                PageWork::DestroyChunk { chunk } => {
                    backend.destroy_chunk(*chunk);
                    true
                }
            };
            run.done(self, ok);
        }
        run.report()
    }
}

impl BalanceRun {
    /// What the run did so far.
    pub fn report(&self) -> BalanceReport {
        self.report
    }

    /// Give the run up (an embedder's error path, shutdown) and put back
    /// what it holds: chunks it took off the free slot to destroy go back to
    /// it, the chunk under reclaim stays queued for reclaim, a chunk the
    /// seed-rfc shrink detached goes back to its slot, and a chunk id
    /// reserved for creation is released. What [`done`](BalanceRun::done)
    /// committed stays. A pending operation (planned by
    /// [`next`](BalanceRun::next), not yet committed) counts as not
    /// performed: commit one that was performed with `done` first (and
    /// perform the TLB flush of a pending [`PageWork::FlushTlb`]). The work
    /// left is pending again ([`Allocator::balance_pending`]). Returns what
    /// the run did.
    ///
    /// Given another allocator than the one that started it, or once the
    /// run is over, it changes nothing.
    pub fn abort(mut self, a: &mut Allocator) -> BalanceReport {
        if !self.drives(a) {
            return self.report;
        }
        if let Some(PageWork::CreateChunk { chunk }) = self.pending.take() {
            held(a.release_id(chunk, true));
        }
        match &self.state {
            State::Free { to_free, idx } => {
                for &id in &to_free[*idx..] {
                    reattach(a, id);
                }
            }
            State::Reclaim { cur: Some(rc), .. } => {
                // It is still queued (`to_depopulate`): the next run scans
                // it from the top again.
                let c = a.cm(rc.id);
                c.reclaiming = false;
                c.requeued = false;
            }
            State::Shrink {
                cur: Some((id, ..)),
                ..
            } => reattach(a, *id),
            _ => {}
        }
        self.state = State::Done;
        self.close(a);
        a.balance_pending = true;
        self.report
    }

    /// Plan the next page operation, or `None` when the run is over. Each
    /// item is to be followed by [`BalanceRun::done`]; called again before
    /// that, it returns the same operation (nothing was committed). Given
    /// another allocator than the one that started it, or once the run is
    /// over, it returns `None` and changes nothing.
    pub fn next(&mut self, a: &mut Allocator) -> Option<PageWork> {
        if !self.drives(a) {
            return None;
        }
        if let Some(w) = &self.pending {
            return Some(w.clone());
        }
        let Some(w) = self.plan(a) else {
            self.close(a);
            return None;
        };
        self.pending = Some(w.clone());
        Some(w)
    }

    /// Is this run open, and `a`'s open run?
    fn drives(&self, a: &Allocator) -> bool {
        self.open && a.instance == self.owner && a.open_run == Some(self.serial)
    }

    /// The run is over: no longer open (called only while it `drives` `a`).
    fn close(&mut self, a: &mut Allocator) {
        self.open = false;
        a.open_run = None;
    }

    fn advance(&mut self) {
        self.stage += 1;
        self.state = State::Start;
    }

    fn plan(&mut self, a: &mut Allocator) -> Option<PageWork> {
        loop {
            let stages = a.policy.stages();
            if matches!(self.state, State::Done) && self.stage >= stages.len() {
                return None;
            }
            let Some(&stage) = stages.get(self.stage) else {
                self.state = State::Done;
                return None;
            };
            if matches!(self.state, State::Start) {
                self.state = match stage {
                    Stage::FreeChunks { empty_only } => State::Free {
                        to_free: collect_free(a, empty_only),
                        idx: 0,
                    },
                    Stage::Reclaim => State::Reclaim {
                        cur: None,
                        taken: 0,
                    },
                    Stage::Populate => State::Populate {
                        nr_to_pop: populate_target(a),
                        recompute: true,
                        slot: a.layout.size_to_slot(a.geo.page_size()),
                        chunk: None,
                        cursor: 0,
                    },
                    Stage::RfcPopulateOrShrink => rfc_state(a),
                };
            }
            let w = match &mut self.state {
                State::Free { to_free, idx } => plan_free(a, to_free, idx),
                State::Reclaim { cur, taken } => plan_reclaim(a, cur, taken),
                State::Populate {
                    nr_to_pop,
                    slot,
                    chunk,
                    cursor,
                    ..
                } => plan_populate(a, nr_to_pop, slot, chunk, cursor),
                State::Shrink { list, idx, cur } => plan_shrink(a, list, idx, cur),
                State::Start => None,
                State::Done => None,
            };
            match w {
                Some(w) => return Some(w),
                None => self.advance(),
            }
        }
    }

    /// Commit the result of the pending page operation. Given another
    /// allocator than the one that started it, it changes nothing (the
    /// operation stays pending).
    pub fn done(&mut self, a: &mut Allocator, ok: bool) {
        if !self.drives(a) {
            return;
        }
        let Some(w) = self.pending.take() else { return };
        if !ok {
            self.report.failures += 1;
        }
        match (&mut self.state, w) {
            (State::Free { idx, to_free }, PageWork::Depopulate { chunk, pages }) => {
                // The chunk is destroyed next, which releases its memory even
                // if this depopulation failed: account the pages as gone.
                debug_assert_eq!(to_free[*idx], chunk.0);
                self.report.depopulated += pages.len();
                a.chunk_depopulated(chunk.0, pages);
            }
            (State::Free { idx, .. }, PageWork::DestroyChunk { chunk }) => {
                a.remove_chunk(chunk.0);
                self.report.destroyed += 1;
                *idx += 1;
            }
            (State::Reclaim { cur: Some(rc), .. }, PageWork::Depopulate { chunk, pages }) => {
                if ok {
                    rc.lo = rc.lo.min(pages.start);
                    rc.hi = rc.hi.max(pages.end);
                    self.report.depopulated += pages.len();
                    a.note_reclaimed(chunk.0, pages.clone());
                    a.chunk_depopulated(chunk.0, pages);
                }
                rc.end = -1;
                rc.i -= 1;
            }
            (State::Reclaim { .. }, PageWork::FlushTlb { .. }) => {}
            (
                State::Populate {
                    nr_to_pop, cursor, ..
                },
                PageWork::Populate { chunk, pages },
            ) => {
                if ok {
                    *nr_to_pop -= pages.len() as i32;
                    *cursor = pages.end;
                    self.report.populated += a.run_populated(chunk.0, pages);
                } else {
                    *nr_to_pop = 0;
                }
            }
            (
                State::Populate {
                    nr_to_pop,
                    recompute,
                    slot,
                    chunk,
                    ..
                },
                PageWork::CreateChunk { chunk: id },
            ) => {
                if ok {
                    held(a.install_chunk(id, true));
                    self.report.created += 1;
                    // `retry_pop`: the target again, and an atomic
                    // failure while the chunk was created boosts it.
                    if *recompute {
                        *nr_to_pop = populate_target(a);
                    }
                    *slot = a.layout.size_to_slot(a.geo.page_size());
                    *chunk = None;
                } else {
                    held(a.release_id(id, true));
                    *nr_to_pop = 0;
                }
            }
            (State::Shrink { cur: Some(cur), .. }, PageWork::Depopulate { chunk, pages }) => {
                if ok {
                    self.report.depopulated += pages.len();
                    a.chunk_depopulated(chunk.0, pages);
                }
                cur.2 = None;
            }
            (_, w) => debug_assert!(false, "unexpected completion {w:?}"),
        }
    }
}

/// Put detached chunk `id` back on the list of its slot.
fn reattach(a: &mut Allocator, id: u32) {
    a.cm(id).detached = false;
    let slot = a.layout.chunk_slot(a.c(id));
    a.lists.move_to(id, slot, false);
}

/// `pcpu_balance_free`: detach the free slot's chunks except the head.
fn collect_free(a: &mut Allocator, empty_only: bool) -> Vec<u32> {
    let slot = a.layout.free;
    let head = a.lists.head(slot);
    let ids: Vec<u32> = a.lists.iter(slot).collect();
    let mut to_free = Vec::new();
    for id in ids {
        // The first chunk is fully free when its dynamic area fills the unit
        // (no static or reserved area): it may sit in the free slot, but it
        // is never freed (the kernel WARNs on an immutable chunk there).
        if Some(id) == head || a.c(id).kind != ChunkKind::Dynamic {
            continue;
        }
        if !empty_only || a.c(id).nr_empty_pop_pages == 0 {
            a.lists.unlink(id);
            a.cm(id).detached = true;
            // list_move() to the private list puts each at its head.
            to_free.insert(0, id);
        }
    }
    to_free
}

fn plan_free(a: &Allocator, to_free: &[u32], idx: &mut usize) -> Option<PageWork> {
    let &id = to_free.get(*idx)?;
    let c = a.c(id);
    let chunk = ChunkId(id);
    Some(match c.populated.set_runs(0, c.nr_pages).next() {
        Some(pages) => PageWork::Depopulate { chunk, pages },
        None => PageWork::DestroyChunk { chunk },
    })
}

/// `pcpu_reclaim_populated`, one page operation at a time.
fn plan_reclaim(
    a: &mut Allocator,
    cur: &mut Option<ReclaimChunk>,
    taken: &mut usize,
) -> Option<PageWork> {
    loop {
        if cur.is_none() {
            let id = a.lists.head(a.layout.to_depopulate)?;
            if *taken >= a.policy.reclaim_batch {
                // The batch is done: the rest waits for the next run.
                a.balance_pending = true;
                return None;
            }
            *taken += 1;
            a.cm(id).reclaiming = true;
            let n = a.c(id).nr_pages;
            *cur = Some(ReclaimChunk {
                id,
                i: n as isize - 1,
                end: -1,
                lo: n,
                hi: 0,
                reintegrate: false,
                scanned: false,
                flushed: false,
            });
        }
        let rc = cur.as_mut()?;
        let chunk = ChunkId(rc.id);
        while !rc.scanned && rc.i >= 0 {
            let c = a.c(rc.id);
            if c.nr_empty_pop_pages == 0 {
                rc.scanned = true;
                break;
            }
            let i = rc.i as usize;
            let empty = c.md_blocks[i].is_empty_block() && c.populated.test(i);
            let floor = a.reclaim_floor();
            if a.policy.kind == crate::PolicyKind::Pcpu {
                // `pcpu`'s reserve counts isolated chunks (the kernel's
                // does not), so a run of empty pages depopulated at once
                // could take it below the floor, and the populate stage
                // would then populate as many pages elsewhere: count the
                // run found so far and stop before the page that would.
                let pending = if rc.end == -1 {
                    0
                } else {
                    (rc.end - rc.i) as i32
                };
                let need = floor + pending + i32::from(empty);
                let have = a.reserve_pages(need);
                if have < need {
                    // Isolated chunks' empty pages count for `pcpu`'s
                    // reserve, so the chunk need not come back for it.
                    rc.scanned = true;
                    // The top of the run that the reserve can spare.
                    let spare = (have - floor).clamp(0, pending);
                    if spare > 0 {
                        let end = rc.end as usize + 1;
                        return Some(PageWork::Depopulate {
                            chunk,
                            pages: end - spare as usize..end,
                        });
                    }
                    break;
                }
            } else if a.reserve_pages(floor) < floor {
                rc.reintegrate = true;
                rc.scanned = true;
                break;
            }
            if empty {
                if rc.end == -1 {
                    rc.end = rc.i;
                }
                if rc.i > 0 {
                    rc.i -= 1;
                    continue;
                }
                rc.i -= 1;
            }
            if rc.end == -1 {
                rc.i -= 1;
                continue;
            }
            return Some(PageWork::Depopulate {
                chunk,
                pages: (rc.i + 1) as usize..(rc.end + 1) as usize,
            });
        }
        rc.scanned = true;
        if rc.lo < rc.hi && !rc.flushed {
            rc.flushed = true;
            return Some(PageWork::FlushTlb {
                chunk,
                pages: rc.lo..rc.hi,
            });
        }
        let (id, reintegrate) = (rc.id, rc.reintegrate);
        *cur = None;
        let c = a.cm(id);
        c.reclaiming = false;
        if core::mem::take(&mut c.requeued) && !reintegrate {
            // Frees made pages empty behind the backward scan: scan again.
            let slot = a.layout.to_depopulate;
            a.lists.move_to(id, slot, false);
            continue;
        }
        if reintegrate || !a.policy.sideline || a.c(id).free_bytes == a.geo.unit_size() as i32 {
            a.reintegrate(id);
        } else {
            let slot = a.layout.sidelined;
            a.lists.move_to(id, slot, false);
        }
    }
}

fn nr_to_pop_now(a: &Allocator) -> i32 {
    let high = a.policy.empty_pop_high;
    (high - a.reserve_pages(high)).clamp(0, high)
}

/// `pcpu_balance_populated`'s target, consuming the atomic-failure flag.
fn populate_target(a: &mut Allocator) -> i32 {
    if a.atomic_alloc_failed {
        a.atomic_alloc_failed = false;
        a.policy.empty_pop_high
    } else {
        nr_to_pop_now(a)
    }
}

/// `pcpu_balance_populated`, one page operation at a time.
fn plan_populate(
    a: &mut Allocator,
    nr_to_pop: &mut i32,
    slot: &mut usize,
    chunk: &mut Option<u32>,
    cursor: &mut usize,
) -> Option<PageWork> {
    loop {
        if *nr_to_pop <= 0 {
            return None;
        }
        if let Some(id) = *chunk {
            let c = a.c(id);
            if let Some(run) = c.populated.clear_runs(*cursor, c.nr_pages).next() {
                let nr = run.len().min(*nr_to_pop as usize);
                return Some(PageWork::Populate {
                    chunk: ChunkId(id),
                    pages: run.start..run.start + nr,
                });
            }
            *chunk = None;
            *slot += 1;
            continue;
        }
        if *slot > a.layout.free {
            return Some(PageWork::CreateChunk {
                chunk: a.reserve_id(true),
            });
        }
        // W2: Linux may populate a sidelined chunk, whose pages then help no
        // one until it is reintegrated; `pcpu` skips the sidelined slot.
        let skip = a.policy.kind == crate::PolicyKind::Pcpu && *slot == a.layout.sidelined;
        let found = (!skip)
            .then(|| {
                a.lists.iter(*slot).find(|&id| {
                    let c = a.c(id);
                    c.nr_pages > c.nr_populated
                })
            })
            .flatten();
        match found {
            Some(id) => {
                *chunk = Some(id);
                *cursor = 0;
            }
            None => *slot += 1,
        }
    }
}

/// RFC `pcpu_balance_populated`: grow when short of empty pages, otherwise
/// shrink marked chunks.
fn rfc_state(a: &mut Allocator) -> State {
    let high = a.policy.empty_pop_high;
    let start_slot = a.layout.size_to_slot(a.geo.page_size());
    let grow = |n| State::Populate {
        nr_to_pop: n,
        recompute: false,
        slot: start_slot,
        chunk: None,
        cursor: 0,
    };
    if a.atomic_alloc_failed {
        a.atomic_alloc_failed = false;
        grow(high)
    } else if a.nr_empty_pop_pages < high {
        grow(high - a.nr_empty_pop_pages)
    } else if a.rfc_nr_marked > 0 {
        let mut list = Vec::new();
        for slot in (0..=a.layout.free).rev() {
            list.extend(a.lists.iter(slot));
        }
        State::Shrink {
            list,
            idx: 0,
            cur: None,
        }
    } else {
        State::Done
    }
}

/// RFC `pcpu_shrink_populated`: marked chunks, slots top down, pages forward.
fn plan_shrink(
    a: &mut Allocator,
    list: &[u32],
    idx: &mut usize,
    cur: &mut Option<(u32, usize, Option<usize>)>,
) -> Option<PageWork> {
    let high = a.policy.empty_pop_high;
    loop {
        if cur.is_none() {
            if *idx >= list.len() || a.nr_empty_pop_pages < high || a.rfc_nr_marked < 1 {
                return None;
            }
            let id = list[*idx];
            *idx += 1;
            match a.arena[id as usize].chunk() {
                Some(c) if c.depopulate_mark => {}
                _ => continue,
            }
            a.cm(id).depopulate_mark = false;
            a.rfc_nr_marked -= 1;
            // INVARIANT: detached chunks are on no list; re-listed below.
            a.lists.unlink(id);
            a.cm(id).detached = true;
            *cur = Some((id, 0, None));
        }
        let (id, i, start) = cur.as_mut()?;
        let c = a.c(*id);
        while *i < c.nr_pages {
            if c.nr_empty_pop_pages == 0 {
                *i = c.nr_pages;
                break;
            }
            if c.md_blocks[*i].is_empty_block() && c.populated.test(*i) {
                start.get_or_insert(*i);
                *i += 1;
                continue;
            }
            if let Some(s) = *start {
                return Some(PageWork::Depopulate {
                    chunk: ChunkId(*id),
                    pages: s..*i,
                });
            }
            *i += 1;
        }
        if let Some(s) = *start {
            return Some(PageWork::Depopulate {
                chunk: ChunkId(*id),
                pages: s..c.nr_pages,
            });
        }
        let id = *id;
        *cur = None;
        reattach(a, id);
    }
}
