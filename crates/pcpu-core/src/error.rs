//! Typed errors of the allocator.

use core::fmt;
use core::ops::Range;

use crate::backend::BackendError;
use crate::{Allocation, ChunkId};

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
    /// The magazine holds areas of another allocator
    /// ([`Allocator::free_cached`](crate::Allocator::free_cached)): a
    /// magazine serves one allocator (and its clones) while it holds areas.
    ForeignMagazine {
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
            FreeError::ForeignMagazine { chunk, offset } => write!(
                f,
                "free of offset {offset} in chunk {} into a magazine that holds another allocator's areas",
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

/// Why [`Allocator::populate_pages`](crate::Allocator::populate_pages)
/// stopped. Pages it populated before a backend failure stay populated
/// (and counted); otherwise nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopulateError {
    /// No live chunk has this id.
    UnknownChunk(ChunkId),
    /// The pages are not all inside the chunk.
    OutOfRange {
        /// Chunk.
        chunk: ChunkId,
        /// Pages asked for.
        pages: Range<usize>,
        /// The chunk's pages per unit.
        nr_pages: usize,
    },
    /// A balance run is open: its plan may cover the same pages.
    RunOpen,
    /// The backend could not populate a run of them.
    Backend(BackendError),
}

impl fmt::Display for PopulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopulateError::UnknownChunk(c) => write!(f, "no live chunk {}", c.0),
            PopulateError::OutOfRange {
                chunk,
                pages,
                nr_pages,
            } => write!(
                f,
                "pages {}..{} are not inside chunk {} ({nr_pages} pages)",
                pages.start, pages.end, chunk.0
            ),
            PopulateError::RunOpen => {
                f.write_str("a balance run is open on this allocator: populate after it ends")
            }
            PopulateError::Backend(e) => write!(f, "failed to populate: {e}"),
        }
    }
}

impl core::error::Error for PopulateError {}

/// Why a step of the two-phase protocol (the caller creates chunks and
/// populates pages outside the allocator's lock, then reports back) was
/// refused: the call does not match what the allocator handed out. The
/// allocator's state is unchanged.
///
/// The steps are [`Allocator::commit_populated`], [`Allocator::abort_area`],
/// [`Allocator::cancel_area`], [`Allocator::finish_create_chunk`] and
/// [`Allocator::abort_create_chunk`]. A refusal means the caller's own
/// bookkeeping went wrong (a kernel would `WARN`): the pages or chunk it
/// meant are not what the allocator knows them as.
///
/// [`Allocator::commit_populated`]: crate::Allocator::commit_populated
/// [`Allocator::abort_area`]: crate::Allocator::abort_area
/// [`Allocator::cancel_area`]: crate::Allocator::cancel_area
/// [`Allocator::finish_create_chunk`]: crate::Allocator::finish_create_chunk
/// [`Allocator::abort_create_chunk`]: crate::Allocator::abort_create_chunk
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// No live chunk has this id (`commit_populated`).
    UnknownChunk(ChunkId),
    /// The page range is empty or reaches past the chunk's last page
    /// (`commit_populated`).
    PageRange {
        /// Chunk.
        chunk: ChunkId,
        /// The pages given.
        pages: Range<usize>,
        /// The chunk's pages per unit.
        nr_pages: usize,
    },
    /// A page of the range is populated already (`commit_populated`): the
    /// pages to populate are the ones [`Allocator::next_unpopulated`] names.
    ///
    /// [`Allocator::next_unpopulated`]: crate::Allocator::next_unpopulated
    AlreadyPopulated {
        /// Chunk.
        chunk: ChunkId,
        /// The first populated page of the range.
        page: usize,
    },
    /// The area is not a live allocation that the caller owns
    /// (`abort_area`, `cancel_area`): `cause` says why, as
    /// [`Allocator::free`](crate::Allocator::free) would.
    NotLive {
        /// The area given.
        area: Allocation,
        /// Why it is not live.
        cause: FreeError,
    },
    /// The area starts a live allocation of another size (`abort_area`,
    /// `cancel_area`).
    WrongSize {
        /// The area given.
        area: Allocation,
        /// The live allocation's size.
        size: usize,
    },
    /// The id was not reserved by
    /// [`Allocator::begin_create_chunk`](crate::Allocator::begin_create_chunk)
    /// (`finish_create_chunk`, `abort_create_chunk`): a live chunk is never
    /// replaced, an id is finished or aborted once, and the id of a balance
    /// run's [`PageWork::CreateChunk`](crate::PageWork::CreateChunk) is the
    /// run's to finish or release.
    NotReserved(ChunkId),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownChunk(c) => {
                write!(f, "pages committed as populated in unknown chunk {}", c.0)
            }
            ProtocolError::PageRange {
                chunk,
                pages,
                nr_pages,
            } => write!(
                f,
                "pages {}..{} committed as populated in chunk {}, which has pages 0..{nr_pages}",
                pages.start, pages.end, chunk.0
            ),
            ProtocolError::AlreadyPopulated { chunk, page } => write!(
                f,
                "page {page} of chunk {} committed as populated, but it was populated already",
                chunk.0
            ),
            ProtocolError::NotLive { area, cause } => write!(
                f,
                "area at offset {} ({} bytes) in chunk {} given back: {cause}",
                area.offset, area.size, area.chunk.0
            ),
            ProtocolError::WrongSize { area, size } => write!(
                f,
                "area at offset {} in chunk {} given back as {} bytes, but the live allocation there has {size}",
                area.offset, area.chunk.0, area.size
            ),
            ProtocolError::NotReserved(c) => write!(
                f,
                "chunk id {} was not reserved by begin_create_chunk (or was finished or aborted already)",
                c.0
            ),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// An internal step of the two-phase protocol, which holds by construction
/// (the allocator drives it itself): debug builds check it.
#[inline]
pub(crate) fn held(r: Result<(), ProtocolError>) {
    debug_assert!(r.is_ok(), "{}", r.unwrap_err());
}
