//! A child that inherited a thread's cached areas and ends with `exit` (which
//! runs that thread's thread-local destructors, so the cache's) must not
//! wait for an allocator lock that another parent thread held at the fork:
//! in the child no thread will ever release it.
//!
//! Its own test binary with one test: it forks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use pcpu::PerCpuAllocator;

mod support;
use support::wait_child;

#[test]
fn a_child_exits_while_a_parent_thread_held_the_allocator() {
    let a = PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .background_balance(false)
        .build()
        .unwrap();
    let stop = AtomicBool::new(false);
    let (mut hung, mut failed) = (0, Vec::new());
    thread::scope(|s| {
        // Takes and releases the state lock all the time, through a borrow:
        // `a` stays the allocator's only user handle.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(a.stats());
            }
        });
        for i in 0..200 {
            // Areas in this thread's cache, which the child inherits.
            drop(a.per_cpu(|_| 0u64).unwrap());
            assert!(a.stats().thread_cached > 0);
            // SAFETY: the child only (every other time) drops the
            // allocator and ends with `exit`, which runs this thread's
            // thread-local destructors (glibc), the cache's among them.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                if i % 2 == 1 {
                    // The last user handle, with this thread's cache
                    // holding the rest: dropping it takes no lock.
                    // SAFETY: the child never returns to drop `a` again
                    // (it ends below), and the thread borrowing it does not
                    // exist here.
                    drop(unsafe { std::ptr::read(&a) });
                }
                // SAFETY: ends the child; what it runs is the point.
                unsafe { libc::exit(0) };
            }
            match wait_child(pid, Duration::from_secs(5)) {
                None => hung += 1,
                Some(s) if !(libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0) => failed.push(s),
                Some(_) => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(hung, 0, "children hung at exit (failed: {failed:x?})");
    assert!(failed.is_empty(), "child statuses {failed:x?}");
    a.check_invariants().unwrap();
}
