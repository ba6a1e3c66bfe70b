//! Queries over blocks in object storage, through the bucket store (`strata serve`'s query
//! path for uploaded blocks). Not a criterion bench: each case is a long query, timed a few
//! times, with the bytes and requests it costs. Run with
//! `cargo bench --bench bucket_query [-- 7d|30d]`.
//!
//! * `7d`: 10,000 series (`m{instance="i-0".."i-999", code="0".."9"}`) scraped every 60 s
//!   for 8 days, in 2-day blocks (as the compactor leaves them) in a FILESYSTEM bucket. A
//!   7-day range query at step 1h, and a selective one, each **cold** (a new store: empty index
//!   cache, empty chunk cache) and **warm** (the same store again): latency, index bytes
//!   downloaded, chunk GETs and chunk bytes.
//! * `30d`: 100 series (50 counters with resets, 50 gauges) scraped every 30 s for 32 days,
//!   compacted and downsampled by the compactor (`compact_pass`: 14-day blocks, 5m and 1h
//!   downsampled). 30-day range queries at step 1h read raw data (`max_source_resolution=0`)
//!   and 1h data (`=1h`), warm: the ratio is the point.
//!
//! The data is generated once into `<target>/bench-data/` and reused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_compactor::bucket::{local_bucket, Bucket};
use strata_compactor::compact::{compact_pass, upload_new_block, CompactConfig, NoProgress};
use strata_promql::engine::Value;
use strata_promql::{Engine, EngineOptions};
use strata_querier::bucket::{BucketStore, BucketStoreOptions};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::block::{write_block, SeriesToWrite};
use strata_tsdb::compact::encode_chunks;
use strata_tsdb::labels::Labels;
use strata_tsdb::storage::Queryable;
use ulid::Ulid;

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;
const D: i64 = 24 * H;
/// A multiple of 14 days, so the compactor's ranges start here.
const BASE: i64 = 1_699_488_000_000;

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty();
    let root = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("bench-data");
    if all || which.iter().any(|w| w == "7d") {
        seven_days(&root.join("bucket-7d"));
    }
    if all || which.iter().any(|w| w == "30d") {
        thirty_days(&root.join("bucket-30d"));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes a block of `series` over `[mint, maxt)` into `dir` and uploads it with external
/// labels `cluster=bench`.
fn put_block(
    rt: &tokio::runtime::Runtime,
    bucket: &Bucket,
    dir: &Path,
    mint: i64,
    maxt: i64,
    series: &mut dyn Iterator<Item = (Labels, Vec<(i64, f64)>)>,
    symbols: &BTreeSet<Arc<str>>,
) {
    let mut it = series.map(|(labels, s)| {
        Ok(SeriesToWrite {
            labels,
            chunks: encode_chunks(&s)?,
        })
    });
    let mut meta = write_block(
        dir,
        BlockMeta::new(Ulid::new(), mint, maxt),
        symbols,
        &mut it,
    )
    .expect("write block")
    .expect("non-empty");
    meta.thanos = Some(ThanosMeta {
        labels: [("cluster".to_string(), "bench".to_string())].into(),
        source: "bench".into(),
        ..Default::default()
    });
    let bdir = dir.join(meta.ulid.to_string());
    rt.block_on(upload_new_block(bucket, &bdir, &mut meta))
        .expect("upload");
    let _ = std::fs::remove_dir_all(bdir);
}

/// Writes, once, a bucket at `dir/bucket` of 2-day blocks `0..blocks` from `BASE` holding
/// `labels`, one sample every `interval` from 1 s past each block's start valued
/// `value(labels, t)`; then runs `finish` on it (compaction, say). `dir/complete` marks a
/// finished run, reused by the next; anything else in `dir` is generated again.
fn generate(
    dir: &Path,
    what: &str,
    mut labels: Vec<Labels>,
    blocks: i64,
    interval: i64,
    value: impl Fn(&Labels, i64) -> f64,
    finish: impl FnOnce(&tokio::runtime::Runtime, &Bucket),
) {
    let done = dir.join("complete");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let t0 = Instant::now();
    let rt = runtime();
    let bucket = local_bucket(&dir.join("bucket")).expect("bucket");
    labels.sort();
    let mut symbols: BTreeSet<Arc<str>> = BTreeSet::from([Arc::from("")]);
    for l in &labels {
        for x in l.iter() {
            symbols.insert(x.name.clone());
            symbols.insert(x.value.clone());
        }
    }
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    for k in 0..blocks {
        let (mint, maxt) = (BASE + k * 2 * D, BASE + (k + 1) * 2 * D);
        let mut series = labels.iter().map(|l| {
            let s: Vec<(i64, f64)> = (0..)
                .map(|n| mint + 1_000 + n * interval)
                .take_while(|&t| t < maxt)
                .map(|t| (t, value(l, t)))
                .collect();
            (l.clone(), s)
        });
        put_block(&rt, &bucket, &scratch, mint, maxt, &mut series, &symbols);
        eprintln!("{what}: block {k} written ({:?})", t0.elapsed());
    }
    finish(&rt, &bucket);
    eprintln!("{what}: generated in {:?}", t0.elapsed());
    std::fs::write(done, b"").expect("marker");
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        max_samples: 500_000_000,
        timeout: Duration::from_secs(600),
        ..Default::default()
    })
}

