//! The database's life cycle through its public API: the lock file, reopening after a clean
//! close (WAL replay and mmapped head chunks), persisting the head into blocks, level
//! compaction, time and size retention, out-of-order and duplicate samples, and label queries
//! across the head and blocks.

use std::collections::BTreeMap;
use std::path::Path;

use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::{Labels, MatchType, Matcher};
use strata_tsdb::storage::{Appender, Queryable, SampleIterator};
use strata_tsdb::Error;

const H: i64 = 3_600_000;
/// A multiple of 3h (and so of 1h), so that planner windows line up with the data.
const BASE: i64 = 10_800_000 * 157_000;

fn opts(block_range: i64) -> DbOptions {
    DbOptions {
        block_range,
        compaction_interval: None,
        ..Default::default()
    }
}

fn lbls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn series_labels(i: usize) -> Labels {
    lbls(&[
        ("__name__", "test_metric"),
        ("instance", &format!("host-{i}")),
        ("job", ["even", "odd"][i % 2]),
    ])
}

/// Appends `n` series from `from` (inclusive) to `to` (exclusive) every `step` ms, value
/// `t / 1000 + i`, in commits of ~500 samples. Returns the expected samples per series.
fn append_range(
    db: &Db,
    n: usize,
    from: i64,
    to: i64,
    step: i64,
    expect: &mut BTreeMap<String, Vec<(i64, f64)>>,
) {
    let ls: Vec<Labels> = (0..n).map(series_labels).collect();
    let mut app = db.appender().expect("appender");
    let mut pending = 0;
    let mut t = from;
    while t < to {
        for (i, l) in ls.iter().enumerate() {
            let v = (t / 1000) as f64 + i as f64;
            app.append(l, t, v).expect("append");
            expect.entry(l.to_string()).or_default().push((t, v));
            pending += 1;
        }
        if pending >= 500 {
            app.commit().expect("commit");
            app = db.appender().expect("appender");
            pending = 0;
        }
        t += step;
    }
    app.commit().expect("commit");
}

/// The end of the database's newest block (it must have one).
fn newest_block_end(db: &Db) -> i64 {
    db.blocks()
        .iter()
        .map(|b| b.max_time())
        .max()
        .expect("blocks")
}

/// Every sample the database returns for `matchers` over `[mint, maxt]`, by series.
fn query(db: &Db, mint: i64, maxt: i64, matchers: &[Matcher]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let q = db.querier(mint, maxt).expect("querier");
    let mut out = BTreeMap::new();
    for s in q.select(true, None, matchers) {
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

fn all_metric() -> Vec<Matcher> {
    vec![Matcher::equal("__name__", "test_metric")]
}

fn block_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| strata_tsdb::db::is_block_dir_name(n))
        .collect();
    v.sort();
    v
}

#[test]
fn lock_file_excludes_a_second_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(2 * H)).expect("first open");
    match Db::open(tmp.path(), opts(2 * H)) {
        Err(Error::Locked { path, lock }) => {
            assert_eq!(path, tmp.path());
            assert_eq!(lock, tmp.path().join("lock"));
        }
        Err(e) => panic!("second open failed with {e}, want Locked"),
        Ok(_) => panic!("second open of a locked directory succeeded"),
    }
    // A read-only open (the offline tools) does not take the lock.
    let ro = Db::open(
        tmp.path(),
        DbOptions {
            read_only: true,
            ..opts(2 * H)
        },
    )
    .expect("read-only open next to a writer");
    assert!(matches!(ro.appender(), Err(Error::Closed)));
    drop(ro);
    // `close` releases the lock, even while handles to the closed database live on.
    db.close().expect("close");
    let again = Db::open(tmp.path(), opts(2 * H)).expect("open after the first one closed");
    assert!(matches!(db.appender(), Err(Error::Closed)));
    drop(db);
    drop(again);
}

