//! Tests of the remote-write receiver: every refusal case, validation, bit-exact values, round
//! trips through a real head, and a fuzz property over hostile bodies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use prost::Message;
use strata_tsdb::head::Head;
use strata_tsdb::storage::{is_stale_nan, Queryable, STALE_NAN_BITS};
use strata_tsdb::{Labels, Matcher};

use super::proto::{v1, v2, BucketSpan, HistogramCount, HistogramZeroCount};
use super::write::*;

// ---- an allocator that remembers the largest single allocation made by this thread ----

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new_size)));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

// ---- request builders ----

const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
const NOW: i64 = 1_700_000_000_000;

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(b)
        .expect("snappy compress")
}

fn v1_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| v1::Label::new(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn v1_body(series: Vec<v1::TimeSeries>) -> Vec<u8> {
    snappy(
        &v1::WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec(),
    )
}

/// Builds v2 requests with a symbols table (first symbol "").
#[derive(Default)]
struct V2Builder {
    symbols: Vec<String>,
    series: Vec<v2::TimeSeries>,
}

impl V2Builder {
    fn new() -> Self {
        Self {
            symbols: vec![String::new()],
            series: vec![],
        }
    }
    fn sym(&mut self, s: &str) -> u32 {
        if let Some(i) = self.symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        self.symbols.push(s.to_string());
        (self.symbols.len() - 1) as u32
    }
    fn refs(&mut self, labels: &[(&str, &str)]) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|(n, v)| [self.sym(n), self.sym(v)])
            .collect()
    }
    fn series(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> &mut v2::TimeSeries {
        let labels_refs = self.refs(labels);
        self.series.push(v2::TimeSeries {
            labels_refs,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v2::Sample {
                    value,
                    timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            ..Default::default()
        });
        self.series.last_mut().expect("just pushed")
    }
    fn raw(&self) -> Vec<u8> {
        v2::Request {
            symbols: self.symbols.iter().map(|s| s.as_bytes().to_vec()).collect(),
            timeseries: self.series.clone(),
        }
        .encode_to_vec()
    }
    fn body(&self) -> Vec<u8> {
        snappy(&self.raw())
    }
}

fn decode_v1(body: &[u8]) -> Result<WriteBatch, super::RemoteError> {
    decode_write(
        Some("application/x-protobuf"),
        Some("snappy"),
        body,
        &WriteLimits::default(),
    )
}

fn decode_v2(body: &[u8]) -> Result<WriteBatch, super::RemoteError> {
    decode_write(Some(V2_CT), Some("snappy"), body, &WriteLimits::default())
}

fn status(r: Result<WriteBatch, super::RemoteError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status,
    }
}

/// The compliance suite's "test histogram": exponential schema 0, counts 1,3,4,7,8 positive,
/// 1,2 negative, zero count 1 (total 27).
fn test_histogram(count: u64) -> v2::Histogram {
    v2::Histogram {
        count: Some(HistogramCount::CountInt(count)),
        sum: 42.0,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: Some(HistogramZeroCount::ZeroCountInt(1)),
        negative_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        negative_deltas: vec![1, 1],
        positive_spans: vec![
            BucketSpan {
                offset: 0,
                length: 3,
            },
            BucketSpan {
                offset: 2,
                length: 2,
            },
        ],
        positive_deltas: vec![1, 2, 1, 3, 1],
        timestamp: NOW,
        ..Default::default()
    }
}

fn read_all(head: &std::sync::Arc<Head>, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let q = head.querier(i64::MIN, i64::MAX).expect("querier");
    q.select(true, None, &[Matcher::equal("__name__", name)])
        .map(|s| {
            let s = s.expect("series");
            let mut it = s.iterator();
            let mut out = vec![];
            while it.next() {
                out.push(it.at());
            }
            (s.labels().clone(), out)
        })
        .collect()
}

// ---- content type and encoding ----

#[test]
fn content_types() {
    let body = v1_body(vec![v1_series(&[("__name__", "up")], &[(1, 1.0)])]);
    let lim = WriteLimits::default();
    for ct in [
        "application/json",
        "image/png",
        "text/plain",
        "application/x-protobuf;proto=foo.Bar",
        "application/x-protobuf;proto",
    ] {
        let e = decode_write(Some(ct), Some("snappy"), &body, &lim).unwrap_err();
        assert_eq!(e.status, 415, "{ct}: {e}");
    }
    for ct in [
        None,
        Some(""),
        Some("application/x-protobuf"),
        Some("application/x-protobuf;proto=prometheus.WriteRequest"),
        Some("application/x-protobuf; charset=utf-8"),
    ] {
        let b = decode_write(ct, Some("snappy"), &body, &lim).expect("v1 accepted");
        assert_eq!(b.protocol, Protocol::V1, "{ct:?}");
    }
    let v2 = {
        let mut b = V2Builder::new();
        b.series(&[("__name__", "up")], &[(1, 1.0)]);
        b.body()
    };
    for ct in [
        V2_CT,
        "application/x-protobuf; proto=io.prometheus.write.v2.Request",
    ] {
        let b = decode_write(Some(ct), None, &v2, &lim).expect("v2 accepted");
        assert_eq!(b.protocol, Protocol::V2);
        assert_eq!(b.num_samples(), 1);
    }
}

