//! The bucket store's I/O context: the bucket, a small tokio runtime of its own that runs
//! every object-storage call, the chunk cache, and request counters.
//!
//! The query path ([`strata_tsdb::storage::Querier`]) is synchronous. Its object-storage calls
//! are spawned on this runtime and the calling thread waits for the answer on a channel. This
//! works from any thread that may block: a plain thread, or a `spawn_blocking` thread (where
//! the HTTP API runs queries). Called from an async task it would block that task's worker
//! for the duration of the GETs (still correct, but do not do that on a current-thread
//! runtime's only worker). Owning the runtime also keeps the object store's connection pools
//! on one runtime whose lifetime is the store's.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as Key;
use strata_compactor::bucket::Bucket;
use strata_tsdb::chunks::unpack_chunk_ref;
use strata_tsdb::Error;
use ulid::Ulid;

use super::cache::ChunkCache;
use super::fetch::{cut_chunk, plan_ranges, Cut};

/// A runtime owned by the store, shut down without blocking when dropped.
pub struct IoRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl IoRuntime {
    pub fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-bucket-io")
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.as_ref().map(|r| r.handle())
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Never blocks, so it is safe from async code and from the runtime's own workers.
            rt.shutdown_background();
        }
    }
}

/// Request counters (also what tests assert on).
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Ranged GETs of chunk segment objects.
    pub chunk_gets: AtomicU64,
    /// Bytes received by those GETs.
    pub chunk_bytes: AtomicU64,
    /// GETs that re-fetched a chunk longer than estimated.
    pub chunk_refetches: AtomicU64,
    /// Index files downloaded.
    pub index_downloads: AtomicU64,
}

/// What block queriers share.
pub struct Io {
    pub bucket: Bucket,
    pub rt: IoRuntime,
    pub cache: ChunkCache,
    /// Wanted chunks closer than this many bytes are fetched by one GET.
    pub gap: u64,
    /// How many GETs run at once for one fetch.
    pub concurrency: usize,
    pub counters: IoCounters,
}

/// What a block must tell the fetcher: its ID and its chunk segment objects (key, size), in
/// segment order (index 0 is `chunks/000001`).
pub trait ChunkSource {
    fn id(&self) -> Ulid;
    fn segments(&self) -> &[(Key, u64)];
}

impl Io {
    /// Runs `f` on the store's runtime and waits for it (see the module doc).
    pub fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let h = self
            .rt
            .handle()
            .ok_or_else(|| Error::Invalid("bucket store is shut down".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        h.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| Error::Invalid("bucket store I/O task was cancelled".into()))
    }

    /// The bytes (encoding byte + data) of the chunks `refs` of `block`, from the cache or by
    /// ranged GETs of the chunk segment objects, nearby chunks merged into one GET. Each ref
    /// may come with a bound of where the chunk ends (the next chunk's ref of its series).
    pub fn fetch_chunks(
        &self,
        block: &dyn ChunkSource,
        refs: &[(u64, Option<u64>)],
    ) -> Result<HashMap<u64, Bytes>, Error> {
        let id = block.id();
        let segs = block.segments();
        let mut out: HashMap<u64, Bytes> = HashMap::with_capacity(refs.len());
        let mut by_seg: BTreeMap<u32, Vec<(u64, Option<u64>)>> = BTreeMap::new();
        for &(r, next) in refs {
            if out.contains_key(&r) {
                continue;
            }
            if let Some(b) = self.cache.get(id, r) {
                out.insert(r, b);
                continue;
            }
            let (s, o) = unpack_chunk_ref(r);
            let hint = next
                .map(unpack_chunk_ref)
                .filter(|(ns, _)| *ns == s)
                .map(|(_, no)| no as u64);
            by_seg.entry(s).or_default().push((o as u64, hint));
        }
        if by_seg.is_empty() {
            return Ok(out);
        }
        let block_err = |detail: String| Error::Block {
            ulid: id.to_string(),
            detail,
        };
        // Plan: (segment, key, range, offsets).
        let mut jobs: Vec<(u32, Key, Range<u64>, Vec<u64>)> = Vec::new();
        for (s, offs) in by_seg {
            let (key, size) = segs.get(s as usize).ok_or_else(|| {
                block_err(format!(
                    "chunk reference into segment index {s}, but the block has {} chunk files",
                    segs.len()
                ))
            })?;
            for p in plan_ranges(&offs, *size, self.gap) {
                jobs.push((s, key.clone(), p.range, p.offsets));
            }
        }
        let ranges: Vec<(Key, Range<u64>)> = jobs
            .iter()
            .map(|(_, k, r, _)| (k.clone(), r.clone()))
            .collect();
        let fetched = self.get_ranges(ranges)?;
        let mut short: Vec<(u32, Key, u64, u64)> = Vec::new();
        for ((s, key, range, offsets), res) in jobs.into_iter().zip(fetched) {
            let buf = res.map_err(|e| block_err(format!("get {key} bytes {range:?}: {e}")))?;
            for off in offsets {
                match cut_chunk(&buf, range.start, off, key.as_ref())? {
                    Cut::Chunk(b) => {
                        let b = Bytes::copy_from_slice(&b);
                        let r = strata_tsdb::chunks::new_chunk_ref(s, off as u32);
                        self.cache.insert(id, r, b.clone());
                        out.insert(r, b);
                    }
                    Cut::Short { len } => short.push((s, key.clone(), off, len)),
                }
            }
        }
        if !short.is_empty() {
            self.counters
                .chunk_refetches
                .fetch_add(short.len() as u64, Ordering::Relaxed);
            let ranges = short
                .iter()
                .map(|(s, k, off, len)| {
                    let size = segs.get(*s as usize).map(|x| x.1).unwrap_or(0);
                    (k.clone(), *off..(off + len).min(size))
                })
                .collect::<Vec<_>>();
            let fetched = self.get_ranges(ranges.clone())?;
            for ((s, key, off, _), (res, (_, range))) in
                short.into_iter().zip(fetched.into_iter().zip(ranges))
            {
                let buf = res.map_err(|e| block_err(format!("get {key} bytes {range:?}: {e}")))?;
                match cut_chunk(&buf, off, off, key.as_ref())? {
                    Cut::Chunk(b) => {
                        let r = strata_tsdb::chunks::new_chunk_ref(s, off as u32);
                        self.cache.insert(id, r, b.clone());
                        out.insert(r, b);
                    }
                    Cut::Short { .. } => {
                        return Err(Error::corrupt(
                            "chunk",
                            key.as_ref(),
                            off,
                            "chunk runs past the end of the segment object",
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Issues the ranged GETs concurrently; results in input order.
    fn get_ranges(
        &self,
        ranges: Vec<(Key, Range<u64>)>,
    ) -> Result<Vec<Result<Bytes, object_store::Error>>, Error> {
        let n = ranges.len() as u64;
        let bucket = self.bucket.clone();
        let conc = self.concurrency.max(1);
        let res = self.run(async move {
            futures::stream::iter(ranges)
                .map(|(k, r)| {
                    let b = bucket.clone();
                    async move { b.get_range(&k, r.start as usize..r.end as usize).await }
                })
                .buffered(conc)
                .collect::<Vec<_>>()
                .await
        })?;
        self.counters.chunk_gets.fetch_add(n, Ordering::Relaxed);
        let bytes: u64 = res
            .iter()
            .map(|r| r.as_ref().map(|b| b.len() as u64).unwrap_or(0))
            .sum();
        self.counters
            .chunk_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(res)
    }
}
