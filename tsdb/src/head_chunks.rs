//! Head chunk files (`<data>/chunks_head/000001`, ...), Prometheus' `ChunkDiskMapper`: full
//! chunks of the head are written here ("m-mapped") so that only the open chunk of each series
//! stays in memory, and are replayed on startup.
//!
//! ```text
//! file:  magic 0x0130BC91 (be32) | version 1 (u8) | 3 bytes padding | chunk ...
//! chunk: series ref (be64) | mint (be64) | maxt (be64) | encoding (u8, high bit = OOO)
//!        | len (uvarint) | data | CRC-32C of everything before it in the record (be32)
//! ```
//!
//! References are `(file sequence << 32) | offset`, with the 1-based sequence number of the
//! file name (as Prometheus). Like Prometheus, a mapper opened on existing files never appends
//! to them: the first write cuts a new file; a file is cut before it would exceed 128 MiB.
//!
//! Replay ([`ChunkDiskMapper::iterate_all`]) stops at the first torn or corrupt record,
//! truncates that file there and deletes every later file (Prometheus deletes the whole
//! corrupt file; we keep its valid prefix). The WAL then restores what was lost.
//!
//! Concurrency: all methods take `&self`; writes are serialized by a mutex, reads of chunks
//! go through read-only memory maps that are extended (after flushing the write buffer) when a
//! chunk in the file being written is requested.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

use crate::chunkenc::{check_encoding, Encoding};
use crate::chunks::{map_file, segment_file_name, sequence_files, sync_dir, MmapBytes};
use crate::encoding::{crc32, put_uvarint, uvarint, uvarint_len};
use crate::error::{Error, Result};

/// Magic number at the start of every head chunk file.
pub const MAGIC_HEAD_CHUNKS: u32 = 0x0130_BC91;
/// Head chunk file format version.
pub const HEAD_CHUNKS_FORMAT_V1: u8 = 1;
/// Magic + version + padding.
pub const HEAD_CHUNK_FILE_HEADER_SIZE: usize = 8;
/// A new file is cut before a chunk would make the current one bigger than this.
pub const MAX_HEAD_CHUNK_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Series ref + mint + maxt + encoding.
const FIXED_META_SIZE: usize = 8 + 8 + 8 + 1;
/// Largest record overhead: fixed part, 5-byte length, CRC.
pub const MAX_HEAD_CHUNK_META_SIZE: usize = FIXED_META_SIZE + 5 + 4;
/// Bit of the encoding byte marking out-of-order chunks.
pub const OUT_OF_ORDER_MASK: u8 = 0x80;
/// Write buffer size (Prometheus' default).
const WRITE_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// A reference to a chunk in the head chunk files: `(file sequence << 32) | offset`.
pub type HeadChunkRef = u64;

/// Packs a file sequence number and offset.
pub fn new_head_chunk_ref(seq: u32, offset: u32) -> HeadChunkRef {
    (seq as u64) << 32 | offset as u64
}

/// Splits a [`HeadChunkRef`] into (file sequence, offset).
pub fn unpack_head_chunk_ref(r: HeadChunkRef) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// What replay learns about one chunk without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadChunkMeta {
    pub series_ref: u64,
    pub chunk_ref: HeadChunkRef,
    pub mint: i64,
    pub maxt: i64,
    /// From the chunk's 2-byte header.
    pub num_samples: u16,
    /// The encoding with the OOO bit removed.
    pub encoding: Encoding,
    /// True for out-of-order chunks.
    pub ooo: bool,
}

struct FileEntry {
    path: PathBuf,
    /// Map of the file as it was when last mapped (`None`: not mapped yet).
    map: Option<Arc<Mmap>>,
    /// Newest timestamp among the file's chunks; `i64::MAX` while unknown (before replay).
    maxt: i64,
}

