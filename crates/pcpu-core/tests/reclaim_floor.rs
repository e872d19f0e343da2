//! `pcpu`'s reserve of empty pages counts isolated chunks (the kernel's
//! does not). With the kernel's reclaim loop, which checks the reserve
//! before each page but depopulates a run of empty pages at once, one run
//! could take it below its floor, and the populate stage of the same
//! balance run then populated as many pages elsewhere. `pcpu` counts the
//! run found so far and stops before the page that would, and queues an
//! isolated chunk again only when a page can go. Invariants are checked
//! after every operation.

use pcpu_core::*;

fn allocator(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// What the balance runs of a churn did: all runs, runs that did nothing,
/// runs that depopulated pages of live chunks (reclaim: no chunk
/// destroyed), those of them that populated pages too, the pages those
/// populated, and all pages the runs populated.
#[derive(Debug, Default)]
struct Runs {
    /// Fully free isolated chunks with populated pages, seen after settling
    /// (nothing would queue them again: they hold nothing to free).
    stuck: usize,
    runs: usize,
    idle: usize,
    reclaimed: usize,
    reclaim_then_populate: usize,
    repopulated_in_run: usize,
    populated: usize,
}

fn settle(a: &mut Allocator, b: &mut SimBackend, runs: &mut Runs) {
    let stuck = |a: &Allocator| {
        a.chunk_ids()
            .filter_map(|id| a.chunk(id))
            .filter(|c| c.is_isolated() && c.nr_alloc() == 0 && c.nr_empty_pop_pages() > 0)
            .count()
    };
    while a.balance_pending() {
        let r = a.balance(b);
        runs.runs += 1;
        if r == BalanceReport::default() {
            runs.idle += 1;
        }
        a.check_invariants().unwrap();
        runs.populated += r.populated;
        if r.destroyed == 0 && r.depopulated > 0 {
            runs.reclaimed += 1;
        }
        if r.destroyed == 0 && r.depopulated > 0 && r.populated > 0 {
            runs.reclaim_then_populate += 1;
            runs.repopulated_in_run += r.populated;
        }
    }
    runs.stuck += stuck(a);
}

/// Rounds of groups of objects (8 to 512 bytes) allocated together and
/// freed together at random, with the balance work settled after every
/// free: chunks empty page by page, as a churn workload's do.
fn churn(policy: Policy) -> (Runs, Allocator) {
    let mut a = allocator(policy);
    let mut b = SimBackend::default();
    let mut runs = Runs::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut groups: Vec<Vec<Allocation>> = Vec::new();
    for _round in 0..6 {
        for _ in 0..1500 {
            let group = (0..1 + next(6))
                .map(|_| {
                    let size = 8usize << next(7);
                    let x = a.alloc(&mut b, size, 8, AllocFlags::NORMAL).unwrap();
                    a.check_invariants().unwrap();
                    x
                })
                .collect();
            groups.push(group);
        }
        settle(&mut a, &mut b, &mut runs);
        // Free about four fifths of the groups, one group at a time.
        let keep = groups.len() / 5;
        while groups.len() > keep {
            let i = next(groups.len() as u64) as usize;
            for x in groups.swap_remove(i) {
                a.free(x.chunk, x.offset).unwrap();
                a.check_invariants().unwrap();
            }
            settle(&mut a, &mut b, &mut runs);
        }
    }
    (runs, a)
}

#[test]
fn pcpu_reclaim_never_gives_back_what_the_same_run_populates_again() {
    let (pcpu, _) = churn(Policy::pcpu());
    // Reclaim runs (the workload empties pages), and no run both gives
    // pages back and populates pages (with the kernel's loop, one run of
    // this churn did, populating 2 pages again).
    assert!(pcpu.reclaimed > 0, "{pcpu:?}");
    assert_eq!(pcpu.reclaim_then_populate, 0, "{pcpu:?}");
}

#[test]
fn pcpu_queues_an_isolated_chunk_again_only_when_a_page_can_go() {
    // An isolated chunk may keep empty pages that are the reserve. Queued
    // again at every free into it, as the kernel does, most balance runs
    // would find nothing to do (about 2,400 of 2,550 on this churn).
    let (pcpu, _) = churn(Policy::pcpu());
    assert!(pcpu.idle * 10 <= pcpu.runs, "{pcpu:?}");
    // A chunk emptied while isolated goes back to the free slot, whatever
    // the reserve: nothing would queue it again later.
    assert_eq!(pcpu.stuck, 0, "{pcpu:?}");
}

/// Allocations and frees mixed at random, the balance work settled every
/// 40 operations: frees that empty an isolated chunk come while the reserve
/// is short.
fn mixed(seed: u64) -> Runs {
    let mut a = allocator(Policy::pcpu());
    let mut b = SimBackend::default();
    let mut runs = Runs::default();
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut live: Vec<Allocation> = Vec::new();
    for step in 0..20_000u64 {
        // Phases of growth and of shrinking, so chunks fill and empty.
        let grow = (step / 2000) % 2 == 0;
        if live.is_empty() || next(10) < if grow { 7 } else { 3 } {
            let size = 8usize << next(9);
            live.push(a.alloc(&mut b, size, 8, AllocFlags::NORMAL).unwrap());
        } else {
            let x = live.swap_remove(next(live.len() as u64) as usize);
            a.free(x.chunk, x.offset).unwrap();
        }
        a.check_invariants().unwrap();
        if step % 40 == 39 {
            settle(&mut a, &mut b, &mut runs);
        }
    }
    runs
}

#[test]
fn an_isolated_chunk_emptied_while_the_reserve_is_short_goes_back() {
    for seed in 1..=4 {
        let r = mixed(0x9e37_79b9 + seed);
        assert_eq!(r.stuck, 0, "seed {seed}: {r:?}");
    }
}
