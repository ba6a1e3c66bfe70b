//! Thanos downsampling: raw data → 5-minute aggregates → 1-hour aggregates, in Thanos's
//! aggregate chunk format so that Strata and Thanos buckets interchange.
//!
//! # The aggregate chunk (`ChunkEncAggr`, encoding byte 0xff)
//!
//! An aggregate chunk is stored in an ordinary chunk segment under encoding byte `0xff`. Its
//! data is five entries in the order count, sum, min, max, counter; each entry is
//! `uvarint(len) | encoding byte | len bytes of chunk data` for a present aggregate, or a single
//! `uvarint(0)` for an absent one. Every present sub-chunk is an XOR chunk whose samples sit at
//! the last millisecond of each window (`t - t % res + res - 1`, clamped to the last input
//! sample of the batch).
//!
//! # Aggregates
//!
//! * count: raw samples in the window (for 1h data: the sum of the 5m counts);
//! * sum, min, max: of the raw values in the window;
//! * counter: a monotonic counter with resets removed. Its first sample is the batch's first raw
//!   value at its own timestamp, then one sample per window (the running total since the first
//!   raw value, resets added back), and a final sample repeating the last window's timestamp
//!   whose value is the last *raw* value. [`CounterResets`] turns a sequence of such chunks back
//!   into a monotonic series (Thanos's `ApplyCounterResetsSeriesIterator`): the duplicated
//!   timestamp tells it the true last value so that a reset between two chunks is detected.
//!
//! Queries use `sum / count` for `avg_over_time`, `min`/`max` for `min_over_time`/
//! `max_over_time`, `count` for `count_over_time`, `sum` for `sum_over_time`, and the counter
//! series (through [`CounterResets`]) for `rate`, `increase` and friends.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::block::{write_block, Block, ChunkToWrite, SeriesToWrite};
use strata_tsdb::chunkenc::{decode_xor, Encoding, XorChunk};
use strata_tsdb::storage::is_stale_nan;
use ulid::Ulid;

use crate::error::{Error, Result};

/// Raw data.
pub const RES_RAW: i64 = 0;
/// Five minutes, in milliseconds.
pub const RES_5M: i64 = 5 * 60 * 1000;
/// One hour, in milliseconds.
pub const RES_1H: i64 = 60 * 60 * 1000;
/// Raw blocks spanning at least this long are downsampled to 5m (40h).
pub const DOWNSAMPLE_RANGE_5M: i64 = 40 * 3_600_000;
/// 5m blocks spanning at least this long are downsampled to 1h (10d).
pub const DOWNSAMPLE_RANGE_1H: i64 = 10 * 24 * 3_600_000;
/// The chunk encoding byte of aggregate chunks (Thanos's `ChunkEncAggr`).
pub const CHUNK_ENC_AGGR: u8 = 0xff;

/// One of the five aggregates of an [`AggrChunk`], numbered as Thanos numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    /// All aggregates in storage order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

/// An aggregate chunk: the data of a chunk stored with encoding [`CHUNK_ENC_AGGR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggrChunk {
    data: Arc<[u8]>,
}

impl AggrChunk {
    /// Wraps the data of a chunk read from a block (the bytes after the encoding byte).
    /// Nothing is validated until a sub-chunk is requested.
    pub fn new(data: impl Into<Arc<[u8]>>) -> Self {
        AggrChunk { data: data.into() }
    }

    /// Encodes the sub-chunks, indexed by [`AggrType`] (`None` = absent).
    pub fn encode(parts: &[Option<XorChunk>; 5]) -> Self {
        let mut b = Vec::new();
        for p in parts {
            match p {
                None => put_uvarint(&mut b, 0),
                Some(c) => {
                    put_uvarint(&mut b, c.bytes().len() as u64);
                    b.push(Encoding::Xor.as_u8());
                    b.extend_from_slice(c.bytes());
                }
            }
        }
        AggrChunk { data: b.into() }
    }

    /// The encoded bytes (without the outer encoding byte).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The shared encoded bytes.
    pub fn data(&self) -> Arc<[u8]> {
        self.data.clone()
    }

