//! Differential test of Strata's PromQL engine against the real Prometheus (Debian's 2.42).
//!
//! One generated OpenMetrics file (~1,170 series over 6h: counters with resets, gauges,
//! classic histograms, summaries, sparse series, series that start and stop, label values
//! needing escapes, NaN/±Inf values) is backfilled with `promtool tsdb create-blocks-from
//! openmetrics`. Prometheus serves one copy of the blocks over its HTTP API; Strata's engine
//! reads another copy through `Db`. Several hundred expressions are evaluated as instant
//! queries at several times and as range queries with several steps, and every result is
//! compared: same series, same timestamps, values equal within 1e-6 relative (1e-9 absolute
//! near zero; NaN equals NaN). All differences are collected and reported in one assertion.
//!
//! Prometheus 2.42 vs 3 (Strata follows 3), and how this test keeps them apart:
//! - Range windows and the lookback window are closed `[t-r, t]` in 2.x and left-open
//!   `(t-r, t]` in 3. Every sample timestamp has a non-zero millisecond part while every
//!   evaluation time, offset, `@` time and range is a whole number of seconds, so no raw sample
//!   sits on a window boundary. Subquery steps are 30s/1m/2m/5m (or the 1m default) and
//!   subquery ranges end in `7s`, while evaluation times are ≡ 0, 13, 28, 43 or 58 s (mod 60):
//!   `t - range` is never a multiple of the subquery step, so no inner point sits on a
//!   boundary either.
//! - In 3, a regex `.` also matches a newline; in 2.x it does not. Label values with newlines
//!   live only in the `ml` label, which is never matched with a `.`-regex.
//! - `atan2` keeps `__name__` before 2.47 and drops it since: its results are compared through
//!   `sum without ()`, which drops the name in both.
//! - Extrapolation of `rate`/`increase` towards a counter's zero point: 2.x clamps to the zero
//!   point before deciding whether the series starts inside the window, 3 after (they differ
//!   when the zero point lies between half and 1.1 average sample intervals before the first
//!   sample). All counters therefore start from a high value (or exactly at 0, the batch
//!   counters), so the zero point is far away or exactly at the first sample, and `rate` of the
//!   sparse gauges (whose "series starts" after every gap) is not queried. Counters do not reset
//!   in the first 15 minutes: a reset between the first two points of a `rate` over a subquery
//!   of `sum(counter)` puts the zero point at about one sample interval.
//! - Go's amd64 `math.Exp` (Prometheus 2.42 was built with Go 1.19) overflows to +Inf below
//!   the true limit (exp(705.3) = +Inf), so `exp` only gets arguments ≤ 680 or ≥ 720.
//! - Excluded entirely: `holt_winters` (renamed `double_exponential_smoothing` and gated in 3),
//!   3-only functions and aggregations (`limitk`, `limit_ratio`, `sort_by_label*`,
//!   `mad_over_time`, `info`, `ts_of_*`, `histogram_*` except `histogram_quantile`),
//!   `sort`/`topk` over NaN (NaN ordering changed), and UTF-8 label names.
//! - `histogram_quantile`: 3 additionally ignores bucket deltas below 1e-12 relative; with
//!   integer bucket counts this only matters for rounding noise far below the tolerance.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::results::{compare, from_prom, Lbls, Res};
use common::{free_port, http_get, require_tool, run_ok, urlencode, Rng};
use strata_tsdb::db::{Db, DbOptions};

const LIMIT: Duration = Duration::from_secs(120);
/// Data start: 2023-11-14T22:00:00Z, aligned to 2h blocks.
const S: i64 = 1_699_999_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const END: i64 = S + 6 * HOUR;

// ---------------------------------------------------------------------------------------------
// Data generation.

/// OpenMetrics text being built, with counts.
struct Gen {
    out: String,
    rng: Rng,
    series: usize,
    samples: usize,
}

fn ts(t: i64) -> String {
    format!("{}.{:03}", t / 1000, t % 1000)
}

fn val(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Gen {
    /// Scrape times in `[from, to)` every `interval` ms (see [`Rng::scrape_times`]).
    fn times(&mut self, from: i64, to: i64, interval: i64) -> Vec<i64> {
        self.rng.scrape_times(from, to, interval)
    }

    fn f(&mut self) -> f64 {
        self.rng.unit()
    }

    fn family(&mut self, name: &str, typ: &str) {
        let _ = writeln!(self.out, "# HELP {name} Generated {typ}.");
        let _ = writeln!(self.out, "# TYPE {name} {typ}");
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) {
        let mut l = String::new();
        for (i, (n, v)) in labels.iter().enumerate() {
            if i > 0 {
                l.push(',');
            }
            let _ = write!(l, "{n}=\"{}\"", esc(v));
        }
        for &(t, v) in points {
            let _ = writeln!(self.out, "{name}{{{l}}} {} {}", val(v), ts(t));
        }
        self.series += 1;
        self.samples += points.len();
    }

    /// A counter (see [`Rng::counter`]); counters start high (see the module comment on
    /// rate's zero-point extrapolation) and do not reset in the first 15 minutes.
    fn counter(
        &mut self,
        times: &[i64],
        step: impl Fn(&mut Rng) -> f64,
        reset_every: u64,
    ) -> Vec<(i64, f64)> {
        self.rng.counter(times, S + 15 * MIN, step, reset_every)
    }
}

const LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];
const PATHS: [&str; 10] = [
    "a\"quoted\"",
    "back\\slash",
    "C:\\dir\\file",
    "ünïcødé",
    "日本語",
    "emoji 🚀",
    "{braces}=,comma",
    "spaces  and  more",
    "end\\",
    "\"",
];
const ML: [&str; 3] = ["line1\nline2", "single", "x\\ny"];

