//! Persisted blocks: a directory `<ULID>/` holding `meta.json`, `index`, `chunks/000001…` and
//! `tombstones`, in Prometheus's formats. [`Block`] opens one over memory-mapped files and
//! serves queries; [`write_block`] writes one into a temporary directory and renames it into
//! place, so a block is either complete or absent. Once written, a block never changes (except
//! its `tombstones`, replaced atomically by deletions).

pub mod meta;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;
use ulid::Ulid;

use crate::chunkenc::{Encoding, XorIterator};
use crate::chunks::{ChunkReader, ChunkWriter};
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexReader, IndexWriter};
use crate::labels::{Label, Labels, Matcher};
use crate::postings::{postings_for_matchers, PostingsIndex};
use crate::storage::chain::ChainIterator;
use crate::storage::{BoundedIterator, Querier, SampleIterator, SelectHints, Series, SeriesSet};
use crate::tombstones::{Intervals, Tombstones};
pub use meta::{BlockMeta, BlockStats};

/// An open, immutable block.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader<memmap2::Mmap>,
    chunks: ChunkReader,
    tombstones: Tombstones,
    size: u64,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({})", self.dir.display())
    }
}

fn block_err(dir: &Path, e: Error) -> Error {
    let ulid = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match e {
        Error::Block { .. } => e,
        other => Error::Block {
            ulid,
            detail: other.to_string(),
        },
    }
}

impl Block {
    /// Opens the block in `dir`, validating its meta.json, index header and tables, and chunk
    /// segment headers. Errors name the block and what is wrong.
    pub fn open(dir: &Path) -> Result<Arc<Block>> {
        Self::open_inner(dir).map_err(|e| block_err(dir, e))
    }

    fn open_inner(dir: &Path) -> Result<Arc<Block>> {
        let meta = meta::read_meta(dir)?;
        let index = IndexReader::open_file(dir.join("index"))?;
        verify_series_section(&index)?;
        let chunks = ChunkReader::open(dir.join("chunks"))?;
        let tombstones = crate::tombstones::read_file(dir)?;
        let size = dir_size(dir);
        Ok(Arc::new(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones,
            size,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }
    pub fn ulid(&self) -> Ulid {
        self.meta.ulid
    }
    pub fn min_time(&self) -> i64 {
        self.meta.min_time
    }
    /// Exclusive upper bound of the block's time range.
    pub fn max_time(&self) -> i64 {
        self.meta.max_time
    }
    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn index(&self) -> &IndexReader<memmap2::Mmap> {
        &self.index
    }
    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Does the block's range `[min_time, max_time)` overlap `[mint, maxt]`?
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && mint < self.meta.max_time
    }

    /// The bytes of chunk `r`, copied out of the mmapped segment (CRC verified).
    pub fn chunk_bytes(&self, r: u64) -> Result<(Encoding, Arc<[u8]>)> {
        let (enc, data) = self.chunks.chunk(r)?;
        Ok((enc, Arc::from(data)))
    }

    /// A querier over `[mint, maxt]`.
    pub fn querier(self: &Arc<Self>, mint: i64, maxt: i64) -> BlockQuerier {
        BlockQuerier {
            block: self.clone(),
            mint,
            maxt,
        }
    }

    /// All series of the block with their chunk metas, in label order (compaction, dump).
    pub fn series_iter(
        self: &Arc<Self>,
        ids: RoaringBitmap,
    ) -> impl Iterator<Item = Result<(u32, Labels, Vec<ChunkMeta>)>> + Send {
        let b = self.clone();
        ids.into_iter()
            .map(move |id| b.index.series_labels(id).map(|(l, c)| (id, l, c)))
    }
}

/// Checks the CRC of every entry of the index's series section (one sequential pass, no
/// decoding), so that a block whose series are damaged is reported broken when it is opened
/// (and left alone) rather than failing queries and compactions later. Returns the number of
/// series entries.
fn verify_series_section(ix: &IndexReader<memmap2::Mmap>) -> Result<u64> {
    let b = ix.bytes();
    let toc = ix.toc();
    let toc_off = b.len().saturating_sub(crate::index::TOC_LEN);
    let start = toc.series as usize;
    if start == 0 {
        return Ok(0);
    }
    // The series section ends where the next section starts.
    let end = [
        toc.label_indices,
        toc.label_indices_table,
        toc.postings,
        toc.postings_table,
    ]
    .into_iter()
    .map(|o| o as usize)
    .filter(|&o| o >= start)
    .min()
    .unwrap_or(toc_off)
    .min(toc_off);
    let align = crate::index::SERIES_ALIGNMENT as usize;
    let corrupt = |off: usize, d: String| Error::corrupt("index", ix.path(), off as u64, d);
    let mut off = start;
    let mut n = 0u64;
    loop {
        off = off.div_ceil(align) * align;
        if off >= end {
            return Ok(n);
        }
        let (len, w) = crate::encoding::uvarint(&b[off..end])
            .ok_or_else(|| corrupt(off, "series entry: bad length varint".into()))?;
        let body_start = off + w;
        let body_end = usize::try_from(len)
            .ok()
            .and_then(|l| body_start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|x| x <= end))
            .ok_or_else(|| {
                corrupt(
                    off,
                    format!("series entry of {len} bytes runs past the series section"),
                )
            })?;
        let c = &b[body_end..body_end + 4];
        if crate::encoding::crc32(&b[body_start..body_end])
            != u32::from_be_bytes([c[0], c[1], c[2], c[3]])
        {
            return Err(corrupt(
                off,
                format!("series {} checksum mismatch", off / align),
            ));
        }
        n += 1;
        off = body_end + 4;
    }
}

