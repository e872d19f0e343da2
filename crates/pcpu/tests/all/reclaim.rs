//! Freed memory really goes back to the OS, as the OS sees it: after
//! partial frees with linux-5.14 and seed-rfc, not with linux-5.11; after
//! freeing everything, with every policy.

use pcpu::demo::GROUP_OBJECTS;
use pcpu::{PerCpuAllocator, RawPerCpu};

use crate::util::{assert_resident_matches, quiet};

type Group = Vec<RawPerCpu>;

fn group(alloc: &PerCpuAllocator) -> Group {
    GROUP_OBJECTS
        .iter()
        .map(|&(size, align)| alloc.alloc_raw(size, align).unwrap())
        .collect()
}

fn free(alloc: &PerCpuAllocator, groups: Vec<Group>) {
    for r in groups.into_iter().flatten() {
        alloc.free_raw(r).unwrap();
    }
}

/// Resident bytes: (before, all created, children freed and balanced, all
/// freed and balanced), for `parents × (1 + 10)` groups.
fn scenario(policy: &str, parents: usize) -> [u64; 4] {
    let alloc = quiet(policy, 512 << 10);
    let r0 = alloc.resident_bytes().unwrap();
    let mut kept = Vec::new();
    let mut children = Vec::new();
    for _ in 0..parents {
        kept.push(group(&alloc));
        for _ in 0..10 {
            children.push(group(&alloc));
        }
    }
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
    let r1 = alloc.resident_bytes().unwrap();
    free(&alloc, children);
    alloc.settle();
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
    let r2 = alloc.resident_bytes().unwrap();
    free(&alloc, kept);
    alloc.settle();
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
    let r3 = alloc.resident_bytes().unwrap();
    eprintln!("{policy}: resident {r0} -> {r1} -> {r2} -> {r3}");
    [r0, r1, r2, r3]
}

#[test]
fn linux_5_14_returns_partially_freed_pages() {
    let [r0, r1, r2, r3] = scenario("linux-5.14", 300);
    assert!(r1 > 20 * r0);
    assert!(r2 * 2 < r1, "10 of 11 groups freed: resident {r1} -> {r2}");
    assert!(
        r3 <= r0 + (512 << 10) * 2,
        "everything freed: {r3} vs initial {r0}"
    );
}

#[test]
fn seed_rfc_returns_partially_freed_pages() {
    let [_, r1, r2, _] = scenario("seed-rfc", 300);
    assert!(r2 * 2 < r1, "10 of 11 groups freed: resident {r1} -> {r2}");
}

#[test]
fn linux_5_11_keeps_partially_freed_pages() {
    let [r0, r1, r2, r3] = scenario("linux-5.11", 300);
    assert_eq!(r2, r1, "5.11 only releases whole free chunks");
    // Once chunks are entirely free, 5.11 destroys all but one.
    assert!(r3 < r1 / 4 && r3 >= r0);
}

#[test]
fn empty_pages_are_unmapped_not_just_forgotten() {
    // One chunk's worth of page-sized objects: freeing every other page makes
    // the chunk a reclaim candidate; its empty pages must leave the mapping.
    let alloc = quiet("linux-5.14", 64 << 10);
    let objs: Vec<_> = (0..64)
        .map(|_| alloc.per_cpu_zeroed::<[u8; 4096]>().unwrap())
        .collect();
    let full = alloc.resident_bytes().unwrap();
    let kept: Vec<_> = objs
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| (i % 4 == 0).then_some(o))
        .collect();
    alloc.settle();
    let partial = alloc.resident_bytes().unwrap();
    assert!(partial < full * 2 / 3, "{full} -> {partial}");
    assert_resident_matches(&alloc);
    // The kept objects still read their zeroes and accept writes.
    for o in &kept {
        assert!(o.iter().all(|p| p.iter().all(|&b| b == 0)));
    }
    drop(kept);
    alloc.settle();
    assert_resident_matches(&alloc);
}

/// Without balance runs (no background thread, no `balance_now`), the
/// `pcpu` policy takes chunks queued for reclaim back instead of mapping new
/// ones: rounds of churn stay in the chunks the first round mapped.
#[test]
fn pcpu_without_balance_runs_reuses_queued_chunks() {
    let alloc = quiet("pcpu", 64 << 10);
    let mut chunks = Vec::new();
    for _ in 0..5 {
        let objs: Vec<RawPerCpu> = (0..2000)
            .map(|_| alloc.alloc_raw(300, 8).unwrap())
            .collect();
        for r in objs {
            alloc.free_raw(r).unwrap();
        }
        chunks.push(alloc.stats().chunks);
    }
    assert!(alloc.balance_pending(), "reclaim is due");
    assert!(chunks.iter().all(|&c| c == chunks[0]), "{chunks:?}");
    alloc.check_invariants().unwrap();
}

/// `settle` leaves nothing for a further run to give back: after freeing
/// three chunks' worth of objects, one kernel balance run keeps a chunk that
/// its reclaim emptied, populated, as the spare free chunk, with nothing
/// pending; `settle` runs again until a run gives nothing back.
#[test]
fn settle_gives_back_everything_a_later_run_would() {
    for policy in ["linux-6.1", "pcpu"] {
        let alloc = quiet(policy, 512 << 10);
        let first = alloc.stats().percpu_bytes;
        let v: Vec<_> = (0..200_000)
            .map(|_| alloc.per_cpu_zeroed::<u32>().unwrap())
            .collect();
        assert!(alloc.stats().chunks >= 3, "{policy}");
        drop(v);
        alloc.settle();
        let settled = alloc.stats();
        let again = alloc.balance_now();
        assert_eq!(
            (again.destroyed, again.depopulated),
            (0, 0),
            "{policy}: a run after settle gave back more"
        );
        // The first chunk's pages and at most the empty-page reserve's.
        let reserve = 4 * 4096 * alloc.units() as u64;
        assert!(
            settled.percpu_bytes <= first + reserve,
            "{policy}: {} -> {} bytes",
            first,
            settled.percpu_bytes
        );
        assert_resident_matches(&alloc);
    }
}
