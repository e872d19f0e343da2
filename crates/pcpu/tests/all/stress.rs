//! Data integrity under concurrent allocation, free and aggressive
//! depopulation: writer threads keep a per-object, per-CPU pattern in every
//! unit of their objects and check it constantly, while a churn thread
//! allocates and frees, and a balancer thread runs the balance work in a loop
//! on top of the background thread. Any discarded live page would read back
//! as zeros (or fault): zero corruption, zero faults allowed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pcpu::{with_lifetime, Lifetime, PerCpu, PerCpuAllocator, Policy, RawPerCpu};

use crate::util::{assert_resident_matches, Rng};

/// How long the threads run at least; then until every thread made the
/// progress the test asserts (slow machines, valgrind: CI runs these tests
/// under memcheck), at most [`RUN_AT_MOST`].
const RUN_FOR: Duration = Duration::from_secs(3);
const RUN_AT_MOST: Duration = Duration::from_secs(120);
/// The progress asserted: writer operations and churn rounds, at least
/// (more than) this many.
const MIN_OPS: u64 = 1000;
const MIN_ROUNDS: u64 = 5;
/// How long the churn thread waits for the balance work after its frees, at
/// most ([`await_balance`]).
const AWAIT_BALANCE: Duration = Duration::from_secs(5);
const WORDS: usize = 16;

/// What the threads did so far, for the main thread's stopping rule.
#[derive(Default)]
struct Progress {
    ops: AtomicU64,
    rounds: AtomicU64,
}

impl Progress {
    /// Called by the writers and the balancer once per step: once the
    /// writers made their share of the progress (`MIN_OPS`), both give way (a
    /// millisecond's sleep a step) while the churn thread has not made its.
    /// Under valgrind, which runs one thread at a time, the churn thread's
    /// long rounds could otherwise get too few time slices for the bound (3
    /// rounds in 120 s once, against 389,307 writer operations; the
    /// depopulation asserted comes from its rounds, so waiting for it too
    /// gave none: 1 round, 290,002 operations).
    fn give_way(&self) {
        if self.ops.load(Ordering::Relaxed) > MIN_OPS
            && self.rounds.load(Ordering::Relaxed) <= MIN_ROUNDS
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The progress the test asserts at its end.
    fn enough(&self, alloc: &PerCpuAllocator) -> bool {
        self.ops.load(Ordering::Relaxed) > MIN_OPS
            && self.rounds.load(Ordering::Relaxed) > MIN_ROUNDS
            && depopulated(alloc) > 0
    }
}

/// Called by the churn thread once its frees emptied pages: wait (while
/// the writers go on) until a balance run depopulated pages or two whole
/// runs ended, at most [`AWAIT_BALANCE`] and not past `stop`. Under
/// valgrind, which runs one thread at a time, the churn thread's next
/// round could otherwise take the emptied pages back before any balance
/// run got a time slice: 0 pages depopulated in 120 s (43 rounds, CI at
/// 1f32a89).
fn await_balance(alloc: &PerCpuAllocator, stop: &AtomicBool) {
    let start = Instant::now();
    let (pages, runs) = (depopulated(alloc), alloc.stats().balance_runs);
    while depopulated(alloc) == pages
        && alloc.stats().balance_runs < runs + 2
        && start.elapsed() < AWAIT_BALANCE
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Pages depopulated so far by all balance runs: the background thread's
/// and `balance_now`'s (under valgrind one of them may get them all).
fn depopulated(alloc: &PerCpuAllocator) -> u64 {
    alloc.stats().balance_depopulated_pages
}

/// The expected byte / word of object `id` at generation `gen` on `cpu`.
fn mix(id: u64, gen: u64, cpu: usize, i: usize) -> u64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ gen.rotate_left(17)
        ^ ((cpu as u64) << 40)
        ^ i as u64;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32) | 1 // never zero: a discarded page cannot match
}

enum Obj {
    Typed {
        v: PerCpu<[AtomicU64; WORDS]>,
        id: u64,
        gen: u64,
    },
    Raw {
        r: RawPerCpu,
        id: u64,
        gen: u64,
    },
}

/// Runs `f` on unit `cpu`'s bytes of the live raw allocation `r`.
fn with_bytes<R>(
    alloc: &PerCpuAllocator,
    r: RawPerCpu,
    cpu: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> R {
    let p = alloc.ptr(r, cpu).expect("live raw handle");
    // SAFETY: `r` is live and owned by the calling thread, the only one
    // touching its bytes; `p` is valid for `r.size()` bytes until `r` is
    // freed, which cannot happen while `f` runs.
    f(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), r.size()) })
}

