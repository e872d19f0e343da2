//! # pcpu-core
//!
//! Linux's dynamic per-CPU allocator (mm/percpu.c), with partial chunk
//! depopulation (Linux 5.14), as pure bookkeeping over offsets: no pointers,
//! no unsafe code, no `std`.
//!
//! A *chunk* covers the same offset range in every *unit* (one unit per CPU).
//! An allocation is `(chunk, offset, size)` and exists once per unit. Memory is
//! obtained through a [`Backend`] (populate / depopulate page ranges); this
//! crate decides *where* objects go and *which* pages must be backed.
//!
//! ```
//! use pcpu_core::{Allocator, AllocFlags, Geometry, Policy, SimBackend};
//!
//! let geo = Geometry::simple(4, 16).unwrap(); // 4 CPUs, 64 KiB units
//! let mut a = Allocator::new(geo, Policy::default());
//! let mut backend = SimBackend::default();
//! let obj = a.alloc(&mut backend, 8, 8, AllocFlags::NORMAL).unwrap();
//! assert_eq!(obj.size, 8);
//! a.check_invariants().unwrap();
//! assert_eq!(a.free(obj.chunk, obj.offset).unwrap(), 8);
//! a.balance(&mut backend);
//! ```
//!
//! Glossary, invariants, concurrency and divergences from Linux: see the
//! [`design`] module (DESIGN.md).
#![no_std]
#![forbid(unsafe_code)]
#![warn(
    clippy::alloc_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::std_instead_of_core
)]

extern crate alloc;

mod accounting;
mod alloc_path;
mod allocator;
mod backend;
mod backfill;
mod balance;
pub mod bitmap;
mod block;
mod check;
mod chunk;
mod class_table;
mod classes;
mod error;
mod free;
mod geometry;
mod long_lived;
mod long_running;
mod magazine;
mod page_map;
mod pins;
mod policy;
mod refill;
mod short_lived;
mod site_votes;
mod slots;
mod stats;
mod tiling;

pub use allocator::{AllocFlags, Allocation, Allocator, Request};
pub use backend::{Backend, BackendError, FailingBackend, SimBackend};
pub use balance::{BalanceReport, BalanceRun, PageWork};
pub use block::BlockMd;
pub use check::InvariantError;
pub use chunk::{Chunk, ChunkKind};
pub use classes::{ClassHint, ClassPages};
pub use error::{AllocError, BalanceError, FreeError, PopulateError, ProtocolError};
pub use geometry::{FirstChunk, Geometry, GeometryError, MAX_UNITS, MIN_UNIT_SIZE};
pub use magazine::Magazine;
pub use page_map::PageState;
pub use pins::{tally_pins, PinTally, Pins};
pub use policy::{
    knob_doc, Fit, Policy, PolicyKind, PolicyParseError, Refill, UnknownPolicy,
    EMPTY_POP_PAGES_HIGH, EMPTY_POP_PAGES_LOW, KNOBS, SLOT_FAIL_THRESHOLD,
};
pub use stats::{chunk_stats, ChunkList, ChunkStats, GlobalStats};
pub use tiling::TilingStats;

/// Allocation granularity and minimum alignment (`PCPU_MIN_ALLOC_SIZE`): one
/// bit of the allocation map.
pub const MIN_ALLOC_SIZE: usize = 4;

/// Identifies a live chunk. Ids of destroyed chunks are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub u32);

#[doc = include_str!("../../../DESIGN.md")]
pub mod design {}
