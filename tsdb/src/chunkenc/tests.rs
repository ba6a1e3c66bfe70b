use super::*;
use crate::storage::{stale_nan, SampleIterator, STALE_NAN_BITS};
use proptest::prelude::*;

fn decode(b: &[u8]) -> Vec<(i64, u64)> {
    let mut it = XorIterator::new(b);
    let mut out = Vec::new();
    while it.next() {
        let (t, v) = it.at();
        out.push((t, v.to_bits()));
    }
    assert!(it.err().is_none(), "decode error: {:?}", it.err());
    out
}

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn realistic(n: usize) -> Vec<(i64, f64)> {
    let mut t = 1_700_000_000_000i64;
    let mut v = 100.0;
    (0..n)
        .map(|i| {
            t += 15_000 + (i as i64 * 7919 % 11) - 5;
            v += (i % 7) as f64 * 0.25;
            (t, v)
        })
        .collect()
}

#[test]
fn encoding_ids() {
    for id in 0..=3u8 {
        assert_eq!(check_encoding(id).unwrap().as_u8(), id);
    }
    assert!(matches!(check_encoding(4), Err(Error::UnknownEncoding(4))));
    assert!(matches!(
        check_encoding(0x81),
        Err(Error::UnknownEncoding(0x81))
    ));
    assert!(require_decodable(Encoding::Xor).is_ok());
    let e = require_decodable(Encoding::Histogram)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn one_sample_chunk_has_242_trailing_byte() {
    let mut c = XorChunk::new();
    c.append(1000, 1.0).unwrap();
    // header, zig-zag varint 2000, 64 bits of 1.0, then 2.42's empty trailing byte.
    assert_eq!(
        c.bytes(),
        &[0, 1, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0][..]
    );
    assert_eq!(c.num_samples(), 1);
    assert_eq!(decode(c.bytes()), vec![(1000, 1.0f64.to_bits())]);
}

#[test]
fn known_small_chunk_bytes() {
    // Hand-derived from Prometheus' algorithm: t=0,v=0; t=1,v=0 (delta 1, value unchanged);
    // t=2,v=0 (dod 0, value unchanged).
    let c = encode_xor(&[(0, 0.0), (1, 0.0), (2, 0.0)]).unwrap();
    // header 00 03 | varint(0)=00 | 8 zero bytes | uvarint(1)=01 | bit 0 (value) | bit 0 (dod)
    // | bit 0 (value).
    assert_eq!(c.bytes(), &[0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0][..]);
}

#[test]
fn round_trip_realistic() {
    let s = realistic(120);
    let c = encode_xor(&s).unwrap();
    assert_eq!(c.num_samples(), 120);
    assert_eq!(decode(c.bytes()), bits(&s));
    assert!(c.bytes().len() < 120 * 4, "{} bytes", c.bytes().len());
    let mut out = Vec::new();
    decode_xor(c.bytes(), &mut out).unwrap();
    assert_eq!(bits(&out), bits(&s));
}

#[test]
fn special_values_and_dod_buckets() {
    let s = vec![
        (i64::MIN + 5, f64::NAN),
        (-1_000_000, f64::INFINITY),
        (-999_999, f64::NEG_INFINITY),
        (-999_998, stale_nan()),
        (0, -0.0),
        (8192, 0.0),
        (8192 * 2 + 1, 1e300),
        (8192 * 4 - 8190, -1e-300),
        (1 << 40, f64::MIN_POSITIVE),
        ((1 << 40) + 65536, 5e-324),
        ((1 << 40) + 65536 * 3, f64::MAX),
        (i64::MAX - 1, 42.0),
        (i64::MAX, 42.0),
    ];
    let c = encode_xor(&s).unwrap();
    let d = decode(c.bytes());
    assert_eq!(d, bits(&s));
    assert_eq!(d[3].1, STALE_NAN_BITS);
}

#[test]
fn seek_never_moves_backwards() {
    let s: Vec<(i64, f64)> = (0..50).map(|i| (i * 10, i as f64)).collect();
    let c = encode_xor(&s).unwrap();
    let mut it = c.iter();
    assert!(it.seek(-5));
    assert_eq!(it.at().0, 0);
    assert!(it.seek(95));
    assert_eq!(it.at(), (100, 10.0));
    assert!(it.seek(100));
    assert_eq!(it.at().0, 100);
    assert!(it.seek(20), "seeking backwards stays put");
    assert_eq!(it.at().0, 100);
    assert!(it.next());
    assert_eq!(it.at().0, 110);
    assert!(it.seek(490));
    assert_eq!(it.at().0, 490);
    assert!(!it.seek(491));
    assert!(!it.seek(0), "exhausted iterators stay exhausted");
    assert!(!it.next());
    assert!(it.err().is_none());
}

#[test]
fn resume_appending_matches_full_decode() {
    let s = realistic(60);
    for k in 0..s.len() {
        let prefix = encode_xor(&s[..k]).unwrap();
        let mut c = XorChunk::from_bytes(prefix.bytes().to_vec()).unwrap();
        {
            let mut app = c.appender().unwrap();
            for &(t, v) in &s[k..] {
                app.append(t, v).unwrap();
            }
        }
        assert_eq!(decode(c.bytes()), bits(&s), "resume after {k} samples");
        if k >= 2 {
            // Values change at sample 1, so the appender state is fully known: same bytes.
            assert_eq!(c.bytes(), encode_xor(&s).unwrap().bytes(), "k={k}");
        }
    }
}

#[test]
fn resume_with_trailing_garbage_is_trimmed() {
    let s = realistic(10);
    let mut b = encode_xor(&s[..5]).unwrap().into_bytes();
    b.extend_from_slice(&[0xff; 20]);
    let mut c = XorChunk::from_bytes(b).unwrap();
    for &(t, v) in &s[5..] {
        c.append(t, v).unwrap();
    }
    assert_eq!(decode(c.bytes()), bits(&s));
}

#[test]
fn corrupt_chunks_error_without_panicking() {
    assert!(XorChunk::from_bytes(vec![1]).is_err());
    let mut it = XorIterator::new(vec![0u8]);
    assert!(!it.next());
    assert!(it.err().unwrap().contains("shorter"));

    let full = encode_xor(&realistic(120)).unwrap().into_bytes();
    for cut in 2..full.len() - 1 {
        let mut it = XorIterator::new(&full[..cut]);
        let mut n = 0;
        while it.next() {
            n += 1;
        }
        assert!(n < 120);
        assert!(
            it.err().is_some(),
            "truncated at {cut} must report an error"
        );
    }
    // Header claims more samples than there are.
    let mut b = full.clone();
    b[0] = 0xff;
    let mut it = XorIterator::new(b);
    while it.next() {}
    assert!(it.err().unwrap().contains("ends after"));
    // Appending to a corrupt loaded chunk fails cleanly.
    let mut c = XorChunk::from_bytes(vec![0, 5, 1, 2]).unwrap();
    assert!(c.append(1, 1.0).is_err());
}

#[test]
fn full_chunk_refuses_more_samples() {
    let mut c = XorChunk::new();
    for i in 0..65535 {
        c.append(i, 1.0).unwrap();
    }
    assert!(c.append(70000, 1.0).is_err());
    assert_eq!(c.num_samples(), 65535);
}

#[test]
fn cutter_prometheus_defaults() {
    // 15s scrapes from an aligned start in a 2h range: four 30-minute chunks of 120 samples.
    let s: Vec<(i64, f64)> = (0..480).map(|i| (i * 15_000, i as f64)).collect();
    let cutter = ChunkCutter::new(DEFAULT_CHUNK_RANGE, CutPolicy::Prometheus2);
    let chunks = cutter.chunk_samples(&s).unwrap();
    let counts: Vec<usize> = chunks.iter().map(|c| c.2.num_samples()).collect();
    assert_eq!(counts, vec![120, 120, 120, 120]);
    assert_eq!(chunks[1].0, 1_800_000);

    // A chunk never crosses the chunk range boundary.
    let s: Vec<(i64, f64)> = (0..100).map(|i| (7_000_000 + i * 15_000, 0.0)).collect();
    let chunks = cutter.chunk_samples(&s).unwrap();
    assert_eq!(chunks[0].1, 7_195_000);
    assert_eq!(chunks[1].0, 7_210_000);

    // Fast samples: cut at 240.
    let s: Vec<(i64, f64)> = (0..600).map(|i| (i, 0.0)).collect();
    let mut c2 = cutter;
    c2.chunk_range = i64::MAX / 2;
    let chunks = c2.chunk_samples(&s).unwrap();
    assert!(chunks.iter().all(|c| c.2.num_samples() <= 240));
}

#[test]
fn cutter_v3_byte_limit() {
    let mut x = 0x1234_5678_9abc_def0u64;
    let s: Vec<(i64, f64)> = (0..120)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (i * 15_000, f64::from_bits(x))
        })
        .collect();
    let v3 = ChunkCutter::new(DEFAULT_CHUNK_RANGE, CutPolicy::Prometheus3);
    let v2 = ChunkCutter::new(DEFAULT_CHUNK_RANGE, CutPolicy::Prometheus2);
    let a = v3.chunk_samples(&s).unwrap();
    let b = v2.chunk_samples(&s).unwrap();
    assert_eq!(b.len(), 1);
    assert!(b[0].2.bytes().len() > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND);
    assert!(a.len() > b.len());
    assert!(a
        .iter()
        .all(|c| c.2.bytes().len() <= MAX_BYTES_PER_XOR_CHUNK));
}

