//! The head block: the most recent samples, in memory, backed by the WAL for durability and by
//! `chunks_head/` for full chunks (which are written out and read back through mmap, so the
//! head keeps only one open chunk per series in memory).
//!
//! Series live in a sharded map keyed by the stable hash of their labels, and in a second
//! sharded map keyed by [`SeriesRef`]; postings are `roaring` bitmaps per label pair. Sample
//! rules are Prometheus's: a sample at the newest timestamp with the same value is ignored, with
//! another value it is [`Error::DuplicateSampleForTimestamp`]; an older sample is
//! [`Error::OutOfOrderSample`] unless within the out-of-order window, where it is kept in a
//! per-series sorted buffer and merged at query and compaction time.

mod appender;
mod querier;
mod replay;
pub mod series;

pub use appender::HeadAppender;
pub use querier::HeadQuerier;
pub use series::{ChunkData, MemSeries};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::chunkenc::{ChunkCutter, CutPolicy};
use crate::error::{Error, Result};
use crate::head_chunks::ChunkDiskMapper;
use crate::labels::{Label, Labels};
use crate::postings::PostingsIndex;
use crate::storage::SeriesRef;
use crate::wal::Wal;

/// Default block range (and head chunk range): 2h in milliseconds.
pub const DEFAULT_BLOCK_RANGE: i64 = 2 * 60 * 60 * 1000;

const SHARDS: usize = 256;

/// Head configuration.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Chunks never span a multiple of this range; also the block range. Default 2h.
    pub chunk_range: i64,
    /// How far behind the newest sample an out-of-order sample may be accepted. Default 0.
    pub ooo_window: i64,
    /// Target samples per chunk (Prometheus: 120).
    pub samples_per_chunk: usize,
    /// WAL segment size in bytes.
    pub wal_segment_size: usize,
    /// Snappy-compress WAL records.
    pub wal_compression: bool,
    /// Which Prometheus version's chunk-cutting rule to follow (default: Prometheus 3, which
    /// also caps chunks at about 1 KiB).
    pub cut_policy: CutPolicy,
}

