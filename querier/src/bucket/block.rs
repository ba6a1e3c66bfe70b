//! One block in the bucket as the store sees it: its meta, its index file (downloaded once
//! into the cache directory and memory-mapped; parsed by the same [`IndexReader`] as local
//! blocks), its tombstones, and the list of its chunk segment objects. A querier over it finds
//! series in the local index and fetches only the chunks it needs, in batches of series so
//! that nearby chunks share one ranged GET.
//!
//! The block's external labels (`thanos.labels` in meta.json) are added to every series, as
//! Thanos's store gateway does; matchers on them are decided once per block.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as Key;
use roaring::RoaringBitmap;
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::block::DeletedFilter;
use strata_tsdb::chunkenc::{Encoding, XorIterator};
use strata_tsdb::index::{ChunkMeta, IndexReader};
use strata_tsdb::labels::{Label, Labels, Matcher};
use strata_tsdb::postings::{postings_for_matchers, PostingsIndex};
use strata_tsdb::storage::chain::ChainIterator;
use strata_tsdb::storage::{
    BoundedIterator, Querier, SampleIterator, SelectHints, Series, SeriesSet, VecIterator,
};
use strata_tsdb::tombstones::{Intervals, Tombstones};
use strata_tsdb::{Error, Result};
use ulid::Ulid;

use super::aggr::{decode_series, AggrRead};
use super::io::{ChunkSource, Io};

/// Series fetched per batch (their chunks are requested together).
const SERIES_BATCH: usize = 256;

/// The encoding byte of Thanos's downsampled aggregate chunks (`downsample.ChunkEncAggr`).
pub const AGGR_CHUNK_ENCODING: u8 = 0xff;

/// A block of the bucket, ready to query.
pub struct BucketBlock {
    pub meta: BlockMeta,
    pub index: IndexReader<memmap2::Mmap>,
    pub tombstones: Tombstones,
    /// Chunk segment objects `(key, size)` in segment order.
    pub segments: Vec<(Key, u64)>,
    /// External labels, sorted by name.
    pub ext_labels: Vec<(String, String)>,
}

impl std::fmt::Debug for BucketBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketBlock")
            .field("ulid", &self.meta.ulid)
            .field("min_time", &self.meta.min_time)
            .field("max_time", &self.meta.max_time)
            .field("resolution", &self.resolution())
            .finish()
    }
}

impl ChunkSource for BucketBlock {
    fn id(&self) -> Ulid {
        self.meta.ulid
    }
    fn segments(&self) -> &[(Key, u64)] {
        &self.segments
    }
}

impl BucketBlock {
    pub fn new(
        meta: BlockMeta,
        index: IndexReader<memmap2::Mmap>,
        tombstones: Tombstones,
        segments: Vec<(Key, u64)>,
    ) -> Self {
        let ext_labels = meta
            .thanos
            .as_ref()
            .map(|t| {
                t.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            meta,
            index,
            tombstones,
            segments,
            ext_labels,
        }
    }

    /// Downsampling resolution in ms (0 = raw).
    pub fn resolution(&self) -> i64 {
        self.meta
            .thanos
            .as_ref()
            .map(|t| t.downsample.resolution)
            .unwrap_or(0)
    }

    /// Does `[min_time, max_time)` overlap `[mint, maxt]`?
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && mint < self.meta.max_time
    }

    /// Splits matchers into those for the index, or `None` when a matcher on an external
    /// label rejects the whole block.
    fn index_matchers<'a>(&self, ms: &'a [Matcher]) -> Option<Vec<&'a Matcher>> {
        let mut out = Vec::with_capacity(ms.len());
        for m in ms {
            match self.ext_labels.iter().find(|(n, _)| *n == m.name) {
                Some((_, v)) if !m.matches(v) => return None,
                Some(_) => {}
                None => out.push(m),
            }
        }
        Some(out)
    }

    fn postings(&self, ms: &[Matcher]) -> Result<RoaringBitmap> {
        let Some(ms) = self.index_matchers(ms) else {
            return Ok(RoaringBitmap::new());
        };
        let ms: Vec<Matcher> = ms.into_iter().cloned().collect();
        postings_for_matchers(&IndexPostings(&self.index), &ms)
    }

    /// Series labels with the external labels added (a series' own label wins).
    fn with_ext(&self, mut ls: Vec<Label>) -> Labels {
        if self.ext_labels.is_empty() {
            return Labels::from_sorted(ls);
        }
        for (n, v) in &self.ext_labels {
            if !ls.iter().any(|l| &*l.name == n) {
                ls.push(Label::new(n.as_str(), v.as_str()));
            }
        }
        Labels::new(ls)
    }
}

