//! The wrapper itself, and the shipper and the compactor through it: a block is never
//! visible incomplete, retries converge, and every sample survives exactly once.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;

use object_store::memory::InMemory;
use strata_tsdb::block::meta::{write_meta, BlockMeta};
use ulid::Ulid;

use crate::bucket::{self, Bucket};
use crate::compact::{compact_pass, downsample_pass, CompactConfig, NoProgress, Summary};
use crate::downsample::{RES_5M, RES_RAW};
use crate::planner;
use crate::shipper::{read_state, Shipper};
use crate::testutil::{read_all, upload};

const H: i64 = 3_600_000;
const STEP: i64 = 120_000;

fn key(s: &str) -> Path {
    Path::from(s)
}

#[tokio::test]
async fn wrapper_fails_before_and_after_the_effect() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cfg = |after: f64| FaultConfig {
        seed: 7,
        fail_rate: 1.0,
        write_fail_rate: 1.0,
        fail_after_effect: after,
        stall_rate: 0.0,
        stall: Duration::ZERO,
    };
    // Failing before: nothing written.
    let f = FaultyStore::new(mem.clone(), cfg(0.0));
    assert!(f
        .put(&key("a"), PutPayload::from_static(b"x"))
        .await
        .is_err());
    assert!(mem.head(&key("a")).await.is_err());
    // Failing after: written, yet the client sees an error.
    let f = FaultyStore::new(mem.clone(), cfg(1.0));
    let e = f
        .put(&key("a"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("after the request took effect"),
        "{e}"
    );
    assert_eq!(mem.head(&key("a")).await.unwrap().size, 1);
    assert!(f.delete(&key("a")).await.is_err());
    assert!(
        mem.head(&key("a")).await.is_err(),
        "deleted despite the error"
    );
    // Reads never take effect "after": they fail before.
    mem.put(&key("b"), PutPayload::from_static(b"yy"))
        .await
        .unwrap();
    assert!(f.get(&key("b")).await.is_err());
    assert!(f.head(&key("b")).await.is_err());
    assert!(f.get_range(&key("b"), 0..1).await.is_err());
    assert!(f.list_with_delimiter(None).await.is_err());
    let listed: Vec<_> = f.list(None).collect().await;
    assert!(listed.last().is_some_and(|r| r.is_err()));
    let st = f.stats();
    assert_eq!(st.failed_after, 2);
    assert_eq!(st.failed_before, 5);
    assert_eq!(st.requests, 7);
    // Disabled: a pass-through.
    f.set_enabled(false);
    assert_eq!(
        f.get(&key("b")).await.unwrap().bytes().await.unwrap(),
        &b"yy"[..]
    );
}

#[tokio::test]
async fn wrapper_is_deterministic_and_stalls() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    mem.put(&key("k"), PutPayload::from_static(b"v"))
        .await
        .unwrap();
    let cfg = FaultConfig {
        seed: 42,
        fail_rate: 0.3,
        write_fail_rate: 0.3,
        fail_after_effect: 0.5,
        stall_rate: 0.2,
        stall: Duration::from_millis(5),
    };
    let run = |f: FaultyStore| async move {
        let mut v = Vec::new();
        for _ in 0..200 {
            v.push(f.head(&key("k")).await.is_ok());
        }
        (v, f.stats())
    };
    let t0 = std::time::Instant::now();
    let (a, sa) = run(FaultyStore::new(mem.clone(), cfg.clone())).await;
    let (b, sb) = run(FaultyStore::new(mem.clone(), cfg.clone())).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_eq!(sa, sb);
    let fails = a.iter().filter(|ok| !**ok).count() as u64;
    assert_eq!(fails, sa.failed_before);
    assert!((30..=90).contains(&fails), "{fails} of 200 failed");
    assert!((15..=70).contains(&sa.stalled), "{sa:?}");
    assert!(t0.elapsed() >= Duration::from_millis(5) * (2 * sa.stalled as u32));
}

/// A fake local block (the shipper does not parse index or chunks) with `n` chunk segments
/// of varying sizes.
fn fake_block(dir: &std::path::Path, n: u128) -> Ulid {
    let id = Ulid::from((1u128 << 80) + n);
    let b = dir.join(id.to_string());
    std::fs::create_dir_all(b.join("chunks")).unwrap();
    for s in 0..(1 + n % 3) {
        let size = 100 + (n as usize * 397 + s as usize * 131) % 4000;
        std::fs::write(b.join(format!("chunks/{:06}", s + 1)), vec![n as u8; size]).unwrap();
    }
    std::fs::write(b.join("index"), vec![2u8; 50 + n as usize]).unwrap();
    let mut m = BlockMeta::new(id, n as i64 * 1000, n as i64 * 1000 + 1000);
    m.stats.num_samples = 10;
    write_meta(&b, &m).unwrap();
    id
}

