//! Integration tests of the `pcpu` allocator layer, compiled as one binary.

mod api;
mod cache;
mod demo;
mod errors;
mod hints;
mod lazy_units;
mod pins;
mod reclaim;
mod sites;
mod stress;
mod trace;
mod util;
mod valgrind_supp;
