//! placeholder
#![deny(unsafe_code)]

mod sys;

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
    pub use crate::sys::mmap::fault;
}
