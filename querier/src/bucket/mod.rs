//! The bucket store: queries blocks that live in object storage (Thanos's layout), as
//! Thanos's store gateway does.
//!
//! * [`BucketStore::sync`] lists the bucket, ignores partial uploads (no `meta.json`), blocks
//!   marked for deletion (`deletion-mark.json`, ignored at once rather than after a delay) and
//!   blocks younger than the consistency delay, downloads each new block's `index` once into
//!   `<cache_dir>/<ULID>/index` (kept across restarts, checked by opening it), and drops blocks
//!   that disappeared. [`BucketStore::spawn_sync_loop`] repeats it every `sync_interval`.
//! * [`BucketStore`] implements [`Queryable`]: series are found in the cached index; chunks are
//!   fetched by ranged GETs of the chunk segment objects (never whole files), nearby chunks
//!   merged into one GET, through a byte-bounded LRU cache. See [`io`] for how the synchronous
//!   query path runs object-storage calls.
//! * [`BucketStore::querier_with_resolution`] reads downsampled blocks where they exist (see
//!   [`resolution`]); the plain [`Queryable::querier`] reads raw blocks only.
//! * [`fanin::FanIn`] combines the local database and the bucket store (with optional
//!   replica-label deduplication).

pub mod aggr;
pub mod block;
pub mod cache;
pub mod fanin;
pub mod fetch;
pub mod io;
pub mod resolution;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use parking_lot::RwLock;
use strata_compactor::bucket::{
    self as layout, Bucket, CHUNKS_DIR, DELETION_MARK_FILE, INDEX_FILE, META_FILE,
};
use strata_compactor::{Error as StoreError, Result as StoreResult};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::index::IndexReader;
use strata_tsdb::labels::Matcher;
use strata_tsdb::storage::merge::MergeQuerier;
use strata_tsdb::storage::{Querier, Queryable, SelectHints, SeriesSet};
use strata_tsdb::tombstones::TOMBSTONES_FILENAME;
use ulid::Ulid;

pub use block::{BucketBlock, BucketBlockQuerier};
pub use cache::CacheStats;
pub use fanin::FanIn;
use io::{Io, IoRuntime};
use resolution::{choose_blocks, BlockSpan};

/// How the store syncs and caches.
#[derive(Debug, Clone)]
pub struct BucketStoreOptions {
    /// How often [`BucketStore::spawn_sync_loop`] re-lists the bucket.
    pub sync_interval: Duration,
    /// Blocks whose ULID is younger than this are not loaded yet (an upload from another
    /// process may still be settling). Thanos uses 30m; 0 loads everything at once.
    pub consistency_delay: Duration,
    /// Bound of the in-memory chunk cache, in bytes (0 disables it).
    pub cache_bytes: usize,
    /// Wanted chunks of one segment object closer than this many bytes are fetched by one
    /// ranged GET (the bytes between them are read and discarded).
    pub chunk_range_gap: u64,
    /// Ranged GETs in flight at once per fetch.
    pub fetch_concurrency: usize,
    /// The external labels of the server this store runs in. Blocks carrying exactly these
    /// (`thanos.labels`) are its own uploads: their series are served without them, as the
    /// same data is while it is still local, so a query sees one series whether a block is
    /// local, in the bucket, or both. Other producers' blocks get their labels attached.
    pub own_external_labels: std::collections::BTreeMap<String, String>,
}

impl Default for BucketStoreOptions {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(180),
            consistency_delay: Duration::ZERO,
            cache_bytes: 256 << 20,
            chunk_range_gap: 512 << 10,
            fetch_concurrency: 16,
            own_external_labels: Default::default(),
        }
    }
}

/// What one [`BucketStore::sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Blocks loaded by this sync.
    pub loaded: Vec<Ulid>,
    /// Blocks dropped because they left the bucket or were marked for deletion.
    pub dropped: Vec<Ulid>,
    /// Block directories without `meta.json`.
    pub partial: Vec<Ulid>,
    /// Blocks with a deletion mark.
    pub marked: Vec<Ulid>,
    /// Blocks younger than the consistency delay.
    pub too_recent: Vec<Ulid>,
    /// Blocks that could not be loaded (bad meta.json or index), with the reason.
    pub failed: Vec<(Ulid, String)>,
    /// Blocks served after the sync.
    pub active: usize,
}

struct Inner {
    io: Arc<Io>,
    cache_dir: PathBuf,
    opts: BucketStoreOptions,
    blocks: RwLock<BTreeMap<Ulid, Arc<BucketBlock>>>,
    /// Serialises syncs.
    sync_mu: tokio::sync::Mutex<()>,
}

/// Blocks in object storage, queryable. Cheap to clone (shared state).
#[derive(Clone)]
pub struct BucketStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("cache_dir", &self.inner.cache_dir)
            .field("blocks", &self.inner.blocks.read().len())
            .finish_non_exhaustive()
    }
}

