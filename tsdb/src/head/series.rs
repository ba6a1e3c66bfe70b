//! One in-memory series: its labels, its completed chunks (in `chunks_head/` or in memory), the
//! open chunk samples are appended to, and the out-of-order buffer. Chunk cutting follows
//! Prometheus exactly (same boundaries, so blocks we write hold the same chunks as Prometheus's).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::chunkenc::{Encoding, XorChunk};
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::storage::SeriesRef;

/// Prometheus cuts a chunk once its XOR bytes exceed this before an append (1024 - 19).
pub const MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND: usize = 1024 - 19;

/// Where a completed chunk's bytes are.
#[derive(Clone, Debug)]
pub enum ChunkData {
    /// In `chunks_head/`, by head chunk reference.
    Disk(u64),
    /// In memory (heads without chunk files).
    Mem(Arc<[u8]>),
}

/// A completed (immutable) chunk of a head series.
#[derive(Clone, Debug)]
pub struct DoneChunk {
    pub mint: i64,
    pub maxt: i64,
    pub num_samples: u16,
    pub data: ChunkData,
}

/// The chunk currently appended to.
pub(crate) struct OpenChunk {
    pub(crate) chunk: XorChunk,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
}

pub(crate) struct SeriesData {
    pub(crate) done: Vec<DoneChunk>,
    pub(crate) open: Option<OpenChunk>,
    next_at: i64,
    last_value_bits: u64,
    /// Out-of-order samples (within the OOO window), sorted by time, unique timestamps.
    pub(crate) ooo: Vec<(i64, f64)>,
}

/// How a sample fits a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    InOrder,
    /// Same timestamp and value as the newest sample: ignored.
    Duplicate,
    OutOfOrder,
}

/// A series in the head.
pub struct MemSeries {
    pub r: SeriesRef,
    pub labels: Labels,
    /// Whether the series record has been written to the WAL.
    pub(crate) logged: AtomicBool,
    pub(crate) data: Mutex<SeriesData>,
}

impl std::fmt::Debug for MemSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemSeries({} {})", self.r, self.labels)
    }
}

/// Start of the next range of width `width` after `t`.
#[inline]
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width + width
}

/// Predicts the end time of a chunk that is `1/ratio` full so that the remaining chunks up to
/// `max_t` are evenly sized (Prometheus's `computeChunkEndTime`).
#[inline]
pub fn compute_chunk_end_time(start: i64, cur: i64, max_t: i64, ratio: f64) -> i64 {
    let n = (max_t - start) as f64 / ((cur - start + 1) as f64 * ratio);
    if n <= 1.0 {
        return max_t;
    }
    (start as f64 + (max_t - start) as f64 / n.floor()) as i64
}

impl MemSeries {
    pub(crate) fn new(r: SeriesRef, labels: Labels, _chunk_range: i64) -> Self {
        Self {
            r,
            labels,
            logged: AtomicBool::new(false),
            data: Mutex::new(SeriesData {
                done: Vec::new(),
                open: None,
                next_at: i64::MIN,
                last_value_bits: 0,
                ooo: Vec::new(),
            }),
        }
    }

    /// Newest in-order sample time, if any.
    pub fn max_time(&self) -> Option<i64> {
        self.data.lock().max_time()
    }

    /// Oldest sample time, if any.
    pub fn min_time(&self) -> Option<i64> {
        self.data.lock().min_time()
    }

    /// Drops chunks and OOO samples entirely before `mint`. Returns whether the series is now
    /// empty, and its new minimum time.
    pub(crate) fn truncate_before(&self, mint: i64) -> (bool, i64) {
        let mut d = self.data.lock();
        d.done.retain(|c| c.maxt >= mint);
        if d.open.as_ref().is_some_and(|o| o.maxt < mint) && d.done.is_empty() {
            // The open chunk is entirely old: the series went quiet. Drop it.
            d.open = None;
        }
        d.ooo.retain(|s| s.0 >= mint);
        let empty = d.done.is_empty() && d.open.is_none() && d.ooo.is_empty();
        (empty, d.min_time().unwrap_or(i64::MAX))
    }
}

impl SeriesData {
    pub(crate) fn max_time(&self) -> Option<i64> {
        match &self.open {
            Some(o) => Some(o.maxt),
            None => self.done.last().map(|c| c.maxt),
        }
    }

