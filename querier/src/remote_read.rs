//! Prometheus remote read (`POST /api/v1/read`), as Prometheus's `storage/remote/read_handler.go`
//! serves it.
//!
//! The request body is a snappy (block format) compressed `prometheus.ReadRequest`. Each query's
//! matchers select series from [`Queryable::querier`] over `[start, end]`. The response type is
//! the first of the request's `accepted_response_types` that is supported (none listed means
//! `SAMPLES`):
//!
//! * `SAMPLES`: one snappy-compressed `prometheus.ReadResponse` with every series' samples,
//!   `Content-Type: application/x-protobuf`, `Content-Encoding: snappy`.
//! * `STREAMED_XOR_CHUNKS`: `Content-Type: application/x-streamed-protobuf;
//!   proto=prometheus.ChunkedReadResponse`; a sequence of frames, each `uvarint(len)`,
//!   big-endian CRC-32C of the message, then one `prometheus.ChunkedReadResponse` holding one
//!   series (a series whose chunks exceed [`ReadLimits::max_bytes_in_frame`] is split over
//!   several frames, as in Prometheus). Samples are re-encoded into XOR chunks of at most 120
//!   samples, series sorted by labels.
//!
//! Errors: an undecodable request, a bad matcher (Prometheus answers 500 for an invalid regex;
//! we answer 400, the client's fault), or more than [`ReadLimits::max_samples`] samples → 400;
//! a body or decoded request above 32 MiB → 413; storage errors → 500. External labels are not
//! applied (Strata has none yet).
//!
//! [`handle_read`] collects the whole response in memory; a handler that wants true streaming
//! calls [`decode_read_request`] and [`stream_chunked`] with its own frame sink.

use prost::Message;
use strata_ingest::remote::proto::v1::{
    self, Chunk, ChunkEncoding, ChunkedReadResponse, ChunkedSeries, LabelMatcher, MatcherType,
    QueryResult, ReadRequest, ResponseType,
};
use strata_ingest::remote::write::snappy_decompress;
use strata_ingest::remote::RemoteError;
use strata_tsdb::chunkenc::XorChunk;
use strata_tsdb::storage::{Queryable, SelectHints};
use strata_tsdb::{Labels, MatchType, Matcher};

/// Content type of a `SAMPLES` response.
pub const SAMPLES_CONTENT_TYPE: &str = "application/x-protobuf";
/// Content type of a `STREAMED_XOR_CHUNKS` response.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Samples per re-encoded XOR chunk (Prometheus's target chunk size).
const SAMPLES_PER_CHUNK: usize = 120;

/// Limits for one remote-read request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest compressed request body (Prometheus: 32 MiB).
    pub max_body_bytes: usize,
    /// Largest decompressed request (Prometheus: 32 MiB).
    pub max_decoded_bytes: usize,
    /// Most samples in one response, over all queries (Prometheus's
    /// `--storage.remote.read-sample-limit`, default 5e7); 0 means no limit.
    pub max_samples: usize,
    /// Target size of one streamed frame (Prometheus's
    /// `--storage.remote.read-max-bytes-in-frame`, default 1 MiB).
    pub max_bytes_in_frame: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 32 << 20,
            max_samples: 50_000_000,
            max_bytes_in_frame: 1 << 20,
        }
    }
}

/// A complete remote-read answer (status 200).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReply {
    pub content_type: &'static str,
    /// `Some("snappy")` for `SAMPLES` responses.
    pub content_encoding: Option<&'static str>,
    pub body: Vec<u8>,
}

