//! Class placement (`pcpu` policy): objects of a class share pages; other
//! classes' objects are kept off them. The Linux policies ignore hints.

use std::collections::BTreeSet;

use pcpu_core::*;

const GROUP: [(usize, usize); 11] = [
    (8, 8),
    (64, 8),
    (128, 64),
    (8, 8),
    (1096, 8),
    (688, 8),
    (4, 4),
    (8, 8),
    (8, 8),
    (32, 8),
    (8, 8),
];

fn kernel_like(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// 200 parents with 10 children each; returns (parents' objects, children's).
fn cgroups(
    a: &mut Allocator,
    b: &mut SimBackend,
    hint: impl Fn(bool, u64) -> Option<ClassHint>,
) -> (Vec<Allocation>, Vec<Allocation>) {
    let (mut parents, mut children) = (Vec::new(), Vec::new());
    let mut task = 1000;
    for _ in 0..200 {
        for child in [
            false, true, true, true, true, true, true, true, true, true, true,
        ] {
            task += 1;
            for &(size, align) in &GROUP {
                let x = match hint(child, task) {
                    Some(h) => a.alloc_class(b, size, align, AllocFlags::NORMAL, h),
                    None => a.alloc(b, size, align, AllocFlags::NORMAL),
                }
                .unwrap();
                if child {
                    children.push(x)
                } else {
                    parents.push(x)
                }
            }
        }
    }
    a.check_invariants().unwrap();
    (parents, children)
}

fn pages_touched(objs: &[Allocation]) -> usize {
    objs.iter()
        .flat_map(|o| o.pages(4096).map(move |p| (o.chunk, p)))
        .collect::<BTreeSet<_>>()
        .len()
}

fn remove_children(a: &mut Allocator, b: &mut SimBackend, children: &[Allocation]) {
    for c in children {
        a.free(c.chunk, c.offset).unwrap();
    }
    for _ in 0..3 {
        a.balance(b);
    }
    a.check_invariants().unwrap();
}

#[test]
fn lifetime_classes_pack_survivors_densely() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let (parents, children) = cgroups(&mut a, &mut b, |child, _| {
        Some(ClassHint::lifetime(child as u64))
    });
    remove_children(&mut a, &mut b, &children);
    let live: usize = parents.iter().map(|p| p.size).sum();
    let ideal = live.div_ceil(4096);
    let floor = pages_touched(&parents);
    assert!(floor <= ideal + 2, "floor {floor} ideal {ideal}");
}

#[test]
fn task_classes_keep_each_group_contiguous() {
    let mut linux = kernel_like(Policy::default());
    let mut pcpu = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let (lp, _) = cgroups(&mut linux, &mut b, |_, _| None);
    let (pp, _) = cgroups(&mut pcpu, &mut b, |_, t| Some(ClassHint::task(t)));
    // Each parent's 11 objects span ~2 KiB: at most 2 pages each (3 when a
    // chunk runs out in the middle of a group), 1.5 on average.
    let per_group: Vec<usize> = pp.chunks(11).map(pages_touched).collect();
    assert!(per_group.iter().all(|&n| n <= 3), "{per_group:?}");
    let mean = per_group.iter().sum::<usize>() as f64 / per_group.len() as f64;
    assert!(mean <= 1.6, "{mean}");
    assert!(
        pages_touched(&pp) < pages_touched(&lp),
        "{} vs {}",
        pages_touched(&pp),
        pages_touched(&lp)
    );
}

#[test]
fn linux_policies_ignore_hints() {
    let mut with = kernel_like(Policy::default());
    let mut without = kernel_like(Policy::default());
    let mut b = SimBackend::default();
    let (p1, c1) = cgroups(&mut with, &mut b, |child, _| {
        Some(ClassHint::lifetime(child as u64))
    });
    let (p2, c2) = cgroups(&mut without, &mut b, |_, _| None);
    assert_eq!((p1, c1), (p2, c2));
}
