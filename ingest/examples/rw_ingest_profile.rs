//! A small driver for instruction-count profiling of the remote-write 1.0 receiver path
//! (decode + append + commit into a head with a WAL), for `valgrind --tool=callgrind`:
//!
//! ```text
//! cargo build --release -p strata-ingest --example rw_ingest_profile
//! valgrind --tool=callgrind --toggle-collect='*measured_rounds*' \
//!     target/release/examples/rw_ingest_profile [batch|fast] [series] [rounds]
//! ```
//!
//! Requests look like `strata bench remote-write`'s: 8 labels per series, 2,000 series per
//! request, one sample per series. Round 0 (series creation) is not measured; the following
//! rounds (steady state: every series exists) run inside `measured_rounds`, so callgrind's
//! instruction count divided by `series × rounds` is the cost per sample.

use prost::Message;
use strata_ingest::remote::proto::v1;
use strata_ingest::remote::write::{append_batch_at, decode_write, ingest_write, WriteLimits};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::storage::Appender;

const BATCH: usize = 2000;
const T0: i64 = 1_700_000_000_000;

fn series_labels(i: usize) -> Vec<(&'static str, String)> {
    const NAMES: [&str; 5] = [
        "http_requests_total",
        "process_cpu_seconds_total",
        "go_goroutines",
        "container_memory_working_set_bytes",
        "node_network_receive_bytes_total",
    ];
    let target = i / 25;
    let k = i % 25;
    let app = target % 40;
    vec![
        ("__name__", NAMES[k % NAMES.len()].to_string()),
        ("container", format!("app-{app}")),
        (
            "instance",
            format!(
                "10.0.{}.{}:{}",
                (target >> 8) & 255,
                target & 255,
                8080 + k / 5
            ),
        ),
        ("job", format!("kubernetes-pods/app-{app}")),
        ("namespace", format!("team-{}", target % 20)),
        ("node", format!("node-{:03}", target % 250)),
        (
            "pod",
            format!(
                "app-{app}-{:06x}-{target}",
                (target as u64).wrapping_mul(0x9e37_79b9) >> 8
            ),
        ),
        (
            "zone",
            format!("europe-west1-{}", ["a", "b", "c"][target % 3]),
        ),
    ]
}

fn request(first: usize, n: usize, round: usize) -> Vec<u8> {
    let req = v1::WriteRequest {
        timeseries: (first..first + n)
            .map(|i| v1::TimeSeries {
                labels: series_labels(i)
                    .iter()
                    .map(|(k, v)| v1::Label::new(k, v))
                    .collect(),
                samples: vec![v1::Sample {
                    value: (round * (1 + i % 50)) as f64 * 3.0 + (i % 7) as f64,
                    timestamp: T0 + round as i64 * 15_000,
                }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

fn ingest(fast: bool, head: &std::sync::Arc<Head>, body: &[u8]) -> usize {
    let limits = WriteLimits::default();
    let now = T0 + 3_600_000;
    let mut app = head.appender();
    let written = if fast {
        ingest_fast(&mut app, body, &limits, now)
    } else {
        let batch = match decode_write(None, Some("snappy"), body, &limits) {
            Ok(b) => b,
            Err(e) => panic!("decode: {e}"),
        };
        let rep = append_batch_at(&mut app, &batch, now);
        assert_eq!(rep.rejected_count, 0, "{:?}", rep.rejected);
        rep.samples_written
    };
    if let Err(e) = app.commit() {
        panic!("commit: {e}");
    }
    written
}

fn ingest_fast(
    app: &mut strata_tsdb::head::HeadAppender,
    body: &[u8],
    limits: &WriteLimits,
    now: i64,
) -> usize {
    match ingest_write(None, Some("snappy"), body, limits, app, now) {
        Ok(ing) => {
            assert_eq!(ing.report.rejected_count, 0, "{:?}", ing.report.rejected);
            ing.report.samples_written
        }
        Err(e) => panic!("ingest: {e}"),
    }
}

#[inline(never)]
fn measured_rounds(fast: bool, head: &std::sync::Arc<Head>, reqs: &[Vec<u8>]) -> usize {
    reqs.iter().map(|b| ingest(fast, head, b)).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fast = args.get(1).map(String::as_str) == Some("fast");
    let series: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("rw_ingest_profile.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let head = match Head::open(&dir, HeadOptions::default()) {
        Ok(h) => h,
        Err(e) => panic!("open head: {e}"),
    };
    let mk = |round: usize| -> Vec<Vec<u8>> {
        (0..series)
            .step_by(BATCH)
            .map(|f| request(f, BATCH.min(series - f), round))
            .collect()
    };
    let created: usize = mk(0).iter().map(|b| ingest(fast, &head, b)).sum();
    let reqs: Vec<Vec<u8>> = (1..=rounds).flat_map(mk).collect();
    let t = std::time::Instant::now();
    let n = measured_rounds(fast, &head, &reqs);
    let el = t.elapsed();
    println!(
        "mode={} series={series} rounds={rounds} created={created} measured_samples={n} \
         elapsed_ms={:.1} ns_per_sample={:.0}",
        if fast { "fast" } else { "batch" },
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e9 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
