//! Model checking of the allocator's lock protocol with loom: every
//! interleaving (up to a preemption bound) of a few threads that allocate,
//! write, free, balance and drop, on real mappings.
//!
//! Built only with `--cfg loom` (the crate then takes its locks, condition
//! variables, `Arc`s, threads and the thread caches' thread-locals from loom;
//! `src/sync.rs`):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p pcpu --release --test loom
//! ```
//!
//! What a failure would look like: a deadlock or lost wake-up (loom reports
//! that every thread is blocked), a panic or failed check in some
//! interleaving, or a write to a page the balance work discarded (the models
//! build with guard pages: the page is `PROT_NONE` then, so the process
//! dies of `SIGSEGV`).
//!
//! `LOOM_MAX_PREEMPTIONS` overrides each model's preemption bound (the
//! models with three allocating or checking threads are bounded at 3 and 4
//! preemptions per execution, the background thread's at 2; the others are
//! explored exhaustively).
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use pcpu::{PerCpu, PerCpuAllocator, Policy, Prefault};

/// 32 KiB units (the least), a one-page first chunk.
const UNIT: usize = 32 << 10;
const PAGE: usize = 4096;
/// A quarter page: four objects per page.
const OBJ: usize = 1024;
/// A test object: `OBJ` bytes per CPU, every byte its tag.
type Obj = PerCpu<[u8; OBJ]>;

/// A small allocator with `policy`, with or without the background thread,
/// `cache` areas per thread-cache class, and a high watermark of 0, so that
/// reclaim keeps no empty page and a balance run has depopulation work as
/// soon as a chunk has empty pages.
fn small(policy: &str, background: bool, cache: usize) -> PerCpuAllocator {
    let alloc = PerCpuAllocator::builder()
        .policy(policy.parse::<Policy>().expect("policy"))
        .unit_size(UNIT)
        .first_chunk_size(PAGE)
        .watermarks(0, 0)
        .background_balance(background)
        .thread_cache(cache)
        // Every unit resident once populated, whatever the affinity of the
        // thread that builds it: `assert_consistent` compares the two.
        .prefault(Prefault::AllUnits)
        // A write to a discarded page faults.
        .guard_pages(true)
        .build()
        .expect("build");
    assert_eq!(alloc.page_size(), PAGE, "the models assume 4 KiB pages");
    alloc
}

/// No background thread, no thread cache: every operation reaches the core.
fn quiet(policy: &str) -> PerCpuAllocator {
    small(policy, false, 0)
}

/// An object whose every copy is written with `tag` (a write to a
/// discarded page faults).
fn obj(alloc: &PerCpuAllocator, tag: u8) -> Obj {
    let mut o = alloc.per_cpu(|_| [tag; OBJ]).expect("alloc");
    for copy in o.iter_mut() {
        copy[OBJ - 1] = tag;
    }
    o
}

fn assert_intact(o: &Obj, tag: u8) {
    for copy in o.iter() {
        assert!(copy.iter().all(|&b| b == tag), "object {tag} was changed");
    }
}

/// `objs` were made by [`obj`] with the tags `first`, `first + 1`, ...
fn assert_all_intact(objs: &[Obj], first: u8) {
    for (i, o) in objs.iter().enumerate() {
        assert_intact(o, first + i as u8);
    }
}

/// In use: the first chunk's page (tags 0-3), the second chunk's first page
/// (4-7) and the third chunk's first page (36-39). Emptied again: the third
/// chunk's second page, then the second chunk's seven others, which
/// isolates the second chunk for reclaim. Returns the objects of tags 0-7
/// and 36-39.
fn isolate_second_chunk(alloc: &PerCpuAllocator) -> (Vec<Obj>, Vec<Obj>) {
    let keep: Vec<_> = (0..8).map(|i| obj(alloc, i)).collect();
    let mid: Vec<_> = (8..36).map(|i| obj(alloc, i)).collect();
    let mut tail: Vec<_> = (36..44).map(|i| obj(alloc, i)).collect();
    drop(tail.split_off(4));
    drop(mid);
    (keep, tail)
}

/// The state every model must end in: the core's invariants hold, its
/// populated pages are the mappings', and resident memory is what it says.
fn assert_consistent(alloc: &PerCpuAllocator) {
    alloc.check_invariants().expect("invariants");
    let stats = alloc.stats();
    assert_eq!(
        alloc.resident_bytes().expect("resident bytes"),
        stats.percpu_bytes,
        "{stats:?}"
    );
}

