use super::*;
use crate::compact::sync;
use crate::testutil::upload;
use object_store::memory::InMemory;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;
use strata_tsdb::block::meta::ThanosMeta;

const D: i64 = 24 * H;

#[tokio::test]
async fn retention_marks_by_resolution() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    let raw = upload(&bucket, tmp.path(), &[], 0, 2 * H, 600_000, |_, t| t as f64).await;
    // A 5m block over the same range (same data; only the meta matters here).
    let mut m5 = crate::testutil::write_local(tmp.path(), 0, 2 * H, 600_000, 1, |_, t| t as f64);
    m5.thanos = Some(ThanosMeta::default());
    m5.thanos.as_mut().unwrap().downsample.resolution = RES_5M;
    bucket::upload_block(&bucket, &tmp.path().join(m5.ulid.to_string()), &m5)
        .await
        .unwrap();
    let r = Retention {
        raw: 10 * D,
        res_5m: 0,
        res_1h: 0,
    };
    // Not yet beyond retention.
    assert!(apply_retention(&bucket, &r, 2 * H + 10 * D)
        .await
        .unwrap()
        .is_empty());
    let marked = apply_retention(&bucket, &r, 2 * H + 10 * D + 1)
        .await
        .unwrap();
    assert_eq!(marked, vec![raw.ulid]);
    // Marking is idempotent and the 5m block is kept (retention 0).
    assert!(apply_retention(&bucket, &r, 100 * D)
        .await
        .unwrap()
        .is_empty());
    let st = sync(&bucket).await.unwrap();
    assert_eq!(st.live_blocks().len(), 1);
    assert_eq!(st.live_blocks()[0].ulid, m5.ulid);
}

#[tokio::test]
async fn deletion_waits_for_the_delay() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let tmp = tempfile::tempdir().unwrap();
    let old = upload(&bucket, tmp.path(), &[], 0, 2 * H, 600_000, |_, t| t as f64).await;
    let new = upload(&bucket, tmp.path(), &[], 2 * H, 4 * H, 600_000, |_, t| {
        t as f64
    })
    .await;
    let keep = upload(&bucket, tmp.path(), &[], 4 * H, 6 * H, 600_000, |_, t| {
        t as f64
    })
    .await;
    let now_s = 1_800_000_000i64;
    for (m, age_h) in [(&old, 49), (&new, 1)] {
        let mark = DeletionMark {
            id: m.ulid,
            deletion_time: now_s - age_h * 3600,
            version: 1,
            details: String::new(),
        };
        bucket::write_mark(&bucket, &m.ulid, bucket::DELETION_MARK_FILE, &mark)
            .await
            .unwrap();
    }
    let deleted = delete_marked(&bucket, DEFAULT_DELETE_DELAY, now_s * 1000)
        .await
        .unwrap();
    assert_eq!(deleted, vec![old.ulid]);
    assert!(bucket::block_objects(&bucket, &old.ulid)
        .await
        .unwrap()
        .is_empty());
    let ids: Vec<Ulid> = bucket::list_metas(&bucket)
        .await
        .unwrap()
        .blocks
        .iter()
        .map(|m| m.ulid)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&new.ulid) && ids.contains(&keep.ulid));
}

#[tokio::test]
async fn partial_uploads_are_cleaned_after_the_threshold() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let id = Ulid::new();
    for f in ["chunks/000001", "index"] {
        bucket
            .put(
                &bucket::block_key(&id, f).unwrap(),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
    }
    let now = crate::compact::now_secs() * 1000;
    assert!(clean_partial(&bucket, PARTIAL_UPLOAD_THRESHOLD, now)
        .await
        .unwrap()
        .is_empty());
    let gone = clean_partial(&bucket, PARTIAL_UPLOAD_THRESHOLD, now + 49 * H)
        .await
        .unwrap();
    assert_eq!(gone, vec![id]);
    assert!(bucket::list_block_dirs(&bucket).await.unwrap().is_empty());
}

#[tokio::test]
async fn interrupted_deletion_is_finished() {
    let bucket: Bucket = Arc::new(InMemory::new());
    let id = Ulid::new();
    bucket
        .put(
            &bucket::block_key(&id, "index").unwrap(),
            PutPayload::from_static(b"x"),
        )
        .await
        .unwrap();
    let mark = DeletionMark {
        id,
        deletion_time: crate::compact::now_secs(),
        version: 1,
        details: String::new(),
    };
    bucket::write_mark(&bucket, &id, bucket::DELETION_MARK_FILE, &mark)
        .await
        .unwrap();
    // Not a partial upload to time out: delete_marked removes it at once.
    assert!(clean_partial(&bucket, 0, i64::MAX / 2)
        .await
        .unwrap()
        .is_empty());
    let gone = delete_marked(
        &bucket,
        DEFAULT_DELETE_DELAY,
        crate::compact::now_secs() * 1000,
    )
    .await
    .unwrap();
    assert_eq!(gone, vec![id]);
}
