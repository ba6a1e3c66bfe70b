//! XOR chunk encode/decode throughput.
//!
//! Workload: 120-sample chunks (Prometheus' target chunk size) of realistic scrape data:
//! 15 s interval with a few ms of jitter, for a counter (monotonic, decimal increments), a
//! gauge (random walk rounded to 2 decimals) and a constant (e.g. `up`). Reported as
//! samples/s (criterion `Throughput::Elements`).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use strata_tsdb::chunkenc::{encode_xor, XorChunk, XorIterator};
use strata_tsdb::storage::SampleIterator;

const N: usize = 120;

fn series(kind: &str, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 1_700_000_000_000i64;
    let mut v: f64 = 1000.0;
    (0..N)
        .map(|_| {
            t += 15_000 + rng.gen_range(-3..=3);
            match kind {
                "counter" => v += (rng.gen_range(0..2000) as f64) / 10.0,
                "gauge" => v = ((v + rng.gen_range(-5.0..5.0)) * 100.0).round() / 100.0,
                _ => v = 1.0,
            }
            (t, v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for kind in ["counter", "gauge", "constant"] {
        let samples = series(kind, 42);
        let chunk = encode_xor(&samples).unwrap();
        eprintln!(
            "{kind}: {} bytes for {N} samples ({:.2} bytes/sample)",
            chunk.bytes().len(),
            chunk.bytes().len() as f64 / N as f64
        );

        let mut g = c.benchmark_group("xor");
        g.throughput(Throughput::Elements(N as u64));
        g.bench_with_input(BenchmarkId::new("encode", kind), &samples, |b, s| {
            b.iter(|| {
                let mut c = XorChunk::new();
                for &(t, v) in s {
                    c.append(t, v).unwrap();
                }
                black_box(c.bytes().len())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("decode", kind),
            chunk.bytes(),
            |b, bytes| {
                b.iter(|| {
                    let mut it = XorIterator::new(black_box(bytes));
                    let mut sum = 0.0;
                    let mut last = 0;
                    while it.next() {
                        let (t, v) = it.at();
                        sum += v;
                        last = t;
                    }
                    black_box((sum, last))
                })
            },
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
