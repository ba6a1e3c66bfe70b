//! Bounded in-memory stores fed by the write path: metric metadata (type, help, unit per
//! metric family) for `/api/v1/metadata`, and exemplars for `/api/v1/query_exemplars`.
//!
//! Neither is persisted: like Prometheus's in-memory exemplar storage, both start empty after a
//! restart and fill again from incoming remote-write requests.

use std::collections::{BTreeMap, HashMap, VecDeque};

use parking_lot::RwLock;
use strata_tsdb::labels::matches_all;
use strata_tsdb::{Labels, Matcher};

/// One metadata entry of a metric family, serialized as Prometheus's `metadata.Metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub typ: String,
    pub help: String,
    pub unit: String,
}

/// Distinct metadata entries kept per family (a family written by several clients with
/// different help texts keeps the most recent ones).
const MAX_ENTRIES_PER_FAMILY: usize = 10;

/// Metadata by metric family, bounded in the number of families.
#[derive(Debug)]
pub struct MetadataStore {
    max_families: usize,
    inner: RwLock<BTreeMap<String, Vec<Metadata>>>,
}

impl MetadataStore {
    /// A store holding at most `max_families` families; further new families are ignored.
    pub fn new(max_families: usize) -> Self {
        Self {
            max_families,
            inner: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records metadata for `family`. Returns false when the store is full and the family is
    /// new (the entry was dropped).
    pub fn record(&self, family: &str, typ: &str, help: &str, unit: &str) -> bool {
        let md = Metadata {
            typ: typ.to_string(),
            help: help.to_string(),
            unit: unit.to_string(),
        };
        {
            let r = self.inner.read();
            if r.get(family).is_some_and(|v| v.last() == Some(&md)) {
                return true;
            }
        }
        let mut w = self.inner.write();
        if !w.contains_key(family) && w.len() >= self.max_families {
            return false;
        }
        let list = w.entry(family.to_string()).or_default();
        list.retain(|m| m != &md);
        list.push(md);
        if list.len() > MAX_ENTRIES_PER_FAMILY {
            list.remove(0);
        }
        true
    }

    /// Number of families held.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `/api/v1/metadata` answer: families (only `metric` when given), at most `limit`
    /// families (negative: no limit) and `limit_per_metric` entries each (<= 0: no limit).
    pub fn query(
        &self,
        metric: Option<&str>,
        limit: i64,
        limit_per_metric: i64,
    ) -> BTreeMap<String, Vec<Metadata>> {
        let r = self.inner.read();
        let mut out = BTreeMap::new();
        let iter: Box<dyn Iterator<Item = (&String, &Vec<Metadata>)>> = match metric {
            Some(m) => Box::new(r.get_key_value(m).into_iter()),
            None => Box::new(r.iter()),
        };
        for (name, list) in iter {
            if limit >= 0 && out.len() as i64 >= limit {
                break;
            }
            let mut v: Vec<Metadata> = list.iter().rev().cloned().collect();
            if limit_per_metric > 0 {
                v.truncate(limit_per_metric as usize);
            }
            out.insert(name.clone(), v);
        }
        out
    }
}

/// One exemplar of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds.
    pub ts: i64,
}

/// Why an exemplar was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExemplarReject {
    /// Same timestamp, value and labels as the series' newest exemplar.
    Duplicate,
    /// Older than the series' newest exemplar.
    OutOfOrder,
}

#[derive(Debug, Default)]
struct ExemplarInner {
    by_series: HashMap<Labels, VecDeque<Exemplar>>,
    /// Insertion order of every stored exemplar (by series), for eviction of the oldest.
    order: VecDeque<Labels>,
}

/// A circular buffer of exemplars (Prometheus's `--storage.exemplars.max-exemplars`, default
/// 100000): when full, the oldest exemplar of all is evicted.
#[derive(Debug)]
pub struct ExemplarStore {
    capacity: usize,
    inner: RwLock<ExemplarInner>,
}

