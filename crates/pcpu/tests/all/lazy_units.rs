//! Units of CPUs the process does not run on take no memory for objects
//! that are only written on the CPUs that run them (`Builder::prefault`).
//!
//! The machine's possible CPUs all run the tests, so these allocators get 32
//! times as many units as there are possible CPUs: a VM sized for CPU
//! hot-plug, seen from inside.

use std::sync::atomic::{AtomicU64, Ordering};

use pcpu::{possible_cpus, PerCpuAllocator, Prefault};

fn many_units(prefault: Prefault) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .units(32 * possible_cpus())
        .background_balance(false)
        .thread_cache(0)
        .prefault(prefault)
        .build()
        .unwrap()
}

/// Resident bytes may be at most those of the possible CPUs' units (the
/// units the process can run on), plus `extra` pages.
fn assert_only_running_units_resident(alloc: &PerCpuAllocator, extra: u64) {
    let percpu = alloc.stats().percpu_bytes;
    let per_unit = percpu / alloc.units() as u64;
    let resident = alloc.resident_bytes().unwrap();
    let bound = per_unit * possible_cpus() as u64 + extra * alloc.page_size() as u64;
    assert!(
        resident <= bound,
        "resident {resident} B above {bound} B ({percpu} B populated in {} units)",
        alloc.units()
    );
    // And the running units' pages are there: populated means resident in
    // the units that were pre-faulted.
    assert!(
        resident >= per_unit,
        "resident {resident} B, one unit {per_unit} B"
    );
}

#[test]
fn zeroed_objects_and_counters_take_memory_on_running_cpus_only() {
    let alloc = many_units(Prefault::AllowedCpus);
    let mut objs: Vec<_> = (0..20_000)
        .map(|_| alloc.per_cpu_zeroed::<AtomicU64>().unwrap())
        .collect();
    let counters: Vec<_> = (0..2_000).map(|_| alloc.counter().unwrap()).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for (i, o) in objs.iter().enumerate() {
                    o.current().fetch_add(i as u64, Ordering::Relaxed);
                }
                for c in &counters {
                    c.add(3);
                }
            });
        }
    });
    let populated = alloc.stats().percpu_bytes;
    assert!(populated > 64 * 32 * 4096, "{populated} B populated");
    assert_only_running_units_resident(&alloc, 0);
    // Reading every copy (the cold ones map the shared zero page) takes no
    // memory either.
    for (i, o) in objs.iter().enumerate() {
        let total: u64 = o.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 2 * i as u64);
    }
    for c in &counters {
        assert_eq!(c.sum(), 6);
    }
    assert_only_running_units_resident(&alloc, 0);
    // Reuse: the freed places are handed out again, and zeroing them checks
    // every copy but writes only the written ones.
    objs.truncate(5_000);
    let again: Vec<_> = (0..15_000)
        .map(|_| alloc.per_cpu_zeroed::<AtomicU64>().unwrap())
        .collect();
    assert!(again
        .iter()
        .all(|o| o.iter().all(|c| c.load(Ordering::Relaxed) == 0)));
    assert_only_running_units_resident(&alloc, 0);
    alloc.check_invariants().unwrap();
    drop((objs, again, counters));
    alloc.settle();
    assert_only_running_units_resident(&alloc, 0);
    alloc.check_invariants().unwrap();
}

#[test]
fn every_unit_is_resident_with_prefault_all_units() {
    let alloc = many_units(Prefault::AllUnits);
    let objs: Vec<_> = (0..5_000)
        .map(|_| alloc.per_cpu_zeroed::<u64>().unwrap())
        .collect();
    assert_eq!(alloc.resident_bytes().unwrap(), alloc.stats().percpu_bytes);
    drop(objs);
}

#[test]
fn a_written_cold_copy_is_zeroed_when_its_place_is_reused() {
    let alloc = many_units(Prefault::AllowedCpus);
    let cold = alloc.units() - 1;
    let before = alloc.resident_bytes().unwrap();
    let page = alloc.page_size() as u64;
    // Sizes through each path of the zeroing: one word, whole words, whole
    // words and a tail; the last byte written.
    for size in [8, 24, 20] {
        let raw = alloc.alloc_raw(size, 4).unwrap();
        let p = alloc.ptr(raw, cold).unwrap();
        // SAFETY: `raw` is live; `p` points to its `size` writable bytes in
        // the last unit.
        unsafe { p.as_ptr().add(size - 1).write(0x5a) };
        // The first write took one page of memory in that unit.
        assert_eq!(alloc.resident_bytes().unwrap(), before + page);
        alloc.free_raw(raw).unwrap();

        let again = alloc.alloc_raw(size, 4).unwrap();
        assert_eq!((again.chunk(), again.offset()), (raw.chunk(), raw.offset()));
        let p = alloc.ptr(again, cold).unwrap();
        // SAFETY: `again` is live; its `size` bytes of the last unit are
        // readable.
        let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0), "size {size}: {bytes:?}");
        alloc.free_raw(again).unwrap();
    }

    // Typed: a constructor writes every copy; the next zeroed object in its
    // place reads zero in every copy.
    let typed = alloc.per_cpu(|cpu| [cpu as u32 + 1; 5]).unwrap();
    assert!(alloc.resident_bytes().unwrap() > before + page);
    drop(typed);
    let zeroed = alloc.per_cpu_zeroed::<[u32; 5]>().unwrap();
    assert!(zeroed.iter().all(|c| *c == [0; 5]));
}

#[test]
fn counter_set_leaves_unwritten_slots_alone() {
    let alloc = many_units(Prefault::AllowedCpus);
    let mut c = alloc.counter().unwrap();
    c.add(5);
    let before = alloc.resident_bytes().unwrap();
    c.set(-7);
    assert_eq!(c.sum(), -7);
    assert_eq!(alloc.resident_bytes().unwrap(), before);
}

#[test]
fn zero_values_from_a_constructor_leave_cold_copies_untouched() {
    let alloc = many_units(Prefault::AllowedCpus);
    let objs: Vec<_> = (0..20_000)
        .map(|_| alloc.per_cpu(|_| AtomicU64::new(0)).unwrap())
        .collect();
    assert_only_running_units_resident(&alloc, 0);
    drop(objs);
    // A value that is not zero is written; the next zero value in its place
    // is written over it.
    let cold = alloc.units() - 1;
    let a = alloc
        .per_cpu(|cpu| AtomicU64::new(if cpu == cold { 9 } else { 0 }))
        .unwrap();
    let place = std::ptr::from_ref(a.get(0)) as usize;
    assert_eq!(a.get(cold).load(Ordering::Relaxed), 9);
    assert_eq!(a.get(0).load(Ordering::Relaxed), 0);
    drop(a);
    let b = alloc.per_cpu(|_| AtomicU64::new(0)).unwrap();
    assert_eq!(std::ptr::from_ref(b.get(0)) as usize, place);
    assert!(b.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    assert_only_running_units_resident(&alloc, 1);
    // Values that own something are dropped once, by the handle.
    let shared = std::sync::Arc::new(());
    let c = alloc
        .per_cpu(|cpu| (cpu == 0).then(|| std::sync::Arc::clone(&shared)))
        .unwrap();
    assert_eq!(std::sync::Arc::strong_count(&shared), 2);
    assert!(c.iter().skip(1).all(Option::is_none));
    drop(c);
    assert_eq!(std::sync::Arc::strong_count(&shared), 1);
}