/// Series and points of a result (to show the query did its work).
fn shape(v: &Value) -> (usize, usize) {
    match v {
        Value::Matrix(m) => (m.len(), m.iter().map(|s| s.floats.len()).sum()),
        _ => (0, 0),
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let md = match e.metadata() {
            Ok(m) => m,
            Err(_) => continue,
        };
        n += if md.is_dir() {
            dir_bytes(&e.path())
        } else {
            md.len()
        };
    }
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

// ---------------------------------------------------------------------------------------
// 7 days × 10k series, cold and warm

const SERIES_7D: usize = 10_000;

fn generate_7d(dir: &Path) {
    let labels = (0..SERIES_7D)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "m"),
                ("code", &(i % 10).to_string()),
                ("instance", &format!("i-{}", i / 10)),
                ("job", "node"),
            ])
        })
        .collect();
    // Counters at 1..=17 per minute, by series.
    let rate = |l: &Labels| {
        let code: usize = l.get("code").unwrap_or("0").parse().unwrap_or(0);
        let inst: usize = l.get("instance").unwrap_or("i-0")[2..].parse().unwrap_or(0);
        1.0 + ((inst * 10 + code) % 17) as f64
    };
    generate(
        dir,
        "7d",
        labels,
        4,
        MIN,
        |l, t| ((t - BASE) / MIN) as f64 * rate(l),
        |_, _| {},
    );
}

