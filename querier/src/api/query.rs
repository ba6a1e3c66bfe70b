//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars` and
//! `/api/v1/format_query`. Queries wait for one of `--query.max-concurrency` slots, then run on
//! a blocking thread (the engine is synchronous) under the smaller of the request's `timeout`
//! and `--query.timeout`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use strata_promql::engine::{CancelFlag, QueryOptions, QueryResult, Value};
use strata_promql::parser::{self, Expr};
use strata_tsdb::Matcher;

use super::json::{self, MAX_TIME, MIN_TIME};
use super::{
    now_ms, parse_duration_param, parse_limit, parse_time_param, ApiError, ApiOk, ApiState,
    ErrorType, Params, TIMEOUT_GRACE,
};

/// Prometheus's limit on the number of steps of a range query.
const MAX_POINTS: i64 = 11_000;

struct QueryRequest {
    kind: &'static str,
    text: String,
    expr: Expr,
    start: i64,
    end: i64,
    step: i64,
    timeout: Option<Duration>,
    lookback: Option<i64>,
    limit: usize,
    stats: Option<String>,
    /// The coarsest downsampling resolution (ms) the query may read.
    max_resolution: i64,
}

/// `max_source_resolution` of the request, or the server's default, for a query with `step`.
fn parse_max_resolution(st: &ApiState, p: &Params, step: i64) -> Result<i64, ApiError> {
    let r = match p.get("max_source_resolution") {
        None | Some("") => st.config.max_source_resolution,
        Some(s) => super::MaxSourceResolution::parse(s)
            .map_err(|e| ApiError::invalid_param(e, "max_source_resolution"))?,
    };
    Ok(r.for_step(step))
}

fn parse_timeout(p: &Params) -> Result<Option<Duration>, ApiError> {
    match p.get("timeout") {
        None => Ok(None),
        Some(s) => {
            let ms = parse_duration_param(s).map_err(|e| ApiError::invalid_param(e, "timeout"))?;
            Ok(Some(Duration::from_millis(ms.max(0) as u64)))
        }
    }
}

fn parse_lookback(p: &Params) -> Result<Option<i64>, ApiError> {
    match p.get("lookback_delta") {
        None => Ok(None),
        Some(s) => {
            let ms = parse_duration_param(s).map_err(|e| {
                ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
            })?;
            Ok((ms > 0).then_some(ms))
        }
    }
}

fn parse_query(p: &Params) -> Result<(String, Expr), ApiError> {
    let text = p.get("query").unwrap_or("").to_string();
    let expr = parser::parse(&text).map_err(|e| ApiError::invalid_param(e, "query"))?;
    Ok((text, expr))
}

/// `GET|POST /api/v1/query`.
pub(super) async fn instant(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    let limit = parse_limit(&p)?;
    let t = parse_time_param(&p, "time", now_ms())?;
    let timeout = parse_timeout(&p)?;
    let lookback = parse_lookback(&p)?;
    let (text, expr) = parse_query(&p)?;
    let max_resolution = parse_max_resolution(&st, &p, 0)?;
    run(
        st,
        QueryRequest {
            kind: "query",
            text,
            expr,
            start: t,
            end: t,
            step: 0,
            timeout,
            lookback,
            limit,
            stats: p.get("stats").map(str::to_owned),
            max_resolution,
        },
    )
    .await
}

/// `GET|POST /api/v1/query_range`.
pub(super) async fn range(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    let limit = parse_limit(&p)?;
    let start = json::parse_time(p.get("start").unwrap_or(""))
        .map_err(|e| ApiError::invalid_param(e, "start"))?;
    let end = json::parse_time(p.get("end").unwrap_or(""))
        .map_err(|e| ApiError::invalid_param(e, "end"))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end timestamp must not be before start time",
            "end",
        ));
    }
    let step = parse_duration_param(p.get("step").unwrap_or(""))
        .map_err(|e| ApiError::invalid_param(e, "step"))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
            "step",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = parse_timeout(&p)?;
    let lookback = parse_lookback(&p)?;
    let (text, expr) = parse_query(&p)?;
    let max_resolution = parse_max_resolution(&st, &p, step)?;
    let vt = expr.value_type();
    if !matches!(vt, parser::ValueType::Scalar | parser::ValueType::Vector) {
        return Err(ApiError::invalid_param(
            format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                vt.documented()
            ),
            "query",
        ));
    }
    run(
        st,
        QueryRequest {
            kind: "query_range",
            text,
            expr,
            start,
            end,
            step,
            timeout,
            lookback,
            limit,
            stats: p.get("stats").map(str::to_owned),
            max_resolution,
        },
    )
    .await
}

/// Decrements the in-flight gauge however the request ends (including a client hanging up).
struct InFlight(Arc<ApiState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.queries_in_flight.dec();
    }
}

/// Cancels the evaluation when the request future is dropped while it runs (the client hung
/// up): the engine stops at its next step with `canceled` and frees its query slot.
struct CancelOnDrop {
    st: Arc<ApiState>,
    flag: CancelFlag,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.cancel();
            self.st.metrics.queries_canceled.inc();
            tracing::debug!("query canceled: the client went away");
        }
    }
}

fn timeout_error() -> ApiError {
    ApiError::new(ErrorType::Timeout, "query timed out in query queue")
}

