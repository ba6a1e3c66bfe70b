//! Byte identity against the real Prometheus: `promtool tsdb create-blocks-from openmetrics`
//! (Debian's Prometheus 2.42) writes blocks from a generated OpenMetrics file; every chunk it
//! wrote must decode with our iterator and re-encode with our encoder to the same bytes, and
//! our chunk-cutting rule applied to the input series must produce exactly the same chunks.
//!
//! Fails loudly when promtool is missing: it never passes silently.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};
use strata_tsdb::chunkenc::{encode_xor, ChunkCutter, CutPolicy, Encoding, XorIterator};
use strata_tsdb::chunks::ChunkReader;
use strata_tsdb::storage::SampleIterator;

const BLOCK_DURATION: i64 = 2 * 3600 * 1000;
/// Go's `math.NaN()`, which `strconv.ParseFloat("NaN")` returns.
const GO_NAN_BITS: u64 = 0x7FF8_0000_0000_0001;

fn promtool() -> String {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => bin,
        Ok(o) => panic!(
            "`{bin} --version` failed ({}): {}. This test needs Prometheus' promtool \
             (Debian package `prometheus`, or set PROMTOOL=/path/to/promtool).",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "promtool not found ({bin}: {e}). This test needs Prometheus' promtool \
             (Debian package `prometheus`, or set PROMTOOL=/path/to/promtool)."
        ),
    }
}

struct Series {
    name: String,
    labels: String,
    kind: &'static str,
    /// (timestamp text in seconds, value text)
    samples: Vec<(String, String)>,
}

fn fmt_ts(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// What promtool 2.42's OpenMetrics parser makes of the text: `int64(float64(ts) * 1000)`.
fn parse_ts(s: &str) -> i64 {
    (s.parse::<f64>().unwrap() * 1000.0) as i64
}

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::from_bits(GO_NAN_BITS),
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

fn generate() -> Vec<Series> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20240601);
    let start = 1_700_000_123_456i64; // not aligned to the block duration
    let n = 5 * 3600 / 15; // ~5h at 15s
    let mut out = Vec::new();
    let jitter = |rng: &mut rand::rngs::StdRng| rng.gen_range(-25i64..=25);

    for (i, path) in ["/api", "/login", "/metrics"].iter().enumerate() {
        for code in ["200", "500"] {
            let mut v = rng.gen_range(0.0..1000.0f64).floor();
            let mut samples = Vec::new();
            for k in 0..n {
                let ts = start + k as i64 * 15_000 + jitter(&mut rng) + i as i64 * 3;
                if code == "500" && rng.gen_bool(0.7) {
                    // mostly constant
                } else {
                    v += (rng.gen_range(0..5000) as f64) / 100.0;
                }
                samples.push((fmt_ts(ts), format!("{v}")));
            }
            out.push(Series {
                name: "http_requests".into(),
                labels: format!("code=\"{code}\",path=\"{path}\""),
                kind: "counter",
                samples,
            });
        }
    }
    for room in ["attic", "cellar", "kitchen"] {
        let mut v = 20.0f64;
        let mut samples = Vec::new();
        for k in 0..n {
            // The cellar sensor is missing for an hour.
            if room == "cellar" && (400..640).contains(&k) {
                continue;
            }
            let ts = start + k as i64 * 15_000 + jitter(&mut rng);
            v += rng.gen_range(-0.05..0.05);
            let text = if room == "kitchen" && k % 97 == 5 {
                "NaN".to_string()
            } else {
                format!("{:.2}", v)
            };
            samples.push((fmt_ts(ts), text));
        }
        out.push(Series {
            name: "room_temperature_celsius".into(),
            labels: format!("room=\"{room}\""),
            kind: "gauge",
            samples,
        });
    }
    // Full-precision random values: large chunks (over 1 KiB), which 2.42 does not cut by size.
    let mut samples = Vec::new();
    for k in 0..n {
        let ts = start + k as i64 * 10_000 + jitter(&mut rng);
        let v: f64 = rng.gen::<f64>() * 1e6;
        samples.push((fmt_ts(ts), format!("{v}")));
    }
    out.push(Series {
        name: "noise".into(),
        labels: "src=\"rng\"".into(),
        kind: "gauge",
        samples,
    });
    // A slow series: one sample per 5 minutes.
    let mut samples = Vec::new();
    for k in 0..60 {
        let ts = start + k as i64 * 300_000 + 7;
        samples.push((fmt_ts(ts), format!("{}", 1.5 * k as f64)));
    }
    // A series with a single sample: a one-sample chunk, which 2.42 ends with an empty byte.
    out.push(Series {
        name: "build_info".into(),
        labels: "version=\"1.0\"".into(),
        kind: "gauge",
        samples: vec![(fmt_ts(start + 3_600_000), "1".into())],
    });
    out.push(Series {
        name: "slow_gauge".into(),
        labels: String::new(),
        kind: "gauge",
        samples,
    });
    out
}

