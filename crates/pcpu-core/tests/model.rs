//! Model-based property test: random alloc / free / balance sequences over
//! every policy, against a trivially correct model of live areas, with the
//! full invariant check after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use pcpu_core::*;
use proptest::prelude::*;

/// A backend that mirrors population and asserts the backend preconditions.
#[derive(Default, Debug)]
struct Shadow {
    chunks: BTreeMap<u32, BTreeSet<usize>>,
    fail_populate_every: Option<u32>,
    calls: u32,
    /// Fail every n-th chunk creation.
    fail_create_every: Option<u32>,
    creates: u32,
}

impl Backend for Shadow {
    fn create_chunk(&mut self, id: ChunkId, _n: usize) -> Result<(), BackendError> {
        self.creates += 1;
        if let Some(n) = self.fail_create_every {
            if self.creates % n == 0 {
                return Err(BackendError::Injected);
            }
        }
        assert!(
            self.chunks.insert(id.0, BTreeSet::new()).is_none(),
            "id reused while live"
        );
        Ok(())
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        let pages = self.chunks.remove(&id.0).expect("destroy of unknown chunk");
        assert!(pages.is_empty(), "destroy of a populated chunk");
    }
    fn populate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        assert!(!pages.is_empty());
        self.calls += 1;
        if let Some(n) = self.fail_populate_every {
            if self.calls % n == 0 {
                return Err(BackendError::Injected);
            }
        }
        let set = self
            .chunks
            .get_mut(&id.0)
            .expect("populate of unknown chunk");
        for p in pages {
            assert!(set.insert(p), "page {p} populated twice");
        }
        Ok(())
    }
    fn depopulate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        assert!(!pages.is_empty());
        let set = self
            .chunks
            .get_mut(&id.0)
            .expect("depopulate of unknown chunk");
        for p in pages {
            assert!(set.remove(&p), "page {p} depopulated while not populated");
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
        atomic: bool,
        /// (class id, lifetime (else task), call site).
        class: Option<(u64, bool, u64)>,
    },
    Free {
        pick: usize,
    },
    Balance,
}

fn op() -> impl Strategy<Value = Op> {
    op_with(0..6)
}

/// Operations whose class ids come from `ids` (a wide range gives many
/// one-object tasks, which the long-lived prediction learns from).
fn op_with(ids: core::ops::Range<u64>) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            prop_oneof![1usize..=16, 1usize..=300, 1usize..=5000],
            0u32..=7,
            prop::bool::weighted(0.1),
            prop::option::weighted(0.5, (ids, any::<bool>(), 0u64..3)),
        )
            .prop_map(|(size, align_shift, atomic, class)| Op::Alloc { size, align_shift, atomic, class }),
        4 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => Just(Op::Balance),
    ]
}

fn run(policy: Policy, geo: Geometry, ops: &[Op], fail_every: Option<u32>) {
    run_with(policy, geo, ops, fail_every, None);
}

