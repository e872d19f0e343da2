//! Shared helpers.

use pcpu::{PerCpuAllocator, Policy, Prefault};

/// An allocator with `policy` and `unit_size`, no background thread (tests
/// drive the balance work explicitly and may arm thread-local fault knobs).
pub(crate) fn quiet(policy: &str, unit_size: usize) -> PerCpuAllocator {
    PerCpuAllocator::builder()
        .policy(policy.parse::<Policy>().expect("policy name"))
        .unit_size(unit_size)
        .background_balance(false)
        // Every unit resident once populated, whatever the test thread's
        // affinity, so that `assert_resident_matches` holds (the default is
        // tested in `lazy_units.rs`).
        .prefault(Prefault::AllUnits)
        .build()
        .expect("build allocator")
}

/// A small, fast xorshift64* generator (tests need no real randomness).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The allocator's resident bytes must equal its `Percpu:` figure when no
/// operation is in flight: every populated page is resident, nothing else.
pub(crate) fn assert_resident_matches(alloc: &PerCpuAllocator) {
    let resident = alloc.resident_bytes().expect("resident bytes");
    let stats = alloc.stats();
    assert_eq!(
        resident, stats.percpu_bytes,
        "resident vs populated bookkeeping: {stats:?}"
    );
}
