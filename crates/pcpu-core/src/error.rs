//! Typed errors of the allocator.

use core::fmt;

use crate::backend::BackendError;
use crate::ChunkId;

/// Why an allocation failed. No allocation was made, and the allocator's
/// state is otherwise unchanged, apart from what the kernel keeps too:
/// statistics, the atomic-failure flag, a chunk created for the request
/// ([`AllocError::Populate`] after [`Allocator::alloc`] mapped one), and
/// pages the request populated before a later run of its pages failed
/// (they stay populated, and empty).
///
/// [`Allocator::alloc`]: crate::Allocator::alloc
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Size 0, or above the maximum allocation size.
    InvalidSize {
        /// Requested size in bytes.
        size: usize,
        /// Largest allowed size.
        max: usize,
    },
    /// Alignment not a power of two (after an alignment below 4, 0
    /// included, is raised to 4, as the kernel does), or above the page
    /// size.
    InvalidAlign {
        /// Requested alignment.
        align: usize,
        /// Page size (largest alignment).
        max: usize,
    },
    /// A reserved allocation was asked of an allocator without a reserved chunk.
    NoReservedChunk,
    /// The reserved chunk has no room.
    ReservedFull,
    /// An atomic allocation found no populated space (no chunk is created and
    /// no page populated in atomic context).
    AtomicNoSpace,
    /// Two-phase API only: no chunk has room and a new chunk must be created
    /// ([`Allocator::begin_create_chunk`](crate::Allocator::begin_create_chunk)).
    NeedsChunk,
    /// The backend could not create a chunk.
    ChunkCreate(BackendError),
    /// `alloc_at`: the requested area overlaps a live allocation.
    Occupied {
        /// Chunk.
        chunk: ChunkId,
        /// Byte offset.
        offset: usize,
        /// Size in bytes.
        size: usize,
    },
    /// `alloc_at`: no area can start there: no such chunk, an offset not
    /// aligned to the request, or an area not inside the chunk's managed
    /// region.
    Misplaced {
        /// Chunk.
        chunk: ChunkId,
        /// Byte offset.
        offset: usize,
        /// Size in bytes.
        size: usize,
        /// Which of the three.
        reason: &'static str,
    },
    /// The backend could not populate the area's pages.
    Populate(BackendError),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::InvalidSize { size, max } => {
                write!(
                    f,
                    "illegal size ({size}) for percpu allocation: must be 1..={max} bytes"
                )
            }
            AllocError::InvalidAlign { align, max } => write!(
                f,
                "illegal align ({align}) for percpu allocation: must be a power of two <= {max} (below 4 is taken as 4)"
            ),
            AllocError::NoReservedChunk => {
                f.write_str("reserved allocation requested but there is no reserved chunk")
            }
            AllocError::ReservedFull => f.write_str("alloc from reserved chunk failed"),
            AllocError::AtomicNoSpace => f.write_str("atomic alloc failed, no space left"),
            AllocError::NeedsChunk => f.write_str("no space left: a new chunk must be created"),
            AllocError::ChunkCreate(e) => write!(f, "failed to allocate new chunk: {e}"),
            AllocError::Occupied {
                chunk,
                offset,
                size,
            } => write!(
                f,
                "area of {size} bytes at offset {offset} of chunk {} is not free",
                chunk.0
            ),
            AllocError::Misplaced {
                chunk,
                offset,
                size,
                reason,
            } => write!(
                f,
                "area of {size} bytes at offset {offset} of chunk {}: {reason}",
                chunk.0
            ),
            AllocError::Populate(e) => write!(f, "failed to populate: {e}"),
        }
    }
}

impl core::error::Error for AllocError {}

/// Why a free was refused. The allocator's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// No live chunk has this id.
    UnknownChunk(ChunkId),
    /// The offset is not the start of a live allocation: a double free, or an
    /// offset that was never returned by `alloc`.
    NotAllocated {
        /// Chunk.
        chunk: ChunkId,
        /// Byte offset.
        offset: usize,
        /// True when the offset was the start of an allocation that is no
        /// longer live (most likely a double free).
        stale: bool,
    },
    /// The area is held by a magazine: a double free, into a magazine
    /// ([`Allocator::free_cached`](crate::Allocator::free_cached)) or with
    /// [`Allocator::free`](crate::Allocator::free) (only its magazine frees
    /// it).
    Cached {
        /// Chunk.
        chunk: ChunkId,
        /// Byte offset.
        offset: usize,
    },
    /// The area's size is not the magazine's request size
    /// ([`Allocator::free_cached`](crate::Allocator::free_cached)).
    WrongSize {
        /// Chunk.
        chunk: ChunkId,
        /// Byte offset.
        offset: usize,
        /// The live allocation's size.
        size: usize,
        /// The magazine's request size.
        expected: usize,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::UnknownChunk(c) => write!(f, "free of an address in unknown chunk {}", c.0),
            FreeError::NotAllocated {
                chunk,
                offset,
                stale: true,
            } => write!(
                f,
                "double free: offset {offset} in chunk {} is not allocated any more",
                chunk.0
            ),
            FreeError::NotAllocated {
                chunk,
                offset,
                stale: false,
            } => write!(
                f,
                "free of offset {offset} in chunk {}, which is not the start of a live allocation",
                chunk.0
            ),
            FreeError::Cached { chunk, offset } => write!(
                f,
                "double free: offset {offset} in chunk {} is held by a magazine",
                chunk.0
            ),
            FreeError::WrongSize {
                chunk,
                offset,
                size,
                expected,
            } => write!(
                f,
                "free of offset {offset} in chunk {} ({size} bytes) into a magazine of {expected}-byte areas",
                chunk.0
            ),
        }
    }
}

impl core::error::Error for FreeError {}

/// Why [`Allocator::balance_start`](crate::Allocator::balance_start) refused
/// to start a run. The allocator's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceError {
    /// A run this allocator started has neither ended nor been aborted:
    /// balance runs are serialised (the kernel's `pcpu_alloc_mutex`).
    RunOpen,
}

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalanceError::RunOpen => f.write_str(
                "a balance run is already open on this allocator: drive it to its end or abort it first",
            ),
        }
    }
}

impl core::error::Error for BalanceError {}