#[test]
fn reopen_after_clean_close_finds_every_sample() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    {
        let db = Db::open(tmp.path(), opts(2 * H)).expect("open");
        // 10 series × 700 samples at 10s: several full chunks each, written to chunks_head.
        append_range(&db, 10, BASE, BASE + 7_000_000, 10_000, &mut expect);
        assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
        db.close().expect("close");
    }
    let head_chunks: Vec<_> = std::fs::read_dir(tmp.path().join("chunks_head"))
        .expect("chunks_head")
        .flatten()
        .collect();
    assert!(!head_chunks.is_empty(), "no head chunk files were written");
    let db = Db::open(tmp.path(), opts(2 * H)).expect("reopen");
    assert_eq!(db.head().num_series(), 10);
    assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
    // Appending continues where the last run stopped.
    append_range(
        &db,
        10,
        BASE + 7_000_000,
        BASE + 7_100_000,
        10_000,
        &mut expect,
    );
    db.close().expect("close");
    drop(db);
    let db = Db::open(tmp.path(), opts(2 * H)).expect("third open");
    assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
    // A sub-range.
    let sub = query(&db, BASE + 1_000_000, BASE + 2_000_000, &all_metric());
    for (k, v) in &sub {
        let want: Vec<_> = expect[k]
            .iter()
            .copied()
            .filter(|s| s.0 >= BASE + 1_000_000 && s.0 <= BASE + 2_000_000)
            .collect();
        assert_eq!(v, &want, "{k}");
    }
}

#[test]
fn head_is_persisted_into_blocks_and_blocks_are_compacted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    let db = Db::open(tmp.path(), opts(H)).expect("open");
    // 5h of data with a 1h block range.
    append_range(&db, 6, BASE, BASE + 5 * H, 30_000, &mut expect);
    assert!(db.blocks().is_empty());
    db.compact().expect("compact");
    let blocks = db.blocks();
    assert!(!blocks.is_empty(), "nothing was persisted");
    // The head keeps at most 1.5 block ranges.
    assert!(db.head().max_time() - db.head().min_time() <= H / 2 * 3);
    // Head blocks [0,1h) [1h,2h) [2h,3h) were merged into one level-2 block covering 3h;
    // [3h,4h) is the newest block and stays at level 1.
    let levels: Vec<(i64, i64, u32)> = blocks
        .iter()
        .map(|b| {
            (
                b.min_time() - BASE,
                b.max_time() - BASE,
                b.meta().compaction.level,
            )
        })
        .collect();
    assert!(
        levels.iter().any(|&(_, _, l)| l > 1),
        "no level compaction happened: {levels:?}"
    );
    let merged = blocks
        .iter()
        .find(|b| b.meta().compaction.level == 2)
        .expect("level 2 block");
    assert_eq!(merged.min_time(), BASE);
    assert_eq!(merged.max_time(), BASE + 3 * H);
    assert_eq!(merged.meta().compaction.sources.len(), 3);
    assert_eq!(merged.meta().compaction.parents.len(), 3);
    // Only the blocks in use are on disk (parents were deleted).
    let on_disk = block_dirs(tmp.path());
    let mut open: Vec<String> = blocks.iter().map(|b| b.ulid().to_string()).collect();
    open.sort();
    assert_eq!(on_disk, open);
    // Queries across blocks and head return every sample exactly once.
    assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
    // A range straddling a block boundary and the head.
    let (a, b) = (BASE + 2 * H + 123, BASE + 4 * H + 600_000);
    let got = query(&db, a, b, &all_metric());
    for (k, v) in &expect {
        let want: Vec<_> = v.iter().copied().filter(|s| s.0 >= a && s.0 <= b).collect();
        assert_eq!(got.get(k), Some(&want), "{k}");
    }
    // Samples older than the persisted range are now out of bounds.
    let mut app = db.appender().expect("appender");
    assert!(matches!(
        app.append(&series_labels(0), BASE + 10, 1.0),
        Err(Error::OutOfBounds) | Err(Error::OutOfOrderSample)
    ));
    app.rollback().expect("rollback");
    db.close().expect("close");
    drop(db);
    // And after reopen (blocks + WAL checkpoint + the rest of the WAL).
    let db = Db::open(tmp.path(), opts(H)).expect("reopen");
    assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
}

