//! The bucket compactor: one pass of Thanos's compactor over a bucket.
//!
//! 0. Interrupted uploads: blocks this compactor started uploading (recorded in
//!    `<data_dir>/pending-uploads.json` before the first object is written) and did not finish
//!    are deleted if their `meta.json` never arrived, kept if it did (the request succeeded
//!    but the answer was lost; the garbage step then marks its sources).
//! 1. Sync: list block metas and read their deletion and no-compact marks. Blocks marked for
//!    deletion take no further part.
//! 2. Garbage: within a group, a block whose sources are covered by another block (a compaction
//!    that uploaded its result but died before marking its sources) is marked for deletion.
//! 3. Compaction, group by group (see [`crate::planner`]): the planned blocks are downloaded to
//!    the scratch directory, merged with `strata_tsdb::compact::compact_blocks` (overlapping
//!    blocks are merged vertically, identical samples deduplicated), given the group's `thanos`
//!    section (external labels, resolution, source `compactor`, file list), uploaded
//!    (`meta.json` last), and their sources marked for deletion — never deleted directly.
//!    Repeated until the planner has nothing left. Overlapping downsampled blocks cannot be
//!    merged (their chunks are aggregates): they get a no-compact mark, as Thanos does.
//! 4. Downsampling (unless disabled), twice so fresh 5m blocks can reach 1h at once: raw
//!    blocks spanning ≥ 40h → 5m, 5m blocks spanning ≥ 10d → 1h, skipped when blocks at the
//!    target resolution already cover all their sources.
//!
//! The work on local blocks is synchronous (it runs inside the async functions).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_tsdb::block::meta::{write_meta, BlockMeta, ThanosFile, ThanosMeta};
use strata_tsdb::block::Block;
use ulid::Ulid;

use crate::bucket::{self, Bucket, DeletionMark, Listing, NoCompactMark};
use crate::downsample::{
    downsample_block, DOWNSAMPLE_RANGE_1H, DOWNSAMPLE_RANGE_5M, RES_1H, RES_5M, RES_RAW,
};
use crate::error::{Error, Result};
use crate::planner::{self, Group};

/// What a compactor pass does.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Scratch directory for downloaded and produced blocks.
    pub data_dir: PathBuf,
    /// Compaction ranges (default [`planner::DEFAULT_RANGES`]).
    pub ranges: Vec<i64>,
    /// External labels removed before grouping, so replicas merge.
    pub replica_labels: Vec<String>,
    /// Run the downsampling step.
    pub downsampling: bool,
}

impl CompactConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        CompactConfig {
            data_dir: data_dir.into(),
            ranges: planner::DEFAULT_RANGES.to_vec(),
            replica_labels: Vec::new(),
            downsampling: true,
        }
    }
}

/// Counts of what a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Compactions run (new blocks planned).
    pub compactions: usize,
    /// Source blocks merged by those compactions.
    pub blocks_compacted: usize,
    /// Downsampled blocks created.
    pub blocks_downsampled: usize,
    /// Deletion marks written.
    pub marked_for_deletion: usize,
    /// No-compact marks written.
    pub marked_no_compact: usize,
    /// Blocks deleted (marked longer than the delete delay, or aborted partial uploads).
    pub deleted: usize,
}

impl Summary {
    pub fn add(&mut self, o: &Summary) {
        self.compactions += o.compactions;
        self.blocks_compacted += o.blocks_compacted;
        self.blocks_downsampled += o.blocks_downsampled;
        self.marked_for_deletion += o.marked_for_deletion;
        self.marked_no_compact += o.marked_no_compact;
        self.deleted += o.deleted;
    }
}

