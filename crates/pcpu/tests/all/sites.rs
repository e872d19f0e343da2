//! Call sites: the `pcpu` policy's predictions learn per call site, and
//! every allocating call passes its caller's location (`#[track_caller]`).
//!
//! The workload is the long-lived prediction's case (`Policy::long_lived`):
//! threads that allocate one small object and exit, their objects kept,
//! between threads that allocate a burst and whose objects are freed later.
//! Predicted from its call site, a single object goes to the shared
//! long-lived pages; otherwise it sits in its thread's region between two
//! bursts, and once the bursts are freed every page keeps one.

use std::thread;

use pcpu::{PerCpu, PerCpuAllocator, Policy, Prefault, RawPerCpu};

/// Rounds of one single thread and one burst thread.
const ROUNDS: usize = 200;
/// Objects of a burst thread, and their size: 512 bytes a burst, 8 a page.
const BURST: usize = 8;
const BURST_SIZE: usize = 64;

fn alloc(policy: Policy) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .policy(policy)
        .unit_size(256 << 10)
        .background_balance(false)
        .prefault(Prefault::AllUnits)
        .build()
        .unwrap()
}

fn no_long_lived() -> Policy {
    let mut p = Policy::pcpu();
    p.long_lived = false;
    p
}

/// Pages per unit populated once the bursts are freed, with raw objects.
fn raw_pages(policy: Policy) -> usize {
    let a = alloc(policy);
    let (mut singles, mut bursts) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let single: RawPerCpu = thread::scope(|s| s.spawn(|| a.alloc_raw(8, 8)).join())
            .unwrap()
            .unwrap();
        singles.push(single);
        let burst: Vec<RawPerCpu> = thread::scope(|s| {
            s.spawn(|| {
                (0..BURST)
                    .map(|_| a.alloc_raw(BURST_SIZE, 8).unwrap())
                    .collect()
            })
            .join()
        })
        .unwrap();
        bursts.extend(burst);
        a.check_invariants().unwrap();
    }
    for r in bursts {
        a.free_raw(r).unwrap();
    }
    a.settle();
    a.check_invariants().unwrap();
    let pages = a.stats().populated_pages;
    for r in singles {
        a.free_raw(r).unwrap();
    }
    pages
}

/// The same with typed handles, which go through the thread caches.
fn typed_pages(policy: Policy) -> usize {
    let a = alloc(policy);
    let (mut singles, mut bursts) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let single: PerCpu<u64> = thread::scope(|s| s.spawn(|| a.per_cpu_zeroed::<u64>()).join())
            .unwrap()
            .unwrap();
        singles.push(single);
        let burst: Vec<PerCpu<[u64; 8]>> = thread::scope(|s| {
            s.spawn(|| {
                (0..BURST)
                    .map(|_| a.per_cpu_zeroed::<[u64; 8]>().unwrap())
                    .collect()
            })
            .join()
        })
        .unwrap();
        bursts.extend(burst);
        a.check_invariants().unwrap();
    }
    drop(bursts);
    a.settle();
    a.check_invariants().unwrap();
    a.stats().populated_pages
}

#[test]
fn single_objects_are_predicted_from_their_call_site() {
    let (with, without) = (raw_pages(Policy::pcpu()), raw_pages(no_long_lived()));
    // 200 single objects of 8 bytes fill under a page; between the bursts
    // (25 pages of them) they keep every page.
    assert!(with <= 8, "{with} pages with the prediction");
    assert!(without >= 20, "{without} pages without it");
}

#[test]
fn single_typed_objects_are_predicted_through_the_thread_cache() {
    let (with, without) = (typed_pages(Policy::pcpu()), typed_pages(no_long_lived()));
    assert!(with <= 8, "{with} pages with the prediction");
    assert!(without >= 20, "{without} pages without it");
}
