//! A hasher for keys the allocator chose itself: places `(chunk, offset)`,
//! thread numbers, call-site addresses. A multiply per word; no input to
//! defend against (SipHash, std's default, cost about 150 instructions a
//! lookup in maps updated at every allocation and free).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by words the allocator chose (see the module).
pub(crate) type WordMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// Folds each word in with a rotate, a xor and a multiply.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    /// A product's low bits depend only on its factors' low bits, and
    /// offsets share theirs (multiples of the alignment): the table's
    /// bucket index (its low bits) takes the well-mixed high bits instead.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_offsets_spread_over_the_low_bits() {
        let b = BuildHasherDefault::<WordHasher>::default();
        // 4096 offsets 16 bytes apart in one chunk: their hashes' low 8 bits
        // (a 256-bucket table's index) take nearly every value.
        let mut seen = [false; 256];
        for off in 0..4096usize {
            seen[(b.hash_one((7u32, off * 16)) & 0xff) as usize] = true;
        }
        let distinct = seen.iter().filter(|&&s| s).count();
        assert!(distinct >= 250, "{distinct} of 256 low-byte values");
    }
}
