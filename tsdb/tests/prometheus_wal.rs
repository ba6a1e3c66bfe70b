//! WAL compatibility with Prometheus in both directions.
//!
//! 1. Reads a WAL written by a real Prometheus (`/usr/bin/prometheus`, Debian's 2.42
//!    package): runs it scraping itself every second, waits until its WAL holds series and
//!    samples records, stops it with SIGTERM, then reads and decodes every record. Every wait
//!    is bounded and the process is killed at the end even if an assertion fails.
//! 2. Has `promtool tsdb dump` replay a WAL and checkpoint written by Strata.
//!
//! Both fail loudly if the binaries are missing.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_tsdb::wal::{
    decode_samples, decode_series, decode_tombstones, record_type, RecordType, Wal, WalReader,
    DEFAULT_SEGMENT_SIZE,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Kills the child on drop unless it already exited.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

#[derive(Default, Debug)]
struct Counts {
    series_records: usize,
    sample_records: usize,
    series: usize,
    samples: usize,
    other: usize,
}

/// Reads and decodes every record under `wal`, panicking on any error when `strict`;
/// otherwise errors (a record being written right now) end the read early.
fn read_wal(
    wal: &Path,
    strict: bool,
) -> (Counts, HashMap<u64, strata_tsdb::Labels>, Vec<(u64, f64)>) {
    let mut counts = Counts::default();
    let mut series = HashMap::new();
    let mut samples_out = Vec::new();
    let Ok(mut r) = WalReader::open(wal) else {
        assert!(!strict, "cannot list {}", wal.display());
        return (counts, series, samples_out);
    };
    let mut intern = |s: &str| -> Arc<str> { s.into() };
    let (mut sbuf, mut samples, mut stones) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let rec = match r.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => {
                assert!(!strict, "reading Prometheus's WAL: {e}");
                break;
            }
        };
        match record_type(rec) {
            RecordType::Series => {
                sbuf.clear();
                decode_series(rec, &mut sbuf, &mut intern).expect("decode series record");
                counts.series_records += 1;
                counts.series += sbuf.len();
                for s in sbuf.drain(..) {
                    series.insert(s.r, s.labels);
                }
            }
            RecordType::Samples => {
                samples.clear();
                decode_samples(rec, &mut samples).expect("decode samples record");
                counts.sample_records += 1;
                counts.samples += samples.len();
                samples_out.extend(samples.iter().map(|s| (s.r, s.v)));
            }
            RecordType::Tombstones => {
                stones.clear();
                decode_tombstones(rec, &mut stones).expect("decode tombstones record");
            }
            _ => counts.other += 1,
        }
    }
    (counts, series, samples_out)
}

#[test]
fn reads_a_wal_written_by_prometheus() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: this test needs Prometheus installed (Debian package `prometheus`)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = tmp.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write config");
    let data: PathBuf = tmp.path().join("data");
    let log = fs::File::create(tmp.path().join("prometheus.log")).expect("log file");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.wal-compression")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let mut guard = ChildGuard(Some(child));
    let wal = data.join("wal");

    // Wait (bounded) until a few scrapes are in the WAL.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (c, _, _) = read_wal(&wal, false);
        if c.series_records >= 1 && c.sample_records >= 3 {
            break;
        }
        if let Some(c) = guard.0.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let log = fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default();
                panic!("prometheus exited early with {status}:\n{log}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus wrote no samples in 40s; log:\n{}",
            fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // SIGTERM, bounded wait for a clean exit.
    if let Some(c) = guard.0.as_mut() {
        let pid = c.id() as libc::pid_t;
        // SAFETY: sending a signal to the child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => panic!("prometheus did not exit within 20s of SIGTERM"),
            }
        }
        guard.0 = None;
    }

    // Every record decodes; samples refer to known series; `up` is 1.
    let (counts, series, samples) = read_wal(&wal, true);
    assert!(counts.series >= 10, "{counts:?}");
    assert!(counts.samples >= 3 * counts.series / 2, "{counts:?}");
    for (r, _) in &samples {
        assert!(series.contains_key(r), "sample for unknown series ref {r}");
    }
    let up = series
        .iter()
        .find(|(_, l)| l.metric_name() == Some("up"))
        .map(|(r, _)| *r)
        .expect("an `up` series");
    assert!(samples.iter().any(|&(r, v)| r == up && v == 1.0));

    // The WAL is snappy-compressed (the flag bit is set on its fragments).
    let seg0 = fs::read(wal.join("00000000")).expect("segment 0");
    assert_eq!(seg0[0] & 0x08, 0x08, "first fragment is snappy-compressed");

    // Strata opens Prometheus's WAL without repairing anything and appends to it.
    let before = WalReader::open(&wal).expect("reader").count();
    let mut w = Wal::open(&wal, DEFAULT_SEGMENT_SIZE).expect("open Prometheus's WAL");
    assert!(w.repair_report().is_none(), "{:?}", w.repair_report());
    w.log(&[b"\x02"]).expect("append");
    w.close().expect("close");
    let after: Vec<Vec<u8>> = WalReader::open(&wal)
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read back");
    assert_eq!(after.len(), before + 1);
}

const PROMTOOL: &str = "/usr/bin/promtool";

/// The other direction: Prometheus's own `promtool tsdb dump` replays a WAL written by
/// Strata (series, compressed and multi-page samples records, a checkpoint) into its head.
#[test]
fn promtool_replays_a_wal_written_by_strata() {
    use strata_tsdb::wal::{checkpoint, encode_samples, encode_series, RefSample, RefSeries};
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: this test needs Prometheus installed (Debian package `prometheus`)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wal = tmp.path().join("wal");
    let mut w = Wal::open(&wal, 4 * 32 * 1024).expect("open");
    let series: Vec<RefSeries> = (1..=2000u64)
        .map(|r| RefSeries {
            r,
            labels: strata_tsdb::Labels::from_pairs(&[
                ("__name__", "strata_test"),
                ("id", r.to_string().as_str()),
            ]),
        })
        .collect();
    let mut buf = Vec::new();
    encode_series(&series, &mut buf);
    w.log(&[&buf]).expect("log series");
    let t0 = 1_700_000_000_000i64;
    for i in 0..20i64 {
        let samples: Vec<RefSample> = (1..=2000u64)
            .map(|r| RefSample {
                r,
                t: t0 + i * 15_000,
                v: (r as f64) * 1000.0 + i as f64,
            })
            .collect();
        buf.clear();
        encode_samples(&samples, &mut buf);
        if i == 10 {
            // Everything so far goes into a checkpoint.
            let seg = w.next_segment().expect("cut");
            checkpoint(&wal, 0, seg - 1, |_| true, i64::MIN).expect("checkpoint");
            w.truncate(seg).expect("truncate");
            w.set_compression(false);
        }
        w.log(&[&buf]).expect("log samples");
    }
    w.close().expect("close");

    let out = Command::new(PROMTOOL)
        .arg("tsdb")
        .arg("dump")
        .arg(tmp.path())
        .output()
        .expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("strata_test"))
        .collect();
    assert_eq!(
        lines.len(),
        2000 * 20,
        "promtool dumped {} samples",
        lines.len()
    );
    let probe = format!("{} {}", 42_019, t0 + 19 * 15_000);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("id=\"42\"") && l.ends_with(&probe)),
        "no line for id=42 ending with {probe:?}; first lines: {:?}",
        &lines[..3]
    );
}
