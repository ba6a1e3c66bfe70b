//! Remote-read round trips against a head with data, decoded with the crate's own messages.

use std::sync::Arc;

use prost::Message;
use strata_ingest::remote::proto::v1::{
    ChunkEncoding, ChunkedReadResponse, LabelMatcher, MatcherType, Query, ReadHints, ReadRequest,
    ReadResponse, ResponseType,
};
use strata_tsdb::chunkenc::decode_xor;
use strata_tsdb::head::Head;
use strata_tsdb::storage::{Appender, STALE_NAN_BITS};
use strata_tsdb::Labels;

use super::*;

const T0: i64 = 1_700_000_000_000;

/// Three series: `a{job="x"}` with 300 samples (3 chunks), `a{job="y"}` with 5, `b` with 1.
fn head() -> Arc<Head> {
    let head = Head::in_memory(Default::default());
    let mut app = head.appender();
    let x = Labels::from_pairs(&[("__name__", "a"), ("job", "x")]);
    let y = Labels::from_pairs(&[("__name__", "a"), ("job", "y")]);
    for i in 0..300 {
        app.append(&x, T0 + i * 1000, i as f64).expect("append");
    }
    for i in 0..5 {
        let v = if i == 4 {
            f64::from_bits(STALE_NAN_BITS)
        } else {
            -(i as f64)
        };
        app.append(&y, T0 + i * 1000, v).expect("append");
    }
    app.append(&Labels::from_pairs(&[("__name__", "b")]), T0, 7.0)
        .expect("append");
    app.commit().expect("commit");
    head
}

