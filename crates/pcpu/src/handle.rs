//! Typed per-CPU handles ([`PerCpu<T>`]), and every other access to chunk
//! memory above the OS layer: zeroing fresh allocations and discarding empty
//! pages.
//!
//! # Safety
//!
//! This is the one module outside `sys` (`mmap`, `cpu`, `rseq`) allowed to
//! use `unsafe`. Its unsafe code:
//!
//! 1. zeroes a fresh allocation, or one taken from a thread cache, in every
//!    unit whose copy is not zero already ([`zero_units`], which reads the
//!    copies with machine loads);
//! 2. writes, borrows and drops the `T` copies of a [`PerCpu<T>`];
//! 3. declares when `PerCpu<T>` and its iterators are `Send` / `Sync`, and
//!    which types are [`Zeroable`];
//! 4. calls the one `unsafe fn` of the OS layer, `Region::depopulate`
//!    (`madvise(MADV_DONTNEED)`, with guard pages `mprotect(PROT_NONE)`), for pages the core
//!    planned to depopulate ([`depopulate_empty`]);
//! 5. hands a `PerCpu<AtomicI64>`'s copies to the restartable sequence of
//!    the OS layer, `sys::rseq::add_fold` ([`PerCpu::rseq_add_fold`]).
//!
//! The facts it rests on, established by the (safe) code of `inner`, `raw`
//! and `balance` and by pcpu-core:
//!
//! - **A. Live areas.** A [`Placed`] (and the [`Area`] that owns one) is a
//!   live allocation: `[offset, offset + size)` of every unit of its region
//!   is allocated in the core's map (allocations never overlap), lies on
//!   populated — readable, writable — pages, and stays allocated until the
//!   owning `Area` is dropped or the raw handle freed (an `Area` recycled
//!   into a thread cache stays allocated, owned by the cache entry, until
//!   the cache frees it or hands it to a new `Area`). Nothing else frees
//!   it: `free_raw` frees only allocations in the live raw table
//!   (`State::raw`, one ticket per `alloc_raw`), which no typed area enters. Its mapping stays
//!   mapped meanwhile: the allocator (which the `Area` or cache entry keeps
//!   alive) drops a chunk's region only when it destroys the chunk, and it
//!   destroys only chunks without allocations (pcpu-core's balance work frees
//!   fully free chunks only). Unit `u`'s copy starts at
//!   `layout.addr(u, offset)` (an `Area`'s `base + u × stride`); units are
//!   `layout.unit_size()` apart, a multiple of the page size, and `offset` is
//!   a multiple of the requested alignment, which is at most the page size:
//!   every copy is aligned.
//! - **B. Pages holding a live byte are never discarded.** Only
//!   [`depopulate_empty`] discards pages, after checking under `state` that
//!   none of them holds an allocated byte; see its SAFETY argument for why
//!   they stay empty until the discard is done.
#![allow(unsafe_code)]

use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::mem;
use std::ops::Range;
use std::ptr::{self, NonNull};
use std::sync::atomic::AtomicI64;

use bytemuck::Zeroable;
use pcpu_core::ChunkId;

use crate::error::Error;
use crate::inner::{AllocLock, Inner, Placed, State};
use crate::raw::Area;
use crate::sync::MutexGuard;
use crate::sys::cpu::current_cpu;
use crate::sys::rseq::{self, AddFold, Slots};
use crate::PerCpuAllocator;

// === zeroing and discarding ===

impl Placed {
    /// Zero the area in every unit (`pcpu_alloc` step 14).
    pub(crate) fn zero(&self) {
        let (base, stride, units) = self.copies();
        zero_units(base, stride, units, self.size);
    }

    /// Unit 0's copy, the bytes between two units' copies, and the number of
    /// units (both fit in 32 bits: `Config`).
    pub(crate) fn copies(&self) -> (NonNull<u8>, u32, u32) {
        let fit = |v: usize| u32::try_from(v).expect("unit sizes and counts fit in u32");
        (
            self.layout.addr(0, self.offset),
            fit(self.layout.unit_size()),
            fit(self.layout.nr_units()),
        )
    }
}

