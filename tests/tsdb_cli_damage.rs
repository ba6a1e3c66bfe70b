//! The binary against a locked or damaged data directory: `strata serve` fails fast (naming the
//! lock) while another process holds the directory; `strata tsdb analyze` and `strata tsdb dump`
//! name broken blocks and still report or print everything else.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run, run_ok, strata};
use strata_tsdb::compact::write_head_block;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::Labels;
use strata_tsdb::storage::Appender;

const H: i64 = 3_600_000;
const BASE: i64 = 10_800_000 * 157_000;
const STEP: i64 = 60_000;
const LIMIT: Duration = Duration::from_secs(30);

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
}

/// Three one-hour blocks (`[BASE, BASE+3h)`, 2 series at 1/min) plus head data in the next
/// half hour, written through a closed `Db`. Returns the block directories, oldest first.
fn build(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in 0..3 {
        let head = Head::in_memory(HeadOptions::default());
        let mut app = head.appender();
        app.set_min_valid_time(i64::MIN);
        let (mint, maxt) = (BASE + h * H, BASE + (h + 1) * H);
        let mut t = mint;
        while t < maxt {
            for i in 0..2 {
                app.append(&labels(i), t, t as f64).expect("append");
            }
            t += STEP;
        }
        app.commit().expect("commit");
        let meta = write_head_block(dir, &head, mint, maxt)
            .expect("write block")
            .expect("block");
        out.push(dir.join(meta.ulid.to_string()));
    }
    let db = Db::open(
        dir,
        DbOptions {
            block_range: H,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .expect("open");
    let mut app = db.appender().expect("appender");
    let mut t = BASE + 3 * H;
    while t < BASE + 3 * H + H / 2 {
        for i in 0..2 {
            app.append(&labels(i), t, t as f64).expect("append");
        }
        t += STEP;
    }
    app.commit().expect("commit");
    db.close().expect("close");
    out
}

fn name(p: &Path) -> String {
    p.file_name().expect("name").to_string_lossy().into_owned()
}

#[test]
fn serve_fails_fast_on_a_locked_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(
        tmp.path(),
        DbOptions {
            compaction_interval: None,
            ..Default::default()
        },
    )
    .expect("open");
    let out = run(
        Command::new(strata())
            .args(["serve", "--web.listen-address", "127.0.0.1:0"])
            .arg("--storage.tsdb.path")
            .arg(tmp.path())
            .stdin(Stdio::null()),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started on a locked directory");
    assert!(err.contains("locked"), "{err}");
    assert!(
        err.contains(&tmp.path().join("lock").display().to_string()),
        "{err}"
    );
    db.close().expect("close");
}

#[test]
fn analyze_and_dump_name_broken_blocks_and_serve_the_rest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocks = build(tmp.path());
    let (bad_meta, bad_index, good) = (&blocks[0], &blocks[1], &blocks[2]);
    std::fs::write(bad_meta.join("meta.json"), b"not json").expect("write");
    let idx = bad_index.join("index");
    let len = std::fs::metadata(&idx).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .expect("open")
        .set_len(len - 20)
        .expect("truncate");

    let out = String::from_utf8(run_ok(
        Command::new(strata())
            .args(["tsdb", "analyze"])
            .arg(tmp.path()),
        LIMIT,
    ))
    .expect("utf-8");
    for b in [bad_meta, bad_index] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("Broken block") && l.contains(&name(b))),
            "analyze does not name {}:\n{out}",
            name(b)
        );
    }
    assert!(out.contains("Blocks: 1"), "{out}");
    assert!(out.contains(&format!("Block ID: {}", name(good))), "{out}");

    let out = run(
        Command::new(strata())
            .args(["tsdb", "dump"])
            .arg(tmp.path())
            .stdin(Stdio::null()),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for b in [bad_meta, bad_index] {
        assert!(
            err.contains(&name(b)),
            "dump does not name {}:\n{err}",
            name(b)
        );
    }
    // Exactly the good block's and the head's samples: [2h, 3.5h) for both series.
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut want = Vec::new();
    for i in 0..2 {
        let mut t = BASE + 2 * H;
        while t < BASE + 3 * H + H / 2 {
            want.push(format!(
                "{{__name__=\"m\", i=\"{i}\"}} {} {t}",
                format_value(t)
            ));
            t += STEP;
        }
    }
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), want.len(), "{stdout}");
    assert_eq!(got, want.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    // Nothing was removed.
    assert!(bad_meta.is_dir() && bad_index.is_dir());
    assert_eq!(std::fs::metadata(&idx).expect("stat").len(), len - 20);
}

/// Go's `%g`-style formatting of the integral values used here (`1.6956e+12`).
fn format_value(t: i64) -> String {
    let s = format!("{:e}", t as f64);
    // Rust: "1.69560000012e12" → Go: "1.69560000012e+12".
    s.replace('e', "e+")
}
