//! Building and sending one remote-write request: protocol 1.0 (`prometheus.WriteRequest`) and
//! 2.0 (`io.prometheus.write.v2.Request`, strings in a symbols table) bodies, snappy block
//! compression, the protocol headers, and the classification of the answer into delivered,
//! retryable (5xx, 429 when enabled, connection errors and timeouts; with the server's
//! `Retry-After` when it sent one) and failed (any other status: the batch is dropped).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use prost::Message;
use strata_tsdb::Labels;

use crate::remote::proto::v2;
use crate::remote::Protocol;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// One sample on its way to a remote, with the labels after relabeling and external labels.
#[derive(Clone, Debug)]
pub struct QueuedSample {
    /// The series' ref in the WAL (groups samples by series).
    pub r: u64,
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
    /// Sequence number of the WAL record it came from (for the delivery watermark).
    pub seq: u64,
}

/// Groups the batch by series, keeping first-seen order of series and sample order.
fn group(batch: &[QueuedSample]) -> Vec<(&Labels, Vec<(i64, f64)>)> {
    let mut idx: strata_tsdb::fasthash::FastMap<u64, usize> = Default::default();
    let mut out: Vec<(&Labels, Vec<(i64, f64)>)> = Vec::new();
    for s in batch {
        let i = *idx.entry(s.r).or_insert_with(|| {
            out.push((&s.labels, Vec::new()));
            out.len() - 1
        });
        out[i].1.push((s.t, s.v));
    }
    out
}

/// The uncompressed protobuf body of `batch` in `protocol`.
pub fn encode(protocol: Protocol, batch: &[QueuedSample]) -> Vec<u8> {
    match protocol {
        Protocol::V1 => encode_v1(&group(batch)),
        Protocol::V2 => {
            let mut symbols: Vec<Vec<u8>> = vec![Vec::new()];
            let mut timeseries = Vec::new();
            let mut table: HashMap<String, u32> = HashMap::new();
            table.insert(String::new(), 0);
            let mut intern = |s: &str, symbols: &mut Vec<Vec<u8>>| -> u32 {
                if let Some(&i) = table.get(s) {
                    return i;
                }
                let i = symbols.len() as u32;
                symbols.push(s.as_bytes().to_vec());
                table.insert(s.to_string(), i);
                i
            };
            for (labels, samples) in group(batch) {
                let mut refs = Vec::with_capacity(labels.len() * 2);
                for l in labels.iter() {
                    refs.push(intern(&l.name, &mut symbols));
                    refs.push(intern(&l.value, &mut symbols));
                }
                timeseries.push(v2::TimeSeries {
                    labels_refs: refs,
                    samples: samples
                        .into_iter()
                        .map(|(t, v)| v2::Sample {
                            value: v,
                            timestamp: t,
                            start_timestamp: 0,
                        })
                        .collect(),
                    histograms: Vec::new(),
                    exemplars: Vec::new(),
                    metadata: None,
                    created_timestamp: 0,
                });
            }
            v2::Request {
                symbols,
                timeseries,
            }
            .encode_to_vec()
        }
    }
}

/// Protobuf helpers for writing `prometheus.WriteRequest` directly from borrowed labels (no
/// intermediate messages, no string copies). Field presence follows prost's proto3 rules:
/// empty strings and zero numbers are omitted.
mod wire {
    use prost::encoding::{encode_varint, encoded_len_varint};

    pub fn str_len(s: &str) -> usize {
        if s.is_empty() {
            0
        } else {
            1 + encoded_len_varint(s.len() as u64) + s.len()
        }
    }

    pub fn put_str(buf: &mut Vec<u8>, tag: u8, s: &str) {
        if !s.is_empty() {
            buf.push(tag);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
    }

    pub fn sample_len(t: i64, v: f64) -> usize {
        (if v != 0.0 { 9 } else { 0 })
            + (if t != 0 {
                1 + encoded_len_varint(t as u64)
            } else {
                0
            })
    }

    pub fn put_sample(buf: &mut Vec<u8>, t: i64, v: f64) {
        if v != 0.0 {
            buf.push(0x09); // field 1, 64-bit
            buf.extend_from_slice(&v.to_le_bytes());
        }
        if t != 0 {
            buf.push(0x10); // field 2, varint
            encode_varint(t as u64, buf);
        }
    }

    pub fn put_len(buf: &mut Vec<u8>, tag: u8, len: usize) {
        buf.push(tag);
        encode_varint(len as u64, buf);
    }

    pub fn len_field(len: usize) -> usize {
        1 + encoded_len_varint(len as u64) + len
    }
}

/// `prometheus.WriteRequest` bytes for grouped series, byte-identical to prost's encoding of
/// the same message.
fn encode_v1(series: &[(&Labels, Vec<(i64, f64)>)]) -> Vec<u8> {
    use wire::*;
    let ts_len = |labels: &Labels, samples: &[(i64, f64)]| -> usize {
        let l: usize = labels
            .iter()
            .map(|l| len_field(str_len(&l.name) + str_len(&l.value)))
            .sum();
        let s: usize = samples
            .iter()
            .map(|&(t, v)| len_field(sample_len(t, v)))
            .sum();
        l + s
    };
    let total: usize = series.iter().map(|(l, s)| len_field(ts_len(l, s))).sum();
    let mut buf = Vec::with_capacity(total);
    for (labels, samples) in series {
        put_len(&mut buf, 0x0a, ts_len(labels, samples)); // WriteRequest.timeseries = 1
        for l in labels.iter() {
            put_len(&mut buf, 0x0a, str_len(&l.name) + str_len(&l.value)); // labels = 1
            put_str(&mut buf, 0x0a, &l.name);
            put_str(&mut buf, 0x12, &l.value);
        }
        for &(t, v) in samples {
            put_len(&mut buf, 0x12, sample_len(t, v)); // samples = 2
            put_sample(&mut buf, t, v);
        }
    }
    buf
}

/// Snappy (block format) compression of a body.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// The protocol headers of a request (besides the configured ones).
pub fn protocol_headers(protocol: Protocol) -> [(&'static str, &'static str); 4] {
    let (ct, version) = match protocol {
        Protocol::V1 => ("application/x-protobuf", "0.1.0"),
        Protocol::V2 => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
    };
    [
        ("Content-Encoding", "snappy"),
        ("Content-Type", ct),
        ("X-Prometheus-Remote-Write-Version", version),
        ("User-Agent", USER_AGENT),
    ]
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Worth retrying; `after` is the server's `Retry-After`, if it sent one.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Not worth retrying; the batch is dropped. `refused_samples`: the receiver refused
    /// samples it already has or will not take (a 400 naming out-of-order, duplicate, too old
    /// or out-of-bounds samples), so the rest of the batch may still be welcome.
    Failed {
        error: String,
        refused_samples: bool,
    },
}

/// What a queue needs to send a request.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
    pub timeout: Duration,
    pub retry_on_http_429: bool,
}

