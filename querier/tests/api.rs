//! The HTTP API against a real database in a temporary directory, through the router with
//! `tower::ServiceExt::oneshot`: response shapes (as Prometheus documents them), error types
//! and codes, POST form equivalence, limits, gzip, status pages and self-metrics.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use strata_promql::{Engine, EngineOptions};
use strata_querier::api::{router, ApiConfig, ApiState};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::storage::Appender;
use strata_tsdb::Labels;
use tower::ServiceExt;

const T0: i64 = 1_700_000_000_000;
/// Seconds of the last sample.
const LAST: f64 = (T0 + 39 * 15_000) as f64 / 1000.0;

struct Fixture {
    _dir: tempfile::TempDir,
    state: Arc<ApiState>,
    app: Router,
}

fn fixture_with(engine: EngineOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut app = db.appender().unwrap();
    let series = [
        (vec![("__name__", "up"), ("instance", "x"), ("job", "a")], 0),
        (vec![("__name__", "up"), ("instance", "y"), ("job", "b")], 1),
        (
            vec![
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("job", "a"),
            ],
            2,
        ),
        (
            vec![
                ("__name__", "http_requests_total"),
                ("code", "500"),
                ("job", "a"),
            ],
            3,
        ),
    ];
    for i in 0..40i64 {
        for (l, k) in &series {
            let v = match k {
                0 => 1.0,
                1 => 0.0,
                2 => (i * 10) as f64,
                _ => i as f64,
            };
            app.append(&Labels::from_pairs(l), T0 + i * 15_000, v)
                .unwrap();
        }
    }
    app.commit().unwrap();
    let mut config = ApiConfig {
        config_yaml: "global:\n  external_labels:\n    region: eu\n".into(),
        storage_retention: "15d".into(),
        ..Default::default()
    };
    config.flags.insert("query.timeout".into(), "2m".into());
    let state = Arc::new(ApiState::new(db, Engine::new(engine), config));
    let app = router(state.clone());
    Fixture {
        _dir: dir,
        state,
        app,
    }
}

fn fixture() -> Fixture {
    fixture_with(EngineOptions::default())
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (status, v)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, form: &str) -> (StatusCode, Value) {
    send(
        app,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap(),
    )
    .await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn assert_error(resp: (StatusCode, Value), code: u16, typ: &str, msg: &str) {
    let (status, v) = resp;
    assert_eq!(status.as_u16(), code, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], typ, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains(msg), "error {err:?} does not contain {msg:?}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
}

#[tokio::test]
async fn instant_query_vector_shape() {
    let f = fixture();
    let (s, v) = get(&f.app, &format!("/api/v1/query?query=up&time={LAST}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "instance": "x", "job": "a"}, "value": [LAST as i64, "1"]},
            {"metric": {"__name__": "up", "instance": "y", "job": "b"}, "value": [LAST as i64, "0"]},
        ]}})
    );
    // Scalars and strings.
    let (_, v) = get(&f.app, "/api/v1/query?query=1%2B1&time=10.5").await;
    assert_eq!(
        v["data"],
        json!({"resultType": "scalar", "result": [10.5, "2"]})
    );
    let (_, v) = get(&f.app, "/api/v1/query?query=%22hi%22&time=3").await;
    assert_eq!(
        v["data"],
        json!({"resultType": "string", "result": [3, "hi"]})
    );
    // An RFC 3339 time and the default time (now: no data then, an empty vector).
    let (_, v) = get(&f.app, "/api/v1/query?query=up&time=2023-11-14T22:22:50Z").await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2);
    let (_, v) = get(&f.app, "/api/v1/query?query=up").await;
    assert_eq!(v["data"], json!({"resultType": "vector", "result": []}));
}

