//! Block chunk segment files (`<block>/chunks/000001`, ...), Prometheus' `tsdb/chunks` format:
//!
//! ```text
//! segment: magic 0x85BD40DD (be32) | version 1 (u8) | 3 bytes padding | chunk ...
//! chunk:   len (uvarint) | encoding (u8) | data (len bytes) | CRC-32C(encoding + data) (be32)
//! ```
//!
//! A chunk reference is `(segment index << 32) | offset` where the segment index is
//! **0-based** (the first file, `000001`, is index 0): the writer numbers segments by how many
//! it has cut, the reader by position among the directory's numerically named files sorted by
//! name. The writer cuts a new segment before one would exceed 512 MiB, using Prometheus'
//! batch rule so that a block written here is split into segments exactly where Prometheus
//! splits it (see [`ChunkWriter::write_chunks`]).
//!
//! Also owns [`MmapBytes`], an owning handle on a range of a shared memory map, used so lazy
//! iterators can outlive the borrow of a reader.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::chunkenc::{check_encoding, Encoding, XorIterator};
use crate::encoding::{crc32, uvarint};
use crate::error::{Error, Result};

/// Magic number at the start of every block chunk segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Magic + version + padding.
pub const SEGMENT_HEADER_SIZE: usize = 8;
/// Maximum size of a chunk's length field (`binary.MaxVarintLen32`).
pub const MAX_CHUNK_LENGTH_FIELD_SIZE: usize = 5;
/// Default maximum segment size: 512 MiB.
pub const DEFAULT_CHUNK_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;

/// A reference to a chunk in a block: `(segment index << 32) | offset`.
pub type ChunkRef = u64;

/// Packs a 0-based segment index and a byte offset into a [`ChunkRef`].
pub fn new_chunk_ref(segment: u32, offset: u32) -> ChunkRef {
    (segment as u64) << 32 | offset as u64
}

/// Splits a [`ChunkRef`] into (0-based segment index, byte offset).
pub fn unpack_chunk_ref(r: ChunkRef) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// The file name of the segment with 1-based sequence number `seq` (`000001`).
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:06}")
}

/// The files of `dir` whose names are decimal numbers, sorted by name (as Prometheus lists
/// segment files). Returns `(number, path)` pairs.
pub fn sequence_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = name.parse::<u64>() {
            out.push((name.to_string(), n, ent.path()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, n, p)| (n, p)).collect())
}

/// fsyncs a directory so that created/renamed/removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Maps a whole file read-only. Empty files give an empty map without calling mmap.
pub(crate) fn map_file(path: &Path) -> Result<Arc<Mmap>> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // SAFETY: the files are only ever appended to or replaced by rename, never rewritten in
    // place while mapped; truncation happens only before a file is mapped.
    let m = unsafe { Mmap::map(&f) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(Arc::new(m))
}

