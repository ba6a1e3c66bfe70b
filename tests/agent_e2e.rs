//! `strata agent` end to end: it scrapes a real `prometheus-node-exporter` every second and
//! remote-writes to the real Prometheus (`--web.enable-remote-write-receiver`) and to
//! `strata serve`. Each receiver is stopped for 60 s and restarted; the agent is killed with
//! SIGKILL while it holds a backlog for one of them. Afterwards both receivers hold every
//! sample the agent scraped: the same `up` and `scrape_duration_seconds` timestamps, with no
//! gap except while the agent itself was down.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, http_get, require_tool, start_strata_serve, strata, urlencode, Proc};

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Timestamps (ms) of the raw samples of `metric{job="node"}` in `(end - range, end]`.
fn raw_timestamps(port: u16, metric: &str, end: f64, range_s: u64) -> BTreeSet<i64> {
    let q = format!("{metric}{{job=\"node\"}}[{range_s}s]");
    let target = format!("/api/v1/query?query={}&time={end:.3}", urlencode(&q));
    let (status, body) = http_get(port, &target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("status {status}: {e}: {}", String::from_utf8_lossy(&body)));
    let mut out = BTreeSet::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        for p in s["values"].as_array().into_iter().flatten() {
            let t = p[0].as_f64().expect("time");
            out.insert((t * 1000.0).round() as i64);
        }
    }
    out
}

fn start_prometheus(bin: &Path, dir: &Path, port: u16, log: std::path::PathBuf) -> Proc {
    let cfg = dir.join("prometheus.yml");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").expect("config");
    let mut p = Proc::spawn(
        "prometheus",
        Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        log,
    );
    p.wait_ready(port, "/-/ready", Duration::from_secs(60));
    p
}

fn start_agent(cfg: &Path, dir: &Path, port: u16, log: std::path::PathBuf) -> Proc {
    let mut p = Proc::spawn(
        "strata agent",
        Command::new(strata())
            .arg("agent")
            .arg("--config.file")
            .arg(cfg)
            .arg("--storage.agent.path")
            .arg(dir)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}")),
        log,
    );
    p.wait_ready(port, "/-/ready", Duration::from_secs(60));
    p
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[test]
fn agent_delivers_everything_through_outages_and_a_kill() {
    let prometheus = require_tool("prometheus");
    let node_exporter = require_tool("prometheus-node-exporter");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ne_port, s_port, p_port, a_port) = (free_port(), free_port(), free_port(), free_port());
    let mut ne = Proc::spawn(
        "node_exporter",
        Command::new(&node_exporter).arg(format!("--web.listen-address=127.0.0.1:{ne_port}")),
        tmp.path().join("node_exporter.log"),
    );
    ne.wait_ready(ne_port, "/metrics", Duration::from_secs(30));
    let pdir = tmp.path().join("prom");
    let sdir = tmp.path().join("strata");
    let mut p = start_prometheus(&prometheus, &pdir, p_port, tmp.path().join("prom-1.log"));
    let mut s = start_strata_serve(&sdir, s_port, tmp.path().join("strata-1.log"));

    let cfg = tmp.path().join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n\
             remote_write:\n\
             \x20 - url: http://127.0.0.1:{p_port}/api/v1/write\n    name: prometheus\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 2s\n\
             \x20 - url: http://127.0.0.1:{s_port}/api/v1/write\n    name: strata\n    protobuf_message: io.prometheus.write.v2.Request\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 2s\n"
        ),
    )
    .expect("config");
    let adir = tmp.path().join("agent");
    let mut a = start_agent(&cfg, &adir, a_port, tmp.path().join("agent-1.log"));
    let t0 = Instant::now();
    let start_s = now_s();

    // Prometheus is down for 60 s from t=10 s; Strata for 60 s from t=40 s.
    sleep_until(t0 + Duration::from_secs(10));
    p.kill();
    sleep_until(t0 + Duration::from_secs(40));
    s.kill();
    sleep_until(t0 + Duration::from_secs(70));
    p = start_prometheus(&prometheus, &pdir, p_port, tmp.path().join("prom-2.log"));
    // While Strata's backlog is still queued in the agent's WAL, SIGKILL the agent and
    // start it again: nothing in its WAL may be lost.
    sleep_until(t0 + Duration::from_secs(85));
    a.kill();
    let agent_down = (now_s(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    a = start_agent(&cfg, &adir, a_port, tmp.path().join("agent-2.log"));
    let agent_up = now_s();
    sleep_until(t0 + Duration::from_secs(100));
    s = start_strata_serve(&sdir, s_port, tmp.path().join("strata-2.log"));
    sleep_until(t0 + Duration::from_secs(110));
    // Stop scraping: the agent's last samples are sent within a few seconds.
    let end_s = now_s();
    let range = (end_s - start_s).ceil() as u64 + 5;

    let deadline = Instant::now() + Duration::from_secs(60);
    for metric in ["up", "scrape_duration_seconds"] {
        loop {
            let ps = raw_timestamps(p_port, metric, end_s, range);
            let ss = raw_timestamps(s_port, metric, end_s, range);
            let complete = |ts: &BTreeSet<i64>| {
                // Every scrape from the first to the end, one per second, except while the
                // agent was down.
                let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
                    return Err("no samples".to_string());
                };
                if (first as f64 / 1000.0) > start_s + 5.0 {
                    return Err(format!("first sample at {first}, agent started {start_s}"));
                }
                if (last as f64 / 1000.0) < end_s - 3.0 {
                    return Err(format!("last sample at {last}, scrape ran until {end_s}"));
                }
                let mut prev = first;
                for &t in ts.iter().skip(1) {
                    let gap = t - prev;
                    let in_agent_restart = (prev as f64 / 1000.0) >= agent_down.0 - 2.0
                        && (t as f64 / 1000.0) <= agent_up + 5.0;
                    if gap > 1_600 && !in_agent_restart {
                        return Err(format!("gap of {gap} ms after {prev}"));
                    }
                    prev = t;
                }
                Ok(())
            };
            let (pc, sc) = (complete(&ps), complete(&ss));
            if pc.is_ok() && sc.is_ok() && ps == ss {
                break;
            }
            if Instant::now() > deadline {
                let only_p: Vec<_> = ps.difference(&ss).take(5).collect();
                let only_s: Vec<_> = ss.difference(&ps).take(5).collect();
                panic!(
                    "{metric}: prometheus {pc:?} ({} samples), strata {sc:?} ({} samples); only in prometheus {only_p:?}, only in strata {only_s:?}\nagent log:\n{}",
                    ps.len(),
                    ss.len(),
                    a.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let _ = agent_down.1;
    drop(a);
    drop(ne);
    drop(p);
    drop(s);
}
