//! Every error path: typed error, state unchanged, the allocator still works.
//! Fault knobs are thread-local: the allocators here have no balance thread,
//! so every system call runs on the test's thread.

use pcpu::__private::fault;
use pcpu::{Error, PerCpuAllocator, Prefault, Stats};

use crate::util::{assert_resident_matches, quiet};

/// What a failed call must leave unchanged.
fn snapshot(alloc: &PerCpuAllocator) -> (u64, usize, usize, u64, i32, u64) {
    let Stats {
        percpu_bytes,
        populated_pages,
        chunks,
        live_allocations,
        nr_empty_pop_pages,
        ..
    } = alloc.stats();
    let resident = alloc.resident_bytes().unwrap();
    (
        percpu_bytes,
        populated_pages,
        chunks,
        live_allocations,
        nr_empty_pop_pages,
        resident,
    )
}

#[test]
fn invalid_sizes_and_alignments() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let page = alloc.page_size();
    let before = snapshot(&alloc);
    for (size, align) in [
        (0, 8),
        ((32 << 10) + 1, 8),
        (8, 3),
        (8, 0),
        (8, 2 * page),
        (8, 12),
    ] {
        let e = alloc.alloc_raw(size, align).unwrap_err();
        assert!(
            matches!(e, Error::InvalidSize { .. } | Error::InvalidAlign { .. }),
            "{size}/{align}: {e}"
        );
        assert!(!e.to_string().is_empty());
    }
    assert!(matches!(
        alloc.per_cpu(|_| [0u8; 40_000]),
        Err(Error::InvalidSize { size: 40_000, .. })
    ));
    #[repr(align(8192))]
    struct Huge(#[allow(dead_code)] u8);
    assert!(matches!(
        alloc.per_cpu(|_| Huge(0)),
        Err(Error::InvalidAlign { align: 8192, .. })
    ));
    assert_eq!(snapshot(&alloc), before);
    alloc.check_invariants().unwrap();
}

#[test]
fn invalid_builder_settings() {
    let b = PerCpuAllocator::builder;
    let bad = |r: Result<PerCpuAllocator, Error>, setting: &str| match r {
        Err(Error::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
        other => panic!("expected InvalidConfig({setting}), got {other:?}"),
    };
    bad(b().unit_size(16 << 10).build(), "unit_size");
    bad(b().unit_size((64 << 10) + 100).build(), "unit_size");
    bad(b().units(0).build(), "units");
    bad(b().units(65536).build(), "units");
    bad(b().first_chunk_size(0).build(), "first_chunk_size");
    bad(
        b().unit_size(64 << 10).first_chunk_size(64 << 10).build(),
        "first_chunk_size",
    );
    bad(b().first_chunk_size(usize::MAX).build(), "first_chunk_size");
    bad(b().unit_size(2 << 30).build(), "unit_size");
    bad(b().watermarks(5, 2).build(), "watermarks.low");
    bad(b().watermarks(0, usize::MAX).build(), "watermarks.high");
    // A policy's public fields out of their knobs' ranges are refused too
    // (the core would run them clamped, and `policy()` would misreport).
    let mut p = pcpu::Policy::pcpu();
    p.reclaim_divisor = 0;
    match b().policy(p).build() {
        Err(e @ Error::InvalidPolicy(_)) => assert_eq!(
            e.to_string(),
            "invalid allocator policy: bad value `0` for policy knob `reclaim_divisor`: \
             expected a count (1 or more) or max"
        ),
        other => panic!("expected InvalidPolicy, got {other:?}"),
    }
    let mut p = pcpu::Policy::default();
    p.empty_pop_low = 5;
    assert!(matches!(
        b().policy(p).build(),
        Err(Error::InvalidPolicy(_))
    ));
    // The builder's watermarks replace the policy's, checked on their own.
    p.empty_pop_low = 2;
    assert!(b()
        .policy(p)
        .watermarks(6, 8)
        .background_balance(false)
        .build()
        .is_ok());
    let cpus = pcpu::possible_cpus();
    if cpus > 1 {
        match b().units(cpus - 1).build() {
            Err(e @ Error::TooFewUnits { units, cpus: c }) => {
                assert_eq!((units, c), (cpus - 1, cpus));
                assert!(e.to_string().contains("possible CPUs"));
            }
            other => panic!("expected TooFewUnits, got {other:?}"),
        }
    }
    // More units than CPUs is fine.
    let a = b()
        .units(cpus + 1)
        .background_balance(false)
        .build()
        .unwrap();
    assert_eq!(a.per_cpu(|c| c).unwrap().iter().count(), cpus + 1);
}

#[test]
fn chunk_reservation_failure_changes_nothing() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let before = snapshot(&alloc);
    fault::fail_next_reserves(1);
    // 32 KiB does not fit in the 16 KiB first chunk: a chunk must be mapped.
    let e = alloc.alloc_raw(32 << 10, 8).unwrap_err();
    fault::reset();
    match &e {
        Error::Map(m) => assert!(m.is_reserve() && m.raw_os_error() == Some(12), "{m}"),
        other => panic!("expected Map(reserve), got {other:?}"),
    }
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(snapshot(&alloc), before);
    assert_eq!(alloc.stats().failed_allocations, 1, "counted as a failure");
    alloc.check_invariants().unwrap();
    let raw = alloc.alloc_raw(32 << 10, 8).unwrap();
    assert_eq!(alloc.stats().chunks, 2);
    alloc.free_raw(raw).unwrap();
}

