//! Reading the head: matcher evaluation over the in-memory postings, and series whose sample
//! iterators walk the series' chunks (mmapped `chunks_head/` chunks, then the open chunk) merged
//! with its out-of-order samples.

use std::sync::Arc;

use super::series::{ChunkData, MemSeries};
use super::{Head, HeadIndex};
use crate::chunkenc::XorIterator;
use crate::error::Result;
use crate::labels::{Labels, Matcher};
use crate::postings::postings_for_matchers;
use crate::storage::chain::ChainIterator;
use crate::storage::merge::MergedIterator;
use crate::storage::{
    BoundedIterator, EmptyIterator, Querier, SampleIterator, SelectHints, Series, SeriesSet,
    VecIterator,
};

/// A querier over the head for `[mint, maxt]`.
pub struct HeadQuerier {
    head: Arc<Head>,
    mint: i64,
    maxt: i64,
}

impl HeadQuerier {
    pub fn new(head: Arc<Head>, mint: i64, maxt: i64) -> Self {
        Self { head, mint, maxt }
    }

    /// Series matching `matchers` that have data in the querier's range, sorted by labels.
    fn matching_series(&self, matchers: &[Matcher]) -> Result<Vec<Arc<MemSeries>>> {
        let ids = {
            let p = self.head.postings.read();
            postings_for_matchers(&HeadIndex(&p), matchers)?
        };
        let mut out = Vec::with_capacity(ids.len() as usize);
        for id in ids {
            if let Some(s) = self.head.series_by_ref(id as u64) {
                let d = s.data.lock();
                let (Some(smin), Some(smax)) = (d.min_time(), d.max_time_any()) else {
                    continue;
                };
                if smax >= self.mint && smin <= self.maxt {
                    drop(d);
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

impl Querier for HeadQuerier {
    fn select(&self, _sorted: bool, _h: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        match self.matching_series(matchers) {
            Ok(v) => {
                let head = self.head.clone();
                let (mint, maxt) = (self.mint, self.maxt);
                Box::new(v.into_iter().map(move |s| {
                    Ok(Box::new(HeadSeries {
                        labels: s.labels.clone(),
                        series: s,
                        head: head.clone(),
                        mint,
                        maxt,
                    }) as Box<dyn Series>)
                }))
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut out: Vec<String> = if matchers.is_empty() {
            let p = self.head.postings.read();
            p.m.get(name)
                .map(|vals| vals.keys().map(|v| v.to_string()).collect())
                .unwrap_or_default()
        } else {
            let mut v: Vec<String> = self
                .matching_series(matchers)?
                .iter()
                .filter_map(|s| s.labels.get(name).map(str::to_string))
                .collect();
            v.dedup();
            v
        };
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut out: Vec<String> = if matchers.is_empty() {
            let p = self.head.postings.read();
            p.m.keys().map(|k| k.to_string()).collect()
        } else {
            let mut v = Vec::new();
            for s in self.matching_series(matchers)? {
                v.extend(s.labels.iter().map(|l| l.name.to_string()));
            }
            v
        };
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// A head series restricted to a time range.
pub struct HeadSeries {
    labels: Labels,
    series: Arc<MemSeries>,
    head: Arc<Head>,
    mint: i64,
    maxt: i64,
}

enum Src {
    Disk(u64),
    Mem(Arc<[u8]>),
}

impl Series for HeadSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn iterator(&self) -> Box<dyn SampleIterator> {
        let (ranges, srcs, ooo) = {
            let d = self.series.data.lock();
            let mut ranges = Vec::new();
            let mut srcs = Vec::new();
            for c in &d.done {
                if c.maxt >= self.mint && c.mint <= self.maxt {
                    ranges.push((c.mint, c.maxt));
                    srcs.push(match &c.data {
                        ChunkData::Disk(r) => Src::Disk(*r),
                        ChunkData::Mem(b) => Src::Mem(b.clone()),
                    });
                }
            }
            if let Some(o) = &d.open {
                if o.chunk.num_samples() > 0 && o.maxt >= self.mint && o.mint <= self.maxt {
                    ranges.push((o.mint, o.maxt));
                    srcs.push(Src::Mem(Arc::from(o.chunk.bytes())));
                }
            }
            let ooo: Vec<(i64, f64)> = d
                .ooo
                .iter()
                .filter(|s| s.0 >= self.mint && s.0 <= self.maxt)
                .copied()
                .collect();
            (ranges, srcs, ooo)
        };
        let head = self.head.clone();
        let chain: Box<dyn SampleIterator> = if ranges.is_empty() {
            Box::new(EmptyIterator)
        } else {
            Box::new(ChainIterator::new(
                ranges,
                Box::new(move |i| {
                    let bytes: Arc<[u8]> = match &srcs[i] {
                        Src::Mem(b) => b.clone(),
                        Src::Disk(r) => Arc::from(&*head.read_disk_chunk(*r)?),
                    };
                    Ok(Box::new(XorIterator::new(bytes)) as Box<dyn SampleIterator>)
                }),
            ))
        };
        let it: Box<dyn SampleIterator> = if ooo.is_empty() {
            chain
        } else {
            Box::new(MergedIterator::new(vec![
                chain,
                Box::new(VecIterator::new(Arc::new(ooo))),
            ]))
        };
        Box::new(BoundedIterator::new(it, self.mint, self.maxt))
    }
}
