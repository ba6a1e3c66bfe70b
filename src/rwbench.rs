//! `strata bench remote-write`: a remote-write load generator.
//!
//! Before timing, the series are split into requests of `--batch` series (one sample each) and
//! every request is encoded and snappy-compressed once into a [`encode::Template`]. Then
//! `--concurrency` sender threads, each owning every `concurrency`-th request (so a series is
//! only ever sent by one sender, in order, like Prometheus's queue shards), send rounds: round
//! `r` carries every series at `t0 + r × --scrape-interval`, written into a copy of the template
//! in place (a `memcpy` and 16 rewritten bytes per sample; see [`encode`]). Senders use one
//! blocking HTTP/1.1 keep-alive connection each and may not run more than [`MAX_ROUND_SKEW`]
//! rounds ahead of the slowest one. The run ends after `--duration` (requests in flight finish), or earlier
//! when the next round would be less than [`AHEAD_MARGIN_MS`] behind the receiver's
//! 10-minute future limit; `t0` is `--start` before now.
//!
//! It prints one `key=value` summary line on stdout: accepted (2xx) samples per second over the
//! whole run, errors, request latency percentiles, the time of the first round (series
//! creation), and the generator's own CPU time.

pub mod encode;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use encode::{Proto, Template};

use crate::tsdb_cmd::parse_duration_ms;

/// How many rounds a sender may be ahead of the slowest sender.
pub const MAX_ROUND_SKEW: u64 = 4;
/// Rounds stop this long before "now + 10 min" (the receiver's future limit).
pub const AHEAD_MARGIN_MS: i64 = 5 * 60_000;

/// Flags of `strata bench remote-write`.
#[derive(clap::Args, Debug)]
pub struct RemoteWriteArgs {
    /// Receiver URL, e.g. http://127.0.0.1:9090/api/v1/write (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Number of series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples (= series) per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Concurrent senders (one connection each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Remote-write protocol: 1 (prometheus.WriteRequest) or 2 (io.prometheus.write.v2.Request).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    protocol: u8,
    /// Timestamp step between rounds.
    #[arg(long = "scrape-interval", default_value = "15s")]
    scrape_interval: String,
    /// How long before now the first round is timestamped. Rounds advance faster than the
    /// clock, so they start in the past; the run stops early if they catch up with now + 5 min.
    #[arg(long, default_value = "4h")]
    start: String,
}

/// What one sender measured.
#[derive(Default)]
struct SenderStats {
    requests: u64,
    samples: u64,
    errors: u64,
    conn_errors: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

/// A parsed `http://host:port/path` URL.
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url must start with http:// (no TLS): {url:?}");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/api/v1/write"),
    };
    let hp = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = hp
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} has no address"))?;
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
    })
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.set_write_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            r: BufReader::with_capacity(16 << 10, s.try_clone()?),
            w: s,
        })
    }

    /// Sends a complete request; returns the status, the body (error bodies only matter) and
    /// whether the connection may be reused.
    fn round_trip(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        self.w.write_all(req)?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed before the response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("malformed status line"))?;
        let (mut len, mut chunked, mut keep) = (None::<usize>, false, true);
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    keep = !v.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        if status == 204 || status == 304 || status < 200 {
        } else if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("malformed chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.r.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            self.r.read_exact(&mut body)?;
        } else {
            self.r.read_to_end(&mut body)?;
            keep = false;
        }
        Ok((status, body, keep))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

