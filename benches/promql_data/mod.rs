//! Shared dataset of the PromQL benches: 10,000 series × 6h scraped every 15 s (1,440 samples
//! per series, 14.4M samples), shaped like 100 instrumented HTTP services.
//!
//! Each of the 100 instances (`instance="host-<i>:9100"`, `job` one of 10) exposes 100 series:
//!
//! * `http_requests_total{handler, code}`: 8 handlers × 5 codes = 40 counters;
//! * `http_request_duration_seconds_{bucket,sum,count}{handler}`: 4 handlers × (12 `le`
//!   buckets + `_sum` + `_count`) = 56 series of a classic histogram;
//! * `instance_info{region, version}` (constant 1), `up`, `process_cpu_seconds_total` and
//!   `go_goroutines`.
//!
//! Scrape timestamps carry a few ms of per-instance jitter; values come from a seeded RNG, so
//! the data are the same on every run. [`for_each_series`] produces series one at a time
//! (series-major), which is what both the in-memory head and an OpenMetrics file for
//! `promtool tsdb create-blocks-from openmetrics` want.

#![allow(dead_code)] // each bench uses part of it

use rand::{Rng, SeedableRng};

/// Scrape interval, ms.
pub const SCRAPE_MS: i64 = 15_000;
/// Samples per series (6h at 15 s).
pub const SAMPLES_PER_SERIES: usize = 1440;
/// Scrape targets.
pub const INSTANCES: usize = 100;
/// Series in all.
pub const SERIES: usize = INSTANCES * 100;
/// Duration covered by the data, ms.
pub const SPAN_MS: i64 = SAMPLES_PER_SERIES as i64 * SCRAPE_MS;

