//! WAL record payloads, byte for byte as Prometheus's `tsdb/record` package writes them.
//!
//! A record is the opaque byte string the segment layer stores; its first byte is the
//! [`RecordType`]. This module owns the encoders and decoders of the record types the head
//! uses: series (`1`), float samples (`2`) and tombstones (`3`). Other types (exemplars,
//! metadata, histograms, ...) are recognised by [`record_type`] so that replay can skip them.
//!
//! Layouts (all integers big-endian unless noted):
//! - series: `type | (ref be64, n uvarint, n × (name uvstr, value uvstr))*`
//! - samples: `type | base_ref be64 | base_t be64 | (dref varint, dt varint, value be64)*`
//!   (deltas are *signed* zig-zag varints relative to the first sample, as Prometheus's code
//!   writes them; `wal.md` calls them uvarints, the code is authoritative)
//! - tombstones: `type | (ref be64, mint varint, maxt varint)*`, one triple per interval.
//!
//! Decoders never panic on malformed input; they return a [`RecordError`] naming the byte
//! offset inside the record.

use std::fmt;
use std::sync::Arc;

use crate::encoding::{put_uvarint, put_varint, DecBuf, DecodeError};
use crate::error::Error;
use crate::labels::{Label, Labels};

/// The type byte that starts every WAL record (Prometheus's `record.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    Series = 1,
    Samples = 2,
    Tombstones = 3,
    Exemplars = 4,
    MmapMarkers = 5,
    Metadata = 6,
    HistogramSamples = 7,
    FloatHistogramSamples = 8,
    CustomBucketsHistogramSamples = 9,
    CustomBucketsFloatHistogramSamples = 10,
    SamplesV2 = 11,
    HistogramSamplesV2 = 12,
    FloatHistogramSamplesV2 = 13,
    /// Empty record or a type byte this build does not know (skipped by replay).
    Unknown = 255,
}

impl RecordType {
    /// The type for a type byte; [`RecordType::Unknown`] for anything unrecognised.
    pub fn from_byte(b: u8) -> RecordType {
        match b {
            1 => RecordType::Series,
            2 => RecordType::Samples,
            3 => RecordType::Tombstones,
            4 => RecordType::Exemplars,
            5 => RecordType::MmapMarkers,
            6 => RecordType::Metadata,
            7 => RecordType::HistogramSamples,
            8 => RecordType::FloatHistogramSamples,
            9 => RecordType::CustomBucketsHistogramSamples,
            10 => RecordType::CustomBucketsFloatHistogramSamples,
            11 => RecordType::SamplesV2,
            12 => RecordType::HistogramSamplesV2,
            13 => RecordType::FloatHistogramSamplesV2,
            _ => RecordType::Unknown,
        }
    }
}

/// The type of a record (its first byte); [`RecordType::Unknown`] for an empty record.
pub fn record_type(rec: &[u8]) -> RecordType {
    rec.first()
        .map_or(RecordType::Unknown, |&b| RecordType::from_byte(b))
}

/// A series reference with its labels (Prometheus's `record.RefSeries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    pub r: u64,
    pub labels: Labels,
}

/// One float sample of a series (Prometheus's `record.RefSample`).
#[derive(Debug, Clone, Copy)]
pub struct RefSample {
    pub r: u64,
    pub t: i64,
    pub v: f64,
}

impl PartialEq for RefSample {
    /// Bitwise on the value so that NaNs (and the stale marker) compare equal to themselves.
    fn eq(&self, o: &Self) -> bool {
        self.r == o.r && self.t == o.t && self.v.to_bits() == o.v.to_bits()
    }
}

/// Deleted time ranges (inclusive `(mint, maxt)`) of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stone {
    pub r: u64,
    pub intervals: Vec<(i64, i64)>,
}

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Which decoder failed ("series", "samples", "tombstones").
    pub what: &'static str,
    /// Byte offset inside the record where decoding stopped.
    pub offset: usize,
    pub detail: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record: {} (at byte {})",
            self.what, self.detail, self.offset
        )
    }
}

impl std::error::Error for RecordError {}