struct IndexPostings<'a>(&'a IndexReader<memmap2::Mmap>);

impl PostingsIndex for IndexPostings<'_> {
    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        self.0.postings(name, value)
    }
    fn postings_matching(&self, name: &str, f: &dyn Fn(&str) -> bool) -> Result<RoaringBitmap> {
        self.0.postings_for_label_matching(name, f)
    }
    fn all_postings(&self) -> Result<RoaringBitmap> {
        self.0.all_postings()
    }
}

/// A querier over one bucket block and `[mint, maxt]`.
pub struct BucketBlockQuerier {
    pub(crate) io: Arc<Io>,
    pub(crate) block: Arc<BucketBlock>,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
}

/// A matching series before its chunks are fetched.
struct Pending {
    labels: Labels,
    /// The chunks to read, each with the ref of the series' next chunk (bounds its end).
    chunks: Vec<(ChunkMeta, Option<u64>)>,
    deleted: Option<Intervals>,
}

impl BucketBlockQuerier {
    fn pending(&self, matchers: &[Matcher]) -> Result<VecDeque<Pending>> {
        let b = &self.block;
        let ids = b.postings(matchers)?;
        let (mint, maxt) = (self.mint, self.maxt);
        let mut out = Vec::new();
        let mut lbuf: Vec<Label> = Vec::new();
        for id in ids {
            let mut chunks = Vec::new();
            b.index.series(id, &mut lbuf, &mut chunks)?;
            let deleted = b.tombstones.get(id as u64).cloned();
            let chunks: Vec<(ChunkMeta, Option<u64>)> = chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.max_time >= mint
                        && c.min_time <= maxt
                        && !deleted
                            .as_ref()
                            .is_some_and(|d| d.covers(c.min_time, c.max_time))
                })
                .map(|(i, c)| (*c, chunks.get(i + 1).map(|n| n.chunk_ref)))
                .collect();
            if chunks.is_empty() {
                continue;
            }
            out.push(Pending {
                labels: b.with_ext(std::mem::take(&mut lbuf)),
                chunks,
                deleted,
            });
        }
        if !b.ext_labels.is_empty() {
            // Adding labels can reorder series whose own labels collide with them.
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out.into())
    }

    fn matching_series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        let ids = self.block.postings(matchers)?;
        let (mut l, mut c) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        for id in ids {
            self.block.index.series(id, &mut l, &mut c)?;
            out.push(self.block.with_ext(std::mem::take(&mut l)));
        }
        Ok(out)
    }
}

