//! End-to-end comparison of Strata's PromQL engine with Prometheus on the same data.
//!
//! Run with `cargo bench --bench promql_vs_prometheus` (not a criterion bench). Steps:
//!
//! 1. Writes the `promql_data` dataset (10,000 series × 6h at 15 s, ms-jittered timestamps,
//!    ending ~10 minutes before now) as an OpenMetrics file and backfills it into 2h blocks
//!    with `promtool tsdb create-blocks-from openmetrics`.
//! 2. Copies the blocks for Strata, then starts `/usr/bin/prometheus` on the original
//!    directory, listening on 127.0.0.1 only, with an empty scrape config, 100y retention and
//!    `--storage.tsdb.max-block-duration=2h` (so it does not compact the blocks while we
//!    measure). Waits (bounded) for `/-/ready`.
//! 3. For each query of `promql_data::QUERIES` over the full 6h at step 60 s: one warm-up run
//!    each side, then `STRATA_PQ_RUNS` (default 5) timed runs of `/api/v1/query_range` over
//!    HTTP (uncompressed JSON, read to the end) and of Strata's engine in-process on the copy
//!    (parse + evaluate), plus Strata's JSON encoding of the result (`serde_json` value tree,
//!    as `strata`'s `/api/v1/query_range` builds it). Medians are printed with the ratio
//!    Prometheus / Strata. Strata's figure excludes HTTP and socket I/O; the JSON column adds
//!    the encoding, the largest part of that difference.
//! 4. Kills Prometheus (also on panic, via `Drop`).
//!
//! Skips (exit 0) when `/usr/bin/prometheus` or `/usr/bin/promtool` is missing.

mod promql_data;

use std::fmt::Write as _;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_data::{QUERIES, QUERY_STEP_MS, SPAN_MS};
use serde_json::{json, Value as Json};
use strata_promql::engine::{QueryOptions, Value};
use strata_tsdb::db::{Db, DbOptions};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

type Res<T> = Result<T, String>;

