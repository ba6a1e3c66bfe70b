//! Damaged blocks: a data directory with four blocks and head data, where one block's index has
//! a flipped byte in its series section, one block's index is truncated and one block's
//! meta.json is garbage. The database must open, name each broken block and why, serve the
//! healthy block and the head, compact around the damage, and never touch the broken blocks'
//! bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_tsdb::compact::write_head_block;
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::{Labels, Matcher};
use strata_tsdb::storage::{Appender, Queryable, SampleIterator};

const H: i64 = 3_600_000;
const BASE: i64 = 10_800_000 * 157_000;
const STEP: i64 = 30_000;
const SERIES: usize = 5;

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
}

/// Writes one block per hour in `[BASE + from·h, BASE + to·h)` from an in-memory head.
fn write_blocks(dir: &Path, from: i64, to: i64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in from..to {
        let head = Head::in_memory(HeadOptions::default());
        let mut app = head.appender();
        app.set_min_valid_time(i64::MIN);
        let (mint, maxt) = (BASE + h * H, BASE + (h + 1) * H);
        let mut t = mint;
        while t < maxt {
            for i in 0..SERIES {
                app.append(&labels(i), t, t as f64).expect("append");
            }
            t += STEP;
        }
        app.commit().expect("commit");
        let meta = write_head_block(dir, &head, mint, maxt)
            .expect("write block")
            .expect("block has series");
        out.push(dir.join(meta.ulid.to_string()));
    }
    out
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).expect("read"));
        }
    }
    out
}

/// Flips a byte inside the first series entry of the index at `path`.
fn flip_series_byte(path: &Path) {
    let mut b = std::fs::read(path).expect("read index");
    let toc = b.len() - 52;
    let series = u64::from_be_bytes(b[toc + 8..toc + 16].try_into().expect("8 bytes")) as usize;
    assert!(series > 0, "index has no series section");
    let first = series.div_ceil(16) * 16;
    b[first + 3] ^= 0xff;
    std::fs::write(path, b).expect("write index");
}

