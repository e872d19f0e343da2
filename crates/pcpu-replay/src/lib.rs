//! # pcpu-replay
//!
//! Replays Linux percpu allocator traces (ftrace text, parsed by
//! [`pcpu_trace`]) through [`pcpu_core`], and measures the result against
//! what the traced kernel did: its `/proc/meminfo` Percpu figure at every
//! phase marker, its populate/depopulate kprobe totals, and its placement of
//! every allocation.

mod config;
mod engine;
mod kernel_places;
mod kernel_start;
mod page_log;
mod page_refs;
mod pre_trace;
mod refaults;
pub mod report;
mod run;
mod setup;

use std::fmt;

pub use config::{
    call_site_class, size_class, BalanceTiming, ClassMode, Placement, ReplayConfig, AUTO_DELAY_US,
    MAGAZINE_MAX_SIZE,
};
pub use engine::{LiveObject, Replayer};
pub use kernel_start::{first_marker_stats, KernelStart};
pub use page_log::{PageOp, PageOpKind};
pub use pre_trace::{PreChunk, PreObject};
pub use refaults::{Refaults, SOON_RUNS};
pub use report::{Disagreement, PhaseReport, Report, Sample};
pub use run::{derive_lifetime_classes, phase_marks, replay, trace_features};
pub use setup::Setup;

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The trace has no percpu allocation or free events.
    NoEvents,
    /// The setup (geometry, first chunk) could not be derived.
    Setup(String),
    /// A free of a pointer that is not live.
    UnknownFree {
        /// Line number.
        line: u64,
        /// The pointer.
        ptr: u64,
    },
    /// The kernel allocated over a live traced object (its pointer again,
    /// or a range overlapping it): the trace lost that object's free, or is
    /// corrupt. Also, `kernel` placement: our allocator refused the
    /// kernel's place as occupied.
    Overlap {
        /// Line number.
        line: u64,
        /// What overlapped.
        detail: String,
    },
    /// An event the allocator cannot accept.
    BadEvent {
        /// Line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// The trace did not start at boot: a chunk is used (allocated in,
    /// populated, depopulated or destroyed) without a
    /// `percpu_create_chunk` event; `lenient` replays it anyway and counts
    /// it ([`Report::uncreated_chunks`]).
    NotFromBoot {
        /// Line number.
        line: u64,
        /// The chunk's `base_addr`.
        base: u64,
        /// The event is a populate/depopulate kprobe (whose `base_addr` a
        /// wrong structure offset in the probe definition also gives).
        kprobe: bool,
    },
    /// A chunk that no event created lies inside the first chunk's units
    /// (its `base_addr` is less than all units above the percpu base), where
    /// the geometry does not put the first chunk: the geometry's static and
    /// reserved sizes are not the traced kernel's. Not skipped by `lenient`
    /// (every figure would be wrong).
    FirstChunkMismatch {
        /// Line number.
        line: u64,
        /// The chunk's `base_addr`.
        base: u64,
        /// Its distance from the percpu base, in bytes.
        offset: u64,
        /// Where the geometry puts the first chunk's `base_addr`: static
        /// plus reserved size, rounded down to a page.
        expected: u64,
    },
    /// A bound of the replay was reached (kernel placement: more chunks at
    /// once than any kernel has); not skipped by `lenient`.
    Limit {
        /// Line number.
        line: u64,
        /// Which bound.
        detail: String,
    },
    /// An internal consistency failure (a bug).
    Internal(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::NoEvents => {
                f.write_str("the trace has no percpu_alloc_percpu / percpu_free_percpu events")
            }
            ReplayError::Setup(s) => write!(f, "cannot set up the replay: {s}"),
            ReplayError::UnknownFree { line, ptr } => {
                write!(f, "line {line}: free of pointer {ptr:#x}, which is not a live allocation (use --lenient to skip)")
            }
            ReplayError::Overlap { line, detail } => write!(f, "line {line}: {detail}"),
            ReplayError::NotFromBoot {
                line,
                base,
                kprobe: false,
            } => write!(
                f,
                "line {line}: chunk {base:#x} is used without a percpu_create_chunk event: the \
                 trace must start at boot, before the first dynamic chunk is created (use \
                 --lenient to replay it anyway, with figures that miss what came before), and \
                 the geometry must be the traced kernel's (--geometry, dmesg-percpu.txt)"
            ),
            ReplayError::NotFromBoot {
                line,
                base,
                kprobe: true,
            } => write!(
                f,
                "line {line}: kprobe event for chunk {base:#x}, which no percpu_create_chunk event \
                 created: check the probe's base_addr offset in struct pcpu_chunk, and that the \
                 trace started at boot (docs/capturing.md; use --lenient to replay it anyway)"
            ),
            ReplayError::FirstChunkMismatch {
                line,
                base,
                offset,
                expected,
            } => write!(
                f,
                "line {line}: chunk {base:#x} lies {offset} bytes above the percpu base, inside \
                 the first chunk's units, but the geometry puts the first chunk at {expected}: its \
                 static and reserved sizes are not the traced kernel's (check --geometry, or the \
                 capture's dmesg-percpu.txt pcpu-alloc line)"
            ),
            ReplayError::BadEvent { line, detail } | ReplayError::Limit { line, detail } => {
                write!(f, "line {line}: {detail}")
            }
            ReplayError::Internal(s) => write!(f, "internal error: {s}"),
        }
    }
}

impl std::error::Error for ReplayError {}
