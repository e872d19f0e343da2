//! The balance work (`pcpu_balance_workfn`) on real memory (the `worker`
//! module runs it in the background when the core schedules it).
//!
//! A run holds `alloc_mutex` throughout and `state` only while planning or
//! committing one page operation ([`BalanceRun::next`] / [`BalanceRun::done`]),
//! so allocations from populated space and frees proceed while pages are
//! (de)populated, chunks mapped or unmapped (the kernel's "take the mutex,
//! then the spinlock once, drop the spinlock around slow work").

use std::time::{Duration, Instant};

use pcpu_core::{BalanceReport, BalanceRun, PageWork};

use crate::handle;
use crate::inner::{AllocLock, Inner, State};
use crate::sync::MutexGuard;
use crate::sys::mmap::Region;

const POISONED: &str = "pcpu: allocator state poisoned by an internal panic";

// === impl Inner: one balance run ===

impl Inner {
    /// Run one whole balance run on the calling thread.
    pub(crate) fn balance_run(&self) -> BalanceReport {
        let serial = self.serialise();
        let mut st = self.state();
        if st.stop {
            // The worker took the allocator off its queue just before its
            // last handle's drop began: the memory is about to be unmapped.
            return BalanceReport::default();
        }
        if crate::sys::fault::take_balance_panic() {
            panic!("pcpu: a balance run panicked (fault injection)");
        }
        // The alloc lock held here serialises runs: none is open.
        let Ok(mut run) = st.core.balance_start() else {
            return BalanceReport::default();
        };
        st.kicked = false;
        st.running = true;
        if let Some(t) = &mut st.trace {
            t.balance_run();
        }
        while let Some(work) = run.next(&mut st.core) {
            st = self.perform(st, &serial, &mut run, work);
        }
        st.running = false;
        st.runs += 1;
        let report = run.report();
        st.balance_failures += report.failures as u64;
        st.balance_populated += report.populated as u64;
        st.balance_depopulated += report.depopulated as u64;
        self.idle.notify_all();
        // Frees during the run may have scheduled more work.
        self.kick(&mut st);
        report
    }

    /// Perform one planned page operation with `state` dropped, and commit it.
    fn perform<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        serial: &AllocLock<'_>,
        run: &mut BalanceRun,
        work: PageWork,
    ) -> MutexGuard<'a, State> {
        match work {
            PageWork::Populate { chunk, pages } => {
                let region = st.region(chunk);
                drop(st);
                let populated = region.populate(pages.clone());
                let ok = populated.is_ok();
                drop(region);
                st = self.state();
                if let Some(t) = &mut st.trace {
                    match ok {
                        true => t.pages(chunk, pages, true),
                        false => t.map_failed(
                            &format!("populating pages {pages:?} of chunk {}", chunk.0),
                            &populated.err().map_or(String::new(), |e| e.to_string()),
                        ),
                    }
                }
                run.done(&mut st.core, ok);
            }
            PageWork::Depopulate { chunk, pages } => {
                let ok;
                (st, ok) = handle::depopulate_empty(self, st, serial, chunk, pages.clone());
                if let Some(t) = &mut st.trace {
                    match ok {
                        true => t.pages(chunk, pages, false),
                        false => t.map_failed(
                            &format!("depopulating pages {pages:?} of chunk {}", chunk.0),
                            &"the pages stay populated",
                        ),
                    }
                }
                run.done(&mut st.core, ok);
            }
            // `depopulate` already shot down the TLB (MADV_DONTNEED).
            PageWork::FlushTlb { .. } => run.done(&mut st.core, true),
            PageWork::CreateChunk { chunk } => {
                drop(st);
                let reserved = Region::reserve(
                    self.config.units(),
                    self.config.unit_size(),
                    self.config.region.clone(),
                );
                st = self.state();
                if let (Err(e), Some(t)) = (&reserved, &mut st.trace) {
                    t.map_failed("a chunk", e);
                }
                run.done(&mut st.core, reserved.is_ok());
                if let Ok(region) = reserved {
                    st.install(chunk, region);
                }
            }
            PageWork::DestroyChunk { chunk } => {
                // The core destroys only chunks without allocations. Should a
                // bug ever plan otherwise, stop here, with `state` held (so
                // every later call fails too): unmapping would leave live
                // objects dangling, and forgetting the chunk would let its id
                // and offsets be handed out again under them.
                if st.core.chunk(chunk).is_some_and(|c| c.nr_alloc() > 0) {
                    panic!(
                        "pcpu: the balance work planned to destroy chunk {} holding allocations",
                        chunk.0
                    );
                }
                run.done(&mut st.core, true);
                if let Some(t) = &mut st.trace {
                    t.destroy_chunk(chunk);
                }
                let region = st.regions.get_mut(chunk.0 as usize).and_then(Option::take);
                drop(st);
                // munmap, unless a (stale) handle still holds the region.
                drop(region);
                st = self.state();
            }
        }
        st
    }

    /// Balance until a run finds nothing to give back and nothing is
    /// pending: at least one run, at most `max`.
    ///
    /// Nothing pending is not enough: one run, as the kernel's, can end with
    /// a surplus free chunk still populated (reclaim reintegrates it after
    /// the run's first pass over the free chunks, and the last pass destroys
    /// only unpopulated ones), and nothing schedules the run that would
    /// destroy it.
    pub(crate) fn settle(&self, max: usize) -> usize {
        let mut runs = 0;
        loop {
            let report = self.balance_run();
            runs += 1;
            let gave_back = report.destroyed > 0 || report.depopulated > 0;
            if runs >= max || (!gave_back && !self.state().core.balance_pending()) {
                return runs;
            }
        }
    }

    /// Wait until no balance run is in progress and (with the background
    /// thread, in the process that started it) none is pending, or
    /// `timeout` passes. True when idle.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        // No deadline when it would overflow (`Duration::MAX`): wait as long
        // as it takes.
        let deadline = Instant::now().checked_add(timeout);
        // In a `fork()`ed child no thread would ever run the pending work.
        let background = self.config.background_balance && !self.in_forked_child();
        let mut st = self.state();
        loop {
            let pending = background && st.core.balance_pending();
            if !st.running && !pending {
                return true;
            }
            st = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.idle
                        .wait_timeout(st, deadline - now)
                        .expect(POISONED)
                        .0
                }
                None => self.idle.wait(st).expect(POISONED),
            };
        }
    }
}
