//! Re-populated pages: a page populated again after a depopulation of the
//! same chunk (the page traffic a policy could have saved by keeping it),
//! counted for our allocator and, from the kprobes, for the kernel. The
//! policy lab counts its thrash windows over a replay's page log with the
//! same [`Refaults`].

use std::collections::HashMap;
use std::ops::Range;

use crate::engine::{PageOp, PageOpKind};

/// A re-population counts as *soon* when it comes at most this many balance
/// runs after the depopulation (the study's measure of thrash).
pub const SOON_RUNS: u64 = 16;

/// Depopulated pages waiting to be populated again, and the counts.
///
/// Each depopulation and population carries the balance runs done so far
/// and an event index (any increasing count the caller chooses); a
/// re-population within `runs_window` runs, or within `events_window`
/// events, of the depopulation is counted in `within_runs` or
/// `within_events`.
///
/// # Invariants
/// `within_runs <= pages` and `within_events <= pages`; every key is a page
/// depopulated since its chunk was created, not populated since.
#[derive(Debug, Default)]
pub struct Refaults {
    /// (chunk, page) → (balance runs, event) when it was depopulated.
    last: HashMap<(u64, u32), (u64, u64)>,
    runs_window: u64,
    events_window: u64,
    /// Pages populated again after a depopulation.
    pub pages: u64,
    /// Of those, within `runs_window` balance runs.
    pub within_runs: u64,
    /// Of those, within `events_window` events.
    pub within_events: u64,
}

impl Refaults {
    /// Counts with these windows.
    pub fn new(runs_window: u64, events_window: u64) -> Refaults {
        Refaults {
            runs_window,
            events_window,
            ..Refaults::default()
        }
    }

    /// `pages` of `chunk` were depopulated after `run` balance runs, at
    /// `event`.
    pub fn depopulated(&mut self, chunk: u64, pages: Range<u32>, run: u64, event: u64) {
        for p in pages {
            self.last.insert((chunk, p), (run, event));
        }
    }

    /// `pages` of `chunk` were populated after `run` balance runs, at
    /// `event`.
    pub fn populated(&mut self, chunk: u64, pages: Range<u32>, run: u64, event: u64) {
        if self.last.is_empty() {
            return;
        }
        for p in pages {
            if let Some((at_run, at_event)) = self.last.remove(&(chunk, p)) {
                self.pages += 1;
                if run.saturating_sub(at_run) <= self.runs_window {
                    self.within_runs += 1;
                }
                if event.saturating_sub(at_event) <= self.events_window {
                    self.within_events += 1;
                }
            }
        }
    }

    /// `chunk` was created or destroyed: its pages start afresh (ids and
    /// addresses are reused).
    pub fn forget(&mut self, chunk: u64) {
        if !self.last.is_empty() {
            self.last.retain(|&(c, _), _| c != chunk);
        }
    }

    /// Count one operation of a replay's page log
    /// ([`Replayer::page_log`](crate::Replayer::page_log)) at `event`.
    pub fn page_op(&mut self, op: &PageOp, event: u64) {
        let chunk = u64::from(op.chunk);
        match op.kind {
            PageOpKind::CreateChunk | PageOpKind::DestroyChunk => self.forget(chunk),
            PageOpKind::Depopulate => {
                self.depopulated(chunk, op.pages.clone(), op.balance_run, event);
            }
            PageOpKind::Populate => self.populated(chunk, op.pages.clone(), op.balance_run, event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pages_populated_again_and_how_soon() {
        let mut r = Refaults::new(SOON_RUNS, 100);
        r.populated(1, 0..4, 0, 0); // first population: not a re-population
        r.depopulated(1, 0..4, 3, 10);
        r.populated(1, 2..6, 10, 50); // pages 2 and 3 again, 7 runs later
        assert_eq!((r.pages, r.within_runs, r.within_events), (2, 2, 2));
        // page 0, too late for both windows
        r.populated(1, 0..1, 3 + SOON_RUNS + 1, 111);
        assert_eq!((r.pages, r.within_runs, r.within_events), (3, 2, 2));
        r.forget(1); // destroyed: page 1 will be a first population
        r.populated(1, 1..2, 40, 200);
        assert_eq!(r.pages, 3);
        r.depopulated(2, 0..1, 0, 0);
        r.populated(1, 0..1, 0, 0); // another chunk's page
        assert_eq!(r.pages, 3);
    }
}
