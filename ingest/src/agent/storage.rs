//! The agent's storage: a write-ahead log in Prometheus's format and an in-memory series table,
//! nothing else (no chunks, no queries), like Prometheus's agent DB (`tsdb/agent`).
//!
//! * Series table: labels → series, ref → series, and per series the newest committed
//!   timestamp and the newest segment that references it. Rebuilt on [`AgentStorage::open`]
//!   from the last checkpoint and the segments after it.
//! * [`AgentAppender`]: `append` finds or creates the series (the ref is assigned at once) and
//!   rejects a sample older than the series' newest committed timestamp with
//!   [`strata_tsdb::Error::OutOfOrderSample`] (counted in [`StorageStats::out_of_order`]),
//!   as Prometheus's agent does. `commit` writes one series record for every series of the
//!   batch that has no series record in the WAL yet (new, or collected by a truncation since),
//!   then one samples record; samples out of order *within* the batch are dropped and counted.
//! * Durability: `commit` returns after the records were handed to the OS with `write(2)`, so
//!   what `commit` acknowledged survives a crash or `kill -9` of the process. It survives a
//!   power loss or kernel crash once fsynced: with [`AgentOptions::sync_interval`] zero every
//!   commit fsyncs; otherwise a commit fsyncs when the last fsync is at least that old, and
//!   [`AgentStorage::sync_if_dirty`] (called by the agent on the same interval) covers the rest,
//!   so at most about one interval of acknowledged data is exposed to a power loss.
//! * Watchers: after each commit the storage publishes the committed end of the WAL
//!   ([`AgentStorage::committed`]) and wakes the remote-write watchers
//!   ([`AgentStorage::wait_for_commit`]).
//! * Truncation ([`AgentStorage::truncate`]): removes a prefix of finished segments that every
//!   queue delivered and that holds no sample newer than `now - min_wal_age`, or that holds no
//!   sample newer than `now - max_wal_age` regardless of delivery (data older than
//!   `max_wal_age` may be lost when a remote is down that long). Series referenced only by the
//!   removed segments are dropped from memory; the others are kept in a checkpoint
//!   (`checkpoint.NNNNNNNN`, series records only) so that watchers can still resolve refs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use strata_tsdb::storage::{Appender, SeriesRef};
use strata_tsdb::wal::{
    self, checkpoint, decode_samples, decode_series, encode_samples, encode_series,
    last_checkpoint, record_type, RecordType, RefSample, RefSeries, Wal, WalReader,
};
use strata_tsdb::{Error as TsdbError, Labels};

use super::position::WalPosition;
use crate::error::Result;

/// Options of [`AgentStorage::open`].
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// WAL segment size in bytes (a multiple of 32 KiB).
    pub segment_size: usize,
    /// Data older than this may be truncated even if not delivered (Prometheus's
    /// `--storage.agent.retention.max-time`); zero means no maximum.
    pub max_wal_age: Duration,
    /// Data younger than this is kept even when delivered (`--storage.agent.retention.min-time`).
    pub min_wal_age: Duration,
    /// Snappy-compress WAL records.
    pub wal_compression: bool,
    /// Upper bound on the age of acknowledged but not fsynced data (see the module docs);
    /// zero fsyncs on every commit.
    pub sync_interval: Duration,
    /// How often the agent truncates the WAL (`--storage.agent.wal-truncate-frequency`).
    pub truncate_frequency: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            segment_size: wal::DEFAULT_SEGMENT_SIZE,
            max_wal_age: Duration::from_secs(4 * 3600),
            min_wal_age: Duration::from_secs(5 * 60),
            wal_compression: true,
            sync_interval: Duration::from_millis(100),
            truncate_frequency: Duration::from_secs(2 * 3600),
        }
    }
}

/// Counters of the storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Series in memory.
    pub series: u64,
    /// Samples written to the WAL.
    pub samples_appended: u64,
    /// Samples rejected or dropped as out of order.
    pub out_of_order: u64,
    /// Successful commits.
    pub commits: u64,
    /// Truncations that removed segments.
    pub truncations: u64,
    /// fsyncs of WAL segments.
    pub fsyncs: u64,
}