#[test]
fn content_encodings() {
    let body = v1_body(vec![v1_series(&[("__name__", "up")], &[(1, 1.0)])]);
    let lim = WriteLimits::default();
    for enc in ["gzip", "deflate", "zstd", "identity"] {
        let e = decode_write(None, Some(enc), &body, &lim).unwrap_err();
        assert_eq!(e.status, 415, "{enc}");
        assert!(e.message.contains("only snappy"), "{}", e.message);
    }
    // Bad encoding wins over a bad body, and content type over both (the suite expects 415).
    let e = decode_write(Some("image/png"), Some("gzip"), b"garbage", &lim).unwrap_err();
    assert_eq!(e.status, 415);
    for enc in [None, Some("snappy"), Some("SNAPPY"), Some("")] {
        decode_write(None, enc, &body, &lim).expect("snappy or missing accepted");
    }
}

// ---- corrupt bodies and limits ----

#[test]
fn corrupt_snappy_is_400() {
    let mut b = V2Builder::new();
    b.series(&[("__name__", "up")], &[(1, 1.0)]);
    let mut body = b.body();
    body[0] = b'0';
    assert_eq!(status(decode_v2(&body)), 400);
    let mut body = v1_body(vec![v1_series(&[("__name__", "up")], &[(1, 1.0)])]);
    body[0] = 0xff;
    assert_eq!(status(decode_v1(&body)), 400);
    assert_eq!(status(decode_v1(b"")), 400);
    // Uncompressed protobuf sent as if it were snappy.
    let raw = b.raw();
    assert_eq!(status(decode_v2(&raw)), 400);
}

#[test]
fn corrupt_protobuf_is_400() {
    for raw in [
        &b"\xff\xff\xff"[..],
        b"\x0a\x05ab",
        b"\x0a\xff\xff\xff\xff\x0f",
    ] {
        let e = decode_v1(&snappy(raw)).unwrap_err();
        assert_eq!(e.status, 400, "{raw:?}");
        assert!(e.message.contains("decoding v1"), "{}", e.message);
        let e = decode_v2(&snappy(raw)).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("decoding v2"), "{}", e.message);
    }
}

#[test]
fn huge_snappy_claim_is_refused_without_allocating() {
    // A 7-byte body whose snappy header announces 1 GiB of output.
    let mut body = vec![0x80, 0x80, 0x80, 0x80, 0x04]; // uvarint 1 << 30
    body.extend_from_slice(&[0x00, b'x']);
    assert_eq!(snap::raw::decompress_len(&body).expect("header"), 1 << 30);
    LARGEST.with(|c| c.set(0));
    let e = decode_v1(&body).unwrap_err();
    let largest = LARGEST.with(|c| c.get());
    assert_eq!(e.status, 413, "{e}");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
    // Without the decoded-size limit the claim is still refused, as impossible for 7 bytes.
    let lim = WriteLimits {
        max_decoded_bytes: usize::MAX,
        ..Default::default()
    };
    LARGEST.with(|c| c.set(0));
    let e = decode_write(None, None, &body, &lim).unwrap_err();
    let largest = LARGEST.with(|c| c.get());
    assert_eq!(e.status, 400, "{e}");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
}

#[test]
fn body_and_series_limits_are_413() {
    let body = v1_body(vec![
        v1_series(&[("__name__", "a")], &[(1, 1.0)]),
        v1_series(&[("__name__", "b")], &[(1, 1.0)]),
    ]);
    let lim = WriteLimits {
        max_body_bytes: body.len() - 1,
        ..Default::default()
    };
    assert_eq!(
        decode_write(None, None, &body, &lim).unwrap_err().status,
        413
    );
    let lim = WriteLimits {
        max_series: 1,
        ..Default::default()
    };
    assert_eq!(
        decode_write(None, None, &body, &lim).unwrap_err().status,
        413
    );
    let lim = WriteLimits {
        max_decoded_bytes: 10,
        ..Default::default()
    };
    assert_eq!(
        decode_write(None, None, &body, &lim).unwrap_err().status,
        413
    );
}

// ---- series validation ----

fn assert_rejected(batch: &WriteBatch, needle: &str, kept: usize) {
    assert_eq!(batch.invalid_count, 1, "{:?}", batch.invalid);
    assert!(
        batch.invalid[0].contains(needle),
        "{:?} lacks {needle:?}",
        batch.invalid
    );
    assert_eq!(batch.series.len(), kept);
}

#[test]
fn invalid_series_v1() {
    let good = v1_series(&[("__name__", "ok")], &[(1, 1.0)]);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("job", "x")], "invalid metric name or labels"),
        (vec![], "invalid metric name or labels"),
        (
            vec![("__name__", ""), ("job", "x")],
            "invalid metric name or labels",
        ),
        (
            vec![("__name__", "m"), ("", "x")],
            "invalid metric name or labels",
        ),
        (
            vec![("__name__", "m"), ("job", "a"), ("job", "b")],
            "duplicated label job",
        ),
    ];
    for (labels, needle) in cases {
        let body = v1_body(vec![good.clone(), v1_series(&labels, &[(1, 1.0)])]);
        let batch = decode_v1(&body).expect("request decodes");
        assert_rejected(&batch, needle, 1);
        let head = Head::in_memory(Default::default());
        let mut app = head.appender();
        let rep = append_batch_at(&mut app, &batch, NOW);
        assert_eq!(rep.status(), 400);
        assert_eq!(rep.samples_written, 1);
        assert!(rep.error_message().contains(needle));
        assert!(
            response_headers(&rep).is_empty(),
            "no count headers for 1.0"
        );
    }
    // Invalid UTF-8 rejects the series, not the request.
    let mut bad = v1_series(&[("__name__", "m")], &[(1, 1.0)]);
    bad.labels.push(v1::Label {
        name: b"job".to_vec(),
        value: vec![0xff, 0xfe],
    });
    let batch = decode_v1(&v1_body(vec![good, bad])).expect("decodes");
    assert_rejected(&batch, "invalid UTF-8", 1);
}