#[test]
fn time_retention_is_measured_from_the_newest_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    let db = Db::open(
        tmp.path(),
        DbOptions {
            retention_time: 3 * H,
            ..opts(H)
        },
    )
    .expect("open");
    append_range(&db, 3, BASE, BASE + 8 * H, 60_000, &mut expect);
    db.compact().expect("compact");
    let newest = newest_block_end(&db);
    assert!(!db.blocks().is_empty());
    for b in db.blocks() {
        assert!(
            newest - b.max_time() < 3 * H,
            "block {}..{} is beyond retention (newest block ends {newest})",
            b.min_time(),
            b.max_time()
        );
    }
    let oldest_kept = db
        .blocks()
        .iter()
        .map(|b| b.min_time())
        .min()
        .expect("blocks");
    assert!(oldest_kept > BASE, "nothing was deleted");
    assert_eq!(block_dirs(tmp.path()).len(), db.blocks().len());
    // What is left is exactly the data from the oldest kept block on.
    let got = query(&db, i64::MIN, i64::MAX, &all_metric());
    for (k, v) in &expect {
        let want: Vec<_> = v.iter().copied().filter(|s| s.0 >= oldest_kept).collect();
        assert_eq!(got.get(k), Some(&want), "{k}");
    }
}

#[test]
fn retention_guard_keeps_blocks_until_allowed() {
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    let allowed: Arc<Mutex<Vec<ulid::Ulid>>> = Arc::new(Mutex::new(Vec::new()));
    let a2 = allowed.clone();
    let db = Db::open(
        tmp.path(),
        DbOptions {
            retention_time: 3 * H,
            max_block_range: H,
            retention_guard: Some(strata_tsdb::db::RetentionGuard::new(move |id| {
                a2.lock().expect("lock").contains(id)
            })),
            ..opts(H)
        },
    )
    .expect("open");
    append_range(&db, 2, BASE, BASE + 8 * H, 60_000, &mut expect);
    db.compact().expect("compact");
    // Nothing allowed: every block stays, and no block was compacted (max = min range).
    let all = db.blocks();
    assert!(all.len() >= 6, "{} blocks", all.len());
    assert!(all.iter().all(|b| b.meta().compaction.level == 1));
    assert_eq!(block_dirs(tmp.path()).len(), all.len());
    // Allow the oldest block only: it alone goes, though others are beyond retention too.
    let oldest = all[0].ulid();
    allowed.lock().expect("lock").push(oldest);
    db.apply_retention().expect("retention");
    let left: Vec<ulid::Ulid> = db.blocks().iter().map(|b| b.ulid()).collect();
    assert_eq!(left.len(), all.len() - 1);
    assert!(!left.contains(&oldest));
    assert!(!tmp.path().join(oldest.to_string()).exists());
    // Allow everything: time retention applies in full.
    allowed
        .lock()
        .expect("lock")
        .extend(all.iter().map(|b| b.ulid()));
    db.apply_retention().expect("retention");
    let newest = newest_block_end(&db);
    assert!(db.blocks().iter().all(|b| newest - b.max_time() < 3 * H));
    assert_eq!(block_dirs(tmp.path()).len(), db.blocks().len());
}

#[test]
fn size_retention_deletes_the_oldest_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    let (sizes, head_size) = {
        let db = Db::open(
            tmp.path(),
            DbOptions {
                retention_time: 0,
                ..opts(H)
            },
        )
        .expect("open");
        append_range(&db, 4, BASE, BASE + 6 * H, 30_000, &mut expect);
        db.compact().expect("compact");
        let mut sizes: Vec<(i64, u64)> = db
            .blocks()
            .iter()
            .map(|b| (b.max_time(), b.size()))
            .collect();
        sizes.sort();
        sizes.reverse();
        db.close().expect("close");
        (sizes, db.head_size())
    };
    assert!(sizes.len() >= 3, "want at least 3 blocks, have {sizes:?}");
    // Room for the head and the two newest blocks, not for the third.
    let limit = head_size + sizes[0].1 + sizes[1].1 + sizes[2].1 / 2;
    let db = Db::open(
        tmp.path(),
        DbOptions {
            retention_time: 0,
            retention_size: limit,
            ..opts(H)
        },
    )
    .expect("reopen");
    // Reopening adds an empty WAL segment only.
    assert_eq!(db.head_size(), head_size);
    db.apply_retention().expect("retention");
    let mut kept: Vec<i64> = db.blocks().iter().map(|b| b.max_time()).collect();
    kept.sort();
    kept.reverse();
    assert_eq!(kept, vec![sizes[0].0, sizes[1].0]);
    assert_eq!(block_dirs(tmp.path()).len(), 2);
}

