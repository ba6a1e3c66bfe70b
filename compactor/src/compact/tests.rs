use super::*;
use crate::downsample::{AggrChunk, AggrType};
use crate::testutil::{read_all, upload, write_local};
use object_store::memory::InMemory;

const H: i64 = 3_600_000;
const M: i64 = 60_000;

fn cfg(dir: &Path, downsampling: bool) -> CompactConfig {
    let mut c = CompactConfig::new(dir.join("scratch"));
    c.downsampling = downsampling;
    c
}

async fn marked(bucket: &Bucket, id: &Ulid) -> bool {
    bucket::exists(
        bucket,
        &bucket::block_key(id, bucket::DELETION_MARK_FILE).unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn four_2h_blocks_become_one_8h_block() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    let lab = [("cluster", "eu")];
    let mut src = Vec::new();
    // Five blocks: the newest stays out of the plan (Thanos leaves the latest upload alone).
    for i in 0..5 {
        let m = upload(
            &bucket,
            tmp.path(),
            &lab,
            i * 2 * H,
            (i + 1) * 2 * H,
            M,
            |s, t| (s as i64 * 1000 + t / M) as f64,
        )
        .await;
        src.push(m);
    }
    let sum = compact_pass(&bucket, &cfg(tmp.path(), false), &NoProgress)
        .await
        .unwrap();
    assert_eq!(sum.compactions, 1);
    assert_eq!(sum.blocks_compacted, 4);
    assert_eq!(sum.marked_for_deletion, 4);
    for m in &src[..4] {
        assert!(marked(&bucket, &m.ulid).await, "{} not marked", m.ulid);
    }
    assert!(!marked(&bucket, &src[4].ulid).await);
    let st = sync(&bucket).await.unwrap();
    let live = st.live_blocks();
    assert_eq!(live.len(), 2);
    let big = live
        .iter()
        .find(|m| m.max_time - m.min_time == 8 * H)
        .unwrap();
    assert_eq!(big.compaction.level, 2);
    assert_eq!(big.compaction.sources.len(), 4);
    let th = big.thanos.as_ref().unwrap();
    assert_eq!(th.source, "compactor");
    assert_eq!(th.labels.get("cluster").map(String::as_str), Some("eu"));
    assert!(th
        .files
        .iter()
        .any(|f| f.rel_path == "index" && f.size_bytes > 0));
    assert_eq!(big.stats.num_samples, 2 * 8 * 60);
    // Every sample is there.
    let dl = tempfile::tempdir().unwrap();
    let dir = bucket::download_block(&bucket, &big.ulid, dl.path())
        .await
        .unwrap();
    let all = read_all(&dir);
    assert_eq!(all.len(), 2);
    for (i, v) in &all {
        let s: i64 = i.parse().unwrap();
        assert_eq!(v.len(), 480);
        assert!(v.iter().all(|&(t, x)| x == (s * 1000 + t / M) as f64));
    }
    // A second pass finds nothing to do.
    let again = compact_pass(&bucket, &cfg(tmp.path(), false), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again, Summary::default());
}

#[tokio::test]
async fn replicas_merge_vertically_with_dedup() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    // Two replicas of the same 2h: replica b scraped every 30s, a every minute, same values.
    let a = upload(
        &bucket,
        tmp.path(),
        &[("cluster", "eu"), ("replica", "a")],
        0,
        2 * H,
        M,
        |_, t| t as f64,
    )
    .await;
    let b = upload(
        &bucket,
        tmp.path(),
        &[("cluster", "eu"), ("replica", "b")],
        0,
        2 * H,
        M / 2,
        |_, t| t as f64,
    )
    .await;
    // Without the replica label they are separate groups: nothing to merge.
    let s = compact_pass(&bucket, &cfg(tmp.path(), false), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.compactions, 0);
    let mut c = cfg(tmp.path(), false);
    c.replica_labels = vec!["replica".into()];
    let s = compact_pass(&bucket, &c, &NoProgress).await.unwrap();
    assert_eq!(s.compactions, 1);
    assert!(marked(&bucket, &a.ulid).await && marked(&bucket, &b.ulid).await);
    let live = sync(&bucket).await.unwrap().live_blocks();
    assert_eq!(live.len(), 1);
    let m = &live[0];
    let labels = &m.thanos.as_ref().unwrap().labels;
    assert_eq!(labels.len(), 1, "{labels:?}");
    let dl = tempfile::tempdir().unwrap();
    let all = read_all(
        &bucket::download_block(&bucket, &m.ulid, dl.path())
            .await
            .unwrap(),
    );
    for v in all.values() {
        // Identical samples at whole minutes collapse: 240 distinct timestamps.
        assert_eq!(v.len(), 240);
        assert!(v.windows(2).all(|w| w[1].0 > w[0].0));
    }
}