    /// The raw sub-chunk of aggregate `t`: its encoding byte and data; `Ok(None)` when absent.
    pub fn get_raw(&self, t: AggrType) -> Result<Option<(u8, &[u8])>> {
        let mut b: &[u8] = &self.data;
        let mut off = 0usize;
        for i in 0..=(t as u8) {
            let (l, n) = uvarint(b).ok_or_else(|| self.corrupt(off, "bad sub-chunk length"))?;
            b = &b[n..];
            off += n;
            if l == 0 {
                if i == t as u8 {
                    return Ok(None);
                }
                continue;
            }
            let end = usize::try_from(l)
                .ok()
                .and_then(|l| l.checked_add(1))
                .filter(|&e| e <= b.len())
                .ok_or_else(|| {
                    self.corrupt(
                        off,
                        &format!("sub-chunk of {l} bytes exceeds the {} left", b.len()),
                    )
                })?;
            if i == t as u8 {
                return Ok(Some((b[0], &b[1..end])));
            }
            b = &b[end..];
            off += end;
        }
        Ok(None)
    }

    /// The XOR sub-chunk of aggregate `t`; `Ok(None)` when absent, an error when corrupt or of
    /// another encoding.
    pub fn get(&self, t: AggrType) -> Result<Option<XorChunk>> {
        match self.get_raw(t)? {
            None => Ok(None),
            Some((enc, data)) if enc == Encoding::Xor.as_u8() => {
                Ok(Some(XorChunk::from_bytes(data.to_vec())?))
            }
            Some((enc, _)) => Err(Error::Invalid {
                what: "aggregate chunk",
                value: t.name().into(),
                detail: format!("sub-chunk encoding {enc}, expected XOR"),
            }),
        }
    }

    /// The samples of aggregate `t` (empty when absent).
    pub fn samples(&self, t: AggrType) -> Result<Vec<(i64, f64)>> {
        let mut out = Vec::new();
        if let Some((enc, data)) = self.get_raw(t)? {
            if enc != Encoding::Xor.as_u8() {
                return Err(Error::Invalid {
                    what: "aggregate chunk",
                    value: t.name().into(),
                    detail: format!("sub-chunk encoding {enc}, expected XOR"),
                });
            }
            decode_xor(data, &mut out)?;
        }
        Ok(out)
    }

    /// The number of windows (samples of the count aggregate); 0 when unreadable.
    pub fn num_samples(&self) -> usize {
        match self.get_raw(AggrType::Count) {
            Ok(Some((_, d))) if d.len() >= 2 => u16::from_be_bytes([d[0], d[1]]) as usize,
            _ => 0,
        }
    }

    fn corrupt(&self, off: usize, detail: &str) -> Error {
        Error::Invalid {
            what: "aggregate chunk",
            value: format!("{} bytes", self.data.len()),
            detail: format!("at offset {off}: {detail}"),
        }
    }
}

use strata_tsdb::encoding::{put_uvarint, uvarint};

/// Rebuilds a monotonic counter from counter sub-chunks fed in time order (Thanos's
/// `ApplyCounterResetsSeriesIterator`): NaNs are skipped; a sample repeating the previous
/// timestamp only records the true last raw value (no output); a value below the previous one
/// is a reset and adds its whole value; samples going back in time are ignored.
#[derive(Debug, Clone, Default)]
pub struct CounterResets {
    total: u64,
    last_t: i64,
    last_v: f64,
    total_v: f64,
}

impl CounterResets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one counter sample; returns the output sample it produces, if any.
    pub fn push(&mut self, t: i64, v: f64) -> Option<(i64, f64)> {
        if v.is_nan() {
            return None;
        }
        if self.total == 0 {
            self.total = 1;
            self.last_t = t;
            self.last_v = v;
            self.total_v = v;
            return Some((t, v));
        }
        if t > self.last_t {
            if v >= self.last_v {
                self.total_v += v - self.last_v;
            } else {
                self.total_v += v;
            }
            self.last_t = t;
            self.last_v = v;
            self.total += 1;
            return Some((t, self.total_v));
        }
        if t == self.last_t {
            self.last_v = v;
        }
        None
    }

    /// The last raw value seen (the marker sample's value at the end of a chunk).
    pub fn last_value(&self) -> f64 {
        self.last_v
    }
}

