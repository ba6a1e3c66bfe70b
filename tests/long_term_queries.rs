//! Queries over long-term storage give the same answers before and after the upload, and the
//! same as the real Prometheus (Debian's 2.42) on the same data.
//!
//! `strata serve` (2-minute blocks, 30-minute local retention, shipping to a moto S3 bucket)
//! and Prometheus (`--web.enable-remote-write-receiver`) receive the same three hours of
//! generated samples over remote-write, in time order: counters with resets, float counters,
//! gauges, classic histograms, over a few label dimensions. Strata answers every case three
//! times: right after the push (from the head), once the head is persisted into local blocks
//! (before the shipper's second pass uploads them), and after a bounded wait until the blocks
//! are in the bucket and the local copies beyond retention are gone from the data directory,
//! so the first ~2.5 hours are answered from the bucket only (the rest from local blocks that
//! are also in the bucket, and the head). Every round must equal Prometheus's answers (same
//! series, same timestamps, values within 1e-6 relative) and the bucket round must equal the
//! local one. `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values` (with and
//! without `match[]` and time ranges) must return the same sets.
//!
//! Prometheus 2.42 vs 3 (Strata follows 3): every sample timestamp has a millisecond part in
//! 1..=998 while every evaluation time, range and offset is a whole number of seconds, so no
//! sample sits on a window edge (closed in 2.x, left-open in 3). Counters start high and do
//! not reset in the first 15 minutes, so rate's extrapolation towards the zero point (ordered
//! differently in 2.x and 3) never matters. No subqueries (their inner steps would sit on
//! window edges), no `topk` ties (gauge values are random floats).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::results::{compare, from_prom, Lbls, Res};
use common::{
    free_port, get_json, http_request, require_tool, start_moto, start_strata_shipping, Proc, Rng,
};
use strata_compactor::bucket::{self, Bucket};

const SEC: i64 = 1_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const BLOCK: i64 = 2 * MIN;
const RETENTION: i64 = 30 * MIN;
/// How long the data spans, ending a minute before the test starts.
const SPAN: i64 = 3 * HOUR;

// ---------------------------------------------------------------------------------------------
// Data.

/// Generated series: labels (with `__name__`, sorted by name) and samples in time order.
struct Data {
    series: Vec<(Lbls, Vec<(i64, f64)>)>,
}

struct Gen {
    rng: Rng,
    start: i64,
    end: i64,
    series: Vec<(Lbls, Vec<(i64, f64)>)>,
}

impl Gen {
    /// Sample times every `interval` over the period (see [`Rng::scrape_times`]).
    fn times(&mut self, interval: i64) -> Vec<i64> {
        self.rng.scrape_times(self.start, self.end - SEC, interval)
    }

    fn f(&mut self) -> f64 {
        self.rng.unit()
    }

    /// A counter (see [`Rng::counter`]) without resets in the first 15 minutes.
    fn counter(
        &mut self,
        times: &[i64],
        step: impl Fn(&mut Rng) -> f64,
        reset_every: u64,
    ) -> Vec<(i64, f64)> {
        self.rng
            .counter(times, self.start + 15 * MIN, step, reset_every)
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], points: Vec<(i64, f64)>) {
        let mut l: Lbls = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        l.push(("__name__".into(), name.into()));
        l.sort();
        self.series.push((l, points));
    }
}

const LE: [&str; 7] = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"];

