//! The allocation-light remote-write 1.0 path: a hand-written walker over the decompressed
//! `prometheus.WriteRequest` that yields label names and values as `&str` slices of the request
//! buffer (no `Vec<u8>`/`String` per label), samples into one flat vector, and the one-pass
//! receiver [`ingest_write`] that appends them through [`PairsAppender::append_pairs`], so a
//! sample of an existing series costs no allocation at all.
//!
//! The walker accepts a strict subset of what prost accepts and gives up ([`Fallback`]) on
//! anything else: malformed input, a known field with an unexpected wire type, groups, native
//! histograms and metadata (rare in practice). On [`Fallback`] the prost decoder and
//! [`super::convert_v1`] decide, so error messages and every other outcome stay exactly those
//! of the prost path; for what the walker does accept, the result is the same as the prost
//! path's (tested on random requests).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use strata_tsdb::head::HeadAppender;
use strata_tsdb::storage::{Appender, SeriesRef};
use strata_tsdb::{Error as TsdbError, Label, Labels, Result as TsdbResult};

use super::{
    append_batch_at, check_envelope, check_series_limit, check_series_pairs, decode_raw_prost,
    exemplar_labels, raw_pairs_string, snappy_decompress_into, AppendReport, Exemplar,
    MetricMetadata, Protocol, RawPairs, WriteBatch, WriteLimits, WriteSeries, MAX_AHEAD_MS,
};
use crate::remote::RemoteError;

/// The walker gave up; the prost decoder decides (and names the error, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