/// Applies [`CounterResets`] over the counter sub-chunks of `chunks` (in time order).
pub fn counter_series(chunks: &[AggrChunk]) -> Result<Vec<(i64, f64)>> {
    let mut cr = CounterResets::new();
    let mut out = Vec::new();
    for c in chunks {
        for (t, v) in c.samples(AggrType::Counter)? {
            out.extend(cr.push(t, v));
        }
    }
    Ok(out)
}

/// An aggregate chunk with its time range, as written to a block.
#[derive(Debug, Clone)]
pub struct AggrChunkMeta {
    pub mint: i64,
    pub maxt: i64,
    pub chunk: AggrChunk,
}

impl AggrChunkMeta {
    fn to_write(&self) -> ChunkToWrite {
        ChunkToWrite {
            mint: self.mint,
            maxt: self.maxt,
            encoding: Encoding::Aggr,
            num_samples: self.chunk.num_samples() as u64,
            data: self.chunk.data(),
        }
    }
}

/// The last millisecond of the window of width `r` holding `t`.
fn current_window(t: i64, r: i64) -> i64 {
    t - (t % r) + r - 1
}

/// How many output chunks to produce (each about 140 samples or fewer), from the time range,
/// the input count and the resolutions, as Thanos computes it.
fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let max_samples = ((maxt - mint) / out_res) as f64;
    let mut full = count as f64 / ((maxt - mint) as f64 / in_res as f64);
    if full > 1.0 || full.is_nan() {
        full = 1.0;
    }
    let exp = (max_samples * full) as usize + 1;
    let mut x = 1;
    while exp / x > 140 {
        x += 1;
    }
    x
}

/// Per-window and running statistics.
#[derive(Debug, Clone, Copy)]
struct Aggregator {
    total: usize,
    count: usize,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        let mut a = Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::MAX,
            max: -f64::MAX,
            counter: 0.0,
            last: 0.0,
        };
        a.reset();
        a
    }

    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Aggregates `data` per window, calling `add(window_end, &aggregator)` at the end of each;
/// returns the last window's timestamp. Stale markers are skipped.
fn downsample_batch(data: &[(i64, f64)], res: i64, mut add: impl FnMut(i64, &Aggregator)) -> i64 {
    let mut aggr = Aggregator::new();
    let mut next_t: i64 = -1;
    let last_t = data.last().map(|s| s.0).unwrap_or(0);
    for &(t, v) in data {
        if is_stale_nan(v) {
            continue;
        }
        if t > next_t {
            if next_t != -1 {
                add(next_t, &aggr);
            }
            aggr.reset();
            next_t = current_window(t, res).min(last_t);
        }
        aggr.add(v);
    }
    add(next_t, &aggr);
    next_t
}

struct Builder {
    mint: i64,
    maxt: i64,
    chunks: [Option<XorChunk>; 5],
}

impl Builder {
    fn new(present: bool) -> Self {
        let mk = || present.then(XorChunk::new);
        Builder {
            mint: i64::MAX,
            maxt: i64::MIN,
            chunks: [mk(), mk(), mk(), mk(), mk()],
        }
    }

    fn append(&mut self, at: AggrType, t: i64, v: f64) -> Result<()> {
        let c = self.chunks[at as usize].get_or_insert_with(XorChunk::new);
        c.append(t, v)?;
        Ok(())
    }

    fn see(&mut self, t: i64) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
    }

    fn finish(self) -> AggrChunkMeta {
        AggrChunkMeta {
            mint: self.mint,
            maxt: self.maxt,
            chunk: AggrChunk::encode(&self.chunks),
        }
    }
}

