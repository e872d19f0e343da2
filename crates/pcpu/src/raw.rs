//! Untyped allocations: [`Area`], a live allocation owned by a typed handle
//! (freed on drop), and [`RawPerCpu`], a plain-data handle for FFI-style use
//! (`__alloc_percpu` / `free_percpu`), freed explicitly and checked.

use std::ptr::NonNull;

use pcpu_core::ChunkId;

use crate::cache::{self, Entry};
use crate::error::Error;
use crate::inner::Placed;
use crate::PerCpuAllocator;

// === Area ===

/// A live allocation owned by a handle: freed when dropped. Kept small (32
/// bytes): typed handles embed it.
///
/// # Invariants
/// `[offset, offset + size)` of chunk `chunk` is live in the core from
/// construction to `Drop` (fact A of the `handle` module); unit `u`'s copy
/// starts at `base + u × stride` for `u < units` (the chunk mapping's
/// `UnitLayout::addr(u, offset)`); `alloc` is the allocator it belongs to. The area
/// holds no reference count on that mapping: the allocator (kept alive by
/// `alloc`) unmaps a chunk's region only when it destroys the chunk, which it
/// does only once no allocation is left in it. A dropped area of up to 256
/// bytes may go to the thread's cache instead of being freed
/// ([`Area::recycle`]), unless it was allocated inside a lifetime scope
/// under class placement (`recyclable` false: the cache would hand the
/// class's place to an object of another lifetime).
///
/// `repr(C)`, its fields in the order of a cache [`Entry`]'s: moving an area
/// to and from the thread cache then copies the fields as they lie. In the
/// compiler's own order the alloc+drop pair served from the cache read some
/// of them back, 8 bytes at once, from two smaller writes made just
/// before, which the processor cannot forward: 12% slower
/// (BENCHMARKS.md, "The cached pair and the layout of an area").
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Area {
    /// `None` only once [`Area::recycle`] gave the area to the thread cache.
    alloc: Option<PerCpuAllocator>,
    /// Unit 0's copy: `layout.addr(0, offset)` of the chunk's mapping.
    pub(crate) base: NonNull<u8>,
    /// Bytes between two units' copies (the mapping's unit size).
    pub(crate) stride: u32,
    /// Fits: unit sizes are below 4 GiB (`Config`).
    offset: u32,
    chunk: ChunkId,
    /// Number of units (at most 65535: `Config`).
    pub(crate) units: u16,
    /// Allocated outside any lifetime scope, or by a policy without class
    /// placement: may go to the thread cache.
    recyclable: bool,
}

impl Area {
    /// Allocate `size` bytes at `align` in every unit, not zeroed: a fresh
    /// allocation, or an area of the same request from this thread's cache
    /// (holding what its previous owner left).
    #[track_caller]
    pub(crate) fn new(alloc: &PerCpuAllocator, size: usize, align: usize) -> Result<Area, Error> {
        // Read once: a hinted request neither comes from the cache nor goes
        // back to it.
        let hinted = cache::hinted(alloc);
        if hinted || !cache::serves(size) {
            let placed = alloc.inner().alloc(size, align)?;
            return Ok(Area::from_placed(alloc, placed, !hinted));
        }
        if let Some(e) = cache::take(alloc, size, align) {
            return Ok(Area::from_entry(e));
        }
        // A miss: refill with a few neighbours in one go, so that this
        // thread's areas do not share cache lines with another thread's
        // (`cache::refill_len`). The first is returned, the others cached
        // with the second on top.
        // Under class placement, a thread's first request of this size and
        // alignment takes one area: the core then sees a thread that
        // allocates one object as one allocation (the long-lived
        // prediction learns whether its call site's threads go on), and
        // the next miss refills (`cache::first_miss`).
        let extra = if alloc.inner().config.policy.class_placement
            && cache::first_miss(alloc, size, align)
        {
            0
        } else {
            cache::refill_len(alloc, size) - 1
        };
        let (first, extras) = alloc.inner().alloc_batch(size, align, extra)?;
        for p in extras.into_iter().rev() {
            let mut extra = Area::from_placed(alloc, p, true);
            extra.recycle(size, align); // freed instead if the cache refuses
        }
        Ok(Area::from_placed(alloc, first, true))
    }

    /// The area of a fresh allocation of `alloc`; `recyclable` unless it was
    /// hinted ([`cache::hinted`]).
    fn from_placed(alloc: &PerCpuAllocator, placed: Placed, recyclable: bool) -> Area {
        let (base, stride, units) = placed.copies();
        Area {
            alloc: Some(alloc.clone()),
            base,
            stride,
            units: u16::try_from(units).expect("at most 65535 units (Config)"),
            chunk: placed.chunk,
            offset: u32::try_from(placed.offset).expect("unit offsets fit in u32"),
            recyclable,
        }
    }

    /// The area of a cache entry (its allocator handle moves along: no
    /// reference count changes on the cached path).
    fn from_entry(e: Entry) -> Area {
        Area {
            alloc: Some(e.alloc),
            base: e.base,
            stride: e.stride,
            units: e.units,
            chunk: e.chunk,
            offset: e.offset,
            // Cached areas come from (and go to) unscoped requests only.
            recyclable: true,
        }
    }

    /// The owning allocator.
    pub(crate) fn allocator(&self) -> &PerCpuAllocator {
        self.alloc
            .as_ref()
            .expect("pcpu: an area is used only before it is recycled")
    }

    /// The owning allocator, unless the area was recycled.
    pub(crate) fn alloc_if_live(&self) -> Option<&PerCpuAllocator> {
        self.alloc.as_ref()
    }

