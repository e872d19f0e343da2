//! [`Stats`]: a snapshot of an allocator's figures.

/// A snapshot of an allocator's figures ([`PerCpuAllocator::stats`]).
///
/// [`PerCpuAllocator::stats`]: crate::PerCpuAllocator::stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The `/proc/meminfo` `Percpu:` figure in bytes: populated pages ×
    /// units × page size, the first chunk included.
    pub percpu_bytes: u64,
    /// Populated pages per unit, over all chunks (`pcpu_nr_populated`).
    pub populated_pages: usize,
    /// Populated pages holding no allocation, outside isolated chunks
    /// (`pcpu_nr_empty_pop_pages`).
    pub nr_empty_pop_pages: i32,
    /// Live chunks, the first chunk included.
    pub chunks: usize,
    /// Live allocations, the areas kept in thread caches included.
    pub live_allocations: u64,
    /// Of `live_allocations`, the areas kept for reuse in the calling
    /// thread's cache (other threads' caches are not visible).
    pub thread_cached: u64,
    /// Allocations over the allocator's life.
    pub total_allocations: u64,
    /// Frees over the allocator's life.
    pub total_frees: u64,
    /// Failed allocations (and populations rolled back).
    pub failed_allocations: u64,
    /// Completed balance runs (background and explicit).
    pub balance_runs: u64,
    /// Page operations of balance runs that failed.
    pub balance_failures: u64,
    /// Pages per unit populated by balance runs, over the allocator's life.
    pub balance_populated_pages: u64,
    /// Pages per unit depopulated by balance runs (reclaim and chunk
    /// destruction), over the allocator's life.
    pub balance_depopulated_pages: u64,
    /// Units (copies of every allocation).
    pub units: usize,
    /// Bytes per unit of a chunk.
    pub unit_size: usize,
    /// Page size in bytes.
    pub page_size: usize,
}