/// What one [`AgentStorage::truncate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruncateStats {
    /// Segments `< before` were removed (`None`: nothing removed).
    pub removed_before: Option<u64>,
    /// Series dropped from memory.
    pub series_dropped: usize,
    /// Series kept in the checkpoint.
    pub series_kept: usize,
}

#[derive(Debug)]
struct MemSeries {
    r: u64,
    labels: Labels,
    /// Newest committed timestamp.
    last_ts: AtomicI64,
    /// Newest segment holding a record that references the series.
    last_seg: AtomicU64,
    /// A series record for it is in the WAL (since the last truncation that dropped it).
    logged: AtomicBool,
}

#[derive(Default)]
struct SeriesTable {
    by_ref: strata_tsdb::fasthash::FastMap<u64, Arc<MemSeries>>,
    by_hash: strata_tsdb::fasthash::FastMap<u64, Vec<Arc<MemSeries>>>,
}

impl SeriesTable {
    fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        self.by_hash
            .get(&hash)
            .and_then(|v| v.iter().find(|s| &s.labels == labels))
    }

    fn insert(&mut self, s: Arc<MemSeries>) {
        let hash = s.labels.stable_hash();
        let bucket = self.by_hash.entry(hash).or_default();
        if !bucket.iter().any(|o| o.labels == s.labels) {
            bucket.push(s.clone());
        }
        self.by_ref.insert(s.r, s);
    }

    fn remove(&mut self, s: &MemSeries) {
        self.by_ref.remove(&s.r);
        let hash = s.labels.stable_hash();
        if let Some(bucket) = self.by_hash.get_mut(&hash) {
            bucket.retain(|o| o.r != s.r);
            if bucket.is_empty() {
                self.by_hash.remove(&hash);
            }
        }
    }
}

struct WalState {
    wal: Wal,
    /// Newest sample timestamp per segment.
    seg_max_t: BTreeMap<u64, i64>,
    last_sync: Instant,
    dirty: bool,
    closed: bool,
}

/// The agent's storage. See the module docs.
pub struct AgentStorage {
    dir: PathBuf,
    wal_dir: PathBuf,
    opts: AgentOptions,
    series: RwLock<SeriesTable>,
    next_ref: AtomicU64,
    wal: Mutex<WalState>,
    committed: Mutex<WalPosition>,
    commit_cv: Condvar,
    samples_appended: AtomicU64,
    out_of_order: AtomicU64,
    commits: AtomicU64,
    truncations: AtomicU64,
    /// Serialises truncations (checkpoints must not run concurrently).
    truncate_lock: Mutex<()>,
    /// The directory lock (`<dir>/lock`), held while the storage is open.
    _dir_lock: std::fs::File,
}

