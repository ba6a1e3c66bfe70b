//! The seams between storage and everything else (see `docs/architecture.md`):
//!
//! * [`Appender`]: how ingest writes. A commit is durable in the WAL before it returns.
//! * [`Queryable`] / [`Querier`]: how queries read. `select` returns a [`SeriesSet`] of
//!   [`Series`] whose samples come from a lazy, seekable [`SampleIterator`].
//!
//! Also the generic pieces every implementation shares: the k-way merge of series sets by
//! labels with deduplication of overlapping samples ([`merge`]), and simple in-memory iterators.

use crate::error::Result;
use crate::labels::{Labels, Matcher};

/// A reference to a series inside one head; stable for the series' lifetime in the head.
pub type SeriesRef = u64;

/// The stale-marker NaN Prometheus writes when a series disappears.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (a specific NaN bit pattern).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker value.
#[inline]
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Writes samples. Nothing is visible to readers, nor durable, before [`Appender::commit`].
pub trait Appender: Send {
    /// Appends a sample for the series with these labels, creating the series if needed.
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef>;
    /// Appends a sample for a series returned by an earlier `append`.
    fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<SeriesRef>;
    /// Makes every appended sample durable (in the WAL) and visible.
    fn commit(&mut self) -> Result<()>;
    /// Discards every sample appended since the last commit.
    fn rollback(&mut self) -> Result<()>;
}

/// A cursor over one series' samples in time order. Lazy: samples are decoded as it moves.
pub trait SampleIterator: Send {
    /// Moves to the next sample; false at the end (or on error, see [`SampleIterator::err`]).
    fn next(&mut self) -> bool;
    /// Moves to the first sample with timestamp `>= t`; false when there is none. Never moves
    /// backwards: if the current sample is already at or after `t`, it stays.
    fn seek(&mut self, t: i64) -> bool;
    /// The current sample; only valid after `next` or `seek` returned true.
    fn at(&self) -> (i64, f64);
    /// Why iteration stopped early, if it did.
    fn err(&self) -> Option<String> {
        None
    }
}

impl SampleIterator for Box<dyn SampleIterator> {
    fn next(&mut self) -> bool {
        (**self).next()
    }
    fn seek(&mut self, t: i64) -> bool {
        (**self).seek(t)
    }
    fn at(&self) -> (i64, f64) {
        (**self).at()
    }
    fn err(&self) -> Option<String> {
        (**self).err()
    }
}

/// One series: its labels and a way to iterate its samples.
pub trait Series: Send + Sync {
    fn labels(&self) -> &Labels;
    /// A fresh iterator over the series' samples within the querier's time range.
    fn iterator(&self) -> Box<dyn SampleIterator>;
}

/// A set of series, sorted by labels when `select` was asked to sort.
pub type SeriesSet = Box<dyn Iterator<Item = Result<Box<dyn Series>>> + Send>;

/// What the caller of `select` will do with the data; implementations may use it to prune.
#[derive(Clone, Debug, Default)]
pub struct SelectHints {
    /// Start of the time range, in milliseconds.
    pub start: i64,
    /// End of the time range, in milliseconds.
    pub end: i64,
    /// Query step in milliseconds (0 for instant queries).
    pub step: i64,
    /// The function the selector is passed to, if any (e.g. `rate`).
    pub func: Option<String>,
    /// Range of a range vector selector in milliseconds.
    pub range: i64,
}

/// Reads series within a fixed time range `[mint, maxt]`.
pub trait Querier: Send + Sync {
    /// Series whose labels satisfy all matchers, with samples in `[mint, maxt]`.
    fn select(&self, sorted: bool, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet;
    /// Sorted distinct values of `name` among series matching `matchers` (all series if empty).
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>>;
    /// Sorted distinct label names among series matching `matchers` (all series if empty).
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>>;
}

/// Something that can be queried over a time range.
pub trait Queryable: Send + Sync {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>>;
}

/// A series held entirely in memory; used by tests, merges and small results.
#[derive(Clone, Debug)]
pub struct VecSeries {
    pub labels: Labels,
    pub samples: std::sync::Arc<Vec<(i64, f64)>>,
}

impl VecSeries {
    pub fn new(labels: Labels, samples: Vec<(i64, f64)>) -> Self {
        Self {
            labels,
            samples: std::sync::Arc::new(samples),
        }
    }
}

impl Series for VecSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn iterator(&self) -> Box<dyn SampleIterator> {
        Box::new(VecIterator::new(self.samples.clone()))
    }
}

/// Iterates a shared vector of samples.
#[derive(Clone, Debug)]
pub struct VecIterator {
    samples: std::sync::Arc<Vec<(i64, f64)>>,
    /// Index of the current sample plus one (0 = before the first).
    pos: usize,
}

impl VecIterator {
    pub fn new(samples: std::sync::Arc<Vec<(i64, f64)>>) -> Self {
        Self { samples, pos: 0 }
    }
}

impl SampleIterator for VecIterator {
    fn next(&mut self) -> bool {
        if self.pos < self.samples.len() {
            self.pos += 1;
            true
        } else {
            self.pos = self.samples.len() + 1;
            false
        }
    }
    fn seek(&mut self, t: i64) -> bool {
        if self.pos > self.samples.len() {
            return false;
        }
        if self.pos > 0 && self.samples[self.pos - 1].0 >= t {
            return true;
        }
        let start = self.pos.saturating_sub(1);
        let i = start + self.samples[start..].partition_point(|s| s.0 < t);
        if i < self.samples.len() {
            self.pos = i + 1;
            true
        } else {
            self.pos = self.samples.len() + 1;
            false
        }
    }
    fn at(&self) -> (i64, f64) {
        self.samples[self.pos - 1]
    }
}

/// An iterator that yields nothing.
pub struct EmptyIterator;

impl SampleIterator for EmptyIterator {
    fn next(&mut self) -> bool {
        false
    }
    fn seek(&mut self, _t: i64) -> bool {
        false
    }
    fn at(&self) -> (i64, f64) {
        (i64::MIN, f64::NAN)
    }
}

/// Restricts an iterator to samples in `[mint, maxt]`.
pub struct BoundedIterator<I> {
    inner: I,
    mint: i64,
    maxt: i64,
    started: bool,
    done: bool,
}

impl<I: SampleIterator> BoundedIterator<I> {
    pub fn new(inner: I, mint: i64, maxt: i64) -> Self {
        Self {
            inner,
            mint,
            maxt,
            started: false,
            done: false,
        }
    }
}

impl<I: SampleIterator> SampleIterator for BoundedIterator<I> {
    fn next(&mut self) -> bool {
        if self.done {
            return false;
        }
        let ok = if !self.started {
            self.started = true;
            self.inner.seek(self.mint)
        } else {
            self.inner.next()
        };
        if !ok || self.inner.at().0 > self.maxt {
            self.done = true;
            return false;
        }
        true
    }
    fn seek(&mut self, t: i64) -> bool {
        if self.done {
            return false;
        }
        self.started = true;
        if !self.inner.seek(t.max(self.mint)) || self.inner.at().0 > self.maxt {
            self.done = true;
            return false;
        }
        true
    }
    fn at(&self) -> (i64, f64) {
        self.inner.at()
    }
    fn err(&self) -> Option<String> {
        self.inner.err()
    }
}

pub mod chain;
pub mod merge;