impl Obj {
    fn write(&mut self, alloc: &PerCpuAllocator) {
        match self {
            Obj::Typed { v, id, gen } => {
                *gen += 1;
                for cpu in 0..v.units() {
                    for (i, w) in v.get(cpu).iter().enumerate() {
                        w.store(mix(*id, *gen, cpu, i), Ordering::Relaxed);
                    }
                }
            }
            Obj::Raw { r, id, gen } => {
                *gen += 1;
                for cpu in 0..alloc.units() {
                    with_bytes(alloc, *r, cpu, |bytes| {
                        for (i, b) in bytes.iter_mut().enumerate() {
                            *b = mix(*id, *gen, cpu, i) as u8;
                        }
                    });
                }
            }
        }
    }

    fn check(&self, alloc: &PerCpuAllocator) {
        match self {
            Obj::Typed { v, id, gen } => {
                for cpu in 0..v.units() {
                    for (i, w) in v.get(cpu).iter().enumerate() {
                        assert_eq!(
                            w.load(Ordering::Relaxed),
                            mix(*id, *gen, cpu, i),
                            "typed {id} cpu {cpu} word {i}"
                        );
                    }
                }
            }
            Obj::Raw { r, id, gen } => {
                for cpu in 0..alloc.units() {
                    with_bytes(alloc, *r, cpu, |bytes| {
                        for (i, b) in bytes.iter().enumerate() {
                            assert_eq!(
                                *b,
                                mix(*id, *gen, cpu, i) as u8,
                                "raw {id} cpu {cpu} byte {i} of {r:?}"
                            );
                        }
                    });
                }
            }
        }
    }

    fn free(self, alloc: &PerCpuAllocator) {
        self.check(alloc);
        if let Obj::Raw { r, .. } = self {
            alloc.free_raw(r).unwrap();
        }
    }
}

fn writer(alloc: &PerCpuAllocator, seed: u64, stop: &AtomicBool, progress: &Progress) -> u64 {
    let mut rng = Rng::new(seed);
    let mut objs: Vec<Obj> = Vec::new();
    let mut next_id = seed << 32;
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) {
        ops += 1;
        progress.ops.fetch_add(1, Ordering::Relaxed);
        progress.give_way();
        match rng.below(10) {
            0..=2 if objs.len() < 64 => {
                next_id += 1;
                let id = next_id;
                let mut o = if rng.below(2) == 0 {
                    let v = alloc
                        .per_cpu(|cpu| std::array::from_fn(|i| AtomicU64::new(mix(id, 0, cpu, i))))
                        .unwrap();
                    Obj::Typed { v, id, gen: 0 }
                } else {
                    let size = 1 + if rng.below(8) == 0 {
                        rng.below(12 << 10)
                    } else {
                        rng.below(2048)
                    };
                    let r = alloc.alloc_raw(size, 1 << rng.below(7)).unwrap();
                    for cpu in 0..alloc.units() {
                        assert!(
                            with_bytes(alloc, r, cpu, |b| b.iter().all(|&b| b == 0)),
                            "fresh raw area not zero"
                        );
                    }
                    Obj::Raw { r, id, gen: 0 }
                };
                o.write(alloc);
                objs.push(o);
            }
            0..=5 if !objs.is_empty() => {
                let i = rng.below(objs.len());
                objs.swap_remove(i).free(alloc);
            }
            _ if !objs.is_empty() => {
                let i = rng.below(objs.len());
                objs[i].write(alloc);
                objs.iter().for_each(|o| o.check(alloc));
            }
            _ => {}
        }
    }
    objs.into_iter().for_each(|o| o.free(alloc));
    ops
}