#[test]
fn population_failure_rolls_back() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let before = snapshot(&alloc);
    fault::fail_next_populates(1);
    let e = alloc.per_cpu_zeroed::<[u64; 4096]>().unwrap_err();
    fault::reset();
    match &e {
        Error::Map(m) => assert!(m.is_populate(), "{m}"),
        other => panic!("expected Map(populate), got {other:?}"),
    }
    // The chunk created for the request stays (as in the kernel), empty and
    // unpopulated: nothing else changed, nothing is resident.
    let after = snapshot(&alloc);
    assert_eq!(after.2, before.2 + 1, "one chunk created");
    assert_eq!(
        (after.0, after.1, after.3, after.5),
        (before.0, before.1, before.3, before.5)
    );
    assert_eq!(alloc.stats().failed_allocations, 1);
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
    let ok = alloc.per_cpu_zeroed::<[u64; 4096]>().unwrap();
    assert!(ok.iter().all(|a| a.iter().all(|&x| x == 0)));
    assert_resident_matches(&alloc);
}

#[test]
fn balance_population_failure_is_reported_and_consistent() {
    let alloc = PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .watermarks(2, 8)
        .background_balance(false)
        // Every unit resident once populated, whatever the test thread's
        // affinity: resident memory is compared with Percpu.
        .prefault(Prefault::AllUnits)
        .build()
        .unwrap();
    // Use up the first chunk's empty pages so that the balance work populates.
    let v: Vec<_> = (0..4)
        .map(|_| alloc.per_cpu_zeroed::<[u8; 4096]>().unwrap())
        .collect();
    assert!(alloc.balance_pending());
    fault::fail_next_populates(1);
    let report = alloc.balance_now();
    fault::reset();
    assert!(report.failures >= 1, "{report:?}");
    assert!(alloc.stats().balance_failures >= 1);
    alloc.check_invariants().unwrap();
    assert_resident_matches(&alloc);
    drop(v);
    alloc.settle();
    alloc.check_invariants().unwrap();
}

#[test]
fn double_free_and_stale_raw_handles() {
    let alloc = quiet("linux-5.14", 32 << 10);
    let raw = alloc.alloc_raw(24, 8).unwrap();
    assert_eq!(alloc.free_raw(raw).unwrap(), 24);
    let before = snapshot(&alloc);
    // A double free and a look-up of the freed handle: one error.
    let e = alloc.free_raw(raw).unwrap_err();
    assert!(matches!(e, Error::NotLive { .. }), "{e}");
    assert!(e.to_string().contains("freed already"), "{e}");
    assert!(matches!(alloc.ptr(raw, 0), Err(Error::NotLive { .. })));
    assert_eq!(snapshot(&alloc), before);

    // Two whole-chunk allocations; freeing both makes two free chunks, and
    // the balance work destroys one: its handle is detected as stale.
    let a = alloc.alloc_raw(32 << 10, 8).unwrap();
    let b = alloc.alloc_raw(32 << 10, 8).unwrap();
    assert_ne!(a.chunk(), b.chunk());
    alloc.free_raw(a).unwrap();
    alloc.free_raw(b).unwrap();
    alloc.settle();
    for r in [a, b] {
        assert!(matches!(alloc.free_raw(r), Err(Error::NotLive { .. })));
    }
    // One chunk was destroyed, one spared: `c` lands in the spared chunk,
    // `d` in a new chunk that reuses the destroyed chunk's id. The destroyed
    // chunk's handle (same id, same offset and size as `d`) is refused (its
    // ticket is not `d`'s), and `d` survives the attempt.
    assert_eq!(alloc.stats().chunks, 2);
    let c = alloc.alloc_raw(32 << 10, 8).unwrap();
    let d = alloc.alloc_raw(32 << 10, 8).unwrap();
    let destroyed: Vec<_> = [a, b]
        .into_iter()
        .filter(|s| s.chunk() == d.chunk())
        .collect();
    assert_eq!(destroyed.len(), 1, "the new chunk reuses the destroyed id");
    assert!(matches!(
        alloc.free_raw(destroyed[0]),
        Err(Error::NotLive { .. })
    ));
    assert!(alloc.ptr(d, 0).is_ok(), "d is still live");
    alloc.free_raw(c).unwrap();
    alloc.free_raw(d).unwrap();
    alloc.check_invariants().unwrap();
}

