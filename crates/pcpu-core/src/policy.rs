//! Depopulation policies: which chunks a free marks for reclaim, and what a
//! balance run does. This module is the one extension point: a new policy is a
//! new [`PolicyKind`] with its free-path decision ([`Policy::on_free`]) and its
//! balance stages ([`Policy::stages`]).

use core::fmt;
use core::str::FromStr;

/// `PCPU_EMPTY_POP_PAGES_LOW`: an allocation schedules the balance work when
/// the global empty populated page count drops below this.
pub const EMPTY_POP_PAGES_LOW: i32 = 2;
/// `PCPU_EMPTY_POP_PAGES_HIGH`: population target of the balance work, and the
/// floor that reclaim keeps for atomic allocations.
pub const EMPTY_POP_PAGES_HIGH: i32 = 4;
/// `PCPU_SLOT_FAIL_THRESHOLD`: a chunk in a slot below this that fails a fit
/// check is relegated to slot 0 (never scanned) until a free moves it back.
pub const SLOT_FAIL_THRESHOLD: usize = 3;

/// The named policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Before the depopulation series: only whole empty chunks are released.
    Linux511,
    /// The heuristic of the RFC patch discussed in the seed thread.
    SeedRfc,
    /// The algorithm merged for 5.14 (with the 5.14-rc TLB-flush fix).
    Linux514,
    /// Linux 6.1: behaves as 5.14 for placement and population (the changes
    /// between them do not alter either; see DESIGN.md).
    Linux61,
    /// pcpu's own policy: 5.14's depopulation with tunable reclaim
    /// thresholds, plus class-aware placement (see `classes.rs`).
    Pcpu,
}

/// A policy and its tunable knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Which algorithm.
    pub kind: PolicyKind,
    /// `PCPU_EMPTY_POP_PAGES_LOW`.
    pub empty_pop_low: i32,
    /// `PCPU_EMPTY_POP_PAGES_HIGH`.
    pub empty_pop_high: i32,
    /// A chunk is a reclaim candidate when at least `nr_pages / reclaim_divisor`
    /// of its pages are empty and populated (5.14: 4; RFC: strictly more than).
    pub reclaim_divisor: usize,
    /// seed-rfc: schedule depopulation once more than this many chunks are
    /// marked (RFC: 1, i.e. "2 or more").
    pub rfc_marked_threshold: usize,
    /// A chunk is a reclaim candidate only with at least this many empty
    /// populated pages (Linux: 0, i.e. only the `nr_pages / reclaim_divisor`
    /// rule applies).
    pub reclaim_min_pages: usize,
    /// Honour class hints (`Allocator::alloc_class`); the Linux policies ignore
    /// them and place every object by plain first fit.
    pub class_placement: bool,
    /// Shared-page classes take new regions of at least this many bytes, so
    /// they skip other classes' small (alignment) holes.
    pub min_run: usize,
    /// How many class regions are remembered (least recently used evicted).
    pub class_capacity: usize,
    /// `pcpu`: isolate chunks for reclaim only once the system holds at least
    /// this many empty pages beyond `empty_pop_high` (hysteresis: reclaim
    /// then depopulates down to `empty_pop_high`).
    pub reclaim_surplus: i32,
    /// `pcpu`: refault-aware reserve. When a page that reclaim depopulated is
    /// populated again (a refault), reclaim afterwards keeps up to the refault
    /// distance in extra empty pages, capped at `1 / refault_reserve_divisor`
    /// of the pages in use, so a workload that keeps coming back to the same
    /// size stops paying a depopulate and a populate per page per cycle.
    /// 0 turns it off.
    pub refault_reserve_divisor: usize,
    /// After reclaim, move a chunk that still holds allocations to the
    /// sidelined slot, after every active slot, so that allocations prefer
    /// other chunks (5.14, Dennis's proposal). `false`: return it to its
    /// normal slot (the RFC's behaviour, Roman's view that depopulated
    /// chunks are deprioritised anyway). Only the isolating policies use it.
    pub sideline: bool,
}

