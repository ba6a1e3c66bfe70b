//! End-to-end tests of the bucket store over real blocks written by the tsdb and uploaded in
//! Thanos's layout to a local-directory bucket, through a wrapper that counts requests.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOpts,
    PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;
use strata_compactor::bucket::{self as layout, Bucket, DeletionMark, DELETION_MARK_FILE};
use strata_promql::Engine;
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::labels::{Labels, Matcher};
use strata_tsdb::storage::{Appender, Queryable};
use ulid::Ulid;

use super::*;

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;

/// One request seen by [`Counting`].
#[derive(Debug, Clone)]
struct Req {
    key: String,
    /// `None` for a whole-object GET.
    range: Option<Range<usize>>,
}

/// Counts GETs (whole and ranged) and the bytes they return.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: Mutex<Vec<Req>>,
}

impl Counting {
    fn take(&self) -> Vec<Req> {
        std::mem::take(&mut *self.gets.lock())
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOpts,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let range = match &options.range {
            Some(object_store::GetRange::Bounded(r)) => Some(r.clone()),
            Some(_) => Some(0..0),
            None => None,
        };
        self.gets.lock().push(Req {
            key: location.to_string(),
            range,
        });
        self.inner.get_opts(location, options).await
    }
    async fn get_range(&self, location: &Key, range: Range<usize>) -> object_store::Result<Bytes> {
        self.gets.lock().push(Req {
            key: location.to_string(),
            range: Some(range.clone()),
        });
        self.inner.get_range(location, range).await
    }
    async fn get_ranges(
        &self,
        location: &Key,
        ranges: &[Range<usize>],
    ) -> object_store::Result<Vec<Bytes>> {
        for r in ranges {
            self.gets.lock().push(Req {
                key: location.to_string(),
                range: Some(r.clone()),
            });
        }
        self.inner.get_ranges(location, ranges).await
    }
    async fn head(&self, location: &Key) -> object_store::Result<ObjectMeta> {
        self.inner.head(location).await
    }
    async fn delete(&self, location: &Key) -> object_store::Result<()> {
        self.inner.delete(location).await
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'_, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }
    async fn copy_if_not_exists(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    rt: tokio::runtime::Runtime,
    counting: Arc<Counting>,
    bucket: Bucket,
    /// Holds every sample in its head: the reference.
    reference: Arc<Db>,
    /// Local block directories `[0,2h)`, `[2h,4h)`, `[4h,6h)` with their metas.
    blocks: Vec<(PathBuf, BlockMeta)>,
}

fn opts() -> DbOptions {
    DbOptions {
        compaction_interval: None,
        retention_time: 0,
        ..Default::default()
    }
}

/// 10 counters `http_requests_total{code, instance}` and 3 gauges `temp{room}`, one sample
/// every 15 s for 6 hours, written into a Db and as three 2-hour blocks.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let reference = Db::open(root.join("ref"), opts()).unwrap();
    let mut app = reference.appender().unwrap();
    for step in 0..(6 * H / 15_000) {
        let t = step * 15_000;
        for i in 0..5 {
            for (c, code) in ["200", "500"].iter().enumerate() {
                let inst = format!("i{i}");
                let v = (step * (i + 1) * (c as i64 * 3 + 1)) as f64;
                let l = Labels::from_pairs(&[
                    ("__name__", "http_requests_total"),
                    ("code", code),
                    ("instance", &inst),
                    ("job", "api"),
                ]);
                app.append(&l, t, v).unwrap();
            }
        }
        for r in 0..3 {
            let room = format!("r{r}");
            let v = 20.0 + ((step + r * 7) % 50) as f64 * 0.1;
            let l = Labels::from_pairs(&[("__name__", "temp"), ("room", &room)]);
            app.append(&l, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    let bdir = root.join("blocks");
    std::fs::create_dir_all(&bdir).unwrap();
    let mut blocks = Vec::new();
    for k in 0..3 {
        let meta = strata_tsdb::compact::write_head_block(
            &bdir,
            reference.head(),
            k * 2 * H,
            (k + 1) * 2 * H,
        )
        .unwrap()
        .unwrap();
        blocks.push((bdir.join(meta.ulid.to_string()), meta));
    }
    let bucket_dir = root.join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let inner: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&bucket_dir).unwrap());
    let counting = Arc::new(Counting {
        inner,
        gets: Mutex::new(Vec::new()),
    });
    let bucket: Bucket = counting.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        _tmp: tmp,
        root,
        rt,
        counting,
        bucket,
        reference,
        blocks,
    }
}

impl Fixture {
    fn upload(&self, i: usize, labels: &[(&str, &str)], new_id: bool) -> BlockMeta {
        let (dir, meta) = &self.blocks[i];
        let mut meta = meta.clone();
        if new_id {
            meta.ulid = Ulid::new();
        }
        meta.thanos = Some(ThanosMeta {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            source: "test".into(),
            ..Default::default()
        });
        self.rt
            .block_on(layout::upload_block(&self.bucket, dir, &meta))
            .unwrap();
        meta
    }

