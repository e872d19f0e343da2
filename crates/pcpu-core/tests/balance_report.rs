//! A balance run's [`BalanceReport`] says what it did to the backend: the
//! pages populated and depopulated, the chunks created and destroyed, the
//! operations that failed. A random churn under every policy, with injected
//! failures, compares each report with the backend's own counts. Under the
//! kernel's policies a run that populated pages leaves exactly
//! `empty_pop_high` empty ones (`pcpu_balance_populated` stops at its
//! target). Invariants are checked after every operation.

use pcpu_core::*;

fn allocator(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// Small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the backend did, and the failures still armed.
fn counts(b: &FailingBackend) -> (u64, u64, u64, u64, u32) {
    (
        b.inner.populated_pages,
        b.inner.depopulated_pages,
        b.inner.created,
        b.inner.destroyed,
        b.fail_create + b.fail_populate + b.fail_depopulate,
    )
}

fn churn(policy: Policy, seed: u64, failures: bool) -> (usize, usize) {
    let kernel = matches!(policy.kind, PolicyKind::Linux514 | PolicyKind::Linux61);
    let high = policy.empty_pop_high;
    let mut a = allocator(policy);
    let mut b = FailingBackend::default();
    let mut rng = Rng(seed);
    let mut live: Vec<(ChunkId, usize)> = Vec::new();
    let (mut runs, mut populating) = (0, 0);
    for step in 0..6000 {
        // Waves: grow to a few thousand objects, then free most of them.
        let growing = (step / 1500) % 2 == 0;
        if live.is_empty() || (growing && rng.below(10) < 8) || (!growing && rng.below(10) < 2) {
            let size = [8, 16, 64, 200, 1024, 4096][rng.below(6) as usize];
            if let Ok(x) = a.alloc(&mut b, size, 8, AllocFlags::NORMAL) {
                live.push((x.chunk, x.offset));
            }
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let (c, off) = live.swap_remove(i);
            a.free(c, off).unwrap();
        }
        a.check_invariants().unwrap();
        if step % 7 == 0 && a.balance_pending() {
            if failures && rng.below(4) == 0 {
                match rng.below(3) {
                    0 => b.fail_create += 1,
                    1 => b.fail_populate += 1,
                    _ => b.fail_depopulate += 1,
                }
            }
            let before = counts(&b);
            let r = a.balance(&mut b);
            let after = counts(&b);
            a.check_invariants().unwrap();
            runs += 1;
            assert_eq!(r.populated as u64, after.0 - before.0, "populated, {r:?}");
            assert_eq!(r.created as u64, after.2 - before.2, "created, {r:?}");
            assert_eq!(r.destroyed as u64, after.3 - before.3, "destroyed, {r:?}");
            assert_eq!(r.failures as u32, before.4 - after.4, "failures, {r:?}");
            // A destroyed chunk's pages count as given back even where its
            // depopulation failed: the chunk's memory goes with it.
            if r.failures == 0 {
                assert_eq!(
                    r.depopulated as u64,
                    after.1 - before.1,
                    "depopulated, {r:?}"
                );
            } else {
                assert!(r.depopulated as u64 >= after.1 - before.1, "{r:?}");
            }
            if kernel && r.populated > 0 && r.failures == 0 {
                populating += 1;
                assert_eq!(a.nr_empty_pop_pages(), high, "after {r:?}");
            }
        }
    }
    (runs, populating)
}

#[test]
fn reports_match_the_backend() {
    for policy in Policy::all() {
        for (seed, failures) in [(1, false), (2, true), (3, true)] {
            let (runs, populating) = churn(policy, seed, failures);
            assert!(runs > 50, "{policy}: only {runs} balance runs");
            if matches!(policy.kind, PolicyKind::Linux514 | PolicyKind::Linux61) {
                assert!(populating > 5, "{policy}: {populating} runs populated");
            }
        }
    }
}
