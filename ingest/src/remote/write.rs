//! The remote-write receiver: decoding and validating Prometheus remote-write 1.0 and 2.0
//! requests ([`decode_write`]) and applying them to an [`Appender`] ([`append_batch`]).
//!
//! The rules follow Prometheus's own receiver (`storage/remote/write_handler.go` and
//! client_golang's `exp/api/remote` handler):
//!
//! * `Content-Type` is `application/x-protobuf`, optionally with `proto=prometheus.WriteRequest`
//!   (1.0) or `proto=io.prometheus.write.v2.Request` (2.0); a missing header means 1.0. Anything
//!   else is **415**.
//! * `Content-Encoding` is `snappy` (block format); a missing header means snappy. Anything else
//!   is **415**.
//! * A body that does not decompress or does not decode as the protobuf message is **400**. The
//!   decoded length announced in the snappy header is checked *before* anything is allocated: a
//!   length above [`WriteLimits::max_decoded_bytes`] is **413**, and a length that no valid
//!   snappy stream of that size could produce is **400**.
//! * Series-level problems (missing or empty `__name__`, empty or duplicate label names, invalid
//!   UTF-8, v2 label references that are odd in number or outside the symbols table, invalid
//!   native histograms) reject *that series* only; the rest of the request is written and the
//!   answer is **400** naming what was rejected (the 2.0 spec's partial write).
//! * Per-sample storage refusals (`out of order sample`, `duplicate sample for timestamp`,
//!   `out of bounds`, and timestamps more than 10 minutes in the future) are likewise counted,
//!   the good samples are kept, and the answer is **400**. Any other storage error is fatal
//!   (**500**; the caller rolls back).
//!
//! Deliberate differences from Prometheus, each towards the 2.0 spec and its compliance suite:
//! a 1.0 request with an invalid series is answered 400 (Prometheus silently drops the series
//! and answers 204); a 1.0 request with an out-of-order sample keeps the good samples
//! (Prometheus rolls the whole request back; the sender drops it either way); a 2.0 series
//! carrying only metadata or only exemplars is accepted (Prometheus answers 400).
//!
//! Exemplars are validated and counted as written but not stored (Strata has no exemplar
//! storage yet; Prometheus does the same when its exemplar storage is disabled). Native
//! histograms are validated (an invalid one is a 400) but not stored yet: they are counted in
//! [`AppendReport::histograms_dropped`] and *not* reported as written.
//!
//! The server uses [`ingest_write`] (module `fast_v1`), which does both steps in one pass with
//! the same outcome: a 1.0 request is decoded with borrowed label strings and appended through
//! [`PairsAppender::append_pairs`], so a sample of an existing series allocates nothing. The
//! two-step form:
//!
//! ```text
//! let batch = decode_write(content_type, content_encoding, &body, &limits)?; // Err: status + message
//! let mut app = head.appender();
//! let report = append_batch(&mut app, &batch);
//! if report.fatal.is_some() { app.rollback(); /* 500 */ } else { app.commit()?; /* 500 on error */ }
//! // answer report.status() with report.error_message() and response_headers(&report)
//! ```

use std::sync::Arc;

use prost::Message;
use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::storage::{Appender, SeriesRef};
use strata_tsdb::{Error as TsdbError, Label, Labels};

use super::proto::{self, v1, v2, HistogramCount, HistogramZeroCount};
use super::RemoteError;
use crate::textparse::MetricType;

pub(crate) mod fast_v1;

pub use fast_v1::{ingest_write, Ingested, PairsAppender};

/// Media type of both protocol versions.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// `proto=` parameter value of remote write 1.0.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto=` parameter value of remote write 2.0.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// Response header: float samples written (2.0 only).
pub const HEADER_SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
/// Response header: native histogram samples written (2.0 only).
pub const HEADER_HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
/// Response header: exemplars written (2.0 only).
pub const HEADER_EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// How far ahead of the receiver's clock a sample may be (Prometheus's `maxAheadTime`).
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// How many rejection messages a report or batch keeps verbatim; the rest are only counted.
pub const MAX_MESSAGES: usize = 16;

/// The largest output a snappy block stream can produce per input byte. The densest element is
/// a copy with a 2-byte offset: 3 bytes of input for up to 64 bytes of output (21.3×).
const SNAPPY_MAX_EXPANSION: u64 = 22;

/// Which remote-write protocol a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Remote write 1.0, `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0, `io.prometheus.write.v2.Request`.
    V2,
}

