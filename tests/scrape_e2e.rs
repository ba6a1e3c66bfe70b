//! Strata as a scraper beside the real Prometheus: `strata serve --config.file` and Debian's
//! Prometheus scrape the same real `prometheus-node-exporter` every second, on loopback. After
//! 30 s, `up` and the number of series per metric name agree, `/api/v1/targets` reports the
//! target healthy with the same labels, and a reload (SIGHUP, `POST /-/reload`) changes the
//! targets, while an invalid file keeps the old configuration.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, get_json, http_request, require_tool, strata, Proc};

/// `count by (__name__)` over the node job at `t`, as name → count.
fn series_per_name(port: u16, t: f64) -> BTreeMap<String, String> {
    let v = get_json(
        port,
        "/api/v1/query",
        &[
            ("query", "count by (__name__) ({job=\"node\"})".to_string()),
            ("time", format!("{t:.3}")),
        ],
    );
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|s| {
            (
                s["metric"]["__name__"].as_str().unwrap_or("").to_string(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn node_config(ne_port: u16, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    site: test\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n{extra}"
    )
}

fn active_targets(port: u16) -> Vec<serde_json::Value> {
    let v = get_json(port, "/api/v1/targets", &[]);
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_strata(dir: &Path, cfg: &Path, port: u16, log: std::path::PathBuf) -> Proc {
    let mut p = Proc::spawn(
        "strata",
        Command::new(strata())
            .arg("serve")
            .arg("--storage.tsdb.path")
            .arg(dir)
            .arg("--config.file")
            .arg(cfg)
            .arg("--web.enable-lifecycle")
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}")),
        log,
    );
    p.wait_ready(port, "/-/ready", Duration::from_secs(60));
    p
}

#[test]
fn strata_and_prometheus_scrape_node_exporter_alike() {
    let prometheus = require_tool("prometheus");
    let node_exporter = require_tool("prometheus-node-exporter");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ne_port, s_port, p_port) = (free_port(), free_port(), free_port());
    let mut ne = Proc::spawn(
        "node_exporter",
        Command::new(&node_exporter).arg(format!("--web.listen-address=127.0.0.1:{ne_port}")),
        tmp.path().join("node_exporter.log"),
    );
    ne.wait_ready(ne_port, "/metrics", Duration::from_secs(30));

    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, node_config(ne_port, "")).expect("config");
    let s = start_strata(
        &tmp.path().join("strata"),
        &cfg,
        s_port,
        tmp.path().join("strata.log"),
    );
    let mut p = Proc::spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{p_port}")),
        tmp.path().join("prometheus.log"),
    );
    p.wait_ready(p_port, "/-/ready", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(30));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let t = now - 2.0;

    // `up` is 1 on both, with the same labels (external labels are not stored).
    let up = |port| {
        get_json(
            port,
            "/api/v1/query",
            &[("query", "up".to_string()), ("time", format!("{t:.3}"))],
        )["data"]["result"]
            .clone()
    };
    let (ours, theirs) = (up(s_port), up(p_port));
    assert_eq!(
        ours.as_array().map(Vec::len),
        Some(1),
        "strata up: {ours}\n{}",
        s.log_text()
    );
    assert_eq!(ours[0]["metric"], theirs[0]["metric"]);
    assert_eq!(ours[0]["value"][1], "1");
    assert_eq!(theirs[0]["value"][1], "1");

    // Every metric name has the same number of series on both.
    let (ours, theirs) = (series_per_name(s_port, t), series_per_name(p_port, t));
    assert!(
        theirs.len() > 100,
        "node_exporter gave only {} names",
        theirs.len()
    );
    let differing: Vec<_> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone(), ours.get(k).cloned()))
        .take(10)
        .collect();
    assert!(
        differing.is_empty() && ours.len() == theirs.len(),
        "series per name differ ({} vs {} names): {differing:?}",
        ours.len(),
        theirs.len()
    );

    // The metric metadata node_exporter exposes reaches /api/v1/metadata on both alike.
    let node_metadata = |port| -> std::collections::BTreeMap<String, (String, String)> {
        let v = get_json(port, "/api/v1/metadata", &[]);
        assert_eq!(v["status"], "success", "{v}");
        v["data"]
            .as_object()
            .expect("metadata object")
            .iter()
            .filter(|(k, _)| k.starts_with("node_"))
            .map(|(k, e)| {
                let e = &e[0];
                (k.clone(), (e["type"].to_string(), e["help"].to_string()))
            })
            .collect()
    };
    let (ours, theirs) = (node_metadata(s_port), node_metadata(p_port));
    assert!(theirs.len() > 50, "{theirs:?}");
    assert_eq!(ours, theirs, "metadata differs");

    // Scrapes happen every second: about 30 `up` samples in the last 30 s.
    let n = get_json(
        s_port,
        "/api/v1/query",
        &[
            ("query", "count_over_time(up[20s])".to_string()),
            ("time", format!("{t:.3}")),
        ],
    );
    let n: f64 = n["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert!((18.0..=22.0).contains(&n), "{n} scrapes in 20 s");

    // The targets API agrees with Prometheus's.
    let (ours, theirs) = (active_targets(s_port), active_targets(p_port));
    assert_eq!(ours.len(), 1, "{ours:?}");
    for key in [
        "labels",
        "scrapePool",
        "scrapeUrl",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
    ] {
        assert_eq!(ours[0][key], theirs[0][key], "targets field {key}");
    }
    assert_eq!(ours[0]["health"], "up");
    assert_eq!(ours[0]["lastError"], "");
    drop(p);

    // Reload by SIGHUP: a second job scraping Strata itself appears.
    let extra = format!(
        "  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{s_port}']\n"
    );
    std::fs::write(&cfg, node_config(ne_port, &extra)).expect("config");
    let pid = s.pid();
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    wait_for(
        "the self target after SIGHUP",
        Duration::from_secs(20),
        || {
            active_targets(s_port)
                .iter()
                .any(|t| t["scrapePool"] == "self" && t["health"] == "up")
        },
    );

    // An invalid file is refused by POST /-/reload and the old configuration stays.
    std::fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: x\n    scrape_intervall: 1s\n",
    )
    .expect("config");
    let (code, body) = http_request(s_port, "POST", "/-/reload", None).expect("reload");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("scrape_intervall"),
        "error names the field: {body}"
    );
    let pools: Vec<_> = active_targets(s_port)
        .iter()
        .map(|t| t["scrapePool"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(pools, vec!["node".to_string(), "self".to_string()]);

    // Back to one job by POST /-/reload: the removed target's series are marked stale.
    std::fs::write(&cfg, node_config(ne_port, "")).expect("config");
    let (code, body) = http_request(s_port, "POST", "/-/reload", None).expect("reload");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(active_targets(s_port).len(), 1);
    // As in Prometheus, the markers come about two intervals after the last scrape.
    wait_for(
        "stale markers for the removed target",
        Duration::from_secs(15),
        || {
            let v = get_json(
                s_port,
                "/api/v1/query",
                &[("query", "up{job=\"self\"}".to_string())],
            );
            v["data"]["result"].as_array().map(Vec::len) == Some(0)
        },
    );
    drop(ne);
}
