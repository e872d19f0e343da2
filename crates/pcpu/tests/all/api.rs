//! The typed and raw APIs: values, drops, alignment, threads, counters,
//! statistics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pcpu::{PerCpu, PerCpuAllocator, PerCpuCounter, Prefault, RawPerCpu};

use crate::util::{assert_resident_matches, quiet};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn handles_are_send_and_sync_when_their_contents_are() {
    assert_send::<PerCpuAllocator>();
    assert_sync::<PerCpuAllocator>();
    assert_send::<PerCpu<AtomicU64>>();
    assert_sync::<PerCpu<AtomicU64>>();
    assert_send::<PerCpu<Mutex<Vec<u8>>>>();
    assert_sync::<PerCpu<Mutex<Vec<u8>>>>();
    assert_send::<PerCpu<std::cell::Cell<u8>>>(); // Send, but not Sync
    assert_send::<PerCpuCounter>();
    assert_sync::<PerCpuCounter>();
    assert_send::<RawPerCpu>();
}

fn assert_unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}

/// `catch_unwind(|| alloc.per_cpu(..))` needs no `AssertUnwindSafe`: user
/// code never runs under the allocator's lock, so a panic in it cannot leave
/// the allocator half-updated.
#[test]
fn the_allocator_is_unwind_safe() {
    assert_unwind_safe::<PerCpuAllocator>();
    assert_unwind_safe::<&PerCpuAllocator>();
    assert_unwind_safe::<PerCpuCounter>();
    let alloc = quiet("linux-5.14", 64 << 10);
    let r = catch_unwind(|| alloc.per_cpu(|cpu| if cpu == 0 { panic!("init") } else { cpu }));
    assert!(r.is_err());
    alloc.check_invariants().unwrap();
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0, "the area was freed");
    let v = alloc.per_cpu(|cpu| cpu).unwrap();
    assert_eq!(*v.get(0), 0);
}

#[test]
fn values_per_cpu_get_iter_and_mut() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let units = alloc.units();
    let mut v = alloc.per_cpu(|cpu| cpu * 10).unwrap();
    assert_eq!(v.units(), units);
    for cpu in 0..units {
        assert_eq!(*v.get(cpu), cpu * 10);
    }
    assert_eq!(
        v.iter().copied().collect::<Vec<_>>(),
        (0..units).map(|c| c * 10).collect::<Vec<_>>()
    );
    *v.get_mut(0) += 1;
    for x in v.iter_mut() {
        *x += 2;
    }
    assert_eq!(*v.get(0), 3);
    assert!(*v.current() >= 2);
    assert_eq!(format!("{v:?}").matches(',').count(), units - 1);
}

#[test]
#[should_panic(expected = "out of range")]
fn get_beyond_units_panics() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let v = alloc.per_cpu(|_| 0u32).unwrap();
    let _ = v.get(alloc.units());
}

/// Counts drops of its values.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_copy_is_dropped_once_and_the_area_freed() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let drops = Arc::new(AtomicUsize::new(0));
    let before = alloc.stats().live_allocations;
    let v = alloc.per_cpu(|_| Tracked(Arc::clone(&drops))).unwrap();
    // One area owned; the miss also cached a few neighbours.
    let s = alloc.stats();
    assert_eq!(s.live_allocations - s.thread_cached, before + 1);
    let neighbours = s.thread_cached;
    drop(v);
    assert_eq!(drops.load(Ordering::Relaxed), alloc.units());
    // The area went to this thread's cache, still allocated...
    let s = alloc.stats();
    assert_eq!(
        (s.live_allocations, s.thread_cached),
        (before + 1 + neighbours, 1 + neighbours)
    );
    // ...until the cache is trimmed.
    alloc.trim_thread_caches();
    let s = alloc.stats();
    assert_eq!((s.live_allocations, s.thread_cached), (before, 0));
    alloc.check_invariants().unwrap();
}

