//! Postings intersection in the head for a three-matcher selector.
//!
//! Workload: a dashboard panel's selector
//! `{__name__="http_requests_total", job="api", instance=~"host-1.*"}` over an in-memory head
//! of 1M series (10,000 targets × 100 series, see `common`). Two equality matchers hit large
//! postings lists (50,000 and 100,000 series) and the regex must be checked against all 10,000
//! `instance` values (1,111 match); the result is 555 series. Measured: `HeadQuerier::select`
//! plus walking the returned series set (labels only, no samples), i.e. postings lookup,
//! intersection, series lookup by ref and sorting. Reported as selections/s.
//!
//! A second case, `{job="api", code="500"}`, intersects two large lists (100,000 and 200,000
//! series) into 20,000 results. `STRATA_BENCH_SERIES` shrinks the head for trial runs.

mod common;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_tsdb::head::{Head, HeadOptions, HeadQuerier};
use strata_tsdb::storage::{Appender, Querier};
use strata_tsdb::{MatchType, Matcher};

const T0: i64 = 1_700_000_000_000;

fn bench(c: &mut Criterion) {
    let n = common::series_count(1_000_000);
    let head = Head::in_memory(HeadOptions::default());
    for (b, batch) in common::series_labels(n).chunks(1000).enumerate() {
        let mut app = head.appender();
        for (j, l) in batch.iter().enumerate() {
            app.append(l, T0, (b * 1000 + j) as f64).unwrap();
        }
        app.commit().unwrap();
    }

    let cases = [
        (
            "name_job_instance_regex",
            vec![
                Matcher::new(MatchType::Equal, "__name__", "http_requests_total").unwrap(),
                Matcher::new(MatchType::Equal, "job", "api").unwrap(),
                Matcher::new(MatchType::Regexp, "instance", "host-1.*").unwrap(),
            ],
        ),
        (
            "job_code",
            vec![
                Matcher::new(MatchType::Equal, "job", "api").unwrap(),
                Matcher::new(MatchType::Equal, "code", "500").unwrap(),
            ],
        ),
    ];

    let q = HeadQuerier::new(head.clone(), T0 - 3_600_000, T0 + 3_600_000);
    let mut g = c.benchmark_group("postings");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for (name, ms) in &cases {
        let found = q.select(true, None, ms).count();
        eprintln!("{name}: {found} series of {n}");
        g.bench_with_input(BenchmarkId::new("head_select", name), ms, |b, ms| {
            b.iter(|| {
                let mut k = 0usize;
                for s in q.select(true, None, black_box(ms)) {
                    k += s.unwrap().labels().len();
                }
                black_box(k)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
