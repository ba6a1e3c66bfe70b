//! The scrape manager (Prometheus's `scrape.Manager` and `scrapePool.sync`/`reload`): holds one
//! HTTP client per pool and one loop per unique target, and on [`ScrapeManager::apply`] diffs
//! the wanted pools against the running loops — unchanged targets keep running undisturbed,
//! vanished ones stop (with end-of-run staleness markers), changed ones restart keeping their
//! staleness state, new ones start. `target_limit` and HTTP client errors become errors every
//! scrape of the pool reports (`up` 0) instead of scraping.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_tsdb::Labels;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::append::LoopConfig;
use super::cache::ScrapeCache;
use super::scrape_loop::{spawn, Ctl, LoopHandle, LoopShared};
use super::{Appendable, ScrapeParams, ScrapeTarget, TargetStatus};
use crate::http::build_client;

/// How long [`ScrapeManager::apply`] and [`ScrapeManager::stop`] wait for one loop to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One scrape config's wanted state.
#[derive(Clone, Debug)]
pub struct ScrapePool {
    /// The job name; pools are matched by it across `apply` calls.
    pub name: String,
    pub params: Arc<ScrapeParams>,
    pub targets: Vec<ScrapeTarget>,
    /// Discovered labels of the targets relabeling dropped.
    pub dropped: Vec<Labels>,
    /// Maximum number of unique targets (0 = none); above it every target fails.
    pub target_limit: usize,
}

/// A running target as the targets API shows it.
#[derive(Clone, Debug)]
pub struct ActiveTarget {
    pub pool: String,
    pub labels: Labels,
    pub discovered_labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub status: TargetStatus,
}

/// A target dropped by relabeling.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedTarget {
    pub pool: String,
    pub discovered_labels: Labels,
}

/// All targets, sorted by pool then labels.
#[derive(Clone, Debug, Default)]
pub struct TargetsSnapshot {
    pub active: Vec<ActiveTarget>,
    pub dropped: Vec<DroppedTarget>,
}

type TargetKey = (Labels, String);

struct RunningLoop {
    target: ScrapeTarget,
    handle: LoopHandle,
}

struct PoolState {
    params: Arc<ScrapeParams>,
    client: Result<reqwest::Client, String>,
    loops: HashMap<TargetKey, RunningLoop>,
    dropped: Vec<Labels>,
}

#[derive(Default)]
struct State {
    pools: HashMap<String, PoolState>,
    /// Stopped loops still waiting to write end-of-run staleness markers.
    lingering: Vec<JoinHandle<()>>,
    stopped: bool,
}

#[derive(Default)]
struct View {
    active: Vec<(String, ScrapeTarget, Arc<LoopShared>)>,
    dropped: Vec<DroppedTarget>,
}

/// Runs the scrape loops of all pools. Needs a Tokio runtime.
pub struct ScrapeManager {
    appendable: Arc<dyn Appendable>,
    offset_seed: u64,
    shutdown: watch::Sender<bool>,
    state: tokio::sync::Mutex<State>,
    view: parking_lot::RwLock<View>,
}

/// Whether a running loop can go on scraping `new` unchanged.
fn same_loop(old: &ScrapeTarget, new: &ScrapeTarget) -> bool {
    old.interval == new.interval
        && old.timeout == new.timeout
        && Arc::ptr_eq(&old.params, &new.params)
}

impl ScrapeManager {
    /// A manager appending to `appendable`, with offset seed 0.
    pub fn new(appendable: Arc<dyn Appendable>) -> Self {
        Self::with_offset_seed(appendable, 0)
    }

