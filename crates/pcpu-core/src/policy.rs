//! Depopulation policies: which chunks a free marks for reclaim, and what a
//! balance run does. This module is the one extension point: a new policy is a
//! new [`PolicyKind`] with its free-path decision ([`Policy::on_free`]) and its
//! balance stages ([`Policy::stages`]).

use alloc::string::String;
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

/// The named policies (`#[non_exhaustive]`: more may come).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

impl PolicyKind {
    /// One line on what the policy does (`pcpu policies` lists them).
    pub const fn summary(self) -> &'static str {
        match self {
            PolicyKind::Linux511 => {
                "depopulates only whole free chunks (before the 5.14 series)"
            }
            PolicyKind::SeedRfc => {
                "the RFC of the seed thread: marks chunks with more than 1/4 empty pages, shrinks them once 2 or more are marked"
            }
            PolicyKind::Linux514 => {
                "partial depopulation as merged: isolates chunks with 1/4 empty pages, reclaims them, sidelines them"
            }
            PolicyKind::Linux61 => "the traced kernel: the same algorithm as 5.14",
            PolicyKind::Pcpu => {
                "this project's policy: task/lifetime class placement with long-lived prediction, page-tiling bursts and first fit for long-running tasks, reclaim at the first empty page, refill by room"
            }
        }
    }
}

/// Where inside a chunk a plain (unclassed) allocation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fit {
    /// Linux: the first free run that fits, searched from the chunk's hints.
    First,
    /// Continue from where the previous allocation ended (in that chunk),
    /// then as `First`.
    Next,
    /// The smallest free run of the chosen chunk that fits (lowest offset
    /// among equals).
    Best,
}

impl Fit {
    /// Every fit, in the knob's documented order.
    const ALL: [Fit; 3] = [Fit::First, Fit::Next, Fit::Best];

    /// The knob's text: `first`, `next` or `best`.
    pub const fn name(self) -> &'static str {
        match self {
            Fit::First => "first",
            Fit::Next => "next",
            Fit::Best => "best",
        }
    }
}

/// Which sidelined chunk an allocation that found no room in the active
/// slots tries first (question 3 of docs/policy-study.md: packing after
/// depopulation).
///
/// Under `Fullest` and `Room` an allocation of a page or more placed in a
/// sidelined chunk leaves it sidelined, so that the order, not the large
/// objects, decides where small objects go (a reintegrated chunk is in an
/// active slot and would take them first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refill {
    /// Linux: the sidelined list's order (reclaim appends each chunk it
    /// depopulated), and any allocation reintegrates the chunk it lands in.
    Kernel,
    /// The fullest (fewest free bytes) first: pack into fewer chunks.
    Fullest,
    /// The most free room on pages that hold allocations first: fill holes
    /// before populating pages.
    Room,
}

impl Refill {
    /// Every order, in the knob's documented order.
    const ALL: [Refill; 3] = [Refill::Kernel, Refill::Fullest, Refill::Room];

    /// The knob's text: `kernel`, `fullest` or `room`.
    pub const fn name(self) -> &'static str {
        match self {
            Refill::Kernel => "kernel",
            Refill::Fullest => "fullest",
            Refill::Room => "room",
        }
    }
}

/// The largest watermark or surplus a policy takes, in pages.
const MAX_PAGES: i32 = 1 << 20;

