//! Downsampling end to end: sixteen days of 2-day raw blocks in a FILESYSTEM bucket;
//! `strata compact` passes compact them to a 14-day block and downsample it to 5m and then 1h
//! blocks; `strata serve` over that bucket answers queries with `max_source_resolution` raw,
//! 5m and 1h, and the downsampled answers match the raw ones within the bounds
//! docs/long-term-storage.md gives. `promtool tsdb analyze` accepts a downsampled block.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bucket::TestBucket;
use common::{free_port, get_json, require_tool, run, start_strata_serve_with, strata};
use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::labels::Labels;

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;
const D: i64 = 24 * H;
/// A multiple of 14 days, so the 14-day compaction range starts here.
const BASE: i64 = 1_699_488_000_000;
const DAYS: i64 = 16;
const SERIES: i64 = 6;

/// Counter `req_total{i}` (steady rate, reset every 2+i days) and gauge `temp{i}` (a wave),
/// one sample a minute at 1 s past the minute.
fn value(name: &str, i: i64, t: i64) -> f64 {
    let k = (t - BASE) / MIN;
    match name {
        "req_total" => ((k % ((2 + i) * 1440)) * (i + 1)) as f64,
        _ => 50.0 + 40.0 * ((k as f64) / 500.0 + i as f64).sin(),
    }
}

fn series(mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut out = Vec::new();
    for name in ["req_total", "temp"] {
        for i in 0..SERIES {
            let l = Labels::from_pairs(&[("__name__", name), ("i", &i.to_string())]);
            let s: Vec<(i64, f64)> = (0..)
                .map(|k| mint + 1_000 + k * MIN)
                .take_while(|&t| t < maxt)
                .map(|t| (t, value(name, i, t)))
                .collect();
            out.push((l, s));
        }
    }
    out
}

/// The live (not deletion-marked) block metas of the bucket.
fn live_blocks(bdir: &Path) -> Vec<BlockMeta> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(bdir).expect("bucket dir") {
        let p = e.expect("entry").path();
        if p.join("deletion-mark.json").exists() || !p.join("meta.json").exists() {
            continue;
        }
        let text = std::fs::read_to_string(p.join("meta.json")).expect("meta");
        out.push(serde_json::from_str(&text).expect("meta json"));
    }
    out
}

fn resolution(m: &BlockMeta) -> i64 {
    m.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
}

type Points = BTreeMap<(String, i64), f64>;

fn query(port: u16, q: &str, start: i64, end: i64, res: &str) -> Points {
    let v = get_json(
        port,
        "/api/v1/query_range",
        &[
            ("query", q.to_string()),
            ("start", format!("{}", start / 1000)),
            ("end", format!("{}", end / 1000)),
            ("step", "3600".into()),
            ("max_source_resolution", res.into()),
        ],
    );
    assert_eq!(v["status"], "success", "{q} at {res}: {v}");
    let mut out = Points::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let metric = s["metric"].to_string();
        for p in s["values"].as_array().expect("values") {
            let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
            let x: f64 = p[1].as_str().expect("value").parse().expect("float");
            out.insert((metric.clone(), t), x);
        }
    }
    out
}

fn same_keys(q: &str, res: &str, a: &Points, b: &Points) {
    assert!(!a.is_empty(), "{q}: no raw answer");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{q} at {res}: different series or steps"
    );
}

