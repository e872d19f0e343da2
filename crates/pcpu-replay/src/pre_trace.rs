//! What was in use before tracing started, inferred from the trace: the
//! first chunk's areas no traced allocation shows, the dynamic chunks a
//! recording finds already there (used before any `percpu_create_chunk`
//! names them), and the objects allocated before tracing that the trace
//! frees.
//!
//! A trace from boot needs only the first chunk's gaps; one recorded on a
//! running kernel (`pcpu record`) starts with chunks full of objects it
//! never saw allocated. Each inference is a rule about what the kernel's
//! own placement implies, never a guess the trace contradicts:
//!
//! - **A free of an untraced pointer** in the first chunk, or in a chunk in
//!   use before tracing, starts an object there, allocated before tracing
//!   (a trace from boot starts after the first chunk's earliest
//!   allocations too). In a chunk the trace created it stays an error. It ends no later than the next object start the trace
//!   shows (another such free, or an allocation placed before this free: its
//!   bytes were free then), nor past the largest traced request (objects
//!   before tracing were of the same kinds), nor past the chunk's region;
//!   and past the run the kernel placed at it after the free, not over
//!   bytes that first fit then skipped (something that would have fitted
//!   went beyond them soon after: they were not given back).
//!   One that overlaps an area traced before its free contradicts the trace
//!   and is not inferred (a strict replay then stops at it).
//! - **A gap** (bytes no traced allocation or inferred object ever covers,
//!   below the highest one) was in use before tracing when a traced
//!   allocation that would have fit in it (size and alignment) was placed
//!   beyond it: first fit would have used it had it been free. Gaps nothing
//!   traced fits in are left free (DESIGN.md, "Replay").
//!
//! The reserved chunk is left out: its users allocate at boot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pcpu_trace::{Event, Record};

/// A dynamic chunk that was there before tracing started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreChunk {
    /// Its `base_addr`.
    pub base: u64,
    /// Byte ranges `(offset, length)` in use before tracing that the trace
    /// never frees.
    pub prefill: Vec<(usize, usize)>,
}

/// An object allocated before tracing started that the trace frees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreObject {
    /// Its chunk's `base_addr` (the first chunk's or a [`PreChunk`]'s).
    pub base: u64,
    /// Offset in the chunk's unit.
    pub off: usize,
    /// Length inferred (a multiple of 4).
    pub len: usize,
    /// The pointer the trace frees.
    pub ptr: u64,
}

/// Everything inferred about the state before tracing.
#[derive(Debug, Default)]
pub(crate) struct Inferred {
    pub(crate) first_prefill: Vec<(usize, usize)>,
    pub(crate) chunks: Vec<PreChunk>,
    pub(crate) objects: Vec<PreObject>,
}

/// One chunk's managed byte range, `[start, end)` from its base page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The page size (the largest alignment a request may ask).
    pub(crate) page: usize,
}

/// What the trace shows of one chunk while it holds pre-tracing state.
#[derive(Debug, Default)]
struct Seen {
    /// Traced allocations: offset, size (rounded up to 4), alignment, index.
    allocs: Vec<(usize, usize, usize, usize)>,
    /// Frees of untraced pointers: offset, index, pointer.
    frees: Vec<(usize, usize, u64)>,
}