/// `into_vec` moves every copy out once (none dropped in place, none
/// twice: memcheck in CI would see a double free of the strings) and gives
/// the area back as a drop does.
#[test]
fn into_vec_moves_the_copies_out_and_frees_the_area() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let drops = Arc::new(AtomicUsize::new(0));
    let before = alloc.stats().live_allocations;
    let v = alloc
        .per_cpu(|cpu| (format!("cpu{cpu}"), Tracked(Arc::clone(&drops))))
        .unwrap();
    let neighbours = alloc.stats().thread_cached;
    let out = v.into_vec();
    assert_eq!(drops.load(Ordering::Relaxed), 0, "moved, not dropped");
    let names: Vec<&str> = out.iter().map(|(s, _)| s.as_str()).collect();
    let expected: Vec<String> = (0..alloc.units()).map(|c| format!("cpu{c}")).collect();
    assert_eq!(names, expected);
    // The area went to this thread's cache, as after a drop.
    let s = alloc.stats();
    assert_eq!(
        (s.live_allocations, s.thread_cached),
        (before + 1 + neighbours, 1 + neighbours)
    );
    drop(out);
    assert_eq!(drops.load(Ordering::Relaxed), alloc.units());
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, before);
    // Large values bypass the cache: the area is freed at once.
    let big = alloc.per_cpu(|cpu| [cpu as u64; 64]).unwrap();
    let out = big.into_vec();
    assert!(out.iter().enumerate().all(|(c, a)| a[63] == c as u64));
    assert_eq!(alloc.stats().live_allocations, before);
    alloc.check_invariants().unwrap();
}

#[test]
fn panic_in_init_drops_what_was_made_and_frees() {
    let alloc = quiet("linux-5.14", 64 << 10);
    if alloc.units() < 2 {
        return;
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let before = alloc.stats().live_allocations;
    let r = catch_unwind(AssertUnwindSafe(|| {
        alloc.per_cpu(|cpu| {
            assert!(cpu == 0, "init fails on unit {cpu}");
            Tracked(Arc::clone(&drops))
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        drops.load(Ordering::Relaxed),
        1,
        "the one copy made was dropped"
    );
    // Freed, not cached (only the miss's neighbours are).
    let s = alloc.stats();
    assert_eq!(s.live_allocations - s.thread_cached, before, "area freed");
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, before);
    alloc.check_invariants().unwrap();
}

/// A copy whose destructor panics on unit 0.
struct PanicsOnZero(usize, Arc<AtomicUsize>);

impl Drop for PanicsOnZero {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
        assert!(self.0 != 0, "drop fails on unit 0");
    }
}

#[test]
fn a_panicking_drop_still_drops_the_other_copies() {
    let alloc = PerCpuAllocator::builder()
        .units(pcpu::possible_cpus().max(4))
        .background_balance(false)
        .thread_cache(0)
        .build()
        .unwrap();
    let before = alloc.stats().live_allocations;
    let drops = Arc::new(AtomicUsize::new(0));
    let x = alloc
        .per_cpu(|cpu| PanicsOnZero(cpu, Arc::clone(&drops)))
        .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(x))).is_err());
    assert_eq!(
        drops.load(Ordering::Relaxed),
        alloc.units(),
        "every copy dropped"
    );
    assert_eq!(alloc.stats().live_allocations, before, "area freed");
    alloc.check_invariants().unwrap();
}

#[test]
fn zero_sized_and_large_types() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let unit = alloc.per_cpu(|_| ()).unwrap();
    assert_eq!(unit.iter().count(), alloc.units());
    let mut big = alloc.per_cpu_zeroed::<[u64; 4096]>().unwrap(); // 32 KiB, the maximum
    assert!(big.iter().all(|a| a.iter().all(|&x| x == 0)));
    big.get_mut(0)[4095] = 7;
    assert_eq!(big.get(0)[4095], 7);
}