#[test]
fn invalid_series_v2() {
    let mk = |f: &dyn Fn(&mut V2Builder)| {
        let mut b = V2Builder::new();
        b.series(&[("__name__", "ok")], &[(1, 1.0)]);
        f(&mut b);
        decode_v2(&b.body()).expect("request decodes")
    };
    let b = mk(&|b| {
        b.series(&[("job", "x")], &[(1, 1.0)]);
    });
    assert_rejected(&b, "invalid metric name or labels", 1);
    let b = mk(&|b| {
        b.series(&[], &[(1, 1.0)]);
    });
    assert_rejected(&b, "invalid metric name or labels", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "")], &[(1, 1.0)]);
    });
    assert_rejected(&b, "invalid metric name or labels", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "m"), ("", "v")], &[(1, 1.0)]);
    });
    assert_rejected(&b, "invalid metric name or labels", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "m"), ("a", "1"), ("a", "2")], &[(1, 1.0)]);
    });
    assert_rejected(&b, "duplicated label a", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "m")], &[(1, 1.0)])
            .labels_refs
            .push(1);
    });
    assert_rejected(&b, "invalid labelRefs length 3", 1);
    let b = mk(&|b| {
        let s = b.series(&[("__name__", "m")], &[(1, 1.0)]);
        s.labels_refs[1] = 99;
    });
    assert_rejected(&b, "outside of symbols table", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "m")], &[(1, 1.0)]).metadata = Some(v2::Metadata {
            r#type: 1,
            help_ref: 1000,
            unit_ref: 0,
        });
    });
    assert_rejected(&b, "metadata help_ref 1000 outside of symbols table", 1);
    let b = mk(&|b| {
        b.series(&[("__name__", "m")], &[(1, 1.0)])
            .exemplars
            .push(v2::Exemplar {
                labels_refs: vec![0, 77],
                value: 1.0,
                timestamp: 1,
            });
    });
    assert_rejected(&b, "parsing exemplar", 2);
    // Invalid UTF-8 in a symbol used as a label value.
    let mut bb = V2Builder::new();
    bb.series(&[("__name__", "ok")], &[(1, 1.0)]);
    bb.series(&[("__name__", "m"), ("job", "BAD")], &[(1, 1.0)]);
    let mut req = v2::Request::decode(bb.raw().as_slice()).expect("decode own");
    let i = bb.symbols.iter().position(|s| s == "BAD").expect("sym");
    req.symbols[i] = vec![0xc3, 0x28];
    let b = decode_v2(&snappy(&req.encode_to_vec())).expect("decodes");
    assert_rejected(&b, "not valid UTF-8", 1);
}

#[test]
fn all_series_invalid_is_400_with_nothing_written() {
    let mut b = V2Builder::new();
    for i in 0..4 {
        b.series(&[("job", &format!("j{i}"))], &[(NOW, 1.0)]);
    }
    let batch = decode_v2(&b.body()).expect("decodes");
    let head = Head::in_memory(Default::default());
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &batch, NOW);
    assert_eq!(rep.status(), 400);
    assert_eq!(rep.rejected_count, 4);
    assert_eq!(rep.samples_written, 0);
    assert_eq!(
        response_headers(&rep),
        vec![
            (HEADER_SAMPLES_WRITTEN, "0".to_string()),
            (HEADER_HISTOGRAMS_WRITTEN, "0".to_string()),
            (HEADER_EXEMPLARS_WRITTEN, "0".to_string())
        ]
    );
}

#[test]
fn labels_are_sorted_and_utf8_names_accepted() {
    let mut b = V2Builder::new();
    b.series(
        &[
            ("zone", "z"),
            ("job.name", "j"),
            ("__name__", "resource.cpu.usage"),
            ("a b", "line\nbreak"),
            ("empty", ""),
        ],
        &[(1, 1.0)],
    );
    b.series(
        &[("instance.name", "🌍"), ("__name__", "resource cpu usage")],
        &[(1, 2.0)],
    );
    let batch = decode_v2(&b.body()).expect("decodes");
    assert_eq!(batch.invalid_count, 0, "{:?}", batch.invalid);
    let names: Vec<&str> = batch.series[0].labels.iter().map(|l| &*l.name).collect();
    assert_eq!(
        names,
        ["__name__", "a b", "job.name", "zone"],
        "sorted, empty value dropped"
    );
    assert_eq!(batch.series[0].labels.get("a b"), Some("line\nbreak"));
    assert_eq!(batch.series[1].labels.get("instance.name"), Some("🌍"));
    let body = v1_body(vec![v1_series(
        &[("z", "1"), ("__name__", "my.metric"), ("a.b", "2")],
        &[(1, 1.0)],
    )]);
    let batch = decode_v1(&body).expect("decodes");
    assert_eq!(batch.invalid_count, 0);
    assert_eq!(
        batch.series[0].labels,
        Labels::from_pairs(&[("__name__", "my.metric"), ("a.b", "2"), ("z", "1")])
    );
}

