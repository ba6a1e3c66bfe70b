//! `strata serve`: opens the data directory (WAL replay, blocks), runs background compaction
//! and retention, and serves HTTP: the Prometheus query API (`strata_querier::api`), health,
//! readiness and self-metrics, the remote-write receiver, and — with `--config.file` — the
//! scrape service, reloaded on SIGHUP and `POST /-/reload`. A shipper uploads every block the
//! database persists to object storage (`--objstore.config[-file]`, by default a FILESYSTEM
//! bucket at `<storage.tsdb.path>/bucket`) and local retention deletes only shipped blocks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_compactor::shipper::Shipper;
use strata_ingest::config::Config;
use strata_ingest::scrape::{Appendable, ScrapeService};
use strata_promql::{Engine, EngineOptions};
use strata_querier::api::{ApiConfig, ApiState};
use strata_querier::bucket::{BucketStore, BucketStoreOptions, FanIn};
use strata_tsdb::db::{Db, DbOptions, RetentionGuard};
use strata_tsdb::Labels;

use crate::tsdb_cmd::parse_duration_ms;

/// Flags of `strata serve`, named as Prometheus names them.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen: String,
    /// Data directory.
    #[arg(long = "storage.tsdb.path", default_value = "./data")]
    path: PathBuf,
    /// How long to keep data, e.g. 15d. 0 disables time retention.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d")]
    retention_time: String,
    /// Maximum bytes of blocks to keep (e.g. 512MB, 10GB). 0 disables size retention.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0")]
    retention_size: String,
    /// How far behind the newest sample out-of-order samples are accepted.
    #[arg(long = "storage.tsdb.out-of-order-time-window", default_value = "0s")]
    ooo_window: String,
    /// Prometheus configuration file: `global.external_labels` and `scrape_configs` (Strata
    /// scrapes the targets into its own storage). Reloaded on SIGHUP.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Enable `POST /-/reload` (as Prometheus's flag of the same name).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// How far back a vector selector looks for the latest sample.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    lookback_delta: String,
    /// Maximum time a query may take before it is aborted.
    #[arg(long = "query.timeout", default_value = "2m")]
    query_timeout: String,
    /// Maximum number of samples a single query may load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// Maximum number of queries evaluated at once; more wait for a slot.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    max_concurrency: usize,
    /// Object storage configuration file (Thanos's objstore YAML). Without it (and without
    /// --objstore.config), blocks are shipped to a FILESYSTEM bucket at
    /// <storage.tsdb.path>/bucket.
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    objstore_config_file: Option<PathBuf>,
    /// Label naming HA replicas (Thanos's flag); series differing only in it are merged in
    /// queries. Repeatable.
    #[arg(long = "query.replica-label")]
    replica_labels: Vec<String>,
    /// The coarsest downsampled data (5m, 1h blocks made by `strata compact`) a query reads
    /// when it gives no `max_source_resolution`: `auto` (a fifth of the step; instant
    /// queries read raw data), `raw`, or a duration.
    #[arg(long = "query.max-source-resolution", default_value = "auto")]
    max_source_resolution: String,
    /// How often the bucket store re-lists the bucket for blocks uploaded by others (this
    /// server's own uploads are picked up at once).
    #[arg(long = "store.sync-interval", default_value = "3m")]
    store_sync_interval: String,
    /// Object storage configuration as YAML text (alternative to --objstore.config-file).
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    /// Also ship compacted blocks (level > 1), and keep local compaction on.
    #[arg(long = "shipper.upload-compacted")]
    upload_compacted: bool,
    /// How often the shipper looks for new blocks.
    #[arg(long = "shipper.interval", default_value = "30s", hide = true)]
    shipper_interval: String,
    /// Range of blocks persisted from the head (Prometheus's hidden flag).
    #[arg(
        long = "storage.tsdb.min-block-duration",
        default_value = "2h",
        hide = true
    )]
    min_block_duration: String,
    /// Largest block local compaction may produce (Prometheus's hidden flag). Defaults to 10%
    /// of the retention; while blocks are shipped without --shipper.upload-compacted it equals
    /// --storage.tsdb.min-block-duration (no local compaction, as Thanos's sidecar requires).
    #[arg(long = "storage.tsdb.max-block-duration", hide = true)]
    max_block_duration: Option<String>,
}

