//! The OS layer's errors: which memory-management call failed, on which
//! pages and units, and the `errno` the kernel returned.

use std::fmt;
use std::ops::Range;

use rustix::io::Errno;

/// Which memory-management operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SysOp {
    /// `mprotect(PROT_READ | PROT_WRITE)` while populating.
    ProtectReadWrite,
    /// Making the pages resident: `madvise(MADV_POPULATE_WRITE)` (or an
    /// injected failure in its place).
    Prefault,
    /// `madvise(MADV_DONTNEED)` while depopulating.
    DontNeed,
    /// `mprotect(PROT_NONE)` while depopulating.
    ProtectNone,
}

impl fmt::Display for SysOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysOp::ProtectReadWrite => "mprotect(PROT_READ|PROT_WRITE)",
            SysOp::Prefault => "madvise(MADV_POPULATE_WRITE)",
            SysOp::DontNeed => "madvise(MADV_DONTNEED)",
            SysOp::ProtectNone => "mprotect(PROT_NONE)",
        })
    }
}

/// Errors of the OS layer. Every variant names what was attempted and, for
/// OS failures, the `errno` the kernel returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SysError {
    /// `mmap` could not reserve the address range (typically `ENOMEM`:
    /// address space exhausted or `RLIMIT_AS` reached).
    Reserve {
        /// Size of the attempted reservation.
        bytes: usize,
        /// What the kernel said.
        errno: Errno,
    },
    /// Populating failed; everything this call had done was rolled back.
    Populate {
        /// The failing operation.
        op: SysOp,
        /// The unit it was applied to, `None` when it covered all units in one
        /// system call.
        unit: Option<usize>,
        /// The page indices (within a unit) the failing operation covered.
        pages: Range<usize>,
        /// What the kernel said.
        errno: Errno,
    },
    /// Depopulating failed; the pages' contents are lost and they are
    /// recorded as unpopulated (a later `populate` redoes them fully).
    Depopulate {
        /// The failing operation.
        op: SysOp,
        /// The unit it was applied to, `None` when it covered all units.
        unit: Option<usize>,
        /// The page indices (within a unit) the failing operation covered.
        pages: Range<usize>,
        /// What the kernel said.
        errno: Errno,
    },
    /// `mincore` failed.
    Mincore {
        /// What the kernel said.
        errno: Errno,
    },
    /// `Region::reserve` was asked for an impossible shape.
    BadGeometry {
        /// Requested number of units.
        nr_units: usize,
        /// Requested unit size in bytes.
        unit_size: usize,
        /// The system page size.
        page_size: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A page range outside `0..pages_per_unit`, or reversed.
    BadRange {
        /// The offending range.
        pages: Range<usize>,
        /// Pages in one unit.
        pages_per_unit: usize,
    },
    /// A unit index `>= nr_units`.
    BadUnit {
        /// The offending unit.
        unit: usize,
        /// Units in the region.
        nr_units: usize,
    },
}

impl SysError {
    /// The kernel's error number, for the variants that carry one.
    pub(crate) fn errno(&self) -> Option<Errno> {
        match self {
            SysError::Reserve { errno, .. }
            | SysError::Populate { errno, .. }
            | SysError::Depopulate { errno, .. }
            | SysError::Mincore { errno } => Some(*errno),
            SysError::BadGeometry { .. } | SysError::BadRange { .. } | SysError::BadUnit { .. } => {
                None
            }
        }
    }
}

/// Formats `unit` as "unit N" or "all units".
struct Units(Option<usize>);

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(u) => write!(f, "unit {u}"),
            None => f.write_str("all units"),
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysError::Reserve { bytes, errno } => write!(
                f,
                "cannot reserve {bytes} bytes of address space (mmap): {errno}"
            ),
            SysError::Populate {
                op,
                unit,
                pages,
                errno,
            } => write!(
                f,
                "cannot populate pages {}..{} of {}: {op} failed: {errno} (rolled back)",
                pages.start,
                pages.end,
                Units(*unit)
            ),
            SysError::Depopulate {
                op,
                unit,
                pages,
                errno,
            } => write!(
                f,
                "cannot depopulate pages {}..{} of {}: {op} failed: {errno}",
                pages.start,
                pages.end,
                Units(*unit)
            ),
            SysError::Mincore { errno } => write!(f, "mincore failed: {errno}"),
            SysError::BadGeometry {
                nr_units,
                unit_size,
                page_size,
                reason,
            } => write!(
                f,
                "bad region geometry ({nr_units} units of {unit_size} bytes, \
                 page size {page_size}): {reason}"
            ),
            SysError::BadRange {
                pages,
                pages_per_unit,
            } => write!(
                f,
                "page range {}..{} is not within a unit of {pages_per_unit} pages",
                pages.start, pages.end
            ),
            SysError::BadUnit { unit, nr_units } => {
                write!(f, "unit {unit} out of range (region has {nr_units} units)")
            }
        }
    }
}

impl std::error::Error for SysError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SysError::Reserve { errno, .. }
            | SysError::Populate { errno, .. }
            | SysError::Depopulate { errno, .. }
            | SysError::Mincore { errno } => Some(errno),
            SysError::BadGeometry { .. } | SysError::BadRange { .. } | SysError::BadUnit { .. } => {
                None
            }
        }
    }
}

impl From<SysError> for std::io::Error {
    fn from(e: SysError) -> Self {
        let kind = match e.errno() {
            Some(errno) => std::io::Error::from(errno).kind(),
            None => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_and_conversions() {
        let e = SysError::Reserve {
            bytes: 4096,
            errno: Errno::NOMEM,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("cannot reserve 4096 bytes"), "{msg}");
        assert!(msg.contains("memory"), "{msg}");
        assert_eq!(e.errno(), Some(Errno::NOMEM));
        assert!(std::error::Error::source(&e).is_some());
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::OutOfMemory);

        for (e, prefix) in [
            (
                SysError::Populate {
                    op: SysOp::ProtectReadWrite,
                    unit: Some(3),
                    pages: 1..2,
                    errno: Errno::NOMEM,
                },
                "cannot populate pages 1..2 of unit 3: mprotect(PROT_READ|PROT_WRITE) failed",
            ),
            (
                SysError::Depopulate {
                    op: SysOp::DontNeed,
                    unit: None,
                    pages: 0..8,
                    errno: Errno::INVAL,
                },
                "cannot depopulate pages 0..8 of all units: madvise(MADV_DONTNEED) failed",
            ),
            (
                SysError::Mincore {
                    errno: Errno::NOMEM,
                },
                "mincore failed",
            ),
        ] {
            let msg = e.to_string();
            assert!(msg.starts_with(prefix), "{msg}");
        }
        assert_eq!(SysOp::ProtectNone.to_string(), "mprotect(PROT_NONE)");
        assert_eq!(SysOp::Prefault.to_string(), "madvise(MADV_POPULATE_WRITE)");
        let bad: std::io::Error = SysError::BadUnit {
            unit: 1,
            nr_units: 1,
        }
        .into();
        assert_eq!(bad.kind(), std::io::ErrorKind::InvalidInput);
    }
}
