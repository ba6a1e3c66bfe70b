//! Reading records back from WAL segments (and checkpoint directories, which hold a WAL of
//! their own).
//!
//! [`WalReader`] walks a list of segment files page by page, checks every fragment (type,
//! length, CRC-32C, fragment order, zero padding), reassembles fragmented records,
//! snappy-decompresses them and yields the record bytes. A [`ReadError`] names the segment,
//! the offset where the damage was found and the offset of the start of the record it broke
//! (everything before that offset is intact; repair truncates there).
//!
//! Differences from Prometheus's stream reader, all stricter and none affecting valid files:
//! a record may not continue from one segment into the next (the writer never does that); a
//! fragment may not cross a page boundary; a file that ends inside a fragment header or body
//! is a torn record (Prometheus pads the short page with virtual zeros, which can turn a torn
//! header into a valid empty record). A file that ends inside zero padding or right after a
//! complete record is fine (that is how the active segment of a running Prometheus looks).
//! zstd-compressed records (Prometheus 3's optional `zstd` WAL compression) are reported as
//! unsupported. A fragment type byte with one of the three reserved high bits set is
//! corruption (no Prometheus version writes them; Prometheus ignores them).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::segment::{
    list_segments, FragType, SegmentRef, PAGE_SIZE, RECORD_HEADER_SIZE, SNAPPY_MASK, ZSTD_MASK,
};
use crate::encoding::crc32;
use crate::error::{Error, Result};

/// A range of segments in a directory; `None` bounds are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRange {
    pub dir: PathBuf,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

impl SegmentRange {
    /// Every segment in `dir`.
    pub fn all(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            first: None,
            last: None,
        }
    }
}

/// What went wrong while reading.
#[derive(Debug)]
pub enum ReadErrorKind {
    /// The bytes on disk are not a valid WAL.
    Corrupt(String),
    /// The file could not be read.
    Io(io::Error),
}

/// An error met while reading a segment, with its position.
#[derive(Debug)]
pub struct ReadError {
    /// The segment file.
    pub path: PathBuf,
    /// The segment's index.
    pub segment: u64,
    /// Offset in the segment where the problem was found.
    pub offset: u64,
    /// Offset in the segment where the record that the problem breaks starts. Everything
    /// before it is valid records and padding.
    pub record_start: u64,
    pub kind: ReadErrorKind,
}

impl ReadError {
    /// True for damaged data (as opposed to a failing read).
    pub fn is_corruption(&self) -> bool {
        matches!(self.kind, ReadErrorKind::Corrupt(_))
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ReadErrorKind::Corrupt(d) => write!(
                f,
                "corruption in WAL segment {} at offset {} (record starting at {}): {d}",
                self.path.display(),
                self.offset,
                self.record_start
            ),
            ReadErrorKind::Io(e) => write!(
                f,
                "reading WAL segment {} at offset {}: {e}",
                self.path.display(),
                self.offset
            ),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e.kind {
            ReadErrorKind::Corrupt(d) => Error::corrupt("WAL segment", e.path, e.offset, d),
            ReadErrorKind::Io(io) => Error::io("read WAL segment", e.path, io),
        }
    }
}

/// Bits of the fragment type byte no writer sets. Prometheus ignores them; Strata treats
/// them as damage so that a flipped bit there is caught (the CRC covers only the data).
const RESERVED_MASK: u8 = 0xe0;

/// Upper bound of snappy's expansion: a 3-byte copy tag yields at most 64 bytes.
fn max_decompressed_len(compressed: usize) -> usize {
    compressed.saturating_mul(22).saturating_add(64)
}

/// Reads records from a sequence of segment files. See the module docs.
pub struct WalReader {
    segs: Vec<SegmentRef>,
    /// Index into `segs` of the open segment (== `segs.len()` when done).
    cur: usize,
    file: Option<File>,
    page: Vec<u8>,
    /// Offset of the loaded page in the segment.
    page_off: u64,
    /// Bytes of the page read from the file (< PAGE_SIZE only for the file's last page).
    page_len: usize,
    /// Parse position inside the page.
    page_pos: usize,
    /// Whether `page` holds a page of the open segment.
    loaded: bool,
    /// Reassembly state.
    in_record: bool,
    compressed: bool,
    rec: Vec<u8>,
    comp: Vec<u8>,
    decoder: snap::raw::Decoder,
    /// Position of the last returned record.
    rec_segment: u64,
    rec_start: u64,
    rec_end: u64,
    done: bool,
}

impl fmt::Debug for WalReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalReader")
            .field("segments", &self.segs.len())
            .field("cur", &self.cur)
            .field("page_off", &self.page_off)
            .finish()
    }
}

