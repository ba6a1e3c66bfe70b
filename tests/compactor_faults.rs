//! The compactor process under faults, on a FILESYSTEM bucket:
//!
//! * `kill -9` of `strata compact` at several points of a pass: after each kill the bucket
//!   verifies (no BROKEN block, no overlap) and the blocks a querier would use (live raw
//!   blocks, redundant ones excepted) still hold every sample exactly once; the next pass
//!   completes, removes what the killed passes left behind (interrupted uploads and
//!   deletions) and keeps every sample.
//! * two `strata compact` processes at once on the same bucket, then a third pass: the same
//!   blocks as one compactor's run, nothing lost or duplicated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run, strata};
use strata_compactor::bucket::{self, Bucket};
use strata_compactor::{compact, planner, verify};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::block::{write_block, SeriesToWrite};
use strata_tsdb::compact::encode_chunks;
use strata_tsdb::labels::Labels;
use ulid::Ulid;

const H: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000; // a multiple of 2d
const LIMIT: Duration = Duration::from_secs(60);
const SERIES: usize = 40;
const STEP: i64 = 30_000;

fn block(dir: &Path, mint: i64, maxt: i64) -> BlockMeta {
    let mut symbols: BTreeSet<Arc<str>> = BTreeSet::from([Arc::from("")]);
    let mut series = Vec::new();
    for i in 0..SERIES {
        let l = Labels::from_pairs(&[("__name__", "up"), ("i", &format!("{i:03}"))]);
        for x in l.iter() {
            symbols.insert(x.name.clone());
            symbols.insert(x.value.clone());
        }
        let s: Vec<(i64, f64)> = (0..)
            .map(|k| mint + k * STEP)
            .take_while(|&t| t < maxt)
            .map(|t| (t, (t / STEP) as f64 + i as f64))
            .collect();
        series.push((l, s));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut it = series.into_iter().map(|(labels, s)| {
        Ok(SeriesToWrite {
            labels,
            chunks: encode_chunks(&s)?,
        })
    });
    let mut meta = write_block(
        dir,
        BlockMeta::new(Ulid::new(), mint, maxt),
        &symbols,
        &mut it,
    )
    .expect("write")
    .expect("block");
    meta.thanos = Some(ThanosMeta {
        labels: BTreeMap::from([("cluster".to_string(), "eu".to_string())]),
        source: "sidecar".into(),
        ..Default::default()
    });
    meta
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A FILESYSTEM bucket in `dir/bucket` with `n` 2h blocks; returns its config file, the bucket
/// and the number of samples uploaded.
fn make_bucket(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    n: i64,
) -> (std::path::PathBuf, Bucket, u64) {
    let bdir = dir.join("bucket");
    std::fs::create_dir_all(dir).expect("mkdir");
    let cfg = dir.join("objstore.yml");
    std::fs::write(
        &cfg,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bdir.display()
        ),
    )
    .expect("config");
    let bkt = bucket::local_bucket(&bdir).expect("bucket");
    let local = dir.join("local");
    std::fs::create_dir_all(&local).expect("mkdir");
    let mut samples = 0;
    for i in 0..n {
        let m = block(&local, BASE + i * 2 * H, BASE + (i + 1) * 2 * H);
        samples += m.stats.num_samples;
        rt.block_on(bucket::upload_block(
            &bkt,
            &local.join(m.ulid.to_string()),
            &m,
        ))
        .expect("upload");
    }
    let _ = std::fs::remove_dir_all(&local);
    (cfg, bkt, samples)
}

fn compact_cmd(cfg: &Path, data: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(strata());
    c.arg("compact")
        .arg("--objstore.config-file")
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .args(extra);
    c
}

/// `strata bucket verify` exits 0 and reports nothing broken or overlapping.
fn assert_verify_ok(cfg: &Path, scratch: &Path, what: &str) {
    let out = run(
        Command::new(strata())
            .args(["bucket", "verify", "--objstore.config-file"])
            .arg(cfg)
            .arg("--data-dir")
            .arg(scratch),
        LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("BROKEN") && !text.contains("OVERLAP"),
        "{what}: verify failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The raw blocks a querier uses (live, not redundant), downloaded and counted sample by
/// sample; their time ranges must not overlap.
fn effective_samples(
    rt: &tokio::runtime::Runtime,
    b: &Bucket,
    scratch: &Path,
) -> (u64, Vec<(i64, i64)>) {
    let st = rt.block_on(compact::sync(b)).expect("sync");
    let live: Vec<BlockMeta> = st
        .live_blocks()
        .into_iter()
        .filter(|m| planner::resolution(m) == 0)
        .collect();
    let red = planner::redundant_blocks(&live);
    let mut ranges = Vec::new();
    let mut total = 0;
    for m in live.iter().filter(|m| !red.contains(&m.ulid)) {
        let d = rt
            .block_on(bucket::download_block(b, &m.ulid, scratch))
            .expect("download");
        let c = verify::verify_block(&d).expect("verify");
        let _ = std::fs::remove_dir_all(&d);
        total += c.samples;
        ranges.push((m.min_time, m.max_time));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "effective blocks overlap: {ranges:?}");
    }
    (total, ranges)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Runs `strata compact` and kills it with SIGKILL after `after`; returns whether it was
/// still running then.
fn compact_and_kill(cfg: &Path, data: &Path, after: Duration) -> bool {
    let mut child = compact_cmd(cfg, data, &["--delete-delay", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata compact");
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().expect("wait").is_none();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    running
}

#[test]
fn kill_9_mid_pass_leaves_a_consistent_bucket() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = rt();
    // Four days of 2h blocks: 2h→8h→2d compactions, 5m downsampling, deletion of the
    // compacted blocks (delete delay 0).
    let pristine = tmp.path().join("pristine");
    let (_, _, total) = make_bucket(&rt, &pristine, 49);
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");

    // How long an uninterrupted pass takes, to spread the kills over it.
    let reference = tmp.path().join("reference");
    copy_dir(&pristine.join("bucket"), &reference.join("bucket"));
    let rcfg = reference.join("objstore.yml");
    std::fs::write(
        &rcfg,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            reference.join("bucket").display()
        ),
    )
    .expect("config");
    let start = Instant::now();
    let out = run(
        &mut compact_cmd(&rcfg, &reference.join("c"), &["--delete-delay", "0s"]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pass = start.elapsed();
    let rbkt = bucket::local_bucket(&reference.join("bucket")).expect("bucket");
    let want = shape(&rt, &rbkt);

    let mut killed = 0;
    for (k, frac) in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("run{k}"));
        copy_dir(&pristine.join("bucket"), &dir.join("bucket"));
        let cfg = dir.join("objstore.yml");
        std::fs::write(
            &cfg,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                dir.join("bucket").display()
            ),
        )
        .expect("config");
        let bkt = bucket::local_bucket(&dir.join("bucket")).expect("bucket");
        let data = dir.join("compactor");
        // Two kills at the same point, the second on top of what the first left.
        for round in 0..2 {
            let at = pass.mul_f64(frac);
            killed += usize::from(compact_and_kill(&cfg, &data, at));
            let what = format!("after kill -9 at {at:?} (round {round}) of a {pass:?} pass");
            assert_verify_ok(&cfg, &scratch, &what);
            let (n, ranges) = effective_samples(&rt, &bkt, &scratch);
            assert_eq!(n, total, "{what}: {ranges:?}");
        }
        // The next pass completes and cleans up after the killed ones.
        let out = run(
            &mut compact_cmd(&cfg, &data, &["--delete-delay", "0s"]),
            LIMIT,
        );
        assert!(
            out.status.success(),
            "compact after the kills: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let what = format!("after the kills at {frac} and a complete pass");
        assert_verify_ok(&cfg, &scratch, &what);
        let (n, ranges) = effective_samples(&rt, &bkt, &scratch);
        assert_eq!(n, total, "{what}");
        // Fully compacted: two 2d blocks and the newest 2h block (left alone).
        let spans: Vec<i64> = ranges.iter().map(|(a, b)| (b - a) / H).collect();
        assert_eq!(spans, vec![48, 48, 2], "{what}: {ranges:?}");
        assert_eq!(shape(&rt, &bkt), want, "{what}");
        let l = rt.block_on(bucket::list_metas(&bkt)).expect("list");
        assert!(l.partial.is_empty(), "{what}: left behind {:?}", l.partial);
        assert!(l.corrupt.is_empty(), "{what}");
        // Marked blocks were deleted (delete delay 0): only live blocks remain.
        let st = rt.block_on(compact::sync(&bkt)).expect("sync");
        assert!(st.deletion_marks.is_empty(), "{what}");
        assert!(compact::read_pending(&data).expect("pending").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        killed >= 8,
        "only {killed} of 14 passes were still running when killed"
    );
}

fn shape(rt: &tokio::runtime::Runtime, b: &Bucket) -> Vec<(i64, i64, i64, u64)> {
    let st = rt.block_on(compact::sync(b)).expect("sync");
    let mut v: Vec<(i64, i64, i64, u64)> = st
        .live_blocks()
        .iter()
        .map(|m| {
            (
                m.min_time - BASE,
                m.max_time - BASE,
                planner::resolution(m),
                m.stats.num_samples,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn two_compactors_at_once_then_a_third_pass() {
    let rt = rt();
    // Reference: one compactor.
    let one = tempfile::tempdir().expect("tmp");
    let (cfg1, b1, total) = make_bucket(&rt, one.path(), 25);
    let out = run(&mut compact_cmd(&cfg1, &one.path().join("c"), &[]), LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = shape(&rt, &b1);

    let tmp = tempfile::tempdir().expect("tmp");
    let (cfg, bkt, total2) = make_bucket(&rt, tmp.path(), 25);
    assert_eq!(total, total2);
    let spawn = |name: &str| {
        compact_cmd(&cfg, &tmp.path().join(name), &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata compact")
    };
    let a = spawn("a");
    let b = spawn("b");
    let start = Instant::now();
    let mut outs = Vec::new();
    for mut c in [a, b] {
        while c.try_wait().expect("wait").is_none() {
            if start.elapsed() > LIMIT {
                let _ = c.kill();
                panic!("a concurrent compactor did not finish within {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        outs.push(c.wait_with_output().expect("output"));
    }
    for o in &outs {
        assert!(
            o.status.success(),
            "concurrent compactor failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    assert_verify_ok(&cfg, &scratch, "after two compactors");
    assert_eq!(effective_samples(&rt, &bkt, &scratch).0, total);

    let out = run(&mut compact_cmd(&cfg, &tmp.path().join("c"), &[]), LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_verify_ok(&cfg, &scratch, "after the third pass");
    assert_eq!(effective_samples(&rt, &bkt, &scratch).0, total);
    assert_eq!(shape(&rt, &bkt), want);
}
