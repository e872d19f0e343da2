//! Configuration of a [`PerCpuAllocator`]: the builder and its validation
//! (done once, like `pcpu_setup_first_chunk`'s sanity checks; the rest of the
//! crate relies on a validated [`Config`]).

use std::path::{Path, PathBuf};

use pcpu_core::{FirstChunk, Geometry, Policy, MIN_UNIT_SIZE};

use crate::error::Error;
use crate::sys;
use crate::sys::units::{HotUnits, RegionOptions, UnitNodes};
use crate::PerCpuAllocator;

/// Default unit size: 512 KiB, the unit size of the kernels the traces were
/// captured on (`pcpu-alloc: ... u524288`).
pub const DEFAULT_UNIT_SIZE: usize = 512 << 10;

/// Default dynamic area of the first chunk: 16 KiB, pre-populated.
pub const DEFAULT_FIRST_CHUNK_SIZE: usize = 16 << 10;

/// Default areas per size in each thread's cache ([`Builder::thread_cache`]).
pub const DEFAULT_THREAD_CACHE: usize = 32;

/// Largest [`Builder::thread_cache`].
const MAX_THREAD_CACHE: usize = 4096;

/// Largest accepted unit size (handles store offsets and strides in 32 bits).
const MAX_UNIT_SIZE: usize = 1 << 30;

/// Largest accepted `empty_pop_high` watermark (pages).
const MAX_WATERMARK: usize = 1 << 20;

/// Builds a [`PerCpuAllocator`]; see [`PerCpuAllocator::builder`].
///
/// ```
/// use pcpu::{PerCpuAllocator, Policy};
///
/// let alloc = PerCpuAllocator::builder()
///     .policy("seed-rfc".parse::<Policy>().unwrap())
///     .unit_size(64 << 10)
///     .background_balance(false)
///     .build()
///     .unwrap();
/// assert_eq!(alloc.unit_size(), 64 << 10);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Builder {
    policy: Policy,
    units: Option<usize>,
    unit_size: usize,
    first_chunk_size: usize,
    watermarks: Option<(usize, usize)>,
    background_balance: bool,
    thread_cache: usize,
    prefault: Prefault,
    numa_local: bool,
    /// `None`: on under strict overcommit only.
    guard_pages: Option<bool>,
    track_owners: bool,
    trace_dir: Option<PathBuf>,
}

/// Which units' pages are made resident when they are populated
/// ([`Builder::prefault`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prefault {
    /// The units of the online CPUs that the process's main thread may run
    /// on (`/sys/devices/system/cpu/online` and the `Cpus_allowed_list` of
    /// `/proc/self/status`), whichever thread builds the allocator; every
    /// unit if neither that nor the building thread's mask can be read.
    #[default]
    AllowedCpus,
    /// Every unit, as the kernel populates every possible CPU's unit.
    AllUnits,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            policy: Policy::default(),
            units: None,
            unit_size: DEFAULT_UNIT_SIZE,
            first_chunk_size: DEFAULT_FIRST_CHUNK_SIZE,
            watermarks: None,
            background_balance: true,
            thread_cache: DEFAULT_THREAD_CACHE,
            prefault: Prefault::default(),
            numa_local: true,
            guard_pages: None,
            track_owners: false,
            trace_dir: None,
        }
    }
}

impl Builder {
    /// The depopulation policy (default: `linux-5.14`).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Number of units, one per CPU id (default: [`possible_cpus`]). Must be
    /// at least [`possible_cpus`], because [`PerCpu::current`] indexes a unit
    /// with the id of whatever CPU the thread runs on, and at most 65535.
    ///
    /// [`possible_cpus`]: crate::possible_cpus
    /// [`PerCpu::current`]: crate::PerCpu::current
    pub fn units(mut self, units: usize) -> Self {
        self.units = Some(units);
        self
    }