/// Every block with a `meta.json` has every file its meta lists, with its size; returns how
/// many blocks were visible.
async fn assert_no_partial_block_visible(b: &Bucket) -> usize {
    let l = bucket::list_metas(b).await.unwrap();
    assert!(l.corrupt.is_empty(), "{:?}", l.corrupt);
    for m in &l.blocks {
        // A block deleted since the listing is fine; one visible but incomplete is not.
        let objs: BTreeMap<String, u64> = bucket::block_objects(b, &m.ulid)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect();
        if !objs.contains_key(&format!("{}/meta.json", m.ulid)) {
            continue;
        }
        for f in &m.thanos.as_ref().unwrap().files {
            if f.rel_path == bucket::META_FILE {
                continue;
            }
            let k = format!("{}/{}", m.ulid, f.rel_path);
            assert_eq!(
                objs.get(&k).copied(),
                Some(f.size_bytes as u64),
                "block {} visible but {k} missing or of the wrong size: {objs:?}",
                m.ulid
            );
        }
    }
    l.blocks.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipper_through_a_failing_store_never_shows_a_partial_block() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ids: Vec<Ulid> = (0..40).map(|n| fake_block(&data, n)).collect();
    let inner = bucket::local_bucket(&tmp.path().join("bucket")).unwrap();
    let faulty = Arc::new(FaultyStore::new(
        inner.clone(),
        FaultConfig {
            seed: 3,
            fail_rate: 0.3,
            write_fail_rate: 0.3,
            fail_after_effect: 0.5,
            stall_rate: 0.2,
            stall: Duration::from_millis(3),
        },
    ));
    let shipper = Shipper::new(
        faulty.clone() as Bucket,
        &data,
        [("cluster".to_string(), "eu".to_string())].into(),
        "strata",
    )
    .with_backoff(Duration::ZERO, Duration::ZERO);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let observer = {
        let (stop, seen, inner) = (stop.clone(), seen.clone(), inner.clone());
        tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stop.load(Ordering::SeqCst) && rounds < 100_000 {
                let n = assert_no_partial_block_visible(&inner).await;
                if n > 0 && n < 40 {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            rounds
        })
    };
    let mut syncs = 0;
    let mut failed = 0;
    while syncs < 300 && !ids.iter().all(|id| shipper.shipped(id)) {
        let r = shipper.sync().await.unwrap();
        failed += r.failed.len();
        syncs += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = observer.await.unwrap();
    assert!(ids.iter().all(|id| shipper.shipped(id)), "{syncs} syncs");
    assert!(failed > 0 && rounds > 0);
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the observer never saw the upload in progress"
    );
    let st = faulty.stats();
    assert!(
        st.failed_before > 0 && st.failed_after > 0 && st.stalled > 0,
        "{st:?}"
    );

    // Everything arrived, nothing more: each block holds exactly the files its meta lists.
    faulty.set_enabled(false);
    assert_eq!(assert_no_partial_block_visible(&inner).await, 40);
    let l = bucket::list_metas(&inner).await.unwrap();
    assert!(l.partial.is_empty(), "{:?}", l.partial);
    for m in &l.blocks {
        let objs: BTreeSet<String> = bucket::block_objects(&inner, &m.ulid)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        let listed: BTreeSet<String> = m
            .thanos
            .as_ref()
            .unwrap()
            .files
            .iter()
            .map(|f| format!("{}/{}", m.ulid, f.rel_path))
            .collect();
        assert_eq!(objs, listed);
    }
    assert_eq!(read_state(&data).unwrap().unwrap().uploaded, ids);
    // A new shipper (restart) has nothing to do.
    let again = Shipper::new(faulty.clone() as Bucket, &data, BTreeMap::new(), "strata");
    let r = again.sync().await.unwrap();
    assert!(r.uploaded.is_empty() && r.failed.is_empty(), "{r:?}");
}

/// The expected samples of series `i`: a sample every STEP over `[0, end)`.
fn value(i: usize, t: i64) -> f64 {
    (i as i64 * 1_000_000 + t / STEP) as f64
}

/// Six 8h blocks over [0, 48h) and five 2h blocks over [48h, 58h): a pass compacts the 2h
/// blocks into an 8h block, the 8h blocks into a 2d block, and downsamples that to 5m.
async fn build_bucket(b: &Bucket, tmp: &std::path::Path) -> i64 {
    let lab = [("cluster", "eu")];
    for k in 0..6 {
        upload(b, tmp, &lab, k * 8 * H, (k + 1) * 8 * H, STEP, value).await;
    }
    for k in 0..5 {
        let s = 48 * H + k * 2 * H;
        upload(b, tmp, &lab, s, s + 2 * H, STEP, value).await;
    }
    58 * H
}

