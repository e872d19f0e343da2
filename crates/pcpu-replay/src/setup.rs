//! What a replay needs to know about the traced kernel: geometry, units, the
//! percpu base address, and the first chunk's state before tracing started.

use std::collections::{BTreeMap, HashMap};

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
        };
        if prefill {
            s.prefill = first_chunk_prefill(&s, records);
        }
        Ok(s)
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
    // The dynamic area's end, from the chunk's base page.
    let end = start + fc.dyn_size;
    // Traced allocations of the first chunk, by alignment (a power of two up
    // to the page size; anything else the replay rejects later), each list
    // sorted by offset.
    let mut by_align: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    let mut covered: BTreeMap<usize, usize> = BTreeMap::new();
    for r in records {
        if let Event::Alloc(a) = &r.event {
            let (Ok(off), Ok(size)) = (usize::try_from(a.off), usize::try_from(a.size)) else {
                continue;
            };
            let align = usize::try_from(a.align).unwrap_or(usize::MAX).max(4);
            // Allocations outside the first chunk's managed region (a
            // corrupt trace: the replay refuses them itself) say nothing
            // about what was in use before tracing.
            if a.base_addr != s.first_base || off < start || size > end.saturating_sub(off) {
                continue;
            }
            let size = size.next_multiple_of(4);
            if align.is_power_of_two() && align <= page {
                by_align.entry(align).or_default().push((off, size));
            }
            let e = covered.entry(off).or_insert(0);
            *e = (*e).max(size);
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
    // For each alignment: the smallest size among the allocations at or
    // beyond each offset (suffix minima), so that each gap takes one binary
    // search per alignment instead of a pass over every allocation.
    let suffix: Vec<(usize, Vec<(usize, usize)>)> = by_align
        .into_iter()
        .map(|(align, mut v)| {
            v.sort_unstable();
            let mut min = usize::MAX;
            for e in v.iter_mut().rev() {
                min = min.min(e.1);
                e.1 = min;
            }
            (align, v)
        })
        .collect();
    gaps.retain(|&(gs, glen)| {
        let ge = gs + glen;
        suffix.iter().any(|(align, v)| {
            let i = v.partition_point(|&(off, _)| off < ge);
            v.get(i)
                .is_some_and(|&(_, min)| gs.next_multiple_of(*align) + min <= ge)
        })
    });
    gaps
}