    /// Bytes per unit of every chunk after the first (default 512 KiB): a
    /// multiple of the page size, at least 32 KiB (`PCPU_MIN_UNIT_SIZE`, also
    /// the largest single allocation), at most 1 GiB.
    pub fn unit_size(mut self, bytes: usize) -> Self {
        self.unit_size = bytes;
        self
    }

    /// Dynamic area of the first chunk in bytes (default 16 KiB), rounded up
    /// to whole pages. It is populated when the allocator is built and never
    /// depopulated, like the kernel's first chunk. Must be smaller than the
    /// unit size.
    pub fn first_chunk_size(mut self, bytes: usize) -> Self {
        self.first_chunk_size = bytes;
        self
    }

    /// The policy's empty-page watermarks in pages (`PCPU_EMPTY_POP_PAGES_LOW`
    /// and `_HIGH`, default 2 and 4): an allocation wakes the balance work
    /// when fewer than `low` populated pages are empty; the balance work
    /// populates up to `high` and reclaim keeps at least `high`.
    pub fn watermarks(mut self, low: usize, high: usize) -> Self {
        self.watermarks = Some((low, high));
        self
    }

    /// Run the balance work on a background thread, woken like the kernel's
    /// work item (default true). Without it, call
    /// [`PerCpuAllocator::balance_now`] or [`PerCpuAllocator::settle`]
    /// regularly ([`PerCpuAllocator::balance_pending`] says when a run is
    /// due): until then freed pages stay populated, and under the Linux
    /// policies chunks queued for reclaim take no allocations, so under
    /// churn the allocator keeps mapping new chunks (the `pcpu` policy takes
    /// a queued chunk back before it maps one).
    ///
    /// All allocators built with it share one thread (named
    /// `pcpu-balance`, asleep until work is scheduled), started with the
    /// first of them and stopped when the last is dropped. It runs one
    /// allocator's balance work at a time, in the order the work was
    /// scheduled, so a long run of one allocator delays the others'.
    pub fn background_balance(mut self, on: bool) -> Self {
        self.background_balance = on;
        self
    }

    /// Freed areas of typed handles ([`PerCpu`](crate::PerCpu)) of up to
    /// 256 bytes that each thread keeps for reuse, per size and alignment
    /// (default 32; 0 turns the cache off). A pair of allocation and drop
    /// served from the cache takes no lock. A miss allocates up to 128 bytes
    /// of neighbouring areas at once (at most half this capacity) and keeps
    /// the others, so that two threads' objects do not share cache lines. Cached areas stay allocated (and
    /// keep the allocator alive) until the thread exits, a push onto a full
    /// class frees the older half, [`trim_thread_caches`], `balance_now`
    /// or `settle` is called, or the thread drops the allocator's last other
    /// handle; at most 16 (allocator, size, alignment) classes
    /// per thread. ("Until the thread exits" is until its thread-locals are
    /// destroyed: `std::thread::scope` returns once its threads' closures
    /// are done, which may be before that; join their handles, or call
    /// `trim_thread_caches` on them, to wait for it.)
    /// Raw allocations are never cached. The kernel has no such cache: turn
    /// it off to place objects exactly as the policy does.
    /// [`track_owners`](Self::track_owners) turns it off too.
    ///
    /// [`trim_thread_caches`]: crate::PerCpuAllocator::trim_thread_caches
    pub fn thread_cache(mut self, areas_per_size: usize) -> Self {
        self.thread_cache = areas_per_size;
        self
    }

    /// Keep, for every live allocation, the source location of the call
    /// that made it and the thread that made it, for
    /// [`PerCpuAllocator::pins`](crate::PerCpuAllocator::pins): which call
    /// sites and threads keep pages populated (default off). Costs a map
    /// entry per live allocation and a map update under the allocator's
    /// lock at every allocation and free, and turns the thread caches off
    /// (a cached area would change owner without the lock).
    ///
    /// ```
    /// let alloc = pcpu::PerCpuAllocator::builder().track_owners(true).build().unwrap();
    /// let counters: Vec<_> = (0..1000).map(|_| alloc.per_cpu_zeroed::<u64>().unwrap()).collect();
    /// let report = alloc.pins().unwrap();
    /// assert_eq!(report.sites[0].objects, 1000); // one call site: the line above
    /// println!("{report}"); // per call site, then per thread
    /// drop(counters);
    /// ```
    pub fn track_owners(mut self, on: bool) -> Self {
        self.track_owners = on;
        self
    }

