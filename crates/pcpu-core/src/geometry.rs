//! Geometry: page size, units, unit size and the first chunk's layout,
//! validated once (`pcpu_setup_first_chunk`'s sanity checks).

use core::fmt;

/// Minimum unit size and the maximum size of one allocation
/// (`PCPU_MIN_UNIT_SIZE` = `PFN_ALIGN(32 KiB)`).
pub const MIN_UNIT_SIZE: usize = 32 << 10;

/// The first chunk's layout in every unit: `< static | reserved | dynamic >`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstChunk {
    /// Static per-CPU variables (not managed by any chunk).
    pub static_size: usize,
    /// Reserved area (`__alloc_reserved_percpu`), 0 for none.
    pub reserved_size: usize,
    /// Dynamic area served by the first chunk.
    pub dyn_size: usize,
}

/// Validated allocator geometry.
///
/// # Invariants
/// - `page_size` is a power of two, at least 256 bytes (so a page block is a
///   whole number of 64-bit bitmap words).
/// - `unit_size = unit_pages * page_size`, `unit_pages >= 1`, `nr_units >= 1`.
/// - The first chunk's static, reserved and dynamic areas fit in one unit;
///   `reserved_size` is a multiple of 4 and `dyn_size > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    page_size: usize,
    nr_units: usize,
    unit_pages: usize,
    first: FirstChunk,
    /// The first chunk's allocation atom and size (`alloc=N*ATOM` in the
    /// boot log): only reported (`percpu_stats`). Invariant: `atom_size` is
    /// a power of two, at least the page size; `alloc_size` a multiple of
    /// both `atom_size` and the unit size.
    atom_size: usize,
    alloc_size: usize,
}

/// Why a geometry was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeometryError {
    /// What is wrong.
    pub reason: &'static str,
    /// The whole configuration, for the message.
    pub config: (usize, usize, usize, FirstChunk),
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, n, u, fc) = self.config;
        write!(
            f,
            "invalid percpu geometry: {} (page_size={p} nr_units={n} unit_size={u} static={} reserved={} dyn={})",
            self.reason, fc.static_size, fc.reserved_size, fc.dyn_size
        )
    }
}

impl core::error::Error for GeometryError {}

/// The most units (possible CPUs) a geometry may have: Linux's largest
/// `NR_CPUS` is 8192; the bound keeps nonsense from a boot log out.
pub const MAX_UNITS: usize = 1 << 16;

impl Geometry {
    /// Validate a geometry. `unit_size` is in bytes.
    pub fn new(
        page_size: usize,
        nr_units: usize,
        unit_size: usize,
        first: FirstChunk,
    ) -> Result<Self, GeometryError> {
        let err = |reason| GeometryError {
            reason,
            config: (page_size, nr_units, unit_size, first),
        };
        if !page_size.is_power_of_two() || page_size < 256 {
            return Err(err(
                "page size must be a power of two of at least 256 bytes",
            ));
        }
        if nr_units == 0 {
            return Err(err("at least one unit is needed"));
        }
        if nr_units > MAX_UNITS {
            return Err(err("at most 65536 units (possible CPUs)"));
        }
        if unit_size == 0 || unit_size % page_size != 0 {
            return Err(err(
                "unit size must be a non-zero multiple of the page size",
            ));
        }
        if unit_size / page_size > (i32::MAX as usize) / page_size {
            return Err(err("unit size too large"));
        }
        if first.reserved_size % 4 != 0 {
            return Err(err("reserved size must be a multiple of 4"));
        }
        if first.dyn_size == 0 {
            return Err(err("the first chunk needs a dynamic area"));
        }
        let total = first
            .static_size
            .checked_next_multiple_of(4)
            .and_then(|s| s.checked_add(first.reserved_size))
            .and_then(|t| t.checked_add(first.dyn_size));
        if !matches!(total, Some(t) if t <= unit_size) {
            return Err(err(
                "static + reserved + dynamic areas exceed the unit size",
            ));
        }
        // The static area is rounded up to 4 bytes at the dynamic area's
        // expense (`first_chunk`); what is left must be whole 4-byte bits.
        let pad = first.static_size.next_multiple_of(4) - first.static_size;
        if first.dyn_size <= pad || (first.dyn_size - pad) % 4 != 0 {
            return Err(err(
                "the dynamic area (less the static area's rounding up to 4) must be a multiple of 4 bytes",
            ));
        }
        Ok(Geometry {
            page_size,
            nr_units,
            unit_pages: unit_size / page_size,
            first,
            atom_size: page_size,
            alloc_size: unit_size,
        })
    }

