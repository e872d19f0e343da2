//! [`Magazine`]: a bounded stack of freed areas of one request, kept
//! allocated in front of an [`Allocator`] so that an alloc+free pair of that
//! request skips the bookkeeping (the slab allocators' per-CPU "magazines").
//!
//! Linux's per-CPU allocator has no such cache: every `free_percpu` goes to
//! the bitmap, so objects are placed exactly as [`Allocator::alloc`] would.
//! A magazine trades that for speed: an area in a magazine stays allocated
//! (it counts as a live allocation and keeps its page populated and its
//! chunk alive) until it is handed out again or the magazine is drained. An
//! embedder keeps one magazine per CPU or thread and size it serves, and
//! drains them before balancing when it wants the memory back (the `pcpu`
//! crate's thread caches do the same with owned handles).
//!
//! ```
//! use pcpu_core::{Allocator, AllocFlags, Geometry, Magazine, Policy, SimBackend};
//!
//! let mut a = Allocator::new(Geometry::simple(4, 16).unwrap(), Policy::default());
//! let mut b = SimBackend::default();
//! let mut mag = Magazine::new(a.request(8, 8).unwrap(), 16);
//! let x = a.alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL).unwrap();
//! a.free_cached(&mut mag, x).unwrap(); // kept, still allocated
//! assert_eq!(mag.len(), 1);
//! let y = a.alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL).unwrap();
//! assert_eq!(x, y); // served from the magazine
//! a.free_cached(&mut mag, y).unwrap();
//! a.drain(&mut mag); // now really freed
//! assert_eq!(a.stats().nr_cur_alloc, 0);
//! ```

use alloc::vec::Vec;

use crate::allocator::{AllocFlags, Allocation, Allocator, Request};
use crate::backend::Backend;
use crate::bitmap::Bitmap;
use crate::chunk::Chunk;
use crate::error::{AllocError, FreeError, ProtocolError};
use crate::slots::Entry;
use crate::MIN_ALLOC_SIZE;

/// Freed areas of one [`Request`], kept allocated for reuse (last in, first
/// out).
///
/// # Invariants
/// Every area is a live allocation of the allocator the magazine is used
/// with, of `request().size` bytes, owned by no one else, and appears once;
/// there are at most `capacity()` of them. The allocator marks the areas
/// magazines hold (checked by `check_invariants`), so a second magazine and
/// [`Allocator::free`] refuse them with [`FreeError::Cached`]. `Clone` is
/// for snapshots of a magazine together with its allocator; two clones used
/// with one allocator share their areas, each going to whichever hands it
/// out or drains it first (the other skips it).
///
/// While it holds areas a magazine belongs to their allocator (and its
/// clones): another allocator does not take from it or drain it, and
/// refuses to free into it ([`FreeError::ForeignMagazine`]). Empty, it may
/// serve any allocator.
#[derive(Clone, Debug)]
pub struct Magazine {
    req: Request,
    cap: usize,
    areas: Vec<Allocation>,
    /// The `instance` of the allocator whose areas it holds (meaningful
    /// only while `areas` is not empty).
    owner: usize,
}

impl Magazine {
    /// An empty magazine for `req` holding at most `cap` areas (0: every free
    /// goes straight to the allocator).
    pub fn new(req: Request, cap: usize) -> Magazine {
        Magazine {
            req,
            cap,
            // Grown on demand: a large `cap` costs nothing until areas come.
            areas: Vec::new(),
            owner: 0,
        }
    }

    /// Does it hold areas of an allocator other than `a` (or a clone of
    /// `a`)?
    #[inline]
    fn foreign_to(&self, a: &Allocator) -> bool {
        !self.areas.is_empty() && self.owner != a.instance
    }

    /// The request it serves.
    pub fn request(&self) -> Request {
        self.req
    }

    /// Areas held.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    /// Holds no area?
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Most areas held.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The areas held, oldest first.
    pub fn areas(&self) -> &[Allocation] {
        &self.areas
    }
}

// === impl Allocator: magazines ===

