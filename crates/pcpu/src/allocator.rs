//! [`PerCpuAllocator`]: the public handle (a cheap `Arc` clone), its typed
//! constructors, balancing controls, statistics, and the process-wide
//! default allocator [`global`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pcpu_core::{BalanceReport, InvariantError, Policy};

use crate::builder::{Builder, Config};
use crate::cache;
use crate::counter::PerCpuCounter;
use crate::error::Error;
use crate::handle::PerCpu;
use crate::inner::Inner;
use crate::owners::PinsReport;
use crate::stats::Stats;
use crate::sync::Arc;
use crate::worker::Balancer;
use crate::Zeroable;

/// Upper bound of balance runs in one [`PerCpuAllocator::settle`].
const SETTLE_MAX_RUNS: usize = 64;

/// Source of allocator identities (for raw handles).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A per-CPU memory allocator: Linux's mm/percpu.c (5.14, with partial chunk
/// depopulation) on anonymous memory mappings.
///
/// Cloning is cheap (an `Arc`); every clone and every object allocated from
/// it keep the allocator alive, and so do areas waiting in a thread's cache
/// ([`Builder::thread_cache`]). It leaves the balance thread (shared by the
/// process's allocators) when the last clone, the last object and the last
/// cached area are gone. A thread whose cached
/// areas are all that is left of an allocator frees them at its next cold
/// cache operation (the first request of a size or allocator it has no
/// cached class for, the first use of a class after a balance run of its
/// allocator, or a flush) or when it exits. Call
/// [`trim_thread_caches`](Self::trim_thread_caches) before dropping the last
/// clone to give this thread's cached areas back at once.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use pcpu::PerCpuAllocator;
///
/// let alloc = PerCpuAllocator::new().unwrap();
/// let flags = alloc.per_cpu_zeroed::<AtomicU32>().unwrap();
/// flags.get(0).store(3, Ordering::Relaxed);
/// assert_eq!(flags.iter().map(|f| f.load(Ordering::Relaxed)).sum::<u32>(), 3);
/// assert!(alloc.stats().live_allocations >= 1);
/// ```
#[derive(Clone)]
pub struct PerCpuAllocator {
    shared: Arc<Shared>,
}

/// What the clones share: the state, and its place on the balance worker.
#[derive(Debug)]
struct Shared {
    inner: Arc<Inner>,
    /// Taken off the worker when the last handle or object goes.
    _balancer: Option<Balancer>,
}

impl fmt::Debug for PerCpuAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner().config;
        f.debug_struct("PerCpuAllocator")
            .field("policy", &c.policy.name())
            .field("units", &c.units())
            .field("unit_size", &c.unit_size())
            .field("background_balance", &c.background_balance)
            .finish_non_exhaustive()
    }
}

// === impl PerCpuAllocator: construction ===

impl PerCpuAllocator {
    /// A builder with the defaults (linux-5.14 policy, one unit per possible
    /// CPU, 512 KiB units, 16 KiB first chunk, background balancing).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// An allocator with the defaults.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    pub(crate) fn from_config(config: Config) -> Result<Self, Error> {
        let background_balance = config.background_balance;
        let inner = Arc::new(Inner::new(config, NEXT_ID.fetch_add(1, Ordering::Relaxed))?);
        let balancer = if background_balance {
            Some(Balancer::start(Arc::clone(&inner))?)
        } else {
            None
        };
        Ok(PerCpuAllocator {
            shared: Arc::new(Shared {
                inner,
                _balancer: balancer,
            }),
        })
    }

    #[inline]
    pub(crate) fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// Handles to this allocator alive anywhere: the user's clones, one per
    /// live object, one per area in a thread cache.
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }
}

impl Drop for PerCpuAllocator {
    fn drop(&mut self) {
        // A user's last handle going while this thread's cache holds the
        // rest: free them now, so the allocator goes with it (else it would
        // stay mapped, and on the balance worker, until the thread's next
        // cold cache operation or its exit).
        crate::cache::flush_if_only_cached(self);
    }
}

// The balance worker's locks keep the auto traits away, but a panic
// in user code cannot leave the allocator half-updated where a caller could
// see it: user code (initialisers, `Drop` of `T`) never runs while the state
// lock is held or in the middle of a balance run, and an internal panic under
// the lock poisons it, so every later call panics too. (The steps a balance
// run takes with the lock dropped call only system-call wrappers that return
// errors; a panic there would leave the run marked as running.)
impl std::panic::RefUnwindSafe for PerCpuAllocator {}
impl std::panic::UnwindSafe for PerCpuAllocator {}

