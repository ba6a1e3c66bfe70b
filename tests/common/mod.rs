//! Helpers shared by the end-to-end tests: locating the `strata` binary and the real Prometheus
//! tools, running commands with a time limit, and generating deterministic test data.

#![allow(dead_code)]

pub mod bucket;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod results;

/// The `strata` binary built for this test run.
pub fn strata() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// Path of a required external tool; panics with a clear message when missing.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is required for this test but is not on PATH; install Debian's `prometheus` \
         package (the README's test command does)"
    );
}

/// Runs a command to completion within `limit`, killing it on timeout; returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || read_all(stdout));
    let err_t = std::thread::spawn(move || read_all(stderr));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout thread"),
        stderr: err_t.join().expect("stderr thread"),
    }
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

/// Runs a command that must succeed; returns stdout.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Vec<u8> {
    let desc = format!("{cmd:?}");
    let out = run(cmd, limit);
    assert!(
        out.status.success(),
        "{desc} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tiny deterministic PRNG (xorshift64*), so generated data is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.below(1 << 30) as f64 / (1u64 << 30) as f64
    }

    /// Scrape times in `[from, to)` every `interval` ms, starting at a random whole-second
    /// phase, each with a millisecond offset in 1..=998 (never on a whole second).
    pub fn scrape_times(&mut self, from: i64, to: i64, interval: i64) -> Vec<i64> {
        let mut t = from + self.below((interval / 1000) as u64) as i64 * 1000;
        let mut v = Vec::new();
        while t < to {
            v.push(t + 1 + self.below(998) as i64);
            t += interval;
        }
        v
    }

    /// A counter at `times`: from a high start, growing by `step` per sample, reset (to 0..=2)
    /// with probability 1/`reset_every` per sample, never before `quiet_until`.
    pub fn counter(
        &mut self,
        times: &[i64],
        quiet_until: i64,
        step: impl Fn(&mut Rng) -> f64,
        reset_every: u64,
    ) -> Vec<(i64, f64)> {
        let mut v = 100_000.0 + self.below(1000) as f64;
        let mut out = Vec::with_capacity(times.len());
        for &t in times {
            if self.below(reset_every) == 0 && t > quiet_until {
                v = self.below(3) as f64;
            } else {
                v += step(self);
            }
            out.push((t, v));
        }
        out
    }
}

/// Writes an OpenMetrics file of `series` series over `hours` hours, starting at `start_ms`:
/// counters, gauges with decimals, and series with different scrape intervals, all with
/// millisecond jitter. Returns (path, number of samples).
pub fn write_openmetrics(
    dir: &Path,
    series: usize,
    hours: i64,
    start_ms: i64,
    seed: u64,
) -> (PathBuf, usize) {
    use std::fmt::Write as _;
    let mut rng = Rng::new(seed);
    let mut s = String::new();
    let mut n = 0;
    let metrics = 10;
    let per_metric = series.div_ceil(metrics);
    let end = start_ms + hours * 3_600_000;
    let mut made = 0;
    for m in 0..metrics {
        if made >= series {
            break;
        }
        let counter = m % 2 == 0;
        let name = if counter {
            format!("app_requests_{m}")
        } else {
            format!("app_temperature_{m}")
        };
        let _ = writeln!(s, "# HELP {name} Generated test metric {m}.");
        let _ = writeln!(
            s,
            "# TYPE {name} {}",
            if counter { "counter" } else { "gauge" }
        );
        for i in 0..per_metric {
            if made >= series {
                break;
            }
            made += 1;
            let interval = [15_000i64, 30_000, 60_000][i % 3];
            let mut t = start_ms + rng.below(interval as u64) as i64;
            let mut v: f64 = if counter { 0.0 } else { 20.0 };
            let sample_name = if counter {
                format!("{name}_total")
            } else {
                name.clone()
            };
            while t < end {
                if counter {
                    v += rng.below(10) as f64;
                } else {
                    v = ((20.0 + rng.below(1000) as f64 / 100.0) * 100.0).round() / 100.0;
                }
                let _ = writeln!(
                    s,
                    "{sample_name}{{instance=\"host-{i}\",job=\"job-{}\",zone=\"z{}\"}} {} {}.{:03}",
                    i % 7,
                    i % 3,
                    v,
                    t / 1000,
                    t % 1000
                );
                n += 1;
                t += interval + rng.below(7) as i64 - 3;
            }
        }
    }
    s.push_str("# EOF\n");
    let path = dir.join("input.om.txt");
    std::fs::write(&path, s).expect("write openmetrics");
    (path, n)
}

/// A free TCP port on 127.0.0.1 (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// Starts `strata serve` on `dir` at 127.0.0.1:`port` with default flags and waits (bounded)
/// until it is ready.
pub fn start_strata_serve(dir: &Path, port: u16, log: PathBuf) -> Proc {
    start_strata_serve_with(dir, port, log, &[])
}