struct WriteState {
    /// Sequence of the file being written, or of the newest file on disk; 0 when none.
    seq: u32,
    /// Offset of the next record in the current file; 0 when no file is open for writing.
    offset: u64,
    cut_on_next: bool,
    file: Option<File>,
    /// Bytes not yet written to `file`.
    buf: Vec<u8>,
    /// Newest timestamp written to the current file.
    cur_maxt: i64,
}

/// Writes, reads, replays and truncates head chunk files.
pub struct ChunkDiskMapper {
    dir: PathBuf,
    max_file_size: u64,
    w: Mutex<WriteState>,
    files: RwLock<BTreeMap<u32, FileEntry>>,
}

fn corrupt(path: &Path, off: u64, detail: impl Into<String>) -> Error {
    Error::corrupt("head chunk", path, off, detail)
}

impl ChunkDiskMapper {
    /// Opens (creating if needed) the head chunk directory. Removes an empty last file left
    /// by a crash (as Prometheus), checks headers and that file numbers are sequential.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_max_file_size(dir, MAX_HEAD_CHUNK_FILE_SIZE)
    }

    /// Like [`ChunkDiskMapper::open`] with another maximum file size (for tests).
    pub fn with_max_file_size(dir: impl AsRef<Path>, max_file_size: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let mut listed = sequence_files(&dir)?;
        listed.sort_by_key(|f| f.0);
        // A crash while cutting can leave a last file without a complete magic number.
        if let Some((_, path)) = listed.last() {
            let head = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
            let magic_zero = head.len() >= 4 && head[..4] == [0, 0, 0, 0];
            if head.len() < 4 || magic_zero {
                tracing::warn!(file = %path.display(), "removing empty head chunk file left by a crash");
                std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
                listed.pop();
            }
        }
        let mut files = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for (seq, path) in listed {
            if let Some(p) = prev {
                if seq != p + 1 {
                    return Err(corrupt(
                        &path,
                        0,
                        format!("head chunk files are not sequential: {p} is followed by {seq}"),
                    ));
                }
            }
            prev = Some(seq);
            let seq32 = u32::try_from(seq)
                .map_err(|_| corrupt(&path, 0, "file sequence number too large"))?;
            let map = map_file(&path)?;
            check_header(&map, &path)?;
            files.insert(
                seq32,
                FileEntry {
                    path,
                    map: Some(map),
                    maxt: i64::MAX,
                },
            );
        }
        let last = files.keys().next_back().copied().unwrap_or(0);
        Ok(ChunkDiskMapper {
            dir,
            max_file_size,
            w: Mutex::new(WriteState {
                seq: last,
                offset: 0,
                cut_on_next: false,
                file: None,
                buf: Vec::new(),
                cur_maxt: i64::MIN,
            }),
            files: RwLock::new(files),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes an in-order chunk of `series_ref` covering `[mint, maxt]`; returns its reference.
    pub fn write_chunk(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        enc: Encoding,
        data: &[u8],
    ) -> Result<HeadChunkRef> {
        self.write_chunk_with(series_ref, mint, maxt, enc, false, data)
    }

    /// Writes a chunk, marking it out-of-order when `ooo`.
    pub fn write_chunk_with(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        enc: Encoding,
        ooo: bool,
        data: &[u8],
    ) -> Result<HeadChunkRef> {
        let mut w = self.w.lock();
        let size = (FIXED_META_SIZE + uvarint_len(data.len() as u64) + data.len() + 4) as u64;
        if w.offset == 0 || w.cut_on_next || w.offset + size > self.max_file_size {
            self.cut(&mut w)?;
        }
        if w.offset > u32::MAX as u64 {
            return Err(Error::Invalid(format!(
                "head chunk file offset {} does not fit a chunk reference",
                w.offset
            )));
        }
        let r = new_head_chunk_ref(w.seq, w.offset as u32);
        let start = w.buf.len();
        w.buf.extend_from_slice(&series_ref.to_be_bytes());
        w.buf.extend_from_slice(&mint.to_be_bytes());
        w.buf.extend_from_slice(&maxt.to_be_bytes());
        let e = if ooo {
            enc.as_u8() | OUT_OF_ORDER_MASK
        } else {
            enc.as_u8()
        };
        w.buf.push(e);
        put_uvarint(&mut w.buf, data.len() as u64);
        w.buf.extend_from_slice(data);
        let crc = crc32(&w.buf[start..]);
        w.buf.extend_from_slice(&crc.to_be_bytes());
        w.offset += size;
        if maxt > w.cur_maxt {
            w.cur_maxt = maxt;
        }
        if w.buf.len() >= WRITE_BUFFER_SIZE {
            self.flush_locked(&mut w)?;
        }
        Ok(r)
    }

    /// Makes the next write start a new file.
    pub fn cut_new_file(&self) {
        self.w.lock().cut_on_next = true;
    }

    fn cur_path(&self, w: &WriteState) -> PathBuf {
        self.dir.join(segment_file_name(w.seq as u64))
    }

    fn flush_locked(&self, w: &mut WriteState) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let path = self.cur_path(w);
        let WriteState { file, buf, .. } = w;
        if let Some(f) = file.as_mut() {
            f.write_all(buf).map_err(|e| Error::io("write", &path, e))?;
        }
        buf.clear();
        Ok(())
    }

    /// Flushes and fsyncs the current file, then starts the next one.
    fn cut(&self, w: &mut WriteState) -> Result<()> {
        self.finalize_locked(w)?;
        let seq = w
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Invalid("head chunk file sequence exhausted".into()))?;
        let path = self.dir.join(segment_file_name(seq as u64));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let mut hdr = [0u8; HEAD_CHUNK_FILE_HEADER_SIZE];
        hdr[..4].copy_from_slice(&MAGIC_HEAD_CHUNKS.to_be_bytes());
        hdr[4] = HEAD_CHUNKS_FORMAT_V1;
        f.write_all(&hdr)
            .map_err(|e| Error::io("write", &path, e))?;
        sync_dir(&self.dir)?;
        {
            let mut files = self.files.write();
            if w.file.is_some() {
                if let Some(prev) = files.get_mut(&w.seq) {
                    prev.maxt = w.cur_maxt;
                }
            }
            files.insert(
                seq,
                FileEntry {
                    path,
                    map: None,
                    maxt: i64::MAX,
                },
            );
        }
        w.seq = seq;
        w.file = Some(f);
        w.offset = HEAD_CHUNK_FILE_HEADER_SIZE as u64;
        w.cut_on_next = false;
        w.cur_maxt = i64::MIN;
        Ok(())
    }

    fn finalize_locked(&self, w: &mut WriteState) -> Result<()> {
        self.flush_locked(w)?;
        if let Some(f) = w.file.as_ref() {
            let path = self.cur_path(w);
            f.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
        }
        Ok(())
    }

    /// Writes buffered chunks to the file and fsyncs it.
    pub fn fsync(&self) -> Result<()> {
        let mut w = self.w.lock();
        self.finalize_locked(&mut w)
    }

    /// Flushes and fsyncs; the mapper stays usable (the next write continues the file).
    pub fn close(&self) -> Result<()> {
        self.fsync()
    }

    /// Reads the chunk at `r`, CRC verified: (encoding, is OOO, data kept alive by the map).
    pub fn chunk(&self, r: HeadChunkRef) -> Result<(Encoding, bool, MmapBytes)> {
        let (seq, off) = unpack_head_chunk_ref(r);
        {
            let files = self.files.read();
            let entry = files.get(&seq).ok_or_else(|| {
                Error::Invalid(format!(
                    "head chunk reference {r:#x}: file {} does not exist in {}",
                    segment_file_name(seq as u64),
                    self.dir.display()
                ))
            })?;
            if let Some(map) = &entry.map {
                if let Some(res) = parse_record(map, off as usize, &entry.path)? {
                    return res.into_chunk(map, &entry.path, off);
                }
            }
        }
        // The record lies beyond what is mapped: flush if it is in the file being written,
        // then map the file again.
        {
            let mut w = self.w.lock();
            if w.seq == seq {
                self.flush_locked(&mut w)?;
            }
        }
        let mut files = self.files.write();
        let entry = files
            .get_mut(&seq)
            .ok_or_else(|| Error::Invalid(format!("head chunk file {seq} was removed")))?;
        let map = map_file(&entry.path)?;
        entry.map = Some(map.clone());
        match parse_record(&map, off as usize, &entry.path)? {
            Some(res) => res.into_chunk(&map, &entry.path, off),
            None => Err(corrupt(
                &entry.path,
                off as u64,
                format!(
                    "chunk record extends beyond the end of the {}-byte file",
                    map.len()
                ),
            )),
        }
    }

    /// Replays every chunk in file order, calling `f` for each. Stops at the first torn or
    /// corrupt record: logs a warning, truncates that file at the record and deletes all later
    /// files, then returns `Ok`. An error returned by `f` aborts replay and is returned.
    /// Call before reading chunks (truncation must not cut under handed-out maps), and do not
    /// write chunks from `f` (the write lock is held).
    pub fn iterate_all<F>(&self, mut f: F) -> Result<()>
    where
        F: FnMut(&HeadChunkMeta) -> Result<()>,
    {
        let mut w = self.w.lock();
        let seqs: Vec<u32> = self.files.read().keys().copied().collect();
        let mut corrupt_at: Option<(u32, usize, String)> = None;
        for &seq in &seqs {
            let (path, map) = {
                let mut files = self.files.write();
                let Some(entry) = files.get_mut(&seq) else {
                    continue;
                };
                if w.file.is_some() && seq == w.seq {
                    // Chunks written by this process; nothing to replay.
                    continue;
                }
                let map = map_file(&entry.path)?;
                entry.map = Some(map.clone());
                (entry.path.clone(), map)
            };
            let mut off = HEAD_CHUNK_FILE_HEADER_SIZE;
            let mut maxt = i64::MIN;
            while off < map.len() {
                let rest = &map[off..];
                if rest.len() >= FIXED_META_SIZE && rest[..24].iter().all(|&b| b == 0) {
                    // Prometheus' end marker: a zeroed series ref, mint and maxt (preallocated
                    // or never written space).
                    break;
                }
                if rest.iter().all(|&b| b == 0) {
                    break;
                }
                match parse_record(&map, off, &path) {
                    Ok(Some(rec)) => {
                        let data = &map[rec.data.0..rec.data.1];
                        if data.len() < 2 {
                            corrupt_at = Some((seq, off, "chunk data shorter than 2 bytes".into()));
                            break;
                        }
                        let meta = HeadChunkMeta {
                            series_ref: rec.series_ref,
                            chunk_ref: new_head_chunk_ref(seq, off as u32),
                            mint: rec.mint,
                            maxt: rec.maxt,
                            num_samples: u16::from_be_bytes([data[0], data[1]]),
                            encoding: rec.encoding,
                            ooo: rec.ooo,
                        };
                        if rec.maxt > maxt {
                            maxt = rec.maxt;
                        }
                        f(&meta)?;
                        off = rec.end;
                    }
                    Ok(None) => {
                        corrupt_at =
                            Some((seq, off, "torn chunk record at the end of the file".into()));
                        break;
                    }
                    Err(e) => {
                        corrupt_at = Some((seq, off, e.to_string()));
                        break;
                    }
                }
            }
            if let Some(entry) = self.files.write().get_mut(&seq) {
                entry.maxt = maxt;
            }
            if corrupt_at.is_some() {
                break;
            }
        }
        if let Some((seq, off, why)) = corrupt_at {
            self.repair(&mut w, seq, off, &why)?;
        }
        Ok(())
    }

    /// Truncates file `seq` at `off` and removes all later files.
    fn repair(&self, w: &mut WriteState, seq: u32, off: usize, why: &str) -> Result<()> {
        let mut files = self.files.write();
        let later: Vec<u32> = files.range(seq + 1..).map(|(s, _)| *s).collect();
        if w.file.is_some() && later.contains(&w.seq) {
            return Err(Error::Invalid(format!(
                "head chunk file {seq} is corrupt at offset {off} ({why}) but later files are being written"
            )));
        }
        let Some(entry) = files.get_mut(&seq) else {
            return Ok(());
        };
        tracing::warn!(
            file = %entry.path.display(),
            offset = off,
            removed_later_files = later.len(),
            "head chunk file is corrupt or torn: {why}; truncating it"
        );
        entry.map = None;
        let f = OpenOptions::new()
            .write(true)
            .open(&entry.path)
            .map_err(|e| Error::io("open", &entry.path, e))?;
        f.set_len(off as u64)
            .map_err(|e| Error::io("truncate", &entry.path, e))?;
        f.sync_all()
            .map_err(|e| Error::io("fsync", &entry.path, e))?;
        entry.map = Some(map_file(&entry.path)?);
        for s in later {
            if let Some(e) = files.remove(&s) {
                std::fs::remove_file(&e.path).map_err(|err| Error::io("remove", &e.path, err))?;
            }
        }
        if w.file.is_none() {
            // The next file continues the sequence after the files kept.
            w.seq = seq;
        }
        sync_dir(&self.dir)
    }

    /// Deletes the oldest files whose chunks all end before `mint` (never the file being
    /// written, and only a contiguous prefix so file numbers stay sequential). Like
    /// Prometheus, asks for a new file on the next write when the current one has chunks, so
    /// it can go in a later truncation. Files not yet replayed are never deleted. Returns how
    /// many files were removed.
    pub fn truncate_before(&self, mint: i64) -> Result<usize> {
        self.truncate_where(|_, maxt, _| maxt < mint)
    }

    /// Deletes the files with sequence number below `seq` (Prometheus 3's `Truncate(fileNo)`),
    /// never the file being written. Returns how many files were removed.
    pub fn truncate_files_before(&self, seq: u32) -> Result<usize> {
        self.truncate_where(|s, _, _| s < seq)
    }

    fn truncate_where(&self, keep_going: impl Fn(u32, i64, &Path) -> bool) -> Result<usize> {
        let mut w = self.w.lock();
        if w.file.is_some() && w.offset > HEAD_CHUNK_FILE_HEADER_SIZE as u64 {
            w.cut_on_next = true;
        }
        let mut files = self.files.write();
        let mut remove = Vec::new();
        for (&seq, e) in files.iter() {
            if (w.file.is_some() && seq == w.seq) || !keep_going(seq, e.maxt, &e.path) {
                break;
            }
            remove.push(seq);
        }
        for seq in &remove {
            if let Some(e) = files.remove(seq) {
                std::fs::remove_file(&e.path).map_err(|err| Error::io("remove", &e.path, err))?;
            }
        }
        if !remove.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(remove.len())
    }

    /// Sequence numbers of the files on disk, oldest first.
    pub fn file_seqs(&self) -> Vec<u32> {
        self.files.read().keys().copied().collect()
    }

    /// Total size of the files on disk, in bytes.
    pub fn size(&self) -> Result<u64> {
        let files = self.files.read();
        let mut n = 0;
        for e in files.values() {
            n += std::fs::metadata(&e.path)
                .map_err(|err| Error::io("stat", &e.path, err))?
                .len();
        }
        Ok(n)
    }
}

