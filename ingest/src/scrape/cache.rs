//! The per-target scrape cache (Prometheus's `scrapeCache`): exposed series text → storage
//! reference and final labels, so a series seen before is appended by reference without
//! rebuilding its labels; the exposed series dropped by metric relabeling; and the references
//! appended in the current and the previous scrape, whose difference gets staleness markers.

use strata_tsdb::fasthash::FastMap;

use strata_tsdb::storage::SeriesRef;
use strata_tsdb::Labels;

use crate::textparse::{MetricType, Sample};

/// What the cache knows about one exposed series.
#[derive(Debug, Clone)]
pub(crate) struct CacheEntry {
    pub r: SeriesRef,
    pub labels: Labels,
    pub last_iter: u64,
}

/// Number of synthetic report series (`up`, `scrape_duration_seconds`, ...).
pub(crate) const REPORT_SERIES: usize = 5;

#[derive(Debug, Default)]
pub(crate) struct ScrapeCache {
    /// Current scrape iteration.
    pub iter: u64,
    /// Size of the caches after the last successful scrape.
    successful_count: usize,
    series: FastMap<String, CacheEntry>,
    dropped: FastMap<String, u64>,
    /// Series appended (without an explicit timestamp) in the current scrape.
    pub cur: FastMap<SeriesRef, Labels>,
    /// The same for the previous scrape.
    pub prev: FastMap<SeriesRef, Labels>,
    /// References of the synthetic report series.
    pub report_refs: [Option<SeriesRef>; REPORT_SERIES],
    /// Metric metadata of the target's families, as last exposed, with the iteration that
    /// last exposed it.
    metadata: FastMap<String, (FamilyMetadata, u64)>,
    /// Families whose metadata changed in the current scrape.
    metadata_changed: Vec<String>,
}

/// A family's `# TYPE`, `# HELP` and `# UNIT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyMetadata {
    pub typ: MetricType,
    pub help: String,
    pub unit: String,
}

/// Writes an unambiguous key for the exposed series of `s` into `buf` (the stand-in for
/// Prometheus's raw series bytes): every part length-prefixed, labels in exposition order.
pub(crate) fn series_key(s: &Sample<'_>, buf: &mut String) {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{}:", s.name.len());
    buf.push_str(&s.name);
    for (n, v) in &s.labels {
        let _ = write!(buf, "{}:", n.len());
        buf.push_str(n);
        let _ = write!(buf, "{}:", v.len());
        buf.push_str(v);
    }
}

impl ScrapeCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a metadata line of the current scrape for `family`; `f` updates the family's
    /// metadata and says whether it changed.
    pub fn set_metadata(&mut self, family: &str, f: impl FnOnce(&mut FamilyMetadata) -> bool) {
        let iter = self.iter;
        let new = !self.metadata.contains_key(family);
        let (m, seen) = match self.metadata.get_mut(family) {
            Some(e) => e,
            None => self.metadata.entry(family.to_string()).or_default(),
        };
        *seen = iter;
        if (f(m) || new) && !self.metadata_changed.iter().any(|c| c == family) {
            self.metadata_changed.push(family.to_string());
        }
    }

    /// The families whose metadata changed since the last call, with their metadata.
    pub fn take_metadata_changes(&mut self) -> Vec<(String, FamilyMetadata)> {
        let changed = std::mem::take(&mut self.metadata_changed);
        changed
            .into_iter()
            .filter_map(|f| self.metadata.get(&f).map(|(m, _)| (f, m.clone())))
            .collect()
    }

    /// Whether this exposed series was dropped by relabeling before (and marks it seen).
    pub fn get_dropped(&mut self, key: &str) -> bool {
        match self.dropped.get_mut(key) {
            Some(it) => {
                *it = self.iter;
                true
            }
            None => false,
        }
    }

    pub fn add_dropped(&mut self, key: &str) {
        self.dropped.insert(key.to_string(), self.iter);
    }

    /// The entry for `key`, whether it was already seen in this scrape; marks it seen.
    pub fn get(&mut self, key: &str) -> Option<(&mut CacheEntry, bool)> {
        let iter = self.iter;
        self.series.get_mut(key).map(|e| {
            let already = e.last_iter == iter;
            e.last_iter = iter;
            (e, already)
        })
    }

    pub fn add(&mut self, key: &str, r: SeriesRef, labels: Labels) {
        let e = CacheEntry {
            r,
            labels,
            last_iter: self.iter,
        };
        self.series.insert(key.to_string(), e);
    }

    /// Re-keys staleness tracking when a series' reference changed (the storage recreated it).
    pub fn move_ref(&mut self, old: SeriesRef, new: SeriesRef) {
        for m in [&mut self.cur, &mut self.prev] {
            if let Some(l) = m.remove(&old) {
                m.insert(new, l);
            }
        }
    }

    pub fn track(&mut self, r: SeriesRef, labels: &Labels) {
        self.cur.insert(r, labels.clone());
    }

    /// Series of the previous scrape not seen in this one.
    pub fn stale(&self) -> Vec<(SeriesRef, Labels)> {
        self.prev
            .iter()
            .filter(|(r, _)| !self.cur.contains_key(r))
            .map(|(r, l)| (*r, l.clone()))
            .collect()
    }

    /// Ends a scrape iteration. `flush` (after a successful non-empty scrape, or when the
    /// caches doubled since the last one) forgets entries not seen in this scrape.
    pub fn iter_done(&mut self, mut flush: bool) {
        let count = self.series.len() + self.dropped.len();
        if flush {
            self.successful_count = count;
        } else if count > self.successful_count * 2 + 1000 {
            flush = true;
        }
        if flush {
            let iter = self.iter;
            self.series.retain(|_, e| e.last_iter == iter);
            self.dropped.retain(|_, it| *it == iter);
            self.metadata.retain(|_, (_, it)| *it == iter);
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.cur.clear();
        self.iter += 1;
    }

    /// The state a restarted loop inherits: staleness tracking and report references, but not
    /// the label cache (labels depend on the settings that changed).
    pub fn handover(self) -> ScrapeCache {
        ScrapeCache {
            prev: self.prev,
            report_refs: self.report_refs,
            iter: self.iter,
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        let a = Sample {
            name: "a".into(),
            labels: vec![("b".into(), "c".into())],
            value: 1.0,
            timestamp_ms: None,
            exemplar: None,
        };
        let b = Sample {
            name: "a1:b".into(),
            labels: vec![],
            ..a.clone()
        };
        let (mut ka, mut kb) = (String::new(), String::new());
        series_key(&a, &mut ka);
        series_key(&b, &mut kb);
        assert_ne!(ka, kb);
    }

    #[test]
    fn staleness_and_flush() {
        let mut c = ScrapeCache::new();
        let l = Labels::from_pairs(&[("__name__", "x")]);
        c.add("x", 1, l.clone());
        c.track(1, &l);
        c.add("y", 2, l.clone());
        c.track(2, &l);
        c.iter_done(true);
        assert!(c.stale().len() == 2 && c.cur.is_empty());
        assert!(c.get("x").is_some());
        c.track(1, &l);
        let st = c.stale();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].0, 2);
        c.iter_done(true);
        // "y" was not seen: flushed.
        assert_eq!(c.len(), 1);
        assert!(c.get("y").is_none());
    }
}
