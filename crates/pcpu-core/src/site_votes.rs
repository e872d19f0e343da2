//! Verdict counts per call site, bounded: what the long-lived prediction
//! (`long_lived.rs`: did the classes started here stay at one object?) and
//! the short-lived one (`short_lived.rs`: did the first objects from here
//! die young?) learn, each with a table of its own.

use alloc::vec::Vec;

/// Call sites with statistics (the one with the fewest verdicts is
/// forgotten first).
pub(crate) const SITES: usize = 32;
/// A site's counts are halved when their sum passes this, so that the
/// prediction follows a site whose use changes.
pub(crate) const HISTORY: u32 = 64;

/// Verdicts of one call site: `yes` for the behaviour predicted, `no`
/// against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Votes {
    pub(crate) site: u64,
    pub(crate) yes: u32,
    pub(crate) no: u32,
}

/// The verdicts of up to [`SITES`] call sites.
///
/// # Invariants
/// - At most [`SITES`] entries, each site once.
/// - Each site's `yes + no` is at most [`HISTORY`].
#[derive(Clone, Debug, Default)]
pub(crate) struct SiteVotes {
    pub(crate) entries: Vec<Votes>,
}

impl SiteVotes {
    /// `site`'s verdicts, if it has any.
    pub(crate) fn get(&self, site: u64) -> Option<Votes> {
        self.entries.iter().find(|e| e.site == site).copied()
    }

    /// Did `site` mostly say yes (at least twice, and four times as often
    /// as no)?
    pub(crate) fn predicts(&self, site: u64) -> bool {
        self.get(site)
            .is_some_and(|e| e.yes >= 2 && e.yes >= 4 * e.no)
    }

    /// Count one verdict of `site`.
    pub(crate) fn count(&mut self, site: u64, yes: bool) {
        let i = match self.entries.iter().position(|e| e.site == site) {
            Some(i) => i,
            None => {
                if self.entries.len() >= SITES {
                    // INVARIANT: at most SITES; the one with the fewest
                    // verdicts is forgotten.
                    let least = (0..self.entries.len())
                        .min_by_key(|&i| self.entries[i].yes + self.entries[i].no)
                        .expect("SITES > 0");
                    self.entries.swap_remove(least);
                }
                self.entries.push(Votes {
                    site,
                    yes: 0,
                    no: 0,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[i];
        if yes {
            e.yes += 1;
        } else {
            e.no += 1;
        }
        // INVARIANT: the sum stays at most HISTORY.
        if e.yes + e.no > HISTORY {
            e.yes /= 2;
            e.no /= 2;
        }
    }

    /// Check the invariants.
    pub(crate) fn check(&self) -> Result<(), alloc::string::String> {
        if self.entries.len() > SITES {
            return Err(alloc::format!(
                "{} sites (at most {SITES})",
                self.entries.len()
            ));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[i + 1..].iter().any(|o| o.site == e.site) {
                return Err(alloc::format!("site {:#x} counted twice", e.site));
            }
            if e.yes + e.no > HISTORY {
                return Err(alloc::format!("site {:#x}: {e:?} above {HISTORY}", e.site));
            }
        }
        Ok(())
    }
}