/// Size limits applied to one request.
///
/// Defaults: a Prometheus sender packs at most `max_samples_per_send` (2000 by default, rarely
/// above 10 000) samples per request, which is well under 1 MiB compressed and a few MiB
/// decoded, so the defaults leave two orders of magnitude of headroom while bounding the memory
/// one request can pin: 32 MiB of body (Prometheus's own remote-*read* limit), 128 MiB decoded
/// (protobuf metrics compress 4–8×, so a full 32 MiB body fits), and one million series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Largest compressed body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest decompressed protobuf accepted (413 beyond), checked before allocating.
    pub max_decoded_bytes: usize,
    /// Most time series in one request (413 beyond).
    pub max_series: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 128 << 20,
            max_series: 1_000_000,
        }
    }
}

/// One decoded, validated series of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteSeries {
    /// Sorted, unique names; labels with empty values are dropped (Prometheus treats them as
    /// absent).
    pub labels: Labels,
    /// `(timestamp ms, value)` in request order; values bit-exact (stale markers included).
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<Exemplar>,
    /// Number of valid native histogram samples (not stored yet).
    pub histograms: usize,
    /// The series' created (start) timestamp, if the sender gave one.
    pub created_timestamp: Option<i64>,
}

/// An exemplar attached to a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp: i64,
}

/// Metadata of a metric family (v1: the request's `metadata`; v2: per series).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricMetadata {
    pub metric_family_name: String,
    pub typ: MetricType,
    pub help: String,
    pub unit: String,
}

/// A decoded request: the valid series, metadata, and what was rejected while decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteBatch {
    pub protocol: Protocol,
    pub series: Vec<WriteSeries>,
    pub metadata: Vec<MetricMetadata>,
    /// Messages for series (or parts of series) rejected while decoding, at most
    /// [`MAX_MESSAGES`]; any rejection makes the answer 400.
    pub invalid: Vec<String>,
    /// How many rejections there were in all.
    pub invalid_count: usize,
}

impl WriteBatch {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            series: Vec::new(),
            metadata: Vec::new(),
            invalid: Vec::new(),
            invalid_count: 0,
        }
    }

    fn reject(&mut self, msg: impl FnOnce() -> String) {
        if self.invalid.len() < MAX_MESSAGES {
            self.invalid.push(msg());
        }
        self.invalid_count += 1;
    }

    /// Number of float samples in the valid series.
    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// The outcome of [`append_batch`]. Nothing is committed yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// `Some(Protocol::V2)` makes [`response_headers`] emit the written counts.
    pub protocol: Option<Protocol>,
    pub samples_written: usize,
    /// Always 0 until native histograms are stored.
    pub histograms_written: usize,
    /// Valid native histograms that were accepted but not stored.
    pub histograms_dropped: usize,
    pub exemplars_written: usize,
    /// The first [`MAX_MESSAGES`] rejection messages (decoding and storage), Prometheus's wording.
    pub rejected: Vec<String>,
    /// How many rejections there were in all.
    pub rejected_count: usize,
    /// A storage error that is not the client's fault; the caller rolls back and answers 500.
    pub fatal: Option<String>,
}

impl AppendReport {
    fn reject(&mut self, msg: impl FnOnce() -> String) {
        if self.rejected.len() < MAX_MESSAGES {
            self.rejected.push(msg());
        }
        self.rejected_count += 1;
    }

    /// The HTTP status to answer (after a successful commit): 500 on a fatal error, 400 when
    /// anything was rejected, else 204.
    pub fn status(&self) -> u16 {
        if self.fatal.is_some() {
            500
        } else if self.rejected_count > 0 {
            400
        } else {
            204
        }
    }

    /// The response body for a non-2xx answer: the messages, one per line (as Go's
    /// `errors.Join`), with a count of the ones left out.
    pub fn error_message(&self) -> String {
        if let Some(f) = &self.fatal {
            return f.clone();
        }
        let mut s = self.rejected.join("\n");
        let more = self.rejected_count.saturating_sub(self.rejected.len());
        if more > 0 {
            s.push_str(&format!("\n... and {more} more"));
        }
        s
    }
}

/// The `X-Prometheus-Remote-Write-*-Written` headers for a 2.0 request (sent with every
/// answer, errors included); nothing for 1.0.
pub fn response_headers(report: &AppendReport) -> Vec<(&'static str, String)> {
    if report.protocol != Some(Protocol::V2) {
        return Vec::new();
    }
    vec![
        (HEADER_SAMPLES_WRITTEN, report.samples_written.to_string()),
        (
            HEADER_HISTOGRAMS_WRITTEN,
            report.histograms_written.to_string(),
        ),
        (
            HEADER_EXEMPLARS_WRITTEN,
            report.exemplars_written.to_string(),
        ),
    ]
}