/// Infer the state before tracing. `first` is the first chunk's `base_addr`
/// and region; `reserved`, the reserved chunk's `base_addr`, if any;
/// `unit` the unit size (a dynamic chunk's region).
pub(crate) fn infer(
    first: (u64, Region),
    reserved: Option<u64>,
    unit: usize,
    records: &[Record],
) -> Inferred {
    let (first_base, first_region) = first;
    // Dynamic chunks: `true` while still in the state they had before
    // tracing (used, and neither created nor destroyed since).
    let mut pre: HashMap<u64, bool> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut live: HashSet<u64> = HashSet::new();
    let mut freed: HashSet<u64> = HashSet::new();
    let mut cap = 4usize;
    // Size and alignment of the traced allocations in dynamic chunks.
    let mut dynamic: Vec<(usize, usize)> = Vec::new();
    let first_use = |base: u64, pre: &mut HashMap<u64, bool>, order: &mut Vec<u64>| -> bool {
        if base == first_base {
            return true;
        }
        if Some(base) == reserved {
            return false;
        }
        *pre.entry(base).or_insert_with(|| {
            order.push(base);
            true
        })
    };
    for (t, r) in records.iter().enumerate() {
        match &r.event {
            Event::CreateChunk { base_addr } => {
                pre.insert(*base_addr, false);
            }
            Event::DestroyChunk { base_addr } => {
                first_use(*base_addr, &mut pre, &mut order);
                if *base_addr != first_base && Some(*base_addr) != reserved {
                    pre.insert(*base_addr, false);
                }
            }
            Event::ChunkPopulated(p) | Event::ChunkDepopulated(p) => {
                first_use(p.base_addr, &mut pre, &mut order);
            }
            Event::Alloc(a) => {
                live.insert(a.ptr);
                let (Ok(off), Ok(size)) = (usize::try_from(a.off), usize::try_from(a.size)) else {
                    continue;
                };
                let align = usize::try_from(a.align).unwrap_or(usize::MAX).max(4);
                let size = size.checked_next_multiple_of(4).unwrap_or(usize::MAX);
                cap = cap.max(size.min(unit));
                if a.base_addr != first_base && Some(a.base_addr) != reserved && size <= unit {
                    dynamic.push((size, align));
                }
                if !first_use(a.base_addr, &mut pre, &mut order) {
                    continue;
                }
                seen.entry(a.base_addr)
                    .or_default()
                    .allocs
                    .push((off, size, align, t));
            }
            Event::Free {
                base_addr,
                off,
                ptr,
            } => {
                if live.remove(ptr) {
                    continue;
                }
                let Ok(off) = usize::try_from(*off) else {
                    continue;
                };
                if first_use(*base_addr, &mut pre, &mut order) && freed.insert(*ptr) {
                    seen.entry(*base_addr)
                        .or_default()
                        .frees
                        .push((off, t, *ptr));
                }
            }
            _ => {}
        }
    }
    let mut out = Inferred::default();
    let empty = Seen::default();
    // A recording on a running kernel finds the first chunk (the fullest,
    // so the first one tried) in use past its last traced allocation too:
    // what fits there but went to a dynamic chunk says so.
    let elsewhere = if order.is_empty() {
        &[][..]
    } else {
        &dynamic[..]
    };
    let (prefill, objects) = infer_chunk(
        first_base,
        first_region,
        seen.get(&first_base).unwrap_or(&empty),
        cap,
        elsewhere,
    );
    out.first_prefill = prefill;
    out.objects = objects;
    for base in order {
        let region = Region {
            start: 0,
            end: unit,
            page: first_region.page,
        };
        let (prefill, objects) =
            infer_chunk(base, region, seen.get(&base).unwrap_or(&empty), cap, &[]);
        out.chunks.push(PreChunk { base, prefill });
        out.objects.extend(objects);
    }
    out
}

