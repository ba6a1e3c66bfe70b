//! One remote-write queue: a WAL watcher thread feeding sharded sender tasks, a delivery
//! watermark and the persisted position.
//!
//! * **Watcher** (an OS thread, as it does blocking file reads): reads the last checkpoint's
//!   series records, then every segment from the first one, with [`SegmentTail`]; records that
//!   end at or before the saved position only contribute series; later sample records are
//!   sent. It follows the active segment up to the offset the storage publishes after each
//!   commit, woken by the commit (or after 200 ms), and moves on when a newer segment exists.
//!   Series get the external labels that they do not already have, then `write_relabel`
//!   (Prometheus's order); a series dropped by relabeling, or a sample of a series whose series
//!   record was never seen, is counted in `samples_dropped`. When a newer checkpoint appears
//!   (a truncation), series last seen in the segments it replaced are forgotten and the
//!   checkpoint's series reloaded.
//! * **Shards** (tokio tasks): a sample goes to shard `xxh64(ref) % shards` through a bounded
//!   channel of `capacity` samples, so the samples of a series stay in WAL order. A shard sends
//!   when it holds `max_samples_per_send` samples or `batch_send_deadline` after the first
//!   sample of the batch arrived. A full channel blocks the watcher (backpressure).
//! * **Retries**: 5xx, 429 (with `retry_on_http_429`) and connection errors/timeouts are
//!   retried forever (until the queue is stopped) with exponential backoff from `min_backoff`
//!   doubling to `max_backoff`, or after the server's `Retry-After`. Any other status drops the
//!   batch (`samples_failed`, logged).
//! * **Resharding** (checked by the watcher every 10 s): if no retry happened in the last
//!   period and the shard channels are more than half full on average, the number of shards
//!   doubles (up to `max_shards`); if they are less than 10% full it halves (down to
//!   `min_shards`). Resharding flushes and stops the old shards before starting the new ones,
//!   which keeps per-series order.
//! * **Durability**: the [`Watermark`] advances over WAL records whose samples were all
//!   acknowledged (or failed with 4xx); the agent saves it to `remote-….pos` at most every
//!   200 ms and when the queue stops. A new queue (no position file) starts at the current end
//!   of the WAL, as Prometheus does, and saves that position at once. A position file that
//!   does not parse restarts from the beginning of the WAL (duplicates rather than losses).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_tsdb::wal::{
    decode_samples, decode_series, last_checkpoint, list_segments, record_type, RecordType,
    RefSample, RefSeries, WalReader,
};
use strata_tsdb::Labels;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use super::position::{self, WalPosition, Watermark};
use super::send::{self, Outcome, QueuedSample, Target};
use super::storage::AgentStorage;
use super::tail::{SegmentTail, Step};
use crate::error::Result;
use crate::remote::Protocol;

/// A `write_relabel_configs` function: the new labels, or `None` to drop the series.
pub type RelabelFn = Arc<dyn Fn(&Labels) -> Option<Labels> + Send + Sync>;

/// How often the watcher reconsiders the number of shards.
const SHARD_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait of the watcher for a commit before it looks again.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// Settings of one remote-write queue (the `remote_write` entry, already resolved).
#[derive(Clone)]
pub struct QueueSettings {
    /// Queue name (metrics, logs, position file name).
    pub name: String,
    pub url: String,
    pub client: reqwest::Client,
    /// Extra request headers, authentication included.
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
    /// Samples buffered per shard.
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
    /// Timeout of one request (zero: none).
    pub remote_timeout: Duration,
    pub write_relabel: Option<RelabelFn>,
    /// Added to every series that does not have the label already.
    pub external_labels: Labels,
}

impl QueueSettings {
    /// Settings with Prometheus's `queue_config` defaults.
    pub fn new(name: impl Into<String>, url: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            client,
            headers: Vec::new(),
            protocol: Protocol::V1,
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            remote_timeout: Duration::from_secs(30),
            write_relabel: None,
            external_labels: Labels::empty(),
        }
    }

    /// Same configuration (the relabel function compares by identity).
    pub(crate) fn same_as(&self, o: &QueueSettings) -> bool {
        let relabel_same = match (&self.write_relabel, &o.write_relabel) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        relabel_same
            && self.name == o.name
            && self.url == o.url
            && self.headers == o.headers
            && self.protocol == o.protocol
            && self.capacity == o.capacity
            && self.max_shards == o.max_shards
            && self.min_shards == o.min_shards
            && self.max_samples_per_send == o.max_samples_per_send
            && self.batch_send_deadline == o.batch_send_deadline
            && self.min_backoff == o.min_backoff
            && self.max_backoff == o.max_backoff
            && self.retry_on_http_429 == o.retry_on_http_429
            && self.remote_timeout == o.remote_timeout
            && self.external_labels == o.external_labels
    }
}