/// Parses the `Content-Type` of a write request (None or empty: 1.0).
pub fn parse_content_type(content_type: Option<&str>) -> Result<Protocol, RemoteError> {
    let ct = content_type.map(str::trim).unwrap_or("");
    if ct.is_empty() {
        return Ok(Protocol::V1);
    }
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE) {
        return Err(RemoteError::unsupported(format!(
            "expected {PROTOBUF_CONTENT_TYPE} as the first (media) part, got {ct} content-type"
        )));
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(RemoteError::unsupported(format!(
                "as per https://www.rfc-editor.org/rfc/rfc9110#parameter expected parameters to be key-values, got {p} in {ct} content-type"
            )));
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            let v = v.trim().trim_matches('"');
            return match v {
                PROTO_V1 => Ok(Protocol::V1),
                PROTO_V2 => Ok(Protocol::V2),
                _ => Err(RemoteError::unsupported(format!(
                    "got {ct} content type; unknown remote write protobuf message {v}, supported: {PROTO_V1}, {PROTO_V2}"
                ))),
            };
        }
    }
    Ok(Protocol::V1)
}

/// Checks `Content-Encoding` (None or empty: snappy, as Prometheus assumes).
pub fn check_content_encoding(content_encoding: Option<&str>) -> Result<(), RemoteError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(RemoteError::unsupported(format!(
            "{e} encoding (compression) is not accepted by this server; only snappy is acceptable"
        ))),
    }
}

/// Decompresses a snappy block-format body, refusing (before allocating) a decoded length above
/// `max_decoded` (413) or one that no valid stream of this size could produce (400).
pub fn snappy_decompress(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    let got = snappy_decompress_into(body, max_decoded, &mut out)?;
    out.truncate(got);
    Ok(out)
}

/// [`snappy_decompress`] into a reused buffer: `out` grows to the decoded length if needed (it
/// is never shrunk, and its old contents are overwritten rather than zeroed again); the result
/// is `out[..n]` for the returned `n`.
pub fn snappy_decompress_into(
    body: &[u8],
    max_decoded: usize,
    out: &mut Vec<u8>,
) -> Result<usize, RemoteError> {
    let n = snap::raw::decompress_len(body)
        .map_err(|e| RemoteError::bad_request(format!("snappy: {e}")))?;
    if n > max_decoded {
        return Err(RemoteError::too_large(format!(
            "snappy: decoded length {n} exceeds limit {max_decoded}"
        )));
    }
    if n as u64 > (body.len() as u64).saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(RemoteError::bad_request(format!(
            "snappy: corrupt input: decoded length {n} is impossible for {} compressed bytes",
            body.len()
        )));
    }
    if out.len() < n {
        out.resize(n, 0);
    }
    snap::raw::Decoder::new()
        .decompress(body, &mut out[..n])
        .map_err(|e| RemoteError::bad_request(format!("snappy: {e}")))
}

/// The checks made before a body is decompressed: content type (which picks the protocol),
/// content encoding, and body size.
pub(crate) fn check_envelope(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &WriteLimits,
) -> Result<Protocol, RemoteError> {
    let protocol = parse_content_type(content_type)?;
    check_content_encoding(content_encoding)?;
    if body.len() > limits.max_body_bytes {
        return Err(RemoteError::too_large(format!(
            "request body of {} bytes exceeds limit {}",
            body.len(),
            limits.max_body_bytes
        )));
    }
    Ok(protocol)
}

/// Decodes and validates one remote-write request (see the module documentation for the
/// rules). An `Err` means nothing of the request can be used; series-level problems are in
/// [`WriteBatch::invalid`] instead.
pub fn decode_write(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &WriteLimits,
) -> Result<WriteBatch, RemoteError> {
    let protocol = check_envelope(content_type, content_encoding, body, limits)?;
    let raw = snappy_decompress(body, limits.max_decoded_bytes)?;
    match protocol {
        // The allocation-light 1.0 decoder; the prost one decides whatever it cannot.
        Protocol::V1 => match fast_v1::parse_v1(&raw) {
            Ok(parsed) => {
                check_series_limit(parsed.series_total, limits)?;
                Ok(parsed.into_batch())
            }
            Err(fast_v1::Fallback) => decode_raw_prost(protocol, &raw, limits),
        },
        Protocol::V2 => decode_raw_prost(protocol, &raw, limits),
    }
}

