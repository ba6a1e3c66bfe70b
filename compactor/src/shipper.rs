//! The shipper: uploads the blocks of a local data directory to a bucket in Thanos's layout, as
//! Thanos's sidecar does.
//!
//! Each [`Shipper::sync`] looks at every block directory (`<ULID>/` with a `meta.json`) of the
//! data directory. A block not yet shipped — by default only compaction level 1, i.e. blocks
//! persisted from the head; every level with [`Shipper::with_upload_compacted`] — is uploaded
//! with the `thanos` section of its `meta.json` filled (external labels, resolution 0, source,
//! file list with sizes), `meta.json` last. A block whose `meta.json` is already in the bucket
//! counts as shipped without uploading it again.
//!
//! Shipped blocks are recorded in `<data_dir>/thanos.shipper.json` (Thanos's format,
//! `{"version":1,"uploaded":[...]}`), rewritten atomically after every upload, so a restart
//! uploads nothing twice; blocks no longer present locally drop out of it. A failed upload is
//! logged naming the block and retried by a later sync after an exponential backoff (capped).
//! [`Shipper::shipped`] tells local retention which blocks may go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_tsdb::block::meta::{BlockMeta, ThanosDownsample, ThanosFile, ThanosMeta};
use ulid::Ulid;

use crate::bucket::{self, Bucket, CHUNKS_DIR, INDEX_FILE, META_FILE};
use crate::error::{Error, Result};

/// The state file's name inside the data directory.
pub const STATE_FILE: &str = "thanos.shipper.json";
/// The state file's format version.
pub const STATE_VERSION: u32 = 1;

/// `thanos.shipper.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperState {
    pub version: u32,
    #[serde(default, with = "ulid_list")]
    pub uploaded: Vec<Ulid>,
}

