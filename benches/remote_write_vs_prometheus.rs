//! Remote-write ingest of `strata serve` against Prometheus, driven by `strata bench
//! remote-write` with the same workload for both.
//!
//! Run with `cargo bench --bench remote_write_vs_prometheus` (not a criterion bench). For each
//! target in `STRATA_RW_TARGETS` (default `strata,prometheus,strata-v2`):
//!
//! 1. Starts the server on a fresh temporary directory, listening on 127.0.0.1 at a free port:
//!    the `strata` binary of this build (`strata serve`), or `/usr/bin/prometheus
//!    --web.enable-remote-write-receiver` with an empty scrape configuration. Waits (bounded)
//!    for `/-/ready`.
//! 2. Runs the load generator as a child process (`strata bench remote-write`, protocol 1.0,
//!    or 2.0 for `strata-v2`; Prometheus 2.42 only receives 1.0) with `STRATA_RW_SERIES`
//!    (100000), `STRATA_RW_BATCH` (2000), `STRATA_RW_CONCURRENCY` (8) and `STRATA_RW_DURATION`
//!    (30s), bounded by the duration plus 10 minutes.
//! 3. Reads the server's peak RSS (`VmHWM` of `/proc/<pid>/status`) and the CPU time it used
//!    during the load (`/proc/<pid>/stat`), then kills it (also on panic, via `Drop`).
//!
//! Prints one row per target and the Strata / Prometheus ratios. The generator shares the
//! machine with the server; its own CPU time is reported too.

mod procs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{dir_size, http_status, proc_cpu_seconds, proc_status_kib, run_bounded, Killer, Res};

const PROMETHEUS: &str = "/usr/bin/prometheus";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("remote_write_vs_prometheus: {e}");
        std::process::exit(1);
    }
}

/// What one target measured.
struct Row {
    name: String,
    gen: BTreeMap<String, String>,
    peak_rss_kib: u64,
    server_cpu_s: f64,
    wal_bytes: u64,
}

impl Row {
    fn f(&self, k: &str) -> f64 {
        self.gen
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

fn run() -> Res<()> {
    let strata = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let targets = env_or("STRATA_RW_TARGETS", "strata,prometheus,strata-v2");
    let series = env_or("STRATA_RW_SERIES", "100000");
    let batch = env_or("STRATA_RW_BATCH", "2000");
    let conc = env_or("STRATA_RW_CONCURRENCY", "8");
    let duration = env_or("STRATA_RW_DURATION", "30s");
    let mut rows = Vec::new();
    for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (protocol, is_prom) = match t {
            "strata" => ("1", false),
            "strata-v2" => ("2", false),
            "prometheus" => ("1", true),
            other => return Err(format!("unknown target {other:?} in STRATA_RW_TARGETS")),
        };
        if is_prom && !Path::new(PROMETHEUS).exists() {
            eprintln!("{PROMETHEUS} not found; skipping the Prometheus run");
            continue;
        }
        let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let data = tmp.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("picking a port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log_path = tmp.path().join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut cmd = if is_prom {
            let config = tmp.path().join("prometheus.yml");
            std::fs::write(&config, "global:\n  scrape_interval: 15s\n")
                .map_err(|e| e.to_string())?;
            let mut c = Command::new(PROMETHEUS);
            c.arg("--web.enable-remote-write-receiver")
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.listen-address={addr}"));
            c
        } else {
            let mut c = Command::new(&strata);
            c.arg("serve")
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"));
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {t}: {e}"))?;
        let mut server = Killer(child);
        let pid = server.0.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(200) = http_status(&addr, "/-/ready") {
                break;
            }
            if let Ok(Some(s)) = server.0.try_wait() {
                let msg = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{t} exited ({s}): {msg}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{t} not ready after 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{t} ready on {addr} (pid {pid})");

        let url = format!("http://{addr}/api/v1/write");
        let mut gen = Command::new(&strata);
        gen.args(["bench", "remote-write", "--url", &url])
            .args(["--series", &series, "--batch", &batch])
            .args(["--concurrency", &conc, "--duration", &duration])
            .args(["--protocol", protocol])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let gen_limit = Duration::from_millis(
            parse_secs(&duration).map_or(3_600_000, |s| (s * 1000.0) as u64) + 600_000,
        );
        // The server's CPU is counted from when the generator starts (its pre-encoding
        // leaves the server idle).
        let cpu0 = proc_cpu_seconds(pid)?;
        let out = run_bounded(&mut gen, gen_limit)?;
        let cpu1 = proc_cpu_seconds(pid)?;
        let peak_rss_kib = proc_status_kib(pid, "VmHWM")?;
        let line = out
            .lines()
            .find(|l| l.starts_with("remote-write "))
            .ok_or_else(|| format!("no summary line from the generator: {out:?}"))?;
        println!("{t}: {line}");
        let gen: BTreeMap<String, String> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Ok(Some(s)) = server.0.try_wait() {
            let msg = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("{t} exited during the run ({s}): {msg}"));
        }
        drop(server);
        let wal_bytes = dir_size(&data.join("wal"));
        rows.push(Row {
            name: format!("{t} (protocol {protocol})"),
            gen,
            peak_rss_kib,
            server_cpu_s: cpu1 - cpu0,
            wal_bytes,
        });
    }

    println!();
    println!(
        "series={series} batch={batch} concurrency={conc} duration={duration}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| Server | samples/s | p50 | p99 | peak RSS | server CPU | samples per server CPU-s | generator CPU | errors | WAL bytes/sample |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let samples = r.f("samples");
        println!(
            "| {} | {:.0} | {:.1} ms | {:.1} ms | {:.0} MiB | {:.1} s | {:.0} | {:.1} s | {} | {:.2} |",
            r.name,
            r.f("samples_per_s"),
            r.f("p50_ms"),
            r.f("p99_ms"),
            r.peak_rss_kib as f64 / 1024.0,
            r.server_cpu_s,
            samples / r.server_cpu_s,
            r.f("client_cpu_s"),
            r.f("errors") + r.f("conn_errors"),
            r.wal_bytes as f64 / samples
        );
    }
    let prom = rows.iter().find(|r| r.name.starts_with("prometheus"));
    if let Some(p) = prom {
        for s in rows.iter().filter(|r| r.name.starts_with("strata")) {
            println!(
                "{} / Prometheus: samples/s {:.2}×, p99 {:.2}×, peak RSS {:.2}×, samples per CPU-s {:.2}×",
                s.name,
                s.f("samples_per_s") / p.f("samples_per_s"),
                s.f("p99_ms") / p.f("p99_ms"),
                s.peak_rss_kib as f64 / p.peak_rss_kib as f64,
                (s.f("samples") / s.server_cpu_s) / (p.f("samples") / p.server_cpu_s)
            );
        }
    }
    Ok(())
}

fn parse_secs(d: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = d.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = d.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = d.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (d, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}
