//! One in-memory series: its labels, its completed chunks (in `chunks_head/` or in memory), the
//! open chunk samples are appended to, and the out-of-order buffer. Chunk cutting follows
//! Prometheus exactly (same boundaries, so blocks we write hold the same chunks as Prometheus's).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::chunkenc::{ChunkCutter, Encoding, OpenChunk as CutState, XorChunk};
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::storage::SeriesRef;

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
pub(crate) struct HeadChunk {
    pub(crate) chunk: XorChunk,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
}

pub(crate) struct SeriesData {
    pub(crate) done: Vec<DoneChunk>,
    pub(crate) open: Option<HeadChunk>,
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
        cutter: &ChunkCutter,
        flush: &mut dyn FnMut(&HeadChunk) -> Result<ChunkData>,
    ) -> Result<bool> {
        if self.max_time().is_some_and(|m| m >= t) {
            return Ok(false);
        }
        let state = self.open.as_ref().map(|o| CutState {
            min_time: o.mint,
            max_time: o.maxt,
            num_samples: o.chunk.num_samples(),
            byte_len: o.chunk.bytes().len(),
        });
        if cutter.cut(&mut self.next_at, state.as_ref(), t) {
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
            self.open = Some(HeadChunk {
                chunk: XorChunk::new(),
                mint: t,
                maxt: t,
            });
        }
        let o = self.open.as_mut().ok_or(Error::Closed)?;
        o.chunk.append(t, v)?;
        o.maxt = t;
        self.last_value_bits = v.to_bits();
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::CutPolicy;

    #[test]
    fn cuts_like_prometheus() {
        let mut d = SeriesData {
            done: vec![],
            open: None,
            next_at: i64::MIN,
            last_value_bits: 0,
            ooo: vec![],
        };
        let cutter = ChunkCutter::new(7_200_000, CutPolicy::Prometheus3);
        let mut flush =
            |o: &HeadChunk| -> Result<ChunkData> { Ok(ChunkData::Mem(Arc::from(o.chunk.bytes()))) };
        // 15s interval over 2h: 480 samples → 4 chunks of 120.
        for i in 0..480 {
            assert!(d.append(i * 15_000, i as f64, &cutter, &mut flush).unwrap());
        }
        let sizes: Vec<u16> = d.done.iter().map(|c| c.num_samples).collect();
        assert_eq!(sizes, [120, 120, 120]);
        assert_eq!(d.open.as_ref().unwrap().chunk.num_samples(), 120);
        // The next sample crosses the 2h boundary: new chunk.
        d.append(480 * 15_000, 0.0, &cutter, &mut flush).unwrap();
        assert_eq!(d.done.len(), 4);
        assert!(!d.append(480 * 15_000, 1.0, &cutter, &mut flush).unwrap());
        assert!(!d.append(10, 1.0, &cutter, &mut flush).unwrap());
    }
}
