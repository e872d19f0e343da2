//! A thread that cached areas of an allocator (the one that drops its last
//! handle, or a long-lived pool worker) must not keep that allocator on the balance thread (which here, with no
//! other allocator balancing in the background, then stops), nor its memory
//! mapped for ever, once every handle is dropped.
//!
//! Its own test binary with one test: it counts the process's balance
//! threads and reads /proc/self/maps, which other tests would disturb.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pcpu::PerCpuAllocator;

mod support;
use support::{balance_threads, mapped};

/// Waits up to a second for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    support::eventually(Duration::from_secs(1), cond)
}

/// A new allocator with a balance thread whose only handles left are the
/// worker's cached areas (it made and dropped one object): the address of
/// that object, still mapped.
fn cached_by_worker(jobs: &mpsc::Sender<Job>, addrs: &mpsc::Receiver<usize>) -> usize {
    let alloc = PerCpuAllocator::builder().build().expect("allocator");
    // The thread names itself once it runs.
    assert!(eventually(|| balance_threads() == 1));
    jobs.send(Job::Use(alloc.clone())).unwrap();
    let addr = addrs.recv().unwrap();
    drop(alloc);
    assert!(
        mapped(addr),
        "the worker's cached areas are still allocated"
    );
    addr
}

/// The allocator that mapped `addr` is gone: the balance thread (which only
/// it used) stopped and its memory unmapped.
fn assert_gone(addr: usize, which: &str) {
    assert!(
        eventually(|| balance_threads() == 0),
        "{which}'s balance thread outlived every handle"
    );
    assert!(!mapped(addr), "{which}'s memory is unmapped");
}

enum Job {
    /// Make and drop one object of this allocator.
    Use(PerCpuAllocator),
    Exit,
}

#[test]
fn a_pool_thread_cache_does_not_keep_a_dropped_allocator() {
    assert_eq!(balance_threads(), 0);

    // A thread that drops an allocator's last handle while its own cache
    // holds the rest frees them at once: the allocator goes then.
    let alloc = PerCpuAllocator::builder().build().expect("allocator");
    assert!(eventually(|| balance_threads() == 1));
    let v = alloc.per_cpu(|_| 1u64).expect("allocate");
    let addr = v.get(0) as *const u64 as usize;
    drop(v);
    assert!(alloc.stats().thread_cached > 0, "cached");
    drop(alloc);
    assert_gone(addr, "the caller");

    let (jobs, rx) = mpsc::channel::<Job>();
    let (done, addrs) = mpsc::channel::<usize>();
    let worker = thread::spawn(move || {
        for job in rx {
            match job {
                Job::Use(alloc) => {
                    let v = alloc.per_cpu(|_| 1u64).expect("allocate");
                    let addr = v.get(0) as *const u64 as usize;
                    drop(v); // into this thread's cache
                    assert!(alloc.stats().thread_cached > 0, "cached");
                    drop(alloc);
                    done.send(addr).unwrap();
                }
                Job::Exit => return,
            }
        }
    });

    // The worker's cached areas are the last handles of `a`: the allocator
    // lives on until the worker's next cold cache operation.
    let a_addr = cached_by_worker(&jobs, &addrs);

    // That operation (a class of another allocator) finds that only its own
    // entries hold `a`, frees them, and with the last of them `a` goes: its
    // balance thread stops and its memory is unmapped.
    let b = PerCpuAllocator::builder()
        .background_balance(false)
        .build()
        .expect("allocator");
    jobs.send(Job::Use(b.clone())).unwrap();
    addrs.recv().unwrap();
    assert_gone(a_addr, "a");
    assert!(b.stats().live_allocations > 0, "b's areas stay cached");

    // Again, but the worker's next operation uses a class it already has (of
    // `b`), made stale by a moved cache epoch: flushing it is also a cold
    // operation, and lets go of `c`.
    let c_addr = cached_by_worker(&jobs, &addrs);
    b.trim_thread_caches(); // moves b's epoch
    jobs.send(Job::Use(b.clone())).unwrap();
    addrs.recv().unwrap();
    assert_gone(c_addr, "c");

    // Last, an allocator whose last handles are still cached when the worker
    // exits: its thread-local destructor drops them, which stops and joins
    // the balance thread from inside that destructor.
    let d_addr = cached_by_worker(&jobs, &addrs);
    assert_eq!(balance_threads(), 1, "d's areas are still cached");

    jobs.send(Job::Exit).unwrap();
    worker.join().unwrap();
    assert_eq!(b.stats().live_allocations, 0, "thread exit gives them back");
    b.check_invariants().unwrap();
    assert_gone(d_addr, "d");
}