#[test]
fn compact_downsamples_and_queries_match_raw_within_bounds() {
    let promtool = require_tool("promtool");
    let tmp = tempfile::tempdir().expect("tmp");
    let tb = TestBucket::new(tmp.path());
    let (bdir, cfg) = (&tb.dir, &tb.config);
    for k in 0..DAYS / 2 {
        let (mint, maxt) = (BASE + k * 2 * D, BASE + (k + 1) * 2 * D);
        tb.add_block(mint, maxt, series(mint, maxt), &[("cluster", "eu")]);
    }

    // Passes until nothing changes (bounded).
    let scratch = tmp.path().join("scratch");
    let mut last = String::new();
    for pass in 0..5 {
        let out = run(
            Command::new(strata())
                .args(["compact", "--data-dir"])
                .arg(&scratch)
                .arg("--objstore.config-file")
                .arg(cfg),
            Duration::from_secs(240),
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "pass {pass}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text == last {
            break;
        }
        last = text;
    }
    let live = live_blocks(bdir);
    let by_res =
        |r: i64| -> Vec<&BlockMeta> { live.iter().filter(|m| resolution(m) == r).collect() };
    let raw14 = by_res(0)
        .into_iter()
        .find(|m| m.max_time - m.min_time == 14 * D)
        .unwrap_or_else(|| panic!("no 14-day raw block: {live:?}"));
    let m5: Vec<&BlockMeta> = by_res(300_000);
    let h1: Vec<&BlockMeta> = by_res(3_600_000);
    assert!(
        m5.iter()
            .any(|m| m.min_time == raw14.min_time && m.max_time == raw14.max_time),
        "no 5m block for the 14-day block: {m5:?}"
    );
    assert!(
        h1.iter()
            .any(|m| m.min_time == raw14.min_time && m.max_time == raw14.max_time),
        "no 1h block for the 14-day block: {h1:?}"
    );
    // A downsampled block is a valid Prometheus block to promtool (its chunks are opaque).
    let h1_dir = bdir.join(h1[0].ulid.to_string());
    let out = run(
        Command::new(&promtool)
            .args(["tsdb", "analyze"])
            .arg(bdir)
            .arg(h1[0].ulid.to_string()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && h1_dir.join("index").exists(),
        "promtool tsdb analyze: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // strata serve over the bucket.
    let port = free_port();
    let serve = start_strata_serve_with(
        &tmp.path().join("data"),
        port,
        tmp.path().join("serve.log"),
        &["--objstore.config-file".as_ref(), cfg.as_os_str()],
    );

    let (start, end) = (BASE + 4 * H, BASE + 13 * D);
    for (res, res_ms, range) in [("5m", 5 * MIN, "30m"), ("1h", H, "3h")] {
        let q = |e: &str, r: &str| query(port, e, start, end, r);
        // Exact: window-aligned ranges see the same samples.
        for e in [
            format!("max_over_time(temp[{range}])"),
            format!("min_over_time(temp[{range}])"),
            format!("sum_over_time(temp[{range}])"),
            format!("max(max_over_time(temp[{range}]))"),
            "count(temp)".to_string(),
            "min(temp)".to_string(),
        ] {
            let (raw, ds) = (q(&e, "raw"), q(&e, res));
            same_keys(&e, res, &raw, &ds);
            if e == "min(temp)" {
                // The window minimum, which is at most the raw value at the step.
                for (k, v) in &raw {
                    assert!(ds[k] <= *v + 1e-9, "{e} at {res} {k:?}: {} > {v}", ds[k]);
                }
                continue;
            }
            for (k, v) in &raw {
                let d = ds[k];
                assert!(
                    (v - d).abs() <= 1e-9 * v.abs().max(1.0),
                    "{e} at {res} {k:?}: raw {v}, downsampled {d}"
                );
            }
        }
        // The downsampled answers come from downsampled blocks: count_over_time counts windows.
        let e = format!("count_over_time(temp[{range}])");
        let range_ms = if res == "5m" { 30 * MIN } else { 3 * H };
        assert!(q(&e, "raw").values().all(|v| *v == (range_ms / MIN) as f64));
        assert!(q(&e, res)
            .values()
            .all(|v| *v == (range_ms / res_ms) as f64));
        // avg_over_time: equal sample counts per window, so the mean of means is the mean.
        let e = format!("avg_over_time(temp[{range}])");
        let (raw, ds) = (q(&e, "raw"), q(&e, res));
        same_keys(&e, res, &raw, &ds);
        for (k, v) in &raw {
            assert!(
                (v - ds[k]).abs() < 1e-6,
                "{e} at {res} {k:?}: {v} vs {}",
                ds[k]
            );
        }
        // rate and increase over counters with resets: at most one window's increase off at
        // each edge of the range (≤ 2 · resolution / range relative, for these steady
        // counters); at least 90% of the steps within 2%. (Chunk boundaries of the aggregate
        // data put an extra sample off the window grid; extrapolation differs there.)
        let edge_bound = 2.0 * res_ms as f64 / range_ms as f64;
        for e in [
            format!("rate(req_total[{range}])"),
            format!("sum(increase(req_total[{range}]))"),
        ] {
            let (raw, ds) = (q(&e, "raw"), q(&e, res));
            same_keys(&e, res, &raw, &ds);
            let mut close = 0;
            for (k, v) in &raw {
                let err = (v - ds[k]).abs() / v.abs();
                assert!(
                    err <= edge_bound,
                    "{e} at {res} {k:?}: raw {v}, downsampled {}",
                    ds[k]
                );
                if err <= 0.02 {
                    close += 1;
                }
            }
            assert!(
                close * 10 >= raw.len() * 9,
                "{e} at {res}: {close} of {} within 2%",
                raw.len()
            );
        }
        // A plain selector: the window average, between the window's raw min and max.
        let ds = q("sum(temp)", res);
        let lo = q(
            &format!("sum(min_over_time(temp[{}m]))", res_ms / MIN),
            "raw",
        );
        let hi = q(
            &format!("sum(max_over_time(temp[{}m]))", res_ms / MIN),
            "raw",
        );
        same_keys("sum(temp)", res, &lo, &ds);
        for (k, v) in &ds {
            assert!(
                lo[k] - 1e-9 <= *v && *v <= hi[k] + 1e-9,
                "sum(temp) at {res} {k:?}: {} <= {v} <= {}",
                lo[k],
                hi[k]
            );
        }
    }
    // `auto` with a 5h step reads the 1h blocks: count_over_time counts 1h windows.
    let v = get_json(
        port,
        "/api/v1/query_range",
        &[
            ("query", "count_over_time(temp[3h])".into()),
            ("start", format!("{}", start / 1000)),
            ("end", format!("{}", end / 1000)),
            ("step", "18000".into()),
        ],
    );
    let first = &v["data"]["result"][0]["values"][0][1];
    assert_eq!(first, "3", "auto at a 5h step: {v}");
    drop(serve);
}
