//! [`IndexReader`]: reads an index v2 file from bytes it does not own (a memory map, a `Vec`,
//! a cached copy of a bucket object).
//!
//! At open the reader checks the magic, the version, and the CRCs of the TOC, the symbol table
//! and the postings offset table. It decodes every symbol once into a `Vec<Arc<str>>` (memory:
//! about 32 bytes plus the string per symbol) so that label strings handed out are shared, and
//! keeps every 32nd postings offset table entry of each label name (plus the last one), as
//! Prometheus does. Series entries and postings lists are decoded lazily and CRC-checked on
//! every read. Every error names the file and the offset where decoding failed.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::{
    ChunkMeta, Toc, ALL_POSTINGS_KEY, FORMAT_V1, FORMAT_V2, HEADER_LEN, MAGIC_INDEX, SAMPLE_FACTOR,
    SERIES_ALIGNMENT, TOC_LEN,
};
use crate::encoding::{crc32, DecBuf, DecodeError};
use crate::error::{Error, Result};
use crate::labels::{Label, Labels};

/// One sampled entry of the postings offset table.
#[derive(Debug, Clone)]
struct Sample {
    value: Arc<str>,
    /// Absolute file offset of the entry (its key-count byte).
    off: usize,
}

/// Sampling state for one label name while reading the postings offset table.
#[derive(Default)]
struct CurName<'a> {
    name: Option<Arc<str>>,
    count: usize,
    last: Option<(&'a str, usize)>,
}

/// A reader of one index file. `B` is any byte container: `memmap2::Mmap`, `Vec<u8>`,
/// `Arc<[u8]>`, ...
pub struct IndexReader<B> {
    bytes: B,
    path: PathBuf,
    toc: Toc,
    symbols: Vec<Arc<str>>,
    /// Label name → sampled postings offset table entries (first, every 32nd, last).
    /// Includes the all-postings name `""`.
    postings: BTreeMap<Arc<str>, Vec<Sample>>,
    /// Absolute end of the postings offset table entries (start of its CRC).
    pt_end: usize,
}

impl<B> std::fmt::Debug for IndexReader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("path", &self.path)
            .field("toc", &self.toc)
            .field("symbols", &self.symbols.len())
            .field("label_names", &self.postings.len())
            .finish()
    }
}

impl IndexReader<memmap2::Mmap> {
    /// Memory-maps the index file at `path` and opens it.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        // SAFETY: block files are immutable once written; nobody truncates them while mapped.
        let mmap = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("mmap", path, e))?;
        Self::open(mmap, path)
    }
}

/// Converts a decode error at `base + e.offset()` into a corruption error.
fn dec_err(path: &Path, what: &'static str, base: usize, e: DecodeError) -> Error {
    Error::corrupt(
        "index",
        path,
        (base + e.offset()) as u64,
        format!("{what}: {e}"),
    )
}

impl<B: AsRef<[u8]>> IndexReader<B> {
    /// Opens an index over `bytes`; `path` is only used in error messages.
    pub fn open(bytes: B, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let b = bytes.as_ref();
        let corrupt = |off: usize, d: String| Error::corrupt("index", &path, off as u64, d);
        if b.len() < HEADER_LEN + TOC_LEN {
            return Err(corrupt(
                0,
                format!("file of {} bytes is too small for an index", b.len()),
            ));
        }
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC_INDEX {
            return Err(corrupt(0, format!("invalid magic number {magic:#010x}")));
        }
        match b[4] {
            FORMAT_V2 => {}
            FORMAT_V1 => {
                return Err(corrupt(
                    4,
                    "index format v1 (Prometheus 1.x/2.0-beta) is not supported".into(),
                ))
            }
            v => return Err(corrupt(4, format!("unknown index format version {v}"))),
        }

        // TOC.
        let toc_off = b.len() - TOC_LEN;
        let tb = &b[toc_off..];
        let exp = u32::from_be_bytes([tb[48], tb[49], tb[50], tb[51]]);
        if crc32(&tb[..48]) != exp {
            return Err(corrupt(toc_off, "TOC checksum mismatch".into()));
        }
        let mut d = DecBuf::new(&tb[..48]);
        let mut next = || d.be64().map_err(|e| dec_err(&path, "TOC", toc_off, e));
        let toc = Toc {
            symbols: next()?,
            series: next()?,
            label_indices: next()?,
            label_indices_table: next()?,
            postings: next()?,
            postings_table: next()?,
        };
        for (name, v) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("label indices", toc.label_indices),
            ("label indices table", toc.label_indices_table),
            ("postings", toc.postings),
            ("postings table", toc.postings_table),
        ] {
            if v > toc_off as u64 {
                return Err(corrupt(
                    toc_off,
                    format!("TOC {name} offset {v} is beyond the TOC at {toc_off}"),
                ));
            }
        }

