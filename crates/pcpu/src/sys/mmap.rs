//! Address-space reservations for per-CPU chunks.
//!
//! A chunk of the allocator owns one [`Region`]: a single anonymous mapping of
//! `nr_units * unit_size` bytes, `MAP_NORESERVE` (no memory is committed by
//! the reservation itself). Unit `u` — the copy that belongs to CPU `u` —
//! occupies `[base + u * unit_size, base + (u + 1) * unit_size)`.
//!
//! Like `pcpu_populate_chunk()` / `pcpu_depopulate_chunk()` in
//! `mm/percpu-vm.c`, memory is committed and released by *page index within a
//! unit*, for every unit at once: [`Region::populate`] with pages `2..4` makes
//! pages 2 and 3 of every unit readable, writable and resident.
//!
//! Page states, per page index (the same in every unit):
//!
//! | state        | protection             | contents                  |
//! |--------------|------------------------|---------------------------|
//! | unpopulated  | read-write; with guard pages `PROT_NONE` (faults) | none (discarded) |
//! | populated    | `PROT_READ|PROT_WRITE` | zero when new; resident in the hot units |
//!
//! Without guard pages ([`RegionOptions::guard`], the default) the mapping
//! is read-write from the start and protection never changes: a region is
//! one mapping of the process whatever its pages' states, and population
//! is pre-faulting and discarding (`MADV_DONTNEED`) only. With guard pages
//! it is reserved `PROT_NONE` and each populated run is made read-write per
//! unit, which splits the mapping in every unit: a stray access to an
//! unpopulated page faults, as the kernel's unmapped pages do, at the price
//! of up to two mappings per unit per populated run (`vm.max_map_count`).
//!
//! A region pre-faults its *hot* units only (`HotUnits`): by default the
//! units of the online CPUs the process's main thread may run on. The pages
//! of the other units are accessible but take memory only where they are
//! written, which per-CPU data mostly never is on a CPU that never runs the
//! process.
//!
//! The region records which page indices are populated (a small bitmap under
//! a mutex), so `populate` skips pages that already are, never touches their
//! contents, and rolls back only what the failing call itself did.
//!
//! # Safety
//!
//! This module is one of the four in the crate allowed to use `unsafe` (the
//! others are `sys::cpu`, `sys::rseq` and `handle`); its errors, fault
//! knobs and page bitmaps live in the safe `sys::error`, `sys::fault` and
//! `sys::pagebits`. Its `unsafe` code is system calls on the region's own
//! mapping plus the volatile first-touch writes of the pre-fault fallback. The
//! invariants everything rests on:
//!
//! 1. `base..base + len` is a mapping created by [`Region::reserve`], owned by
//!    exactly one `Region`, and unmapped only by its `Drop`. Every pointer
//!    handed to the kernel is derived from `base` (so it carries the mapping's
//!    provenance), page aligned, and stays inside the mapping.
//! 2. Page state only changes under the region's mutex, so two calls never
//!    race on the same page, and (with guard pages) the bitmap matches the
//!    protection of every unit except transiently inside one locked call (or
//!    after a reported `depopulate` failure, after which the pages are
//!    recorded as unpopulated and the next `populate` redoes them
//!    completely).
//! 3. This module never creates a Rust reference into the mapping. Code above
//!    it may only create references into *populated* pages, and only for as
//!    long as they stay populated — which is exactly the contract of the one
//!    `unsafe fn` here, [`Region::depopulate`], and of dropping the region.
//!    `populate` writes only into pages it found unpopulated, which therefore
//!    nobody may be referencing.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fmt;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::io::Errno;
use rustix::mm::{self, Advice, MapFlags, MprotectFlags, ProtFlags};

use super::error::{SysError, SysOp};
use super::fault;
use super::pagebits::{bit, clear_bits, set_bits, Runs};
use super::pagemap;
#[cfg(test)]
use super::units::{HotUnits, UnitNodes};
use super::units::{RegionOptions, MAX_NODE};