/// A policy and its tunable knobs.
///
/// `#[non_exhaustive]`: knobs are added over time, so build one from a named
/// policy ([`Policy::new`], [`Policy::default`], a string) and set fields,
/// rather than with a struct literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Page-exclusive classes (lifetime hints, size and call-site classes)
    /// open new regions outside the *growth room* of the 8 most recently
    /// used other classes (the free part of a region past some of its
    /// objects), taking a new chunk rather than cutting into it; classes
    /// allocating in turn then stay contiguous instead of interleaving page
    /// by page. For a few long-lived classes (the lifetime classes derived
    /// from a trace reach their page-exclusive bound with it); with one
    /// class per request it only spreads requests over more chunks. While
    /// chunks wait for reclaim, and when no chunk can be created, the room
    /// is cut into after all. Off by default.
    pub keep_room: bool,
    /// Task classes: a class's first object from a call site whose first
    /// objects were mostly their class's only one (singletons: mounts,
    /// network devices) goes to one shared long-lived region, whose room
    /// other classes keep out of.
    pub long_lived: bool,
    /// Task classes open a new region, in the chunk the slot walk chose (a
    /// dynamic chunk: the first chunk's pages are all populated anyway), in
    /// the first free run of at least three eighths of a page that starts
    /// on a page already holding objects, before any run that starts on an
    /// empty page (else plain first fit): the next round of a churn
    /// back-fills the holes beside the survivors, which pin their pages
    /// anyway, before it spreads onto pages of their own. Smaller holes are
    /// left to first fit: a task's objects would be split over them. A small
    /// request whose walk first comes to an active chunk more than three
    /// quarters free takes such a run in an isolated chunk first, and a
    /// class takes a chunk queued for reclaim back (outside other classes'
    /// growth room) before it starts on a fully free chunk.
    pub backfill: bool,
    /// Long-running task classes (`long_running.rs`): a task class about
    /// to grow onto a page holding nothing, with a page or more of that
    /// region (or a second region) and 32 objects or more in it before the
    /// growth point, while a small request (at most
    /// a quarter page) fits in a free run of its chunk that starts on a
    /// page in use, puts that object in the first such run and is taken for
    /// a long-running task (a server's worker thread, a kernel thread)
    /// whose objects die one at a time: its later requests take plain first
    /// fit, which refills the holes its closed sessions left, where class
    /// placement grew onto empty pages (36% above linux-5.14 at the peak of
    /// the `workers` workload). A cgroup's burst never holds a page, and
    /// large objects never count. A task class that starts a region again
    /// with none left, among the last 256 that started one, is a task that
    /// returns (a `mkdir`'s never does) and is taken too; so is a new task
    /// class whose first request comes from a call site where the classes
    /// that started before it were mostly taken by the time the next
    /// started (many workers running the same code).
    pub grow_beside: bool,
    /// Task classes whose call site's last class placed a burst of a
    /// power-of-two size between a quarter page and a page (not counting
    /// its 4-byte objects) *tile*: the class's first region in a dynamic
    /// chunk starts on a multiple of that size, and its 4-byte objects go
    /// to the shared long-lived pages. Equal bursts then tile the pages,
    /// so that a survivor among removed neighbours pins one page instead
    /// of straddling two (`tiling.rs`).
    pub tile_bursts: bool,
    /// Task classes learn, per call site, whether their first object dies
    /// young (freed within 64 objects placed) while the rest of the class
    /// lives on, as the two objects every `exec` allocates on Linux 6.2 and
    /// later do; a first object from a site whose first objects mostly did
    /// is placed by plain first fit outside its class, so that the class's
    /// region does not start with a hole (`short_lived.rs`).
    pub short_lived: bool,
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
    /// Placement inside the chunk the slot walk chose, for allocations that
    /// are not placed by class (Linux: [`Fit::First`]). Atomic and reserved
    /// allocations always use first fit (they must find populated space the
    /// kernel's way).
    pub fit: Fit,
    /// Chunks one balance run reclaims at most (Linux: all queued,
    /// `usize::MAX`); the rest stay queued and the balance work is scheduled
    /// again, so depopulation is spread over several runs.
    pub reclaim_batch: usize,
    /// The order in which allocations try sidelined chunks (Linux:
    /// [`Refill::Kernel`]). Atomic and reserved allocations keep the kernel's.
    pub refill: Refill,
}