/// Decodes a remote-read request body (snappy + protobuf). `content_encoding` may be missing
/// or `snappy` (anything else is 415); the content type is not checked, as in Prometheus.
pub fn decode_read_request(
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &ReadLimits,
) -> Result<ReadRequest, RemoteError> {
    strata_ingest::remote::write::check_content_encoding(content_encoding)?;
    if body.len() > limits.max_body_bytes {
        return Err(RemoteError::too_large(format!(
            "request body of {} bytes exceeds limit {}",
            body.len(),
            limits.max_body_bytes
        )));
    }
    let raw = snappy_decompress(body, limits.max_decoded_bytes)?;
    ReadRequest::decode(raw.as_slice())
        .map_err(|e| RemoteError::bad_request(format!("decoding remote read request: {e}")))
}

/// The response type Prometheus would choose: the first supported one the client accepts,
/// `SAMPLES` when it lists none. Unknown values only: 400.
pub fn negotiate_response_type(accepted: &[i32]) -> Result<ResponseType, RemoteError> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    accepted
        .iter()
        .find_map(|&t| ResponseType::try_from(t).ok())
        .ok_or_else(|| {
            RemoteError::bad_request(format!(
                "server does not support any of the requested response types: {accepted:?}; supported: [SAMPLES STREAMED_XOR_CHUNKS]"
            ))
        })
}

/// Serves one remote-read request, collecting the whole response.
pub fn handle_read(
    queryable: &dyn Queryable,
    _content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &ReadLimits,
) -> Result<ReadReply, RemoteError> {
    let req = decode_read_request(content_encoding, body, limits)?;
    match negotiate_response_type(&req.accepted_response_types)? {
        ResponseType::Samples => {
            let resp = read_samples(queryable, &req, limits)?;
            let raw = resp.encode_to_vec();
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .map_err(|e| RemoteError::internal(format!("snappy: {e}")))?;
            Ok(ReadReply {
                content_type: SAMPLES_CONTENT_TYPE,
                content_encoding: Some("snappy"),
                body,
            })
        }
        ResponseType::StreamedXorChunks => {
            let mut body = Vec::new();
            stream_chunked(queryable, &req, limits, &mut |frame: &[u8]| {
                body.extend_from_slice(frame);
                Ok(())
            })?;
            Ok(ReadReply {
                content_type: STREAMED_CONTENT_TYPE,
                content_encoding: None,
                body,
            })
        }
    }
}

fn matchers(pb: &[LabelMatcher]) -> Result<Vec<Matcher>, RemoteError> {
    pb.iter()
        .map(|m| {
            let typ = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => MatchType::Equal,
                Ok(MatcherType::Neq) => MatchType::NotEqual,
                Ok(MatcherType::Re) => MatchType::Regexp,
                Ok(MatcherType::Nre) => MatchType::NotRegexp,
                Err(_) => {
                    return Err(RemoteError::bad_request(format!(
                        "invalid matcher type {}",
                        m.r#type
                    )))
                }
            };
            Matcher::new(typ, m.name.clone(), m.value.clone())
                .map_err(|e| RemoteError::bad_request(e.to_string()))
        })
        .collect()
}

fn hints(q: &v1::Query) -> Option<SelectHints> {
    q.hints.as_ref().map(|h| SelectHints {
        start: h.start_ms,
        end: h.end_ms,
        step: h.step_ms,
        func: (!h.func.is_empty()).then(|| h.func.clone()),
        range: h.range_ms,
    })
}

fn pb_labels(l: &Labels) -> Vec<v1::Label> {
    l.iter()
        .map(|l| v1::Label::new(&l.name, &l.value))
        .collect()
}

fn storage_err(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::internal(e.to_string())
}

/// Receives one selected series' labels and samples.
type SeriesSink<'a> = dyn FnMut(&Labels, &[(i64, f64)]) -> Result<(), RemoteError> + 'a;