    pub(crate) fn min_time(&self) -> Option<i64> {
        let a = self
            .done
            .first()
            .map(|c| c.mint)
            .or(self.open.as_ref().map(|o| o.mint));
        let b = self.ooo.first().map(|s| s.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Prometheus's `appendable`: can `(t, v)` be appended?
    pub(crate) fn fit(
        &self,
        t: i64,
        v: f64,
        min_valid: i64,
        head_max: i64,
        ooo_window: i64,
    ) -> Result<Fit> {
        if t >= min_valid {
            let Some(maxt) = self.max_time() else {
                return Ok(Fit::InOrder);
            };
            if t > maxt {
                return Ok(Fit::InOrder);
            }
            if t == maxt {
                if self.last_value_bits != v.to_bits() {
                    return Err(Error::DuplicateSampleForTimestamp);
                }
                return Ok(Fit::Duplicate);
            }
        }
        if ooo_window > 0 && t >= head_max.saturating_sub(ooo_window) {
            return Ok(Fit::OutOfOrder);
        }
        if ooo_window > 0 {
            return Err(Error::OutOfOrderSample);
        }
        if t < min_valid {
            return Err(Error::OutOfBounds);
        }
        Err(Error::OutOfOrderSample)
    }

    /// Appends an in-order sample, cutting chunks exactly where Prometheus does. A completed
    /// chunk is handed to `flush` (which writes it to `chunks_head/` or keeps it in memory).
    /// Returns false when the sample is not newer than the series' newest.
    pub(crate) fn append(
        &mut self,
        t: i64,
        v: f64,
        chunk_range: i64,
        samples_per_chunk: usize,
        flush: &mut dyn FnMut(&OpenChunk) -> Result<ChunkData>,
    ) -> Result<bool> {
        let mut created = false;
        if self.open.is_none() {
            if self.done.last().is_some_and(|c| c.maxt >= t) {
                return Ok(false);
            }
            self.cut(t, chunk_range, flush)?;
            created = true;
        }
        let (maxt, nbytes, n, mint) = {
            let o = self.open.as_ref().ok_or(Error::Closed)?;
            (o.maxt, o.chunk.bytes().len(), o.chunk.num_samples(), o.mint)
        };
        if !created && maxt >= t {
            return Ok(false);
        }
        let mut cut = false;
        if !created && nbytes > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND {
            self.cut(t, chunk_range, flush)?;
            cut = true;
        }
        if !cut {
            if n == 0 {
                self.next_at = range_for_timestamp(t, chunk_range);
            }
            if n == samples_per_chunk / 4 {
                self.next_at = compute_chunk_end_time(mint, maxt, self.next_at, 4.0);
            }
            if t >= self.next_at || n >= samples_per_chunk * 2 {
                self.cut(t, chunk_range, flush)?;
            }
        }
        let o = self.open.as_mut().ok_or(Error::Closed)?;
        o.chunk.append(t, v);
        if o.chunk.num_samples() == 1 {
            o.mint = t;
        }
        o.maxt = t;
        self.last_value_bits = v.to_bits();
        Ok(true)
    }

    /// Completes the open chunk (if any) and opens a new one starting at `t`.
    fn cut(
        &mut self,
        t: i64,
        chunk_range: i64,
        flush: &mut dyn FnMut(&OpenChunk) -> Result<ChunkData>,
    ) -> Result<()> {
        if let Some(o) = self.open.take() {
            if o.chunk.num_samples() > 0 {
                let data = flush(&o)?;
                self.done.push(DoneChunk {
                    mint: o.mint,
                    maxt: o.maxt,
                    num_samples: o.chunk.num_samples() as u16,
                    data,
                });
            }
        }
        self.open = Some(OpenChunk {
            chunk: XorChunk::new(),
            mint: t,
            maxt: i64::MIN,
        });
        self.next_at = range_for_timestamp(t, chunk_range);
        Ok(())
    }

    /// Inserts an out-of-order sample; an existing sample at `t` with another value is an error.
    pub(crate) fn insert_ooo(&mut self, t: i64, v: f64) -> Result<bool> {
        match self.ooo.binary_search_by(|s| s.0.cmp(&t)) {
            Ok(i) => {
                if self.ooo[i].1.to_bits() == v.to_bits() {
                    Ok(false)
                } else {
                    Err(Error::DuplicateSampleForTimestamp)
                }
            }
            Err(i) => {
                self.ooo.insert(i, (t, v));
                Ok(true)
            }
        }
    }

    /// Restores a completed chunk found in `chunks_head/` during replay.
    pub(crate) fn push_done(&mut self, c: DoneChunk) {
        self.done.push(c);
    }
}

/// The encoding of head chunks (XOR for float samples).
pub(crate) const HEAD_ENCODING: Encoding = Encoding::Xor;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_end_time_prediction() {
        // 30 samples over 30*15s from 0 with a 2h range: ~120 samples per chunk, 4 chunks.
        let end = compute_chunk_end_time(0, 29 * 15_000, 7_200_000, 4.0);
        assert_eq!(end, 7_200_000 / 4);
        assert_eq!(compute_chunk_end_time(0, 7_000_000, 7_200_000, 4.0), 7_200_000);
        assert_eq!(range_for_timestamp(7_200_001, 7_200_000), 14_400_000);
        assert_eq!(range_for_timestamp(-1, 7_200_000), 0);
    }

    #[test]
    fn cuts_like_prometheus() {
        let mut d = SeriesData {
            done: vec![],
            open: None,
            next_at: i64::MIN,
            last_value_bits: 0,
            ooo: vec![],
        };
        let mut flush =
            |o: &OpenChunk| -> Result<ChunkData> { Ok(ChunkData::Mem(Arc::from(o.chunk.bytes()))) };
        // 15s interval over 2h: 480 samples → 4 chunks of 120.
        for i in 0..480 {
            assert!(d
                .append(i * 15_000, i as f64, 7_200_000, 120, &mut flush)
                .unwrap());
        }
        let sizes: Vec<u16> = d.done.iter().map(|c| c.num_samples).collect();
        assert_eq!(sizes, [120, 120, 120]);
        assert_eq!(d.open.as_ref().unwrap().chunk.num_samples(), 120);
        // The next sample crosses the 2h boundary: new chunk.
        d.append(480 * 15_000, 0.0, 7_200_000, 120, &mut flush)
            .unwrap();
        assert_eq!(d.done.len(), 4);
        assert!(!d.append(480 * 15_000, 1.0, 7_200_000, 120, &mut flush).unwrap());
    }
}

impl SeriesData {
    /// Newest sample time including out-of-order samples.
    pub(crate) fn max_time_any(&self) -> Option<i64> {
        let a = self.max_time();
        let b = self.ooo.last().map(|s| s.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}