#[tokio::test]
async fn range_query_matrix_shape_and_post_equivalence() {
    let f = fixture();
    let start = T0 as f64 / 1000.0;
    let q = format!(
        "query={}&start={start}&end={LAST}&step=60",
        enc("rate(http_requests_total{code=\"200\"}[1m])")
    );
    let (s, v) = get(&f.app, &format!("/api/v1/query_range?{q}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"], json!({"code": "200", "job": "a"}));
    let values = r["values"].as_array().unwrap();
    assert_eq!(values.len(), 9, "{values:?}");
    // rate() needs two samples: the first point is a minute in.
    assert_eq!(values[0][0].as_f64(), Some(start + 60.0));
    assert_eq!(values[1][0].as_f64(), Some(start + 120.0));
    assert!(values[1][1].is_string());
    let (s2, v2) = post(&f.app, "/api/v1/query_range", &q).await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(v, v2);
    // POST with some parameters in the URL and some in the body.
    let (_, v3) = post(
        &f.app,
        &format!("/api/v1/query_range?start={start}&end={LAST}"),
        &format!(
            "query={}&step=1m",
            enc("rate(http_requests_total{code=\"200\"}[1m])")
        ),
    )
    .await;
    assert_eq!(v, v3);
    // Instant POST.
    let (_, a) = get(&f.app, &format!("/api/v1/query?query=up&time={LAST}")).await;
    let (_, b) = post(&f.app, "/api/v1/query", &format!("query=up&time={LAST}")).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn query_errors() {
    let f = fixture();
    assert_error(
        get(&f.app, "/api/v1/query?query=up%7B").await,
        400,
        "bad_data",
        "invalid parameter \"query\": 1:4: parse error:",
    );
    assert_error(
        get(&f.app, "/api/v1/query?query=sum(").await,
        400,
        "bad_data",
        "parse error",
    );
    assert_error(
        get(&f.app, "/api/v1/query?query=up&time=yesterday").await,
        400,
        "bad_data",
        "invalid parameter \"time\": invalid time value for 'time': cannot parse \"yesterday\" to a valid timestamp",
    );
    assert_error(
        get(&f.app, "/api/v1/query?query=up&limit=-1").await,
        400,
        "bad_data",
        "invalid parameter \"limit\": limit must be non-negative",
    );
    assert_error(
        get(&f.app, "/api/v1/query?query=up&timeout=soon").await,
        400,
        "bad_data",
        "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration",
    );
    assert_error(
        get(&f.app, "/api/v1/query?query=up&lookback_delta=x").await,
        400,
        "bad_data",
        "error parsing lookback delta duration",
    );
    assert_error(
        get(&f.app, "/api/v1/query_range?query=up&start=10&end=5&step=1").await,
        400,
        "bad_data",
        "invalid parameter \"end\": end timestamp must not be before start time",
    );
    assert_error(
        get(&f.app, "/api/v1/query_range?query=up&start=0&end=5&step=0").await,
        400,
        "bad_data",
        "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
    );
    assert_error(
        get(&f.app, "/api/v1/query_range?query=up&start=0&end=100000&step=1").await,
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
    );
    assert_error(
        get(&f.app, "/api/v1/query_range?query=up&end=5&step=1").await,
        400,
        "bad_data",
        "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
    );
    assert_error(
        get(&f.app, "/api/v1/query_range?query=up%5B5m%5D&start=0&end=5&step=1").await,
        400,
        "bad_data",
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
    );
    // A timeout too short to wait for anything.
    assert_error(
        get(&f.app, "/api/v1/query?query=up&timeout=0").await,
        503,
        "timeout",
        "query timed out",
    );
}

#[tokio::test]
async fn execution_errors_are_422() {
    let f = fixture_with(EngineOptions {
        max_samples: 1,
        ..Default::default()
    });
    assert_error(
        get(
            &f.app,
            &format!("/api/v1/query?query=up%5B10m%5D&time={LAST}"),
        )
        .await,
        422,
        "execution",
        "query processing would load too many samples into memory",
    );
}

#[tokio::test]
async fn engine_timeout_is_503() {
    let f = fixture_with(EngineOptions {
        timeout: std::time::Duration::from_millis(1),
        ..Default::default()
    });
    // A long range query with a subquery: far more than 1ms of work.
    let q = enc("sum_over_time(rate(http_requests_total[5m])[30m:1s])");
    let (s, v) = get(
        &f.app,
        &format!(
            "/api/v1/query_range?query={q}&start={}&end={LAST}&step=1",
            T0 / 1000 - 3600
        ),
    )
    .await;
    assert_eq!(s.as_u16(), 503, "{v}");
    assert_eq!(v["errorType"], "timeout");
}

#[tokio::test]
async fn limit_truncates_with_warning() {
    let f = fixture();
    let (_, v) = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&limit=1"),
    )
    .await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let (_, v) = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&limit=2"),
    )
    .await;
    assert!(v.get("warnings").is_none(), "{v}");
}