impl Policy {
    /// The policy `kind` with the kernel's constants. For
    /// [`PolicyKind::Pcpu`] that is not the `pcpu` policy users get by name
    /// (no class placement, 5.14's reclaim fraction, the kernel's refill
    /// order): a base for experiments. Use [`Policy::pcpu`] or
    /// [`Policy::named`] for the policy with its chosen knobs.
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
            keep_room: false,
            long_lived: false,
            backfill: false,
            grow_beside: false,
            tile_bursts: false,
            short_lived: false,
            reclaim_surplus: 0,
            refault_reserve_divisor: 0,
            sideline: true,
            fit: Fit::First,
            reclaim_batch: usize::MAX,
            refill: Refill::Kernel,
        }
    }

    /// pcpu's own policy with its default knobs: reclaim any chunk with an
    /// empty populated page (while the system keeps `empty_pop_high` empty
    /// pages, of which those above `empty_pop_low` may be the first chunk's
    /// free room on its partly used pages), class-aware placement, and
    /// sidelined chunks refilled most free room on used pages first.
    pub const fn pcpu() -> Self {
        let mut p = Policy::new(PolicyKind::Pcpu);
        p.reclaim_divisor = usize::MAX;
        p.reclaim_min_pages = 1;
        p.class_placement = true;
        // Chosen by the sweep in docs/policy-study.md: the lowest floor on the
        // memcg trace without a phase worse than linux-5.14 on the churn trace.
        p.reclaim_surplus = 2;
        p.min_run = 64;
        // The study's §3 (refill order over 32 generated traces): the
        // smallest excess over linux-5.14 at any phase, at a small cost in
        // resident memory after removals.
        p.refill = Refill::Room;
        // The study's §5b: one-object tasks' objects (mounts, network
        // devices) share pages instead of each pinning one.
        p.long_lived = true;
        // The study's §5c: refills back-fill the holes beside survivors
        // first (lower troughs; fewer traces above +1% of linux-5.14).
        p.backfill = true;
        // The study's §5d: bursts of a power-of-two fraction of a page
        // (the memcg's, without its 4-byte counter) tile the pages, so a
        // surviving cgroup pins one page instead of 1.5.
        p.tile_bursts = true;
        // Found on a 6.18 recording (docs/capturing.md): exec's objects,
        // freed at exit, left a hole at the start of every cgroup's region.
        p.short_lived = true;
        // The study's §5e: a task whose objects die one at a time (a
        // worker thread) takes first fit once it would grow onto empty
        // pages beside holes (the `workers` workload: +36% above
        // linux-5.14 at the peak without it, +1.4% with it, median of 32
        // held-out seeds; no other generator moved by more than 0.1 point).
        p.grow_beside = true;
        // The refault reserve stays off: on the shared memcg capture a few
        // refaults before the removal would keep ~14 more pages per unit at
        // phase C (resident/floor outside the first and reserved chunks
        // 1.017 instead of 1.008); the study's §2e shows what each setting
        // trades on churn.
        p
    }

    /// Do task classes learn from the call site of their first object
    /// (`long_lived`, `tile_bursts`, `short_lived`)? With none, a hint's site is not
    /// used, and no object goes to the long-lived pages.
    pub const fn uses_call_sites(&self) -> bool {
        self.long_lived || self.tile_bursts || self.short_lived
    }

    /// Does this policy behave as `other` does? Equal, up to the class
    /// knobs (`min_run`, `class_capacity`, `keep_room`, `long_lived`,
    /// `backfill`, `tile_bursts`, `short_lived`) when neither places by class: they act only in class
    /// placement. (`linux-5.14:keep_room=true` behaves as `linux-5.14`.)
    pub fn behaves_as(&self, other: &Policy) -> bool {
        let mut p = *self;
        if !p.class_placement && !other.class_placement {
            p.min_run = other.min_run;
            p.class_capacity = other.class_capacity;
            p.keep_room = other.keep_room;
            p.long_lived = other.long_lived;
            p.backfill = other.backfill;
            p.grow_beside = other.grow_beside;
            p.tile_bursts = other.tile_bursts;
            p.short_lived = other.short_lived;
        }
        p == *other
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

/// Prints the policy's name, then every knob that differs from that named
/// policy's defaults (`pcpu:refault_reserve_divisor=4:sideline=false`): the
/// form [`FromStr`] accepts, so a policy prints and parses back unchanged
/// when its fields are in the ranges [`Policy::set`] accepts (out-of-range
/// public fields print as they are, and parse back as an error;
/// [`Policy::clamped`] brings them into range, as [`Allocator::new`] does).
///
/// [`Allocator::new`]: crate::Allocator::new
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let base = Policy::named(self.kind);
        for knob in KNOBS {
            let v = self.knob(knob);
            if v != base.knob(knob) {
                write!(f, ":{knob}={v}")?;
            }
        }
        Ok(())
    }
}

/// The knobs that [`Policy::set`] accepts, in display order.
pub const KNOBS: [&str; 20] = [
    "empty_pop_low",
    "empty_pop_high",
    "reclaim_divisor",
    "reclaim_min_pages",
    "rfc_marked_threshold",
    "reclaim_surplus",
    "reclaim_batch",
    "refault_reserve_divisor",
    "sideline",
    "fit",
    "refill",
    "class_placement",
    "min_run",
    "class_capacity",
    "keep_room",
    "long_lived",
    "backfill",
    "grow_beside",
    "tile_bursts",
    "short_lived",
];