#[test]
fn out_of_order_samples_rejected_by_default_accepted_within_window() {
    let l = series_labels(0);
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(tmp.path().join("strict"), opts(2 * H)).expect("open");
        let mut app = db.appender().expect("appender");
        app.append(&l, BASE + 10_000, 1.0).expect("append");
        app.commit().expect("commit");
        let mut app = db.appender().expect("appender");
        assert!(matches!(
            app.append(&l, BASE + 5_000, 2.0),
            Err(Error::OutOfOrderSample)
        ));
        // Within one batch too.
        app.append(&l, BASE + 20_000, 3.0).expect("append");
        assert!(matches!(
            app.append(&l, BASE + 15_000, 4.0),
            Err(Error::OutOfOrderSample)
        ));
        app.commit().expect("commit");
        let got = query(&db, i64::MIN, i64::MAX, &all_metric());
        assert_eq!(
            got[&l.to_string()],
            vec![(BASE + 10_000, 1.0), (BASE + 20_000, 3.0)]
        );
    }
    let dir = tmp.path().join("ooo");
    let ooo_opts = DbOptions {
        ooo_window: 60_000,
        ..opts(2 * H)
    };
    let want = vec![
        (BASE + 50_000, 5.0),
        (BASE + 70_000, 7.0),
        (BASE + 90_000, 9.0),
        (BASE + 100_000, 10.0),
        (BASE + 120_000, 12.0),
        (BASE + 130_000, 13.0),
    ];
    {
        let db = Db::open(&dir, ooo_opts.clone()).expect("open");
        let mut app = db.appender().expect("appender");
        app.append(&l, BASE + 100_000, 10.0).expect("append");
        app.commit().expect("commit");
        let mut app = db.appender().expect("appender");
        app.append(&l, BASE + 70_000, 7.0)
            .expect("within the window");
        app.append(&l, BASE + 90_000, 9.0)
            .expect("within the window");
        app.append(&l, BASE + 50_000, 5.0)
            .expect("within the window");
        assert!(matches!(
            app.append(&l, BASE + 30_000, 3.0),
            Err(Error::OutOfOrderSample)
        ));
        app.commit().expect("commit");
        // Newer than what is committed but older than an earlier sample of the same batch.
        let mut app = db.appender().expect("appender");
        app.append(&l, BASE + 130_000, 13.0).expect("in order");
        app.append(&l, BASE + 120_000, 12.0)
            .expect("within the window");
        app.commit().expect("commit");
        assert_eq!(
            query(&db, i64::MIN, i64::MAX, &all_metric())[&l.to_string()],
            want
        );
        db.close().expect("close");
    }
    // Out-of-order samples survive a restart (WAL replay).
    let db = Db::open(&dir, ooo_opts).expect("reopen");
    assert_eq!(
        query(&db, i64::MIN, i64::MAX, &all_metric())[&l.to_string()],
        want
    );
}

#[test]
fn duplicate_timestamps() {
    let l = series_labels(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(2 * H)).expect("open");
    let mut app = db.appender().expect("appender");
    app.append(&l, BASE, 1.0).expect("append");
    // The same sample twice in one batch is ignored; another value is an error.
    app.append(&l, BASE, 1.0).expect("same value in the batch");
    assert!(matches!(
        app.append(&l, BASE, 2.0),
        Err(Error::DuplicateSampleForTimestamp)
    ));
    app.commit().expect("commit");
    let mut app = db.appender().expect("appender");
    assert!(matches!(
        app.append(&l, BASE, 2.0),
        Err(Error::DuplicateSampleForTimestamp)
    ));
    app.append(&l, BASE, 1.0).expect("same value after commit");
    app.append(&l, BASE + 1000, 2.0).expect("next");
    app.commit().expect("commit");
    // NaN with the same bits is a duplicate too, not a conflict.
    let mut app = db.appender().expect("appender");
    app.append(&l, BASE + 2000, f64::NAN).expect("nan");
    app.commit().expect("commit");
    let mut app = db.appender().expect("appender");
    app.append(&l, BASE + 2000, f64::NAN).expect("same NaN");
    app.commit().expect("commit");
    let got = &query(&db, i64::MIN, i64::MAX, &all_metric())[&l.to_string()];
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], (BASE, 1.0));
    assert_eq!(got[1], (BASE + 1000, 2.0));
    assert!(got[2].0 == BASE + 2000 && got[2].1.is_nan());
}