impl WalReader {
    /// A reader over the given segment files, in order.
    pub fn from_segments(segs: Vec<SegmentRef>) -> Self {
        WalReader {
            segs,
            cur: 0,
            file: None,
            page: vec![0; PAGE_SIZE],
            page_off: 0,
            page_len: 0,
            page_pos: 0,
            loaded: false,
            in_record: false,
            compressed: false,
            rec: Vec::new(),
            comp: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            rec_segment: 0,
            rec_start: 0,
            rec_end: 0,
            done: false,
        }
    }

    /// A reader over every segment in `dir` (a WAL directory or a checkpoint directory).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_ranges(&[SegmentRange::all(dir)])
    }

    /// A reader over the segments `first..=last` of `dir` (`None` = open end).
    pub fn open_range(dir: &Path, first: Option<u64>, last: Option<u64>) -> Result<Self> {
        Self::open_ranges(&[SegmentRange {
            dir: dir.to_path_buf(),
            first,
            last,
        }])
    }

    /// A reader over several ranges read one after the other, typically a checkpoint
    /// directory followed by the WAL segments after it.
    pub fn open_ranges(ranges: &[SegmentRange]) -> Result<Self> {
        let mut segs = Vec::new();
        for r in ranges {
            for s in list_segments(&r.dir)? {
                if r.first.is_some_and(|f| s.index < f) || r.last.is_some_and(|l| s.index > l) {
                    continue;
                }
                segs.push(s);
            }
        }
        Ok(Self::from_segments(segs))
    }

    /// The segment files this reader covers.
    pub fn segment_refs(&self) -> &[SegmentRef] {
        &self.segs
    }

    /// The last record returned by [`WalReader::next_record`] (empty before the first).
    pub fn record(&self) -> &[u8] {
        &self.rec
    }

    /// Index of the segment holding the last returned record.
    pub fn segment(&self) -> u64 {
        self.rec_segment
    }

    /// Offset in its segment where the last returned record starts.
    pub fn record_start(&self) -> u64 {
        self.rec_start
    }

    /// Offset in its segment just past the last returned record.
    pub fn offset(&self) -> u64 {
        self.rec_end
    }

    fn err(&mut self, offset: u64, record_start: u64, kind: ReadErrorKind) -> ReadError {
        self.done = true;
        let (path, segment) = match self.segs.get(self.cur) {
            Some(s) => (s.path.clone(), s.index),
            None => (PathBuf::new(), 0),
        };
        ReadError {
            path,
            segment,
            offset,
            record_start,
            kind,
        }
    }

    fn corrupt(&mut self, offset: u64, detail: impl Into<String>) -> ReadError {
        let start = if self.in_record {
            self.rec_start
        } else {
            offset
        };
        self.err(offset, start, ReadErrorKind::Corrupt(detail.into()))
    }

    /// Fills `page` from the open file: returns the number of bytes read (short only at EOF).
    fn read_page(&mut self) -> io::Result<usize> {
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        let mut n = 0;
        while n < PAGE_SIZE {
            match f.read(&mut self.page[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// The next record, or `None` after the last one. The slice is valid until the next call.
    /// After an error the reader yields nothing more.
    pub fn next_record(&mut self) -> std::result::Result<Option<&[u8]>, ReadError> {
        if self.done {
            return Ok(None);
        }
        loop {
            if self.file.is_none() {
                let Some(s) = self.segs.get(self.cur) else {
                    self.done = true;
                    return Ok(None);
                };
                let path = s.path.clone();
                match File::open(&path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) => return Err(self.err(0, 0, ReadErrorKind::Io(e))),
                }
                self.loaded = false;
                self.page_off = 0;
                self.page_len = 0;
                self.page_pos = 0;
            }
            if !self.loaded || self.page_pos >= self.page_len {
                let at_eof = self.loaded && self.page_len < PAGE_SIZE;
                // Offset just past the data read so far from this segment.
                let seg_end = self.page_off + self.page_len as u64;
                let n = if at_eof {
                    0
                } else {
                    if self.loaded {
                        self.page_off += PAGE_SIZE as u64;
                    }
                    match self.read_page() {
                        Ok(n) => n,
                        Err(e) => {
                            let off = self.page_off;
                            return Err(self.err(off, off, ReadErrorKind::Io(e)));
                        }
                    }
                };
                if n == 0 {
                    // End of this segment.
                    if self.in_record {
                        return Err(self.corrupt(seg_end, "last record is torn"));
                    }
                    self.file = None;
                    self.cur += 1;
                    continue;
                }
                self.loaded = true;
                self.page_len = n;
                self.page_pos = 0;
            }

            let p = self.page_pos;
            let len = self.page_len;
            let frag_off = self.page_off + p as u64;
            let hdr = self.page[p];
            let Some(ft) = FragType::from_header(hdr) else {
                return Err(self.corrupt(frag_off, format!("invalid fragment type {}", hdr & 7)));
            };
            if ft == FragType::PageTerm {
                if hdr != 0 {
                    return Err(
                        self.corrupt(frag_off, format!("invalid fragment type byte {hdr:#04x}"))
                    );
                }
                if let Some(i) = self.page[p + 1..len].iter().position(|&b| b != 0) {
                    let at = frag_off + 1 + i as u64;
                    return Err(self.corrupt(at, "unexpected non-zero byte in padded page"));
                }
                self.page_pos = len;
                continue;
            }
            if hdr & ZSTD_MASK != 0 {
                return Err(self.corrupt(frag_off, "zstd-compressed record (unsupported)"));
            }
            if hdr & RESERVED_MASK != 0 {
                return Err(self.corrupt(
                    frag_off,
                    format!("reserved bits set in fragment type byte {hdr:#04x}"),
                ));
            }
            if p + RECORD_HEADER_SIZE > len {
                return Err(self.corrupt(frag_off, "torn fragment header"));
            }
            let flen = u16::from_be_bytes([self.page[p + 1], self.page[p + 2]]) as usize;
            let want_crc = u32::from_be_bytes([
                self.page[p + 3],
                self.page[p + 4],
                self.page[p + 5],
                self.page[p + 6],
            ]);
            let data_start = p + RECORD_HEADER_SIZE;
            if data_start + flen > len {
                let detail = if len == PAGE_SIZE {
                    format!("fragment of {flen} bytes crosses the page boundary")
                } else {
                    format!("torn fragment: {flen} bytes announced, segment ends first")
                };
                return Err(self.corrupt(frag_off, detail));
            }
            let data = &self.page[data_start..data_start + flen];
            let got_crc = crc32(data);
            if got_crc != want_crc {
                return Err(self.corrupt(
                    frag_off,
                    format!("unexpected checksum {got_crc:08x}, expected {want_crc:08x}"),
                ));
            }
            let compressed = hdr & SNAPPY_MASK != 0;
            match ft {
                FragType::Full | FragType::First => {
                    if self.in_record {
                        return Err(self.corrupt(
                            frag_off,
                            format!("unexpected {ft:?} fragment inside a record"),
                        ));
                    }
                    self.in_record = true;
                    self.compressed = compressed;
                    self.rec_start = frag_off;
                    self.rec.clear();
                    self.comp.clear();
                }
                FragType::Middle | FragType::Last => {
                    if !self.in_record {
                        return Err(self.corrupt(
                            frag_off,
                            format!("unexpected {ft:?} fragment without a first fragment"),
                        ));
                    }
                    if self.compressed != compressed {
                        return Err(self.corrupt(
                            frag_off,
                            "compression flag differs between fragments of a record",
                        ));
                    }
                }
                FragType::PageTerm => {}
            }
            if compressed {
                self.comp.extend_from_slice(data);
            } else {
                self.rec.extend_from_slice(data);
            }
            self.page_pos = data_start + flen;
            if matches!(ft, FragType::Full | FragType::Last) {
                let end = self.page_off + self.page_pos as u64;
                if compressed {
                    if let Err(d) = self.decompress() {
                        let start = self.rec_start;
                        return Err(self.err(start, start, ReadErrorKind::Corrupt(d)));
                    }
                }
                self.in_record = false;
                self.rec_segment = self.segs.get(self.cur).map_or(0, |s| s.index);
                self.rec_end = end;
                return Ok(Some(&self.rec));
            }
        }
    }

    fn decompress(&mut self) -> std::result::Result<(), String> {
        let n = snap::raw::decompress_len(&self.comp)
            .map_err(|e| format!("snappy-compressed record: {e}"))?;
        if n > max_decompressed_len(self.comp.len()) {
            return Err(format!(
                "snappy-compressed record of {} bytes claims {n} bytes decompressed",
                self.comp.len()
            ));
        }
        self.rec.clear();
        self.rec.resize(n, 0);
        let got = self
            .decoder
            .decompress(&self.comp, &mut self.rec)
            .map_err(|e| format!("snappy-compressed record: {e}"))?;
        self.rec.truncate(got);
        Ok(())
    }
}

impl Iterator for WalReader {
    type Item = Result<Vec<u8>>;

    /// Owned records; errors convert into [`Error::Corrupt`] / [`Error::Io`].
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r.to_vec())),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
}
