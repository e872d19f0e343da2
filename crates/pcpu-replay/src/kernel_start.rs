//! What the kernel's own `percpu_stats` at the START marker of a recording
//! adds to the state inferred from the trace (`pre_trace`): which of the
//! chunks already there kept how many empty pages populated, and the fully
//! free chunks the trace never uses (the trace shows neither).
//!
//! The kernel lists its chunks by slot, without their addresses, so each
//! dynamic chunk of the snapshot is matched to a chunk the inference found
//! by free bytes: both lists sorted by free bytes and aligned so that the
//! total difference is least (an order-keeping match, which is the best one
//! for a difference of one number). A kernel chunk left over that is
//! entirely free is one the trace never touches: the replay creates it,
//! with its populated pages. One left over with objects in it is not
//! modelled (what is where in it is unknown), only counted.
//!
//! Where in a chunk its empty populated pages were is unknown too: the
//! replay puts them on its lowest unpopulated pages, where
//! `pcpu_balance_populated` populates (it walks a chunk's unpopulated runs
//! from its start) and where a workload's freed objects leave them above
//! the survivors (the engine's `top_up_from_kernel_stats` gives the
//! measurements).

use pcpu_trace::{Event, PercpuStats, Record, StatsChunkKind, StatsSnapshot};

use crate::pre_trace::{PreChunk, PreObject};

/// The START snapshot's figures for the chunks before tracing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelStart {
    /// Empty pages populated (per unit) in each chunk in use before
    /// tracing, by `base_addr` ([`crate::Setup::pre_chunks`]), as its
    /// matched kernel chunk had them.
    pub empty_pages: Vec<(u64, usize)>,
    /// Fully free chunks the trace never uses: the empty pages each kept
    /// populated.
    pub free_chunks: Vec<usize>,
    /// Kernel chunks holding objects that the trace never touches (not
    /// modelled).
    pub unmatched: usize,
}

/// The snapshot taken at the trace's first phase marker (`START` in a
/// recording), if there is one: the state before tracing, as near as the
/// kernel prints it.
pub fn first_marker_stats<'a>(
    records: &[Record],
    snapshots: &'a [StatsSnapshot],
) -> Option<&'a PercpuStats> {
    let first = records.iter().find_map(|r| match &r.event {
        Event::PhasePercpu { name, .. } => Some(name),
        _ => None,
    })?;
    pcpu_trace::snapshot_at(snapshots, first)
}

/// Matches the snapshot's dynamic chunks to `chunks` (with the `objects`
/// inferred in them, on `unit`-byte units).
pub(crate) fn match_chunks(
    chunks: &[PreChunk],
    objects: &[PreObject],
    unit: usize,
    stats: &PercpuStats,
) -> KernelStart {
    let ours: Vec<(u64, u64)> = chunks
        .iter()
        .map(|c| {
            let used: usize = c.prefill.iter().map(|&(_, l)| l).sum::<usize>()
                + objects
                    .iter()
                    .filter(|o| o.base == c.base)
                    .map(|o| o.len)
                    .sum::<usize>();
            (c.base, unit.saturating_sub(used) as u64)
        })
        .collect();
    let kernel: Vec<(u64, u64, u64)> = stats
        .chunks
        .iter()
        .filter(|c| c.kind == StatsChunkKind::Dynamic)
        .map(|c| (c.free_bytes, c.empty_pop_pages, c.nr_alloc))
        .collect();
    let pairs = align(
        &ours.iter().map(|&(_, f)| f).collect::<Vec<_>>(),
        &kernel.iter().map(|&(f, _, _)| f).collect::<Vec<_>>(),
    );
    let mut out = KernelStart::default();
    let mut matched = vec![false; kernel.len()];
    for (i, j) in pairs {
        matched[j] = true;
        out.empty_pages.push((
            ours[i].0,
            usize::try_from(kernel[j].1).unwrap_or(usize::MAX),
        ));
    }
    for (j, &(_, empty, nr_alloc)) in kernel.iter().enumerate() {
        if matched[j] {
            continue;
        }
        if nr_alloc == 0 {
            out.free_chunks
                .push(usize::try_from(empty).unwrap_or(usize::MAX));
        } else {
            out.unmatched += 1;
        }
    }
    out
}

