//! Who pins my memory, in a running program: connections that each
//! allocate a small counter and a larger statistics block, on worker
//! threads; most connections close, a few stay. The report names the call
//! sites and threads whose surviving objects keep pages populated.
//!
//! `cargo run --release -p pcpu --example pins [POLICY [TRACE_DIR]]`
//! (default `linux-5.14`; `pcpu` keeps each thread's objects together).
//! With `TRACE_DIR` the allocations are also traced there
//! (`Builder::trace_dir`), with phase `A` at the start and `C` once the
//! workers are done and the balance work ran: `pcpu compare TRACE_DIR`
//! then replays that same run, its threads' allocations in the order they
//! came, under every policy.
use std::sync::atomic::AtomicU64;
use std::thread;

use pcpu::{PerCpu, PerCpuAllocator, Policy};

/// One connection's per-CPU state.
struct Connection {
    _requests: PerCpu<AtomicU64>,
    _stats: PerCpu<[u64; 16]>,
}

fn open(alloc: &PerCpuAllocator) -> Connection {
    Connection {
        _requests: alloc.per_cpu(|_| AtomicU64::new(0)).expect("counter"),
        _stats: alloc.per_cpu_zeroed().expect("stats"),
    }
}

fn main() {
    let policy: Policy = std::env::args()
        .nth(1)
        .map_or(Ok(Policy::default()), |s| s.parse())
        .expect("policy");
    let mut builder = PerCpuAllocator::builder().policy(policy).track_owners(true);
    if let Some(dir) = std::env::args().nth(2) {
        builder = builder.trace_dir(dir);
    }
    let alloc = builder.build().expect("allocator");
    alloc.mark("A").expect("trace");
    thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let alloc = alloc.clone();
                thread::Builder::new()
                    .name(format!("worker-{w}"))
                    .spawn_scoped(scope, move || {
                        let mut conns: Vec<Connection> = (0..2000).map(|_| open(&alloc)).collect();
                        // Every twentieth connection stays open.
                        let mut i = 0;
                        conns.retain(|_| {
                            i += 1;
                            i % 20 == 0
                        });
                        conns
                    })
                    .expect("spawn")
            })
            .collect();
        let open_conns: Vec<Connection> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect();
        alloc.settle();
        alloc.mark("C").expect("trace");
        println!("{} connections open\n", open_conns.len());
        print!("{}", alloc.pins().expect("tracked").render(10));
    });
}