/// Writes the OpenMetrics input; returns (path, series, samples).
fn generate(dir: &Path) -> (PathBuf, usize, usize) {
    let mut g = Gen {
        out: String::new(),
        rng: Rng::new(20_231_114),
        series: 0,
        samples: 0,
    };

    // Counters with resets, 15s.
    g.family("http_requests", "counter");
    for job in ["api", "web", "batch"] {
        for i in 0..10 {
            for code in ["200", "404", "500"] {
                let times = g.times(S, END, 15_000);
                let scale = if code == "500" { 3 } else { 60 };
                let pts = g.counter(&times, |r| r.below(scale) as f64, 400);
                let inst = format!("host-{i}");
                g.series(
                    "http_requests_total",
                    &[("code", code), ("instance", &inst), ("job", job)],
                    &pts,
                );
            }
        }
    }
    // Float counters, 30s.
    g.family("cpu_seconds", "counter");
    for i in 0..50 {
        for mode in ["user", "system"] {
            let times = g.times(S, END, 30_000);
            let pts = g.counter(&times, |r| r.unit() * 25.0, 300);
            let inst = format!("host-{i}");
            g.series(
                "cpu_seconds_total",
                &[("instance", &inst), ("mode", mode)],
                &pts,
            );
        }
    }
    // Gauges: random walks with negatives; `rack` only on half of them.
    g.family("temperature_celsius", "gauge");
    for i in 0..100 {
        for zone in ["z0", "z1"] {
            let times = g.times(S, END, 30_000);
            let mut v = g.f() * 50.0 - 10.0;
            let pts: Vec<_> = times
                .iter()
                .map(|&t| {
                    v += (g.f() - 0.5) * 2.0;
                    (t, v)
                })
                .collect();
            let inst = format!("host-{i}");
            let rack = format!("r{}", i % 4);
            let mut l = vec![("instance", inst.as_str()), ("zone", zone)];
            if i < 50 {
                l.push(("rack", &rack));
            }
            g.series("temperature_celsius", &l, &pts);
        }
    }
    // One series per instance (the "one" side of group_left), always > 0.
    g.family("node_load", "gauge");
    for i in 0..100 {
        let times = g.times(S, END, 60_000);
        let pts: Vec<_> = times.iter().map(|&t| (t, 0.001 + g.f() * 100.0)).collect();
        let inst = format!("host-{i}");
        g.series("node_load", &[("instance", &inst)], &pts);
    }
    // Small integers (ties, count_values).
    g.family("queue_depth", "gauge");
    for i in 0..30 {
        for q in ["q0", "q1", "q2"] {
            let times = g.times(S, END, 60_000);
            let pts: Vec<_> = times.iter().map(|&t| (t, g.rng.below(20) as f64)).collect();
            let inst = format!("host-{i}");
            g.series("queue_depth", &[("instance", &inst), ("queue", q)], &pts);
        }
    }
    g.family("up", "gauge");
    for job in ["api", "web"] {
        for i in 0..50 {
            let times = g.times(S, END, 30_000);
            let pts: Vec<_> = times
                .iter()
                .map(|&t| (t, if g.rng.below(20) == 0 { 0.0 } else { 1.0 }))
                .collect();
            let inst = format!("host-{i}");
            g.series("up", &[("instance", &inst), ("job", job)], &pts);
        }
    }
    // Classic histograms with consistent cumulative buckets; a third of them reset once.
    g.family("request_duration_seconds", "histogram");
    let bounds: Vec<f64> = LE
        .iter()
        .map(|s| {
            if *s == "+Inf" {
                f64::INFINITY
            } else {
                s.parse().unwrap()
            }
        })
        .collect();
    for job in ["api", "web", "batch"] {
        for i in 0..6 {
            let times = g.times(S, END, 30_000);
            let reset_at = if (i + job.len()) % 3 == 0 {
                times.len() / 2 + g.rng.below(50) as usize
            } else {
                usize::MAX
            };
            // Start with history, like the summaries and the other counters.
            let mut counts = [0f64; 12];
            for c in counts.iter_mut() {
                *c = 1000.0 + g.rng.below(1000) as f64;
            }
            let mut count: f64 = counts.iter().sum();
            let mut sum = count * 0.3;
            let mut rows: Vec<([f64; 12], f64, f64)> = Vec::new();
            for k in 0..times.len() {
                if k == reset_at {
                    counts = [0.0; 12];
                    sum = 0.0;
                    count = 0.0;
                }
                for _ in 0..g.rng.below(30) {
                    let b =
                        (g.rng.below(12).min(g.rng.below(12)) + g.rng.below(3)).min(11) as usize;
                    let lo = if b == 0 { 0.0 } else { bounds[b - 1] };
                    let hi = if b == 11 { 20.0 } else { bounds[b] };
                    sum += lo + (hi - lo) * g.f();
                    count += 1.0;
                    counts[b] += 1.0;
                }
                let mut cum = [0f64; 12];
                let mut acc = 0.0;
                for j in 0..12 {
                    acc += counts[j];
                    cum[j] = acc;
                }
                rows.push((cum, sum, count));
            }
            let inst = format!("host-{i}");
            for (j, le) in LE.iter().enumerate() {
                let pts: Vec<_> = times.iter().zip(&rows).map(|(&t, r)| (t, r.0[j])).collect();
                g.series(
                    "request_duration_seconds_bucket",
                    &[("instance", &inst), ("job", job), ("le", le)],
                    &pts,
                );
            }
            let pts: Vec<_> = times.iter().zip(&rows).map(|(&t, r)| (t, r.1)).collect();
            g.series(
                "request_duration_seconds_sum",
                &[("instance", &inst), ("job", job)],
                &pts,
            );
            let pts: Vec<_> = times.iter().zip(&rows).map(|(&t, r)| (t, r.2)).collect();
            g.series(
                "request_duration_seconds_count",
                &[("instance", &inst), ("job", job)],
                &pts,
            );
        }
    }
    // Summaries.
    g.family("rpc_latency_seconds", "summary");
    for s in 0..10 {
        let svc = format!("s{s}");
        let times = g.times(S, END, 60_000);
        let mut qs: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 3];
        let (mut sum, mut count) = (Vec::new(), Vec::new());
        let (mut sv, mut cv) = (5000.0 + g.f(), 100_000f64);
        for &t in &times {
            let base = g.f() * 0.2;
            qs[0].push((t, base));
            qs[1].push((t, base * (1.5 + g.f())));
            qs[2].push((t, base * (3.0 + g.f() * 2.0)));
            let n = g.rng.below(100) as f64;
            cv += n;
            sv += n * base * 1.2;
            sum.push((t, sv));
            count.push((t, cv));
        }
        for (q, pts) in ["0.5", "0.9", "0.99"].iter().zip(&qs) {
            g.series(
                "rpc_latency_seconds",
                &[("quantile", q), ("service", &svc)],
                pts,
            );
        }
        g.series("rpc_latency_seconds_sum", &[("service", &svc)], &sum);
        g.series("rpc_latency_seconds_count", &[("service", &svc)], &count);
    }
    // Sparse gauges: gaps of 6..40 minutes (longer than the lookback delta).
    g.family("sparse_gauge", "gauge");
    for i in 0..50 {
        let times = g.times(S, END, 60_000);
        let mut pts = Vec::new();
        let mut skip_until = 0;
        for t in times {
            if t < skip_until {
                continue;
            }
            if g.rng.below(25) == 0 {
                skip_until = t + (6 + g.rng.below(35) as i64) * MIN;
                continue;
            }
            pts.push((t, g.f() * 10.0 - 5.0));
        }
        let inst = format!("s{i}");
        g.series("sparse_gauge", &[("instance", &inst)], &pts);
    }
    // Counters that start late and stop early (lookback and extrapolation at the edges).
    g.family("batch_processed", "counter");
    for b in 0..100 {
        let from = S + g.rng.below(5 * 3600) as i64 * 1000;
        let to = (from + (10 + g.rng.below(170) as i64) * MIN).min(END);
        let times = g.times(from, to, 30_000);
        let pts = g.counter(&times, |r| r.below(1000) as f64 / 8.0, 1_000_000);
        let first = pts.first().map_or(0.0, |p| p.1);
        let pts: Vec<_> = pts.into_iter().map(|(t, v)| (t, v - first)).collect();
        let name = format!("b{b}");
        g.series("batch_processed_total", &[("batch", &name)], &pts);
    }
    // Label values that need escaping.
    g.family("escaped_labels", "gauge");
    for p in PATHS {
        for ml in ML {
            let times = g.times(S, END, 60_000);
            let pts: Vec<_> = times.iter().map(|&t| (t, g.f() * 1000.0)).collect();
            g.series("escaped_labels", &[("ml", ml), ("path", p)], &pts);
        }
    }
    // NaN and infinities.
    g.family("special_values", "gauge");
    for k in 0..10 {
        let kind = match k {
            0 => "nan".to_string(),
            1 => "inf".to_string(),
            2 => "neginf".to_string(),
            _ => format!("mixed{k}"),
        };
        let times = g.times(S, END, 60_000);
        let pts: Vec<_> = times
            .iter()
            .map(|&t| {
                let r = g.rng.below(20);
                let v = match (k, r) {
                    (0, _) | (3.., 0) => f64::NAN,
                    (1, _) | (3.., 1) => f64::INFINITY,
                    (2, _) | (3.., 2) => f64::NEG_INFINITY,
                    _ => g.f() * 100.0 - 50.0,
                };
                (t, v)
            })
            .collect();
        g.series("special_values", &[("kind", &kind)], &pts);
    }

    g.out.push_str("# EOF\n");
    let path = dir.join("input.om.txt");
    std::fs::write(&path, &g.out).expect("write openmetrics");
    (path, g.series, g.samples)
}

