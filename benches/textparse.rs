//! Exposition-format parser throughput on Prometheus's fixtures (`../shared/prometheus/
//! textparse/`): the 237-family Prometheus text file and the OpenMetrics files, reported as
//! bytes/s and samples/s. Run with `cargo bench --bench textparse`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_ingest::openmetrics::OpenMetricsParser;
use strata_ingest::promtext::PromTextParser;
use strata_ingest::textparse::Entry;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/prometheus/textparse"
);

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}"))
        .unwrap_or_else(|e| panic!("fixture {DIR}/{name} is required: {e}"))
}

/// Parses the whole body, building each sample's label set as the scrape loop does for a new
/// series; returns the sample count.
fn parse_text(body: &str) -> usize {
    let mut n = 0;
    for e in PromTextParser::new(body) {
        if let Entry::Sample(s) = e.expect("fixture parses") {
            std::hint::black_box(s.to_labels().expect("labels"));
            n += 1;
        }
    }
    n
}

fn parse_om(body: &str) -> usize {
    let mut n = 0;
    for e in OpenMetricsParser::new(body) {
        if let Entry::Sample(s) = e.expect("fixture parses") {
            std::hint::black_box(s.to_labels().expect("labels"));
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    type Parse = fn(&str) -> usize;
    let cases: [(&str, &str, Parse); 2] = [
        ("promtext_237mfs", "alltypes.237mfs.prom.txt", parse_text),
        ("openmetrics_5mfs", "alltypes.5mfs.om.txt", parse_om),
    ];
    for (name, file, parse) in cases {
        let body = read(file);
        let samples = parse(&body);
        let mut g = c.benchmark_group(format!("{name}_bytes"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("parse", |b| b.iter(|| parse(std::hint::black_box(&body))));
        g.finish();
        let mut g = c.benchmark_group(format!("{name}_samples"));
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function("parse", |b| b.iter(|| parse(std::hint::black_box(&body))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