    /// Trace every allocation, free, chunk creation and destruction, page
    /// population and depopulation and balance run into the capture folder
    /// `dir` (created if missing; its `trace.txt` and `dmesg-percpu.txt`
    /// are overwritten), in the kernel's ftrace text, so that `pcpu replay`,
    /// `pcpu compare`, `pcpu pins` and `pcpu stats` read the program's
    /// allocations as they read a kernel's (default: no trace). Phases are
    /// marked with [`PerCpuAllocator::mark`](crate::PerCpuAllocator::mark).
    /// Each event is a line written under the allocator's lock (buffered;
    /// flushed at every mark and when the allocator is dropped): about
    /// 0.5 µs and 184 bytes an event (BENCHMARKS.md), a diagnostic mode.
    ///
    /// ```no_run
    /// let dir = std::env::temp_dir().join("my-program-percpu");
    /// let alloc = pcpu::PerCpuAllocator::builder().trace_dir(&dir).build().unwrap();
    /// let objects: Vec<_> = (0..1000).map(|_| alloc.alloc_raw(16, 8).unwrap()).collect();
    /// alloc.mark("B");
    /// for o in objects {
    ///     alloc.free_raw(o).unwrap();
    /// }
    /// alloc.mark("C");
    /// drop(alloc); // then: pcpu compare /tmp/my-program-percpu
    /// ```
    pub fn trace_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.trace_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Which units' pages are made resident when the allocator populates
    /// them (default [`Prefault::AllowedCpus`]).
    ///
    /// Every chunk has a unit for every possible CPU, but a machine may have
    /// far more possible CPUs than the process runs on: a VM sized for CPU
    /// hot-plug (128 possible, 2 online), or a container limited to a few
    /// CPUs of a large host. The pages of the other units are still made
    /// accessible, but take memory only where they are written. Per-CPU
    /// data written through [`PerCpu::current`] or a [`PerCpuCounter`] is
    /// written on the CPUs that run it only, and
    /// [`per_cpu_zeroed`](crate::PerCpuAllocator::per_cpu_zeroed),
    /// [`counter`](crate::PerCpuAllocator::counter) and
    /// [`alloc_raw`](crate::PerCpuAllocator::alloc_raw) write zeros only over
    /// copies that are not zero already, and
    /// [`per_cpu`](crate::PerCpuAllocator::per_cpu) writes a value only when
    /// its bytes (padding included) or the copy's are not all zero, so such
    /// objects take memory on those CPUs only. A constructor that returns
    /// other values for those CPUs writes their copies.
    ///
    /// Reads of those units' copies (zeroing checks each copy before it
    /// writes; [`PerCpu::iter`](crate::PerCpu::iter) and counter sums read
    /// every copy) map the kernel's shared zero page, which costs page
    /// tables but no memory of its own
    /// ([`resident_bytes`](crate::PerCpuAllocator::resident_bytes) does not
    /// count it).
    ///
    /// The price: the first write to such a page faults, and if the system
    /// is out of memory then, the out-of-memory killer acts rather than an
    /// [`Error::Map`] being returned, as with any lazily committed memory.
    /// Choose [`Prefault::AllUnits`] to have every page committed (and its
    /// failure reported) when it is populated.
    ///
    /// [`PerCpu::current`]: crate::PerCpu::current
    /// [`PerCpuCounter`]: crate::PerCpuCounter
    pub fn prefault(mut self, prefault: Prefault) -> Self {
        self.prefault = prefault;
        self
    }

