//! `pcpu` takes a chunk queued for reclaim back before it maps a new one, so
//! an allocator whose balance work runs late (or never) does not keep
//! mapping chunks; the Linux policies map a new chunk, as the kernel does.

use pcpu_core::*;

fn allocator(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// Rounds of 2000 allocations of 300 bytes, all freed, no balance run:
/// (chunks, pages populated) after each round.
fn rounds(policy: Policy, hint: Option<ClassHint>) -> Vec<(usize, u64)> {
    let mut a = allocator(policy);
    let mut b = SimBackend::default();
    let mut out = Vec::new();
    for _ in 0..5 {
        let objs: Vec<Allocation> = (0..2000)
            .map(|_| match hint {
                Some(h) => a.alloc_class(&mut b, 300, 8, AllocFlags::NORMAL, h),
                None => a.alloc(&mut b, 300, 8, AllocFlags::NORMAL),
            })
            .collect::<Result<_, _>>()
            .unwrap();
        for x in objs {
            a.free(x.chunk, x.offset).unwrap();
        }
        a.check_invariants().unwrap();
        out.push((a.nr_chunks(), b.populated_pages - b.depopulated_pages));
    }
    out
}

#[test]
fn pcpu_reuses_queued_chunks_when_the_balance_work_does_not_run() {
    for hint in [None, Some(ClassHint::task(7)), Some(ClassHint::lifetime(7))] {
        let r = rounds(Policy::pcpu(), hint);
        // Every round fits in the chunks the first one mapped, and the
        // pages populated stop growing after the second.
        assert!(r.iter().all(|&(c, _)| c == r[0].0), "{hint:?}: {r:?}");
        assert!(r[1..].iter().all(|&x| x == r[1]), "{hint:?}: {r:?}");
    }
    // linux-5.14 maps a new chunk, as the kernel does (its balance work
    // would then reclaim the queued ones): without balance runs it grows.
    let l = rounds(Policy::new(PolicyKind::Linux514), None);
    assert!(l[4].0 > l[0].0, "{l:?}");
}

#[test]
fn probe_agrees_that_a_queued_chunk_is_taken_back() {
    let mut a = allocator(Policy::pcpu());
    let mut b = SimBackend::default();
    // Fill chunks, then free every object of the last one: it gets an
    // empty page and is queued for reclaim (no balance run yet).
    let mut objs: Vec<Allocation> = (0..3000)
        .map(|_| a.alloc(&mut b, 300, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    let last = objs.last().unwrap().chunk;
    objs.retain(|x| {
        if x.chunk == last {
            a.free(x.chunk, x.offset).unwrap();
            false
        } else {
            true
        }
    });
    assert!(a.chunk(last).unwrap().is_isolated());
    // Fill what is left in the active chunks.
    loop {
        let req = a.request(300, 8).unwrap();
        match a.probe(req, AllocFlags::NORMAL) {
            Some((id, _)) if id != last => {
                objs.push(a.alloc(&mut b, 300, 8, AllocFlags::NORMAL).unwrap());
            }
            other => {
                // The queued chunk is next, and the allocation goes there.
                let (id, off) = other.expect("the queued chunk has room");
                assert_eq!(id, last);
                let chunks = a.nr_chunks();
                let x = a.alloc(&mut b, 300, 8, AllocFlags::NORMAL).unwrap();
                assert_eq!((x.chunk, x.offset), (id, off));
                assert_eq!(a.nr_chunks(), chunks, "no chunk was mapped");
                assert!(!a.chunk(last).unwrap().is_isolated());
                break;
            }
        }
    }
    a.check_invariants().unwrap();
}

/// With `backfill`, a task class takes a chunk queued for reclaim back
/// before it starts on a fully free chunk, beside its survivors first: the
/// queued chunk's survivors pin their pages anyway, and the free chunk's
/// pages would have to be populated. (On the real churn capture with the
/// kernel's recorded balance runs, a refill that filled a spare free chunk
/// instead left a queued chunk with 41 pages' worth of room at R5c.)
#[test]
fn a_task_class_takes_a_queued_chunk_back_before_a_free_chunk() {
    let mut a = allocator(Policy::pcpu());
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    // Tasks of 8 half-kilobyte objects until two dynamic chunks hold some.
    let mut objs = Vec::new();
    let mut task = 0u64;
    let dynamic = |objs: &Vec<Allocation>| {
        let mut ids: Vec<ChunkId> = objs
            .iter()
            .map(|o: &Allocation| o.chunk)
            .filter(|&c| c != first)
            .collect();
        ids.dedup();
        ids
    };
    while dynamic(&objs).len() < 2 {
        task += 1;
        for _ in 0..8 {
            objs.push(
                a.alloc_class(&mut b, 512, 8, AllocFlags::NORMAL, ClassHint::task(task))
                    .unwrap(),
            );
        }
    }
    let queued = dynamic(&objs)[0];
    // Free the full chunk's objects but the first half of every fourth
    // page from page 2: it has empty pages (page 0 among them) and is
    // queued (no balance run).
    let kept = |o: &Allocation| o.offset / 4096 % 4 == 2 && o.offset % 4096 < 2048;
    objs.retain(|o| {
        if o.chunk == queued && !kept(o) {
            a.free(o.chunk, o.offset).unwrap();
            false
        } else {
            true
        }
    });
    assert!(a.chunk(queued).unwrap().is_isolated());
    // A spare chunk, fully free.
    let spare = a.create_chunk(&mut b).unwrap();
    a.check_invariants().unwrap();
    // Fill the other active chunk, then a new task's object.
    loop {
        task += 1;
        let o = a
            .alloc_class(&mut b, 512, 8, AllocFlags::NORMAL, ClassHint::task(task))
            .unwrap();
        a.check_invariants().unwrap();
        assert_ne!(o.chunk, spare, "the spare chunk before the queued one");
        if o.chunk == queued {
            assert!(!a.chunk(queued).unwrap().is_isolated(), "taken back");
            // Beside the survivors of page 2, not on the empty page 0.
            assert_eq!(o.offset, 2 * 4096 + 2048);
            break;
        }
    }
}

/// A task per allocation (task class hints), invariants checked after each.
struct Tasks(u64);

impl Tasks {
    fn alloc(&mut self, a: &mut Allocator, b: &mut SimBackend, size: usize) -> Allocation {
        self.alloc_at(a, b, size, 0)
    }

    /// From call site `site` (`ClassHint::at_site`).
    fn alloc_at(
        &mut self,
        a: &mut Allocator,
        b: &mut SimBackend,
        size: usize,
        site: u64,
    ) -> Allocation {
        self.0 += 1;
        let hint = ClassHint::task(self.0).at_site(site);
        let x = a.alloc_class(b, size, 8, AllocFlags::NORMAL, hint).unwrap();
        a.check_invariants().unwrap();
        x
    }
}

/// The queued chunk taken back before a free one is taken outside the room
/// other classes keep free: the long-lived page's (`Policy::long_lived`).
#[test]
fn a_queued_chunk_is_taken_back_outside_the_long_lived_room() {
    const MOUNT: u64 = 0x200;
    const BURST: u64 = 0x300;
    let mut a = allocator(Policy::pcpu());
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let mut tasks = Tasks(0);
    let mut task_alloc = |a: &mut Allocator, b: &mut SimBackend, size: usize, site: u64| {
        tasks.alloc_at(a, b, size, site)
    };
    // Half-kilobyte tasks until one lands outside the first chunk.
    let mut objs = Vec::new();
    let x = loop {
        let o = task_alloc(&mut a, &mut b, 512, 0);
        objs.push(o);
        if o.chunk != first {
            break o.chunk;
        }
    };
    // Teach MOUNT's site (two one-object tasks, each followed by a burst of
    // another task), then a third mount: the long-lived object.
    for _ in 0..2 {
        task_alloc(&mut a, &mut b, 8, MOUNT);
        let burst = task_alloc(&mut a, &mut b, 8, BURST);
        for _ in 0..70 {
            a.alloc_class(
                &mut b,
                8,
                8,
                AllocFlags::NORMAL,
                ClassHint::task(burst.offset as u64 + (1 << 40)).at_site(BURST),
            )
            .unwrap();
        }
    }
    let ll = task_alloc(&mut a, &mut b, 8, MOUNT);
    assert_eq!(a.long_lived_objects(), 1);
    assert_eq!(ll.chunk, x, "the long-lived page is in chunk X");
    let ll_page = ll.offset / 4096;
    // Fill X and the next chunk; the object that opens a third one is
    // freed again: that chunk is the spare, fully free.
    let mut full = vec![first, x];
    let spare = loop {
        let o = task_alloc(&mut a, &mut b, 512, 0);
        if !full.contains(&o.chunk) {
            if full.len() == 3 {
                a.free(o.chunk, o.offset).unwrap();
                break o.chunk;
            }
            full.push(o.chunk);
        }
        objs.push(o);
    };
    assert!(!a.chunk(spare).unwrap().is_isolated());
    // Free X's objects but on every fourth page: X is queued.
    objs.retain(|o| {
        let page = o.offset / 4096;
        if o.chunk == x && page != ll_page && page % 4 != 0 {
            a.free(o.chunk, o.offset).unwrap();
            false
        } else {
            true
        }
    });
    assert!(a.chunk(x).unwrap().is_isolated());
    a.check_invariants().unwrap();
    // New tasks: none lands in the long-lived page's room.
    for _ in 0..50 {
        let o = task_alloc(&mut a, &mut b, 64, 0);
        assert!(
            !(o.chunk == x && o.offset / 4096 == ll_page),
            "a task's object at {} beside the long-lived object at {}",
            o.offset,
            ll.offset
        );
        if o.chunk == spare {
            break;
        }
    }
}

/// Half-kilobyte objects until the first chunk and the next one, X, are
/// full: X and the objects.
fn fill_first_and_x(
    a: &mut Allocator,
    b: &mut SimBackend,
    alloc: &mut impl FnMut(&mut Allocator, &mut SimBackend, usize) -> Allocation,
) -> (ChunkId, Vec<Allocation>) {
    let first = a.first_chunk();
    let mut objs = Vec::new();
    let x = loop {
        let o = alloc(a, b, 512);
        objs.push(o);
        if o.chunk != first {
            break o.chunk;
        }
    };
    while a.chunk(x).unwrap().free_bytes() >= 512 {
        objs.push(alloc(a, b, 512));
    }
    (x, objs)
}

/// With `backfill`, a small request whose walk first comes to an active
/// chunk more than three quarters free (here the spare chunk a large object
/// opened) takes a run beside the survivors of an isolated chunk first.
#[test]
fn a_small_request_fills_beside_survivors_before_a_mostly_free_chunk() {
    let (mut a, mut b) = (allocator(Policy::pcpu()), SimBackend::default());
    let mut tasks = Tasks(0);
    let mut alloc = |a: &mut Allocator, b: &mut SimBackend, size: usize| tasks.alloc(a, b, size);
    // Half-kilobyte tasks fill the first chunk and chunk X.
    let (x, objs) = fill_first_and_x(&mut a, &mut b, &mut alloc);
    // Chunk Y: 16 pages of them, all freed again (its empty pages are the
    // reserve, so that X can be sidelined).
    let ys: Vec<Allocation> = (0..128).map(|_| alloc(&mut a, &mut b, 512)).collect();
    let y = ys[0].chunk;
    assert!(ys.iter().all(|o| o.chunk == y) && y != x);
    for o in &ys {
        a.free(o.chunk, o.offset).unwrap();
    }
    // Keep the first half of every fourth page of X from page 2; the
    // balance work reclaims X and sidelines it.
    for o in &objs {
        if o.chunk == x && !(o.offset / 4096 % 4 == 2 && o.offset % 4096 < 2048) {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    for _ in 0..3 {
        a.balance(&mut b);
    }
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated(), "X sidelined");
    assert!(!a.chunk(y).unwrap().is_isolated(), "Y active");
    // A large object opens another chunk, which is then mostly free.
    let big = alloc(&mut a, &mut b, 32 << 10);
    assert_ne!(big.chunk, x);
    // A request over a quarter page does not defer.
    let o = alloc(&mut a, &mut b, 2048);
    assert_eq!(o.chunk, big.chunk);
    assert!(a.chunk(x).unwrap().is_isolated());
    // A small task goes beside X's survivors, not into the big one's chunk.
    let o = alloc(&mut a, &mut b, 64);
    assert_eq!(o.chunk, x);
    assert_eq!(o.offset % (4 * 4096), 2 * 4096 + 2048, "beside a survivor");
}

/// The deferral takes only a run beside survivors: a queued chunk whose
/// room lies on empty pages loses to the mostly free active chunk.
#[test]
fn a_deferred_request_takes_no_queued_empty_page() {
    let (mut a, mut b) = (allocator(Policy::pcpu()), SimBackend::default());
    let mut tasks = Tasks(0);
    let mut alloc = |a: &mut Allocator, b: &mut SimBackend, size: usize| tasks.alloc(a, b, size);
    // Half-kilobyte tasks fill the first chunk and chunk X.
    let (x, objs) = fill_first_and_x(&mut a, &mut b, &mut alloc);
    // A large object opens chunk Y, which stays mostly free.
    let big = alloc(&mut a, &mut b, 32 << 10);
    assert_ne!(big.chunk, x);
    // X keeps every fourth page whole (no room beside its survivors) and
    // is queued: no balance run.
    for o in &objs {
        if o.chunk == x && o.offset / 4096 % 4 != 0 {
            a.free(o.chunk, o.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert!(a.chunk(x).unwrap().is_isolated(), "X queued");
    let o = alloc(&mut a, &mut b, 64);
    assert_eq!(o.chunk, big.chunk, "the deferred fit, not X's empty page");
}