/// A struct of counters: `per_cpu_zeroed` takes it through the `derive`
/// feature's `#[derive(pcpu::Zeroable)]`, naming bytemuck through pcpu.
#[derive(pcpu::Zeroable)]
#[bytemuck(crate = "pcpu::bytemuck")]
#[repr(C)]
struct Stats {
    hits: AtomicU64,
    misses: [AtomicI64; 3],
    ratio: f64,
}

#[test]
fn zeroed_derived_struct() {
    let alloc = quiet("linux-5.14", 64 << 10);
    // Dirty an area of the same size and alignment first: the cache hands
    // it back, and `per_cpu_zeroed` must zero it.
    let dirty = alloc
        .per_cpu(|cpu| Stats {
            hits: AtomicU64::new(cpu as u64 + 1),
            misses: [AtomicI64::new(-1), AtomicI64::new(-2), AtomicI64::new(-3)],
            ratio: 0.5,
        })
        .unwrap();
    drop(dirty);
    let stats = alloc.per_cpu_zeroed::<Stats>().unwrap();
    for s in stats.iter() {
        assert_eq!(s.hits.load(Ordering::Relaxed), 0);
        assert!(s.misses.iter().all(|m| m.load(Ordering::Relaxed) == 0));
        assert_eq!(s.ratio, 0.0);
    }
    stats.current().hits.fetch_add(1, Ordering::Relaxed);
    let total: u64 = stats.iter().map(|s| s.hits.load(Ordering::Relaxed)).sum();
    assert_eq!(total, 1);
}

#[repr(C, align(64))]
struct Line(AtomicU64);

#[repr(C, align(4096))]
struct Page(u8);

#[test]
fn copies_are_aligned_and_do_not_overlap() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let lines: Vec<PerCpu<Line>> = (0..100)
        .map(|i| alloc.per_cpu(|_| Line(AtomicU64::new(i))).unwrap())
        .collect();
    let pages: Vec<PerCpu<Page>> = (0..3)
        .map(|i| alloc.per_cpu(|_| Page(i)).unwrap())
        .collect();
    for (i, l) in lines.iter().enumerate() {
        for (cpu, c) in l.iter().enumerate() {
            assert_eq!(c as *const Line as usize % 64, 0, "cpu {cpu}");
            assert_eq!(c.0.load(Ordering::Relaxed), i as u64);
        }
    }
    for (i, p) in pages.iter().enumerate() {
        assert!(p
            .iter()
            .all(|c| c as *const Page as usize % 4096 == 0 && c.0 == i as u8));
    }
    let mut addrs: Vec<usize> = lines
        .iter()
        .flat_map(|l| l.iter().map(|c| c as *const Line as usize))
        .collect();
    addrs.sort_unstable();
    assert!(addrs.windows(2).all(|w| w[1] - w[0] >= 64));
}

#[test]
fn fresh_memory_is_zero_after_reuse() {
    let alloc = quiet("linux-5.14", 64 << 10);
    for round in 0..3u64 {
        let v: Vec<PerCpu<[AtomicU64; 8]>> =
            (0..200).map(|_| alloc.per_cpu_zeroed().unwrap()).collect();
        for x in &v {
            for a in x.iter() {
                assert!(
                    a.iter().all(|w| w.load(Ordering::Relaxed) == 0),
                    "round {round}"
                );
                a.iter().for_each(|w| w.store(u64::MAX, Ordering::Relaxed));
            }
        }
        let raws: Vec<RawPerCpu> = (0..50)
            .map(|i| alloc.alloc_raw(4 + i * 12, 4).unwrap())
            .collect();
        for &r in &raws {
            for cpu in 0..alloc.units() {
                let p = alloc.ptr(r, cpu).unwrap();
                // SAFETY: `r` is live; `p` is valid for `r.size()` bytes.
                let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), r.size()) };
                assert!(bytes.iter().all(|&b| b == 0));
                bytes.fill(0xA5);
            }
        }
        for r in raws {
            alloc.free_raw(r).unwrap();
        }
    }
}

