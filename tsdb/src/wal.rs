//! The write-ahead log, in Prometheus's on-disk format (`tsdb/wlog` + `tsdb/record`).
//!
//! This module owns the WAL directory (`<data>/wal/`): numbered segment files (`00000000`,
//! `00000001`, ...) of at most `segment_size` bytes (128 MiB by default), written in 32 KiB
//! pages. A record is split into fragments (full / first / middle / last) that never cross a
//! page; each fragment has a 7-byte header (type byte with compression flags, be16 length,
//! be32 CRC-32C of the fragment data). A page that cannot hold another header is zero-padded.
//! Records never span segments; a record larger than a whole segment gets an oversized one.
//!
//! Submodules: [`segment`] (constants, naming, listing), [`record`] (record payload
//! encoders/decoders), [`reader`] ([`WalReader`]), [`checkpoint`] (`checkpoint.NNNNNNNN`
//! directories holding a WAL of the records still needed).
//!
//! [`Wal::open`] behaves like Prometheus's `wlog.NewSize` followed by the head's replay and
//! `Repair`: it reads every segment after the last checkpoint, and if it meets a damaged
//! record (torn tail after a crash, flipped bits), it truncates that segment right before the
//! damaged record, zero-pads its last page, deletes every later segment, logs a warning
//! naming segment and offset, and carries on. As in Prometheus this also applies when the
//! damage is in an older segment: everything after the damage is dropped, since later records
//! may depend on lost ones. Writing then starts in a fresh segment after the last one.
//!
//! Compression: with compression on (the default) each record is snappy (block format)
//! compressed, and the snappy flag is set only when compression made the record smaller, as
//! Prometheus does.

pub mod checkpoint;
pub mod reader;
pub mod record;
pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use checkpoint::{checkpoint, delete_checkpoints, last_checkpoint, CheckpointStats};
pub use reader::{ReadError, ReadErrorKind, SegmentRange, WalReader};
pub use record::{
    decode_samples, decode_series, decode_tombstones, encode_samples, encode_series,
    encode_tombstones, record_type, RecordType, RefSample, RefSeries, Stone,
};
pub use segment::{
    list_segments, segment_name, segments, SegmentRef, DEFAULT_SEGMENT_SIZE, PAGE_SIZE,
};

use crate::error::{Error, Result};
use segment::{FragType, RECORD_HEADER_SIZE, SNAPPY_MASK};

/// Name of the WAL directory inside a data directory.
pub const WAL_DIR_NAME: &str = "wal";

/// Counters of a [`Wal`], shareable with a metrics exporter.
#[derive(Debug, Default)]
pub struct WalMetrics {
    /// fsync calls on segment files.
    pub fsyncs: AtomicU64,
    /// Writes of (part of) a page to the active segment.
    pub page_flushes: AtomicU64,
    /// Pages completed (written to their end).
    pub pages_completed: AtomicU64,
    /// Records logged.
    pub records: AtomicU64,
    /// Truncations performed.
    pub truncations: AtomicU64,
    /// Repairs of corrupt segments performed by `open`.
    pub repairs: AtomicU64,
    /// Index of the segment being written.
    pub current_segment: AtomicU64,
}

/// What [`Wal::open`] found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segment where the damage was found.
    pub segment: u64,
    /// Offset the segment was truncated to.
    pub truncated_at: u64,
    /// Segments deleted after it.
    pub deleted_segments: Vec<u64>,
    /// What was wrong.
    pub detail: String,
}

/// The write-ahead log writer. See the module docs.
pub struct Wal {
    dir: PathBuf,
    segment_size: usize,
    compress: bool,
    file: Option<File>,
    seg_index: u64,
    /// Pages fully written to the active segment.
    done_pages: usize,
    page: Vec<u8>,
    /// Bytes of `page` in use.
    alloc: usize,
    /// Bytes of `page` already written to the file.
    flushed: usize,
    snappy: snap::raw::Encoder,
    snappy_buf: Vec<u8>,
    metrics: Arc<WalMetrics>,
    repair: Option<RepairReport>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segment", &self.seg_index)
            .field("done_pages", &self.done_pages)
            .field("alloc", &self.alloc)
            .finish()
    }
}

