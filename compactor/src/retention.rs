//! Retention and cleanup of a bucket, as Thanos's compactor does it:
//!
//! * per-resolution retention: a block whose max time is older than the retention of its
//!   resolution gets a deletion mark (0 = keep forever);
//! * deletion of blocks whose deletion mark is older than the delete delay (default 48h, so
//!   queriers and store gateways have stopped using them), and of interrupted deletions (a
//!   block directory left with a deletion mark but no `meta.json`);
//! * cleanup of aborted partial uploads: block directories without `meta.json` and without a
//!   deletion mark whose newest object is older than a threshold (default 48h, Thanos's
//!   `PartialUploadThresholdAge`).

use futures::TryStreamExt;
use object_store::path::Path as Key;
use ulid::Ulid;

use crate::bucket::{self, Bucket, DeletionMark};
use crate::compact::{mark_for_deletion, now_secs, sync, Summary};
use crate::downsample::{RES_1H, RES_5M, RES_RAW};
use crate::error::{Error, Result};
use crate::planner;

const H: i64 = 3_600_000;

/// Default delete delay (ms).
pub const DEFAULT_DELETE_DELAY: i64 = 48 * H;
/// Default age after which a partial upload is considered aborted (ms).
pub const PARTIAL_UPLOAD_THRESHOLD: i64 = 48 * H;

/// Retention per resolution, in milliseconds; 0 keeps blocks forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw: i64,
    pub res_5m: i64,
    pub res_1h: i64,
}

impl Retention {
    /// The retention for blocks of resolution `res` (0 for unknown resolutions).
    pub fn for_resolution(&self, res: i64) -> i64 {
        match res {
            RES_RAW => self.raw,
            RES_5M => self.res_5m,
            RES_1H => self.res_1h,
            _ => 0,
        }
    }
}

/// Marks for deletion every block beyond the retention of its resolution at `now_ms`.
/// Returns the blocks newly marked.
pub async fn apply_retention(bucket: &Bucket, r: &Retention, now_ms: i64) -> Result<Vec<Ulid>> {
    let st = sync(bucket).await?;
    let mut out = Vec::new();
    for m in st.live_blocks() {
        let keep = r.for_resolution(planner::resolution(&m));
        if keep <= 0 || now_ms <= m.max_time.saturating_add(keep) {
            continue;
        }
        let details = format!("block exceeding retention of {}ms", keep);
        if mark_for_deletion(bucket, &m.ulid, &details).await? {
            out.push(m.ulid);
        }
    }
    Ok(out)
}

/// Deletes blocks marked for deletion at least `delay_ms` before `now_ms` (a delay of 0 deletes
/// at once, even marks written in the same second), and interrupted
/// deletions (marked directories without `meta.json`) whatever their age. Returns them.
pub async fn delete_marked(bucket: &Bucket, delay_ms: i64, now_ms: i64) -> Result<Vec<Ulid>> {
    let mut out = Vec::new();
    let listing = bucket::list_metas(bucket).await?;
    let with_meta: std::collections::HashSet<Ulid> =
        listing.blocks.iter().map(|m| m.ulid).collect();
    for id in bucket::list_block_dirs(bucket).await? {
        let mark = match bucket::read_mark::<DeletionMark>(bucket, &id, bucket::DELETION_MARK_FILE)
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(block = %id, error = %e, "unreadable deletion mark; not deleting");
                continue;
            }
            Err(e) => return Err(e),
        };
        let age_ms = now_ms - mark.deletion_time.saturating_mul(1000);
        if age_ms >= delay_ms || !with_meta.contains(&id) {
            bucket::delete_block(bucket, &id).await?;
            tracing::info!(block = %id, "deleted block marked for deletion");
            out.push(id);
        }
    }
    Ok(out)
}

/// The newest modification time (Unix ms) of the objects under block `id`.
async fn newest_object_ms(bucket: &Bucket, id: &Ulid) -> Result<Option<i64>> {
    let prefix = Key::from(id.to_string());
    let metas: Vec<object_store::ObjectMeta> = bucket
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::ObjectStore {
            op: "list",
            key: prefix.to_string(),
            source: e,
        })?;
    Ok(metas
        .iter()
        .map(|m| m.last_modified.timestamp_millis())
        .max())
}

/// Deletes block directories without `meta.json` (and without deletion mark) whose newest
/// object is older than `threshold_ms`. Returns them.
pub async fn clean_partial(bucket: &Bucket, threshold_ms: i64, now_ms: i64) -> Result<Vec<Ulid>> {
    let listing = bucket::list_metas(bucket).await?;
    let mut out = Vec::new();
    for id in listing.partial {
        let mark = bucket::block_key(&id, bucket::DELETION_MARK_FILE)?;
        if bucket::exists(bucket, &mark).await? {
            continue; // an interrupted deletion: delete_marked finishes it
        }
        let Some(newest) = newest_object_ms(bucket, &id).await? else {
            continue;
        };
        if now_ms - newest > threshold_ms {
            bucket::delete_block(bucket, &id).await?;
            tracing::info!(block = %id, "deleted aborted partial upload");
            out.push(id);
        }
    }
    Ok(out)
}

/// Retention, then deletions past the delay, then partial-upload cleanup, once.
pub async fn cleanup(
    bucket: &Bucket,
    r: &Retention,
    delete_delay_ms: i64,
    partial_threshold_ms: i64,
) -> Result<Summary> {
    let now = now_secs() * 1000;
    let mut s = Summary {
        marked_for_deletion: apply_retention(bucket, r, now).await?.len(),
        ..Default::default()
    };
    s.deleted += delete_marked(bucket, delete_delay_ms, now).await?.len();
    s.deleted += clean_partial(bucket, partial_threshold_ms, now)
        .await?
        .len();
    Ok(s)
}

#[cfg(test)]
mod tests;