/// What knob `name` does, and which policies it affects (one line each),
/// for command-line help; `None` for an unknown knob. The field docs of
/// [`Policy`] say more.
pub fn knob_doc(name: &str) -> Option<(&'static str, &'static str)> {
    const RECLAIMERS: &str = "linux-5.14, linux-6.1, pcpu";
    const CLASSES: &str = "any policy with class_placement=true (pcpu)";
    Some(match name {
        "empty_pop_low" => (
            "pages: an allocation that leaves fewer empty pages than this schedules the balance work (PCPU_EMPTY_POP_PAGES_LOW); pcpu: also caps how much of the first chunk's free room counts toward the reserve",
            "all",
        ),
        "empty_pop_high" => (
            "pages: the empty-page reserve the balance work populates up to, and reclaim stops at (PCPU_EMPTY_POP_PAGES_HIGH)",
            "all",
        ),
        "reclaim_divisor" => (
            "a chunk is a reclaim candidate when at least 1/N of its pages are empty (seed-rfc: more than 1/N; 5.14: 4; larger N reclaims sooner; max with reclaim_min_pages=1, pcpu's setting: any empty page; max alone: any chunk)",
            "linux-5.14, linux-6.1, pcpu, seed-rfc",
        ),
        "reclaim_min_pages" => (
            "pages: a reclaim candidate also needs at least this many empty pages",
            RECLAIMERS,
        ),
        "rfc_marked_threshold" => (
            "chunks: the RFC schedules depopulation once more than this many chunks are marked (1: \"2 or more\")",
            "seed-rfc",
        ),
        "reclaim_surplus" => (
            "pages: isolate chunks only once this many empty pages above the reserve exist (hysteresis; 0 acts as 1)",
            "pcpu",
        ),
        "reclaim_batch" => (
            "chunks one balance run reclaims at most; the rest wait for the next run (max: all)",
            RECLAIMERS,
        ),
        "refault_reserve_divisor" => (
            "after a depopulated page is populated again, reclaim keeps up to 1/N of the pages in use as extra empty pages (0: off)",
            RECLAIMERS,
        ),
        "sideline" => (
            "after reclaim, move a chunk still holding objects behind every active slot (5.14) instead of its own slot",
            RECLAIMERS,
        ),
        "fit" => (
            "placement inside the chosen chunk: first, next or best fit (atomic and reserved requests keep first fit)",
            "all",
        ),
        "refill" => (
            "which sidelined chunk an allocation tries first: kernel (list order), fullest, or room (most free room on used pages)",
            RECLAIMERS,
        ),
        "class_placement" => (
            "keep each class's objects together (task, lifetime, size or call-site classes: replay's --classes)",
            "all (on for pcpu)",
        ),
        "min_run" => (
            "bytes: a task class opens a new region only in a free run at least this long",
            CLASSES,
        ),
        "class_capacity" => ("class regions remembered (least recently used evicted)", CLASSES),
        "keep_room" => (
            "page-exclusive classes take a new chunk rather than cut into the free room after the 8 most recently used classes",
            CLASSES,
        ),
        "long_lived" => (
            "task classes: first objects from call sites that mostly start one-object classes share one long-lived region",
            CLASSES,
        ),
        "backfill" => (
            "task classes open a new region in a free run of 3/8 page or more that starts on a page in use, before first fit",
            CLASSES,
        ),
        "grow_beside" => (
            "a task class about to grow onto an empty page past a page of 32 or more objects, while a small request fits a hole on a used page, fills that hole and takes plain first fit from then on (a long-running task whose objects die one at a time); so does a task class that starts a region again with none left, or starts one from a call site whose earlier classes were mostly taken",
            CLASSES,
        ),
        "tile_bursts" => (
            "task classes whose call site last placed a power-of-two burst (1/4 to 1 page, 4-byte objects aside) start it on a multiple of its size; their 4-byte objects share the long-lived pages",
            CLASSES,
        ),
        "short_lived" => (
            "task classes: first objects from call sites whose first objects mostly die young (freed within 64 placements while their class lives on) go to plain first fit, outside the class",
            CLASSES,
        ),
        _ => return None,
    })
}

