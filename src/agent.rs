//! `strata agent`: Prometheus's agent mode. Scrapes the targets of `--config.file` into a local
//! WAL (`--storage.agent.path`) and forwards them to every `remote_write` URL through durable
//! queues. No local query engine; the HTTP server answers `/metrics`, `/-/healthy`,
//! `/-/ready`, `/api/v1/targets`, `/api/v1/scrape_pools`, `/api/v1/status/config`,
//! `/api/v1/status/flags` and (with `--web.enable-lifecycle`) `POST /-/reload`; SIGHUP also
//! reloads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use strata_ingest::agent::{Agent, AgentOptions, QueueBuilder};
use strata_ingest::scrape::{Appendable, ScrapeService};
use strata_querier::api::targets::targets_data;
use strata_querier::api::{Params, TargetsSource};

use crate::serve::{listen_and_serve, load_config, reload_on_signal};
use crate::tsdb_cmd::parse_duration_ms;

/// Flags of `strata agent`, named as Prometheus's agent mode names them.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Prometheus configuration file (`scrape_configs`, `remote_write`, `global`).
    #[arg(long = "config.file")]
    config_file: PathBuf,
    /// Directory of the agent's write-ahead log and remote-write positions.
    #[arg(long = "storage.agent.path", default_value = "data-agent")]
    path: PathBuf,
    /// Address to listen on.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen: String,
    /// WAL data younger than this is kept even when delivered.
    #[arg(long = "storage.agent.retention.min-time", default_value = "5m")]
    min_time: String,
    /// WAL data older than this is removed even when not yet delivered (0 = never).
    #[arg(long = "storage.agent.retention.max-time", default_value = "4h")]
    max_time: String,
    /// Compress WAL records with snappy.
    #[arg(long = "storage.agent.wal-compression", default_value_t = true, action = clap::ArgAction::Set)]
    wal_compression: bool,
    /// Enable `POST /-/reload`.
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
}

struct AgentState {
    agent: Agent,
    scrape: Arc<ScrapeService>,
    config_path: PathBuf,
    config_yaml: Mutex<String>,
    queues: Mutex<QueueBuilder>,
    flags: BTreeMap<String, String>,
    enable_lifecycle: bool,
    /// Serialises reloads.
    reloading: tokio::sync::Mutex<()>,
}

impl AgentState {
    /// Loads the configuration file and applies it; on error nothing changes.
    async fn reload(&self) -> Result<(), String> {
        let _g = self.reloading.lock().await;
        let cfg = load_config(&self.config_path).map_err(|e| format!("{e:#}"))?;
        let queues = self.queues.lock().build(&cfg).map_err(|e| e.to_string())?;
        self.scrape
            .apply_config(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        self.agent
            .apply_queues(queues)
            .await
            .map_err(|e| e.to_string())?;
        *self.config_yaml.lock() = cfg.to_yaml();
        tracing::info!(config = %self.config_path.display(), "configuration reloaded");
        Ok(())
    }
}

fn ms_flag(v: &str, name: &str) -> Result<Duration> {
    let ms = if v == "0" {
        0
    } else {
        parse_duration_ms(v).with_context(|| format!("--{name}"))?
    };
    Ok(Duration::from_millis(ms as u64))
}

pub fn run(args: AgentArgs) -> Result<()> {
    let cfg = load_config(&args.config_file)?;
    let opts = AgentOptions {
        min_wal_age: ms_flag(&args.min_time, "storage.agent.retention.min-time")?,
        max_wal_age: ms_flag(&args.max_time, "storage.agent.retention.max-time")?,
        wal_compression: args.wal_compression,
        ..Default::default()
    };
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--web.listen-address {:?}", args.listen))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut builder = QueueBuilder::new();
    let queues = builder.build(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    if queues.is_empty() {
        tracing::warn!("no remote_write configured: samples stay in the local WAL");
    }
    let agent = rt
        .block_on(async { Agent::start(&args.path, opts, queues) })
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.path.display()))?;
    tracing::info!(path = %args.path.display(), series = agent.storage().stats().series, "agent storage ready");
    let scrape = ScrapeService::new(agent.storage() as Arc<dyn Appendable>);
    rt.block_on(scrape.apply_config(&cfg))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let flags: BTreeMap<String, String> = [
        ("config.file", args.config_file.display().to_string()),
        ("storage.agent.path", args.path.display().to_string()),
        ("web.listen-address", args.listen.clone()),
        ("storage.agent.retention.min-time", args.min_time.clone()),
        ("storage.agent.retention.max-time", args.max_time.clone()),
        (
            "storage.agent.wal-compression",
            args.wal_compression.to_string(),
        ),
        ("web.enable-lifecycle", args.enable_lifecycle.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let state = Arc::new(AgentState {
        agent,
        scrape: scrape.clone(),
        config_path: args.config_file.clone(),
        config_yaml: Mutex::new(cfg.to_yaml()),
        queues: Mutex::new(builder),
        flags,
        enable_lifecycle: args.enable_lifecycle,
        reloading: tokio::sync::Mutex::new(()),
    });
    let st2 = state.clone();
    rt.spawn(reload_on_signal(move || {
        let st = st2.clone();
        async move { st.reload().await }
    }));
    let res = rt.block_on(serve_http(addr, state.clone()));
    rt.block_on(scrape.stop());
    let state = Arc::try_unwrap(state)
        .map_err(|_| anyhow::anyhow!("agent state still in use at shutdown"))?;
    rt.block_on(state.agent.shutdown(Duration::from_secs(10)))
        .map_err(|e| anyhow::anyhow!("shutting down the agent: {e}"))?;
    res
}

async fn serve_http(addr: SocketAddr, state: Arc<AgentState>) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Strata Agent is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata Agent is Ready.\n" }))
        .route("/-/reload", post(reload).put(reload))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .with_state(state);
    listen_and_serve(addr, app).await
}

fn success(data: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"status": "success", "data": data}).to_string(),
    )
        .into_response()
}

