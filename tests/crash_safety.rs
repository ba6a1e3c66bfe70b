//! Crash safety: a child process (`strata tsdb append-test`) appends samples whose value is
//! their timestamp and prints `committed <ts>` after every successful commit; the test kills it
//! with SIGKILL at random moments (while it replays and repairs on open, while it appends, while
//! it cuts WAL segments and head chunk files, and — in the second test — while it writes blocks,
//! checkpoints and truncates), round after round in the same data directory. After every kill the
//! directory is reopened (alternately read-only and writable) and must hold every committed
//! sample, each with its own value, the same samples for every series (a commit is atomic), and
//! nothing beyond the one commit that may have been in flight.
//!
//! Every wait is bounded; the child is killed on drop even when an assertion fails.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{strata, Rng};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::Matcher;
use strata_tsdb::storage::{Queryable, SampleIterator};

const START: i64 = 1_700_000_000_000;
const STEP: i64 = 1000;
const SERIES: usize = 12;
const WAL_SEGMENT: usize = 32 * 1024;

/// Kills the child on drop unless it was already reaped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// SIGKILLs the child (if still running) and reaps it.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one reopen of the directory finds: per series, the samples' timestamps (checked
/// contiguous from `START` and each value equal to its timestamp); returns the newest timestamp
/// common to all series, or `None` when the directory holds no sample yet.
fn verify(dir: &Path, read_only: bool, block_range: i64) -> Option<i64> {
    let db = Db::open(
        dir,
        DbOptions {
            read_only,
            compaction_interval: None,
            retention_time: 0,
            block_range,
            wal_segment_size: WAL_SEGMENT,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("reopen {} (read_only={read_only}): {e}", dir.display()));
    assert!(
        db.broken_blocks().is_empty(),
        "broken blocks after a crash: {:?}",
        db.broken_blocks()
    );
    let q = db.querier(i64::MIN, i64::MAX).expect("querier");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for s in q.select(true, None, &[Matcher::equal("__name__", "crash_test")]) {
        let s = s.expect("series");
        let name = s.labels().to_string();
        let mut it = s.iterator();
        let mut expect = START;
        while it.next() {
            let (t, v) = it.at();
            assert_eq!(
                t, expect,
                "{name}: gap or duplicate: expected ts {expect}, got {t}"
            );
            assert_eq!(v, t as f64, "{name}: torn sample at {t}: value {v}");
            expect += STEP;
        }
        assert!(it.err().is_none(), "{name}: iterator error {:?}", it.err());
        last.insert(name, expect - STEP);
    }
    if last.is_empty() {
        return None;
    }
    assert_eq!(
        last.len(),
        SERIES,
        "series missing after reopen (a commit creates all of them): {last:?}"
    );
    let newest: Vec<i64> = last.values().copied().collect();
    assert!(
        newest.iter().all(|&t| t == newest[0]),
        "series end at different timestamps, a commit was torn: {last:?}"
    );
    db.close().expect("close");
    Some(newest[0])
}

/// Serialises the tests of this file. They must not overlap: a child spawned by one test
/// inherits (between fork and exec) the lock file descriptor of a `Db` the other test has
/// open in this process, and holds the lock for that moment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `rounds` rounds of append + SIGKILL in one directory.
fn crash_rounds(seed: u64, rounds: usize, block_range: i64, compact_every: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut rng = Rng::new(seed);
    // Newest timestamp ever reported committed, and newest present after the last reopen.
    let mut committed: Option<i64> = None;
    let mut present: Option<i64> = None;
    let mut kills = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let start_ts = present.map_or(START, |t| t + STEP);
        let per_commit = 1 + rng.below(4) as i64;
        let max_commits = 1000 + rng.below(20_000);
        let stderr_path = tmp.path().join(format!("stderr-{round}.txt"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(strata());
        cmd.args([
            "--log.level",
            "warn",
            "tsdb",
            "append-test",
            "--storage.tsdb.path",
        ])
        .arg(&dir)
        .args(["--series", &SERIES.to_string()])
        .args(["--start-ts", &start_ts.to_string()])
        .args(["--step", &STEP.to_string()])
        .args(["--per-commit", &per_commit.to_string()])
        .args(["--commits", &max_commits.to_string()])
        .args(["--wal-segment-size", &WAL_SEGMENT.to_string()])
        .args(["--block-range", &block_range.to_string()])
        .args(["--compact-every", &compact_every.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
        let mut child = ChildGuard(Some(cmd.spawn().expect("spawn strata append-test")));
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines: Vec<String> = Vec::new();
        if rng.below(5) == 0 {
            // Kill early: possibly while the child replays or repairs what the last one left.
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) => {
                        let opened = l == "opened";
                        lines.push(l);
                        if opened {
                            break;
                        }
                    }
                    Err(e) => {
                        let status = child.0.as_mut().map(|c| c.wait());
                        panic!(
                            "round {round}: child did not open ({e}, exit {status:?}); stderr:\n{}",
                            std::fs::read_to_string(&stderr_path).unwrap_or_default()
                        )
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(80)));
        }
        let exited = child.0.as_mut().and_then(|c| c.try_wait().ok()).flatten();
        child.kill();
        if exited.is_none() {
            kills += 1;
        }
        // Everything the child printed before it died.
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());
        if let Some(st) = exited {
            assert!(
                st.success(),
                "round {round}: child failed ({st}); stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        let printed: Option<i64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("committed "))
            .map(|t| t.parse::<i64>().expect("committed timestamp"))
            .max();
        if let Some(p) = printed {
            committed = Some(committed.map_or(p, |c| c.max(p)));
        }
        let read_only = round % 2 == 0;
        let found = verify(&dir, read_only, block_range);
        // Nothing committed may be lost.
        if let Some(c) = committed {
            let f = found
                .unwrap_or_else(|| panic!("round {round}: committed up to {c}, found nothing"));
            assert!(
                f >= c,
                "round {round}: committed up to {c} but only {f} survived"
            );
        }
        // Nothing beyond the one commit that may have been in flight.
        let attempted_max = printed.unwrap_or(start_ts - STEP) + per_commit * STEP;
        if let Some(f) = found {
            assert!(
                f <= attempted_max,
                "round {round}: found samples up to {f}, beyond anything attempted ({attempted_max})"
            );
        }
        // The read-only open must not have lost what the child wrote before: a writable open
        // afterwards (next round's child) must see at least as much.
        if let (Some(p), Some(f)) = (present, found) {
            assert!(
                f >= p,
                "round {round}: {f} < {p}: samples disappeared between reopens"
            );
        }
        present = found.or(present);
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "crash rounds take too long"
        );
    }
    let mut repaired = 0;
    for round in 0..rounds {
        let e = std::fs::read_to_string(tmp.path().join(format!("stderr-{round}.txt")))
            .unwrap_or_default();
        if e.contains("WARN") || e.contains("ERROR") {
            repaired += 1;
        }
    }
    let count = |sub: &str| std::fs::read_dir(dir.join(sub)).map_or(0, |d| d.count());
    let blocks = std::fs::read_dir(&dir)
        .expect("read dir")
        .flatten()
        .filter(|e| strata_tsdb::db::is_block_dir_name(&e.file_name().to_string_lossy()))
        .count();
    eprintln!(
        "{rounds} rounds, {kills} kills, {repaired} children logged a warning (repairs), \
         {} WAL files, {} head chunk files, {blocks} blocks",
        count("wal"),
        count("chunks_head")
    );
    assert!(
        kills >= rounds / 2,
        "only {kills} of {rounds} rounds killed the child mid-run"
    );
    let total = present.map_or(0, |p| (p - START) / STEP + 1);
    assert!(
        total > 100,
        "too little data appended over all rounds: {total} timestamps"
    );
}

/// WAL segments (32 KiB, so they roll over often) and head chunk files, no compaction.
#[test]
fn sigkill_during_appends_loses_no_committed_sample() {
    crash_rounds(0x5eed_0001, 24, 2 * 3_600_000, 0);
}

/// The same with a 1-minute block range and `Db::compact` every few commits: kills also land
/// while blocks are written, the WAL is checkpointed and truncated, and head chunk files are
/// deleted.
#[test]
fn sigkill_during_compaction_loses_no_committed_sample() {
    crash_rounds(0x5eed_0002, 20, 60_000, 25);
}