/// A knob's value, as [`Policy::set`] parses it and `Display` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KnobValue {
    Int(i64),
    /// `usize::MAX`, printed as `max` (`reclaim_divisor=max`: any page).
    Max,
    Bool(bool),
    /// A named choice (`fit=best`).
    Word(&'static str),
}

impl fmt::Display for KnobValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobValue::Int(v) => write!(f, "{v}"),
            KnobValue::Max => f.write_str("max"),
            KnobValue::Bool(b) => write!(f, "{b}"),
            KnobValue::Word(w) => f.write_str(w),
        }
    }
}

fn count(v: usize) -> KnobValue {
    if v == usize::MAX {
        KnobValue::Max
    } else {
        KnobValue::Int(v as i64)
    }
}

/// Why a policy specification was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyParseError {
    /// Not one of the named policies (the name given).
    UnknownPolicy(String),
    /// `knob=value` names no knob.
    UnknownKnob(String),
    /// The value does not fit the knob.
    BadValue {
        /// The knob.
        knob: &'static str,
        /// The rejected text.
        value: String,
        /// What the knob takes.
        expected: &'static str,
    },
    /// A `:`-separated part is not `knob=value`.
    Malformed(String),
    /// The same knob twice in one policy string (which value was meant?).
    RepeatedKnob(&'static str),
    /// `empty_pop_low` above `empty_pop_high` once all knobs are set (one of
    /// them may be the policy's default).
    LowAboveHigh {
        /// `empty_pop_low`.
        low: i32,
        /// `empty_pop_high`.
        high: i32,
    },
}

impl fmt::Display for PolicyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyParseError::UnknownPolicy(name) => write!(
                f,
                "unknown policy `{name}` (expected one of: {})",
                POLICY_NAMES.join(", ")
            ),
            PolicyParseError::UnknownKnob(k) => write!(
                f,
                "unknown policy knob `{k}` (expected one of: {})",
                KNOBS.join(", ")
            ),
            PolicyParseError::BadValue {
                knob,
                value,
                expected,
            } => write!(
                f,
                "bad value `{value}` for policy knob `{knob}`: expected {expected}"
            ),
            PolicyParseError::RepeatedKnob(knob) => {
                write!(f, "policy knob `{knob}` given twice")
            }
            PolicyParseError::Malformed(part) => write!(
                f,
                "malformed policy knob `{part}` (expected NAME:knob=value:knob=value...)"
            ),
            PolicyParseError::LowAboveHigh { low, high } => write!(
                f,
                "empty_pop_low ({low}) is above empty_pop_high ({high}): \
                 set empty_pop_low to at most {high} too"
            ),
        }
    }
}

impl core::error::Error for PolicyParseError {}

impl Policy {
    /// The named policy `kind` with its defaults (`Policy::pcpu()` for
    /// [`PolicyKind::Pcpu`], the kernel's constants otherwise).
    pub const fn named(kind: PolicyKind) -> Self {
        match kind {
            PolicyKind::Pcpu => Policy::pcpu(),
            k => Policy::new(k),
        }
    }

    /// Knob `name`'s value as [`Policy::set`] takes it (`"4"`, `"max"`,
    /// `"true"`, `"room"`), `None` for an unknown knob.
    pub fn knob_value(&self, name: &str) -> Option<String> {
        KNOBS
            .contains(&name)
            .then(|| alloc::format!("{}", self.knob(name)))
    }

    fn knob(&self, knob: &str) -> KnobValue {
        match knob {
            "empty_pop_low" => KnobValue::Int(self.empty_pop_low.into()),
            "empty_pop_high" => KnobValue::Int(self.empty_pop_high.into()),
            "reclaim_divisor" => count(self.reclaim_divisor),
            "reclaim_min_pages" => count(self.reclaim_min_pages),
            "rfc_marked_threshold" => count(self.rfc_marked_threshold),
            "reclaim_surplus" => KnobValue::Int(self.reclaim_surplus.into()),
            "reclaim_batch" => count(self.reclaim_batch),
            "refault_reserve_divisor" => count(self.refault_reserve_divisor),
            "sideline" => KnobValue::Bool(self.sideline),
            "fit" => KnobValue::Word(self.fit.name()),
            "refill" => KnobValue::Word(self.refill.name()),
            "class_placement" => KnobValue::Bool(self.class_placement),
            "min_run" => count(self.min_run),
            "class_capacity" => count(self.class_capacity),
            "keep_room" => KnobValue::Bool(self.keep_room),
            "long_lived" => KnobValue::Bool(self.long_lived),
            "backfill" => KnobValue::Bool(self.backfill),
            "grow_beside" => KnobValue::Bool(self.grow_beside),
            "tile_bursts" => KnobValue::Bool(self.tile_bursts),
            "short_lived" => KnobValue::Bool(self.short_lived),
            _ => KnobValue::Int(0),
        }
    }

