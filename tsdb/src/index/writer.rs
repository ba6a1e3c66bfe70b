//! [`IndexWriter`]: writes an index v2 file in the exact layout Prometheus 2.42 produces.
//!
//! Usage: [`IndexWriter::create`], then every symbol in ascending order
//! ([`IndexWriter::add_symbol`] / [`IndexWriter::add_symbols`]), then every series in
//! ascending label order ([`IndexWriter::add_series`]), then [`IndexWriter::close`].
//!
//! Memory: the symbols are kept (as one boxed string each) for symbol-id lookup, and postings
//! are accumulated as one `RoaringBitmap` per (name, value) keyed by symbol ids. Prometheus
//! instead re-reads the series section and spills to temporary files; the output is identical.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use super::{ChunkMeta, Toc, FORMAT_V2, MAGIC_INDEX, SERIES_ALIGNMENT};
use crate::encoding::{crc32, EncBuf};
use crate::error::{Error, Result};
use crate::labels::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Symbols,
    Series,
    Done,
}

/// Writes one index file. See the module documentation for the call order.
pub struct IndexWriter {
    path: PathBuf,
    f: BufWriter<File>,
    pos: u64,
    stage: Stage,
    toc: Toc,
    /// Every symbol, sorted; the position is the symbol id.
    symbols: Vec<Box<str>>,
    /// Symbol ids of label names seen so far (few, looked up for every label).
    name_ids: HashMap<Box<str>, u32>,
    last_series: Option<Labels>,
    /// (name symbol id, value symbol id) → series ids. Symbol ids sort like the strings.
    postings: BTreeMap<(u32, u32), RoaringBitmap>,
    all: RoaringBitmap,
    buf: EncBuf,
    buf2: EncBuf,
}

