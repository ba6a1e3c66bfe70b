//! `strata serve`: opens the data directory (WAL replay, blocks), runs background compaction
//! and retention, and serves HTTP: the Prometheus query API (`strata_querier::api`), health,
//! readiness and self-metrics, the remote-write receiver, and — with `--config.file` — the
//! scrape service, reloaded on SIGHUP and `POST /-/reload`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_ingest::config::Config;
use strata_ingest::scrape::{Appendable, ScrapeService};
use strata_promql::{Engine, EngineOptions};
use strata_querier::api::{ApiConfig, ApiState};
use strata_tsdb::db::{Db, DbOptions};
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
    let opts = DbOptions {
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
    let db = Db::open(&args.path, opts)
        .with_context(|| format!("opening data directory {}", args.path.display()))?;
    for b in db.broken_blocks() {
        tracing::error!(block = %b.dir.display(), error = %b.error, "block skipped");
    }
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
    let state = Arc::new(ApiState::new(
        db.clone(),
        engine,
        ApiConfig {
            external_labels,
            flags,
            config_yaml,
            max_concurrency: args.max_concurrency,
            storage_retention: args.retention_time.clone(),
            enable_lifecycle: args.enable_lifecycle,
            ..Default::default()
        },
    ));
    let scrape = ScrapeService::new(db.clone() as Arc<dyn Appendable>);
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
        ("query.max-samples", a.max_samples.to_string()),
        ("query.max-concurrency", a.max_concurrency.to_string()),
        ("web.enable-lifecycle", a.enable_lifecycle.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn serve_http(addr: SocketAddr, state: Arc<ApiState>) -> Result<()> {
    let app = strata_querier::api::router(state.clone()).merge(
        strata_querier::api::remote::remote_router(state, Default::default()),
    );
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

pub async fn shutdown_signal() {
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