fn churn(alloc: &PerCpuAllocator, seed: u64, stop: &AtomicBool, progress: &Progress) -> u64 {
    let mut rng = Rng::new(seed);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        rounds += 1;
        // Up to ~160 KiB per unit: several chunks.
        let class = Lifetime(rounds % 3);
        let mut batch: Vec<(PerCpu<u64>, u64)> = (0..1 + rng.below(20_000))
            .map(|_| {
                let tag = rng.next() | 1;
                let mut v = if rounds % 2 == 0 {
                    with_lifetime(class, || alloc.per_cpu_zeroed::<u64>()).unwrap()
                } else {
                    alloc.per_cpu_zeroed::<u64>().unwrap()
                };
                for x in v.iter_mut() {
                    assert_eq!(*x, 0, "fresh zeroed copy");
                    *x = tag;
                }
                (v, tag)
            })
            .collect();
        // Free all but the first tenth (the lowest pages the round took) in
        // a scattered order, so pages empty out next to the survivors' and
        // whole chunks empty out: their chunks get isolated and depopulated
        // around the survivors (a scattered tenth would pin every page)...
        let keep = batch.len() / 10;
        while batch.len() > keep {
            // `swap_remove` moves the last object to `i`, past the survivors.
            let i = keep + rng.below(batch.len() - keep);
            let (v, tag) = batch.swap_remove(i);
            assert!(v.iter().all(|&x| x == tag));
        }
        await_balance(alloc, stop);
        // ...which must still hold their values.
        for (v, tag) in batch {
            assert!(v.iter().all(|&x| x == tag), "survivor lost its value");
        }
        progress.rounds.fetch_add(1, Ordering::Relaxed);
    }
    rounds
}

#[test]
fn no_corruption_under_concurrent_depopulation() {
    stress(
        "linux-5.14".parse::<Policy>().unwrap(),
        pcpu::DEFAULT_THREAD_CACHE,
    );
}

/// Every typed drop goes to the allocator (no thread cache), as in the
/// kernel.
#[test]
fn no_corruption_under_concurrent_depopulation_without_thread_caches() {
    stress("linux-5.14".parse::<Policy>().unwrap(), 0);
}

/// The `pcpu` policy: class regions (per-thread tasks, lifetime scopes in the
/// churn thread), chunks taken back from the reclaim queue, re-queues.
#[test]
fn no_corruption_under_concurrent_depopulation_pcpu_policy() {
    stress(Policy::pcpu(), pcpu::DEFAULT_THREAD_CACHE);
}

/// The same with `keep_room`: lifetime classes keep out of each other's
/// room and may take new chunks while the reclaim queue is busy.
#[test]
fn no_corruption_under_concurrent_depopulation_keep_room() {
    let mut policy = Policy::pcpu();
    policy.keep_room = true;
    stress(policy, pcpu::DEFAULT_THREAD_CACHE);
}

fn stress(policy: Policy, thread_cache: usize) {
    let alloc = PerCpuAllocator::builder()
        .policy(policy)
        .thread_cache(thread_cache)
        .unit_size(64 << 10)
        .watermarks(0, 0) // reclaim keeps no spare empty pages
        .background_balance(true)
        .build()
        .unwrap();
    let stop = AtomicBool::new(false);
    let progress = Progress::default();
    let (alloc, stop, progress) = (&alloc, &stop, &progress);
    let (ops, rounds, depopulated, while_running) = std::thread::scope(|s| {
        let writers: Vec<_> = (1..=3)
            .map(|seed| s.spawn(move || writer(alloc, seed, stop, progress)))
            .collect();
        let churner = s.spawn(|| churn(alloc, 99, stop, progress));
        let balancer = s.spawn(|| {
            let (mut depopulated, mut checks) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                depopulated += alloc.balance_now().depopulated;
                if depopulated.div_ceil(64) > checks {
                    // Full consistency (core and mappings) in mid-flight: after
                    // the first pages depopulated, then every 64.
                    checks += 1;
                    alloc.check_invariants().unwrap();
                }
                progress.give_way();
                std::thread::yield_now();
            }
            eprintln!("stress: {checks} invariant checks while running");
            depopulated
        });
        let start = Instant::now();
        while start.elapsed() < RUN_FOR || !progress.enough(alloc) && start.elapsed() < RUN_AT_MOST
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let while_running = depopulated(alloc);
        stop.store(true, Ordering::Relaxed);
        let ops: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        (
            ops,
            churner.join().unwrap(),
            balancer.join().unwrap(),
            while_running,
        )
    });
    eprintln!(
        "stress: {ops} writer ops, {rounds} churn rounds, {depopulated} pages depopulated by \
         balance_now, {while_running} by all balance runs while the threads ran"
    );
    assert!(
        ops > MIN_OPS && rounds > MIN_ROUNDS,
        "the threads made progress"
    );
    assert!(while_running > 0, "depopulation ran concurrently");
    let s = alloc.stats();
    eprintln!(
        "stress: {} pages depopulated by all balance runs, {} runs",
        s.balance_depopulated_pages, s.balance_runs
    );
    assert_eq!(s.live_allocations, 0, "{s:?}");
    alloc.settle();
    alloc.check_invariants().unwrap();
    assert_resident_matches(alloc);
}
