//! The Prometheus HTTP API (`/api/v1/...`) over axum: query, query_range, series, labels,
//! label values, metadata, exemplars, format_query, status pages, the stub
//! targets/rules/alerts endpoints, health/readiness and the server's own `/metrics`.
//!
//! Responses use Prometheus's envelope and error types byte for byte where clients look at
//! them: `{"status":"success","data":...,"warnings":[...],"infos":[...]}` and
//! `{"status":"error","errorType":"bad_data","error":"..."}` with the same HTTP codes
//! (bad_data 400, execution 422, canceled 499, internal 500, timeout and unavailable 503,
//! not_found 404). Parameters come from the URL query and, for POST, from a form-encoded body
//! (the body's values first, as Go's `Request.FormValue` reads them).
//!
//! The remote-write and remote-read routes are not here: callers `merge` their router into the
//! one [`router`] returns.

pub mod json;
pub mod metrics;
pub mod remote;
pub mod store;
pub mod targets;

mod query;
mod series;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use strata_promql::Engine;
use strata_tsdb::db::Db;
use strata_tsdb::storage::Queryable;
use strata_tsdb::Labels;
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;

pub use metrics::Metrics;
pub use store::{ExemplarReject, ExemplarStore, Metadata, MetadataStore};
pub use targets::{ActiveTarget, DroppedTarget, Health, TargetsSnapshot, TargetsSource};

/// Build information for `/api/v1/status/buildinfo` (Prometheus's field names; `goVersion`
/// carries the Rust compiler version).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    pub branch: String,
    #[serde(rename = "buildUser")]
    pub build_user: String,
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("STRATA_GIT_REVISION").unwrap_or("").to_string(),
            branch: option_env!("STRATA_GIT_BRANCH").unwrap_or("").to_string(),
            build_user: option_env!("STRATA_BUILD_USER").unwrap_or("").to_string(),
            build_date: option_env!("STRATA_BUILD_DATE").unwrap_or("").to_string(),
            go_version: format!("rust (strata {})", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Server configuration the API reports or obeys.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `global.external_labels` of the configuration file.
    pub external_labels: Labels,
    /// Command-line flags by name, without dashes (`/api/v1/status/flags`).
    pub flags: BTreeMap<String, String>,
    /// The configuration file's text (`/api/v1/status/config`).
    pub config_yaml: String,
    /// `--query.max-concurrency`: queries evaluated at once; more wait.
    pub max_concurrency: usize,
    /// `storageRetention` of `/api/v1/status/runtimeinfo` (e.g. `15d`).
    pub storage_retention: String,
    /// Capacity of the in-memory exemplar store.
    pub max_exemplars: usize,
    /// Metric families the metadata store holds at most.
    pub max_metadata_families: usize,
    /// Reported by `/api/v1/status/buildinfo`.
    pub build_info: BuildInfo,
    /// `--web.enable-lifecycle`: `POST /-/reload` is allowed.
    pub enable_lifecycle: bool,
    /// `--query.max-source-resolution`: the downsampling resolution queries may read when
    /// they do not give `max_source_resolution`.
    pub max_source_resolution: MaxSourceResolution,
}

/// How coarse the downsampled data a query reads may be (Thanos's `max_source_resolution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxSourceResolution {
    /// A fifth of a range query's step (raw data for instant queries).
    Auto,
    /// At most this many milliseconds (0: raw data only).
    Fixed(i64),
}

impl MaxSourceResolution {
    /// `auto`, `raw`, or a Prometheus duration (`0s`, `5m`, `1h`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "raw" => Ok(Self::Fixed(0)),
            _ => {
                let ms = strata_promql::parser::parse_duration_or_seconds(s)
                    .map_err(|e| format!("invalid max_source_resolution {s:?}: {e}"))?;
                if ms < 0 {
                    return Err(format!("negative max_source_resolution {s:?}"));
                }
                Ok(Self::Fixed(ms))
            }
        }
    }

    /// The resolution in ms for a query with `step` (0 for instant queries).
    pub fn for_step(self, step: i64) -> i64 {
        match self {
            Self::Auto => step / 5,
            Self::Fixed(ms) => ms,
        }
    }
}

/// A source of queryables reading downsampled data up to a resolution (ms).
pub type QueryableAt = Arc<dyn Fn(i64) -> Arc<dyn Queryable> + Send + Sync>;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            external_labels: Labels::empty(),
            flags: BTreeMap::new(),
            config_yaml: String::new(),
            max_concurrency: 20,
            storage_retention: String::new(),
            max_exemplars: 100_000,
            max_metadata_families: 100_000,
            build_info: BuildInfo::default(),
            enable_lifecycle: false,
            max_source_resolution: MaxSourceResolution::Auto,
        }
    }
}