/// Progress reports (the CLI draws bars from them).
pub trait Progress: Send + Sync {
    /// A stage starts with `total` steps.
    fn stage(&self, _name: &str, _total: u64) {}
    /// One step of the current stage is done.
    fn step(&self, _msg: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The bucket as the compactor sees it.
#[derive(Debug, Default)]
pub struct BucketState {
    pub listing: Listing,
    pub deletion_marks: HashMap<Ulid, DeletionMark>,
    pub no_compact: HashSet<Ulid>,
}

impl BucketState {
    /// Blocks with a valid meta and no deletion mark, by ULID.
    pub fn live_blocks(&self) -> Vec<BlockMeta> {
        self.listing
            .blocks
            .iter()
            .filter(|m| !self.deletion_marks.contains_key(&m.ulid))
            .cloned()
            .collect()
    }
}

/// Lists the bucket and reads every block's marks. Unreadable marks are logged and ignored.
pub async fn sync(bucket: &Bucket) -> Result<BucketState> {
    let listing = bucket::list_metas(bucket).await?;
    let mut st = BucketState::default();
    let ids: Vec<Ulid> = listing
        .blocks
        .iter()
        .map(|m| m.ulid)
        .chain(listing.partial.iter().copied())
        .collect();
    for id in ids {
        match bucket::read_mark::<DeletionMark>(bucket, &id, bucket::DELETION_MARK_FILE).await {
            Ok(Some(m)) => {
                st.deletion_marks.insert(id, m);
            }
            Ok(None) => {}
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(block = %id, error = %e, "ignoring unreadable deletion mark")
            }
            Err(e) => return Err(e),
        }
        match bucket::read_mark::<NoCompactMark>(bucket, &id, bucket::NO_COMPACT_MARK_FILE).await {
            Ok(Some(_)) => {
                st.no_compact.insert(id);
            }
            Ok(None) => {}
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(block = %id, error = %e, "ignoring unreadable no-compact mark")
            }
            Err(e) => return Err(e),
        }
    }
    st.listing = listing;
    Ok(st)
}

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Writes `deletion-mark.json` for `id` unless one exists; returns whether it wrote one.
pub async fn mark_for_deletion(bucket: &Bucket, id: &Ulid, details: &str) -> Result<bool> {
    if bucket::exists(bucket, &bucket::block_key(id, bucket::DELETION_MARK_FILE)?).await? {
        return Ok(false);
    }
    let mark = DeletionMark {
        id: *id,
        deletion_time: now_secs(),
        version: 1,
        details: details.to_string(),
    };
    bucket::write_mark(bucket, id, bucket::DELETION_MARK_FILE, &mark).await?;
    tracing::info!(block = %id, details, "marked block for deletion");
    Ok(true)
}

/// Writes `no-compact-mark.json` for `id` unless one exists; returns whether it wrote one.
pub async fn mark_no_compact(
    bucket: &Bucket,
    id: &Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    if bucket::exists(
        bucket,
        &bucket::block_key(id, bucket::NO_COMPACT_MARK_FILE)?,
    )
    .await?
    {
        return Ok(false);
    }
    let mark = NoCompactMark {
        id: *id,
        version: 1,
        no_compact_time: now_secs(),
        reason: reason.to_string(),
        details: details.to_string(),
    };
    bucket::write_mark(bucket, id, bucket::NO_COMPACT_MARK_FILE, &mark).await?;
    tracing::info!(block = %id, reason, "marked block for no compaction");
    Ok(true)
}

/// Thanos's `files` list of a local block: chunk segments, index and other files with their
/// sizes, and `meta.json` without size; sorted by path.
pub fn gather_files(dir: &Path) -> Result<Vec<ThanosFile>> {
    let mut out = Vec::new();
    let chunks = dir.join(bucket::CHUNKS_DIR);
    if let Ok(rd) = std::fs::read_dir(&chunks) {
        for e in rd.flatten() {
            let md = e.metadata().map_err(|x| Error::io("stat", e.path(), x))?;
            out.push(ThanosFile {
                rel_path: format!("{}/{}", bucket::CHUNKS_DIR, e.file_name().to_string_lossy()),
                size_bytes: md.len() as i64,
                hash: None,
            });
        }
    }
    let rd = std::fs::read_dir(dir).map_err(|x| Error::io("read directory", dir, x))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata().map_err(|x| Error::io("stat", e.path(), x))?;
        if !md.is_file() || name.ends_with(".tmp") || name == bucket::META_FILE {
            continue;
        }
        out.push(ThanosFile {
            rel_path: name,
            size_bytes: md.len() as i64,
            hash: None,
        });
    }
    out.push(ThanosFile {
        rel_path: bucket::META_FILE.into(),
        size_bytes: 0,
        hash: None,
    });
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(out)
}

/// Fills the meta's `thanos.files`, rewrites the local `meta.json` and uploads the block.
pub async fn upload_new_block(bucket: &Bucket, dir: &Path, meta: &mut BlockMeta) -> Result<()> {
    let files = gather_files(dir)?;
    meta.thanos.get_or_insert_with(ThanosMeta::default).files = files;
    write_meta(dir, meta)?;
    bucket::upload_block(bucket, dir, meta).await
}

/// The file in the scratch directory naming the blocks whose upload started and has not
/// finished; see [`clean_pending_uploads`].
pub const PENDING_UPLOADS_FILE: &str = "pending-uploads.json";

/// The blocks recorded in `<data_dir>/pending-uploads.json` (none when the file is absent; an
/// unreadable file is logged and treated as empty: its partial uploads are then left to the
/// partial-upload cleanup).
pub fn read_pending(data_dir: &Path) -> Result<Vec<Ulid>> {
    let path = data_dir.join(PENDING_UPLOADS_FILE);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let ids: Vec<String> = match serde_json::from_slice(&b) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable pending-uploads file");
            return Ok(Vec::new());
        }
    };
    Ok(ids
        .iter()
        .filter_map(|s| Ulid::from_string(s).ok())
        .collect())
}

