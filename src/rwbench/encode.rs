//! Pre-encoded remote-write requests for the load generator: synthetic series, protobuf
//! encoding (1.0 and 2.0), and snappy "templates" whose samples can be rewritten in place.
//!
//! Every request carries one sample per series, and from round to round only the samples change.
//! A request is therefore encoded and compressed once, before timing, by a small snappy block
//! compressor that never lets a back-reference read from or write to the 16 bytes of a sample
//! (`0x09 <f64> 0x10 <6-byte varint ts>`): those stay literals in the compressed stream, so a
//! round is a `memcpy` of the template plus 16 rewritten bytes per sample. Label bytes compress
//! as usual (mostly copies from the previous series). The cost against a real sender is ~16
//! literal bytes per sample where snappy would have found some repetition in the sample
//! bytes too: bodies are somewhat larger, decoding work on the server is the same.

use anyhow::{bail, Result};

/// Length of a sample's bytes inside `Sample`: tag + f64 + tag + 6-byte varint timestamp.
pub const HOLE_LEN: usize = 16;

/// Smallest and largest timestamps whose varint is exactly 6 bytes (1971-02 .. 2109).
pub const TS_MIN: i64 = 1 << 35;
pub const TS_MAX: i64 = (1 << 42) - 1;

/// Metric names of the synthetic targets; each target (pod) exposes every one of them on four
/// `instance` ports.
const METRIC_NAMES: [&str; 25] = [
    "http_requests_total",
    "http_request_duration_seconds_sum",
    "http_request_duration_seconds_count",
    "http_response_size_bytes_sum",
    "http_response_size_bytes_count",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "go_goroutines",
    "go_threads",
    "go_memstats_alloc_bytes",
    "go_memstats_alloc_bytes_total",
    "go_memstats_heap_inuse_bytes",
    "go_memstats_heap_objects",
    "go_gc_duration_seconds_sum",
    "go_gc_duration_seconds_count",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "kube_pod_container_status_restarts_total",
    "up",
];

/// Series per target: every metric name in four variants (a `slot` label value).
pub const SERIES_PER_TARGET: usize = METRIC_NAMES.len() * 4;