/// Zero `size` bytes at `base + u × stride` for every unit `u < units`,
/// writing only over copies that are not all zero already: a unit whose page
/// was never written (one the region did not pre-fault, `HotUnits`) then
/// takes no memory for it.
///
/// Callers pass an area's unit-0 address, stride and units (fact A), for an
/// area that is allocated (live, on populated pages) and not referenced by
/// any handle: a fresh allocation, or one taken from a thread cache (whose
/// previous owner dropped its copies before caching it).
#[inline(always)]
pub(crate) fn zero_units(base: NonNull<u8>, stride: u32, units: u32, size: usize) {
    for unit in 0..units as usize {
        let p = slot(base, stride, unit);
        // SAFETY: by fact A, the area's `size` bytes of `unit` lie in
        // populated, readable and writable pages of the chunk's mapping
        // (alive while the allocation is), so `p` is valid for `size` bytes
        // of reads and writes; the unaligned writes need no alignment (and
        // cover exactly `size` bytes), and `copy_is_zero` reads exactly
        // those bytes. No handle owns the area (see above), so no reference
        // into it can observe the write and no other thread writes it.
        unsafe {
            if copy_is_zero(p, size) {
                continue;
            }
            // Small sizes without a `memset` call: the common per-CPU objects
            // are counters of 4 or 8 bytes.
            match size {
                4 => p.cast::<u32>().write_unaligned(0),
                8 => p.cast::<u64>().write_unaligned(0),
                16 => p.cast::<[u64; 2]>().write_unaligned([0; 2]),
                n => p.write_bytes(0, n),
            }
        };
    }
}

