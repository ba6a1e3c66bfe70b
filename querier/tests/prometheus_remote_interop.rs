//! Interop with real Prometheus (Debian's 2.42, `/usr/bin/prometheus`): Prometheus remote-writes
//! its own scraped series to a tiny test server backed by a Strata head (through
//! `strata_ingest::remote::write`), and answers a PromQL query by remote-reading a series that
//! exists only in that head (through `strata_querier::remote_read`).
//!
//! Ignored by default because it starts a real Prometheus (about 10 s); run with
//! `cargo test -p strata-querier --test prometheus_remote_interop -- --ignored`. It fails with a
//! clear message when Prometheus is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_ingest::remote::write::{append_batch, decode_write, response_headers, WriteLimits};
use strata_querier::remote_read::{handle_read, ReadLimits};
use strata_tsdb::head::Head;
use strata_tsdb::storage::{Appender, Queryable};
use strata_tsdb::{Labels, Matcher};

const PROMETHEUS: &str = "/usr/bin/prometheus";

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn respond(s: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(body);
}

fn serve(listener: TcpListener, head: Arc<Head>) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let head = head.clone();
        std::thread::spawn(move || {
            let Some(req) = read_request(&mut s) else {
                return;
            };
            match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/api/v1/write") => {
                    let batch = match decode_write(
                        req.header("content-type"),
                        req.header("content-encoding"),
                        &req.body,
                        &WriteLimits::default(),
                    ) {
                        Ok(b) => b,
                        Err(e) => return respond(&mut s, e.status, &[], e.message.as_bytes()),
                    };
                    let mut app = head.appender();
                    let rep = append_batch(&mut app, &batch);
                    if rep.fatal.is_some() {
                        let _ = app.rollback();
                    } else if let Err(e) = app.commit() {
                        return respond(&mut s, 500, &[], e.to_string().as_bytes());
                    }
                    let status = rep.status();
                    let body = if status == 204 {
                        String::new()
                    } else {
                        rep.error_message()
                    };
                    respond(&mut s, status, &response_headers(&rep), body.as_bytes());
                }
                ("POST", "/api/v1/read") => match handle_read(
                    &head,
                    req.header("content-type"),
                    req.header("content-encoding"),
                    &req.body,
                    &ReadLimits::default(),
                ) {
                    Ok(r) => {
                        let mut h = vec![("Content-Type", r.content_type.to_string())];
                        if let Some(e) = r.content_encoding {
                            h.push(("Content-Encoding", e.to_string()));
                        }
                        respond(&mut s, 200, &h, &r.body)
                    }
                    Err(e) => respond(&mut s, e.status, &[], e.message.as_bytes()),
                },
                _ => respond(&mut s, 404, &[], b"not found"),
            }
        });
    }
}

fn http_get(port: u16, path_and_query: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn prometheus_remote_write_and_read_against_strata() {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's `prometheus` package to run this interop test"
    );
    let head = Head::in_memory(Default::default());
    let t = now_ms();
    {
        let mut app = head.appender();
        let l = Labels::from_pairs(&[("__name__", "strata_interop"), ("src", "strata")]);
        for i in 0..30 {
            app.append(&l, t - (29 - i) * 10_000, i as f64)
                .expect("append");
        }
        app.commit().expect("commit");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h2 = head.clone();
    std::thread::spawn(move || serve(listener, h2));

    let prom_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs: [{{job_name: prom, static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]}}]\n\
             remote_write: [{{url: 'http://127.0.0.1:{port}/api/v1/write', queue_config: {{batch_send_deadline: 1s}}}}]\n\
             remote_read: [{{url: 'http://127.0.0.1:{port}/api/v1/read', read_recent: true}}]\n"
        ),
    )
    .expect("config");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _guard = Kill(child);

    // 1. Remote read: Prometheus answers a query from Strata's head.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let read_ok = loop {
        if let Some(r) = http_get(prom_port, "/api/v1/query?query=strata_interop") {
            if r.contains("\"src\":\"strata\"") && r.contains("\"29\"") {
                break true;
            }
            last = r;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        read_ok,
        "Prometheus did not return strata_interop via remote read; last answer: {last}"
    );

    // 2. Remote write: Prometheus's own scraped series arrive in the head.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = head.querier(i64::MIN, i64::MAX).expect("querier");
        let n = q
            .select(false, None, &[Matcher::equal("__name__", "up")])
            .filter_map(Result::ok)
            .filter(|s| s.labels().get("job") == Some("prom"))
            .count();
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no remote-written `up{{job=\"prom\"}}` reached the head"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