// === impl PerCpuAllocator: typed allocation ===

impl PerCpuAllocator {
    /// Allocate one `T` per CPU, initialised with `init(cpu)`
    /// (`alloc_percpu` + a `for_each_possible_cpu` initialisation).
    ///
    /// A value whose bytes are all zero, padding included
    /// (`AtomicU64::new(0)`, `None::<Box<T>>`, `0u64`, ...), is not written
    /// over a copy that is all zero already, so that the units of CPUs that
    /// never run the process stay untouched
    /// ([`Builder::prefault`](crate::Builder::prefault)); either way the copy
    /// holds the value. Values with padding or unused payload bytes
    /// (`(0u8, 0u64)`, `None::<u64>`) hold whatever the stack held there and
    /// are usually written: use
    /// [`per_cpu_zeroed`](Self::per_cpu_zeroed) for those.
    ///
    /// A zero-sized `T` still takes the smallest area, 4 bytes per CPU:
    /// every object has an address of its own in every unit.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `T` is larger than 32 KiB,
    /// [`Error::InvalidAlign`] if its alignment exceeds the page size,
    /// [`Error::Map`] when memory cannot be mapped or populated. If `init`
    /// panics, the copies made so far are dropped and the memory freed.
    #[doc(alias = "alloc_percpu")]
    #[track_caller]
    pub fn per_cpu<T, F: FnMut(usize) -> T>(&self, init: F) -> Result<PerCpu<T>, Error> {
        PerCpu::new_with(self, init)
    }

    /// Allocate one all-zero `T` per CPU: zeros are written over every copy
    /// (`alloc_percpu`'s memset), no constructor runs.
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    #[track_caller]
    pub fn per_cpu_zeroed<T: Zeroable>(&self) -> Result<PerCpu<T>, Error> {
        PerCpu::new_zeroed(self)
    }

    /// A new [`PerCpuCounter`] in this allocator.
    ///
    /// # Errors
    /// As [`PerCpuAllocator::per_cpu`].
    #[track_caller]
    pub fn counter(&self) -> Result<PerCpuCounter, Error> {
        PerCpuCounter::new_in(self)
    }
}

// === impl PerCpuAllocator: configuration and balance ===

impl PerCpuAllocator {
    /// Number of units (copies of every allocation).
    pub fn units(&self) -> usize {
        self.inner().config.units()
    }
    /// Bytes per unit of a chunk.
    pub fn unit_size(&self) -> usize {
        self.inner().config.unit_size()
    }
    /// The page size.
    pub fn page_size(&self) -> usize {
        self.inner().config.page_size()
    }
    /// The depopulation policy.
    pub fn policy(&self) -> Policy {
        self.inner().config.policy
    }

    /// Has an allocation or free scheduled balance work that has not run yet?
    pub fn balance_pending(&self) -> bool {
        self.inner().state().core.balance_pending()
    }

    /// Run one balance run (`pcpu_balance_workfn`) on the calling thread now:
    /// destroy surplus free chunks, depopulate isolated chunks, top up empty
    /// populated pages. Waits for a run in progress on the background thread.
    ///
    /// First frees the calling thread's cached areas and asks every other
    /// thread to free its own at its next allocation or drop
    /// ([`trim_thread_caches`](Self::trim_thread_caches)).
    #[doc(alias = "pcpu_balance_workfn")]
    pub fn balance_now(&self) -> BalanceReport {
        cache::trim(self);
        self.inner().balance_run()
    }

    /// Balance until no work is pending and a run gives nothing back (at
    /// least one run, at most 64): then surplus free chunks are unmapped
    /// and empty pages depopulated down to the reserve. Returns the number
    /// of runs. Trims thread caches first, as
    /// [`balance_now`](Self::balance_now) does.
    ///
    /// (One balance run, as the kernel's, can end with a surplus free chunk
    /// still populated, with nothing pending: reclaim reintegrates it after
    /// the run's first pass over the free chunks, and the last pass destroys
    /// only unpopulated ones. The background thread, as the kernel, leaves
    /// it until an allocation or free schedules the work again.)
    pub fn settle(&self) -> usize {
        cache::trim(self);
        self.inner().settle(SETTLE_MAX_RUNS)
    }

