//! Merging: a k-way merge of several sorted series sets by labels (series with equal labels
//! from different sources become one series), and a sample iterator that merges several
//! iterators of one series in time order, keeping one sample per timestamp (on a conflict the
//! source listed first wins, which is how overlapping blocks are deduplicated).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::Result;
use crate::labels::{Labels, Matcher};
use crate::storage::{Querier, SampleIterator, SelectHints, Series, SeriesSet};

/// Merges series sets that are each sorted by labels into one sorted set.
pub fn merge_series_sets(mut sets: Vec<SeriesSet>) -> SeriesSet {
    match sets.len() {
        0 => Box::new(std::iter::empty()),
        1 => sets.pop().unwrap_or_else(|| Box::new(std::iter::empty())),
        _ => Box::new(MergedSeriesSet::new(sets)),
    }
}

struct HeapEntry {
    series: Box<dyn Series>,
    src: usize,
}

impl PartialEq for HeapEntry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapEntry {
    /// Reversed so the max-heap pops the smallest labels (then lowest source) first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.series
            .labels()
            .cmp(self.series.labels())
            .then_with(|| o.src.cmp(&self.src))
    }
}

struct MergedSeriesSet {
    sets: Vec<SeriesSet>,
    heap: BinaryHeap<HeapEntry>,
    primed: bool,
    pending_err: Option<crate::Error>,
}

impl MergedSeriesSet {
    fn new(sets: Vec<SeriesSet>) -> Self {
        Self {
            sets,
            heap: BinaryHeap::new(),
            primed: false,
            pending_err: None,
        }
    }

    fn pull(&mut self, src: usize) {
        match self.sets[src].next() {
            Some(Ok(series)) => self.heap.push(HeapEntry { series, src }),
            Some(Err(e)) if self.pending_err.is_none() => self.pending_err = Some(e),
            Some(Err(_)) => {}
            None => {}
        }
    }
}

impl Iterator for MergedSeriesSet {
    type Item = Result<Box<dyn Series>>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.sets.len() {
                self.pull(i);
            }
        }
        if let Some(e) = self.pending_err.take() {
            return Some(Err(e));
        }
        let first = self.heap.pop()?;
        self.pull(first.src);
        let mut group = vec![first.series];
        while let Some(top) = self.heap.peek() {
            if top.series.labels() != group[0].labels() {
                break;
            }
            let Some(e) = self.heap.pop() else { break };
            self.pull(e.src);
            group.push(e.series);
        }
        if group.len() == 1 {
            return group.pop().map(Ok);
        }
        let labels = group[0].labels().clone();
        Some(Ok(Box::new(MergedSeries {
            labels,
            parts: group.into_iter().map(Arc::from).collect(),
        })))
    }
}

/// One series assembled from several sources.
pub struct MergedSeries {
    labels: Labels,
    parts: Vec<Arc<dyn Series>>,
}

impl MergedSeries {
    pub fn new(labels: Labels, parts: Vec<Arc<dyn Series>>) -> Self {
        Self { labels, parts }
    }
}

impl Series for MergedSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn iterator(&self) -> Box<dyn SampleIterator> {
        Box::new(MergedIterator::new(
            self.parts.iter().map(|p| p.iterator()).collect(),
        ))
    }
}

/// Merges iterators of one series in time order; equal timestamps yield one sample, taken from
/// the iterator listed first. Each iterator's current sample is cached, so picking the next
/// sample costs one `next()` and one `at()` call on the source it comes from (when sources do
/// not overlap in time, e.g. consecutive blocks, this is a chain of them).
pub struct MergedIterator {
    its: Vec<Box<dyn SampleIterator>>,
    /// The current sample of each live iterator (`None` when it has none).
    heads: Vec<Option<(i64, f64)>>,
    /// Whether each iterator has been advanced at least once (so "not live" means exhausted).
    touched: bool,
    cur: (i64, f64),
    started: bool,
    err: Option<String>,
}

impl MergedIterator {
    pub fn new(its: Vec<Box<dyn SampleIterator>>) -> Self {
        let n = its.len();
        Self {
            its,
            heads: vec![None; n],
            touched: false,
            cur: (i64::MIN, 0.0),
            started: false,
            err: None,
        }
    }

    /// Advances iterator `i` (by `next`, or `seek(t)`) and caches its sample.
    fn advance(&mut self, i: usize, seek: Option<i64>) {
        let it = &mut self.its[i];
        let ok = match seek {
            Some(t) => it.seek(t),
            None => it.next(),
        };
        self.heads[i] = ok.then(|| it.at());
    }

