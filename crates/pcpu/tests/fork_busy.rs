//! `fork()` while other threads build and drop allocators: an allocator the
//! child builds starts the child's own balance thread without waiting for
//! anything a parent thread held at the fork (the process-wide worker slot
//! is swapped, never locked; with a lock, about one child in twenty hung).
//!
//! Its own test binary with one test: it forks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pcpu::PerCpuAllocator;

mod support;
use support::{churn, wait_child};

fn build() -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .unit_size(64 << 10)
        .thread_cache(0)
        .build()
        .unwrap()
}

#[test]
fn a_child_builds_an_allocator_while_parent_threads_build_and_drop() {
    // Keeps the parent's balance thread running, so the busy threads below
    // never start one (a fork while std spawns a thread can leave the
    // child's own spawn waiting on std's lock: not this crate's to fix).
    let keep = build();
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(build());
                }
            })
        })
        .collect();
    let (mut hung, mut failed) = (0, Vec::new());
    for _ in 0..300 {
        // SAFETY: the child uses only this crate, the allocator (glibc's
        // malloc is fork-safe) and std's thread spawn (no other thread is
        // spawning: see `keep`), then ends with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = std::panic::catch_unwind(|| {
                let a = build();
                churn(&a);
                let ok = a.wait_idle(Duration::from_secs(10)) && a.stats().balance_runs > 0;
                drop(a);
                if ok {
                    0
                } else {
                    2
                }
            })
            .unwrap_or(1);
            // SAFETY: ends the child without running the parent's exit
            // handlers.
            unsafe { libc::_exit(code) };
        }
        match wait_child(pid, Duration::from_secs(20)) {
            None => hung += 1,
            Some(s) if !(libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0) => failed.push(s),
            Some(_) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    drop(keep);
    assert_eq!(hung, 0, "children hung (failed: {failed:x?})");
    assert!(
        failed.is_empty(),
        "child statuses {failed:x?} (1: panic, 2: no balance run)"
    );
}