/// An order-keeping match of `a` and `b` by value that pairs `min(len)`
/// elements with the least total difference: pairs of indices into the
/// unsorted slices, in the order of `a`'s.
fn align(a: &[u64], b: &[u64]) -> Vec<(usize, usize)> {
    // The shorter list is matched in full, so swap to make it `a`.
    if a.len() > b.len() {
        let mut pairs: Vec<_> = align(b, a).into_iter().map(|(i, j)| (j, i)).collect();
        pairs.sort_unstable();
        return pairs;
    }
    let sorted = |v: &[u64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by_key(|&i| (v[i], i));
        idx
    };
    let (sa, sb) = (sorted(a), sorted(b));
    let (n, m) = (sa.len(), sb.len());
    // cost[i][j]: least total difference matching the first i of `sa`
    // within the first j of `sb` (i <= j).
    let mut cost = vec![vec![u64::MAX; m + 1]; n + 1];
    cost[0].iter_mut().for_each(|c| *c = 0);
    for i in 1..=n {
        for j in i..=m {
            let skip = cost[i][j - 1];
            let take = cost[i - 1][j - 1].saturating_add(a[sa[i - 1]].abs_diff(b[sb[j - 1]]));
            cost[i][j] = skip.min(take);
        }
    }
    let mut pairs = Vec::with_capacity(n);
    let (mut i, mut j) = (n, m);
    while i > 0 {
        if j > i && cost[i][j] == cost[i][j - 1] {
            j -= 1;
        } else {
            pairs.push((sa[i - 1], sb[j - 1]));
            i -= 1;
            j -= 1;
        }
    }
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcpu_trace::ChunkStats;

    fn kchunk(kind: StatsChunkKind, nr_alloc: u64, empty: u64, free: u64) -> ChunkStats {
        ChunkStats {
            kind,
            nr_alloc,
            empty_pop_pages: empty,
            first_bit: 0,
            free_bytes: free,
            contig_bytes: free,
        }
    }

    fn stats(chunks: Vec<ChunkStats>) -> PercpuStats {
        PercpuStats {
            nr_chunks: chunks.len() as u64,
            nr_cur_alloc: chunks.iter().map(|c| c.nr_alloc).sum(),
            empty_pop_pages: chunks.iter().map(|c| c.empty_pop_pages).sum(),
            chunks,
        }
    }

    fn pre(base: u64, used: usize) -> PreChunk {
        PreChunk {
            base,
            prefill: if used > 0 { vec![(0, used)] } else { vec![] },
        }
    }

    #[test]
    fn align_pairs_the_closest_in_order() {
        assert_eq!(align(&[10, 100], &[95, 12, 500]), vec![(0, 1), (1, 0)]);
        assert_eq!(align(&[95, 12, 500], &[10, 100]), vec![(0, 1), (1, 0)]);
        assert_eq!(align(&[6], &[1, 2, 3, 7]), vec![(0, 3)]);
        assert_eq!(align(&[2, 6], &[1, 2, 3, 7]), vec![(0, 1), (1, 3)]);
        assert_eq!(align(&[], &[1]), vec![]);
        assert_eq!(align(&[3, 3], &[3, 3]), vec![(0, 0), (1, 1)]);
    }

    /// The 6.18 recording's START: a chunk in use (2 empty pages) and a
    /// fully free one (218), found by the trace in that order or the other.
    #[test]
    fn chunks_match_by_free_bytes() {
        let unit = 1 << 20;
        let k = stats(vec![
            kchunk(StatsChunkKind::First, 528, 0, 20),
            kchunk(StatsChunkKind::Dynamic, 664, 2, 931_244),
            kchunk(StatsChunkKind::Dynamic, 0, 218, 1 << 20),
        ]);
        let objects = [PreObject {
            base: 0xa000,
            off: 200_000,
            len: 64,
            ptr: 1,
        }];
        for order in [[0xa000, 0xb000], [0xb000, 0xa000]] {
            let chunks: Vec<_> = order
                .iter()
                .map(|&b| pre(b, if b == 0xa000 { 117_000 } else { 0 }))
                .collect();
            let got = match_chunks(&chunks, &objects, unit, &k);
            let mut empty = got.empty_pages.clone();
            empty.sort();
            assert_eq!(empty, vec![(0xa000, 2), (0xb000, 218)]);
            assert_eq!((got.free_chunks.len(), got.unmatched), (0, 0));
        }
    }

    #[test]
    fn kernel_chunks_the_trace_never_uses() {
        let unit = 1 << 20;
        let k = stats(vec![
            kchunk(StatsChunkKind::Reserved, 3, 0, 100),
            kchunk(StatsChunkKind::Dynamic, 10, 4, 900_000),
            kchunk(StatsChunkKind::Dynamic, 0, 30, 1 << 20),
            kchunk(StatsChunkKind::Dynamic, 500, 1, 20_000),
        ]);
        let got = match_chunks(&[pre(0xa000, 148_576)], &[], unit, &k);
        assert_eq!(got.empty_pages, vec![(0xa000, 4)]);
        assert_eq!(got.free_chunks, vec![30]);
        assert_eq!(got.unmatched, 1);
        // More chunks found than the kernel listed: the extra get nothing.
        let got = match_chunks(&[pre(0xa000, 0), pre(0xb000, 5)], &[], unit, &stats(vec![]));
        assert_eq!(got, KernelStart::default());
    }
}
