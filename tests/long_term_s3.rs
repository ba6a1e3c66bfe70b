//! Long-term storage end to end against a real S3 server (moto, on loopback): `strata serve`
//! with `--objstore.config` pointing at moto and 2-minute blocks receives two hours of samples
//! over remote-write (`strata bench remote-write`, in time order); the shipper uploads every
//! persisted block. Every bucket block must have a `meta.json` with the `thanos` section (labels,
//! source, files with sizes that match the objects), `promtool tsdb analyze` must accept a block
//! downloaded from the bucket, and with a 30-minute local retention the local copies of old
//! shipped blocks must be gone while the bucket keeps them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    free_port, get_json, require_tool, run, run_ok, start_moto, start_strata_shipping, strata,
};
use strata_compactor::bucket::{self, Bucket};
use strata_tsdb::block::meta::BlockMeta;

const BLOCK: i64 = 2 * 60_000;
const RETENTION: i64 = 30 * 60_000;

fn local_blocks(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read data dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| strata_tsdb::db::is_block_dir_name(n))
        .collect();
    v.sort();
    v
}

fn bucket_metas(rt: &tokio::runtime::Runtime, b: &Bucket) -> (Vec<BlockMeta>, usize) {
    let l = rt.block_on(bucket::list_metas(b)).expect("list bucket");
    assert!(l.corrupt.is_empty(), "corrupt blocks: {:?}", l.corrupt);
    (l.blocks, l.partial.len())
}

