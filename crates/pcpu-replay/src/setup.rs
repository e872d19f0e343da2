//! What a replay needs to know about the traced kernel: geometry, units, the
//! percpu base address, and what was in use before tracing started (the
//! first chunk's state; for a recording on a running kernel, also the
//! chunks already there and the objects it frees: `pre_trace`).

use std::collections::HashMap;

use pcpu_core::{FirstChunk, Geometry};
use pcpu_trace::{
    traced_from_creation, Event, FirstChunkGeometry, PercpuStats, Record, StatsSnapshot,
};

use crate::kernel_start::{self, KernelStart};
use crate::pre_trace::{self, PreChunk, PreObject, Region};
use crate::ReplayError;

/// The traced kernel's allocator setup.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// Geometry (page size, units, unit size, first chunk layout).
    pub geometry: Geometry,
    /// `pcpu_base_addr` (`base_addr + off - ptr` of any allocation).
    pub pcpu_base: u64,
    /// `base_addr` of the first chunk's dynamic region.
    pub first_base: u64,
    /// `base_addr` of the reserved chunk, if any.
    pub reserved_base: Option<u64>,
    /// Byte ranges of the first chunk in use before tracing started
    /// (allocations the trace never shows, nor frees).
    pub prefill: Vec<(usize, usize)>,
    /// Dynamic chunks in use before tracing started (a recording on a
    /// running kernel), in the order the trace first uses them.
    pub pre_chunks: Vec<PreChunk>,
    /// Objects allocated before tracing started that the trace frees, in
    /// the first chunk or a [`Setup::pre_chunks`] chunk.
    pub pre_objects: Vec<PreObject>,
    /// What the kernel's `percpu_stats` at START says of the chunks before
    /// tracing ([`Setup::with_kernel_start`]); `None` without it.
    pub kernel_start: Option<KernelStart>,
}

impl Setup {
    /// Derive the setup from the capture's first-chunk geometry (or the given
    /// values), the number of units, and the trace itself; with `prefill`,
    /// also what was in use before tracing started (the module
    /// `pre_trace`: the first chunk's gaps, and for a recording on a
    /// running kernel the chunks already there and the objects it frees).
    /// A trace that opens with `pcpu_trace::FROM_CREATION_MARKER` (a
    /// userspace allocator's) had nothing in use before it: nothing is
    /// inferred.
    pub fn derive(
        geo: &FirstChunkGeometry,
        nr_units: usize,
        records: &[Record],
        prefill: bool,
    ) -> Result<Setup, ReplayError> {
        let first = FirstChunk {
            static_size: geo.static_size as usize,
            reserved_size: geo.reserved_size as usize,
            dyn_size: geo.dyn_size as usize,
        };
        let mut geometry = Geometry::new(4096, nr_units, geo.unit_size as usize, first)
            .map_err(|e| ReplayError::Setup(e.to_string()))?;
        // The boot log's `alloc=N*ATOM`, which only `percpu_stats` reports:
        // kept when it is a geometry the kernel could have (else the page
        // and unit sizes stand in, as without it).
        if let (Some(atom), Some(alloc)) = (geo.atom_size, geo.alloc_size) {
            if let (Ok(atom), Ok(alloc)) = (usize::try_from(atom), usize::try_from(alloc)) {
                geometry = geometry.with_alloc_info(atom, alloc).unwrap_or(geometry);
            }
        }
        let Some((pcpu_base, agreeing, allocs)) = percpu_base(records) else {
            return Err(
                if records
                    .iter()
                    .any(|r| matches!(r.event, Event::Free { .. }))
                {
                    ReplayError::Setup(
                        "the trace has percpu_free_percpu events but no percpu_alloc_percpu \
                         event, which the first chunk's address is derived from"
                            .into(),
                    )
                } else {
                    ReplayError::NoEvents
                },
            );
        };
        // Hashed pointers (`%p` without `nohash-ptr`) make most lines
        // disagree; a few disagreeing lines (a corrupt trace) are left to
        // the events' own checks.
        if allocs >= 2 && (allocs - agreeing) * 2 > allocs {
            return Err(ReplayError::Setup(format!(
                "the trace's pointers look hashed: on {} of {allocs} allocations ptr is not \
                 base_addr + off less the percpu base the others give; capture with raw \
                 pointers (`trace_options=nohash-ptr` on the kernel command line, or `echo \
                 nohash-ptr > /sys/kernel/tracing/trace_options`)",
                allocs - agreeing
            )));
        }
        let fc = geometry.first_chunk();
        let page = geometry.page_size() as u64;
        // Addresses wrap like the pointers they come from (a corrupt
        // `base_addr` makes a bogus base, never an overflow).
        let first_base =
            pcpu_base.wrapping_add((fc.static_size + fc.reserved_size) as u64) & !(page - 1);
        let reserved_base = (fc.reserved_size > 0)
            .then(|| pcpu_base.wrapping_add(fc.static_size as u64) & !(page - 1));
        let mut s = Setup {
            geometry,
            pcpu_base,
            first_base,
            reserved_base,
            prefill: Vec::new(),
            pre_chunks: Vec::new(),
            pre_objects: Vec::new(),
            kernel_start: None,
        };
        if prefill && !traced_from_creation(records) {
            let start = (fc.static_size + fc.reserved_size) % page as usize;
            let first = Region {
                start,
                end: start + fc.dyn_size,
                page: page as usize,
            };
            let inferred = pre_trace::infer(
                (first_base, first),
                reserved_base,
                s.geometry.unit_size(),
                records,
            );
            s.prefill = inferred.first_prefill;
            s.pre_chunks = inferred.chunks;
            s.pre_objects = inferred.objects;
        }
        Ok(s)
    }
}

