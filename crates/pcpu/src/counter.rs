//! [`PerCpuCounter`]: a 64-bit counter with one slot per CPU, in the manner of
//! Linux's `struct percpu_counter` (lib/percpu_counter.c).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::Error;
use crate::handle::PerCpu;
use crate::sys::rseq::AddFold;
use crate::PerCpuAllocator;

/// A signed 64-bit counter with one slot per CPU.
///
/// [`add`](Self::add) changes the current CPU's slot: threads on different
/// CPUs never touch the same cache line (units are a chunk's unit size
/// apart). When a slot's value reaches `±batch` it is folded into a shared
/// total (one more atomic operation, once every `batch` updates), like
/// `percpu_counter_add_batch`. Hence two reads:
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
/// Arithmetic wraps, as the kernel's `s64` counters do: past `i64::MAX` the
/// sum goes on from `i64::MIN`, silently (and `read_approx` may show the
/// total before the wrap reached it).
///
/// # How a slot is updated
///
/// One of two schemes, chosen once per process (never mixed):
///
/// - **Restartable sequence** (x86_64 with glibc 2.35+, which registers rseq
///   for every thread: the usual case on Linux). One rseq critical section
///   reads the CPU from the thread's rseq area, loads that CPU's slot, adds,
///   and stores the result (or 0 when it reached `±batch`, the value then
///   going to the total with one atomic add): plain instructions, no `lock`
///   prefix, like the kernel's `this_cpu_add`. If the thread is preempted,
///   migrated or interrupted by a signal before the store, the kernel makes
///   it start over, so the store lands only on the CPU the thread is running
///   on, with nothing else having run on that CPU since the load. A thread
///   that cannot run the sequence (its own rseq registration failed, or its
///   CPU has no slot) adds to the shared total atomically instead.
/// - **Atomics** (other architectures, older glibc, valgrind,
///   `GLIBC_TUNABLES=glibc.pthread.rseq=0`): a relaxed `fetch_add` on the
///   slot of the CPU the thread was last seen on, and, to fold, a `swap` of
///   the slot with 0 whose result goes to the total with a `fetch_add`. A
///   thread may migrate between reading its CPU and the `fetch_add`; the
///   update then lands in another CPU's slot, which is still correct (slots
///   are atomics), just occasionally shared. Folding whatever the slot holds
///   (not the value the thread saw) keeps every slot below `batch` in
///   magnitude once the updates are done, also when two threads fold one
///   slot at once.
///
/// Why the first scheme loses nothing: the sequence's load and store are
/// each atomic (aligned 8-byte moves, what `AtomicI64::load` / `store`
/// compile to), but together they are a read-modify-write only against other
/// sequences on the same CPU, which the kernel serialises. So in that scheme
/// nothing but the sequence ever writes a slot: the fold happens inside it,
/// and the fallback goes to the total, not to a slot, because even an atomic
/// `fetch_add` on a slot could fall between another CPU's load and store and
/// be overwritten. [`sum`](Self::sum) only loads the slots, and
/// [`set`](Self::set) has exclusive access.
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
    /// As [`crate::try_global`] (the global allocator cannot be built) and
    /// [`PerCpuAllocator::per_cpu`].
    #[track_caller]
    pub fn new() -> Result<Self, Error> {
        crate::try_global()?.counter()
    }

    /// A counter at 0 in `alloc`, with the default batch:
    /// `max(32, 2 × units)` (`percpu_counter_batch`).
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    #[track_caller]
    pub fn new_in(alloc: &PerCpuAllocator) -> Result<Self, Error> {
        let batch = (2 * alloc.units()).max(32) as i64;
        Self::with_batch(alloc, batch)
    }

    /// A counter at 0 in `alloc` whose slots fold into the shared total at
    /// `±batch` (at least 1; `i64::MAX` never folds).
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    #[track_caller]
    pub fn with_batch(alloc: &PerCpuAllocator, batch: i64) -> Result<Self, Error> {
        Ok(PerCpuCounter {
            slots: alloc.per_cpu_zeroed()?,
            batch: batch.max(1),
            total: CacheLine::default(),
        })
    }

    /// Add `n` (may be negative) on the current CPU's slot (see the type docs
    /// for how).
    #[inline]
    #[doc(alias = "percpu_counter_add_batch")]
    pub fn add(&self, n: i64) {
        match self.slots.rseq_add_fold(n, self.batch) {
            AddFold::Added(_) => {}
            AddFold::Folded(v) => self.add_total(v),
            AddFold::NoSlot => self.add_total(n),
            AddFold::Unavailable => self.add_atomic(n),
        }
    }

    /// Add `v` to the shared total: a fold from the restartable sequence, or
    /// an update from a thread that has no slot to use.
    #[cold]
    #[inline(never)]
    fn add_total(&self, v: i64) {
        self.total.0.fetch_add(v, Ordering::Relaxed);
    }

    /// [`add`](Self::add) without restartable sequences: atomics only. Out
    /// of line where restartable sequences exist, so that the sequence's
    /// callers stay small enough to inline it.
    #[cfg_attr(
        all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"),
        inline(never)
    )]
    #[cfg_attr(
        not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
        inline
    )]
    fn add_atomic(&self, n: i64) {
        let slot = self.slots.current();
        let v = slot.fetch_add(n, Ordering::Relaxed).wrapping_add(n);
        if v >= self.batch || v <= -self.batch {
            self.fold(slot);
        }
    }

    /// Move everything `slot` holds to the shared total: the sum of total
    /// and slots is unchanged once both operations are done. Atomic scheme
    /// only.
    ///
    /// The slot's whole value, not the `±batch` the caller saw: another
    /// thread's update may have landed in between (a thread that migrated),
    /// and that thread may be about to fold too. Subtracting what each saw
    /// would subtract the first one's value twice, leaving the slot at
    /// `-batch` or beyond once both are done (and `read_approx` off by more
    /// than its bound); swapping leaves 0, and the second fold moves nothing.
    #[cold]
    fn fold(&self, slot: &AtomicI64) {
        let v = slot.swap(0, Ordering::Relaxed);
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
        // Only slots that are not zero: a CPU's slot that was never written
        // stays untouched (and takes no memory: `Builder::prefault`).
        for slot in self.slots.iter_mut().map(AtomicI64::get_mut) {
            if *slot != 0 {
                *slot = 0;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{rseq, testutil};

    fn quiet() -> PerCpuAllocator {
        PerCpuAllocator::builder()
            .background_balance(false)
            .build()
            .unwrap()
    }

    /// Hammers `c` with `add` / `inc` / `dec` from `threads` unpinned threads
    /// and returns the exact total they added.
    fn hammer(c: &PerCpuCounter, threads: usize, per_thread: i64) -> i64 {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as i64)
                .map(|t| {
                    s.spawn(move || {
                        let mut added = 0i64;
                        for i in 0..per_thread {
                            match (i + t) % 5 {
                                0 => {
                                    c.add(7);
                                    added += 7;
                                }
                                1 => {
                                    c.add(-3 - t);
                                    added -= 3 + t;
                                }
                                2 | 3 => {
                                    c.inc();
                                    added += 1;
                                }
                                _ => {
                                    c.dec();
                                    added -= 1;
                                }
                            }
                        }
                        added
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        })
    }

    /// Four threads per CPU (at least 8), so the scheduler preempts and
    /// migrates them in the middle of updates all the time; every batch
    /// from 1 (fold on every update) to "never"; the sum must be exact.
    fn stress_is_exact() {
        let alloc = quiet();
        let threads = 4 * std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        for batch in [1, 2, 32, 1000, i64::MAX] {
            let c = PerCpuCounter::with_batch(&alloc, batch).unwrap();
            let expected = hammer(&c, threads, 400_000);
            assert_eq!(c.sum(), expected, "batch {batch}");
            // No slot is left at ±batch: folds happen inside the sequence,
            // or (atomics) take the slot's whole value.
            for (cpu, slot) in c.slots.iter().enumerate() {
                let v = slot.load(Ordering::Relaxed);
                assert!(v.unsigned_abs() < batch as u64, "CPU {cpu}: {v}");
            }
        }
    }

    /// Two threads fold one slot at once (the atomic scheme): the first saw
    /// it reach `batch`, the second's update landed before the first's fold
    /// and took it past. Once both folds are done the slot is within
    /// `±batch` and the sum exact. (Each subtracting the value it saw left
    /// the slot at `-batch`: `4 + 1 - 4 - 5`.)
    #[test]
    fn two_folds_of_one_slot_leave_it_within_batch() {
        let alloc = quiet();
        let c = PerCpuCounter::with_batch(&alloc, 4).unwrap();
        let slot = c.slots.get(0);
        // Thread A: 3 + 1 = 4, decides to fold. Thread B: 4 + 1 = 5, decides
        // to fold. Then A folds, then B.
        slot.store(5, Ordering::Relaxed);
        c.fold(slot);
        c.fold(slot);
        assert_eq!(slot.load(Ordering::Relaxed), 0);
        assert_eq!((c.sum(), c.read_approx()), (5, 5));
    }

    #[test]
    fn exact_sum_under_preemption_and_migration() {
        eprintln!("restartable sequences: {}", rseq::available());
        stress_is_exact();
    }

    /// The same with glibc's rseq disabled (what valgrind and old glibc look
    /// like): the atomic scheme. Runs in a child: tunables are read at start.
    #[test]
    fn exact_sum_without_rseq() {
        let test = testutil::test_name(module_path!(), "exact_sum_without_rseq");
        testutil::in_child(&test, &[testutil::NO_RSEQ], || {
            assert!(!rseq::available());
            stress_is_exact();
        });
    }
}