    /// Free the areas that the calling thread keeps for reuse
    /// ([`Builder::thread_cache`](crate::Builder::thread_cache)) now, and ask
    /// every other thread to free its own at its next allocation or drop of
    /// a per-CPU object of this allocator (a thread that never touches the
    /// allocator again keeps its cached areas until it exits).
    pub fn trim_thread_caches(&self) {
        cache::trim(self);
    }

    /// Wait until this allocator's background balance work is done: no run
    /// in progress and none pending. Without background balancing (or in a `fork()`ed
    /// child, which has no balance thread), only waits for a
    /// [`balance_now`](Self::balance_now) in progress on another thread.
    /// Returns false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.inner().wait_idle(timeout)
    }

    /// Check every invariant of the core's bookkeeping (O(total map size)),
    /// and that every chunk's mapping has exactly the pages populated that the
    /// core counts as populated. Waits for a balance run or population in
    /// progress, and for allocations waiting to populate their pages; safe to
    /// call while other threads allocate and free.
    ///
    /// # Errors
    /// The first violated invariant.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        // `alloc_mutex` first: no population is half done, so the core's and
        // the regions' views of populated pages must agree exactly. Areas in
        // flight (placed, waiting for `alloc_mutex` to be populated) make
        // the empty-page counters transiently low: let them through first.
        let (_serial, st) = loop {
            let serial = self.inner().serialise();
            let st = self.inner().state();
            if st.in_flight == 0 {
                break (serial, st);
            }
            drop(st);
            drop(serial);
            crate::sync::thread::yield_now();
        };
        st.core.check_invariants()?;
        for id in st.core.chunk_ids() {
            let chunk = st.core.chunk(id).expect("listed chunk");
            let Some(Some(region)) = st.regions.get(id.0 as usize) else {
                return Err(InvariantError(format!("chunk {} has no mapping", id.0)));
            };
            for page in 0..chunk.nr_pages() {
                if region.is_populated(page) != chunk.is_page_populated(page) {
                    return Err(InvariantError(format!(
                        "chunk {} page {page}: core says populated={}, mapping says {}",
                        id.0,
                        chunk.is_page_populated(page),
                        region.is_populated(page)
                    )));
                }
            }
        }
        let mapped = st.regions.iter().flatten().count();
        if mapped != st.core.nr_chunks() {
            return Err(InvariantError(format!(
                "{mapped} mappings for {} chunks",
                st.core.nr_chunks()
            )));
        }
        if let Some(owners) = &st.owners {
            owners.check(&st.core).map_err(InvariantError)?;
        }
        for (&(chunk, offset), &ticket) in &st.raw {
            if st.core.allocation_size(chunk, offset).is_err() || ticket >= st.next_ticket {
                return Err(InvariantError(format!(
                    "raw allocation (chunk {}, offset {offset}, ticket {ticket}) is not live",
                    chunk.0
                )));
            }
        }
        Ok(())
    }
}

// === impl PerCpuAllocator: statistics ===

impl PerCpuAllocator {
    /// A snapshot of the allocator's figures.
    pub fn stats(&self) -> Stats {
        let thread_cached = cache::cached_here(self) as u64;
        let st = self.inner().state();
        let g = st.core.stats();
        Stats {
            percpu_bytes: st.core.percpu_bytes(),
            populated_pages: st.core.nr_populated(),
            nr_empty_pop_pages: st.core.nr_empty_pop_pages(),
            chunks: st.core.nr_chunks(),
            live_allocations: g.nr_cur_alloc,
            thread_cached,
            total_allocations: g.nr_alloc,
            total_frees: g.nr_dealloc,
            failed_allocations: g.nr_failed,
            balance_runs: st.runs,
            balance_failures: st.balance_failures,
            balance_populated_pages: st.balance_populated,
            balance_depopulated_pages: st.balance_depopulated,
            units: self.units(),
            unit_size: self.unit_size(),
            page_size: self.page_size(),
        }
    }

    /// The text of `/sys/kernel/debug/percpu_stats` for this allocator.
    #[doc(alias = "percpu_stats")]
    pub fn percpu_stats_text(&self) -> String {
        self.inner().state().core.percpu_stats()
    }