/// Posts one compressed body and classifies the answer.
pub async fn post(target: &Target, body: Vec<u8>) -> Outcome {
    let mut req = target.client.post(&target.url).body(body);
    for (k, v) in protocol_headers(target.protocol) {
        req = req.header(k, v);
    }
    for (k, v) in &target.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !target.timeout.is_zero() {
        req = req.timeout(target.timeout);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                error: format!("sending to {}: {e}", target.url),
            }
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut text = resp.text().await.unwrap_or_default();
    if text.len() > 512 {
        let mut cut = 512;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let error = format!(
        "{} answered {}: {}",
        target.url,
        status.as_u16(),
        text.trim()
    );
    let code = status.as_u16();
    if code >= 500 || (code == 429 && target.retry_on_http_429) {
        Outcome::Retry {
            after: retry_after,
            error,
        }
    } else {
        let t = text.to_ascii_lowercase();
        let refused_samples = code == 400
            && [
                "out of order",
                "out of bounds",
                "duplicate sample",
                "too old",
            ]
            .iter()
            .any(|m| t.contains(m));
        Outcome::Failed {
            error,
            refused_samples,
        }
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) turned into the time left until it (zero if past).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// Seconds since the epoch of an IMF-fixdate.
fn parse_http_date(v: &str) -> Option<i64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let s: i64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::proto::v1;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770); // 08:49:30
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
    }

    #[test]
    fn v1_bytes_equal_prosts_encoding() {
        let mut batch = Vec::new();
        let values = [0.0, -0.0, 1.5, f64::NAN, f64::INFINITY, -3.25];
        let times = [0i64, 1, -1, 1_700_000_000_123, i64::MIN, i64::MAX];
        for i in 0..60u64 {
            let labels = Labels::from_pairs(&[
                ("__name__", format!("m{}", i % 4).as_str()),
                ("e", if i % 3 == 0 { "" } else { "x" }),
                ("long", "y".repeat((i as usize * 7) % 200).as_str()),
            ]);
            batch.push(QueuedSample {
                r: i % 7,
                labels,
                t: times[i as usize % times.len()],
                v: values[i as usize % values.len()],
                seq: i,
            });
        }
        let grouped = group(&batch);
        let via_prost = v1::WriteRequest {
            timeseries: grouped
                .iter()
                .map(|(labels, samples)| v1::TimeSeries {
                    labels: labels
                        .iter()
                        .map(|l| v1::Label::new(&l.name, &l.value))
                        .collect(),
                    samples: samples
                        .iter()
                        .map(|&(t, v)| v1::Sample {
                            value: v,
                            timestamp: t,
                        })
                        .collect(),
                    exemplars: Vec::new(),
                    histograms: Vec::new(),
                })
                .collect(),
            metadata: Vec::new(),
        }
        .encode_to_vec();
        assert_eq!(encode(Protocol::V1, &batch), via_prost);
    }

    #[test]
    fn bodies_decode_with_the_receiver() {
        let ls = |v: &str| Labels::from_pairs(&[("__name__", "m"), ("i", v)]);
        let batch = vec![
            QueuedSample {
                r: 1,
                labels: ls("a"),
                t: 1,
                v: 1.0,
                seq: 0,
            },
            QueuedSample {
                r: 2,
                labels: ls("b"),
                t: 1,
                v: 2.0,
                seq: 0,
            },
            QueuedSample {
                r: 1,
                labels: ls("a"),
                t: 2,
                v: 3.0,
                seq: 1,
            },
        ];
        for p in [Protocol::V1, Protocol::V2] {
            let body = compress(&encode(p, &batch));
            let h = protocol_headers(p);
            let wb =
                crate::remote::decode_write(Some(h[1].1), Some(h[0].1), &body, &Default::default())
                    .unwrap();
            assert_eq!(wb.protocol, p);
            assert_eq!(wb.series.len(), 2);
            assert_eq!(wb.series[0].labels, ls("a"));
            assert_eq!(wb.series[0].samples, vec![(1, 1.0), (2, 3.0)]);
            assert_eq!(wb.series[1].samples, vec![(1, 2.0)]);
        }
    }
}