/// Total size of the regular files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

struct BlockIndex<'a>(&'a IndexReader<memmap2::Mmap>);

impl PostingsIndex for BlockIndex<'_> {
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

impl Block {
    /// Series IDs matching all matchers.
    pub fn postings_for_matchers(&self, ms: &[Matcher]) -> Result<RoaringBitmap> {
        postings_for_matchers(&BlockIndex(&self.index), ms)
    }
}

/// A querier over one block.
pub struct BlockQuerier {
    block: Arc<Block>,
    mint: i64,
    maxt: i64,
}

impl Querier for BlockQuerier {
    fn select(&self, _sorted: bool, _h: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        let ids = match self.block.postings_for_matchers(matchers) {
            Ok(ids) => ids,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let block = self.block.clone();
        let (mint, maxt) = (self.mint, self.maxt);
        let mut lbuf: Vec<Label> = Vec::new();
        Box::new(ids.into_iter().filter_map(move |id| {
            let mut chunks = Vec::new();
            if let Err(e) = block.index.series(id, &mut lbuf, &mut chunks) {
                return Some(Err(e));
            }
            let deleted = block.tombstones.get(id as u64).cloned();
            chunks.retain(|c| {
                c.max_time >= mint
                    && c.min_time <= maxt
                    && !deleted
                        .as_ref()
                        .is_some_and(|d| d.covers(c.min_time, c.max_time))
            });
            if chunks.is_empty() {
                return None;
            }
            Some(Ok(Box::new(BlockSeries {
                labels: Labels::from_sorted(std::mem::take(&mut lbuf)),
                chunks: Arc::new(chunks),
                block: block.clone(),
                deleted,
                mint,
                maxt,
            }) as Box<dyn Series>))
        }))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        if matchers.is_empty() {
            return self.block.index.label_values(name);
        }
        let ids = self.block.postings_for_matchers(matchers)?;
        let mut out = BTreeSet::new();
        let (mut l, mut c) = (Vec::new(), Vec::new());
        for id in ids {
            self.block.index.series(id, &mut l, &mut c)?;
            if let Some(v) = l.iter().find(|x| &*x.name == name) {
                out.insert(v.value.to_string());
            }
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        if matchers.is_empty() {
            let mut v: Vec<String> = self
                .block
                .index
                .label_names()
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect();
            v.sort_unstable();
            return Ok(v);
        }
        let ids = self.block.postings_for_matchers(matchers)?;
        let mut out = BTreeSet::new();
        let (mut l, mut c) = (Vec::new(), Vec::new());
        for id in ids {
            self.block.index.series(id, &mut l, &mut c)?;
            for x in &l {
                out.insert(x.name.to_string());
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// A block series within a time range; chunks are loaded lazily as the iterator reaches them.
pub struct BlockSeries {
    labels: Labels,
    chunks: Arc<Vec<ChunkMeta>>,
    block: Arc<Block>,
    deleted: Option<Intervals>,
    mint: i64,
    maxt: i64,
}

impl Series for BlockSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator> {
        let ranges = self
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time))
            .collect();
        let chunks = self.chunks.clone();
        let block = self.block.clone();
        let chain = ChainIterator::new(
            ranges,
            Box::new(move |i| {
                let (enc, bytes) = block.chunk_bytes(chunks[i].chunk_ref)?;
                crate::chunkenc::require_decodable(enc)?;
                Ok(Box::new(XorIterator::new(bytes)) as Box<dyn SampleIterator>)
            }),
        );
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

/// Hides samples inside deleted intervals (tombstones).
pub struct DeletedFilter<I> {
    pub inner: I,
    pub deleted: Intervals,
}

impl<I: SampleIterator> SampleIterator for DeletedFilter<I> {
    fn next(&mut self) -> bool {
        while self.inner.next() {
            if !self.deleted.contains(self.inner.at().0) {
                return true;
            }
        }
        false
    }
    fn seek(&mut self, t: i64) -> bool {
        if !self.inner.seek(t) {
            return false;
        }
        if !self.deleted.contains(self.inner.at().0) {
            return true;
        }
        self.next()
    }
    fn at(&self) -> (i64, f64) {
        self.inner.at()
    }
    fn err(&self) -> Option<String> {
        self.inner.err()
    }
}

/// One chunk to write into a new block.
#[derive(Clone, Debug)]
pub struct ChunkToWrite {
    pub mint: i64,
    pub maxt: i64,
    pub encoding: Encoding,
    pub num_samples: u64,
    pub data: Arc<[u8]>,
}

/// One series to write into a new block.
pub struct SeriesToWrite {
    pub labels: Labels,
    pub chunks: Vec<ChunkToWrite>,
}

/// Writes a block into `parent/<ulid>` from series given in label order. `symbols` must hold
/// every label name and value used (extra ones are allowed). The block is assembled in
/// `parent/<ulid>.tmp-for-creation` and renamed into place only when complete. Returns the
/// written meta, or `None` when no series had chunks (no block is written, as Prometheus).
pub fn write_block(
    parent: &Path,
    mut meta: BlockMeta,
    symbols: &BTreeSet<Arc<str>>,
    series: &mut dyn Iterator<Item = Result<SeriesToWrite>>,
) -> Result<Option<BlockMeta>> {
    let name = meta.ulid.to_string();
    let tmp = parent.join(format!("{name}.tmp-for-creation"));
    let dst = parent.join(&name);
    let res = write_block_into(&tmp, &mut meta, symbols, series);
    match res {
        Ok(true) => {
            std::fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))?;
            sync_dir(parent)?;
            Ok(Some(meta))
        }
        Ok(false) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(None)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_block_into(
    tmp: &Path,
    meta: &mut BlockMeta,
    symbols: &BTreeSet<Arc<str>>,
    series: &mut dyn Iterator<Item = Result<SeriesToWrite>>,
) -> Result<bool> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io("remove", tmp, e))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| Error::io("create", tmp, e))?;
    let mut cw = ChunkWriter::new(tmp.join("chunks"))?;
    let mut iw = IndexWriter::create(tmp.join("index"))?;
    iw.add_symbols(symbols.iter().map(|s| &**s))?;
    let mut stats = BlockStats::default();
    let mut metas = Vec::new();
    for s in series {
        let s = s?;
        if s.chunks.is_empty() {
            continue;
        }
        metas.clear();
        for c in &s.chunks {
            let r = cw.write_chunk(c.encoding, &c.data)?;
            metas.push(ChunkMeta {
                min_time: c.mint,
                max_time: c.maxt,
                chunk_ref: r,
            });
            stats.num_chunks += 1;
            stats.num_samples += c.num_samples;
        }
        iw.add_series(&s.labels, &metas)?;
        stats.num_series += 1;
    }
    cw.close()?;
    iw.close()?;
    if stats.num_series == 0 {
        return Ok(false);
    }
    crate::tombstones::write_file(tmp, &Tombstones::default())?;
    meta.stats = stats;
    meta::write_meta(tmp, meta)?;
    sync_dir(tmp)?;
    Ok(true)
}

/// fsyncs a directory so renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", dir, e))
}