impl Wal {
    /// Opens (creating it if needed) the WAL in `dir` with the given segment size (a
    /// multiple of 32 KiB), validates and if needed repairs the segments after the last
    /// checkpoint, and starts a new segment after the last existing one. Compression is on.
    pub fn open(dir: impl AsRef<Path>, segment_size: usize) -> Result<Wal> {
        Self::open_with_replay(dir, segment_size, |_, _| Ok(()))
    }

    /// Like [`Wal::open`], and calls `replay(segment, record)` for every valid record of the
    /// segments after the last checkpoint (in order), so that the head can replay the WAL in
    /// the same pass that validates it. Records after a repaired corruption are not passed.
    /// The checkpoint itself is not replayed: read it with [`WalReader::open`] first. An error
    /// returned by `replay` aborts the open.
    pub fn open_with_replay(
        dir: impl AsRef<Path>,
        segment_size: usize,
        mut replay: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        if segment_size == 0 || segment_size.checked_rem(PAGE_SIZE) != Some(0) {
            return Err(Error::Invalid(format!(
                "WAL segment size {segment_size} is not a positive multiple of {PAGE_SIZE}"
            )));
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io("create WAL directory", &dir, e))?;

        let from = last_checkpoint(&dir)?.map_or(0, |(_, i)| i + 1);
        let mut reader = WalReader::open_range(&dir, Some(from), None)?;
        let mut repair = None;
        loop {
            match reader.next_record() {
                Ok(Some(_)) => replay(reader.segment(), reader.record())?,
                Ok(None) => break,
                Err(e) if e.is_corruption() => {
                    repair = Some(repair_segment(&dir, &e)?);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        drop(reader);

        let next = match segments(&dir)? {
            Some((_, last)) => last + 1,
            None => 0,
        };
        let mut w = Wal {
            dir,
            segment_size,
            compress: true,
            file: None,
            seg_index: next,
            done_pages: 0,
            page: vec![0; PAGE_SIZE],
            alloc: 0,
            flushed: 0,
            snappy: snap::raw::Encoder::new(),
            snappy_buf: Vec::new(),
            metrics: Arc::new(WalMetrics::default()),
            repair,
        };
        if w.repair.is_some() {
            w.metrics.repairs.fetch_add(1, Ordering::Relaxed);
        }
        w.create_segment(next)?;
        Ok(w)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured segment size.
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// Turns snappy compression of new records on or off.
    pub fn set_compression(&mut self, on: bool) {
        self.compress = on;
    }

    /// Whether new records are compressed.
    pub fn compression(&self) -> bool {
        self.compress
    }

    /// The counters of this WAL.
    pub fn metrics(&self) -> Arc<WalMetrics> {
        self.metrics.clone()
    }

    /// Number of fsyncs performed so far.
    pub fn fsync_count(&self) -> u64 {
        self.metrics.fsyncs.load(Ordering::Relaxed)
    }

    /// What `open` repaired, if anything.
    pub fn repair_report(&self) -> Option<&RepairReport> {
        self.repair.as_ref()
    }

    /// Index of the segment being written.
    pub fn current_segment(&self) -> u64 {
        self.seg_index
    }

    /// `(segment, offset)` up to which the active segment holds data.
    pub fn last_segment_and_offset(&self) -> (u64, u64) {
        (
            self.seg_index,
            (self.done_pages * PAGE_SIZE + self.alloc) as u64,
        )
    }

    /// The range `(first, last)` of segment indexes on disk (the active one included).
    pub fn segments(&self) -> Result<(u64, u64)> {
        segments(&self.dir)?.ok_or_else(|| {
            Error::Invalid(format!(
                "WAL directory {} has no segments",
                self.dir.display()
            ))
        })
    }

    fn active(&mut self) -> Result<&mut File> {
        self.file.as_mut().ok_or(Error::Closed)
    }

    fn create_segment(&mut self, index: u64) -> Result<()> {
        let path = segment_name(&self.dir, index);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("create WAL segment", &path, e))?;
        let size = f
            .metadata()
            .map_err(|e| Error::io("stat WAL segment", &path, e))?
            .len();
        self.file = Some(f);
        self.seg_index = index;
        self.done_pages = (size / PAGE_SIZE as u64) as usize;
        self.page.fill(0);
        self.alloc = 0;
        self.flushed = 0;
        self.metrics.current_segment.store(index, Ordering::Relaxed);
        segment::sync_dir(&self.dir)
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < RECORD_HEADER_SIZE
    }

    /// Writes the unwritten part of the page; with `clear` (or when no further header fits)
    /// the page is written to its end (zero padding) and a new page starts.
    fn flush_page(&mut self, clear: bool) -> Result<()> {
        let clear = clear || self.page_full();
        if clear {
            self.alloc = PAGE_SIZE;
        }
        if self.flushed < self.alloc {
            let (from, to) = (self.flushed, self.alloc);
            let path = segment_name(&self.dir, self.seg_index);
            let f = self.file.as_mut().ok_or(Error::Closed)?;
            let page = &self.page[from..to];
            f.write_all(page)
                .map_err(|e| Error::io("write WAL segment", &path, e))?;
            self.flushed = to;
            self.metrics.page_flushes.fetch_add(1, Ordering::Relaxed);
        }
        if clear {
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
            self.metrics.pages_completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes `records` in order, then hands the written bytes to the OS (no fsync; call
    /// [`Wal::sync`] for durability). A record that does not fit in the rest of the active
    /// segment starts a new segment. After a write error the WAL should be reopened (the
    /// repair on open drops a torn tail).
    pub fn log(&mut self, records: &[&[u8]]) -> Result<()> {
        self.active()?;
        for (i, rec) in records.iter().enumerate() {
            self.log_one(rec, i + 1 == records.len())?;
        }
        Ok(())
    }

    fn log_one(&mut self, rec: &[u8], last_of_batch: bool) -> Result<()> {
        if self.page_full() {
            self.flush_page(true)?;
        }
        // Length of the compressed form in `snappy_buf`, when compression made it smaller.
        let mut compressed_len = None;
        if self.compress && !rec.is_empty() {
            let max = snap::raw::max_compress_len(rec.len());
            if max > 0 {
                // Only grow: avoids re-zeroing the buffer for every record.
                if self.snappy_buf.len() < max {
                    self.snappy_buf.resize(max, 0);
                }
                if let Ok(n) = self.snappy.compress(rec, &mut self.snappy_buf) {
                    if n < rec.len() {
                        compressed_len = Some(n);
                    }
                }
            }
        }
        let buf = std::mem::take(&mut self.snappy_buf);
        let res = match compressed_len {
            Some(n) => self.write_fragments(&buf[..n], true, last_of_batch),
            None => self.write_fragments(rec, false, last_of_batch),
        };
        self.snappy_buf = buf;
        res?;
        self.metrics.records.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_fragments(&mut self, mut rec: &[u8], compressed: bool, flush: bool) -> Result<()> {
        // Space left in the segment for fragment data: this page plus the free pages.
        let pages_per_segment = (self.segment_size / PAGE_SIZE) as i64;
        let left = (PAGE_SIZE - self.alloc) as i64 - RECORD_HEADER_SIZE as i64
            + (PAGE_SIZE - RECORD_HEADER_SIZE) as i64
                * (pages_per_segment - self.done_pages as i64 - 1);
        if rec.len() as i64 > left {
            self.next_segment()?;
        }
        let mut first = true;
        while first || !rec.is_empty() {
            let room = PAGE_SIZE - self.alloc - RECORD_HEADER_SIZE;
            let n = rec.len().min(room);
            let (part, rest) = rec.split_at(n);
            let typ = match (first, rest.is_empty()) {
                (true, true) => FragType::Full,
                (true, false) => FragType::First,
                (false, true) => FragType::Last,
                (false, false) => FragType::Middle,
            };
            let mut hdr = typ as u8;
            if compressed {
                hdr |= SNAPPY_MASK;
            }
            let a = self.alloc;
            self.page[a] = hdr;
            self.page[a + 1..a + 3].copy_from_slice(&(n as u16).to_be_bytes());
            self.page[a + 3..a + 7].copy_from_slice(&crate::encoding::crc32(part).to_be_bytes());
            self.page[a + RECORD_HEADER_SIZE..a + RECORD_HEADER_SIZE + n].copy_from_slice(part);
            self.alloc += RECORD_HEADER_SIZE + n;
            if self.page_full() {
                self.flush_page(true)?;
            }
            rec = rest;
            first = false;
        }
        if flush && self.alloc > 0 {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Writes any buffered bytes of the active page to the file (without padding the page).
    pub fn flush(&mut self) -> Result<()> {
        self.active()?;
        if self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the active segment.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        let path = segment_name(&self.dir, self.seg_index);
        let f = self.active()?;
        f.sync_data()
            .map_err(|e| Error::io("fsync WAL segment", &path, e))?;
        self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Finishes the active segment (zero-padding its last page if it holds data), fsyncs it,
    /// and starts the next one. Returns the new segment's index.
    pub fn next_segment(&mut self) -> Result<u64> {
        self.active()?;
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.sync()?;
        let next = self.seg_index + 1;
        self.create_segment(next)?;
        Ok(next)
    }

    /// Deletes the segments with an index below `before` (never the active one).
    pub fn truncate(&mut self, before: u64) -> Result<()> {
        let before = before.min(self.seg_index);
        let mut deleted = false;
        for s in list_segments(&self.dir)? {
            if s.index >= before {
                break;
            }
            fs::remove_file(&s.path).map_err(|e| Error::io("delete WAL segment", &s.path, e))?;
            deleted = true;
        }
        if deleted {
            segment::sync_dir(&self.dir)?;
        }
        self.metrics.truncations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pads and writes the last page (if it holds data), fsyncs and closes the active
    /// segment. Further calls other than `close` fail with [`Error::Closed`].
    pub fn close(&mut self) -> Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.sync()?;
        self.file = None;
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.file.is_some() {
            if let Err(e) = self.close() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "closing WAL on drop failed");
            }
        }
    }
}

/// Truncates the damaged segment before the damaged record, zero-pads its last page,
/// deletes every later segment.
fn repair_segment(dir: &Path, e: &ReadError) -> Result<RepairReport> {
    let detail = e.to_string();
    tracing::warn!(
        segment = e.segment,
        offset = e.offset,
        record_start = e.record_start,
        error = %detail,
        "WAL corruption found, truncating segment before the damaged record and deleting later segments"
    );
    let path = segment_name(dir, e.segment);
    let mut deleted = Vec::new();
    for s in list_segments(dir)? {
        if s.index > e.segment {
            fs::remove_file(&s.path)
                .map_err(|err| Error::io("delete WAL segment", &s.path, err))?;
            deleted.push(s.index);
        }
    }
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|err| Error::io("open WAL segment for repair", &path, err))?;
    let cut = e.record_start;
    let padded = cut.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    f.set_len(cut)
        .and_then(|()| f.set_len(padded))
        .and_then(|()| f.sync_all())
        .map_err(|err| Error::io("truncate WAL segment", &path, err))?;
    segment::sync_dir(dir)?;
    if !deleted.is_empty() {
        tracing::warn!(segments = ?deleted, "deleted WAL segments after the corruption");
    }
    Ok(RepairReport {
        segment: e.segment,
        truncated_at: cut,
        deleted_segments: deleted,
        detail,
    })
}

#[cfg(test)]
mod tests;
