//! Shared by the test binaries that count the process's balance threads.

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