    /// Ask for each unit's pages on the NUMA node of its CPU (default true),
    /// as the kernel allocates each CPU's pages on its node: with
    /// `mbind(MPOL_PREFERRED)` on each unit's range when a chunk is mapped,
    /// so that pre-faulted pages too are local to their CPU, whichever thread
    /// populates them. Only on machines whose CPUs sit on more than one node
    /// (`/sys/devices/system/node`), and only for the CPUs online when the
    /// allocator is built (sysfs lists no node for the others; their units
    /// take pages wherever they are first written); a refusal (a seccomp
    /// filter, a kernel without NUMA, a node without memory) leaves the
    /// pages wherever the kernel puts them. Turn it off to leave the
    /// process's own memory policy in force.
    pub fn numa_local(mut self, on: bool) -> Self {
        self.numa_local = on;
        self
    }

    /// Make unpopulated pages inaccessible (default: only under strict
    /// overcommit, see below), as the kernel
    /// leaves them unmapped: a stray access to a page that is not populated
    /// (through a raw pointer kept after its object was freed, say) then
    /// faults with `SIGSEGV` instead of reading zeros or stale data. A
    /// debugging aid: the safe API never reaches such a page.
    ///
    /// The price is mappings. Protection is per page and per unit, so each
    /// run of populated pages splits a chunk's mapping in every unit, and
    /// the process's mapping count (`vm.max_map_count`, 65530 by default)
    /// can run out with many units and fragmented chunks: then not only
    /// this allocator's population fails, but any `mmap` of the process,
    /// a thread's stack included. Without guard pages a chunk is one
    /// read-write mapping from the start, whose pages take memory only once
    /// populated or written, and depopulation returns them with
    /// `MADV_DONTNEED` alone.
    ///
    /// Under strict overcommit (`vm.overcommit_memory = 2`, read from
    /// `/proc/sys/vm/overcommit_memory` when the allocator is built) the
    /// kernel charges a writable mapping against the commit limit in full,
    /// whatever `MAP_NORESERVE` says: without guard pages every chunk would
    /// charge all its pages in every unit when it is mapped, and chunks
    /// would stop mapping long before memory runs out. With guard pages
    /// only pages that were populated are charged (until their chunk is
    /// unmapped: the kernel keeps the charge of a page made inaccessible
    /// again), so they are on by default there.
    /// Calling this method overrides the default either way.
    pub fn guard_pages(mut self, on: bool) -> Self {
        self.guard_pages = Some(on);
        self
    }

    /// Validate the settings, map and populate the first chunk, and join the
    /// balance thread (starting it if no other allocator has).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::InvalidPolicy`] (a field of the
    /// policy out of its knob's range), [`Error::TooFewUnits`],
    /// [`Error::Map`] when the first chunk cannot be mapped,
    /// [`Error::Spawn`].
    pub fn build(self) -> Result<PerCpuAllocator, Error> {
        PerCpuAllocator::from_config(self.validate()?)
    }

