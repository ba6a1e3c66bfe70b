//! Queries over data that moved to object storage give the answers they gave before the move,
//! and the answers the real Prometheus gives on the same data.
//!
//! Two hours of counters (with resets), gauges and a classic histogram are pushed over
//! remote-write, in time order, to `strata serve` (2-minute blocks, 30-minute local retention,
//! a moto S3 bucket) and to Prometheus 2.42 (`--web.enable-remote-write-receiver`). First
//! Strata runs without shipping, so every block is local: its answers to 27 instant and range
//! queries (and the series, labels and label-values endpoints) are recorded. Then Strata is
//! killed (SIGKILL) and restarted on the same directory, shipping every second; once the old blocks are in the bucket and gone locally, the
//! same requests are asked again, and asked of Prometheus. All three must agree.
//!
//! Sample timestamps sit 123 ms past a 15 s grid and query times 500 ms past the second, so no
//! sample falls on a range boundary, where Prometheus 2.x (closed) and 3.x (left-open) differ.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    free_port, get_json, http_request, require_tool, start_moto, start_strata_serve_with, Proc,
};
use prost::Message;
use strata_ingest::remote::proto::v1::{Label, Sample, TimeSeries, WriteRequest};

const MIN: i64 = 60_000;
const STEP: i64 = 15_000;
const SPAN: i64 = 120 * MIN;

