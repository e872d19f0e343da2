//! Linux's own 2017 evaluation scenarios for the bitmap allocator (Dennis
//! Zhou, "percpu: replace area map allocator with bitmap", v2 cover letter):
//! 1M objects allocated, then freed in order, alternating and in reverse;
//! and 1M 4-byte objects with 8-byte alignment. Release-mode tests.

use pcpu_core::*;

const N: usize = 1_000_000;

fn kernel_like() -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, Policy::default())
}

fn fill(a: &mut Allocator, b: &mut SimBackend, size: usize, align: usize) -> Vec<Allocation> {
    (0..N)
        .map(|_| a.alloc(b, size, align, AllocFlags::NORMAL).unwrap())
        .collect()
}

fn settle(a: &mut Allocator, b: &mut SimBackend) {
    for _ in 0..4 {
        a.balance(b);
    }
    a.check_invariants().unwrap();
    assert_eq!(a.stats().nr_cur_alloc, 0);
}

fn scenario(size: usize, order: &str) {
    let mut a = kernel_like();
    let mut b = SimBackend::default();
    let start = a.nr_populated();
    let objs = fill(&mut a, &mut b, size, size.min(8));
    a.check_invariants().unwrap();
    // dense: populated pages within one page per chunk of the ideal
    let ideal = (N * size).div_ceil(4096);
    let chunks = a.nr_chunks();
    assert!(
        a.nr_populated() - start <= ideal + 2 * chunks,
        "populated {} ideal {ideal}",
        a.nr_populated() - start
    );
    match order {
        "in-order" => objs.iter().for_each(|o| {
            a.free(o.chunk, o.offset).unwrap();
        }),
        "reverse" => objs.iter().rev().for_each(|o| {
            a.free(o.chunk, o.offset).unwrap();
        }),
        "alternating" => {
            objs.iter().step_by(2).for_each(|o| {
                a.free(o.chunk, o.offset).unwrap();
            });
            a.check_invariants().unwrap();
            objs.iter().skip(1).step_by(2).for_each(|o| {
                a.free(o.chunk, o.offset).unwrap();
            });
        }
        _ => unreachable!(),
    }
    settle(&mut a, &mut b);
    // everything given back except the first chunk and the spare free chunk
    // first chunk + the one spare free chunk (the reserved chunk is not counted)
    assert!(
        a.stats().nr_chunks <= 2,
        "{} chunks left\n{}",
        a.stats().nr_chunks,
        a.percpu_stats()
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode scenario: cargo test --release"
)]
fn one_million_in_order() {
    for size in [4, 16, 64, 256, 1024] {
        scenario(size, "in-order");
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode scenario: cargo test --release"
)]
fn one_million_alternating() {
    for size in [4, 16, 64] {
        scenario(size, "alternating");
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode scenario: cargo test --release"
)]
fn one_million_reverse() {
    for size in [4, 16, 64] {
        scenario(size, "reverse");
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode scenario: cargo test --release"
)]
fn one_million_4_byte_objects_8_byte_aligned() {
    let mut a = kernel_like();
    let mut b = SimBackend::default();
    let objs = fill(&mut a, &mut b, 4, 8);
    for o in &objs {
        assert_eq!(o.offset % 8, 0);
    }
    a.check_invariants().unwrap();
    for o in &objs {
        a.free(o.chunk, o.offset).unwrap();
    }
    settle(&mut a, &mut b);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode scenario: cargo test --release"
)]
fn second_half_filled_then_churn() {
    // Dennis's "second half of pages filled" variant: keep every other
    // page's objects alive, then allocate and free through the holes.
    let mut a = kernel_like();
    let mut b = SimBackend::default();
    let objs = fill(&mut a, &mut b, 16, 8);
    let mut kept = Vec::new();
    for o in objs {
        if (o.offset / 4096) % 2 == 1 {
            kept.push(o);
        } else {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    a.balance(&mut b);
    let again = fill(&mut a, &mut b, 16, 8);
    a.check_invariants().unwrap();
    for o in again.iter().chain(&kept) {
        a.free(o.chunk, o.offset).unwrap();
    }
    settle(&mut a, &mut b);
}