#[test]
fn label_names_and_values_across_head_and_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = Db::open(tmp.path(), opts(H)).expect("open");
    let old = lbls(&[("__name__", "up"), ("job", "old"), ("only_old", "x")]);
    let both = lbls(&[("__name__", "up"), ("job", "both")]);
    let new = lbls(&[("__name__", "up"), ("job", "new"), ("only_new", "y")]);
    let other = lbls(&[("__name__", "other"), ("job", "z")]);
    let mut app = db.appender().expect("appender");
    let mut t = BASE;
    while t < BASE + 3 * H {
        if t < BASE + H {
            app.append(&old, t, 1.0).expect("append");
        }
        if t >= BASE + 2 * H {
            app.append(&new, t, 1.0).expect("append");
            app.append(&other, t, 1.0).expect("append");
        }
        app.append(&both, t, 1.0).expect("append");
        t += 60_000;
    }
    app.commit().expect("commit");
    db.compact().expect("compact");
    assert!(!db.blocks().is_empty());
    // `old` lives only in a block now; `new` only in the head.
    assert!(db.head().all_series().iter().all(|s| s.labels != old));
    let q = db.querier(i64::MIN, i64::MAX).expect("querier");
    assert_eq!(
        q.label_names(&[]).expect("names"),
        vec!["__name__", "job", "only_new", "only_old"]
    );
    assert_eq!(
        q.label_values("job", &[]).expect("values"),
        vec!["both", "new", "old", "z"]
    );
    let up = Matcher::equal("__name__", "up");
    assert_eq!(
        q.label_values("job", std::slice::from_ref(&up))
            .expect("values"),
        vec!["both", "new", "old"]
    );
    let re = Matcher::new(MatchType::Regexp, "job", "old|new").expect("regex");
    assert_eq!(
        q.label_names(std::slice::from_ref(&re)).expect("names"),
        vec!["__name__", "job", "only_new", "only_old"]
    );
    assert_eq!(
        q.label_values("only_old", &[re]).expect("values"),
        vec!["x"]
    );
    let ne = Matcher::new(MatchType::NotEqual, "job", "both").expect("matcher");
    assert_eq!(
        q.label_values("__name__", &[ne]).expect("values"),
        vec!["other", "up"]
    );
    // Restricted to the head's time range, the block-only series disappear.
    let q = db.querier(BASE + 2 * H + 1, i64::MAX).expect("querier");
    let vals = q.label_values("job", &[up]).expect("values");
    assert!(!vals.contains(&"old".to_string()), "{vals:?}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// A crash after blocks were written but before the WAL was truncated leaves WAL records of
/// data the blocks hold. Reopening must not put them back in the head (they would be
/// persisted a second time, as blocks overlapping the first).
#[test]
fn wal_replay_leaves_out_what_blocks_hold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expect = BTreeMap::new();
    {
        let db = Db::open(tmp.path(), opts(H)).expect("open");
        append_range(&db, 3, BASE, BASE + 5 * H, 60_000, &mut expect);
        // The WAL as it was before the head was persisted and the WAL truncated.
        copy_tree(&tmp.path().join("wal"), &tmp.path().join("wal-before"));
        db.compact().expect("compact");
        assert!(db.blocks().len() >= 2, "{} blocks", db.blocks().len());
        db.close().expect("close");
    }
    std::fs::remove_dir_all(tmp.path().join("wal")).expect("rm wal");
    std::fs::rename(tmp.path().join("wal-before"), tmp.path().join("wal")).expect("restore");
    std::fs::remove_dir_all(tmp.path().join("chunks_head")).ok();

    let db = Db::open(tmp.path(), opts(H)).expect("reopen");
    let newest = newest_block_end(&db);
    assert!(
        db.head().min_time() >= newest,
        "head starts at {} before the newest block's end {newest}",
        db.head().min_time()
    );
    append_range(&db, 3, BASE + 5 * H, BASE + 8 * H, 60_000, &mut expect);
    db.compact().expect("compact");
    let mut ranges: Vec<(i64, i64)> = db
        .blocks()
        .iter()
        .map(|b| (b.min_time(), b.max_time()))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping blocks: {ranges:?}");
    }
    assert_eq!(query(&db, i64::MIN, i64::MAX, &all_metric()), expect);
}