async fn targets(State(st): State<Arc<AgentState>>, p: Params) -> Response {
    success(targets_data(&st.scrape.snapshot(), &p))
}

async fn scrape_pools(State(st): State<Arc<AgentState>>) -> Response {
    let mut pools = st.scrape.pools();
    pools.sort();
    success(serde_json::json!({ "scrapePools": pools }))
}

async fn config(State(st): State<Arc<AgentState>>) -> Response {
    success(serde_json::json!({ "yaml": *st.config_yaml.lock() }))
}

async fn flags(State(st): State<Arc<AgentState>>) -> Response {
    success(serde_json::json!(st.flags))
}

async fn reload(State(st): State<Arc<AgentState>>) -> Response {
    if !st.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response();
    }
    match st.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        )
            .into_response(),
    }
}

/// Label value escaping of the text exposition format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics`: the agent's WAL and queue figures in the Prometheus text format.
async fn metrics(State(st): State<Arc<AgentState>>) -> Response {
    let s = st.agent.storage().stats();
    let mut out = String::new();
    let mut metric = |name: &str, typ: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {typ}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "strata_agent_series",
        "gauge",
        "Series in the agent's WAL series table.",
        vec![(String::new(), s.series as f64)],
    );
    metric(
        "strata_agent_samples_appended_total",
        "counter",
        "Samples written to the agent's WAL.",
        vec![(String::new(), s.samples_appended as f64)],
    );
    metric(
        "strata_agent_out_of_order_samples_total",
        "counter",
        "Samples dropped as out of order.",
        vec![(String::new(), s.out_of_order as f64)],
    );
    metric(
        "strata_agent_wal_fsyncs_total",
        "counter",
        "fsyncs of WAL segments.",
        vec![(String::new(), s.fsyncs as f64)],
    );
    metric(
        "strata_agent_wal_truncations_total",
        "counter",
        "WAL truncations that removed segments.",
        vec![(String::new(), s.truncations as f64)],
    );
    let qs = st.agent.queues_status();
    let per = |f: &dyn Fn(&strata_ingest::agent::QueueStatus) -> f64| -> Vec<(String, f64)> {
        qs.iter()
            .map(|q| {
                (
                    format!(
                        "{{remote_name=\"{}\",url=\"{}\"}}",
                        esc(&q.name),
                        esc(&q.url)
                    ),
                    f(q),
                )
            })
            .collect()
    };
    metric(
        "strata_remote_write_samples_sent_total",
        "counter",
        "Samples delivered to the remote.",
        per(&|q| q.samples_sent as f64),
    );
    metric(
        "strata_remote_write_samples_failed_total",
        "counter",
        "Samples the remote refused (not retried).",
        per(&|q| q.samples_failed as f64),
    );
    metric(
        "strata_remote_write_samples_retried_total",
        "counter",
        "Samples sent again after a retryable error.",
        per(&|q| q.samples_retried as f64),
    );
    metric(
        "strata_remote_write_samples_dropped_total",
        "counter",
        "Samples dropped by write relabeling.",
        per(&|q| q.samples_dropped as f64),
    );
    metric(
        "strata_remote_write_samples_pending",
        "gauge",
        "Samples read from the WAL and not yet delivered.",
        per(&|q| q.samples_pending as f64),
    );
    metric(
        "strata_remote_write_backlog_bytes",
        "gauge",
        "WAL bytes not yet delivered.",
        per(&|q| q.backlog_bytes as f64),
    );
    metric(
        "strata_remote_write_shards",
        "gauge",
        "Shards sending in parallel.",
        per(&|q| q.shards as f64),
    );
    metric(
        "strata_remote_write_highest_sent_timestamp_seconds",
        "gauge",
        "Newest sample timestamp delivered.",
        per(&|q| {
            q.highest_sent_timestamp_ms
                .map_or(0.0, |t| t as f64 / 1000.0)
        }),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