/// The system page size in bytes (`getauxval(AT_PAGESZ)`, cached by rustix).
#[inline]
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Set once `madvise(MADV_POPULATE_WRITE)` has answered `EINVAL` (kernels
/// before 5.14 do not know the advice); from then on pre-faulting writes one
/// byte per page instead.
static POPULATE_WRITE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// One system-call target: a byte range of the mapping, for one unit or (when
/// a page range covers whole units) for all units at once.
#[derive(Clone, Copy)]
struct Span {
    unit: Option<usize>,
    ptr: *mut c_void,
    len: usize,
}

/// One chunk's address-space reservation: `nr_units` units of `unit_size`
/// bytes, in a single anonymous mapping (read-write, or `PROT_NONE` but for
/// its populated pages with guard pages).
///
/// Dropping the region unmaps it: no pointer obtained from it may be used
/// afterwards.
pub(crate) struct Region {
    /// Start of the mapping (page aligned, never null, mapping provenance).
    base: NonNull<u8>,
    /// `nr_units * unit_size`.
    len: usize,
    nr_units: usize,
    unit_size: usize,
    page_size: usize,
    /// The units `populate` pre-faults, each unit's node, and whether
    /// unpopulated pages are `PROT_NONE`.
    units: RegionOptions,
    /// Bit `p` set = page `p` is populated in every unit. The lock also
    /// serialises all page-state changes of this region.
    populated: Mutex<Vec<u64>>,
}

// SAFETY: `Region` is a base pointer plus sizes describing an address range it
// owns exclusively (invariant 1), and a `Mutex`, which is `Send`. Nothing in it
// is tied to the creating thread: the mapping belongs to the process, and
// `munmap` in `Drop` may run on any thread.
unsafe impl Send for Region {}

// SAFETY: every `&self` method either only reads immutable fields (`base`,
// sizes), or changes page state while holding the `populated` mutex (so calls
// on one region are serialised and cannot race on a page), or calls `mincore`,
// which only reads page tables. The kernel calls themselves are thread-safe.
// Concurrent *users* of the memory are the caller's business: the allocator
// guarantees it never populates/depopulates pages that another thread is
// using, which is also what `depopulate`'s contract demands.
unsafe impl Sync for Region {}

/// A region's base address and geometry, without ownership: what a live
/// allocation needs to compute its units' addresses without holding a
/// reference count on the region. Computing addresses is safe; using one is
/// only valid while the region is still mapped, which the holder must know by
/// other means (a live allocation keeps its chunk, hence its region, alive:
/// `handle` module, fact A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnitLayout {
    base: NonNull<u8>,
    nr_units: usize,
    unit_size: usize,
}

// SAFETY: a `UnitLayout` is an address and two sizes; no method dereferences
// the address, so sharing or sending the value between threads cannot cause a
// data race. Whoever dereferences a computed address answers for it.
unsafe impl Send for UnitLayout {}
// SAFETY: as for `Send`: `&UnitLayout` only reads the `Copy` fields.
unsafe impl Sync for UnitLayout {}

impl UnitLayout {
    /// `base + off` without UB for any `off` (in range it is the exact
    /// address, with the mapping's provenance).
    #[inline]
    fn ptr_at(&self, off: usize) -> NonNull<u8> {
        NonNull::new(self.base.as_ptr().wrapping_add(off)).unwrap_or(self.base)
    }

    /// Address of byte `offset` of unit `unit` ([`Region::addr`]).
    #[inline]
    pub(crate) fn addr(&self, unit: usize, offset: usize) -> NonNull<u8> {
        debug_assert!(
            unit < self.nr_units,
            "unit {unit} out of range ({} units)",
            self.nr_units
        );
        debug_assert!(
            offset < self.unit_size,
            "offset {offset} out of range (unit size {})",
            self.unit_size
        );
        self.ptr_at(unit.wrapping_mul(self.unit_size).wrapping_add(offset))
    }

    /// Number of units.
    #[inline]
    pub(crate) fn nr_units(&self) -> usize {
        self.nr_units
    }

    /// Bytes per unit.
    #[inline]
    pub(crate) fn unit_size(&self) -> usize {
        self.unit_size
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("nr_units", &self.nr_units)
            .field("unit_size", &self.unit_size)
            .finish_non_exhaustive()
    }
}

