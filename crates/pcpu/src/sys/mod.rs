//! The OS layer: every system call the crate makes lives below this module.
//!
//! * [`mmap`] — one address-space reservation per chunk ([`mmap::Region`]),
//!   whose pages are made resident / returned to the OS per page index across
//!   all units at once.
//! * [`cpu`] — how many CPU ids exist ([`cpu::possible_cpus`]) and which CPU
//!   the calling thread runs on ([`cpu::current_cpu`], rseq fast path).
//! * [`fork`] — which process this is, as `fork()` sees it
//!   ([`fork::process_tag`], a `pthread_atfork` child handler).
//! * [`rseq`] — restartable sequences: the current CPU's counter slot updated
//!   with plain instructions that the kernel restarts if interrupted
//!   ([`rseq::add_fold`], x86_64 with glibc's rseq registration).
//!
//! Safe helpers of `mmap`, kept apart so that the unsafe module holds only
//! the mapping itself: [`error`] (what failed, with the `errno`), [`fault`]
//! (test knobs that make reservations and populations fail), [`pagebits`]
//! (per-page bitmaps and their runs), [`pagemap`] (which pages are backed by
//! memory, from `/proc/self/pagemap`), [`units`] (which units a region
//! pre-faults, and the NUMA node of each) and [`overcommit`] (whether the
//! kernel charges a writable mapping in full, which makes guard pages the
//! default).
//!
//! These four modules (`mmap`, `cpu`, `fork`, `rseq`), and `crate::handle` (per-CPU pointers, zeroing, the
//! one call of `Region::depopulate`, the one call of `rseq::add_fold`), are
//! the only ones in the crate that may contain `unsafe` code; everything else
//! is written against their safe API.

pub(crate) mod cpu;
pub(crate) mod error;
// Public (for `pcpu::__private::fault`) only where the knobs exist.
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
#[cfg(not(any(test, feature = "fault-injection")))]
pub(crate) mod fault;
pub(crate) mod fork;
// Some introspection helpers of `Region` (`len`, `base`, `unit_base`,
// `resident_pages_in`, ...) are only used by the module's own tests.
#[allow(dead_code)]
pub(crate) mod mmap;
pub(crate) mod overcommit;
pub(crate) mod pagebits;
pub(crate) mod pagemap;
pub(crate) mod rseq;
pub(crate) mod units;

#[cfg(test)]
pub(crate) mod testutil;