#[tokio::test]
async fn annotations_are_rendered() {
    let f = fixture();
    // rate() over a metric not named like a counter: an info annotation.
    let (s, v) = get(
        &f.app,
        &format!("/api/v1/query?query={}&time={LAST}", enc("rate(up[5m])")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let infos = v["infos"].as_array().expect("infos");
    assert!(
        infos[0]
            .as_str()
            .unwrap()
            .contains("does not end in _total"),
        "{v}"
    );
}

#[tokio::test]
async fn stats_are_included_on_request() {
    let f = fixture();
    let (_, v) = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&stats=all"),
    )
    .await;
    let st = &v["data"]["stats"];
    for k in [
        "evalTotalTime",
        "resultSortTime",
        "queryPreparationTime",
        "innerEvalTime",
        "execQueueTime",
        "execTotalTime",
    ] {
        assert!(st["timings"][k].is_number(), "{k}: {st}");
    }
    assert!(st["samples"]["totalQueryableSamples"].as_u64().unwrap() >= 2);
    assert!(st["samples"]["peakSamples"].is_number());
    let (_, v) = get(&f.app, &format!("/api/v1/query?query=up&time={LAST}")).await;
    assert!(v["data"].get("stats").is_none());
    let (_, v) = get(
        &f.app,
        &format!("/api/v1/query?query=up&time={LAST}&stats=1"),
    )
    .await;
    assert!(v["data"]["stats"].is_object());
    assert!(v["warnings"][0].as_str().unwrap().contains("is deprecated"));
}

#[tokio::test]
async fn series_endpoint() {
    let f = fixture();
    assert_error(
        get(&f.app, "/api/v1/series").await,
        400,
        "bad_data",
        "no match[] parameter provided",
    );
    assert_error(
        get(
            &f.app,
            &format!("/api/v1/series?match[]={}", enc("{job=~\".*\"}")),
        )
        .await,
        400,
        "bad_data",
        "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher",
    );
    let (s, v) = get(&f.app, "/api/v1/series?match[]=up").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"status": "success", "data": [
            {"__name__": "up", "instance": "x", "job": "a"},
            {"__name__": "up", "instance": "y", "job": "b"},
        ]})
    );
    // Several selectors: union, deduplicated, sorted.
    let q = format!(
        "match[]=up&match[]={}&match[]={}",
        enc("{job=\"a\"}"),
        enc("http_requests_total{code=\"500\"}")
    );
    let (_, v) = get(&f.app, &format!("/api/v1/series?{q}")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 4, "{v}");
    let (_, v2) = post(&f.app, "/api/v1/series", &q).await;
    assert_eq!(v, v2);
    // Limit.
    let (_, v) = get(&f.app, "/api/v1/series?match[]=up&limit=1").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // Time range outside the data: nothing.
    let (_, v) = get(&f.app, "/api/v1/series?match[]=up&start=0&end=1000").await;
    assert_eq!(v["data"], json!([]));
}