fn write_openmetrics(series: &[Series], path: &Path) {
    let mut s = String::new();
    let mut families: BTreeMap<(&str, &str), Vec<&Series>> = BTreeMap::new();
    for se in series {
        families.entry((&se.name, se.kind)).or_default().push(se);
    }
    for ((name, kind), members) in families {
        s.push_str(&format!("# TYPE {name} {kind}\n"));
        let metric = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        for se in members {
            let lbl = if se.labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", se.labels)
            };
            for (ts, v) in &se.samples {
                s.push_str(&format!("{metric}{lbl} {v} {ts}\n"));
            }
        }
    }
    s.push_str("# EOF\n");
    std::fs::write(path, s).unwrap();
}

/// The chunks promtool should write for these series: per 2h block window (aligned to the
/// block duration), the head's cutting rule with promtool's chunk range of 2 × 2h.
fn expected_chunks(series: &[Series]) -> (Vec<Vec<u8>>, usize) {
    let cutter = ChunkCutter::new(2 * BLOCK_DURATION, CutPolicy::Prometheus2);
    let mut out = Vec::new();
    let mut total = 0;
    for se in series {
        let samples: Vec<(i64, f64)> = se
            .samples
            .iter()
            .map(|(t, v)| (parse_ts(t), parse_value(v)))
            .collect();
        total += samples.len();
        let mut windows: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for s in samples {
            windows
                .entry(s.0.div_euclid(BLOCK_DURATION))
                .or_default()
                .push(s);
        }
        for w in windows.values() {
            for (_, _, c) in cutter.chunk_samples(w).unwrap() {
                out.push(c.into_bytes());
            }
        }
    }
    out.sort();
    (out, total)
}

#[test]
fn promtool_blocks_are_byte_identical() {
    let promtool = promtool();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.om");
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let series = generate();
    write_openmetrics(&series, &input);

    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(&blocks)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut got = Vec::new();
    let mut total_samples = 0usize;
    let mut nblocks = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&blocks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    for block in dirs {
        nblocks += 1;
        let reader = ChunkReader::open(block.join("chunks")).unwrap();
        assert!(reader.num_segments() >= 1);
        for seg in 0..reader.num_segments() {
            for chunk in reader.segment_chunks(seg).unwrap() {
                let chunk = chunk.unwrap_or_else(|e| panic!("{}: {e}", block.display()));
                assert_eq!(chunk.encoding, Encoding::Xor);
                let mut it = XorIterator::new(chunk.data);
                let mut samples = Vec::new();
                while it.next() {
                    samples.push(it.at());
                }
                assert!(it.err().is_none(), "decode: {:?}", it.err());
                assert_eq!(samples.len(), it.num_samples());
                assert!(samples.len() <= 240, "chunk of {} samples", samples.len());
                total_samples += samples.len();
                let again = encode_xor(&samples).unwrap();
                assert_eq!(
                    again.bytes(),
                    chunk.data,
                    "chunk {:#x} in {} re-encodes differently ({} samples)",
                    chunk.chunk_ref,
                    block.display(),
                    samples.len()
                );
                // Random reads by reference agree with the segment walk.
                assert_eq!(reader.chunk(chunk.chunk_ref).unwrap().1, chunk.data);
                got.push(chunk.data.to_vec());
            }
        }
    }
    assert!(
        nblocks >= 3,
        "expected ~5h of data to span at least 3 blocks, got {nblocks}"
    );
    got.sort();
    // The data exercises big chunks (no size cut in 2.42) and short chunks.
    assert!(got.iter().any(|c| c.len() > 1024), "no chunk over 1 KiB");
    let counts: Vec<usize> = got
        .iter()
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as usize)
        .collect();
    assert!(counts.iter().any(|&n| n < 30), "no short chunk");
    // Chunks that still decode without their last byte end in 2.42's empty trailing byte.
    let trailing = got
        .iter()
        .filter(|c| {
            let mut it = XorIterator::new(&c[..c.len() - 1]);
            while it.next() {}
            it.err().is_none()
        })
        .count();
    assert!(
        trailing >= 1,
        "no chunk exercises 2.42's trailing empty byte"
    );
    eprintln!(
        "{trailing} chunks with 2.42's trailing byte; {nblocks} blocks, {} chunks, {total_samples} samples, sizes {}..{} bytes",
        got.len(),
        got.iter().map(|c| c.len()).min().unwrap_or(0),
        got.iter().map(|c| c.len()).max().unwrap_or(0)
    );

    let (want, want_samples) = expected_chunks(&series);
    assert_eq!(total_samples, want_samples, "sample count");
    assert_eq!(got.len(), want.len(), "chunk count");
    assert!(got == want, "chunk contents differ from our cutting rule's");
}
