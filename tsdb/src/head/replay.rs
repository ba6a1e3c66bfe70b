//! Rebuilding the head on open: completed chunks from `chunks_head/` first, then the WAL
//! (the newest checkpoint, then every later segment). Samples already covered by a chunk on
//! disk are skipped, and so is what the blocks hold (before the head's minimum valid time, as
//! appends would refuse it); samples for series the WAL never declared are counted and
//! dropped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::appender::apply;
use super::series::{ChunkData, DoneChunk, Fit};
use super::Head;
use crate::error::{Error, Result};
use crate::wal::record::{self, RecordType, RefSample};
use crate::wal::{Wal, WalReader};

/// Replays `dir/chunks_head` and `dir/wal` into `head`.
pub(crate) fn replay(head: &Head, dir: &Path, read_only: bool) -> Result<Option<Wal>> {
    let mut disk: HashMap<u64, Vec<DoneChunk>> = HashMap::new();
    let min_valid = head.min_valid_time();
    if let Some(cdm) = &head.chunk_disk {
        cdm.iterate_all(|m| {
            // Chunks ending before the newest block's end are in blocks already.
            if !m.ooo && m.maxt >= min_valid {
                disk.entry(m.series_ref).or_default().push(DoneChunk {
                    mint: m.mint,
                    maxt: m.maxt,
                    num_samples: m.num_samples,
                    data: ChunkData::Disk(m.chunk_ref),
                });
            }
            Ok(())
        })?;
    }
    for v in disk.values_mut() {
        v.sort_by_key(|c| c.mint);
    }

    let mut unknown_refs = 0u64;
    let mut samples: Vec<RefSample> = Vec::new();
    let mut series: Vec<record::RefSeries> = Vec::new();
    let mut handle = |rec: &[u8]| -> Result<()> {
        match record::record_type(rec) {
            RecordType::Series => {
                series.clear();
                record::decode_series(rec, &mut series, &mut |s| head.interner.intern(s))?;
                for s in series.drain(..) {
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
            RecordType::Samples => {
                samples.clear();
                record::decode_samples(rec, &mut samples)?;
                for s in &samples {
                    let Some(ms) = head.series_by_ref(s.r) else {
                        unknown_refs += 1;
                        continue;
                    };
                    let fit = {
                        let d = ms.data.lock();
                        d.fit(s.t, s.v, min_valid, head.max_time(), head.opts.ooo_window)
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
    let wal_dir = dir.join("wal");
    // The newest checkpoint first.
    if let Some((cp, _)) = crate::wal::last_checkpoint(&wal_dir)? {
        let mut r = WalReader::open(&cp)?;
        loop {
            match r.next_record() {
                Ok(Some(rec)) => handle(rec)?,
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::corrupt(
                        "WAL checkpoint",
                        cp.clone(),
                        e.offset,
                        e.to_string(),
                    ))
                }
            }
        }
    }
    // Then the segments after it: repaired and replayed by `Wal::open_with_replay` when
    // writable; read up to the first damage when read-only.
    let wal = if read_only {
        if wal_dir.is_dir() {
            let first = crate::wal::last_checkpoint(&wal_dir)?.map(|(_, i)| i + 1);
            let mut r = WalReader::open_range(&wal_dir, first, None)?;
            loop {
                match r.next_record() {
                    Ok(Some(rec)) => handle(rec)?,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL damaged; replay stops here (read-only)");
                        break;
                    }
                }
            }
        }
        None
    } else {
        Some(Wal::open_with_replay(
            &wal_dir,
            head.opts.wal_segment_size,
            |_, rec| handle(rec),
        )?)
    };
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
    Ok(wal)
}