#[tokio::test]
async fn labels_and_values() {
    let f = fixture();
    let (_, v) = get(&f.app, "/api/v1/labels").await;
    assert_eq!(
        v,
        json!({"status": "success", "data": ["__name__", "code", "instance", "job"]})
    );
    let (_, v) = get(&f.app, "/api/v1/labels?match[]=up").await;
    assert_eq!(v["data"], json!(["__name__", "instance", "job"]));
    let (_, v2) = post(&f.app, "/api/v1/labels", "match[]=up").await;
    assert_eq!(v, v2);
    let (_, v) = get(&f.app, "/api/v1/labels?limit=2").await;
    assert_eq!(v["data"], json!(["__name__", "code"]));
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));

    let (_, v) = get(&f.app, "/api/v1/label/job/values").await;
    assert_eq!(v, json!({"status": "success", "data": ["a", "b"]}));
    let (_, v) = get(&f.app, "/api/v1/label/__name__/values").await;
    assert_eq!(v["data"], json!(["http_requests_total", "up"]));
    let (_, v) = get(
        &f.app,
        &format!("/api/v1/label/code/values?match[]={}", enc("{job=\"a\"}")),
    )
    .await;
    assert_eq!(v["data"], json!(["200", "500"]));
    let (_, v) = get(&f.app, "/api/v1/label/job/values?limit=1").await;
    assert_eq!(v["data"], json!(["a"]));
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // `U__` escaping of label names (here a plain name, escaped).
    let (_, v) = get(&f.app, "/api/v1/label/U__j_6f_b/values").await;
    assert_eq!(v["data"], json!(["a", "b"]));
    let (_, v) = get(&f.app, "/api/v1/label/nope/values").await;
    assert_eq!(v["data"], json!([]));
    assert_error(
        get(&f.app, "/api/v1/labels?match[]=up%7B").await,
        400,
        "bad_data",
        "parse error",
    );
}

#[tokio::test]
async fn metadata_and_exemplars() {
    let f = fixture();
    let (_, v) = get(&f.app, "/api/v1/metadata").await;
    assert_eq!(v, json!({"status": "success", "data": {}}));
    f.state
        .record_metadata("http_requests_total", "counter", "Requests.", "");
    f.state.record_metadata("up", "gauge", "Up.", "");
    let (_, v) = get(&f.app, "/api/v1/metadata").await;
    assert_eq!(
        v["data"],
        json!({
            "http_requests_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
            "up": [{"type": "gauge", "help": "Up.", "unit": ""}],
        })
    );
    let (_, v) = get(&f.app, "/api/v1/metadata?metric=up").await;
    assert_eq!(v["data"].as_object().unwrap().len(), 1);
    let (_, v) = get(&f.app, "/api/v1/metadata?limit=1").await;
    assert_eq!(v["data"].as_object().unwrap().len(), 1);
    assert_error(
        get(&f.app, "/api/v1/metadata?limit=x").await,
        400,
        "bad_data",
        "limit must be a number",
    );

    let series = Labels::from_pairs(&[
        ("__name__", "http_requests_total"),
        ("code", "200"),
        ("job", "a"),
    ]);
    let ex = Labels::from_pairs(&[("trace_id", "abc")]);
    f.state
        .record_exemplar(&series, &ex, 6.0, T0 + 1_500)
        .unwrap();
    let (s, v) = get(
        &f.app,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={LAST}",
            enc("rate(http_requests_total[5m])"),
            T0 / 1000
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["data"],
        json!([{
            "seriesLabels": {"__name__": "http_requests_total", "code": "200", "job": "a"},
            "exemplars": [{"labels": {"trace_id": "abc"}, "value": "6", "timestamp": 1_700_000_001.5}],
        }])
    );
    let (_, v) = get(&f.app, "/api/v1/query_exemplars?query=up").await;
    assert_eq!(v["data"], json!([]));
    assert_error(
        get(&f.app, "/api/v1/query_exemplars?query=up&start=10&end=5").await,
        400,
        "bad_data",
        "end timestamp must not be before start timestamp",
    );
}

