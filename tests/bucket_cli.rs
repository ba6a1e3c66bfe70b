//! `strata compact` and `strata bucket ...` against a FILESYSTEM bucket: inspect and verify
//! report the uploaded blocks, compaction turns four 2h blocks into an 8h block that
//! `promtool tsdb analyze` accepts once downloaded, and verify names a damaged block and
//! exits 1. Marks validate block IDs.

mod common;

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use common::bucket::TestBucket;
use common::{require_tool, run, run_ok, strata};
use strata_compactor::bucket;
use strata_tsdb::labels::Labels;

const H: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000; // a multiple of 8h
const LIMIT: Duration = Duration::from_secs(60);

/// Three series `up{i}`, one sample a minute.
fn series(mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    (0..3)
        .map(|i| {
            let l = Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]);
            let s: Vec<(i64, f64)> = (0..)
                .map(|k| mint + k * 60_000)
                .take_while(|&t| t < maxt)
                .map(|t| (t, (t / 60_000 + i) as f64))
                .collect();
            (l, s)
        })
        .collect()
}

fn strata_cmd(cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(strata());
    c.args(args).arg("--objstore.config-file").arg(cfg);
    c
}

#[test]
fn bucket_tools_and_compaction() {
    let promtool = require_tool("promtool");
    let tmp = tempfile::tempdir().expect("tmp");
    let tb = TestBucket::new(tmp.path());
    let (bdir, cfg, rt, bkt) = (&tb.dir, &tb.config, &tb.rt, &tb.bucket);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (mint, maxt) = (BASE + i * 2 * H, BASE + (i + 1) * 2 * H);
        let m = tb.add_block(mint, maxt, series(mint, maxt), &[("cluster", "eu")]);
        ids.push(m.ulid);
    }

    let out = String::from_utf8(run_ok(&mut strata_cmd(cfg, &["bucket", "inspect"]), LIMIT))
        .expect("utf8");
    assert!(out.starts_with("ULID"), "{out}");
    for id in &ids {
        assert!(out.contains(&id.to_string()), "{out}");
    }
    assert!(out.contains("cluster=eu") && out.contains("2h"), "{out}");

    let out = String::from_utf8(run_ok(&mut strata_cmd(cfg, &["bucket", "verify"]), LIMIT))
        .expect("utf8");
    assert!(out.contains("ok: 5 blocks checked"), "{out}");

    let data = tmp.path().join("scratch");
    let out = String::from_utf8(run_ok(
        &mut strata_cmd(
            cfg,
            &[
                "compact",
                "--data-dir",
                data.to_str().expect("path"),
                "--downsampling.disable",
            ],
        ),
        LIMIT,
    ))
    .expect("utf8");
    assert!(out.contains("compactions: 1 (4 blocks compacted)"), "{out}");
    assert!(out.contains("marked for deletion: 4"), "{out}");

    // The new block, downloaded, is a valid Prometheus block.
    let listing = rt.block_on(bucket::list_metas(bkt)).expect("list");
    let big = listing
        .blocks
        .iter()
        .find(|m| m.compaction.level == 2)
        .expect("compacted block");
    assert_eq!(big.max_time - big.min_time, 8 * H);
    assert_eq!(big.stats.num_samples, 3 * 480);
    let dl = tmp.path().join("download");
    std::fs::create_dir_all(&dl).expect("mkdir");
    rt.block_on(bucket::download_block(bkt, &big.ulid, &dl))
        .expect("download");
    let a = run(
        Command::new(&promtool)
            .args(["tsdb", "analyze"])
            .arg(&dl)
            .arg(big.ulid.to_string()),
        LIMIT,
    );
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(
        a.status.success(),
        "promtool: {text} {}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(text.contains(&big.ulid.to_string()), "{text}");

    // Marks: IDs are validated; a no-compact mark is written.
    let bad = run(
        &mut strata_cmd(
            cfg,
            &[
                "bucket",
                "mark",
                "--id",
                "../etc",
                "--marker",
                "no-compact-mark.json",
            ],
        ),
        LIMIT,
    );
    assert!(!bad.status.success());
    let last = ids[4].to_string();
    run_ok(
        &mut strata_cmd(
            cfg,
            &[
                "bucket",
                "mark",
                "--id",
                &last,
                "--marker",
                "no-compact-mark.json",
                "--details",
                "test",
            ],
        ),
        LIMIT,
    );
    assert!(bdir.join(&last).join("no-compact-mark.json").is_file());

    // Damage a chunk of the remaining raw block: verify names it and fails.
    let seg = bdir.join(&last).join("chunks/000001");
    let mut b = std::fs::read(&seg).expect("read");
    let n = b.len();
    b[n - 20] ^= 0x5a;
    std::fs::write(&seg, b).expect("write");
    let v = run(&mut strata_cmd(cfg, &["bucket", "verify"]), LIMIT);
    let out = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("BROKEN {last}")), "{out}");
    assert!(out.contains(&format!("ok {}", big.ulid)), "{out}");
}
