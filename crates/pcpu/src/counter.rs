//! [`PerCpuCounter`]: a 64-bit counter with one slot per CPU, in the manner of
//! Linux's `struct percpu_counter` (lib/percpu_counter.c).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::Error;
use crate::handle::PerCpu;
use crate::PerCpuAllocator;

/// A signed 64-bit counter with one slot per CPU.
///
/// [`add`](Self::add) does a relaxed `fetch_add` on the current CPU's slot:
/// threads on different CPUs never touch the same cache line (units are a
/// chunk's unit size apart). When a slot's value reaches `±batch` it is
/// folded into a shared total (two more atomic operations, once every
/// `batch` updates), like `percpu_counter_add_batch`. Hence two reads:
///
/// - [`sum`](Self::sum): the shared total plus every slot
///   (`percpu_counter_sum`). Exact when no update runs concurrently; with
///   concurrent updates it is some value the counter passed through give or
///   take the updates in flight.
/// - [`read_approx`](Self::read_approx): the shared total alone
///   (`percpu_counter_read`), one load. It differs from the exact value by
///   less than `batch × units` when no update is in flight (each slot holds
///   less than `batch` in magnitude); it is never updated more often than
///   once per `batch` operations per CPU.
///
/// A thread may migrate between reading its CPU and the `fetch_add`; the
/// update then lands in another CPU's slot, which is still correct (slots
/// are atomics), just occasionally shared.
///
/// ```
/// let alloc = pcpu::PerCpuAllocator::builder().background_balance(false).build().unwrap();
/// let c = alloc.counter().unwrap();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| (0..1000).for_each(|_| c.inc()));
///     }
/// });
/// c.dec();
/// assert_eq!(c.sum(), 1999);
/// ```
pub struct PerCpuCounter {
    slots: PerCpu<AtomicI64>,
    batch: i64,
    /// Folded total (`percpu_counter.count`), on a cache line of its own: a
    /// fold on one CPU must not evict the read-mostly fields above from the
    /// other CPUs' caches.
    total: CacheLine<AtomicI64>,
}

/// Aligns its content to 128 bytes (two 64-byte lines: adjacent-line
/// prefetchers pull pairs), as crossbeam's `CachePadded` does.
#[repr(align(128))]
#[derive(Default)]
struct CacheLine<T>(T);

impl PerCpuCounter {
    /// A counter at 0 in the [global](crate::global) allocator.
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    pub fn new() -> Result<Self, Error> {
        crate::global().counter()
    }

    /// A counter at 0 in `alloc`, with the default batch:
    /// `max(32, 2 × units)` (`percpu_counter_batch`).
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    pub fn new_in(alloc: &PerCpuAllocator) -> Result<Self, Error> {
        let batch = (2 * alloc.units()).max(32) as i64;
        Self::with_batch(alloc, batch)
    }

    /// A counter at 0 in `alloc` whose slots fold into the shared total at
    /// `±batch` (at least 1; `i64::MAX` never folds).
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    pub fn with_batch(alloc: &PerCpuAllocator, batch: i64) -> Result<Self, Error> {
        Ok(PerCpuCounter {
            slots: alloc.per_cpu_zeroed()?,
            batch: batch.max(1),
            total: CacheLine::default(),
        })
    }

    /// Add `n` (may be negative) on the current CPU's slot.
    #[inline]
    #[doc(alias = "percpu_counter_add_batch")]
    pub fn add(&self, n: i64) {
        let slot = self.slots.current();
        let v = slot.fetch_add(n, Ordering::Relaxed).wrapping_add(n);
        if v >= self.batch || v <= -self.batch {
            self.fold(slot, v);
        }
    }

    /// Move `v` from `slot` to the shared total: the sum of total and slots is
    /// unchanged once both operations are done.
    #[cold]
    fn fold(&self, slot: &AtomicI64, v: i64) {
        slot.fetch_sub(v, Ordering::Relaxed);
        self.total.0.fetch_add(v, Ordering::Relaxed);
    }

    /// Add 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtract 1.
    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The exact value: the shared total plus every slot. See the type docs
    /// for what it means under concurrent updates.
    #[doc(alias = "percpu_counter_sum")]
    pub fn sum(&self) -> i64 {
        let slots = self
            .slots
            .iter()
            .fold(0i64, |s, c| s.wrapping_add(c.load(Ordering::Relaxed)));
        self.total.0.load(Ordering::Relaxed).wrapping_add(slots)
    }

    /// The approximate value: the shared total only, off by less than
    /// `batch × units` when no update is in flight.
    #[inline]
    #[doc(alias = "percpu_counter_read")]
    pub fn read_approx(&self) -> i64 {
        self.total.0.load(Ordering::Relaxed)
    }

    /// The fold threshold.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// Set the counter to `v` (`percpu_counter_set`): exact only when no
    /// update runs concurrently.
    pub fn set(&mut self, v: i64) {
        for slot in self.slots.iter_mut() {
            *slot.get_mut() = 0;
        }
        *self.total.0.get_mut() = v;
    }
}

impl fmt::Debug for PerCpuCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuCounter")
            .field("sum", &self.sum())
            .field("batch", &self.batch)
            .finish()
    }
}