/// The raw blocks a querier should use: live, resolution 0, not redundant.
async fn effective_raw(b: &Bucket) -> Vec<BlockMeta> {
    let st = crate::compact::sync(b).await.unwrap();
    let live: Vec<BlockMeta> = st
        .live_blocks()
        .into_iter()
        .filter(|m| planner::resolution(m) == RES_RAW)
        .collect();
    let red = planner::redundant_blocks(&live);
    live.into_iter()
        .filter(|m| !red.contains(&m.ulid))
        .collect()
}

/// The bucket is consistent (every block complete and readable, no overlap) and the effective
/// raw blocks hold every input sample exactly once.
async fn assert_consistent(b: &Bucket, end: i64, what: &str) {
    assert_no_partial_block_visible(b).await;
    let st = crate::compact::sync(b).await.unwrap();
    let ov = crate::verify::find_overlaps(&st.live_blocks());
    assert!(ov.is_empty(), "{what}: overlaps {ov:?}");
    let dl = tempfile::tempdir().unwrap();
    for m in &st.listing.blocks {
        let d = bucket::download_block_checked(b, m, dl.path())
            .await
            .unwrap();
        crate::verify::verify_block(&d).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for m in effective_raw(b).await {
        let d = bucket::download_block(b, &m.ulid, dl.path()).await.unwrap();
        for (s, v) in read_all(&d) {
            got.entry(s).or_default().extend(v);
        }
    }
    for i in 0..2 {
        let mut v = got.remove(&i.to_string()).unwrap_or_default();
        v.sort_by_key(|x| x.0);
        let want: Vec<(i64, f64)> = (0..end / STEP)
            .map(|k| (k * STEP, value(i, k * STEP)))
            .collect();
        assert_eq!(v.len(), want.len(), "{what}: series {i}");
        assert!(v == want, "{what}: series {i} differs");
    }
    assert!(got.is_empty(), "{what}: unexpected series {got:?}");
}

fn cfg(dir: &std::path::Path) -> CompactConfig {
    CompactConfig::new(dir)
}

#[tokio::test]
async fn compactor_through_a_failing_store_keeps_every_sample_once() {
    for seed in 1..=3u64 {
        let tmp = tempfile::tempdir().unwrap();
        let mem: Bucket = Arc::new(InMemory::new());
        let end = build_bucket(&mem, tmp.path()).await;
        let faulty = Arc::new(FaultyStore::new(
            mem.clone(),
            FaultConfig {
                seed,
                fail_rate: 0.02,
                write_fail_rate: 0.15,
                fail_after_effect: 0.5,
                stall_rate: 0.05,
                stall: Duration::from_millis(1),
            },
        ));
        let fb: Bucket = faulty.clone();
        let c = cfg(&tmp.path().join(format!("scratch-{seed}")));
        let mut failures = 0;
        let mut done = None;
        for attempt in 0..300 {
            // Alternate the two entry points: a full pass, or downsampling alone.
            let r = if attempt % 3 == 2 {
                downsample_pass(&fb, &c, &NoProgress).await
            } else {
                compact_pass(&fb, &c, &NoProgress).await
            };
            match r {
                Ok(s) if attempt % 3 != 2 => {
                    done = Some(s);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    assert!(e.to_string().contains("injected fault"), "{e}");
                    assert_consistent(&mem, end, &format!("seed {seed} after {e}")).await;
                }
            }
        }
        assert!(done.is_some(), "seed {seed}: no pass succeeded");
        assert!(failures > 0, "seed {seed}: no fault hit a pass");
        let st = faulty.stats();
        assert!(st.failed_after > 0, "{st:?}");

        // The end state: one 2d, one 8h, one 2h raw block and one 5m block; no partial
        // upload left behind, nothing pending, and a further pass has nothing to do.
        faulty.set_enabled(false);
        assert_consistent(&mem, end, &format!("seed {seed} at the end")).await;
        let l = bucket::list_metas(&mem).await.unwrap();
        assert!(
            l.partial.is_empty(),
            "seed {seed}: partial uploads {:?}",
            l.partial
        );
        assert!(crate::compact::read_pending(&c.data_dir)
            .unwrap()
            .is_empty());
        let mut spans: Vec<i64> = effective_raw(&mem)
            .await
            .iter()
            .map(|m| (m.max_time - m.min_time) / H)
            .collect();
        spans.sort();
        assert_eq!(spans, vec![2, 8, 48], "seed {seed}");
        let live = crate::compact::sync(&mem).await.unwrap().live_blocks();
        let n5m = live
            .iter()
            .filter(|m| planner::resolution(m) == RES_5M)
            .count();
        assert_eq!(n5m, 1, "seed {seed}");
        let again = compact_pass(&fb, &c, &NoProgress).await.unwrap();
        assert_eq!(again, Summary::default(), "seed {seed}");
    }
}

#[tokio::test]
async fn interrupted_upload_is_removed_or_kept_by_the_next_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let mem: Bucket = Arc::new(InMemory::new());
    build_bucket(&mem, tmp.path()).await;
    let c = cfg(&tmp.path().join("scratch"));
    let before = bucket::list_block_dirs(&mem).await.unwrap().len();
    let faulty = Arc::new(FaultyStore::new(mem.clone(), FaultConfig::default()));
    let fb: Bucket = faulty.clone();
    // Requests fail (never after taking effect) until a pass dies inside an upload.
    let mut left_partial = false;
    for seed in 0..50u64 {
        let f = Arc::new(FaultyStore::new(
            mem.clone(),
            FaultConfig {
                seed,
                write_fail_rate: 0.3,
                fail_after_effect: 0.0,
                ..Default::default()
            },
        ));
        let b: Bucket = f.clone();
        if compact_pass(&b, &c, &NoProgress).await.is_err()
            && !bucket::list_metas(&mem).await.unwrap().partial.is_empty()
        {
            left_partial = true;
            break;
        }
    }
    assert!(left_partial, "no pass died inside an upload");
    assert!(!crate::compact::read_pending(&c.data_dir)
        .unwrap()
        .is_empty());
    // The next (fault-free) pass deletes the partial upload first.
    faulty.set_enabled(false);
    compact_pass(&fb, &c, &NoProgress).await.unwrap();
    let l = bucket::list_metas(&mem).await.unwrap();
    assert!(l.partial.is_empty(), "{:?}", l.partial);
    assert!(crate::compact::read_pending(&c.data_dir)
        .unwrap()
        .is_empty());
    assert!(bucket::list_block_dirs(&mem).await.unwrap().len() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactors_at_once_lose_and_duplicate_nothing() {
    // Reference: one compactor on the same input.
    let tmp = tempfile::tempdir().unwrap();
    let single: Bucket = Arc::new(InMemory::new());
    let end = build_bucket(&single, tmp.path()).await;
    compact_pass(&single, &cfg(&tmp.path().join("s")), &NoProgress)
        .await
        .unwrap();
    let shape = |ms: Vec<BlockMeta>| {
        let mut v: Vec<(i64, i64, i64, u64)> = ms
            .iter()
            .map(|m| {
                (
                    m.min_time,
                    m.max_time,
                    planner::resolution(m),
                    m.stats.num_samples,
                )
            })
            .collect();
        v.sort();
        v
    };
    let want = shape(crate::compact::sync(&single).await.unwrap().live_blocks());

    let mut duplicates = 0;
    for seed in 0..4u64 {
        let mem: Bucket = Arc::new(InMemory::new());
        build_bucket(&mem, tmp.path()).await;
        // Stalls only, so the two interleave differently each round.
        let faulty: Bucket = Arc::new(FaultyStore::new(
            mem.clone(),
            FaultConfig {
                seed,
                stall_rate: 0.3,
                stall: Duration::from_millis(1),
                ..Default::default()
            },
        ));
        let (ca, cb) = (
            cfg(&tmp.path().join(format!("a{seed}"))),
            cfg(&tmp.path().join(format!("b{seed}"))),
        );
        let (fa, fb) = (faulty.clone(), faulty.clone());
        let ta = tokio::spawn(async move { compact_pass(&fa, &ca, &NoProgress).await });
        let tb = tokio::spawn(async move { compact_pass(&fb, &cb, &NoProgress).await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        ra.unwrap();
        rb.unwrap();
        // Before any clean-up: consistent, every sample once in the effective blocks.
        assert_consistent(&mem, end, &format!("seed {seed} after two compactors")).await;
        let st = crate::compact::sync(&mem).await.unwrap();
        duplicates += st.live_blocks().len() - want.len();
        // A third pass resolves the duplicates: the same end state as one compactor.
        compact_pass(
            &mem,
            &cfg(&tmp.path().join(format!("c{seed}"))),
            &NoProgress,
        )
        .await
        .unwrap();
        assert_consistent(&mem, end, &format!("seed {seed} after the third pass")).await;
        let live = crate::compact::sync(&mem).await.unwrap().live_blocks();
        assert_eq!(shape(live), want, "seed {seed}");
    }
    assert!(duplicates > 0, "the two compactors never raced");
}
