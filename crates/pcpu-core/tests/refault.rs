//! The `pcpu` policy's refault-aware reserve: after pages that reclaim gave
//! back are populated again, reclaim keeps more empty pages, so a workload
//! that keeps returning to the same size stops paying for them every round.
//! Invariants are checked after every operation.

use pcpu_core::*;

fn allocator(divisor: usize) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    let mut p = Policy::pcpu();
    p.refault_reserve_divisor = divisor;
    Allocator::new(g, p)
}

fn settle(a: &mut Allocator, b: &mut SimBackend) {
    while a.balance_pending() {
        a.balance(b);
        a.check_invariants().unwrap();
    }
}

/// Rounds of: allocate `n` 64-byte objects, free all but the first fifth
/// of them (and the previous round's survivors), settle. Returns (pages populated at each trough, backend).
fn churn(divisor: usize, rounds: usize, n: usize) -> (Vec<usize>, Allocator, SimBackend) {
    let mut a = allocator(divisor);
    let mut b = SimBackend::default();
    let mut troughs = Vec::new();
    let mut live = Vec::new();
    for _ in 0..rounds {
        let batch: Vec<Allocation> = (0..n)
            .map(|_| {
                let x = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
                a.check_invariants().unwrap();
                x
            })
            .collect();
        settle(&mut a, &mut b);
        for (i, x) in batch.into_iter().enumerate() {
            if i < n / 5 {
                live.push(x);
            } else {
                a.free(x.chunk, x.offset).unwrap();
                a.check_invariants().unwrap();
            }
        }
        settle(&mut a, &mut b);
        troughs.push(a.nr_populated());
        // The survivors of this round die at the start of the next one's
        // trough: keep the live set at one round's worth.
        if live.len() > n / 5 {
            for x in live.drain(..n / 5) {
                a.free(x.chunk, x.offset).unwrap();
                a.check_invariants().unwrap();
            }
        }
    }
    (troughs, a, b)
}

#[test]
fn off_means_no_reserve_and_no_stamps() {
    let (_, a, _) = churn(0, 4, 3000);
    assert_eq!(a.refault_reserve(), 0);
}

#[test]
fn refaults_raise_the_reserve_and_cut_page_traffic() {
    let (off_troughs, _, off_b) = churn(0, 6, 3000);
    let (on_troughs, a, on_b) = churn(4, 6, 3000);
    // The first round has no refault history: identical troughs.
    assert_eq!(off_troughs[0], on_troughs[0]);
    assert!(a.refault_reserve() > 0, "refaults must engage the reserve");
    // Later troughs keep more pages populated...
    assert!(
        on_troughs[2..]
            .iter()
            .zip(&off_troughs[2..])
            .all(|(on, off)| on >= off),
        "on {on_troughs:?} off {off_troughs:?}"
    );
    // ... bounded by the cap (a quarter of the pages in use, plus HIGH).
    let last = *on_troughs.last().unwrap();
    assert!(last as f64 <= *off_troughs.last().unwrap() as f64 * 1.25 + 8.0);
    // ... and the rounds populate and depopulate fewer pages.
    assert!(
        on_b.populated_pages < off_b.populated_pages,
        "populated: on {} off {}",
        on_b.populated_pages,
        off_b.populated_pages
    );
    assert!(on_b.depopulated_pages < off_b.depopulated_pages);
}

#[test]
fn one_way_removal_never_engages_it() {
    // Grow once, shrink once: nothing is populated again after reclaim.
    let mut a = allocator(4);
    let mut b = SimBackend::default();
    let objs: Vec<Allocation> = (0..5000)
        .map(|_| a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    settle(&mut a, &mut b);
    for (i, x) in objs.iter().enumerate() {
        if i % 10 != 0 {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    settle(&mut a, &mut b);
    a.check_invariants().unwrap();
    assert_eq!(a.refault_reserve(), 0);
}