// ---- values ----

#[test]
fn special_values_are_bit_exact_through_the_head() {
    let vals = [
        f64::from_bits(STALE_NAN_BITS),
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        // (-0.0 is not here: proto3 encoders, Go's and prost alike, omit a double equal to 0.)
        f64::MIN_POSITIVE,
        1e10,
    ];
    let samples: Vec<(i64, f64)> = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| (NOW + i as i64, v))
        .collect();
    for proto in [Protocol::V1, Protocol::V2] {
        let batch = match proto {
            Protocol::V1 => decode_v1(&v1_body(vec![v1_series(
                &[("__name__", "special")],
                &samples,
            )])),
            Protocol::V2 => {
                let mut b = V2Builder::new();
                b.series(&[("__name__", "special")], &samples);
                decode_v2(&b.body())
            }
        }
        .expect("decodes");
        let got: Vec<u64> = batch.series[0]
            .samples
            .iter()
            .map(|s| s.1.to_bits())
            .collect();
        let want: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        let head = Head::in_memory(Default::default());
        let mut app = head.appender();
        let rep = append_batch_at(&mut app, &batch, NOW);
        assert_eq!(rep.status(), 204, "{:?}", rep.rejected);
        strata_tsdb::storage::Appender::commit(&mut app).expect("commit");
        let read = read_all(&head, "special");
        let got: Vec<u64> = read[0].1.iter().map(|s| s.1.to_bits()).collect();
        assert_eq!(got, want, "{proto:?}");
        assert!(is_stale_nan(read[0].1[0].1));
    }
}

// ---- round trips and append semantics ----

#[test]
fn v1_and_v2_round_trip_through_head() {
    let head = Head::in_memory(Default::default());
    // v1: two series, metadata.
    let mut req = v1::WriteRequest {
        timeseries: vec![
            v1_series(
                &[("__name__", "rt"), ("job", "a")],
                &[(NOW, 1.0), (NOW + 1000, 2.0)],
            ),
            v1_series(&[("job", "b"), ("__name__", "rt")], &[(NOW, 3.0)]),
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: v1::MetricType::Counter as i32,
            metric_family_name: "rt".into(),
            help: "help".into(),
            unit: "".into(),
        }],
    };
    req.timeseries[0].exemplars.push(v1::Exemplar {
        labels: vec![v1::Label::new("trace_id", "abc")],
        value: 1.0,
        timestamp: NOW,
    });
    let batch = decode_v1(&snappy(&req.encode_to_vec())).expect("v1");
    assert_eq!(batch.metadata.len(), 1);
    assert_eq!(batch.metadata[0].typ, crate::textparse::MetricType::Counter);
    assert_eq!(batch.series[0].exemplars.len(), 1);
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &batch, NOW);
    assert_eq!(
        (rep.status(), rep.samples_written, rep.exemplars_written),
        (204, 3, 1)
    );
    strata_tsdb::storage::Appender::commit(&mut app).expect("commit");

    // v2: continue series a, add c with metadata, exemplar and created timestamp.
    let mut b = V2Builder::new();
    b.series(&[("__name__", "rt"), ("job", "a")], &[(NOW + 2000, 4.0)]);
    let help = b.sym("a help");
    let unit = b.sym("seconds");
    let trace = b.refs(&[("trace_id", "t1")]);
    let s = b.series(&[("job", "c"), ("__name__", "rt")], &[(NOW, 5.0)]);
    s.metadata = Some(v2::Metadata {
        r#type: v2::MetricType::Gauge as i32,
        help_ref: help,
        unit_ref: unit,
    });
    s.samples[0].start_timestamp = NOW - 3_600_000;
    s.exemplars.push(v2::Exemplar {
        labels_refs: trace,
        value: 0.5,
        timestamp: NOW,
    });
    let batch = decode_v2(&b.body()).expect("v2");
    assert_eq!(batch.series[1].created_timestamp, Some(NOW - 3_600_000));
    assert_eq!(
        batch.metadata,
        vec![MetricMetadata {
            metric_family_name: "rt".into(),
            typ: crate::textparse::MetricType::Gauge,
            help: "a help".into(),
            unit: "seconds".into()
        }]
    );
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &batch, NOW);
    assert_eq!(
        (rep.status(), rep.samples_written, rep.exemplars_written),
        (204, 2, 1)
    );
    assert_eq!(
        response_headers(&rep),
        vec![
            (HEADER_SAMPLES_WRITTEN, "2".to_string()),
            (HEADER_HISTOGRAMS_WRITTEN, "0".to_string()),
            (HEADER_EXEMPLARS_WRITTEN, "1".to_string())
        ]
    );
    strata_tsdb::storage::Appender::commit(&mut app).expect("commit");

    let got = read_all(&head, "rt");
    let want = vec![
        (
            Labels::from_pairs(&[("__name__", "rt"), ("job", "a")]),
            vec![(NOW, 1.0), (NOW + 1000, 2.0), (NOW + 2000, 4.0)],
        ),
        (
            Labels::from_pairs(&[("__name__", "rt"), ("job", "b")]),
            vec![(NOW, 3.0)],
        ),
        (
            Labels::from_pairs(&[("__name__", "rt"), ("job", "c")]),
            vec![(NOW, 5.0)],
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn out_of_order_and_duplicates_are_reported_and_good_samples_kept() {
    let head = Head::in_memory(Default::default());
    let mut b = V2Builder::new();
    b.series(&[("__name__", "o")], &[(NOW, 1.0), (NOW + 10, 2.0)]);
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &decode_v2(&b.body()).expect("v2"), NOW);
    assert_eq!(rep.status(), 204);
    strata_tsdb::storage::Appender::commit(&mut app).expect("commit");

    let mut b = V2Builder::new();
    b.series(
        &[("__name__", "o")],
        &[
            (NOW + 5, 9.0),
            (NOW + 10, 7.0),
            (NOW + 10, 2.0),
            (NOW + 20, 3.0),
            (NOW + MAX_AHEAD_MS + 1, 4.0),
        ],
    );
    b.series(&[("__name__", "o2")], &[(NOW, 1.0)]);
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &decode_v2(&b.body()).expect("v2"), NOW);
    assert_eq!(rep.status(), 400);
    assert_eq!(rep.rejected_count, 3, "{:?}", rep.rejected);
    assert_eq!(
        rep.rejected[0],
        "out of order sample for series {__name__=\"o\"}"
    );
    assert_eq!(
        rep.rejected[1],
        "duplicate sample for timestamp for series {__name__=\"o\"}"
    );
    assert!(rep.rejected[2].starts_with("out of bounds: timestamp is too far in the future"));
    // The identical duplicate (same value) is silently accepted, as in Prometheus.
    assert_eq!(rep.samples_written, 3);
    assert!(rep.fatal.is_none());
    strata_tsdb::storage::Appender::commit(&mut app).expect("commit");
    assert_eq!(
        read_all(&head, "o")[0].1,
        vec![(NOW, 1.0), (NOW + 10, 2.0), (NOW + 20, 3.0)]
    );
    assert_eq!(read_all(&head, "o2")[0].1, vec![(NOW, 1.0)]);
}