fn seven_days(dir: &Path) {
    generate_7d(dir);
    let bucket = local_bucket(&dir.join("bucket")).expect("bucket");
    let e = engine();
    let (start, end) = (BASE + D, BASE + 8 * D - H);
    let queries = [
        ("sum(rate(m[5m]))", "all 10k series"),
        ("rate(m{instance=\"i-42\"}[5m])", "10 series"),
    ];
    println!("\n## 7 days of 10,000 series from the bucket (step 1h)\n");
    println!("| query | cache | latency | index downloaded | chunk GETs | chunk bytes | result |");
    println!("|---|---|---|---|---|---|---|");
    for (q, what) in queries {
        let cache = dir.join("cache");
        let _ = std::fs::remove_dir_all(&cache);
        let store = BucketStore::new(bucket.clone(), cache.clone(), BucketStoreOptions::default())
            .expect("store");
        let t = Instant::now();
        store.sync_blocking().expect("sync");
        let sync_time = t.elapsed();
        let index_bytes = dir_bytes(&cache);
        for round in ["cold", "warm"] {
            let before = store.stats();
            let t = Instant::now();
            let r = e.query_range(&store, q, start, end, H).expect("query");
            let took = t.elapsed()
                + if round == "cold" {
                    sync_time
                } else {
                    Duration::ZERO
                };
            let after = store.stats();
            let (series, points) = shape(&r.value);
            println!(
                "| `{q}` ({what}) | {round} | {:.2} s | {} | {} | {:.1} MiB | {series} series, {points} points |",
                took.as_secs_f64(),
                if round == "cold" {
                    format!("{:.1} MiB ({:.2} s)", mib(index_bytes), sync_time.as_secs_f64())
                } else {
                    "0".to_string()
                },
                after.chunk_gets - before.chunk_gets,
                mib(after.chunk_bytes - before.chunk_bytes),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 30 days, raw vs 1h

const SERIES_30D: usize = 50;

fn generate_30d(dir: &Path) {
    let mut labels = Vec::new();
    for i in 0..SERIES_30D {
        for name in ["req_total", "temp"] {
            labels.push(Labels::from_pairs(&[
                ("__name__", name),
                ("i", &i.to_string()),
            ]));
        }
    }
    let value = |l: &Labels, t: i64| {
        let i: i64 = l.get("i").unwrap_or("0").parse().unwrap_or(0);
        let n = (t - BASE) / 30_000;
        if l.get("__name__") == Some("req_total") {
            // Resets every 3 + i/10 days.
            (n % ((3 + i / 10) * 2880)) as f64 * (1 + i % 5) as f64
        } else {
            50.0 + 30.0 * ((n as f64) / 700.0 + i as f64).sin()
        }
    };
    // The compactor's own passes: 14-day blocks, then 5m and 1h downsampling.
    let compact = |rt: &tokio::runtime::Runtime, bucket: &Bucket| {
        let cfg = CompactConfig::new(dir.join("compact"));
        for _ in 0..4 {
            let s = rt
                .block_on(compact_pass(bucket, &cfg, &NoProgress))
                .expect("compact");
            eprintln!("30d: compactor pass {s:?}");
            if s == Default::default() {
                break;
            }
        }
    };
    generate(dir, "30d", labels, 16, 30_000, value, compact);
}

fn time_query(
    e: &Engine,
    q: &dyn Queryable,
    expr: &str,
    start: i64,
    end: i64,
) -> (Duration, (usize, usize)) {
    // One warm-up run, then the median of five.
    let r = e.query_range(q, expr, start, end, H).expect("query");
    let shape = shape(&r.value);
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            e.query_range(q, expr, start, end, H).expect("query");
            t.elapsed()
        })
        .collect();
    (median(runs), shape)
}

fn thirty_days(dir: &Path) {
    generate_30d(dir);
    let bucket = local_bucket(&dir.join("bucket")).expect("bucket");
    let cache = dir.join("cache");
    let store = BucketStore::new(bucket, cache, BucketStoreOptions::default()).expect("store");
    store.sync_blocking().expect("sync");
    let e = engine();
    let (start, end) = (BASE + D, BASE + 31 * D);
    println!("\n## 30 days at step 1h: raw blocks vs 1h downsampled blocks (warm)\n");
    println!("| query | raw | 1h | speed-up | raw result | 1h result |");
    println!("|---|---|---|---|---|---|");
    for q in [
        "sum(rate(req_total[2h]))",
        "avg_over_time(temp[2h])",
        "max(temp)",
    ] {
        let (raw, rs) = time_query(&e, &store.at_resolution(0), q, start, end);
        let (h1, hs) = time_query(&e, &store.at_resolution(H), q, start, end);
        println!(
            "| `{q}` | {:.1} ms | {:.2} ms | {:.0}× | {} series, {} points | {} series, {} points |",
            raw.as_secs_f64() * 1e3,
            h1.as_secs_f64() * 1e3,
            raw.as_secs_f64() / h1.as_secs_f64(),
            rs.0,
            rs.1,
            hs.0,
            hs.1
        );
    }
}