/// Request counters of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketStoreStats {
    pub chunk_gets: u64,
    pub chunk_bytes: u64,
    pub chunk_refetches: u64,
    pub index_downloads: u64,
    pub cache: CacheStats,
}

impl BucketStore {
    /// A store over `bucket` caching index files under `cache_dir` (created if needed). No
    /// block is served before the first [`BucketStore::sync`]. `cache_dir` must be the store's
    /// own: block-named directories in it that the bucket does not serve are removed, so a
    /// database directory (one with `wal/` or `lock`) is refused.
    pub fn new(
        bucket: Bucket,
        cache_dir: PathBuf,
        opts: BucketStoreOptions,
    ) -> StoreResult<BucketStore> {
        if cache_dir.join("wal").exists() || cache_dir.join("lock").exists() {
            return Err(StoreError::Invalid {
                what: "bucket cache directory",
                value: cache_dir.display().to_string(),
                detail: "is a database directory; give the bucket store a directory of its own"
                    .into(),
            });
        }
        std::fs::create_dir_all(&cache_dir).map_err(|e| StoreError::Io {
            op: "create directory",
            path: cache_dir.clone(),
            source: e,
        })?;
        let rt = IoRuntime::new().map_err(|e| StoreError::Io {
            op: "start bucket I/O runtime for",
            path: cache_dir.clone(),
            source: e,
        })?;
        let io = Arc::new(Io {
            bucket,
            rt,
            cache: cache::ChunkCache::new(opts.cache_bytes),
            gap: opts.chunk_range_gap,
            concurrency: opts.fetch_concurrency,
            counters: Default::default(),
        });
        Ok(BucketStore {
            inner: Arc::new(Inner {
                io,
                cache_dir,
                opts,
                blocks: RwLock::new(BTreeMap::new()),
                sync_mu: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn options(&self) -> &BucketStoreOptions {
        &self.inner.opts
    }

    /// The metas of the blocks served now, by ULID.
    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.inner
            .blocks
            .read()
            .values()
            .map(|b| b.meta.clone())
            .collect()
    }

    pub fn stats(&self) -> BucketStoreStats {
        let c = &self.inner.io.counters;
        BucketStoreStats {
            chunk_gets: c.chunk_gets.load(Ordering::Relaxed),
            chunk_bytes: c.chunk_bytes.load(Ordering::Relaxed),
            chunk_refetches: c.chunk_refetches.load(Ordering::Relaxed),
            index_downloads: c.index_downloads.load(Ordering::Relaxed),
            cache: self.inner.io.cache.stats(),
        }
    }

    /// Syncs with the bucket (see the module doc). Runs on the store's own runtime, so it can
    /// be awaited from any runtime. Errors only when the bucket cannot be listed; a block
    /// that fails to load is reported in [`SyncReport::failed`] and skipped.
    pub async fn sync(&self) -> StoreResult<SyncReport> {
        let inner = self.inner.clone();
        let h = inner
            .io
            .rt
            .handle()
            .cloned()
            .ok_or_else(|| StoreError::Tsdb(strata_tsdb::Error::Invalid("shut down".into())))?;
        h.spawn(async move { inner.sync().await })
            .await
            .map_err(|e| StoreError::Tsdb(strata_tsdb::Error::Invalid(format!("sync task: {e}"))))?
    }

    /// [`BucketStore::sync`] for synchronous callers (not from async code).
    pub fn sync_blocking(&self) -> StoreResult<SyncReport> {
        let inner = self.inner.clone();
        self.inner
            .io
            .run(async move { inner.sync().await })
            .map_err(StoreError::Tsdb)?
    }

    /// Syncs every `sync_interval` on the store's runtime until the returned handle is
    /// aborted or the store is dropped. Errors are logged.
    pub fn spawn_sync_loop(&self) -> Option<tokio::task::JoinHandle<()>> {
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.opts.sync_interval.max(Duration::from_millis(10));
        let h = self.inner.io.rt.handle()?.clone();
        Some(h.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                match inner.sync().await {
                    Ok(r) => tracing::debug!(
                        loaded = r.loaded.len(),
                        dropped = r.dropped.len(),
                        active = r.active,
                        "bucket store synced"
                    ),
                    Err(e) => tracing::warn!(error = %e, "bucket store sync failed"),
                }
            }
        }))
    }

    /// A querier over `[mint, maxt]` reading, for each part of the range, the coarsest
    /// resolution `<= max_resolution_ms` available (see [`resolution`]). A range selector
    /// reads no resolution coarser than half its range, so that every window still holds
    /// two samples (`rate(x[5m])` reads raw data even when 5m blocks would be allowed).
    pub fn querier_with_resolution(
        &self,
        mint: i64,
        maxt: i64,
        max_resolution_ms: i64,
    ) -> strata_tsdb::Result<Box<dyn Querier>> {
        Ok(Box::new(StoreQuerier {
            store: self.clone(),
            mint,
            maxt,
            max_resolution_ms,
        }))
    }

    /// Queriers of the blocks chosen for `[mint, maxt]` at resolutions up to `max_res`.
    fn block_queriers(&self, mint: i64, maxt: i64, max_res: i64) -> MergeQuerier {
        let blocks: Vec<Arc<BucketBlock>> = self.inner.blocks.read().values().cloned().collect();
        let spans: Vec<BlockSpan<usize>> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| BlockSpan {
                id: i,
                min_time: b.meta.min_time,
                max_time: b.meta.max_time,
                resolution: b.resolution(),
            })
            .collect();
        let mut chosen = choose_blocks(&spans, mint, maxt, max_res);
        chosen.sort_unstable();
        let qs: Vec<Box<dyn Querier>> = chosen
            .into_iter()
            .filter(|&i| blocks[i].overlaps(mint, maxt))
            .map(|i| {
                Box::new(BucketBlockQuerier {
                    io: self.inner.io.clone(),
                    block: blocks[i].clone(),
                    mint,
                    maxt,
                }) as Box<dyn Querier>
            })
            .collect();
        MergeQuerier::new(qs)
    }