/// Whether the `n` bytes at `p` are all zero.
///
/// The bytes are read with machine loads (inline assembly), not Rust reads:
/// a previous owner may have left bytes that Rust considers uninitialised
/// (a `T`'s padding), which a Rust integer read must not see, while the
/// memory itself always holds some value. On architectures without the
/// loads here it answers `false`, and every copy is written.
///
/// # Safety
/// `p..p + n` must be valid for reads (a live local, or inside populated
/// pages of a live mapping), and no other thread may write it meanwhile.
#[inline(always)]
unsafe fn copy_is_zero(p: *const u8, n: usize) -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`: the 8 bytes are inside the readable range
            // the caller vouches for.
            if unsafe { load_u64(p.wrapping_add(i)) } != 0 {
                return false;
            }
            i += 8;
        }
        while i < n {
            // SAFETY: `i < n`: the byte is inside the readable range.
            if unsafe { load_u8(p.wrapping_add(i)) } != 0 {
                return false;
            }
            i += 1;
        }
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (p, n);
        false
    }
}

/// The 8 bytes at `p` (any alignment), as the machine loads them.
///
/// # Safety
/// `p..p + 8` must be readable and not written by another thread meanwhile.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn load_u64(p: *const u8) -> u64 {
    let v: u64;
    // SAFETY: one unaligned 8-byte load from memory the caller vouches is
    // readable (unaligned loads of normal memory are allowed on both
    // architectures); it writes no memory, stack or flags.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("mov {v}, qword ptr [{p}]", p = in(reg) p, v = out(reg) v,
            options(nostack, readonly, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!("ldr {v}, [{p}]", p = in(reg) p, v = out(reg) v,
            options(nostack, readonly, preserves_flags));
    }
    v
}

/// The byte at `p`, as the machine loads it.
///
/// # Safety
/// `p` must be readable and not written by another thread meanwhile.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn load_u8(p: *const u8) -> u32 {
    let v: u32;
    // SAFETY: one byte load from memory the caller vouches is readable; it
    // writes no memory, stack or flags.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("movzx {v:e}, byte ptr [{p}]", p = in(reg) p, v = out(reg) v,
            options(nostack, readonly, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!("ldrb {v:w}, [{p}]", p = in(reg) p, v = out(reg) v,
            options(nostack, readonly, preserves_flags));
    }
    v
}

/// Discard `pages` of `chunk` in every unit, as planned by the balance run
/// (`pcpu_depopulate_chunk`). Returns the `state` guard again and whether
/// the core must count the pages as depopulated: false only when the check
/// refused the work (a core bug; the pages then stay populated).
pub(crate) fn depopulate_empty<'a>(
    inner: &'a Inner,
    st: MutexGuard<'a, State>,
    serial: &AllocLock<'_>,
    chunk: ChunkId,
    pages: Range<usize>,
) -> (MutexGuard<'a, State>, bool) {
    assert!(
        serial.is_for(inner),
        "depopulate without this allocator's alloc_mutex"
    );
    let empty = st.core.chunk(chunk).is_some_and(|c| {
        pages.start < pages.end
            && pages.end <= c.nr_pages()
            && pages.clone().all(|p| c.is_page_clear(p))
    });
    let region = st.regions.get(chunk.0 as usize).cloned().flatten();
    let Some(region) = region.filter(|_| empty) else {
        debug_assert!(
            false,
            "core planned to depopulate used pages {pages:?} of chunk {}",
            chunk.0
        );
        return (st, false);
    };
    drop(st);
    // SAFETY: `Region::depopulate` requires that in every unit no live object
    // occupies `pages` and no reference into them is used until they are
    // populated again.
    // - Just above, under `state`, no byte of these pages was allocated in the
    //   core's map (which covers every unit alike).
    // - They stay so after `state` was dropped: the core plans a depopulation
    //   only in a chunk that allocations cannot reach (isolated in the
    //   to_depopulate slot, or detached while being destroyed or shrunk by the
    //   seed-rfc policy: `alloc_area` scans neither, on the fast path or
    //   any other); frees only clear bits; and `serial` proves we hold
    //   `alloc_mutex`, which every population, chunk creation and other
    //   balance run needs.
    // - References and pointers into chunk memory exist only for live
    //   allocations (fact A: `PerCpu<T>` copies, `RawPerCpu` pointers while
    //   the raw allocation is live), and no live allocation overlaps these
    //   pages. A page's next user gets it through `populate` (discarded pages
    //   read as zero then).
    let result = unsafe { region.depopulate(pages) };
    // Not the last reference (the region table holds one), but never drop a
    // region under `state` anyway: the last drop is a `munmap`.
    drop(region);
    let mut st = inner.state();
    if result.is_err() {
        // The region recorded the pages as unpopulated anyway (their contents
        // are gone); counting them as depopulated keeps both views equal, and
        // the next allocation there populates them again.
        st.balance_failures += 1;
    }
    (st, true)
}

// === PerCpu<T> ===

/// One `T` per CPU, in per-CPU memory (`alloc_percpu(T)`).
///
/// Unit `cpu`'s copy is at the same offset of every unit, so the handle is
/// one base pointer and a stride, like the kernel's `per_cpu_ptr()`.
/// Dropping the handle drops every copy and frees the area.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let alloc = pcpu::PerCpuAllocator::builder().background_balance(false).build().unwrap();
/// let hits = alloc.per_cpu(|_cpu| AtomicU64::new(0)).unwrap();
/// hits.current().fetch_add(1, Ordering::Relaxed);
/// let total: u64 = hits.iter().map(|h| h.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 1);
/// ```
///
/// # Thread safety
///
/// `PerCpu<T>` is `Send` iff `T: Send` (sending the handle sends every copy,
/// and the receiver drops them), and `Sync` iff `T: Send + Sync`, as
/// `thread_local::ThreadLocal<T>` is. `Sync` alone would do for today's
/// `&self` methods, which only hand out `&T`; requiring `Send` too reflects
/// what a per-CPU value is: each copy is used by whichever thread happens to
/// run on that CPU, i.e. it moves between threads, and it keeps room for
/// methods that hand a copy to the current CPU's thread. `Arc<PerCpu<T>>`
/// needs both anyway (the last clone drops the copies on any thread).
///
/// Because a thread can migrate right after [`PerCpu::current`] picked its
/// CPU, and several threads can run on one CPU over time, copies must be
/// safe to share: use atomics or locks inside `T`, not `Cell`s.
pub struct PerCpu<T> {
    /// The allocation: unit `cpu`'s copy is at `area.base + cpu ×
    /// area.stride`; freed (or cached) after the copies are dropped.
    area: Area,
    _owns: PhantomData<T>,
}

