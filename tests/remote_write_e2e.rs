//! The real Prometheus as a remote-write client: Debian's Prometheus scrapes a real
//! `prometheus-node-exporter` every second and remote-writes to `strata serve`, all on loopback.
//! Mid-stream Strata is killed with SIGKILL and restarted; Prometheus retries. After the scrape
//! stops, Strata must answer queries exactly as Prometheus does, and hold every sample
//! Prometheus holds.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, get_json, require_tool, start_strata_serve, Proc};

/// A query result reduced to comparable form: labels → values (strings as the API gives them).
fn canon(v: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let data = &v["data"];
    match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => {
            for r in data["result"].as_array().into_iter().flatten() {
                let key = r["metric"].to_string();
                let mut vals = Vec::new();
                if let Some(p) = r.get("value") {
                    vals.push(p.to_string());
                }
                for p in r["values"].as_array().into_iter().flatten() {
                    vals.push(p.to_string());
                }
                out.insert(key, vals);
            }
        }
        Some(_) => {
            out.insert(String::new(), vec![data["result"].to_string()]);
        }
        None => {
            // Listings (labels, label values, series): the data itself.
            out.insert(String::new(), vec![data.to_string()]);
        }
    }
    out
}

fn values_close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let parse = |s: &str| -> Option<(f64, f64)> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let t = v[0].as_f64()?;
        let x = v[1].as_str()?.parse::<f64>().ok()?;
        Some((t, x))
    };
    match (parse(a), parse(b)) {
        (Some((ta, xa)), Some((tb, xb))) => {
            ta == tb && (xa == xb || (xa - xb).abs() <= 1e-9 * xa.abs().max(xb.abs()))
        }
        _ => false,
    }
}

#[test]
fn prometheus_remote_writes_node_exporter_data_to_strata() {
    let prometheus = require_tool("prometheus");
    let node_exporter = require_tool("prometheus-node-exporter");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ne_port, s_port, p_port) = (free_port(), free_port(), free_port());

    let _ne = {
        let mut p = Proc::spawn(
            "node_exporter",
            Command::new(&node_exporter).arg(format!("--web.listen-address=127.0.0.1:{ne_port}")),
            tmp.path().join("node_exporter.log"),
        );
        p.wait_ready(ne_port, "/metrics", Duration::from_secs(30));
        p
    };
    let sdir = tmp.path().join("strata");
    let mut s = start_strata_serve(&sdir, s_port, tmp.path().join("strata-1.log"));

    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n\
             remote_write:\n  - url: http://127.0.0.1:{s_port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 50ms\n      max_backoff: 1s\n"
        ),
    )
    .expect("config");
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
    let started = Instant::now();

    // Mid-stream: SIGKILL Strata, restart it on the same directory and port.
    std::thread::sleep(Duration::from_secs(12));
    s.kill();
    std::thread::sleep(Duration::from_secs(2));
    s = start_strata_serve(&sdir, s_port, tmp.path().join("strata-2.log"));

    while started.elapsed() < Duration::from_secs(32) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stop the scrape target; Prometheus marks the series stale and sends that too.
    drop(_ne);
    std::thread::sleep(Duration::from_secs(3));
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();

    // Every raw sample Prometheus holds (a range selector at the top level keeps names). Wait
    // (bounded) until Strata holds the same: nothing Prometheus got a 2xx for may be missing
    // after the SIGKILL, and nothing else may appear.
    let raw = vec![
        ("query", "{__name__=~\".+\"}[10m]".to_string()),
        ("time", format!("{end:.3}")),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let prom_raw = canon(&get_json(p_port, "/api/v1/query", &raw));
    assert!(
        prom_raw.len() > 100,
        "node_exporter produced only {} series",
        prom_raw.len()
    );
    loop {
        let ours = canon(&get_json(s_port, "/api/v1/query", &raw));
        if ours == prom_raw {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = prom_raw
                .iter()
                .filter(|(k, v)| ours.get(*k) != Some(*v))
                .take(5)
                .collect();
            panic!(
                "Strata's raw samples differ from Prometheus's ({} vs {} series); first differing: {missing:?}\n{}",
                ours.len(),
                prom_raw.len(),
                s.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Queries at times inside the scrape window, instant and range.
    let t_mid = end - 12.0;
    let queries = [
        "up",
        "rate(node_cpu_seconds_total[30s])",
        "irate(node_cpu_seconds_total[10s])",
        "count by (__name__) ({__name__=~\".+\"})",
        "sum by (mode) (rate(node_cpu_seconds_total[20s]))",
        "node_load1",
        "node_memory_MemTotal_bytes",
        "max_over_time(node_memory_MemAvailable_bytes[30s])",
        "avg_over_time(node_load1[20s])",
        "count(node_network_receive_bytes_total)",
        "increase(node_network_receive_bytes_total[20s])",
        "scrape_duration_seconds > 0",
        "topk(3, node_filesystem_size_bytes)",
        "sum without (cpu) (node_cpu_seconds_total)",
        "changes(node_time_seconds[30s])",
        "timestamp(up)",
        "node_uname_info",
        "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
        "up * on(instance) group_left(nodename) node_uname_info",
        "absent(nonexistent_metric)",
        "scrape_samples_scraped",
        "deriv(node_time_seconds[20s])",
    ];
    let mut diffs = Vec::new();
    let mut compare = |what: &str, a: serde_json::Value, b: serde_json::Value| {
        let (ca, cb) = (canon(&a), canon(&b));
        let same = ca.len() == cb.len()
            && ca.iter().zip(cb.iter()).all(|((ka, va), (kb, vb))| {
                ka == kb
                    && va.len() == vb.len()
                    && va.iter().zip(vb).all(|(x, y)| values_close(x, y))
            });
        if !same || a["status"] != b["status"] {
            diffs.push(format!("{what}:\n  prometheus {a}\n  strata     {b}"));
        }
    };
    for q in queries {
        let ps = vec![("query", q.to_string()), ("time", format!("{t_mid:.3}"))];
        compare(
            q,
            get_json(p_port, "/api/v1/query", &ps),
            get_json(s_port, "/api/v1/query", &ps),
        );
        let pr = vec![
            ("query", q.to_string()),
            ("start", format!("{:.3}", end - 28.0)),
            ("end", format!("{:.3}", end - 4.0)),
            ("step", "2".to_string()),
        ];
        compare(
            &format!("range {q}"),
            get_json(p_port, "/api/v1/query_range", &pr),
            get_json(s_port, "/api/v1/query_range", &pr),
        );
    }
    let window = vec![
        ("start", format!("{:.3}", end - 60.0)),
        ("end", format!("{end:.3}")),
    ];
    for (path, extra) in [
        ("/api/v1/labels", vec![]),
        ("/api/v1/label/job/values", vec![]),
        ("/api/v1/label/__name__/values", vec![]),
        ("/api/v1/series", vec![("match[]", "up".to_string())]),
        (
            "/api/v1/series",
            vec![(
                "match[]",
                "node_cpu_seconds_total{mode=\"idle\"}".to_string(),
            )],
        ),
    ] {
        let mut ps = window.clone();
        ps.extend(extra);
        compare(
            path,
            get_json(p_port, path, &ps),
            get_json(s_port, path, &ps),
        );
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    p.kill();
}