// ---------------------------------------------------------------------------------------------
// Prometheus process and HTTP.

/// The running Prometheus; killed on drop, also when the test fails.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(bin: &Path, data: &Path, work: &Path) -> Prometheus {
        let config = work.join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n",
        )
        .expect("write config");
        let port = free_port();
        let log = work.join("prometheus.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus { child, port, log };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(port, "/-/ready") {
                break;
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}) before ready:\n{}", p.log_text());
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("prometheus not ready within 60s:\n{}", p.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn api(&self, path: &str, params: &[(&str, String)]) -> serde_json::Value {
        let mut target = path.to_string();
        for (i, (k, v)) in params.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            let _ = write!(target, "{k}={}", urlencode(v));
        }
        let (status, body) = http_get(self.port, &target)
            .unwrap_or_else(|e| panic!("GET {target}: {e}\n{}", self.log_text()));
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {target}: status {status}, bad JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Strata's engine results in the common form.

fn strata_labels(l: &strata_tsdb::Labels) -> Lbls {
    l.iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

fn from_strata(r: strata_promql::Result<strata_promql::engine::QueryResult>) -> Res {
    use strata_promql::engine::Value;
    match r {
        Err(e) => Res::Err(e.to_string()),
        Ok(q) => match q.value {
            Value::Scalar { t, v } => Res::Scalar(t, v),
            Value::String { t, v } => Res::Str(t, v),
            Value::Vector(v) => Res::Vector(
                v.into_iter()
                    .map(|s| (strata_labels(&s.metric), s.t, s.f))
                    .collect(),
            ),
            Value::Matrix(m) => Res::Matrix(
                m.into_iter()
                    .map(|s| (strata_labels(&s.metric), s.floats))
                    .collect(),
            ),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The expressions.

/// `@T1`..`@T3` in an expression become `@ <seconds>` at fixed times inside the data.
fn expand(q: &str) -> String {
    q.replace("@T1", &format!("@ {}", (S + HOUR) / 1000))
        .replace("@T2", &format!("@ {}", (S + 4 * HOUR + 30 * MIN) / 1000))
        .replace("@T3", &format!("@ {}", (S + 5 * HOUR + 50 * MIN) / 1000))
}

const QUERIES: &[&str] = &[
    // Selectors and matchers.
    r#"http_requests_total"#,
    r#"http_requests_total{job="api"}"#,
    r#"http_requests_total{job=~"api|web",code!="500"}"#,
    r#"http_requests_total{code!~"2.."}"#,
    r#"http_requests_total{job=~"a.*",instance!~"host-[0-4]"}"#,
    r#"http_requests_total{job=~"API|Web"}"#,
    r#"http_requests_total{job=~"(?i)API"}"#,
    r#"{__name__=~"http_requests_total|up",job="api"}"#,
    r#"{__name__=~"node_.*|queue_depth"}"#,
    r#"temperature_celsius{rack=""}"#,
    r#"temperature_celsius{rack!=""}"#,
    r#"temperature_celsius{rack=~"r1|r3",zone="z1"}"#,
    r#"temperature_celsius{instance=~"host-1.*",rack!~"r[01]"}"#,
    r#"sparse_gauge"#,
    r#"batch_processed_total"#,
    r#"escaped_labels"#,
    r#"escaped_labels{path="a\"quoted\""}"#,
    r#"escaped_labels{path="back\\slash"}"#,
    r#"escaped_labels{path=~".*\\\\.*"}"#,
    r#"escaped_labels{ml="line1\nline2"}"#,
    r#"escaped_labels{ml=~"x\\\\ny|single"}"#,
    r#"escaped_labels{path=~"日本.*|ü.*",ml!="single"}"#,
    r#"escaped_labels{path="emoji 🚀"}"#,
    r#"special_values"#,
    r#"nonexistent_metric"#,
    r#"http_requests_total offset 10m"#,
    r#"http_requests_total @T1"#,
    r#"http_requests_total offset -5m"#,
    r#"up @T3 offset 10m"#,
    r#"temperature_celsius @ start()"#,
    r#"temperature_celsius @ end() - temperature_celsius"#,
    // Range selectors (range queries of these are errors in both).
    r#"http_requests_total{instance="host-1",code="200"}[5m]"#,
    r#"sparse_gauge{instance=~"s1.*"}[10m] offset 3m"#,
    r#"escaped_labels{ml="single"}[3m]"#,
    r#"special_values[5m] @T2"#,
    // Counter functions.
    r#"rate(http_requests_total[5m])"#,
    r#"rate(http_requests_total[1m])"#,
    r#"rate(cpu_seconds_total[10m])"#,
    r#"rate(batch_processed_total[5m])"#,
    r#"rate(http_requests_total[5m] offset 1h)"#,
    r#"rate(http_requests_total[5m] @T2)"#,
    r#"rate(special_values[5m])"#,
    r#"irate(http_requests_total[5m])"#,
    r#"irate(cpu_seconds_total[2m])"#,
    r#"irate(batch_processed_total[3m])"#,
    r#"increase(http_requests_total[1h])"#,
    r#"increase(batch_processed_total[15m])"#,
    r#"increase(request_duration_seconds_count[10m])"#,
    r#"resets(http_requests_total[1h])"#,
    r#"resets(cpu_seconds_total[30m])"#,
    r#"changes(queue_depth[20m])"#,
    r#"changes(up[1h])"#,
    r#"changes(special_values[30m])"#,
    // Gauge functions.
    r#"delta(temperature_celsius[10m])"#,
    r#"delta(sparse_gauge[20m])"#,
    r#"idelta(temperature_celsius[5m])"#,
    r#"idelta(up[5m])"#,
    r#"deriv(temperature_celsius[15m])"#,
    r#"deriv(queue_depth[10m])"#,
    r#"deriv(up[10m])"#,
    r#"predict_linear(temperature_celsius[30m], 3600)"#,
    r#"predict_linear(queue_depth[10m], -600)"#,
    r#"predict_linear(sparse_gauge[15m], 120)"#,
    // *_over_time.
    r#"avg_over_time(temperature_celsius[10m])"#,
    r#"min_over_time(temperature_celsius[30m])"#,
    r#"max_over_time(cpu_seconds_total[5m])"#,
    r#"sum_over_time(up[1h])"#,
    r#"count_over_time(sparse_gauge[15m])"#,
    r#"count_over_time(escaped_labels[10m])"#,
    r#"last_over_time(batch_processed_total[30m])"#,
    r#"last_over_time(sparse_gauge[1h])"#,
    r#"present_over_time(sparse_gauge[5m])"#,
    r#"stddev_over_time(temperature_celsius[1h])"#,
    r#"stdvar_over_time(queue_depth[30m])"#,
    r#"stddev_over_time(up[20m])"#,
    r#"quantile_over_time(0.9, temperature_celsius[20m])"#,
    r#"quantile_over_time(0.5, queue_depth[1h])"#,
    r#"quantile_over_time(0, node_load[10m])"#,
    r#"quantile_over_time(1, node_load[10m])"#,
    r#"quantile_over_time(-1, node_load[10m])"#,
    r#"quantile_over_time(2, node_load[10m])"#,
    r#"absent_over_time(nonexistent_metric[5m])"#,
    r#"absent_over_time(sparse_gauge{instance="s7"}[5m])"#,
    r#"absent_over_time(batch_processed_total{batch="b3"}[10m])"#,
    r#"avg_over_time(special_values[10m])"#,
    r#"sum_over_time(special_values[10m])"#,
    r#"max_over_time(special_values[10m])"#,
    r#"min_over_time(special_values[10m])"#,
    r#"quantile_over_time(0.5, special_values[10m])"#,
    r#"stddev_over_time(special_values[10m])"#,
    // Math.
    r#"abs(temperature_celsius)"#,
    r#"ceil(temperature_celsius)"#,
    r#"floor(temperature_celsius)"#,
    r#"round(temperature_celsius)"#,
    r#"round(temperature_celsius, 0.5)"#,
    r#"round(temperature_celsius, 3)"#,
    r#"round(queue_depth / 4)"#,
    r#"sqrt(temperature_celsius)"#,
    r#"sqrt(abs(temperature_celsius))"#,
    r#"exp(temperature_celsius / 10)"#,
    r#"exp(queue_depth * 40)"#,
    r#"ln(temperature_celsius)"#,
    r#"log2(node_load)"#,
    r#"log10(queue_depth)"#,
    r#"clamp(temperature_celsius, -5, 25)"#,
    r#"clamp(temperature_celsius, 30, 10)"#,
    r#"clamp_min(temperature_celsius, 0)"#,
    r#"clamp_max(temperature_celsius, 20)"#,
    r#"sgn(temperature_celsius)"#,
    r#"sgn(special_values)"#,
    r#"abs(special_values)"#,
    r#"-temperature_celsius"#,
    r#"-(-http_requests_total)"#,
    r#"-sum(up)"#,
    // Trigonometry.
    r#"sin(temperature_celsius)"#,
    r#"cos(temperature_celsius)"#,
    r#"tan(temperature_celsius)"#,
    r#"asin(temperature_celsius / 100)"#,
    r#"acos(temperature_celsius / 100)"#,
    r#"atan(temperature_celsius)"#,
    r#"sinh(temperature_celsius / 10)"#,
    r#"cosh(temperature_celsius / 10)"#,
    r#"tanh(temperature_celsius)"#,
    r#"asinh(temperature_celsius)"#,
    r#"acosh(temperature_celsius)"#,
    r#"atanh(temperature_celsius / 100)"#,
    r#"deg(temperature_celsius)"#,
    r#"rad(temperature_celsius)"#,
    r#"pi()"#,
    // `atan2` keeps the metric name before Prometheus 2.47: compare through `sum without ()`.
    r#"sum without () (temperature_celsius atan2 10)"#,
    r#"sum without () (queue_depth atan2 on(instance) group_left node_load)"#,
    // Time.
    r#"time()"#,
    r#"timestamp(http_requests_total{job="api"})"#,
    r#"timestamp(sparse_gauge)"#,
    r#"timestamp(up @T1)"#,
    r#"timestamp(up offset 5m)"#,
    r#"timestamp(rate(http_requests_total[5m]))"#,
    r#"time() - timestamp(up)"#,
    r#"hour()"#,
    r#"minute()"#,
    r#"month()"#,
    r#"year()"#,
    r#"day_of_month()"#,
    r#"day_of_week()"#,
    r#"day_of_year()"#,
    r#"days_in_month()"#,
    r#"hour(timestamp(up{job="api"}))"#,
    r#"minute(timestamp(sparse_gauge))"#,
    r#"day_of_week(vector(1700000000))"#,
    r#"day_of_year(vector(1709251200))"#,
    r#"days_in_month(vector(1709251200 - 86400))"#,
    r#"month(vector(1709251200))"#,
    r#"year(vector(0))"#,
    r#"year(node_load * 1e7)"#,
    // Labels.
    r#"label_replace(up, "host", "$1", "instance", "host-(.*)")"#,
    r#"label_replace(up, "instance", "", "instance", ".*")"#,
    r#"label_replace(http_requests_total, "foo", "$1-$2", "job", "(a)(.*)")"#,
    r#"label_replace(up, "job", "x", "nonexistent", "")"#,
    r#"label_replace(up, "new", "x", "nonexistent", "")"#,
    r#"label_replace(temperature_celsius, "rack_id", "$1", "rack", "r(.)")"#,
    r#"label_replace(up, "new", "${name}!", "job", "(?P<name>.+)")"#,
    r#"label_replace(temperature_celsius, "zone", "$1", "rack", "r(.)")"#,
    r#"label_replace(escaped_labels, "p2", "<$1>", "path", "(.*)")"#,
    r#"label_join(up, "combo", "/", "job", "instance")"#,
    r#"label_join(temperature_celsius, "zr", "", "zone", "rack")"#,
    r#"label_join(escaped_labels, "j", "|", "ml", "path")"#,
    r#"label_join(up, "job", ",")"#,
    // Sorting (instant results compared in order).
    r#"sort(temperature_celsius)"#,
    r#"sort_desc(rate(http_requests_total[5m]))"#,
    r#"sort(node_load * 2)"#,
    r#"sort_desc(sum by (instance) (rate(cpu_seconds_total[10m])))"#,
    // Absent, vector, scalar.
    r#"absent(nonexistent_metric)"#,
    r#"absent(nonexistent_metric{job="x",instance=~"y"})"#,
    r#"absent(up)"#,
    r#"absent(sum(nonexistent_metric))"#,
    r#"absent(up{job="nonexistent"}) or vector(0)"#,
    r#"vector(1)"#,
    r#"vector(time())"#,
    r#"scalar(up{instance="host-1",job="api"})"#,
    r#"scalar(up)"#,
    r#"scalar(sum(up))"#,
    r#"scalar(sum(up)) * node_load"#,
    r#"node_load > scalar(avg(node_load))"#,
    // Literals and scalar arithmetic.
    r#"1 + 2 * 3"#,
    r#"2 ^ 3 ^ 2"#,
    r#"-2 ^ 2"#,
    r#"5 % 3"#,
    r#"-5 % 3"#,
    r#"1 / 0"#,
    r#"-1 / 0"#,
    r#"0 / 0"#,
    r#"1 > bool 2"#,
    r#"1 < 2"#,
    r#""a string""#,
    r#"(((1)))"#,
    // Aggregations.
    r#"sum(http_requests_total)"#,
    r#"sum by (job) (rate(http_requests_total[5m]))"#,
    r#"sum without (instance) (rate(http_requests_total[5m]))"#,
    r#"sum by (job, code) (increase(http_requests_total[30m]))"#,
    r#"avg by (zone) (temperature_celsius)"#,
    r#"min by (zone) (temperature_celsius)"#,
    r#"max without (instance, rack) (temperature_celsius)"#,
    r#"count(up)"#,
    r#"count by (job) (up == 1)"#,
    r#"count without () (up)"#,
    r#"group by (job) (http_requests_total)"#,
    r#"group(sparse_gauge)"#,
    r#"stddev by (zone) (temperature_celsius)"#,
    r#"stdvar(temperature_celsius)"#,
    r#"stddev(queue_depth)"#,
    r#"topk(3, temperature_celsius)"#,
    r#"topk by (zone) (2, temperature_celsius)"#,
    r#"bottomk(5, rate(cpu_seconds_total[5m]))"#,
    r#"bottomk without (instance) (1, temperature_celsius)"#,
    r#"topk(0, up)"#,
    r#"topk(scalar(count(node_load)) / 20, node_load)"#,
    r#"quantile(0.9, temperature_celsius)"#,
    r#"quantile by (zone) (0.5, temperature_celsius)"#,
    r#"quantile(0, node_load)"#,
    r#"quantile(1.5, node_load)"#,
    r#"quantile(-1, node_load)"#,
    r#"count_values("value", queue_depth)"#,
    r#"count_values by (queue) ("v", queue_depth)"#,
    r#"count_values("queue", queue_depth)"#,
    r#"count_values("v", round(temperature_celsius))"#,
    r#"sum(special_values)"#,
    r#"avg(special_values)"#,
    r#"max(special_values)"#,
    r#"min(special_values)"#,
    r#"count(special_values)"#,
    r#"sum(nonexistent_metric)"#,
    r#"count(nonexistent_metric)"#,
    r#"avg by (job) (up)"#,
    r#"sum by (__name__) ({__name__=~"up|queue_depth"})"#,
    r#"sum by (nonexistent_label) (up)"#,
    r#"max by (service) (rpc_latency_seconds)"#,
    r#"avg by (quantile) (rpc_latency_seconds)"#,
    r#"count(count by (job) (up))"#,
    // Histograms and summaries.
    r#"histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))"#,
    r#"histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[10m])))"#,
    r#"histogram_quantile(0.99, sum by (job, le) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(0, sum by (le) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(1, sum by (le) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(-0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(1.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(0.75, request_duration_seconds_bucket)"#,
    r#"histogram_quantile(0.5, sum by (le) (increase(request_duration_seconds_bucket[1h])))"#,
    r#"histogram_quantile(0.9, rate(request_duration_seconds_bucket{le!="+Inf"}[5m]))"#,
    r#"histogram_quantile(0.5, rate(request_duration_seconds_bucket{le=~"0.1|1.0|\\+Inf"}[5m]))"#,
    r#"histogram_quantile(0.3, sum without (instance) (rate(request_duration_seconds_bucket[15m])))"#,
    r#"rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])"#,
    r#"sum by (job) (rate(request_duration_seconds_sum[10m])) / sum by (job) (rate(request_duration_seconds_count[10m]))"#,
    r#"rpc_latency_seconds{quantile="0.99"} > on(service) group_left rate(rpc_latency_seconds_sum[5m]) / rate(rpc_latency_seconds_count[5m])"#,
    // Binary operators.
    r#"http_requests_total * 2"#,
    r#"2 - up"#,
    r#"temperature_celsius / 0"#,
    r#"temperature_celsius % 7"#,
    r#"temperature_celsius ^ 2"#,
    r#"queue_depth + queue_depth"#,
    r#"queue_depth - queue_depth offset 5m"#,
    r#"queue_depth * on(instance) group_left node_load"#,
    r#"node_load * on(instance) group_right queue_depth"#,
    r#"queue_depth / ignoring(queue) group_left node_load"#,
    r#"queue_depth + on(instance) group_left(zone) temperature_celsius{zone="z0"}"#,
    r#"node_load * on(instance) temperature_celsius"#,
    r#"node_load / (node_load - node_load)"#,
    r#"1 + 2 * up - 3 / node_load ^ 2"#,
    r#"temperature_celsius > 20"#,
    r#"temperature_celsius > bool 20"#,
    r#"20 < temperature_celsius"#,
    r#"20 >= bool temperature_celsius"#,
    r#"up == 1"#,
    r#"up != bool 0"#,
    r#"node_load > node_load * 0.5"#,
    r#"node_load <= bool on(instance) group_left temperature_celsius{zone="z1"}"#,
    r#"queue_depth == bool on(instance, queue) queue_depth offset 5m"#,
    r#"temperature_celsius >= on(instance) group_left node_load"#,
    r#"special_values > 0"#,
    r#"special_values == bool special_values"#,
    r#"(temperature_celsius > 20) * 2"#,
    r#"up and queue_depth"#,
    r#"up and on(instance) node_load"#,
    r#"node_load or up"#,
    r#"node_load unless on(instance) up == 0"#,
    r#"http_requests_total{job="api"} or http_requests_total{code="500"}"#,
    r#"temperature_celsius unless temperature_celsius > 25"#,
    r#"(up == 1) and ignoring(job) node_load"#,
    r#"vector(1) and on() up"#,
    r#"sparse_gauge or on(instance) label_replace(node_load, "instance", "s$1", "instance", "host-(.*)")"#,
    r#"rate(http_requests_total[5m]) / on(job, instance) group_left sum by (job, instance) (rate(http_requests_total[5m]))"#,
    r#"sum by (code) (increase(http_requests_total[1h])) / ignoring(code) group_left sum(increase(http_requests_total[1h]))"#,
    r#"http_requests_total - http_requests_total offset 1h"#,
    r#"sum(http_requests_total @T1) - sum(http_requests_total @T2)"#,
    // Subqueries (ranges end in 7s, see the module comment).
    r#"max_over_time(rate(http_requests_total[5m])[30m7s:1m])"#,
    r#"avg_over_time(temperature_celsius[10m7s:30s])"#,
    r#"rate(http_requests_total{job="web",code="200"}[5m])[20m7s:2m]"#,
    r#"sum_over_time(up[1h7s:])"#,
    r#"min_over_time(sum by (job) (rate(http_requests_total[1m]))[15m7s:1m] offset 10m)"#,
    r#"max_over_time(deriv(temperature_celsius[5m])[1h7s:5m] @T2)"#,
    r#"quantile_over_time(0.5, temperature_celsius[20m7s:1m])"#,
    r#"count_over_time((up == 0)[1h7s:30s])"#,
    r#"avg_over_time(max_over_time(temperature_celsius[10m7s:1m])[30m7s:5m])"#,
    r#"last_over_time(sparse_gauge[30m7s:1m])"#,
    r#"absent_over_time(nonexistent_metric[5m7s:1m])"#,
    r#"deriv(sum(http_requests_total)[30m7s:1m])"#,
    r#"increase(cpu_seconds_total[10m7s:30s])"#,
    r#"changes(up[1h7s:1m])"#,
    r#"resets(http_requests_total[30m7s:1m])"#,
    r#"stddev_over_time(node_load[1h7s:2m])"#,
    r#"present_over_time(sparse_gauge[20m7s:1m])"#,
    r#"max_over_time(vector(time())[5m7s:1m])"#,
    r#"sum_over_time(vector(1)[10m7s:1m])"#,
    r#"rate(sum by (job) (http_requests_total)[10m7s:30s])"#,
    // Nested and mixed.
    r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#,
    r#"topk(3, sum by (instance) (rate(cpu_seconds_total[5m])))"#,
    r#"max(max_over_time(temperature_celsius[1h])) - min(min_over_time(temperature_celsius[1h]))"#,
    r#"label_replace(sum by (job) (up), "j", "$1", "job", "(.)(.*)")"#,
    r#"round(rate(http_requests_total[5m]) * 60, 0.01)"#,
    r#"clamp_max(delta(queue_depth[10m]), 5)"#,
    r#"count(rate(batch_processed_total[5m]) > 0)"#,
    r#"sum(rate(batch_processed_total[5m])) by (batch) > 10"#,
    r#"abs(delta(sparse_gauge[10m])) > bool 2"#,
    r#"avg(avg_over_time(temperature_celsius[5m])) by (zone)"#,
    r#"histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m] offset 30m)))"#,
    r#"exp(ln(node_load))"#,
    r#"ln(exp(-node_load / 10))"#,
    r#"count_over_time(rate(http_requests_total[2m])[10m7s:1m]) > 5"#,
    r#"sort_desc(topk(5, node_load))"#,
    r#"scalar(sum(up)) / count(up)"#,
    r#"predict_linear(sum(cpu_seconds_total)[30m7s:1m], 600)"#,
    // Edge cases.
    r#"timestamp(timestamp(up{job="web"}))"#,
    r#"timestamp(-up{job="web"})"#,
    r#"timestamp(up{job="api"} > 0)"#,
    r#"timestamp(special_values)"#,
    r#"quantile_over_time(scalar(vector(0.3)), node_load[10m])"#,
    r#"absent(nonexistent_metric{job="a"} offset 5m)"#,
    r#"(up == bool 1) + on(instance, job) (up != bool 0)"#,
    r#"time() > bool 1700010000"#,
    r#"max_over_time(rate(http_requests_total{job="api"}[5m] offset 5m)[10m7s:1m])"#,
    r#"{__name__=~"rpc_latency_seconds_sum|rpc_latency_seconds_count"} * 2"#,
    r#"{__name__=~"rpc_latency_seconds_sum|rpc_latency_seconds_count"} > 0"#,
    r#"-{__name__=~"up|node_load"}"#,
    r#"rate({__name__=~"http_requests_total|batch_processed_total"}[5m])"#,
    r#"sum by (le) (request_duration_seconds_bucket)"#,
    r#"histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m]))) > 1"#,
    r#"count_values("v", node_load > 99)"#,
    r#"count_values without (instance) ("v", queue_depth)"#,
    r#"count_values("v", special_values)"#,
    r#"stdvar by (job) (rate(http_requests_total[5m]))"#,
    r#"rate(http_requests_total{code="404"}[5m] @T1)"#,
    r#"rate(http_requests_total{code="404"}[5m] @ start())"#,
    r#"sum(up @ end())"#,
    r#"sum_over_time(up{job="api"}[10m7s:1m] @ end())"#,
    r#"(sum(up))[5m7s:1m] @T1"#,
    r#"changes(sparse_gauge[1h])"#,
    r#"resets(request_duration_seconds_bucket{le="0.1"}[1h])"#,
    r#"up offset 1d"#,
    r#"quantile(0.5, special_values)"#,
    r#"stddev(special_values)"#,
    r#"special_values == bool Inf"#,
    r#"special_values != -Inf"#,
    r#"vector(NaN)"#,
    r#"1 + NaN"#,
    r#"0x1F + 1e3 + .5"#,
    r#"escaped_labels{path="\u65e5\u672c\u8a9e"}"#,
    r#"escaped_labels{path='a"quoted"'}"#,
    r#"escaped_labels{path=`back\slash`}"#,
    r#"label_replace(up, "x", "$0$0", "job", "a(p)i")"#,
    r#"label_replace(up, "x", "$1x", "job", "(.*)")"#,
    r#"label_replace(up, "x", "$10", "job", "(.*)")"#,
    r#"label_join(up, "x", "-", "nonexistent", "job", "nonexistent2")"#,
    r#"avg(nonexistent_metric)"#,
    r#"node_load / on() group_left sum(node_load)"#,
    r#"sum by (instance) (queue_depth) * on(instance) group_right node_load"#,
    r#"queue_depth * on(instance) group_left(rack) temperature_celsius{zone="z0"}"#,
    r#"irate(http_requests_total{job="batch"}[1m])"#,
    r#"idelta(sparse_gauge[10m])"#,
    r#"deriv(http_requests_total{job="api",code="200"}[1m])"#,
    r#"predict_linear(node_load[5m] offset 1h, 60)"#,
    r#"round(vector(-2.5))"#,
    r#"round(vector(2.5))"#,
    r#"round(vector(0.125), 0.25)"#,
    r#"round(temperature_celsius, -3)"#,
    r#"1 % 0"#,
    r#"vector(5) % -3"#,
    r#"vector(-5.5) % 2"#,
    r#"2 ^ -1"#,
    r#"ln(vector(0))"#,
    r#"log2(vector(-1))"#,
    r#"clamp(special_values, -1, 1)"#,
    r#"clamp_min(special_values, 0)"#,
    r#"sqrt(special_values)"#,
    r#"rate(sum(http_requests_total)[5m7s:])"#,
    r#"max_over_time((time() - timestamp(up{job="api"}))[10m7s:1m])"#,
    r#"sum_over_time(node_load[0s:1m] offset 1h)"#,
    r#"last_over_time(batch_processed_total[1m])"#,
    r#"batch_processed_total offset 5m unless batch_processed_total"#,
    r#"max by (batch) (timestamp(batch_processed_total))"#,
    r#"count(sparse_gauge) by (instance)"#,
    r#"sum(http_requests_total) without (instance, code)"#,
    r#"topk(2, sum by (job) (rate(http_requests_total[5m]))) by (job)"#,
    r#"bottomk(3, node_load) or topk(3, node_load)"#,
    r#"quantile(0.25, rate(cpu_seconds_total[5m])) by (mode)"#,
    r#"group by (zone) (temperature_celsius) * 0"#,
    r#"sum(sum by (job) (up) > bool 40)"#,
    r#"up{job="api"} + ignoring(job) up{job="web"}"#,
    r#"up{job="api"} == ignoring(job) up{job="web"}"#,
    r#"up{job="api"} + on(instance) group_right(job) up{job="web"}"#,
    r#"count_values("v", cpu_seconds_total{instance="host-3"} / 1e-20)"#,
    r#"count_values("v", node_load{instance=~"host-1."} * 1e-10)"#,
    r#"label_replace(escaped_labels, "u", "$1", "path", "(\\p{L}+).*")"#,
    r#"escaped_labels{path=~"(?i)ÜNÏCØDÉ"}"#,
    r#"absent(up{job=~"x"})"#,
    r#"absent_over_time(up{job="x",instance=~"y"}[5m])"#,
    r#"quantile(NaN, node_load)"#,
    r#"sum by (job) (up) and on(job) (sum by (job) (up) > 45)"#,
    r#"quantile_over_time(0.5, special_values[20m7s:1m])"#,
    r#"stdvar(special_values)"#,
    // Errors (both must fail).
    r#"rate(up)"#,
    r#"up{"#,
    r#"sum(up) by"#,
    r#"rate(up[5m], 1)"#,
    r#"{job="api"}"#,
    r#"label_replace(up, "x", "y", "job", "(")"#,
    r#"{__name__=~".*"} * 0"#,
    r#"sum_over_time(up[5m:0s])"#,
    r#"node_load[5m:1m] offset -1h unless up"#,
];

/// Instant-query times: each ≡ 0, 13, 28, 43 or 58 s (mod 60).
fn instant_times() -> Vec<i64> {
    vec![
        S + 30 * MIN,
        S + 2 * HOUR + 7 * MIN + 13_000,
        S + 3 * HOUR + 41 * MIN + 28_000,
        S + 5 * HOUR + 59 * MIN + 43_000,
        END + 3 * MIN + 58_000,
        END + 11 * MIN + 13_000,
    ]
}

/// Range queries (start, end, step), same residues as the instant times.
fn ranges() -> Vec<(i64, i64, i64)> {
    vec![
        (S, END + 10 * MIN, 60_000),
        (S + 17 * MIN + 13_000, END, 17 * MIN),
        (S + HOUR, S + 5 * HOUR, 5 * MIN),
        (S + 4 * HOUR + 13_000, S + 4 * HOUR + 30 * MIN, 15_000),
    ]
}

struct Case {
    query: String,
    /// `None`: instant query at .0; otherwise a range query (start, end, step).
    start: i64,
    range: Option<(i64, i64)>,
}

impl Case {
    fn describe(&self) -> String {
        let rel = |t: i64| {
            let d = t - S;
            format!(
                "S{}{}m{}s",
                if d < 0 { "-" } else { "+" },
                d.abs() / MIN,
                d.abs() % MIN / 1000
            )
        };
        match self.range {
            None => format!("instant t={} ({})", self.start, rel(self.start)),
            Some((end, step)) => format!(
                "range {}..{} step {}s",
                rel(self.start),
                rel(end),
                step / 1000
            ),
        }
    }
}

fn cases() -> Vec<Case> {
    let it = instant_times();
    let rs = ranges();
    let mut out = Vec::new();
    for (i, q) in QUERIES.iter().enumerate() {
        let q = expand(q);
        // All instant times and two of the range configurations, rotating with the query so
        // that every combination is exercised across the list.
        for &t in &it {
            out.push(Case {
                query: q.clone(),
                start: t,
                range: None,
            });
        }
        for k in 0..2 {
            let (s, e, st) = rs[(i + k) % rs.len()];
            out.push(Case {
                query: q.clone(),
                start: s,
                range: Some((e, st)),
            });
        }
    }
    out
}

fn is_ordered(q: &str) -> bool {
    q.starts_with("sort(") || q.starts_with("sort_desc(")
}

#[test]
fn promql_matches_prometheus() {
    let prometheus = require_tool("prometheus");
    let promtool = require_tool("promtool");
    let t0 = Instant::now();
    // PQDIFF_KEEP=1 keeps the input and both block copies for debugging.
    let keep = std::env::var_os("PQDIFF_KEEP").is_some();
    let tmp = tempfile::Builder::new()
        .prefix("pqdiff")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("keeping {}", tmp.path().display());
    }
    let (input, nseries, nsamples) = generate(tmp.path());
    assert!(nseries >= 1000, "{nseries} series");
    let blocks = tmp.path().join("prom");
    run_ok(
        Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&blocks),
        LIMIT,
    );
    let ours = tmp.path().join("strata");
    copy_dir(&blocks, &ours);
    eprintln!(
        "generated {nseries} series / {nsamples} samples and backfilled them in {:?}",
        t0.elapsed()
    );

    let prom = Prometheus::start(&prometheus, &blocks, tmp.path());
    // The data is all there: every generated series is visible to Prometheus.
    let all = from_prom(&prom.api(
        "/api/v1/query",
        &[
            (
                "query",
                "count(last_over_time({__name__!=\"\"}[7h]))".to_string(),
            ),
            ("time", ts(END + MIN)),
        ],
    ));
    match &all {
        Res::Vector(v) if v.len() == 1 && v[0].2 == nseries as f64 => {}
        other => panic!("Prometheus does not see all {nseries} series: {other:?}"),
    }

    let db = Db::open(
        &ours,
        DbOptions {
            read_only: true,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .expect("open strata db");
    let engine = strata_promql::Engine::default();
    let cases = cases();

    // Strata on one thread, Prometheus's HTTP API on another.
    let (ours_res, prom_res) = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            cases
                .iter()
                .map(|c| {
                    let t = Instant::now();
                    let r = match strata_promql::parser::parse(&c.query) {
                        Err(e) => Err(e),
                        Ok(expr) => {
                            let (end, step) = c.range.unwrap_or((c.start, 0));
                            engine.exec(
                                &*db,
                                &expr,
                                c.start,
                                end,
                                step,
                                &strata_promql::engine::QueryOptions::default(),
                            )
                        }
                    };
                    (from_strata(r), t.elapsed())
                })
                .collect::<Vec<_>>()
        });
        let p: Vec<Res> = cases
            .iter()
            .map(|c| {
                let v = match c.range {
                    None => prom.api(
                        "/api/v1/query",
                        &[("query", c.query.clone()), ("time", ts(c.start))],
                    ),
                    Some((end, step)) => prom.api(
                        "/api/v1/query_range",
                        &[
                            ("query", c.query.clone()),
                            ("start", ts(c.start)),
                            ("end", ts(end)),
                            ("step", format!("{}", step as f64 / 1000.0)),
                        ],
                    ),
                };
                from_prom(&v)
            })
            .collect();
        (h.join().expect("strata thread"), p)
    });
    // The same queries through `strata serve`'s HTTP API, with the data pushed over
    // remote-write in time order.
    let http_res = over_http(&input, tmp.path(), &cases);
    drop(prom);

    let mut http_mismatches = Vec::new();
    for (c, (p, h)) in cases.iter().zip(prom_res.iter().zip(&http_res)) {
        let ordered = c.range.is_none() && is_ordered(&c.query);
        if let Some(d) = compare(p, h, ordered) {
            http_mismatches.push(format!("HTTP {}  [{}]\n    {d}", c.query, c.describe()));
        }
    }
    assert!(
        http_mismatches.is_empty(),
        "{} of {} comparisons through strata serve's HTTP API differ:\n{}",
        http_mismatches.len(),
        cases.len(),
        http_mismatches.join("\n")
    );

    let mut mismatches = Vec::new();
    let mut by_query: HashMap<&str, usize> = HashMap::new();
    let mut nonempty = 0;
    let mut prom_errors: HashMap<&str, String> = HashMap::new();
    let mut slowest = (Duration::ZERO, String::new());
    for (c, (p, (o, took))) in cases.iter().zip(prom_res.iter().zip(&ours_res)) {
        if *took > slowest.0 {
            slowest = (*took, format!("{} [{}]", c.query, c.describe()));
        }
        match p {
            Res::Vector(v) if !v.is_empty() => nonempty += 1,
            Res::Matrix(m) if !m.is_empty() => nonempty += 1,
            Res::Scalar(..) | Res::Str(..) => nonempty += 1,
            _ => {}
        }
        if let Res::Err(e) = p {
            if prom_errors.insert(c.query.as_str(), e.clone()).is_none() {
                eprintln!("Prometheus rejects {} [{}]: {e}", c.query, c.describe());
            }
        }
        let ordered = c.range.is_none() && is_ordered(&c.query);
        if let Some(d) = compare(p, o, ordered) {
            *by_query.entry(&c.query).or_default() += 1;
            mismatches.push(format!("{}  [{}]\n    {d}", c.query, c.describe()));
        }
    }
    eprintln!(
        "{} expressions, {} comparisons ({nonempty} non-empty in Prometheus), {} differ in {} \
         expressions; slowest Strata evaluation {:?}: {}; total {:?}",
        QUERIES.len(),
        cases.len(),
        mismatches.len(),
        by_query.len(),
        slowest.0,
        slowest.1,
        t0.elapsed()
    );
    assert!(
        nonempty * 10 >= cases.len() * 7,
        "only {nonempty} of {} results are non-empty: the test data or times are off",
        cases.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} comparisons differ ({} of {} expressions):\n{}",
        mismatches.len(),
        cases.len(),
        by_query.len(),
        QUERIES.len(),
        mismatches.join("\n")
    );
}

