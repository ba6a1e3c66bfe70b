//! Helpers shared by the end-to-end tests: locating the `strata` binary and the real Prometheus
//! tools, running commands with a time limit, and generating deterministic test data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
