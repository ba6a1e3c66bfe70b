//! One target's scrape loop (Prometheus's `scrapeLoop.run`): wait for the target's offset
//! within the interval, then scrape on every tick, with timestamps snapped to the ideal tick
//! when within a small tolerance; each fetch is bounded by the scrape timeout and the
//! append/report/commit runs on a blocking thread. When stopped because the target went away
//! the loop writes end-of-run staleness markers about two intervals later; when restarted
//! with new settings it hands its staleness state to its successor instead; on manager
//! shutdown it writes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::append::{process, process_end_of_run, Fetched, LoopConfig};
use super::cache::ScrapeCache;
use super::scraper::Scraper;
use super::{Appendable, TargetHealth, TargetStatus};
use strata_tsdb::Labels;

/// Prometheus's `ScrapeTimestampTolerance`.
const TIMESTAMP_TOLERANCE: Duration = Duration::from_millis(2);

/// A stable hash of a target (its labels and URL), the base of its scrape offset.
pub fn target_hash(labels: &Labels, url: &str) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    h.update(&labels.stable_hash().to_le_bytes());
    h.update(url.as_bytes());
    h.digest()
}

/// How long to wait from `now` until the target's first scrape (Prometheus's
/// `Target.offset`): scrapes of a target happen at the fixed phase
/// `(hash ^ seed) mod interval` of absolute time, so a target keeps its phase across restarts
/// and different targets are spread over the interval. The result is in `(0, interval]`.
pub fn scrape_offset(hash: u64, interval: Duration, seed: u64, now: SystemTime) -> Duration {
    let iv = interval.as_nanos();
    if iv == 0 {
        return Duration::ZERO;
    }
    let now_ns = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let base = iv - now_ns % iv;
    let offset = u128::from(hash ^ seed) % iv;
    let mut next = base + offset;
    if next > iv {
        next -= iv;
    }
    Duration::from_nanos(next as u64)
}

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Instructions from the manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctl {
    Run,
    /// The target is gone: stop, then write end-of-run staleness markers.
    Stop,
    /// The target's settings changed: stop and hand the state to the new loop.
    Restart,
    /// Manager shutdown (never sent; derived from the shutdown channel).
    Shutdown,
}

/// State shared between a loop and the manager.
#[derive(Default)]
pub(crate) struct LoopShared {
    pub status: RwLock<TargetStatus>,
    /// An error every scrape reports instead of scraping (e.g. `target_limit` exceeded).
    pub forced: Mutex<Option<String>>,
}

/// The manager's side of a running loop.
pub(crate) struct LoopHandle {
    ctl: watch::Sender<Ctl>,
    done: Option<oneshot::Receiver<Option<ScrapeCache>>>,
    pub join: JoinHandle<()>,
    pub shared: Arc<LoopShared>,
}

impl LoopHandle {
    pub fn signal(&self, c: Ctl) {
        self.ctl.send_replace(c);
    }

    /// Waits (at most `bound`) until the loop stopped scraping; the cache it hands over when
    /// it was told to restart.
    pub async fn wait_stopped(&mut self, bound: Duration) -> Option<ScrapeCache> {
        let rx = self.done.take()?;
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(c)) => c,
            _ => None,
        }
    }
}

struct ScrapeLoop {
    cfg: Arc<LoopConfig>,
    cache: ScrapeCache,
    scraper: Scraper,
    appendable: Arc<dyn Appendable>,
    shared: Arc<LoopShared>,
    offset_seed: u64,
}

/// Waits for a stop instruction or shutdown.
async fn wait_stop(ctl: &mut watch::Receiver<Ctl>, shutdown: &mut watch::Receiver<bool>) -> Ctl {
    loop {
        if *shutdown.borrow() {
            return Ctl::Shutdown;
        }
        let c = *ctl.borrow_and_update();
        if c != Ctl::Run {
            return c;
        }
        tokio::select! {
            r = ctl.changed() => if r.is_err() { return Ctl::Stop },
            r = shutdown.changed() => if r.is_err() { return Ctl::Shutdown },
        }
    }
}

/// Waits for shutdown; never returns otherwise.
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Starts a loop for `cfg` with `cache` (fresh, or handed over by the previous loop).
pub(crate) fn spawn(
    cfg: LoopConfig,
    cache: ScrapeCache,
    client: Option<reqwest::Client>,
    appendable: Arc<dyn Appendable>,
    offset_seed: u64,
    shutdown: watch::Receiver<bool>,
) -> LoopHandle {
    let (ctl_tx, ctl_rx) = watch::channel(Ctl::Run);
    let (done_tx, done_rx) = oneshot::channel();
    let shared = Arc::new(LoopShared::default());
    let scraper = Scraper::new(client, &cfg.target);
    let sl = ScrapeLoop {
        cfg: Arc::new(cfg),
        cache,
        scraper,
        appendable,
        shared: shared.clone(),
        offset_seed,
    };
    let join = tokio::spawn(sl.run(ctl_rx, shutdown, done_tx));
    LoopHandle {
        ctl: ctl_tx,
        done: Some(done_rx),
        join,
        shared,
    }
}

