//! The head appender: validates samples against the series as committed (and against earlier
//! samples of the same batch), buffers them, and on commit writes the series and samples
//! records to the WAL before applying them to the in-memory series.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::series::{ChunkData, Fit, HeadChunk, MemSeries, HEAD_ENCODING};
use super::Head;
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::storage::{Appender, SeriesRef};
use crate::wal::record::{self, RefSample, RefSeries};

struct Pending {
    series: Arc<MemSeries>,
    t: i64,
    v: f64,
    ooo: bool,
}

/// Appends to a [`Head`]. Not shared between threads; create one per batch.
pub struct HeadAppender {
    head: Arc<Head>,
    min_valid: i64,
    head_max: i64,
    pending: Vec<Pending>,
    /// Newest pending (t, value bits) per series touched by this batch.
    last: HashMap<SeriesRef, (i64, u64)>,
    wal_buf: Vec<u8>,
}

impl HeadAppender {
    pub(crate) fn new(head: Arc<Head>) -> Self {
        let head_max = head.max_time();
        let min_valid = if head.min_time() == i64::MAX {
            head.min_valid_time()
        } else {
            head.min_valid_time()
                .max(head_max.saturating_sub(head.opts.chunk_range / 2))
        };
        Self {
            head,
            min_valid,
            head_max,
            pending: Vec::new(),
            last: HashMap::new(),
            wal_buf: Vec::new(),
        }
    }

    /// Allows samples as old as `t` (backfill into an empty in-memory head).
    pub fn set_min_valid_time(&mut self, t: i64) {
        self.min_valid = t;
    }

    fn add(&mut self, s: Arc<MemSeries>, t: i64, v: f64) -> Result<SeriesRef> {
        let r = s.r;
        let fit = if let Some(&(pt, pv)) = self.last.get(&r) {
            if t > pt {
                Fit::InOrder
            } else if t == pt {
                if pv == v.to_bits() {
                    Fit::Duplicate
                } else {
                    return Err(Error::DuplicateSampleForTimestamp);
                }
            } else {
                let window = self.head.opts.ooo_window;
                let head_max = self.head_max.max(pt);
                let d = s.data.lock();
                match d.fit(t, v, self.min_valid, head_max, window)? {
                    // Newer than the committed series but older than an earlier sample of
                    // this batch: out of order (it would be dropped silently at commit).
                    Fit::InOrder if window > 0 && t >= head_max.saturating_sub(window) => {
                        Fit::OutOfOrder
                    }
                    Fit::InOrder => return Err(Error::OutOfOrderSample),
                    f => f,
                }
            }
        } else {
            let d = s.data.lock();
            d.fit(
                t,
                v,
                self.min_valid,
                self.head_max,
                self.head.opts.ooo_window,
            )?
        };
        match fit {
            Fit::Duplicate => {
                self.head
                    .stats
                    .duplicate_samples
                    .fetch_add(1, Ordering::Relaxed);
            }
            Fit::InOrder => {
                self.last.insert(r, (t, v.to_bits()));
                self.pending.push(Pending {
                    series: s,
                    t,
                    v,
                    ooo: false,
                });
            }
            Fit::OutOfOrder => self.pending.push(Pending {
                series: s,
                t,
                v,
                ooo: true,
            }),
        }
        Ok(r)
    }
}

impl Appender for HeadAppender {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef> {
        if labels.is_empty() {
            return Err(Error::InvalidLabels("empty label set".into()));
        }
        let (s, _) = self.head.get_or_create(labels, None)?;
        self.add(s, t, v)
    }

    fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<SeriesRef> {
        let s = self
            .head
            .series_by_ref(r)
            .ok_or(Error::UnknownSeriesRef(r))?;
        self.add(s, t, v)
    }

    fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let head = self.head.clone();
        if let Some(wal) = &head.wal {
            let mut new_series = Vec::new();
            for p in &self.pending {
                if !p.series.logged.swap(true, Ordering::AcqRel) {
                    new_series.push(RefSeries {
                        r: p.series.r,
                        labels: p.series.labels.clone(),
                    });
                }
            }
            let samples: Vec<RefSample> = self
                .pending
                .iter()
                .map(|p| RefSample {
                    r: p.series.r,
                    t: p.t,
                    v: p.v,
                })
                .collect();
            let mut recs: Vec<Vec<u8>> = Vec::with_capacity(2);
            if !new_series.is_empty() {
                self.wal_buf.clear();
                record::encode_series(&new_series, &mut self.wal_buf);
                recs.push(self.wal_buf.clone());
            }
            self.wal_buf.clear();
            record::encode_samples(&samples, &mut self.wal_buf);
            recs.push(std::mem::take(&mut self.wal_buf));
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            let res = wal.lock().log(&refs);
            if let Err(e) = res {
                // Nothing was applied; the series records must be written again next time.
                for s in &new_series {
                    if let Some(ms) = head.series_by_ref(s.r) {
                        ms.logged.store(false, Ordering::Release);
                    }
                }
                self.pending.clear();
                self.last.clear();
                return Err(e);
            }
        }
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        let mut appended = 0u64;
        for p in self.pending.drain(..) {
            if apply(&head, &p.series, p.t, p.v, p.ooo)? {
                appended += 1;
                mint = mint.min(p.t);
                maxt = maxt.max(p.t);
            }
        }
        self.last.clear();
        if appended > 0 {
            head.update_time_bounds(mint, maxt);
            head.stats
                .samples_appended
                .fetch_add(appended, Ordering::Relaxed);
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        self.pending.clear();
        self.last.clear();
        Ok(())
    }
}

/// Applies one sample to a series (used by commit and by WAL replay). Returns whether it was
/// stored.
pub(crate) fn apply(head: &Head, s: &MemSeries, t: i64, v: f64, ooo: bool) -> Result<bool> {
    let mut d = s.data.lock();
    if ooo {
        return match d.insert_ooo(t, v) {
            Ok(b) => Ok(b),
            Err(_) => {
                head.stats.duplicate_samples.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
        };
    }
    let mut flush = |o: &HeadChunk| -> Result<ChunkData> {
        head.stats.chunks_created.fetch_add(1, Ordering::Relaxed);
        match &head.chunk_disk {
            Some(cdm) => {
                let r = cdm.write_chunk(s.r, o.mint, o.maxt, HEAD_ENCODING, o.chunk.bytes())?;
                Ok(ChunkData::Disk(r))
            }
            None => Ok(ChunkData::Mem(Arc::from(o.chunk.bytes()))),
        }
    };
    let ok = d.append(t, v, &head.cutter, &mut flush)?;
    if !ok {
        head.stats
            .out_of_order_samples
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(ok)
}
