//! `strata agent` against Prometheus's agent mode (`--enable-feature=agent`) doing the same
//! work: scraping `STRATA_AGENT_TARGETS` (100) targets × `STRATA_AGENT_SERIES` (1,000) series
//! every `STRATA_AGENT_INTERVAL` (15s) and remote-writing everything to a sink.
//!
//! Run with `cargo bench --bench agent_vs_prometheus` (not a criterion bench). This process
//! serves the targets (one listener per target on 127.0.0.1, bodies with advancing counter
//! values) and the remote-write sink (answers 204, counts requests and bytes). For each agent
//! in `STRATA_AGENT_RUNS` (default `strata,prometheus`) it starts the agent on a fresh
//! directory, waits for `/-/ready`, lets it run `STRATA_AGENT_DURATION` (180s), and reads its
//! CPU time over that window and its peak RSS (`VmHWM`). Prints a table and the ratios.

mod procs;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procs::{free_port, proc_cpu_seconds, proc_status_kib, wait_ready, Killer, Res};

const PROMETHEUS: &str = "/usr/bin/prometheus";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Sink {
    requests: AtomicU64,
    bytes: AtomicU64,
    scrapes: AtomicU64,
}

/// A target's exposition: `series` series over 50 metric names, counters advancing with
/// each scrape.
fn body(target: usize, series: usize, round: u64) -> String {
    let mut s = String::with_capacity(series * 90);
    let names = 50.min(series.max(1));
    let per = series.div_ceil(names);
    let mut n = 0;
    for m in 0..names {
        let _ = writeln!(s, "# HELP bench_metric_{m}_total A benchmark counter.");
        let _ = writeln!(s, "# TYPE bench_metric_{m}_total counter");
        for v in 0..per {
            if n == series {
                break;
            }
            let value = (round * (v as u64 + 1)) as f64 + target as f64 * 0.5;
            let _ = writeln!(
                s,
                "bench_metric_{m}_total{{path=\"/api/v{v}\",code=\"{}\",shard=\"{}\"}} {value}",
                200 + (v % 5),
                target % 7
            );
            n += 1;
        }
    }
    s
}

fn main() {
    if let Err(e) = run() {
        eprintln!("agent_vs_prometheus: {e}");
        std::process::exit(1);
    }
}

struct Row {
    name: String,
    cpu_s: f64,
    peak_rss_kib: u64,
    requests: u64,
    bytes: u64,
}

fn run() -> Res<()> {
    let targets = env_num("STRATA_AGENT_TARGETS", 100) as usize;
    let series = env_num("STRATA_AGENT_SERIES", 1000) as usize;
    let interval = env_num("STRATA_AGENT_INTERVAL", 15);
    let duration = Duration::from_secs(env_num("STRATA_AGENT_DURATION", 180));
    let runs = std::env::var("STRATA_AGENT_RUNS").unwrap_or_else(|_| "strata,prometheus".into());
    let strata = PathBuf::from(env!("CARGO_BIN_EXE_strata"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let sink = Arc::new(Sink::default());
    let mut target_addrs = Vec::with_capacity(targets);
    for t in 0..targets {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| e.to_string())?;
        target_addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
        let sink = sink.clone();
        let round = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let r = round.fetch_add(1, Ordering::Relaxed);
                sink.scrapes.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        body(t, series, r),
                    )
                }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let sink_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let sink_addr = sink_listener.local_addr().map_err(|e| e.to_string())?;
    {
        let sink = sink.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |b: axum::body::Bytes| {
                sink.requests.fetch_add(1, Ordering::Relaxed);
                sink.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                async { axum::http::StatusCode::NO_CONTENT }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(sink_listener, app).await;
        });
    }

    let list: Vec<String> = target_addrs.iter().map(|a| format!("'{a}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: {interval}s\n  scrape_timeout: 10s\n\
         scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{}]\n\
         remote_write:\n  - url: http://{sink_addr}/api/v1/write\n",
        list.join(", ")
    );
    let mut rows = Vec::new();
    for which in runs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if which == "prometheus" && !std::path::Path::new(PROMETHEUS).exists() {
            eprintln!("{PROMETHEUS} not found; skipping");
            continue;
        }
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cfg = tmp.path().join("agent.yml");
        std::fs::write(&cfg, &config).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let data = tmp.path().join("data");
        let mut cmd = if which == "prometheus" {
            let mut c = Command::new(PROMETHEUS);
            c.arg("--enable-feature=agent")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.agent.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"));
            c
        } else if which == "strata" {
            let mut c = Command::new(&strata);
            c.arg("agent")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.agent.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"));
            c
        } else {
            return Err(format!("unknown agent {which:?} in STRATA_AGENT_RUNS"));
        };
        let log = tmp.path().join("agent.log");
        let f = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().map_err(|e| e.to_string())?)
            .stderr(f)
            .spawn()
            .map_err(|e| format!("spawning {which}: {e}"))?;
        let mut k = Killer(child);
        wait_ready(&mut k, &addr, "/-/ready", &log).map_err(|e| format!("{which}: {e}"))?;
        let pid = k.0.id();
        let (r0, b0) = (
            sink.requests.load(Ordering::Relaxed),
            sink.bytes.load(Ordering::Relaxed),
        );
        let cpu0 = proc_cpu_seconds(pid)?;
        let start = Instant::now();
        while start.elapsed() < duration {
            std::thread::sleep(Duration::from_millis(500));
            if let Ok(Some(s)) = k.0.try_wait() {
                return Err(format!(
                    "{which} exited ({s}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
        }
        let cpu1 = proc_cpu_seconds(pid)?;
        let peak = proc_status_kib(pid, "VmHWM")?;
        drop(k);
        let row = Row {
            name: which.to_string(),
            cpu_s: cpu1 - cpu0,
            peak_rss_kib: peak,
            requests: sink.requests.load(Ordering::Relaxed) - r0,
            bytes: sink.bytes.load(Ordering::Relaxed) - b0,
        };
        eprintln!(
            "{which}: cpu {:.2}s peak {} MiB, {} remote-write requests",
            row.cpu_s,
            row.peak_rss_kib / 1024,
            row.requests
        );
        rows.push(row);
    }
    println!(
        "\n{targets} targets × {series} series every {interval}s for {}s, {} cores",
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| Agent | CPU s | peak RSS | remote-write requests | bytes sent |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.0} MiB | {} | {:.1} MiB |",
            r.name,
            r.cpu_s,
            r.peak_rss_kib as f64 / 1024.0,
            r.requests,
            r.bytes as f64 / 1048576.0
        );
    }
    if let (Some(s), Some(p)) = (
        rows.iter().find(|r| r.name == "strata"),
        rows.iter().find(|r| r.name == "prometheus"),
    ) {
        println!(
            "strata / prometheus: CPU {:.2}×, peak RSS {:.2}×",
            s.cpu_s / p.cpu_s,
            s.peak_rss_kib as f64 / p.peak_rss_kib as f64
        );
    }
    Ok(())
}
