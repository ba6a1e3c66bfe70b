//! Head append throughput through the real appender, with the WAL.
//!
//! Workload: a Prometheus server scraping 10,000 targets × 100 series (1M active series, six
//! labels each, see `common`), committing one batch per ~1,000 series as a scrape loop does.
//! The database is opened like the server opens it (`Db::open`, WAL on with snappy, head chunk
//! files on) but without the background compaction task.
//!
//! * Outside criterion: load 1M series × 10 samples (first sample with `append`, later ones
//!   with `append_ref`), print the load rate and the resident memory per active series
//!   (`VmRSS` delta / series).
//! * `head_append/create_series`: one round of 1M new series × 1 sample into a fresh database
//!   (the cost of series churn: hashing, interning, postings, WAL series records).
//! * `head_append/append_ref`: one round of 1 sample for each of the 1M existing series (the
//!   steady state of scraping).
//!
//! Both report samples/s (criterion `Throughput::Elements`). `STRATA_BENCH_SERIES` shrinks the
//! series count for trial runs; `STRATA_BENCH_SAMPLES` changes the 10 samples per series of the
//! memory measurement (e.g. 480 = 2h at 15 s, so that full chunks are cut to `chunks_head/`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::series::DoneChunk;
use strata_tsdb::head::MemSeries;
use strata_tsdb::storage::{Appender, SeriesRef};
use strata_tsdb::Labels;

/// Series per commit.
const BATCH: usize = 1000;
/// Scrape interval in ms.
const STEP: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

fn open_db(dir: &std::path::Path) -> Arc<Db> {
    Db::open(
        dir,
        DbOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Resident set size of this process in bytes, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One sample value per series and round: counters that grow, like most scraped series.
fn value(i: usize, round: i64) -> f64 {
    (round as f64) * ((i % 7) as f64 + 1.0) + (i % 13) as f64
}

/// Appends one sample for every series, creating them: returns their refs.
fn create_round(db: &Db, labels: &[Labels], t: i64) -> Vec<SeriesRef> {
    let mut refs = Vec::with_capacity(labels.len());
    for batch in labels.chunks(BATCH) {
        let mut app = db.appender().unwrap();
        for l in batch {
            refs.push(app.append(l, t, value(refs.len(), 0)).unwrap());
        }
        app.commit().unwrap();
    }
    refs
}

/// Appends one sample at `t` for every series by reference.
fn ref_round(db: &Db, refs: &[SeriesRef], t: i64, round: i64) {
    for (b, batch) in refs.chunks(BATCH).enumerate() {
        let mut app = db.appender().unwrap();
        for (j, &r) in batch.iter().enumerate() {
            app.append_ref(r, t, value(b * BATCH + j, round)).unwrap();
        }
        app.commit().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let n = common::series_count(1_000_000);
    let samples: i64 = std::env::var("STRATA_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let labels = common::series_labels(n);

    // Memory per active series after 10 samples each, outside criterion's timing.
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let rss0 = rss_bytes();
    let start = Instant::now();
    let refs = create_round(&db, &labels, T0);
    let created = start.elapsed();
    for round in 1..samples {
        ref_round(&db, &refs, T0 + round * STEP, round);
    }
    let loaded = start.elapsed();
    let rss1 = rss_bytes();
    eprintln!(
        "load: {n} series x {samples} samples in {:.2?} ({:.0} samples/s; creation round {:.2?})",
        loaded,
        (n * samples as usize) as f64 / loaded.as_secs_f64(),
        created
    );
    eprintln!(
        "sizes: MemSeries {} B, Label {} B, DoneChunk {} B, XorChunk {} B",
        std::mem::size_of::<MemSeries>(),
        std::mem::size_of::<strata_tsdb::Label>(),
        std::mem::size_of::<DoneChunk>(),
        std::mem::size_of::<strata_tsdb::chunkenc::XorChunk>(),
    );
    eprintln!(
        "RSS per series: {} bytes (VmRSS {} -> {} MiB, {} series in head)",
        rss1.saturating_sub(rss0) / n as u64,
        rss0 >> 20,
        rss1 >> 20,
        db.head().num_series()
    );

    let mut g = c.benchmark_group("head_append");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n as u64));

    g.bench_function("create_series", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let fresh = open_db(dir.path());
                let start = Instant::now();
                let r = create_round(&fresh, &labels, T0);
                total += start.elapsed();
                assert_eq!(r.len(), n);
                drop(fresh);
            }
            total
        })
    });

    let mut round = samples;
    g.bench_function("append_ref", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ref_round(&db, &refs, T0 + round * STEP, round);
                round += 1;
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
