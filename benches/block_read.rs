//! Reading every sample of a persisted block.
//!
//! Workload: a 2h block of 10,000 series (100 targets × 100 series, see `common`) scraped every
//! 15 s (a few ms of jitter), so 480 samples per series in four 120-sample XOR chunks, 4.8M samples in all: the
//! shape of a range query or a compaction pass over a whole block. The block is written once
//! from an in-memory head with `compact::write_head_block` and opened with `Block::open`
//! (index and chunks mmapped, page cache warm). Measured: `BlockQuerier::select` with
//! `{__name__=~".+"}`, then `iterator()` over each series to the end. Reported as samples/s.

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use strata_tsdb::block::Block;
use strata_tsdb::compact::write_head_block;
use strata_tsdb::head::{Head, HeadOptions, DEFAULT_BLOCK_RANGE};
use strata_tsdb::storage::{Appender, Querier, SampleIterator, SeriesRef};
use strata_tsdb::{MatchType, Matcher};

const SERIES: usize = 10_000;
const STEP: i64 = 15_000;
const PER_SERIES: i64 = DEFAULT_BLOCK_RANGE / STEP;

fn bench(c: &mut Criterion) {
    let labels = common::series_labels(SERIES);
    // A block-aligned start, as the head's first block would have.
    let mint = 1_700_000_000_000 / DEFAULT_BLOCK_RANGE * DEFAULT_BLOCK_RANGE;
    let maxt = mint + DEFAULT_BLOCK_RANGE;

    let head = Head::in_memory(HeadOptions::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut values: Vec<f64> = (0..SERIES).map(|i| (i % 1000) as f64).collect();
    let mut refs: Vec<SeriesRef> = Vec::with_capacity(SERIES);
    for k in 0..PER_SERIES {
        // Scrape timestamps jitter by a few ms, as real ones do.
        let t = mint + k * STEP + rng.gen_range(0..5);
        let mut app = head.appender();
        for (i, l) in labels.iter().enumerate() {
            // A third each of counters, gauges rounded to 2 decimals, and constants (`up`,
            // info metrics), as in the XOR bench.
            values[i] = match i % 3 {
                0 => values[i] + rng.gen_range(0..100) as f64,
                1 => ((values[i] + rng.gen_range(-5.0..5.0)) * 100.0).round() / 100.0,
                _ => values[i],
            };
            if k == 0 {
                refs.push(app.append(l, t, values[i]).unwrap());
            } else {
                app.append_ref(refs[i], t, values[i]).unwrap();
            }
        }
        app.commit().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = write_head_block(dir.path(), &head, mint, maxt)
        .unwrap()
        .unwrap();
    drop(head);
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let total = SERIES as u64 * PER_SERIES as u64;
    eprintln!(
        "block: {SERIES} series, {total} samples, {} bytes on disk ({:.2} bytes/sample)",
        block.size(),
        block.size() as f64 / total as f64
    );

    let all = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    let read_all = || {
        let q = block.querier(mint, maxt);
        let (mut k, mut sum) = (0u64, 0.0);
        for s in q.select(true, None, &all) {
            let mut it = s.unwrap().iterator();
            while it.next() {
                sum += it.at().1;
                k += 1;
            }
            assert!(it.err().is_none());
        }
        (k, sum)
    };
    assert_eq!(read_all().0, total);

    let mut g = c.benchmark_group("block_read");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total));
    g.bench_function("all_series_2h", |b| b.iter(|| black_box(read_all())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