/// Explore `f` under loom: exhaustively (`bound` `None`), or with at most
/// `bound` preemptions per execution where the three-thread models would
/// take minutes otherwise. Prints how many executions it ran.
fn model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::Arc;
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = bound;
    }
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = Arc::clone(&n);
    b.check(move || {
        n2.fetch_add(1, Ordering::Relaxed);
        f()
    });
    eprintln!("{} executions", n.load(Ordering::Relaxed));
}

/// A balance run that depopulates a chunk's empty pages, against an
/// allocation that needs a page populated (taking `alloc_mutex` with
/// `try_lock`, or waiting for it "in flight" while the run holds it), and a
/// free. Live objects must keep their contents, and pages under them must
/// never be discarded.
fn balance_run_against_allocation_and_free(policy: &'static str) {
    // Executions in which the run depopulated pages (in the others the
    // allocations ran first and left no empty page above the reserve, so
    // the run put the chunk back instead).
    let depopulating = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&depopulating);
    model(None, move || {
        let alloc = quiet(policy);
        let (mut keep, tail) = isolate_second_chunk(&alloc);
        assert_eq!(alloc.stats().chunks, 3);
        assert!(alloc.balance_pending(), "{:?}", alloc.stats());

        let a2 = alloc.clone();
        let balancer = thread::spawn(move || a2.balance_now());
        // Concurrently: new objects (the fifth on a page to populate) and a
        // free.
        let fresh: Vec<_> = (100..105).map(|i| obj(&alloc, i)).collect();
        drop(keep.pop());
        if balancer.join().expect("balance thread").depopulated > 0 {
            seen.fetch_add(1, Ordering::Relaxed);
        }

        assert_all_intact(&fresh, 100);
        assert_all_intact(&keep, 0);
        assert_all_intact(&tail, 36);
        assert_consistent(&alloc);
        drop((fresh, keep, tail));
        alloc.settle();
        assert_consistent(&alloc);
        assert_eq!(alloc.stats().live_allocations, 0);
    });
    assert!(depopulating.load(Ordering::Relaxed) > 0);
}

#[test]
fn balance_run_against_allocation_and_free_linux_5_14() {
    balance_run_against_allocation_and_free("linux-5.14");
}

#[test]
fn balance_run_against_allocation_and_free_pcpu() {
    balance_run_against_allocation_and_free("pcpu");
}

/// Three threads that each need a new chunk at once (the first chunk is
/// full): one maps it, the others wait for `alloc_mutex` or go in flight
/// and land in it too. Placements never overlap, and exactly one chunk is
/// created.
#[test]
fn concurrent_allocations_creating_chunks() {
    model(Some(4), || {
        let alloc = quiet("linux-5.14");
        // The first chunk is full: the next allocation needs a chunk.
        let base: Vec<_> = (0..4).map(|i| obj(&alloc, i)).collect();
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let a = alloc.clone();
                thread::spawn(move || {
                    let o = obj(&a, 10 + t);
                    assert_intact(&o, 10 + t);
                    o
                })
            })
            .collect();
        let mine = obj(&alloc, 20);
        let objs: Vec<_> = threads
            .into_iter()
            .map(|h| h.join().expect("allocating thread"))
            .collect();
        assert_intact(&mine, 20);
        assert_all_intact(&objs, 10);
        assert_all_intact(&base, 0);
        assert_eq!(alloc.stats().chunks, 2);
        assert_consistent(&alloc);
    });
}

/// `check_invariants` while an allocation waits in flight for `alloc_mutex`
/// (held by a balance run) to populate its page: the check waits until no
/// area is in flight, so it never sees the transiently low empty-page
/// counters, and finds the core's populated pages equal to the mappings'.
#[test]
fn invariant_check_against_allocation_in_flight() {
    model(Some(3), || {
        let alloc = quiet("linux-5.14");
        // The first chunk full, a second chunk with one page in use.
        let base: Vec<_> = (0..8).map(|i| obj(&alloc, i)).collect();
        let gone: Vec<_> = (8..12).map(|i| obj(&alloc, i)).collect();
        drop(gone); // one empty page left populated
        let a2 = alloc.clone();
        let balancer = thread::spawn(move || {
            a2.balance_now();
        });
        let a3 = alloc.clone();
        let allocator = thread::spawn(move || {
            // The fifth needs a page populated.
            let objs: Vec<_> = (20..25).map(|i| obj(&a3, i)).collect();
            objs
        });
        alloc.check_invariants().expect("invariants during the run");
        balancer.join().expect("balance thread");
        let objs = allocator.join().expect("allocating thread");
        assert_all_intact(&objs, 20);
        assert_all_intact(&base, 0);
        assert_consistent(&alloc);
    });
}