// SAFETY: a `PerCpu<T>` owns its `T` copies (like a `Box<[T]>`) plus an `Area`
// (allocator handle, which is `Send + Sync`; the copies' address, stride and
// offsets). Sending it sends the copies, so `T: Send` is exactly what is
// needed; the raw `base` pointer refers only to memory the handle owns, and
// the allocator it belongs to is thread-safe.
unsafe impl<T: Send> Send for PerCpu<T> {}

// SAFETY: through `&PerCpu<T>` any thread gets `&T` to any copy (`get`,
// `iter`, `current`), which needs `T: Sync`. `T: Send` is required as well
// for the reasons in the type's docs (the same bound as `ThreadLocal<T>`).
// No `&self` method mutates a copy or the handle.
unsafe impl<T: Send + Sync> Sync for PerCpu<T> {}

/// Bytes to allocate for a `T`: the core rejects size 0, so zero-sized types
/// take the smallest allocation.
fn size_for<T>() -> usize {
    mem::size_of::<T>().max(1)
}

/// Unit `cpu`'s copy (no bounds check).
#[inline]
fn slot<T>(base: NonNull<T>, stride: u32, cpu: usize) -> *mut T {
    base.as_ptr()
        .wrapping_byte_add(cpu.wrapping_mul(stride as usize))
}

/// Drops the first `len` copies if initialisation panics.
struct Filled<T> {
    base: NonNull<T>,
    stride: u32,
    len: usize,
}

impl<T> Drop for Filled<T> {
    fn drop(&mut self) {
        for cpu in 0..self.len {
            // SAFETY: copies `0..len` were written by `PerCpu::new_with` (fact
            // A: in bounds and aligned) and nothing else refers to them; each is
            // dropped once, after which the area is freed unread.
            unsafe { ptr::drop_in_place(slot(self.base, self.stride, cpu)) };
        }
    }
}

impl<T> PerCpu<T> {
    /// Allocate and initialise every unit's copy with `init(cpu)`.
    #[track_caller]
    pub(crate) fn new_with<F: FnMut(usize) -> T>(
        alloc: &PerCpuAllocator,
        mut init: F,
    ) -> Result<Self, Error> {
        let area = Area::new(alloc, size_for::<T>(), mem::align_of::<T>())?;
        let (base, stride, units) = (area.base.cast::<T>(), area.stride, area.units);
        let mut filled = Filled {
            base,
            stride,
            len: 0,
        };
        for cpu in 0..units as usize {
            let value = init(cpu);
            let copy = slot(base, stride, cpu);
            let size = mem::size_of::<T>();
            // SAFETY: fact A: unit `cpu`'s copy is inside the live, readable
            // and writable area (`size_of::<T>()` bytes fit) and aligned for
            // `T`. It holds no value yet (nothing to drop is overwritten) and
            // is unreferenced, so no other thread writes it; `value` is a
            // local, readable for its `size` bytes.
            unsafe {
                if copy_is_zero(ptr::from_ref(&value).cast(), size)
                    && copy_is_zero(copy.cast(), size)
                {
                    // The copy's bytes are the value's already (padding
                    // aside): writing would change nothing but touch the
                    // page. The copy now owns the value, so it is not
                    // dropped here.
                    mem::forget(value);
                } else {
                    copy.write(value);
                }
            }
            filled.len += 1;
        }
        mem::forget(filled);
        Ok(PerCpu {
            area,
            _owns: PhantomData,
        })
    }