        let mut r = IndexReader {
            bytes,
            path,
            toc,
            symbols: Vec::new(),
            postings: BTreeMap::new(),
            pt_end: 0,
        };
        r.read_symbols()?;
        r.read_postings_table()?;
        Ok(r)
    }

    fn corrupt(&self, off: usize, detail: impl Into<String>) -> Error {
        Error::corrupt("index", &self.path, off as u64, detail)
    }

    /// The CRC-checked body of the `len <4b> | body | CRC <4b>` section at `off`.
    fn section(&self, what: &'static str, off: usize) -> Result<&[u8]> {
        let b = self.bytes.as_ref();
        let end = b.len() - TOC_LEN;
        if off == 0 || off + 4 > end {
            return Err(self.corrupt(off, format!("{what} offset out of range")));
        }
        let len = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        if off + 4 + len + 4 > end {
            return Err(self.corrupt(
                off,
                format!("{what} of {len} bytes runs past the end of the data"),
            ));
        }
        let body = &b[off + 4..off + 4 + len];
        let c = &b[off + 4 + len..off + 8 + len];
        let exp = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        if crc32(body) != exp {
            return Err(self.corrupt(off, format!("{what} checksum mismatch")));
        }
        Ok(body)
    }

    fn read_symbols(&mut self) -> Result<()> {
        let off = self.toc.symbols as usize;
        let body = self.section("symbol table", off)?;
        let base = off + 4;
        let mut d = DecBuf::new(body);
        let err = |e: DecodeError| dec_err(&self.path, "symbol table", base, e);
        let n = d.be32().map_err(err)? as usize;
        // Every symbol takes at least one byte; do not trust the count for the allocation.
        let mut syms: Vec<Arc<str>> = Vec::with_capacity(n.min(d.remaining()));
        for _ in 0..n {
            let at = d.pos();
            let s = d.uvarint_str().map_err(err)?;
            if let Some(last) = syms.last() {
                if **last >= *s {
                    return Err(self.corrupt(
                        base + at,
                        format!("symbol {s:?} out of order after {last:?}"),
                    ));
                }
            }
            syms.push(Arc::from(s));
        }
        self.symbols = syms;
        Ok(())
    }

    /// The shared string for `s`: the symbol itself when `s` is a symbol.
    fn intern(&self, s: &str) -> Arc<str> {
        match self.symbols.binary_search_by(|x| (**x).cmp(s)) {
            Ok(i) => self.symbols[i].clone(),
            Err(_) => Arc::from(s),
        }
    }

    fn read_postings_table(&mut self) -> Result<()> {
        let off = self.toc.postings_table as usize;
        let body = self.section("postings offset table", off)?;
        let base = off + 4;
        let pt_end = base + body.len();
        let mut d = DecBuf::new(body);
        let err = |e: DecodeError| dec_err(&self.path, "postings offset table", base, e);
        let n = d.be32().map_err(err)?;
        let mut postings: BTreeMap<Arc<str>, Vec<Sample>> = BTreeMap::new();
        // Per label name: entry count so far, and the last entry if it was not sampled.
        let mut cur = CurName::default();
        let mut prev: Option<(&[u8], &[u8])> = None;
        for _ in 0..n {
            let at = base + d.pos();
            let (name, value, _) = decode_entry(&mut d).map_err(|e| match e {
                EntryError::Dec(e) => err(e),
                EntryError::KeyCount(k) => self.corrupt(
                    at,
                    format!("postings offset table entry has {k} keys, expected 2"),
                ),
            })?;
            if let Some(p) = prev {
                if p >= (name, value) {
                    return Err(self.corrupt(at, "postings offset table entries out of order"));
                }
            }
            prev = Some((name, value));
            let name = std::str::from_utf8(name)
                .map_err(|_| self.corrupt(at, "label name is not UTF-8"))?;
            let value = std::str::from_utf8(value)
                .map_err(|_| self.corrupt(at, "label value is not UTF-8"))?;
            if cur.name.as_deref() != Some(name) {
                self.flush_last(&mut cur, &mut postings);
                cur = CurName {
                    name: Some(self.intern(name)),
                    count: 0,
                    last: None,
                };
            }
            if cur.count % SAMPLE_FACTOR == 0 {
                let s = Sample {
                    value: self.intern(value),
                    off: at,
                };
                if let Some(n) = &cur.name {
                    postings.entry(n.clone()).or_default().push(s);
                }
                cur.last = None;
            } else {
                cur.last = Some((value, at));
            }
            cur.count += 1;
        }
        self.flush_last(&mut cur, &mut postings);
        for v in postings.values_mut() {
            v.shrink_to_fit();
        }
        self.postings = postings;
        self.pt_end = pt_end;
        Ok(())
    }

    /// Records the current name's last entry when it was not sampled.
    fn flush_last(&self, cur: &mut CurName<'_>, postings: &mut BTreeMap<Arc<str>, Vec<Sample>>) {
        if let (Some(n), Some((v, off))) = (cur.name.take(), cur.last.take()) {
            let s = Sample {
                value: self.intern(v),
                off,
            };
            postings.entry(n).or_default().push(s);
        }
    }

    /// Scans the postings offset table entries of `name`, starting at the sampled entry at or
    /// before `from` (or the first one), calling `f(value, postings_offset)` until it breaks or
    /// the name's entries end.
    fn scan_values(
        &self,
        name: &str,
        from: Option<&str>,
        mut f: impl FnMut(&str, u64) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let Some(samples) = self.postings.get(name) else {
            return Ok(());
        };
        let i = match from {
            Some(v) => samples
                .partition_point(|s| *s.value <= *v)
                .saturating_sub(1),
            None => 0,
        };
        let Some(start) = samples.get(i) else {
            return Ok(());
        };
        let b = self.bytes.as_ref();
        let mut d = DecBuf::new(&b[start.off..self.pt_end]);
        while !d.is_empty() {
            let at = start.off + d.pos();
            let (n, v, off) = decode_entry(&mut d).map_err(|e| match e {
                EntryError::Dec(e) => dec_err(&self.path, "postings offset table", start.off, e),
                EntryError::KeyCount(k) => self.corrupt(at, format!("entry has {k} keys")),
            })?;
            if n != name.as_bytes() {
                break;
            }
            let v =
                std::str::from_utf8(v).map_err(|_| self.corrupt(at, "label value is not UTF-8"))?;
            if f(v, off)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Decodes the postings list at `off`.
    fn read_postings(&self, off: u64) -> Result<RoaringBitmap> {
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        if off >= self.bytes.as_ref().len() {
            return Err(self.corrupt(off, "postings offset out of range"));
        }
        let body = self.section("postings list", off)?;
        let mut d = DecBuf::new(body);
        let n = d
            .be32()
            .map_err(|e| dec_err(&self.path, "postings list", off + 4, e))?
            as usize;
        if d.remaining() != 4 * n {
            return Err(self.corrupt(
                off,
                format!(
                    "postings list of {n} entries has {} bytes, expected {}",
                    d.remaining(),
                    4 * n
                ),
            ));
        }
        let ids = d
            .rest()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        RoaringBitmap::from_sorted_iter(ids)
            .map_err(|_| self.corrupt(off, "postings list is not strictly increasing"))
    }

    /// The file path used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The format version (always 2).
    pub fn version(&self) -> u8 {
        FORMAT_V2
    }

    /// The size of the index in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.as_ref().len() as u64
    }

    /// The raw bytes of the index.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// All symbols, in ascending order.
    pub fn symbols(&self) -> impl ExactSizeIterator<Item = &Arc<str>> + '_ {
        self.symbols.iter()
    }

    /// The symbol with id `id`.
    pub fn symbol(&self, id: u32) -> Option<&Arc<str>> {
        self.symbols.get(id as usize)
    }

    /// All label names, sorted (the all-postings key is not a label name).
    pub fn label_names(&self) -> Vec<String> {
        self.label_names_shared()
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// All label names as shared strings, sorted.
    pub fn label_names_shared(&self) -> Vec<Arc<str>> {
        self.postings
            .keys()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect()
    }

    /// The values of label `name`, sorted; empty when the name does not occur.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.scan_values(name, None, |v, _| {
            out.push(v.to_string());
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// The values of label `name` as shared strings, sorted.
    pub fn label_values_shared(&self, name: &str) -> Result<Vec<Arc<str>>> {
        let mut out = Vec::new();
        self.scan_values(name, None, |v, _| {
            out.push(self.intern(v));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// The series ids having label `name="value"`; empty when the pair does not occur.
    pub fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        let mut found = None;
        self.scan_values(name, Some(value), |v, off| {
            if v < value {
                return Ok(ControlFlow::Continue(()));
            }
            if v == value {
                found = Some(off);
            }
            Ok(ControlFlow::Break(()))
        })?;
        match found {
            Some(off) => self.read_postings(off),
            None => Ok(RoaringBitmap::new()),
        }
    }

    /// The union of the postings of `name=v` for every `v` in `values`.
    pub fn postings_for_values<S: AsRef<str>>(
        &self,
        name: &str,
        values: &[S],
    ) -> Result<RoaringBitmap> {
        let mut vs: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
        vs.sort_unstable();
        vs.dedup();
        let mut out = RoaringBitmap::new();
        for v in vs {
            out |= self.postings(name, v)?;
        }
        Ok(out)
    }

    /// Every series id in the index (the `("", "")` postings list).
    pub fn all_postings(&self) -> Result<RoaringBitmap> {
        self.postings(ALL_POSTINGS_KEY.0, ALL_POSTINGS_KEY.1)
    }

    /// The union of the postings of `name=v` for every value `v` of `name` with `matches(v)`.
    pub fn postings_for_label_matching(
        &self,
        name: &str,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<RoaringBitmap> {
        let mut offs = Vec::new();
        self.scan_values(name, None, |v, off| {
            if matches(v) {
                offs.push(off);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        let mut out = RoaringBitmap::new();
        for off in offs {
            out |= self.read_postings(off)?;
        }
        Ok(out)
    }

    /// Decodes series `id` into `labels` and `chunks` (both cleared first). The entry's CRC is
    /// checked.
    pub fn series(
        &self,
        id: u32,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<()> {
        labels.clear();
        chunks.clear();
        let b = self.bytes.as_ref();
        let off = id as usize * SERIES_ALIGNMENT as usize;
        let end = b.len() - TOC_LEN;
        if off < HEADER_LEN || off >= end {
            return Err(self.corrupt(off, format!("series id {id} out of range")));
        }
        let (len, n) = crate::encoding::uvarint(&b[off..end])
            .ok_or_else(|| self.corrupt(off, format!("series {id}: bad length varint")))?;
        let start = off + n;
        if len > (end - start) as u64 || end - start - (len as usize) < 4 {
            return Err(self.corrupt(off, format!("series {id} of {len} bytes is truncated")));
        }
        let len = len as usize;
        let body = &b[start..start + len];
        let c = &b[start + len..start + len + 4];
        if crc32(body) != u32::from_be_bytes([c[0], c[1], c[2], c[3]]) {
            return Err(self.corrupt(off, format!("series {id} checksum mismatch")));
        }
        let err = |e: DecodeError| dec_err(&self.path, "series", start, e);
        let mut d = DecBuf::new(body);
        let k = d.uvarint().map_err(err)?;
        for _ in 0..k {
            let at = start + d.pos();
            let ln = d.uvarint().map_err(err)?;
            let lv = d.uvarint().map_err(err)?;
            let sym = |id: u64| {
                u32::try_from(id)
                    .ok()
                    .and_then(|i| self.symbols.get(i as usize))
                    .cloned()
                    .ok_or_else(|| self.corrupt(at, format!("unknown symbol {id}")))
            };
            labels.push(Label {
                name: sym(ln)?,
                value: sym(lv)?,
            });
        }
        let k = d.uvarint().map_err(err)?;
        if k == 0 {
            return Ok(());
        }
        let mint = d.varint().map_err(err)?;
        let maxt = (d.uvarint().map_err(err)? as i64).wrapping_add(mint);
        let mut cref = d.uvarint().map_err(err)? as i64;
        chunks.push(ChunkMeta {
            min_time: mint,
            max_time: maxt,
            chunk_ref: cref as u64,
        });
        let mut t0 = maxt;
        for _ in 1..k {
            let mint = (d.uvarint().map_err(err)? as i64).wrapping_add(t0);
            let maxt = (d.uvarint().map_err(err)? as i64).wrapping_add(mint);
            cref = cref.wrapping_add(d.varint().map_err(err)?);
            t0 = maxt;
            chunks.push(ChunkMeta {
                min_time: mint,
                max_time: maxt,
                chunk_ref: cref as u64,
            });
        }
        Ok(())
    }

    /// Convenience: decodes series `id` into a [`Labels`] and its chunk metas.
    pub fn series_labels(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        let mut ls = Vec::new();
        let mut cs = Vec::new();
        self.series(id, &mut ls, &mut cs)?;
        if ls.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(self.corrupt(
                id as usize * SERIES_ALIGNMENT as usize,
                format!("series {id}: labels not sorted by name"),
            ));
        }
        Ok((Labels::from_sorted(ls), cs))
    }
}

enum EntryError {
    Dec(DecodeError),
    KeyCount(u64),
}

impl From<DecodeError> for EntryError {
    fn from(e: DecodeError) -> Self {
        EntryError::Dec(e)
    }
}

/// Decodes one postings offset table entry: `(name, value, postings offset)`.
fn decode_entry<'a>(
    d: &mut DecBuf<'a>,
) -> std::result::Result<(&'a [u8], &'a [u8], u64), EntryError> {
    let k = d.uvarint()?;
    if k != 2 {
        return Err(EntryError::KeyCount(k));
    }
    let n = d.uvarint_bytes()?;
    let v = d.uvarint_bytes()?;
    let o = d.uvarint()?;
    Ok((n, v, o))
}
