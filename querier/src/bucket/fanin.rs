//! The fan-in: one [`Queryable`] over several sources (the local database with its head and
//! blocks, the bucket store, ...). Series with equal labels from different sources become one
//! series whose samples are merged in time order, a timestamp present in several sources
//! yielding one sample (the first source listed wins). So a block that is both local and in
//! the bucket (uploaded by the shipper, not yet deleted locally) is not counted twice.
//!
//! Optional replica deduplication (Thanos's `--query.replica-label`): the replica labels are
//! removed from every series, and series that then have equal labels are replicas of one
//! series. Their samples are combined by a simple rule instead of Thanos's penalty algorithm:
//! the iterator follows one replica (the first in label order that has data) and switches to
//! another only when the followed replica has a gap, i.e. when its next sample is more than
//! twice its last observed sample interval away (5 minutes before an interval is known) while
//! another replica has a sample sooner. Samples of the other replicas inside the followed
//! replica's covered span are dropped rather than interleaved, so counters do not zig-zag
//! between replicas whose scrapes are offset in time.

use std::sync::Arc;

use strata_tsdb::labels::{Labels, Matcher};
use strata_tsdb::storage::merge::MergeQuerier;
use strata_tsdb::storage::{Querier, Queryable, SampleIterator, SelectHints, Series, SeriesSet};
use strata_tsdb::Result;

/// Gap threshold used before the followed replica's sample interval is known (at the start,
/// after a seek or a switch), in ms: Prometheus's default lookback delta.
pub const INITIAL_REPLICA_GAP_MS: i64 = 300_000;

/// Several sources queried as one.
#[derive(Clone)]
pub struct FanIn {
    sources: Vec<Arc<dyn Queryable>>,
    replica_labels: Vec<String>,
}

impl std::fmt::Debug for FanIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanIn")
            .field("sources", &self.sources.len())
            .field("replica_labels", &self.replica_labels)
            .finish()
    }
}

impl FanIn {
    /// A fan-in over `sources`; on equal timestamps the source listed first wins (list the
    /// local database first).
    pub fn new(sources: Vec<Arc<dyn Queryable>>) -> Self {
        Self {
            sources,
            replica_labels: Vec::new(),
        }
    }

    /// Deduplicates replicas that differ only in these labels.
    pub fn with_replica_labels(mut self, labels: Vec<String>) -> Self {
        self.replica_labels = labels;
        self
    }
}

impl Queryable for FanIn {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        let qs = self
            .sources
            .iter()
            .map(|s| s.querier(mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        let inner = MergeQuerier::new(qs);
        if self.replica_labels.is_empty() {
            return Ok(Box::new(inner));
        }
        Ok(Box::new(DedupQuerier {
            inner,
            replica_labels: self.replica_labels.clone(),
        }))
    }
}

/// Drops replica labels and merges replicas.
struct DedupQuerier {
    inner: MergeQuerier,
    replica_labels: Vec<String>,
}

impl Querier for DedupQuerier {
    fn select(
        &self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> SeriesSet {
        let names: Vec<&str> = self.replica_labels.iter().map(|s| s.as_str()).collect();
        let mut all: Vec<(Labels, Box<dyn Series>)> = Vec::new();
        for s in self.inner.select(true, hints, matchers) {
            match s {
                Ok(s) => all.push((s.labels().without(&names), s)),
                Err(e) => return Box::new(std::iter::once(Err(e))),
            }
        }
        // Stable: replicas keep the order of their full labels.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<strata_tsdb::Result<Box<dyn Series>>> = Vec::new();
        let mut it = all.into_iter().peekable();
        while let Some((labels, first)) = it.next() {
            let mut group: Vec<Arc<dyn Series>> = vec![Arc::from(first)];
            while it.peek().is_some_and(|(l, _)| *l == labels) {
                if let Some((_, s)) = it.next() {
                    group.push(Arc::from(s));
                }
            }
            out.push(Ok(Box::new(ReplicaSeries {
                labels,
                replicas: group,
            })));
        }
        Box::new(out.into_iter())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        if self.replica_labels.iter().any(|r| r == name) {
            return Ok(Vec::new());
        }
        self.inner.label_values(name, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut v = self.inner.label_names(matchers)?;
        v.retain(|n| !self.replica_labels.contains(n));
        Ok(v)
    }
}

/// One series assembled from its replicas.
struct ReplicaSeries {
    labels: Labels,
    replicas: Vec<Arc<dyn Series>>,
}

impl Series for ReplicaSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn iterator(&self) -> Box<dyn SampleIterator> {
        if self.replicas.len() == 1 {
            return self.replicas[0].iterator();
        }
        Box::new(ReplicaIterator::new(
            self.replicas.iter().map(|r| r.iterator()).collect(),
        ))
    }
}

/// See the module doc for the rule.
pub struct ReplicaIterator {
    its: Vec<Box<dyn SampleIterator>>,
    /// Each replica's next unread sample (None: exhausted or not started).
    heads: Vec<Option<(i64, f64)>>,
    started: bool,
    /// The replica followed.
    cur: Option<usize>,
    /// Last sample interval of the followed replica.
    interval: Option<i64>,
    at: (i64, f64),
    valid: bool,
    err: Option<String>,
}

impl ReplicaIterator {
    pub fn new(its: Vec<Box<dyn SampleIterator>>) -> Self {
        let n = its.len();
        Self {
            its,
            heads: vec![None; n],
            started: false,
            cur: None,
            interval: None,
            at: (i64::MIN, 0.0),
            valid: false,
            err: None,
        }
    }

