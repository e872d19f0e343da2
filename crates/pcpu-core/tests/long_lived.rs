//! The long-lived prediction (`Policy::long_lived`) through the allocator's
//! public paths: a request is routed and learnt from once, whichever way it
//! is placed (the core's fallback, the two-phase API the `pcpu` crate
//! uses), and a request that places nothing teaches nothing.
use pcpu_core::*;

const MOUNT: u64 = 0x200;
const BURST: u64 = 0x300;

fn kernel_like() -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, Policy::pcpu())
}

/// An allocator whose long-lived prediction learnt MOUNT's site from two
/// mounts, each followed by a burst of another task (the long-lived class
/// has no region yet).
fn taught() -> (Allocator, FailingBackend) {
    let mut a = kernel_like();
    let mut b = FailingBackend::default();
    for i in 0..2u64 {
        a.alloc_class(
            &mut b,
            8,
            8,
            AllocFlags::NORMAL,
            ClassHint::task(100 + i).at_site(MOUNT),
        )
        .unwrap();
        for _ in 0..70 {
            a.alloc_class(
                &mut b,
                8,
                8,
                AllocFlags::NORMAL,
                ClassHint::task(1000 + i).at_site(BURST),
            )
            .unwrap();
        }
    }
    (a, b)
}

/// [`taught`], then the chunks are full but for 1024-byte holes on every other page, no
/// page is free and no chunk can be created.
fn setup() -> (Allocator, FailingBackend) {
    let (mut a, mut b) = taught();
    assert_eq!(a.long_lived_objects(), 0);
    b.fail_create = u32::MAX;
    let mut big = Vec::new();
    while let Ok(x) = a.alloc(&mut b, 1024, 1024, AllocFlags::NORMAL) {
        big.push(x);
    }
    while a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).is_ok() {}
    for x in big.iter().step_by(2) {
        a.free(x.chunk, x.offset).unwrap();
    }
    a.check_invariants().unwrap();
    (a, b)
}

/// After plain first fit placed a task's first object (the core's
/// fallback), its second object is its own, not the long-lived class's.
#[test]
fn core_alloc_class_fallback_then_second_object() {
    let (mut a, mut b) = setup();
    let x = ClassHint::task(5000).at_site(MOUNT);
    a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, x).unwrap();
    assert_eq!(a.long_lived_objects(), 1);
    let req = a.request(8, 8).unwrap();
    // Second object: routed to its own class, which finds a hole.
    let r = a.alloc_area_class(req, AllocFlags::NORMAL, x);
    assert!(
        r.is_ok(),
        "core path: second object placed in its own region: {r:?}"
    );
}

/// The same through the two-phase API (the `pcpu` crate's pattern):
/// `NeedsChunk`, no chunk, plain `first_fit_or_fail`; the task's next
/// request is its second object, not a retry of the first.
#[test]
fn two_phase_fallback_then_second_object() {
    let (mut a, _b) = setup();
    let x = ClassHint::task(5000).at_site(MOUNT);
    let req = a.request(8, 8).unwrap();
    assert_eq!(
        a.alloc_area_class(req, AllocFlags::NORMAL, x),
        Err(AllocError::NeedsChunk)
    );
    assert_eq!(a.long_lived_objects(), 1);
    a.first_fit_or_fail(req, AllocFlags::NORMAL).unwrap();
    a.finish_alloc();
    // A new request (second object), not a retry.
    let r = a.alloc_area_class(req, AllocFlags::NORMAL, x);
    assert!(
        r.is_ok(),
        "second object should go to its own class, got {r:?} (stale LONG_LIVED)"
    );
}

/// A request whose population fails (the area is freed) teaches nothing:
/// the caller's retry is the task's first object again, and the site stays
/// learnt.
#[test]
fn a_populate_failure_teaches_nothing() {
    let (mut a, mut b) = taught();
    while b.inner.created == 0 {
        a.alloc(&mut b, 1024, 1024, AllocFlags::NORMAL).unwrap();
    }
    let x = ClassHint::task(5000).at_site(MOUNT);
    b.fail_populate = 1;
    let r = a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, x);
    assert!(matches!(r, Err(AllocError::Populate(_))), "{r:?}");
    a.check_invariants().unwrap();
    assert_eq!(a.long_lived_objects(), 0);
    // The user retries the same object.
    a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, x).unwrap();
    assert_eq!(a.long_lived_objects(), 1);
    let before = a.long_lived_objects();
    a.alloc_class(
        &mut b,
        8,
        8,
        AllocFlags::NORMAL,
        ClassHint::task(5002).at_site(MOUNT),
    )
    .unwrap();
    assert_eq!(
        a.long_lived_objects(),
        before + 1,
        "MOUNT unlearnt by a populate failure"
    );
}

/// alloc_class that places nothing (no room, no chunk) leaves no routing.
#[test]
fn failed_alloc_class_leaves_nothing() {
    let (mut a, mut b) = setup();
    while a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).is_ok() {}
    let x = ClassHint::task(5000).at_site(MOUNT);
    assert!(a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, x).is_err());
    assert_eq!(a.long_lived_objects(), 0);
}