    /// Picks the smallest current timestamp and advances every iterator sitting on it.
    fn settle(&mut self) -> bool {
        let mut best: Option<(usize, i64)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some((t, _)) = h {
                if best.is_none_or(|(_, bt)| *t < bt) {
                    best = Some((i, *t));
                }
            }
        }
        let Some((bi, bt)) = best else {
            for it in &self.its {
                if let Some(e) = it.err() {
                    self.err = Some(e);
                }
            }
            return false;
        };
        if let Some(h) = self.heads[bi] {
            self.cur = h;
        }
        for i in bi..self.its.len() {
            if self.heads[i].is_some_and(|h| h.0 == bt) {
                self.advance(i, None);
            }
        }
        true
    }
}

impl SampleIterator for MergedIterator {
    fn next(&mut self) -> bool {
        if !self.started {
            self.started = true;
            self.touched = true;
            for i in 0..self.its.len() {
                self.advance(i, None);
            }
        }
        self.settle()
    }

    fn seek(&mut self, t: i64) -> bool {
        if self.started && self.cur.0 >= t {
            return true;
        }
        self.started = true;
        for i in 0..self.its.len() {
            // A live iterator holds its next unread sample and seek never moves backwards, so
            // seeking it is safe; an untouched one starts fresh; a touched dead one is done.
            if self.heads[i].is_some() || !self.touched {
                self.advance(i, Some(t));
            }
        }
        self.touched = true;
        self.settle()
    }

    fn at(&self) -> (i64, f64) {
        self.cur
    }

    fn err(&self) -> Option<String> {
        self.err.clone()
    }
}

/// A querier over several queriers: selects from each and merges by labels; label names and
/// values are unions.
pub struct MergeQuerier {
    queriers: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    pub fn new(queriers: Vec<Box<dyn Querier>>) -> Self {
        Self { queriers }
    }
}

impl Querier for MergeQuerier {
    fn select(
        &self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> SeriesSet {
        if self.queriers.len() == 1 {
            return self.queriers[0].select(true, hints, matchers);
        }
        merge_series_sets(
            self.queriers
                .iter()
                .map(|q| q.select(true, hints, matchers))
                .collect(),
        )
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for q in &self.queriers {
            all.extend(q.label_values(name, matchers)?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for q in &self.queriers {
            all.extend(q.label_names(matchers)?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::VecSeries;

    fn set(v: Vec<(&str, Vec<(i64, f64)>)>) -> SeriesSet {
        let mut out: Vec<Result<Box<dyn Series>>> = Vec::new();
        for (name, s) in v {
            out.push(Ok(Box::new(VecSeries::new(
                Labels::from_pairs(&[("__name__", name)]),
                s,
            ))));
        }
        Box::new(out.into_iter())
    }

    fn collect(it: &mut dyn SampleIterator) -> Vec<(i64, f64)> {
        let mut v = Vec::new();
        while it.next() {
            v.push(it.at());
        }
        v
    }

    #[test]
    fn merges_by_labels_and_dedups_samples() {
        let a = set(vec![("a", vec![(1, 1.0), (3, 3.0)]), ("c", vec![(1, 1.0)])]);
        let b = set(vec![
            ("a", vec![(2, 2.0), (3, 30.0), (4, 4.0)]),
            ("b", vec![(5, 5.0)]),
        ]);
        let merged: Vec<_> = merge_series_sets(vec![a, b]).map(|s| s.unwrap()).collect();
        let names: Vec<_> = merged
            .iter()
            .map(|s| s.labels().get("__name__").unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let got = collect(&mut *merged[0].iterator());
        assert_eq!(got, vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
    }

    #[test]
    fn merged_iterator_seeks() {
        let a: Box<dyn SampleIterator> =
            VecSeries::new(Labels::empty(), vec![(1, 1.0), (5, 5.0), (9, 9.0)]).iterator();
        let b: Box<dyn SampleIterator> =
            VecSeries::new(Labels::empty(), vec![(2, 2.0), (6, 6.0)]).iterator();
        let mut m = MergedIterator::new(vec![a, b]);
        assert!(m.seek(4));
        assert_eq!(m.at(), (5, 5.0));
        assert!(m.seek(3));
        assert_eq!(m.at(), (5, 5.0));
        assert!(m.next());
        assert_eq!(m.at(), (6, 6.0));
        assert!(m.seek(7));
        assert_eq!(m.at(), (9, 9.0));
        assert!(!m.next());
    }
}