/// An owning handle on `map[start..end]`: cheap to clone, `Send + Sync`, usable as the bytes
/// of an [`XorIterator`].
#[derive(Clone)]
pub struct MmapBytes {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl MmapBytes {
    /// A handle on `map[start..end]`; `None` when the range is outside the map.
    pub fn new(map: Arc<Mmap>, start: usize, end: usize) -> Option<Self> {
        if start <= end && end <= map.len() {
            Some(MmapBytes { map, start, end })
        } else {
            None
        }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl AsRef<[u8]> for MmapBytes {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

impl std::ops::Deref for MmapBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl std::fmt::Debug for MmapBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MmapBytes({}..{})", self.start, self.end)
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes a block's chunk segment files.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// Current segment (0-based index, path, buffered file).
    cur: Option<(u32, PathBuf, BufWriter<File>)>,
    /// Number of segments cut so far.
    segments: u32,
    /// Bytes written to the current segment (0 before the first segment).
    n: u64,
}

impl ChunkWriter {
    /// A writer into `dir` (created if missing) with 512 MiB segments.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_segment_size(dir, DEFAULT_CHUNK_SEGMENT_SIZE)
    }

    /// A writer with a custom maximum segment size (0 = default).
    pub fn with_segment_size(dir: impl AsRef<Path>, segment_size: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        Ok(ChunkWriter {
            dir,
            segment_size: if segment_size == 0 {
                DEFAULT_CHUNK_SEGMENT_SIZE
            } else {
                segment_size
            },
            cur: None,
            segments: 0,
            n: 0,
        })
    }

    /// Writes one chunk (as a batch of one) and returns its reference.
    pub fn write_chunk(&mut self, enc: Encoding, data: &[u8]) -> Result<ChunkRef> {
        let refs = self.write_chunks(&[(enc, data)])?;
        Ok(refs[0])
    }

    /// Writes the chunks of one series. Like Prometheus' `WriteChunks`, the batch is split
    /// across segments only where needed: a new segment is cut before a chunk when the chunks
    /// of the batch so far (each counted with a 5-byte length field) would not fit.
    pub fn write_chunks(&mut self, chunks: &[(Encoding, &[u8])]) -> Result<Vec<ChunkRef>> {
        let seg = self.segment_size;
        let hdr = SEGMENT_HEADER_SIZE as u64;
        let mut cut_before = Vec::new();
        let mut batch_size = 0u64;
        let mut first_batch = true;
        for (i, (_, data)) in chunks.iter().enumerate() {
            let chk_size = (MAX_CHUNK_LENGTH_FIELD_SIZE + 1 + data.len() + 4) as u64;
            batch_size += chk_size;
            let mut cut = i != 0 && batch_size + hdr > seg;
            if first_batch && self.n > hdr {
                cut = batch_size + self.n > seg;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                cut_before.push(i);
                batch_size = chk_size;
            }
        }
        if self.n == 0 {
            self.cut()?;
        }
        let mut refs = Vec::with_capacity(chunks.len());
        let mut next_cut = cut_before.iter().peekable();
        for (i, (enc, data)) in chunks.iter().enumerate() {
            if next_cut.peek() == Some(&&i) {
                next_cut.next();
                self.cut()?;
            }
            refs.push(self.write_one(*enc, data)?);
        }
        Ok(refs)
    }

    fn write_one(&mut self, enc: Encoding, data: &[u8]) -> Result<ChunkRef> {
        let (idx, path, w) = match self.cur.as_mut() {
            Some(c) => c,
            None => return Err(Error::Invalid("chunk writer has no open segment".into())),
        };
        if self.n > u32::MAX as u64 || data.len() > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "chunk of {} bytes at offset {} does not fit a 32-bit chunk reference in {}",
                data.len(),
                self.n,
                path.display()
            )));
        }
        let r = new_chunk_ref(*idx, self.n as u32);
        let mut head = Vec::with_capacity(6);
        crate::encoding::put_uvarint(&mut head, data.len() as u64);
        head.push(enc.as_u8());
        let mut crc = crc32c::crc32c(&[enc.as_u8()]);
        crc = crc32c::crc32c_append(crc, data);
        let io = |e| Error::io("write", path.clone(), e);
        w.write_all(&head).map_err(io)?;
        w.write_all(data).map_err(io)?;
        w.write_all(&crc.to_be_bytes()).map_err(io)?;
        self.n += (head.len() + data.len() + 4) as u64;
        Ok(r)
    }

    /// Flushes, fsyncs and closes the current segment.
    fn finalize_tail(&mut self) -> Result<()> {
        if let Some((_, path, w)) = self.cur.take() {
            let f = w
                .into_inner()
                .map_err(|e| Error::io("flush", &path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<()> {
        self.finalize_tail()?;
        let idx = self.segments;
        let path = self.dir.join(segment_file_name(idx as u64 + 1));
        let f = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut hdr = [0u8; SEGMENT_HEADER_SIZE];
        hdr[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        hdr[4] = CHUNKS_FORMAT_V1;
        w.write_all(&hdr)
            .map_err(|e| Error::io("write", &path, e))?;
        sync_dir(&self.dir)?;
        self.cur = Some((idx, path, w));
        self.segments += 1;
        self.n = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }

    /// Number of segment files written so far.
    pub fn num_segments(&self) -> u32 {
        self.segments
    }

    /// Flushes and fsyncs everything (files and directory). Writes no file when no chunk was
    /// written, as Prometheus.
    pub fn close(mut self) -> Result<()> {
        self.finalize_tail()?;
        sync_dir(&self.dir)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

struct Segment {
    path: PathBuf,
    map: Arc<Mmap>,
}

/// Reads a block's chunk segments through memory maps.
pub struct ChunkReader {
    segments: Vec<Segment>,
    size: u64,
}

/// One chunk as found in a segment.
#[derive(Debug, Clone, Copy)]
pub struct BlockChunk<'a> {
    pub chunk_ref: ChunkRef,
    pub encoding: Encoding,
    /// The chunk data (for XOR: 2-byte sample count + bit stream).
    pub data: &'a [u8],
}

impl ChunkReader {
    /// Opens and maps every numerically named file in `dir` and checks their headers.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut segments = Vec::new();
        let mut size = 0u64;
        for (_, path) in sequence_files(dir)? {
            let map = map_file(&path)?;
            if map.len() < SEGMENT_HEADER_SIZE {
                return Err(Error::corrupt(
                    "chunk segment header",
                    &path,
                    0,
                    format!(
                        "file of {} bytes is shorter than the 8-byte header",
                        map.len()
                    ),
                ));
            }
            let magic = u32::from_be_bytes([map[0], map[1], map[2], map[3]]);
            if magic != MAGIC_CHUNKS {
                return Err(Error::corrupt(
                    "chunk segment header",
                    &path,
                    0,
                    format!("invalid magic number {magic:#x}"),
                ));
            }
            if map[4] != CHUNKS_FORMAT_V1 {
                return Err(Error::corrupt(
                    "chunk segment header",
                    &path,
                    4,
                    format!("invalid chunk format version {}", map[4]),
                ));
            }
            size += map.len() as u64;
            segments.push(Segment { path, map });
        }
        Ok(ChunkReader { segments, size })
    }

    /// Total bytes of all segment files.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Path of the segment with 0-based index `i`.
    pub fn segment_path(&self, i: usize) -> Option<&Path> {
        self.segments.get(i).map(|s| s.path.as_path())
    }

    /// Locates and verifies the chunk at `r`: (segment, encoding, data start, data end).
    fn locate(&self, r: ChunkRef) -> Result<(&Segment, Encoding, usize, usize)> {
        let (si, off) = unpack_chunk_ref(r);
        let seg = self.segments.get(si as usize).ok_or_else(|| {
            Error::Invalid(format!(
                "chunk reference {r:#x}: segment index {si} out of range ({} segments)",
                self.segments.len()
            ))
        })?;
        let (enc, start, end, _) = parse_chunk(&seg.map, off as usize, &seg.path)?;
        Ok((seg, enc, start, end))
    }

    /// The chunk at `r`, CRC verified: its encoding and data (borrowed from the map).
    pub fn chunk(&self, r: ChunkRef) -> Result<(Encoding, &[u8])> {
        let (seg, enc, start, end) = self.locate(r)?;
        Ok((enc, &seg.map[start..end]))
    }

    /// Like [`ChunkReader::chunk`] but returns an owning handle that keeps the map alive.
    pub fn chunk_bytes(&self, r: ChunkRef) -> Result<(Encoding, MmapBytes)> {
        let (seg, enc, start, end) = self.locate(r)?;
        let b = MmapBytes::new(seg.map.clone(), start, end).ok_or_else(|| {
            Error::corrupt("chunk", &seg.path, start as u64, "range outside file")
        })?;
        Ok((enc, b))
    }

    /// A lazy sample iterator over the XOR chunk at `r` (which must be XOR encoded).
    pub fn xor_iterator(&self, r: ChunkRef) -> Result<XorIterator<MmapBytes>> {
        let (enc, b) = self.chunk_bytes(r)?;
        crate::chunkenc::require_decodable(enc)?;
        Ok(XorIterator::new(b))
    }

    /// Iterates over every chunk of segment `i` in file order (for verification tools). Stops
    /// after the first error.
    pub fn segment_chunks(&self, i: usize) -> Result<SegmentChunks<'_>> {
        let seg = self.segments.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "segment index {i} out of range ({} segments)",
                self.segments.len()
            ))
        })?;
        Ok(SegmentChunks {
            seg,
            index: i as u32,
            off: SEGMENT_HEADER_SIZE,
            failed: false,
        })
    }
}

