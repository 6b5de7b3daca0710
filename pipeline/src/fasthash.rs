//! Hashers for the hot maps. std's SipHash costs more than the work around
//! it for 16-byte trace ids and short attribute keys. Both hashers here are
//! keyed per process, so clients cannot aim for collisions in advance.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A random key for this process.
fn process_key() -> u64 {
    static KEY: OnceLock<u64> = OnceLock::new();
    *KEY.get_or_init(|| rand::random::<u64>() | 1)
}

/// Folded multiplies over 8-byte words (the 128-bit product's halves
/// xored, so every input bit reaches every output bit): fast for trace ids
/// and short keys.
#[derive(Clone, Copy)]
pub struct WordHasher(u64);

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
const FIN: u64 = 0xd6e8_feb8_6659_fd93;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = fold(self.0 ^ w, MUL);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = fold(self.0 ^ u64::from_le_bytes(w), MUL ^ rest.len() as u64);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = fold(self.0 ^ n as u64, MUL);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.0, FIN)
    }
}

/// Builds [`WordHasher`]s keyed with the process key.
#[derive(Clone, Copy)]
pub struct Keyed(u64);

impl Default for Keyed {
    fn default() -> Self {
        Keyed(process_key())
    }
}

impl BuildHasher for Keyed {
    type Hasher = WordHasher;

    #[inline]
    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.0)
    }
}

/// A `HashMap` with the keyed word hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, Keyed>;
/// A `HashSet` with the keyed word hasher.
pub type FastSet<K> = std::collections::HashSet<K, Keyed>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn spreads_ids_that_differ_in_one_byte_or_in_length() {
        let b = Keyed::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..16 {
            for v in 0..=255u8 {
                let mut id = [0u8; 16];
                id[i] = v;
                seen.insert(b.hash_one(id));
            }
        }
        assert_eq!(seen.len(), 16 * 255 + 1, "all-zero id counted once");
        // Trailing zero bytes still change the hash.
        assert_ne!(b.hash_one(&b"ab"[..]), b.hash_one(&b"ab\0"[..]));
        // Low bits, which hashbrown uses for buckets, vary too.
        let low: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| b.hash_one(i.to_le_bytes()) & 1023)
            .collect();
        assert!(low.len() > 600, "{} of 1024 buckets", low.len());
    }
}