type Fb<T> = Result<T, Fallback>;

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A varint as prost reads it: at most 10 bytes, the 10th at most 1.
    #[inline]
    fn varint(&mut self) -> Fb<u64> {
        let first = *self.buf.get(self.pos).ok_or(Fallback)?;
        if first < 0x80 {
            self.pos += 1;
            return Ok(u64::from(first));
        }
        let mut v = u64::from(first & 0x7f);
        for i in 1..10 {
            let b = *self.buf.get(self.pos + i).ok_or(Fallback)?;
            if i == 9 && b > 1 {
                return Err(Fallback);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(Fallback)
    }

    /// A field key: (tag, wire type). Groups and invalid keys give up.
    #[inline]
    fn key(&mut self) -> Fb<(u64, u8)> {
        let k = self.varint()?;
        let (tag, wt) = (k >> 3, (k & 7) as u8);
        if k > u64::from(u32::MAX)
            || tag == 0
            || !matches!(wt, WT_VARINT | WT_I64 | WT_LEN | WT_I32)
        {
            return Err(Fallback);
        }
        Ok((tag, wt))
    }

    #[inline]
    fn take(&mut self, n: u64) -> Fb<&'a [u8]> {
        let rest = self.buf.len() - self.pos;
        if n > rest as u64 {
            return Err(Fallback);
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    #[inline]
    fn bytes(&mut self) -> Fb<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }

    #[inline]
    fn fixed64(&mut self) -> Fb<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips an unknown field.
    fn skip(&mut self, wt: u8) -> Fb<()> {
        match wt {
            WT_VARINT => self.varint().map(|_| ()),
            WT_I64 => self.take(8).map(|_| ()),
            WT_I32 => self.take(4).map(|_| ()),
            WT_LEN => self.bytes().map(|_| ()),
            _ => Err(Fallback),
        }
    }
}

type RawPair<'a> = (&'a [u8], &'a [u8]);

/// `b` as a `&str` if it is valid UTF-8. Label strings are nearly always ASCII, which is checked
/// several times faster than general UTF-8 validation of short strings.
#[inline]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

/// `prometheus.Label`: (name, value); a repeated field's last occurrence wins, as in prost.
#[inline]
fn parse_label(m: &[u8]) -> Fb<RawPair<'_>> {
    // The usual encoding: name (tag 1) then value (tag 2), both shorter than 128 bytes.
    if m.len() >= 4 && m[0] == 0x0a && m[1] < 0x80 {
        let nl = m[1] as usize;
        if let (Some(&0x12), Some(&vl)) = (m.get(2 + nl), m.get(3 + nl)) {
            if vl < 0x80 && m.len() == 4 + nl + vl as usize {
                return Ok((&m[2..2 + nl], &m[4 + nl..]));
            }
        }
    }
    let mut r = Reader::new(m);
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.done() {
        match r.key()? {
            (1, WT_LEN) => name = r.bytes()?,
            (2, WT_LEN) => value = r.bytes()?,
            (1 | 2, _) => return Err(Fallback),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok((name, value))
}

/// `prometheus.Sample` as `(timestamp, value)`.
fn parse_sample(m: &[u8]) -> Fb<(i64, f64)> {
    // The usual encoding: value (tag 1, fixed64) then timestamp (tag 2, varint), nothing else.
    if m.len() >= 11 && m[0] == 0x09 && m[9] == 0x10 {
        let mut r = Reader { buf: m, pos: 10 };
        let t = r.varint()?;
        if r.done() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&m[1..9]);
            return Ok((t as i64, f64::from_bits(u64::from_le_bytes(a))));
        }
    }
    let mut r = Reader::new(m);
    let (mut t, mut v) = (0i64, 0f64);
    while !r.done() {
        match r.key()? {
            (1, WT_I64) => v = f64::from_bits(r.fixed64()?),
            (2, WT_VARINT) => t = r.varint()? as i64,
            (1 | 2, _) => return Err(Fallback),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok((t, v))
}

/// `a <= b`, deciding on the first byte when it differs (label names nearly always do).
#[inline]
fn name_le(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a <= b,
    }
}

/// An exemplar as found on the wire: its labels are `ex_labels[labels]`.
struct RawExemplar {
    labels: Range<usize>,
    value: f64,
    timestamp: i64,
}

fn parse_exemplar<'a>(m: &'a [u8], labels: &mut Vec<RawPair<'a>>) -> Fb<RawExemplar> {
    let start = labels.len();
    let mut r = Reader::new(m);
    let (mut t, mut v) = (0i64, 0f64);
    while !r.done() {
        match r.key()? {
            (1, WT_LEN) => labels.push(parse_label(r.bytes()?)?),
            (2, WT_I64) => v = f64::from_bits(r.fixed64()?),
            (3, WT_VARINT) => t = r.varint()? as i64,
            (1..=3, _) => return Err(Fallback),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(RawExemplar {
        labels: start..labels.len(),
        value: v,
        timestamp: t,
    })
}

/// One valid series of a parsed request: ranges into [`V1Parsed`]'s flat vectors.
pub(crate) struct ParsedSeries {
    /// Sorted by name, unique, empty values dropped.
    pairs: Range<usize>,
    samples: Range<usize>,
    exemplars: Range<usize>,
}

/// A 1.0 request decoded and validated with borrowed labels.
pub(crate) struct V1Parsed<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    samples: Vec<(i64, f64)>,
    exemplars: Vec<Exemplar>,
    series: Vec<ParsedSeries>,
    /// Every `TimeSeries` of the request, valid or not (for the series limit).
    pub(super) series_total: usize,
    /// Rejections (as in [`WriteBatch::invalid`]).
    invalid: Vec<String>,
    invalid_count: usize,
}

impl<'a> V1Parsed<'a> {
    fn reject(&mut self, msg: impl FnOnce() -> String) {
        if self.invalid.len() < super::MAX_MESSAGES {
            self.invalid.push(msg());
        }
        self.invalid_count += 1;
    }

    fn labels_of(&self, s: &ParsedSeries) -> Labels {
        pairs_labels(&self.pairs[s.pairs.clone()])
    }

    /// The owned form, as [`super::convert_v1`] builds it.
    pub(super) fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::new(Protocol::V1);
        batch.series = self
            .series
            .iter()
            .map(|s| WriteSeries {
                labels: self.labels_of(s),
                samples: self.samples[s.samples.clone()].to_vec(),
                exemplars: self.exemplars[s.exemplars.clone()].to_vec(),
                histograms: 0,
                created_timestamp: None,
            })
            .collect();
        batch.invalid = self.invalid;
        batch.invalid_count = self.invalid_count;
        batch
    }
}

fn pairs_labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_sorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

