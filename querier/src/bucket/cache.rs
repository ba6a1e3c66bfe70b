//! A byte-bounded LRU cache of chunk bytes fetched from the bucket, keyed by block and chunk
//! reference. Each entry is the chunk's encoding byte followed by its data (length prefix and
//! CRC stripped; the CRC was checked when the chunk was fetched).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use ulid::Ulid;

type Key = (Ulid, u64);

struct Entry {
    value: Bytes,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Last-use tick → key; the smallest tick is evicted first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

/// Counters of a [`ChunkCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// The cache. A capacity of 0 disables it.
pub struct ChunkCache {
    cap: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// Bookkeeping cost of one entry on top of its bytes.
const ENTRY_OVERHEAD: usize = 64;

impl ChunkCache {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The cached bytes of chunk `r` of block `id`, marking them recently used.
    pub fn get(&self, id: Ulid, r: u64) -> Option<Bytes> {
        let mut g = self.inner.lock();
        g.tick += 1;
        let tick = g.tick;
        let Some(e) = g.map.get_mut(&(id, r)) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let old = std::mem::replace(&mut e.tick, tick);
        let v = e.value.clone();
        g.order.remove(&old);
        g.order.insert(tick, (id, r));
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(v)
    }

    /// Caches chunk `r` of block `id`, evicting the least recently used entries to stay
    /// within the capacity. Values larger than the whole capacity are not cached.
    pub fn insert(&self, id: Ulid, r: u64, value: Bytes) {
        let cost = value.len() + ENTRY_OVERHEAD;
        if cost > self.cap {
            return;
        }
        let mut g = self.inner.lock();
        g.tick += 1;
        let tick = g.tick;
        if let Some(old) = g.map.insert((id, r), Entry { value, tick }) {
            g.order.remove(&old.tick);
            g.bytes -= old.value.len() + ENTRY_OVERHEAD;
        }
        g.order.insert(tick, (id, r));
        g.bytes += cost;
        while g.bytes > self.cap {
            let Some((_, k)) = g.order.pop_first() else {
                break;
            };
            if let Some(e) = g.map.remove(&k) {
                g.bytes -= e.value.len() + ENTRY_OVERHEAD;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops every entry of block `id` (the block left the bucket).
    pub fn remove_block(&self, id: Ulid) {
        let mut g = self.inner.lock();
        let keys: Vec<(Key, u64)> = g
            .map
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(k, e)| (*k, e.tick))
            .collect();
        for (k, tick) in keys {
            g.order.remove(&tick);
            if let Some(e) = g.map.remove(&k) {
                g.bytes -= e.value.len() + ENTRY_OVERHEAD;
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        CacheStats {
            entries: g.map.len(),
            bytes: g.bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let c = ChunkCache::new(3 * (100 + ENTRY_OVERHEAD));
        let id = Ulid::new();
        for r in 0..3 {
            c.insert(id, r, Bytes::from(vec![r as u8; 100]));
        }
        assert!(c.get(id, 0).is_some()); // 0 is now the most recent
        c.insert(id, 3, Bytes::from(vec![3; 100]));
        assert!(c.get(id, 1).is_none(), "1 was least recently used");
        assert!(c.get(id, 0).is_some() && c.get(id, 2).is_some() && c.get(id, 3).is_some());
        let s = c.stats();
        assert_eq!((s.entries, s.evictions), (3, 1));
        assert!(s.bytes <= 3 * (100 + ENTRY_OVERHEAD));
        // Too big for the cache at all.
        c.insert(id, 9, Bytes::from(vec![0; 10_000]));
        assert!(c.get(id, 9).is_none());
        c.remove_block(id);
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().bytes, 0);
        // Disabled cache.
        let z = ChunkCache::new(0);
        z.insert(id, 1, Bytes::from_static(b"x"));
        assert!(z.get(id, 1).is_none());
    }
}
