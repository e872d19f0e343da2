//! Re-populated pages: a page populated again after a depopulation of the
//! same chunk (the page traffic a policy could have saved by keeping it),
//! counted for our allocator and, from the kprobes, for the kernel.

use std::collections::HashMap;
use std::ops::Range;

/// A re-population counts as *soon* when it comes at most this many balance
/// runs after the depopulation (the study's measure of thrash).
pub const SOON_RUNS: u64 = 16;

/// Depopulated pages waiting to be populated again, and the counts.
///
/// # Invariants
/// `soon <= pages`; every key is a page depopulated since its chunk was
/// created, not populated since.
#[derive(Debug, Default)]
pub(crate) struct Refaults {
    /// (chunk, page) → balance runs done when it was depopulated.
    last: HashMap<(u64, u32), u64>,
    /// Pages populated again after a depopulation.
    pub(crate) pages: u64,
    /// Of those, within [`SOON_RUNS`] balance runs.
    pub(crate) soon: u64,
}

impl Refaults {
    /// `pages` of `chunk` were depopulated after `run` balance runs.
    pub(crate) fn depopulated(&mut self, chunk: u64, pages: Range<u32>, run: u64) {
        for p in pages {
            self.last.insert((chunk, p), run);
        }
    }

    /// `pages` of `chunk` were populated after `run` balance runs.
    pub(crate) fn populated(&mut self, chunk: u64, pages: Range<u32>, run: u64) {
        if self.last.is_empty() {
            return;
        }
        for p in pages {
            if let Some(at) = self.last.remove(&(chunk, p)) {
                self.pages += 1;
                if run.saturating_sub(at) <= SOON_RUNS {
                    self.soon += 1;
                }
            }
        }
    }

    /// `chunk` was created or destroyed: its pages start afresh (ids and
    /// addresses are reused).
    pub(crate) fn forget(&mut self, chunk: u64) {
        if !self.last.is_empty() {
            self.last.retain(|&(c, _), _| c != chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pages_populated_again_and_how_soon() {
        let mut r = Refaults::default();
        r.populated(1, 0..4, 0); // first population: not a re-population
        r.depopulated(1, 0..4, 3);
        r.populated(1, 2..6, 10); // pages 2 and 3 again, 7 runs later
        assert_eq!((r.pages, r.soon), (2, 2));
        r.populated(1, 0..1, 3 + SOON_RUNS + 1); // page 0, too late for soon
        assert_eq!((r.pages, r.soon), (3, 2));
        r.forget(1); // destroyed: page 1 will be a first population
        r.populated(1, 1..2, 40);
        assert_eq!((r.pages, r.soon), (3, 2));
        r.depopulated(2, 0..1, 0);
        r.populated(1, 0..1, 0); // another chunk's page
        assert_eq!(r.pages, 3);
    }
}