    fn start(&mut self, seek: Option<i64>) {
        self.started = true;
        for i in 0..self.its.len() {
            let ok = match seek {
                Some(t) => self.its[i].seek(t),
                None => self.its[i].next(),
            };
            self.heads[i] = ok.then(|| self.its[i].at());
        }
    }

    /// Moves every replica past the emitted timestamp `t`.
    fn skip_through(&mut self, t: i64) {
        for i in 0..self.its.len() {
            if self.heads[i].is_some_and(|h| h.0 <= t) {
                let ok = self.its[i].seek(t.saturating_add(1));
                self.heads[i] = ok.then(|| self.its[i].at());
            }
        }
    }

    /// Emits the next sample by the rule.
    fn pick(&mut self) -> bool {
        let earliest = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h.0)))
            .min_by_key(|&(i, t)| (t, i));
        let Some((ei, et)) = earliest else {
            self.valid = false;
            for it in &self.its {
                if let Some(e) = it.err() {
                    self.err = Some(e);
                }
            }
            return false;
        };
        let choice = match self.cur.and_then(|c| self.heads[c].map(|h| (c, h.0))) {
            None => ei,
            Some((c, ct)) => {
                // The gap is measured from the last emitted sample, or after a seek from the
                // earliest available one.
                let reference = if self.valid { self.at.0 } else { et };
                let gap = self
                    .interval
                    .map(|i| i.saturating_mul(2))
                    .unwrap_or(INITIAL_REPLICA_GAP_MS);
                if ct <= et || ct.saturating_sub(reference) <= gap {
                    c
                } else {
                    ei
                }
            }
        };
        let Some(h) = self.heads[choice] else {
            return false;
        };
        if self.cur == Some(choice) && self.valid {
            self.interval = Some(h.0 - self.at.0);
        } else if self.cur != Some(choice) {
            self.interval = None;
        }
        self.cur = Some(choice);
        self.at = h;
        self.valid = true;
        self.skip_through(h.0);
        true
    }
}

impl SampleIterator for ReplicaIterator {
    fn next(&mut self) -> bool {
        if !self.started {
            self.start(None);
        }
        self.pick()
    }

    fn seek(&mut self, t: i64) -> bool {
        if self.valid && self.at.0 >= t {
            return true;
        }
        if !self.started {
            self.start(Some(t));
            return self.pick();
        }
        for i in 0..self.its.len() {
            if self.heads[i].is_some_and(|h| h.0 < t) {
                let ok = self.its[i].seek(t);
                self.heads[i] = ok.then(|| self.its[i].at());
            }
        }
        // A seek is a jump: the interval seen before it says nothing about the gap.
        self.valid = false;
        self.pick()
    }

    fn at(&self) -> (i64, f64) {
        self.at
    }

    fn err(&self) -> Option<String> {
        self.err.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::storage::VecSeries;

    fn it(v: Vec<(i64, f64)>) -> Box<dyn SampleIterator> {
        VecSeries::new(Labels::empty(), v).iterator()
    }

    fn all(mut i: impl SampleIterator) -> Vec<(i64, f64)> {
        let mut v = Vec::new();
        while i.next() {
            v.push(i.at());
        }
        v
    }

    #[test]
    fn follows_one_replica_and_fills_its_gaps() {
        // Replica a scrapes at 0,10,20,... with a hole 40..80; b is offset by 3.
        let a: Vec<(i64, f64)> = [0, 10_000, 20_000, 30_000, 90_000, 100_000]
            .iter()
            .map(|&t| (t, 1.0))
            .collect();
        let b: Vec<(i64, f64)> = (0..11).map(|i| (i * 10_000 + 3_000, 2.0)).collect();
        let got = all(ReplicaIterator::new(vec![it(a), it(b)]));
        let ts: Vec<i64> = got.iter().map(|s| s.0).collect();
        assert_eq!(
            ts,
            vec![
                0, 10_000, 20_000, 30_000, 33_000, 43_000, 53_000, 63_000, 73_000, 83_000, 93_000,
                103_000
            ],
            "{got:?}"
        );
        // After switching to b it stays with b (no zig-zag back to a at 90s).
        assert!(got[4..].iter().all(|s| s.1 == 2.0));
        assert!(got[..4].iter().all(|s| s.1 == 1.0));
    }

    #[test]
    fn seeks_and_handles_one_empty_replica() {
        let a: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        let mut r = ReplicaIterator::new(vec![it(vec![]), it(a.clone())]);
        assert!(r.seek(4500));
        assert_eq!(r.at(), (5000, 5.0));
        assert!(r.seek(100));
        assert_eq!(r.at(), (5000, 5.0));
        assert!(r.next());
        assert_eq!(r.at(), (6000, 6.0));
        assert!(!r.seek(20_000));
        // Identical replicas give exactly one copy.
        let got = all(ReplicaIterator::new(vec![it(a.clone()), it(a.clone())]));
        assert_eq!(got, a);
    }
}
