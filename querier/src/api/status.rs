//! Status and informational endpoints: `/api/v1/metadata`, `/api/v1/status/*`, the
//! targets and scrape pools of the scrape manager, the configuration reload endpoint, the
//! rules/alerts stubs (Strata has no rules engine) and
//! the self-metrics exposition at `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::json::format_rfc3339;
use super::{now_ms, ApiError, ApiOk, ApiState, Params};

/// `GET /api/v1/metadata`.
pub(super) async fn metadata(
    State(st): State<Arc<ApiState>>,
    p: Params,
) -> Result<ApiOk, ApiError> {
    let limit: i64 = match p.get("limit") {
        None => -1,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_data("limit must be a number"))?,
    };
    let per_metric: i64 = match p.get("limit_per_metric") {
        None => -1,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_data("limit_per_metric must be a number"))?,
    };
    ApiOk::of(&st.metadata.query(p.get("metric"), limit, per_metric))
}

/// `GET /api/v1/status/buildinfo`.
pub(super) async fn buildinfo(State(st): State<Arc<ApiState>>) -> Result<ApiOk, ApiError> {
    ApiOk::of(&st.config.build_info)
}

/// `GET /api/v1/status/config`.
pub(super) async fn config(State(st): State<Arc<ApiState>>) -> Result<ApiOk, ApiError> {
    ApiOk::of(&json!({ "yaml": *st.config_yaml.read() }))
}

/// `GET /api/v1/status/flags`.
pub(super) async fn flags(State(st): State<Arc<ApiState>>) -> Result<ApiOk, ApiError> {
    ApiOk::of(&st.config.flags)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// `GET /api/v1/status/runtimeinfo`, with Prometheus's field names (the Go runtime fields
/// describe the Rust process as far as they apply).
pub(super) async fn runtimeinfo(State(st): State<Arc<ApiState>>) -> Result<ApiOk, ApiError> {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ApiOk::of(&RuntimeInfo {
        start_time: format_rfc3339(st.start_time_ms),
        cwd,
        hostname: hostname(),
        server_time: format_rfc3339(now_ms()),
        reload_config_success: true,
        last_config_time: format_rfc3339(st.start_time_ms),
        corruption_count: st.db.broken_blocks().len() as i64,
        goroutine_count: st.metrics.queries_in_flight.get(),
        gomaxprocs: threads,
        gomemlimit: i64::MAX,
        gogc: String::new(),
        godebug: String::new(),
        storage_retention: st.config.storage_retention.clone(),
    })
}

/// Prometheus's `RuntimeInfo`, fields in its order.
#[derive(serde::Serialize)]
struct RuntimeInfo {
    #[serde(rename = "startTime")]
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    hostname: String,
    #[serde(rename = "serverTime")]
    server_time: String,
    #[serde(rename = "reloadConfigSuccess")]
    reload_config_success: bool,
    #[serde(rename = "lastConfigTime")]
    last_config_time: String,
    #[serde(rename = "corruptionCount")]
    corruption_count: i64,
    /// Queries in flight (there are no goroutines).
    #[serde(rename = "goroutineCount")]
    goroutine_count: i64,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOMEMLIMIT")]
    gomemlimit: i64,
    #[serde(rename = "GOGC")]
    gogc: String,
    #[serde(rename = "GODEBUG")]
    godebug: String,
    #[serde(rename = "storageRetention")]
    storage_retention: String,
}

/// One `{"name":..,"value":..}` entry of the TSDB status.
#[derive(serde::Serialize)]
struct TsdbStat {
    name: String,
    value: u64,
}

/// Prometheus's `HeadStats`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HeadStats {
    num_series: u64,
    num_label_pairs: u64,
    chunk_count: u64,
    min_time: i64,
    max_time: i64,
}

/// Prometheus's `TSDBStatus`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TsdbStatus {
    head_stats: HeadStats,
    series_count_by_metric_name: Vec<TsdbStat>,
    label_value_count_by_label_name: Vec<TsdbStat>,
    memory_in_bytes_by_label_name: Vec<TsdbStat>,
    series_count_by_label_value_pair: Vec<TsdbStat>,
}

