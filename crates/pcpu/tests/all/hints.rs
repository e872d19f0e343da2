//! Lifetime hints (`with_lifetime`) and per-thread placement with the `pcpu`
//! policy.

use std::collections::BTreeSet;

use pcpu::{with_lifetime, Lifetime, PerCpuAllocator, Policy, Prefault, RawPerCpu};

fn alloc(policy: Policy) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .policy(policy)
        .unit_size(64 << 10)
        .background_balance(false)
        // Every unit resident once populated, whatever the test thread's
        // affinity: resident memory is compared with Percpu.
        .prefault(Prefault::AllUnits)
        .build()
        .unwrap()
}

fn pages(a: &PerCpuAllocator, objs: &[RawPerCpu]) -> BTreeSet<(usize, usize)> {
    objs.iter()
        .flat_map(|r| {
            let page = a.page_size();
            let first = r.offset() / page;
            let last = (r.offset() + r.size() - 1) / page;
            (first..=last).map(move |p| (r.chunk().0 as usize, p))
        })
        .collect()
}

#[test]
fn classes_never_share_a_page() {
    let a = alloc(Policy::pcpu());
    let (mut long, mut short) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let size = [8, 24, 128, 1000][i % 4];
        long.push(with_lifetime(Lifetime(1), || a.alloc_raw(size, 8)).unwrap());
        short.push(with_lifetime(Lifetime(2), || a.alloc_raw(size, 8)).unwrap());
    }
    let (pl, ps) = (pages(&a, &long), pages(&a, &short));
    assert!(
        pl.is_disjoint(&ps),
        "{:?}",
        pl.intersection(&ps).collect::<Vec<_>>()
    );
    a.check_invariants().unwrap();
    // Freeing one class empties its pages, which go back to the OS.
    let before = a.resident_bytes().unwrap();
    for r in short {
        a.free_raw(r).unwrap();
    }
    a.settle();
    let after = a.resident_bytes().unwrap();
    let short_pages = ps.len() as u64 * a.page_size() as u64 * a.units() as u64;
    assert!(
        before - after + 4 * 4096 * a.units() as u64 >= short_pages,
        "{before} {after} {short_pages}"
    );
    a.check_invariants().unwrap();
}

#[test]
fn scopes_nest_and_restore_even_on_panic() {
    let a = alloc(Policy::pcpu());
    let outer = with_lifetime(Lifetime(10), || {
        let inner = with_lifetime(Lifetime(11), || a.alloc_raw(64, 8).unwrap());
        let again = a.alloc_raw(64, 8).unwrap(); // back in class 10
        (inner, again)
    });
    let first10 = with_lifetime(Lifetime(10), || a.alloc_raw(64, 8).unwrap());
    // class 10's objects are neighbours; class 11's is elsewhere
    assert_eq!(outer.1.chunk(), first10.chunk());
    assert_eq!(outer.1.offset() + 64, first10.offset());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_lifetime(Lifetime(12), || panic!("boom"));
    }));
    assert!(r.is_err());
    // after the panic the thread is no longer in class 12: a new class-10
    // allocation still lands next to class 10's objects
    let next10 = with_lifetime(Lifetime(10), || a.alloc_raw(64, 8).unwrap());
    assert_eq!(first10.offset() + 64, next10.offset());
}

#[test]
fn linux_policies_ignore_hints() {
    let a = alloc("linux-5.14".parse().unwrap());
    let x = with_lifetime(Lifetime(1), || a.alloc_raw(64, 8).unwrap());
    let y = with_lifetime(Lifetime(2), || a.alloc_raw(64, 8).unwrap());
    assert_eq!(
        (x.chunk(), x.offset() + 64),
        (y.chunk(), y.offset()),
        "plain first fit"
    );
}

/// With `keep_room`, a lifetime class opens a new chunk rather than cut
/// into another class's free room; when the chunk cannot be mapped, it takes
/// that room after all instead of failing.
#[test]
fn a_class_falls_back_to_shared_room_when_no_chunk_can_be_mapped() {
    use pcpu::__private::fault;
    let mut policy = Policy::pcpu();
    policy.keep_room = true;
    let a = alloc(policy);
    let first = with_lifetime(Lifetime(1), || a.alloc_raw(64, 8)).unwrap();
    let chunks = a.stats().chunks;
    fault::fail_next_reserves(1);
    let second = with_lifetime(Lifetime(2), || a.alloc_raw(64, 8));
    let pending = fault::pending_reserve_failures();
    fault::reset();
    let second = second.unwrap();
    assert_eq!(pending, 0, "a chunk was asked for first");
    assert_eq!(a.stats().chunks, chunks);
    assert_eq!(second.chunk(), first.chunk());
    a.check_invariants().unwrap();
    // With mapping possible, the next class gets a chunk of its own.
    let third = with_lifetime(Lifetime(3), || a.alloc_raw(64, 8)).unwrap();
    assert_ne!(third.chunk(), first.chunk());
    assert_eq!(a.stats().chunks, chunks + 1);
    a.check_invariants().unwrap();
    for r in [first, second, third] {
        a.free_raw(r).unwrap();
    }
    a.check_invariants().unwrap();
}

/// Typed handles allocated inside a lifetime scope are freed, not cached,
/// when dropped: the thread cache would hand their places to unscoped
/// objects, which would then pin the dead class's pages (a review found a
/// 62-fold difference: 4008 against 64 kB for 2000 long-lived `u64`s).
#[test]
fn scoped_handles_skip_the_thread_cache_on_drop() {
    let run = |thread_cache: usize| {
        let a = PerCpuAllocator::builder()
            .policy(Policy::pcpu())
            .unit_size(64 << 10)
            .thread_cache(thread_cache)
            .background_balance(false)
            .build()
            .unwrap();
        let mut long_lived = Vec::new();
        for r in 0..100u64 {
            let req: Vec<_> = with_lifetime(Lifetime(1000 + r), || {
                (0..200)
                    .map(|_| a.per_cpu_zeroed::<u64>().unwrap())
                    .collect()
            });
            for _ in 0..4 {
                long_lived.push(a.per_cpu_zeroed::<u64>().unwrap());
            }
            drop(req);
        }
        a.settle();
        let s = a.stats();
        assert_eq!(long_lived.len(), 400);
        s.percpu_bytes
    };
    let (cached, uncached) = (run(32), run(0));
    // 400 u64s take one page; a per-request page pinned each would be 100.
    assert!(
        cached <= uncached + 2 * 4096 * 2,
        "with the thread cache {cached} B, without {uncached} B"
    );
}