impl RecordError {
    fn dec(what: &'static str, e: DecodeError) -> Self {
        RecordError {
            what,
            offset: e.offset(),
            detail: e.to_string(),
        }
    }

    /// Converts into the crate error, attributing the record to a file and the record's
    /// offset in it (for example the segment and offset a [`super::WalReader`] reports).
    pub fn into_error(self, path: impl Into<std::path::PathBuf>, record_offset: u64) -> Error {
        Error::corrupt(
            "WAL record",
            path,
            record_offset + self.offset as u64,
            format!("{} record: {}", self.what, self.detail),
        )
    }
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        e.into_error(std::path::PathBuf::new(), 0)
    }
}

fn check_type(rec: &[u8], want: RecordType, what: &'static str) -> Result<(), RecordError> {
    match rec.first() {
        Some(&b) if b == want as u8 => Ok(()),
        Some(&b) => Err(RecordError {
            what,
            offset: 0,
            detail: format!("invalid record type {b}"),
        }),
        None => Err(RecordError {
            what,
            offset: 0,
            detail: "empty record".into(),
        }),
    }
}

/// Appends a series record holding `series` to `buf`.
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    buf.push(RecordType::Series as u8);
    for s in series {
        buf.extend_from_slice(&s.r.to_be_bytes());
        put_uvarint(buf, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_uvarint(buf, l.name.len() as u64);
            buf.extend_from_slice(l.name.as_bytes());
            put_uvarint(buf, l.value.len() as u64);
            buf.extend_from_slice(l.value.as_bytes());
        }
    }
}

/// Appends a samples record holding `samples` to `buf` (just the type byte when empty).
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(RecordType::Samples as u8);
    let Some(first) = samples.first() else {
        return;
    };
    buf.extend_from_slice(&first.r.to_be_bytes());
    buf.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(buf, (s.r as i64).wrapping_sub(first.r as i64));
        put_varint(buf, s.t.wrapping_sub(first.t));
        buf.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record to `buf`: one `(ref, mint, maxt)` triple per interval.
pub fn encode_tombstones(stones: &[Stone], buf: &mut Vec<u8>) {
    buf.push(RecordType::Tombstones as u8);
    for s in stones {
        for &(mint, maxt) in &s.intervals {
            buf.extend_from_slice(&s.r.to_be_bytes());
            put_varint(buf, mint);
            put_varint(buf, maxt);
        }
    }
}

/// Decodes a series record, appending to `out`. Label strings go through `intern` so the
/// caller can share them. On error `out` is left as it was.
pub fn decode_series(
    rec: &[u8],
    out: &mut Vec<RefSeries>,
    intern: &mut dyn FnMut(&str) -> Arc<str>,
) -> Result<(), RecordError> {
    const WHAT: &str = "series";
    check_type(rec, RecordType::Series, WHAT)?;
    let start_len = out.len();
    let res = (|| {
        let mut d = DecBuf::new(rec);
        d.skip(1).map_err(|e| RecordError::dec(WHAT, e))?;
        let mut scratch: Vec<Label> = Vec::new();
        while !d.is_empty() {
            let r = d.be64().map_err(|e| RecordError::dec(WHAT, e))?;
            let n = d.uvarint().map_err(|e| RecordError::dec(WHAT, e))?;
            // Each label needs at least two bytes; refuse counts the record cannot hold.
            if n > (d.remaining() / 2) as u64 {
                return Err(RecordError {
                    what: WHAT,
                    offset: d.pos(),
                    detail: format!("label count {n} exceeds record size"),
                });
            }
            scratch.clear();
            for _ in 0..n {
                let name = d.uvarint_str().map_err(|e| RecordError::dec(WHAT, e))?;
                let value = d.uvarint_str().map_err(|e| RecordError::dec(WHAT, e))?;
                scratch.push(Label {
                    name: intern(name),
                    value: intern(value),
                });
            }
            let sorted = scratch.windows(2).all(|w| w[0].name < w[1].name)
                && scratch.iter().all(|l| !l.value.is_empty());
            let labels = if sorted {
                Labels::from_sorted(scratch.clone())
            } else {
                Labels::new(scratch.clone())
            };
            out.push(RefSeries { r, labels });
        }
        Ok(())
    })();
    if res.is_err() {
        out.truncate(start_len);
    }
    res
}