    /// This store as a [`Queryable`] that reads up to `max_resolution_ms`.
    pub fn at_resolution(&self, max_resolution_ms: i64) -> ResolutionQueryable {
        ResolutionQueryable {
            store: self.clone(),
            max_resolution_ms,
        }
    }
}

/// Queries raw blocks only (Thanos's default `max_source_resolution=0`).
impl Queryable for BucketStore {
    fn querier(&self, mint: i64, maxt: i64) -> strata_tsdb::Result<Box<dyn Querier>> {
        self.querier_with_resolution(mint, maxt, 0)
    }
}

/// A [`BucketStore`] read at a fixed maximum resolution.
#[derive(Clone, Debug)]
pub struct ResolutionQueryable {
    store: BucketStore,
    max_resolution_ms: i64,
}

impl Queryable for ResolutionQueryable {
    fn querier(&self, mint: i64, maxt: i64) -> strata_tsdb::Result<Box<dyn Querier>> {
        self.store
            .querier_with_resolution(mint, maxt, self.max_resolution_ms)
    }
}

/// A querier over the store that picks its blocks per select, by the select's hints.
struct StoreQuerier {
    store: BucketStore,
    mint: i64,
    maxt: i64,
    max_resolution_ms: i64,
}

impl StoreQuerier {
    /// The coarsest resolution a select may read.
    fn max_res(&self, hints: Option<&SelectHints>) -> i64 {
        match hints {
            Some(h) if h.range > 0 => self.max_resolution_ms.min(h.range / 2),
            _ => self.max_resolution_ms,
        }
    }
}

