//! A reader that tails one WAL segment while it is being written.
//!
//! [`WalReader`](strata_tsdb::wal::WalReader) reads finished files and treats a record cut at
//! the end of the file as damage. The remote-write watcher instead follows the active segment:
//! [`SegmentTail`] parses records from a known record boundary up to a byte limit (the offset
//! the storage published after its last commit, so only whole, flushed records are parsed) and
//! answers [`Step::NeedMore`] when the next record is not complete below the limit. It checks
//! the same things as the WAL reader (fragment types and order, CRC-32C, snappy) and reports
//! damage as a message naming segment and offset.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use strata_tsdb::encoding::crc32;
use strata_tsdb::wal::segment::{FragType, RECORD_HEADER_SIZE, SNAPPY_MASK, ZSTD_MASK};
use strata_tsdb::wal::{segment_name, PAGE_SIZE};

/// Largest record the tail reader reassembles (a WAL record never exceeds a segment).
const MAX_RECORD: usize = 1 << 30;

/// Outcome of [`SegmentTail::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A record is available in [`SegmentTail::record`]; `start..end` are its offsets.
    Record { start: u64, end: u64 },
    /// No complete record below the limit.
    NeedMore,
}

/// Tails one segment file. See the module docs.
pub struct SegmentTail {
    path: PathBuf,
    index: u64,
    file: File,
    /// Segment offset of `data[0]`.
    base: u64,
    data: Vec<u8>,
    /// Where the next record starts (a record boundary, possibly inside page padding).
    pos: u64,
    rec: Vec<u8>,
    comp: Vec<u8>,
    decoder: snap::raw::Decoder,
}

impl std::fmt::Debug for SegmentTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentTail")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish()
    }
}

impl SegmentTail {
    /// Opens segment `index` of `dir`, positioned at `offset` (a record boundary).
    pub fn open(dir: &Path, index: u64, offset: u64) -> io::Result<Self> {
        let path = segment_name(dir, index);
        let file = File::open(&path)?;
        Ok(Self {
            path,
            index,
            file,
            base: offset,
            data: Vec::new(),
            pos: offset,
            rec: Vec::new(),
            comp: Vec::new(),
            decoder: snap::raw::Decoder::new(),
        })
    }

    /// The segment's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Offset just past the last record returned (or the opening offset).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The last record returned by [`SegmentTail::next`], decompressed.
    pub fn record(&self) -> &[u8] {
        &self.rec
    }

    /// Current length of the file.
    pub fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Loads bytes so that `data` covers `[base, limit)` as far as the file has them.
    fn fill(&mut self, limit: u64) -> io::Result<()> {
        // Drop consumed bytes now and then.
        if self.pos > self.base && self.pos - self.base >= (1 << 20) {
            let n = (self.pos - self.base) as usize;
            self.data.drain(..n.min(self.data.len()));
            self.base += n as u64;
        }
        let have = self.base + self.data.len() as u64;
        if have >= limit {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(have))?;
        (&mut self.file)
            .take(limit - have)
            .read_to_end(&mut self.data)?;
        Ok(())
    }

