//! The page backend: what the allocator asks of the memory underneath
//! (percpu-vm.c's "functions that should be implemented").
//!
//! # Preconditions the allocator guarantees
//! - `create_chunk(id)` is called with an id no live chunk has; a chunk is
//!   created with no page populated.
//! - `populate(id, pages)` / `depopulate(id, pages)`: `pages` is non-empty,
//!   within `0..nr_pages`, and entirely unpopulated (populate) or entirely
//!   populated (depopulate). Depopulated pages never hold a live allocation.
//! - `flush_tlb(id, pages)` follows depopulations of a live chunk (batched
//!   per chunk), never those that precede `destroy_chunk`.
//! - `destroy_chunk(id)` is preceded by the depopulation of every populated
//!   page, and the id is not used again until a new `create_chunk`.
//! - The first and reserved chunks (setup) never reach the backend.

use core::fmt;
use core::ops::Range;

use crate::ChunkId;

/// A backend failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The memory could not be obtained.
    OutOfMemory,
    /// An operating-system error number.
    Os(i32),
    /// A failure injected by a test backend.
    Injected,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::OutOfMemory => f.write_str("out of memory"),
            BackendError::Os(e) => write!(f, "os error {e}"),
            BackendError::Injected => f.write_str("injected failure"),
        }
    }
}

impl core::error::Error for BackendError {}

/// Page operations for chunks created after setup.
pub trait Backend {
    /// Reserve address space (or whatever backs it) for chunk `id` of
    /// `nr_pages` pages per unit, nothing populated.
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError>;
    /// Release chunk `id`, which holds no allocation. Its pages were
    /// depopulated first, except those whose [`Backend::depopulate`] failed
    /// (as `pcpu_balance_free` does, the chunk is destroyed anyway): release
    /// whatever still backs them too.
    fn destroy_chunk(&mut self, id: ChunkId);
    /// Back `pages` of chunk `id` with memory in every unit. On error,
    /// none of `pages` may be left populated in any unit (roll back what the
    /// call did): the allocator counts them unpopulated and populates them
    /// again before use.
    fn populate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError>;
    /// Return `pages` of chunk `id` in every unit. On error the allocator
    /// keeps counting the pages populated and places objects on them without
    /// populating them again, so return an error only when every page is
    /// still backed in every unit. A backend that gave back part of the range
    /// and cannot back it again must report `Ok` (and count the failure
    /// itself), as the `pcpu` crate does: the pages are then populated again
    /// before use. (Before a chunk is destroyed an error changes nothing:
    /// [`Backend::destroy_chunk`] releases what still backs the pages.)
    fn depopulate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError>;
    /// Batched TLB flush after depopulating `pages` of a live chunk
    /// (`pcpu_post_unmap_tlb_flush`). Default: nothing.
    fn flush_tlb(&mut self, id: ChunkId, pages: Range<usize>) {
        let _ = (id, pages);
    }
}

/// A backend that touches no memory and counts pages: for replay, tests and
/// kernels that manage memory elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimBackend {
    /// Chunks created.
    pub created: u64,
    /// Chunks destroyed.
    pub destroyed: u64,
    /// Pages (per unit) populated, over the backend's life.
    pub populated_pages: u64,
    /// Pages (per unit) depopulated, over the backend's life.
    pub depopulated_pages: u64,
    /// Batched TLB flushes.
    pub tlb_flushes: u64,
}

impl Backend for SimBackend {
    fn create_chunk(&mut self, _id: ChunkId, _nr_pages: usize) -> Result<(), BackendError> {
        self.created += 1;
        Ok(())
    }
    fn destroy_chunk(&mut self, _id: ChunkId) {
        self.destroyed += 1;
    }
    fn populate(&mut self, _id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        self.populated_pages += pages.len() as u64;
        Ok(())
    }
    fn depopulate(&mut self, _id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        self.depopulated_pages += pages.len() as u64;
        Ok(())
    }
    fn flush_tlb(&mut self, _id: ChunkId, _pages: Range<usize>) {
        self.tlb_flushes += 1;
    }
}

/// A [`SimBackend`] that fails on demand, to prove rollback.
#[derive(Clone, Debug, Default)]
pub struct FailingBackend {
    /// The counting backend underneath.
    pub inner: SimBackend,
    /// Fail this many upcoming `create_chunk` calls.
    pub fail_create: u32,
    /// Fail this many upcoming `populate` calls.
    pub fail_populate: u32,
    /// Fail this many upcoming `depopulate` calls.
    pub fail_depopulate: u32,
}

fn take(n: &mut u32) -> bool {
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

impl Backend for FailingBackend {
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError> {
        if take(&mut self.fail_create) {
            return Err(BackendError::Injected);
        }
        self.inner.create_chunk(id, nr_pages)
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        self.inner.destroy_chunk(id)
    }
    fn populate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        if take(&mut self.fail_populate) {
            return Err(BackendError::Injected);
        }
        self.inner.populate(id, pages)
    }
    fn depopulate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        if take(&mut self.fail_depopulate) {
            return Err(BackendError::Injected);
        }
        self.inner.depopulate(id, pages)
    }
    fn flush_tlb(&mut self, id: ChunkId, pages: Range<usize>) {
        self.inner.flush_tlb(id, pages)
    }
}