impl Setup {
    /// The same setup, with the kernel's own `percpu_stats` at the START
    /// marker of a recording: the empty pages of each chunk found in use
    /// before tracing, and the fully free chunks the trace never uses
    /// (`kernel_start`). Only for a setup derived with `prefill` (what was
    /// in use before tracing inferred): without it, left unchanged.
    pub fn with_kernel_start(mut self, stats: &PercpuStats, prefill: bool) -> Setup {
        if prefill {
            self.kernel_start = Some(kernel_start::match_chunks(
                &self.pre_chunks,
                &self.pre_objects,
                self.geometry.unit_size(),
                stats,
            ));
        }
        self
    }

    /// [`with_kernel_start`](Self::with_kernel_start) with the snapshot
    /// taken at the first phase marker of `records`
    /// ([`first_marker_stats`](crate::first_marker_stats)), if `snapshots`
    /// (a recording's `percpu-stats.txt`) has one; else unchanged.
    pub fn with_kernel_stats(
        self,
        records: &[Record],
        snapshots: &[StatsSnapshot],
        prefill: bool,
    ) -> Setup {
        match kernel_start::first_marker_stats(records, snapshots) {
            Some(stats) => self.with_kernel_start(stats, prefill),
            None => self,
        }
    }
}

/// The percpu area's base (`pcpu_base_addr`): the kernel's `ptr` is
/// `base_addr + off` less it on every allocation line. The value most lines
/// give (the earliest on a tie), how many give it, and how many allocation
/// lines there are; `None` without any.
fn percpu_base(records: &[Record]) -> Option<(u64, u64, u64)> {
    let mut seen: HashMap<u64, (u64, usize)> = HashMap::new();
    let mut allocs = 0u64;
    for r in records {
        if let Event::Alloc(a) = &r.event {
            let base = a.base_addr.wrapping_add(a.off).wrapping_sub(a.ptr);
            let order = seen.len();
            seen.entry(base).or_insert((0, order)).0 += 1;
            allocs += 1;
        }
    }
    let (&base, &(count, _)) = seen
        .iter()
        .max_by_key(|(_, &(count, order))| (count, std::cmp::Reverse(order)))?;
    Some((base, count, allocs))
}