/// Parses the chunk starting at `off`: (encoding, data start, data end, chunk end).
fn parse_chunk(b: &[u8], off: usize, path: &Path) -> Result<(Encoding, usize, usize, usize)> {
    let corrupt = |detail: String| Error::corrupt("chunk", path, off as u64, detail);
    if off < SEGMENT_HEADER_SIZE || off >= b.len() {
        return Err(corrupt(format!(
            "chunk offset outside the data of a {}-byte segment",
            b.len()
        )));
    }
    let field = &b[off..b.len().min(off + MAX_CHUNK_LENGTH_FIELD_SIZE)];
    let (len, n) = uvarint(field).ok_or_else(|| corrupt("invalid chunk length varint".into()))?;
    let enc_at = off + n;
    let data_start = enc_at + 1;
    let data_end = usize::try_from(len)
        .ok()
        .and_then(|l| data_start.checked_add(l))
        .ok_or_else(|| corrupt(format!("chunk length {len} too large")))?;
    let end = data_end
        .checked_add(4)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            corrupt(format!(
                "segment has {} bytes, chunk of {len} data bytes needs {}",
                b.len(),
                data_end.saturating_add(4)
            ))
        })?;
    let want = u32::from_be_bytes([
        b[data_end],
        b[data_end + 1],
        b[data_end + 2],
        b[data_end + 3],
    ]);
    let got = crc32(&b[enc_at..data_end]);
    if got != want {
        return Err(corrupt(format!(
            "checksum mismatch: stored {want:#010x}, computed {got:#010x}"
        )));
    }
    let enc = check_encoding(b[enc_at])
        .map_err(|_| corrupt(format!("unknown chunk encoding {}", b[enc_at])))?;
    Ok((enc, data_start, data_end, end))
}

/// Iterator over the chunks of one segment; see [`ChunkReader::segment_chunks`].
pub struct SegmentChunks<'a> {
    seg: &'a Segment,
    index: u32,
    off: usize,
    failed: bool,
}

impl<'a> Iterator for SegmentChunks<'a> {
    type Item = Result<BlockChunk<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.off >= self.seg.map.len() {
            return None;
        }
        let off = self.off;
        let r = u32::try_from(off)
            .map_err(|_| Error::corrupt("chunk", &self.seg.path, off as u64, "offset beyond 4 GiB"))
            .and_then(|o| parse_chunk(&self.seg.map, off, &self.seg.path).map(|p| (o, p)));
        match r {
            Ok((o, (encoding, start, end, chunk_end))) => {
                self.off = chunk_end;
                let map: &'a Mmap = &self.seg.map;
                Some(Ok(BlockChunk {
                    chunk_ref: new_chunk_ref(self.index, o),
                    encoding,
                    data: &map[start..end],
                }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
