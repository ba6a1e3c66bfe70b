//! The remote-write receiver (`POST /api/v1/write`) and remote read (`POST /api/v1/read`) as
//! HTTP endpoints: protocol decoding and validation live in `strata_ingest::remote` and
//! [`crate::remote_read`]; here requests are run on a blocking thread, written samples are
//! committed to the WAL before the answer is sent, and metadata, exemplars and self-metrics
//! are recorded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use strata_ingest::remote::write::{ingest_write, response_headers, WriteLimits};
use strata_ingest::remote::RemoteError;
use strata_tsdb::storage::Appender;

use super::ApiState;
use crate::remote_read::{handle_read, ReadLimits};

/// Limits of the remote endpoints.
#[derive(Clone, Debug, Default)]
pub struct RemoteLimits {
    pub write: WriteLimits,
    pub read: ReadLimits,
}

/// `POST /api/v1/write` and `POST /api/v1/read`, to be merged into [`super::router`].
pub fn remote_router(state: Arc<ApiState>, limits: RemoteLimits) -> Router {
    let body_limit = limits.write.max_body_bytes.max(limits.read.max_body_bytes);
    let limits = Arc::new(limits);
    let wl = limits.clone();
    let rl = limits;
    Router::new()
        .route(
            "/api/v1/write",
            post(move |st, h, b| write(st, h, b, wl.clone())),
        )
        .route(
            "/api/v1/read",
            post(move |st, h, b| read(st, h, b, rl.clone())),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn plain(status: u16, msg: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, msg).into_response()
}

async fn write(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
    limits: Arc<RemoteLimits>,
) -> Response {
    let ct = header_str(&headers, header::CONTENT_TYPE).map(str::to_string);
    let ce = header_str(&headers, header::CONTENT_ENCODING).map(str::to_string);
    let st2 = st.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<_, RemoteError> {
        let mut app = st2
            .db
            .appender()
            .map_err(|e| RemoteError::internal(e.to_string()))?;
        // Decoded and appended in one pass (1.0 without allocating per label); on an `Err`
        // nothing was appended.
        let ingested = ingest_write(
            ct.as_deref(),
            ce.as_deref(),
            &body,
            &limits.write,
            &mut app,
            now_ms(),
        )?;
        let report = ingested.report;
        if let Some(f) = &report.fatal {
            let _ = app.rollback();
            return Err(RemoteError::internal(f.clone()));
        }
        // The answer goes out only once the samples are in the WAL.
        app.commit()
            .map_err(|e| RemoteError::internal(format!("commit: {e}")))?;
        let m = &st2.metrics;
        m.samples_ingested.inc_by(report.samples_written as u64);
        if report.rejected_count > 0 {
            m.rejected("invalid").inc_by(report.rejected_count as u64);
        }
        for md in &ingested.metadata {
            if st2.record_metadata(&md.metric_family_name, md.typ.as_str(), &md.help, &md.unit) {
                m.metadata_ingested.inc();
            }
        }
        for (series, e) in &ingested.exemplars {
            if st2
                .record_exemplar(series, &e.labels, e.value, e.timestamp)
                .is_ok()
            {
                m.exemplars_ingested.inc();
            }
        }
        Ok(report)
    })
    .await;
    match res {
        Err(e) => plain(500, format!("write task failed: {e}")),
        Ok(Err(e)) => {
            st.metrics.rejected("bad_request").inc();
            plain(e.status, e.message)
        }
        Ok(Ok(report)) => {
            let status = report.status();
            let mut resp = if status == 204 {
                StatusCode::NO_CONTENT.into_response()
            } else {
                plain(status, report.error_message())
            };
            for (k, v) in response_headers(&report) {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(k, v);
                }
            }
            resp
        }
    }
}

async fn read(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
    limits: Arc<RemoteLimits>,
) -> Response {
    let ct = header_str(&headers, header::CONTENT_TYPE).map(str::to_string);
    let ce = header_str(&headers, header::CONTENT_ENCODING).map(str::to_string);
    let q = st.queryable.clone();
    let res = tokio::task::spawn_blocking(move || {
        handle_read(&*q, ct.as_deref(), ce.as_deref(), &body, &limits.read)
    })
    .await;
    match res {
        Err(e) => plain(500, format!("read task failed: {e}")),
        Ok(Err(e)) => plain(e.status, e.message),
        Ok(Ok(reply)) => {
            let mut resp = (StatusCode::OK, reply.body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(reply.content_type),
            );
            if let Some(enc) = reply.content_encoding {
                resp.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            resp
        }
    }
}
