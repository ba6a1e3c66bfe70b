//! The bucket compactor under faults, with real processes: `strata compact` killed with
//! SIGKILL at several points of a pass leaves a bucket `strata bucket verify` accepts, and the
//! next pass completes with every sample kept exactly once; two compactors running at once on
//! one bucket corrupt nothing (the next pass removes their duplicate work); and a second
//! compactor cannot take a scratch directory in use.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bucket::TestBucket;
use common::{run, strata, Proc};
use strata_compactor::bucket;
use strata_compactor::compact::sync;
use strata_tsdb::block::Block;
use strata_tsdb::labels::{Labels, Matcher};
use strata_tsdb::storage::Querier;

const H: i64 = 3_600_000;
/// A multiple of 2 days: the 2-day compaction range starts here.
const BASE: i64 = 400 * 48 * H;
const LIMIT: Duration = Duration::from_secs(120);

type Data = BTreeMap<String, Vec<(i64, f64)>>;

/// Three clusters, each seven 8-hour blocks of 40 series sampled every 30 s: a pass compacts
/// six of each into a 2-day block and downsamples that to 5m. Returns what was written.
fn bucket_with_work(root: &Path) -> (TestBucket, Data) {
    let tb = TestBucket::new(root);
    let mut want = Data::new();
    for cluster in ["a", "b", "c"] {
        for k in 0..7 {
            let (mint, maxt) = (BASE + k * 8 * H, BASE + (k + 1) * 8 * H);
            let series: Vec<(Labels, Vec<(i64, f64)>)> = (0..40)
                .map(|i| {
                    let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
                    let s: Vec<(i64, f64)> = (0..)
                        .map(|n| mint + 1_000 + n * 30_000)
                        .take_while(|&t| t < maxt)
                        .map(|t| (t, ((t / 30_000) % 1009 + i) as f64))
                        .collect();
                    want.entry(format!("{cluster}/{l}"))
                        .or_default()
                        .extend(s.iter().copied());
                    (l, s)
                })
                .collect();
            tb.add_block(mint, maxt, series, &[("cluster", cluster)]);
        }
    }
    (tb, want)
}

/// Every sample of the live raw blocks, by `cluster/series`; fails on a sample held twice.
fn live_raw_data(tb: &TestBucket, dl: &Path) -> Data {
    let st = tb.rt.block_on(sync(&tb.bucket)).expect("sync");
    let mut out = Data::new();
    for m in st.live_blocks() {
        let th = m.thanos.as_ref().expect("thanos");
        if th.downsample.resolution != 0 {
            continue;
        }
        let cluster = th.labels.get("cluster").cloned().unwrap_or_default();
        let dir = tb
            .rt
            .block_on(bucket::download_block(&tb.bucket, &m.ulid, dl))
            .expect("download");
        let b = Block::open(&dir).expect("open block");
        let q = b.querier(i64::MIN, i64::MAX);
        for s in q.select(true, None, &[Matcher::equal("__name__", "m")]) {
            let s = s.expect("series");
            let mut it = s.iterator();
            let v = out.entry(format!("{cluster}/{}", s.labels())).or_default();
            while it.next() {
                v.push(it.at());
            }
        }
    }
    for (k, v) in out.iter_mut() {
        v.sort_by_key(|p| p.0);
        let n = v.len();
        v.dedup_by_key(|p| p.0);
        assert_eq!(n, v.len(), "{k}: samples held twice by live blocks");
    }
    out
}

fn compact_cmd(tb: &TestBucket, scratch: &Path) -> Command {
    let mut c = Command::new(strata());
    c.arg("compact")
        .arg("--data-dir")
        .arg(scratch)
        .arg("--objstore.config-file")
        .arg(&tb.config);
    c
}

/// `strata bucket verify` passes (no broken block, no overlap).
fn assert_verifies(tb: &TestBucket, scratch: &Path, when: &str) {
    let out = run(
        Command::new(strata())
            .args(["bucket", "verify", "--data-dir"])
            .arg(scratch)
            .arg("--objstore.config-file")
            .arg(&tb.config),
        LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !text.contains("BROKEN") && !text.contains("OVERLAP"),
        "verify {when}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs passes until one does nothing (bounded); returns how many ran.
fn compact_until_quiet(tb: &TestBucket, scratch: &Path) -> usize {
    for n in 1..=6 {
        let out = run(&mut compact_cmd(tb, scratch), LIMIT);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "pass {n}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text
            .contains("compactions: 0 (0 blocks compacted), downsampled: 0, marked for deletion: 0")
        {
            return n;
        }
    }
    panic!("the compactor never settled");
}

fn resolutions(tb: &TestBucket) -> Vec<i64> {
    let st = tb.rt.block_on(sync(&tb.bucket)).expect("sync");
    let mut r: Vec<i64> = st
        .live_blocks()
        .iter()
        .map(|m| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution))
        .collect();
    r.sort();
    r.dedup();
    r
}

/// What the bucket directory holds: block directories, and deletion marks.
fn bucket_counts(dir: &Path) -> (usize, usize) {
    let (mut blocks, mut marks) = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        blocks += 1;
        if e.path().join("deletion-mark.json").exists() {
            marks += 1;
        }
    }
    (blocks, marks)
}