impl Policy {
    /// The policy `kind` with the kernel's constants.
    pub const fn new(kind: PolicyKind) -> Self {
        Policy {
            kind,
            empty_pop_low: EMPTY_POP_PAGES_LOW,
            empty_pop_high: EMPTY_POP_PAGES_HIGH,
            reclaim_divisor: 4,
            rfc_marked_threshold: 1,
            reclaim_min_pages: 0,
            class_placement: false,
            min_run: 256,
            class_capacity: 64,
            reclaim_surplus: 0,
            refault_reserve_divisor: 0,
            sideline: true,
        }
    }

    /// pcpu's own policy with its default knobs: reclaim any chunk with an
    /// empty populated page (while the system keeps `empty_pop_high` empty
    /// pages), and class-aware placement.
    pub const fn pcpu() -> Self {
        let mut p = Policy::new(PolicyKind::Pcpu);
        p.reclaim_divisor = usize::MAX;
        p.reclaim_min_pages = 1;
        p.class_placement = true;
        // Chosen by the sweep in docs/policy-study.md: the lowest floor on the
        // memcg trace without a phase worse than linux-5.14 on the churn trace.
        p.reclaim_surplus = 2;
        p.min_run = 64;
        p.refault_reserve_divisor = 16;
        p
    }

    /// Stable name, as accepted by `FromStr`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            PolicyKind::Linux511 => "linux-5.11",
            PolicyKind::SeedRfc => "seed-rfc",
            PolicyKind::Linux514 => "linux-5.14",
            PolicyKind::Linux61 => "linux-6.1",
            PolicyKind::Pcpu => "pcpu",
        }
    }

    /// All named policies.
    pub fn all() -> [Policy; 5] {
        [
            Policy::new(PolicyKind::Linux511),
            Policy::new(PolicyKind::SeedRfc),
            Policy::new(PolicyKind::Linux514),
            Policy::new(PolicyKind::Linux61),
            Policy::pcpu(),
        ]
    }

    /// The Linux policies and the RFC (the oracle policies).
    pub fn linux() -> [Policy; 4] {
        [
            Policy::new(PolicyKind::Linux511),
            Policy::new(PolicyKind::SeedRfc),
            Policy::new(PolicyKind::Linux514),
            Policy::new(PolicyKind::Linux61),
        ]
    }

    /// Does this policy isolate chunks (the 5.14 to_depopulate / sidelined slots)?
    pub fn isolates(&self) -> bool {
        matches!(
            self.kind,
            PolicyKind::Linux514 | PolicyKind::Linux61 | PolicyKind::Pcpu
        )
    }

    /// The stages of one balance run (`pcpu_balance_workfn`).
    pub(crate) fn stages(&self) -> &'static [Stage] {
        match self.kind {
            PolicyKind::Linux511 => &[Stage::FreeChunks { empty_only: false }, Stage::Populate],
            PolicyKind::SeedRfc => &[
                Stage::FreeChunks { empty_only: false },
                Stage::RfcPopulateOrShrink,
            ],
            PolicyKind::Pcpu => &[
                Stage::FreeChunks { empty_only: false },
                Stage::Reclaim,
                Stage::Populate,
                Stage::FreeChunks { empty_only: true },
            ],
            PolicyKind::Linux514 | PolicyKind::Linux61 => &[
                Stage::FreeChunks { empty_only: false },
                Stage::Reclaim,
                Stage::Populate,
                Stage::FreeChunks { empty_only: true },
            ],
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(PolicyKind::Linux514)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown policy name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy;

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "unknown policy (expected one of: linux-5.11, seed-rfc, linux-5.14, linux-6.1, pcpu)",
        )
    }
}

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s {
            "linux-5.11" => PolicyKind::Linux511,
            "seed-rfc" => PolicyKind::SeedRfc,
            "linux-5.14" => PolicyKind::Linux514,
            "linux-6.1" => PolicyKind::Linux61,
            "pcpu" => return Ok(Policy::pcpu()),
            _ => return Err(UnknownPolicy),
        };
        Ok(Policy::new(kind))
    }
}

/// One stage of a balance run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `pcpu_balance_free(empty_only)`.
    FreeChunks { empty_only: bool },
    /// `pcpu_reclaim_populated` (5.14).
    Reclaim,
    /// `pcpu_balance_populated`.
    Populate,
    /// RFC `pcpu_balance_populated`: grow, or shrink marked chunks.
    RfcPopulateOrShrink,
}