impl Drop for ChunkDiskMapper {
    fn drop(&mut self) {
        let mut w = self.w.lock();
        if let Err(e) = self.flush_locked(&mut w) {
            tracing::warn!("flushing head chunks on drop: {e}");
        }
    }
}

fn check_header(map: &[u8], path: &Path) -> Result<()> {
    if map.len() < HEAD_CHUNK_FILE_HEADER_SIZE {
        return Err(corrupt(
            path,
            0,
            format!(
                "file of {} bytes is shorter than the 8-byte header",
                map.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([map[0], map[1], map[2], map[3]]);
    if magic != MAGIC_HEAD_CHUNKS {
        return Err(corrupt(path, 0, format!("invalid magic number {magic:#x}")));
    }
    if map[4] != HEAD_CHUNKS_FORMAT_V1 {
        return Err(corrupt(
            path,
            4,
            format!("invalid format version {}", map[4]),
        ));
    }
    Ok(())
}

struct Record {
    series_ref: u64,
    mint: i64,
    maxt: i64,
    encoding: Encoding,
    ooo: bool,
    data: (usize, usize),
    end: usize,
}

impl Record {
    fn into_chunk(
        self,
        map: &Arc<Mmap>,
        path: &Path,
        off: u32,
    ) -> Result<(Encoding, bool, MmapBytes)> {
        let b = MmapBytes::new(map.clone(), self.data.0, self.data.1)
            .ok_or_else(|| corrupt(path, off as u64, "chunk data outside the file"))?;
        Ok((self.encoding, self.ooo, b))
    }
}

/// Parses the record at `off`. `Ok(None)` when it extends beyond `b` (torn or not yet
/// mapped); errors for malformed or CRC-failing records.
fn parse_record(b: &[u8], off: usize, path: &Path) -> Result<Option<Record>> {
    if off < HEAD_CHUNK_FILE_HEADER_SIZE {
        return Err(corrupt(
            path,
            off as u64,
            "chunk offset inside the file header",
        ));
    }
    if off >= b.len() || b.len() - off < FIXED_META_SIZE + 1 {
        return Ok(None);
    }
    let r = &b[off..];
    let be64 = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&r[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let series_ref = be64(0);
    let mint = be64(8) as i64;
    let maxt = be64(16) as i64;
    let enc_byte = r[24];
    let len_field = &r[25..r.len().min(25 + 5)];
    let (len, n) = match uvarint(len_field) {
        Some(x) => x,
        None if len_field.len() < 5 && len_field.iter().all(|&c| c >= 0x80) => return Ok(None),
        None => return Err(corrupt(path, off as u64, "invalid chunk length varint")),
    };
    let data_start = off + 25 + n;
    let Some(data_end) = usize::try_from(len)
        .ok()
        .and_then(|l| data_start.checked_add(l))
    else {
        return Err(corrupt(
            path,
            off as u64,
            format!("chunk length {len} too large"),
        ));
    };
    let Some(end) = data_end.checked_add(4) else {
        return Err(corrupt(
            path,
            off as u64,
            format!("chunk length {len} too large"),
        ));
    };
    if end > b.len() {
        return Ok(None);
    }
    let want = u32::from_be_bytes([
        b[data_end],
        b[data_end + 1],
        b[data_end + 2],
        b[data_end + 3],
    ]);
    let got = crc32(&b[off..data_end]);
    if want != got {
        return Err(corrupt(
            path,
            off as u64,
            format!("checksum mismatch: stored {want:#010x}, computed {got:#010x}"),
        ));
    }
    let encoding = check_encoding(enc_byte & !OUT_OF_ORDER_MASK).map_err(|_| {
        corrupt(
            path,
            off as u64,
            format!("unknown chunk encoding {}", enc_byte & !OUT_OF_ORDER_MASK),
        )
    })?;
    Ok(Some(Record {
        series_ref,
        mint,
        maxt,
        encoding,
        ooo: enc_byte & OUT_OF_ORDER_MASK != 0,
        data: (data_start, data_end),
        end,
    }))
}

#[cfg(test)]
mod tests;