pub fn remote_write(a: &RemoteWriteArgs) -> Result<()> {
    if a.series == 0 || a.batch == 0 || a.concurrency == 0 {
        bail!("--series, --batch and --concurrency must be positive");
    }
    let target = parse_url(&a.url)?;
    let duration =
        Duration::from_millis(parse_duration_ms(&a.duration).context("--duration")? as u64);
    let interval = parse_duration_ms(&a.scrape_interval).context("--scrape-interval")?;
    if interval <= 0 {
        bail!("--scrape-interval must be positive");
    }
    let start_ago = parse_duration_ms(&a.start).context("--start")?;
    let proto = if a.protocol == 2 {
        Proto::V2
    } else {
        Proto::V1
    };
    let t0 = (now_ms() - start_ago) / interval * interval;
    encode::check_ts_range(t0, now_ms() + 10 * 60_000)?;

    // Pre-encode (not timed).
    let enc_start = Instant::now();
    let ranges: Vec<std::ops::Range<usize>> = (0..a.series)
        .step_by(a.batch)
        .map(|s| s..(s + a.batch).min(a.series))
        .collect();
    let templates: Vec<Template> = {
        let next = AtomicU64::new(0);
        let slots: Vec<Mutex<Option<Template>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(r) = ranges.get(k) else { break };
                    let t = encode::build_template(proto, r.clone());
                    if let Ok(mut g) = slots[k].lock() {
                        *g = Some(t);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|m| m.into_inner().ok().flatten().context("encoding a request"))
            .collect::<Result<_>>()?
    };
    let body_bytes: usize = templates.iter().map(|t| t.body.len()).sum();
    let raw_bytes: usize = templates.iter().map(|t| t.raw_len).sum();
    eprintln!(
        "pre-encoded {} requests of ≤{} samples in {:.2}s: {:.1} MB per round compressed ({:.1} MB raw, {:.1} bytes/sample on the wire)",
        templates.len(),
        a.batch,
        enc_start.elapsed().as_secs_f64(),
        body_bytes as f64 / 1e6,
        raw_bytes as f64 / 1e6,
        body_bytes as f64 / a.series as f64
    );

    let (content_type, version) = match proto {
        Proto::V1 => ("application/x-protobuf", "0.1.0"),
        Proto::V2 => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
    };
    let templates = Arc::new(templates);
    let conc = a.concurrency.min(templates.len());
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..conc).map(|_| AtomicU64::new(0)).collect());
    let window_hit = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let round0_done = Arc::new(Mutex::new(None::<Duration>));
    let mut handles = Vec::new();
    for i in 0..conc {
        let templates = templates.clone();
        let progress = progress.clone();
        let window_hit = window_hit.clone();
        let round0_done = round0_done.clone();
        let header_prefix = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata-bench\r\nContent-Type: {content_type}\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: {version}\r\n",
            target.path, target.host
        );
        let addr = target.addr;
        handles.push(std::thread::spawn(move || {
            let mut st = SenderStats::default();
            let mut conn: Option<Conn> = None;
            let mut buf = Vec::new();
            let mine: Vec<usize> = (i..templates.len()).step_by(conc).collect();
            'rounds: for r in 0u64.. {
                // Stay within MAX_ROUND_SKEW rounds of the slowest sender.
                loop {
                    let min = progress.iter().map(|p| p.load(Ordering::Acquire)).min();
                    if min.unwrap_or(r) + MAX_ROUND_SKEW >= r || start.elapsed() >= duration {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                let ts = t0 + r as i64 * interval;
                if ts > now_ms() + 10 * 60_000 - AHEAD_MARGIN_MS {
                    window_hit.store(true, Ordering::Relaxed);
                    break;
                }
                for &k in &mine {
                    if start.elapsed() >= duration {
                        break 'rounds;
                    }
                    let t = &templates[k];
                    buf.clear();
                    buf.extend_from_slice(header_prefix.as_bytes());
                    buf.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", t.body.len()).as_bytes(),
                    );
                    let base = buf.len();
                    buf.extend_from_slice(&t.body);
                    t.patch(&mut buf, base, r, ts);
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Conn::open(addr) {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                st.conn_errors += 1;
                                st.first_error.get_or_insert(format!("connect: {e}"));
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        },
                    };
                    let sent = Instant::now();
                    match c.round_trip(&buf) {
                        Ok((status, body, keep)) => {
                            st.latencies_us
                                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            st.requests += 1;
                            if (200..300).contains(&status) {
                                st.samples += t.holes.len() as u64;
                            } else {
                                st.errors += 1;
                                st.first_error.get_or_insert_with(|| {
                                    format!(
                                        "HTTP {status}: {}",
                                        String::from_utf8_lossy(&body[..body.len().min(300)])
                                    )
                                });
                            }
                            if !keep {
                                conn = None;
                            }
                        }
                        Err(e) => {
                            st.conn_errors += 1;
                            st.first_error.get_or_insert(format!("request: {e}"));
                            conn = None;
                        }
                    }
                }
                progress[i].store(r + 1, Ordering::SeqCst);
                if r == 0 && progress.iter().all(|p| p.load(Ordering::SeqCst) >= 1) {
                    if let Ok(mut g) = round0_done.lock() {
                        g.get_or_insert(start.elapsed());
                    }
                }
            }
            // Let the others pass the skew barrier.
            progress[i].store(u64::MAX / 2, Ordering::Release);
            st
        }));
    }
    let mut all = SenderStats::default();
    for h in handles {
        let st = h
            .join()
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))?;
        all.requests += st.requests;
        all.samples += st.samples;
        all.errors += st.errors;
        all.conn_errors += st.conn_errors;
        all.latencies_us.extend(st.latencies_us);
        if all.first_error.is_none() {
            all.first_error = st.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    all.latencies_us.sort_unstable();
    let rounds = all.samples as f64 / a.series as f64;
    let round0 = round0_done
        .lock()
        .ok()
        .and_then(|g| *g)
        .map_or(-1.0, |d| d.as_secs_f64());
    if let Some(e) = &all.first_error {
        eprintln!("first error: {e}");
    }
    if window_hit.load(Ordering::Relaxed) {
        eprintln!(
            "stopped early: rounds reached now + 5 min; use a larger --start or --scrape-interval"
        );
    }
    println!(
        "remote-write protocol={} series={} batch={} concurrency={} elapsed_s={:.2} requests={} samples={} samples_per_s={:.0} errors={} conn_errors={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} rounds={:.1} round0_s={:.2} bytes_per_request={:.0} client_cpu_s={:.2}",
        a.protocol,
        a.series,
        a.batch,
        conc,
        elapsed,
        all.requests,
        all.samples,
        all.samples as f64 / elapsed,
        all.errors,
        all.conn_errors,
        percentile(&all.latencies_us, 0.50),
        percentile(&all.latencies_us, 0.99),
        percentile(&all.latencies_us, 1.0),
        rounds,
        round0,
        body_bytes as f64 / templates.len() as f64,
        cpu
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(t.addr.to_string(), "127.0.0.1:9090");
        assert_eq!(t.path, "/api/v1/write");
        assert!(parse_url("https://127.0.0.1:9090/").is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    /// A receiver on a thread answering 204 (keep-alive) then 400 with a chunked body.
    #[test]
    fn round_trip_parses_responses() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for reply in [
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n0\r\n\r\n",
            ] {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                w.write_all(reply.as_bytes()).unwrap();
            }
        });
        let mut c = Conn::open(addr).unwrap();
        let req = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(c.round_trip(req).unwrap(), (204, vec![], true));
        assert_eq!(c.round_trip(req).unwrap(), (400, b"bad".to_vec(), true));
        srv.join().unwrap();
    }
}
