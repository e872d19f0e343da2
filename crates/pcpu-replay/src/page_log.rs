//! The replay's backend: our allocator's page operations, counted, checked
//! for re-population, and optionally logged.

use pcpu_core::{Backend, BackendError, ChunkId, SimBackend};

use crate::refaults::Refaults;

/// What a [`PageOp`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageOpKind {
    /// A chunk was created (no page populated).
    CreateChunk,
    /// A chunk was destroyed (its id may be reused afterwards).
    DestroyChunk,
    /// Pages were populated.
    Populate,
    /// Pages were depopulated.
    Depopulate,
}

/// One operation of our allocator on its backend, logged when
/// [`ReplayConfig::page_log`](crate::ReplayConfig::page_log) is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageOp {
    /// Records fed so far, this one included (1-based index of the record
    /// whose replay did the operation).
    pub event: u64,
    /// Balance runs started so far (the run doing it, when `in_balance`).
    pub balance_run: u64,
    /// Done by a balance run (else by an allocation populating its pages).
    pub in_balance: bool,
    /// What was done.
    pub kind: PageOpKind,
    /// Our chunk id (ids are reused after `DestroyChunk`).
    pub chunk: u32,
    /// Pages per unit (empty for chunk creation and destruction).
    pub pages: std::ops::Range<u32>,
}

/// The replay's backend: counts pages like [`SimBackend`] and optionally
/// logs every operation.
#[derive(Debug, Default)]
pub(crate) struct LogBackend {
    pub(crate) sim: SimBackend,
    /// Pages populated again after a depopulation (ours).
    pub(crate) refaults: Refaults,
    pub(crate) log: Option<Vec<PageOp>>,
    pub(crate) event: u64,
    pub(crate) run: u64,
    pub(crate) in_balance: bool,
}

impl LogBackend {
    fn push(&mut self, kind: PageOpKind, id: ChunkId, pages: std::ops::Range<usize>) {
        if let Some(log) = &mut self.log {
            log.push(PageOp {
                event: self.event,
                balance_run: self.run,
                in_balance: self.in_balance,
                kind,
                chunk: id.0,
                pages: pages.start as u32..pages.end as u32,
            });
        }
    }
}

impl Backend for LogBackend {
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError> {
        self.sim.create_chunk(id, nr_pages)?;
        self.refaults.forget(id.0.into());
        self.push(PageOpKind::CreateChunk, id, 0..0);
        Ok(())
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        self.sim.destroy_chunk(id);
        self.push(PageOpKind::DestroyChunk, id, 0..0);
    }
    fn populate(&mut self, id: ChunkId, pages: std::ops::Range<usize>) -> Result<(), BackendError> {
        self.sim.populate(id, pages.clone())?;
        let p = pages.start as u32..pages.end as u32;
        self.refaults
            .populated(id.0.into(), p, self.run, self.event);
        self.push(PageOpKind::Populate, id, pages);
        Ok(())
    }
    fn depopulate(
        &mut self,
        id: ChunkId,
        pages: std::ops::Range<usize>,
    ) -> Result<(), BackendError> {
        self.sim.depopulate(id, pages.clone())?;
        let p = pages.start as u32..pages.end as u32;
        self.refaults
            .depopulated(id.0.into(), p, self.run, self.event);
        self.push(PageOpKind::Depopulate, id, pages);
        Ok(())
    }
    fn flush_tlb(&mut self, id: ChunkId, pages: std::ops::Range<usize>) {
        self.sim.flush_tlb(id, pages);
    }
}
