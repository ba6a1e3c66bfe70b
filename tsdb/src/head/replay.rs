//! Rebuilding the head on open: completed chunks from `chunks_head/` first, then the WAL
//! (the newest checkpoint, then every later segment). Samples already covered by a chunk on
//! disk are skipped; samples for series the WAL never declared are counted and dropped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::appender::apply;
use super::series::{ChunkData, DoneChunk, Fit};
use super::Head;
use crate::error::Result;
use crate::wal::record::{self, RecordType, RefSample};

/// Replays `dir/chunks_head` and `dir/wal` into `head`.
pub(crate) fn replay(head: &Head, dir: &Path) -> Result<()> {
    let mut disk: HashMap<u64, Vec<DoneChunk>> = HashMap::new();
    if let Some(cdm) = &head.chunk_disk {
        cdm.lock()
            .iterate_all(&mut |series_ref, chunk_ref, mint, maxt, num_samples| {
                disk.entry(series_ref).or_default().push(DoneChunk {
                    mint,
                    maxt,
                    num_samples,
                    data: ChunkData::Disk(chunk_ref),
                });
                Ok(())
            })?;
    }
    for v in disk.values_mut() {
        v.sort_by_key(|c| c.mint);
    }

    let mut unknown_refs = 0u64;
    let mut samples: Vec<RefSample> = Vec::new();
    let mut handle = |rec: &[u8]| -> Result<()> {
        match record::record_type(rec) {
            Some(RecordType::Series) => {
                for s in record::decode_series(rec)? {
                    let (ms, created) = head.get_or_create(&s.labels, Some(s.r))?;
                    ms.logged.store(true, Ordering::Release);
                    if created {
                        if let Some(chunks) = disk.remove(&s.r) {
                            let mut d = ms.data.lock();
                            for c in chunks {
                                head.update_time_bounds(c.mint, c.maxt);
                                d.push_done(c);
                            }
                        }
                    }
                }
            }
            Some(RecordType::Samples) => {
                samples.clear();
                record::decode_samples(rec, &mut samples)?;
                for s in &samples {
                    let Some(ms) = head.series_by_ref(s.r) else {
                        unknown_refs += 1;
                        continue;
                    };
                    let fit = {
                        let d = ms.data.lock();
                        d.fit(s.t, s.v, i64::MIN, head.max_time(), head.opts.ooo_window)
                    };
                    let ooo = matches!(fit, Ok(Fit::OutOfOrder));
                    if matches!(fit, Ok(Fit::InOrder) | Ok(Fit::OutOfOrder))
                        && apply(head, &ms, s.t, s.v, ooo)?
                    {
                        head.update_time_bounds(s.t, s.t);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    };
    crate::wal::replay_dir(&dir.join("wal"), &mut handle)?;
    if unknown_refs > 0 {
        tracing::warn!(
            samples = unknown_refs,
            "WAL replay dropped samples of series the WAL never declared"
        );
    }
    if !disk.is_empty() {
        tracing::warn!(
            series = disk.len(),
            "chunks_head holds chunks of series absent from the WAL; they are ignored"
        );
    }
    Ok(())
}
