//! Shared by the integration tests that model memory cgroups.

/// The objects (size, align) a Linux 6.1 memory cgroup's `mkdir`
/// allocates, in order: 2052 bytes per unit, 2048 without the 4-byte
/// counter.
pub(crate) const MEMCG_GROUP: [(usize, usize); 11] = [
    (8, 8),
    (64, 8),
    (128, 64),
    (8, 8),
    (1096, 8),
    (688, 8),
    (4, 4),
    (8, 8),
    (8, 8),
    (32, 8),
    (8, 8),
];