impl Default for HeadOptions {
    fn default() -> Self {
        Self {
            chunk_range: DEFAULT_BLOCK_RANGE,
            ooo_window: 0,
            samples_per_chunk: 120,
            wal_segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
            wal_compression: true,
            cut_policy: CutPolicy::Prometheus3,
        }
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct HeadStats {
    pub samples_appended: AtomicU64,
    pub out_of_order_samples: AtomicU64,
    pub duplicate_samples: AtomicU64,
    pub out_of_bounds_samples: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
    pub chunks_created: AtomicU64,
}

/// Hashes a key that already is a hash (the labels' xxHash): the identity.
#[derive(Default, Clone, Copy)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashKeyed<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdentityHasher>>;

#[derive(Default)]
struct HashShard {
    /// The usual case: one series per hash.
    one: HashKeyed<Arc<MemSeries>>,
    /// Hash collisions: further series with the same hash.
    more: HashKeyed<Vec<Arc<MemSeries>>>,
}

const REF_PAGE_BITS: u32 = 16;
const REF_PAGE: usize = 1 << REF_PAGE_BITS;

/// Series by reference. References are handed out in sequence, so a paged array indexed by
/// reference replaces a hash map: one cache line per lookup, 8 bytes per series.
type RefPage = Box<[Option<Arc<MemSeries>>]>;

#[derive(Default)]
struct RefTable {
    pages: RwLock<Vec<RefPage>>,
    count: AtomicU64,
}

impl RefTable {
    fn get(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        let pages = self.pages.read();
        pages
            .get((r >> REF_PAGE_BITS) as usize)?
            .get(r as usize & (REF_PAGE - 1))?
            .clone()
    }

    fn insert(&self, r: SeriesRef, s: Arc<MemSeries>) {
        let mut pages = self.pages.write();
        let p = (r >> REF_PAGE_BITS) as usize;
        while pages.len() <= p {
            pages.push(vec![None; REF_PAGE].into_boxed_slice());
        }
        if pages[p][r as usize & (REF_PAGE - 1)].replace(s).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remove(&self, r: SeriesRef) {
        let mut pages = self.pages.write();
        if let Some(slot) = pages
            .get_mut((r >> REF_PAGE_BITS) as usize)
            .and_then(|p| p.get_mut(r as usize & (REF_PAGE - 1)))
        {
            if slot.take().is_some() {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    fn all(&self) -> Vec<Arc<MemSeries>> {
        let pages = self.pages.read();
        let mut out = Vec::with_capacity(self.len());
        for p in pages.iter() {
            out.extend(p.iter().flatten().cloned());
        }
        out
    }
}

/// In-memory postings: label name → value → series refs.
#[derive(Default)]
pub(crate) struct MemPostings {
    pub(crate) m: HashMap<Arc<str>, HashMap<Arc<str>, RoaringBitmap>>,
    pub(crate) all: RoaringBitmap,
}

impl MemPostings {
    fn add(&mut self, r: u32, labels: &Labels) {
        for l in labels.iter() {
            self.m
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(r);
        }
        self.all.insert(r);
    }

    fn remove(&mut self, r: u32, labels: &Labels) {
        for l in labels.iter() {
            if let Some(vals) = self.m.get_mut(&*l.name) {
                if let Some(p) = vals.get_mut(&*l.value) {
                    p.remove(r);
                    if p.is_empty() {
                        vals.remove(&*l.value);
                    }
                }
                if vals.is_empty() {
                    self.m.remove(&*l.name);
                }
            }
        }
        self.all.remove(r);
    }
}

/// String interner so every distinct label string is stored once (the head's own, and
/// process-wide ones elsewhere, e.g. the scrape agent's).
pub struct Interner {
    shards: Vec<Mutex<std::collections::HashSet<Arc<str>>>>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl Interner {
    pub fn new() -> Self {
        Self {
            shards: (0..64).map(|_| Mutex::default()).collect(),
        }
    }
    /// The shared copy of `s`.
    pub fn intern(&self, s: &str) -> Arc<str> {
        let h = xxhash_rust::xxh64::xxh64(s.as_bytes(), 0) as usize;
        let mut shard = self.shards[h % self.shards.len()].lock();
        if let Some(a) = shard.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        shard.insert(a.clone());
        a
    }
    /// Drops strings nothing else references any more.
    pub fn gc(&self) {
        for s in &self.shards {
            s.lock().retain(|a| Arc::strong_count(a) > 1);
        }
    }
}

/// The head block.
pub struct Head {
    pub(crate) opts: HeadOptions,
    pub(crate) cutter: ChunkCutter,
    dir: Option<PathBuf>,
    hashes: Vec<RwLock<HashShard>>,
    refs: RefTable,
    pub(crate) postings: RwLock<MemPostings>,
    pub(crate) interner: Interner,
    next_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this time are out of bounds (already persisted in blocks).
    min_valid_time: AtomicI64,
    pub(crate) wal: Option<Mutex<Wal>>,
    pub(crate) chunk_disk: Option<ChunkDiskMapper>,
    pub stats: HeadStats,
    /// Serialises truncation against itself.
    truncate_lock: Mutex<()>,
}

impl Head {
    /// A head with no WAL and no chunk files: everything in memory (tests, backfill).
    pub fn in_memory(opts: HeadOptions) -> Arc<Head> {
        Arc::new(Self::new(opts, None, None, None))
    }

    /// Opens the head of the data directory `dir`: replays `chunks_head/` and the WAL.
    pub fn open(dir: &Path, opts: HeadOptions) -> Result<Arc<Head>> {
        Self::open_after(dir, opts, i64::MIN)
    }

    /// Like [`Head::open`] for a head whose data before `min_valid_time` is already in
    /// blocks: the replay leaves out what the blocks hold (samples older than it, unless the
    /// out-of-order window takes them, and head chunks ending before it), as appends would.
    pub fn open_after(dir: &Path, opts: HeadOptions, min_valid_time: i64) -> Result<Arc<Head>> {
        let cdm = ChunkDiskMapper::open(dir.join("chunks_head"))?;
        let mut head = Self::new(opts, Some(dir.to_path_buf()), None, Some(cdm));
        head.set_min_valid_time(min_valid_time);
        let wal = replay::replay(&head, dir, false)?;
        head.wal = wal.map(Mutex::new);
        Ok(Arc::new(head))
    }

    /// Rebuilds the head of `dir` in memory from the WAL alone, writing nothing; data before
    /// `min_valid_time` is left out as in [`Head::open_after`].
    pub fn open_read_only(dir: &Path, opts: HeadOptions, min_valid_time: i64) -> Result<Arc<Head>> {
        let head = Self::new(opts, Some(dir.to_path_buf()), None, None);
        head.set_min_valid_time(min_valid_time);
        replay::replay(&head, dir, true)?;
        Ok(Arc::new(head))
    }

    fn new(
        opts: HeadOptions,
        dir: Option<PathBuf>,
        wal: Option<Wal>,
        cdm: Option<ChunkDiskMapper>,
    ) -> Self {
        let mut cutter = ChunkCutter::new(opts.chunk_range, opts.cut_policy);
        cutter.samples_per_chunk = opts.samples_per_chunk;
        Self {
            opts,
            cutter,
            dir,
            hashes: (0..SHARDS).map(|_| RwLock::default()).collect(),
            refs: RefTable::default(),
            postings: RwLock::default(),
            interner: Interner::new(),
            next_ref: AtomicU64::new(1),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            wal: wal.map(Mutex::new),
            chunk_disk: cdm,
            stats: HeadStats::default(),
            truncate_lock: Mutex::new(()),
        }
    }

    /// The data directory, if the head is persistent.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A new appender.
    pub fn appender(self: &Arc<Self>) -> HeadAppender {
        HeadAppender::new(self.clone())
    }

    /// Oldest sample time in the head (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Acquire)
    }

    /// Newest sample time in the head (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Acquire)
    }

    /// Samples older than this are rejected as out of bounds.
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Acquire)
    }

    pub(crate) fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    /// fsync calls on WAL segments since the WAL was opened (0 without a WAL).
    pub fn wal_fsyncs(&self) -> u64 {
        self.wal.as_ref().map_or(0, |w| w.lock().fsync_count())
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> usize {
        self.refs.len()
    }

    pub(crate) fn update_time_bounds(&self, mint: i64, maxt: i64) {
        self.min_time.fetch_min(mint, Ordering::AcqRel);
        self.max_time.fetch_max(maxt, Ordering::AcqRel);
    }

    fn hash_shard(h: u64) -> usize {
        (h as usize) % SHARDS
    }

    /// The series with this reference.
    pub fn series_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.refs.get(r)
    }

    /// The series with these labels, if it exists.
    pub fn series_by_labels(&self, labels: &Labels, hash: u64) -> Option<Arc<MemSeries>> {
        let shard = self.hashes[Self::hash_shard(hash)].read();
        if let Some(s) = shard.one.get(&hash) {
            if s.labels == *labels {
                return Some(s.clone());
            }
            return shard
                .more
                .get(&hash)
                .and_then(|v| v.iter().find(|s| s.labels == *labels).cloned());
        }
        None
    }

    /// Gets the series with these labels or creates it (with a new ref, or with `want_ref`
    /// during WAL replay). Returns the series and whether it was created.
    pub(crate) fn get_or_create(
        &self,
        labels: &Labels,
        want_ref: Option<SeriesRef>,
    ) -> Result<(Arc<MemSeries>, bool)> {
        let hash = labels.stable_hash();
        if let Some(s) = self.series_by_labels(labels, hash) {
            return Ok((s, false));
        }
        let mut shard = self.hashes[Self::hash_shard(hash)].write();
        // Re-check under the write lock.
        if let Some(s) = shard.one.get(&hash) {
            if s.labels == *labels {
                return Ok((s.clone(), false));
            }
            if let Some(s) = shard
                .more
                .get(&hash)
                .and_then(|v| v.iter().find(|s| s.labels == *labels))
            {
                return Ok((s.clone(), false));
            }
        }
        let r = match want_ref {
            Some(r) => {
                self.next_ref.fetch_max(r + 1, Ordering::AcqRel);
                r
            }
            None => self.next_ref.fetch_add(1, Ordering::AcqRel),
        };
        if r > u32::MAX as u64 {
            return Err(Error::Invalid(format!(
                "series reference {r} exceeds the head's 32-bit postings space"
            )));
        }
        let interned = Labels::from_sorted(
            labels
                .iter()
                .map(|l| Label {
                    name: self.interner.intern(&l.name),
                    value: self.interner.intern(&l.value),
                })
                .collect(),
        );
        let s = Arc::new(MemSeries::new(r, interned, self.opts.chunk_range));
        match shard.one.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                shard.more.entry(hash).or_default().push(s.clone())
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s.clone());
            }
        }
        self.refs.insert(r, s.clone());
        self.postings.write().add(r as u32, &s.labels);
        drop(shard);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        Ok((s, true))
    }