#[test]
fn threads_update_their_cpus_slot() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let hits = alloc.per_cpu(|_| AtomicU64::new(0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    hits.current().fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        hits.iter().map(|h| h.load(Ordering::Relaxed)).sum::<u64>(),
        40_000
    );
}

#[test]
fn counter_sum_is_exact_and_read_approx_is_bounded() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let c = alloc.counter().unwrap();
    let batch = c.batch();
    std::thread::scope(|s| {
        for t in 0..3 {
            let c = &c;
            s.spawn(move || {
                for i in 0..30_000i64 {
                    c.add(if (i + t) % 3 == 0 { -2 } else { 3 });
                }
            });
        }
    });
    let exact: i64 = (0..3)
        .map(|t| {
            (0..30_000i64)
                .map(|i| if (i + t) % 3 == 0 { -2 } else { 3 })
                .sum::<i64>()
        })
        .sum();
    assert_eq!(c.sum(), exact);
    let err = (c.sum() - c.read_approx()).abs();
    assert!(
        err < batch * alloc.units() as i64,
        "approximation off by {err}"
    );
    c.inc();
    c.dec();
    assert_eq!(c.sum(), exact);

    let mut every = PerCpuCounter::with_batch(&alloc, 1).unwrap();
    every.add(5);
    every.add(-8);
    assert_eq!(
        (every.sum(), every.read_approx()),
        (-3, -3),
        "batch 1 folds every update"
    );
    every.set(100);
    assert_eq!(every.sum(), 100);

    let global = PerCpuCounter::new().unwrap();
    global.add(i64::from(u32::MAX));
    assert_eq!(global.sum(), i64::from(u32::MAX));
    assert!(std::ptr::eq(pcpu::global(), pcpu::global()));
}

#[test]
fn objects_outlive_the_allocator_handle() {
    let alloc = PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .build()
        .unwrap();
    let v = alloc.per_cpu(|cpu| AtomicI64::new(cpu as i64)).unwrap();
    let c = alloc.counter().unwrap();
    drop(alloc); // the balance thread keeps running: objects hold the allocator
    c.add(2);
    v.current().fetch_add(1, Ordering::Relaxed);
    let alloc = v.allocator().clone();
    drop(v);
    drop(c);
    // Both areas (and the misses' neighbours) wait in this thread's cache,
    // which holds the allocator too.
    let s = alloc.stats();
    assert!(s.live_allocations >= 2, "{s:?}");
    assert_eq!(s.live_allocations, s.thread_cached);
    alloc.trim_thread_caches();
    assert_eq!(alloc.stats().live_allocations, 0);
    drop(alloc); // last handle: off the balance worker, its memory unmapped
}

#[test]
fn stats_and_texts() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let s0 = alloc.stats();
    assert_eq!(s0.chunks, 1);
    assert_eq!(s0.units, alloc.units());
    assert_eq!(s0.unit_size, 64 << 10);
    assert_eq!(
        s0.percpu_bytes,
        (pcpu::DEFAULT_FIRST_CHUNK_SIZE * alloc.units()) as u64
    );
    assert_resident_matches(&alloc);
    let v: Vec<_> = (0..20_000)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    let s1 = alloc.stats();
    assert_eq!(s1.live_allocations - s1.thread_cached, 20_000);
    // Refills may place and give back an extra area (an allocation and a
    // free each), never more than they keep.
    assert_eq!(s1.total_allocations - s1.total_frees, s1.live_allocations);
    assert!(s1.chunks > 1);
    assert_resident_matches(&alloc);
    drop(v);
    assert!(alloc.balance_pending());
    let runs = alloc.settle();
    let s2 = alloc.stats();
    assert_eq!(s2.balance_runs, runs as u64);
    assert_eq!(
        (s2.live_allocations, s2.total_frees),
        (0, s1.total_allocations)
    );
    assert!(s2.chunks < s1.chunks);
    assert!(alloc
        .percpu_stats_text()
        .starts_with("Percpu Memory Statistics"));
    // The page map shows the populated pages the statistics count.
    let map = alloc.page_map_text();
    let populated = map
        .lines()
        .filter(|l| l.starts_with("  "))
        .skip(1) // the key
        .filter_map(|l| l.split_whitespace().nth(1))
        .flat_map(str::chars)
        .filter(|&p| p == '#' || p == '.')
        .count();
    assert_eq!(populated, s2.populated_pages, "{map}");
    assert_eq!(map.matches("\nchunk ").count(), s2.chunks, "{map}");
    assert!(format!("{alloc:?}").contains("linux-5.14"));
    assert!(alloc.wait_idle(std::time::Duration::from_secs(10)));
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
}