impl fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.len())
            .field("capacity", &self.capacity)
            .field("shards", &(self.min_shards, self.max_shards))
            .field("max_samples_per_send", &self.max_samples_per_send)
            .field("write_relabel", &self.write_relabel.is_some())
            .field("external_labels", &self.external_labels)
            .finish()
    }
}

/// A snapshot of a queue's state and counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStatus {
    pub name: String,
    pub url: String,
    /// Samples acknowledged by the remote.
    pub samples_sent: u64,
    /// Samples dropped after a non-retryable answer.
    pub samples_failed: u64,
    /// Samples sent again after a retryable failure (counted per attempt).
    pub samples_retried: u64,
    /// Samples not sent: dropped by `write_relabel`, or of a series never seen.
    pub samples_dropped: u64,
    /// Samples read from the WAL and not yet acknowledged or failed.
    pub samples_pending: u64,
    /// WAL bytes after the delivered position (backlog estimate).
    pub backlog_bytes: u64,
    pub shards: usize,
    /// Highest timestamp acknowledged by the remote, ms.
    pub highest_sent_timestamp_ms: Option<i64>,
    /// Everything before this WAL position was delivered.
    pub delivered: WalPosition,
    /// The position last saved to disk.
    pub saved: WalPosition,
    pub last_error: Option<String>,
}

/// State shared by the watcher, the shards and the agent.
pub(crate) struct Shared {
    pub name: String,
    pub url: String,
    pub pos_path: PathBuf,
    pub watermark: Mutex<Watermark>,
    /// Last saved position; the lock serialises saves.
    pub saved: Mutex<WalPosition>,
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    dispatched: AtomicU64,
    shards: AtomicUsize,
    highest_sent: AtomicI64,
    last_error: Mutex<Option<String>>,
    /// Set by a graceful stop: read up to this position, then flush and finish.
    drain_to: Mutex<Option<WalPosition>>,
    /// Stop at once (no more reading, sending or retrying).
    hard: AtomicBool,
    hard_tx: watch::Sender<bool>,
}

impl Shared {
    fn set_error(&self, e: String) {
        *self.last_error.lock() = Some(e);
    }