impl std::fmt::Debug for AgentStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStorage")
            .field("dir", &self.dir)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AgentStorage {
    /// Opens (creating it if needed) the agent storage in `dir`; the WAL is `dir/wal`.
    /// Replays the last checkpoint and the segments after it (repairing a torn tail as
    /// [`Wal::open`] does) and starts a new segment.
    pub fn open(dir: &Path, opts: AgentOptions) -> Result<Arc<AgentStorage>> {
        let wal_dir = dir.join(wal::WAL_DIR_NAME);
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| TsdbError::io("create WAL directory", &wal_dir, e))?;
        let dir_lock = strata_tsdb::db::lock_dir(dir)?;
        let mut table = SeriesTable::default();
        let mut seg_max_t = BTreeMap::new();
        let mut max_ref = 0u64;
        let mut series_buf = Vec::new();
        let mut samples_buf = Vec::new();
        let mut intern = crate::intern::intern;
        let mut replay = |seg: u64, rec: &[u8], table: &mut SeriesTable| {
            match record_type(rec) {
                RecordType::Series => {
                    series_buf.clear();
                    if let Err(e) = decode_series(rec, &mut series_buf, &mut intern) {
                        tracing::warn!(segment = seg, error = %e, "skipping undecodable WAL series record");
                        return;
                    }
                    for s in series_buf.drain(..) {
                        max_ref = max_ref.max(s.r);
                        let ms = Arc::new(MemSeries {
                            r: s.r,
                            labels: s.labels,
                            last_ts: AtomicI64::new(i64::MIN),
                            last_seg: AtomicU64::new(seg),
                            logged: AtomicBool::new(true),
                        });
                        if let Some(old) = table.by_ref.get(&s.r) {
                            ms.last_ts
                                .store(old.last_ts.load(Ordering::Relaxed), Ordering::Relaxed);
                        }
                        let old = table.get(ms.labels.stable_hash(), &ms.labels).cloned();
                        if let Some(old) = old {
                            // The same labels under another ref (re-created after a
                            // truncation): the newer ref wins for new appends.
                            if old.r != ms.r {
                                table.remove(&old);
                                table.by_ref.insert(old.r, old);
                            }
                        }
                        table.insert(ms);
                    }
                }
                RecordType::Samples => {
                    samples_buf.clear();
                    if let Err(e) = decode_samples(rec, &mut samples_buf) {
                        tracing::warn!(segment = seg, error = %e, "skipping undecodable WAL samples record");
                        return;
                    }
                    let mut seg_max = i64::MIN;
                    for s in &samples_buf {
                        if let Some(ms) = table.by_ref.get(&s.r) {
                            ms.last_ts.fetch_max(s.t, Ordering::Relaxed);
                            ms.last_seg.store(seg, Ordering::Relaxed);
                        }
                        seg_max = seg_max.max(s.t);
                    }
                    let e = seg_max_t.entry(seg).or_insert(i64::MIN);
                    *e = (*e).max(seg_max);
                }
                _ => {}
            }
        };
        if let Some((cp_dir, cp_idx)) = last_checkpoint(&wal_dir)? {
            let mut reader = WalReader::open(&cp_dir)?;
            while let Some(rec) = reader.next_record().map_err(TsdbError::from)? {
                replay(cp_idx, rec, &mut table);
            }
        }
        let mut w = Wal::open_with_replay(&wal_dir, opts.segment_size, |seg, rec| {
            replay(seg, rec, &mut table);
            Ok(())
        })?;
        w.set_compression(opts.wal_compression);
        let committed = {
            let (s, o) = w.last_segment_and_offset();
            WalPosition::new(s, o)
        };
        tracing::info!(
            dir = %dir.display(),
            series = table.by_ref.len(),
            segment = committed.segment,
            "agent storage opened"
        );
        Ok(Arc::new(AgentStorage {
            dir: dir.to_path_buf(),
            wal_dir,
            opts,
            series: RwLock::new(table),
            next_ref: AtomicU64::new(max_ref + 1),
            wal: Mutex::new(WalState {
                wal: w,
                seg_max_t,
                last_sync: Instant::now(),
                dirty: false,
                closed: false,
            }),
            committed: Mutex::new(committed),
            commit_cv: Condvar::new(),
            samples_appended: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            truncations: AtomicU64::new(0),
            truncate_lock: Mutex::new(()),
            _dir_lock: dir_lock,
        }))
    }

    /// The agent's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The WAL directory (`dir/wal`).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// The options the storage was opened with.
    pub fn options(&self) -> &AgentOptions {
        &self.opts
    }

    /// A new appender.
    pub fn appender(&self) -> AgentAppender<'_> {
        AgentAppender {
            storage: self,
            pending: Vec::new(),
        }
    }

    /// The end of the last committed record (everything before it is whole and written).
    pub fn committed(&self) -> WalPosition {
        *self.committed.lock()
    }

    /// Blocks until the committed position differs from `seen` or `timeout` passes; returns
    /// the committed position.
    pub fn wait_for_commit(&self, seen: WalPosition, timeout: Duration) -> WalPosition {
        let mut g = self.committed.lock();
        if *g == seen {
            let _ = self.commit_cv.wait_for(&mut g, timeout);
        }
        *g
    }

    /// Wakes every thread blocked in [`AgentStorage::wait_for_commit`].
    pub fn wake_watchers(&self) {
        let _g = self.committed.lock();
        self.commit_cv.notify_all();
    }

    /// Counters.
    pub fn stats(&self) -> StorageStats {
        let fsyncs = self.wal.lock().wal.fsync_count();
        StorageStats {
            series: self.series.read().by_ref.len() as u64,
            samples_appended: self.samples_appended.load(Ordering::Relaxed),
            out_of_order: self.out_of_order.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            truncations: self.truncations.load(Ordering::Relaxed),
            fsyncs,
        }
    }

    /// The labels of series `r`, if it is in memory.
    pub fn series_labels(&self, r: SeriesRef) -> Option<Labels> {
        self.series.read().by_ref.get(&r).map(|s| s.labels.clone())
    }

    /// fsyncs the active segment if a commit since the last fsync left it unsynced.
    pub fn sync_if_dirty(&self) -> Result<()> {
        let mut st = self.wal.lock();
        if st.dirty && !st.closed {
            st.wal.sync()?;
            st.dirty = false;
            st.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Flushes, fsyncs and closes the WAL; later commits fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        let mut st = self.wal.lock();
        if !st.closed {
            st.closed = true;
            st.wal.close()?;
        }
        Ok(())
    }

    fn get_or_create(&self, labels: &Labels) -> Result<Arc<MemSeries>> {
        let hash = labels.stable_hash();
        if let Some(s) = self.series.read().get(hash, labels) {
            return Ok(s.clone());
        }
        if labels.is_empty() {
            return Err(TsdbError::InvalidLabels("empty label set".into()).into());
        }
        if let Some(w) = labels
            .as_slice()
            .windows(2)
            .find(|w| w[0].name == w[1].name)
        {
            return Err(
                TsdbError::InvalidLabels(format!("duplicate label name {:?}", w[0].name)).into(),
            );
        }
        let mut t = self.series.write();
        if let Some(s) = t.get(hash, labels) {
            return Ok(s.clone());
        }
        let seg = self.committed().segment;
        let s = Arc::new(MemSeries {
            r: self.next_ref.fetch_add(1, Ordering::Relaxed),
            labels: labels.clone(),
            last_ts: AtomicI64::new(i64::MIN),
            last_seg: AtomicU64::new(seg),
            logged: AtomicBool::new(false),
        });
        t.insert(s.clone());
        Ok(s)
    }

    fn commit_batch(&self, pending: &mut Vec<(Arc<MemSeries>, i64, f64)>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut st = self.wal.lock();
        if st.closed {
            return Err(TsdbError::Closed.into());
        }
        let mut new_series = Vec::new();
        let mut samples = Vec::with_capacity(pending.len());
        let mut dropped = 0u64;
        let mut max_t = i64::MIN;
        for (s, t, v) in pending.iter() {
            if !s.logged.swap(true, Ordering::Relaxed) {
                new_series.push(RefSeries {
                    r: s.r,
                    labels: s.labels.clone(),
                });
                let mut tab = self.series.write();
                if !tab.by_ref.contains_key(&s.r) {
                    tab.insert(s.clone());
                }
            }
            if *t < s.last_ts.load(Ordering::Relaxed) {
                dropped += 1;
                continue;
            }
            s.last_ts.store(*t, Ordering::Relaxed);
            max_t = max_t.max(*t);
            samples.push(RefSample {
                r: s.r,
                t: *t,
                v: *v,
            });
        }
        let mut series_rec = Vec::new();
        let mut samples_rec = Vec::new();
        let mut recs: Vec<&[u8]> = Vec::with_capacity(2);
        if !new_series.is_empty() {
            encode_series(&new_series, &mut series_rec);
            recs.push(&series_rec);
        }
        if !samples.is_empty() {
            encode_samples(&samples, &mut samples_rec);
            recs.push(&samples_rec);
        }
        let res = st.wal.log(&recs);
        if let Err(e) = res {
            // Whatever was not written must get its series record again.
            for s in &new_series {
                if let Some(ms) = self.series.read().by_ref.get(&s.r) {
                    ms.logged.store(false, Ordering::Relaxed);
                }
            }
            return Err(e.into());
        }
        let (seg, off) = st.wal.last_segment_and_offset();
        if max_t != i64::MIN {
            let e = st.seg_max_t.entry(seg).or_insert(i64::MIN);
            *e = (*e).max(max_t);
        }
        for (s, _, _) in pending.iter() {
            s.last_seg.store(seg, Ordering::Relaxed);
        }
        if self.opts.sync_interval.is_zero() || st.last_sync.elapsed() >= self.opts.sync_interval {
            st.wal.sync()?;
            st.last_sync = Instant::now();
            st.dirty = false;
        } else {
            st.dirty = true;
        }
        drop(st);
        self.out_of_order.fetch_add(dropped, Ordering::Relaxed);
        self.samples_appended
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        pending.clear();
        self.publish(WalPosition::new(seg, off));
        Ok(())
    }

    fn publish(&self, pos: WalPosition) {
        let mut g = self.committed.lock();
        if pos > *g {
            *g = pos;
        }
        drop(g);
        self.commit_cv.notify_all();
    }

    /// Truncates the WAL (see the module docs). `delivered` is the lowest delivered position
    /// of all remote-write queues (`None` when there are none: only the ages count);
    /// `now_ms` is the current time in milliseconds. Starts a new segment first when the
    /// active one holds data, so that it can be removed next time.
    pub fn truncate(&self, delivered: Option<WalPosition>, now_ms: i64) -> Result<TruncateStats> {
        let _one_at_a_time = self.truncate_lock.lock();
        let min_keep = now_ms.saturating_sub(self.opts.min_wal_age.as_millis() as i64);
        let max_keep = if self.opts.max_wal_age.is_zero() {
            i64::MIN
        } else {
            now_ms.saturating_sub(self.opts.max_wal_age.as_millis() as i64)
        };
        // Under the WAL lock: pick the segments, roll the active one, collect garbage.
        let (first, last, keep) = {
            let mut st = self.wal.lock();
            if st.closed {
                return Err(TsdbError::Closed.into());
            }
            let (first, active) = st.wal.segments()?;
            let mut last = None;
            for seg in first..active {
                let seg_max = st.seg_max_t.get(&seg).copied().unwrap_or(i64::MIN);
                let done = delivered.is_none_or(|d| seg < d.segment);
                let ok = (done && seg_max < min_keep) || seg_max < max_keep;
                if !ok {
                    break;
                }
                last = Some(seg);
            }
            let (_, off) = st.wal.last_segment_and_offset();
            if off > 0 {
                let next = st.wal.next_segment()?;
                drop(st);
                self.publish(WalPosition::new(next, 0));
                st = self.wal.lock();
            }
            let Some(last) = last else {
                return Ok(TruncateStats::default());
            };
            let mut tab = self.series.write();
            let gone: Vec<Arc<MemSeries>> = tab
                .by_ref
                .values()
                .filter(|s| s.last_seg.load(Ordering::Relaxed) <= last)
                .cloned()
                .collect();
            for s in &gone {
                tab.remove(s);
                s.logged.store(false, Ordering::Relaxed);
            }
            let keep: HashSet<u64> = tab.by_ref.keys().copied().collect();
            drop(tab);
            drop(st);
            (first, last, (keep, gone.len()))
        };
        let (keep, dropped) = keep;
        // The segments up to `last` are finished: no lock needed to read them.
        checkpoint(&self.wal_dir, first, last, |r| keep.contains(&r), i64::MAX)?;
        {
            let mut st = self.wal.lock();
            st.wal.truncate(last + 1)?;
            st.seg_max_t = st.seg_max_t.split_off(&(last + 1));
        }
        self.truncations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            before = last + 1,
            series_dropped = dropped,
            series_kept = keep.len(),
            "agent WAL truncated"
        );
        Ok(TruncateStats {
            removed_before: Some(last + 1),
            series_dropped: dropped,
            series_kept: keep.len(),
        })
    }

    /// [`AgentStorage::truncate`] at the current wall-clock time.
    pub fn truncate_now(&self, delivered: Option<WalPosition>) -> Result<TruncateStats> {
        self.truncate(delivered, now_ms())
    }
}