#[test]
fn error_message_truncates() {
    let mut b = V2Builder::new();
    for i in 0..(MAX_MESSAGES + 5) {
        b.series(&[("job", &i.to_string())], &[(1, 1.0)]);
    }
    let batch = decode_v2(&b.body()).expect("v2");
    assert_eq!(batch.invalid.len(), MAX_MESSAGES);
    assert_eq!(batch.invalid_count, MAX_MESSAGES + 5);
    let head = Head::in_memory(Default::default());
    let rep = append_batch_at(&mut head.appender(), &batch, NOW);
    assert!(
        rep.error_message().ends_with("... and 5 more"),
        "{}",
        rep.error_message()
    );
}

// ---- histograms, exemplars, metadata-only ----

#[test]
fn histograms_are_validated_and_not_stored() {
    let mut b = V2Builder::new();
    b.series(&[("__name__", "h")], &[])
        .histograms
        .push(test_histogram(27));
    let custom = v2::Histogram {
        count: Some(HistogramCount::CountInt(30)),
        schema: -53,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 6,
        }],
        positive_deltas: vec![2, 1, 2, 3, -1, -2],
        custom_values: vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0],
        timestamp: NOW,
        ..Default::default()
    };
    b.series(&[("__name__", "hc")], &[]).histograms.push(custom);
    b.series(&[("__name__", "he")], &[])
        .histograms
        .push(v2::Histogram {
            count: Some(HistogramCount::CountInt(0)),
            timestamp: NOW,
            ..Default::default()
        });
    b.series(&[("__name__", "hf")], &[])
        .histograms
        .push(v2::Histogram {
            count: Some(HistogramCount::CountFloat(3.5)),
            zero_count: Some(HistogramZeroCount::ZeroCountFloat(0.5)),
            positive_spans: vec![BucketSpan {
                offset: -2,
                length: 1,
            }],
            positive_counts: vec![3.0],
            timestamp: NOW,
            ..Default::default()
        });
    let batch = decode_v2(&b.body()).expect("v2");
    assert_eq!(batch.invalid_count, 0, "{:?}", batch.invalid);
    let head = Head::in_memory(Default::default());
    let rep = append_batch_at(&mut head.appender(), &batch, NOW);
    assert_eq!(rep.status(), 204);
    assert_eq!((rep.histograms_written, rep.histograms_dropped), (0, 4));

    let bad = [
        (
            test_histogram(99),
            "27 observations found in buckets, but the Count field is 99",
        ),
        (
            v2::Histogram {
                schema: 9 - 20,
                ..test_histogram(27)
            },
            "invalid schema",
        ),
        (
            v2::Histogram {
                positive_deltas: vec![1, 2, 1, 3],
                ..test_histogram(27)
            },
            "spans need 5 buckets, have 4 buckets",
        ),
        (
            v2::Histogram {
                negative_deltas: vec![1, -2],
                ..test_histogram(27)
            },
            "negative side: bucket number 2 has observation count of -1",
        ),
    ];
    for (h, needle) in bad {
        let mut b = V2Builder::new();
        b.series(&[("__name__", "ok")], &[(NOW, 1.0)]);
        b.series(&[("__name__", "h")], &[]).histograms.push(h);
        let batch = decode_v2(&b.body()).expect("v2");
        assert_eq!(batch.invalid_count, 1, "{needle}");
        assert!(
            batch.invalid[0].contains(needle),
            "{:?} lacks {needle}",
            batch.invalid
        );
        let rep = append_batch_at(&mut head.appender(), &batch, NOW);
        assert_eq!((rep.status(), rep.samples_written), (400, 1));
    }
}

