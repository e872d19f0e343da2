//! `current_cpu()` cost: the rseq fast path against `getcpu` through rustix
//! (the vDSO on x86_64), glibc's `sched_getcpu()` (rseq, then vDSO) and the
//! raw `getcpu` system call.
//!
//! Run with `cargo bench -p pcpu --bench cpu`. Under valgrind or with
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0` the `rseq` case measures the
//! (failed) fast-path check only and `current_cpu` degrades to the syscall.

use criterion::Criterion;
use pcpu::__private::{
    current_cpu, current_cpu_rseq, current_cpu_syscall, possible_cpus, rseq_available,
};
use std::hint::black_box;

fn bench_cpu(c: &mut Criterion) {
    eprintln!(
        "possible_cpus = {}, rseq fast path {}",
        possible_cpus(),
        if rseq_available() {
            "active"
        } else {
            "inactive"
        }
    );
    let mut g = c.benchmark_group("current_cpu");
    g.bench_function("current_cpu", |b| b.iter(|| black_box(current_cpu())));
    // Map to a plain usize: `black_box(Option<usize>)` spills a 16-byte value
    // through the stack and measures a store-forwarding stall, not rseq.
    g.bench_function("rseq", |b| {
        b.iter(|| black_box(current_cpu_rseq().unwrap_or(usize::MAX)))
    });
    g.bench_function("rustix_getcpu", |b| {
        b.iter(|| black_box(current_cpu_syscall()))
    });
    g.bench_function("glibc_sched_getcpu", |b| {
        // glibc >= 2.35 itself reads rseq first, then the vDSO.
        // SAFETY: `sched_getcpu` takes no arguments and has no preconditions.
        b.iter(|| black_box(unsafe { libc::sched_getcpu() }))
    });
    g.bench_function("raw_syscall_getcpu", |b| {
        b.iter(|| {
            let mut cpu = 0u32;
            // SAFETY: `getcpu(&mut cpu, NULL, NULL)` writes one `u32` through
            // a valid, exclusive pointer; the null arguments are allowed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_getcpu,
                    &mut cpu as *mut u32,
                    std::ptr::null_mut::<u32>(),
                    std::ptr::null_mut::<libc::c_void>(),
                )
            };
            black_box((rc, cpu))
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_cpu(&mut c);
    c.final_summary();
}