/// Where `strata serve`'s scrapes go: samples to the database, metric metadata to the
/// store behind `/api/v1/metadata`.
struct ScrapeSink {
    db: Arc<strata_tsdb::db::Db>,
    api: Arc<ApiState>,
}

impl Appendable for ScrapeSink {
    fn appender(
        &self,
    ) -> strata_ingest::error::Result<Box<dyn strata_tsdb::storage::Appender + '_>> {
        Appendable::appender(&*self.db)
    }

    fn record_metadata(&self, family: &str, typ: &str, help: &str, unit: &str) {
        self.api.metadata.record(family, typ, help, unit);
    }
}

/// How long the final shipper sync at shutdown may take.
const FINAL_SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The bucket from `--objstore.config[-file]`, or the default FILESYSTEM bucket.
fn open_bucket(
    args: &ServeArgs,
) -> Result<(
    strata_compactor::bucket::Bucket,
    strata_compactor::objstore::BucketDescription,
)> {
    if let Some(opened) = crate::compact_cmd::open_objstore(
        args.objstore_config_file.as_deref(),
        args.objstore_config.as_deref(),
    )? {
        return Ok(opened);
    }
    let dir = args.path.join("bucket");
    tracing::info!(
        dir = %dir.display(),
        "no --objstore.config-file: shipping blocks to a local FILESYSTEM bucket"
    );
    let (bucket, desc) =
        strata_compactor::objstore::filesystem(&dir).context("default FILESYSTEM bucket")?;
    tracing::info!(bucket = %desc, "object storage");
    Ok((bucket, desc))
}

