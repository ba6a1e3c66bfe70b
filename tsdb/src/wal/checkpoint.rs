//! WAL checkpoints: `checkpoint.NNNNNNNN` directories inside the WAL directory, each holding
//! a WAL (same segment format) of the records from the previous checkpoint and the segments
//! up to `NNNNNNNN` that the head still needs. After a checkpoint the head truncates the WAL
//! before segment `NNNNNNNN + 1` and replays "checkpoint, then segments after it" on start.
//!
//! Filtering (see [`checkpoint`]): series records keep the series `keep` accepts; sample
//! records keep samples of kept series with `t >= mint`; tombstone records keep the stones of
//! kept series with an interval ending at or after `mint`. Prometheus keeps samples and
//! tombstones of every series; dropping those of series whose series record is dropped is
//! harmless (replay skips unknown references) and saves space. Records of other types
//! (exemplars, metadata, histograms, unknown) are dropped, as Prometheus drops unknown types;
//! Strata's head does not write them.

use std::fs;
use std::path::{Path, PathBuf};

use super::reader::{SegmentRange, WalReader};
use super::record::{
    decode_samples, decode_series, decode_tombstones, encode_samples, encode_series,
    encode_tombstones, record_type, RecordType,
};
use super::segment::{sync_dir, DEFAULT_SEGMENT_SIZE};
use super::Wal;
use crate::error::{Error, Result};

const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// What a checkpoint kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub total_series: usize,
    pub dropped_series: usize,
    pub total_samples: usize,
    pub dropped_samples: usize,
    pub total_tombstones: usize,
    pub dropped_tombstones: usize,
    /// Records of other types, dropped.
    pub dropped_other_records: usize,
}

/// Path of checkpoint `index` in `wal_dir`.
pub fn checkpoint_dir(wal_dir: &Path, index: u64) -> PathBuf {
    wal_dir.join(format!("{CHECKPOINT_PREFIX}{index:08}"))
}

/// Checkpoint directories in `wal_dir`, sorted by index. A missing `wal_dir` has none.
fn list_checkpoints(wal_dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let rd = match fs::read_dir(wal_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read WAL directory", wal_dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read WAL directory", wal_dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_prefix(CHECKPOINT_PREFIX) else {
            continue;
        };
        // `checkpoint.N.tmp` and other non-numeric suffixes are not checkpoints.
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(index) = num.parse::<u64>() else {
            continue;
        };
        if !ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            return Err(Error::Invalid(format!(
                "checkpoint {} is not a directory",
                ent.path().display()
            )));
        }
        out.push((ent.path(), index));
    }
    out.sort_by_key(|c| c.1);
    Ok(out)
}

/// The most recent checkpoint in `wal_dir` as `(path, index)`, `None` if there is none.
pub fn last_checkpoint(wal_dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    Ok(list_checkpoints(wal_dir)?.pop())
}

/// Deletes the checkpoints with an index below `before`.
pub fn delete_checkpoints(wal_dir: &Path, before: u64) -> Result<()> {
    for (path, index) in list_checkpoints(wal_dir)? {
        if index >= before {
            break;
        }
        fs::remove_dir_all(&path).map_err(|e| Error::io("delete checkpoint", &path, e))?;
    }
    Ok(())
}