    /// Set one knob from text (`"reclaim_divisor", "8"`): counts take an
    /// integer or `max`, switches `true`/`false` (or `on`/`off`), `fit`
    /// `first`, `next` or `best`, `refill` `kernel`, `fullest` or `room`.
    /// The knobs are [`KNOBS`]; on error the policy is unchanged.
    ///
    /// ```
    /// let mut p = pcpu_core::Policy::pcpu();
    /// p.set("refault_reserve_divisor", "4").unwrap();
    /// p.set("sideline", "off").unwrap();
    /// assert_eq!(p.to_string(), "pcpu:refault_reserve_divisor=4:sideline=false");
    /// assert_eq!(p.to_string().parse::<pcpu_core::Policy>(), Ok(p));
    /// assert!(p.set("empty_pop_high", "-1").is_err());
    /// ```
    ///
    /// # Errors
    /// [`PolicyParseError::UnknownKnob`], [`PolicyParseError::BadValue`], or
    /// [`PolicyParseError::LowAboveHigh`] when `empty_pop_low` would exceed
    /// `empty_pop_high`.
    pub fn set(&mut self, knob: &str, value: &str) -> Result<(), PolicyParseError> {
        let mut p = *self;
        p.set_unchecked(knob, value)?;
        p.check_pair()?;
        *self = p;
        Ok(())
    }

    /// Is every field in the range [`Policy::set`] accepts? The fields are
    /// public, so a policy built field by field may hold what no knob
    /// string gives (a negative watermark, a divisor of 0).
    /// [`Allocator::new`](crate::Allocator::new) runs such a policy
    /// [`clamped`](Policy::clamped); an embedder that would rather refuse it
    /// checks it here.
    ///
    /// ```
    /// let mut p = pcpu_core::Policy::default();
    /// assert_eq!(p.validate(), Ok(()));
    /// p.reclaim_divisor = 0;
    /// assert!(p.validate().is_err());
    /// assert_eq!(p.clamped().validate(), Ok(()));
    /// ```
    ///
    /// # Errors
    /// The error [`Policy::set`] gives for the first knob out of range, in
    /// [`KNOBS`] order, or [`PolicyParseError::LowAboveHigh`].
    pub fn validate(&self) -> Result<(), PolicyParseError> {
        let mut p = *self;
        for knob in KNOBS {
            p.set_unchecked(knob, &alloc::format!("{}", self.knob(knob)))?;
        }
        self.check_pair()
    }

    /// The policy with every field in the range [`Policy::set`] accepts:
    /// watermarks within 0..=2^20 (LOW at most HIGH),
    /// divisor and batch at least 1, surplus at least 0, class capacity
    /// within 1..=65536. [`Allocator::new`](crate::Allocator::new) applies it.
    #[must_use]
    pub fn clamped(mut self) -> Policy {
        self.empty_pop_high = self.empty_pop_high.clamp(0, MAX_PAGES);
        self.empty_pop_low = self.empty_pop_low.clamp(0, self.empty_pop_high);
        self.reclaim_surplus = self.reclaim_surplus.clamp(0, MAX_PAGES);
        self.reclaim_divisor = self.reclaim_divisor.max(1);
        self.reclaim_batch = self.reclaim_batch.max(1);
        self.class_capacity = self.class_capacity.clamp(1, 1 << 16);
        self
    }

    /// The one constraint between knobs: `empty_pop_low <= empty_pop_high`.
    fn check_pair(&self) -> Result<(), PolicyParseError> {
        if self.empty_pop_low > self.empty_pop_high {
            return Err(PolicyParseError::LowAboveHigh {
                low: self.empty_pop_low,
                high: self.empty_pop_high,
            });
        }
        Ok(())
    }