fn samples(db: &Db) -> BTreeMap<String, Vec<(i64, f64)>> {
    let q = db.querier(i64::MIN, i64::MAX).expect("querier");
    let mut out = BTreeMap::new();
    for s in q.select(true, None, &[Matcher::equal("__name__", "m")]) {
        let s = s.expect("series");
        let mut it = s.iterator();
        let mut v = Vec::new();
        while it.next() {
            v.push(it.at());
        }
        assert!(it.err().is_none(), "{}: {:?}", s.labels(), it.err());
        out.insert(s.labels().to_string(), v);
    }
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn broken_blocks_are_reported_and_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let blocks = write_blocks(dir, 0, 4);
    let (a, b, c, d) = (&blocks[0], &blocks[1], &blocks[2], &blocks[3]);
    let opts = DbOptions {
        block_range: H,
        compaction_interval: None,
        retention_time: 0,
        ..Default::default()
    };
    // Head data after the blocks.
    {
        let db = Db::open(dir, opts.clone()).expect("open");
        assert_eq!(db.blocks().len(), 4);
        assert!(db.broken_blocks().is_empty());
        let mut app = db.appender().expect("appender");
        let mut t = BASE + 4 * H;
        while t < BASE + 4 * H + H / 2 {
            for i in 0..SERIES {
                app.append(&labels(i), t, t as f64).expect("append");
            }
            t += STEP;
        }
        app.commit().expect("commit");
        db.close().expect("close");
    }

    flip_series_byte(&a.join("index"));
    let idx = b.join("index");
    let len = std::fs::metadata(&idx).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .expect("open index")
        .set_len(len / 2)
        .expect("truncate");
    std::fs::write(c.join("meta.json"), b"{\"ulid\": garbage, \x00\x01").expect("write meta");
    let before: BTreeMap<PathBuf, Vec<u8>> = [a, b, c].iter().flat_map(|p| snapshot(p)).collect();

    let db = Db::open(dir, opts).expect("open with broken blocks");
    let broken = db.broken_blocks();
    let by_name: BTreeMap<String, String> = broken
        .iter()
        .map(|x| (name(&x.dir), x.error.clone()))
        .collect();
    assert_eq!(by_name.len(), 3, "{broken:?}");
    let ea = &by_name[&name(a)];
    assert!(ea.contains(&name(a)) && ea.contains("checksum"), "{ea}");
    assert!(ea.contains("index"), "{ea}");
    let eb = &by_name[&name(b)];
    assert!(eb.contains(&name(b)) && eb.contains("index"), "{eb}");
    let ec = &by_name[&name(c)];
    assert!(ec.contains(&name(c)) && ec.contains("meta.json"), "{ec}");
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(db.blocks()[0].dir(), d.as_path());

    // The healthy block and the head answer queries: exactly [3h, 4.5h).
    let got = samples(&db);
    assert_eq!(got.len(), SERIES);
    for (k, v) in &got {
        let want: Vec<(i64, f64)> = (0..)
            .map(|n| BASE + 3 * H + n * STEP)
            .take_while(|&t| t < BASE + 4 * H + H / 2)
            .map(|t| (t, t as f64))
            .collect();
        assert_eq!(v, &want, "{k}");
    }
    let q = db.querier(i64::MIN, i64::MAX).expect("querier");
    assert_eq!(q.label_names(&[]).expect("names"), vec!["__name__", "i"]);

    // Compaction and retention run around the broken blocks without touching them.
    db.compact().expect("compact");
    db.close().expect("close");
    drop(db);
    let after: BTreeMap<PathBuf, Vec<u8>> = [a, b, c].iter().flat_map(|p| snapshot(p)).collect();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files of broken blocks changed"
    );
    assert!(before == after, "bytes of broken blocks changed");

    // Read-only opens (the offline tools) report the same.
    let ro = Db::open(
        dir,
        DbOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .expect("read-only open");
    let mut names: Vec<String> = ro.broken_blocks().iter().map(|x| name(&x.dir)).collect();
    names.sort();
    let mut want = vec![name(a), name(b), name(c)];
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn each_kind_of_damage_alone() {
    for kind in ["flip", "truncate", "meta", "chunks"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blocks = write_blocks(tmp.path(), 0, 2);
        let victim = &blocks[0];
        match kind {
            "flip" => flip_series_byte(&victim.join("index")),
            "truncate" => {
                std::fs::write(victim.join("index"), b"\xba\xaa\xd7\x00\x02").expect("write")
            }
            "meta" => std::fs::write(victim.join("meta.json"), b"").expect("write"),
            "chunks" => {
                let seg = victim.join("chunks").join("000001");
                let mut b = std::fs::read(&seg).expect("read");
                b[0] ^= 0xff;
                std::fs::write(&seg, b).expect("write");
            }
            _ => unreachable!(),
        }
        let db = Db::open(
            tmp.path(),
            DbOptions {
                block_range: H,
                compaction_interval: None,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{kind}: open: {e}"));
        let broken = db.broken_blocks();
        assert_eq!(broken.len(), 1, "{kind}: {broken:?}");
        assert_eq!(&broken[0].dir, victim, "{kind}");
        assert!(
            broken[0].error.contains(&name(victim)),
            "{kind}: {}",
            broken[0].error
        );
        assert_eq!(db.blocks().len(), 1, "{kind}");
        let got = samples(&db);
        assert_eq!(got.len(), SERIES, "{kind}");
        for v in got.values() {
            assert_eq!(v.first().map(|s| s.0), Some(BASE + H), "{kind}");
            assert_eq!(v.len() as i64, H / STEP, "{kind}");
        }
        assert!(victim.is_dir(), "{kind}: broken block was removed");
    }
}
