//! Allocators with background balancing share one balance thread
//! (`pcpu-balance`): it serves each in turn, and exits with the last of
//! them.
//!
//! Its own test binary with one test: it counts the process's balance
//! threads, which other tests would disturb.

use std::time::Duration;

use pcpu::PerCpuAllocator;

mod support;
use support::{balance_threads, churn, mapped};

/// Waits up to ten seconds for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    support::eventually(Duration::from_secs(10), cond)
}

#[test]
fn allocators_share_one_balance_thread() {
    assert_eq!(balance_threads(), 0);
    let build = || {
        PerCpuAllocator::builder()
            .unit_size(64 << 10)
            .thread_cache(0)
            .build()
            .unwrap()
    };
    let mut allocs: Vec<PerCpuAllocator> = (0..24).map(|_| build()).collect();
    assert!(eventually(|| balance_threads() == 1));
    // Every allocator's work runs, from threads of its own at once.
    std::thread::scope(|s| {
        for a in &allocs {
            s.spawn(move || churn(a));
        }
    });
    for (i, a) in allocs.iter().enumerate() {
        assert!(a.wait_idle(Duration::from_secs(30)), "allocator {i} idle");
        let st = a.stats();
        assert!(st.balance_runs > 0, "allocator {i} was balanced");
        assert!(!a.balance_pending(), "allocator {i}");
        a.check_invariants().unwrap();
    }
    assert_eq!(balance_threads(), 1);
    // An allocator dropped while the others keep the thread is unmapped
    // before its drop returns, even right after the worker served it (the
    // worker's reference to it is gone by then).
    for i in 0..300 {
        let b = build();
        let x = b.per_cpu_zeroed::<u64>().unwrap();
        let addr = x.get(0) as *const u64 as usize;
        drop(x);
        churn(&b);
        // Scheduled, or run (a run under way has taken the pending flag
        // and not yet counted itself).
        assert!(eventually(
            || b.balance_pending() || b.stats().balance_runs > 0
        ));
        drop(b);
        assert!(!mapped(addr), "iteration {i}: mapped after the last drop");
    }
    // Dropping all but one keeps the thread; the one left is still served.
    let last = allocs.pop().unwrap();
    drop(allocs);
    assert_eq!(balance_threads(), 1);
    let runs = last.stats().balance_runs;
    churn(&last);
    assert!(last.wait_idle(Duration::from_secs(30)));
    assert!(last.stats().balance_runs > runs);
    // The last one stops it; a new allocator starts another.
    drop(last);
    assert!(eventually(|| balance_threads() == 0));
    let again = build();
    churn(&again);
    assert!(again.wait_idle(Duration::from_secs(30)));
    assert!(again.stats().balance_runs > 0);
    assert_eq!(balance_threads(), 1);
    drop(again);
    assert!(eventually(|| balance_threads() == 0));

    // A run that panics (as an internal bug would, poisoning its allocator)
    // ends neither the thread nor the other allocators' balancing, and the
    // poisoned allocator still leaves: it is unmapped when dropped, and the
    // thread stops with the last allocator.
    let kept = build();
    let victim = build();
    let x = victim.per_cpu_zeroed::<u64>().unwrap();
    let addr = x.get(0) as *const u64 as usize;
    drop(x);
    let chunks = victim.stats().chunks;
    let mut objs = Vec::new();
    while victim.stats().chunks < chunks + 2 {
        objs.push(victim.per_cpu_zeroed::<u64>().unwrap());
    }
    assert!(kept.wait_idle(Duration::from_secs(30)));
    assert!(victim.wait_idle(Duration::from_secs(30)));
    pcpu::__private::fault::panic_next_balance_runs(1);
    // The frees schedule the run that poisons the victim; those after it
    // each panic in turn, caught one by one.
    for o in objs {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(o)));
    }
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        victim.wait_idle(Duration::from_secs(30))
    }));
    assert!(waited.is_err(), "the victim is poisoned");
    drop(victim);
    assert!(!mapped(addr), "the poisoned allocator is unmapped");
    let runs = kept.stats().balance_runs;
    churn(&kept);
    assert!(kept.wait_idle(Duration::from_secs(30)));
    assert!(
        kept.stats().balance_runs > runs,
        "the others are still balanced"
    );
    drop(kept);
    assert!(eventually(|| balance_threads() == 0));
}