/// Decodes a decompressed request with the prost messages.
fn decode_raw_prost(
    protocol: Protocol,
    raw: &[u8],
    limits: &WriteLimits,
) -> Result<WriteBatch, RemoteError> {
    match protocol {
        Protocol::V1 => {
            let req = v1::WriteRequest::decode(raw).map_err(|e| {
                RemoteError::bad_request(format!("decoding v1 remote write request: {e}"))
            })?;
            check_series_limit(req.timeseries.len(), limits)?;
            Ok(convert_v1(req))
        }
        Protocol::V2 => {
            let req = v2::Request::decode(raw).map_err(|e| {
                RemoteError::bad_request(format!("decoding v2 remote write request: {e}"))
            })?;
            check_series_limit(req.timeseries.len(), limits)?;
            Ok(convert_v2(req))
        }
    }
}

/// [`decode_write`] with only the prost decoder (the reference the fast 1.0 decoder is tested
/// against).
#[cfg(test)]
pub(crate) fn decode_write_prost(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &WriteLimits,
) -> Result<WriteBatch, RemoteError> {
    let protocol = check_envelope(content_type, content_encoding, body, limits)?;
    let raw = snappy_decompress(body, limits.max_decoded_bytes)?;
    decode_raw_prost(protocol, &raw, limits)
}

fn check_series_limit(n: usize, limits: &WriteLimits) -> Result<(), RemoteError> {
    if n > limits.max_series {
        return Err(RemoteError::too_large(format!(
            "request has {n} time series, more than the limit {}",
            limits.max_series
        )));
    }
    Ok(())
}

/// Label pairs as decoded, before validation.
type RawPairs = Vec<(Arc<str>, Arc<str>)>;

fn raw_pairs_string<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> String {
    // Display only; `Labels` would drop empties and duplicates, so format by hand.
    let mut s = String::from("{");
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{:?}={:?}", n.as_ref(), v.as_ref()));
    }
    s.push('}');
    s
}

/// Prometheus's series label checks (UTF-8 validation scheme) on pairs sorted (stably) by
/// name: a non-empty `__name__`, no empty and no duplicate names. The error is the rejection
/// message.
fn check_series_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Result<(), String> {
    let has_name = pairs
        .iter()
        .any(|(n, v)| n.as_ref() == METRIC_NAME && !v.as_ref().is_empty());
    if !has_name || pairs.iter().any(|(n, _)| n.as_ref().is_empty()) {
        return Err(format!(
            "invalid metric name or labels, got {}",
            raw_pairs_string(pairs)
        ));
    }
    if let Some(w) = pairs
        .windows(2)
        .find(|w| w[0].0.as_ref() == w[1].0.as_ref())
    {
        return Err(format!(
            "invalid labels for series, labels {}, duplicated label {}",
            raw_pairs_string(pairs),
            w[0].0.as_ref()
        ));
    }
    Ok(())
}

/// [`check_series_pairs`], then the label set with empty-valued labels dropped.
fn validate_series_labels(pairs: RawPairs) -> Result<Labels, String> {
    check_series_pairs(&pairs)?;
    Ok(Labels::from_sorted(
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label::new(n, v))
            .collect(),
    ))
}

fn utf8(b: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(b).ok().map(Arc::from)
}