fn generate(start: i64, end: i64) -> Data {
    let mut g = Gen {
        rng: Rng::new(20_240_601),
        start,
        end,
        series: Vec::new(),
    };
    // Integer counters with resets, 15 s.
    for job in ["api", "web"] {
        for i in 0..4 {
            for code in ["200", "500"] {
                let times = g.times(15 * SEC);
                let scale = if code == "500" { 3 } else { 50 };
                let pts = g.counter(&times, |r| r.below(scale) as f64, 150);
                let inst = format!("host-{i}");
                g.push(
                    "http_requests_total",
                    &[("code", code), ("instance", &inst), ("job", job)],
                    pts,
                );
            }
        }
    }
    // Float counters, 30 s.
    for i in 0..4 {
        for mode in ["user", "system"] {
            let times = g.times(30 * SEC);
            let pts = g.counter(&times, |r| r.unit() * 25.0, 200);
            let inst = format!("host-{i}");
            g.push(
                "cpu_seconds_total",
                &[("instance", &inst), ("mode", mode)],
                pts,
            );
        }
    }
    // Gauges: random walks, 15 s.
    for i in 0..4 {
        for zone in ["z0", "z1", "z2"] {
            let times = g.times(15 * SEC);
            let mut v = 10.0 + g.f() * 20.0;
            let pts = times
                .iter()
                .map(|&t| {
                    v += (g.f() - 0.5) * 2.0;
                    (t, v)
                })
                .collect();
            let inst = format!("host-{i}");
            g.push(
                "temperature_celsius",
                &[("instance", &inst), ("zone", zone)],
                pts,
            );
        }
    }
    // Classic histograms, 30 s; the `web` one resets once in the middle.
    let bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY];
    for job in ["api", "web"] {
        for i in 0..2 {
            let times = g.times(30 * SEC);
            let reset_at = if job == "web" {
                times.len() / 2
            } else {
                usize::MAX
            };
            let mut counts = [0f64; 7];
            for c in counts.iter_mut() {
                *c = 1000.0 + g.rng.below(1000) as f64;
            }
            let mut sum = counts.iter().sum::<f64>() * 0.4;
            let mut rows = Vec::with_capacity(times.len());
            for k in 0..times.len() {
                if k == reset_at {
                    counts = [0.0; 7];
                    sum = 0.0;
                }
                for _ in 0..g.rng.below(40) {
                    let b = (g.rng.below(7).min(g.rng.below(7)) + g.rng.below(2)).min(6) as usize;
                    let lo = if b == 0 { 0.0 } else { bounds[b - 1] };
                    let hi = if b == 6 { 5.0 } else { bounds[b] };
                    sum += lo + (hi - lo) * g.f();
                    counts[b] += 1.0;
                }
                let mut cum = [0f64; 7];
                let mut acc = 0.0;
                for (c, n) in cum.iter_mut().zip(counts) {
                    acc += n;
                    *c = acc;
                }
                rows.push((cum, sum));
            }
            let inst = format!("host-{i}");
            for (j, le) in LE.iter().enumerate() {
                let pts = times.iter().zip(&rows).map(|(&t, r)| (t, r.0[j])).collect();
                g.push(
                    "request_duration_seconds_bucket",
                    &[("instance", &inst), ("job", job), ("le", le)],
                    pts,
                );
            }
            let pts = times.iter().zip(&rows).map(|(&t, r)| (t, r.1)).collect();
            g.push(
                "request_duration_seconds_sum",
                &[("instance", &inst), ("job", job)],
                pts,
            );
            let pts = times.iter().zip(&rows).map(|(&t, r)| (t, r.0[6])).collect();
            g.push(
                "request_duration_seconds_count",
                &[("instance", &inst), ("job", job)],
                pts,
            );
        }
    }
    // Batch counters that start late and stop early (from 0, so rate's zero point is the first
    // sample in 2.x and 3 alike): after the upload the early ones live only in the bucket.
    let spans: [(i64, i64); 6] = [
        (5 * MIN, 40 * MIN),
        (30 * MIN, HOUR + 30 * MIN),
        (HOUR + 5 * MIN, HOUR + 20 * MIN),
        (HOUR + 50 * MIN, 2 * HOUR + 40 * MIN),
        (2 * HOUR + 10 * MIN, 2 * HOUR + 57 * MIN),
        (2 * HOUR + 45 * MIN, SPAN),
    ];
    for (b, (from, to)) in spans.iter().enumerate() {
        let (full_start, full_end) = (g.start, g.end);
        (g.start, g.end) = (full_start + from, full_start + to);
        let times = g.times(30 * SEC);
        (g.start, g.end) = (full_start, full_end);
        let mut v = 0.0;
        let pts = times
            .iter()
            .map(|&t| {
                let p = (t, v);
                v += g.rng.below(1000) as f64 / 8.0;
                p
            })
            .collect();
        g.push("batch_processed_total", &[("batch", &format!("b{b}"))], pts);
    }
    Data { series: g.series }
}

impl Data {
    fn samples(&self) -> usize {
        self.series.iter().map(|s| s.1.len()).sum()
    }

