//! The scrape service: turns a loaded `prometheus.yml` ([`Config`]) into running scrape loops
//! and keeps them in step with service discovery and reloads. Per job it builds the
//! [`ScrapeParams`] (kept as the same `Arc` while the job's settings are unchanged, so its
//! loops keep running across reloads), collects target groups from `static_configs` and
//! `file_sd_configs` (watched), computes targets with relabeling ([`crate::targets`]) and hands
//! the pools to the [`ScrapeManager`].
//!
//! A configuration is checked completely (HTTP client settings built, credential files read)
//! before anything changes; an invalid one is an error and the running one stays.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    Appendable, EscapingScheme, MetricRelabelFn, ScrapeManager, ScrapeParams, ScrapePool,
    ScrapeTarget, TargetsSnapshot,
};
use crate::config::{Config, ScrapeConfig};
use crate::discovery::{self, TargetGroup};
use crate::error::{Error, Result};
use crate::http::HttpSettings;
use crate::targets::{targets_from_group, TargetOutcome};

/// How long discovery updates are collected before the targets are recomputed.
const DISCOVERY_DEBOUNCE: Duration = Duration::from_millis(500);

/// One job's settings as they were applied.
struct Job {
    cfg: ScrapeConfig,
    params: Arc<ScrapeParams>,
    /// Identity of the settings: the job's configuration (secrets redacted) and its resolved
    /// HTTP settings (secrets included, so a rotated password counts as a change).
    key: (String, HttpSettings),
}

struct Generation {
    jobs: Vec<Job>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the scrape service reports beside the manager's snapshot.
#[derive(Default)]
struct Counts {
    dropped: BTreeMap<String, u64>,
}

/// Runs the scraping described by a configuration; see the module docs.
pub struct ScrapeService {
    manager: Arc<ScrapeManager>,
    current: Mutex<Option<Generation>>,
    counts: Arc<Mutex<Counts>>,
    /// Serialises `apply_config` calls.
    applying: tokio::sync::Mutex<()>,
}

impl ScrapeService {
    pub fn new(appendable: Arc<dyn Appendable>) -> Arc<Self> {
        Arc::new(ScrapeService {
            manager: Arc::new(ScrapeManager::new(appendable)),
            current: Mutex::new(None),
            counts: Arc::new(Mutex::new(Counts::default())),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// Applies `cfg`: validates every job's client settings, then replaces discovery and the
    /// scrape pools. Jobs whose settings did not change keep their loops. On error nothing
    /// changes.
    pub async fn apply_config(&self, cfg: &Config) -> Result<()> {
        let _guard = self.applying.lock().await;
        let mut jobs = Vec::with_capacity(cfg.scrape_configs.len());
        {
            let cur = self.current.lock();
            let old: HashMap<&str, &Job> = cur
                .as_ref()
                .map(|g| {
                    g.jobs
                        .iter()
                        .map(|j| (j.cfg.job_name.as_str(), j))
                        .collect()
                })
                .unwrap_or_default();
            for (i, sc) in cfg.scrape_configs.iter().enumerate() {
                let field = format!("scrape_configs[{i}] (job {:?})", sc.job_name);
                let http = sc
                    .http_client
                    .to_settings(&format!("scrape_configs[{i}]"))
                    .map_err(|message| Error::Config {
                        path: cfg.path().map(Into::into),
                        message,
                    })?;
                crate::http::build_client(&http, None).map_err(|e| Error::Config {
                    path: cfg.path().map(Into::into),
                    message: format!("{field}: {e}"),
                })?;
                let key = (serde_json::to_string(sc).unwrap_or_default(), http.clone());
                let params = match old.get(sc.job_name.as_str()) {
                    Some(j) if j.key == key => j.params.clone(),
                    _ => Arc::new(params_for(sc, http)),
                };
                jobs.push(Job {
                    cfg: sc.clone(),
                    params,
                    key,
                });
            }
        }

        // Discovery: static groups now, file_sd read once now and then watched.
        let mut sources: Vec<(usize, watch::Receiver<Vec<TargetGroup>>)> = Vec::new();
        let mut tasks = Vec::new();
        let mut statics: Vec<Vec<TargetGroup>> = Vec::with_capacity(jobs.len());
        for (ji, job) in jobs.iter().enumerate() {
            statics.push(discovery::static_groups(&job.cfg));
            for fsd in &job.cfg.file_sd_configs {
                let (initial, errors) = discovery::read_file_sd(fsd);
                for e in errors {
                    tracing::warn!(job = %job.cfg.job_name, error = %e, "file_sd");
                }
                let (tx, rx) = watch::channel(initial);
                tasks.push(discovery::spawn_file_sd_watcher(fsd.clone(), tx));
                sources.push((ji, rx));
            }
        }
        let view = Arc::new(JobsView {
            jobs: jobs
                .iter()
                .map(|j| (j.cfg.clone(), j.params.clone()))
                .collect(),
            statics,
        });
        // The old generation's discovery stops before the new pools apply, so it cannot
        // apply stale pools after them.
        if let Some(g) = self.current.lock().as_mut() {
            for t in g.tasks.drain(..) {
                t.abort();
            }
        }
        let pools = view.pools(&sources, &self.counts);
        self.manager.apply(pools).await;

        if !sources.is_empty() {
            // Each watcher's changes wake the one task that recomputes the pools.
            let wake = Arc::new(tokio::sync::Notify::new());
            for (_, rx) in &sources {
                let mut rx = rx.clone();
                let wake = wake.clone();
                tasks.push(tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        wake.notify_one();
                    }
                }));
            }
            let manager = self.manager.clone();
            let counts = self.counts.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    wake.notified().await;
                    // Let further updates arrive before recomputing.
                    tokio::time::sleep(DISCOVERY_DEBOUNCE).await;
                    let pools = view.pools(&sources, &counts);
                    manager.apply(pools).await;
                }
            }));
        }

        *self.current.lock() = Some(Generation { jobs, tasks });
        Ok(())
    }

    /// The manager's view of active and dropped targets.
    pub fn targets(&self) -> TargetsSnapshot {
        self.manager.targets()
    }

    /// Dropped targets per pool (all of them, also those not kept for display).
    pub fn dropped_counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().dropped.clone()
    }

    /// The configured jobs, in configuration order.
    pub fn pools(&self) -> Vec<String> {
        self.current
            .lock()
            .as_ref()
            .map(|g| g.jobs.iter().map(|j| j.cfg.job_name.clone()).collect())
            .unwrap_or_default()
    }

    /// Stops discovery and every scrape loop (no staleness markers, as on shutdown).
    pub async fn stop(&self) {
        if let Some(g) = self.current.lock().take() {
            for t in g.tasks {
                t.abort();
            }
        }
        self.manager.stop().await;
    }
}