mod ulid_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|u| u.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let v: Option<Vec<String>> = Option::deserialize(d)?;
        v.unwrap_or_default()
            .iter()
            .map(|s| Ulid::from_string(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Reads `<dir>/thanos.shipper.json`; `Ok(None)` when absent.
pub fn read_state(dir: &Path) -> Result<Option<ShipperState>> {
    let path = dir.join(STATE_FILE);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let st: ShipperState = serde_json::from_slice(&b).map_err(|e| Error::ShipperState {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if st.version != STATE_VERSION {
        return Err(Error::ShipperState {
            path,
            detail: format!("unsupported version {}", st.version),
        });
    }
    Ok(Some(st))
}

/// Writes `<dir>/thanos.shipper.json` atomically (temporary file, fsync, rename).
pub fn write_state(dir: &Path, st: &ShipperState) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(st).map_err(|e| Error::ShipperState {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&json)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What one [`Shipper::sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Blocks uploaded by this sync.
    pub uploaded: Vec<Ulid>,
    /// Blocks found already in the bucket (now recorded as shipped).
    pub already_in_bucket: Vec<Ulid>,
    /// Blocks whose upload failed, with the error.
    pub failed: Vec<(Ulid, String)>,
    /// Failed blocks not retried yet (backoff).
    pub deferred: Vec<Ulid>,
    /// Blocks not eligible: compacted (level > 1) without `upload_compacted`, or empty.
    pub skipped: Vec<Ulid>,
}

struct Failure {
    attempts: u32,
    next_try: Instant,
}

struct Inner {
    /// Shipped blocks (uploaded, found in the bucket, or empty).
    uploaded: BTreeSet<Ulid>,
    /// Compacted local blocks whose every source is shipped (safe for retention).
    covered: BTreeSet<Ulid>,
    failures: HashMap<Ulid, Failure>,
}

/// A predicate on block IDs.
pub type BlockFilter = Box<dyn Fn(&Ulid) -> bool + Send + Sync>;

/// Uploads local blocks to a bucket; see the module documentation.
pub struct Shipper {
    bucket: Bucket,
    dir: PathBuf,
    labels: BTreeMap<String, String>,
    source: String,
    upload_compacted: bool,
    /// Only blocks for which this returns true are shipped (e.g. blocks the database opened).
    filter: Option<BlockFilter>,
    backoff_base: Duration,
    backoff_cap: Duration,
    inner: Mutex<Inner>,
    /// One sync at a time.
    sync_mu: tokio::sync::Mutex<()>,
    uploads: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("dir", &self.dir)
            .field("labels", &self.labels)
            .field("source", &self.source)
            .field("upload_compacted", &self.upload_compacted)
            .finish_non_exhaustive()
    }
}

impl Shipper {
    /// A shipper for the blocks of `data_dir`, uploading with `external_labels` and `source`
    /// (Thanos uses `sidecar`/`receive`; Strata uses `strata`) in the `thanos` section. Reads
    /// the state file; an unreadable one is logged and ignored (blocks already in the bucket
    /// are still recognised by their `meta.json`).
    pub fn new(
        bucket: Bucket,
        data_dir: impl Into<PathBuf>,
        external_labels: BTreeMap<String, String>,
        source: &str,
    ) -> Shipper {
        let dir = data_dir.into();
        let uploaded = match read_state(&dir) {
            Ok(Some(st)) => st.uploaded.into_iter().collect(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the shipper state file; blocks already in the bucket will be recognised");
                BTreeSet::new()
            }
        };
        Shipper {
            bucket,
            dir,
            labels: external_labels,
            source: source.to_string(),
            upload_compacted: false,
            filter: None,
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(600),
            inner: Mutex::new(Inner {
                uploaded,
                covered: BTreeSet::new(),
                failures: HashMap::new(),
            }),
            sync_mu: tokio::sync::Mutex::new(()),
            uploads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Also upload compacted blocks (level > 1), as Thanos's `--shipper.upload-compacted`.
    pub fn with_upload_compacted(mut self, on: bool) -> Self {
        self.upload_compacted = on;
        self
    }

    /// Ship only blocks for which `f` returns true (`strata serve` passes "the database opened
    /// this block", so broken blocks are never uploaded); others are skipped this time.
    pub fn with_filter(mut self, f: impl Fn(&Ulid) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(f));
        self
    }

    /// Backoff after a failed upload: `base × 2^(failures-1)`, at most `cap`.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    pub fn upload_compacted(&self) -> bool {
        self.upload_compacted
    }

    /// Whether block `id` is safely in the bucket (uploaded, found there, empty, or — for a
    /// compacted block not shipped itself — every source shipped). Local retention may delete
    /// a block only when this is true.
    pub fn shipped(&self, id: &Ulid) -> bool {
        let g = self.inner.lock();
        g.uploaded.contains(id) || g.covered.contains(id)
    }

    /// Blocks uploaded since start.
    pub fn uploads_total(&self) -> u64 {
        self.uploads.load(Ordering::Relaxed)
    }

    /// Failed uploads since start.
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_cap)
    }

    /// The local block directories with readable metas, by ULID.
    fn local_blocks(&self) -> Result<Vec<(PathBuf, BlockMeta)>> {
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !strata_tsdb::db::is_block_dir_name(&name) || !e.path().is_dir() {
                continue;
            }
            let p = e.path();
            if !p.join(META_FILE).is_file() {
                continue;
            }
            match strata_tsdb::block::meta::read_meta(&p) {
                Ok(m) => out.push((p, m)),
                Err(err) => {
                    tracing::warn!(block = %p.display(), error = %err, "cannot read block meta; not shipping it")
                }
            }
        }
        out.sort_by_key(|(_, m)| m.ulid);
        Ok(out)
    }

    fn save_state(&self, local: &BTreeSet<Ulid>) -> Result<()> {
        let uploaded: Vec<Ulid> = {
            let g = self.inner.lock();
            g.uploaded
                .iter()
                .filter(|u| local.contains(u))
                .copied()
                .collect()
        };
        write_state(
            &self.dir,
            &ShipperState {
                version: STATE_VERSION,
                uploaded,
            },
        )
    }

    /// Uploads every eligible local block not yet shipped; see the module documentation.
    /// Errors are per block (in the report); `Err` only when the data directory or the state
    /// file cannot be read or written.
    pub async fn sync(&self) -> Result<ShipReport> {
        let _one = self.sync_mu.lock().await;
        let mut report = ShipReport::default();
        let blocks = self.local_blocks()?;
        let local: BTreeSet<Ulid> = blocks.iter().map(|(_, m)| m.ulid).collect();
        let mut state_dirty = false;
        {
            // Forget blocks gone locally.
            let mut g = self.inner.lock();
            let before = g.uploaded.len();
            g.uploaded.retain(|u| local.contains(u));
            g.covered.retain(|u| local.contains(u));
            g.failures.retain(|u, _| local.contains(u));
            state_dirty |= g.uploaded.len() != before;
        }
        for (dir, meta) in &blocks {
            let id = meta.ulid;
            if self.shipped(&id) {
                continue;
            }
            if self.filter.as_ref().is_some_and(|f| !f(&id)) {
                report.skipped.push(id);
                continue;
            }
            if meta.compaction.level > 1 && !self.upload_compacted {
                let mut g = self.inner.lock();
                if !meta.compaction.sources.is_empty()
                    && meta
                        .compaction
                        .sources
                        .iter()
                        .all(|s| g.uploaded.contains(s))
                {
                    g.covered.insert(id);
                }
                report.skipped.push(id);
                continue;
            }
            if meta.stats.num_samples == 0 {
                // Nothing to ship (Thanos skips empty blocks too); safe to delete locally.
                self.inner.lock().uploaded.insert(id);
                state_dirty = true;
                report.skipped.push(id);
                continue;
            }
            if let Some(f) = self.inner.lock().failures.get(&id) {
                if f.next_try > Instant::now() {
                    report.deferred.push(id);
                    continue;
                }
            }
            match self.ship_one(dir, meta).await {
                Ok(true) => {
                    tracing::info!(block = %id, mint = meta.min_time, maxt = meta.max_time, "uploaded block");
                    self.uploads.fetch_add(1, Ordering::Relaxed);
                    report.uploaded.push(id);
                }
                Ok(false) => {
                    tracing::info!(block = %id, "block already in the bucket; recorded as shipped");
                    report.already_in_bucket.push(id);
                }
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    let mut g = self.inner.lock();
                    let attempts = g.failures.get(&id).map_or(0, |f| f.attempts) + 1;
                    let wait = self.backoff(attempts);
                    g.failures.insert(
                        id,
                        Failure {
                            attempts,
                            next_try: Instant::now() + wait,
                        },
                    );
                    drop(g);
                    tracing::error!(block = %id, error = %e, attempts, retry_in = ?wait, "uploading block failed");
                    report.failed.push((id, e.to_string()));
                    continue;
                }
            }
            {
                let mut g = self.inner.lock();
                g.uploaded.insert(id);
                g.failures.remove(&id);
            }
            // After every upload, so a crash never causes a second upload.
            self.save_state(&local)?;
            state_dirty = false;
        }
        if state_dirty || !self.dir.join(STATE_FILE).exists() {
            self.save_state(&local)?;
        }
        Ok(report)
    }

    /// Uploads one block; `Ok(false)` when its `meta.json` is already in the bucket.
    async fn ship_one(&self, dir: &Path, meta: &BlockMeta) -> Result<bool> {
        let id = meta.ulid;
        if bucket::exists(&self.bucket, &bucket::block_key(&id, META_FILE)?).await? {
            return Ok(false);
        }
        let m = self.bucket_meta(dir, meta)?;
        bucket::upload_block(&self.bucket, dir, &m).await?;
        Ok(true)
    }

    /// The meta as uploaded: the local one with the `thanos` section filled.
    pub fn bucket_meta(&self, dir: &Path, meta: &BlockMeta) -> Result<BlockMeta> {
        let (files, segments) = block_files(dir)?;
        let mut m = meta.clone();
        let extra = m.thanos.take().map(|t| t.extra).unwrap_or_default();
        m.thanos = Some(ThanosMeta {
            version: 1,
            labels: self.labels.clone(),
            downsample: ThanosDownsample { resolution: 0 },
            source: self.source.clone(),
            segment_files: segments,
            files,
            extra,
        });
        Ok(m)
    }
}

/// The files of a local block as Thanos lists them (sorted by relative path, sizes in bytes;
/// `meta.json` without a size since it is rewritten on upload), and the chunk segment names.
pub fn block_files(dir: &Path) -> Result<(Vec<ThanosFile>, Vec<String>)> {
    let mut files = Vec::new();
    let mut segments = Vec::new();
    let chunks = dir.join(CHUNKS_DIR);
    let rd = std::fs::read_dir(&chunks).map_err(|e| Error::io("read directory", &chunks, e))?;
    for e in rd.flatten() {
        let p = e.path();
        let md = std::fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
        if !md.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        files.push(ThanosFile {
            rel_path: format!("{CHUNKS_DIR}/{name}"),
            size_bytes: md.len() as i64,
            hash: None,
        });
        segments.push(name);
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == META_FILE || name.ends_with(".tmp") {
            continue;
        }
        let md = std::fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
        if md.is_file() {
            files.push(ThanosFile {
                rel_path: name,
                size_bytes: md.len() as i64,
                hash: None,
            });
        }
    }
    if !files.iter().any(|f| f.rel_path == INDEX_FILE) {
        let p = dir.join(INDEX_FILE);
        return Err(Error::io(
            "stat",
            &p,
            std::io::Error::new(std::io::ErrorKind::NotFound, "block has no index"),
        ));
    }
    files.push(ThanosFile {
        rel_path: META_FILE.into(),
        size_bytes: 0,
        hash: None,
    });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    segments.sort();
    Ok((files, segments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;
    use strata_tsdb::block::meta::write_meta;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A fake block directory (the shipper does not parse index or chunks).
    fn make_block(dir: &Path, n: u128, level: u32, sources: Vec<Ulid>) -> Ulid {
        let id = Ulid::from(n);
        let b = dir.join(id.to_string());
        std::fs::create_dir_all(b.join("chunks")).unwrap();
        std::fs::write(b.join("chunks/000001"), vec![1u8; 100]).unwrap();
        std::fs::write(b.join("index"), vec![2u8; 50]).unwrap();
        let mut m = BlockMeta::new(id, n as i64 * 1000, n as i64 * 1000 + 1000);
        m.stats.num_samples = 10;
        m.compaction.level = level;
        m.compaction.sources = if sources.is_empty() {
            vec![id]
        } else {
            sources
        };
        write_meta(&b, &m).unwrap();
        id
    }

    fn labels() -> BTreeMap<String, String> {
        [("cluster".to_string(), "eu1".to_string())].into()
    }

    #[test]
    fn uploads_with_thanos_section_and_state_file() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_block(tmp.path(), 1, 1, vec![]);
        let b = make_block(tmp.path(), 2, 1, vec![]);
        let bucket: Bucket = Arc::new(InMemory::new());
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        let rt = rt();
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![a, b]);
        assert!(s.shipped(&a) && s.shipped(&b));
        let m = rt
            .block_on(bucket::read_meta(&bucket, &a))
            .unwrap()
            .unwrap();
        let t = m.thanos.unwrap();
        assert_eq!(t.labels, labels());
        assert_eq!(t.source, "strata");
        assert_eq!(t.downsample.resolution, 0);
        assert_eq!(t.segment_files, vec!["000001"]);
        let files: Vec<(String, i64)> = t
            .files
            .iter()
            .map(|f| (f.rel_path.clone(), f.size_bytes))
            .collect();
        assert_eq!(
            files,
            vec![
                ("chunks/000001".to_string(), 100),
                ("index".to_string(), 50),
                ("meta.json".to_string(), 0)
            ]
        );
        let objs = rt.block_on(bucket::block_objects(&bucket, &a)).unwrap();
        assert_eq!(objs.len(), 3);
        // The local meta.json is untouched.
        assert!(
            strata_tsdb::block::meta::read_meta(tmp.path().join(a.to_string()))
                .unwrap()
                .thanos
                .is_none()
        );
        let st = read_state(tmp.path()).unwrap().unwrap();
        assert_eq!(
            st,
            ShipperState {
                version: 1,
                uploaded: vec![a, b]
            }
        );
        let text = std::fs::read_to_string(tmp.path().join(STATE_FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["uploaded"][0], a.to_string());

        // A second sync uploads nothing.
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r, ShipReport::default());
    }

    /// A FILESYSTEM bucket in which a regular file named like the block makes every upload of
    /// that block fail, until it is removed.
    fn blocked_bucket(root: &Path, id: &Ulid) -> (Bucket, PathBuf) {
        let (bucket, _) = crate::objstore::filesystem(root).unwrap();
        let blocker = root.join(id.to_string());
        std::fs::write(&blocker, b"x").unwrap();
        (bucket, blocker)
    }

    #[test]
    fn failed_upload_is_retried_after_backoff() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let a = make_block(&data, 1, 1, vec![]);
        let (bucket, blocker) = blocked_bucket(&tmp.path().join("bucket"), &a);
        let s = Shipper::new(bucket.clone(), &data, labels(), "strata")
            .with_backoff(Duration::from_millis(200), Duration::from_secs(1));
        let rt = rt();
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].0, a);
        assert!(!s.shipped(&a));
        assert_eq!(s.failures_total(), 1);
        // Within the backoff: not retried.
        std::fs::remove_file(&blocker).unwrap();
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.deferred, vec![a]);
        std::thread::sleep(Duration::from_millis(250));
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![a]);
        assert!(s.shipped(&a));
        assert_eq!(s.uploads_total(), 1);
        assert!(rt
            .block_on(bucket::read_meta(&bucket, &a))
            .unwrap()
            .is_some());
        assert_eq!(s.backoff(1), Duration::from_millis(200));
        assert_eq!(s.backoff(3), Duration::from_millis(800));
        assert_eq!(s.backoff(30), Duration::from_secs(1));
    }

    #[test]
    fn restart_does_not_upload_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_block(tmp.path(), 1, 1, vec![]);
        let bucket: Bucket = Arc::new(InMemory::new());
        let rt = rt();
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        rt.block_on(s.sync()).unwrap();
        // Remove an object: a second upload would bring it back.
        let probe = bucket::block_key(&a, "chunks/000001").unwrap();
        rt.block_on(bucket.delete(&probe)).unwrap();
        let reuploaded = || rt.block_on(bucket::exists(&bucket, &probe)).unwrap();
        drop(s);
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        assert!(s.shipped(&a));
        rt.block_on(s.sync()).unwrap();
        assert!(!reuploaded());

        // Without the state file, the meta.json in the bucket is recognised.
        std::fs::remove_file(tmp.path().join(STATE_FILE)).unwrap();
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        assert!(!s.shipped(&a));
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.already_in_bucket, vec![a]);
        assert!(s.shipped(&a));
        assert!(!reuploaded());
        assert_eq!(read_state(tmp.path()).unwrap().unwrap().uploaded, vec![a]);

        // A corrupt state file is ignored.
        std::fs::write(tmp.path().join(STATE_FILE), "{nope").unwrap();
        assert!(read_state(tmp.path()).is_err());
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.already_in_bucket, vec![a]);
        assert!(!reuploaded());
    }

    #[test]
    fn compacted_blocks_only_with_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_block(tmp.path(), 1, 1, vec![]);
        let src = Ulid::from(7u128);
        let c = make_block(tmp.path(), 3, 2, vec![a, src]);
        let bucket: Bucket = Arc::new(InMemory::new());
        let rt = rt();
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![a]);
        assert_eq!(r.skipped, vec![c]);
        // One source never shipped: the compacted block is not covered.
        assert!(!s.shipped(&c));

        let d = make_block(tmp.path(), 4, 2, vec![a]);
        rt.block_on(s.sync()).unwrap();
        assert!(s.shipped(&d), "every source shipped: covered");

        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata")
            .with_upload_compacted(true);
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![c, d]);
    }

    #[test]
    fn filter_holds_blocks_back() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_block(tmp.path(), 1, 1, vec![]);
        let b = make_block(tmp.path(), 2, 1, vec![]);
        let bucket: Bucket = Arc::new(InMemory::new());
        let rt = rt();
        let s =
            Shipper::new(bucket, tmp.path(), labels(), "strata").with_filter(move |id| *id != b);
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![a]);
        assert_eq!(r.skipped, vec![b]);
        assert!(!s.shipped(&b));
    }

    #[test]
    fn state_forgets_deleted_blocks_and_skips_empty_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_block(tmp.path(), 1, 1, vec![]);
        let b = make_block(tmp.path(), 2, 1, vec![]);
        let mut m = strata_tsdb::block::meta::read_meta(tmp.path().join(b.to_string())).unwrap();
        m.stats.num_samples = 0;
        write_meta(tmp.path().join(b.to_string()), &m).unwrap();
        // Not a block: ignored.
        std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
        std::fs::create_dir_all(
            tmp.path()
                .join(format!("{}.tmp-for-creation", Ulid::from(9u128))),
        )
        .unwrap();
        let bucket: Bucket = Arc::new(InMemory::new());
        let rt = rt();
        let s = Shipper::new(bucket.clone(), tmp.path(), labels(), "strata");
        let r = rt.block_on(s.sync()).unwrap();
        assert_eq!(r.uploaded, vec![a]);
        assert_eq!(r.skipped, vec![b]);
        assert!(s.shipped(&b));
        assert!(rt
            .block_on(bucket::read_meta(&bucket, &b))
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(tmp.path().join(a.to_string())).unwrap();
        rt.block_on(s.sync()).unwrap();
        assert_eq!(read_state(tmp.path()).unwrap().unwrap().uploaded, vec![b]);
        assert!(!s.shipped(&a));
    }
}