fn m(t: MatcherType, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn request(queries: Vec<Query>, types: &[ResponseType]) -> Vec<u8> {
    let req = ReadRequest {
        queries,
        accepted_response_types: types.iter().map(|t| *t as i32).collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn q(start: i64, end: i64, ms: Vec<LabelMatcher>) -> Query {
    Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: ms,
        hints: Some(ReadHints {
            start_ms: start,
            end_ms: end,
            ..Default::default()
        }),
    }
}

fn labels_of(pb: &[v1::Label]) -> Vec<(String, String)> {
    pb.iter()
        .map(|l| {
            (
                String::from_utf8(l.name.clone()).expect("utf8"),
                String::from_utf8(l.value.clone()).expect("utf8"),
            )
        })
        .collect()
}

/// Parses the streamed format, checking every frame's CRC.
fn parse_frames(mut b: &[u8]) -> Vec<ChunkedReadResponse> {
    let mut out = vec![];
    while !b.is_empty() {
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let c = b[0];
            b = &b[1..];
            len |= u64::from(c & 0x7f) << shift;
            shift += 7;
            if c < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let msg = &b[4..4 + len as usize];
        assert_eq!(crc, crc32c::crc32c(msg), "frame checksum");
        out.push(ChunkedReadResponse::decode(msg).expect("frame decodes"));
        b = &b[4 + len as usize..];
    }
    out
}

#[test]
fn samples_round_trip() {
    let h = head();
    let body = request(
        vec![
            q(T0, T0 + 2000, vec![m(MatcherType::Eq, "__name__", "a")]),
            q(
                i64::MIN,
                i64::MAX,
                vec![m(MatcherType::Re, "__name__", "b|c")],
            ),
            q(T0, T0 + 1000, vec![m(MatcherType::Eq, "__name__", "nope")]),
        ],
        &[],
    );
    let reply = handle_read(&h, None, Some("snappy"), &body, &ReadLimits::default()).expect("read");
    assert_eq!(reply.content_type, "application/x-protobuf");
    assert_eq!(reply.content_encoding, Some("snappy"));
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&reply.body)
        .expect("snappy");
    let resp = ReadResponse::decode(raw.as_slice()).expect("decode");
    assert_eq!(resp.results.len(), 3);
    let r0 = &resp.results[0].timeseries;
    assert_eq!(r0.len(), 2);
    assert_eq!(
        labels_of(&r0[0].labels),
        [("__name__".into(), "a".into()), ("job".into(), "x".into())]
    );
    let s: Vec<(i64, f64)> = r0[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(s, vec![(T0, 0.0), (T0 + 1000, 1.0), (T0 + 2000, 2.0)]);
    assert_eq!(r0[1].samples.len(), 3);
    assert_eq!(resp.results[1].timeseries.len(), 1);
    assert_eq!(resp.results[1].timeseries[0].samples[0].value, 7.0);
    assert!(resp.results[2].timeseries.is_empty());
}

#[test]
fn streamed_chunks_round_trip() {
    let h = head();
    let body = request(
        vec![
            q(
                i64::MIN,
                i64::MAX,
                vec![m(MatcherType::Eq, "__name__", "a")],
            ),
            q(T0, T0, vec![m(MatcherType::Neq, "__name__", "a")]),
        ],
        &[ResponseType::StreamedXorChunks, ResponseType::Samples],
    );
    let reply = handle_read(&h, None, None, &body, &ReadLimits::default()).expect("read");
    assert_eq!(
        reply.content_type,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    assert_eq!(reply.content_encoding, None);
    let frames = parse_frames(&reply.body);
    assert_eq!(frames.len(), 3, "one frame per series");
    assert_eq!(
        frames.iter().map(|f| f.query_index).collect::<Vec<_>>(),
        [0, 0, 1]
    );
    let x = &frames[0].chunked_series[0];
    assert_eq!(labels_of(&x.labels)[1], ("job".into(), "x".into()));
    assert_eq!(x.chunks.len(), 3, "300 samples in chunks of 120");
    let mut all = vec![];
    for c in &x.chunks {
        assert_eq!(c.r#type, ChunkEncoding::Xor as i32);
        let mut s = vec![];
        decode_xor(&c.data, &mut s).expect("xor");
        assert_eq!((c.min_time_ms, c.max_time_ms), (s[0].0, s[s.len() - 1].0));
        all.extend(s);
    }
    let want: Vec<(i64, f64)> = (0..300).map(|i| (T0 + i * 1000, i as f64)).collect();
    assert_eq!(all, want);
    let mut y = vec![];
    decode_xor(&frames[1].chunked_series[0].chunks[0].data, &mut y).expect("xor");
    assert_eq!(y[4].1.to_bits(), STALE_NAN_BITS, "stale marker bit-exact");
    assert_eq!(labels_of(&frames[2].chunked_series[0].labels)[0].1, "b");
}

#[test]
fn streamed_frames_split_big_series() {
    let h = head();
    let body = request(
        vec![q(i64::MIN, i64::MAX, vec![m(MatcherType::Eq, "job", "x")])],
        &[ResponseType::StreamedXorChunks],
    );
    let limits = ReadLimits {
        max_bytes_in_frame: 50,
        ..Default::default()
    };
    let reply = handle_read(&h, None, None, &body, &limits).expect("read");
    let frames = parse_frames(&reply.body);
    assert_eq!(frames.len(), 3, "each chunk overflows the frame budget");
    let n: usize = frames
        .iter()
        .map(|f| f.chunked_series[0].chunks.len())
        .sum();
    assert_eq!(n, 3);
}

#[test]
fn read_errors() {
    let h = head();
    let lim = ReadLimits::default();
    // Corrupt snappy and protobuf.
    assert_eq!(
        handle_read(&h, None, None, b"\xff\x00", &lim)
            .unwrap_err()
            .status,
        400
    );
    let junk = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff")
        .expect("snappy");
    assert_eq!(
        handle_read(&h, None, None, &junk, &lim).unwrap_err().status,
        400
    );
    // Bad regex.
    let body = request(vec![q(0, 1, vec![m(MatcherType::Re, "a", "(")])], &[]);
    assert_eq!(
        handle_read(&h, None, None, &body, &lim).unwrap_err().status,
        400
    );
    // Unknown response type only.
    let req = ReadRequest {
        queries: vec![],
        accepted_response_types: vec![7],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    assert_eq!(
        handle_read(&h, None, None, &body, &lim).unwrap_err().status,
        400
    );
    // Sample limit.
    let body = request(
        vec![q(
            i64::MIN,
            i64::MAX,
            vec![m(MatcherType::Eq, "__name__", "a")],
        )],
        &[],
    );
    let small = ReadLimits {
        max_samples: 10,
        ..Default::default()
    };
    let e = handle_read(&h, None, None, &body, &small).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "exceeded sample limit (10)")
    );
    // Wrong encoding; oversized claim.
    assert_eq!(
        handle_read(&h, None, Some("gzip"), &body, &lim)
            .unwrap_err()
            .status,
        415
    );
    let huge = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00, b'x'];
    assert_eq!(
        handle_read(&h, None, None, &huge, &lim).unwrap_err().status,
        413
    );
}