impl Allocator {
    /// Allocate `mag`'s request: the area freed last into `mag` if it holds
    /// one (no bookkeeping, no backend call; its bytes are as the previous
    /// owner left them), else [`Allocator::alloc`]'s result (to be zeroed as
    /// usual).
    ///
    /// A magazine holding another allocator's areas is left alone: the
    /// request goes to [`Allocator::alloc`].
    ///
    /// # Errors
    /// As [`Allocator::alloc`], only when `mag` serves none.
    #[inline]
    pub fn alloc_cached<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        mag: &mut Magazine,
        flags: AllocFlags,
    ) -> Result<Allocation, AllocError> {
        if mag.foreign_to(self) {
            return self.alloc(backend, mag.req.size, mag.req.align, flags);
        }
        while let Some(area) = mag.areas.pop() {
            // Unmarked: a clone of this magazine took it first.
            if self.take_cached(area) {
                return Ok(area);
            }
        }
        self.alloc(backend, mag.req.size, mag.req.align, flags)
    }

    /// Free `area` into `mag` instead of the allocator: it stays allocated
    /// and serves `mag`'s next request. A full magazine first frees its older
    /// half to the allocator (which may schedule the balance work).
    ///
    /// # Errors
    /// The area must be a live allocation of `mag`'s size and not held by a
    /// magazine: [`FreeError::UnknownChunk`] and [`FreeError::NotAllocated`]
    /// as for [`Allocator::free`], [`FreeError::Cached`] for an area that
    /// this or another magazine holds, [`FreeError::WrongSize`] for an area
    /// of another size, [`FreeError::ForeignMagazine`] when `mag` holds
    /// another allocator's areas. Nothing changes then.
    #[inline]
    pub fn free_cached(&mut self, mag: &mut Magazine, area: Allocation) -> Result<(), FreeError> {
        let (chunk, offset) = (area.chunk, area.offset);
        if mag.foreign_to(self) {
            return Err(FreeError::ForeignMagazine { chunk, offset });
        }
        let size = self.allocation_size(area.chunk, area.offset)?;
        if size != mag.req.size {
            return Err(FreeError::WrongSize {
                chunk,
                offset,
                size,
                expected: mag.req.size,
            });
        }
        if self.is_cached(area) {
            // In this magazine or another one.
            return Err(FreeError::Cached { chunk, offset });
        }
        if mag.areas.len() >= mag.cap {
            self.spill(mag);
            if mag.cap == 0 {
                self.free(chunk, offset)?;
                return Ok(());
            }
        }
        let area = Allocation { size, ..area };
        self.mark_cached(area);
        mag.areas.push(area);
        mag.owner = self.instance;
        Ok(())
    }

    /// Is `area` held by a magazine?
    #[inline]
    pub(crate) fn is_cached(&self, area: Allocation) -> bool {
        self.chunk(area.chunk)
            .is_some_and(|c| c.is_cached_at(area.offset / MIN_ALLOC_SIZE))
    }

    /// Is `area` a live allocation of its size that no magazine holds: one
    /// its caller may give back? If not, why.
    pub(crate) fn own_area(&self, area: Allocation) -> Result<(), ProtocolError> {
        let size = self
            .allocation_size(area.chunk, area.offset)
            .map_err(|cause| ProtocolError::NotLive { area, cause })?;
        if size != area.size {
            return Err(ProtocolError::WrongSize { area, size });
        }
        if self.is_cached(area) {
            let cause = FreeError::Cached {
                chunk: area.chunk,
                offset: area.offset,
            };
            return Err(ProtocolError::NotLive { area, cause });
        }
        Ok(())
    }

    /// Mark `area`, a live allocation, as held by a magazine.
    #[inline]
    fn mark_cached(&mut self, area: Allocation) {
        let bit = area.offset / MIN_ALLOC_SIZE;
        let c = self.cm(area.chunk.0);
        let map_bits = c.map_bits as usize;
        c.cached
            .get_or_insert_with(|| Bitmap::new(map_bits))
            .set(bit);
    }

    /// Clear `area`'s mark, if it has one: whether it had.
    #[inline]
    fn take_cached(&mut self, area: Allocation) -> bool {
        let bit = area.offset / MIN_ALLOC_SIZE;
        let chunk = self
            .arena
            .get_mut(area.chunk.0 as usize)
            .and_then(Entry::chunk_mut);
        match chunk {
            Some(c) if c.is_cached_at(bit) => {
                c.cached.as_mut().expect("marked").clear(bit);
                true
            }
            _ => false,
        }
    }

    /// Free the older half of a full magazine.
    #[cold]
    fn spill(&mut self, mag: &mut Magazine) {
        let older = mag.areas.len() - mag.cap / 2;
        let _ = self.free_oldest(mag, older);
    }

    /// Free every area `mag` holds, oldest first. Returns how many (areas a
    /// clone of `mag` took first are only dropped). A magazine holding
    /// another allocator's areas is left as it is (0).
    pub fn drain(&mut self, mag: &mut Magazine) -> usize {
        if mag.foreign_to(self) {
            return 0;
        }
        let n = mag.areas.len();
        self.free_oldest(mag, n)
    }

    /// Free the `n` oldest areas of `mag`; returns how many it freed.
    fn free_oldest(&mut self, mag: &mut Magazine, n: usize) -> usize {
        let mut freed = 0;
        for a in mag.areas.drain(..n) {
            // Unmarked: a clone of this magazine took it first.
            if self.take_cached(a) {
                let r = self.free(a.chunk, a.offset);
                debug_assert!(r.is_ok(), "a magazine held a dead area: {r:?}");
                freed += 1;
            }
        }
        freed
    }
}

impl Chunk {
    /// Is the allocation starting at `bit` held by a magazine?
    #[inline]
    pub(crate) fn is_cached_at(&self, bit: usize) -> bool {
        self.cached
            .as_ref()
            .is_some_and(|m| bit < m.len() && m.test(bit))
    }
}
