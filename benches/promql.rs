//! PromQL parse and range-query throughput.
//!
//! * `promql_parse`: parsing a mix of 16 realistic dashboard and alerting-rule queries
//!   (`promql_data::PARSE_MIX`), reported as queries/s and bytes/s.
//! * `promql_range`: range queries over the `promql_data` dataset (10,000 series × 6h at 15 s,
//!   1,440 samples per series, 14.4M samples) written once from an in-memory head into 2h
//!   blocks in a tempdir and opened read-only through `Db` (page cache warm). Each of the five
//!   queries of `promql_data::QUERIES` is evaluated over the full 6h at step 60 s (361 steps),
//!   parse excluded. Reported as samples loaded from storage per second (the query result's
//!   `total_samples`, computed once before measuring). `STRATA_PQ_QUERIES=rate,topk` runs only
//!   the named queries (names in `promql_data::QUERIES`), e.g. under `perf record`.

mod promql_data;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use promql_data::{PARSE_MIX, QUERIES, QUERY_STEP_MS, SCRAPE_MS, SPAN_MS};
use strata_promql::engine::QueryOptions;
use strata_tsdb::compact::write_head_block;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions, DEFAULT_BLOCK_RANGE};
use strata_tsdb::storage::Appender;
use strata_tsdb::Labels;

fn parse(c: &mut Criterion) {
    let bytes: usize = PARSE_MIX.iter().map(|q| q.len()).sum();
    for q in PARSE_MIX {
        strata_promql::parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    let mut g = c.benchmark_group("promql_parse");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(PARSE_MIX.len() as u64));
    g.bench_function("mix16_queries", |b| {
        b.iter(|| {
            for q in PARSE_MIX {
                black_box(strata_promql::parser::parse(black_box(q)).is_ok());
            }
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("mix16_bytes", |b| {
        b.iter(|| {
            for q in PARSE_MIX {
                black_box(strata_promql::parser::parse(black_box(q)).is_ok());
            }
        })
    });
    g.finish();
}

fn range(c: &mut Criterion) {
    // 2h-aligned plus a ms offset, as real scrapes are.
    let start = 1_700_000_000_000 / DEFAULT_BLOCK_RANGE * DEFAULT_BLOCK_RANGE + 1_234;
    // The head only accepts samples near its newest one, so append scrape by scrape
    // (time-major), as a scraper would.
    let mut all: Vec<(Labels, Vec<(i64, f64)>)> = Vec::with_capacity(promql_data::SERIES);
    promql_data::for_each_series(start, |labels, samples| {
        all.push((Labels::from_pairs(labels), samples.to_vec()));
    });
    let mint = all.iter().map(|s| s.1[0].0).min().unwrap();
    let maxt = all.iter().map(|s| s.1[s.1.len() - 1].0).max().unwrap();
    let n: u64 = all.iter().map(|s| s.1.len() as u64).sum();
    let head = Head::in_memory(HeadOptions::default());
    let mut refs = Vec::with_capacity(all.len());
    for k in 0..promql_data::SAMPLES_PER_SERIES {
        let mut app = head.appender();
        for (i, (l, samples)) in all.iter().enumerate() {
            let (t, v) = samples[k];
            if k == 0 {
                refs.push(app.append(l, t, v).unwrap());
            } else {
                app.append_ref(refs[i], t, v).unwrap();
            }
        }
        app.commit().unwrap();
    }
    drop(all);
    let dir = tempfile::tempdir().unwrap();
    // 2h blocks, as Prometheus (and promtool's backfill) cut them.
    let mut w = mint / DEFAULT_BLOCK_RANGE * DEFAULT_BLOCK_RANGE;
    while w <= maxt {
        write_head_block(dir.path(), &head, w, w + DEFAULT_BLOCK_RANGE).unwrap();
        w += DEFAULT_BLOCK_RANGE;
    }
    drop(head);
    let db = Db::open(
        dir.path(),
        DbOptions {
            read_only: true,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "dataset: {} series, {n} samples in {} blocks",
        promql_data::SERIES,
        db.blocks().len()
    );

    let engine = strata_promql::Engine::default();
    let qo = QueryOptions::default();
    let (qstart, qend) = (start / 60_000 * 60_000, start / 60_000 * 60_000 + SPAN_MS);
    debug_assert!(qend >= maxt - SCRAPE_MS);
    let mut g = c.benchmark_group("promql_range");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    // `STRATA_PQ_QUERIES=rate,topk` restricts the set (for profiling one query).
    let only = std::env::var("STRATA_PQ_QUERIES").ok();
    for (name, q) in QUERIES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == name))
        {
            continue;
        }
        let expr = strata_promql::parser::parse(q).unwrap();
        let run = || {
            engine
                .exec(&*db, &expr, qstart, qend, QUERY_STEP_MS, &qo)
                .unwrap()
        };
        let r = run();
        let series = match &r.value {
            strata_promql::engine::Value::Matrix(m) => m.len(),
            _ => 0,
        };
        eprintln!(
            "{name}: total_samples {}, {series} result series",
            r.total_samples
        );
        g.throughput(Throughput::Elements(r.total_samples as u64));
        g.bench_function(BenchmarkId::new("6h_step60s", name), |b| {
            b.iter(|| black_box(run().total_samples))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, range);
criterion_main!(benches);