#[test]
fn exemplar_only_and_metadata_only_series_are_accepted() {
    let mut b = V2Builder::new();
    let ex = b.refs(&[]);
    b.series(&[("__name__", "ex_only")], &[])
        .exemplars
        .push(v2::Exemplar {
            labels_refs: ex,
            value: f64::NAN,
            timestamp: NOW,
        });
    let help = b.sym("help with \"quotes\"\nand newline");
    b.series(&[("__name__", "md_only")], &[]).metadata = Some(v2::Metadata {
        r#type: v2::MetricType::Stateset as i32,
        help_ref: help,
        unit_ref: 0,
    });
    let batch = decode_v2(&b.body()).expect("v2");
    let head = Head::in_memory(Default::default());
    let rep = append_batch_at(&mut head.appender(), &batch, NOW);
    assert_eq!(rep.status(), 204);
    assert_eq!((rep.samples_written, rep.exemplars_written), (0, 1));
    assert_eq!(
        batch.metadata[0].typ,
        crate::textparse::MetricType::Stateset
    );
}

// ---- fuzz ----

fn valid_bodies() -> Vec<(Protocol, Vec<u8>)> {
    let mut req = v1::WriteRequest {
        timeseries: vec![
            v1_series(
                &[("__name__", "a"), ("job", "x")],
                &[(1, 1.0), (2, f64::NAN)],
            ),
            v1_series(&[("__name__", "b")], &[(3, 2.0)]),
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: 2,
            metric_family_name: "a".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    req.timeseries[0].exemplars.push(v1::Exemplar {
        labels: vec![v1::Label::new("trace_id", "t")],
        value: 1.0,
        timestamp: 1,
    });
    let mut b = V2Builder::new();
    b.series(&[("__name__", "a"), ("job", "x")], &[(1, 1.0)]);
    b.series(&[("__name__", "h")], &[])
        .histograms
        .push(test_histogram(27));
    let ex = b.refs(&[("trace_id", "t")]);
    b.series(&[("__name__", "c")], &[(2, 2.0)])
        .exemplars
        .push(v2::Exemplar {
            labels_refs: ex,
            value: 1.0,
            timestamp: 2,
        });
    // A 1.0 body the fast decoder takes whole (no metadata, no histograms).
    let mut fast = v1::WriteRequest {
        timeseries: vec![
            v1_series(
                &[("job", "x"), ("__name__", "a"), ("e", "")],
                &[(1, 1.0), (-5, f64::from_bits(STALE_NAN_BITS))],
            ),
            v1_series(&[("__name__", "b")], &[(3, 2.0)]),
        ],
        metadata: vec![],
    };
    fast.timeseries[1].exemplars.push(v1::Exemplar {
        labels: vec![v1::Label::new("trace_id", "t")],
        value: 1.0,
        timestamp: 1,
    });
    vec![
        (Protocol::V1, req.encode_to_vec()),
        (Protocol::V2, b.raw()),
        (Protocol::V1, fast.encode_to_vec()),
    ]
}

/// An appender that refuses every third sample as out of order (exercises the report path).
struct CountingAppender(u64);

impl PairsAppender for CountingAppender {}

impl strata_tsdb::storage::Appender for CountingAppender {
    fn append(&mut self, _: &Labels, t: i64, v: f64) -> strata_tsdb::Result<u64> {
        self.append_ref(0, t, v)
    }
    fn append_ref(&mut self, r: u64, _: i64, _: f64) -> strata_tsdb::Result<u64> {
        self.0 += 1;
        if self.0.is_multiple_of(3) {
            Err(strata_tsdb::Error::OutOfOrderSample)
        } else {
            Ok(r)
        }
    }
    fn commit(&mut self) -> strata_tsdb::Result<()> {
        Ok(())
    }
    fn rollback(&mut self) -> strata_tsdb::Result<()> {
        Ok(())
    }
}

fn ct(p: Protocol) -> &'static str {
    match p {
        Protocol::V1 => "application/x-protobuf",
        Protocol::V2 => V2_CT,
    }
}

fn check_no_panic(p: Protocol, body: &[u8]) {
    let lim = WriteLimits {
        max_decoded_bytes: 1 << 20,
        ..Default::default()
    };
    let got = decode_write(Some(ct(p)), Some("snappy"), body, &lim);
    // The fast 1.0 decoder agrees with prost on everything, errors included.
    let want = decode_write_prost(Some(ct(p)), Some("snappy"), body, &lim);
    assert_eq!(got.as_ref().map(norm), want.as_ref().map(norm));
    let ing = ingest_write(
        Some(ct(p)),
        Some("snappy"),
        body,
        &lim,
        &mut CountingAppender(0),
        NOW,
    );
    match got {
        Ok(batch) => {
            // Whatever decodes must also append without panicking, the same way both paths.
            let rep = append_batch_at(&mut CountingAppender(0), &batch, NOW);
            let _ = rep.error_message();
            assert_eq!(ing.map(|i| i.report), Ok(rep));
        }
        Err(e) => assert_eq!(ing.err(), Some(e)),
    }
}

/// A batch as comparable data (NaN payloads included).
fn norm(b: &WriteBatch) -> (String, Vec<u64>, Vec<u64>) {
    let samples = b
        .series
        .iter()
        .flat_map(|s| s.samples.iter().map(|(_, v)| v.to_bits()))
        .collect();
    let ex = b
        .series
        .iter()
        .flat_map(|s| s.exemplars.iter().map(|e| e.value.to_bits()))
        .collect();
    (format!("{b:?}"), samples, ex)
}

proptest! {
    #[test]
    fn fuzz_random_bytes(v2 in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..256), wrap in any::<bool>()) {
        let p = if v2 { Protocol::V2 } else { Protocol::V1 };
        let body = if wrap { snappy(&bytes) } else { bytes };
        check_no_panic(p, &body);
    }

    #[test]
    fn fuzz_mutated_valid_bodies(
        which in 0usize..3,
        swap in any::<bool>(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        truncate in proptest::option::of(any::<prop::sample::Index>()),
        mutate_compressed in any::<bool>(),
    ) {
        let (p, raw) = valid_bodies().swap_remove(which);
        // Sometimes send a body to the other protocol's decoder.
        let p = match (p, swap) {
            (Protocol::V1, true) => Protocol::V2,
            (Protocol::V2, true) => Protocol::V1,
            (p, false) => p,
        };
        let mut data = if mutate_compressed { snappy(&raw) } else { raw };
        for (i, b, op) in muts {
            if data.is_empty() { break; }
            let i = i.index(data.len());
            match op {
                0 => data[i] = b,
                1 => data[i] ^= 1 << (b % 8),
                _ => data.insert(i, b),
            }
        }
        if let Some(t) = truncate {
            let n = t.index(data.len() + 1);
            data.truncate(n);
        }
        let body = if mutate_compressed { data } else { snappy(&data) };
        check_no_panic(p, &body);
    }
}

// ---- the fast 1.0 decoder against the prost one ----

/// Label strings for random requests: valid, empty, non-ASCII and invalid UTF-8.
fn label_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"__name__".to_vec()),
        Just(b"".to_vec()),
        Just(b"job".to_vec()),
        Just(b"a".to_vec()),
        Just(b"zone".to_vec()),
        Just("h\u{e9}".as_bytes().to_vec()),
        Just(vec![0xff, b'x']),
        Just(vec![b'v'; 130]),
        proptest::collection::vec(b'a'..=b'c', 0..4),
    ]
}