impl Region {
    /// Reserves address space for `nr_units` units of `unit_size` bytes each:
    /// one `mmap(NULL, nr_units * unit_size, PROT_READ | PROT_WRITE (with
    /// `units.guard`: PROT_NONE), MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_NORESERVE)`, without transparent
    /// huge pages (`MADV_NOHUGEPAGE`), and each unit with a node in
    /// `units.nodes` preferring that node (`mbind(MPOL_PREFERRED)`; a
    /// refusal is ignored: the pages then come from wherever the kernel
    /// puts them). No memory is committed; every page starts unpopulated.
    /// [`Region::populate`] pre-faults the units in `units.hot`.
    ///
    /// # Errors
    ///
    /// * [`SysError::BadGeometry`] if `nr_units` is 0, `unit_size` is 0 or not
    ///   a multiple of [`page_size()`], or the total overflows `isize`.
    /// * [`SysError::Reserve`] if the kernel refuses the mapping (or an
    ///   injected failure is armed, see [`fault`]).
    pub(crate) fn reserve(
        nr_units: usize,
        unit_size: usize,
        units: RegionOptions,
    ) -> Result<Region, SysError> {
        let page_size = page_size();
        let bad = |reason| SysError::BadGeometry {
            nr_units,
            unit_size,
            page_size,
            reason,
        };
        if nr_units == 0 {
            return Err(bad("a region needs at least one unit"));
        }
        if unit_size == 0 {
            return Err(bad("unit size must not be zero"));
        }
        if unit_size % page_size != 0 {
            return Err(bad("unit size must be a multiple of the page size"));
        }
        let len = nr_units
            .checked_mul(unit_size)
            .filter(|&len| len <= isize::MAX as usize)
            .ok_or_else(|| bad("nr_units * unit_size overflows isize"))?;
        if fault::take_reserve_failure() {
            return Err(SysError::Reserve {
                bytes: len,
                errno: Errno::NOMEM,
            });
        }
        let prot = if units.guard {
            ProtFlags::empty()
        } else {
            ProtFlags::READ | ProtFlags::WRITE
        };
        // SAFETY: `mmap_anonymous` requires, only when `ptr` is non-null, that
        // the range at `ptr` be valid to mutate; we pass null, so the kernel
        // picks a fresh range that overlaps no existing mapping and no Rust
        // object can be affected. `len` is non-zero (checked above).
        let ptr = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                prot,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|errno| SysError::Reserve { bytes: len, errno })?;
        let Some(base) = NonNull::new(ptr.cast::<u8>()) else {
            // Only possible with vm.mmap_min_addr = 0 and an otherwise full
            // address space; we cannot hand out a null base.
            // SAFETY: `ptr..ptr + len` is the mapping just created above; no
            // reference into it exists.
            let _ = unsafe { mm::munmap(ptr, len) };
            return Err(SysError::Reserve {
                bytes: len,
                errno: Errno::NOMEM,
            });
        };
        // Population is page by page, as the kernel's (its chunks are
        // vmalloc'd 4 KiB pages): with transparent huge pages set to
        // `always`, a first write into a 2 MiB aligned read-write range
        // would otherwise commit the whole 2 MiB, units of CPUs that never
        // run the process included, and discarding one page would split it.
        // Kernels without THP answer EINVAL: nothing to turn off then.
        // SAFETY: `ptr..ptr + len` is the mapping just created above, with
        // no page faulted in and no reference into it yet; the advice
        // changes how it is faulted in, never its contents.
        let _ = unsafe { mm::madvise(ptr, len, Advice::LinuxNoHugepage) };
        if !units.nodes.is_none() {
            for unit in 0..nr_units {
                if let Some(node) = units.nodes.node(unit) {
                    let start = ptr.cast::<u8>().wrapping_add(unit * unit_size);
                    let _ = prefer_node(start.cast(), unit_size, node);
                }
            }
        }
        let pages_per_unit = unit_size / page_size;
        Ok(Region {
            base,
            len,
            nr_units,
            unit_size,
            page_size,
            units,
            populated: Mutex::new(vec![0; pages_per_unit.div_ceil(64)]),
        })
    }

    /// Total size of the mapping in bytes (`nr_units * unit_size`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Number of units (one per possible CPU in the allocator).
    #[inline]
    pub(crate) fn nr_units(&self) -> usize {
        self.nr_units
    }

    /// Size of one unit in bytes (a multiple of the page size).
    #[inline]
    pub(crate) fn unit_size(&self) -> usize {
        self.unit_size
    }

    /// The page size the region was laid out with.
    #[inline]
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    /// Pages in one unit: valid page indices are `0..pages_per_unit()`.
    #[inline]
    pub(crate) fn pages_per_unit(&self) -> usize {
        self.unit_size / self.page_size
    }

    /// Start of the mapping (= start of unit 0).
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Start of unit `unit`: `base + unit * unit_size`.
    ///
    /// `unit` must be `< nr_units()`: checked by `debug_assert!` only. In
    /// release builds an out-of-range unit yields an unspecified non-null
    /// pointer that must not be dereferenced (computing it is not UB: the
    /// arithmetic wraps).
    #[inline]
    pub(crate) fn unit_base(&self, unit: usize) -> NonNull<u8> {
        debug_assert!(
            unit < self.nr_units,
            "unit {unit} out of range ({} units)",
            self.nr_units
        );
        self.ptr_at(unit.wrapping_mul(self.unit_size))
    }

    /// Address of byte `offset` of unit `unit`: `base + unit * unit_size +
    /// offset`. This is `per_cpu_ptr()` of the kernel.
    ///
    /// Requires `unit < nr_units()` and `offset < unit_size()`, checked by
    /// `debug_assert!` only; see [`Region::unit_base`] for release builds.
    /// The pointer may be dereferenced only while the page holding it is
    /// populated and the region alive.
    #[inline]
    pub(crate) fn addr(&self, unit: usize, offset: usize) -> NonNull<u8> {
        self.layout().addr(unit, offset)
    }

    /// `base + off` without UB for any `off` (in range it is the exact
    /// address, with the mapping's provenance).
    #[inline]
    fn ptr_at(&self, off: usize) -> NonNull<u8> {
        self.layout().ptr_at(off)
    }

    /// The region's address arithmetic as a plain `Copy` value, for handles
    /// that know by other means that the region stays mapped (see
    /// [`UnitLayout`]).
    #[inline]
    pub(crate) fn layout(&self) -> UnitLayout {
        UnitLayout {
            base: self.base,
            nr_units: self.nr_units,
            unit_size: self.unit_size,
        }
    }

    /// Whether page index `page` is currently populated (in every unit).
    /// Out-of-range pages are reported as not populated.
    pub(crate) fn is_populated(&self, page: usize) -> bool {
        page < self.pages_per_unit() && bit(&self.lock(), page)
    }

    /// Number of populated page indices (per unit; multiply by `nr_units()`
    /// for the whole region).
    pub(crate) fn populated_pages(&self) -> usize {
        self.lock().iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Makes page indices `pages` readable and writable in every unit, and
    /// resident in the hot units (`pcpu_populate_chunk()`).
    ///
    /// Per run of not-yet-populated pages, and per unit (or once for the
    /// whole mapping when the run is a whole unit): with guard pages
    /// `mprotect(PROT_READ | PROT_WRITE)`, then, in the hot units, pre-fault
    /// with `madvise(MADV_POPULATE_WRITE)` so that "populated" means resident there
    /// and later first touches do not fault. If the kernel does not know that
    /// advice (`EINVAL`, Linux < 5.14) one byte per page is written with a
    /// volatile zero instead, and the advice is not tried again. The other
    /// units' pages take memory on their first write (a failure then is the
    /// OS's, as for any lazily committed memory: no error can be returned).
    ///
    /// Pages that are already populated are skipped: their contents and
    /// accessibility are not touched, so populating an overlapping range is
    /// harmless. Newly populated pages read as zero: they are fresh anonymous
    /// memory, or were discarded with `MADV_DONTNEED` by a successful
    /// [`Region::depopulate`] (after a *failed* depopulate their contents are
    /// unspecified).
    ///
    /// An empty range is a no-op.
    ///
    /// # Errors
    ///
    /// * [`SysError::BadRange`] if `pages` is reversed or exceeds
    ///   `pages_per_unit()`.
    /// * [`SysError::Populate`] if a system call fails (or an injected
    ///   failure is armed, see [`fault`]). Everything this call made
    ///   resident or accessible is decommitted again (`MADV_DONTNEED`, and
    ///   with guard pages `PROT_NONE`) before returning, so the region is in
    ///   the state it was before the call.
    pub(crate) fn populate(&self, pages: Range<usize>) -> Result<(), SysError> {
        self.check_range(&pages)?;
        if pages.is_empty() {
            return Ok(());
        }
        let inject = fault::take_populate_failure();
        let mut populated = self.lock();
        let mut runs = Runs::new(&populated, pages.clone(), false).peekable();
        if inject && runs.peek().is_none() {
            // Nothing to do, nothing to roll back: just report the failure.
            return Err(SysError::Populate {
                op: SysOp::Prefault,
                unit: None,
                pages,
                errno: Errno::NOMEM,
            });
        }
        while let Some(run) = runs.next() {
            let last = runs.peek().is_none();
            if let Err(err) = self.commit_run(run.clone(), inject && last) {
                // `commit_run` undid its own partial work; undo the complete
                // runs before it. They are the unpopulated runs (the bitmap is
                // not updated yet) of `pages.start..run.start`.
                for done in Runs::new(&populated, pages.start..run.start, false) {
                    let _ = self.decommit_run(done);
                }
                return Err(err);
            }
        }
        set_bits(&mut populated, pages);
        Ok(())
    }

    /// Returns page indices `pages` of every unit to the OS
    /// (`pcpu_depopulate_chunk()`): per run of populated pages, and per unit
    /// (or once for the whole mapping when the run is a whole unit),
    /// `madvise(MADV_DONTNEED)` — the memory is freed and will read as zero
    /// if populated again — then, with guard pages, `mprotect(PROT_NONE)`, so
    /// that a stray access faults instead of silently reading zeros.
    ///
    /// Pages that are not populated are skipped. An empty range is a no-op.
    ///
    /// # Safety
    ///
    /// In **every** unit, no live object may occupy the pages in `pages`, and
    /// no reference or pointer into them may be used afterwards, until they
    /// are populated again (which zeroes them). Rust references into those
    /// pages must not exist at all during the call.
    ///
    /// # Errors
    ///
    /// * [`SysError::BadRange`] as for [`Region::populate`].
    /// * [`SysError::Depopulate`] for the first failing system call. The call
    ///   still processes every unit (best effort); afterwards the pages'
    ///   contents are unspecified, their protection may be either, and they
    ///   are recorded as unpopulated so that the next `populate` redoes them.
    pub(crate) unsafe fn depopulate(&self, pages: Range<usize>) -> Result<(), SysError> {
        self.check_range(&pages)?;
        if pages.is_empty() {
            return Ok(());
        }
        let mut populated = self.lock();
        let mut first_err = None;
        for run in Runs::new(&populated, pages.clone(), true) {
            if let Err(e) = self.decommit_run(run) {
                first_err.get_or_insert(e);
            }
        }
        clear_bits(&mut populated, pages);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Number of pages of the whole mapping (all units) backed by memory of
    /// this process's own ([`pagemap`]). A populated page of a hot unit
    /// counts, and one of another unit once it was written; an unpopulated
    /// one, or one that was only read, does not. (Populated pages that the
    /// kernel swapped out would not count either.) Without a readable
    /// `/proc/self/pagemap` the count is `mincore`'s, which also counts
    /// pages that were only read.
    ///
    /// # Errors
    ///
    /// [`SysError::Mincore`] if the kernel refuses.
    pub(crate) fn resident_pages(&self) -> Result<usize, SysError> {
        self.backed_count(0, self.len)
    }

    /// Number of resident pages among page indices `pages` of unit `unit`.
    ///
    /// # Errors
    ///
    /// [`SysError::BadUnit`], [`SysError::BadRange`], or
    /// [`SysError::Mincore`] if the kernel refuses.
    pub(crate) fn resident_pages_in(
        &self,
        unit: usize,
        pages: Range<usize>,
    ) -> Result<usize, SysError> {
        if unit >= self.nr_units {
            return Err(SysError::BadUnit {
                unit,
                nr_units: self.nr_units,
            });
        }
        self.check_range(&pages)?;
        let off = unit * self.unit_size + pages.start * self.page_size;
        self.backed_count(off, pages.len() * self.page_size)
    }

    /// Pages backed in the byte range `off..off + len` of the mapping
    /// (page-aligned, inside the mapping): [`pagemap`], else `mincore`.
    fn backed_count(&self, off: usize, len: usize) -> Result<usize, SysError> {
        let addr = self.base.as_ptr() as usize + off;
        match pagemap::backed_pages(addr, len / self.page_size, self.page_size) {
            Ok(n) => Ok(n),
            Err(_) => self.mincore_count(off, len),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u64>> {
        // No code panics while holding the lock, but if it ever did the
        // bitmap would still be a valid (conservative) bitmap.
        self.populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn check_range(&self, pages: &Range<usize>) -> Result<(), SysError> {
        let ppu = self.pages_per_unit();
        if pages.start > pages.end || pages.end > ppu {
            return Err(SysError::BadRange {
                pages: pages.clone(),
                pages_per_unit: ppu,
            });
        }
        Ok(())
    }

    /// Whether page run `run` (validated, non-empty) is handled with one
    /// system call over the whole mapping: it covers whole units, so the
    /// byte ranges of all units are contiguous.
    fn whole_mapping(&self, run: &Range<usize>) -> bool {
        self.nr_units > 1 && run.start == 0 && run.end == self.pages_per_unit()
    }

    /// Number of system-call targets ([`Span`]s) for `run`.
    fn span_count(&self, run: &Range<usize>) -> usize {
        if self.whole_mapping(run) {
            1
        } else {
            self.nr_units
        }
    }

    /// Target `i` (`< span_count(run)`) for `run`: the whole mapping, or the
    /// run's pages in unit `i`.
    fn span(&self, run: &Range<usize>, i: usize) -> Span {
        if self.whole_mapping(run) {
            return Span {
                unit: None,
                ptr: self.base.as_ptr().cast(),
                len: self.len,
            };
        }
        self.unit_span(run, i)
    }

    /// `run`'s pages in unit `unit` alone.
    fn unit_span(&self, run: &Range<usize>, unit: usize) -> Span {
        let off = unit * self.unit_size + run.start * self.page_size;
        Span {
            unit: Some(unit),
            ptr: self.base.as_ptr().wrapping_add(off).cast(),
            len: run.len() * self.page_size,
        }
    }

    /// Makes `run` accessible and resident in every unit. On failure undoes
    /// what it did and returns the error. `inject` replaces the last
    /// pre-fault by an `ENOMEM` failure.
    fn commit_run(&self, run: Range<usize>, inject: bool) -> Result<(), SysError> {
        let n = self.span_count(&run);
        for i in 0..n {
            let span = self.span(&run, i);
            let fail = |op, errno| SysError::Populate {
                op,
                unit: span.unit,
                pages: run.clone(),
                errno,
            };
            // Without guard pages the mapping is read-write already.
            let r = if self.units.guard {
                // SAFETY: `mprotect` requires the range to be valid to read
                // with the pointer's provenance, i.e. memory we own: `span`
                // lies inside our mapping and its pointer is derived from
                // `base` (invariant 1). Granting access cannot invalidate
                // anything Rust relies on.
                unsafe {
                    mm::mprotect(
                        span.ptr,
                        span.len,
                        MprotectFlags::READ | MprotectFlags::WRITE,
                    )
                }
            } else {
                Ok(())
            };
            if let Err(errno) = r {
                self.decommit_spans(&run, 0..i);
                return Err(fail(SysOp::ProtectReadWrite, errno));
            }
            let r = if inject && i + 1 == n {
                Err(Errno::NOMEM)
            } else {
                self.prefault_hot(&run, span)
            };
            if let Err(errno) = r {
                self.decommit_spans(&run, 0..i + 1);
                return Err(fail(SysOp::Prefault, errno));
            }
        }
        Ok(())
    }

    /// Makes the pages of `span` of `run` (read-write, and unpopulated
    /// before this call) resident in the hot units.
    fn prefault_hot(&self, run: &Range<usize>, span: Span) -> Result<(), Errno> {
        match span.unit {
            Some(unit) if !self.units.hot.contains(unit) => Ok(()),
            None if !self.units.hot.is_all() => (0..self.nr_units)
                .filter(|&unit| self.units.hot.contains(unit))
                .try_for_each(|unit| self.prefault(self.unit_span(run, unit))),
            _ => self.prefault(span),
        }
    }

    /// Makes the pages of `span` (read-write, and unpopulated before this
    /// call) resident.
    fn prefault(&self, span: Span) -> Result<(), Errno> {
        if !fault::touch_forced() && !POPULATE_WRITE_UNSUPPORTED.load(Ordering::Relaxed) {
            // SAFETY: `madvise` requires a pointer appropriate for the advice:
            // `span` is a page-aligned range inside our private anonymous
            // mapping (invariant 1), currently read-write. MADV_POPULATE_WRITE
            // only faults pages in as a write would, without changing their
            // contents, so no Rust-visible memory changes.
            match unsafe { mm::madvise(span.ptr, span.len, Advice::LinuxPopulateWrite) } {
                Ok(()) => return Ok(()),
                Err(Errno::INVAL) => POPULATE_WRITE_UNSUPPORTED.store(true, Ordering::Relaxed),
                Err(errno) => return Err(errno),
            }
        }
        let mut p = span.ptr.cast::<u8>();
        let end = p.wrapping_add(span.len);
        while p < end {
            // SAFETY: `p` is page aligned inside `span`, which is inside our
            // mapping (invariant 1) and read-write (made so just before this
            // call with guard pages, else since it was mapped), so the write
            // is in bounds, aligned (u8) and permitted. The
            // page was unpopulated, so no Rust reference to it exists
            // (invariant 3) and no other thread may touch it (invariant 2),
            // so nobody can observe the byte written (its contents are zero
            // unless a depopulation failed; either way every user of a new
            // area writes or zeroes it first). Volatile keeps
            // the compiler from eliding the store that does the faulting.
            unsafe { p.write_volatile(0) };
            p = p.wrapping_add(self.page_size);
        }
        Ok(())
    }

    /// Decommits spans `which` of `run` (rollback helper); errors ignored.
    fn decommit_spans(&self, run: &Range<usize>, which: Range<usize>) {
        for i in which {
            let _ = self.decommit_span(self.span(run, i));
        }
    }

    /// Decommits `run` in every unit; returns the first error but always
    /// processes every span.
    fn decommit_run(&self, run: Range<usize>) -> Result<(), SysError> {
        let mut first_err = None;
        for i in 0..self.span_count(&run) {
            let span = self.span(&run, i);
            if let Err((op, errno)) = self.decommit_span(span) {
                first_err.get_or_insert(SysError::Depopulate {
                    op,
                    unit: span.unit,
                    pages: run.clone(),
                    errno,
                });
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `MADV_DONTNEED` then, with guard pages, `PROT_NONE` on `span`; both
    /// are attempted.
    ///
    /// Callers (`depopulate`, whose caller promised that no object or
    /// reference lives in these pages, and `populate`'s rollback, which only
    /// decommits pages it found unpopulated) guarantee that nothing refers to
    /// the span.
    fn decommit_span(&self, span: Span) -> Result<(), (SysOp, Errno)> {
        // SAFETY: `span` is a page-aligned range inside our private anonymous
        // mapping with `base`'s provenance (invariant 1), so it is appropriate
        // for `madvise`. MADV_DONTNEED replaces its contents by zero-fill on
        // demand; that is a mutation, which is fine because, per this
        // function's callers, no Rust reference or live object is in the span.
        let discard = unsafe { mm::madvise(span.ptr, span.len, Advice::LinuxDontNeed) };
        let protect = if self.units.guard {
            // SAFETY: as above the range is ours and validly derived from
            // `base`, which is `mprotect`'s requirement; removing access is
            // sound because nothing refers to the span (callers' guarantee),
            // so no later Rust access can fault.
            unsafe { mm::mprotect(span.ptr, span.len, MprotectFlags::empty()) }
        } else {
            Ok(())
        };
        discard
            .map_err(|e| (SysOp::DontNeed, e))
            .and(protect.map_err(|e| (SysOp::ProtectNone, e)))
    }

    /// Resident pages in the byte range `off..off + len` of the mapping
    /// (page-aligned, inside the mapping).
    fn mincore_count(&self, off: usize, len: usize) -> Result<usize, SysError> {
        const BATCH: usize = 4096;
        let mut vec = [0u8; BATCH];
        let mut count = 0;
        let mut done = 0;
        while done < len {
            let bytes = (len - done).min(BATCH * self.page_size);
            let pages = bytes / self.page_size;
            let addr = self.base.as_ptr().wrapping_add(off + done).cast::<c_void>();
            // SAFETY: `mincore` (not wrapped by rustix) needs a page-aligned
            // `addr` inside a mapping and a `vec` of at least
            // ceil(bytes / page size) bytes: `addr` is `base` plus a multiple
            // of the page size, `addr..addr + bytes` is inside our mapping
            // (callers pass ranges within `0..len`), and `pages <= BATCH =
            // vec.len()`. It only reads page tables and writes `vec`.
            let rc = unsafe { libc::mincore(addr, bytes, vec.as_mut_ptr()) };
            if rc != 0 {
                let errno = std::io::Error::last_os_error()
                    .raw_os_error()
                    .map_or(Errno::INVAL, Errno::from_raw_os_error);
                return Err(SysError::Mincore { errno });
            }
            count += vec[..pages].iter().filter(|&&v| v & 1 != 0).count();
            done += bytes;
        }
        Ok(count)
    }
}

/// `mbind(addr, len, MPOL_PREFERRED, {node})`: pages of `addr..addr + len`
/// faulted in later come from `node` while it has memory. Errors (no NUMA
/// support, a seccomp filter) are ignored: the preference is an
/// optimisation.
fn prefer_node(addr: *mut c_void, len: usize, node: u16) -> bool {
    const MPOL_PREFERRED: libc::c_ulong = 1;
    const WORDS: usize = (MAX_NODE as usize + 1).div_ceil(64);
    let mut mask = [0u64; WORDS];
    let node = usize::from(node.min(MAX_NODE));
    mask[node / 64] |= 1 << (node % 64);
    // The kernel reads `maxnode - 1` bits: exactly the words up to `node`'s.
    let maxnode = ((node / 64 + 1) * 64 + 1) as libc::c_ulong;
    // Every argument is a full register (`long`) wide, as `syscall` reads
    // them.
    // SAFETY: `mbind` only sets the memory policy of `addr..addr + len`,
    // which the caller passes as a page-aligned range of a mapping it owns
    // (invariant 1), with no page faulted in yet; it reads `maxnode - 1`
    // bits of `mask`, which holds them all, and writes no memory of ours.
    // Contents and protection are unchanged.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len as libc::c_ulong,
            MPOL_PREFERRED,
            mask.as_ptr(),
            maxnode,
            0 as libc::c_ulong,
        )
    };
    rc == 0
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping `reserve` created
        // and only this region owns (invariant 1), so `munmap` gets an aligned
        // range valid to mutate. Per the type's contract no pointer obtained
        // from the region is used after it is dropped, and `&mut self` shows
        // no borrow of the region is live, so no Rust reference into the
        // mapping remains.
        let r = unsafe { mm::munmap(self.base.as_ptr().cast(), self.len) };
        debug_assert!(r.is_ok(), "munmap failed: {r:?}");
    }
}

#[cfg(test)]
mod tests;
