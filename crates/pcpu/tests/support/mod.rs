//! Shared by the test binaries that run one test each: what /proc says
//! about the process (its balance threads, its mappings), a churn that
//! always leaves balance work, and waiting for a forked child.
// Each binary uses some of these.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Threads of this process named like the allocator's balance thread.
pub(crate) fn balance_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "pcpu-balance")
        .count()
}

/// Waits up to `limit` for `cond` (a new thread names itself once it runs;
/// a joined thread may linger in /proc/self/task for a moment).
pub(crate) fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Is `addr` inside a mapping of this process?
pub(crate) fn mapped(addr: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (s, e) = range.split_once('-')?;
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        })
        .any(|(s, e)| (s..e).contains(&addr))
}

/// Fill three chunks and free everything: the frees leave two chunks fully
/// free, which always schedules balance work (one free chunk is kept).
pub(crate) fn churn(alloc: &pcpu::PerCpuAllocator) {
    let chunks = alloc.stats().chunks;
    let mut objs = Vec::new();
    while alloc.stats().chunks < chunks + 2 {
        objs.push(alloc.per_cpu_zeroed::<u64>().unwrap());
    }
    drop(objs);
}

/// Waits for child `pid` up to `limit`; kills it then. Its exit status, or
/// `None` if it hung.
pub(crate) fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