fn lossy_pairs(raw: &[RawPair<'_>]) -> String {
    let p: Vec<(String, String)> = raw
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    raw_pairs_string(&p)
}

/// Decodes and validates a decompressed 1.0 request, or gives up (see the module doc).
pub(crate) fn parse_v1(raw: &[u8]) -> Result<V1Parsed<'_>, Fallback> {
    let mut p = V1Parsed {
        pairs: Vec::with_capacity(raw.len() / 24),
        samples: Vec::with_capacity(raw.len() / 128),
        exemplars: Vec::new(),
        series: Vec::with_capacity(raw.len() / 128),
        series_total: 0,
        invalid: Vec::new(),
        invalid_count: 0,
    };
    let mut raw_labels: Vec<RawPair<'_>> = Vec::with_capacity(16);
    let mut raw_exemplars: Vec<RawExemplar> = Vec::new();
    let mut ex_labels: Vec<RawPair<'_>> = Vec::new();
    let mut r = Reader::new(raw);
    while !r.done() {
        let ts = match r.key()? {
            (1, WT_LEN) => r.bytes()?,
            // Metadata (usually a request of its own) and wrong wire types: prost decides.
            (1 | 3, _) => return Err(Fallback),
            (_, wt) => {
                r.skip(wt)?;
                continue;
            }
        };
        p.series_total += 1;
        raw_labels.clear();
        raw_exemplars.clear();
        ex_labels.clear();
        let s0 = p.samples.len();
        let mut tr = Reader::new(ts);
        while !tr.done() {
            match tr.key()? {
                (1, WT_LEN) => raw_labels.push(parse_label(tr.bytes()?)?),
                (2, WT_LEN) => p.samples.push(parse_sample(tr.bytes()?)?),
                (3, WT_LEN) => raw_exemplars.push(parse_exemplar(tr.bytes()?, &mut ex_labels)?),
                // Native histograms: prost decodes and validates them.
                (4, _) | (1..=3, _) => return Err(Fallback),
                (_, wt) => tr.skip(wt)?,
            }
        }
        // Labels: UTF-8, sorted (stably) by name, validated, empty values dropped.
        let p0 = p.pairs.len();
        let mut utf8_ok = true;
        for &(n, v) in &raw_labels {
            match (utf8(n), utf8(v)) {
                (Some(n), Some(v)) => p.pairs.push((n, v)),
                _ => {
                    utf8_ok = false;
                    break;
                }
            }
        }
        if !utf8_ok {
            p.pairs.truncate(p0);
            p.samples.truncate(s0);
            let msg = lossy_pairs(&raw_labels);
            p.reject(|| format!("invalid metric name or labels, got {msg} (invalid UTF-8)"));
            continue;
        }
        let mine = &mut p.pairs[p0..];
        if !mine.windows(2).all(|w| name_le(w[0].0, w[1].0)) {
            mine.sort_by(|a, b| a.0.cmp(b.0));
        }
        if let Err(msg) = check_series_pairs(mine) {
            p.pairs.truncate(p0);
            p.samples.truncate(s0);
            p.reject(|| msg);
            continue;
        }
        let mut w = p0;
        for i in p0..p.pairs.len() {
            if !p.pairs[i].1.is_empty() {
                p.pairs[w] = p.pairs[i];
                w += 1;
            }
        }
        p.pairs.truncate(w);
        // Exemplars: Prometheus 1.0 drops a bad one silently.
        let e0 = p.exemplars.len();
        for e in &raw_exemplars {
            let mut ep: RawPairs = Vec::with_capacity(e.labels.len());
            for &(n, v) in &ex_labels[e.labels.clone()] {
                match (utf8(n), utf8(v)) {
                    (Some(n), Some(v)) => ep.push((Arc::from(n), Arc::from(v))),
                    _ => break,
                }
            }
            if ep.len() != e.labels.len() {
                continue;
            }
            if let Some(labels) = exemplar_labels(ep) {
                p.exemplars.push(Exemplar {
                    labels,
                    value: e.value,
                    timestamp: e.timestamp,
                });
            }
        }
        p.series.push(ParsedSeries {
            pairs: p0..p.pairs.len(),
            samples: s0..p.samples.len(),
            exemplars: e0..p.exemplars.len(),
        });
    }
    Ok(p)
}

/// An [`Appender`] that can also find a series from borrowed, sorted, unique, non-empty-valued
/// `(name, value)` pairs. The default builds a [`Labels`] and calls [`Appender::append`];
/// [`HeadAppender`] looks the series up without allocating.
pub trait PairsAppender: Appender {
    fn append_pairs(&mut self, pairs: &[(&str, &str)], t: i64, v: f64) -> TsdbResult<SeriesRef> {
        self.append(&Labels::from_pairs(pairs), t, v)
    }
}