#[test]
fn background_thread_balances_on_its_own() {
    // Without a thread cache every drop reaches the allocator, as in the
    // kernel (`cache::an_active_thread_flushes_after_a_background_run` covers
    // the cache).
    let alloc = PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .thread_cache(0)
        // Every unit resident once populated, whatever the test thread's
        // affinity: resident memory is compared with Percpu.
        .prefault(Prefault::AllUnits)
        .build()
        .unwrap();
    let v: Vec<_> = (0..20_000)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    let full = alloc.stats();
    drop(v);
    // No deadline at all (`Instant + Duration::MAX` overflowed).
    assert!(alloc.wait_idle(std::time::Duration::MAX));
    let after = alloc.stats();
    assert!(after.balance_runs > 0);
    assert!(after.chunks < full.chunks, "{full:?} -> {after:?}");
    assert!(
        after.percpu_bytes < full.percpu_bytes / 2,
        "{full:?} -> {after:?}"
    );
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
}

#[test]
fn iterators_visit_every_copy_once_in_cpu_order() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let mut h = alloc.per_cpu(|cpu| AtomicUsize::new(cpu * 10)).unwrap();
    let n = h.units();
    let forward: Vec<usize> = (&h)
        .into_iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(forward, (0..n).map(|c| c * 10).collect::<Vec<_>>());
    let back: Vec<usize> = h.iter().rev().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(back, (0..n).rev().map(|c| c * 10).collect::<Vec<_>>());
    let mut it = h.iter();
    assert_eq!(it.len(), n);
    it.next();
    assert_eq!(it.len(), n - 1);
    assert_eq!(it.clone().count(), n - 1);
    it.by_ref().for_each(drop);
    assert!(it.next().is_none() && it.next_back().is_none());
    for (cpu, c) in (&mut h).into_iter().enumerate() {
        *c.get_mut() += cpu;
    }
    let mut ends = h.iter_mut();
    let (first, last) = (ends.next().unwrap(), ends.next_back());
    *first.get_mut() += 1;
    assert_eq!(ends.len(), n.saturating_sub(2));
    // The two ends are distinct copies, both usable at once.
    if let Some(last) = last {
        *last.get_mut() += 0;
        assert!(!std::ptr::eq(first, last));
    }
    let got: Vec<usize> = h.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let want: Vec<usize> = (0..n).map(|c| c * 11 + usize::from(c == 0)).collect();
    assert_eq!(got, want);
    assert_eq!(format!("{:?}", h.iter()), format!("{:?}", h));

    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&h.iter());
    send_sync(&h.iter_mut());

    // And not where a slice iterator would not be: this only compiles while
    // `Iter<Cell<_>>` is not `Send` and `IterMut<Cell<_>>` not `Sync` (were
    // they, both impls of a trait would apply and the call would be
    // ambiguous).
    trait AmbiguousIfSend<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    <pcpu::Iter<'static, std::cell::Cell<u8>> as AmbiguousIfSend<_>>::check();
    <pcpu::IterMut<'static, std::cell::Cell<u8>> as AmbiguousIfSync<_>>::check();
}
