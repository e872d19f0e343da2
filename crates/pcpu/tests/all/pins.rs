//! Owner tracking (`Builder::track_owners`) and the pins report
//! (`PerCpuAllocator::pins`): which call sites and threads keep pages
//! populated.

use std::thread;

use pcpu::{PerCpu, PerCpuAllocator, PinRow, PinsReport, Policy, Prefault, RawPerCpu};

fn tracked(policy: Policy) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .policy(policy)
        .unit_size(256 << 10)
        .background_balance(false)
        .prefault(Prefault::AllUnits)
        .track_owners(true)
        .build()
        .unwrap()
}

/// A small object from one line, and that line.
fn counter(a: &PerCpuAllocator) -> (RawPerCpu, u32) {
    (a.alloc_raw(8, 8).unwrap(), line!())
}

/// A typed object from one line, and that line.
fn typed(a: &PerCpuAllocator) -> (PerCpu<u64>, u32) {
    (a.per_cpu_zeroed().unwrap(), line!())
}

/// A larger object from another line, and that line.
fn stats(a: &PerCpuAllocator) -> (RawPerCpu, u32) {
    (a.alloc_raw(64, 8).unwrap(), line!())
}

fn row(rows: &[PinRow], line: u32) -> Option<&PinRow> {
    let at = format!("{}:{line}:", file!());
    rows.iter().find(|r| r.owner.starts_with(&at))
}

/// The shares add up to the pages holding objects, and no owner pins more
/// than it touches.
fn consistent(r: &PinsReport) {
    for rows in [&r.sites, &r.threads] {
        let shares: f64 = rows.iter().map(|r| r.share_pages).sum();
        assert!(
            (shares - r.pages_with_objects as f64).abs() < 1e-6,
            "{shares} {r:?}"
        );
        for x in rows {
            assert!(x.pages_pinned <= x.pages_touched, "{x:?}");
        }
    }
    assert!(r.pages_with_objects + r.empty_pages + r.other_used_pages <= r.populated_pages);
}

#[test]
fn survivors_pin_the_pages_the_freed_objects_shared() {
    let a = tracked("linux-5.14".parse().unwrap());
    let (mut counters, mut others) = (Vec::new(), Vec::new());
    let (mut counter_line, mut stats_line) = (0, 0);
    for i in 0..256 {
        let (c, l) = counter(&a);
        counters.push(c);
        counter_line = l;
        for _ in 0..7 {
            let (s, l) = stats(&a);
            others.push(s);
            stats_line = l;
        }
        if i % 16 == 0 {
            a.check_invariants().unwrap();
        }
    }
    let r = a.pins().unwrap();
    consistent(&r);
    let (c, s) = (
        row(&r.sites, counter_line).unwrap(),
        row(&r.sites, stats_line).unwrap(),
    );
    assert_eq!((c.objects, c.bytes), (256, 256 * 8));
    assert_eq!((s.objects, s.bytes), (256 * 7, 256 * 7 * 64));
    // 456 bytes a round, placed in turn: every page holds both.
    assert!(c.pages_pinned <= 1, "{c:?}");
    assert!(c.pages_touched >= 28, "{c:?}");
    assert!(s.share_pages > 8.0 * c.share_pages, "{s:?} {c:?}");
    // One thread made them all.
    assert_eq!(r.threads.len(), 1);
    assert_eq!(r.threads[0].objects, 256 * 8);

    for o in others {
        a.free_raw(o).unwrap();
    }
    a.settle();
    a.check_invariants().unwrap();
    let r = a.pins().unwrap();
    consistent(&r);
    assert!(row(&r.sites, stats_line).is_none());
    let c = row(&r.sites, counter_line).unwrap();
    // The counters alone keep every page that holds objects.
    assert_eq!(c.pages_pinned, c.pages_touched);
    assert_eq!(c.pages_touched as usize, r.pages_with_objects);
    assert!((c.share_pages - c.pages_touched as f64).abs() < 1e-9);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["sites"][0]["pages_pinned"], c.pages_pinned);
    assert_eq!(json["pages_with_objects"], r.pages_with_objects);
    let text = r.to_string();
    assert!(
        text.contains(&format!("{}:{counter_line}:", file!())),
        "{text}"
    );
    for x in counters {
        a.free_raw(x).unwrap();
    }
    let r = a.pins().unwrap();
    assert!(r.sites.is_empty() && r.threads.is_empty());
    assert_eq!(r.pages_with_objects, 0);
    a.check_invariants().unwrap();
}

#[test]
fn typed_objects_and_threads_are_owners_too() {
    let a = tracked(Policy::pcpu());
    let mut mine = Vec::new();
    let mut line = 0;
    for _ in 0..100 {
        let (x, l) = typed(&a);
        mine.push(x);
        line = l;
    }
    let theirs = thread::Builder::new()
        .name("worker".into())
        .spawn({
            let a = a.clone();
            move || (0..50).map(|_| a.counter().unwrap()).collect::<Vec<_>>()
        })
        .unwrap()
        .join()
        .unwrap();
    a.check_invariants().unwrap();
    let r = a.pins().unwrap();
    consistent(&r);
    assert_eq!(row(&r.sites, line).unwrap().objects, 100);
    let worker = r
        .threads
        .iter()
        .find(|t| t.owner.starts_with("worker (#"))
        .unwrap();
    assert_eq!(worker.objects, 50);
    // `counter` goes through three layers of the crate: the site is still
    // the line here that called it.
    let counters = r.sites.iter().find(|s| s.objects == 50).unwrap();
    assert!(counters.owner.starts_with(file!()), "{counters:?}");
    // No thread cache: dropping frees at once, and the owners go with it.
    assert_eq!(a.stats().thread_cached, 0);
    drop(mine);
    drop(theirs);
    a.check_invariants().unwrap();
    assert!(a.pins().unwrap().sites.is_empty());
    assert_eq!(a.stats().live_allocations, 0);
}

#[test]
fn untracked_allocators_have_no_report() {
    let a = PerCpuAllocator::builder()
        .background_balance(false)
        .build()
        .unwrap();
    assert!(a.pins().is_none());
}