    /// Allocate with every copy all-zero bytes.
    #[track_caller]
    pub(crate) fn new_zeroed(alloc: &PerCpuAllocator) -> Result<Self, Error>
    where
        T: Zeroable,
    {
        // Every copy is zeroed: all-zero bytes are a valid `T` (`Zeroable`).
        let area = Area::new(alloc, size_for::<T>(), mem::align_of::<T>())?;
        zero_units(area.base, area.stride, area.units.into(), size_for::<T>());
        Ok(PerCpu {
            area,
            _owns: PhantomData,
        })
    }

    /// Unit 0's copy.
    #[inline]
    fn base(&self) -> NonNull<T> {
        self.area.base.cast()
    }

    /// Number of copies: the allocator's units (one per possible CPU).
    pub fn units(&self) -> usize {
        self.area.units as usize
    }

    /// The allocator that owns the memory.
    pub fn allocator(&self) -> &PerCpuAllocator {
        self.area.allocator()
    }

    /// CPU `cpu`'s copy (`per_cpu_ptr(p, cpu)`).
    ///
    /// # Panics
    /// If `cpu >= self.units()`.
    #[inline]
    #[doc(alias = "per_cpu_ptr")]
    pub fn get(&self, cpu: usize) -> &T {
        assert!(
            cpu < self.area.units as usize,
            "CPU {cpu} out of range ({} units)",
            self.area.units
        );
        // SAFETY: fact A: the copy is in bounds, aligned, initialised (every
        // constructor initialises all units) and stays valid while `self` is
        // borrowed (the area is freed only in `Drop`, pages with live bytes
        // are never discarded: fact B). Only shared references are created
        // through `&self`.
        unsafe { &*slot(self.base(), self.area.stride, cpu) }
    }

    /// CPU `cpu`'s copy, mutably.
    ///
    /// # Panics
    /// If `cpu >= self.units()`.
    #[inline]
    pub fn get_mut(&mut self, cpu: usize) -> &mut T {
        assert!(
            cpu < self.area.units as usize,
            "CPU {cpu} out of range ({} units)",
            self.area.units
        );
        // SAFETY: as in `get`; `&mut self` guarantees no other reference to
        // any copy exists for the returned lifetime.
        unsafe { &mut *slot(self.base(), self.area.stride, cpu) }
    }

    /// The copy of the CPU the calling thread runs on now (`this_cpu_ptr`).
    ///
    /// The thread may migrate right after the CPU was read, and other threads
    /// may use the same copy at the same time: `T` must be safe to share
    /// (atomics, locks), which `&T` enforces.
    #[inline]
    #[doc(alias = "this_cpu_ptr")]
    pub fn current(&self) -> &T {
        self.get(current_cpu())
    }

    /// Every copy, in CPU order (`for_each_possible_cpu`); `.enumerate()`
    /// gives each copy's CPU.
    #[doc(alias = "for_each_possible_cpu")]
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            base: self.base(),
            stride: self.area.stride,
            cpus: 0..self.area.units as usize,
            _copies: PhantomData,
        }
    }

    /// Every copy mutably, in CPU order.
    pub fn iter_mut(&mut self) -> IterMut<'_, T> {
        IterMut {
            base: self.base(),
            stride: self.area.stride,
            cpus: 0..self.area.units as usize,
            _copies: PhantomData,
        }
    }

    /// Move the copies out, in CPU order, and give the memory back (as a
    /// drop of the handle does, without dropping the copies): the values
    /// of a per-CPU accumulator once its work is done.
    ///
    /// ```
    /// let alloc = pcpu::PerCpuAllocator::builder().build().unwrap();
    /// let names = alloc.per_cpu(|cpu| format!("cpu{cpu}")).unwrap();
    /// let v: Vec<String> = names.into_vec();
    /// assert_eq!(v[0], "cpu0");
    /// assert_eq!(v.len(), alloc.units());
    /// ```
    pub fn into_vec(self) -> Vec<T> {
        let units = self.units();
        // Allocated first: should it fail, `self` drops as usual.
        let mut out = Vec::with_capacity(units);
        let this = mem::ManuallyDrop::new(self);
        let (base, stride) = (this.base(), this.area.stride);
        for cpu in 0..units {
            // SAFETY: fact A: copy `cpu` is in bounds of the live area,
            // aligned and initialised (every constructor initialises all
            // units), and owning `self` shows nothing refers to it. Each copy
            // is read once, and `ManuallyDrop` keeps `PerCpu::drop` from
            // dropping it again; `push` cannot panic (the capacity is there).
            out.push(unsafe { ptr::read(slot(base, stride, cpu)) });
        }
        // SAFETY: `this` is never used or dropped again, so the area moves
        // out of it exactly once (the other field is a `PhantomData`).
        let mut area = unsafe { ptr::read(&this.area) };
        // The copies moved out: the area may serve the next allocation of a
        // `T` on this thread, as in `Drop` (else its drop frees it).
        area.recycle(size_for::<T>(), mem::align_of::<T>());
        out
    }
}