impl ScrapeLoop {
    async fn run(
        mut self,
        mut ctl: watch::Receiver<Ctl>,
        mut shutdown: watch::Receiver<bool>,
        done: oneshot::Sender<Option<ScrapeCache>>,
    ) {
        let interval = self.cfg.target.interval.max(Duration::from_millis(1));
        let hash = target_hash(&self.cfg.target.labels, &self.cfg.target.url);
        let offset = scrape_offset(hash, interval, self.offset_seed, SystemTime::now());
        let mut last: Option<SystemTime> = None;
        let mut buf = Vec::new();
        let stop = 'run: {
            tokio::select! {
                _ = tokio::time::sleep(offset) => {}
                m = wait_stop(&mut ctl, &mut shutdown) => break 'run m,
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            ticker.tick().await;
            let mut aligned = SystemTime::now();
            let tolerance = (interval / 100).min(TIMESTAMP_TOLERANCE);
            loop {
                let mut t = SystemTime::now();
                // Snap to the ideal tick when close, for better compression.
                while t.duration_since(aligned).is_ok_and(|d| d >= interval) {
                    aligned += interval;
                }
                if t.duration_since(aligned).is_ok_and(|d| d <= tolerance) {
                    t = aligned;
                }
                if let Some(m) = self
                    .scrape_and_report(t, &mut buf, &mut ctl, &mut shutdown)
                    .await
                {
                    break 'run m;
                }
                last = Some(t);
                crate::intern::maybe_gc();
                tokio::select! {
                    _ = ticker.tick() => {}
                    m = wait_stop(&mut ctl, &mut shutdown) => break 'run m,
                }
            }
        };
        match stop {
            Ctl::Restart => {
                let _ = done.send(Some(std::mem::take(&mut self.cache).handover()));
            }
            Ctl::Stop if last.is_some() => {
                let _ = done.send(None);
                self.end_of_run_staleness(interval, &mut shutdown).await;
            }
            _ => {
                let _ = done.send(None);
            }
        }
    }

    /// Waits until about two intervals after the stop (a re-created target would have been
    /// scraped by then, making these markers out of order), then marks everything stale at
    /// the time the next scrape would have happened.
    async fn end_of_run_staleness(
        &mut self,
        interval: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let wait = async {
            tokio::time::sleep(interval).await;
            let stale_time = SystemTime::now();
            tokio::time::sleep(interval + interval / 10).await;
            stale_time
        };
        let stale_time = tokio::select! {
            t = wait => t,
            _ = wait_shutdown(shutdown) => return,
        };
        let cfg = self.cfg.clone();
        let appendable = self.appendable.clone();
        let mut cache = std::mem::take(&mut self.cache);
        let t = to_ms(stale_time);
        let res = tokio::task::spawn_blocking(move || {
            process_end_of_run(&cfg, &mut cache, &*appendable, t);
        })
        .await;
        if let Err(e) = res {
            tracing::error!(target_url = %self.cfg.target.url, "end-of-run staleness task failed: {e}");
        }
    }

    /// One scrape at timestamp `t`. Returns the stop instruction if one arrived while the
    /// fetch was in flight (the scrape is then abandoned).
    async fn scrape_and_report(
        &mut self,
        t: SystemTime,
        buf: &mut Vec<u8>,
        ctl: &mut watch::Receiver<Ctl>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Ctl> {
        let start = Instant::now();
        let forced = self.shared.forced.lock().clone();
        let target = &self.cfg.target;
        let fetched: Fetched = match forced {
            Some(e) => Err(e),
            None => {
                let fut = tokio::time::timeout(target.timeout, self.scraper.fetch(target, buf));
                tokio::select! {
                    r = fut => match r {
                        Ok(Ok(ct)) => Ok((std::mem::take(buf), ct)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(format!("Get {:?}: context deadline exceeded", target.url)),
                    },
                    m = wait_stop(ctl, shutdown) => return Some(m),
                }
            }
        };
        let cfg = self.cfg.clone();
        let appendable = self.appendable.clone();
        let mut cache = std::mem::take(&mut self.cache);
        let ts = to_ms(t);
        let res = tokio::task::spawn_blocking(move || {
            let r = process(&cfg, &mut cache, &*appendable, &fetched, ts, start);
            (cache, fetched, r)
        })
        .await;
        let (counts, err) = match res {
            Ok((cache, fetched, r)) => {
                self.cache = cache;
                if let Ok((body, _)) = fetched {
                    *buf = body;
                }
                r
            }
            Err(e) => {
                // The cache is lost; the next scrape starts afresh.
                tracing::error!(target_url = %self.cfg.target.url, "scrape task failed: {e}");
                (Default::default(), Some(format!("internal error: {e}")))
            }
        };
        if let Some(e) = &err {
            tracing::debug!(target_url = %self.cfg.target.url, "scrape failed: {e}");
        }
        let mut st = self.shared.status.write();
        st.health = if err.is_none() {
            TargetHealth::Up
        } else {
            TargetHealth::Down
        };
        st.last_error = err;
        st.last_scrape = Some(t);
        st.last_scrape_duration = Some(start.elapsed());
        st.last_samples = counts.total;
        st.scrapes += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_have_a_fixed_phase() {
        let iv = Duration::from_secs(10);
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (hash, seed) in [(0u64, 0u64), (12345, 0), (u64::MAX, 77), (3, 3)] {
            let phase = u128::from(hash ^ seed) % iv.as_nanos();
            for step_ms in [0u64, 1, 999, 4321, 9999, 10_000] {
                let now = base + Duration::from_millis(step_ms);
                let off = scrape_offset(hash, iv, seed, now);
                assert!(off > Duration::ZERO && off <= iv, "{off:?}");
                let at = (now + off).duration_since(UNIX_EPOCH).unwrap().as_nanos();
                assert_eq!(at % iv.as_nanos(), phase, "hash {hash} step {step_ms}");
            }
        }
    }
}
