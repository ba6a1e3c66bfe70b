//! Shipping and compacting through a store that fails 30% of its requests and stalls some:
//! no block is ever visible without all its files, every block arrives eventually, and the
//! compacted and downsampled bucket holds every sample exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

use super::*;
use crate::bucket::{self, local_bucket, Bucket};
use crate::compact::{compact_pass, sync, CompactConfig, NoProgress, Summary};
use crate::shipper::Shipper;
use crate::testutil::{read_all, write_local};
use crate::verify::{find_overlaps, verify_block};

const H: i64 = 3_600_000;
const M: i64 = 60_000;

fn faulty(real: &Bucket, seed: u64) -> Arc<FaultyStore> {
    Arc::new(FaultyStore::new(
        real.clone(),
        FaultConfig {
            fail_ratio: 0.3,
            stall_ratio: 0.1,
            stall: Duration::from_millis(15),
            seed,
        },
    ))
}

/// `store` behind the retry layer every bucket of Strata has, with short waits.
fn retrying(store: &Arc<FaultyStore>) -> Bucket {
    Arc::new(crate::retry::RetryingStore::new(
        store.clone(),
        crate::retry::RetryPolicy {
            attempts: 6,
            backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
        },
    ))
}

/// Every block with a `meta.json` in `real` has every file its meta lists, at its size.
async fn visible_blocks_are_complete(real: &Bucket) -> std::result::Result<usize, String> {
    let listing = bucket::list_metas(real).await.map_err(|e| e.to_string())?;
    for m in &listing.blocks {
        let objects: BTreeMap<String, u64> = bucket::block_objects(real, &m.ulid)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, n)| {
                (
                    k.as_ref().split_once('/').map_or("", |x| x.1).to_string(),
                    n,
                )
            })
            .collect();
        let files = &m.thanos.as_ref().ok_or("no thanos section")?.files;
        if files.is_empty() {
            return Err(format!("{}: empty files list", m.ulid));
        }
        for f in files {
            match objects.get(&f.rel_path) {
                None => return Err(format!("{} visible without {}", m.ulid, f.rel_path)),
                Some(n) if f.rel_path != "meta.json" && *n as i64 != f.size_bytes => {
                    return Err(format!(
                        "{}/{}: {n} bytes, meta says {}",
                        m.ulid, f.rel_path, f.size_bytes
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(listing.blocks.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipper_through_a_failing_store_never_shows_a_partial_block() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut local = Vec::new();
    for i in 0..12 {
        let m = write_local(&data, i * 2 * H, (i + 1) * 2 * H, 15_000, 3, |s, t| {
            (s as i64 * 7 + t / 15_000) as f64
        });
        local.push(m);
    }
    let real = local_bucket(&tmp.path().join("bucket")).unwrap();
    let store = faulty(&real, 7);
    let shipper = Shipper::new(
        store.clone() as Bucket,
        &data,
        BTreeMap::from([("cluster".to_string(), "eu".to_string())]),
        "strata",
    )
    .with_backoff(Duration::from_millis(1), Duration::from_millis(5));

    // A reader of the real bucket checks what is visible while the shipper works.
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (real, stop) = (real.clone(), stop.clone());
        tokio::spawn(async move {
            let mut checks = 0usize;
            while !stop.load(Ordering::Relaxed) {
                visible_blocks_are_complete(&real).await?;
                checks += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok::<usize, String>(checks)
        })
    };
    let mut rounds = 0;
    while !local.iter().all(|m| shipper.shipped(&m.ulid)) {
        rounds += 1;
        assert!(rounds < 500, "not everything shipped after {rounds} rounds");
        shipper.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let checks = observer.await.unwrap().unwrap();
    assert!(checks > 0);
    assert!(
        store.failures() > 10,
        "only {} failures injected",
        store.failures()
    );
    assert!(shipper.failures_total() > 0, "no upload failed");

    // Everything arrived, complete, with the data of the local block.
    assert_eq!(visible_blocks_are_complete(&real).await.unwrap(), 12);
    let dl = tmp.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    for m in &local {
        let got = bucket::download_block(&real, &m.ulid, &dl).await.unwrap();
        assert_eq!(
            read_all(&got),
            read_all(&data.join(m.ulid.to_string())),
            "{}",
            m.ulid
        );
    }
    let state = crate::shipper::read_state(&data).unwrap().unwrap();
    let want: BTreeSet<Ulid> = local.iter().map(|m| m.ulid).collect();
    assert_eq!(state.uploaded.into_iter().collect::<BTreeSet<_>>(), want);
}

/// The samples of all live raw blocks of `real`, by series; panics on a sample present twice.
async fn live_raw_samples(
    real: &Bucket,
    dl: &std::path::Path,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let st = sync(real).await.unwrap();
    let mut all: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for m in st.live_blocks() {
        let dir = bucket::download_block(real, &m.ulid, dl).await.unwrap();
        verify_block(&dir).unwrap_or_else(|e| panic!("{}: {e}", m.ulid));
        if crate::planner::resolution(&m) != 0 {
            continue;
        }
        for (s, v) in read_all(&dir) {
            all.entry(s).or_default().extend(v);
        }
    }
    for (s, v) in all.iter_mut() {
        v.sort_by_key(|p| p.0);
        let n = v.len();
        v.dedup_by_key(|p| p.0);
        assert_eq!(n, v.len(), "series {s}: samples present twice");
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_through_a_failing_store_ends_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let real = local_bucket(&tmp.path().join("bucket")).unwrap();
    let staging = tmp.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    // Seven 8h blocks: six fill a 2-day range (compacted, then downsampled to 5m), the
    // newest stays.
    let base = 400 * 48 * H;
    let mut want: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for i in 0..7 {
        let mut m: BlockMeta = write_local(
            &staging,
            base + i * 8 * H,
            base + (i + 1) * 8 * H,
            M,
            3,
            |s, t| (s as i64 * 1000 + (t / M) % 997) as f64,
        );
        let dir = staging.join(m.ulid.to_string());
        for (s, v) in read_all(&dir) {
            want.entry(s).or_default().extend(v);
        }
        m.thanos = Some(strata_tsdb::block::meta::ThanosMeta {
            labels: BTreeMap::from([("cluster".to_string(), "eu".to_string())]),
            source: "sidecar".into(),
            ..Default::default()
        });
        crate::compact::upload_new_block(&real, &dir, &mut m)
            .await
            .unwrap();
    }

    let store = faulty(&real, 11);
    let cfg = CompactConfig::new(tmp.path().join("scratch"));
    let mut attempts = 0;
    let mut failed = 0;
    // Passes until one succeeds with nothing left to do.
    loop {
        attempts += 1;
        assert!(attempts < 200, "no quiet pass after {attempts} attempts");
        match compact_pass(&retrying(&store), &cfg, &NoProgress).await {
            Ok(s) if s == Summary::default() => break,
            Ok(_) => {}
            Err(_) => failed += 1,
        }
        // Nothing half-done is ever visible.
        visible_blocks_are_complete(&real).await.unwrap();
    }
    assert!(
        store.failures() > 50,
        "only {} failures injected",
        store.failures()
    );
    eprintln!(
        "{attempts} passes, {failed} failed, {} requests failed",
        store.failures()
    );

    let st = sync(&real).await.unwrap();
    let live = st.live_blocks();
    assert!(
        find_overlaps(&live).is_empty(),
        "{:?}",
        find_overlaps(&live)
    );
    let spans: BTreeSet<(i64, i64)> = live
        .iter()
        .map(|m| (crate::planner::resolution(m), m.max_time - m.min_time))
        .collect();
    assert!(spans.contains(&(0, 48 * H)), "{spans:?}");
    assert!(spans.contains(&(300_000, 48 * H)), "{spans:?}");
    let dl = tmp.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    assert_eq!(live_raw_samples(&real, &dl).await, want);
}