    /// The same geometry with the first chunk's allocation atom and
    /// allocation size as the kernel's boot log gives them (`pcpu-alloc:
    /// ... alloc=N*ATOM`: `atom_size` ATOM, `alloc_size` N × ATOM bytes per
    /// allocation group). Only [`Allocator::percpu_stats`] reports them
    /// (`atom_size`, `alloc_size`); without this call they are the page size
    /// and the unit size.
    ///
    /// # Errors
    /// When `atom_size` is not a power of two of at least the page size, or
    /// `alloc_size` is not a non-zero multiple of both it and the unit size.
    ///
    /// [`Allocator::percpu_stats`]: crate::Allocator::percpu_stats
    pub fn with_alloc_info(
        self,
        atom_size: usize,
        alloc_size: usize,
    ) -> Result<Self, GeometryError> {
        let err = |reason| GeometryError {
            reason,
            config: (self.page_size, self.nr_units, self.unit_size(), self.first),
        };
        if !atom_size.is_power_of_two() || atom_size < self.page_size {
            return Err(err(
                "the allocation atom must be a power of two of at least the page size",
            ));
        }
        if alloc_size == 0 || alloc_size % atom_size != 0 || alloc_size % self.unit_size() != 0 {
            return Err(err(
                "the allocation size must be a multiple of the atom and of the unit size",
            ));
        }
        Ok(Geometry {
            atom_size,
            alloc_size,
            ..self
        })
    }

    /// A small geometry handy for examples and tests: 4 KiB pages, `nr_units`
    /// units of `unit_pages` pages, first chunk with an 8 KiB dynamic area and
    /// no static or reserved area.
    pub fn simple(nr_units: usize, unit_pages: usize) -> Result<Self, GeometryError> {
        let first = FirstChunk {
            static_size: 0,
            reserved_size: 0,
            dyn_size: 8192,
        };
        let unit_size = unit_pages.checked_mul(4096).ok_or(GeometryError {
            reason: "unit size overflows",
            config: (4096, nr_units, usize::MAX, first),
        })?;
        Geometry::new(4096, nr_units, unit_size, first)
    }

    /// Parse the kernel's boot line `percpu: Embedded 62 pages/cpu s217088
    /// r8192 d28672 u524288` (the `pcpu-alloc: s.. r.. d.. u..` line works
    /// too), with 4 KiB pages and `nr_units` units.
    pub fn from_kernel_line(line: &str, nr_units: usize) -> Result<Self, GeometryError> {
        let mut s = None;
        let mut r = None;
        let mut d = None;
        let mut u = None;
        for tok in line.split_whitespace() {
            // The key is one ASCII letter (a token may start with any char).
            let Some((k, v)) = tok.split_at_checked(1) else {
                continue;
            };
            let v: Option<usize> = v.parse().ok();
            match (k, v) {
                ("s", Some(v)) => s = Some(v),
                ("r", Some(v)) => r = Some(v),
                ("d", Some(v)) => d = Some(v),
                ("u", Some(v)) => u = Some(v),
                _ => {}
            }
        }
        let first = FirstChunk {
            static_size: s.unwrap_or(0),
            reserved_size: r.unwrap_or(0),
            dyn_size: d.unwrap_or(0),
        };
        match u {
            Some(u) if s.is_some() && d.is_some() => Geometry::new(4096, nr_units, u, first),
            _ => Err(GeometryError {
                reason: "expected `sN rN dN uN` fields in the percpu boot line",
                config: (4096, nr_units, 0, first),
            }),
        }
    }