#[test]
fn sigkill_mid_pass_leaves_the_bucket_consistent() {
    // Kill points, by what the bucket shows: 21 blocks and no marks at the start; a pass
    // uploads 3 compacted blocks, marks their 18 sources, then uploads 3 downsampled blocks.
    type Reached = fn((usize, usize)) -> bool;
    let points: [(&str, Reached); 5] = [
        ("first upload started", |(b, _)| b > 21),
        ("first sources being marked", |(_, m)| m >= 1),
        ("second group's sources marked", |(_, m)| m >= 7),
        ("all compactions done", |(_, m)| m >= 18),
        ("downsampling uploading", |(b, _)| b > 24),
    ];
    let mut killed = 0;
    for (what, reached) in points {
        let tmp = tempfile::tempdir().expect("tmp");
        let (tb, want) = bucket_with_work(tmp.path());
        let scratch = tmp.path().join("scratch");
        let vscratch = tmp.path().join("verify");
        let mut p = Proc::spawn(
            "strata compact",
            &mut compact_cmd(&tb, &scratch),
            tmp.path().join("compact.log"),
        );
        let start = Instant::now();
        while !reached(bucket_counts(&tb.dir)) && p.try_status().is_none() {
            assert!(start.elapsed() < LIMIT, "{what}: never reached");
            std::thread::sleep(Duration::from_micros(500));
        }
        if p.try_status().is_none() {
            killed += 1;
        }
        p.kill();
        assert_verifies(&tb, &vscratch, &format!("after SIGKILL at {what}"));
        compact_until_quiet(&tb, &scratch);
        assert_verifies(
            &tb,
            &vscratch,
            &format!("after the pass that followed SIGKILL at {what}"),
        );
        assert_eq!(resolutions(&tb), vec![0, 300_000], "SIGKILL at {what}");
        let dl = tmp.path().join("dl");
        std::fs::create_dir_all(&dl).expect("mkdir");
        assert!(
            live_raw_data(&tb, &dl) == want,
            "data differs after SIGKILL at {what}"
        );
    }
    assert!(killed >= 4, "only {killed} of 5 kills landed mid-pass");
}

#[test]
fn two_compactors_at_once_corrupt_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (tb, want) = bucket_with_work(tmp.path());
    let mut a = Proc::spawn(
        "strata compact A",
        &mut compact_cmd(&tb, &tmp.path().join("scratch-a")),
        tmp.path().join("a.log"),
    );
    let mut b = Proc::spawn(
        "strata compact B",
        &mut compact_cmd(&tb, &tmp.path().join("scratch-b")),
        tmp.path().join("b.log"),
    );
    for (name, p) in [("A", &mut a), ("B", &mut b)] {
        let st = p
            .wait_exit(LIMIT)
            .unwrap_or_else(|| panic!("compactor {name} hangs"));
        assert!(st.success(), "compactor {name} failed: {}", p.log_text());
    }
    // Both may have done the same work: twin blocks, each holding all the data.
    compact_until_quiet(&tb, &tmp.path().join("scratch-a"));
    assert_verifies(&tb, &tmp.path().join("verify"), "after two compactors");
    assert_eq!(resolutions(&tb), vec![0, 300_000]);
    let dl = tmp.path().join("dl");
    std::fs::create_dir_all(&dl).expect("mkdir");
    assert!(
        live_raw_data(&tb, &dl) == want,
        "data differs after two compactors"
    );

    // A scratch directory in use is refused.
    let held = tmp.path().join("held");
    std::fs::create_dir_all(&held).expect("mkdir");
    let _lock = strata_tsdb::db::lock_dir(&held).expect("lock");
    let out = run(&mut compact_cmd(&tb, &held), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("in use by another strata compact"),
        "{err}"
    );
}