fn sample_strategy() -> impl Strategy<Value = v1::Sample> {
    (
        prop_oneof![
            Just(NOW),
            Just(-1i64),
            Just(NOW + 3_600_000),
            0i64..10,
            any::<i64>()
        ],
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(STALE_NAN_BITS)),
            Just(1.5f64)
        ],
    )
        .prop_map(|(timestamp, value)| v1::Sample { value, timestamp })
}

fn raw_label() -> impl Strategy<Value = v1::Label> {
    (label_bytes(), label_bytes()).prop_map(|(name, value)| v1::Label { name, value })
}

fn series_strategy() -> impl Strategy<Value = v1::TimeSeries> {
    (
        proptest::collection::vec(raw_label(), 0..5),
        any::<bool>(),
        proptest::collection::vec(sample_strategy(), 0..3),
        proptest::collection::vec(
            (
                proptest::collection::vec(raw_label(), 0..3),
                any::<u64>(),
                any::<i64>(),
            ),
            0..2,
        ),
    )
        .prop_map(|(mut labels, named, samples, ex)| {
            if named {
                labels.push(v1::Label::new("__name__", "m"));
            }
            v1::TimeSeries {
                labels,
                samples,
                exemplars: ex
                    .into_iter()
                    .map(|(labels, v, timestamp)| v1::Exemplar {
                        labels,
                        value: f64::from_bits(v),
                        timestamp,
                    })
                    .collect(),
                histograms: vec![],
            }
        })
}

/// Unknown fields the decoders must skip: (tag 15 varint 5), (tag 9 fixed32), (tag 7 bytes).
const UNKNOWN_FIELDS: [&[u8]; 3] = [
    &[0x78, 0x05],
    &[0x4d, 1, 2, 3, 4],
    &[0x3a, 0x02, 0xff, 0x00],
];