async fn run(st: Arc<ApiState>, q: QueryRequest) -> Result<ApiOk, ApiError> {
    let started = Instant::now();
    st.metrics.queries_in_flight.inc();
    let _guard = InFlight(st.clone());
    let engine_timeout = st.engine.opts.timeout;
    let timeout = q.timeout.map_or(engine_timeout, |t| t.min(engine_timeout));

    // Wait for a slot; the wait counts against the timeout, as in Prometheus.
    let permit = match tokio::time::timeout(timeout, st.query_slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(ApiError::internal("query slots closed")),
        Err(_) => return Err(timeout_error()),
    };
    let queue_time = started.elapsed();
    let remaining = timeout.saturating_sub(queue_time);
    if remaining.is_zero() {
        return Err(timeout_error());
    }

    let st2 = st.clone();
    let expr = q.expr;
    let (start, end, step) = (q.start, q.end, q.step);
    let qo = QueryOptions {
        lookback_delta: q.lookback,
        timeout: Some(remaining),
        cancel: Some(CancelFlag::new()),
    };
    let mut cancel_guard = CancelOnDrop {
        st: st.clone(),
        flag: qo.cancel.clone().unwrap_or_default(),
        armed: true,
    };
    let queryable = st.queryable_for(q.max_resolution);
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let t0 = Instant::now();
        let r = st2.engine.exec(&*queryable, &expr, start, end, step, &qo);
        (r, t0.elapsed())
    });
    let joined = tokio::time::timeout(remaining + TIMEOUT_GRACE, task).await;
    cancel_guard.armed = false;
    st.metrics
        .observe_query(q.kind, started.elapsed().as_secs_f64());
    let (res, eval_time) = match joined {
        Err(_) => {
            return Err(ApiError::new(
                ErrorType::Timeout,
                "query timed out in query execution",
            ))
        }
        Ok(Err(e)) => return Err(ApiError::internal(format!("query task failed: {e}"))),
        Ok(Ok(r)) => r,
    };
    let res: QueryResult = res.map_err(|e| {
        tracing::debug!(query = %q.text, error = %e, "query failed");
        ApiError::from_promql(&e)
    })?;

    let mut warnings = res.annotations.warnings(&q.text);
    let infos = res.annotations.infos(&q.text);
    let mut value = res.value;
    if q.limit > 0 {
        let truncated = match &mut value {
            Value::Vector(v) if v.len() > q.limit => {
                v.truncate(q.limit);
                true
            }
            Value::Matrix(m) if m.len() > q.limit => {
                m.truncate(q.limit);
                true
            }
            _ => false,
        };
        if truncated {
            warnings.push("results truncated due to limit".into());
        }
    }
    if let Some(s) = q.stats.as_deref() {
        if s != "true" && s != "all" {
            warnings.push(format!(
                "value {s:?} for parameter \"stats\" is deprecated and will be rejected in the next major release, use \"true\" or \"all\""
            ));
        }
    }

    let mut data = String::with_capacity(256);
    data.push('{');
    json::write_result_members(&mut data, &value);
    if q.stats.is_some() {
        let total = started.elapsed().as_secs_f64();
        let eval = eval_time.as_secs_f64();
        let n = res.total_samples;
        let _ = write!(
            data,
            ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{eval},\"resultSortTime\":0,\"queryPreparationTime\":0,\"innerEvalTime\":{eval},\"execQueueTime\":{},\"execTotalTime\":{total}}},\"samples\":{{\"totalQueryableSamples\":{n},\"samplesRead\":{n},\"peakSamples\":{n}}}}}",
            queue_time.as_secs_f64()
        );
    }
    data.push('}');
    Ok(ApiOk {
        data,
        warnings,
        infos,
    })
}

/// `GET|POST /api/v1/format_query`: the expression printed canonically.
pub(super) async fn format_query(p: Params) -> Result<ApiOk, ApiError> {
    let (_, expr) = parse_query(&p)?;
    ApiOk::of(&expr.to_string())
}

/// Collects the matchers of every vector selector in `e` (Prometheus's `ExtractSelectors`).
pub(super) fn extract_selectors(e: &Expr, out: &mut Vec<Vec<Matcher>>) {
    match e {
        Expr::NumberLiteral { .. } | Expr::StringLiteral { .. } => {}
        Expr::VectorSelector(vs) => out.push(vs.matchers.clone()),
        Expr::MatrixSelector(ms) => out.push(ms.vector.matchers.clone()),
        Expr::Subquery(s) => extract_selectors(&s.expr, out),
        Expr::Call(c) => c.args.iter().for_each(|a| extract_selectors(a, out)),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                extract_selectors(p, out);
            }
            extract_selectors(&a.expr, out);
        }
        Expr::Binary(b) => {
            extract_selectors(&b.lhs, out);
            extract_selectors(&b.rhs, out);
        }
        Expr::Unary { expr, .. } | Expr::Paren { expr, .. } => extract_selectors(expr, out),
    }
}

/// `GET|POST /api/v1/query_exemplars`.
pub(super) async fn exemplars(
    State(st): State<Arc<ApiState>>,
    p: Params,
) -> Result<ApiOk, ApiError> {
    let start = parse_time_param(&p, "start", MIN_TIME)?;
    let end = parse_time_param(&p, "end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let text = p.get("query").unwrap_or("");
    let expr = parser::parse(text).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let mut sets = Vec::new();
    extract_selectors(&expr, &mut sets);
    let t0 = Instant::now();
    let res = st.exemplars.query(start, end, &sets);
    st.metrics
        .observe_query("query_exemplars", t0.elapsed().as_secs_f64());
    let mut out = String::from("[");
    for (i, s) in res.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        json::write_labels(&mut out, &s.series_labels);
        out.push_str(",\"exemplars\":[");
        for (j, e) in s.exemplars.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            json::write_labels(&mut out, &e.labels);
            out.push_str(",\"value\":\"");
            out.push_str(&json::fmt_value(e.value));
            out.push_str("\",\"timestamp\":");
            json::write_timestamp(&mut out, e.ts);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    Ok(ApiOk {
        data: out,
        ..Default::default()
    })
}
