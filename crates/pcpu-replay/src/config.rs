//! Replay options: where allocations go, when the balance work runs, which
//! placement class each allocation gets.

use pcpu_core::Policy;

/// Where allocations go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Our allocator places every allocation.
    Simulate,
    /// Follow the kernel's recorded chunk and offset (population policy only).
    Kernel,
}

/// When the balance work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceTiming {
    /// At the kernel's `pcpu_balance_workfn` kprobe events.
    Recorded,
    /// Right after any allocation or free that schedules it (kernel rules).
    Modelled,
    /// Recorded when the trace has balance events; else, for a trace of a
    /// real kernel (a recording on a running kernel), by the kernel's rules
    /// [`AUTO_DELAY_US`] after it is scheduled, and for a generated trace
    /// on demand (`Modelled`).
    Auto,
    /// By the kernel's rules, as `Modelled`, but `us` microseconds of the
    /// trace's clock after an allocation or free schedules it (a work
    /// item's latency): the events in between see none of its effects.
    Delayed {
        /// The delay, in microseconds.
        us: u32,
    },
}

/// The balance work's delay, in microseconds of the trace's clock after an
/// allocation or free schedules it, under [`BalanceTiming::Auto`] for a
/// trace of a real kernel without `pcpu_balance_workfn` events. On six
/// churn recordings on a 6.18 kernel with the kernel's `percpu_stats` at
/// every marker, `linux-6.1` matched the kernel's Percpu at 14 of 14, 14
/// of 14, 8 of 10, 8 of 8, 6 of 8 and 6 of 6 markers with it (mean
/// differences 0.0%, 0.0%, 1.7%, 0.0%, 1.7%, 0.0%), against 6, 8, 8, 8,
/// 2 and 6 run on demand (11.3%, 18.0%, 1.7%, 0.0%, 10.2%, 0.0%; the
/// second lenient, with the frees its trace lost implied); 10 and 200 µs
/// were worse on some, better on none. A recording taken after the choice
/// matched at 10 of 12 markers (0.2% off at the others; on demand up to
/// 21.1% off). A work item runs after the task that scheduled it is done
/// with the allocator for a while, not between its allocations.
pub const AUTO_DELAY_US: u32 = 50;

/// Which placement class each allocation gets (policies with class
/// placement only; the Linux policies ignore classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassMode {
    /// No classes: plain first fit.
    None,
    /// The allocating task (pid): its objects are kept contiguous. Each
    /// allocation also carries its call site (the whole `call_site=` text,
    /// hashed), which `Policy::long_lived` learns from.
    Task,
    /// Lifetime classes derived from the trace: objects freed in the same
    /// phase (or never) share pages. The upper bound of what hints can do.
    Derived,
    /// Size classes (slab-like segregation): one page-exclusive class per
    /// power-of-two size bucket (4, 8, 16, ... bytes, see [`size_class`]).
    SizeClass,
    /// Call-site segregation: one page-exclusive class per call site
    /// function (`percpu_ref_init`); allocations without a traced call site
    /// get no class.
    CallSite,
}

/// The size bucket of a `size`-byte allocation under [`ClassMode::SizeClass`]:
/// `log2` of the size rounded up to a power of two (at least 4 bytes, so 2).
pub fn size_class(size: u64) -> u64 {
    u64::from(size.max(4).next_power_of_two().trailing_zeros())
}

/// The class id of a call site function under [`ClassMode::CallSite`] (FNV-1a
/// of the name, so stable across runs).
pub fn call_site_class(function: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in function.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Replay options.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Policy to replay with.
    pub policy: Policy,
    /// Placement mode.
    pub placement: Placement,
    /// Balance timing.
    pub balance: BalanceTiming,
    /// Run the full invariant check after every operation (slow; for tests).
    pub check_invariants: bool,
    /// Skip (and count) what cannot be replayed instead of failing: frees of
    /// unknown pointers, and events that parse but make no sense (an
    /// allocation request the kernel would reject or placed outside the
    /// unit, a kprobe page range outside the chunk, a chunk destroyed while
    /// it holds traced allocations or created while it is live).
    pub lenient: bool,
    /// Take a timeline sample every this many records (0: phases only).
    pub sample_every: usize,
    /// Placement classes.
    pub classes: ClassMode,
    /// Keep a log of every page operation of our allocator
    /// ([`Replayer::page_log`](crate::Replayer::page_log); for thrash and traffic studies).
    pub page_log: bool,
    /// Per-CPU magazines of this many freed areas per request (0: none, as
    /// in Linux). With magazines, a free on CPU `c` goes to `c`'s magazine of
    /// the request's size and alignment (a full one frees its older half),
    /// an allocation on `c` takes from it first, and every balance run drains
    /// all magazines before it works: what a slab-like free cache would cost
    /// the kernel's percpu allocator in memory. Simulated placement only;
    /// reserved allocations and requests above [`MAGAZINE_MAX_SIZE`] bypass
    /// them (as in the `pcpu` crate's thread caches).
    pub magazine: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            policy: Policy::default(),
            placement: Placement::Simulate,
            balance: BalanceTiming::Auto,
            check_invariants: false,
            lenient: false,
            sample_every: 500,
            classes: ClassMode::Task,
            page_log: false,
            magazine: 0,
        }
    }
}

/// Largest request (bytes) that goes through a magazine
/// ([`ReplayConfig::magazine`]).
pub const MAGAZINE_MAX_SIZE: usize = 256;