    fn validate(self) -> Result<Config, Error> {
        let page_size = sys::mmap::page_size();
        let cpus = sys::cpu::possible_cpus();
        let bad = |setting, value, reason| Error::InvalidConfig {
            setting,
            value,
            reason,
        };
        let units = self.units.unwrap_or(cpus);
        if units == 0 {
            return Err(bad("units", 0, "at least one unit is needed"));
        }
        if units < cpus {
            return Err(Error::TooFewUnits { units, cpus });
        }
        if units > usize::from(u16::MAX) {
            return Err(bad("units", units, "at most 65535 units"));
        }
        let unit_size = self.unit_size;
        if unit_size < MIN_UNIT_SIZE {
            return Err(bad("unit_size", unit_size, "must be at least 32 KiB"));
        }
        if unit_size % page_size != 0 {
            return Err(bad(
                "unit_size",
                unit_size,
                "must be a multiple of the page size",
            ));
        }
        if unit_size > MAX_UNIT_SIZE {
            return Err(bad("unit_size", unit_size, "must be at most 1 GiB"));
        }
        if !matches!(unit_size.checked_mul(units), Some(t) if t <= isize::MAX as usize) {
            return Err(bad("unit_size", unit_size, "units * unit_size overflows"));
        }
        let first = self.first_chunk_size;
        if first == 0 {
            return Err(bad(
                "first_chunk_size",
                first,
                "the first chunk needs a dynamic area",
            ));
        }
        // Clamped before rounding up, which then cannot overflow.
        let first_rounded = first.min(unit_size).div_ceil(page_size) * page_size;
        if first >= unit_size || first_rounded >= unit_size {
            return Err(bad(
                "first_chunk_size",
                first,
                "must be smaller than the unit size (rounded up to pages)",
            ));
        }
        if self.thread_cache > MAX_THREAD_CACHE {
            return Err(bad(
                "thread_cache",
                self.thread_cache,
                "must be at most 4096 areas per size",
            ));
        }
        self.policy.validate().map_err(Error::InvalidPolicy)?;
        let mut policy = self.policy;
        if let Some((low, high)) = self.watermarks {
            if high > MAX_WATERMARK {
                return Err(bad("watermarks.high", high, "must be at most 2^20 pages"));
            }
            if low > high {
                return Err(bad(
                    "watermarks.low",
                    low,
                    "must not exceed the high watermark",
                ));
            }
            policy.empty_pop_low = low as i32;
            policy.empty_pop_high = high as i32;
        }
        let fc = FirstChunk {
            static_size: 0,
            reserved_size: 0,
            dyn_size: first_rounded,
        };
        let geometry = Geometry::new(page_size, units, unit_size, fc).map_err(Error::Geometry)?;
        let hot = match self.prefault {
            Prefault::AllUnits => HotUnits::all(),
            Prefault::AllowedCpus => HotUnits::discover(units),
        };
        Ok(Config {
            policy,
            geometry,
            first_chunk_pages: first_rounded / page_size,
            background_balance: self.background_balance,
            thread_cache: if self.track_owners {
                0
            } else {
                self.thread_cache
            },
            track_owners: self.track_owners,
            trace_dir: self.trace_dir,
            region: RegionOptions {
                hot,
                nodes: if self.numa_local {
                    UnitNodes::discover(units)
                } else {
                    UnitNodes::none()
                },
                guard: self.guard_pages.unwrap_or_else(sys::overcommit::strict),
            },
        })
    }
}

/// A validated configuration.
///
/// # Invariants
/// - `geometry.nr_units() >= possible_cpus()`: every CPU id has a unit.
/// - `geometry.unit_size()` is a multiple of the page size, `>= 32 KiB`,
///   `<= 1 GiB`.
/// - The first chunk's dynamic area is `first_chunk_pages` whole pages,
///   fewer than a unit (so the first chunk never counts as fully free).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) policy: Policy,
    pub(crate) geometry: Geometry,
    pub(crate) first_chunk_pages: usize,
    pub(crate) background_balance: bool,
    /// Areas per class in each thread's cache (0: no cache).
    pub(crate) thread_cache: usize,
    /// Keep every live allocation's call site and thread
    /// (`Builder::track_owners`); the thread caches are then off.
    pub(crate) track_owners: bool,
    /// Where the allocation trace goes (`Builder::trace_dir`).
    pub(crate) trace_dir: Option<PathBuf>,
    /// The units whose pages are made resident when populated, the node
    /// of each, and whether unpopulated pages fault.
    pub(crate) region: RegionOptions,
}

impl Config {
    pub(crate) fn units(&self) -> usize {
        self.geometry.nr_units()
    }
    pub(crate) fn unit_size(&self) -> usize {
        self.geometry.unit_size()
    }
    pub(crate) fn page_size(&self) -> usize {
        self.geometry.page_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(b: Builder) -> bool {
        b.units(sys::cpu::possible_cpus())
            .validate()
            .unwrap()
            .region
            .guard
    }

    #[test]
    fn guard_pages_default_follows_strict_overcommit() {
        assert_eq!(guard(Builder::default()), sys::overcommit::strict());
        assert!(guard(Builder::default().guard_pages(true)));
        assert!(!guard(Builder::default().guard_pages(false)));
    }
}