/// Runs `shipper.sync` now and then every `every` until `stop` fires. `behind` is true while a
/// pass runs and while the bucket store has not synced since an upload (retention waits).
async fn ship_loop(
    shipper: Arc<Shipper>,
    store: BucketStore,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    uploads: prometheus_client::metrics::counter::Counter,
    failures: prometheus_client::metrics::counter::Counter,
    behind: Arc<std::sync::atomic::AtomicBool>,
) {
    // Whether blocks were (or may have been) uploaded since the store's last good sync.
    let mut store_stale = false;
    loop {
        behind.store(true, std::sync::atomic::Ordering::SeqCst);
        match shipper.sync().await {
            Ok(r) => {
                uploads.inc_by(r.uploaded.len() as u64);
                failures.inc_by(r.failed.len() as u64);
                store_stale |= !r.uploaded.is_empty();
            }
            Err(e) => {
                failures.inc();
                tracing::error!(error = %e, "shipper sync failed");
                store_stale = true;
            }
        }
        // Queries see an uploaded block through the bucket store before local retention may
        // drop the local copy.
        if store_stale {
            match store.sync().await {
                Ok(_) => store_stale = false,
                Err(e) => tracing::error!(error = %e, "bucket store sync failed"),
            }
        }
        behind.store(store_stale, std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Loads `--config.file`, logging the parts Strata accepts but does not implement.
pub fn load_config(path: &std::path::Path) -> Result<Config> {
    let cfg = Config::load(path).map_err(|e| anyhow::anyhow!("loading --config.file: {e}"))?;
    for what in cfg.unsupported() {
        tracing::warn!(config = %path.display(), field = %what, "accepted but not implemented");
    }
    Ok(cfg)
}

/// `global.external_labels` as labels.
pub fn external_labels(cfg: &Config) -> Labels {
    let pairs: Vec<(String, String)> = cfg
        .global
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Labels::from_pairs(&pairs)
}

/// Parses a byte size such as `512MB`, `10GB`, `1TiB` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim();
    let idx = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(idx);
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        "TB" | "TIB" => 1 << 40,
        "PB" | "PIB" => 1 << 50,
        "EB" | "EIB" => 1 << 60,
        other => anyhow::bail!("invalid size {s:?}: unknown unit {other:?}"),
    };
    Ok((n * mult as f64) as u64)
}

pub fn run(args: ServeArgs) -> Result<()> {
    let block_range =
        parse_duration_ms(&args.min_block_duration).context("--storage.tsdb.min-block-duration")?;
    if block_range <= 0 {
        anyhow::bail!("--storage.tsdb.min-block-duration must be positive");
    }
    let max_block_range = match &args.max_block_duration {
        Some(s) => parse_duration_ms(s).context("--storage.tsdb.max-block-duration")?,
        None => 0,
    };
    if max_block_range != 0 && max_block_range < block_range {
        anyhow::bail!(
            "--storage.tsdb.max-block-duration is below --storage.tsdb.min-block-duration"
        );
    }
    let max_block_range = if args.upload_compacted {
        max_block_range
    } else {
        if max_block_range > block_range {
            anyhow::bail!(
                "--storage.tsdb.max-block-duration must equal --storage.tsdb.min-block-duration \
                 while blocks are shipped (compacted blocks are not uploaded); \
                 pass --shipper.upload-compacted to keep local compaction"
            );
        }
        block_range
    };
    let ship_every = std::time::Duration::from_millis(
        parse_duration_ms(&args.shipper_interval)
            .context("--shipper.interval")?
            .max(1) as u64,
    );
    let opts = DbOptions {
        block_range,
        max_block_range,
        // Prometheus looks for work every minute; small test block ranges need it sooner.
        compaction_interval: Some(std::time::Duration::from_millis(
            (block_range / 8).clamp(1_000, 60_000) as u64,
        )),
        retention_time: if args.retention_time == "0" {
            0
        } else {
            parse_duration_ms(&args.retention_time).context("--storage.tsdb.retention.time")?
        },
        retention_size: parse_bytes(&args.retention_size)
            .context("--storage.tsdb.retention.size")?,
        ooo_window: parse_duration_ms(&args.ooo_window)
            .context("--storage.tsdb.out-of-order-time-window")?,
        ..Default::default()
    };
    let config = match &args.config_file {
        Some(p) => Some(load_config(p)?),
        None => None,
    };
    let (config_yaml, external_labels) = match &config {
        Some(c) => (c.to_yaml(), external_labels(c)),
        None => (String::new(), Labels::empty()),
    };
    let engine = Engine::new(EngineOptions {
        lookback_delta: parse_duration_ms(&args.lookback_delta)
            .context("--query.lookback-delta")?,
        max_samples: args.max_samples,
        timeout: std::time::Duration::from_millis(
            parse_duration_ms(&args.query_timeout).context("--query.timeout")? as u64,
        ),
        ..Default::default()
    });
    let flags = flags_map(&args);
    // Retention deletes a block only once it is shipped; the shipper exists once the data
    // directory is locked (so a second process never touches its bucket directory). The
    // shipper marks a block shipped as soon as it is uploaded, but the bucket store re-syncs
    // only after the upload pass: while a pass runs, or the store has not synced since an
    // upload, nothing is deleted (the block's samples would be hidden from queries). `shipped`
    // is read first: a block uploaded by a pass started after the `store_behind` read cannot
    // pass.
    let shipper_slot: Arc<std::sync::OnceLock<Arc<Shipper>>> = Arc::default();
    let store_behind = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (slot, behind) = (shipper_slot.clone(), store_behind.clone());
    let opts = DbOptions {
        retention_guard: Some(RetentionGuard::new(move |id| {
            slot.get().is_some_and(|s| s.shipped(id))
                && !behind.load(std::sync::atomic::Ordering::SeqCst)
        })),
        ..opts
    };
    let db = Db::open(&args.path, opts)
        .with_context(|| format!("opening data directory {}", args.path.display()))?;
    for b in db.broken_blocks() {
        tracing::error!(block = %b.dir.display(), error = %b.error, "block skipped");
    }
    let (bucket, _) = open_bucket(&args)?;
    let ext: std::collections::BTreeMap<String, String> = external_labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    let store = BucketStore::new(
        bucket.clone(),
        args.path.join("bucket-cache"),
        BucketStoreOptions {
            sync_interval: std::time::Duration::from_millis(
                parse_duration_ms(&args.store_sync_interval)
                    .context("--store.sync-interval")?
                    .max(1) as u64,
            ),
            own_external_labels: ext.clone(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("bucket store: {e}"))?;
    let weak_db = Arc::downgrade(&db);
    let shipper = Arc::new(
        Shipper::new(bucket, &args.path, ext, "strata")
            .with_upload_compacted(args.upload_compacted)
            // Only blocks the database opened: broken ones are never uploaded.
            .with_filter(move |id| {
                weak_db
                    .upgrade()
                    .is_some_and(|db| db.blocks().iter().any(|b| b.ulid() == *id))
            }),
    );
    let _ = shipper_slot.set(shipper.clone());
    tracing::info!(
        path = %args.path.display(),
        series = db.head().num_series(),
        blocks = db.blocks().len(),
        "storage ready"
    );
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--web.listen-address {:?}", args.listen))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Queries read the head, local blocks and bucket blocks as one; a block both local and
    // in the bucket is merged, not counted twice.
    rt.block_on(store.sync())
        .map_err(|e| anyhow::anyhow!("bucket store: {e}"))?;
    let _store_sync = rt.block_on(async { store.spawn_sync_loop() });
    let queryable: Arc<dyn strata_tsdb::storage::Queryable> = Arc::new(
        FanIn::new(vec![db.clone(), Arc::new(store.clone())])
            .with_replica_labels(args.replica_labels.clone()),
    );
    let queryable_at: strata_querier::api::QueryableAt = {
        let (db, store, replicas) = (db.clone(), store.clone(), args.replica_labels.clone());
        Arc::new(move |max_res| {
            Arc::new(
                FanIn::new(vec![db.clone(), Arc::new(store.at_resolution(max_res))])
                    .with_replica_labels(replicas.clone()),
            )
        })
    };
    let max_source_resolution =
        strata_querier::api::MaxSourceResolution::parse(&args.max_source_resolution)
            .map_err(|e| anyhow::anyhow!("--query.max-source-resolution: {e}"))?;
    let state = Arc::new(
        ApiState::new(
            db.clone(),
            engine,
            ApiConfig {
                external_labels,
                flags,
                config_yaml,
                max_concurrency: args.max_concurrency,
                storage_retention: args.retention_time.clone(),
                enable_lifecycle: args.enable_lifecycle,
                max_source_resolution,
                ..Default::default()
            },
        )
        .with_queryable(queryable)
        .with_queryable_at(queryable_at),
    );
    let uploads = prometheus_client::metrics::counter::Counter::default();
    let failures = prometheus_client::metrics::counter::Counter::default();
    state.metrics().register(
        "strata_shipper_uploads",
        "Blocks uploaded to object storage.",
        uploads.clone(),
    );
    state.metrics().register(
        "strata_shipper_upload_failures",
        "Failed block uploads to object storage.",
        failures.clone(),
    );
    let (stop_ship, stop_rx) = tokio::sync::watch::channel(false);
    let ship_task = rt.spawn(ship_loop(
        shipper.clone(),
        store.clone(),
        ship_every,
        stop_rx,
        uploads,
        failures,
        store_behind,
    ));
    let scrape = ScrapeService::new(Arc::new(ScrapeSink {
        db: db.clone(),
        api: state.clone(),
    }) as Arc<dyn Appendable>);
    state.set_targets_source(scrape.clone());
    if let (Some(cfg), Some(path)) = (&config, &args.config_file) {
        rt.block_on(scrape.apply_config(cfg))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let handle = rt.handle().clone();
        let (scrape2, path2) = (scrape.clone(), path.clone());
        state.set_reloader(Arc::new(move || {
            let cfg = load_config(&path2).map_err(|e| format!("{e:#}"))?;
            handle
                .block_on(scrape2.apply_config(&cfg))
                .map_err(|e| e.to_string())?;
            tracing::info!(config = %path2.display(), "configuration reloaded");
            Ok(cfg.to_yaml())
        }));
        let st = state.clone();
        rt.spawn(reload_on_signal(move || {
            let st = st.clone();
            async move {
                tokio::task::spawn_blocking(move || st.reload())
                    .await
                    .map_err(|e| e.to_string())?
            }
        }));
    }
    let res = rt.block_on(serve_http(addr, state));
    rt.block_on(scrape.stop());
    let _ = stop_ship.send(true);
    rt.block_on(async {
        let _ = ship_task.await;
        match tokio::time::timeout(FINAL_SYNC_LIMIT, shipper.sync()).await {
            Ok(Ok(r)) if !r.uploaded.is_empty() => {
                tracing::info!(blocks = r.uploaded.len(), "shipped blocks at shutdown")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final shipper sync failed"),
            Err(_) => tracing::warn!(limit = ?FINAL_SYNC_LIMIT, "final shipper sync timed out"),
        }
    });
    db.close().context("closing storage")?;
    res
}

/// Runs `reload` on every SIGHUP; a failed reload is logged and the running configuration
/// stays.
pub async fn reload_on_signal<F, Fut>(reload: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = reload().await {
            tracing::error!(error = %e, "reloading the configuration failed; keeping the old one");
        }
    }
}

/// The flags as `/api/v1/status/flags` reports them.
fn flags_map(a: &ServeArgs) -> std::collections::BTreeMap<String, String> {
    [
        ("web.listen-address", a.listen.clone()),
        ("storage.tsdb.path", a.path.display().to_string()),
        ("storage.tsdb.retention.time", a.retention_time.clone()),
        ("storage.tsdb.retention.size", a.retention_size.clone()),
        (
            "storage.tsdb.out-of-order-time-window",
            a.ooo_window.clone(),
        ),
        (
            "config.file",
            a.config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("query.lookback-delta", a.lookback_delta.clone()),
        ("query.timeout", a.query_timeout.clone()),
        (
            "query.max-source-resolution",
            a.max_source_resolution.clone(),
        ),
        ("query.max-samples", a.max_samples.to_string()),
        ("query.max-concurrency", a.max_concurrency.to_string()),
        ("query.replica-label", a.replica_labels.join(",")),
        ("store.sync-interval", a.store_sync_interval.clone()),
        ("web.enable-lifecycle", a.enable_lifecycle.to_string()),
        (
            "objstore.config-file",
            a.objstore_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("shipper.upload-compacted", a.upload_compacted.to_string()),
        (
            "storage.tsdb.min-block-duration",
            a.min_block_duration.clone(),
        ),
        (
            "storage.tsdb.max-block-duration",
            a.max_block_duration.clone().unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn serve_http(addr: SocketAddr, state: Arc<ApiState>) -> Result<()> {
    let app = strata_querier::api::router(state.clone()).merge(
        strata_querier::api::remote::remote_router(state, Default::default()),
    );
    listen_and_serve(addr, app).await
}

/// Serves `app` on `addr` until SIGINT/SIGTERM, finishing in-flight requests.
pub async fn listen_and_serve(addr: SocketAddr, app: axum::Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