#[tokio::test]
async fn no_compact_mark_is_honoured() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    let mut src = Vec::new();
    for i in 0..5 {
        src.push(
            upload(
                &bucket,
                tmp.path(),
                &[],
                i * 2 * H,
                (i + 1) * 2 * H,
                10 * M,
                |_, t| t as f64,
            )
            .await,
        );
    }
    assert!(mark_no_compact(&bucket, &src[1].ulid, "manual", "test")
        .await
        .unwrap());
    let s = compact_pass(&bucket, &cfg(tmp.path(), false), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.compactions, 1);
    assert!(!marked(&bucket, &src[0].ulid).await);
    assert!(!marked(&bucket, &src[1].ulid).await);
    assert!(marked(&bucket, &src[2].ulid).await && marked(&bucket, &src[3].ulid).await);
}

#[tokio::test]
async fn raw_block_of_40h_is_downsampled_to_5m() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    // A counter with a reset every 7 hours, 1/min, over 40h.
    let f = |s: usize, t: i64| ((t % (7 * H)) / M) as f64 + s as f64;
    let raw = upload(&bucket, tmp.path(), &[("cluster", "eu")], 0, 40 * H, M, f).await;
    let s = compact_pass(&bucket, &cfg(tmp.path(), true), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.blocks_downsampled, 1);
    let live = sync(&bucket).await.unwrap().live_blocks();
    assert_eq!(live.len(), 2);
    let ds = live
        .iter()
        .find(|m| planner::resolution(m) == RES_5M)
        .unwrap();
    assert_eq!(ds.compaction.sources, raw.compaction.sources);
    assert_eq!(ds.compaction.level, raw.compaction.level);
    assert_eq!((ds.min_time, ds.max_time), (raw.min_time, raw.max_time));
    assert_eq!(
        ds.thanos.as_ref().unwrap().labels,
        raw.thanos.as_ref().unwrap().labels
    );
    // Aggregates match values computed from the raw samples.
    let dl = tempfile::tempdir().unwrap();
    let dir = bucket::download_block(&bucket, &ds.ulid, dl.path())
        .await
        .unwrap();
    let block = Block::open(&dir).unwrap();
    let ids = block.index().all_postings().unwrap();
    let mut n = 0;
    for r in block.series_iter(ids) {
        let (_, labels, metas) = r.unwrap();
        let si: usize = labels.get("i").unwrap().parse().unwrap();
        let mut chunks = Vec::new();
        for m in &metas {
            let (enc, data) = block.chunk_bytes(m.chunk_ref).unwrap();
            assert_eq!(enc, strata_tsdb::chunkenc::Encoding::Aggr);
            chunks.push(AggrChunk::new(data));
        }
        let mut count = Vec::new();
        let mut sum = Vec::new();
        let mut max = Vec::new();
        for c in &chunks {
            count.extend(c.samples(AggrType::Count).unwrap());
            sum.extend(c.samples(AggrType::Sum).unwrap());
            max.extend(c.samples(AggrType::Max).unwrap());
        }
        assert_eq!(count.len(), 480);
        for (w, &(t, c)) in count.iter().enumerate() {
            let start = w as i64 * 5 * M;
            // The window's last millisecond, or its last sample for the last window of a chunk.
            assert!(t == start + 5 * M - 1 || t == start + 4 * M, "{t}");
            let vals: Vec<f64> = (0..5).map(|k| f(si, start + k * M)).collect();
            assert_eq!(c, 5.0);
            assert_eq!(sum[w], (t, vals.iter().sum()));
            assert_eq!(max[w].1, vals.iter().cloned().fold(f64::MIN, f64::max));
        }
        // The counter series gives the true increase over 40h, resets included.
        let cs = crate::downsample::counter_series(&chunks).unwrap();
        let raw_vals: Vec<f64> = (0..2400).map(|k| f(si, k * M)).collect();
        let mut inc = 0.0;
        for w in raw_vals.windows(2) {
            inc += if w[1] >= w[0] { w[1] - w[0] } else { w[1] };
        }
        assert_eq!(cs.last().unwrap().1 - cs[0].1, inc);
        n += 1;
    }
    assert_eq!(n, 2);
    // Not downsampled twice.
    let again = compact_pass(&bucket, &cfg(tmp.path(), true), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again.blocks_downsampled, 0);
}

#[tokio::test]
async fn short_raw_blocks_are_not_downsampled() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    upload(&bucket, tmp.path(), &[], 0, 39 * H, 10 * M, |_, t| t as f64).await;
    let s = downsample_pass(&bucket, &cfg(tmp.path(), true), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.blocks_downsampled, 0);
}

#[test]
fn files_list_matches_thanos() {
    let tmp = tempfile::tempdir().unwrap();
    let m = write_local(tmp.path(), 0, H, M, 1, |_, t| t as f64);
    let files = gather_files(&tmp.path().join(m.ulid.to_string())).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(names, ["chunks/000001", "index", "meta.json", "tombstones"]);
    assert_eq!(files[2].size_bytes, 0);
}