fn run_with(
    policy: Policy,
    geo: Geometry,
    ops: &[Op],
    fail_every: Option<u32>,
    fail_create_every: Option<u32>,
) {
    let mut a = Allocator::new(geo, policy);
    let mut b = Shadow {
        fail_populate_every: fail_every,
        fail_create_every,
        ..Default::default()
    };
    let mut live: BTreeMap<(u32, usize), usize> = BTreeMap::new();
    let page = geo.page_size();
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align_shift,
                atomic,
                class,
            } => {
                let align = 1usize << align_shift;
                let flags = if atomic {
                    AllocFlags::ATOMIC
                } else {
                    AllocFlags::NORMAL
                };
                let res = match class {
                    None => a.alloc(&mut b, size, align, flags),
                    Some((id, lifetime, site)) => {
                        let hint = if lifetime {
                            ClassHint::lifetime(id)
                        } else {
                            ClassHint::task(id)
                        };
                        a.alloc_class(&mut b, size, align, flags, hint.at_site(site))
                    }
                };
                match res {
                    Ok(x) => {
                        assert_eq!(x.offset % align.max(4), 0, "misaligned");
                        assert_eq!(x.size, size.div_ceil(4) * 4);
                        // no overlap with a live area of the same chunk
                        let lo = live.range((x.chunk.0, 0)..(x.chunk.0, x.offset + x.size));
                        if let Some((&(_, o), &s)) = lo.last() {
                            assert!(
                                o + s <= x.offset,
                                "overlap: [{o},+{s}) and [{},+{})",
                                x.offset,
                                x.size
                            );
                        }
                        // every page of the area is populated
                        let c = a.chunk(x.chunk).unwrap();
                        for p in x.pages(page) {
                            assert!(c.is_page_populated(p));
                        }
                        live.insert((x.chunk.0, x.offset), x.size);
                    }
                    Err(AllocError::AtomicNoSpace | AllocError::Populate(_)) => {}
                    Err(AllocError::ChunkCreate(_)) if fail_create_every.is_some() => {}
                    Err(e) => panic!("unexpected alloc error {e}"),
                }
            }
            Op::Free { pick } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(pick % live.len()).unwrap();
                let size = live.remove(&key).unwrap();
                assert_eq!(a.free(ChunkId(key.0), key.1).unwrap(), size);
                // double free is detected and changes nothing
                let before = a.percpu_stats();
                assert!(a.free(ChunkId(key.0), key.1).is_err());
                assert_eq!(before, a.percpu_stats());
            }
            Op::Balance => {
                a.balance(&mut b);
            }
        }
        if let Err(e) = a.check_invariants() {
            panic!("{e}\nafter {op:?}\n{}", a.percpu_stats());
        }
        // shadow population agrees with the allocator and no live data was depopulated
        for (&id, pages) in &b.chunks {
            let c = a.chunk(ChunkId(id)).expect("backend chunk is live");
            assert_eq!(pages.len(), c.nr_populated());
        }
        for (&(cid, off), &size) in &live {
            let c = a.chunk(ChunkId(cid)).expect("live area's chunk destroyed");
            for p in off / page..(off + size).div_ceil(page) {
                assert!(c.is_page_populated(p), "live data on a depopulated page");
            }
        }
    }
    for &(cid, off) in live.keys() {
        a.free(ChunkId(cid), off).unwrap();
    }
    a.balance(&mut b);
    a.balance(&mut b);
    a.check_invariants().unwrap();
    assert_eq!(a.stats().nr_cur_alloc, 0);
}

fn geometries() -> Vec<Geometry> {
    let fc = FirstChunk {
        static_size: 1000,
        reserved_size: 512,
        dyn_size: 3000,
    };
    vec![
        Geometry::new(256, 2, 256 * 32, fc).unwrap(),
        Geometry::simple(3, 8).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn model_all_policies(ops in prop::collection::vec(op(), 1..400), g in 0usize..2, p in 0usize..5) {
        let policy = Policy::all()[p];
        run(policy, geometries()[g], &ops, None);
    }

    /// Next fit and best fit, with reclaim in batches of 1 to 3 chunks, over
    /// the Linux and pcpu policies, with and without `keep_room`.
    #[test]
    fn model_other_fits(ops in prop::collection::vec(op(), 1..400), g in 0usize..2, p in 0usize..5, best in any::<bool>(), batch in 1usize..4, keep in any::<bool>()) {
        let mut policy = Policy::all()[p];
        policy.fit = if best { Fit::Best } else { Fit::Next };
        policy.reclaim_batch = batch;
        policy.keep_room = keep;
        run(policy, geometries()[g], &ops, None);
    }

    /// `pcpu` with `keep_room`, chunk creation failing now and then: the
    /// exclusive classes' fallback to plain first fit keeps every invariant.
    #[test]
    fn model_keep_room_with_create_failures(ops in prop::collection::vec(op(), 1..400), g in 0usize..2, every in 2u32..5) {
        let mut policy = Policy::pcpu();
        policy.keep_room = true;
        run_with(policy, geometries()[g], &ops, None, Some(every));
    }

    /// `pcpu` with many one-object tasks from a few call sites, so that the
    /// long-lived class is used (about 760 objects over 256 cases when this
    /// was written; `tests/classes.rs` asserts it is used at all): every
    /// invariant holds, also with chunk creation failing now and then.
    #[test]
    fn model_long_lived(ops in prop::collection::vec(op_with(0..300), 1..400), g in 0usize..2, every in prop::option::of(2u32..5)) {
        run_with(Policy::pcpu(), geometries()[g], &ops, None, every);
    }

    #[test]
    fn model_with_populate_failures(ops in prop::collection::vec(op(), 1..300), p in 0usize..5) {
        run(Policy::all()[p], geometries()[0], &ops, Some(3));
    }
}