fn v1_pairs(labels: &[v1::Label]) -> Option<RawPairs> {
    let mut pairs = Vec::with_capacity(labels.len());
    for l in labels {
        pairs.push((utf8(&l.name)?, utf8(&l.value)?));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(pairs)
}

fn lossy_v1_labels(labels: &[v1::Label]) -> String {
    let pairs: RawPairs = labels
        .iter()
        .map(|l| {
            (
                Arc::from(String::from_utf8_lossy(&l.name).as_ref()),
                Arc::from(String::from_utf8_lossy(&l.value).as_ref()),
            )
        })
        .collect();
    raw_pairs_string(&pairs)
}

/// Exemplar labels: sorted, any names; invalid UTF-8 or duplicate names are refused.
fn exemplar_labels(pairs: RawPairs) -> Option<Labels> {
    let mut pairs = pairs;
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(Labels::new(
        pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect(),
    ))
}

fn v1_metric_type(t: i32) -> MetricType {
    match v1::MetricType::try_from(t) {
        Ok(v1::MetricType::Counter) => MetricType::Counter,
        Ok(v1::MetricType::Gauge) => MetricType::Gauge,
        Ok(v1::MetricType::Histogram) => MetricType::Histogram,
        Ok(v1::MetricType::Gaugehistogram) => MetricType::GaugeHistogram,
        Ok(v1::MetricType::Summary) => MetricType::Summary,
        Ok(v1::MetricType::Info) => MetricType::Info,
        Ok(v1::MetricType::Stateset) => MetricType::Stateset,
        _ => MetricType::Unknown,
    }
}

fn v2_metric_type(t: i32) -> MetricType {
    match v2::MetricType::try_from(t) {
        Ok(v2::MetricType::Counter) => MetricType::Counter,
        Ok(v2::MetricType::Gauge) => MetricType::Gauge,
        Ok(v2::MetricType::Histogram) => MetricType::Histogram,
        Ok(v2::MetricType::Gaugehistogram) => MetricType::GaugeHistogram,
        Ok(v2::MetricType::Summary) => MetricType::Summary,
        Ok(v2::MetricType::Info) => MetricType::Info,
        Ok(v2::MetricType::Stateset) => MetricType::Stateset,
        _ => MetricType::Unknown,
    }
}

fn convert_v1(req: v1::WriteRequest) -> WriteBatch {
    let mut batch = WriteBatch::new(Protocol::V1);
    batch.series.reserve(req.timeseries.len());
    for ts in req.timeseries {
        let labels = match v1_pairs(&ts.labels) {
            Some(p) => validate_series_labels(p),
            None => Err(format!(
                "invalid metric name or labels, got {} (invalid UTF-8)",
                lossy_v1_labels(&ts.labels)
            )),
        };
        let labels = match labels {
            Ok(l) => l,
            Err(msg) => {
                batch.reject(|| msg);
                continue;
            }
        };
        let mut histograms = 0;
        for h in &ts.histograms {
            match validate_histogram(&HistogramView::from_v1(h)) {
                Ok(()) => histograms += 1,
                Err(e) => batch.reject(|| format!("{e} for series {labels}")),
            }
        }
        // Prometheus 1.0 ignores exemplar problems; so do we (a bad exemplar is dropped).
        let exemplars = ts
            .exemplars
            .iter()
            .filter_map(|e| {
                let labels = exemplar_labels(v1_pairs(&e.labels)?)?;
                Some(Exemplar {
                    labels,
                    value: e.value,
                    timestamp: e.timestamp,
                })
            })
            .collect();
        batch.series.push(WriteSeries {
            labels,
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            exemplars,
            histograms,
            created_timestamp: None,
        });
    }
    batch.metadata = req
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            typ: v1_metric_type(m.r#type),
            metric_family_name: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        })
        .collect();
    batch
}

/// The v2 symbols table, converted to shared strings on first use so that a name used by many
/// series is one allocation.
struct Symbols {
    raw: Vec<Vec<u8>>,
    cache: Vec<Option<Option<Arc<str>>>>,
}

enum SymErr {
    Range,
    Utf8,
}