    /// Remote-write 1.0 requests (snappy-compressed protobuf), one per 15 s of data, in time
    /// order.
    fn write_requests(&self, start: i64, end: i64) -> Vec<Vec<u8>> {
        use prost::Message;
        use strata_ingest::remote::proto::v1::{Label, Sample, TimeSeries, WriteRequest};
        let mut cursors = vec![0usize; self.series.len()];
        let mut out = Vec::new();
        let mut from = start;
        while from < end {
            let to = from + 15 * SEC;
            let mut req = WriteRequest::default();
            for (i, (labels, pts)) in self.series.iter().enumerate() {
                let mut samples = Vec::new();
                while let Some(&(t, v)) = pts.get(cursors[i]) {
                    if t >= to {
                        break;
                    }
                    samples.push(Sample {
                        value: v,
                        timestamp: t,
                    });
                    cursors[i] += 1;
                }
                if !samples.is_empty() {
                    req.timeseries.push(TimeSeries {
                        labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                        samples,
                        ..Default::default()
                    });
                }
            }
            if !req.timeseries.is_empty() {
                out.push(
                    snap::raw::Encoder::new()
                        .compress_vec(&req.encode_to_vec())
                        .expect("snappy"),
                );
            }
            from = to;
        }
        assert!(
            cursors
                .iter()
                .zip(&self.series)
                .all(|(c, s)| *c == s.1.len()),
            "samples outside [start, end)"
        );
        out
    }
}

