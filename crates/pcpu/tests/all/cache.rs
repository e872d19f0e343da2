//! Per-thread caches of freed areas (`Builder::thread_cache`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pcpu::{with_lifetime, Error, Lifetime, PerCpuAllocator, Prefault};

use crate::util::{assert_resident_matches, quiet};

fn addr<T>(v: &pcpu::PerCpu<T>) -> usize {
    std::ptr::from_ref(v.get(0)) as usize
}

/// An allocator (64 KiB units, no background thread) whose thread caches
/// hold at most `cap` areas per size. With `cap <= 3` a miss allocates just
/// the one area (a refill takes at most half the capacity), which keeps the
/// counts below exact.
fn with_cache(cap: usize) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .background_balance(false)
        .thread_cache(cap)
        // Every unit resident once populated, whatever the test thread's
        // affinity: resident memory is compared with Percpu.
        .prefault(Prefault::AllUnits)
        .build()
        .unwrap()
}

#[test]
fn a_dropped_area_serves_the_next_request_zeroed() {
    let alloc = with_cache(3);
    let a = alloc.per_cpu_zeroed::<u64>().unwrap();
    let first = addr(&a);
    let b = alloc
        .per_cpu(|cpu| AtomicU64::new(0xdead_0000 + cpu as u64))
        .unwrap();
    drop(b);
    drop(a);
    assert_eq!(alloc.stats().thread_cached, 2);
    // Last in, first out; the stale pattern of `b` is not visible.
    let c = alloc.per_cpu_zeroed::<u64>().unwrap();
    assert_eq!(addr(&c), first);
    let d = alloc.per_cpu_zeroed::<u64>().unwrap();
    assert!(d.iter().all(|v| *v == 0), "reused area zeroed");
    let s = alloc.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (2, 0));
    // Only two allocations reached the core.
    assert_eq!(s.total_allocations, 2);
    // Another size or alignment is another class.
    drop(c);
    let e = alloc.per_cpu_zeroed::<u32>().unwrap();
    assert_ne!(addr(&e), first);
    assert_eq!(alloc.stats().thread_cached, 1);
    drop((d, e));
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0);
    alloc.check_invariants().unwrap();
}

#[test]
fn a_full_class_frees_its_older_half_and_balance_trims() {
    let alloc = with_cache(8);
    let v: Vec<_> = (0..20_000)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    let peak = alloc.stats();
    drop(v);
    let s = alloc.stats();
    assert!(s.thread_cached <= 8 && s.thread_cached >= 4, "{s:?}");
    assert_eq!(s.live_allocations, s.thread_cached);
    // Balancing trims the caller's cache first, so the memory comes back.
    alloc.settle();
    let s = alloc.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (0, 0));
    assert!(s.populated_pages < peak.populated_pages / 4, "{s:?}");
    assert_resident_matches(&alloc);
    alloc.check_invariants().unwrap();
}

#[test]
fn thread_exit_frees_the_thread_cache() {
    let alloc = quiet("linux-5.14", 64 << 10);
    std::thread::scope(|s| {
        // Joined explicitly: the join waits for the thread's thread-local
        // destructors, the end of the scope does not.
        s.spawn(|| {
            let v: Vec<_> = (0..10)
                .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
                .collect();
            drop(v);
            assert!(alloc.stats().thread_cached >= 10);
        })
        .join()
        .unwrap();
    });
    assert_eq!(alloc.stats().live_allocations, 0);
    alloc.check_invariants().unwrap();
}

#[test]
fn a_trim_reaches_other_threads_at_their_next_operation() {
    let alloc = with_cache(3);
    std::thread::scope(|s| {
        // Made inside the scope, so that a failing assertion on either side
        // drops the senders and ends the other side instead of hanging.
        let (to_worker, from_main) = std::sync::mpsc::channel::<()>();
        let (to_main, from_worker) = std::sync::mpsc::channel::<u64>();
        let alloc = &alloc;
        let worker = s.spawn(move || {
            let v: Vec<_> = (0..10)
                .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
                .collect();
            drop(v);
            to_main.send(alloc.stats().thread_cached).unwrap();
            from_main.recv().unwrap();
            // The trim is seen here: the cache is freed, and this request
            // goes to the allocator.
            let w = alloc.per_cpu_zeroed::<u64>().unwrap();
            assert_eq!(alloc.stats().live_allocations, 1);
            drop(w);
            to_main.send(alloc.stats().thread_cached).unwrap();
            from_main.recv().unwrap();
        });
        let cached = from_worker.recv().unwrap();
        assert!(cached > 0);
        assert_eq!(alloc.stats().live_allocations, cached);
        alloc.trim_thread_caches();
        assert_eq!(alloc.stats().live_allocations, cached, "not ours to free");
        to_worker.send(()).unwrap();
        assert_eq!(from_worker.recv().unwrap(), 1);
        assert_eq!(alloc.stats().live_allocations, 1, "the worker's new drop");
        to_worker.send(()).unwrap();
        worker.join().unwrap();
    });
    assert_eq!(alloc.stats().live_allocations, 0);
}