/// Rewrites `<data_dir>/pending-uploads.json` atomically (temporary file, fsync, rename).
fn write_pending(data_dir: &Path, ids: &[Ulid]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io("create directory", data_dir, e))?;
    let path = data_dir.join(PENDING_UPLOADS_FILE);
    let tmp = data_dir.join(format!("{PENDING_UPLOADS_FILE}.tmp"));
    let v: Vec<String> = ids.iter().map(|u| u.to_string()).collect();
    let body = serde_json::to_vec(&v).map_err(|e| Error::Invalid {
        what: "pending uploads",
        value: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&body)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    if let Ok(d) = std::fs::File::open(data_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Uploads a new block (see [`upload_new_block`]) recorded as pending in `data_dir` until it
/// is complete, so an upload that fails or is killed half-way is removed by the next pass.
pub async fn upload_tracked(
    bucket: &Bucket,
    data_dir: &Path,
    dir: &Path,
    meta: &mut BlockMeta,
) -> Result<()> {
    let mut pending = read_pending(data_dir)?;
    if !pending.contains(&meta.ulid) {
        pending.push(meta.ulid);
        write_pending(data_dir, &pending)?;
    }
    upload_new_block(bucket, dir, meta).await?;
    let mut pending = read_pending(data_dir)?;
    pending.retain(|u| *u != meta.ulid);
    write_pending(data_dir, &pending)
}

/// Settles the uploads recorded as pending in `data_dir`: a block without `meta.json` (or
/// with an unreadable one) is deleted, a block whose `meta.json` arrived is kept (the upload
/// succeeded though its last answer was lost). Returns how many were deleted. On error the
/// unsettled ones stay recorded for the next pass.
pub async fn clean_pending_uploads(bucket: &Bucket, data_dir: &Path) -> Result<usize> {
    let pending = read_pending(data_dir)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut left = pending.clone();
    let mut deleted = 0;
    let mut res = Ok(());
    for id in &pending {
        let r = async {
            let complete = match bucket::read_meta(bucket, id).await {
                Ok(m) => m.is_some(),
                Err(Error::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !complete {
                bucket::delete_block(bucket, id).await?;
                tracing::info!(block = %id, "deleted the remains of an interrupted upload");
            }
            Ok(!complete)
        }
        .await;
        match r {
            Ok(del) => {
                deleted += usize::from(del);
                left.retain(|u| u != id);
            }
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if left.len() != pending.len() {
        write_pending(data_dir, &left)?;
    }
    res.map(|()| deleted)
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// One compactor pass: garbage, compaction of every group, then downsampling.
pub async fn compact_pass(
    bucket: &Bucket,
    cfg: &CompactConfig,
    progress: &dyn Progress,
) -> Result<Summary> {
    let mut sum = Summary {
        deleted: clean_pending_uploads(bucket, &cfg.data_dir).await?,
        ..Default::default()
    };
    let st = sync(bucket).await?;
    let mut no_compact = st.no_compact.clone();
    let groups = planner::group_blocks(&st.live_blocks(), &cfg.replica_labels);
    progress.stage("compacting groups", groups.len() as u64);
    for mut g in groups {
        for id in planner::redundant_blocks(&g.blocks) {
            if mark_for_deletion(bucket, &id, "redundant: its sources are in another block").await?
            {
                sum.marked_for_deletion += 1;
            }
            g.blocks.retain(|b| b.ulid != id);
        }
        let s = compact_group(bucket, cfg, &mut g, &mut no_compact).await?;
        sum.add(&s);
        progress.step(&g.key);
    }
    if cfg.downsampling {
        let s = downsample(bucket, cfg, progress).await?;
        sum.add(&s);
    }
    Ok(sum)
}

/// Compacts one group until the planner finds nothing more.
pub async fn compact_group(
    bucket: &Bucket,
    cfg: &CompactConfig,
    g: &mut Group,
    no_compact: &mut HashSet<Ulid>,
) -> Result<Summary> {
    let mut sum = Summary::default();
    loop {
        let plan = planner::plan(&g.blocks, no_compact, &cfg.ranges);
        if plan.is_empty() {
            return Ok(sum);
        }
        let metas: Vec<BlockMeta> = plan
            .iter()
            .filter_map(|id| g.blocks.iter().find(|b| b.ulid == *id).cloned())
            .collect();
        let overlaps = metas.windows(2).any(|w| w[1].min_time < w[0].max_time);
        if g.resolution != RES_RAW && overlaps {
            for m in &metas {
                if mark_no_compact(
                    bucket,
                    &m.ulid,
                    "downsample-vertical-compaction",
                    "overlapping downsampled blocks cannot be merged",
                )
                .await?
                {
                    sum.marked_no_compact += 1;
                }
                no_compact.insert(m.ulid);
            }
            continue;
        }
        let work = cfg.data_dir.join("compact").join(g.key.replace('@', "-"));
        fresh_dir(&work)?;
        let mut blocks: Vec<Arc<Block>> = Vec::with_capacity(metas.len());
        for m in &metas {
            let dir = bucket::download_block_checked(bucket, m, &work).await?;
            blocks.push(Block::open(&dir)?);
        }
        tracing::info!(group = %g.key, blocks = ?plan, "compacting");
        let out = strata_tsdb::compact::compact_blocks(&work, &blocks)?;
        drop(blocks);
        let mut new_id = String::from("(empty result)");
        if let Some(mut meta) = out {
            meta.thanos = Some(ThanosMeta {
                labels: g.labels.clone(),
                downsample: strata_tsdb::block::meta::ThanosDownsample {
                    resolution: g.resolution,
                },
                source: "compactor".into(),
                ..Default::default()
            });
            let dir = work.join(meta.ulid.to_string());
            upload_tracked(bucket, &cfg.data_dir, &dir, &mut meta).await?;
            tracing::info!(group = %g.key, block = %meta.ulid, "uploaded compacted block");
            new_id = meta.ulid.to_string();
            g.blocks.push(meta);
        }
        for m in &metas {
            if mark_for_deletion(
                bucket,
                &m.ulid,
                &format!("source of compacted block {new_id}"),
            )
            .await?
            {
                sum.marked_for_deletion += 1;
            }
        }
        g.blocks.retain(|b| !plan.contains(&b.ulid));
        g.blocks.sort_by_key(|b| (b.min_time, b.ulid));
        sum.compactions += 1;
        sum.blocks_compacted += metas.len();
        let _ = std::fs::remove_dir_all(&work);
    }
}

/// A downsampling pass on its own: settles interrupted uploads, then downsamples what needs
/// it.
pub async fn downsample_pass(
    bucket: &Bucket,
    cfg: &CompactConfig,
    progress: &dyn Progress,
) -> Result<Summary> {
    let deleted = clean_pending_uploads(bucket, &cfg.data_dir).await?;
    let mut sum = downsample(bucket, cfg, progress).await?;
    sum.deleted += deleted;
    Ok(sum)
}

/// Downsamples what needs it (two rounds, so new 5m blocks can be turned into 1h blocks).
async fn downsample(
    bucket: &Bucket,
    cfg: &CompactConfig,
    progress: &dyn Progress,
) -> Result<Summary> {
    let mut sum = Summary::default();
    for _ in 0..2 {
        let st = sync(bucket).await?;
        let live = st.live_blocks();
        let mut covered: HashMap<i64, HashSet<Ulid>> = HashMap::new();
        for m in &live {
            let r = planner::resolution(m);
            if r != RES_RAW {
                covered
                    .entry(r)
                    .or_default()
                    .extend(m.compaction.sources.iter().copied());
            }
        }
        let todo: Vec<(BlockMeta, i64)> = live
            .iter()
            .filter_map(|m| {
                let (target, min_span) = match planner::resolution(m) {
                    RES_RAW => (RES_5M, DOWNSAMPLE_RANGE_5M),
                    RES_5M => (RES_1H, DOWNSAMPLE_RANGE_1H),
                    _ => return None,
                };
                let done = covered
                    .get(&target)
                    .is_some_and(|c| m.compaction.sources.iter().all(|s| c.contains(s)));
                (!done && m.max_time - m.min_time >= min_span).then(|| (m.clone(), target))
            })
            .collect();
        if todo.is_empty() {
            break;
        }
        progress.stage("downsampling", todo.len() as u64);
        for (m, target) in todo {
            let work = cfg.data_dir.join("downsample").join(m.ulid.to_string());
            fresh_dir(&work)?;
            let dir = bucket::download_block_checked(bucket, &m, &work).await?;
            let block = Block::open(&dir)?;
            tracing::info!(block = %m.ulid, resolution = target, "downsampling");
            let out = downsample_block(&block, &m, &work, target)?;
            drop(block);
            if let Some(mut meta) = out {
                let d = work.join(meta.ulid.to_string());
                upload_tracked(bucket, &cfg.data_dir, &d, &mut meta).await?;
                tracing::info!(from = %m.ulid, to = %meta.ulid, resolution = target, "uploaded downsampled block");
                sum.blocks_downsampled += 1;
            }
            let _ = std::fs::remove_dir_all(&work);
            progress.step(&m.ulid.to_string());
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests;
