//! The OS layer: every system call the crate makes lives below this module.
//!
//! * [`mmap`] — one address-space reservation per chunk ([`mmap::Region`]),
//!   whose pages are made resident / returned to the OS per page index across
//!   all units at once.
//! * [`cpu`] — how many CPU ids exist ([`cpu::possible_cpus`]) and which CPU
//!   the calling thread runs on ([`cpu::current_cpu`], rseq fast path).
//!
//! These two modules are the only ones in the crate that may contain `unsafe`
//! code; everything above them is written against their safe (or documented
//! `unsafe fn`) API.

pub(crate) mod cpu;
// The chunk/handle layer that consumes `Region` is not written yet.
#[allow(dead_code)]
pub(crate) mod mmap;

#[cfg(test)]
pub(crate) mod testutil;