#[test]
fn no_cache_when_turned_off_for_large_objects_or_in_a_lifetime_scope() {
    let off = with_cache(0);
    drop(off.per_cpu_zeroed::<u64>().unwrap());
    assert_eq!(off.stats().live_allocations, 0);

    let alloc = quiet("pcpu", 64 << 10);
    drop(alloc.per_cpu_zeroed::<[u64; 33]>().unwrap()); // 264 bytes
    assert_eq!(alloc.stats().live_allocations, 0);
    // A request in a lifetime scope is placed by its class, not served from
    // the cache (a drop there may still fill the cache).
    let outside = alloc.per_cpu_zeroed::<u64>().unwrap();
    let cached_addr = addr(&outside);
    drop(outside);
    let before = alloc.stats();
    let inside = with_lifetime(Lifetime(7), || alloc.per_cpu_zeroed::<u64>().unwrap());
    assert_ne!(addr(&inside), cached_addr);
    let s = alloc.stats();
    assert_eq!(
        (s.live_allocations, s.thread_cached),
        (before.live_allocations + 1, before.thread_cached)
    );
    drop(inside);
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0);
    // The Linux policies ignore hints: a scope changes nothing there, and
    // the cache serves and keeps the scope's requests like any other.
    let linux = quiet("linux-5.14", 64 << 10);
    let outside = linux.per_cpu_zeroed::<u64>().unwrap();
    let cached_addr = addr(&outside);
    drop(outside);
    let before = linux.stats();
    let inside = with_lifetime(Lifetime(7), || linux.per_cpu_zeroed::<u64>().unwrap());
    assert_eq!(addr(&inside), cached_addr);
    assert_eq!(linux.stats().thread_cached, before.thread_cached - 1);
    drop(inside);
    assert_eq!(linux.stats().thread_cached, before.thread_cached);

    let too_big = PerCpuAllocator::builder().thread_cache(4097).build();
    assert!(
        matches!(
            too_big,
            Err(Error::InvalidConfig {
                setting: "thread_cache",
                ..
            })
        ),
        "{too_big:?}"
    );
}

/// Allocate and drop one `[u32; N]` for each listed `N`.
macro_rules! drop_sizes {
    ($alloc:expr, $($n:literal),*) => {
        $(drop($alloc.per_cpu_zeroed::<[u32; $n]>().unwrap());)*
    };
}

#[test]
fn seventeen_classes_evict_the_oldest() {
    let a = with_cache(3);
    let b = with_cache(3);
    drop_sizes!(a, 1, 2, 3, 4, 5, 6, 7, 8);
    drop_sizes!(b, 1, 2, 3, 4, 5, 6, 7, 8);
    assert_eq!(a.stats().thread_cached, 8);
    assert_eq!(b.stats().thread_cached, 8);
    // A 17th class (size, alignment and allocator) frees the oldest: `a`'s
    // `[u32; 1]`.
    drop_sizes!(b, 9);
    let s = a.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (7, 7));
    assert_eq!(b.stats().thread_cached, 9);
    // Trimming one allocator leaves the other's classes alone.
    a.trim_thread_caches();
    assert_eq!(a.stats().live_allocations, 0);
    assert_eq!(b.stats().thread_cached, 9);
    b.trim_thread_caches();
    assert_eq!(b.stats().live_allocations, 0);
}

#[test]
fn an_active_thread_flushes_after_a_background_run() {
    let alloc = PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .thread_cache(3)
        .build()
        .unwrap();
    let v: Vec<_> = (0..100)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    drop(v);
    assert!(alloc.wait_idle(Duration::from_secs(10)));
    let cached = alloc.stats().thread_cached;
    assert!(cached > 0);
    let runs = alloc.stats().balance_runs;
    // Raw frees are never cached: filling and emptying chunks schedules a
    // background run.
    let raws: Vec<_> = (0..20_000)
        .map(|_| alloc.alloc_raw(8, 8).unwrap())
        .collect();
    for r in raws {
        alloc.free_raw(r).unwrap();
    }
    assert!(alloc.wait_idle(Duration::from_secs(10)));
    let s = alloc.stats();
    assert!(s.balance_runs > runs, "{s:?}");
    assert_eq!(s.thread_cached, cached, "kept until this thread acts");
    // The next operation on this thread sees that a run started after the
    // areas were cached, frees them, and asks the allocator.
    let one = alloc.per_cpu_zeroed::<u64>().unwrap();
    let s = alloc.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (1, 0));
    drop(one);
    alloc.check_invariants().unwrap();
}

