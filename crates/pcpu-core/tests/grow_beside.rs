//! `Policy::grow_beside`: two long-running task classes (a program's
//! worker threads); the first frees nineteen of every twenty of its
//! objects while the second, which started after it, still allocates, and
//! then the second does the same. With the knob the second grows into the
//! holes beside the first's survivors, as first fit would; without it,
//! onto empty pages, which its own survivors then pin.
use pcpu_core::*;

fn allocator(policy: Policy) -> Allocator {
    let g = Geometry::new(
        4096,
        2,
        256 << 10,
        FirstChunk {
            static_size: 0,
            reserved_size: 0,
            dyn_size: 16 << 10,
        },
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// Pages populated per unit at the end (after a balance run); the
/// invariants are checked after every step.
fn run(policy: Policy) -> usize {
    let mut a = allocator(policy);
    let mut b = SimBackend::default();
    let (first, second) = (ClassHint::task(1), ClassHint::task(2));
    let mut mine = Vec::new();
    // The first worker opens 1000 connections (a counter and a 128-byte
    // block each), then the second 500.
    for _ in 0..1000 {
        for size in [8, 128] {
            mine.push(
                a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, first)
                    .unwrap(),
            );
        }
    }
    for _ in 0..500 {
        for size in [8, 128] {
            a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, second)
                .unwrap();
        }
    }
    a.check_invariants().unwrap();
    // The first closes nineteen of every twenty; the second opens 1000
    // more.
    for (i, x) in mine.iter().enumerate() {
        if (i / 2) % 20 != 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    let mut theirs = Vec::new();
    for _ in 0..1000 {
        for size in [8, 128] {
            theirs.push(
                a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, second)
                    .unwrap(),
            );
        }
        a.check_invariants().unwrap();
    }
    // Then the second closes nineteen of every twenty of those.
    for (i, x) in theirs.iter().enumerate() {
        if (i / 2) % 20 != 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    a.balance(&mut b);
    a.check_invariants().unwrap();
    a.nr_populated()
}

#[test]
fn a_growing_class_fills_the_holes_another_left() {
    let with = run("pcpu:grow_beside=true".parse().unwrap());
    let without = run(Policy::pcpu());
    let linux = run("linux-5.14".parse().unwrap());
    // Measured: 53 pages with the knob, 70 without, 55 under linux-5.14
    // (first fit refills the holes too).
    assert!(with <= linux, "grow_beside {with}, linux-5.14 {linux}");
    assert!(without >= with + 10, "without {without}, with {with}");
}

#[test]
fn it_changes_nothing_without_class_placement() {
    let p: Policy = "linux-5.14".parse().unwrap();
    let q: Policy = "linux-5.14:grow_beside=true".parse().unwrap();
    assert!(q.grow_beside && q.behaves_as(&p));
}
