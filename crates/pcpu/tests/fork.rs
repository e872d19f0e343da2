//! A `fork()`ed child that drops an allocator made before the fork exits
//! normally: the balance thread is the parent's, so the child neither stops
//! nor joins it (joining a thread that does not exist in the child hung or
//! panicked). The child only drops the allocator and `_exit`s, and the
//! parent's balance thread is idle at the fork, holding no lock.

use std::time::{Duration, Instant};

#[test]
fn a_forked_child_drops_an_allocator_and_exits() {
    let alloc = pcpu::PerCpuAllocator::new().unwrap();
    let c = alloc.counter().unwrap();
    c.inc();
    assert!(alloc.wait_idle(Duration::from_secs(10)));
    // SAFETY: the child runs only `drop` and `_exit`: no lock is held at the
    // fork by the idle balance thread (it waits on a condition variable),
    // and the test binary runs this one test.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A panic must end the child with a failure: unwinding into the
        // test harness would end it as a thread, exiting 0.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(c);
            alloc.trim_thread_caches();
            drop(alloc);
        }));
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(i32::from(dropped.is_err())) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
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
        "child status {status:#x}"
    );
    // The parent's allocator still works.
    let x = alloc.per_cpu(|c| c as u64).unwrap();
    assert_eq!(*x.get(0), 0);
}