fn prost_head_ingest(
    head: &std::sync::Arc<Head>,
    body: &[u8],
) -> Result<AppendReport, super::RemoteError> {
    let batch = decode_write_prost(None, None, body, &WriteLimits::default())?;
    let mut app = head.appender();
    let rep = append_batch_at(&mut app, &batch, NOW);
    strata_tsdb::storage::Appender::commit(&mut app).expect("commit");
    Ok(rep)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fast_v1_matches_prost(
        series in proptest::collection::vec(series_strategy(), 0..6),
        unknown in proptest::option::of(0usize..3),
        metadata in any::<bool>(),
    ) {
        let req = v1::WriteRequest {
            timeseries: series,
            metadata: if metadata {
                vec![v1::MetricMetadata { r#type: 1, metric_family_name: "m".into(), help: "h".into(), unit: "".into() }]
            } else {
                vec![]
            },
        };
        let mut raw = req.encode_to_vec();
        if let Some(u) = unknown {
            raw.extend_from_slice(UNKNOWN_FIELDS[u]);
        }
        // The fast decoder takes every such request without metadata.
        let parsed = super::write::fast_v1::parse_v1(&raw);
        prop_assert_eq!(parsed.is_ok(), !metadata);
        let body = snappy(&raw);
        let got = decode_v1(&body).expect("decodes");
        let want = decode_write_prost(None, None, &body, &WriteLimits::default()).expect("decodes");
        prop_assert_eq!(norm(&got), norm(&want));

        // Ingesting in one pass stores and reports what decode + append_batch does.
        let (h1, h2) = (Head::in_memory(Default::default()), Head::in_memory(Default::default()));
        let mut app = h1.appender();
        let ing = ingest_write(None, None, &body, &WriteLimits::default(), &mut app, NOW).expect("ingests");
        strata_tsdb::storage::Appender::commit(&mut app).expect("commit");
        let rep = prost_head_ingest(&h2, &body).expect("ingests");
        prop_assert_eq!(&ing.report, &rep);
        let want_ex: Vec<(Labels, Exemplar)> = want
            .series
            .iter()
            .flat_map(|s| s.exemplars.iter().map(|e| (s.labels.clone(), e.clone())))
            .collect();
        prop_assert_eq!(format!("{:?}", ing.exemplars), format!("{want_ex:?}"));
        prop_assert_eq!(ing.metadata, want.metadata);
        let bits = |v: Vec<(Labels, Vec<(i64, f64)>)>| -> Vec<(String, Vec<(i64, u64)>)> {
            v.into_iter().map(|(l, s)| (l.to_string(), s.into_iter().map(|(t, v)| (t, v.to_bits())).collect())).collect()
        };
        prop_assert_eq!(bits(read_all(&h1, "m")), bits(read_all(&h2, "m")));
        prop_assert_eq!(bits(read_all(&h1, "a")), bits(read_all(&h2, "a")));
    }
}

#[test]
fn fast_v1_wire_corner_cases() {
    let body_of = |raw: &[u8]| snappy(raw);
    let same = |raw: &[u8]| {
        let body = body_of(raw);
        let got = decode_v1(&body);
        let want = decode_write_prost(None, None, &body, &WriteLimits::default());
        assert_eq!(
            got.as_ref().map(norm),
            want.as_ref().map(norm),
            "{raw:02x?}"
        );
        got
    };
    // Label with name given twice (the last wins) and an unknown field inside.
    let label = [
        0x0a, 1, b'x', 0x0a, 8, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', 0x18, 1, 0x12, 1,
        b'm',
    ];
    // Sample with value and timestamp swapped in order, and a negative (10-byte) timestamp.
    let mut sample = vec![0x10];
    let mut t = (-2i64) as u64;
    while t >= 0x80 {
        sample.push((t as u8) | 0x80);
        t >>= 7;
    }
    sample.push(t as u8);
    sample.push(0x09);
    sample.extend_from_slice(&2.5f64.to_le_bytes());
    let mut ts = vec![0x0a, label.len() as u8];
    ts.extend_from_slice(&label);
    ts.push(0x12);
    ts.push(sample.len() as u8);
    ts.extend_from_slice(&sample);
    let mut raw = vec![0x0a, ts.len() as u8];
    raw.extend_from_slice(&ts);
    assert!(super::write::fast_v1::parse_v1(&raw).is_ok());
    let b = same(&raw).expect("decodes");
    assert_eq!(b.series.len(), 1);
    assert_eq!(b.series[0].labels.to_string(), "{__name__=\"m\"}");
    assert_eq!(b.series[0].samples, vec![(-2, 2.5)]);

    // A group (wire type 3) at the top level: prost decides (and refuses), same message.
    let mut grouped = raw.clone();
    grouped.extend_from_slice(&[0x7b, 0x7c]); // start group 15, end group 15
    assert!(super::write::fast_v1::parse_v1(&grouped).is_err());
    same(&grouped).ok();
    // Known field with the wrong wire type; truncated; an over-long varint.
    for bad in [
        vec![0x08, 0x01],
        raw[..raw.len() - 1].to_vec(),
        vec![
            0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
        ],
        vec![0x00],
    ] {
        assert!(super::write::fast_v1::parse_v1(&bad).is_err());
        assert!(same(&bad).is_err());
    }
    // A histogram makes the whole request go through prost.
    let mut with_h = v1_series(&[("__name__", "h")], &[]);
    with_h.histograms.push(v1::Histogram::default());
    let raw = v1::WriteRequest {
        timeseries: vec![with_h],
        metadata: vec![],
    }
    .encode_to_vec();
    assert!(super::write::fast_v1::parse_v1(&raw).is_err());
    same(&raw).ok();
}