/// Exemplars of one series, as returned by [`ExemplarStore::query`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    pub series_labels: Labels,
    pub exemplars: Vec<Exemplar>,
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: RwLock::new(ExemplarInner::default()),
        }
    }

    /// Stores an exemplar of `series`. Per series, exemplars must come in time order.
    pub fn record(
        &self,
        series: &Labels,
        labels: &Labels,
        value: f64,
        ts: i64,
    ) -> Result<(), ExemplarReject> {
        if self.capacity == 0 {
            return Ok(());
        }
        let mut w = self.inner.write();
        if let Some(last) = w.by_series.get(series).and_then(|q| q.back()) {
            if last.ts == ts && &last.labels == labels && last.value.to_bits() == value.to_bits() {
                return Err(ExemplarReject::Duplicate);
            }
            if ts < last.ts {
                return Err(ExemplarReject::OutOfOrder);
            }
        }
        while w.order.len() >= self.capacity {
            let Some(old) = w.order.pop_front() else {
                break;
            };
            if let Some(q) = w.by_series.get_mut(&old) {
                q.pop_front();
                if q.is_empty() {
                    w.by_series.remove(&old);
                }
            }
        }
        w.order.push_back(series.clone());
        w.by_series
            .entry(series.clone())
            .or_default()
            .push_back(Exemplar {
                labels: labels.clone(),
                value,
                ts,
            });
        Ok(())
    }

    /// Number of exemplars held.
    pub fn len(&self) -> usize {
        self.inner.read().order.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exemplars in `[start, end]` of series matching any of the matcher sets, sorted by
    /// series labels; series without exemplars in range are left out.
    pub fn query(
        &self,
        start: i64,
        end: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Vec<SeriesExemplars> {
        let r = self.inner.read();
        let mut out: Vec<SeriesExemplars> = r
            .by_series
            .iter()
            .filter(|(l, _)| matcher_sets.iter().any(|ms| matches_all(ms, l)))
            .filter_map(|(l, q)| {
                let ex: Vec<Exemplar> = q
                    .iter()
                    .filter(|e| e.ts >= start && e.ts <= end)
                    .cloned()
                    .collect();
                (!ex.is_empty()).then(|| SeriesExemplars {
                    series_labels: l.clone(),
                    exemplars: ex,
                })
            })
            .collect();
        out.sort_by(|a, b| a.series_labels.cmp(&b.series_labels));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits() {
        let s = MetadataStore::new(2);
        assert!(s.record("a", "counter", "help a", ""));
        assert!(s.record("a", "counter", "help a2", ""));
        assert!(s.record("b", "gauge", "help b", "bytes"));
        assert!(!s.record("c", "gauge", "", ""));
        assert_eq!(s.len(), 2);
        let all = s.query(None, -1, -1);
        assert_eq!(all["a"].len(), 2);
        assert_eq!(all["a"][0].help, "help a2");
        assert_eq!(s.query(None, 1, -1).len(), 1);
        assert_eq!(s.query(None, 0, -1).len(), 0);
        assert_eq!(s.query(None, -1, 1)["a"].len(), 1);
        assert_eq!(s.query(Some("b"), -1, -1)["b"][0].unit, "bytes");
        assert!(s.query(Some("zzz"), -1, -1).is_empty());
    }

    #[test]
    fn exemplar_ring() {
        let s = ExemplarStore::new(3);
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let b = Labels::from_pairs(&[("__name__", "b")]);
        let t = Labels::from_pairs(&[("trace_id", "x")]);
        s.record(&a, &t, 1.0, 10).unwrap();
        assert_eq!(s.record(&a, &t, 1.0, 10), Err(ExemplarReject::Duplicate));
        assert_eq!(s.record(&a, &t, 1.0, 5), Err(ExemplarReject::OutOfOrder));
        s.record(&a, &t, 2.0, 20).unwrap();
        s.record(&b, &t, 3.0, 30).unwrap();
        s.record(&b, &t, 4.0, 40).unwrap(); // evicts a@10
        assert_eq!(s.len(), 3);
        let all = vec![vec![Matcher::new(
            strata_tsdb::MatchType::Regexp,
            "__name__",
            ".+",
        )
        .unwrap()]];
        let r = s.query(i64::MIN, i64::MAX, &all);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].exemplars.len(), 1);
        assert_eq!(r[0].exemplars[0].ts, 20);
        let r = s.query(25, 35, &[vec![Matcher::equal("__name__", "b")]]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].exemplars[0].value, 3.0);
    }
}