/// Downsamples raw samples (time-ordered) into aggregate chunks at `res`.
pub fn downsample_raw(data: &[(i64, f64)], res: i64) -> Result<Vec<AggrChunkMeta>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let (mint, maxt) = (data[0].0, data[data.len() - 1].0);
    // Thanos assumes a raw resolution of one minute for sizing chunks.
    let num_chunks = target_chunk_count(mint, maxt, 60_000, res, data.len());
    let batch_size = data.len() / num_chunks + 1;
    let mut out = Vec::with_capacity(num_chunks);
    let mut rest = data;
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        let cur_w = current_window(rest[j - 1].0, res);
        // Take the rest of the window too so batches end on window boundaries.
        while j < rest.len() && rest[j].0 <= cur_w {
            j += 1;
        }
        let batch: Vec<(i64, f64)> = rest[..j]
            .iter()
            .copied()
            .filter(|s| !s.1.is_nan())
            .collect();
        rest = &rest[j..];
        if batch.is_empty() {
            continue;
        }
        let mut b = Builder::new(true);
        b.append(AggrType::Counter, batch[0].0, batch[0].1)?;
        let mut err = None;
        let last_t = downsample_batch(&batch, res, |t, a| {
            b.see(t);
            for (at, v) in [
                (AggrType::Count, a.count as f64),
                (AggrType::Sum, a.sum),
                (AggrType::Min, a.min),
                (AggrType::Max, a.max),
                (AggrType::Counter, a.counter),
            ] {
                if let Err(e) = b.append(at, t, v) {
                    err.get_or_insert(e);
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        b.append(AggrType::Counter, last_t, batch[batch.len() - 1].1)?;
        out.push(b.finish());
    }
    Ok(out)
}

/// Downsamples aggregate chunks of one series (time-ordered, at `in_res`) to `out_res`, along
/// chunk boundaries (so counters keep their true first and last values).
pub fn downsample_aggr(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<AggrChunkMeta>> {
    let n: usize = chunks.iter().map(|c| c.num_samples()).sum();
    let num_chunks = target_chunk_count(mint, maxt, in_res, out_res, n);
    let batch = (chunks.len() / num_chunks).max(1);
    chunks
        .chunks(batch)
        .map(|part| downsample_aggr_batch(part, out_res))
        .collect()
}

fn downsample_aggr_batch(chunks: &[AggrChunk], res: i64) -> Result<AggrChunkMeta> {
    let mut b = Builder::new(false);
    let mut buf: Vec<(i64, f64)> = Vec::new();
    type Pick = fn(&Aggregator) -> f64;
    let plain: [(AggrType, Pick); 4] = [
        // The count of already aggregated data is the sum of the counts.
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    for (at, pick) in plain {
        buf.clear();
        for c in chunks {
            expand(c.samples(at)?, &mut buf);
        }
        if buf.is_empty() {
            continue;
        }
        let mut out = Vec::new();
        downsample_batch(&buf, res, |t, a| out.push((t, pick(a))));
        for (t, v) in out {
            b.see(t);
            b.append(at, t, v)?;
        }
    }
    let mut cr = CounterResets::new();
    buf.clear();
    for c in chunks {
        let mut last = i64::MIN;
        for (t, v) in c.samples(AggrType::Counter)? {
            if let Some((t, v)) = cr.push(t, v) {
                if t >= last && !is_stale_nan(v) {
                    buf.push((t, v));
                    last = t;
                }
            }
        }
    }
    if buf.is_empty() {
        return Ok(b.finish());
    }
    b.append(AggrType::Counter, buf[0].0, buf[0].1)?;
    let mut out = Vec::new();
    let last_t = downsample_batch(&buf, res, |t, a| out.push((t, a.counter)));
    for (t, v) in out {
        b.see(t);
        b.append(AggrType::Counter, t, v)?;
    }
    b.append(AggrType::Counter, last_t, cr.last_value())?;
    Ok(b.finish())
}

/// Appends samples, skipping stale markers and samples going back in time.
fn expand(samples: Vec<(i64, f64)>, out: &mut Vec<(i64, f64)>) {
    let mut last = out.last().map(|s| s.0).unwrap_or(i64::MIN);
    for (t, v) in samples {
        if is_stale_nan(v) {
            continue;
        }
        if t >= last {
            out.push((t, v));
            last = t;
        }
    }
}

/// Writes a downsampled copy of `block` (whose meta is `meta`) at `resolution` into
/// `parent/<new ULID>`. The new meta keeps the compaction section (level, sources, parents)
/// and the external labels, sets `thanos.downsample.resolution` and source `compactor`.
/// Returns `None` when the block has no series.
pub fn downsample_block(
    block: &Arc<Block>,
    meta: &BlockMeta,
    parent: &Path,
    resolution: i64,
) -> Result<Option<BlockMeta>> {
    let in_res = meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
    if in_res >= resolution {
        return Err(Error::Invalid {
            what: "downsampling resolution",
            value: resolution.to_string(),
            detail: format!("block {} is already at resolution {in_res}", meta.ulid),
        });
    }
    let mut new_meta = meta.clone();
    new_meta.ulid = Ulid::new();
    let mut th = meta.thanos.clone().unwrap_or_default();
    th.downsample.resolution = resolution;
    th.source = "compactor".into();
    th.files.clear();
    th.segment_files.clear();
    new_meta.thanos = Some(th);

    let symbols: BTreeSet<Arc<str>> = block.index().symbols().cloned().collect();
    let ids = block.index().all_postings()?;
    let b = block.clone();
    let mut it = block.series_iter(ids).filter_map(move |r| {
        let res = r.map_err(Error::from).and_then(|(id, labels, metas)| {
            let chunks = downsample_series(&b, id, &metas, in_res, resolution)?;
            Ok(SeriesToWrite {
                labels,
                chunks: chunks.iter().map(AggrChunkMeta::to_write).collect(),
            })
        });
        match res {
            Ok(s) if s.chunks.is_empty() => None,
            Ok(s) => Some(Ok(s)),
            Err(e) => Some(Err(strata_tsdb::Error::Invalid(e.to_string()))),
        }
    });
    Ok(write_block(parent, new_meta, &symbols, &mut it)?)
}

fn downsample_series(
    block: &Arc<Block>,
    id: u32,
    metas: &[strata_tsdb::index::ChunkMeta],
    in_res: i64,
    out_res: i64,
) -> Result<Vec<AggrChunkMeta>> {
    if metas.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(w) = metas.windows(2).find(|w| w[0].max_time >= w[1].min_time) {
        return Err(Error::Invalid {
            what: "series",
            value: id.to_string(),
            detail: format!(
                "overlapping chunks in block {}: [{}, {}] and [{}, {}]",
                block.ulid(),
                w[0].min_time,
                w[0].max_time,
                w[1].min_time,
                w[1].max_time
            ),
        });
    }
    let deleted = block.tombstones().get(id as u64).cloned();
    if in_res == RES_RAW {
        let mut all: Vec<(i64, f64)> = Vec::new();
        for m in metas {
            let (enc, data) = block.chunk_bytes(m.chunk_ref)?;
            strata_tsdb::chunkenc::require_decodable(enc)?;
            let mut v = Vec::new();
            decode_xor(&data, &mut v)?;
            if let Some(d) = &deleted {
                v.retain(|s| !d.contains(s.0));
            }
            expand(v, &mut all);
        }
        return downsample_raw(&all, out_res);
    }
    let mut aggr = Vec::with_capacity(metas.len());
    for m in metas {
        let (enc, data) = block.chunk_bytes(m.chunk_ref)?;
        match enc {
            Encoding::Aggr => aggr.push(AggrChunk::new(data)),
            Encoding::Xor => {
                // Thanos tolerates stray XOR chunks in downsampled blocks: empty ones are
                // skipped, others converted to 5m aggregates.
                let mut v = Vec::new();
                decode_xor(&data, &mut v)?;
                let mut s = Vec::new();
                expand(v, &mut s);
                aggr.extend(downsample_raw(&s, RES_5M)?.into_iter().map(|c| c.chunk));
            }
            other => {
                return Err(Error::Invalid {
                    what: "chunk encoding",
                    value: other.name().into(),
                    detail: format!("in downsampled block {}", block.ulid()),
                })
            }
        }
    }
    downsample_aggr(
        &aggr,
        metas[0].min_time,
        metas[metas.len() - 1].max_time,
        in_res,
        out_res,
    )
}

#[cfg(test)]
mod tests;