/// Writes checkpoint `to_seg` from the last checkpoint (if any) and segments
/// `from_seg..=to_seg` of the WAL in `wal_dir`, keeping what the head still needs (see the
/// module docs). Written as `checkpoint.NNNNNNNN.tmp`, fsynced, renamed into place; older
/// checkpoints are deleted afterwards. Errors if `from_seg` leaves a gap after the last
/// checkpoint, or on any corruption in what it reads (repair is not an option here: the head
/// would not know which series were lost).
pub fn checkpoint(
    wal_dir: &Path,
    from_seg: u64,
    to_seg: u64,
    keep_series: impl Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    let mut stats = CheckpointStats::default();
    let mut ranges = Vec::new();
    let mut from = from_seg;
    if let Some((dir, idx)) = last_checkpoint(wal_dir)? {
        if from > idx + 1 {
            return Err(Error::Invalid(format!(
                "unexpected gap to last checkpoint {}: expected segment {}, requested {from}",
                dir.display(),
                idx + 1
            )));
        }
        // Segments up to the checkpoint are in it already.
        from = idx + 1;
        ranges.push(SegmentRange::all(dir));
    }
    if from <= to_seg {
        ranges.push(SegmentRange {
            dir: wal_dir.to_path_buf(),
            first: Some(from),
            last: Some(to_seg),
        });
    }
    let mut reader = WalReader::open_ranges(&ranges)?;

    let cp_dir = checkpoint_dir(wal_dir, to_seg);
    let mut tmp_name = cp_dir.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp_dir = PathBuf::from(tmp_name);
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir)
            .map_err(|e| Error::io("remove stale checkpoint directory", &tmp_dir, e))?;
    }
    let result = (|| -> Result<()> {
        let mut cp = Wal::open(&tmp_dir, DEFAULT_SEGMENT_SIZE)?;
        let mut series = Vec::new();
        let mut samples = Vec::new();
        let mut stones = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        // Record boundaries in `buf`, flushed in ~1 MiB batches.
        let mut bounds: Vec<usize> = Vec::new();
        let mut intern = |s: &str| -> std::sync::Arc<str> { s.into() };
        loop {
            match reader.next_record() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(e.into()),
            }
            let start = buf.len();
            let rec_off = reader.record_start();
            let seg_path = || {
                reader
                    .segment_refs()
                    .iter()
                    .find(|s| s.index == reader.segment())
                    .map(|s| s.path.clone())
                    .unwrap_or_default()
            };
            let rec = reader.record();
            match record_type(rec) {
                RecordType::Series => {
                    series.clear();
                    decode_series(rec, &mut series, &mut intern)
                        .map_err(|e| e.into_error(seg_path(), rec_off))?;
                    let n = series.len();
                    series.retain(|s| keep_series(s.r));
                    stats.total_series += n;
                    stats.dropped_series += n - series.len();
                    if !series.is_empty() {
                        encode_series(&series, &mut buf);
                    }
                }
                RecordType::Samples => {
                    samples.clear();
                    decode_samples(rec, &mut samples)
                        .map_err(|e| e.into_error(seg_path(), rec_off))?;
                    let n = samples.len();
                    samples.retain(|s| s.t >= mint && keep_series(s.r));
                    stats.total_samples += n;
                    stats.dropped_samples += n - samples.len();
                    if !samples.is_empty() {
                        encode_samples(&samples, &mut buf);
                    }
                }
                RecordType::Tombstones => {
                    stones.clear();
                    decode_tombstones(rec, &mut stones)
                        .map_err(|e| e.into_error(seg_path(), rec_off))?;
                    let n = stones.len();
                    stones.retain(|s| {
                        keep_series(s.r) && s.intervals.iter().any(|&(_, maxt)| maxt >= mint)
                    });
                    stats.total_tombstones += n;
                    stats.dropped_tombstones += n - stones.len();
                    if !stones.is_empty() {
                        encode_tombstones(&stones, &mut buf);
                    }
                }
                _ => stats.dropped_other_records += 1,
            }
            if buf.len() > start {
                bounds.push(buf.len());
            }
            if buf.len() > 1 << 20 {
                log_batch(&mut cp, &buf, &bounds)?;
                buf.clear();
                bounds.clear();
            }
        }
        log_batch(&mut cp, &buf, &bounds)?;
        cp.close()?;
        sync_dir(&tmp_dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    if cp_dir.exists() {
        fs::remove_dir_all(&cp_dir)
            .map_err(|e| Error::io("remove previous checkpoint", &cp_dir, e))?;
    }
    fs::rename(&tmp_dir, &cp_dir).map_err(|e| Error::io("rename checkpoint", &tmp_dir, e))?;
    sync_dir(wal_dir)?;
    if let Err(e) = delete_checkpoints(wal_dir, to_seg) {
        tracing::warn!(error = %e, "deleting old WAL checkpoints failed");
    }
    Ok(stats)
}

fn log_batch(cp: &mut Wal, buf: &[u8], bounds: &[usize]) -> Result<()> {
    if bounds.is_empty() {
        return Ok(());
    }
    let mut recs = Vec::with_capacity(bounds.len());
    let mut start = 0;
    for &end in bounds {
        recs.push(&buf[start..end]);
        start = end;
    }
    cp.log(&recs)
}