/// Runs one query and calls `f` with each selected series' labels and samples (sorted by
/// labels), counting samples against the limit.
fn for_each_series(
    queryable: &dyn Queryable,
    q: &v1::Query,
    samples_left: &mut Option<usize>,
    limit: usize,
    f: &mut SeriesSink<'_>,
) -> Result<(), RemoteError> {
    let ms = matchers(&q.matchers)?;
    let querier = queryable
        .querier(q.start_timestamp_ms, q.end_timestamp_ms)
        .map_err(storage_err)?;
    let h = hints(q);
    let mut buf = Vec::new();
    for s in querier.select(true, h.as_ref(), &ms) {
        let s = s.map_err(storage_err)?;
        buf.clear();
        let mut it = s.iterator();
        while it.next() {
            if let Some(left) = samples_left {
                if *left == 0 {
                    return Err(RemoteError::bad_request(format!(
                        "exceeded sample limit ({limit})"
                    )));
                }
                *left -= 1;
            }
            buf.push(it.at());
        }
        if let Some(e) = it.err() {
            return Err(RemoteError::internal(format!(
                "reading series {}: {e}",
                s.labels()
            )));
        }
        f(s.labels(), &buf)?;
    }
    Ok(())
}

/// Builds a `SAMPLES` response (uncompressed message).
pub fn read_samples(
    queryable: &dyn Queryable,
    req: &ReadRequest,
    limits: &ReadLimits,
) -> Result<v1::ReadResponse, RemoteError> {
    let mut left = (limits.max_samples > 0).then_some(limits.max_samples);
    let mut results = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        let mut res = QueryResult::default();
        for_each_series(
            queryable,
            q,
            &mut left,
            limits.max_samples,
            &mut |l, samples| {
                res.timeseries.push(v1::TimeSeries {
                    labels: pb_labels(l),
                    samples: samples
                        .iter()
                        .map(|&(timestamp, value)| v1::Sample { value, timestamp })
                        .collect(),
                    ..Default::default()
                });
                Ok(())
            },
        )?;
        results.push(res);
    }
    Ok(v1::ReadResponse { results })
}

/// Appends one frame of the streamed format: uvarint length, big-endian CRC-32C, message.
pub fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Streams a `STREAMED_XOR_CHUNKS` response: `emit` receives each complete frame (length,
/// checksum and message) in order. Series are sorted by labels within each query.
pub fn stream_chunked(
    queryable: &dyn Queryable,
    req: &ReadRequest,
    limits: &ReadLimits,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), RemoteError>,
) -> Result<(), RemoteError> {
    let mut left = (limits.max_samples > 0).then_some(limits.max_samples);
    let mut frame = Vec::new();
    for (qi, q) in req.queries.iter().enumerate() {
        for_each_series(
            queryable,
            q,
            &mut left,
            limits.max_samples,
            &mut |l, samples| {
                let labels = pb_labels(l);
                let label_bytes: usize = labels.iter().map(|l| l.encoded_len()).sum();
                let max_data = limits.max_bytes_in_frame as i64 - label_bytes as i64;
                let mut chunks: Vec<Chunk> = Vec::new();
                let mut budget = max_data;
                let mut parts = samples.chunks(SAMPLES_PER_CHUNK).peekable();
                while let Some(part) = parts.next() {
                    let mut c = XorChunk::new();
                    for &(t, v) in part {
                        c.append(t, v).map_err(storage_err)?;
                    }
                    let chunk = Chunk {
                        min_time_ms: part[0].0,
                        max_time_ms: part[part.len() - 1].0,
                        r#type: ChunkEncoding::Xor as i32,
                        data: c.into_bytes(),
                    };
                    budget -= chunk.encoded_len() as i64;
                    chunks.push(chunk);
                    if budget > 0 && parts.peek().is_some() {
                        continue;
                    }
                    let msg = ChunkedReadResponse {
                        chunked_series: vec![ChunkedSeries {
                            labels: labels.clone(),
                            chunks: std::mem::take(&mut chunks),
                        }],
                        query_index: qi as i64,
                    }
                    .encode_to_vec();
                    frame.clear();
                    write_frame(&mut frame, &msg);
                    emit(&frame)?;
                    budget = max_data;
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