/// The copies of a [`PerCpu<T>`], in CPU order: [`PerCpu::iter`].
pub struct Iter<'a, T> {
    base: NonNull<T>,
    stride: u32,
    /// The CPUs whose copies are still to come.
    cpus: Range<usize>,
    _copies: PhantomData<&'a T>,
}

/// The copies of a [`PerCpu<T>`], mutably, in CPU order:
/// [`PerCpu::iter_mut`].
pub struct IterMut<'a, T> {
    base: NonNull<T>,
    stride: u32,
    /// The CPUs whose copies are still to come.
    cpus: Range<usize>,
    _copies: PhantomData<&'a mut T>,
}

// SAFETY: an `Iter` hands out `&T`s to copies owned by a `PerCpu<T>` that is
// borrowed for `'a`, like a `&'a [T]`'s iterator: sending or sharing it needs
// `T: Sync` and nothing more.
unsafe impl<T: Sync> Send for Iter<'_, T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Sync> Sync for Iter<'_, T> {}
// SAFETY: an `IterMut` hands out `&mut T`s to distinct copies, like a
// `&'a mut [T]`'s iterator: sending it needs `T: Send`, sharing it
// `T: Sync` (it hands out nothing through `&self`).
unsafe impl<T: Send> Send for IterMut<'_, T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Sync> Sync for IterMut<'_, T> {}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        let cpu = self.cpus.next()?;
        // SAFETY: as in `PerCpu::get`: `cpu` is below the handle's units, so
        // the copy is in bounds, aligned and initialised, and it stays valid
        // for `'a`, the handle's shared borrow.
        Some(unsafe { &*slot(self.base, self.stride, cpu) })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.cpus.size_hint()
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        let cpu = self.cpus.next_back()?;
        // SAFETY: as in `next`.
        Some(unsafe { &*slot(self.base, self.stride, cpu) })
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}
impl<T> FusedIterator for Iter<'_, T> {}

impl<T> Clone for Iter<'_, T> {
    fn clone(&self) -> Self {
        Iter {
            base: self.base,
            stride: self.stride,
            cpus: self.cpus.clone(),
            _copies: PhantomData,
        }
    }
}

impl<'a, T> Iterator for IterMut<'a, T> {
    type Item = &'a mut T;

    #[inline]
    fn next(&mut self) -> Option<&'a mut T> {
        let cpu = self.cpus.next()?;
        // SAFETY: as in `PerCpu::get_mut`: the copy is valid and initialised,
        // and the handle is borrowed mutably for `'a`. Each CPU is handed
        // out once (`cpus` only shrinks), and distinct CPUs' copies are
        // `stride` (a whole unit) apart, so the `&mut T`s never overlap.
        Some(unsafe { &mut *slot(self.base, self.stride, cpu) })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.cpus.size_hint()
    }
}