/// A pushed series: its labels and its value at round k.
type SeriesDef = (Vec<(&'static str, String)>, Box<dyn Fn(i64) -> f64>);

/// A request: a name for messages, the path and the parameters.
type Request = (String, String, Vec<(&'static str, String)>);

fn series_defs() -> Vec<SeriesDef> {
    let mut out: Vec<SeriesDef> = Vec::new();
    for i in 0..3i64 {
        for (c, code) in ["200", "500"].iter().enumerate() {
            let c = c as i64;
            // A counter growing by a varying amount, reset every 37 + 11·i rounds (+ code).
            let period = 37 + 11 * i + 5 * c;
            out.push((
                vec![
                    ("__name__", "http_requests_total".into()),
                    ("job", "api".into()),
                    ("instance", format!("i{i}")),
                    ("code", code.to_string()),
                ],
                Box::new(move |k| {
                    let r = k % period;
                    (r * (i + 1) * (3 - c) + (r * r) % 7) as f64
                }),
            ));
        }
    }
    for r in 0..3i64 {
        out.push((
            vec![
                ("__name__", "temperature".into()),
                ("room", format!("r{r}")),
            ],
            Box::new(move |k| 20.0 + ((k * (r + 3)) % 50) as f64 * 0.25 - r as f64),
        ));
    }
    // A classic histogram per instance: cumulative buckets, sum and count.
    for i in 0..2i64 {
        let bounds = ["0.1", "0.5", "1", "+Inf"];
        for (b, le) in bounds.iter().enumerate() {
            let b = b as i64;
            out.push((
                vec![
                    ("__name__", "latency_seconds_bucket".into()),
                    ("instance", format!("i{i}")),
                    ("le", le.to_string()),
                ],
                Box::new(move |k| (k * (2 + b + i) + (k % 13) * b) as f64),
            ));
        }
        out.push((
            vec![
                ("__name__", "latency_seconds_count".into()),
                ("instance", format!("i{i}")),
            ],
            Box::new(move |k| (k * (5 + i) + (k % 13) * 3) as f64),
        ));
        out.push((
            vec![
                ("__name__", "latency_seconds_sum".into()),
                ("instance", format!("i{i}")),
            ],
            Box::new(move |k| k as f64 * (1.7 + i as f64 * 0.3)),
        ));
    }
    out
}

/// Pushes rounds `0..n` (round k at `base + k·15 s`), 40 rounds a request, to `port`.
fn push(port: u16, base: i64, rounds: i64) {
    let defs = series_defs();
    let mut k = 0;
    while k < rounds {
        let end = (k + 40).min(rounds);
        let req = WriteRequest {
            timeseries: defs
                .iter()
                .map(|(labels, f)| TimeSeries {
                    labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                    samples: (k..end)
                        .map(|r| Sample {
                            value: f(r),
                            timestamp: base + r * STEP,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        let (code, resp) = http_request(
            port,
            "POST",
            "/api/v1/write",
            Some(("application/x-protobuf", &body)),
        )
        .unwrap_or_else(|e| panic!("push to {port}: {e}"));
        assert!(
            (200..300).contains(&code),
            "push to {port}: {code} {}",
            String::from_utf8_lossy(&resp)
        );
        k = end;
    }
}

/// One request's answer, normalised: series (by their labels) → points, or a list of strings.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Series(BTreeMap<String, Vec<(i64, f64)>>),
    Strings(Vec<String>),
}

fn to_points(v: &serde_json::Value) -> Vec<(i64, f64)> {
    let point = |p: &serde_json::Value| {
        let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
        let x: f64 = p[1].as_str().expect("value").parse().expect("float");
        (t, x)
    };
    match v.get("values") {
        Some(vs) => vs.as_array().expect("values").iter().map(point).collect(),
        None => vec![point(&v["value"])],
    }
}

fn answer(port: u16, path: &str, params: &[(&str, String)]) -> Answer {
    let v = get_json(port, path, params);
    assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
    let data = &v["data"];
    if let Some(result) = data.get("result") {
        let mut out = BTreeMap::new();
        for s in result.as_array().expect("result") {
            out.insert(s["metric"].to_string(), to_points(s));
        }
        return Answer::Series(out);
    }
    let mut items: Vec<String> = data
        .as_array()
        .expect("list")
        .iter()
        .map(|x| x.to_string())
        .collect();
    items.sort();
    Answer::Strings(items)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-3)
}

/// Where `a` and `b` differ, if they do.
fn differs(a: &Answer, b: &Answer) -> Option<String> {
    match (a, b) {
        (Answer::Series(x), Answer::Series(y)) => {
            if x.keys().ne(y.keys()) {
                return Some(format!(
                    "series differ: {:?} vs {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                ));
            }
            for (k, p) in x {
                let q = &y[k];
                if p.len() != q.len() {
                    return Some(format!("{k}: {} vs {} points", p.len(), q.len()));
                }
                for (u, v) in p.iter().zip(q) {
                    if u.0 != v.0 || !close(u.1, v.1) {
                        return Some(format!("{k}: {u:?} vs {v:?}"));
                    }
                }
            }
            None
        }
        _ => (a != b).then(|| format!("{a:?} vs {b:?}")),
    }
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (code) (rate(http_requests_total[5m]))",
    "increase(http_requests_total[10m])",
    "irate(http_requests_total[2m])",
    "resets(http_requests_total[30m])",
    "avg(temperature)",
    "max by (room) (temperature)",
    "min_over_time(temperature[15m])",
    "max_over_time(temperature[15m])",
    "avg_over_time(temperature[10m])",
    "quantile_over_time(0.9, temperature[20m])",
    "topk(2, rate(http_requests_total[5m]))",
    "count(http_requests_total)",
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "rate(latency_seconds_sum[5m]) / rate(latency_seconds_count[5m])",
    "http_requests_total offset 30m",
    "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))",
    "delta(temperature[10m])",
    "deriv(temperature[10m])",
    "stddev_over_time(temperature[10m])",
    "count_over_time(http_requests_total[1h])",
    "last_over_time(temperature[1m])",
    "sum_over_time(temperature[30m])",
    "changes(temperature[30m])",
    "absent(nonexistent_metric)",
    "label_replace(temperature, \"r\", \"$1\", \"room\", \"r(.*)\")",
];

/// Every request of the comparison, with a name for messages.
fn requests(base: i64) -> Vec<Request> {
    let secs = |t: i64| format!("{:.3}", t as f64 / 1000.0);
    // Query times 500 ms past a second: never on a sample or a range boundary.
    let at = |t: i64| t - t.rem_euclid(1000) + 500;
    let mut out = Vec::new();
    for q in QUERIES {
        for t in [
            base + 17 * MIN,
            base + 61 * MIN,
            base + 100 * MIN,
            base + SPAN - MIN,
        ] {
            out.push((
                format!("{q} @ {}m", (t - base) / MIN),
                "/api/v1/query".to_string(),
                vec![("query", q.to_string()), ("time", secs(at(t)))],
            ));
        }
        out.push((
            format!("{q} range"),
            "/api/v1/query_range".to_string(),
            vec![
                ("query", q.to_string()),
                ("start", secs(at(base + 10 * MIN))),
                ("end", secs(at(base + SPAN))),
                ("step", "60".into()),
            ],
        ));
    }
    let (start, end) = (secs(base - MIN), secs(base + SPAN + MIN));
    out.push((
        "series".into(),
        "/api/v1/series".to_string(),
        vec![
            ("match[]", "{__name__=~\".+\"}".into()),
            ("start", start.clone()),
            ("end", end.clone()),
        ],
    ));
    out.push((
        "labels".into(),
        "/api/v1/labels".to_string(),
        vec![("start", start.clone()), ("end", end.clone())],
    ));
    for name in ["room", "instance", "__name__"] {
        out.push((
            format!("label values {name}"),
            format!("/api/v1/label/{name}/values"),
            vec![("start", start.clone()), ("end", end.clone())],
        ));
    }
    out
}

fn serve(dir: &Path, port: u16, objstore: &str, config: &Path, shipper: &str, log: &Path) -> Proc {
    let flags: Vec<&OsStr> = [
        "--config.file".as_ref(),
        config.as_os_str(),
        "--objstore.config".as_ref(),
        objstore.as_ref(),
        "--storage.tsdb.min-block-duration".as_ref(),
        "2m".as_ref(),
        "--storage.tsdb.max-block-duration".as_ref(),
        "2m".as_ref(),
        "--storage.tsdb.retention.time".as_ref(),
        "30m".as_ref(),
        "--shipper.interval".as_ref(),
        shipper.as_ref(),
        "--store.sync-interval".as_ref(),
        "2s".as_ref(),
    ]
    .to_vec();
    start_strata_serve_with(dir, port, log.to_path_buf(), &flags)
}

fn local_blocks(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("data dir")
        .flatten()
        .filter(|e| strata_tsdb::db::is_block_dir_name(&e.file_name().to_string_lossy()))
        .count()
}

#[test]
fn answers_are_the_same_before_and_after_upload_and_as_prometheus() {
    let prometheus = require_tool("prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = start_moto("strata-queries", tmp.path().join("moto.log"));
    let objstore = format!(
        "type: S3\nconfig:\n  bucket: strata-queries\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         access_key: testing\n  secret_key: testing\n  region: us-east-1\n",
        moto.port
    );
    // Strata's own external labels are not part of query results, local or from the bucket.
    let config = tmp.path().join("strata.yml");
    std::fs::write(&config, "global:\n  external_labels:\n    cluster: eu\n").expect("config");
    let prom_config = tmp.path().join("prometheus.yml");
    std::fs::write(&prom_config, "global:\n  scrape_interval: 1m\n").expect("config");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let base = now - SPAN - 5 * MIN;
    let base = base - base.rem_euclid(STEP) + 123;
    let rounds = SPAN / STEP;

    let p_port = free_port();
    let _prom = {
        let mut p = Proc::spawn(
            "prometheus",
            Command::new(&prometheus)
                .arg(format!("--config.file={}", prom_config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    tmp.path().join("prom").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{p_port}"))
                .arg("--web.enable-remote-write-receiver"),
            tmp.path().join("prometheus.log"),
        );
        p.wait_ready(p_port, "/-/ready", Duration::from_secs(60));
        p
    };
    push(p_port, base, rounds);

    // Phase 1: everything local (the shipper's first run finds nothing; the next is in 1h).
    let data = tmp.path().join("data");
    let s_port = free_port();
    let s = serve(
        &data,
        s_port,
        &objstore,
        &config,
        "1h",
        &tmp.path().join("s1.log"),
    );
    push(s_port, base, rounds);
    // Let the head persist the pushed range into 2-minute blocks (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while local_blocks(&data) < 50 {
        assert!(
            Instant::now() < deadline,
            "blocks not persisted:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let reqs = requests(base);
    assert!(reqs.len() >= 20 * 5);
    let before: Vec<Answer> = reqs.iter().map(|(_, p, q)| answer(s_port, p, q)).collect();
    // The queries have something to answer.
    let non_empty = before
        .iter()
        .filter(|a| match a {
            Answer::Series(m) => !m.is_empty(),
            Answer::Strings(v) => !v.is_empty(),
        })
        .count();
    assert!(
        non_empty * 10 >= before.len() * 9,
        "{non_empty} of {}",
        before.len()
    );
    let persisted = local_blocks(&data);
    drop(s);

    // Phase 2: ship every second; local retention removes what is shipped and old.
    let s = serve(
        &data,
        s_port,
        &objstore,
        &config,
        "1s",
        &tmp.path().join("s2.log"),
    );
    let (bucket, _) = strata_compactor::objstore::from_yaml(&objstore).expect("objstore");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let listed = rt
            .block_on(strata_compactor::bucket::list_metas(&bucket))
            .expect("list");
        let local = local_blocks(&data);
        if listed.blocks.len() >= persisted && listed.partial.is_empty() && local <= 16 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {persisted} blocks shipped, {local} local:\n{}",
            listed.blocks.len(),
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Give the store's sync a moment to load the last uploads.
    std::thread::sleep(Duration::from_secs(3));

    let mut failures = Vec::new();
    for ((name, path, params), was) in reqs.iter().zip(&before) {
        let after = answer(s_port, path, params);
        if let Some(d) = differs(was, &after) {
            failures.push(format!("{name}: before vs after upload: {d}"));
        }
        let theirs = answer(p_port, path, params);
        if let Some(d) = differs(&theirs, &after) {
            failures.push(format!("{name}: Prometheus vs Strata: {d}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests differ:\n{}",
        failures.len(),
        reqs.len(),
        failures.join("\n")
    );
    drop(s);
}