#[test]
fn objects_dropped_on_another_thread_are_cached_and_reused_there() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let (tx, rx) = std::sync::mpsc::channel::<pcpu::PerCpu<AtomicU64>>();
    std::thread::scope(|s| {
        let alloc = &alloc;
        let consumer = s.spawn(move || {
            let mut reused = 0;
            for v in rx {
                let seen: Vec<u64> = v.iter().map(|x| x.load(Ordering::Relaxed)).collect();
                assert!(seen.iter().all(|&x| x == seen[0]), "{seen:?}");
                let a = addr(&v);
                drop(v); // cached here, on the consumer
                let w = alloc.per_cpu(|cpu| AtomicU64::new(cpu as u64)).unwrap();
                reused += usize::from(addr(&w) == a);
                assert!(w
                    .iter()
                    .enumerate()
                    .all(|(c, x)| x.load(Ordering::Relaxed) == c as u64));
            }
            reused
        });
        for i in 0..1000u64 {
            tx.send(alloc.per_cpu(|_| AtomicU64::new(i)).unwrap())
                .unwrap();
        }
        drop(tx);
        assert_eq!(
            consumer.join().unwrap(),
            1000,
            "each drop served the next allocation"
        );
    });
    // What is left is this thread's neighbours from its last miss.
    let s = alloc.stats();
    assert_eq!(s.live_allocations, s.thread_cached);
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0);
    alloc.check_invariants().unwrap();
}

#[test]
fn a_new_size_after_a_trim_elsewhere_flushes_the_stale_classes() {
    let alloc = with_cache(3);
    std::thread::scope(|s| {
        let alloc = &alloc;
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let worker = s.spawn(move || {
            drop(alloc.per_cpu_zeroed::<u64>().unwrap());
            done.send(()).unwrap();
            wait.recv().unwrap();
            // First use of another size after the trim: the stale `u64`
            // class is freed too.
            drop(alloc.per_cpu_zeroed::<u32>().unwrap());
            let s = alloc.stats();
            assert_eq!((s.live_allocations, s.thread_cached), (1, 1));
        });
        finished.recv().unwrap();
        alloc.trim_thread_caches();
        go.send(()).unwrap();
        worker.join().unwrap();
    });
    assert_eq!(alloc.stats().live_allocations, 0);
}

#[test]
fn a_counter_on_a_reused_area_starts_at_zero() {
    let alloc = with_cache(3);
    let c = alloc.counter().unwrap();
    c.add(41);
    c.inc();
    assert_eq!(c.sum(), 42);
    drop(c);
    assert_eq!(alloc.stats().thread_cached, 1);
    let d = alloc.counter().unwrap();
    assert_eq!(alloc.stats().thread_cached, 0, "the same area again");
    assert_eq!(d.sum(), 0);
    d.dec();
    assert_eq!(d.sum(), -1);
}

#[test]
fn a_miss_caches_neighbours_so_that_threads_do_not_share_cache_lines() {
    let alloc = quiet("linux-5.14", 64 << 10); // 32 per size: refills of 16 u64
    let first = alloc.per_cpu_zeroed::<u64>().unwrap();
    let s = alloc.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (16, 15));
    // The next requests take the neighbours, in address order, without the
    // allocator.
    let next: Vec<_> = (0..15)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    let addrs: Vec<usize> = std::iter::once(addr(&first))
        .chain(next.iter().map(addr))
        .collect();
    assert!(addrs.windows(2).all(|w| w[1] == w[0] + 8), "{addrs:?}");
    assert_eq!(alloc.stats().total_allocations, 16);
    let other = std::thread::scope(|s| {
        s.spawn(|| {
            let v = alloc.per_cpu_zeroed::<u64>().unwrap();
            let a = addr(&v);
            drop(v);
            alloc.trim_thread_caches();
            a
        })
        .join()
        .unwrap()
    });
    // Another thread's first object (its hot one in a pair loop) starts a
    // refill of its own, at least 128 bytes from this thread's first.
    assert!(other.abs_diff(addrs[0]) >= 128, "{other} {addrs:?}");
    drop((first, next));
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0);
    alloc.check_invariants().unwrap();
}
