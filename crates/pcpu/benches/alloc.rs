//! Per-CPU allocation and counters against the usual alternatives, side by
//! side in one run (`cargo bench -p pcpu --bench alloc`):
//!
//! - `alloc_free`: create and drop one per-CPU `u64` slot set: `PerCpu<AtomicU64>`
//!   (with the default thread cache, and without one, the latter also under
//!   the `pcpu` policy's class placement) vs a
//!   `Box<[CachePadded<AtomicU64>]>` of `possible_cpus()` entries vs a
//!   `thread_local::ThreadLocal<AtomicU64>` (created, used once, dropped).
//! - `alloc_free_threads/{1,2}t`: the same pair on 1 and 2 threads at once
//!   (cached, uncached, `Box`), the slowest thread's time per pair.
//! - `counter/{1,2}t`: one increment per thread per iteration:
//!   `PerCpuCounter::add` (default batch, and a batch that never folds into
//!   the shared total), a bare `PerCpu<AtomicU64>::current().fetch_add`, one
//!   shared `AtomicU64`, and `ThreadLocal<Cell<u64>>`. Threads start together
//!   at a barrier; the time of the slowest thread counts (`iter_custom`).
//!
//! Memory per object is measured by `examples/memory.rs`.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use crossbeam_utils::CachePadded;
use pcpu::{possible_cpus, PerCpuAllocator, PerCpuCounter, Policy};
use thread_local::ThreadLocal;

fn bench_alloc_free(c: &mut Criterion) {
    let alloc = PerCpuAllocator::new().expect("allocator");
    let cpus = possible_cpus();
    let mut g = c.benchmark_group("alloc_free");
    g.bench_function("pcpu_PerCpu<AtomicU64>", |b| {
        b.iter(|| black_box(alloc.per_cpu(|_| AtomicU64::new(0)).unwrap()))
    });
    g.bench_function("pcpu_per_cpu_zeroed<u64>", |b| {
        b.iter(|| black_box(alloc.per_cpu_zeroed::<u64>().unwrap()))
    });
    // Every pair through the allocator's lock and bookkeeping, as the kernel.
    let uncached = PerCpuAllocator::builder()
        .thread_cache(0)
        .build()
        .expect("allocator");
    g.bench_function("pcpu_PerCpu<AtomicU64>_no_thread_cache", |b| {
        b.iter(|| black_box(uncached.per_cpu(|_| AtomicU64::new(0)).unwrap()))
    });
    // The raw API (`alloc_raw` / `free_raw`): no thread cache, and a ticket
    // table checked at every free and `ptr`.
    g.bench_function("pcpu_alloc_raw_free_raw", |b| {
        b.iter(|| {
            let raw = alloc.alloc_raw(8, 8).unwrap();
            alloc.free_raw(black_box(raw)).unwrap()
        })
    });
    // The same under the `pcpu` policy: class placement (the thread's task
    // class, the call site's predictions) on every pair.
    let classed = PerCpuAllocator::builder()
        .policy(Policy::pcpu())
        .thread_cache(0)
        .build()
        .expect("allocator");
    g.bench_function("pcpu_PerCpu<AtomicU64>_no_thread_cache_pcpu_policy", |b| {
        b.iter(|| black_box(classed.per_cpu(|_| AtomicU64::new(0)).unwrap()))
    });
    g.bench_function("Box<[CachePadded<AtomicU64>]>", |b| {
        b.iter(|| {
            black_box(
                (0..cpus)
                    .map(|_| CachePadded::new(AtomicU64::new(0)))
                    .collect::<Box<[_]>>(),
            )
        })
    });
    g.bench_function("ThreadLocal<AtomicU64>", |b| {
        b.iter(|| {
            let tl = ThreadLocal::new();
            tl.get_or(|| AtomicU64::new(0))
                .fetch_add(1, Ordering::Relaxed);
            black_box(tl)
        })
    });
    g.finish();
}

/// Run `f(iters)` on `threads` threads released together by a barrier; the
/// slowest thread's time.
fn on_threads(threads: usize, iters: u64, f: &(dyn Fn(u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    f(iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

/// Alloc+free pairs on 1 and 2 threads at once (the slowest thread's time
/// per pair): the thread cache takes no lock, the uncached path shares the
/// allocator's lock, `Box` shares malloc's arenas.
fn bench_alloc_free_threads(c: &mut Criterion) {
    let cached = PerCpuAllocator::new().expect("allocator");
    let uncached = PerCpuAllocator::builder()
        .thread_cache(0)
        .build()
        .expect("allocator");
    let cpus = possible_cpus();
    let mut g = c.benchmark_group("alloc_free_threads");
    for threads in [1usize, 2] {
        for (name, alloc) in [
            ("pcpu_PerCpu<AtomicU64>", &cached),
            ("pcpu_PerCpu<AtomicU64>_no_thread_cache", &uncached),
        ] {
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(alloc.per_cpu(|_| AtomicU64::new(0)).unwrap());
                        }
                    })
                })
            });
        }
        g.bench_function(
            BenchmarkId::new("Box<[CachePadded<AtomicU64>]>", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(
                                (0..cpus)
                                    .map(|_| CachePadded::new(AtomicU64::new(0)))
                                    .collect::<Box<[_]>>(),
                            );
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

fn bench_counters(c: &mut Criterion) {
    let alloc = PerCpuAllocator::new().expect("allocator");
    let mut g = c.benchmark_group("counter");
    for threads in [1usize, 2] {
        let counter = alloc.counter().unwrap();
        g.bench_function(
            BenchmarkId::new("PerCpuCounter::add", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(&counter).add(1);
                        }
                    })
                })
            },
        );
        let nofold = PerCpuCounter::with_batch(&alloc, i64::MAX).unwrap();
        g.bench_function(
            BenchmarkId::new("PerCpuCounter::add(no fold)", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(&nofold).add(1);
                        }
                    })
                })
            },
        );
        let pinned = alloc.per_cpu(|_| AtomicU64::new(0)).unwrap();
        g.bench_function(
            BenchmarkId::new("PerCpu<AtomicU64>::current", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(&pinned).current().fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
            },
        );
        let shared = AtomicU64::new(0);
        g.bench_function(
            BenchmarkId::new("shared_AtomicU64", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            black_box(&shared).fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
            },
        );
        let tl: ThreadLocal<Cell<u64>> = ThreadLocal::new();
        g.bench_function(
            BenchmarkId::new("ThreadLocal<Cell<u64>>", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|n| {
                        for _ in 0..n {
                            let c = black_box(&tl).get_or_default();
                            c.set(c.get() + 1);
                        }
                    })
                })
            },
        );
        black_box((
            counter.sum(),
            shared.load(Ordering::Relaxed),
            tl.into_iter().map(Cell::into_inner).sum::<u64>(),
        ));
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_alloc_free(&mut c);
    bench_alloc_free_threads(&mut c);
    bench_counters(&mut c);
    c.final_summary();
}