/// One chunk's areas in use before tracing: the gaps taken as in use (never
/// freed), and the objects the trace frees. `elsewhere` (size, alignment):
/// allocations placed in other chunks that would have come here first had
/// they fit; with any, the chunk's tail past its last traced area is a gap
/// too.
fn infer_chunk(
    base: u64,
    region: Region,
    seen: &Seen,
    cap: usize,
    elsewhere: &[(usize, usize)],
) -> (Vec<(usize, usize)>, Vec<PreObject>) {
    let Region { start, end, .. } = region;
    // Allocations outside the region (a corrupt trace: the replay refuses
    // them itself) say nothing about what was in use before tracing.
    let allocs: Vec<(usize, usize, usize, usize)> = seen
        .allocs
        .iter()
        .copied()
        .filter(|&(off, size, _, _)| off >= start && size <= end.saturating_sub(off))
        .collect();
    let objects = freed_objects(base, region, &allocs, &seen.frees, cap);
    let beyond = Beyond::new(&allocs, elsewhere, region.page);
    // Every covered range by start.
    let mut covered: BTreeMap<usize, usize> = BTreeMap::new();
    for &(off, size, _, _) in &allocs {
        let e = covered.entry(off).or_insert(0);
        *e = (*e).max(size);
    }
    for o in &objects {
        let e = covered.entry(o.off).or_insert(0);
        *e = (*e).max(o.len);
    }
    let mut gaps = Vec::new();
    let mut pos = start;
    for (&off, &size) in &covered {
        if off > pos {
            gaps.push((pos, off - pos));
        }
        pos = pos.max(off + size);
    }
    if !elsewhere.is_empty() && pos < end {
        gaps.push((pos, end - pos));
    }
    gaps.retain(|&(gs, glen)| beyond.fits_before(gs, gs + glen));
    (gaps, objects)
}

/// The traced allocations placed beyond each offset of a chunk (or in the
/// chunks tried after it), by alignment: does one of them fit in a range?
struct Beyond {
    /// For each alignment (a power of two up to a page; the replay rejects
    /// anything else): (offset, the smallest size at or beyond it), by
    /// offset (suffix minima), so that each range takes one binary search
    /// per alignment instead of a pass over every allocation.
    suffix: Vec<(usize, Vec<(usize, usize)>)>,
}

impl Beyond {
    fn new(
        allocs: &[(usize, usize, usize, usize)],
        elsewhere: &[(usize, usize)],
        page: usize,
    ) -> Self {
        let mut by_align: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        let placed = allocs
            .iter()
            .map(|&(off, size, align, _)| (off, size, align))
            .chain(
                elsewhere
                    .iter()
                    .map(|&(size, align)| (usize::MAX, size, align)),
            );
        for (off, size, align) in placed {
            if align.is_power_of_two() && align <= page {
                by_align.entry(align).or_default().push((off, size));
            }
        }
        let suffix = by_align
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
        Beyond { suffix }
    }

    /// Was a traced allocation that would fit in `[gs, ge)` (size and
    /// alignment) placed at `ge` or beyond? First fit would have used the
    /// range had it been free.
    fn fits_before(&self, gs: usize, ge: usize) -> bool {
        self.suffix.iter().any(|(align, v)| {
            let i = v.partition_point(|&(off, _)| off < ge);
            v.get(i)
                .is_some_and(|&(_, min)| gs.next_multiple_of(*align) + min <= ge)
        })
    }
}

