//! The crate's error type.

use std::fmt;

use pcpu_core::{AllocError, FreeError, GeometryError, PolicyParseError};

use crate::sys::error::SysError;

/// Everything that can go wrong in this crate. Every variant leaves the
/// allocator in the state it was in before the failing call (apart from
/// statistics).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An allocation size of 0 or above the largest allocation
    /// (`PCPU_MIN_UNIT_SIZE`, 32 KiB).
    InvalidSize {
        /// Requested size in bytes.
        size: usize,
        /// Largest allowed size.
        max: usize,
    },
    /// An alignment that is not a power of two, or above the page size.
    InvalidAlign {
        /// Requested alignment.
        align: usize,
        /// Largest allowed alignment (the page size).
        max: usize,
    },
    /// A builder setting out of range.
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy with a field out of the range its knob takes (its fields
    /// are public: see [`Policy::validate`](pcpu_core::Policy::validate)).
    InvalidPolicy(PolicyParseError),
    /// Fewer units than CPU ids: `current_cpu()` could return a CPU without a
    /// unit.
    TooFewUnits {
        /// Units requested.
        units: usize,
        /// CPU ids the system can have (`possible_cpus()`).
        cpus: usize,
    },
    /// The core rejected the geometry.
    Geometry(GeometryError),
    /// A memory-mapping system call failed (reserving a chunk, populating
    /// pages, `mincore`).
    Map(MapError),
    /// The allocation failed for a reason of the core allocator.
    Alloc(AllocError),
    /// The core allocator refused a free: not the start of a live
    /// allocation. (A raw handle freed twice, or a stale copy of one, gives
    /// [`Error::NotLive`] instead: the handle is checked first.)
    Free(FreeError),
    /// A CPU index without a unit.
    BadCpu {
        /// The CPU index.
        cpu: usize,
        /// Units of the allocator.
        units: usize,
    },
    /// A [`RawPerCpu`](crate::RawPerCpu) used with an allocator that did not
    /// allocate it.
    ForeignHandle,
    /// A [`RawPerCpu`](crate::RawPerCpu) used (looked up or freed) after it
    /// was freed, or a copy of it was: a double free or a stale handle.
    NotLive {
        /// Its chunk.
        chunk: pcpu_core::ChunkId,
        /// Its offset.
        offset: usize,
    },
    /// The background balance thread could not be started (building the
    /// first allocator with background balancing, or the first since the
    /// others were dropped).
    Spawn(std::io::Error),
    /// The trace folder ([`Builder::trace_dir`](crate::Builder::trace_dir))
    /// could not be created, or a write to it failed.
    Trace(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSize { size, max } => {
                write!(f, "invalid per-CPU allocation size {size}: must be 1..={max} bytes")
            }
            Error::InvalidAlign { align, max } => write!(
                f,
                "invalid per-CPU allocation alignment {align}: must be a power of two <= {max}"
            ),
            Error::InvalidConfig { setting, value, reason } => {
                write!(f, "invalid allocator setting {setting} = {value}: {reason}")
            }
            Error::InvalidPolicy(e) => write!(f, "invalid allocator policy: {e}"),
            Error::TooFewUnits { units, cpus } => write!(
                f,
                "{units} units are too few: this system has {cpus} possible CPUs and every CPU id needs a unit"
            ),
            Error::Geometry(e) => write!(f, "{e}"),
            Error::Map(e) => write!(f, "{e}"),
            Error::Alloc(e) => write!(f, "per-CPU allocation failed: {e}"),
            Error::Free(e) => write!(f, "per-CPU free refused: {e}"),
            Error::BadCpu { cpu, units } => {
                write!(f, "CPU {cpu} has no unit (the allocator has {units} units)")
            }
            Error::ForeignHandle => f.write_str("raw per-CPU handle belongs to another allocator"),
            Error::NotLive { chunk, offset } => write!(
                f,
                "raw per-CPU handle at offset {offset} in chunk {} is not live: it (or a copy of it) was freed already, and its place may have been handed out again since",
                chunk.0
            ),
            Error::Spawn(e) => write!(f, "cannot start the balance thread: {e}"),
            Error::Trace(e) => write!(f, "cannot write the allocation trace: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Map(e) => Some(e),
            Error::Spawn(e) => Some(e),
            Error::Trace(e) => Some(e),
            Error::InvalidPolicy(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AllocError> for Error {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::InvalidSize { size, max } => Error::InvalidSize { size, max },
            AllocError::InvalidAlign { align, max } => Error::InvalidAlign { align, max },
            e => Error::Alloc(e),
        }
    }
}

impl From<FreeError> for Error {
    fn from(e: FreeError) -> Self {
        Error::Free(e)
    }
}

impl From<SysError> for Error {
    fn from(e: SysError) -> Self {
        Error::Map(MapError(e))
    }
}

/// A failed memory-mapping system call (`mmap`, `mprotect`, `madvise`,
/// `mincore`): what was attempted and the OS error number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError(pub(crate) SysError);

impl MapError {
    /// The OS error number (`errno`), when the failure came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.0.errno().map(|e| e.raw_os_error())
    }

    /// True when reserving a chunk's address space failed (as opposed to
    /// populating pages or `mincore`).
    pub fn is_reserve(&self) -> bool {
        matches!(self.0, SysError::Reserve { .. })
    }

    /// True when populating pages failed (everything was rolled back).
    pub fn is_populate(&self) -> bool {
        matches!(self.0, SysError::Populate { .. })
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
