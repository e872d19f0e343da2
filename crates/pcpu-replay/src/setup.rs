//! What a replay needs to know about the traced kernel: geometry, units, the
//! percpu base address, and the first chunk's state before tracing started.

use std::collections::BTreeMap;

use pcpu_core::{FirstChunk, Geometry};
use pcpu_trace::{Event, FirstChunkGeometry, Record};

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
    /// (allocations the trace never shows).
    pub prefill: Vec<(usize, usize)>,
}

impl Setup {
    /// Derive the setup from the capture's first-chunk geometry (or the given
    /// values), the number of units, and the trace itself.
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
        let geometry = Geometry::new(4096, nr_units, geo.unit_size as usize, first)
            .map_err(|e| ReplayError::Setup(e.to_string()))?;
        let pcpu_base = records
            .iter()
            .find_map(|r| match &r.event {
                Event::Alloc(a) => Some(a.base_addr.wrapping_add(a.off).wrapping_sub(a.ptr)),
                _ => None,
            })
            .ok_or(ReplayError::NoEvents)?;
        let fc = geometry.first_chunk();
        let page = geometry.page_size() as u64;
        let first_base = (pcpu_base + (fc.static_size + fc.reserved_size) as u64) & !(page - 1);
        let reserved_base =
            (fc.reserved_size > 0).then(|| (pcpu_base + fc.static_size as u64) & !(page - 1));
        let mut s = Setup {
            geometry,
            pcpu_base,
            first_base,
            reserved_base,
            prefill: Vec::new(),
        };
        if prefill {
            s.prefill = first_chunk_prefill(&s, records);
        }
        Ok(s)
    }
}

/// Byte ranges of the first chunk that were in use before tracing started.
///
/// A gap (a range no traced allocation ever covers, below the end of the
/// highest traced allocation there) is taken as pre-allocated when some traced
/// allocation that would fit in it (size and alignment) was placed *beyond*
/// it: first fit would have used the gap had it been free. Gaps that nothing
/// traced fits in are left free (DESIGN.md, "Replay").
fn first_chunk_prefill(s: &Setup, records: &[Record]) -> Vec<(usize, usize)> {
    let fc = s.geometry.first_chunk();
    let page = s.geometry.page_size();
    let start = (fc.static_size + fc.reserved_size) % page;
    let mut allocs: Vec<(usize, usize, usize)> = Vec::new();
    let mut covered: BTreeMap<usize, usize> = BTreeMap::new();
    for r in records {
        if let Event::Alloc(a) = &r.event {
            if a.base_addr == s.first_base {
                let size = (a.size as usize).div_ceil(4) * 4;
                let align = (a.align as usize).max(4);
                allocs.push((a.off as usize, size, align));
                let e = covered.entry(a.off as usize).or_insert(0);
                *e = (*e).max(size);
            }
        }
    }
    let mut gaps = Vec::new();
    let mut pos = start;
    for (&off, &size) in &covered {
        if off > pos {
            gaps.push((pos, off - pos));
        }
        pos = pos.max(off + size);
    }
    gaps.retain(|&(gs, glen)| {
        let ge = gs + glen;
        allocs
            .iter()
            .any(|&(off, size, align)| off >= ge && gs.div_ceil(align) * align + size <= ge)
    });
    gaps
}