/// The objects behind frees of untraced pointers (module docs: where each
/// starts and ends). `allocs` are the chunk's traced allocations inside its
/// region.
fn freed_objects(
    base: u64,
    region: Region,
    allocs: &[(usize, usize, usize, usize)],
    frees: &[(usize, usize, u64)],
    cap: usize,
) -> Vec<PreObject> {
    let mut frees: Vec<(usize, usize, u64)> = frees
        .iter()
        .copied()
        .filter(|&(off, _, _)| off % 4 == 0 && off >= region.start && off < region.end)
        .collect();
    // In time order, with the allocations traced before each free: the
    // union of their bytes and the set of their starts.
    frees.sort_unstable_by_key(|&(_, t, _)| t);
    let mut by_time: Vec<(usize, usize, usize, usize)> = allocs
        .iter()
        .map(|&(off, size, align, t)| (t, off, size, align))
        .collect();
    by_time.sort_unstable();
    let mut union: BTreeMap<usize, usize> = BTreeMap::new();
    let mut starts: BTreeSet<usize> = BTreeSet::new();
    let mut next = 0;
    // (offset, earliest traced start above it before the free, pointer,
    // the free's index)
    let mut kept: Vec<(usize, usize, u64, usize)> = Vec::new();
    for &(off, t, ptr) in &frees {
        while let Some(&(at, aoff, asize, _)) = by_time.get(next) {
            if at > t {
                break;
            }
            starts.insert(aoff);
            insert_range(&mut union, aoff, aoff + asize);
            next += 1;
        }
        let covered = union
            .range(..=off)
            .next_back()
            .is_some_and(|(_, &e)| e > off);
        if covered {
            continue;
        }
        let bound = starts
            .range(off + 1..)
            .next()
            .copied()
            .unwrap_or(usize::MAX);
        kept.push((off, bound, ptr, t));
    }
    kept.sort_unstable();
    // The allocations by offset: (offset, size, index).
    let mut by_off: Vec<(usize, usize, usize)> = allocs
        .iter()
        .map(|&(off, size, _, t)| (off, size, t))
        .collect();
    by_off.sort_unstable();
    let mut out = Vec::with_capacity(kept.len());
    for (i, &(off, bound, ptr, t)) in kept.iter().enumerate() {
        let next_free = kept.get(i + 1).map_or(usize::MAX, |k| k.0);
        let e = bound
            .min(next_free)
            .min(region.end)
            .min(off.saturating_add(cap));
        // What the kernel placed at it after the free shows how far it
        // reached at least; past that, bytes that first fit would then
        // have used (something fitting went beyond soon after) were not
        // freed.
        let reused = reused_run(&by_off, off, e, t);
        let e = if reused < e && fits_after(&by_time, t, reused, e) {
            reused.max(off + 4)
        } else {
            e
        };
        let len = (e - off) / 4 * 4;
        if len > 0 {
            out.push(PreObject {
                base,
                off,
                len,
                ptr,
            });
        }
    }
    out
}

/// Allocations after a free that [`fits_after`] looks at: first fit's
/// evidence comes soon, and the scan stays bounded however many frees of
/// untraced pointers a recording has.
const EVIDENCE_WINDOW: usize = 4096;

/// Was one of the first [`EVIDENCE_WINDOW`] allocations traced after index
/// `t` one that would fit in `[gs, ge)` (size and alignment), placed at
/// `ge` or beyond? `by_time`: (index, offset, size, alignment), by index.
fn fits_after(by_time: &[(usize, usize, usize, usize)], t: usize, gs: usize, ge: usize) -> bool {
    let first = by_time.partition_point(|&(at, _, _, _)| at <= t);
    by_time[first..]
        .iter()
        .take(EVIDENCE_WINDOW)
        .any(|&(_, off, size, align)| {
            off >= ge
                && align.is_power_of_two()
                && gs.next_multiple_of(align).saturating_add(size) <= ge
        })
}

/// The end of the run from `x` (below `e`) that allocations traced after
/// index `t` cover without a gap (`x` when none starts there); `by_off`:
/// (offset, size, index), by offset.
fn reused_run(by_off: &[(usize, usize, usize)], x: usize, e: usize, t: usize) -> usize {
    let mut pos = x;
    let first = by_off.partition_point(|&(off, _, _)| off < x);
    for &(off, size, at) in &by_off[first..] {
        if off > pos || off >= e {
            break;
        }
        if at > t {
            pos = pos.max(off.saturating_add(size).min(e));
        }
    }
    pos
}