impl Symbols {
    fn new(raw: Vec<Vec<u8>>) -> Self {
        let cache = vec![None; raw.len()];
        Self { raw, cache }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    fn get(&mut self, r: u32) -> Result<Arc<str>, SymErr> {
        let i = r as usize;
        let slot = self.cache.get_mut(i).ok_or(SymErr::Range)?;
        if slot.is_none() {
            *slot = Some(utf8(&self.raw[i]));
        }
        match slot {
            Some(Some(s)) => Ok(s.clone()),
            _ => Err(SymErr::Utf8),
        }
    }

    fn lossy(&self, r: u32) -> String {
        self.raw
            .get(r as usize)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// Resolves label references; the error is Prometheus's message.
    fn pairs(&mut self, refs: &[u32]) -> Result<RawPairs, String> {
        if refs.len() & 1 == 1 {
            return Err(format!("invalid labelRefs length {}", refs.len()));
        }
        let mut pairs = Vec::with_capacity(refs.len() / 2);
        for p in refs.chunks_exact(2) {
            let (n, v) = (p[0], p[1]);
            let size = self.len();
            let range = || {
                format!("labelRefs {n} (name) = {v} (value) outside of symbols table (size {size})")
            };
            let name = match self.get(n) {
                Ok(s) => s,
                Err(SymErr::Range) => return Err(range()),
                Err(SymErr::Utf8) => {
                    return Err(format!("label name {:?} is not valid UTF-8", self.lossy(n)))
                }
            };
            let value = match self.get(v) {
                Ok(s) => s,
                Err(SymErr::Range) => return Err(range()),
                Err(SymErr::Utf8) => {
                    return Err(format!(
                        "value of label {name:?} ({:?}) is not valid UTF-8",
                        self.lossy(v)
                    ))
                }
            };
            pairs.push((name, value));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(pairs)
    }

    fn text(&mut self, r: u32, what: &str) -> Result<String, String> {
        let size = self.len();
        match self.get(r) {
            Ok(s) => Ok(s.to_string()),
            Err(SymErr::Range) => Err(format!(
                "metadata {what} {r} outside of symbols table (size {size})"
            )),
            // Help and unit are free text; be lenient.
            Err(SymErr::Utf8) => Ok(self.lossy(r)),
        }
    }
}

fn refs_string(refs: &[u32]) -> String {
    let v: Vec<String> = refs.iter().map(u32::to_string).collect();
    format!("[{}]", v.join(" "))
}

fn convert_v2(req: v2::Request) -> WriteBatch {
    let mut batch = WriteBatch::new(Protocol::V2);
    batch.series.reserve(req.timeseries.len());
    let mut syms = Symbols::new(req.symbols);
    for ts in req.timeseries {
        let pairs = match syms.pairs(&ts.labels_refs) {
            Ok(p) => p,
            Err(e) => {
                batch.reject(|| {
                    format!(
                        "parsing labels for series {}: {e}",
                        refs_string(&ts.labels_refs)
                    )
                });
                continue;
            }
        };
        let md = ts.metadata.unwrap_or_default();
        let (help, unit) = match (
            syms.text(md.help_ref, "help_ref"),
            syms.text(md.unit_ref, "unit_ref"),
        ) {
            (Ok(h), Ok(u)) => (h, u),
            (Err(e), _) | (_, Err(e)) => {
                batch.reject(|| {
                    format!(
                        "parsing metadata for series {}: {e}",
                        refs_string(&ts.labels_refs)
                    )
                });
                continue;
            }
        };
        let labels = match validate_series_labels(pairs) {
            Ok(l) => l,
            Err(msg) => {
                batch.reject(|| msg);
                continue;
            }
        };
        let typ = v2_metric_type(md.r#type);
        if typ != MetricType::Unknown || !help.is_empty() || !unit.is_empty() {
            batch.metadata.push(MetricMetadata {
                metric_family_name: labels.get(METRIC_NAME).unwrap_or("").to_string(),
                typ,
                help,
                unit,
            });
        }
        let mut histograms = 0;
        for h in &ts.histograms {
            match validate_histogram(&HistogramView::from_v2(h)) {
                Ok(()) => histograms += 1,
                Err(e) => batch.reject(|| format!("{e} for series {labels}")),
            }
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let el = syms.pairs(&e.labels_refs).and_then(|p| {
                exemplar_labels(p).ok_or_else(|| "duplicate exemplar label name".to_string())
            });
            match el {
                Ok(el) => exemplars.push(Exemplar {
                    labels: el,
                    value: e.value,
                    timestamp: e.timestamp,
                }),
                Err(err) => batch.reject(|| format!("parsing exemplar for series {labels}: {err}")),
            }
        }
        let created = [ts.created_timestamp]
            .into_iter()
            .chain(ts.samples.iter().map(|s| s.start_timestamp))
            .chain(ts.histograms.iter().map(|h| h.start_timestamp))
            .find(|&t| t != 0);
        batch.series.push(WriteSeries {
            labels,
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            exemplars,
            histograms,
            created_timestamp: created,
        });
    }
    batch
}

/// The fields of a native histogram that validation needs, from either protocol version.
struct HistogramView<'a> {
    count: Option<HistogramCount>,
    zero_count: Option<HistogramZeroCount>,
    sum: f64,
    schema: i32,
    zero_threshold: f64,
    negative_spans: &'a [proto::BucketSpan],
    negative_deltas: &'a [i64],
    negative_counts: &'a [f64],
    positive_spans: &'a [proto::BucketSpan],
    positive_deltas: &'a [i64],
    positive_counts: &'a [f64],
    custom_values: &'a [f64],
}

impl<'a> HistogramView<'a> {
    fn from_v1(h: &'a v1::Histogram) -> Self {
        Self {
            count: h.count,
            zero_count: h.zero_count,
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            negative_spans: &h.negative_spans,
            negative_deltas: &h.negative_deltas,
            negative_counts: &h.negative_counts,
            positive_spans: &h.positive_spans,
            positive_deltas: &h.positive_deltas,
            positive_counts: &h.positive_counts,
            custom_values: &h.custom_values,
        }
    }

    fn from_v2(h: &'a v2::Histogram) -> Self {
        Self {
            count: h.count,
            zero_count: h.zero_count,
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            negative_spans: &h.negative_spans,
            negative_deltas: &h.negative_deltas,
            negative_counts: &h.negative_counts,
            positive_spans: &h.positive_spans,
            positive_deltas: &h.positive_deltas,
            positive_counts: &h.positive_counts,
            custom_values: &h.custom_values,
        }
    }
}

const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
const EXP_SCHEMA_MIN: i32 = -4;
/// Schemas up to 52 are reserved; Prometheus reduces 9..=52 to 8 before validating.
const EXP_SCHEMA_MAX_RESERVED: i32 = 52;

fn check_spans(spans: &[proto::BucketSpan], n: usize, custom: bool) -> Result<i64, String> {
    let mut buckets: u64 = 0;
    let mut total: i64 = 0;
    for (i, s) in spans.iter().enumerate() {
        if (i > 0 || custom) && s.offset < 0 {
            return Err(format!(
                "span number {} with offset {}: histogram has a span whose offset is negative",
                i + 1,
                s.offset
            ));
        }
        buckets += u64::from(s.length);
        total = total
            .saturating_add(i64::from(s.length))
            .saturating_add(i64::from(s.offset));
    }
    if buckets != n as u64 {
        return Err(format!(
            "spans need {buckets} buckets, have {n} buckets: histogram spans specify different number of buckets than provided"
        ));
    }
    Ok(total)
}

/// Bucket counts from deltas (integer histogram); Err on a negative bucket. Go's wrapping
/// arithmetic, so hostile deltas cannot panic.
fn sum_int_buckets(deltas: &[i64]) -> Result<u64, String> {
    let (mut last, mut sum) = (0i64, 0u64);
    for (i, d) in deltas.iter().enumerate() {
        last = last.wrapping_add(*d);
        if last < 0 {
            return Err(format!(
                "bucket number {} has observation count of {last}: histogram has a bucket whose observation count is negative",
                i + 1
            ));
        }
        sum = sum.wrapping_add(last as u64);
    }
    Ok(sum)
}

fn check_float_buckets(counts: &[f64]) -> Result<(), String> {
    for (i, c) in counts.iter().enumerate() {
        if *c < 0.0 {
            return Err(format!(
                "bucket number {} has observation count of {c}: histogram has a bucket whose observation count is negative",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Prometheus's `Histogram.Validate` / `FloatHistogram.Validate`.
fn validate_histogram(h: &HistogramView<'_>) -> Result<(), String> {
    let is_float = matches!(h.count, Some(HistogramCount::CountFloat(_)));
    let (neg_n, pos_n) = if is_float {
        (h.negative_counts.len(), h.positive_counts.len())
    } else {
        (h.negative_deltas.len(), h.positive_deltas.len())
    };
    let zero_count_f = match h.zero_count {
        Some(HistogramZeroCount::ZeroCountInt(z)) => z as f64,
        Some(HistogramZeroCount::ZeroCountFloat(z)) => z,
        None => 0.0,
    };
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        let mut prev = f64::NEG_INFINITY;
        for (i, &b) in h.custom_values.iter().enumerate() {
            if b.is_nan() {
                return Err("custom buckets: histogram custom bounds must not be NaN".into());
            }
            if i > 0 && b <= prev {
                return Err(format!("custom buckets: previous bound is {prev} and current is {b}: histogram custom bounds must be in strictly increasing order"));
            }
            prev = b;
        }
        if prev == f64::INFINITY {
            return Err("custom buckets: last +Inf bound must not be explicitly defined: histogram custom bounds must be finite".into());
        }
        let total = check_spans(h.positive_spans, pos_n, true)
            .map_err(|e| format!("custom buckets: {e}"))?;
        if (h.custom_values.len() as i64).saturating_add(1) < total {
            return Err(format!("custom buckets: only {} custom bounds defined which is insufficient to cover total span length of {total}: histogram custom bounds are too few", h.custom_values.len()));
        }
        if zero_count_f != 0.0 {
            return Err("custom buckets: must have zero count of 0".into());
        }
        if h.zero_threshold != 0.0 {
            return Err("custom buckets: must have zero threshold of 0".into());
        }
        if !h.negative_spans.is_empty() {
            return Err("custom buckets: must not have negative spans".into());
        }
        if neg_n > 0 {
            return Err("custom buckets: must not have negative buckets".into());
        }
    } else if (EXP_SCHEMA_MIN..=EXP_SCHEMA_MAX_RESERVED).contains(&h.schema) {
        check_spans(h.positive_spans, pos_n, false).map_err(|e| format!("positive side: {e}"))?;
        check_spans(h.negative_spans, neg_n, false).map_err(|e| format!("negative side: {e}"))?;
        if !h.custom_values.is_empty() {
            return Err("histogram with exponential schema must not have custom bounds".into());
        }
    } else {
        return Err(format!("histogram has an invalid schema, which must be between {EXP_SCHEMA_MIN} and 8 for exponential buckets, or {CUSTOM_BUCKETS_SCHEMA} for custom buckets: {}", h.schema));
    }
    if is_float {
        let count = match h.count {
            Some(HistogramCount::CountFloat(c)) => c,
            _ => 0.0,
        };
        check_float_buckets(h.negative_counts).map_err(|e| format!("negative side: {e}"))?;
        check_float_buckets(h.positive_counts).map_err(|e| format!("positive side: {e}"))?;
        if zero_count_f < 0.0 {
            return Err(format!("zero bucket has observation count of {zero_count_f}: histogram has a bucket whose observation count is negative"));
        }
        if count < 0.0 {
            return Err(format!(
                "observation count is {count}: histogram's observation count is negative"
            ));
        }
        return Ok(());
    }
    let count = match h.count {
        Some(HistogramCount::CountInt(c)) => c,
        _ => 0,
    };
    let zero = match h.zero_count {
        Some(HistogramZeroCount::ZeroCountInt(z)) => z,
        // A float zero count in an integer histogram: Prometheus reads it as 0.
        _ => 0,
    };
    let n = sum_int_buckets(h.negative_deltas).map_err(|e| format!("negative side: {e}"))?;
    let p = sum_int_buckets(h.positive_deltas).map_err(|e| format!("positive side: {e}"))?;
    let in_buckets = n.wrapping_add(p).wrapping_add(zero);
    if h.sum.is_nan() {
        if in_buckets > count {
            return Err(format!("{in_buckets} observations found in buckets, but the Count field is {count}: histogram's observation count should be at least the number of observations found in the buckets"));
        }
    } else if in_buckets != count {
        return Err(format!("{in_buckets} observations found in buckets, but the Count field is {count}: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"));
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Appends a decoded batch with the receiver's clock as "now" (see [`append_batch_at`]).
pub fn append_batch(app: &mut dyn Appender, batch: &WriteBatch) -> AppendReport {
    append_batch_at(app, batch, now_ms())
}

/// Appends every sample of `batch`; samples more than [`MAX_AHEAD_MS`] after `now_ms` are
/// refused as out of bounds. Refused samples are reported and the rest kept; a storage error
/// other than a refusal stops at once and is reported in [`AppendReport::fatal`]. The caller
/// commits (or, on a fatal error, rolls back).
pub fn append_batch_at(app: &mut dyn Appender, batch: &WriteBatch, now_ms: i64) -> AppendReport {
    let mut rep = AppendReport {
        protocol: Some(batch.protocol),
        rejected: batch.invalid.clone(),
        rejected_count: batch.invalid_count,
        ..Default::default()
    };
    let max_t = now_ms.saturating_add(MAX_AHEAD_MS);
    for s in &batch.series {
        let mut r: Option<SeriesRef> = None;
        for &(t, v) in &s.samples {
            if t > max_t {
                rep.reject(|| {
                    format!(
                        "out of bounds: timestamp is too far in the future for series {}",
                        s.labels
                    )
                });
                continue;
            }
            let res = match r {
                Some(r) => app.append_ref(r, t, v),
                None => app.append(&s.labels, t, v),
            };
            match res {
                Ok(sr) => {
                    r = Some(sr);
                    rep.samples_written += 1;
                }
                Err(
                    e @ (TsdbError::OutOfOrderSample
                    | TsdbError::DuplicateSampleForTimestamp
                    | TsdbError::OutOfBounds),
                ) => rep.reject(|| format!("{e} for series {}", s.labels)),
                Err(e) => {
                    rep.fatal = Some(format!("appending to series {}: {e}", s.labels));
                    return rep;
                }
            }
        }
        rep.histograms_dropped += s.histograms;
        rep.exemplars_written += s.exemplars.iter().filter(|e| e.timestamp <= max_t).count();
    }
    rep
}