/// Decodes a samples record, appending to `out` (clear it first to reuse it). On error
/// `out` is left as it was.
pub fn decode_samples(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    const WHAT: &str = "samples";
    check_type(rec, RecordType::Samples, WHAT)?;
    if rec.len() == 1 {
        return Ok(());
    }
    let start_len = out.len();
    let res = (|| {
        let mut d = DecBuf::new(&rec[1..]);
        let e = |e: DecodeError| {
            let mut r = RecordError::dec(WHAT, e);
            r.offset += 1;
            r
        };
        let base_ref = d.be64().map_err(e)?;
        let base_t = d.be64().map_err(e)? as i64;
        // Each sample takes at least 10 bytes.
        out.reserve(d.remaining() / 10);
        while !d.is_empty() {
            let dref = d.varint().map_err(e)?;
            let dt = d.varint().map_err(e)?;
            let v = f64::from_bits(d.be64().map_err(e)?);
            out.push(RefSample {
                r: (base_ref as i64).wrapping_add(dref) as u64,
                t: base_t.wrapping_add(dt),
                v,
            });
        }
        Ok(())
    })();
    if res.is_err() {
        out.truncate(start_len);
    }
    res
}

/// Decodes a tombstones record, appending to `out`. Consecutive triples for the same
/// series are merged into one [`Stone`] (so encoding then decoding a stone with several
/// intervals gives it back). On error `out` is left as it was.
pub fn decode_tombstones(rec: &[u8], out: &mut Vec<Stone>) -> Result<(), RecordError> {
    const WHAT: &str = "tombstones";
    check_type(rec, RecordType::Tombstones, WHAT)?;
    let start_len = out.len();
    let res = (|| {
        let mut d = DecBuf::new(rec);
        d.skip(1).map_err(|e| RecordError::dec(WHAT, e))?;
        while !d.is_empty() {
            let r = d.be64().map_err(|e| RecordError::dec(WHAT, e))?;
            let mint = d.varint().map_err(|e| RecordError::dec(WHAT, e))?;
            let maxt = d.varint().map_err(|e| RecordError::dec(WHAT, e))?;
            let can_merge = out.len() > start_len;
            match out.last_mut() {
                Some(last) if can_merge && last.r == r => last.intervals.push((mint, maxt)),
                _ => out.push(Stone {
                    r,
                    intervals: vec![(mint, maxt)],
                }),
            }
        }
        Ok(())
    })();
    if res.is_err() {
        out.truncate(start_len);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intern(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn series_round_trip() {
        let series = vec![
            RefSeries {
                r: 1,
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
            },
            RefSeries {
                r: u64::MAX,
                labels: Labels::from_pairs(&[("x", "ü ∑ \u{0}")]),
            },
            RefSeries {
                r: 7,
                labels: Labels::empty(),
            },
        ];
        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        assert_eq!(record_type(&buf), RecordType::Series);
        let mut out = Vec::new();
        let mut calls = 0;
        decode_series(&buf, &mut out, &mut |s| {
            calls += 1;
            intern(s)
        })
        .unwrap();
        assert_eq!(out, series);
        assert_eq!(calls, 6);
    }

    #[test]
    fn series_layout_matches_prometheus() {
        let mut buf = Vec::new();
        encode_series(
            &[RefSeries {
                r: 0x0102,
                labels: Labels::from_pairs(&[("a", "bc")]),
            }],
            &mut buf,
        );
        assert_eq!(buf, [1, 0, 0, 0, 0, 0, 0, 1, 2, 1, 1, b'a', 2, b'b', b'c']);
    }

    #[test]
    fn samples_round_trip_with_special_values() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let odd_nan = f64::from_bits(0xfff8_dead_beef_0001);
        let samples = vec![
            RefSample {
                r: 10,
                t: -5_000,
                v: stale,
            },
            RefSample {
                r: 3,
                t: i64::MIN,
                v: odd_nan,
            },
            RefSample {
                r: u64::MAX,
                t: i64::MAX,
                v: -0.0,
            },
            RefSample {
                r: 0,
                t: 0,
                v: f64::INFINITY,
            },
        ];
        let mut buf = Vec::new();
        encode_samples(&samples, &mut buf);
        let mut out = vec![RefSample { r: 9, t: 9, v: 9.0 }];
        decode_samples(&buf, &mut out).unwrap();
        assert_eq!(&out[1..], &samples[..]);
        assert_eq!(out[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(out[2].v.to_bits(), 0xfff8_dead_beef_0001);
        assert_eq!(out[3].v.to_bits(), (-0.0f64).to_bits());

        let mut empty = Vec::new();
        encode_samples(&[], &mut empty);
        assert_eq!(empty, [2]);
        let mut out = Vec::new();
        decode_samples(&empty, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn samples_layout_matches_prometheus() {
        let mut buf = Vec::new();
        encode_samples(
            &[
                RefSample {
                    r: 5,
                    t: 100,
                    v: 1.0,
                },
                RefSample {
                    r: 4,
                    t: 99,
                    v: 2.0,
                },
            ],
            &mut buf,
        );
        let mut want = vec![2u8];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&100u64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[1, 1]); // zig-zag(-1) twice
        want.extend_from_slice(&2.0f64.to_bits().to_be_bytes());
        assert_eq!(buf, want);
    }

    #[test]
    fn tombstones_round_trip() {
        let stones = vec![
            Stone {
                r: 1,
                intervals: vec![(-10, 20), (30, i64::MAX)],
            },
            Stone {
                r: 2,
                intervals: vec![(i64::MIN, -1)],
            },
        ];
        let mut buf = Vec::new();
        encode_tombstones(&stones, &mut buf);
        let mut out = Vec::new();
        decode_tombstones(&buf, &mut out).unwrap();
        assert_eq!(out, stones);
    }

    #[test]
    fn record_types() {
        assert_eq!(record_type(&[]), RecordType::Unknown);
        assert_eq!(record_type(&[0]), RecordType::Unknown);
        assert_eq!(record_type(&[4, 1]), RecordType::Exemplars);
        assert_eq!(record_type(&[200]), RecordType::Unknown);
    }

    #[test]
    fn decoders_reject_garbage_without_panicking() {
        let mut good = Vec::new();
        encode_series(
            &[RefSeries {
                r: 1,
                labels: Labels::from_pairs(&[("a", "b"), ("c", "d")]),
            }],
            &mut good,
        );
        // Every truncation of a valid series record but the full one fails.
        for n in 0..good.len() {
            let mut out = Vec::new();
            if n > 1 {
                assert!(decode_series(&good[..n], &mut out, &mut intern).is_err());
            }
            assert!(out.is_empty());
        }
        // Wrong type byte.
        let mut s = Vec::new();
        assert!(decode_samples(&good, &mut s).is_err());
        assert!(decode_tombstones(&good, &mut Vec::new()).is_err());
        // Huge label count.
        let mut bad = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 1];
        put_uvarint(&mut bad, u64::MAX);
        assert!(decode_series(&bad, &mut Vec::new(), &mut intern).is_err());
        // Unsorted / duplicate labels still build a valid Labels.
        let mut unsorted = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        for s in ["z", "1", "a", "2"] {
            put_uvarint(&mut unsorted, 1);
            unsorted.extend_from_slice(s.as_bytes());
        }
        let mut out = Vec::new();
        decode_series(&unsorted, &mut out, &mut intern).unwrap();
        assert_eq!(out[0].labels, Labels::from_pairs(&[("a", "2"), ("z", "1")]));
        // Random bytes.
        let mut x: u64 = 0x1234_5678;
        for len in 0..200usize {
            let mut rec = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                rec.push(x as u8);
            }
            for t in 1..=3u8 {
                if let Some(b) = rec.first_mut() {
                    *b = t;
                }
                let _ = decode_series(&rec, &mut Vec::new(), &mut intern);
                let _ = decode_samples(&rec, &mut Vec::new());
                let _ = decode_tombstones(&rec, &mut Vec::new());
            }
        }
    }
}
