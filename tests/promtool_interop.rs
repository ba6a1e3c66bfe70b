//! Interop with the real Prometheus tools (Debian's `prometheus` package): blocks that Strata
//! writes are read by `promtool` with exactly the same samples as blocks promtool writes from
//! the same input, are byte-identical to them, and `strata tsdb dump` prints exactly what
//! `promtool tsdb dump` prints.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_tool, run, run_ok, strata, write_openmetrics};

const LIMIT: Duration = Duration::from_secs(300);

/// Block directories (ULID names) in `dir`, keyed by their meta.json minTime.
fn blocks_by_mint(dir: &Path) -> BTreeMap<i64, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        let meta = p.join("meta.json");
        if !meta.is_file() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).expect("meta")).expect("json");
        out.insert(v["minTime"].as_i64().expect("minTime"), p);
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let m = e.metadata().expect("metadata");
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[test]
fn strata_blocks_equal_promtool_blocks() {
    let promtool = require_tool("promtool");
    let tmp = tempfile::tempdir().expect("tempdir");
    // 1,000 series over 6h at 15s/30s/60s intervals with millisecond jitter, starting off a
    // block boundary.
    let (input, nsamples) = write_openmetrics(tmp.path(), 1000, 6, 1_699_999_200_000 + 1_234, 7);
    assert!(nsamples > 500_000, "generated {nsamples} samples");
    let ours = tmp.path().join("strata");
    let theirs = tmp.path().join("promtool");

    // Prometheus 2's cutting rule, to compare bytes with promtool 2.42; the default rule
    // (Prometheus 3's) is checked for equal samples below.
    run_ok(
        Command::new(strata())
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .args(["--chunk-cutting", "prometheus2"])
            .arg(&input)
            .arg(&ours),
        LIMIT,
    );
    let ours3 = tmp.path().join("strata3");
    run_ok(
        Command::new(strata())
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&ours3),
        LIMIT,
    );
    run_ok(
        Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&theirs),
        LIMIT,
    );

    // (a) promtool reads our blocks with exactly the samples it reads from its own.
    // promtool 2.42's dump insists on a `wal` directory, even an empty one.
    std::fs::create_dir_all(ours.join("wal")).expect("mkdir");
    std::fs::create_dir_all(theirs.join("wal")).expect("mkdir");
    std::fs::create_dir_all(ours3.join("wal")).expect("mkdir");
    let dump = |dir: &Path| {
        run_ok(
            Command::new(&promtool).args(["tsdb", "dump"]).arg(dir),
            LIMIT,
        )
    };
    let ours_dump = dump(&ours);
    let theirs_dump = dump(&theirs);
    let lines = theirs_dump.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, nsamples, "promtool dump of its own blocks");
    assert!(
        ours_dump == theirs_dump,
        "promtool dump differs between Strata's and promtool's blocks"
    );
    assert!(
        dump(&ours3) == theirs_dump,
        "promtool dump differs between Strata's default blocks and promtool's"
    );
    // promtool analyze accepts our blocks.
    let analyze = run(
        Command::new(&promtool).args(["tsdb", "analyze"]).arg(&ours),
        LIMIT,
    );
    assert!(
        analyze.status.success(),
        "promtool analyze failed on Strata's blocks: {}",
        String::from_utf8_lossy(&analyze.stderr)
    );
    assert!(String::from_utf8_lossy(&analyze.stdout).contains("Series: "));

    // Same block boundaries, byte-identical chunks and index.
    let ob = blocks_by_mint(&ours);
    let tb = blocks_by_mint(&theirs);
    assert_eq!(
        ob.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "block time ranges"
    );
    for (mint, o) in &ob {
        let t = &tb[mint];
        let oc = std::fs::read(o.join("chunks/000001")).expect("our chunks");
        let tc = std::fs::read(t.join("chunks/000001")).expect("their chunks");
        assert!(
            oc == tc,
            "chunks of block at {mint} differ ({} vs {} bytes)",
            oc.len(),
            tc.len()
        );
        let oi = std::fs::read(o.join("index")).expect("our index");
        let ti = std::fs::read(t.join("index")).expect("their index");
        assert!(
            oi == ti,
            "index of block at {mint} differs ({} vs {} bytes)",
            oi.len(),
            ti.len()
        );
    }

    // (c) no more bytes than promtool's blocks, within 5%, with either cutting rule.
    let ts = dir_bytes(&theirs);
    for dir in [&ours, &ours3] {
        let os = dir_bytes(dir);
        assert!(
            (os as f64) <= ts as f64 * 1.05,
            "Strata's blocks in {} take {os} bytes, promtool's {ts}",
            dir.display()
        );
    }

    // (b) strata tsdb dump of promtool's blocks prints exactly what promtool prints.
    let strata_dump = run_ok(
        Command::new(strata()).args(["tsdb", "dump"]).arg(&theirs),
        LIMIT,
    );
    assert!(
        strata_dump == theirs_dump,
        "strata tsdb dump differs from promtool tsdb dump on promtool's blocks"
    );
    // And with a selector and time bounds.
    let args = |bin: &mut Command| {
        bin.args([
            "tsdb",
            "dump",
            "--match",
            "{__name__=~\"app_requests_.*\",zone=\"z1\"}",
            "--min-time",
            "1700003000000",
            "--max-time",
            "1700008000000",
        ])
        .arg(&theirs);
    };
    let mut a = Command::new(strata());
    args(&mut a);
    let mut b = Command::new(&promtool);
    args(&mut b);
    let (x, y) = (run_ok(&mut a, LIMIT), run_ok(&mut b, LIMIT));
    assert!(!y.is_empty());
    assert!(x == y, "filtered dumps differ");
}

#[test]
fn corrupt_openmetrics_writes_no_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("bad.om.txt");
    std::fs::write(
        &input,
        "# TYPE a gauge\na{x=\"1\"} 1 1000\na{x=\"2} 2 1000\n# EOF\n",
    )
    .expect("write");
    let out = tmp.path().join("out");
    let o = run(
        Command::new(strata())
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&out),
        LIMIT,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3"), "error names the line: {err}");
    assert!(err.contains("column"), "error names the column: {err}");
    let blocks = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(blocks, 0, "no partial block written");
}
