//! The remote-write and remote-read endpoints through the HTTP router: status codes, headers,
//! and what ends up stored (queried back through the query API).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::Value;
use strata_ingest::remote::proto::{v1, v2};
use strata_promql::Engine;
use strata_querier::api::remote::remote_router;
use strata_querier::api::{router, ApiConfig, ApiState};
use strata_tsdb::db::{Db, DbOptions};
use tower::ServiceExt;

const T0: i64 = 1_700_000_000_000;

fn app() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .unwrap();
    let state = Arc::new(ApiState::new(db, Engine::default(), ApiConfig::default()));
    let app = router(state.clone()).merge(remote_router(state, Default::default()));
    (dir, app)
}

async fn write(
    app: &Router,
    ct: Option<&str>,
    ce: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::post("/api/v1/write");
    if let Some(ct) = ct {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(ce) = ce {
        req = req.header(header::CONTENT_ENCODING, ce);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn query(app: &Router, q: &str, t: f64) -> Value {
    let uri = format!(
        "/api/v1/query?query={}&time={t}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

fn v1_request(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| v1::Label::new(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v1::Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

#[tokio::test]
async fn content_type_and_encoding_are_checked_first() {
    let (_d, app) = app();
    let body = snappy(&v1_request(&[("__name__", "a")], &[(T0, 1.0)]));
    let (s, _, msg) = write(&app, Some("application/json"), Some("snappy"), body.clone()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{msg}");
    let (s, _, _) = write(
        &app,
        Some("application/x-protobuf"),
        Some("gzip"),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _, _) = write(
        &app,
        Some("application/x-protobuf;proto=unknown.Message"),
        Some("snappy"),
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A corrupt body with a bad content type is still 415.
    let (s, _, _) = write(&app, Some("text/plain"), None, b"garbage".to_vec()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn corrupt_bodies_are_400_and_store_nothing() {
    let (_d, app) = app();
    let ok = snappy(&v1_request(&[("__name__", "kept")], &[(T0, 7.0)]));
    let (s, _, _) = write(&app, Some("application/x-protobuf"), Some("snappy"), ok).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for body in [
        b"not snappy at all".to_vec(),
        snappy(b"\xff\xff\xff not protobuf"),
        // A snappy header claiming 1 GiB of output.
        vec![0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x01],
    ] {
        let (s, _, msg) = write(&app, Some("application/x-protobuf"), Some("snappy"), body).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::PAYLOAD_TOO_LARGE,
            "{s} {msg}"
        );
    }
    let v = query(&app, "{__name__=~\".+\"}", (T0 / 1000) as f64).await;
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{v}");
    assert_eq!(r[0]["value"][1], "7");
}

#[tokio::test]
async fn invalid_series_are_400_valid_ones_kept() {
    let (_d, app) = app();
    let req = v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![v1::Label::new("job", "x")],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: T0,
                }],
                ..Default::default()
            },
            v1::TimeSeries {
                // Unsorted labels, a dotted UTF-8 name: accepted and sorted.
                labels: vec![
                    v1::Label::new("z", "1"),
                    v1::Label::new("__name__", "my.metric"),
                ],
                samples: vec![v1::Sample {
                    value: 2.0,
                    timestamp: T0,
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (s, _, msg) = write(
        &app,
        Some("application/x-protobuf"),
        Some("snappy"),
        snappy(&req.encode_to_vec()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{msg}");
    let v = query(&app, "{\"my.metric\"}", (T0 / 1000) as f64).await;
    assert_eq!(v["data"]["result"][0]["metric"]["z"], "1", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
}

#[tokio::test]
async fn v2_answers_with_written_counts_and_keeps_special_values() {
    let (_d, app) = app();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let req = v2::Request {
        symbols: ["", "__name__", "g", "job", "j"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: [
                (T0, f64::INFINITY),
                (T0 + 1000, f64::NAN),
                (T0 + 2000, stale),
            ]
            .iter()
            .map(|&(timestamp, value)| v2::Sample {
                value,
                timestamp,
                ..Default::default()
            })
            .collect(),
            ..Default::default()
        }],
    };
    let (s, h, msg) = write(&app, Some(V2), Some("snappy"), snappy(&req.encode_to_vec())).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{msg}");
    assert_eq!(h["X-Prometheus-Remote-Write-Samples-Written"], "3");
    assert_eq!(h["X-Prometheus-Remote-Write-Histograms-Written"], "0");
    assert_eq!(h["X-Prometheus-Remote-Write-Exemplars-Written"], "0");
    // +Inf then NaN are visible; the stale marker hides the series afterwards.
    let t = |ms: i64| (ms as f64) / 1000.0;
    assert_eq!(
        query(&app, "g", t(T0)).await["data"]["result"][0]["value"][1],
        "+Inf"
    );
    assert_eq!(
        query(&app, "g", t(T0 + 1000)).await["data"]["result"][0]["value"][1],
        "NaN"
    );
    let after = query(&app, "g", t(T0 + 2000)).await;
    assert_eq!(
        after["data"]["result"].as_array().unwrap().len(),
        0,
        "{after}"
    );
    // Out-of-order and duplicate samples: 400 naming them, good samples stored.
    let req = v1_request(
        &[("__name__", "g"), ("job", "j")],
        &[(T0 - 60_000, 1.0), (T0 + 3000, 4.0)],
    );
    let (s, _, msg) = write(
        &app,
        Some("application/x-protobuf"),
        Some("snappy"),
        snappy(&req),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(msg.contains("out of"), "{msg}");
    assert_eq!(
        query(&app, "g", t(T0 + 3000)).await["data"]["result"][0]["value"][1],
        "4"
    );
}
