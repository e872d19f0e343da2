//! # pcpu
//!
//! Per-CPU memory for userspace: Linux's per-CPU allocator (mm/percpu.c),
//! including 5.14's partial chunk depopulation, on anonymous memory
//! mappings. The bookkeeping is [`pcpu_core`]'s; this crate adds the memory,
//! the locking, a background balance thread (one per process) and typed
//! handles.
//!
//! Every allocation exists once per CPU ("unit"), at the same offset of every
//! unit of a *chunk* (one `mmap` reservation of `units × unit_size` bytes), so
//! a handle is one pointer plus a stride. Pages are populated on demand, and
//! pages left empty by frees are given back to the OS by the balance work
//! (`madvise(MADV_DONTNEED)`), following the chosen policy.
//!
//! ## Per-CPU values
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use pcpu::PerCpuAllocator;
//!
//! let alloc = PerCpuAllocator::new()?;
//! let packets = alloc.per_cpu(|_cpu| AtomicU64::new(0))?;
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| {
//!             for _ in 0..1000 {
//!                 // The slot of the CPU this thread runs on: no contention.
//!                 packets.current().fetch_add(1, Ordering::Relaxed);
//!             }
//!         });
//!     }
//! });
//! let total: u64 = packets.iter().map(|p| p.load(Ordering::Relaxed)).sum();
//! assert_eq!(total, 4000);
//! # Ok::<(), pcpu::Error>(())
//! ```
//!
//! ## Counters
//!
//! ```
//! let requests = pcpu::PerCpuCounter::new()?; // in the global allocator
//! requests.add(3);
//! requests.dec();
//! assert_eq!(requests.sum(), 2);
//! # Ok::<(), pcpu::Error>(())
//! ```
//!
//! ## Memory goes back to the OS
//!
//! ```
//! use pcpu::{PerCpuAllocator, Policy};
//!
//! let alloc = PerCpuAllocator::builder()
//!     .policy("linux-5.14".parse::<Policy>().unwrap())
//!     .unit_size(64 << 10)
//!     .background_balance(false) // deterministic: balance explicitly
//!     .build()?;
//! let objs: Vec<_> = (0..100_000).map(|_| alloc.per_cpu_zeroed::<u64>()).collect::<Result<_, _>>()?;
//! let full = alloc.resident_bytes()?;
//! drop(objs);
//! alloc.settle(); // destroy free chunks, depopulate empty pages
//! assert!(alloc.resident_bytes()? < full / 4);
//! // Equal when every possible CPU may run this thread: the units of the
//! // others take no memory for zeroed objects (`Builder::prefault`).
//! assert!(alloc.resident_bytes()? <= alloc.stats().percpu_bytes);
//! # Ok::<(), pcpu::Error>(())
//! ```
//!
//! `settle` (like `balance_now`) first gives back the areas that the calling
//! thread keeps for reuse: dropping a small `PerCpu<T>` puts its area in the
//! thread's cache, from which the next allocation of that size on the thread
//! is served without a lock ([`Builder::thread_cache`]; 0 turns it off).
//!
//! ## Raw allocations
//!
//! [`PerCpuAllocator::alloc_raw`] returns a plain-data [`RawPerCpu`]
//! (`__alloc_percpu`), turned into per-CPU pointers by
//! [`PerCpuAllocator::ptr`] and freed with [`PerCpuAllocator::free_raw`],
//! which refuses a handle that is not live (a double free, or a stale copy
//! of a freed handle, even when its place was handed out again since).
//!
//! ## Concurrency
//!
//! As in the kernel: one lock (`pcpu_lock`) guards all bookkeeping and is
//! never held across a system call (a pair of allocation and drop served by
//! the thread cache takes no lock at all); a second (`pcpu_alloc_mutex`) serialises
//! chunk creation, population and the balance work. Allocations that fit in
//! populated memory and all frees take only the first. The balance thread
//! runs [`pcpu_core::BalanceRun`] one page operation at a time, dropping the
//! bookkeeping lock around each. Only pages that hold no allocation, in
//! chunks that allocations cannot reach, are ever discarded.
//!
//! ## `fork()`
//!
//! A child of `fork()` has the parent's memory but not its balance thread.
//! It may drop an allocator made before the fork (nothing is joined or
//! unmapped then: the parent's thread held a reference, and no lock is
//! taken), end threads that cached its areas (they are left allocated if a
//! lock is taken), and use one as long as no other thread held its locks
//! at the fork (as for any lock); memory is then given back only by
//! [`PerCpuAllocator::balance_now`] and [`PerCpuAllocator::settle`]
//! ([`PerCpuAllocator::wait_idle`] does not wait for pending work there).
//! The allocator's own balance thread counts among those threads: it holds
//! the locks while it works, so a child that will use an allocator (or drop
//! its handles) should be forked while that allocator is idle (`wait_idle`
//! returned `true`) and no other thread allocates or frees. An allocator
//! built in the child gets a balance thread of the child's own. A child
//! made without the `pthread_atfork` handlers (`_Fork()`, a raw `clone()`)
//! is taken for the parent and must not touch the parent's allocators. As
//! with any multi-threaded program, the safe course after `fork()` is to
//! call `exec` soon.
//!
//! ## Where `unsafe` lives
//!
//! `sys::mmap` (the mappings), `sys::cpu` (rseq's current CPU), `sys::fork`
//! (a `pthread_atfork` handler telling a forked child apart), `sys::rseq`
//! (the counter's restartable sequences, x86_64 inline assembly) and `handle`
//! (per-CPU pointers, zeroing, discarding pages, handing a counter's slots to
//! `sys::rseq`); each states its safety argument. The crate root denies
//! `unsafe` elsewhere.
#![deny(unsafe_code)]

mod allocator;
mod balance;
mod builder;
mod cache;
mod counter;
pub mod demo;
mod error;
mod handle;
pub mod hint;
mod inner;
mod owners;
mod raw;
mod stats;
mod sync;
mod sys;
mod trace;
mod word_hash;
mod worker;

pub use allocator::{global, try_global, PerCpuAllocator};
pub use builder::{
    Builder, Prefault, DEFAULT_FIRST_CHUNK_SIZE, DEFAULT_THREAD_CACHE, DEFAULT_UNIT_SIZE,
};
pub use counter::PerCpuCounter;
pub use error::{Error, MapError};
pub use handle::{Iter, IterMut, PerCpu};

/// Types for which all-zero bytes are a valid value, the bound of
/// [`PerCpuAllocator::per_cpu_zeroed`]: bytemuck's trait (implemented for the
/// integers, floats, `bool`, `char`, atomics, arrays, `MaybeUninit` and more).
/// Derive it for a struct of such fields with the `derive` feature:
///
/// ```ignore
/// #[derive(pcpu::Zeroable)]
/// #[bytemuck(crate = "pcpu::bytemuck")] // no bytemuck dependency needed
/// struct Stats {
///     hits: std::sync::atomic::AtomicU64,
///     misses: std::sync::atomic::AtomicU64,
/// }
/// ```
pub use bytemuck::Zeroable;

/// The `bytemuck` crate, for the derive's `#[bytemuck(crate = "pcpu::bytemuck")]`.
pub use bytemuck;
pub use hint::{with_lifetime, Lifetime};
pub use owners::{PinRow, PinsReport};
pub use pcpu_core::{
    AllocError, BalanceReport, ChunkId, Fit, FreeError, InvariantError, Policy, PolicyKind,
    PolicyParseError, Refill,
};
pub use raw::RawPerCpu;
pub use stats::Stats;
pub use sys::cpu::{current_cpu, possible_cpus};

/// The README's examples, compiled and run as doctests so that they stay
/// right.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Internal OS-layer entry points exposed only for this crate's benches and
/// for integration tests of the allocator layer. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::sys::cpu::{
        current_cpu, current_cpu_rseq, current_cpu_syscall, possible_cpus, rseq_available,
    };
    /// Fault-injection knobs for the address-space layer (see
    /// `fail_next_reserves` / `fail_next_populates`).
    #[cfg(any(test, feature = "fault-injection"))]
    pub use crate::sys::fault;
}