impl PairsAppender for HeadAppender {
    fn append_pairs(&mut self, pairs: &[(&str, &str)], t: i64, v: f64) -> TsdbResult<SeriesRef> {
        HeadAppender::append_pairs(self, pairs, t, v)
    }
}

/// What [`ingest_write`] appended and what the caller still records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ingested {
    /// As [`super::append_batch`] reports it; nothing is committed yet.
    pub report: AppendReport,
    pub metadata: Vec<MetricMetadata>,
    /// Every exemplar of the valid series, with the series' labels.
    pub exemplars: Vec<(Labels, Exemplar)>,
}

impl Ingested {
    fn from_batch(report: AppendReport, batch: WriteBatch) -> Self {
        let exemplars = batch
            .series
            .into_iter()
            .flat_map(|s| {
                let labels = s.labels;
                s.exemplars.into_iter().map(move |e| (labels.clone(), e))
            })
            .collect();
        Self {
            report,
            metadata: batch.metadata,
            exemplars,
        }
    }
}

/// Decompression buffers larger than this are not kept for the next request.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

thread_local! {
    static RAW_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decodes, validates and appends one remote-write request in one go: the same outcome as
/// [`super::decode_write`] followed by [`super::append_batch_at`], but a 1.0 request is decoded
/// with borrowed labels and appended with [`PairsAppender::append_pairs`] (and the snappy
/// buffer is reused per thread). An `Err` means nothing was appended; otherwise the caller
/// commits (or rolls back on [`AppendReport::fatal`]).
pub fn ingest_write(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &WriteLimits,
    app: &mut dyn PairsAppender,
    now_ms: i64,
) -> Result<Ingested, RemoteError> {
    let protocol = check_envelope(content_type, content_encoding, body, limits)?;
    let mut run = |buf: &mut Vec<u8>| -> Result<Ingested, RemoteError> {
        let n = snappy_decompress_into(body, limits.max_decoded_bytes, buf)?;
        let raw = &buf[..n];
        if protocol == Protocol::V1 {
            if let Ok(parsed) = parse_v1(raw) {
                check_series_limit(parsed.series_total, limits)?;
                return Ok(append_parsed(app, &parsed, now_ms));
            }
        }
        let batch = decode_raw_prost(protocol, raw, limits)?;
        let report = append_batch_at(app, &batch, now_ms);
        Ok(Ingested::from_batch(report, batch))
    };
    RAW_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let res = run(&mut buf);
            if buf.capacity() > KEEP_BUFFER_BYTES {
                *buf = Vec::new();
            }
            res
        }
        Err(_) => run(&mut Vec::new()),
    })
}

/// [`super::append_batch_at`] over a parsed 1.0 request.
fn append_parsed(app: &mut dyn PairsAppender, p: &V1Parsed<'_>, now_ms: i64) -> Ingested {
    let mut out = Ingested {
        report: AppendReport {
            protocol: Some(Protocol::V1),
            rejected: p.invalid.clone(),
            rejected_count: p.invalid_count,
            ..Default::default()
        },
        ..Default::default()
    };
    let rep = &mut out.report;
    let max_t = now_ms.saturating_add(MAX_AHEAD_MS);
    for s in &p.series {
        let pairs = &p.pairs[s.pairs.clone()];
        let mut r: Option<SeriesRef> = None;
        for &(t, v) in &p.samples[s.samples.clone()] {
            if t > max_t {
                rep.reject(|| {
                    format!(
                        "out of bounds: timestamp is too far in the future for series {}",
                        pairs_labels(pairs)
                    )
                });
                continue;
            }
            let res = match r {
                Some(r) => app.append_ref(r, t, v),
                None => app.append_pairs(pairs, t, v),
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
                ) => rep.reject(|| format!("{e} for series {}", pairs_labels(pairs))),
                Err(e) => {
                    rep.fatal = Some(format!("appending to series {}: {e}", pairs_labels(pairs)));
                    return out;
                }
            }
        }
        let ex = &p.exemplars[s.exemplars.clone()];
        if !ex.is_empty() {
            rep.exemplars_written += ex.iter().filter(|e| e.timestamp <= max_t).count();
            let labels = pairs_labels(pairs);
            out.exemplars
                .extend(ex.iter().map(|e| (labels.clone(), e.clone())));
        }
    }
    out
}