/// Everything the API handlers share.
pub struct ApiState {
    /// The local database: head statistics, blocks.
    pub db: Arc<Db>,
    /// What queries read; the database unless replaced with [`ApiState::with_queryable`]
    /// (e.g. a fan-in over local and bucket blocks).
    pub queryable: Arc<dyn Queryable>,
    /// What PromQL queries read at a downsampling resolution; `queryable` when unset.
    pub queryable_at: Option<QueryableAt>,
    pub engine: Engine,
    pub config: ApiConfig,
    /// When the server started (ms since the epoch).
    pub start_time_ms: i64,
    pub metadata: MetadataStore,
    pub exemplars: ExemplarStore,
    pub metrics: Arc<Metrics>,
    query_slots: Arc<Semaphore>,
    /// The configuration text now in force (`/api/v1/status/config`); replaced by reloads.
    pub config_yaml: parking_lot::RwLock<String>,
    targets: parking_lot::RwLock<Option<Arc<dyn TargetsSource>>>,
    reloader: parking_lot::RwLock<Option<Reloader>>,
}

/// Reloads the configuration file: the new text on success, the reason the old
/// configuration stays on failure.
pub type Reloader = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("db", &self.db.dir())
            .field("engine", &self.engine)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over `db` (which is also what queries read), with fresh stores and metrics.
    pub fn new(db: Arc<Db>, engine: Engine, config: ApiConfig) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.attach_db(db.clone());
        ApiState {
            queryable: db.clone(),
            queryable_at: None,
            db,
            engine,
            start_time_ms: now_ms(),
            metadata: MetadataStore::new(config.max_metadata_families),
            exemplars: ExemplarStore::new(config.max_exemplars),
            metrics,
            query_slots: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config_yaml: parking_lot::RwLock::new(config.config_yaml.clone()),
            targets: parking_lot::RwLock::new(None),
            reloader: parking_lot::RwLock::new(None),
            config,
        }
    }

    /// Attaches what `/api/v1/targets` reports (the scrape manager).
    pub fn set_targets_source(&self, src: Arc<dyn TargetsSource>) {
        *self.targets.write() = Some(src);
    }

    /// The targets now scraped into this server (empty when nothing scrapes).
    pub fn targets_snapshot(&self) -> TargetsSnapshot {
        let src = self.targets.read().clone();
        src.map(|s| s.snapshot()).unwrap_or_default()
    }

    /// Sets what `POST /-/reload` runs.
    pub fn set_reloader(&self, r: Reloader) {
        *self.reloader.write() = Some(r);
    }

    /// Runs the reloader (blocking); on success the new text becomes the reported
    /// configuration.
    pub fn reload(&self) -> Result<(), String> {
        let r = self.reloader.read().clone();
        let Some(r) = r else {
            return Err("no configuration file to reload".into());
        };
        let text = r()?;
        *self.config_yaml.write() = text;
        Ok(())
    }

    /// Replaces what queries, series and label lookups read.
    pub fn with_queryable(mut self, q: Arc<dyn Queryable>) -> Self {
        self.queryable = q;
        self
    }

    /// Lets PromQL queries read downsampled data: `at(ms)` is what a query allowed
    /// resolutions up to `ms` reads (see [`MaxSourceResolution`]).
    pub fn with_queryable_at(mut self, at: QueryableAt) -> Self {
        self.queryable_at = Some(at);
        self
    }

    /// What a PromQL query allowed resolutions up to `max_res` ms reads.
    pub fn queryable_for(&self, max_res: i64) -> Arc<dyn Queryable> {
        match &self.queryable_at {
            Some(at) if max_res > 0 => at(max_res),
            _ => self.queryable.clone(),
        }
    }

    /// Records metric metadata from the write path (`type` is Prometheus's lower-case name:
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset`,
    /// `unknown`). Returns false when the store was full and the family new.
    pub fn record_metadata(&self, family: &str, typ: &str, help: &str, unit: &str) -> bool {
        self.metrics.metadata_ingested.inc();
        self.metadata.record(family, typ, help, unit)
    }

    /// Records an exemplar of the series `series_labels` from the write path.
    pub fn record_exemplar(
        &self,
        series_labels: &Labels,
        exemplar_labels: &Labels,
        value: f64,
        ts: i64,
    ) -> Result<(), ExemplarReject> {
        let r = self
            .exemplars
            .record(series_labels, exemplar_labels, value, ts);
        if r.is_ok() {
            self.metrics.exemplars_ingested.inc();
        }
        r
    }

    /// The self-metrics handles (shared with the write path).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Prometheus's error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    NotFound,
    Unavailable,
}

impl ErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An API error: rendered as Prometheus's error envelope.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub typ: ErrorType,
    pub msg: String,
}

impl ApiError {
    pub fn new(typ: ErrorType, msg: impl Into<String>) -> Self {
        ApiError {
            typ,
            msg: msg.into(),
        }
    }
    pub fn bad_data(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, msg)
    }
    /// Prometheus's `invalidParamError`: `invalid parameter "<name>": <msg>`.
    pub fn invalid_param(msg: impl std::fmt::Display, param: &str) -> Self {
        Self::bad_data(format!("invalid parameter {param:?}: {msg}"))
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, msg)
    }

    /// Maps an engine error as Prometheus's `returnAPIError` does.
    pub fn from_promql(e: &strata_promql::Error) -> Self {
        use strata_promql::Error as E;
        let typ = match e {
            E::Parse(_) | E::InvalidDuration(_) => ErrorType::BadData,
            E::Timeout(_) => ErrorType::Timeout,
            E::Canceled(_) => ErrorType::Canceled,
            E::Storage(_) => ErrorType::Internal,
            E::Eval(_) | E::TooManySamples(_) => ErrorType::Execution,
        };
        Self::new(typ, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.typ.status(),
            json::error_envelope(self.typ.as_str(), &self.msg),
        )
    }
}

fn json_response(code: StatusCode, body: String) -> Response {
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// At most this many warnings (and infos) are returned, as in Prometheus.
const MAX_ANNOTATIONS: usize = 10;

/// A successful answer: raw `data` JSON plus annotations.
#[derive(Clone, Debug, Default)]
pub struct ApiOk {
    pub data: String,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl ApiOk {
    /// An answer whose data is `v` serialized.
    pub fn of<T: serde::Serialize>(v: &T) -> Result<Self, ApiError> {
        Ok(ApiOk {
            data: serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string()))?,
            ..Default::default()
        })
    }
}

fn cap_annotations(mut v: Vec<String>, what: &str) -> Vec<String> {
    if v.len() > MAX_ANNOTATIONS {
        let skipped = v.len() - MAX_ANNOTATIONS;
        v.truncate(MAX_ANNOTATIONS);
        v.push(format!("{skipped} more {what} annotations omitted"));
    }
    v
}

impl IntoResponse for ApiOk {
    fn into_response(self) -> Response {
        let w = cap_annotations(self.warnings, "warning");
        let i = cap_annotations(self.infos, "info");
        json_response(StatusCode::OK, json::success_envelope(&self.data, &w, &i))
    }
}

/// The request's parameters: a form-encoded POST body's first, then the URL query's.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds parameters from pairs (tests, other front ends).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// The first value of `name` if present and non-empty (Go's `FormValue(name) != ""`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name` (e.g. `match[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
        let mut pairs = Vec::new();
        if is_form {
            let body = Bytes::from_request(req, state).await.map_err(|e| {
                ApiError::bad_data(format!("error parsing form values: {}", e.body_text()))
            })?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Ok(Params { pairs })
    }
}

/// Prometheus's `parseLimitParam`: empty is 0 (no limit); negative is an error.
fn parse_limit(p: &Params) -> Result<usize, ApiError> {
    let Some(s) = p.get("limit") else {
        return Ok(0);
    };
    let n: i64 = s.parse().map_err(|_| {
        ApiError::invalid_param(
            format!("strconv.Atoi: parsing {s:?}: invalid syntax"),
            "limit",
        )
    })?;
    if n < 0 {
        return Err(ApiError::invalid_param(
            "limit must be non-negative",
            "limit",
        ));
    }
    Ok(n as usize)
}

/// Prometheus's `parseTimeParam`: absent is `default`.
fn parse_time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => json::parse_time(s).map_err(|e| {
            ApiError::invalid_param(format!("invalid time value for '{name}': {e}"), name)
        }),
    }
}

/// Parses a duration parameter (float seconds or a Prometheus duration) into ms.
fn parse_duration_param(s: &str) -> Result<i64, String> {
    strata_promql::parser::parse_duration_or_seconds(s).map_err(|e| e.to_string())
}

/// Counts requests by route and status code.
async fn track(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let resp = next.run(req).await;
    st.metrics.count_request(&handler, resp.status().as_u16());
    resp
}

/// The API's routes over `state`, with gzip compression for clients that accept it. Merge
/// further routes (remote write and read) with [`Router::merge`].
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query).post(query::format_query),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(status::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/scrape_pools", get(status::scrape_pools))
        .route(
            "/-/reload",
            axum::routing::post(status::reload).put(status::reload),
        )
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/metrics", get(status::self_metrics))
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// How long to wait past a query's own timeout before answering `timeout` regardless (the
/// engine checks its deadline between steps; this covers a storage read that does not return).
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);