/// The labels of series `i` (8 labels, sorted by name): 100 series per target (pod), targets
/// spread over 40 apps, 20 namespaces, 250 nodes and 3 zones.
pub fn series_labels(i: usize) -> Vec<(&'static str, String)> {
    let target = i / SERIES_PER_TARGET;
    let k = i % SERIES_PER_TARGET;
    let name = METRIC_NAMES[k % METRIC_NAMES.len()];
    let slot = k / METRIC_NAMES.len();
    let app = target % 40;
    let pod_hash = (target as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    vec![
        ("__name__", name.to_string()),
        ("container", format!("app-{app}")),
        (
            "instance",
            format!(
                "10.{}.{}.{}:{}",
                (target >> 16) & 255,
                (target >> 8) & 255,
                target & 255,
                8080 + slot
            ),
        ),
        ("job", format!("kubernetes-pods/app-{app}")),
        ("namespace", format!("team-{}", target % 20)),
        ("node", format!("node-{:03}", target % 250)),
        ("pod", format!("app-{app}-{pod_hash:06x}-{target}")),
        (
            "zone",
            format!("europe-west1-{}", ["a", "b", "c"][target % 3]),
        ),
    ]
}

/// Whether series `i` is a gauge (else a counter); decides values and v2 metadata.
fn is_gauge(i: usize) -> bool {
    let name = METRIC_NAMES[(i % SERIES_PER_TARGET) % METRIC_NAMES.len()];
    !name.ends_with("_total") && !name.ends_with("_count") && !name.ends_with("_sum")
}

/// The value of series `i` in round `r`: counters grow by a per-series step with some noise,
/// gauges wander around a per-series level.
#[inline]
pub fn sample_value(i: usize, r: u64) -> f64 {
    let h = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(r.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let noise = ((h >> 33) % 16) as f64;
    if is_gauge(i) {
        (i % 1000) as f64 * 10.0 + noise
    } else {
        (r * (1 + (i as u64 % 50))) as f64 * 3.0 + noise
    }
}

/// Remote-write protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    V1,
    V2,
}

/// A compressed request whose sample bytes can be rewritten in place.
#[derive(Clone, Debug)]
pub struct Template {
    /// The snappy block-format body.
    pub body: Vec<u8>,
    /// For each sample: the offset in `body` of its [`HOLE_LEN`] bytes and the series index.
    pub holes: Vec<(u32, u32)>,
    /// Uncompressed protobuf size.
    pub raw_len: usize,
}

impl Template {
    /// Writes the samples of round `r` (timestamp `ts`) into `body`, a copy of `self.body`
    /// (possibly at an offset: `base` is where the copy starts).
    #[inline]
    pub fn patch(&self, out: &mut [u8], base: usize, r: u64, ts: i64) {
        let tsb = ts_varint(ts);
        for &(off, s) in &self.holes {
            let o = base + off as usize;
            let v = sample_value(s as usize, r);
            out[o] = 0x09;
            out[o + 1..o + 9].copy_from_slice(&v.to_le_bytes());
            out[o + 9] = 0x10;
            out[o + 10..o + 16].copy_from_slice(&tsb);
        }
    }
}

/// The 6-byte varint of a timestamp in [`TS_MIN`, `TS_MAX`].
fn ts_varint(ts: i64) -> [u8; 6] {
    let mut v = ts as u64;
    let mut b = [0u8; 6];
    for (k, x) in b.iter_mut().enumerate() {
        *x = (v & 0x7f) as u8 | if k < 5 { 0x80 } else { 0 };
        v >>= 7;
    }
    b
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends field `tag` (length-delimited) with `payload`.
fn put_bytes_field(buf: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    buf.push(tag);
    put_uvarint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// Appends a `Sample` field (tag 2 of `TimeSeries` in both protocols) with a placeholder
/// (round 0 at [`TS_MIN`]) and records where its hole is.
fn put_sample(buf: &mut Vec<u8>, holes: &mut Vec<(usize, u32)>, s: usize) {
    buf.push(0x12);
    buf.push(HOLE_LEN as u8);
    holes.push((buf.len(), s as u32));
    buf.push(0x09);
    buf.extend_from_slice(&sample_value(s, 0).to_le_bytes());
    buf.push(0x10);
    buf.extend_from_slice(&ts_varint(TS_MIN));
}

/// The uncompressed protobuf of a request with series `series` (one sample each) and the
/// offsets of the samples' holes.
pub fn encode_raw(proto: Proto, series: std::ops::Range<usize>) -> (Vec<u8>, Vec<(usize, u32)>) {
    let mut out = Vec::new();
    let mut holes = Vec::new();
    let mut ts_buf = Vec::new();
    let mut lbuf = Vec::new();
    match proto {
        Proto::V1 => {
            for s in series {
                ts_buf.clear();
                for (n, v) in series_labels(s) {
                    lbuf.clear();
                    put_bytes_field(&mut lbuf, 0x0a, n.as_bytes());
                    put_bytes_field(&mut lbuf, 0x12, v.as_bytes());
                    put_bytes_field(&mut ts_buf, 0x0a, &lbuf);
                }
                // WriteRequest.timeseries (1) { labels (1)..., samples (2) }
                let inner_len = ts_buf.len() + 2 + HOLE_LEN;
                out.push(0x0a);
                put_uvarint(&mut out, inner_len as u64);
                out.extend_from_slice(&ts_buf);
                put_sample(&mut out, &mut holes, s);
            }
        }
        Proto::V2 => {
            let mut symbols: Vec<String> = vec![String::new()];
            let mut index = std::collections::HashMap::<String, u32>::new();
            let mut sym = |x: &str, symbols: &mut Vec<String>| -> u32 {
                if let Some(&k) = index.get(x) {
                    return k;
                }
                let k = symbols.len() as u32;
                symbols.push(x.to_string());
                index.insert(x.to_string(), k);
                k
            };
            let mut series_bytes = Vec::new();
            let mut series_holes = Vec::new();
            for s in series {
                let mut refs = Vec::new();
                for (n, v) in series_labels(s) {
                    put_uvarint(&mut refs, sym(n, &mut symbols) as u64);
                    put_uvarint(&mut refs, sym(&v, &mut symbols) as u64);
                }
                ts_buf.clear();
                put_bytes_field(&mut ts_buf, 0x0a, &refs);
                // metadata (5) { type (1) }: counter 1, gauge 2.
                let typ = if is_gauge(s) { 2 } else { 1 };
                let inner_len = ts_buf.len() + 2 + HOLE_LEN + 4;
                series_bytes.push(0x2a);
                put_uvarint(&mut series_bytes, inner_len as u64);
                series_bytes.extend_from_slice(&ts_buf);
                put_sample(&mut series_bytes, &mut series_holes, s);
                series_bytes.extend_from_slice(&[0x2a, 0x02, 0x08, typ]);
            }
            for x in &symbols {
                put_bytes_field(&mut out, 0x22, x.as_bytes());
            }
            let base = out.len();
            out.extend_from_slice(&series_bytes);
            holes.extend(series_holes.into_iter().map(|(o, s)| (o + base, s)));
        }
    }
    (out, holes)
}

/// Builds the template of a request with the given series.
pub fn build_template(proto: Proto, series: std::ops::Range<usize>) -> Template {
    let (raw, holes) = encode_raw(proto, series);
    let (body, hole_offs) = compress_with_holes(&raw, &holes);
    Template {
        body,
        holes: hole_offs,
        raw_len: raw.len(),
    }
}

/// Checks that a start timestamp and the rounds after it keep 6-byte varints.
pub fn check_ts_range(first: i64, last: i64) -> Result<()> {
    if first < TS_MIN || last > TS_MAX {
        bail!("timestamps {first}..{last} outside the supported range {TS_MIN}..{TS_MAX}");
    }
    Ok(())
}

const HASH_BITS: u32 = 15;
const MAX_OFFSET: usize = 65_535;

/// Snappy block-format compression of `raw` in which the bytes of every hole (`HOLE_LEN`
/// bytes at each offset of `holes`, sorted) are emitted as literals and never used as the
/// source of a copy. Returns the stream and, for each hole, `(offset in the stream, series)`.
pub fn compress_with_holes(raw: &[u8], holes: &[(usize, u32)]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let n = raw.len();
    let mut out = Vec::with_capacity(n / 3 + 64);
    put_uvarint(&mut out, n as u64);
    let mut hole_out = Vec::with_capacity(holes.len());
    let hole_starts: Vec<usize> = holes.iter().map(|h| h.0).collect();
    // End of the constant region containing `p` (the next hole's start, or n).
    let region_end = |p: usize| -> usize {
        let k = hole_starts.partition_point(|&h| h <= p);
        hole_starts.get(k).copied().unwrap_or(n)
    };
    let mut table = vec![0u32; 1 << HASH_BITS];
    let hash = |p: usize| -> usize {
        let x = u32::from_le_bytes([raw[p], raw[p + 1], raw[p + 2], raw[p + 3]]);
        (x.wrapping_mul(0x1e35_a7bd) >> (32 - HASH_BITS)) as usize
    };
    let mut emit_literal = |out: &mut Vec<u8>, from: usize, to: usize, hi: &mut usize| {
        if from >= to {
            return;
        }
        let len = to - from;
        let l = len - 1;
        if l < 60 {
            out.push((l as u8) << 2);
        } else if l < 1 << 8 {
            out.push(60 << 2);
            out.push(l as u8);
        } else if l < 1 << 16 {
            out.push(61 << 2);
            out.extend_from_slice(&(l as u16).to_le_bytes());
        } else {
            out.push(63 << 2);
            out.extend_from_slice(&(l as u32).to_le_bytes());
        }
        let data_start = out.len();
        out.extend_from_slice(&raw[from..to]);
        while *hi < holes.len() && holes[*hi].0 < to {
            let (h, s) = holes[*hi];
            debug_assert!(h >= from && h + HOLE_LEN <= to);
            hole_out.push(((data_start + h - from) as u32, s));
            *hi += 1;
        }
    };
    let emit_copy = |out: &mut Vec<u8>, off: usize, mut len: usize| {
        while len > 0 {
            // Keep every piece at least 4 bytes long.
            let l = if len > 64 {
                if len - 64 < 4 {
                    60
                } else {
                    64
                }
            } else {
                len
            };
            if (4..=11).contains(&l) && off < 2048 {
                out.push(1 | (((l - 4) as u8) << 2) | (((off >> 8) as u8) << 5));
                out.push(off as u8);
            } else {
                out.push(2 | (((l - 1) as u8) << 2));
                out.extend_from_slice(&(off as u16).to_le_bytes());
            }
            len -= l;
        }
    };
    let mut hi = 0; // next hole to place
    let mut next_hole = 0; // next hole to skip over while scanning
    let mut lit_start = 0;
    let mut p = 0;
    while p < n {
        if next_hole < holes.len() && holes[next_hole].0 <= p {
            p = holes[next_hole].0 + HOLE_LEN;
            next_hole += 1;
            continue;
        }
        let rend = hole_starts.get(next_hole).copied().unwrap_or(n);
        if p + 4 <= rend {
            let h = hash(p);
            let cand = table[h] as usize;
            table[h] = (p + 1) as u32;
            if cand > 0 {
                let c = cand - 1;
                let cend = region_end(c);
                if c < p && p - c <= MAX_OFFSET && c + 4 <= cend && raw[c..c + 4] == raw[p..p + 4] {
                    let mut len = 4;
                    while p + len < rend && c + len < cend && raw[c + len] == raw[p + len] {
                        len += 1;
                    }
                    emit_literal(&mut out, lit_start, p, &mut hi);
                    emit_copy(&mut out, p - c, len);
                    p += len;
                    lit_start = p;
                    continue;
                }
            }
        }
        p += 1;
    }
    emit_literal(&mut out, lit_start, n, &mut hi);
    (out, hole_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ingest::remote::write::{decode_write, snappy_decompress, WriteLimits};

    fn ct(p: Proto) -> &'static str {
        match p {
            Proto::V1 => "application/x-protobuf",
            Proto::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    #[test]
    fn ts_varint_is_six_bytes() {
        for ts in [TS_MIN, 1_700_000_000_000, TS_MAX] {
            let b = ts_varint(ts);
            let mut v = 0u64;
            for (k, x) in b.iter().enumerate() {
                v |= ((x & 0x7f) as u64) << (7 * k);
            }
            assert_eq!(v as i64, ts);
            assert_eq!(b[5] & 0x80, 0);
        }
    }

    #[test]
    fn labels_are_sorted_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000 {
            let l = series_labels(i);
            assert_eq!(l.len(), 8);
            assert!(l.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(seen.insert(l));
        }
    }

    #[test]
    fn compression_round_trips_with_patched_samples() {
        let raw: Vec<u8> = (0..5000u32).map(|i| (i % 7 * 13 % 251) as u8).collect();
        let holes: Vec<(usize, u32)> = (0..20).map(|k| (100 + k * 200, k as u32)).collect();
        let (body, offs) = compress_with_holes(&raw, &holes);
        assert!(body.len() < raw.len() / 4, "{} bytes", body.len());
        let mut body = body;
        let mut want = raw.clone();
        for (k, &(o, _)) in offs.iter().enumerate() {
            for j in 0..HOLE_LEN {
                body[o as usize + j] = (k * 31 + j) as u8;
                want[holes[k].0 + j] = (k * 31 + j) as u8;
            }
        }
        assert_eq!(snappy_decompress(&body, 1 << 20).unwrap(), want);
    }

    #[test]
    fn patched_requests_decode_as_expected() {
        for proto in [Proto::V1, Proto::V2] {
            let t = build_template(proto, 150..450);
            // v1 repeats label strings (compress well); v2 is mostly refs and sample bytes.
            let factor = if proto == Proto::V1 { 3 } else { 1 };
            assert!(
                t.body.len() * factor < t.raw_len,
                "{proto:?}: {} of {}",
                t.body.len(),
                t.raw_len
            );
            let mut body = vec![0u8; 3];
            body.extend_from_slice(&t.body);
            let ts = 1_800_000_000_123;
            t.patch(&mut body, 3, 7, ts);
            let batch = decode_write(
                Some(ct(proto)),
                Some("snappy"),
                &body[3..],
                &WriteLimits::default(),
            )
            .unwrap();
            assert_eq!(batch.invalid_count, 0);
            assert_eq!(batch.series.len(), 300);
            for (k, s) in batch.series.iter().enumerate() {
                let i = 150 + k;
                let want: Vec<(String, String)> = series_labels(i)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                let got: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                assert_eq!(got, want);
                assert_eq!(s.samples, vec![(ts, sample_value(i, 7))]);
            }
        }
    }
}