impl<T> DoubleEndedIterator for IterMut<'_, T> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        let cpu = self.cpus.next_back()?;
        // SAFETY: as in `next`.
        Some(unsafe { &mut *slot(self.base, self.stride, cpu) })
    }
}

impl<T> ExactSizeIterator for IterMut<'_, T> {}
impl<T> FusedIterator for IterMut<'_, T> {}

impl<'a, T> IntoIterator for &'a PerCpu<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut PerCpu<T> {
    type Item = &'a mut T;
    type IntoIter = IterMut<'a, T>;

    fn into_iter(self) -> IterMut<'a, T> {
        self.iter_mut()
    }
}

impl<T: fmt::Debug> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<T> fmt::Debug for IterMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IterMut")
            .field("remaining", &self.cpus.len())
            .finish_non_exhaustive()
    }
}

impl PerCpu<AtomicI64> {
    /// [`rseq::add_fold`] on this handle's copies: on the current CPU, add `n`
    /// to its copy in one restartable sequence, or empty the copy and return
    /// the value when it reaches `±batch` (at least 1). See [`AddFold`] for
    /// the outcomes and `rseq::add_fold` for the rule every writer of the
    /// copies must then follow (only this method may write them while it can
    /// run; `&mut` access is fine).
    #[inline]
    pub(crate) fn rseq_add_fold(&self, n: i64, batch: i64) -> AddFold {
        let slots = Slots {
            base: self.base(),
            stride: self.area.stride,
            units: self.area.units.into(),
        };
        // SAFETY: `rseq::add_fold` needs, for every `cpu < units`, an
        // initialised, aligned `AtomicI64` at `base + cpu × stride`, valid
        // for the call, with no `&mut` to it. Fact A: each copy is at
        // `slot(base, stride, cpu)`, in bounds of the live area and aligned
        // for `AtomicI64`; every constructor initialised all `units` copies;
        // `&self` keeps the area allocated (freed only in `Drop`) and its
        // pages populated (fact B) for the call, and rules out a `&mut` from
        // `get_mut` / `iter_mut` meanwhile.
        unsafe { rseq::add_fold(slots, n, batch) }
    }
}

/// Copies `next..units` of a handle being dropped: dropped one by one
/// ([`DropRest::drop_next`]), and by its own `Drop` if one of their
/// destructors panics, so that the rest are still dropped during the unwind,
/// as a slice's elements are (a second panic aborts).
struct DropRest<T> {
    base: NonNull<T>,
    stride: u32,
    next: usize,
    units: usize,
}

impl<T> DropRest<T> {
    /// Drop the next copy; false when none is left.
    fn drop_next(&mut self) -> bool {
        if self.next >= self.units {
            return false;
        }
        let cpu = self.next;
        // Counted before the call: a panicking destructor has dropped its
        // copy as far as it goes, and is not called again.
        self.next += 1;
        // SAFETY: `DropRest` is built only in `PerCpu::drop`, over the
        // handle's copies, every one initialised (constructors); each index
        // is taken once, so each copy is dropped exactly once, and `&mut
        // self` of the handle shows no reference to it remains. The area is
        // freed afterwards (field drop), unread.
        unsafe { ptr::drop_in_place(slot(self.base, self.stride, cpu)) };
        true
    }
}

impl<T> Drop for DropRest<T> {
    fn drop(&mut self) {
        while self.drop_next() {}
    }
}

impl<T> Drop for PerCpu<T> {
    fn drop(&mut self) {
        if mem::needs_drop::<T>() {
            let mut rest = DropRest {
                base: self.base(),
                stride: self.area.stride,
                next: 0,
                units: self.area.units as usize,
            };
            // Here, not in `rest`'s `Drop`: a panic unwinds through `rest`,
            // whose `Drop` then drops the copies after the one that panicked.
            while rest.drop_next() {}
        }
        // The copies are gone: the area may serve the next allocation of a
        // `T` on this thread (else the field's drop frees it).
        self.area.recycle(size_for::<T>(), mem::align_of::<T>());
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