    fn store(&self, cache: &str, o: BucketStoreOptions) -> BucketStore {
        BucketStore::new(self.bucket.clone(), self.root.join(cache), o).unwrap()
    }
}

fn test_opts() -> BucketStoreOptions {
    BucketStoreOptions {
        cache_bytes: 1 << 20,
        ..Default::default()
    }
}

const EXPRS: &[&str] = &[
    "rate(http_requests_total[5m])",
    "sum by (code) (rate(http_requests_total[5m]))",
    "max_over_time(temp[30m])",
    "http_requests_total{instance=\"i3\",code=~\"5..\"}",
    "count(temp)",
];

fn assert_same_answers(engine: &Engine, a: &dyn Queryable, b: &dyn Queryable) {
    for e in EXPRS {
        let ra = engine
            .query_range(a, e, 10 * MIN, 6 * H - 1, 5 * MIN)
            .unwrap();
        let rb = engine
            .query_range(b, e, 10 * MIN, 6 * H - 1, 5 * MIN)
            .unwrap();
        assert_eq!(ra.value, rb.value, "range query {e}");
        for t in [MIN, 2 * H - 1, 2 * H + 30_000, 5 * H] {
            let ra = engine.query_instant(a, e, t).unwrap();
            let rb = engine.query_instant(b, e, t).unwrap();
            assert_eq!(ra.value, rb.value, "instant query {e} at {t}");
        }
    }
    let m = [Matcher::equal("__name__", "http_requests_total")];
    let qa = a.querier(0, 6 * H).unwrap();
    let qb = b.querier(0, 6 * H).unwrap();
    assert_eq!(
        qa.label_values("instance", &[]).unwrap(),
        qb.label_values("instance", &[]).unwrap()
    );
    assert_eq!(
        qa.label_values("code", &m).unwrap(),
        qb.label_values("code", &m).unwrap()
    );
    assert_eq!(qa.label_names(&[]).unwrap(), qb.label_names(&[]).unwrap());
    let la: Vec<Labels> = qa
        .select(true, None, &m)
        .map(|s| s.unwrap().labels().clone())
        .collect();
    let lb: Vec<Labels> = qb
        .select(true, None, &m)
        .map(|s| s.unwrap().labels().clone())
        .collect();
    assert_eq!(la.len(), 10);
    assert_eq!(la, lb);
}

#[test]
fn queries_match_the_local_database() {
    let f = fixture();
    for i in 0..3 {
        f.upload(i, &[], false);
    }
    let store = f.store("cache", test_opts());
    let r = store.sync_blocking().unwrap();
    assert_eq!(r.loaded.len(), 3, "{r:?}");
    let engine = Engine::default();
    assert_same_answers(&engine, &*f.reference, &store);
    // Index files were each downloaded once; chunk files never whole.
    let reqs = f.counting.take();
    let index_gets = reqs.iter().filter(|r| r.key.ends_with("/index")).count();
    assert_eq!(index_gets, 3);
    assert!(reqs
        .iter()
        .filter(|r| r.key.contains("/chunks/"))
        .all(|r| r.range.is_some()));
    // Once more: everything from the cache, no new GET at all.
    assert_same_answers(&engine, &*f.reference, &store);
    let again = f.counting.take();
    assert!(
        again.iter().all(|r| !r.key.contains("/chunks/")),
        "{} chunk GETs although everything is cached",
        again.len()
    );
    assert!(store.stats().cache.hits > 0);
}

#[test]
fn small_queries_fetch_little_and_merge_ranges() {
    let f = fixture();
    for i in 0..3 {
        f.upload(i, &[], false);
    }
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    f.counting.take();
    let seg_size = |id: &Ulid| {
        std::fs::metadata(f.root.join(format!("bucket/{id}/chunks/000001")))
            .unwrap()
            .len() as usize
    };
    // One series, one point in time: one small ranged GET.
    let engine = Engine::default();
    let res = engine
        .query_instant(
            &store,
            "http_requests_total{instance=\"i1\",code=\"200\"}",
            H,
        )
        .unwrap();
    assert!(matches!(res.value, strata_promql::engine::Value::Vector(ref v) if v.len() == 1));
    let reqs = f.counting.take();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = reqs[0].range.clone().unwrap();
    let b0 = f.blocks[0].1.ulid;
    assert!(reqs[0].key.contains(&b0.to_string()));
    assert!(r.len() < seg_size(&b0) / 4, "{r:?} of {}", seg_size(&b0));

    // Every series of one block: many chunks, one merged GET.
    let store = f.store("cache2", test_opts());
    store.sync_blocking().unwrap();
    f.counting.take();
    let q = store.querier(2 * H, 4 * H - 1).unwrap();
    let mut series = 0;
    let mut samples = 0;
    for s in q.select(true, None, &[Matcher::equal("job", "api")]) {
        let s = s.unwrap();
        let mut it = s.iterator();
        while it.next() {
            samples += 1;
        }
        series += 1;
    }
    assert_eq!(series, 10);
    assert_eq!(samples, 10 * 480);
    let reqs: Vec<Req> = f
        .counting
        .take()
        .into_iter()
        .filter(|r| r.key.contains("/chunks/"))
        .collect();
    let b1 = f.blocks[1].1.ulid;
    assert_eq!(
        reqs.len(),
        1,
        "chunks of 10 series should be one GET: {reqs:?}"
    );
    assert!(reqs[0].key.contains(&b1.to_string()));
    assert!(reqs[0].range.clone().unwrap().len() <= seg_size(&b1));
    assert_eq!(store.stats().chunk_gets, 1);

    // The first chunk of 4 series that are apart in the file: one GET with the default gap,
    // four with no gap allowed.
    let sel = [Matcher::new(strata_tsdb::MatchType::Regexp, "instance", "i0|i4").unwrap()];
    for (gap, want) in [(512 << 10, 1), (0, 4)] {
        let s = f.store(
            &format!("cache-gap{gap}"),
            BucketStoreOptions {
                chunk_range_gap: gap,
                cache_bytes: 0,
                ..Default::default()
            },
        );
        s.sync_blocking().unwrap();
        f.counting.take();
        let q = s.querier(2 * H, 2 * H + 10 * MIN).unwrap();
        let mut n = 0;
        for x in q.select(true, None, &sel) {
            let mut it = x.unwrap().iterator();
            assert!(it.next());
            n += 1;
        }
        assert_eq!(n, 4);
        let reqs = f.counting.take();
        assert_eq!(reqs.len(), want, "gap {gap}: {reqs:?}");
        assert!(reqs
            .iter()
            .all(|r| r.range.as_ref().unwrap().len() < seg_size(&b1) / 2));
    }
}

#[test]
fn index_is_downloaded_once_and_reused_across_restarts() {
    let f = fixture();
    f.upload(0, &[], false);
    f.upload(1, &[], false);
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    store.sync_blocking().unwrap();
    assert_eq!(store.stats().index_downloads, 2);
    drop(store);
    f.counting.take();
    let store = f.store("cache", test_opts());
    let r = store.sync_blocking().unwrap();
    assert_eq!(r.loaded.len(), 2);
    assert_eq!(store.stats().index_downloads, 0);
    assert!(f.counting.take().iter().all(|r| !r.key.ends_with("/index")));
    // A damaged cached index is fetched again.
    let id = f.blocks[0].1.ulid;
    let p = f.root.join(format!("cache/{id}/index"));
    drop(store);
    std::fs::write(&p, b"garbage").unwrap();
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    assert_eq!(store.stats().index_downloads, 1);
    assert_eq!(store.blocks().len(), 2);
}

#[test]
fn sync_ignores_partial_and_marked_blocks_and_follows_changes() {
    let f = fixture();
    let m0 = f.upload(0, &[], false);
    let m1 = f.upload(1, &[], false);
    // A partial upload: index and chunks, no meta.json.
    let partial = Ulid::new();
    let rt = &f.rt;
    rt.block_on(async {
        let (dir, _) = &f.blocks[2];
        for rel in ["index", "chunks/000001"] {
            let data = std::fs::read(dir.join(rel)).unwrap();
            f.bucket
                .put(&layout::block_key(&partial, rel).unwrap(), data.into())
                .await
                .unwrap();
        }
    });
    let store = f.store("cache", test_opts());
    let r = rt.block_on(store.sync()).unwrap();
    assert_eq!(r.loaded, {
        let mut v = vec![m0.ulid, m1.ulid];
        v.sort();
        v
    });
    assert_eq!(r.partial, vec![partial]);
    // Mark block 1 for deletion: dropped, its data gone from answers, its cache removed.
    rt.block_on(layout::write_mark(
        &f.bucket,
        &m1.ulid,
        DELETION_MARK_FILE,
        &DeletionMark {
            id: m1.ulid,
            deletion_time: 1,
            version: 1,
            details: String::new(),
        },
    ))
    .unwrap();
    let r = rt.block_on(store.sync()).unwrap();
    assert_eq!(r.dropped, vec![m1.ulid]);
    assert_eq!(r.marked, vec![m1.ulid]);
    assert!(!f.root.join(format!("cache/{}", m1.ulid)).exists());
    let q = store.querier(0, 6 * H).unwrap();
    let mut maxt = i64::MIN;
    for s in q.select(true, None, &[Matcher::equal("__name__", "temp")]) {
        let mut it = s.unwrap().iterator();
        while it.next() {
            maxt = maxt.max(it.at().0);
        }
    }
    assert!(maxt < 2 * H, "{maxt}");
    // A new block appears; a deleted one disappears.
    let m2 = f.upload(2, &[], false);
    rt.block_on(layout::delete_block(&f.bucket, &m0.ulid))
        .unwrap();
    let r = rt.block_on(store.sync()).unwrap();
    assert_eq!(r.loaded, vec![m2.ulid]);
    assert_eq!(r.dropped, vec![m0.ulid]);
    assert_eq!(
        store.blocks().iter().map(|m| m.ulid).collect::<Vec<_>>(),
        vec![m2.ulid]
    );
    // Consistency delay: a fresh block waits.
    let delayed = f.store(
        "cache2",
        BucketStoreOptions {
            consistency_delay: std::time::Duration::from_secs(3600),
            ..test_opts()
        },
    );
    let r = rt.block_on(delayed.sync()).unwrap();
    assert_eq!(r.too_recent, vec![m2.ulid]);
    assert!(delayed.blocks().is_empty());
}

#[test]
fn sync_loop_picks_up_new_blocks() {
    let f = fixture();
    let store = f.store(
        "cache",
        BucketStoreOptions {
            sync_interval: std::time::Duration::from_millis(20),
            ..test_opts()
        },
    );
    let h = store.spawn_sync_loop().unwrap();
    f.upload(0, &[], false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.blocks().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sync loop never loaded the block"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    h.abort();
}

#[test]
fn fan_in_does_not_double_a_block_both_local_and_in_the_bucket() {
    let f = fixture();
    for i in 0..3 {
        f.upload(i, &[], false);
    }
    // The local database holds block 1 (also in the bucket) and nothing else.
    let local_dir = f.root.join("local");
    std::fs::create_dir_all(&local_dir).unwrap();
    let (b1, m1) = &f.blocks[1];
    copy_dir(b1, &local_dir.join(m1.ulid.to_string()));
    let local = Db::open(&local_dir, opts()).unwrap();
    assert_eq!(local.blocks().len(), 1);
    // The database directory cannot double as the bucket cache.
    assert!(BucketStore::new(f.bucket.clone(), local_dir.clone(), test_opts()).is_err());
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    let fan = FanIn::new(vec![local.clone(), Arc::new(store.clone())]);
    assert_same_answers(&Engine::default(), &*f.reference, &fan);
}

#[test]
fn replica_label_dedup_merges_replicas() {
    let f = fixture();
    // Two replicas of the whole data set, told apart by an external label.
    for i in 0..3 {
        f.upload(i, &[("replica", "a")], true);
        f.upload(i, &[("replica", "b")], true);
    }
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    assert_eq!(store.blocks().len(), 6);
    // Without dedup each series appears once per replica, with the external label.
    let q = store.querier(0, 6 * H).unwrap();
    let m = [Matcher::equal("__name__", "temp")];
    let names: Vec<Labels> = q
        .select(true, None, &m)
        .map(|s| s.unwrap().labels().clone())
        .collect();
    assert_eq!(names.len(), 6);
    assert_eq!(names[0].get("replica"), Some("a"));
    assert_eq!(q.label_values("replica", &[]).unwrap(), vec!["a", "b"]);
    let only_b = [m[0].clone(), Matcher::equal("replica", "b")];
    assert_eq!(q.select(true, None, &only_b).count(), 3);
    // With dedup the answers are the reference's.
    let fan = FanIn::new(vec![Arc::new(store.clone())]).with_replica_labels(vec!["replica".into()]);
    assert_same_answers(&Engine::default(), &*f.reference, &fan);
    let fq = fan.querier(0, 6 * H).unwrap();
    assert!(!fq
        .label_names(&[])
        .unwrap()
        .contains(&"replica".to_string()));
}

#[test]
fn querier_with_resolution_prefers_coarse_blocks() {
    let f = fixture();
    f.upload(0, &[], false);
    f.upload(1, &[], false);
    // Pretend block 0's data were also a 5m-resolution block (raw chunks, so decodable).
    let (dir, meta) = &f.blocks[0];
    let mut ds = meta.clone();
    ds.ulid = Ulid::new();
    ds.thanos = Some(ThanosMeta {
        downsample: strata_tsdb::block::meta::ThanosDownsample {
            resolution: 300_000,
        },
        ..Default::default()
    });
    f.rt.block_on(layout::upload_block(&f.bucket, dir, &ds))
        .unwrap();
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    // Raw: both raw blocks; 5m allowed: the 5m block for [0,2h) and raw for the rest. The
    // answers are the same since the "downsampled" block holds the raw samples.
    f.counting.take();
    let engine = Engine::default();
    let raw = engine
        .query_range(
            &store,
            "max_over_time(temp[30m])",
            10 * MIN,
            4 * H - 1,
            5 * MIN,
        )
        .unwrap();
    let raw_keys: Vec<String> = f.counting.take().into_iter().map(|r| r.key).collect();
    let coarse = engine
        .query_range(
            &store.at_resolution(300_000),
            "max_over_time(temp[30m])",
            10 * MIN,
            4 * H - 1,
            5 * MIN,
        )
        .unwrap();
    let coarse_keys: Vec<String> = f.counting.take().into_iter().map(|r| r.key).collect();
    assert_eq!(raw.value, coarse.value);
    assert!(raw_keys
        .iter()
        .any(|k| k.starts_with(&meta.ulid.to_string())));
    assert!(!raw_keys.iter().any(|k| k.starts_with(&ds.ulid.to_string())));
    assert!(coarse_keys
        .iter()
        .any(|k| k.starts_with(&ds.ulid.to_string())));
    assert!(!coarse_keys
        .iter()
        .any(|k| k.starts_with(&meta.ulid.to_string())));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Raw, 5m and 1h blocks of the same day of data, uploaded: counters `c{s}` (steady rates,
/// reset every few hours) and gauges `g{s}` (a slow wave), one sample every 15 s at 1 s past
/// the quarter minute, so no raw sample sits on a window or step boundary.
fn downsampled_fixture() -> (Fixture, Vec<BlockMeta>) {
    let f = fixture();
    let dir = f.root.join("ds");
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::open(dir.join("db"), opts()).unwrap();
    let mut app = db.appender().unwrap();
    for step in 0..(24 * H / 15_000) {
        let t = 1_000 + step * 15_000;
        for s in 0..4i64 {
            let name = s.to_string();
            let c = Labels::from_pairs(&[("__name__", "c"), ("s", &name)]);
            let period = (3 + s) * H / 15_000;
            app.append(&c, t, ((step % period) * (s + 1)) as f64)
                .unwrap();
            let g = Labels::from_pairs(&[("__name__", "g"), ("s", &name)]);
            let v = 50.0 + 40.0 * ((step as f64) / 400.0 + s as f64).sin();
            app.append(&g, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    let raw = strata_tsdb::compact::write_head_block(&dir, db.head(), 0, 24 * H)
        .unwrap()
        .unwrap();
    let raw_block = strata_tsdb::block::Block::open(&dir.join(raw.ulid.to_string())).unwrap();
    let m5 = strata_compactor::downsample::downsample_block(&raw_block, &raw, &dir, 300_000)
        .unwrap()
        .unwrap();
    let b5 = strata_tsdb::block::Block::open(&dir.join(m5.ulid.to_string())).unwrap();
    let h1 = strata_compactor::downsample::downsample_block(&b5, &m5, &dir, 3_600_000)
        .unwrap()
        .unwrap();
    for m in [&raw, &m5, &h1] {
        let mut m = m.clone();
        m.thanos.get_or_insert_with(ThanosMeta::default);
        f.rt.block_on(layout::upload_block(
            &f.bucket,
            &dir.join(m.ulid.to_string()),
            &m,
        ))
        .unwrap();
    }
    (f, vec![raw, m5, h1])
}

/// `(labels, t) -> value` of a range query's result.
fn points(
    r: strata_promql::Result<strata_promql::engine::QueryResult>,
) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    match r.unwrap().value {
        strata_promql::engine::Value::Matrix(m) => {
            for s in m {
                for (t, v) in s.floats {
                    out.insert((s.metric.to_string(), t), v);
                }
            }
        }
        v => panic!("not a matrix: {v:?}"),
    }
    out
}

#[test]
fn downsampled_blocks_answer_within_documented_bounds() {
    let (f, metas) = downsampled_fixture();
    assert_eq!(
        metas
            .iter()
            .map(|m| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution))
            .collect::<Vec<_>>(),
        vec![0, 300_000, 3_600_000]
    );
    let store = f.store("cache", test_opts());
    store.sync_blocking().unwrap();
    let engine = Engine::default();
    let (start, end) = (3 * H, 23 * H);
    for (res, range) in [(300_000i64, "30m"), (3_600_000, "3h")] {
        let coarse = store.at_resolution(res);
        let q = |e: &str, on: &dyn Queryable| points(engine.query_range(on, e, start, end, H));
        let same_points = |a: &BTreeMap<(String, i64), f64>, b: &BTreeMap<(String, i64), f64>| {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "res {res}"
            );
        };
        // Exact: window-aligned ranges see the same samples (none on a boundary).
        for e in [
            format!("max_over_time(g[{range}])"),
            format!("min_over_time(g[{range}])"),
            format!("sum_over_time(g[{range}])"),
            format!("max(max_over_time(g[{range}]))"),
            "count(g)".to_string(),
        ] {
            let (raw, ds) = (q(&e, &store), q(&e, &coarse));
            assert!(!raw.is_empty(), "{e}");
            same_points(&raw, &ds);
            for (k, v) in &raw {
                let d = ds[k];
                assert!(
                    (v - d).abs() <= 1e-9 * v.abs().max(1.0),
                    "{e} res {res} {k:?}: raw {v} downsampled {d}"
                );
            }
        }
        // The coarse answers do come from the downsampled blocks: count_over_time counts
        // their windows (documented), not raw samples.
        let e = format!("count_over_time(g[{range}])");
        let (raw, ds) = (q(&e, &store), q(&e, &coarse));
        let range_ms = if res == 300_000 { 30 * MIN } else { 3 * H };
        assert!(
            raw.values().all(|v| *v == (range_ms / 15_000) as f64),
            "{e}"
        );
        assert!(
            ds.values().all(|v| *v == (range_ms / res) as f64),
            "{e} res {res}: {ds:?}"
        );
        // avg_over_time: sum / count over whole windows of equal counts: exact up to rounding.
        let e = format!("avg_over_time(g[{range}])");
        let (raw, ds) = (q(&e, &store), q(&e, &coarse));
        same_points(&raw, &ds);
        for (k, v) in &raw {
            assert!(
                (v - ds[k]).abs() < 1e-6,
                "{e} res {res} {k:?}: {v} vs {}",
                ds[k]
            );
        }
        // rate/increase over counters with resets: within 2% of the raw answer (only the
        // extrapolation at the range's edges differs).
        for e in [
            format!("rate(c[{range}])"),
            format!("sum(increase(c[{range}]))"),
        ] {
            let (raw, ds) = (q(&e, &store), q(&e, &coarse));
            same_points(&raw, &ds);
            for (k, v) in &raw {
                let d = ds[k];
                assert!(
                    (v - d).abs() <= 0.02 * v.abs(),
                    "{e} res {res} {k:?}: raw {v} downsampled {d}"
                );
            }
        }
        // A plain selector reads the window average: between the window's min and max.
        let ds = q("sum(g)", &coarse);
        let lo = q(&format!("sum(min_over_time(g[{}m]))", res / 60_000), &store);
        let hi = q(&format!("sum(max_over_time(g[{}m]))", res / 60_000), &store);
        same_points(&lo, &ds);
        for (k, v) in &ds {
            assert!(
                lo[k] - 1e-9 <= *v && *v <= hi[k] + 1e-9,
                "sum(g) res {res} {k:?}: {} <= {v} <= {}",
                lo[k],
                hi[k]
            );
        }
        assert!(!ds.is_empty());
    }
}