/// The background balance thread: woken when a free isolates a chunk,
/// checked while it may be mid-run, and stopped and joined when the last
/// handle goes, whether it is asleep or running (no lost wake-up, no
/// deadlock at drop).
#[test]
fn background_thread_wakes_and_stops() {
    // Executions in which the thread had completed a run before the drop.
    let ran = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&ran);
    model(Some(2), move || {
        let alloc = small("linux-5.14", true, 0);
        // The free that isolates the second chunk wakes the thread.
        let (keep, tail) = isolate_second_chunk(&alloc);
        // Waits for a run in progress; the mappings match the bookkeeping.
        alloc.check_invariants().expect("invariants");
        assert_all_intact(&keep, 0);
        assert_all_intact(&tail, 36);
        if alloc.stats().balance_runs > 0 {
            seen.fetch_add(1, Ordering::Relaxed);
        }
        // The last handle (objects hold one each): stops the thread.
        drop((keep, tail, alloc));
    });
    assert!(ran.load(Ordering::Relaxed) > 0);
}

/// Thread caches: a thread's cached areas go back at its next operation
/// once another thread moved the allocator's cache epoch
/// (`trim_thread_caches`), which also flushes the trimming thread's own.
#[test]
fn thread_caches_trim_reaches_another_thread() {
    model(None, || {
        let alloc = small("linux-5.14", false, 4);
        let (trimmed, wait) = loom::sync::mpsc::channel::<()>();
        let (cached_one, first_cached) = loom::sync::mpsc::channel::<()>();
        let a2 = alloc.clone();
        let worker = thread::spawn(move || {
            let x = a2.per_cpu_zeroed::<u64>().expect("alloc");
            drop(x); // into this thread's cache, with a neighbour
            assert_eq!(a2.stats().thread_cached, 2);
            cached_one.send(()).expect("main");
            wait.recv().expect("trimmed");
            // The class is stale now: its areas are freed and a fresh batch
            // allocated, rather than one of them handed out again.
            let before = a2.stats().total_allocations;
            let y = a2.per_cpu(|cpu| cpu as u64).expect("alloc");
            assert!(a2.stats().total_allocations > before, "stale area reused");
            for (cpu, v) in y.iter().enumerate() {
                assert_eq!(*v, cpu as u64);
            }
            drop(y);
            a2.stats().thread_cached
        });
        let z = alloc.per_cpu_zeroed::<u64>().expect("alloc");
        assert!(z.iter().all(|&v| v == 0));
        drop(z);
        first_cached.recv().expect("worker");
        alloc.trim_thread_caches();
        assert_eq!(alloc.stats().thread_cached, 0);
        trimmed.send(()).expect("worker");
        let cached = worker.join().expect("worker");
        // What is live is what the worker's cache holds, or nothing once the
        // worker's thread-local destructor ran (under loom, `join` may return
        // before or after it).
        let live = alloc.stats().live_allocations;
        assert!(live == cached || live == 0, "{live} live, {cached} cached");
        assert_consistent(&alloc);
    });
}

/// The worker's cached areas hold the allocator's last handles: dropping
/// them at thread exit frees the areas and drops the allocator on that
/// thread, in a thread-local destructor, stopping its background thread,
/// while the creator has dropped its clone concurrently. (Nothing is left to
/// check afterwards: the test is that no execution panics or deadlocks.)
#[test]
fn last_handle_in_a_thread_cache() {
    model(None, || {
        let alloc = small("linux-5.14", true, 4);
        let a2 = alloc.clone();
        let worker = thread::spawn(move || {
            let x = a2.per_cpu_zeroed::<u64>().expect("alloc");
            drop(a2);
            drop(x); // the area and a handle go into this thread's cache
        });
        drop(alloc);
        worker.join().expect("worker");
    });
}
