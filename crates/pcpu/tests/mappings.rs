//! Depopulation must not eat the process's mappings: with many units and
//! chunks whose empty pages alternate with used ones, a chunk stays one
//! mapping (without guard pages, the default), where per-unit protection
//! would split it at every populated run in every unit and run into
//! `vm.max_map_count`, failing any `mmap` of the process (found by a
//! review: 256 units and 300,000 objects took 65,531 mappings, after which
//! `std::thread::spawn` failed).
//!
//! Its own test binary with one test: it counts the lines of
//! /proc/self/maps, which other tests would disturb.

use pcpu::PerCpuAllocator;

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

/// Mappings the process gained after filling three chunks of 256 units
/// with page-sized objects, freeing every other one and settling.
fn mappings_added(guard_pages: bool) -> usize {
    let before = mappings();
    let alloc = PerCpuAllocator::builder()
        .policy("pcpu".parse().unwrap())
        .units(256)
        .unit_size(64 << 10)
        .background_balance(false)
        .guard_pages(guard_pages)
        .build()
        .unwrap();
    let mut objs = Vec::new();
    while alloc.stats().chunks < 4 {
        objs.push(alloc.per_cpu_zeroed::<[u64; 512]>().unwrap());
    }
    let kept: Vec<_> = objs.into_iter().step_by(2).collect();
    alloc.settle();
    let s = alloc.stats();
    assert!(s.balance_depopulated_pages > 0, "{s:?}");
    let added = mappings() - before.min(mappings());
    drop(kept);
    added
}

#[test]
fn depopulation_keeps_each_chunk_one_mapping() {
    let plain = mappings_added(false);
    // The first chunk, four dynamic ones, and a little slack for the
    // process's own (a thread's stack, the allocator's heap).
    assert!(plain <= 12, "{plain} mappings added");
    // The same with guard pages splits each chunk in every unit: the check
    // above can fail.
    let guarded = mappings_added(true);
    assert!(
        guarded > 256 * 3,
        "{guarded} mappings added with guard pages"
    );
}