    fn ack(&self, batch: &[QueuedSample], delivered: bool) {
        let mut wm = self.watermark.lock();
        let mut i = 0;
        while i < batch.len() {
            let seq = batch[i].seq;
            let mut j = i;
            while j < batch.len() && batch[j].seq == seq {
                j += 1;
            }
            wm.ack(seq, (j - i) as u64);
            i = j;
        }
        drop(wm);
        let n = batch.len() as u64;
        if delivered {
            self.sent.fetch_add(n, Ordering::Relaxed);
            if let Some(t) = batch.iter().map(|s| s.t).max() {
                self.highest_sent.fetch_max(t, Ordering::Relaxed);
            }
        } else {
            self.failed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Saves the delivered position if it moved since the last save.
    pub fn save_position(&self) -> Result<()> {
        let mut saved = self.saved.lock();
        let d = self.watermark.lock().delivered();
        if d != *saved {
            position::save(&self.pos_path, d)?;
            *saved = d;
        }
        Ok(())
    }

    pub fn status(&self, storage: &AgentStorage) -> QueueStatus {
        let delivered = self.watermark.lock().delivered();
        let sent = self.sent.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let highest = self.highest_sent.load(Ordering::Relaxed);
        QueueStatus {
            name: self.name.clone(),
            url: self.url.clone(),
            samples_sent: sent,
            samples_failed: failed,
            samples_retried: self.retried.load(Ordering::Relaxed),
            samples_dropped: self.dropped.load(Ordering::Relaxed),
            samples_pending: self
                .dispatched
                .load(Ordering::Relaxed)
                .saturating_sub(sent + failed),
            backlog_bytes: backlog_bytes(storage, delivered),
            shards: self.shards.load(Ordering::Relaxed),
            highest_sent_timestamp_ms: (highest != i64::MIN).then_some(highest),
            delivered,
            saved: *self.saved.lock(),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// WAL bytes between `from` and the committed end.
fn backlog_bytes(storage: &AgentStorage, from: WalPosition) -> u64 {
    let end = storage.committed();
    let Ok(segs) = list_segments(storage.wal_dir()) else {
        return 0;
    };
    let mut total = 0u64;
    for s in segs {
        if s.index < from.segment || s.index > end.segment {
            continue;
        }
        let len = if s.index == end.segment {
            end.offset
        } else {
            std::fs::metadata(&s.path).map_or(0, |m| m.len())
        };
        let start = if s.index == from.segment {
            from.offset
        } else {
            0
        };
        total += len.saturating_sub(start);
    }
    total
}

/// The resharding rule (see the module docs).
pub(crate) fn desired_shards(
    current: usize,
    min: usize,
    max: usize,
    fill: f64,
    had_retries: bool,
) -> usize {
    let want = if fill > 0.5 && !had_retries {
        current.saturating_mul(2)
    } else if fill < 0.1 {
        current / 2
    } else {
        current
    };
    want.clamp(min, max)
}

/// A running queue.
pub(crate) struct Queue {
    pub settings: QueueSettings,
    pub shared: Arc<Shared>,
    done_rx: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    storage: Arc<AgentStorage>,
}

impl Queue {
    /// Starts a queue: loads (or creates) its position file and starts its watcher.
    pub fn start(
        storage: Arc<AgentStorage>,
        mut settings: QueueSettings,
        rt: Handle,
    ) -> Result<Queue> {
        settings.min_shards = settings.min_shards.max(1);
        settings.max_shards = settings.max_shards.max(settings.min_shards);
        settings.capacity = settings.capacity.max(1);
        settings.max_samples_per_send = settings.max_samples_per_send.max(1);
        let pos_path = storage
            .dir()
            .join(position::position_file_name(&settings.name, &settings.url));
        let committed = storage.committed();
        let (start, save_now) = match position::load(&pos_path) {
            Ok(Some(p)) if p > committed => {
                tracing::warn!(queue = %settings.name, position = ?p, end = ?committed,
                    "saved remote-write position is past the end of the WAL; starting from the beginning");
                (WalPosition::default(), true)
            }
            Ok(Some(p)) => (p, false),
            Ok(None) => (committed, true),
            Err(e) => {
                tracing::warn!(queue = %settings.name, error = %e,
                    "unreadable remote-write position; starting from the beginning of the WAL");
                (WalPosition::default(), true)
            }
        };
        if save_now {
            position::save(&pos_path, start)?;
        }
        let (hard_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: settings.name.clone(),
            url: settings.url.clone(),
            pos_path,
            watermark: Mutex::new(Watermark::new(start)),
            saved: Mutex::new(start),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dispatched: AtomicU64::new(0),
            shards: AtomicUsize::new(0),
            highest_sent: AtomicI64::new(i64::MIN),
            last_error: Mutex::new(None),
            drain_to: Mutex::new(None),
            hard: AtomicBool::new(false),
            hard_tx,
        });
        let (done_tx, done_rx) = oneshot::channel();
        let mut watcher = Watcher {
            storage: storage.clone(),
            settings: settings.clone(),
            shared: shared.clone(),
            rt,
            start,
            series: HashMap::new(),
            seq: 0,
            shards: Vec::new(),
            handles: Vec::new(),
            last_reshard: Instant::now(),
            retried_at_reshard: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("rw-watch-{}", settings.name))
            .spawn(move || {
                watcher.run();
                let _ = done_tx.send(());
            })
            .map_err(|e| crate::Error::Agent(format!("starting WAL watcher thread: {e}")))?;
        tracing::info!(queue = %settings.name, url = %settings.url, start = ?start, "remote-write queue started");
        Ok(Queue {
            settings,
            shared,
            done_rx: Some(done_rx),
            thread: Some(thread),
            storage,
        })
    }

    pub fn status(&self) -> QueueStatus {
        self.shared.status(&self.storage)
    }

    /// Stops the queue: reads the WAL up to its current end, sends what it can until
    /// `deadline`, then stops hard; saves the delivered position.
    pub async fn stop(mut self, deadline: tokio::time::Instant) -> Result<()> {
        *self.shared.drain_to.lock() = Some(self.storage.committed());
        self.storage.wake_watchers();
        if let Some(mut rx) = self.done_rx.take() {
            if tokio::time::timeout_at(deadline, &mut rx).await.is_err() {
                self.hard_stop();
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
        }
        self.hard_stop();
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.save_position())
            .await
            .map_err(|e| crate::Error::Agent(format!("saving position: {e}")))?
    }

    fn hard_stop(&self) {
        self.shared.hard.store(true, Ordering::SeqCst);
        self.shared.hard_tx.send_replace(true);
        self.storage.wake_watchers();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Without `stop`: behave like a crash (nothing more is saved by this queue).
        self.hard_stop();
    }
}

struct Watcher {
    storage: Arc<AgentStorage>,
    settings: QueueSettings,
    shared: Arc<Shared>,
    rt: Handle,
    start: WalPosition,
    /// ref → (labels to send or `None` if dropped, segment where the series record was seen).
    series: HashMap<u64, (Option<Labels>, u64)>,
    seq: u64,
    shards: Vec<mpsc::Sender<QueuedSample>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    last_reshard: Instant,
    retried_at_reshard: u64,
}

enum Flow {
    Continue,
    Stop,
}

impl Watcher {
    fn hard(&self) -> bool {
        self.shared.hard.load(Ordering::SeqCst)
    }

    fn run(&mut self) {
        self.start_shards(self.settings.min_shards);
        let wal_dir = self.storage.wal_dir().to_path_buf();
        let mut cp = self.load_checkpoint(None);
        let first = list_segments(&wal_dir)
            .ok()
            .and_then(|s| s.first().map(|s| s.index))
            .unwrap_or(0);
        let mut seg = first.max(cp.map_or(0, |c| c + 1));
        if self.start.segment < seg && self.start != WalPosition::default() {
            tracing::warn!(queue = %self.shared.name, position = ?self.start, first_segment = seg,
                "WAL segments after the saved position were truncated (max WAL age); their samples are lost");
        }
        'segments: while !self.hard() {
            let mut tail = match SegmentTail::open(&wal_dir, seg, 0) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Removed by a truncation while we lagged behind, or not created yet.
                    let committed = self.storage.committed();
                    if seg >= committed.segment {
                        if self.drained(WalPosition::new(seg, 0)) {
                            break;
                        }
                        self.storage.wait_for_commit(committed, WATCH_POLL);
                        continue;
                    }
                    cp = self.load_checkpoint(cp);
                    let first = list_segments(&wal_dir)
                        .ok()
                        .and_then(|s| s.first().map(|s| s.index))
                        .unwrap_or(seg + 1);
                    tracing::warn!(queue = %self.shared.name, segment = seg, next = first,
                        "WAL segment removed before it was sent (max WAL age); its samples are lost");
                    seg = first.max(seg + 1);
                    continue;
                }
                Err(e) => {
                    self.shared
                        .set_error(format!("opening WAL segment {seg}: {e}"));
                    std::thread::sleep(WATCH_POLL);
                    continue;
                }
            };
            loop {
                if self.hard() {
                    break 'segments;
                }
                let committed = self.storage.committed();
                let sealed = committed.segment > seg;
                let limit = if sealed { u64::MAX } else { committed.offset };
                match tail.next(limit) {
                    Ok(Step::Record { end, .. }) => {
                        let rec = tail.record().to_vec();
                        if let Flow::Stop = self.process(&rec, WalPosition::new(seg, end)) {
                            break 'segments;
                        }
                        self.maybe_reshard();
                    }
                    Ok(Step::NeedMore) if sealed => break,
                    Ok(Step::NeedMore) => {
                        if self.drained(WalPosition::new(seg, tail.position())) {
                            break 'segments;
                        }
                        self.maybe_reshard();
                        self.storage.wait_for_commit(committed, WATCH_POLL);
                    }
                    Err(e) => {
                        tracing::error!(queue = %self.shared.name, error = %e,
                            "skipping the rest of a damaged WAL segment");
                        self.shared.set_error(e);
                        // Wait until the segment is finished, then go on with the next.
                        while !self.hard() && self.storage.committed().segment <= seg {
                            if self.drained(WalPosition::new(seg, u64::MAX)) {
                                break 'segments;
                            }
                            let c = self.storage.committed();
                            self.storage.wait_for_commit(c, WATCH_POLL);
                        }
                        break;
                    }
                }
            }
            seg += 1;
            // Crossing into the next segment: the previous one is done as far as reading goes.
            if WalPosition::new(seg, 0) > self.start {
                let s = self.next_seq();
                self.shared
                    .watermark
                    .lock()
                    .register(s, 0, WalPosition::new(seg, 0));
            }
            if let Ok(Some((_, idx))) = last_checkpoint(&wal_dir) {
                if cp.is_none_or(|c| idx > c) {
                    cp = self.load_checkpoint(cp);
                }
            }
        }
        self.stop_shards();
    }

    /// True when a graceful stop asked to read up to a position at or before `at`.
    fn drained(&self, at: WalPosition) -> bool {
        match *self.shared.drain_to.lock() {
            Some(to) => at >= to,
            None => false,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Reads the series of the newest checkpoint; when a previous checkpoint `prev` was
    /// loaded, first forgets series last seen in the segments the new one replaced.
    fn load_checkpoint(&mut self, prev: Option<u64>) -> Option<u64> {
        let wal_dir = self.storage.wal_dir().to_path_buf();
        for _attempt in 0..3 {
            let (dir, idx) = match last_checkpoint(&wal_dir) {
                Ok(Some(c)) => c,
                Ok(None) => return prev,
                Err(e) => {
                    tracing::warn!(queue = %self.shared.name, error = %e, "listing WAL checkpoints");
                    return prev;
                }
            };
            if prev.is_some() {
                self.series.retain(|_, (_, seg)| *seg > idx);
            }
            let mut reader = match WalReader::open(&dir) {
                Ok(r) => r,
                Err(_) => continue, // replaced while we looked: try the newer one
            };
            let mut ok = true;
            loop {
                match reader.next_record() {
                    Ok(Some(rec)) => {
                        if record_type(rec) == RecordType::Series {
                            let rec = rec.to_vec();
                            self.store_series(&rec, idx, false);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(queue = %self.shared.name, error = %e, "reading WAL checkpoint");
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Some(idx);
            }
        }
        prev
    }

    fn store_series(&mut self, rec: &[u8], seg: u64, overwrite: bool) {
        let mut out: Vec<RefSeries> = Vec::new();
        let mut intern = crate::intern::intern;
        if let Err(e) = decode_series(rec, &mut out, &mut intern) {
            tracing::warn!(queue = %self.shared.name, segment = seg, error = %e, "undecodable series record");
            return;
        }
        for s in out {
            if !overwrite && self.series.contains_key(&s.r) {
                continue;
            }
            // Share the storage's copy of the label set when it is the same series (it is,
            // unless the WAL is being replayed past a truncation): one label set per series
            // in memory, not one per queue.
            let mut labels = match self.storage.series_labels(s.r) {
                Some(l) if l == s.labels => l,
                _ => s.labels,
            };
            if !self.settings.external_labels.is_empty() {
                let mut b = labels.builder();
                for l in self.settings.external_labels.iter() {
                    if b.get(&l.name).is_none() {
                        b.set(&l.name, &l.value);
                    }
                }
                labels = b.build();
            }
            let out = match &self.settings.write_relabel {
                Some(f) => f(&labels).filter(|l| !l.is_empty()),
                None => Some(labels),
            };
            self.series.insert(s.r, (out, seg));
        }
    }

    fn process(&mut self, rec: &[u8], end: WalPosition) -> Flow {
        let after_start = end > self.start;
        let seq = self.next_seq();
        match record_type(rec) {
            RecordType::Series => {
                self.store_series(rec, end.segment, true);
            }
            RecordType::Samples if after_start => {
                let mut samples: Vec<RefSample> = Vec::new();
                if let Err(e) = decode_samples(rec, &mut samples) {
                    tracing::warn!(queue = %self.shared.name, position = ?end, error = %e, "undecodable samples record");
                } else {
                    let n = self.shards.len().max(1) as u64;
                    let mut items: Vec<(usize, QueuedSample)> = Vec::with_capacity(samples.len());
                    let mut dropped = 0u64;
                    for s in samples {
                        match self.series.get(&s.r) {
                            Some((Some(l), _)) => {
                                let shard =
                                    (xxhash_rust::xxh64::xxh64(&s.r.to_le_bytes(), 0) % n) as usize;
                                items.push((
                                    shard,
                                    QueuedSample {
                                        r: s.r,
                                        labels: l.clone(),
                                        t: s.t,
                                        v: s.v,
                                        seq,
                                    },
                                ));
                            }
                            _ => dropped += 1,
                        }
                    }
                    self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
                    self.shared
                        .watermark
                        .lock()
                        .register(seq, items.len() as u64, end);
                    self.shared
                        .dispatched
                        .fetch_add(items.len() as u64, Ordering::Relaxed);
                    for (shard, item) in items {
                        if !self.dispatch(shard, item) {
                            return Flow::Stop;
                        }
                    }
                    return Flow::Continue;
                }
            }
            _ => {}
        }
        if after_start {
            self.shared.watermark.lock().register(seq, 0, end);
        }
        Flow::Continue
    }

    /// Hands a sample to its shard, waiting while the shard is full. False when stopping.
    fn dispatch(&mut self, shard: usize, item: QueuedSample) -> bool {
        let Some(tx) = self.shards.get(shard) else {
            return false;
        };
        match tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(item)) => {
                // Shards are only changed between records, never here: `item` was hashed
                // for the current shard count.
                if self.hard() {
                    return false;
                }
                tx.blocking_send(item).is_ok()
            }
        }
    }

    fn maybe_reshard(&mut self) {
        if self.last_reshard.elapsed() < SHARD_UPDATE_INTERVAL {
            return;
        }
        self.last_reshard = Instant::now();
        let retried = self.shared.retried.load(Ordering::Relaxed);
        let had_retries = retried != self.retried_at_reshard;
        self.retried_at_reshard = retried;
        let cap = self.settings.capacity as f64;
        let n = self.shards.len().max(1);
        let used: usize = self
            .shards
            .iter()
            .map(|t| t.max_capacity() - t.capacity())
            .sum();
        let fill = used as f64 / (cap * n as f64);
        let want = desired_shards(
            n,
            self.settings.min_shards,
            self.settings.max_shards,
            fill,
            had_retries,
        );
        if want != n {
            tracing::info!(queue = %self.shared.name, from = n, to = want, "remote-write resharding");
            self.stop_shards();
            if !self.hard() {
                self.start_shards(want);
            }
        }
    }

    fn start_shards(&mut self, n: usize) {
        let target = Arc::new(Target {
            client: self.settings.client.clone(),
            url: self.settings.url.clone(),
            headers: self.settings.headers.clone(),
            protocol: self.settings.protocol,
            timeout: self.settings.remote_timeout,
            retry_on_http_429: self.settings.retry_on_http_429,
        });
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(self.settings.capacity);
            let shard = Shard {
                rx,
                target: target.clone(),
                shared: self.shared.clone(),
                hard: self.shared.hard_tx.subscribe(),
                max: self.settings.max_samples_per_send,
                deadline: self.settings.batch_send_deadline,
                min_backoff: self.settings.min_backoff,
                max_backoff: self.settings.max_backoff.max(self.settings.min_backoff),
            };
            self.shards.push(tx);
            self.handles.push(self.rt.spawn(shard.run()));
        }
        self.shared.shards.store(n, Ordering::Relaxed);
    }

    /// Closes the shard channels and waits for the shards to flush and exit.
    fn stop_shards(&mut self) {
        self.shards.clear();
        for h in self.handles.drain(..) {
            let _ = self.rt.block_on(h);
        }
        self.shared.shards.store(0, Ordering::Relaxed);
    }
}

struct Shard {
    rx: mpsc::Receiver<QueuedSample>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    hard: watch::Receiver<bool>,
    max: usize,
    deadline: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl Shard {
    async fn run(mut self) {
        let mut batch: Vec<QueuedSample> = Vec::with_capacity(self.max.min(10_000));
        loop {
            let mut deadline: Option<tokio::time::Instant> = None;
            let mut closed = false;
            while batch.len() < self.max {
                let recv = async {
                    match deadline {
                        None => Some(self.rx.recv().await),
                        Some(d) => tokio::time::timeout_at(d, self.rx.recv()).await.ok(),
                    }
                };
                let item = tokio::select! {
                    r = recv => r,
                    _ = self.hard.wait_for(|h| *h) => return,
                };
                match item {
                    None => break, // deadline
                    Some(None) => {
                        closed = true;
                        break;
                    }
                    Some(Some(s)) => {
                        if deadline.is_none() {
                            deadline = Some(tokio::time::Instant::now() + self.deadline);
                        }
                        batch.push(s);
                    }
                }
            }
            if !batch.is_empty() {
                if !self.send(&batch).await {
                    return;
                }
                batch.clear();
            }
            if closed {
                return;
            }
        }
    }

    /// Sends with retries; false when stopped hard before the batch was done.
    ///
    /// A receiver that refuses a request for some of its samples (Prometheus 2.x rolls a
    /// request back at its first out-of-order sample, as happens to samples sent again after
    /// a crash) would lose the good samples with them: such a batch is split in halves and
    /// each half sent again, down to single samples, so only the refused ones are dropped.
    async fn send(&mut self, batch: &[QueuedSample]) -> bool {
        let mut parts: Vec<std::ops::Range<usize>> = Vec::with_capacity(8);
        parts.push(0..batch.len());
        while let Some(r) = parts.pop() {
            let part = &batch[r.clone()];
            match self.send_part(part).await {
                None => return false,
                Some(None) => {}
                Some(Some(_)) if part.len() > 1 => {
                    let mid = r.start + part.len() / 2;
                    // The first half is sent first: acknowledgements stay in order.
                    parts.push(mid..r.end);
                    parts.push(r.start..mid);
                }
                Some(Some(error)) => {
                    tracing::debug!(queue = %self.shared.name, %error, "remote write refused a sample; dropped");
                    self.shared.set_error(error);
                    self.shared.ack(part, false);
                }
            }
        }
        true
    }

    /// Sends one request with retries: `None` when stopped hard, `Some(None)` when delivered
    /// or dropped, `Some(Some(error))` when the receiver refused some of its samples.
    async fn send_part(&mut self, batch: &[QueuedSample]) -> Option<Option<String>> {
        let body = send::compress(&send::encode(self.target.protocol, batch));
        let mut backoff = self.min_backoff;
        loop {
            let outcome = tokio::select! {
                o = send::post(&self.target, body.clone()) => o,
                _ = self.hard.wait_for(|h| *h) => return None,
            };
            match outcome {
                Outcome::Delivered => {
                    self.shared.ack(batch, true);
                    return Some(None);
                }
                Outcome::Failed {
                    error,
                    refused_samples: true,
                } => return Some(Some(error)),
                Outcome::Failed { error, .. } => {
                    tracing::error!(queue = %self.shared.name, samples = batch.len(), %error,
                        "remote write failed, dropping samples");
                    self.shared.set_error(error);
                    self.shared.ack(batch, false);
                    return Some(None);
                }
                Outcome::Retry { after, error } => {
                    let wait = after.unwrap_or(backoff);
                    tracing::warn!(queue = %self.shared.name, samples = batch.len(), %error,
                        retry_in = ?wait, "remote write failed, retrying");
                    self.shared.set_error(error);
                    self.shared
                        .retried
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    backoff = (backoff * 2).min(self.max_backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.hard.wait_for(|h| *h) => return None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshard_rule() {
        assert_eq!(desired_shards(1, 1, 8, 0.9, false), 2);
        assert_eq!(desired_shards(4, 1, 8, 0.9, false), 8);
        assert_eq!(desired_shards(8, 1, 8, 0.9, false), 8);
        assert_eq!(desired_shards(4, 1, 8, 0.9, true), 4);
        assert_eq!(desired_shards(4, 1, 8, 0.3, false), 4);
        assert_eq!(desired_shards(4, 1, 8, 0.05, false), 2);
        assert_eq!(desired_shards(1, 1, 8, 0.0, false), 1);
        assert_eq!(desired_shards(1, 3, 8, 0.3, false), 3);
    }
}