/// Kills the child process on drop.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("promql_vs_prometheus: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    if !Path::new(PROMETHEUS).exists() || !Path::new(PROMTOOL).exists() {
        eprintln!("{PROMETHEUS} or {PROMTOOL} not found; skipping");
        return Ok(());
    }
    let runs: usize = std::env::var("STRATA_PQ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    // First scrape on a minute boundary plus a ms offset; the data end ~10 min before now.
    let start = (now - SPAN_MS - 10 * 60_000) / 60_000 * 60_000 + 1_234;
    let (qstart, qend) = (start / 60_000 * 60_000, start / 60_000 * 60_000 + SPAN_MS);

    // 1. OpenMetrics file and promtool backfill.
    let om = tmp.path().join("data.om");
    let t = Instant::now();
    let om_bytes = write_openmetrics(&om, start)?;
    eprintln!(
        "wrote {} ({:.0} MB) in {:.1}s",
        om.display(),
        om_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).map_err(|e| format!("mkdir: {e}"))?;
    let t = Instant::now();
    let out = tmp.path().join("promtool.log");
    let log = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut promtool = Command::new(PROMTOOL)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&om)
        .arg(&prom_dir)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawning promtool: {e}"))?;
    let status = wait_bounded(&mut promtool, Duration::from_secs(900))?;
    if !status.success() {
        let msg = std::fs::read_to_string(&out).unwrap_or_default();
        return Err(format!("promtool failed ({status}): {msg}"));
    }
    std::fs::remove_file(&om).map_err(|e| format!("rm {}: {e}", om.display()))?;
    eprintln!("promtool backfill: {:.1}s", t.elapsed().as_secs_f64());

    // 2. Copy for Strata, start Prometheus.
    let strata_dir = tmp.path().join("strata");
    copy_dir(&prom_dir, &strata_dir)?;
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("picking a port: {e}"))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let plog_path = tmp.path().join("prometheus.log");
    let plog = std::fs::File::create(&plog_path).map_err(|e| e.to_string())?;
    let child = Command::new(PROMETHEUS)
        .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--storage.tsdb.max-block-duration=2h")
        .stdin(Stdio::null())
        .stdout(plog.try_clone().map_err(|e| e.to_string())?)
        .stderr(plog)
        .spawn()
        .map_err(|e| format!("spawning prometheus: {e}"))?;
    let mut prom = Killer(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, _)) = http_get(&addr, "/-/ready", Duration::from_secs(5)) {
            break;
        }
        if let Ok(Some(s)) = prom.0.try_wait() {
            let msg = std::fs::read_to_string(&plog_path).unwrap_or_default();
            return Err(format!("prometheus exited ({s}): {msg}"));
        }
        if Instant::now() > deadline {
            return Err("prometheus not ready after 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("prometheus ready on {addr}");

    let db = Db::open(
        &strata_dir,
        DbOptions {
            read_only: true,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .map_err(|e| format!("opening {}: {e}", strata_dir.display()))?;
    eprintln!("strata: {} blocks", db.blocks().len());
    let engine = strata_promql::Engine::default();
    let qo = QueryOptions::default();

    // 3. Measure.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| Query | Strata `total_samples` | Prometheus `totalQueryableSamples` | Prometheus HTTP | Strata eval | Strata eval + JSON | Prom / Strata eval | Prom / Strata eval+JSON |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, q) in QUERIES {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            urlencode(q),
            secs(qstart),
            secs(qend),
            QUERY_STEP_MS / 1000
        );
        let prom_once = || -> Res<Vec<u8>> {
            let (code, body) = http_get(&addr, &path, Duration::from_secs(300))?;
            if code != 200 {
                return Err(format!(
                    "{q}: HTTP {code}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                ));
            }
            Ok(body)
        };
        let strata_once = || -> Res<strata_promql::engine::QueryResult> {
            let expr = strata_promql::parser::parse(q).map_err(|e| format!("{q}: {e}"))?;
            engine
                .exec(&*db, &expr, qstart, qend, QUERY_STEP_MS, &qo)
                .map_err(|e| format!("{q}: {e}"))
        };

        // Warm-up, and a check that both sides return the same shape.
        let body = prom_once()?;
        let pj: Json = serde_json::from_slice(&body).map_err(|e| format!("{q}: bad JSON: {e}"))?;
        let p_series = pj["data"]["result"].as_array().map_or(0, |a| a.len());
        let p_points: usize = pj["data"]["result"].as_array().map_or(0, |a| {
            a.iter()
                .map(|s| s["values"].as_array().map_or(0, |v| v.len()))
                .sum()
        });
        let r = strata_once()?;
        let (s_series, s_points) = match &r.value {
            Value::Matrix(m) => (m.len(), m.iter().map(|s| s.floats.len()).sum::<usize>()),
            _ => (0, 0),
        };
        let stats_path = format!("{path}&stats=all");
        let p_samples = http_get(&addr, &stats_path, Duration::from_secs(300))
            .ok()
            .and_then(|(_, b)| serde_json::from_slice::<Json>(&b).ok())
            .and_then(|j| j["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64());
        eprintln!(
            "{name}: prometheus {p_series} series / {p_points} points ({} bytes JSON, {} samples queried); strata {s_series} series / {s_points} points, total_samples {}",
            body.len(),
            p_samples.map_or("?".into(), |n| n.to_string()),
            r.total_samples
        );
        if p_series != s_series || p_points != s_points {
            eprintln!("  WARNING: result shapes differ");
        }

        let mut p_times = Vec::with_capacity(runs);
        let mut s_times = Vec::with_capacity(runs);
        let mut j_times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            std::hint::black_box(prom_once()?);
            p_times.push(t.elapsed());
            let t = Instant::now();
            let r = strata_once()?;
            s_times.push(t.elapsed());
            let t = Instant::now();
            let body = encode_json(&r.value);
            j_times.push(t.elapsed());
            std::hint::black_box(body.len());
        }
        let (p, s, j) = (median(p_times), median(s_times), median(j_times));
        let sj = s + j;
        let _ = writeln!(
            table,
            "| `{q}` | {:.2} M | {} | {} | {} | {} | {:.2}× | {:.2}× |",
            r.total_samples as f64 / 1e6,
            p_samples.map_or("?".into(), |n| format!("{:.2} M", n as f64 / 1e6)),
            ms(p),
            ms(s),
            ms(sj),
            p.as_secs_f64() / s.as_secs_f64(),
            p.as_secs_f64() / sj.as_secs_f64(),
        );
    }
    drop(prom);
    println!("\nMedians of {runs} runs, range queries over 6h at step 60s, 10,000 series × 1,440 samples:\n");
    println!("{table}");
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A ms timestamp as decimal seconds.
fn secs(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Waits for `child` at most `limit`, killing it when the limit passes.
fn wait_bounded(child: &mut Child, limit: Duration) -> Res<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "child process still running after {limit:?}; killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_openmetrics(path: &Path, start: i64) -> Res<u64> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut n = 0u64;
    let mut err = None;
    let mut line = String::new();
    promql_data::for_each_series(start, |labels, samples| {
        if err.is_some() {
            return;
        }
        let mut prefix = String::new();
        prefix.push_str(&labels[0].1);
        prefix.push('{');
        for (i, (k, v)) in labels[1..].iter().enumerate() {
            if i > 0 {
                prefix.push(',');
            }
            let _ = write!(prefix, "{k}=\"{v}\"");
        }
        prefix.push('}');
        for &(t, v) in samples {
            line.clear();
            let _ = writeln!(line, "{prefix} {v} {}", secs(t));
            n += line.len() as u64;
            if let Err(e) = w.write_all(line.as_bytes()) {
                err = Some(e);
                return;
            }
        }
    });
    if let Some(e) = err {
        return Err(format!("{}: {e}", path.display()));
    }
    w.write_all(b"# EOF\n")
        .and_then(|_| w.flush())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(n + 6)
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to).map_err(|e| format!("mkdir {}: {e}", to.display()))?;
    let rd = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for ent in rd {
        let ent = ent.map_err(|e| e.to_string())?;
        let src: PathBuf = ent.path();
        let dst = to.join(ent.file_name());
        if ent.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
        }
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET against 127.0.0.1 (no compression); handles chunked bodies.
fn http_get(addr: &str, path: &str, timeout: Duration) -> Res<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        Duration::from_secs(5),
    )
    .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: strata-bench\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let code: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((code, body))
}

fn dechunk(mut b: &[u8]) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Prometheus's JSON formatting of a sample value.
fn fmt_value(v: f64) -> String {
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

fn metric_json(l: &strata_tsdb::Labels) -> Json {
    let mut m = serde_json::Map::new();
    for x in l.iter() {
        m.insert(x.name.to_string(), Json::String(x.value.to_string()));
    }
    Json::Object(m)
}

/// The response body `strata`'s `/api/v1/query_range` would send (same construction as
/// `src/promql_cmd.rs`'s `value_json`, which the bench cannot import from the binary crate).
fn encode_json(v: &Value) -> String {
    let data = match v {
        Value::Matrix(m) => json!({
            "resultType": "matrix",
            "result": m.iter().map(|s| json!({
                "metric": metric_json(&s.metric),
                "values": s.floats.iter().map(|(t, v)| json!([*t as f64 / 1000.0, fmt_value(*v)])).collect::<Vec<_>>()
            })).collect::<Vec<_>>()
        }),
        _ => json!(null),
    };
    json!({"status": "success", "data": data}).to_string()
}