    /// [`Policy::set`] without the check between knobs (a policy string
    /// checks it once all its knobs are set, so their order does not
    /// matter).
    fn set_unchecked(&mut self, knob: &str, value: &str) -> Result<(), PolicyParseError> {
        let Some(&name) = KNOBS.iter().find(|k| **k == knob) else {
            return Err(PolicyParseError::UnknownKnob(knob.into()));
        };
        let bad = |expected| PolicyParseError::BadValue {
            knob: name,
            value: value.into(),
            expected,
        };
        let flag = || match value {
            "true" | "on" => Ok(true),
            "false" | "off" => Ok(false),
            _ => Err(bad("true or false")),
        };
        let uint = || {
            if value == "max" {
                Ok(usize::MAX)
            } else {
                value
                    .parse::<usize>()
                    .map_err(|_| bad("a count (0 or more) or max"))
            }
        };
        let positive = || {
            uint()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| bad("a count (1 or more) or max"))
        };
        let pages = || {
            value
                .parse::<i32>()
                .ok()
                .filter(|v| (0..=MAX_PAGES).contains(v))
                .ok_or_else(|| bad("a page count from 0 to 1048576"))
        };
        let p = self;
        match name {
            "empty_pop_low" => p.empty_pop_low = pages()?,
            "empty_pop_high" => p.empty_pop_high = pages()?,
            "reclaim_divisor" => p.reclaim_divisor = positive()?,
            "reclaim_min_pages" => p.reclaim_min_pages = uint()?,
            "rfc_marked_threshold" => p.rfc_marked_threshold = uint()?,
            "reclaim_surplus" => p.reclaim_surplus = pages()?,
            "reclaim_batch" => p.reclaim_batch = positive()?,
            "refault_reserve_divisor" => p.refault_reserve_divisor = uint()?,
            "sideline" => p.sideline = flag()?,
            "fit" => {
                p.fit = Fit::ALL
                    .into_iter()
                    .find(|f| f.name() == value)
                    .ok_or_else(|| bad("first, next or best"))?
            }
            "refill" => {
                p.refill = Refill::ALL
                    .into_iter()
                    .find(|r| r.name() == value)
                    .ok_or_else(|| bad("kernel, fullest or room"))?
            }
            "class_placement" => p.class_placement = flag()?,
            "min_run" => p.min_run = uint()?,
            "class_capacity" => {
                p.class_capacity = uint()
                    .ok()
                    .filter(|v| (1..=1 << 16).contains(v))
                    .ok_or_else(|| bad("a count from 1 to 65536"))?
            }
            "keep_room" => p.keep_room = flag()?,
            "long_lived" => p.long_lived = flag()?,
            "backfill" => p.backfill = flag()?,
            "grow_beside" => p.grow_beside = flag()?,
            "tile_bursts" => p.tile_bursts = flag()?,
            "short_lived" => p.short_lived = flag()?,
            _ => unreachable!("every name in KNOBS is handled"),
        }
        Ok(())
    }
}

/// The policies [`Policy`]'s `FromStr` knows by name.
const POLICY_NAMES: [&str; 5] = ["linux-5.11", "seed-rfc", "linux-5.14", "linux-6.1", "pcpu"];

/// An unknown policy name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy;

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown policy (expected one of: {})",
            POLICY_NAMES.join(", ")
        )
    }
}

impl core::error::Error for UnknownPolicy {}

/// `NAME` or `NAME:knob=value:knob=value...` (see [`Policy::set`]).
impl FromStr for Policy {
    type Err = PolicyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or("");
        let kind = match name {
            "linux-5.11" => PolicyKind::Linux511,
            "seed-rfc" => PolicyKind::SeedRfc,
            "linux-5.14" => PolicyKind::Linux514,
            "linux-6.1" => PolicyKind::Linux61,
            "pcpu" => PolicyKind::Pcpu,
            _ => return Err(PolicyParseError::UnknownPolicy(name.into())),
        };
        let mut p = Policy::named(kind);
        let mut seen = [false; KNOBS.len()];
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                return Err(PolicyParseError::Malformed(part.into()));
            };
            p.set_unchecked(k.trim(), v.trim())?;
            // Known, or `set_unchecked` refused it.
            if let Some(i) = KNOBS.iter().position(|n| *n == k.trim()) {
                if core::mem::replace(&mut seen[i], true) {
                    return Err(PolicyParseError::RepeatedKnob(KNOBS[i]));
                }
            }
        }
        p.check_pair()?;
        Ok(p)
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
