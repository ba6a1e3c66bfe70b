//! The head appender: validates samples against the series as committed (and against earlier
//! samples of the same batch), buffers them, and on commit writes the series and samples
//! records to the WAL before applying them to the in-memory series.
//!
//! [`HeadAppender::append_pairs`] finds a series from borrowed `(name, value)` pairs (hashing
//! them exactly as [`Labels::stable_hash`] does and comparing them with the stored labels), so
//! appending to an existing series allocates nothing; only a new series builds a [`Labels`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::series::{ChunkData, Fit, HeadChunk, MemSeries, HEAD_ENCODING};
use super::Head;
use crate::error::{Error, Result};
use crate::labels::{Label, Labels};
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
    last: HashMap<SeriesRef, (i64, u64), BuildRefHasher>,
    wal_buf: Vec<u8>,
    /// Scratch for hashing borrowed label pairs in one call.
    hash_buf: Vec<u8>,
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
            last: HashMap::default(),
            wal_buf: Vec::new(),
            hash_buf: Vec::new(),
        }
    }

    /// Allows samples as old as `t` (backfill into an empty in-memory head).
    pub fn set_min_valid_time(&mut self, t: i64) {
        self.min_valid = t;
    }

    /// Appends a sample for the series with these labels, given as borrowed `(name, value)`
    /// pairs: the same result as [`Appender::append`] with `Labels::from_pairs(pairs)`, but an
    /// existing series is found without allocating. Pairs that are sorted by name, unique and
    /// have non-empty values take the fast path; anything else is normalised through
    /// [`Labels::from_pairs`] first.
    pub fn append_pairs(&mut self, pairs: &[(&str, &str)], t: i64, v: f64) -> Result<SeriesRef> {
        let canonical =
            pairs.windows(2).all(|w| w[0].0 < w[1].0) && pairs.iter().all(|(_, v)| !v.is_empty());
        if !canonical {
            return self.append(&Labels::from_pairs(pairs), t, v);
        }
        if pairs.is_empty() {
            return Err(Error::InvalidLabels("empty label set".into()));
        }
        let s = self.head.get_or_create_pairs(pairs, &mut self.hash_buf)?;
        self.add(s, t, v)
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

/// Hashes a [`SeriesRef`] (already well distributed: handed out in sequence) with one multiply
/// instead of SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct RefHasher(u64);

impl std::hash::Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type BuildRefHasher = std::hash::BuildHasherDefault<RefHasher>;

/// [`Labels::stable_hash`] computed from borrowed pairs (sorted, unique, non-empty values):
/// the same bytes laid out in `buf`, then hashed in one call (much cheaper than four streaming
/// updates per label).
pub(crate) fn pairs_stable_hash(pairs: &[(&str, &str)], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for (n, v) in pairs {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(buf, 0)
}

/// Byte equality without a `memcmp` call per (short) label string.
#[inline]
fn short_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    fn word(x: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(x);
        u64::from_ne_bytes(w)
    }
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        if word(x) != word(y) {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

fn labels_eq_pairs(labels: &Labels, pairs: &[(&str, &str)]) -> bool {
    labels.len() == pairs.len()
        && labels
            .iter()
            .zip(pairs)
            .all(|(l, (n, v))| short_eq(&l.name, n) && short_eq(&l.value, v))
}

impl Head {
    /// The series with these (sorted, unique, non-empty-valued) pairs as labels, if it exists.
    fn series_by_pairs(&self, pairs: &[(&str, &str)], hash: u64) -> Option<Arc<MemSeries>> {
        let shard = self.hashes[Self::hash_shard(hash)].read();
        let s = shard.one.get(&hash)?;
        if labels_eq_pairs(&s.labels, pairs) {
            return Some(s.clone());
        }
        shard.more.get(&hash).and_then(|v| {
            v.iter()
                .find(|s| labels_eq_pairs(&s.labels, pairs))
                .cloned()
        })
    }

    /// [`Head::get_or_create`] from borrowed pairs (sorted, unique, non-empty values); builds a
    /// [`Labels`] only when the series does not exist yet.
    pub(crate) fn get_or_create_pairs(
        &self,
        pairs: &[(&str, &str)],
        hash_buf: &mut Vec<u8>,
    ) -> Result<Arc<MemSeries>> {
        let hash = pairs_stable_hash(pairs, hash_buf);
        if let Some(s) = self.series_by_pairs(pairs, hash) {
            return Ok(s);
        }
        let labels = Labels::from_sorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect());
        Ok(self.get_or_create(&labels, None)?.0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadOptions;
    use crate::storage::Appender;

    #[test]
    fn pairs_hash_matches_labels_hash() {
        let pairs = [("__name__", "up"), ("job", "a\u{ff}b"), ("zone", "z")];
        let mut buf = Vec::new();
        assert_eq!(
            pairs_stable_hash(&pairs, &mut buf),
            Labels::from_pairs(&pairs).stable_hash()
        );
        assert_eq!(
            pairs_stable_hash(&[], &mut buf),
            Labels::empty().stable_hash()
        );
        // Long enough for several 32-byte stripes.
        let long = [
            ("__name__", "a_rather_long_metric_name_total"),
            ("pod", "x".repeat(100).leak() as &str),
        ];
        assert_eq!(
            pairs_stable_hash(&long, &mut buf),
            Labels::from_pairs(&long).stable_hash()
        );
    }

    #[test]
    fn append_pairs_finds_the_series_append_created() {
        let head = Head::in_memory(HeadOptions::default());
        let mut app = head.appender();
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        let r = app.append(&labels, 1000, 1.0).expect("append");
        let r2 = app
            .append_pairs(&[("__name__", "up"), ("job", "x")], 2000, 2.0)
            .expect("append_pairs");
        assert_eq!(r, r2);
        // Unsorted, with an empty value: normalised, same series.
        let r3 = app
            .append_pairs(&[("job", "x"), ("a", ""), ("__name__", "up")], 3000, 3.0)
            .expect("append_pairs");
        assert_eq!(r, r3);
        // A new series through pairs, then found by labels.
        let r4 = app
            .append_pairs(&[("__name__", "up"), ("job", "y")], 1000, 1.0)
            .expect("append_pairs");
        assert_ne!(r, r4);
        let r5 = app
            .append(
                &Labels::from_pairs(&[("job", "y"), ("__name__", "up")]),
                2000,
                1.0,
            )
            .expect("append");
        assert_eq!(r4, r5);
        assert!(matches!(
            app.append_pairs(&[], 1000, 1.0),
            Err(Error::InvalidLabels(_))
        ));
        app.commit().expect("commit");
        assert_eq!(head.stats.series_created.load(Ordering::Relaxed), 2);
        // Order rules apply as with `append`.
        let mut app = head.appender();
        assert!(matches!(
            app.append_pairs(&[("__name__", "up"), ("job", "x")], 3000, 4.0),
            Err(Error::DuplicateSampleForTimestamp)
        ));
    }

    #[test]
    fn append_pairs_distinguishes_hash_collisions() {
        // Force a "collision" by inserting a series under another series' hash.
        let head = Head::in_memory(HeadOptions::default());
        let a = [("__name__", "a")];
        let b = [("__name__", "b")];
        let (sb, _) = head
            .get_or_create(&Labels::from_pairs(&b), None)
            .expect("create");
        let hash_a = pairs_stable_hash(&a, &mut Vec::new());
        head.hashes[Head::hash_shard(hash_a)]
            .write()
            .one
            .insert(hash_a, sb.clone());
        let mut app = head.appender();
        let ra = app.append_pairs(&a, 1000, 1.0).expect("append");
        assert_ne!(ra, sb.r);
        let again = app.append_pairs(&a, 2000, 1.0).expect("append");
        assert_eq!(ra, again);
    }
}