    /// A manager whose scrape offsets are additionally spread by `seed` (Prometheus derives
    /// it from the host name and external labels so HA pairs do not scrape in lockstep).
    pub fn with_offset_seed(appendable: Arc<dyn Appendable>, seed: u64) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            appendable,
            offset_seed: seed,
            shutdown,
            state: tokio::sync::Mutex::new(State::default()),
            view: parking_lot::RwLock::new(View::default()),
        }
    }

    fn start(&self, target: ScrapeTarget, cache: ScrapeCache, pool: &PoolState) -> RunningLoop {
        // A client that failed to build is reported through the forced error instead.
        let client = pool.client.clone().ok();
        let handle = spawn(
            LoopConfig::new(target.clone()),
            cache,
            client,
            self.appendable.clone(),
            self.offset_seed,
            self.shutdown.subscribe(),
        );
        RunningLoop { target, handle }
    }

    /// Makes the running loops match `pools` (see the module docs). Returns once the loops
    /// to stop have stopped scraping (each waited for at most a few seconds); their
    /// end-of-run staleness markers follow in the background.
    pub async fn apply(&self, pools: Vec<ScrapePool>) {
        let mut st = self.state.lock().await;
        if st.stopped {
            return;
        }
        st.lingering.retain(|h| !h.is_finished());
        let mut old_pools = std::mem::take(&mut st.pools);
        let mut to_stop: Vec<RunningLoop> = Vec::new();
        let mut new_pools: HashMap<String, PoolState> = HashMap::new();
        let mut seen_pools = HashSet::new();

        for pool in pools {
            if !seen_pools.insert(pool.name.clone()) {
                tracing::warn!(pool = %pool.name, "duplicate scrape pool name ignored");
                continue;
            }
            let old = old_pools.remove(&pool.name);
            let client = match &old {
                Some(o) if Arc::ptr_eq(&o.params, &pool.params) => o.client.clone(),
                _ => build_client(&pool.params.http, None).map_err(|e| e.to_string()),
            };
            if let Err(e) = &client {
                tracing::error!(pool = %pool.name, "error creating HTTP client: {e}");
            }
            let mut old_loops = old.map(|o| o.loops).unwrap_or_default();
            let mut state = PoolState {
                params: pool.params.clone(),
                client,
                loops: HashMap::new(),
                dropped: pool.dropped,
            };
            let mut restarts: Vec<(ScrapeTarget, RunningLoop)> = Vec::new();
            let mut fresh: Vec<ScrapeTarget> = Vec::new();
            let mut keys = HashSet::new();
            for t in pool.targets {
                let key = (t.labels.clone(), t.url.clone());
                if !keys.insert(key.clone()) {
                    continue;
                }
                match old_loops.remove(&key) {
                    Some(mut rl) if same_loop(&rl.target, &t) => {
                        rl.target.discovered_labels = t.discovered_labels;
                        state.loops.insert(key, rl);
                    }
                    Some(rl) => {
                        rl.handle.signal(Ctl::Restart);
                        restarts.push((t, rl));
                    }
                    None => fresh.push(t),
                }
            }
            to_stop.extend(old_loops.into_values());
            for (t, mut rl) in restarts {
                let cache = rl.handle.wait_stopped(STOP_WAIT).await.unwrap_or_default();
                let key = (t.labels.clone(), t.url.clone());
                let nl = self.start(t, cache, &state);
                state.loops.insert(key, nl);
            }
            for t in fresh {
                let key = (t.labels.clone(), t.url.clone());
                let nl = self.start(t, ScrapeCache::new(), &state);
                state.loops.insert(key, nl);
            }
            let forced = match &state.client {
                Err(e) => Some(format!("error creating HTTP client: {e}")),
                Ok(_) if pool.target_limit > 0 && state.loops.len() > pool.target_limit => {
                    Some(format!(
                        "target_limit exceeded (number of targets: {}, limit: {})",
                        state.loops.len(),
                        pool.target_limit
                    ))
                }
                Ok(_) => None,
            };
            for rl in state.loops.values() {
                *rl.handle.shared.forced.lock() = forced.clone();
            }
            new_pools.insert(pool.name, state);
        }
        for (_, p) in old_pools {
            to_stop.extend(p.loops.into_values());
        }
        for rl in &to_stop {
            rl.handle.signal(Ctl::Stop);
        }
        for mut rl in to_stop {
            rl.handle.wait_stopped(STOP_WAIT).await;
            st.lingering.push(rl.handle.join);
        }
        st.pools = new_pools;
        self.update_view(&st);
    }

    fn update_view(&self, st: &State) {
        let mut v = View::default();
        for (name, p) in &st.pools {
            for rl in p.loops.values() {
                v.active
                    .push((name.clone(), rl.target.clone(), rl.handle.shared.clone()));
            }
            for d in &p.dropped {
                v.dropped.push(DroppedTarget {
                    pool: name.clone(),
                    discovered_labels: d.clone(),
                });
            }
        }
        v.active
            .sort_by(|a, b| (&a.0, &a.1.labels).cmp(&(&b.0, &b.1.labels)));
        v.dropped
            .sort_by(|a, b| (&a.pool, &a.discovered_labels).cmp(&(&b.pool, &b.discovered_labels)));
        *self.view.write() = v;
    }

    /// The active and dropped targets with their current status.
    pub fn targets(&self) -> TargetsSnapshot {
        let v = self.view.read();
        TargetsSnapshot {
            active: v
                .active
                .iter()
                .map(|(pool, t, shared)| ActiveTarget {
                    pool: pool.clone(),
                    labels: t.labels.clone(),
                    discovered_labels: t.discovered_labels.clone(),
                    url: t.url.clone(),
                    interval: t.interval,
                    timeout: t.timeout,
                    status: shared.status.read().clone(),
                })
                .collect(),
            dropped: v.dropped.clone(),
        }
    }

    /// Stops every loop without staleness markers (Prometheus presumes a restart) and waits,
    /// bounded, for them to finish. Later `apply` calls do nothing.
    pub async fn stop(&self) {
        let mut st = self.state.lock().await;
        st.stopped = true;
        self.shutdown.send_replace(true);
        let pools = std::mem::take(&mut st.pools);
        let mut joins = std::mem::take(&mut st.lingering);
        for (_, p) in pools {
            for (_, mut rl) in p.loops {
                rl.handle.wait_stopped(STOP_WAIT).await;
                joins.push(rl.handle.join);
            }
        }
        for j in joins {
            let abort = j.abort_handle();
            if tokio::time::timeout(STOP_WAIT, j).await.is_err() {
                abort.abort();
            }
        }
        self.update_view(&st);
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        // Loops end at their next wake-up.
        self.shutdown.send_replace(true);
    }
}