impl std::fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("stage", &self.stage)
            .field("symbols", &self.symbols.len())
            .field("series", &self.all.len())
            .finish()
    }
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes the header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut w = IndexWriter {
            f: BufWriter::with_capacity(1 << 20, file),
            path,
            pos: 0,
            stage: Stage::Symbols,
            toc: Toc::default(),
            symbols: Vec::new(),
            name_ids: HashMap::new(),
            last_series: None,
            postings: BTreeMap::new(),
            all: RoaringBitmap::new(),
            buf: EncBuf::with_capacity(1 << 12),
            buf2: EncBuf::with_capacity(1 << 12),
        };
        let mut hdr = [0u8; 5];
        hdr[..4].copy_from_slice(&MAGIC_INDEX.to_be_bytes());
        hdr[4] = FORMAT_V2;
        w.write(&hdr)?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of series added so far.
    pub fn num_series(&self) -> u64 {
        self.all.len()
    }

    /// Adds one symbol. Symbols must be added before any series, in strictly ascending order.
    pub fn add_symbol(&mut self, sym: &str) -> Result<()> {
        if self.stage != Stage::Symbols {
            return Err(Error::Invalid(format!(
                "index {}: symbol {sym:?} added after series",
                self.path.display()
            )));
        }
        if let Some(last) = self.symbols.last() {
            if sym <= &**last {
                return Err(Error::Invalid(format!(
                    "index {}: symbol {sym:?} out of order (after {last:?})",
                    self.path.display()
                )));
            }
        }
        if self.symbols.len() >= u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "index {}: too many symbols",
                self.path.display()
            )));
        }
        self.symbols.push(sym.into());
        Ok(())
    }

    /// Adds symbols in strictly ascending order (see [`IndexWriter::add_symbol`]).
    pub fn add_symbols<I, S>(&mut self, syms: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for s in syms {
            self.add_symbol(s.as_ref())?;
        }
        Ok(())
    }

    /// Adds a series with its chunk metadata. Series must come in strictly ascending label order
    /// (Prometheus's `labels.Compare`) and every label string must be a symbol.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<()> {
        if self.stage == Stage::Symbols {
            self.finish_symbols()?;
        }
        if self.stage != Stage::Series {
            return Err(Error::Invalid(format!(
                "index {}: series added after close",
                self.path.display()
            )));
        }
        let in_order = match &self.last_series {
            Some(last) => labels > last,
            None => !labels.is_empty(),
        };
        if !in_order {
            return Err(Error::Invalid(format!(
                "index {}: out-of-order series added with label set {labels}",
                self.path.display()
            )));
        }

        self.pad(SERIES_ALIGNMENT)?;
        let id = self.pos / SERIES_ALIGNMENT;
        let id = u32::try_from(id).map_err(|_| {
            Error::Invalid(format!(
                "index {}: series offset {} exceeds the 64 GiB addressable by 32-bit series ids",
                self.path.display(),
                self.pos
            ))
        })?;

        let mut body = std::mem::take(&mut self.buf2);
        body.reset();
        body.put_uvarint(labels.len() as u64);
        let mut pairs = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            let name_id = match self.name_ids.get(&*l.name) {
                Some(&id) => id,
                None => {
                    let id = self.lookup_symbol(&l.name)?;
                    self.name_ids.insert(l.name.as_ref().into(), id);
                    id
                }
            };
            let value_id = self.lookup_symbol(&l.value)?;
            body.put_uvarint(name_id as u64);
            body.put_uvarint(value_id as u64);
            pairs.push((name_id, value_id));
        }
        body.put_uvarint(chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            body.put_varint(first.min_time);
            body.put_uvarint(first.max_time.wrapping_sub(first.min_time) as u64);
            body.put_uvarint(first.chunk_ref);
            let mut t0 = first.max_time;
            let mut ref0 = first.chunk_ref as i64;
            for c in rest {
                body.put_uvarint(c.min_time.wrapping_sub(t0) as u64);
                body.put_uvarint(c.max_time.wrapping_sub(c.min_time) as u64);
                t0 = c.max_time;
                body.put_varint((c.chunk_ref as i64).wrapping_sub(ref0));
                ref0 = c.chunk_ref as i64;
            }
        }
        let len = body.len();
        body.put_crc32_of(0);
        let mut head = std::mem::take(&mut self.buf);
        head.reset();
        head.put_uvarint(len as u64);
        let res = self.write(head.get()).and_then(|_| self.write(body.get()));
        self.buf = head;
        self.buf2 = body;
        res?;

        for p in pairs {
            self.postings.entry(p).or_default().insert(id);
        }
        self.all.insert(id);
        self.last_series = Some(labels.clone());
        Ok(())
    }

    /// Writes label indices, postings, the offset tables and the TOC, then fsyncs the file and
    /// its directory.
    pub fn close(mut self) -> Result<()> {
        if self.stage == Stage::Symbols {
            self.finish_symbols()?;
        }
        self.stage = Stage::Done;

        // Label indices (legacy, but Prometheus 2.42 writes them): one per label name.
        self.toc.label_indices = self.pos;
        let postings = std::mem::take(&mut self.postings);
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut values: Vec<u32> = Vec::new();
        let mut it = postings.keys().peekable();
        while let Some(&(name, value)) = it.next() {
            values.push(value);
            if !matches!(it.peek(), Some((n, _)) if *n == name) {
                self.pad(4)?;
                label_index_offsets.push((name, self.pos));
                self.write_label_index(&values)?;
                values.clear();
            }
        }

        // Postings lists; the all-postings list comes first.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut postings_offsets: Vec<(Option<(u32, u32)>, u64)> =
            Vec::with_capacity(postings.len() + 1);
        postings_offsets.push((None, self.pos));
        let all = std::mem::take(&mut self.all);
        self.write_postings(&all)?;
        for (&key, bm) in &postings {
            self.pad(4)?;
            postings_offsets.push((Some(key), self.pos));
            self.write_postings(bm)?;
        }
        drop(postings);

        // Label offset table (legacy).
        self.toc.label_indices_table = self.pos;
        let mut table = EncBuf::new();
        table.put_be32(label_index_offsets.len() as u32);
        for &(name, off) in &label_index_offsets {
            table.put_uvarint(1);
            table.put_uvarint_str(&self.symbols[name as usize]);
            table.put_uvarint(off);
        }
        self.write_section(table.get())?;

        // Postings offset table, streamed with a running CRC.
        self.toc.postings_table = self.pos;
        let entry = |b: &mut EncBuf, syms: &[Box<str>], key: Option<(u32, u32)>, off: u64| {
            let (n, v) = match key {
                Some((n, v)) => (&*syms[n as usize], &*syms[v as usize]),
                None => super::ALL_POSTINGS_KEY,
            };
            b.put_uvarint(2);
            b.put_uvarint_str(n);
            b.put_uvarint_str(v);
            b.put_uvarint(off);
        };
        let mut len: u64 = 4;
        let mut b = EncBuf::with_capacity(1 << 16);
        for &(key, off) in &postings_offsets {
            b.reset();
            entry(&mut b, &self.symbols, key, off);
            len += b.len() as u64;
        }
        let len = self.section_len(len, "postings offset table")?;
        self.write(&len.to_be_bytes())?;
        b.reset();
        b.put_be32(postings_offsets.len() as u32);
        let mut crc = 0u32;
        for &(key, off) in &postings_offsets {
            entry(&mut b, &self.symbols, key, off);
            if b.len() >= 1 << 16 {
                crc = crc32c::crc32c_append(crc, b.get());
                self.write(b.get())?;
                b.reset();
            }
        }
        crc = crc32c::crc32c_append(crc, b.get());
        self.write(b.get())?;
        self.write(&crc.to_be_bytes())?;

        let toc = self.toc.encode();
        self.write(&toc)?;

        let path = self.path.clone();
        let file = self
            .f
            .into_inner()
            .map_err(|e| Error::io("write", &path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
        drop(file);
        sync_parent_dir(&path)
    }

    fn lookup_symbol(&self, s: &str) -> Result<u32> {
        self.symbols
            .binary_search_by(|x| (**x).cmp(s))
            .map(|i| i as u32)
            .map_err(|_| {
                Error::Invalid(format!(
                    "index {}: symbol {s:?} was not added to the symbol table",
                    self.path.display()
                ))
            })
    }

    fn finish_symbols(&mut self) -> Result<()> {
        self.toc.symbols = self.pos;
        let mut b =
            EncBuf::with_capacity(8 + self.symbols.iter().map(|s| s.len() + 2).sum::<usize>());
        b.put_be32(0); // length, patched below
        b.put_be32(self.symbols.len() as u32);
        for s in &self.symbols {
            b.put_uvarint_str(s);
        }
        let len = self.section_len((b.len() - 4) as u64, "symbol table")?;
        b.buf[..4].copy_from_slice(&len.to_be_bytes());
        b.put_crc32_of(4);
        self.write(b.get())?;
        self.toc.series = self.pos;
        self.stage = Stage::Series;
        Ok(())
    }

    fn write_label_index(&mut self, values: &[u32]) -> Result<()> {
        let mut b = EncBuf::with_capacity(8 + 4 * values.len());
        b.put_be32(1);
        b.put_be32(values.len() as u32);
        for &v in values {
            b.put_be32(v);
        }
        self.write_section(b.get())
    }

    fn write_postings(&mut self, bm: &RoaringBitmap) -> Result<()> {
        let mut b = std::mem::take(&mut self.buf);
        b.reset();
        let n = bm.len();
        let len = self.section_len(4 + 4 * n, "postings list");
        let res = len.and_then(|len| {
            b.put_be32(len);
            b.put_be32(n as u32);
            for id in bm.iter() {
                b.put_be32(id);
            }
            b.put_crc32_of(4);
            self.write(b.get())
        });
        self.buf = b;
        res
    }

    /// Writes `len <4b> | body | CRC32(body)`.
    fn write_section(&mut self, body: &[u8]) -> Result<()> {
        let len = self.section_len(body.len() as u64, "section")?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc32(body).to_be_bytes())
    }

    fn section_len(&self, len: u64, what: &str) -> Result<u32> {
        u32::try_from(len).map_err(|_| {
            Error::Invalid(format!(
                "index {}: {what} of {len} bytes exceeds 4 GiB",
                self.path.display()
            ))
        })
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let r = self.pos % align;
        if r != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - r) as usize])?;
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.f
            .write_all(b)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }
}

/// Fsyncs the directory holding `path` so that the file's creation or rename is durable.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}