/// The appender of [`AgentStorage`]; see the module docs.
pub struct AgentAppender<'a> {
    storage: &'a AgentStorage,
    pending: Vec<(Arc<MemSeries>, i64, f64)>,
}

impl AgentAppender<'_> {
    fn check(&self, s: &MemSeries, t: i64) -> strata_tsdb::Result<()> {
        if t < s.last_ts.load(Ordering::Relaxed) {
            self.storage.out_of_order.fetch_add(1, Ordering::Relaxed);
            return Err(TsdbError::OutOfOrderSample);
        }
        Ok(())
    }
}

fn to_tsdb(e: crate::Error) -> TsdbError {
    match e {
        crate::Error::Storage(e) => e,
        other => TsdbError::Invalid(other.to_string()),
    }
}

impl Appender for AgentAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> strata_tsdb::Result<SeriesRef> {
        let s = self.storage.get_or_create(labels).map_err(to_tsdb)?;
        self.check(&s, t)?;
        let r = s.r;
        self.pending.push((s, t, v));
        Ok(r)
    }

    fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> strata_tsdb::Result<SeriesRef> {
        let s = self
            .storage
            .series
            .read()
            .by_ref
            .get(&r)
            .cloned()
            .ok_or(TsdbError::UnknownSeriesRef(r))?;
        self.check(&s, t)?;
        self.pending.push((s, t, v));
        Ok(r)
    }

    fn commit(&mut self) -> strata_tsdb::Result<()> {
        self.storage
            .commit_batch(&mut self.pending)
            .map_err(to_tsdb)
    }

    fn rollback(&mut self) -> strata_tsdb::Result<()> {
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(i: u32) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
    }

    fn opts() -> AgentOptions {
        AgentOptions {
            segment_size: 32 * 1024,
            max_wal_age: Duration::ZERO,
            min_wal_age: Duration::ZERO,
            sync_interval: Duration::ZERO,
            ..AgentOptions::default()
        }
    }

    #[test]
    fn out_of_order_is_rejected_and_counted_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let st = AgentStorage::open(dir.path(), opts()).unwrap();
        let mut app = st.appender();
        let r = app.append(&ls(1), 100, 1.0).unwrap();
        assert_eq!(app.append_ref(r, 100, 1.5).unwrap(), r); // equal timestamp: accepted
        app.append(&ls(2), 50, 1.0).unwrap();
        app.commit().unwrap();
        assert!(matches!(
            app.append(&ls(1), 99, 2.0),
            Err(TsdbError::OutOfOrderSample)
        ));
        // Out of order within one batch: dropped at commit.
        app.append(&ls(2), 60, 1.0).unwrap();
        app.append(&ls(2), 55, 1.0).unwrap();
        app.commit().unwrap();
        assert!(matches!(
            app.append_ref(12345, 1, 1.0),
            Err(TsdbError::UnknownSeriesRef(12345))
        ));
        let s = st.stats();
        assert_eq!(s.out_of_order, 2);
        assert_eq!(s.samples_appended, 4);
        assert_eq!(s.series, 2);
        assert!(s.fsyncs >= 2, "sync_interval 0 fsyncs every commit");
        st.close().unwrap();
        assert!(app.commit().is_ok(), "nothing pending");
        app.append(&ls(1), 200, 1.0).unwrap();
        assert!(matches!(app.commit(), Err(TsdbError::Closed)));
        drop(app);
        drop(st);

        let st = AgentStorage::open(dir.path(), opts()).unwrap();
        assert_eq!(st.stats().series, 2);
        assert_eq!(st.series_labels(r), Some(ls(1)));
        let mut app = st.appender();
        assert!(matches!(
            app.append(&ls(1), 99, 2.0),
            Err(TsdbError::OutOfOrderSample)
        ));
        assert_eq!(
            app.append(&ls(1), 101, 2.0).unwrap(),
            r,
            "same ref after replay"
        );
        let r3 = app.append(&ls(3), 1, 1.0).unwrap();
        assert!(r3 > r);
        app.commit().unwrap();
    }

    #[test]
    fn wal_is_prometheus_records() {
        let dir = tempfile::tempdir().unwrap();
        let st = AgentStorage::open(dir.path(), opts()).unwrap();
        let mut app = st.appender();
        app.append(&ls(1), 10, 1.0).unwrap();
        app.append(&ls(2), 10, 2.0).unwrap();
        app.commit().unwrap();
        app.append(&ls(1), 20, 3.0).unwrap();
        app.commit().unwrap();
        st.close().unwrap();
        let mut series = Vec::new();
        let mut samples = Vec::new();
        for rec in WalReader::open(st.wal_dir()).unwrap() {
            let rec = rec.unwrap();
            match record_type(&rec) {
                RecordType::Series => decode_series(&rec, &mut series, &mut |s| s.into()).unwrap(),
                RecordType::Samples => decode_samples(&rec, &mut samples).unwrap(),
                t => panic!("unexpected record {t:?}"),
            }
        }
        assert_eq!(series.len(), 2, "one series record entry per new series");
        assert_eq!(series[0].labels, ls(1));
        let got: Vec<(u64, i64, f64)> = samples.iter().map(|s| (s.r, s.t, s.v)).collect();
        let (r1, r2) = (series[0].r, series[1].r);
        assert_eq!(got, vec![(r1, 10, 1.0), (r2, 10, 2.0), (r1, 20, 3.0)]);
    }

    #[test]
    fn truncation_by_delivery_and_by_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.max_wal_age = Duration::from_secs(3600);
        o.wal_compression = false;
        let st = AgentStorage::open(dir.path(), o).unwrap();
        let now = 10_000_000_000i64;
        let old = now - 2 * 3600 * 1000;
        // Old data in a few segments, then fresh data.
        let mut app = st.appender();
        for t in 0..10_000 {
            app.append(&ls(t as u32 % 3), old + t, 1.0).unwrap();
            if t % 500 == 499 {
                app.commit().unwrap();
            }
        }
        app.commit().unwrap();
        let fresh_from = st.committed();
        for t in 0..10_000 {
            app.append(&ls(9), now - 20_000 + t, 1.0).unwrap();
            if t % 500 == 499 {
                app.commit().unwrap();
            }
        }
        app.commit().unwrap();
        assert!(fresh_from.segment >= 1 && st.committed().segment > fresh_from.segment);

        // Nothing delivered, nothing older than max age: nothing removed.
        let mut o2 = st.options().clone();
        o2.max_wal_age = Duration::ZERO;
        drop(app);
        let s = st
            .truncate(Some(WalPosition::default()), now - 3 * 3600 * 1000)
            .unwrap();
        assert_eq!(s.removed_before, None);

        // Undelivered but older than max age: removed, fresh segments kept.
        let s = st.truncate(Some(WalPosition::default()), now).unwrap();
        let before = s.removed_before.expect("old segments removed");
        assert!(before <= fresh_from.segment + 1, "{s:?} {fresh_from:?}");
        let (first, _) = wal::segments(st.wal_dir()).unwrap().unwrap();
        assert_eq!(first, before);
        // Series 0..2 were only in removed segments, unless the segment holding both old and
        // fresh data was kept.
        assert!(st.series_labels(0).is_none() || before == fresh_from.segment);
        drop(st);
        let st = AgentStorage::open(dir.path(), o2).unwrap();
        assert!(st.stats().series >= 1);
        let mut app = st.appender();
        assert!(matches!(
            app.append(&ls(9), now - 20_000, 1.0),
            Err(TsdbError::OutOfOrderSample)
        ));
    }
}