/// Starts `strata serve` on an empty directory, pushes every sample of `input` to it over
/// remote-write 1.0 in time order, and answers each case through the HTTP API.
fn over_http(input: &Path, work: &Path, cases: &[Case]) -> Vec<Res> {
    use prost::Message;
    use strata_ingest::remote::proto::v1::{Label, Sample, TimeSeries, WriteRequest};

    let text = std::fs::read_to_string(input).expect("read input");
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    let mut series: Vec<strata_tsdb::Labels> = Vec::new();
    let mut index: HashMap<strata_tsdb::Labels, usize> = HashMap::new();
    for e in strata_ingest::openmetrics::OpenMetricsParser::new(&text) {
        if let strata_ingest::openmetrics::Entry::Sample(s) = e.expect("parse input") {
            let l = s.to_labels().expect("labels");
            let n = index.len();
            let i = *index.entry(l.clone()).or_insert_with(|| {
                series.push(l);
                n
            });
            samples.push((s.timestamp_ms.expect("timestamp"), i, s.value));
        }
    }
    samples.sort_by_key(|s| (s.0, s.1));

    let port = free_port();
    let mut server = common::Proc::spawn(
        "strata",
        Command::new(common::strata())
            .arg("serve")
            .arg("--storage.tsdb.path")
            .arg(work.join("served"))
            .arg("--storage.tsdb.retention.time")
            .arg("100y")
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}")),
        work.join("serve.log"),
    );
    server.wait_ready(port, "/-/ready", Duration::from_secs(60));
    for batch in samples.chunks(20_000) {
        let mut by_series: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
        for &(t, i, v) in batch {
            by_series.entry(i).or_default().push(Sample {
                value: v,
                timestamp: t,
            });
        }
        let req = WriteRequest {
            timeseries: by_series
                .into_iter()
                .map(|(i, samples)| TimeSeries {
                    labels: series[i]
                        .iter()
                        .map(|l| Label::new(&l.name, &l.value))
                        .collect(),
                    samples,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        let (code, resp) = common::http_request(
            port,
            "POST",
            "/api/v1/write",
            Some(("application/x-protobuf", &body)),
        )
        .expect("remote write");
        assert!(
            (200..300).contains(&code),
            "remote write answered {code}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let api = |path: &str, params: &[(&str, String)]| -> serde_json::Value {
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let (_, body) = http_get(port, &format!("{path}?{}", qs.join("&"))).expect("query");
        serde_json::from_slice(&body).expect("json")
    };
    let out = cases
        .iter()
        .map(|c| {
            let v = match c.range {
                None => api(
                    "/api/v1/query",
                    &[("query", c.query.clone()), ("time", ts(c.start))],
                ),
                Some((end, step)) => api(
                    "/api/v1/query_range",
                    &[
                        ("query", c.query.clone()),
                        ("start", ts(c.start)),
                        ("end", ts(end)),
                        ("step", format!("{}", step as f64 / 1000.0)),
                    ],
                ),
            };
            from_prom(&v)
        })
        .collect();
    server.kill();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).expect("copy");
        }
    }
}
