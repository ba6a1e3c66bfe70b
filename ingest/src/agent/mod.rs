//! Agent mode (`strata agent`): scraped samples go to a local write-ahead log and from there
//! to every configured remote-write URL, through queues that survive restarts and outages.
//!
//! * [`storage`]: [`AgentStorage`], the WAL (Prometheus's format) and in-memory series table,
//!   with its [`AgentAppender`]; truncation by delivery and age.
//! * [`queue`]: one remote-write queue per URL ([`QueueSettings`], [`QueueStatus`]): a WAL
//!   watcher, shards, batching, retries, and the persisted delivered position.
//! * [`send`]: request bodies (remote write 1.0 and 2.0), headers, answer classification.
//! * [`tail`]: reading the segment being written; [`position`]: positions and watermark.
//! * [`Agent`]: the facade wiring them with a housekeeping thread that fsyncs the WAL (every
//!   [`AgentOptions::sync_interval`]), saves queue positions (every 200 ms) and truncates the
//!   WAL (every [`AgentOptions::truncate_frequency`]) below the lowest *saved* position of all
//!   queues.
//!
//! Delivery guarantee: a sample whose commit returned is delivered to every queue's remote at
//! least once, in order per series, provided the process's written data survives (see
//! [`storage`] for what survives a kill or a power loss) and the WAL is not truncated for age
//! ([`AgentOptions::max_wal_age`]) before it is sent. After a graceful [`Agent::shutdown`] that
//! finished within its timeout nothing is sent twice; after a crash, samples acknowledged by a
//! remote after the last position save (at most ~200 ms plus the in-flight batches) are sent
//! again. A remote answering a non-retryable status (4xx other than 429) loses that batch.

pub mod from_config;
pub mod position;
pub mod queue;
pub mod send;
pub mod storage;
pub mod tail;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::Handle;

pub use from_config::QueueBuilder;
pub use position::WalPosition;
pub use queue::{QueueSettings, QueueStatus, RelabelFn};
pub use storage::{AgentAppender, AgentOptions, AgentStorage, StorageStats, TruncateStats};

use crate::error::{Error, Result};
use queue::Queue;

impl crate::scrape::Appendable for AgentStorage {
    fn appender(&self) -> Result<Box<dyn strata_tsdb::storage::Appender + '_>> {
        Ok(Box::new(AgentStorage::appender(self)))
    }
}

/// How long [`Agent::apply_queues`] lets a replaced queue flush before stopping it hard.
pub const RELOAD_FLUSH_DEADLINE: Duration = Duration::from_secs(10);
/// How often queue positions are saved.
const SAVE_INTERVAL: Duration = Duration::from_millis(200);

struct Inner {
    storage: Arc<AgentStorage>,
    queues: Mutex<Vec<Queue>>,
    stop: AtomicBool,
}

impl Inner {
    fn save_positions(&self) {
        let shared: Vec<_> = self
            .queues
            .lock()
            .iter()
            .map(|q| q.shared.clone())
            .collect();
        for s in shared {
            if let Err(e) = s.save_position() {
                tracing::warn!(queue = %s.name, error = %e, "saving remote-write position");
            }
        }
    }

    fn min_saved(&self) -> Option<WalPosition> {
        self.queues
            .lock()
            .iter()
            .map(|q| *q.shared.saved.lock())
            .min()
    }

    fn truncate(&self) -> Result<TruncateStats> {
        self.save_positions();
        let min = self.min_saved();
        self.storage.truncate_now(min)
    }
}

/// Agent mode: storage plus remote-write queues. See the module docs.
pub struct Agent {
    inner: Arc<Inner>,
    rt: Handle,
    housekeeping: Option<std::thread::JoinHandle<()>>,
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("storage", &self.inner.storage)
            .finish()
    }
}

fn check_unique(settings: &[QueueSettings]) -> Result<()> {
    for (i, a) in settings.iter().enumerate() {
        if settings[..i]
            .iter()
            .any(|b| b.name == a.name && b.url == a.url)
        {
            return Err(Error::Agent(format!(
                "two remote-write queues named {:?} for {}",
                a.name, a.url
            )));
        }
    }
    Ok(())
}