/// Stable label-size estimate Prometheus uses for `memoryInBytesByLabelName`
/// (length-prefixed name and value, per series).
fn label_size(name: &str, value: &str) -> u64 {
    fn uvarint_len(n: usize) -> u64 {
        let mut n = n;
        let mut l = 1;
        while n >= 0x80 {
            n >>= 7;
            l += 1;
        }
        l
    }
    uvarint_len(name.len()) + name.len() as u64 + uvarint_len(value.len()) + value.len() as u64
}

fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<TsdbStat> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v.into_iter()
        .map(|(name, value)| TsdbStat { name, value })
        .collect()
}

/// `GET /api/v1/status/tsdb`: head cardinality statistics (top `limit`, default 10).
pub(super) async fn tsdb(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    const MAX_LIMIT: usize = 10_000;
    let limit = match p.get("limit") {
        None => 10,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 1 => {
                if n as usize > MAX_LIMIT {
                    return Err(ApiError::bad_data(format!(
                        "limit must not exceed {MAX_LIMIT}"
                    )));
                }
                n as usize
            }
            _ => return Err(ApiError::bad_data("limit must be a positive number")),
        },
    };
    let st2 = st.clone();
    let data = tokio::task::spawn_blocking(move || {
        let head = st2.db.head();
        // name -> value -> series count
        let mut postings: HashMap<Arc<str>, HashMap<Arc<str>, u64>> = HashMap::new();
        let all = head.all_series();
        for s in &all {
            for l in s.labels.iter() {
                *postings
                    .entry(l.name.clone())
                    .or_default()
                    .entry(l.value.clone())
                    .or_default() += 1;
            }
        }
        let mut metrics = Vec::new();
        let mut label_counts = Vec::new();
        let mut memory = Vec::new();
        let mut pairs = Vec::new();
        let mut num_pairs = 0usize;
        for (name, values) in &postings {
            label_counts.push((name.to_string(), values.len() as u64));
            num_pairs += values.len();
            let mut size = 0u64;
            for (value, n) in values {
                if &**name == strata_tsdb::labels::METRIC_NAME {
                    metrics.push((value.to_string(), *n));
                }
                pairs.push((format!("{name}={value}"), *n));
                size += label_size(name, value) * n;
            }
            memory.push((name.to_string(), size));
        }
        TsdbStatus {
            head_stats: HeadStats {
                num_series: head.num_series() as u64,
                num_label_pairs: num_pairs as u64,
                chunk_count: head.stats.chunks_created.load(Ordering::Relaxed),
                min_time: head.min_time(),
                max_time: head.max_time(),
            },
            series_count_by_metric_name: top(metrics, limit),
            label_value_count_by_label_name: top(label_counts, limit),
            memory_in_bytes_by_label_name: top(memory, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("task failed: {e}")))?;
    ApiOk::of(&data)
}

/// `GET /api/v1/targets`: the targets of the scrape manager (empty when nothing scrapes).
pub(super) async fn targets(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    ApiOk::of(&super::targets::targets_data(&st.targets_snapshot(), &p))
}

/// `GET /api/v1/scrape_pools`: the configured scrape pools (jobs), sorted.
pub(super) async fn scrape_pools(State(st): State<Arc<ApiState>>) -> Result<ApiOk, ApiError> {
    let mut pools = st.targets_snapshot().pools;
    pools.sort();
    ApiOk::of(&json!({ "scrapePools": pools }))
}

/// `POST|PUT /-/reload`: reloads the configuration file when `--web.enable-lifecycle` is set
/// (403 otherwise, as Prometheus); 500 with the reason when the new file is invalid, in which
/// case the old configuration stays in force.
pub(super) async fn reload(State(st): State<Arc<ApiState>>) -> Response {
    use axum::http::StatusCode;
    if !st.config.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response();
    }
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || st2.reload()).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}"),
        )
            .into_response(),
    }
}

/// `GET /api/v1/rules`: no rule evaluation; always empty.
pub(super) async fn rules() -> Result<ApiOk, ApiError> {
    ApiOk::of(&json!({"groups": []}))
}

/// `GET /api/v1/alerts`: no alerting; always empty.
pub(super) async fn alerts() -> Result<ApiOk, ApiError> {
    ApiOk::of(&json!({"alerts": []}))
}

/// `GET /metrics`: the server's own metrics.
pub(super) async fn self_metrics(State(st): State<Arc<ApiState>>) -> Response {
    st.metrics.head_series.set(st.db.head().num_series() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}