/// [`start_strata_serve`] with further flags.
pub fn start_strata_serve_with(
    dir: &Path,
    port: u16,
    log: PathBuf,
    args: &[&std::ffi::OsStr],
) -> Proc {
    let mut p = Proc::spawn(
        "strata serve",
        Command::new(strata())
            .arg("serve")
            .arg("--storage.tsdb.path")
            .arg(dir)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(args),
        log,
    );
    p.wait_ready(port, "/-/ready", Duration::from_secs(60));
    p
}

/// `strata serve` shipping to the bucket of `objstore` (YAML) every `shipper_interval`, with
/// the external labels of `config`, 2-minute blocks and 30-minute local retention (so hours of
/// data make many blocks, most of them soon only in the bucket), plus `extra` flags.
pub fn start_strata_shipping(
    dir: &Path,
    port: u16,
    log: PathBuf,
    config: &Path,
    objstore: &str,
    shipper_interval: &str,
    extra: &[&std::ffi::OsStr],
) -> Proc {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--config.file".as_ref(),
        config.as_os_str(),
        "--objstore.config".as_ref(),
        objstore.as_ref(),
        "--storage.tsdb.min-block-duration".as_ref(),
        "2m".as_ref(),
        "--storage.tsdb.max-block-duration".as_ref(),
        "2m".as_ref(),
        "--storage.tsdb.retention.time".as_ref(),
        "30m".as_ref(),
        "--shipper.interval".as_ref(),
        shipper_interval.as_ref(),
    ];
    args.extend_from_slice(extra);
    start_strata_serve_with(dir, port, log, &args)
}

/// `GET path?params` (values URL-encoded) on 127.0.0.1:`port`, parsed as JSON; panics naming
/// the request on a transport error or a body that is not JSON.
pub fn get_json(port: u16, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    let mut target = path.to_string();
    for (i, (k, v)) in params.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(k);
        target.push('=');
        target.push_str(&urlencode(v));
    }
    let (status, body) = http_get(port, &target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {target}: status {status}, bad JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// A minimal HTTP/1.1 GET to 127.0.0.1 (`Connection: close`, chunked bodies decoded).
pub fn http_get(port: u16, target: &str) -> Result<(u16, Vec<u8>), String> {
    http_request(port, "GET", target, None)
}

/// A form POST (`application/x-www-form-urlencoded`) to 127.0.0.1.
pub fn http_post_form(port: u16, target: &str, form: &str) -> Result<(u16, Vec<u8>), String> {
    http_request(
        port,
        "POST",
        target,
        Some(("application/x-www-form-urlencoded", form.as_bytes())),
    )
}

/// A minimal HTTP/1.1 request to 127.0.0.1 (`Connection: close`, chunked bodies decoded).
pub fn http_request(
    port: u16,
    method: &str,
    target: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let to = Some(Duration::from_secs(60));
    s.set_read_timeout(to).map_err(|e| e.to_string())?;
    s.set_write_timeout(to).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Accept-Encoding: identity\r\n"
    );
    if let Some((ct, b)) = body {
        let _ = write!(req, "Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len());
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    if let Some((_, b)) = body {
        s.write_all(b).map_err(|e| e.to_string())?;
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size_s = String::from_utf8_lossy(&rest[..nl]).to_string();
            let size = usize::from_str_radix(size_s.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("chunk size {size_s:?}: {e}"))?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size + 2 {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok((status, body))
}

/// A child process killed on drop, with its log file.
pub struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name,
            child: Some(child),
            log,
        }
    }

    /// The child's process id (0 once it was killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the child has exited (without waiting).
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for the child to exit; `None` when it is still running at `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until `GET path` on `port` answers 200.
    pub fn wait_ready(&mut self, port: u16, path: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(port, path) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited ({st}) before ready:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "{} not ready within {limit:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A moto S3 server (`moto_server`, a Flask app) on a free loopback port, killed on drop.
pub struct Moto {
    pub proc: Proc,
    pub port: u16,
    pub bucket: String,
}

impl Moto {
    /// Thanos's objstore YAML for this server's bucket.
    pub fn objstore_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {}\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
             access_key: testing\n  secret_key: testing\n  region: us-east-1\n",
            self.bucket, self.port
        )
    }
}

/// Starts `moto_server -H 127.0.0.1 -p <free port>` (logging to `log`), waits (bounded) until
/// it answers, and creates `bucket` with a plain `PUT /<bucket>` (moto needs no signature).
pub fn start_moto(bucket: &str, log: PathBuf) -> Moto {
    let bin = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("moto_server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "moto_server is required for this test but is not on PATH; \
                 `pip install 'moto[server]'` (the README's test command does)"
            )
        });
    let port = free_port();
    let mut proc = Proc::spawn(
        "moto_server",
        Command::new(bin)
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string()),
        log,
    );
    proc.wait_ready(port, "/", Duration::from_secs(30));
    let (code, body) = http_request(
        port,
        "PUT",
        &format!("/{bucket}"),
        Some(("text/plain", b"")),
    )
    .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
    assert!(
        code == 200,
        "create bucket {bucket}: status {code}: {}",
        String::from_utf8_lossy(&body)
    );
    Moto {
        proc,
        port,
        bucket: bucket.to_string(),
    }
}