    /// The owner is done with the area, which it allocated as `(size,
    /// align)`: keep it in this thread's cache when that is allowed and has
    /// room. Otherwise (and if not called) `Drop` frees it.
    pub(crate) fn recycle(&mut self, size: usize, align: usize) {
        if !self.recyclable || !cache::keeps(size) {
            return;
        }
        cache::put(self, size, align);
    }

    /// The cache entry of this area, leaving it without its allocator (so
    /// `Drop` frees nothing): [`cache::put`] builds it where it keeps it.
    pub(crate) fn take_entry(&mut self) -> Option<Entry> {
        Some(Entry {
            alloc: self.alloc.take()?,
            base: self.base,
            stride: self.stride,
            offset: self.offset,
            chunk: self.chunk,
            units: self.units,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        if let Some(alloc) = &self.alloc {
            // Only a bug could make this fail (nothing else can free an
            // area a handle owns): stop rather than go on with memory that
            // may be handed out twice.
            if let Err(e) = alloc.inner().free(self.chunk, self.offset as usize, None) {
                panic!("pcpu: freeing an owned area failed: {e}");
            }
        }
    }
}

// === RawPerCpu ===

/// An untyped per-CPU allocation: plain data, `Copy`, freed explicitly with
/// [`PerCpuAllocator::free_raw`] (like the kernel's `void __percpu *`).
///
/// It names `size` bytes at `offset` in every unit of `chunk`, plus a ticket
/// unique to this allocation and the allocator's identity, so that
/// [`PerCpuAllocator::ptr`] and [`PerCpuAllocator::free_raw`] refuse a
/// handle that was freed already (double free), also when its place was
/// handed out again since, to a raw allocation or a typed one, and a handle
/// of another allocator. (The kernel cannot tell a stale `void __percpu *`
/// from a new one at the same address; the allocator keeps a table of its
/// live raw allocations to do so.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawPerCpu {
    chunk: ChunkId,
    offset: usize,
    size: usize,
    ticket: u64,
    owner: u64,
}

impl RawPerCpu {
    /// The chunk.
    pub fn chunk(&self) -> ChunkId {
        self.chunk
    }
    /// Byte offset in each unit of the chunk.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Size in bytes (the request rounded up to a multiple of 4).
    pub fn size(&self) -> usize {
        self.size
    }
}

impl PerCpuAllocator {
    /// Allocate `size` bytes aligned to `align` in every unit, zeroed
    /// (`__alloc_percpu(size, align)`).
    ///
    /// ```
    /// let alloc = pcpu::PerCpuAllocator::builder().background_balance(false).build().unwrap();
    /// let raw = alloc.alloc_raw(24, 8).unwrap();
    /// let p = alloc.ptr(raw, 0).unwrap();
    /// // SAFETY: `raw` is live; `p` points to 24 writable bytes of unit 0.
    /// unsafe { p.as_ptr().write(7) };
    /// assert_eq!(alloc.free_raw(raw).unwrap(), 24);
    /// assert!(alloc.free_raw(raw).is_err()); // double free detected
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSize`] (0 or above 32 KiB), [`Error::InvalidAlign`]
    /// (not a power of two, or above the page size), [`Error::Map`] when
    /// memory cannot be mapped or populated.
    #[doc(alias = "__alloc_percpu")]
    #[track_caller]
    pub fn alloc_raw(&self, size: usize, align: usize) -> Result<RawPerCpu, Error> {
        let placed = self.inner().alloc(size, align)?;
        placed.zero();
        let ticket = self.inner().register_raw(placed.chunk, placed.offset);
        Ok(RawPerCpu {
            chunk: placed.chunk,
            offset: placed.offset,
            size: placed.size,
            ticket,
            owner: self.inner().id,
        })
    }

    /// Address of `raw`'s copy for CPU `cpu` (`per_cpu_ptr`), checked.
    ///
    /// The pointer is valid for reads and writes of `raw.size()` bytes, aligned
    /// as requested, until `raw` is freed or the allocator is dropped (its
    /// last handle: a raw allocation does not keep it alive, and dropping it
    /// unmaps every chunk); using it afterwards is undefined behaviour (the
    /// page may be discarded or unmapped). Computing it is always safe.
    ///
    /// # Errors
    /// [`Error::BadCpu`] if `cpu >= units()`, [`Error::ForeignHandle`],
    /// [`Error::NotLive`] if `raw` is not live (freed already).
    #[doc(alias = "per_cpu_ptr")]
    pub fn ptr(&self, raw: RawPerCpu, cpu: usize) -> Result<NonNull<u8>, Error> {
        let units = self.units();
        if cpu >= units {
            return Err(Error::BadCpu { cpu, units });
        }
        self.check_owner(raw)?;
        let region = self
            .inner()
            .lookup_raw(raw.chunk, raw.offset, raw.ticket, raw.size)?;
        Ok(region.addr(cpu, raw.offset))
    }

    /// Free `raw` (`free_percpu`), returning its size. Any pointer obtained
    /// from it must not be used any more.
    ///
    /// # Errors
    /// [`Error::NotLive`] for a handle that is not live: freed already (a
    /// double free, or a copy of it was freed), whatever was allocated at
    /// its place since. [`Error::ForeignHandle`] for another allocator's
    /// handle. Nothing is changed then.
    #[doc(alias = "free_percpu")]
    pub fn free_raw(&self, raw: RawPerCpu) -> Result<usize, Error> {
        self.check_owner(raw)?;
        self.inner().free(raw.chunk, raw.offset, Some(raw.ticket))
    }

    fn check_owner(&self, raw: RawPerCpu) -> Result<(), Error> {
        if raw.owner == self.inner().id {
            Ok(())
        } else {
            Err(Error::ForeignHandle)
        }
    }
}
