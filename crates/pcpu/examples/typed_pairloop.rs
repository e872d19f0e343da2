//! Profiling aid: a tight loop of `PerCpu<AtomicU64>` alloc+drop pairs (run
//! under `valgrind --tool=callgrind` to count instructions per pair).
//! Arguments: pairs (default 1000000), thread cache size (default: the
//! builder's default), `zeroed` to use `per_cpu_zeroed::<u64>` instead,
//! `raw` for `alloc_raw(8, 8)` and `free_raw` (no thread cache; `plain` or
//! anything else: `per_cpu`), the policy (default `linux-5.14`),
//! `track` to track owners (`Builder::track_owners`) or `trace` to trace
//! the allocations into `$TMPDIR/typed_pairloop-trace`
//! (`Builder::trace_dir`).
use std::sync::atomic::AtomicU64;

use pcpu::{PerCpuAllocator, Policy};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cache: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(pcpu::DEFAULT_THREAD_CACHE);
    let policy: Policy = std::env::args()
        .nth(4)
        .map_or(Ok(Policy::default()), |s| s.parse())
        .expect("policy");
    let record = std::env::args().nth(5);
    let mut builder = PerCpuAllocator::builder()
        .policy(policy)
        .thread_cache(cache)
        .track_owners(record.as_deref() == Some("track"));
    if record.as_deref() == Some("trace") {
        builder = builder.trace_dir(std::env::temp_dir().join("typed_pairloop-trace"));
    }
    let alloc = builder.build().expect("allocator");
    let mode = std::env::args().nth(3);
    let t = std::time::Instant::now();
    if mode.as_deref() == Some("raw") {
        for _ in 0..n {
            let raw = alloc.alloc_raw(8, 8).expect("alloc");
            alloc.free_raw(std::hint::black_box(raw)).expect("free");
        }
    } else if mode.as_deref() == Some("zeroed") {
        for _ in 0..n {
            std::hint::black_box(alloc.per_cpu_zeroed::<u64>().expect("alloc"));
        }
    } else {
        for _ in 0..n {
            std::hint::black_box(alloc.per_cpu(|_| AtomicU64::new(0)).expect("alloc"));
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    println!("{n} pairs, {per:.1} ns per pair");
}