impl Agent {
    /// Opens the storage in `dir` and starts one queue per entry of `queues`. Must be called
    /// within a tokio runtime (the shards run on it; a multi-threaded runtime is expected, as
    /// the watcher threads wait for shard tasks with `Handle::block_on`).
    pub fn start(dir: &Path, opts: AgentOptions, queues: Vec<QueueSettings>) -> Result<Agent> {
        let rt = Handle::try_current()
            .map_err(|_| Error::Agent("Agent::start needs a tokio runtime".into()))?;
        check_unique(&queues)?;
        let storage = AgentStorage::open(dir, opts.clone())?;
        let mut started = Vec::new();
        for q in queues {
            started.push(Queue::start(storage.clone(), q, rt.clone())?);
        }
        let inner = Arc::new(Inner {
            storage,
            queues: Mutex::new(started),
            stop: AtomicBool::new(false),
        });
        let hk = inner.clone();
        let housekeeping = std::thread::Builder::new()
            .name("agent-housekeeping".into())
            .spawn(move || housekeeping(hk, opts))
            .map_err(|e| Error::Agent(format!("starting housekeeping thread: {e}")))?;
        Ok(Agent {
            inner,
            rt,
            housekeeping: Some(housekeeping),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    /// The storage (for appenders).
    pub fn storage(&self) -> Arc<AgentStorage> {
        self.inner.storage.clone()
    }

    /// A status snapshot of every queue, in configuration order.
    pub fn queues_status(&self) -> Vec<QueueStatus> {
        self.inner
            .queues
            .lock()
            .iter()
            .map(|q| q.status())
            .collect()
    }

    /// Saves the queue positions and truncates the WAL now (as the periodic truncation does).
    pub fn truncate_now(&self) -> Result<TruncateStats> {
        self.inner.truncate()
    }

    /// Replaces the queue set (configuration reload). Queues whose settings are unchanged
    /// (`write_relabel` compared by `Arc` identity) keep running; the others are stopped
    /// (flushing for up to [`RELOAD_FLUSH_DEADLINE`]) and started again from their saved
    /// position. The position file of a queue that is no longer configured is deleted, so
    /// configuring it again later starts at the end of the WAL.
    pub async fn apply_queues(&self, settings: Vec<QueueSettings>) -> Result<()> {
        check_unique(&settings)?;
        let _g = self.reload.lock().await;
        let old: Vec<Queue> = std::mem::take(&mut *self.inner.queues.lock());
        let mut kept: Vec<Option<Queue>> = Vec::new();
        let mut stopping = Vec::new();
        for q in old {
            if settings.iter().any(|n| n.same_as(&q.settings)) {
                kept.push(Some(q));
            } else {
                let removed = !settings
                    .iter()
                    .any(|n| n.name == q.settings.name && n.url == q.settings.url);
                let path = q.shared.pos_path.clone();
                let deadline = tokio::time::Instant::now() + RELOAD_FLUSH_DEADLINE;
                stopping.push(tokio::spawn(async move {
                    let r = q.stop(deadline).await;
                    if removed {
                        let _ = std::fs::remove_file(&path);
                    }
                    r
                }));
            }
        }
        let mut first_err = None;
        for h in stopping {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(e) => first_err = first_err.or(Some(Error::Agent(e.to_string()))),
            }
        }
        let mut next = Vec::new();
        for s in settings {
            let existing = kept
                .iter_mut()
                .find(|k| k.as_ref().is_some_and(|q| q.settings.same_as(&s)))
                .and_then(Option::take);
            match existing {
                Some(q) => next.push(q),
                None => match Queue::start(self.inner.storage.clone(), s, self.rt.clone()) {
                    Ok(q) => next.push(q),
                    Err(e) => first_err = first_err.or(Some(e)),
                },
            }
        }
        *self.inner.queues.lock() = next;
        first_err.map_or(Ok(()), Err)
    }

    /// Stops the agent: every queue reads the WAL up to its current end and sends what it
    /// can within `timeout`, then stops; positions are saved and the WAL is closed.
    pub async fn shutdown(mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let queues: Vec<Queue> = std::mem::take(&mut *self.inner.queues.lock());
        let handles: Vec<_> = queues
            .into_iter()
            .map(|q| tokio::spawn(q.stop(deadline)))
            .collect();
        let mut first_err = None;
        for h in handles {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(e) => first_err = first_err.or(Some(Error::Agent(e.to_string()))),
            }
        }
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.housekeeping.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let storage = self.inner.storage.clone();
        let closed = tokio::task::spawn_blocking(move || storage.close())
            .await
            .map_err(|e| Error::Agent(e.to_string()))?;
        match first_err {
            Some(e) => Err(e),
            None => closed,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Without `shutdown` (e.g. a crash in a test): stop the housekeeping thread and stop
        // the queues hard; nothing more is saved.
        self.inner.stop.store(true, Ordering::SeqCst);
        drop(std::mem::take(&mut *self.inner.queues.lock()));
    }
}

fn housekeeping(inner: Arc<Inner>, opts: AgentOptions) {
    let tick = if opts.sync_interval.is_zero() {
        SAVE_INTERVAL
    } else {
        opts.sync_interval.min(SAVE_INTERVAL)
    }
    .max(Duration::from_millis(5));
    let mut last_save = Instant::now();
    let mut last_truncate = Instant::now();
    while !inner.stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Err(e) = inner.storage.sync_if_dirty() {
            tracing::warn!(error = %e, "fsync of the agent WAL failed");
        }
        if last_save.elapsed() >= SAVE_INTERVAL {
            last_save = Instant::now();
            inner.save_positions();
        }
        if !opts.truncate_frequency.is_zero() && last_truncate.elapsed() >= opts.truncate_frequency
        {
            last_truncate = Instant::now();
            if let Err(e) = inner.truncate() {
                tracing::warn!(error = %e, "agent WAL truncation failed");
            }
        }
    }
}