    fn remove_series(&self, s: &Arc<MemSeries>) {
        let hash = s.labels.stable_hash();
        {
            let mut shard = self.hashes[Self::hash_shard(hash)].write();
            let in_one = shard.one.get(&hash).is_some_and(|x| Arc::ptr_eq(x, s));
            if in_one {
                shard.one.remove(&hash);
                let promote = shard.more.get_mut(&hash).and_then(|v| v.pop());
                if let Some(p) = promote {
                    shard.one.insert(hash, p);
                }
                if shard.more.get(&hash).is_some_and(|v| v.is_empty()) {
                    shard.more.remove(&hash);
                }
            } else if let Some(v) = shard.more.get_mut(&hash) {
                v.retain(|x| !Arc::ptr_eq(x, s));
                if v.is_empty() {
                    shard.more.remove(&hash);
                }
            }
        }
        self.refs.remove(s.r);
        self.postings.write().remove(s.r as u32, &s.labels);
        self.stats.series_removed.fetch_add(1, Ordering::Relaxed);
    }

    /// Every series, in no particular order.
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        self.refs.all()
    }

    /// Every series sorted by labels.
    pub fn sorted_series(&self) -> Vec<Arc<MemSeries>> {
        let mut v = self.all_series();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Reads the bytes of a chunk that was written to `chunks_head/`.
    pub(crate) fn read_disk_chunk(&self, r: u64) -> Result<crate::chunks::MmapBytes> {
        match &self.chunk_disk {
            Some(cdm) => cdm.chunk(r).map(|(_, _, b)| b),
            None => Err(Error::Invalid(format!(
                "head chunk {r} requested but the head has no chunk files"
            ))),
        }
    }

    /// Drops all data before `mint` (it has been persisted into a block): removes old chunks
    /// and empty series, checkpoints and truncates the WAL, and deletes old chunk files.
    pub fn truncate(&self, mint: i64) -> Result<()> {
        let _g = self.truncate_lock.lock();
        self.set_min_valid_time(mint);
        let mut new_min = i64::MAX;
        for s in self.all_series() {
            let (empty, smin) = s.truncate_before(mint);
            if empty {
                self.remove_series(&s);
            } else {
                new_min = new_min.min(smin);
            }
        }
        self.min_time.store(new_min, Ordering::Release);
        if new_min == i64::MAX {
            self.max_time.store(i64::MIN, Ordering::Release);
        }
        self.interner.gc();
        if let Some(cdm) = &self.chunk_disk {
            cdm.truncate_before(mint)?;
        }
        if let Some(wal) = &self.wal {
            // Checkpoint every segment but the newest, then drop them.
            let (dir, first, last) = {
                let mut w = wal.lock();
                let (first, last) = w.segments()?;
                w.next_segment()?;
                (w.dir().to_path_buf(), first, last)
            };
            if last >= first {
                let keep = |r: u64| self.series_by_ref(r).is_some();
                crate::wal::checkpoint(&dir, first, last, keep, mint)?;
                wal.lock().truncate(last + 1)?;
            }
        }
        Ok(())
    }
}

/// Postings over the head's in-memory index.
pub(crate) struct HeadIndex<'a>(pub(crate) &'a MemPostings);

impl PostingsIndex for HeadIndex<'_> {
    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        Ok(self
            .0
            .m
            .get(name)
            .and_then(|v| v.get(value))
            .cloned()
            .unwrap_or_default())
    }
    fn postings_matching(&self, name: &str, f: &dyn Fn(&str) -> bool) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        if let Some(vals) = self.0.m.get(name) {
            for (v, p) in vals {
                if f(v) {
                    out |= p;
                }
            }
        }
        Ok(out)
    }
    fn all_postings(&self) -> Result<RoaringBitmap> {
        Ok(self.0.all.clone())
    }
}