/// A stale copy of a freed raw handle never reaches what was allocated at
/// its place since: a typed `PerCpu` (which the free would have handed out
/// twice), an area in the thread's cache, or a new raw allocation of the
/// same size. Before the live-raw table, all three frees succeeded.
#[test]
fn stale_raw_handles_never_free_what_came_after() {
    for cache in [0, 32] {
        let alloc = PerCpuAllocator::builder()
            .background_balance(false)
            .thread_cache(cache)
            .build()
            .unwrap();
        let stale = alloc.alloc_raw(8, 8).unwrap();
        alloc.free_raw(stale).unwrap();

        // A typed value at the same place.
        let typed = alloc.per_cpu(|cpu| cpu as u64 + 1).unwrap();
        assert_eq!(
            typed.get(0) as *const u64 as *const u8,
            stale_addr(&alloc, stale)
        );
        let before = snapshot(&alloc);
        assert!(
            matches!(alloc.free_raw(stale), Err(Error::NotLive { .. })),
            "cache {cache}"
        );
        assert!(matches!(alloc.ptr(stale, 0), Err(Error::NotLive { .. })));
        assert_eq!(snapshot(&alloc), before);
        // Dropped: with the cache on the area stays allocated in the
        // thread's cache, and the stale handle cannot free it there either.
        drop(typed);
        assert!(matches!(alloc.free_raw(stale), Err(Error::NotLive { .. })));
        let again = alloc.per_cpu(|_| 7u64).unwrap();
        let other = {
            let a = alloc.clone();
            std::thread::spawn(move || a.per_cpu(|_| 9u64).unwrap().iter().sum::<u64>())
                .join()
                .unwrap()
        };
        assert_eq!(other, 9 * alloc.units() as u64);
        assert!(
            again.iter().all(|&v| v == 7),
            "the cached area was not handed out twice"
        );
        drop(again);
        alloc.trim_thread_caches();

        // A new raw allocation of the same size at the same place.
        let fresh = alloc.alloc_raw(8, 8).unwrap();
        assert_eq!(
            (fresh.chunk(), fresh.offset()),
            (stale.chunk(), stale.offset())
        );
        assert!(matches!(alloc.free_raw(stale), Err(Error::NotLive { .. })));
        assert!(alloc.ptr(fresh, 0).is_ok(), "fresh is still live");
        assert_eq!(alloc.free_raw(fresh).unwrap(), 8);
        assert!(matches!(alloc.free_raw(fresh), Err(Error::NotLive { .. })));
        alloc.check_invariants().unwrap();
        assert_eq!(alloc.stats().live_allocations, 0);
    }
}

/// Where `raw`'s unit-0 copy was (its chunk is still mapped).
fn stale_addr(alloc: &PerCpuAllocator, raw: pcpu::RawPerCpu) -> *const u8 {
    let probe = alloc.alloc_raw(8, 8).unwrap();
    assert_eq!(probe.chunk(), raw.chunk());
    let p = alloc.ptr(probe, 0).unwrap().as_ptr() as usize;
    alloc.free_raw(probe).unwrap();
    (p as isize + raw.offset() as isize - probe.offset() as isize) as *const u8
}

#[test]
fn bad_cpu_and_foreign_handles() {
    let alloc = quiet("linux-5.14", 64 << 10);
    let other = quiet("linux-5.14", 64 << 10);
    let raw = alloc.alloc_raw(8, 8).unwrap();
    let units = alloc.units();
    assert!(
        matches!(alloc.ptr(raw, units), Err(Error::BadCpu { cpu, units: u }) if cpu == units && u == units)
    );
    assert!(alloc.ptr(raw, units - 1).is_ok());
    assert!(matches!(other.ptr(raw, 0), Err(Error::ForeignHandle)));
    assert!(matches!(other.free_raw(raw), Err(Error::ForeignHandle)));
    assert!(Error::ForeignHandle
        .to_string()
        .contains("another allocator"));
    alloc.free_raw(raw).unwrap();
}