    /// The next complete record that ends at or below `limit` (`u64::MAX` for a finished
    /// segment). `Err` describes damage; the caller skips the rest of the segment.
    pub fn next(&mut self, limit: u64) -> Result<Step, String> {
        self.fill(limit)
            .map_err(|e| format!("reading WAL segment {}: {e}", self.path.display()))?;
        let avail = self.base + self.data.len() as u64;
        let end_limit = avail.min(limit);
        let page = PAGE_SIZE as u64;
        let mut p = self.pos;
        let mut start = None;
        let mut compressed = false;
        self.comp.clear();
        self.rec.clear();
        loop {
            let page_left = page - p % page;
            if page_left < RECORD_HEADER_SIZE as u64 {
                p += page_left;
                continue;
            }
            if p >= end_limit {
                return Ok(Step::NeedMore);
            }
            let i = (p - self.base) as usize;
            let hdr = self.data[i];
            if hdr == 0 {
                if start.is_some() {
                    return Err(self.damage(p, "padding inside a record"));
                }
                // The rest of the page is padding; a record starts on the next page.
                p += page_left;
                self.pos = p;
                continue;
            }
            if p + RECORD_HEADER_SIZE as u64 > end_limit {
                return Ok(Step::NeedMore);
            }
            let Some(ft) = FragType::from_header(hdr) else {
                return Err(self.damage(p, &format!("invalid fragment type byte {hdr:#04x}")));
            };
            if hdr & ZSTD_MASK != 0 || hdr & 0xe0 != 0 {
                return Err(self.damage(p, &format!("unsupported fragment type byte {hdr:#04x}")));
            }
            let len = u16::from_be_bytes([self.data[i + 1], self.data[i + 2]]) as usize;
            let want = u32::from_be_bytes([
                self.data[i + 3],
                self.data[i + 4],
                self.data[i + 5],
                self.data[i + 6],
            ]);
            let body_end = p + (RECORD_HEADER_SIZE + len) as u64;
            if len as u64 > page_left - RECORD_HEADER_SIZE as u64 {
                return Err(self.damage(p, "fragment crosses a page boundary"));
            }
            if body_end > end_limit {
                return Ok(Step::NeedMore);
            }
            let body = &self.data[i + RECORD_HEADER_SIZE..i + RECORD_HEADER_SIZE + len];
            if crc32(body) != want {
                return Err(self.damage(p, "checksum mismatch"));
            }
            let frag_compressed = hdr & SNAPPY_MASK != 0;
            match ft {
                FragType::Full | FragType::First => {
                    if start.is_some() {
                        return Err(self.damage(p, "new record inside a record"));
                    }
                    start = Some(p);
                    compressed = frag_compressed;
                }
                FragType::Middle | FragType::Last => {
                    if start.is_none() {
                        return Err(self.damage(p, "record continuation without a start"));
                    }
                    if compressed != frag_compressed {
                        return Err(self.damage(p, "compression flag differs inside a record"));
                    }
                }
                FragType::PageTerm => {}
            }
            let target = if compressed {
                &mut self.comp
            } else {
                &mut self.rec
            };
            if target.len() + body.len() > MAX_RECORD {
                return Err(self.damage(p, "record too large"));
            }
            target.extend_from_slice(body);
            p = body_end;
            if matches!(ft, FragType::Full | FragType::Last) {
                let rec_start = start.unwrap_or(p);
                if compressed {
                    let n = snap::raw::decompress_len(&self.comp)
                        .map_err(|e| self.damage(rec_start, &format!("snappy: {e}")))?;
                    if n > MAX_RECORD || n > self.comp.len().saturating_mul(22) + 64 {
                        return Err(self.damage(rec_start, "implausible decompressed size"));
                    }
                    self.rec.resize(n, 0);
                    let got = self
                        .decoder
                        .decompress(&self.comp, &mut self.rec)
                        .map_err(|e| format!("snappy: {e}"));
                    match got {
                        Ok(got) => self.rec.truncate(got),
                        Err(e) => return Err(self.damage(rec_start, &e)),
                    }
                }
                self.pos = p;
                return Ok(Step::Record {
                    start: rec_start,
                    end: p,
                });
            }
        }
    }

    fn damage(&self, offset: u64, detail: &str) -> String {
        format!(
            "corrupt WAL segment {} at offset {offset}: {detail}",
            self.path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::wal::Wal;

    #[test]
    fn tails_records_as_they_are_written_and_matches_the_wal_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 4 * PAGE_SIZE).unwrap();
        let seg = wal.current_segment();
        let mut tail = SegmentTail::open(dir.path(), seg, 0).unwrap();
        let limit = |w: &Wal| w.last_segment_and_offset().1;
        assert_eq!(tail.next(limit(&wal)).unwrap(), Step::NeedMore);

        // Small, compressible, and page-spanning records.
        let recs: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            vec![7u8; 50_000],
            (0..40_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            b"x".to_vec(),
        ];
        let mut got = Vec::new();
        for r in &recs {
            wal.log(&[r]).unwrap();
            while let Step::Record { .. } = tail.next(limit(&wal)).unwrap() {
                got.push(tail.record().to_vec());
            }
        }
        assert_eq!(got, recs);
        assert_eq!(tail.position(), limit(&wal));

        // Resuming at a saved boundary yields what follows it.
        let mut again = SegmentTail::open(dir.path(), seg, 0).unwrap();
        let Step::Record { end, .. } = again.next(u64::MAX).unwrap() else {
            panic!("expected a record")
        };
        let mut resumed = SegmentTail::open(dir.path(), seg, end).unwrap();
        assert!(matches!(resumed.next(u64::MAX), Ok(Step::Record { .. })));
        assert_eq!(resumed.record(), &recs[1][..]);
    }

    #[test]
    fn reports_damage_with_segment_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 4 * PAGE_SIZE).unwrap();
        wal.set_compression(false);
        wal.log(&[b"abcdef"]).unwrap();
        wal.close().unwrap();
        let path = segment_name(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD_HEADER_SIZE + 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let mut tail = SegmentTail::open(dir.path(), 0, 0).unwrap();
        let err = tail.next(u64::MAX).unwrap_err();
        assert!(
            err.contains("00000000") && err.contains("offset 0"),
            "{err}"
        );
    }
}
