//! Policy knobs that change a balance decision: `sideline`.

use pcpu_core::*;

fn allocator(policy: Policy) -> (Allocator, SimBackend) {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    (Allocator::new(g, policy), SimBackend::default())
}

/// Fill several chunks, then free all but one object per 16 KiB, settle.
/// Returns how many chunks are isolated afterwards, the populated pages at
/// the peak, and the allocator.
fn partial_removal(policy: Policy) -> (usize, usize, Allocator) {
    let (mut a, mut b) = allocator(policy);
    let objs: Vec<Allocation> = (0..20_000)
        .map(|_| a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    let peak = a.nr_populated();
    for (i, x) in objs.iter().enumerate() {
        if i % 256 != 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
        if i % 1000 == 0 {
            a.check_invariants().unwrap();
        }
    }
    while a.balance_pending() {
        a.balance(&mut b);
        a.check_invariants().unwrap();
    }
    let isolated = a
        .chunk_ids()
        .filter(|&id| a.chunk(id).is_some_and(|c| c.is_isolated()))
        .count();
    (isolated, peak, a)
}

#[test]
fn sidelining_on_leaves_depopulated_chunks_isolated() {
    let (isolated, _, _) = partial_removal(Policy::new(PolicyKind::Linux514));
    assert!(
        isolated > 0,
        "5.14 sidelines partly used chunks after reclaim"
    );
}

#[test]
fn sidelining_off_returns_them_to_their_slots() {
    for base in [Policy::new(PolicyKind::Linux514), Policy::pcpu()] {
        let mut p = base;
        p.sideline = false;
        let (isolated, peak, a) = partial_removal(p);
        assert_eq!(isolated, 0, "{}: no chunk stays isolated", p.name());
        // Reclaim still gave pages back.
        assert!(a.nr_populated() < peak, "{}", p.name());
    }
}
