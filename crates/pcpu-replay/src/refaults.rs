//! Re-populated pages: a page populated again after a depopulation of the
//! same chunk (the page traffic a policy could have saved by keeping it),
//! counted for our allocator and, from the kprobes, for the kernel. The
//! policy lab counts its thrash windows over a replay's page log with the
//! same [`Refaults`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::page_log::{PageOp, PageOpKind};

/// A re-population counts as *soon* when it comes at most this many balance
/// runs after the depopulation (the study's measure of thrash).
pub const SOON_RUNS: u64 = 16;

/// Runs of depopulated pages of one chunk: start → (end, balance runs,
/// event) of their depopulation.
type Runs = BTreeMap<u32, (u32, u64, u64)>;

/// Depopulated pages waiting to be populated again, and the counts.
///
/// Each depopulation and population carries the balance runs done so far
/// and an event index (any increasing count the caller chooses); a
/// re-population within `runs_window` runs, or within `events_window`
/// events, of the depopulation is counted in `within_runs` or
/// `within_events`. Pages are kept as runs, so the cost of an operation
/// does not grow with the pages it covers, and forgetting a chunk does not
/// grow with the other chunks.
///
/// # Invariants
/// `within_runs <= pages` and `within_events <= pages`; the runs of a chunk
/// are non-empty and disjoint, hold pages depopulated since the chunk was
/// created and not populated since, and a chunk without runs has no entry.
#[derive(Debug, Default)]
pub struct Refaults {
    /// chunk → its runs of depopulated pages.
    last: HashMap<u64, Runs>,
    runs_window: u64,
    events_window: u64,
    /// Pages populated again after a depopulation.
    pub pages: u64,
    /// Of those, within `runs_window` balance runs.
    pub within_runs: u64,
    /// Of those, within `events_window` events.
    pub within_events: u64,
}

/// Take the parts of `runs` inside `pages` out (the rest of a run that
/// straddles an end stays), returning them as (start, end, run, event).
fn cut(runs: &mut Runs, pages: &Range<u32>) -> Vec<(u32, u32, u64, u64)> {
    let (s, e) = (pages.start, pages.end);
    let mut taken = Vec::new();
    // Runs are disjoint and sorted: the overlapping ones are the last that
    // start before `e`, back to the first that ends after `s`.
    let hits: Vec<u32> = runs
        .range(..e)
        .rev()
        .take_while(|(_, &(end, _, _))| end > s)
        .map(|(&start, _)| start)
        .collect();
    for start in hits {
        let (end, run, event) = runs.remove(&start).expect("listed above");
        if start < s {
            runs.insert(start, (s, run, event));
        }
        if end > e {
            runs.insert(e, (end, run, event));
        }
        taken.push((start.max(s), end.min(e), run, event));
    }
    taken
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
        if pages.is_empty() {
            return;
        }
        let runs = self.last.entry(chunk).or_default();
        cut(runs, &pages);
        runs.insert(pages.start, (pages.end, run, event));
    }

    /// `pages` of `chunk` were populated after `run` balance runs, at
    /// `event`.
    pub fn populated(&mut self, chunk: u64, pages: Range<u32>, run: u64, event: u64) {
        if pages.is_empty() {
            return;
        }
        let Some(runs) = self.last.get_mut(&chunk) else {
            return;
        };
        for (start, end, at_run, at_event) in cut(runs, &pages) {
            let n = u64::from(end - start);
            self.pages += n;
            if run.saturating_sub(at_run) <= self.runs_window {
                self.within_runs += n;
            }
            if event.saturating_sub(at_event) <= self.events_window {
                self.within_events += n;
            }
        }
        if runs.is_empty() {
            self.last.remove(&chunk);
        }
    }

    /// `chunk` was created or destroyed: its pages start afresh (ids and
    /// addresses are reused).
    pub fn forget(&mut self, chunk: u64) {
        self.last.remove(&chunk);
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

    #[test]
    fn runs_split_and_merge_like_pages() {
        let mut r = Refaults::new(SOON_RUNS, u64::MAX);
        r.depopulated(7, 0..10, 0, 0);
        r.depopulated(7, 4..6, 5, 5); // restamps pages 4 and 5
        r.populated(7, 3..5, 20, 20); // page 3 late, page 4 soon
        assert_eq!((r.pages, r.within_runs), (2, 1));
        r.populated(7, 0..100, 20, 20); // 0..3, 5 (soon), 6..10
        assert_eq!((r.pages, r.within_runs), (10, 2));
        assert!(r.last.is_empty(), "{:?}", r.last);
        r.populated(7, 0..10, 30, 30); // nothing left
        assert_eq!(r.pages, 10);
        // A huge range is one run, not a page each.
        r.depopulated(8, 0..u32::MAX, 0, 0);
        assert_eq!(r.last[&8].len(), 1);
        r.populated(8, 10..20, 1, 1);
        assert_eq!(r.last[&8].len(), 2);
        assert_eq!(r.pages, 20);
        // Empty and reversed ranges are nothing (a reversed one broke the
        // runs).
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 30..25;
        r.populated(8, reversed.clone(), 2, 2);
        r.depopulated(8, reversed, 2, 2);
        r.populated(8, 5..5, 2, 2);
        assert_eq!((r.pages, r.last[&8].len()), (20, 2));
    }
}