#[tokio::test]
async fn format_query() {
    let f = fixture();
    let (_, v) = get(
        &f.app,
        &format!(
            "/api/v1/format_query?query={}",
            enc("sum by(job)(rate(foo[5m]))")
        ),
    )
    .await;
    assert_eq!(
        v,
        json!({"status": "success", "data": "sum by (job) (rate(foo[5m]))"})
    );
    assert_error(
        get(&f.app, "/api/v1/format_query?query=foo%7B").await,
        400,
        "bad_data",
        "invalid parameter \"query\"",
    );
}

#[tokio::test]
async fn status_endpoints() {
    let f = fixture();
    let (_, v) = get(&f.app, "/api/v1/status/buildinfo").await;
    for k in [
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(v["data"][k].is_string(), "{k}: {v}");
    }
    let (_, v) = get(&f.app, "/api/v1/status/config").await;
    assert_eq!(
        v["data"],
        json!({"yaml": "global:\n  external_labels:\n    region: eu\n"})
    );
    let (_, v) = get(&f.app, "/api/v1/status/flags").await;
    assert_eq!(v["data"], json!({"query.timeout": "2m"}));
    let (_, v) = get(&f.app, "/api/v1/status/runtimeinfo").await;
    let d = &v["data"];
    for k in [
        "startTime",
        "CWD",
        "hostname",
        "serverTime",
        "lastConfigTime",
        "GOGC",
        "GODEBUG",
    ] {
        assert!(d[k].is_string(), "{k}: {d}");
    }
    for k in [
        "corruptionCount",
        "goroutineCount",
        "GOMAXPROCS",
        "GOMEMLIMIT",
    ] {
        assert!(d[k].is_number(), "{k}: {d}");
    }
    assert_eq!(d["reloadConfigSuccess"], true);
    assert_eq!(d["storageRetention"], "15d");
    assert!(d["startTime"].as_str().unwrap().ends_with('Z'));

    let (_, v) = get(&f.app, "/api/v1/status/tsdb").await;
    let d = &v["data"];
    assert_eq!(d["headStats"]["numSeries"], 4);
    assert_eq!(d["headStats"]["minTime"], T0);
    assert_eq!(d["headStats"]["maxTime"], T0 + 39 * 15_000);
    // __name__ x2, instance x2, job x2, code x2.
    assert_eq!(d["headStats"]["numLabelPairs"], 8);
    assert!(d["headStats"]["chunkCount"].is_number());
    assert_eq!(
        d["seriesCountByMetricName"],
        json!([{"name": "http_requests_total", "value": 2}, {"name": "up", "value": 2}])
    );
    assert_eq!(d["labelValueCountByLabelName"][0]["value"], 2);
    assert_eq!(
        d["seriesCountByLabelValuePair"][0],
        json!({"name": "job=a", "value": 3})
    );
    assert!(d["memoryInBytesByLabelName"][0]["value"].as_u64().unwrap() > 0);
    let (_, v) = get(&f.app, "/api/v1/status/tsdb?limit=1").await;
    assert_eq!(
        v["data"]["seriesCountByMetricName"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_error(
        get(&f.app, "/api/v1/status/tsdb?limit=0").await,
        400,
        "bad_data",
        "limit must be a positive number",
    );

    let (_, v) = get(&f.app, "/api/v1/targets").await;
    assert_eq!(v["data"]["activeTargets"], json!([]));
    assert_eq!(v["data"]["droppedTargets"], json!([]));
    let (_, v) = get(&f.app, "/api/v1/rules").await;
    assert_eq!(v["data"], json!({"groups": []}));
    let (_, v) = get(&f.app, "/api/v1/alerts").await;
    assert_eq!(v["data"], json!({"alerts": []}));
}

#[tokio::test]
async fn gzip_when_accepted() {
    let f = fixture();
    let req = Request::get("/api/v1/series?match[]=up")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let mut s = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut s)
        .unwrap();
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // Without Accept-Encoding: plain.
    let resp = f
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/series?match[]=up")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn health_and_self_metrics() {
    let f = fixture();
    for p in ["/-/healthy", "/-/ready"] {
        let resp = f
            .app
            .clone()
            .oneshot(Request::get(p).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    f.state.metrics().samples_ingested.inc_by(7);
    f.state.metrics().rejected("out_of_order").inc();
    f.state.metrics().wal_fsyncs.inc();
    let _ = get(&f.app, &format!("/api/v1/query?query=up&time={LAST}")).await;
    let resp = f
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    for want in [
        "strata_ingest_samples_total 7",
        "strata_ingest_samples_rejected_total{reason=\"out_of_order\"} 1",
        "strata_tsdb_head_series 4",
        "strata_tsdb_head_samples_appended_total 160",
        "strata_query_duration_seconds_count{handler=\"query\"} 1",
        "strata_http_requests_total{handler=\"/api/v1/query\",code=\"200\"} 1",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // WAL fsyncs: the manual increment plus whatever the WAL did.
    let fsyncs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_tsdb_wal_fsyncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no WAL fsync counter in\n{text}"));
    assert!(fsyncs >= 1, "{fsyncs}");
    {}
}

#[tokio::test]
async fn extra_routes_merge() {
    let f = fixture();
    let extra = Router::new().route(
        "/api/v1/write",
        axum::routing::post(|| async { StatusCode::NO_CONTENT }),
    );
    let app = router(f.state.clone()).merge(extra);
    let resp = app
        .oneshot(Request::post("/api/v1/write").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

/// Sends one HTTP/1.1 request over a fresh connection and returns the status code and body;
/// `None` if the server did not answer within `limit`.
async fn raw_http(
    addr: std::net::SocketAddr,
    path: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.get(9..12)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
        Some((code, body))
    };
    tokio::time::timeout(limit, fut).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_query() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .unwrap();
    // One query slot: a query that is never cancelled would keep the next one waiting.
    let config = ApiConfig {
        max_concurrency: 1,
        ..Default::default()
    };
    let state = Arc::new(ApiState::new(db, Engine::default(), config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });

    // Billions of subquery steps: minutes of work, well inside the default 2m timeout only
    // if cancelled. No samples are loaded, so no sample limit ends it early.
    let slow = enc("count_over_time((sum_over_time(vector(1)[3d:1s]))[3d:1s])");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!("GET /api/v1/query?query={slow}&time=100000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Let it start evaluating and hold the only slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = raw_http(
        addr,
        "/api/v1/query?query=1%2B1&timeout=1s",
        Duration::from_secs(10),
    )
    .await;
    let (code, body) = busy.expect("the server answers while the slow query runs");
    assert_eq!(
        code, 503,
        "the slot should be taken by the slow query: {body}"
    );
    assert!(body.contains("query queue"), "{body}");

    // The client goes away: the slow query must stop and free the slot.
    drop(conn);
    let mut answered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((200, body)) = raw_http(
            addr,
            "/api/v1/query?query=1%2B1&timeout=1s",
            Duration::from_secs(5),
        )
        .await
        {
            answered = Some(body);
            break;
        }
    }
    let body = answered.expect("a query is answered after the client of the slow one hung up");
    assert!(body.contains("\"2\""), "{body}");
    let (_, metrics) = raw_http(addr, "/metrics", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "strata_queries_canceled_total 1"),
        "{metrics}"
    );
    server.abort();
}

#[tokio::test]
async fn reload_needs_lifecycle_and_keeps_old_config_on_error() {
    let f = fixture();
    let resp = f
        .app
        .clone()
        .oneshot(Request::post("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let state = Arc::new(ApiState::new(
        db,
        Engine::default(),
        ApiConfig {
            enable_lifecycle: true,
            config_yaml: "old".into(),
            ..Default::default()
        },
    ));
    let next = Arc::new(std::sync::Mutex::new(Err::<String, String>(
        "bad field".into(),
    )));
    let n2 = next.clone();
    state.set_reloader(Arc::new(move || n2.lock().unwrap().clone()));
    let app = router(state.clone());
    let resp = app
        .clone()
        .oneshot(Request::post("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let (_, v) = get(&app, "/api/v1/status/config").await;
    assert_eq!(v["data"]["yaml"], "old");
    *next.lock().unwrap() = Ok("new".into());
    let resp = app
        .clone()
        .oneshot(Request::put("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, v) = get(&app, "/api/v1/status/config").await;
    assert_eq!(v["data"]["yaml"], "new");
}

#[tokio::test]
async fn targets_come_from_the_attached_source() {
    use strata_querier::api::{ActiveTarget, Health, TargetsSnapshot, TargetsSource};
    struct One;
    impl TargetsSource for One {
        fn snapshot(&self) -> TargetsSnapshot {
            TargetsSnapshot {
                active: vec![ActiveTarget {
                    discovered_labels: Labels::from_pairs(&[("__address__", "h:1")]),
                    labels: Labels::from_pairs(&[("instance", "h:1"), ("job", "j")]),
                    scrape_pool: "j".into(),
                    scrape_url: "http://h:1/metrics".into(),
                    last_error: "boom".into(),
                    last_scrape_ms: None,
                    last_scrape_duration: Duration::ZERO,
                    health: Health::Down,
                    scrape_interval: Duration::from_secs(15),
                    scrape_timeout: Duration::from_secs(10),
                }],
                pools: vec!["j".into()],
                ..Default::default()
            }
        }
    }
    let f = fixture();
    let (s, v) = get(&f.app, "/api/v1/targets").await;
    assert_eq!(s.as_u16(), 200);
    assert_eq!(v["data"]["activeTargets"], json!([]));
    f.state.set_targets_source(Arc::new(One));
    let (_, v) = get(&f.app, "/api/v1/targets?state=active").await;
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["health"], "down");
    assert_eq!(t["lastError"], "boom");
    assert_eq!(t["lastScrape"], "0001-01-01T00:00:00Z");
    let (_, v) = get(&f.app, "/api/v1/scrape_pools").await;
    assert_eq!(v["data"]["scrapePools"], json!(["j"]));
}

#[tokio::test]
async fn max_source_resolution_chooses_what_queries_read() {
    let f = fixture();
    let asked = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let db = f.state.db.clone();
    let rec = asked.clone();
    // The same data at every resolution; what matters is which resolution was asked for.
    let at: strata_querier::api::QueryableAt = Arc::new(move |res| {
        rec.lock().push(res);
        db.clone() as Arc<dyn strata_tsdb::storage::Queryable>
    });
    let state = Arc::new(
        ApiState::new(f.state.db.clone(), Engine::default(), ApiConfig::default())
            .with_queryable_at(at),
    );
    let app = router(state);
    let (s, e) = (T0 / 1000, T0 / 1000 + 600);
    let range =
        |extra: &str| format!("/api/v1/query_range?query=up&start={s}&end={e}&step=3600{extra}");
    // auto (the default): a fifth of the step.
    let (st, v) = get(&app, &range("")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(asked.lock().split_off(0), vec![720_000]);
    let (st, _) = get(&app, &range("&max_source_resolution=1h")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(asked.lock().split_off(0), vec![3_600_000]);
    // Raw data: the plain queryable.
    for raw in ["raw", "0s", "0"] {
        let (st, _) = get(&app, &range(&format!("&max_source_resolution={raw}"))).await;
        assert_eq!(st, StatusCode::OK);
        assert!(asked.lock().is_empty(), "{raw}");
    }
    // Instant queries under auto read raw data; an explicit resolution is honoured.
    let (st, _) = get(&app, &format!("/api/v1/query?query=up&time={e}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(asked.lock().is_empty());
    let (st, _) = get(
        &app,
        &format!("/api/v1/query?query=up&time={e}&max_source_resolution=5m"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(asked.lock().split_off(0), vec![300_000]);
    assert_error(
        get(&app, &range("&max_source_resolution=often")).await,
        400,
        "bad_data",
        "invalid parameter \"max_source_resolution\"",
    );
}