    /// Every chunk's pages, one character per page: `#` holds allocations
    /// (areas in thread caches included) or the first chunk's hidden bytes, `.` populated but empty (what the
    /// balance work can give back), `-` unpopulated, `!` being populated for
    /// an allocation in progress. Shows where the live objects of a mostly
    /// empty chunk sit, which `percpu_stats` cannot.
    ///
    /// ```
    /// let alloc = pcpu::PerCpuAllocator::builder().background_balance(false).build().unwrap();
    /// let x = alloc.per_cpu_zeroed::<u64>().unwrap();
    /// assert!(alloc.page_map_text().contains("(first)"));
    /// # drop(x);
    /// ```
    pub fn page_map_text(&self) -> String {
        self.inner().state().core.page_map()
    }

    /// Mark a phase in the allocation trace
    /// ([`Builder::trace_dir`](crate::Builder::trace_dir)): the kernel
    /// captures' `PHASE <name> begin` and `PHASE <name> Percpu: <n> kB`
    /// markers, with this allocator's Percpu figure now (whitespace in
    /// `name` becomes `_`), after which the trace is flushed. Nothing
    /// without a trace. `pcpu replay` compares its Percpu with this figure
    /// at every marker.
    ///
    /// # Errors
    /// [`Error::Trace`] if a write to the trace failed (this one or an
    /// earlier one: the trace stops at the first failure).
    pub fn mark(&self, name: &str) -> Result<(), Error> {
        let mut st = self.inner().state();
        let kb = st.core.percpu_bytes() / 1024;
        match &mut st.trace {
            Some(t) => {
                t.phase(name, kb);
                t.flush().map_err(Error::Trace)
            }
            None => Ok(()),
        }
    }

    /// Who keeps this allocator's pages populated: per call site and per
    /// thread, the live objects, the pages they touch, the pages on which
    /// they are alone (freeing them would let those pages go back to the
    /// OS) and their share of the pages holding objects. `None` unless the
    /// allocator was built with
    /// [`Builder::track_owners`](crate::Builder::track_owners).
    /// `report.to_string()` renders it as tables. The allocator's lock is
    /// held while the live allocations' owners are copied (linear in their
    /// number), not while the figures are computed.
    pub fn pins(&self) -> Option<PinsReport> {
        let snapshot = {
            let st = self.inner().state();
            st.owners.as_ref().map(|o| o.snapshot(&st.core))
        };
        snapshot.map(|s| s.report())
    }

    /// Bytes of this allocator's mappings backed by memory: the pages of
    /// every chunk's mapping, all units, that are present and this
    /// process's own (`/proc/self/pagemap`). A populated page of a unit that
    /// was not pre-faulted ([`Builder::prefault`](crate::Builder::prefault))
    /// counts once it was written, not while it was only read (reads map the
    /// kernel's shared zero page). Pages still shared copy-on-write with a
    /// `fork()` child count in neither process until written. Without a
    /// readable `/proc/self/pagemap`, `mincore`'s count, which includes
    /// pages that were only read.
    ///
    /// # Errors
    /// [`Error::Map`] if `mincore` fails.
    pub fn resident_bytes(&self) -> Result<u64, Error> {
        let regions = self.inner().state().all_regions();
        let mut pages = 0usize;
        for r in &regions {
            pages += r.resident_pages()?;
        }
        Ok((pages * self.page_size()) as u64)
    }
}

/// The process-wide allocator, built with the defaults on first use.
///
/// ```
/// let c = pcpu::global().counter().unwrap();
/// c.add(5);
/// assert_eq!(c.sum(), 5);
/// ```
///
/// # Panics
/// If the default allocator cannot be built (the first chunk cannot be
/// mapped, or the balance thread cannot be started).
pub fn global() -> &'static PerCpuAllocator {
    match try_global() {
        Ok(a) => a,
        Err(e) => panic!("pcpu: cannot build the global per-CPU allocator: {e}"),
    }
}

/// [`global`], or the error that building it gave (a later call tries
/// again).
///
/// # Errors
/// As [`PerCpuAllocator::new`].
pub fn try_global() -> Result<&'static PerCpuAllocator, Error> {
    static GLOBAL: OnceLock<PerCpuAllocator> = OnceLock::new();
    if let Some(a) = GLOBAL.get() {
        return Ok(a);
    }
    let built = PerCpuAllocator::new()?;
    // Two threads may build one each: the first stored wins, the other is
    // dropped (taken off the balance worker, its memory unmapped).
    Ok(match GLOBAL.set(built) {
        Ok(()) => GLOBAL.get().expect("just set"),
        Err(_) => GLOBAL.get().expect("set by another thread"),
    })
}