/// The jobs of one configuration generation, for recomputing pools from discovery.
struct JobsView {
    jobs: Vec<(ScrapeConfig, Arc<ScrapeParams>)>,
    statics: Vec<Vec<TargetGroup>>,
}

impl JobsView {
    fn pools(
        &self,
        sources: &[(usize, watch::Receiver<Vec<TargetGroup>>)],
        counts: &Mutex<Counts>,
    ) -> Vec<ScrapePool> {
        let mut dropped_counts = BTreeMap::new();
        let pools = self
            .jobs
            .iter()
            .enumerate()
            .map(|(ji, (cfg, params))| {
                let mut groups: Vec<TargetGroup> = self.statics[ji].clone();
                for (i, rx) in sources {
                    if *i == ji {
                        groups.extend(rx.borrow().iter().cloned());
                    }
                }
                let mut targets = Vec::new();
                let mut dropped = Vec::new();
                let mut n_dropped = 0u64;
                for g in &groups {
                    let (outcomes, errors) = targets_from_group(cfg, g);
                    for e in errors {
                        tracing::warn!(job = %cfg.job_name, error = %e, "target dropped");
                    }
                    for o in outcomes {
                        match o {
                            TargetOutcome::Active(t) => targets.push(ScrapeTarget {
                                labels: t.labels,
                                discovered_labels: t.discovered_labels,
                                url: t.url,
                                interval: t.interval.as_std(),
                                timeout: t.timeout.as_std(),
                                params: params.clone(),
                            }),
                            TargetOutcome::Dropped { discovered } => {
                                n_dropped += 1;
                                let keep = cfg.keep_dropped_targets;
                                if keep == 0 || (dropped.len() as u64) < keep {
                                    dropped.push(discovered);
                                }
                            }
                        }
                    }
                }
                // The same target may be discovered twice; scrape it once.
                let mut seen = std::collections::HashSet::new();
                targets.retain(|t| seen.insert((t.labels.clone(), t.url.clone())));
                dropped_counts.insert(cfg.job_name.clone(), n_dropped);
                ScrapePool {
                    name: cfg.job_name.clone(),
                    params: params.clone(),
                    targets,
                    dropped,
                    target_limit: cfg.target_limit as usize,
                }
            })
            .collect();
        counts.lock().dropped = dropped_counts;
        pools
    }
}

/// The scrape loop settings of one job.
fn params_for(sc: &ScrapeConfig, http: HttpSettings) -> ScrapeParams {
    let metric_relabel: Option<MetricRelabelFn> = if sc.metric_relabel_configs.is_empty() {
        None
    } else {
        let rules = sc.metric_relabel_configs.clone();
        Some(Arc::new(move |l: &strata_tsdb::Labels| {
            crate::relabel::process(l, &rules)
        }))
    };
    let escaping = match sc.metric_name_escaping_scheme.as_str() {
        "underscores" => EscapingScheme::Underscores,
        "dots" => EscapingScheme::Dots,
        "values" => EscapingScheme::Values,
        _ => EscapingScheme::AllowUtf8,
    };
    ScrapeParams {
        job: sc.job_name.clone(),
        honor_labels: sc.honor_labels,
        honor_timestamps: sc.honor_timestamps,
        track_timestamps_staleness: sc.track_timestamps_staleness,
        sample_limit: sc.sample_limit as usize,
        label_limit: sc.label_limit as usize,
        label_name_length_limit: sc.label_name_length_limit as usize,
        label_value_length_limit: sc.label_value_length_limit as usize,
        body_size_limit: sc.body_size_limit.0,
        scrape_protocols: sc
            .scrape_protocols
            .iter()
            .filter_map(|p| p.text_protocol())
            .collect(),
        fallback_protocol: sc.fallback_scrape_protocol.and_then(|p| p.text_protocol()),
        escaping,
        enable_compression: sc.enable_compression,
        http,
        metric_relabel,
    }
}
