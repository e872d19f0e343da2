//! A `fork()`ed child that drops an allocator made before the fork exits
//! normally: the balance thread is the parent's, so the child neither stops
//! nor joins it (joining a thread that does not exist in the child hung or
//! panicked). Before that, the child allocates and frees until balance work
//! is pending, and `wait_idle` returns at once rather than wait for that
//! thread (it timed out). An allocator the child builds gets a balance
//! thread of its own. The parent's balance thread is idle at the fork,
//! holding no lock.

use std::time::{Duration, Instant};

#[test]
fn a_forked_child_drops_an_allocator_and_exits() {
    let alloc = pcpu::PerCpuAllocator::new().unwrap();
    let c = alloc.counter().unwrap();
    c.inc();
    assert!(alloc.wait_idle(Duration::from_secs(10)));
    // SAFETY: no lock is held at the fork by the idle balance thread (it
    // waits on a condition variable), and the test binary runs this one
    // test; so the child may use the allocator, build one and start its
    // balance thread, then ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A panic must end the child with a failure: unwinding into the
        // test harness would end it as a thread, exiting 0.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(c);
            // Pending balance work in the child: `wait_idle` must not wait
            // for a balance thread the child does not have.
            let objs: Vec<_> = (0..50_000).map(|_| alloc.per_cpu_zeroed::<u64>()).collect();
            drop(objs);
            alloc.trim_thread_caches();
            let pending = alloc.balance_pending();
            let idle = alloc.wait_idle(Duration::from_secs(30));
            alloc.settle();
            drop(alloc);
            // An allocator built in the child gets a balance worker of its
            // own (the parent's is not here), which runs its work.
            let fresh = pcpu::PerCpuAllocator::builder()
                .thread_cache(0)
                .build()
                .unwrap();
            let objs: Vec<_> = (0..50_000).map(|_| fresh.per_cpu_zeroed::<u64>()).collect();
            drop(objs);
            let ran = fresh.wait_idle(Duration::from_secs(30)) && fresh.stats().balance_runs > 0;
            drop(fresh);
            match (pending, idle, ran) {
                (false, _, _) => 3,
                (true, false, _) => 2,
                (true, true, false) => 4,
                (true, true, true) => 0,
            }
        }));
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code.unwrap_or(1)) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child hung dropping the allocator");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x} (exit 1: panic, 2: wait_idle timed out, 3: no work pending, 4: no background run in the child)"
    );
    // The parent's allocator still works.
    let x = alloc.per_cpu(|c| c as u64).unwrap();
    assert_eq!(*x.get(0), 0);
}
