//! Memory per 8-byte per-CPU object: 10^6 `PerCpu<u64>` allocations, then
//! all freed and the balance work settled, as the allocator counts it
//! (`Percpu:`, populated pages) and as the OS sees it (`resident_bytes`:
//! pages backed by memory, from `/proc/self/pagemap`).
//!
//! `cargo run --release -p pcpu --example memory [-- N]`

use pcpu::{PerCpuAllocator, Policy};

fn main() -> Result<(), pcpu::Error> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("object count"));
    println!(
        "objects: {n}, handle size: {} B (heap, not per CPU)",
        std::mem::size_of::<pcpu::PerCpu<u64>>()
    );
    for policy in ["linux-5.14", "linux-5.11"] {
        let alloc = PerCpuAllocator::builder()
            .policy(policy.parse::<Policy>().expect("policy"))
            .build()?;
        let units = alloc.units() as f64;
        let report = |phase: &str| -> Result<(), pcpu::Error> {
            let s = alloc.stats();
            let rss = alloc.resident_bytes()?;
            let per = |b: u64| b as f64 / n as f64 / units;
            println!(
                "{policy:<10} {phase:<18} Percpu {:>9} kB = {:>6.2} B/object/CPU | resident {:>9} kB = {:>6.2} B/object/CPU | chunks {}",
                s.percpu_bytes / 1024,
                per(s.percpu_bytes),
                rss / 1024,
                per(rss),
                s.chunks
            );
            Ok(())
        };
        let objs: Vec<_> = (0..n)
            .map(|_| alloc.per_cpu_zeroed::<u64>())
            .collect::<Result<_, _>>()?;
        report("after alloc")?;
        drop(objs);
        alloc.settle();
        report("after free+settle")?;
    }
    Ok(())
}