#[test]
fn end_time_prediction() {
    assert_eq!(range_for_timestamp(7_199_999, 7_200_000), 7_200_000);
    assert_eq!(range_for_timestamp(7_200_000, 7_200_000), 14_400_000);
    assert_eq!(range_for_timestamp(-1, 10), 10);
    assert_eq!(compute_chunk_end_time_v2(0, 435_000, 7_200_000), 1_800_000);
    assert_eq!(
        compute_chunk_end_time_v3(0, 435_000, 7_200_000, 4.0),
        1_800_000
    );
    // Ratios between 1 and 2: both versions give max.
    assert_eq!(compute_chunk_end_time_v2(0, 999, 6000), 6000);
    assert_eq!(compute_chunk_end_time_v3(0, 999, 6000, 4.0), 6000);
}

fn sample_strategy() -> impl Strategy<Value = Vec<(i64, f64)>> {
    let value = prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::from_bits(STALE_NAN_BITS)),
        (0i64..1000).prop_map(|i| i as f64 * 0.1),
        Just(1.0),
    ];
    let gap = prop_oneof![
        Just(15_000i64),
        14_990i64..15_010,
        1i64..100,
        1i64..(1 << 20),
        1i64..(1 << 40),
    ];
    (any::<i64>(), prop::collection::vec((gap, value), 0..300)).prop_map(|(start, steps)| {
        let mut t = start / 2;
        let mut out = Vec::new();
        for (g, v) in steps {
            t = match t.checked_add(g) {
                Some(t) => t,
                None => break,
            };
            out.push((t, v));
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn prop_round_trip(s in sample_strategy()) {
        let c = encode_xor(&s).unwrap();
        prop_assert_eq!(c.num_samples(), s.len());
        prop_assert_eq!(decode(c.bytes()), bits(&s));
        // Resuming in the middle decodes the same samples.
        let k = s.len() / 2;
        let mut r = XorChunk::from_bytes(encode_xor(&s[..k]).unwrap().into_bytes()).unwrap();
        for &(t, v) in &s[k..] { r.append(t, v).unwrap(); }
        prop_assert_eq!(decode(r.bytes()), bits(&s));
    }

    #[test]
    fn prop_seek(s in sample_strategy(), probes in prop::collection::vec(any::<i64>(), 1..10)) {
        let c = encode_xor(&s).unwrap();
        let mut it = c.iter();
        let mut cur: Option<usize> = None;
        let mut sorted = probes.clone();
        sorted.sort();
        for p in sorted {
            let found = it.seek(p);
            let from = cur.unwrap_or(0);
            let expect = match cur {
                Some(i) if s[i].0 >= p => Some(i),
                _ => s[from..].iter().position(|x| x.0 >= p).map(|j| from + j),
            };
            prop_assert_eq!(found, expect.is_some());
            match expect {
                Some(i) => { prop_assert_eq!(it.at().0, s[i].0); cur = Some(i); }
                None => break,
            }
        }
    }

    #[test]
    fn prop_garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut it = XorIterator::new(b.clone());
        let mut n = 0usize;
        while it.next() { n += 1; }
        prop_assert!(n <= it.num_samples());
        if let Ok(mut c) = XorChunk::from_bytes(b) {
            let _ = c.append(i64::MAX, 1.0);
        }
    }
}