impl Querier for StoreQuerier {
    fn select(&self, sorted: bool, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        self.store
            .block_queriers(self.mint, self.maxt, self.max_res(hints))
            .select(sorted, hints, matchers)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> strata_tsdb::Result<Vec<String>> {
        self.store
            .block_queriers(self.mint, self.maxt, self.max_resolution_ms)
            .label_values(name, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> strata_tsdb::Result<Vec<String>> {
        self.store
            .block_queriers(self.mint, self.maxt, self.max_resolution_ms)
            .label_names(matchers)
    }
}

/// What a block directory of the bucket holds at its top level.
struct DirListing {
    id: Ulid,
    files: BTreeSet<String>,
}

enum Loaded {
    Block(Box<BucketBlock>),
    Failed(String),
}

impl Inner {
    async fn sync(&self) -> StoreResult<SyncReport> {
        let _g = self.sync_mu.lock().await;
        let bucket = &self.io.bucket;
        let ids = layout::list_block_dirs(bucket).await?;
        let listings: Vec<DirListing> = futures::stream::iter(ids)
            .map(|id| async move {
                let prefix = Key::from(id.to_string());
                let res = bucket
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| StoreError::ObjectStore {
                        op: "list",
                        key: prefix.to_string(),
                        source: e,
                    })?;
                let files = res
                    .objects
                    .iter()
                    .filter_map(|o| o.location.filename().map(str::to_string))
                    .collect();
                Ok::<_, StoreError>(DirListing { id, files })
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;

        let mut report = SyncReport::default();
        let current = self.blocks.read().clone();
        let mut next: BTreeMap<Ulid, Arc<BucketBlock>> = BTreeMap::new();
        let mut to_load = Vec::new();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let delay = self.opts.consistency_delay.as_millis() as u64;
        for l in listings {
            if l.files.is_empty() {
                // Nothing at the top level: the empty directories a FILESYSTEM bucket keeps of
                // a deleted block (or an upload that has written only chunks so far).
                continue;
            } else if !l.files.contains(META_FILE) {
                report.partial.push(l.id);
            } else if l.files.contains(DELETION_MARK_FILE) {
                report.marked.push(l.id);
            } else if let Some(b) = current.get(&l.id) {
                next.insert(l.id, b.clone());
            } else if l.id.timestamp_ms().saturating_add(delay) > now_ms {
                report.too_recent.push(l.id);
            } else if !l.files.contains(INDEX_FILE) {
                report.partial.push(l.id);
            } else {
                to_load.push(l);
            }
        }
        let loaded: Vec<(Ulid, Loaded)> = futures::stream::iter(to_load)
            .map(|l| async move { (l.id, self.load_block(&l).await) })
            .buffer_unordered(4)
            .collect()
            .await;
        for (id, r) in loaded {
            match r {
                Loaded::Block(b) => {
                    report.loaded.push(id);
                    next.insert(id, Arc::from(b));
                }
                Loaded::Failed(why) => {
                    tracing::warn!(block = %id, error = %why, "cannot load bucket block");
                    report.failed.push((id, why));
                }
            }
        }
        report.loaded.sort();
        for id in current.keys() {
            if !next.contains_key(id) {
                report.dropped.push(*id);
                self.io.cache.remove_block(*id);
            }
        }
        report.active = next.len();
        *self.blocks.write() = next;
        self.clean_cache_dir();
        Ok(report)
    }

    /// Removes cached block directories of blocks no longer served.
    fn clean_cache_dir(&self) {
        let Ok(rd) = std::fs::read_dir(&self.cache_dir) else {
            return;
        };
        let keep: BTreeSet<Ulid> = self.blocks.read().keys().copied().collect();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(id) = Ulid::from_string(&name) {
                if !keep.contains(&id) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    async fn load_block(&self, l: &DirListing) -> Loaded {
        match self.try_load_block(l).await {
            Ok(b) => Loaded::Block(Box::new(b)),
            Err(e) => Loaded::Failed(e.to_string()),
        }
    }

    async fn try_load_block(&self, l: &DirListing) -> StoreResult<BucketBlock> {
        let bucket = &self.io.bucket;
        let id = l.id;
        let mut meta =
            layout::read_meta(bucket, &id)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("{id}/{META_FILE}"),
                    detail: "disappeared during sync".into(),
                })?;
        if let Some(t) = meta.thanos.as_mut() {
            if !t.labels.is_empty() && t.labels == self.opts.own_external_labels {
                t.labels.clear();
            }
        }
        let dir = self.cache_dir.join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Io {
            op: "create directory",
            path: dir.clone(),
            source: e,
        })?;
        let index_path = dir.join(INDEX_FILE);
        let index = match open_index(&index_path) {
            Some(ix) => ix,
            None => {
                let key = layout::block_key(&id, INDEX_FILE)?;
                let data = layout::get(bucket, &key).await?;
                self.io
                    .counters
                    .index_downloads
                    .fetch_add(1, Ordering::Relaxed);
                write_atomic(&index_path, &data)?;
                IndexReader::open_file(&index_path)?
            }
        };
        let tombstones = if l.files.contains(TOMBSTONES_FILENAME) {
            let key = layout::block_key(&id, TOMBSTONES_FILENAME)?;
            let data = layout::get(bucket, &key).await?;
            write_atomic(&dir.join(TOMBSTONES_FILENAME), &data)?;
            strata_tsdb::tombstones::read_file(&dir)?
        } else {
            Default::default()
        };
        let prefix = layout::block_key(&id, CHUNKS_DIR)?;
        let mut segs: Vec<(u64, Key, u64)> = bucket
            .list(Some(&prefix))
            .try_filter_map(|m| async move {
                let num = m
                    .location
                    .filename()
                    .filter(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok());
                Ok(num.map(|n| (n, m.location.clone(), m.size as u64)))
            })
            .try_collect()
            .await
            .map_err(|e| StoreError::ObjectStore {
                op: "list",
                key: prefix.to_string(),
                source: e,
            })?;
        segs.sort();
        let segments = segs.into_iter().map(|(_, k, s)| (k, s)).collect();
        Ok(BucketBlock::new(meta, index, tombstones, segments))
    }
}

/// Opens a cached index file, deleting it when it is damaged (it is downloaded again).
fn open_index(path: &Path) -> Option<IndexReader<memmap2::Mmap>> {
    if !path.exists() {
        return None;
    }
    match IndexReader::open_file(path) {
        Ok(ix) => Some(ix),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cached index unusable; downloading it again");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> StoreResult<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| StoreError::Io {
        op: "write",
        path: tmp.clone(),
        source: e,
    })?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::Io {
        op: "rename",
        path: tmp,
        source: e,
    })
}
