//! A fast non-cryptographic hasher for in-process maps on hot paths (series refs, scrape-cache
//! keys, label-set addresses in the query caches), where SipHash's flooding resistance buys
//! nothing: the keys are our own refs and addresses, or come from targets the operator
//! configured. Words are mixed with a multiply-rotate step (FxHash's scheme) and the result is
//! avalanched so the low bits hash tables use depend on every input bit.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The hasher; see the module docs.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A final avalanche so that the low bits (which hashbrown uses) depend on every input
        // bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

pub type BuildFast = BuildHasherDefault<FastHasher>;
pub type FastMap<K, V> = HashMap<K, V, BuildFast>;
pub type FastSet<K> = HashSet<K, BuildFast>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn distinct_keys_spread_and_equal_keys_agree() {
        let b = BuildFast::default();
        assert_eq!(b.hash_one("abc"), b.hash_one(String::from("abc")));
        let mut low = std::collections::HashSet::new();
        for i in 0u64..4096 {
            low.insert(b.hash_one(i) & 0xfff);
        }
        // Sequential refs must not collide in the low bits much.
        assert!(low.len() > 2500, "{}", low.len());
        assert_ne!(b.hash_one("ab"), b.hash_one("ab\0"));
    }
}