#[test]
fn blocks_are_shipped_to_s3_and_local_retention_waits_for_them() {
    let promtool = require_tool("promtool");
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let moto = start_moto("strata-blocks", tmp.path().join("moto.log"));
    let objstore = moto.objstore_yaml();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  external_labels:\n    cluster: test-eu\n    replica: a\n",
    )
    .expect("write config");
    let data = tmp.path().join("data");
    let port = free_port();
    let mut server = start_strata_shipping(
        &data,
        port,
        tmp.path().join("serve.log"),
        &cfg,
        &objstore,
        "1s",
        &["--store.sync-interval".as_ref(), "2s".as_ref()],
    );

    // Two hours of 20 series every 15 s, pushed in time order as fast as Strata takes them.
    let out = run(
        Command::new(strata()).args([
            "bench",
            "remote-write",
            "--url",
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            "--series",
            "20",
            "--batch",
            "20",
            "--concurrency",
            "1",
            "--duration",
            "40s",
            "--scrape-interval",
            "15s",
            "--start",
            "2h",
        ]),
        Duration::from_secs(60),
    );
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && summary.contains("errors=0"),
        "bench failed: {summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (bucket, desc) = strata_compactor::objstore::from_yaml(&objstore).expect("objstore");
    assert_eq!(desc.kind, "S3");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Wait (bounded) until the persisted blocks are in the bucket and retention has run on them:
    // ~60 blocks of 2 min; locally only the last 30 min (+ the newest block) may stay.
    let deadline = Instant::now() + Duration::from_secs(70);
    let (metas, local) = loop {
        let (metas, partial) = bucket_metas(&rt, &bucket);
        let local = local_blocks(&data);
        if metas.len() >= 50 && partial == 0 && local.len() <= (RETENTION / BLOCK) as usize + 1 {
            break (metas, local);
        }
        if Instant::now() > deadline {
            panic!(
                "bucket has {} blocks ({partial} partial), {} local blocks after {:?}:\n{}",
                metas.len(),
                local.len(),
                t0.elapsed(),
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };

    // Every bucket block: Thanos section, level 1, 2-minute range, and files that match the
    // objects.
    let labels: BTreeMap<String, String> = [
        ("cluster".to_string(), "test-eu".to_string()),
        ("replica".to_string(), "a".to_string()),
    ]
    .into();
    let mut sorted = metas.clone();
    sorted.sort_by_key(|m| m.min_time);
    for w in sorted.windows(2) {
        assert!(
            w[0].max_time <= w[1].min_time,
            "overlapping blocks {} and {}",
            w[0].ulid,
            w[1].ulid
        );
    }
    for m in &metas {
        let t = m
            .thanos
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no thanos section", m.ulid));
        assert_eq!(t.labels, labels, "{}", m.ulid);
        assert_eq!(t.source, "strata");
        assert_eq!(t.downsample.resolution, 0);
        assert_eq!(m.compaction.level, 1);
        assert!(
            m.max_time - m.min_time <= BLOCK,
            "{}: block longer than 2m",
            m.ulid
        );
        assert_eq!(m.stats.num_series, 20, "{}", m.ulid);
        let objects: BTreeMap<String, u64> = rt
            .block_on(bucket::block_objects(&bucket, &m.ulid))
            .expect("objects")
            .into_iter()
            .map(|(k, n)| {
                let rel = k.as_ref().split_once('/').expect("key").1.to_string();
                (rel, n)
            })
            .collect();
        let rels: Vec<&str> = t.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert!(
            rels.contains(&"index") && rels.contains(&"meta.json"),
            "{rels:?}"
        );
        assert!(rels.iter().any(|r| r.starts_with("chunks/")), "{rels:?}");
        for f in &t.files {
            let size = objects.get(&f.rel_path).unwrap_or_else(|| {
                panic!("{}: {} listed but not in the bucket", m.ulid, f.rel_path)
            });
            if f.rel_path != "meta.json" {
                assert_eq!(*size as i64, f.size_bytes, "{}/{}", m.ulid, f.rel_path);
            }
        }
        assert_eq!(objects.len(), t.files.len(), "{}: {objects:?}", m.ulid);
        let segs: Vec<String> = t.segment_files.clone();
        let chunk_objs: Vec<String> = objects
            .keys()
            .filter_map(|k| k.strip_prefix("chunks/").map(str::to_string))
            .collect();
        assert_eq!(segs, chunk_objs, "{}", m.ulid);
    }

    // promtool accepts a block downloaded from the bucket.
    let dl = tmp.path().join("download");
    std::fs::create_dir_all(&dl).expect("mkdir");
    let first = &sorted[0];
    rt.block_on(bucket::download_block(&bucket, &first.ulid, &dl))
        .expect("download");
    let analyze = String::from_utf8_lossy(&run_ok(
        Command::new(&promtool)
            .args(["tsdb", "analyze"])
            .arg(&dl)
            .arg(first.ulid.to_string()),
        Duration::from_secs(30),
    ))
    .to_string();
    assert!(
        analyze.contains(&first.ulid.to_string()) && analyze.contains("Series: 20"),
        "{analyze}"
    );

    // Local retention: old blocks are gone locally but stay in the bucket; what is left locally
    // is all shipped and recorded in the state file.
    let newest = sorted.iter().map(|m| m.max_time).max().expect("blocks");
    let in_bucket: Vec<String> = metas.iter().map(|m| m.ulid.to_string()).collect();
    let old: Vec<&BlockMeta> = sorted
        .iter()
        .filter(|m| newest - m.max_time >= RETENTION)
        .collect();
    assert!(
        old.len() >= 30,
        "only {} blocks beyond retention",
        old.len()
    );
    for m in &old {
        assert!(
            !data.join(m.ulid.to_string()).exists(),
            "{} is beyond retention and shipped but still local",
            m.ulid
        );
    }
    for l in &local {
        assert!(in_bucket.contains(l), "local block {l} not in the bucket");
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("thanos.shipper.json")).expect("state file"),
    )
    .expect("state JSON");
    assert_eq!(state["version"], 1);
    let recorded: Vec<String> = state["uploaded"]
        .as_array()
        .expect("uploaded")
        .iter()
        .map(|v| v.as_str().expect("ulid").to_string())
        .collect();
    for r in &recorded {
        assert!(in_bucket.contains(r), "state lists {r}, not in the bucket");
    }

    // Queries read local and bucket blocks as one: every pushed sample is counted exactly
    // once, though most of them now live only in the bucket, and each series has one sample
    // per round over the whole period.
    let pushed: f64 = summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("samples="))
        .and_then(|v| v.parse().ok())
        .expect("samples= in the bench summary");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        + 600.0;
    // Every raw sample (a range selector at the top level keeps the names), per series.
    let samples_per_series = || -> Vec<usize> {
        let raw = get_json(
            port,
            "/api/v1/query",
            &[
                ("query", "{__name__=~\".+\"}[4h]".to_string()),
                ("time", format!("{now:.3}")),
            ],
        );
        assert_eq!(raw["status"], "success", "{raw}");
        raw["data"]["result"]
            .as_array()
            .expect("matrix")
            .iter()
            .map(|s| s["values"].as_array().map_or(0, Vec::len))
            .collect()
    };
    let all_once = |per_series: &[usize], when: &str| {
        assert_eq!(per_series.len(), 20, "series {when}");
        assert_eq!(
            per_series.iter().sum::<usize>() as f64,
            pushed,
            "{when}: {per_series:?}"
        );
        assert!(
            per_series.iter().all(|&n| n as f64 == pushed / 20.0),
            "{when}: {per_series:?}"
        );
    };
    all_once(&samples_per_series(), "across local and bucket blocks");
    // External labels of the uploaded blocks are not added twice to what is also local.
    let series = get_json(
        port,
        "/api/v1/series",
        &[
            ("match[]", "{__name__=~\".+\"}".to_string()),
            ("start", format!("{:.3}", now - 14400.0)),
            ("end", format!("{now:.3}")),
        ],
    );
    assert_eq!(
        series["data"].as_array().map(Vec::len),
        Some(20),
        "{series}"
    );

    // The bucket compactor on S3 (with ranges for 2-minute blocks: 2m, 30m, 2h): the blocks
    // of each past 30-minute range become one block (their sources marked for deletion). The server re-lists the bucket every 2 s and then
    // answers from the compacted block, every sample still counted once.
    let objfile = tmp.path().join("objstore.yml");
    std::fs::write(&objfile, &objstore).expect("objstore file");
    let out = run(
        Command::new(strata())
            .args([
                "compact",
                "--downsampling.disable",
                "--compact.ranges",
                "2m,30m,2h",
                "--data-dir",
            ])
            .arg(tmp.path().join("compact"))
            .arg("--objstore.config-file")
            .arg(&objfile),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "strata compact: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compactions: usize = text
        .split("compactions: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert!(compactions >= 1, "nothing compacted: {text}");
    let verify = run(
        Command::new(strata())
            .args(["bucket", "verify", "--data-dir"])
            .arg(tmp.path().join("verify"))
            .arg("--objstore.config-file")
            .arg(&objfile),
        Duration::from_secs(120),
    );
    assert!(
        verify.status.success(),
        "verify after compaction: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let compacted = bucket_metas(&rt, &bucket)
        .0
        .into_iter()
        .find(|m| m.compaction.level > 1)
        .expect("a compacted block in the bucket");
    assert_eq!(
        compacted.thanos.as_ref().map(|t| t.source.as_str()),
        Some("compactor")
    );
    std::thread::sleep(Duration::from_secs(5));
    all_once(&samples_per_series(), "after compaction in the bucket");

    server.kill();
    eprintln!(
        "{} blocks shipped, {} local after retention, in {:?}",
        metas.len(),
        local.len(),
        t0.elapsed()
    );
}
