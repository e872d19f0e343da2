//! Criterion benchmarks of the core bookkeeping (SimBackend: no memory is
//! touched, so these measure the allocator's own work).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pcpu_core::*;

fn kernel_like() -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, Policy::default())
}

/// The kernel-like allocator with 1,000 live 8-byte neighbours, so that a
/// pair does not always hit an empty chunk.
fn with_neighbours() -> (Allocator, SimBackend) {
    let mut a = kernel_like();
    let mut b = SimBackend::default();
    for _ in 0..1000 {
        a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
    }
    (a, b)
}

fn pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair");
    for size in [4usize, 8, 64, 1024] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bch, &size| {
            let (mut a, mut b) = with_neighbours();
            bch.iter(|| {
                let x = a
                    .alloc(&mut b, black_box(size), 8, AllocFlags::NORMAL)
                    .unwrap();
                a.free(x.chunk, x.offset).unwrap();
            });
        });
    }
    g.finish();
    // The same pairs through a magazine of 32 (areas kept allocated for
    // reuse: the bookkeeping runs only when the magazine is empty or full).
    let mut g = c.benchmark_group("alloc_free_pair_magazine");
    for size in [4usize, 8, 64, 1024] {
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bch, &size| {
            let (mut a, mut b) = with_neighbours();
            let mut mag = Magazine::new(a.request(size, 8).unwrap(), 32);
            bch.iter(|| {
                let x = a
                    .alloc_cached(&mut b, black_box(&mut mag), AllocFlags::NORMAL)
                    .unwrap();
                a.free_cached(&mut mag, x).unwrap();
            });
        });
    }
    g.finish();
    // The `pcpu` policy's class path: a task class (with a call site, so
    // the long-lived prediction runs unless it is off), its regions, its
    // reclaim rules; 1,000 neighbours of another task.
    let mut g = c.benchmark_group("alloc_free_pair_pcpu_task_class");
    for (size, long_lived) in [(8usize, true), (64, true), (8, false)] {
        let id = format!("{size}{}", if long_lived { "" } else { "_no_long_lived" });
        g.bench_function(id, |bch| {
            let mut p = Policy::pcpu();
            p.long_lived = long_lived;
            let mut a = Allocator::new(*kernel_like().geometry(), p);
            let mut b = SimBackend::default();
            let hint = ClassHint::task(1).at_site(0x100);
            for _ in 0..1000 {
                a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, ClassHint::task(2))
                    .unwrap();
            }
            bch.iter(|| {
                let x = a
                    .alloc_class(&mut b, black_box(size), 8, AllocFlags::NORMAL, hint)
                    .unwrap();
                a.free(x.chunk, x.offset).unwrap();
            });
        });
    }
    g.finish();

    // A new task's first object opens a region, with and without the
    // search for a run beside survivors. `beside`: 2,000 half-kilobyte
    // objects of other tasks, 3 of every 4 freed, so the first free run is
    // beside survivors (the search stops at once). `worst`: the first chunk
    // and one dynamic chunk full of them, then that chunk's first 8 pages
    // freed and 1 of every 4 other objects: first fit lands on an empty page
    // and the search walks the chunk's ~240 half-kilobyte holes, too small
    // to count, to its end before it falls back.
    let mut g = c.benchmark_group("open_region_pcpu_task");
    for layout in ["beside", "worst"] {
        for backfill in [true, false] {
            let id = format!(
                "{layout}_{}",
                if backfill { "backfill" } else { "first_fit" }
            );
            g.bench_function(id, |bch| {
                let mut p = Policy::pcpu();
                p.backfill = backfill;
                let mut a = Allocator::new(*kernel_like().geometry(), p);
                let mut b = SimBackend::default();
                let first = a.first_chunk();
                let mut objs = Vec::new();
                for t in 0..2000u64 {
                    let x = a
                        .alloc_class(&mut b, 512, 8, AllocFlags::NORMAL, ClassHint::task(t))
                        .unwrap();
                    // `worst`: stop when a second dynamic chunk is needed.
                    let dynamic = objs.iter().find(|o: &&Allocation| o.chunk != first);
                    if layout == "worst"
                        && dynamic.is_some_and(|d| d.chunk != x.chunk)
                        && x.chunk != first
                    {
                        a.free(x.chunk, x.offset).unwrap();
                        break;
                    }
                    objs.push(x);
                }
                for (i, x) in objs.iter().enumerate() {
                    let free = match layout {
                        "beside" => i % 4 != 0,
                        _ => x.chunk != first && (x.offset < 8 * 4096 || i % 4 == 1),
                    };
                    if free {
                        a.free(x.chunk, x.offset).unwrap();
                    }
                }
                // Reclaim: the emptied chunk is sidelined.
                for _ in 0..3 {
                    a.balance(&mut b);
                }
                let mut task = 1u64 << 32;
                bch.iter(|| {
                    task += 1;
                    let x = a
                        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::task(task))
                        .unwrap();
                    a.free(x.chunk, x.offset).unwrap();
                });
            });
        }
    }
    g.finish();
}

fn bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_1e6_8B");
    g.sample_size(10);
    g.bench_function("alloc_then_free_per_op", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut a = kernel_like();
                let mut b = SimBackend::default();
                let t = Instant::now();
                let v: Vec<_> = (0..1_000_000)
                    .map(|_| a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap())
                    .collect();
                for x in &v {
                    a.free(x.chunk, x.offset).unwrap();
                }
                total += t.elapsed() / 2_000_000;
            }
            total
        });
    });
    g.finish();
}

/// `n` chunks of 64 KiB units in use, each with one 64-byte hole at a
/// different place, so every chunk sits in an active slot.
fn with_chunks(n: usize) -> (Allocator, SimBackend) {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 4096,
    };
    let g = Geometry::new(4096, 4, 64 << 10, fc).unwrap();
    let mut a = Allocator::new(g, Policy::default());
    let mut b = SimBackend::default();
    let _ = a.alloc(&mut b, 4096, 4, AllocFlags::NORMAL).unwrap(); // fill the first chunk
    for i in 0..n {
        let hole = 64 * (i % 400) + 64;
        let x = a
            .alloc(&mut b, 32768 - hole, 4, AllocFlags::NORMAL)
            .unwrap();
        assert_eq!(x.offset, 0);
        a.alloc_at(&mut b, x.chunk, 32768, 32768, 4, AllocFlags::NORMAL)
            .unwrap();
        if hole > 64 {
            // leave exactly 64 bytes free, just below the second half
            a.alloc_at(&mut b, x.chunk, x.size, hole - 64, 4, AllocFlags::NORMAL)
                .unwrap();
        }
    }
    (a, b)
}

fn chunks(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair_8B_with_chunks");
    for n in [1usize, 100, 10_000] {
        let (mut a, mut b) = with_chunks(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                let x = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
                a.free(x.chunk, x.offset).unwrap();
            });
        });
    }
    g.finish();
}

criterion_group!(benches, pair, bulk, chunks);
criterion_main!(benches);