impl Querier for BucketBlockQuerier {
    fn select(&self, _sorted: bool, h: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        let read = (self.block.resolution() > 0)
            .then(|| AggrRead::for_func(h.and_then(|h| h.func.as_deref())));
        match self.pending(matchers) {
            Ok(pending) => Box::new(BatchedSeriesSet {
                io: self.io.clone(),
                block: self.block.clone(),
                read,
                pending,
                ready: VecDeque::new(),
                mint: self.mint,
                maxt: self.maxt,
            }),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let b = &self.block;
        if matchers.is_empty() {
            if let Some((_, v)) = b.ext_labels.iter().find(|(n, _)| n == name) {
                return Ok(vec![v.clone()]);
            }
            return b.index.label_values(name);
        }
        let mut out = BTreeSet::new();
        for l in self.matching_series_labels(matchers)? {
            if let Some(v) = l.get(name) {
                out.insert(v.to_string());
            }
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let b = &self.block;
        let mut out = BTreeSet::new();
        if matchers.is_empty() {
            out.extend(b.index.label_names().into_iter().filter(|n| !n.is_empty()));
            out.extend(b.ext_labels.iter().map(|(n, _)| n.clone()));
        } else {
            for l in self.matching_series_labels(matchers)? {
                out.extend(l.iter().map(|x| x.name.to_string()));
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// Yields series in label order, fetching the chunks of [`SERIES_BATCH`] series at a time.
struct BatchedSeriesSet {
    io: Arc<Io>,
    block: Arc<BucketBlock>,
    /// How a downsampled block's aggregates are read; `None` for raw blocks.
    read: Option<AggrRead>,
    pending: VecDeque<Pending>,
    ready: VecDeque<Box<dyn Series>>,
    mint: i64,
    maxt: i64,
}

impl BatchedSeriesSet {
    fn fill(&mut self) -> Result<()> {
        let n = self.pending.len().min(SERIES_BATCH);
        let batch: Vec<Pending> = self.pending.drain(..n).collect();
        let refs: Vec<(u64, Option<u64>)> = batch
            .iter()
            .flat_map(|p| p.chunks.iter().map(|(c, next)| (c.chunk_ref, *next)))
            .collect();
        let mut got = self.io.fetch_chunks(&*self.block, &refs)?;
        for p in batch {
            let mut chunks = Vec::with_capacity(p.chunks.len());
            for (c, _) in &p.chunks {
                let b = got.get(&c.chunk_ref).cloned().ok_or_else(|| Error::Block {
                    ulid: self.block.meta.ulid.to_string(),
                    detail: format!("chunk {:#x} was not fetched", c.chunk_ref),
                })?;
                chunks.push((c.min_time, c.max_time, b));
            }
            self.ready.push_back(Box::new(BucketSeries {
                labels: p.labels,
                chunks: Arc::new(chunks),
                read: self.read,
                deleted: p.deleted,
                mint: self.mint,
                maxt: self.maxt,
            }));
        }
        got.clear();
        Ok(())
    }
}

impl Iterator for BatchedSeriesSet {
    type Item = Result<Box<dyn Series>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() && !self.pending.is_empty() {
            if let Err(e) = self.fill() {
                self.pending.clear();
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// A series of a bucket block whose chunk bytes are in memory.
pub struct BucketSeries {
    labels: Labels,
    /// `(mint, maxt, encoding byte + data)` per chunk, in time order.
    chunks: Arc<Vec<(i64, i64, Bytes)>>,
    /// Set for a downsampled block: the aggregate its samples stand for.
    read: Option<AggrRead>,
    deleted: Option<Intervals>,
    mint: i64,
    maxt: i64,
}

impl Series for BucketSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator> {
        let chain: Box<dyn SampleIterator> = match self.read {
            Some(read) => {
                let bytes: Vec<&Bytes> = self.chunks.iter().map(|c| &c.2).collect();
                match decode_series(&bytes, read) {
                    Ok(v) => Box::new(VecIterator::new(Arc::new(v))),
                    Err(e) => Box::new(FailedIterator(e.to_string())),
                }
            }
            None => {
                let ranges = self.chunks.iter().map(|c| (c.0, c.1)).collect();
                let chunks = self.chunks.clone();
                Box::new(ChainIterator::new(
                    ranges,
                    Box::new(move |i| {
                        let b = &chunks[i].2;
                        let Some(&enc) = b.first() else {
                            return Err(Error::InvalidChunk("empty chunk".into()));
                        };
                        let enc = strata_tsdb::chunkenc::check_encoding(enc)?;
                        strata_tsdb::chunkenc::require_decodable(enc)?;
                        debug_assert_eq!(enc, Encoding::Xor);
                        Ok(Box::new(XorIterator::new(b.slice(1..))) as Box<dyn SampleIterator>)
                    }),
                ))
            }
        };
        let bounded = BoundedIterator::new(chain, self.mint, self.maxt);
        match &self.deleted {
            Some(d) => Box::new(DeletedFilter {
                inner: bounded,
                deleted: d.clone(),
            }),
            None => Box::new(bounded),
        }
    }
}

/// A series whose chunks could not be decoded: no samples, and the error.
struct FailedIterator(String);

impl SampleIterator for FailedIterator {
    fn next(&mut self) -> bool {
        false
    }
    fn seek(&mut self, _t: i64) -> bool {
        false
    }
    fn at(&self) -> (i64, f64) {
        (0, 0.0)
    }
    fn err(&self) -> Option<String> {
        Some(self.0.clone())
    }
}