/// Add `[lo, hi)` to a set of disjoint ranges keyed by start, merging.
fn insert_range(set: &mut BTreeMap<usize, usize>, mut lo: usize, mut hi: usize) {
    if let Some((&s, &e)) = set.range(..=lo).next_back() {
        if e >= lo {
            lo = s;
            hi = hi.max(e);
        }
    }
    let inside: Vec<usize> = set.range(lo..=hi).map(|(&s, _)| s).collect();
    for s in inside {
        if let Some(e) = set.remove(&s) {
            hi = hi.max(e);
        }
    }
    set.insert(lo, hi);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut s = BTreeMap::new();
        insert_range(&mut s, 8, 16);
        insert_range(&mut s, 32, 40);
        insert_range(&mut s, 12, 20);
        assert_eq!(s, BTreeMap::from([(8, 20), (32, 40)]));
        insert_range(&mut s, 20, 32);
        assert_eq!(s, BTreeMap::from([(8, 40)]));
        insert_range(&mut s, 0, 4);
        assert_eq!(s, BTreeMap::from([(0, 4), (8, 40)]));
    }

    fn region() -> Region {
        Region {
            start: 0,
            end: 4096,
            page: 4096,
        }
    }

    #[test]
    fn a_freed_object_ends_at_the_next_start_traced_before_its_free() {
        // Allocated at 64 (t=0), then 0 freed (t=1): the object at 0 ends
        // by 64. A free at 128 (t=2) with nothing above: it ends at the cap.
        let allocs = [(64, 8, 8, 0)];
        let frees = [(0, 1, 0xa), (128, 2, 0xb)];
        // (The allocation at 64 came before the free: no evidence about
        // what the free gave back.)
        let objs = freed_objects(7, region(), &allocs, &frees, 48);
        assert_eq!(
            objs,
            vec![
                PreObject {
                    base: 7,
                    off: 0,
                    len: 48,
                    ptr: 0xa
                },
                PreObject {
                    base: 7,
                    off: 128,
                    len: 48,
                    ptr: 0xb
                }
            ]
        );
        let objs = freed_objects(7, region(), &allocs, &frees, 4096);
        assert_eq!((objs[0].len, objs[1].len), (64, 3968));
    }

    #[test]
    fn an_allocation_after_the_free_does_not_bound_it_and_one_covering_it_refutes_it() {
        // 16 is allocated after 0's free: no bound. 200 was covered by a
        // traced area (192..256) before its free: not an untraced object.
        let allocs = [(16, 8, 8, 5), (192, 64, 8, 0)];
        let frees = [(0, 1, 0xa), (200, 2, 0xb)];
        let objs = freed_objects(7, region(), &allocs, &frees, 4096);
        assert_eq!(objs.len(), 1);
        assert_eq!((objs[0].off, objs[0].len), (0, 192));
    }

    #[test]
    fn what_first_fit_skipped_after_the_free_was_not_freed() {
        // 0 freed at t=1; then 16 bytes placed at 0 (t=2), and 8 bytes at
        // 64 (t=3), past 16..64, which first fit would have used had the
        // free given it back: the object was 16 bytes.
        let allocs = [(64, 8, 8, 0), (0, 16, 8, 2), (128, 8, 8, 3)];
        let frees = [(0, 1, 0xa)];
        let objs = freed_objects(7, region(), &allocs, &frees, 4096);
        assert_eq!((objs[0].off, objs[0].len), (0, 16));
        // Nothing placed after it: no evidence, the bound stands (64).
        let objs = freed_objects(7, region(), &allocs[..1], &frees, 4096);
        assert_eq!((objs[0].off, objs[0].len), (0, 64));
        // Nothing at it, but something that fitted went past it: the
        // object was as small as an object can be.
        let allocs = [(64, 8, 8, 0), (128, 8, 8, 3)];
        let objs = freed_objects(7, region(), &allocs, &frees, 4096);
        assert_eq!((objs[0].off, objs[0].len), (0, 4));
    }

    #[test]
    fn next_free_bounds_and_misaligned_frees_are_dropped() {
        let frees = [(0, 1, 0xa), (40, 2, 0xb), (6, 3, 0xc)];
        let objs = freed_objects(7, region(), &[], &frees, 4096);
        let got: Vec<(usize, usize)> = objs.iter().map(|o| (o.off, o.len)).collect();
        assert_eq!(got, vec![(0, 40), (40, 4056)]);
    }
}
