//! Differential test against the real Prometheus (Debian's 2.42 at `/usr/bin/prometheus`): each
//! fixture in `shared/prometheus/textparse/` is served over HTTP on 127.0.0.1 with its content
//! type (`text/plain; version=0.0.4` for `*.prom.txt`, `application/openmetrics-text;
//! version=1.0.0` for `*.om.txt`), Prometheus scrapes all of them every second, and what it
//! stored — `scrape_samples_scraped` and the number of series per metric name — is compared with
//! what our parsers (chosen through `scrape_format::parser_for` with the same content type) get
//! from the same bytes.
//!
//! Prometheus 2.42 vs 3 differences that do not change counts: 2.42 does not normalise `le` /
//! `quantile` label values (only the text of those values differs) and its OpenMetrics parser
//! has no start-timestamp handling, so `_created` lines are ingested as ordinary series; our
//! OpenMetrics parser by default (no `skip_created_series`) yields them too, so they are
//! compared one to one.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strata_ingest::scrape_format::parser_for;
use strata_ingest::textparse::Entry;

const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/prometheus/textparse"
);
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Series Prometheus adds for every target itself.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A one-file HTTP server on 127.0.0.1 answering `GET /metrics`.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(body: Vec<u8>, content_type: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let response = if head.starts_with("GET /metrics ") {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = conn.write_all(&response);
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The Prometheus process, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (so the body is neither chunked nor kept alive); the JSON body.
fn http_get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&resp[split + 4..]).ok()
}

fn encode(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant query's result vector as (metric labels, value).
fn query(port: u16, q: &str) -> Vec<(serde_json::Value, f64)> {
    let Some(v) = http_get_json(port, &format!("/api/v1/query?query={}", encode(q))) else {
        return Vec::new();
    };
    if v["status"] != "success" {
        panic!("query {q} failed: {v}");
    }
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let val = s["value"][1].as_str().unwrap_or("NaN").parse().unwrap();
                    (s["metric"].clone(), val)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What our parser gets from a fixture: samples and series per metric name.
struct Ours {
    samples: usize,
    per_name: BTreeMap<String, usize>,
}

fn our_counts(body: &[u8], content_type: &str) -> Ours {
    let mut samples = 0;
    let mut series = HashSet::new();
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for e in parser_for(Some(content_type), body).expect("content type selects a parser") {
        if let Entry::Sample(s) = e.expect("fixture parses") {
            samples += 1;
            let labels = s.to_labels().expect("valid labels");
            if series.insert(labels) {
                *per_name.entry(s.name.to_string()).or_default() += 1;
            }
        }
    }
    Ours { samples, per_name }
}

fn content_type_for(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".prom.txt") {
        Some("text/plain; version=0.0.4")
    } else if name.ends_with(".om.txt") {
        Some("application/openmetrics-text; version=1.0.0")
    } else {
        None
    }
}

#[test]
fn prometheus_scrape_counts_match_ours() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is required (Debian package prometheus 2.42)"
    );
    let dir = std::fs::read_dir(TESTDATA).unwrap_or_else(|e| {
        panic!("Prometheus's textparse fixtures are required at {TESTDATA}: {e}")
    });
    let mut fixtures: Vec<(PathBuf, &'static str)> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| content_type_for(&p).map(|ct| (p, ct)))
        .collect();
    fixtures.sort();
    assert_eq!(
        fixtures.len(),
        4,
        "expected 2 .prom.txt and 2 .om.txt fixtures"
    );

    let mut servers = Vec::new();
    let mut jobs = Vec::new();
    let mut scrape_configs = String::new();
    for (k, (path, ct)) in fixtures.iter().enumerate() {
        let body = std::fs::read(path).unwrap();
        let ours = our_counts(&body, ct);
        let server = Server::start(body, ct);
        let job = format!("fixture{k}");
        scrape_configs.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            server.port
        ));
        jobs.push((
            job,
            path.file_name().unwrap().to_string_lossy().into_owned(),
            ours,
        ));
        servers.push(server);
    }

    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1m\nscrape_configs:\n{scrape_configs}"
        ),
    )
    .unwrap();
    let web_port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prom = Prometheus(child);

    // Wait (bounded) until every job has been scraped at least twice.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scrapes = query(web_port, "count_over_time(scrape_samples_scraped[1m])");
        let ready = jobs.iter().all(|(job, _, _)| {
            scrapes
                .iter()
                .any(|(m, v)| m["job"] == job.as_str() && *v >= 2.0)
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape every fixture twice within 60s (got {scrapes:?})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    for (job, file, ours) in &jobs {
        let up = query(web_port, &format!("up{{job=\"{job}\"}}"));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].1, 1.0, "{file}: Prometheus failed to scrape it");
        let scraped = query(
            web_port,
            &format!("scrape_samples_scraped{{job=\"{job}\"}}"),
        );
        assert_eq!(scraped.len(), 1);
        let theirs_samples = scraped[0].1 as usize;
        let by_name = query(
            web_port,
            &format!("count by (__name__) ({{job=\"{job}\"}})"),
        );
        let theirs: BTreeMap<String, usize> = by_name
            .iter()
            .map(|(m, v)| (m["__name__"].as_str().unwrap().to_string(), *v as usize))
            .filter(|(n, _)| !SYNTHETIC.contains(&n.as_str()))
            .collect();
        let mine: BTreeMap<String, usize> = ours
            .per_name
            .iter()
            .filter(|(n, _)| !SYNTHETIC.contains(&n.as_str()))
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        let series_theirs: usize = theirs.values().sum();
        let series_mine: usize = mine.values().sum();
        eprintln!(
            "{file}: Prometheus 2.42 scraped {theirs_samples} samples, {} names, {series_theirs} series; ours {} samples, {} names, {series_mine} series",
            theirs.len(),
            ours.samples,
            mine.len()
        );
        assert_eq!(
            theirs_samples, ours.samples,
            "{file}: scrape_samples_scraped"
        );
        assert_eq!(theirs, mine, "{file}: series per metric name");
    }
}