fn push(port: u16, who: &str, reqs: &[Vec<u8>]) {
    for body in reqs {
        let (code, resp) = http_request(
            port,
            "POST",
            "/api/v1/write",
            Some(("application/x-protobuf", body)),
        )
        .unwrap_or_else(|e| panic!("remote write to {who}: {e}"));
        assert!(
            (200..300).contains(&code),
            "remote write to {who} answered {code}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Cases.

const QUERIES: &[&str] = &[
    r#"http_requests_total{job="api"}"#,
    r#"rate(http_requests_total[5m])"#,
    r#"increase(http_requests_total{code=~"5.."}[10m])"#,
    r#"irate(http_requests_total{job=~"a.*|w.b", code!~"2.*"}[2m])"#,
    r#"resets(http_requests_total[1h])"#,
    r#"sum by (job) (rate(http_requests_total[5m]))"#,
    r#"sum by (job, code) (increase(http_requests_total[1h]))"#,
    r#"count by (code) (http_requests_total)"#,
    r#"quantile by (job) (0.75, rate(http_requests_total[5m]))"#,
    r#"rate(http_requests_total[5m] offset 30m)"#,
    r#"sum(rate(cpu_seconds_total{mode="user"}[5m] offset 1h))"#,
    r#"bottomk(2, rate(cpu_seconds_total[5m]))"#,
    r#"last_over_time(cpu_seconds_total[10m])"#,
    r#"avg by (zone) (temperature_celsius)"#,
    r#"min by (instance) (temperature_celsius)"#,
    r#"max(temperature_celsius)"#,
    r#"stddev by (instance) (temperature_celsius)"#,
    r#"topk(3, temperature_celsius)"#,
    r#"temperature_celsius offset 90m > 20"#,
    r#"quantile_over_time(0.9, temperature_celsius[30m])"#,
    r#"avg_over_time(temperature_celsius{zone!="z1"}[10m])"#,
    r#"max_over_time(temperature_celsius[1h])"#,
    r#"sum_over_time(temperature_celsius{instance=~"host-[02]"}[3h])"#,
    r#"delta(temperature_celsius[15m])"#,
    r#"count_over_time({__name__=~"cpu.*|temp.*"}[20m])"#,
    r#"histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))"#,
    r#"histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))"#,
    r#"rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])"#,
    r#"sum by (batch) (increase(batch_processed_total[10m]))"#,
    r#"count(batch_processed_total)"#,
    r#"max_over_time(batch_processed_total[1h])"#,
];

/// Instant-query times (offsets from the data start), whole seconds, never ≡ 0 (mod 60).
const INSTANT: &[i64] = &[
    4 * MIN + 13 * SEC,
    41 * MIN + 28 * SEC,
    HOUR + 17 * MIN + 43 * SEC,
    2 * HOUR + 5 * MIN + 58 * SEC,
    2 * HOUR + 49 * MIN + 13 * SEC,
    SPAN - MIN + 28 * SEC,
    SPAN + 4 * MIN + 43 * SEC,
];

/// Range queries (start, end, step) as offsets from the data start.
const RANGES: &[(i64, i64, i64)] = &[
    (13 * SEC, SPAN + 5 * MIN + 13 * SEC, MIN),
    (7 * MIN + 28 * SEC, SPAN, 7 * MIN),
    (50 * MIN + 43 * SEC, HOUR + 50 * MIN + 43 * SEC, 15 * SEC),
    (58 * SEC, SPAN + 58 * SEC, 10 * MIN),
];

#[derive(Clone)]
enum Case {
    Instant(String, i64),
    Range(String, i64, i64, i64),
    Series(Vec<String>, i64, i64),
    Labels(Vec<String>, Option<(i64, i64)>),
    LabelValues(String, Vec<String>, Option<(i64, i64)>),
}

fn ts(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

impl Case {
    fn describe(&self, s: i64) -> String {
        let rel = |t: i64| format!("S+{}m{}s", (t - s) / MIN, (t - s) % MIN / SEC);
        match self {
            Case::Instant(q, t) => format!("{q}  [instant {}]", rel(*t)),
            Case::Range(q, a, b, st) => {
                format!("{q}  [range {}..{} step {}s]", rel(*a), rel(*b), st / SEC)
            }
            Case::Series(m, a, b) => format!("series {m:?} [{}..{}]", rel(*a), rel(*b)),
            Case::Labels(m, r) => format!("labels {m:?} {r:?}"),
            Case::LabelValues(n, m, r) => format!("label values {n} {m:?} {r:?}"),
        }
    }

    fn request(&self) -> (String, Vec<(&'static str, String)>) {
        let range = |p: &mut Vec<(&'static str, String)>, r: &Option<(i64, i64)>| {
            if let Some((a, b)) = r {
                p.push(("start", ts(*a)));
                p.push(("end", ts(*b)));
            }
        };
        match self {
            Case::Instant(q, t) => (
                "/api/v1/query".into(),
                vec![("query", q.clone()), ("time", ts(*t))],
            ),
            Case::Range(q, a, b, st) => (
                "/api/v1/query_range".into(),
                vec![
                    ("query", q.clone()),
                    ("start", ts(*a)),
                    ("end", ts(*b)),
                    ("step", format!("{}", *st as f64 / 1000.0)),
                ],
            ),
            Case::Series(m, a, b) => {
                let mut p: Vec<_> = m.iter().map(|m| ("match[]", m.clone())).collect();
                range(&mut p, &Some((*a, *b)));
                ("/api/v1/series".into(), p)
            }
            Case::Labels(m, r) => {
                let mut p: Vec<_> = m.iter().map(|m| ("match[]", m.clone())).collect();
                range(&mut p, r);
                ("/api/v1/labels".into(), p)
            }
            Case::LabelValues(n, m, r) => {
                let mut p: Vec<_> = m.iter().map(|m| ("match[]", m.clone())).collect();
                range(&mut p, r);
                (format!("/api/v1/label/{n}/values"), p)
            }
        }
    }
}

fn cases(s: i64) -> Vec<Case> {
    let mut out = Vec::new();
    for q in QUERIES {
        for &t in INSTANT {
            out.push(Case::Instant(q.to_string(), s + t));
        }
        for &(a, b, st) in RANGES {
            out.push(Case::Range(q.to_string(), s + a, s + b, st));
        }
    }
    let all = Some((s - HOUR, s + SPAN + HOUR));
    let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    out.extend([
        Case::Series(m(&[r#"http_requests_total{job="api"}"#]), s, s + SPAN),
        // Only the first 20 minutes: bucket blocks only after the upload.
        Case::Series(
            m(&[r#"{__name__=~"temp.*|cpu.*"}"#, r#"{le="+Inf"}"#]),
            s,
            s + 20 * MIN,
        ),
        Case::Series(
            m(&[r#"{__name__=~".+", instance=~"host-[13]"}"#]),
            s + HOUR,
            s + 2 * HOUR,
        ),
        Case::Series(m(&["batch_processed_total"]), s, s + 20 * MIN),
        Case::Series(m(&["batch_processed_total"]), s + 2 * HOUR, s + SPAN),
        Case::Labels(Vec::new(), None),
        Case::Labels(Vec::new(), all),
        Case::Labels(m(&["cpu_seconds_total"]), all),
        Case::LabelValues("__name__".into(), Vec::new(), None),
        Case::LabelValues("job".into(), Vec::new(), all),
        Case::LabelValues("le".into(), Vec::new(), None),
        Case::LabelValues("batch".into(), Vec::new(), None),
        Case::LabelValues("batch".into(), m(&[r#"{batch=~"b[0-2]"}"#]), all),
        Case::LabelValues("instance".into(), m(&["cpu_seconds_total"]), all),
        Case::LabelValues("code".into(), m(&[r#"{job=~"w.*"}"#]), None),
    ]);
    out
}

/// An answer in a comparable form: query results, or sorted sets of series / names.
#[derive(Debug)]
enum Answer {
    Query(Res),
    Set(Result<Vec<String>, String>),
}

fn answer(port: u16, c: &Case) -> Answer {
    let (path, params) = c.request();
    let v = get_json(port, &path, &params);
    match c {
        Case::Instant(..) | Case::Range(..) => Answer::Query(from_prom(&v)),
        _ if v["status"] != "success" => Answer::Set(Err(format!("{}", v["error"]))),
        _ => {
            let mut set: Vec<String> = v["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: no data array: {v}"))
                .iter()
                .map(|x| match x.as_str() {
                    Some(s) => s.to_string(),
                    // A series: its labels, sorted.
                    None => format!("{:?}", common::results::prom_labels(x)),
                })
                .collect();
            set.sort();
            Answer::Set(Ok(set))
        }
    }
}

fn differ(want: &Answer, got: &Answer) -> Option<String> {
    match (want, got) {
        (Answer::Query(a), Answer::Query(b)) => compare(a, b, false),
        (Answer::Set(a), Answer::Set(b)) if a == b => None,
        (a, b) => Some(format!("want {a:?}\n      got {b:?}")),
    }
}

/// Every case that answers differently, described.
fn mismatches(s: i64, cases: &[Case], want: &[Answer], got: &[Answer], what: &str) -> Vec<String> {
    cases
        .iter()
        .zip(want.iter().zip(got))
        .filter_map(|(c, (w, g))| {
            differ(w, g).map(|d| format!("{what}: {}\n    {d}", c.describe(s)))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Servers and storage state.

fn start_prometheus(work: &Path, config: &Path) -> (Proc, u16) {
    let bin = require_tool("prometheus");
    let port = free_port();
    let mut p = Proc::spawn(
        "prometheus",
        Command::new(bin)
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("prom").display()
            ))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--web.enable-remote-write-receiver"),
        work.join("prometheus.log"),
    );
    p.wait_ready(port, "/-/ready", Duration::from_secs(60));
    (p, port)
}

/// Local blocks of the data directory: (ulid, minTime, maxTime).
fn local_blocks(dir: &Path) -> Vec<(String, i64, i64)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("read data dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !strata_tsdb::db::is_block_dir_name(&name) {
            continue;
        }
        // A block being deleted may lose its meta.json first.
        let Ok(raw) = std::fs::read(e.path().join("meta.json")) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_slice(&raw).expect("meta.json");
        let t = |k: &str| m[k].as_i64().unwrap_or_else(|| panic!("{name}: {k}"));
        let (a, b) = (t("minTime"), t("maxTime"));
        v.push((name, a, b));
    }
    v.sort_by_key(|b| b.1);
    v
}

/// Bucket blocks: (ulid, minTime, maxTime), and the number of partial uploads.
fn bucket_blocks(rt: &tokio::runtime::Runtime, b: &Bucket) -> (Vec<(String, i64, i64)>, usize) {
    let l = rt.block_on(bucket::list_metas(b)).expect("list bucket");
    assert!(l.corrupt.is_empty(), "corrupt blocks: {:?}", l.corrupt);
    let mut v: Vec<_> = l
        .blocks
        .iter()
        .map(|m| (m.ulid.to_string(), m.min_time, m.max_time))
        .collect();
    v.sort_by_key(|b| b.1);
    (v, l.partial.len())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[test]
fn queries_agree_before_and_after_upload_and_with_prometheus() {
    require_tool("prometheus");
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = start_moto("strata-queries", tmp.path().join("moto.log"));
    let objstore = moto.objstore_yaml();
    // The same external labels for both; neither adds them to query answers.
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  external_labels:\n    cluster: test-eu\n    replica: a\n",
    )
    .expect("write config");

    // Data: three hours ending a minute ago, aligned to the minute.
    let s = (now_ms() / MIN) * MIN - SPAN - MIN;
    let data = generate(s, s + SPAN);
    let reqs = data.write_requests(s, s + SPAN);
    let cases = cases(s);

    let (mut prom, prom_port) = start_prometheus(tmp.path(), &cfg);
    let dir = tmp.path().join("data");
    let port = free_port();
    // The shipper's first pass runs at start-up (nothing to ship), the next one 30 s later:
    // the push and the first two rounds of queries read local data.
    let mut server = start_strata_shipping(
        &dir,
        port,
        tmp.path().join("serve.log"),
        &cfg,
        &objstore,
        "30s",
        &[],
    );
    let t_push = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| push(prom_port, "prometheus", &reqs));
        push(port, "strata", &reqs);
    });
    eprintln!(
        "pushed {} series / {} samples in {} requests to both in {:?}",
        data.series.len(),
        data.samples(),
        reqs.len(),
        t_push.elapsed()
    );

    let (bkt, _) = strata_compactor::objstore::from_yaml(&objstore).expect("objstore");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Round 1: right after the push, from the head (the first head compaction comes up to
    // 15 s after start-up).
    let t_q = Instant::now();
    let local_at_head_round = local_blocks(&dir).len();
    let from_head: Vec<Answer> = cases.iter().map(|c| answer(port, c)).collect();
    eprintln!(
        "round 1 (head): {} cases in {:?}; {local_at_head_round} local blocks before it",
        cases.len(),
        t_q.elapsed(),
    );
    // Prometheus, meanwhile.
    let want: Vec<Answer> = cases.iter().map(|c| answer(prom_port, c)).collect();
    prom.kill();

    // Round 2: once the head is persisted into local blocks, before the shipper's second pass
    // (30 s after start-up) uploads them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = local_blocks(&dir).len() as i64;
        if n >= SPAN / BLOCK - 3 || !bucket_blocks(&rt, &bkt).0.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("only {n} local blocks after 60 s:\n{}", server.log_text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let t_q = Instant::now();
    let local_round = local_blocks(&dir);
    let before: Vec<Answer> = cases.iter().map(|c| answer(port, c)).collect();
    let in_bucket_before = bucket_blocks(&rt, &bkt).0.len();
    eprintln!(
        "round 2 (local blocks): {:?}; {} local blocks (oldest from S+{}m) before it, {} in \
         the bucket after it",
        t_q.elapsed(),
        local_round.len(),
        local_round.first().map_or(-1, |b| (b.1 - s) / MIN),
        in_bucket_before
    );
    assert!(
        local_round.len() as i64 >= SPAN / BLOCK / 2 && local_round[0].1 < s + BLOCK,
        "round 2 did not read local blocks: {} local, {in_bucket_before} shipped",
        local_round.len()
    );

    // Wait (bounded) until the blocks are shipped and the local copies beyond retention are
    // gone: everything older than ~35 minutes before the end lives only in the bucket.
    // Meanwhile, every pushed sample must stay visible exactly once: a block may leave the
    // data directory only once the bucket store serves it.
    let total = data.samples() as f64;
    let count_all = Case::Instant(r#"{__name__=~".+"}[4h]"#.into(), s + SPAN + MIN);
    let mut lost: Vec<String> = Vec::new();
    let mut polls = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (shipped, local) = loop {
        polls += 1;
        match answer(port, &count_all) {
            Answer::Query(Res::Matrix(m))
                if m.iter().map(|x| x.1.len()).sum::<usize>() as f64 == total => {}
            other => lost.push(format!(
                "at {:?}: {} ({} local blocks, {} in the bucket)",
                t0.elapsed(),
                match other {
                    Answer::Query(Res::Matrix(m)) =>
                        format!("{} samples", m.iter().map(|x| x.1.len()).sum::<usize>()),
                    other => format!("{other:?}"),
                },
                local_blocks(&dir).len(),
                bucket_blocks(&rt, &bkt).0.len()
            )),
        }
        let (metas, partial) = bucket_blocks(&rt, &bkt);
        let local = local_blocks(&dir);
        let ids: Vec<&String> = metas.iter().map(|m| &m.0).collect();
        let done = partial == 0
            && metas.len() as i64 >= SPAN / BLOCK - 3
            && metas.first().is_some_and(|m| m.1 < s + BLOCK)
            && local.len() as i64 <= RETENTION / BLOCK + 1
            && local.iter().all(|l| ids.contains(&&l.0))
            && local
                .first()
                .is_some_and(|l| l.1 >= s + SPAN - RETENTION - 3 * BLOCK);
        if done {
            break (metas, local);
        }
        if Instant::now() > deadline {
            panic!(
                "after {:?}: {} bucket blocks ({partial} partial), local blocks {:?}\n{}",
                t0.elapsed(),
                metas.len(),
                local,
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        lost.is_empty(),
        "{} of {polls} polls during upload and retention did not count all {total} samples:\n{}",
        lost.len(),
        lost.join("\n")
    );
    // Blocks cover the whole period without overlaps.
    for w in shipped.windows(2) {
        assert!(w[0].2 <= w[1].1, "overlapping blocks {w:?}");
    }
    // No grace period: local retention waits until the bucket store serves what it deletes.

    // Round 3: from the bucket.
    let t_q = Instant::now();
    let after: Vec<Answer> = cases.iter().map(|c| answer(port, c)).collect();
    eprintln!(
        "round 3 (bucket): {} bucket blocks, {} local (oldest from S+{}m), {:?}",
        shipped.len(),
        local.len(),
        local.first().map_or(-1, |b| (b.1 - s) / MIN),
        t_q.elapsed()
    );
    server.kill();

    // Prometheus sees all the data, and answers are not trivially empty.
    let nonempty = want
        .iter()
        .filter(|a| match a {
            Answer::Query(Res::Vector(v)) => !v.is_empty(),
            Answer::Query(Res::Matrix(m)) => !m.is_empty(),
            Answer::Query(Res::Err(e)) => panic!("Prometheus failed: {e}"),
            Answer::Query(_) => true,
            Answer::Set(r) => !r.as_ref().expect("Prometheus answers").is_empty(),
        })
        .count();
    assert!(
        nonempty * 10 >= cases.len() * 9,
        "only {nonempty} of {} Prometheus answers are non-empty",
        cases.len()
    );
    // The endpoint cases see the churned series as expected: b0 alone in the first 20 minutes,
    // all six names, and the three early ones when matched.
    let set_of = |c: &Case| -> Vec<String> {
        let i = cases
            .iter()
            .position(|x| x.describe(s) == c.describe(s))
            .expect("case listed");
        match &want[i] {
            Answer::Set(Ok(v)) => v.clone(),
            other => panic!("{}: {other:?}", c.describe(s)),
        }
    };
    let early = set_of(&Case::Series(
        vec!["batch_processed_total".into()],
        s,
        s + 20 * MIN,
    ));
    assert!(
        early.len() == 1 && early[0].contains(r#""b0""#),
        "{early:?}"
    );
    let batches = set_of(&Case::LabelValues("batch".into(), Vec::new(), None));
    assert_eq!(batches, ["b0", "b1", "b2", "b3", "b4", "b5"]);
    let all = Some((s - HOUR, s + SPAN + HOUR));
    let matched = set_of(&Case::LabelValues(
        "batch".into(),
        vec![r#"{batch=~"b[0-2]"}"#.into()],
        all,
    ));
    assert_eq!(matched, ["b0", "b1", "b2"]);

    let mut diffs = mismatches(s, &cases, &want, &before, "before upload vs Prometheus");
    diffs.extend(mismatches(
        s,
        &cases,
        &want,
        &after,
        "from the bucket vs Prometheus",
    ));
    diffs.extend(mismatches(
        s,
        &cases,
        &want,
        &from_head,
        "from the head vs Prometheus",
    ));
    diffs.extend(mismatches(
        s,
        &cases,
        &before,
        &after,
        "from the bucket vs before upload",
    ));
    let per_kind: BTreeMap<&str, usize> = diffs.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.split(':').next().unwrap_or("")).or_default() += 1;
        m
    });
    assert!(
        diffs.is_empty(),
        "{} differences over {} cases ({per_kind:?}):\n{}",
        diffs.len(),
        cases.len(),
        diffs.join("\n")
    );
    eprintln!(
        "{} queries, {} cases agree three ways in {:?}",
        QUERIES.len(),
        cases.len(),
        t0.elapsed()
    );
}