    /// Page size in bytes.
    #[inline]
    pub fn page_size(&self) -> usize {
        self.page_size
    }
    /// Number of units (one per possible CPU, plus padding units).
    pub fn nr_units(&self) -> usize {
        self.nr_units
    }
    /// Pages per unit.
    #[inline]
    pub fn unit_pages(&self) -> usize {
        self.unit_pages
    }
    /// Bytes per unit.
    #[inline]
    pub fn unit_size(&self) -> usize {
        self.unit_pages * self.page_size
    }
    /// The first chunk's layout (static size rounded up to 4 as the kernel does,
    /// dynamic size shrunk by the same amount).
    pub fn first_chunk(&self) -> FirstChunk {
        let static_size = self.first.static_size.div_ceil(4) * 4;
        FirstChunk {
            static_size,
            reserved_size: self.first.reserved_size,
            dyn_size: self.first.dyn_size - (static_size - self.first.static_size),
        }
    }
    /// The first chunk's allocation atom in bytes ([`Geometry::with_alloc_info`]).
    pub fn atom_size(&self) -> usize {
        self.atom_size
    }
    /// The first chunk's allocation size in bytes per group
    /// ([`Geometry::with_alloc_info`]).
    pub fn alloc_size(&self) -> usize {
        self.alloc_size
    }
    /// Largest single allocation: `PCPU_MIN_UNIT_SIZE`, or the unit size when
    /// it is smaller (only possible with test geometries).
    #[inline]
    pub fn max_alloc_size(&self) -> usize {
        MIN_UNIT_SIZE.min(self.unit_size())
    }
    /// Bits per page block (`PCPU_BITMAP_BLOCK_BITS`).
    #[inline]
    pub fn block_bits(&self) -> usize {
        self.page_size / crate::MIN_ALLOC_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_kernel_line() {
        let g = Geometry::from_kernel_line(
            "[    0.195034] percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
            4,
        )
        .unwrap();
        assert_eq!(g.unit_size(), 524288);
        assert_eq!(g.unit_pages(), 128);
        assert_eq!(g.first_chunk().reserved_size, 8192);
        assert_eq!(g.first_chunk().dyn_size, 28672);
        assert!(Geometry::from_kernel_line("percpu: nothing", 4).is_err());
    }

    #[test]
    fn rejects_bad_geometry_with_message() {
        let fc = FirstChunk {
            static_size: 0,
            reserved_size: 0,
            dyn_size: 4096,
        };
        let e = Geometry::new(4000, 4, 65536, fc).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        assert!(Geometry::new(4096, 0, 65536, fc).is_err());
        assert!(Geometry::new(4096, 4, 65537, fc).is_err());
        let big = FirstChunk {
            static_size: 60000,
            reserved_size: 8192,
            dyn_size: 4096,
        };
        assert!(Geometry::new(4096, 4, 65536, big)
            .unwrap_err()
            .to_string()
            .contains("exceed"));
        let odd = FirstChunk {
            static_size: 0,
            reserved_size: 6,
            dyn_size: 4096,
        };
        assert!(Geometry::new(4096, 4, 65536, odd).is_err());
    }

    #[test]
    fn alloc_info_is_checked() {
        let g = Geometry::from_kernel_line("s217088 r8192 d28672 u524288", 4).unwrap();
        assert_eq!((g.atom_size(), g.alloc_size()), (4096, 524288));
        let h = g.with_alloc_info(2 << 20, 2 << 20).unwrap();
        assert_eq!((h.atom_size(), h.alloc_size()), (2 << 20, 2 << 20));
        assert_eq!(h.with_alloc_info(4096, 524288), Ok(g));
        for (atom, alloc) in [
            (2048, 524288),
            (3 << 20, 3 << 20),
            (2 << 20, 0),
            (8192, 8192),
            (1 << 20, 3 << 19),
        ] {
            assert!(g.with_alloc_info(atom, alloc).is_err(), "{atom} {alloc}");
        }
    }
}