const JOBS: [&str; 10] = [
    "api", "frontend", "checkout", "payments", "search", "auth", "cart", "gateway", "billing",
    "catalog",
];
const REGIONS: [&str; 4] = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"];
const HANDLERS: [&str; 8] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/metrics",
    "/-/ready",
    "/federate",
    "/api/v1/write",
];
const CODES: [&str; 5] = ["200", "204", "400", "404", "500"];
const LES: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// The PromQL queries the benches run (name, query).
pub const QUERIES: [(&str, &str); 5] = [
    ("rate", "rate(http_requests_total[5m])"),
    ("sum_by_rate", "sum by (job) (rate(http_requests_total[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    ("topk", "topk(5, rate(http_requests_total[5m]))"),
    (
        "group_left",
        "rate(http_requests_total[5m]) * on(instance) group_left(region) instance_info",
    ),
];

/// Evaluation step of the range queries, ms.
pub const QUERY_STEP_MS: i64 = 60_000;

/// A label set as `(name, value)` pairs sorted by name, `__name__` first.
pub type LabelPairs = Vec<(&'static str, String)>;

/// The consumer of [`for_each_series`].
type Sink<'a> = dyn FnMut(&LabelPairs, &[(i64, f64)]) + 'a;

/// Calls `f(labels, samples)` for each of the [`SERIES`] series; the first scrape is at
/// `start` (plus jitter), the last at `start + SPAN_MS - SCRAPE_MS` (plus jitter).
pub fn for_each_series(start: i64, mut f: impl FnMut(&LabelPairs, &[(i64, f64)])) {
    let n = SAMPLES_PER_SERIES;
    let mut buf: Vec<(i64, f64)> = Vec::with_capacity(n);
    for inst in 0..INSTANCES {
        let mut rng = rand::rngs::StdRng::seed_from_u64(inst as u64);
        // Per-instance scrape timestamps: every series of a target shares them.
        let ts: Vec<i64> = (0..n)
            .map(|k| start + k as i64 * SCRAPE_MS + rng.gen_range(0..20))
            .collect();
        let instance = format!("host-{inst}:9100");
        let job = JOBS[inst % JOBS.len()].to_string();
        let base = |name: &'static str| -> LabelPairs {
            vec![
                ("__name__", name.to_string()),
                ("instance", instance.clone()),
                ("job", job.clone()),
            ]
        };
        let emit = |f: &mut Sink,
                    labels: LabelPairs,
                    values: &mut dyn FnMut(usize) -> f64,
                    buf: &mut Vec<(i64, f64)>| {
            buf.clear();
            buf.extend(ts.iter().enumerate().map(|(k, &t)| (t, values(k))));
            f(&labels, buf);
        };

        // http_requests_total: 40 counters.
        for (h, handler) in HANDLERS.iter().enumerate() {
            for (c, code) in CODES.iter().enumerate() {
                let mut l = base("http_requests_total");
                l.insert(1, ("code", code.to_string()));
                l.insert(2, ("handler", handler.to_string()));
                let weight = if c == 0 { 50 } else { 5 } + h as u32;
                let mut v = rng.gen_range(0..10_000) as f64;
                emit(
                    &mut f,
                    l,
                    &mut |_| {
                        v += rng.gen_range(0..weight) as f64;
                        v
                    },
                    &mut buf,
                );
            }
        }

        // A classic histogram per handler for the first 4 handlers: 12 buckets, sum, count.
        for handler in &HANDLERS[..4] {
            // Cumulative counts per bucket and the sum, per scrape.
            let mut counts = vec![[0f64; 12]; n];
            let mut sums = vec![0f64; n];
            let (mut acc, mut sum) = ([0f64; 12], 0f64);
            for k in 0..n {
                for _ in 0..rng.gen_range(0..40) {
                    // Roughly log-normal latencies around 50–250 ms.
                    let x: f64 = 0.08 * (rng.gen_range(-2.5f64..2.5)).exp();
                    sum += x;
                    for (b, le) in LES.iter().enumerate() {
                        if *le == "+Inf" || x <= le.parse::<f64>().unwrap_or(f64::INFINITY) {
                            acc[b] += 1.0;
                        }
                    }
                }
                counts[k] = acc;
                sums[k] = (sum * 1e6).round() / 1e6;
            }
            for (b, le) in LES.iter().enumerate() {
                let mut l = base("http_request_duration_seconds_bucket");
                l.insert(1, ("handler", handler.to_string()));
                l.push(("le", le.to_string()));
                emit(&mut f, l, &mut |k| counts[k][b], &mut buf);
            }
            for (name, vals) in [
                ("http_request_duration_seconds_sum", &sums),
                (
                    "http_request_duration_seconds_count",
                    &counts.iter().map(|c| c[11]).collect(),
                ),
            ] {
                let mut l = base(name);
                l.insert(1, ("handler", handler.to_string()));
                emit(&mut f, l, &mut |k| vals[k], &mut buf);
            }
        }

        let mut l = base("instance_info");
        l.push(("region", REGIONS[inst % REGIONS.len()].to_string()));
        l.push(("version", format!("1.{}.0", inst % 7)));
        emit(&mut f, l, &mut |_| 1.0, &mut buf);
        emit(&mut f, base("up"), &mut |_| 1.0, &mut buf);
        let mut cpu = 0.0;
        emit(
            &mut f,
            base("process_cpu_seconds_total"),
            &mut |_| {
                cpu += rng.gen_range(0..300) as f64 / 100.0;
                cpu
            },
            &mut buf,
        );
        emit(
            &mut f,
            base("go_goroutines"),
            &mut |_| rng.gen_range(40..400) as f64,
            &mut buf,
        );
    }
}

/// A realistic mix of queries for the parser bench: dashboard and alerting-rule shapes.
pub const PARSE_MIX: [&str; 16] = [
    "up",
    "up{job=\"api\"} == 0",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05",
    "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job=\"api\", handler!~\"/-/.*\"}[5m])))",
    "topk(10, sum by (instance) (rate(process_cpu_seconds_total[1m])))",
    "rate(http_requests_total[5m]) * on(instance) group_left(region) instance_info",
    "avg_over_time(go_goroutines[10m] offset 1h)",
    "max_over_time(rate(http_requests_total[1m])[30m:1m])",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "predict_linear(node_filesystem_avail_bytes{fstype!=\"tmpfs\"}[6h], 4 * 3600) < 0",
    "sum(increase(http_requests_total[1h])) without (instance, pod)",
    "count by (version) (instance_info)",
    "absent(up{job=\"payments\"})",
    "1 - avg by (instance) (irate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
    "clamp_min(delta(process_resident_memory_bytes[15m]), 0) / 1024 / 1024",
];
