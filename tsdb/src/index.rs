//! The block `index` file, format v2, byte-compatible with what Prometheus 2.42 writes.
//!
//! This module owns the on-disk layout (see `tsdb/docs/format/index.md` in Prometheus):
//!
//! ```text
//! magic 0xBAAAD700 | version 2
//! symbol table              sorted, deduplicated strings
//! series                    each entry 16-byte aligned; series id = offset / 16
//! label indices             one per label name, 4-byte aligned (legacy, still written)
//! postings                  one list per (name, value), 4-byte aligned; the all-postings list
//!                           under the key ("", "") comes first
//! label offset table        (legacy, still written)
//! postings offset table     sorted by (name, value)
//! TOC                       six big-endian u64 offsets + CRC-32C
//! ```
//!
//! Facts checked against Prometheus v2.42.0 `tsdb/index/index.go` (and noted where HEAD differs):
//!
//! - The TOC `series` offset is the position right after the symbol table's CRC, *before* the
//!   zero padding that aligns the first series to 16 bytes. Likewise the TOC `postings` offset is
//!   taken before the 4-byte padding that precedes the first postings list.
//! - Prometheus 2.42 still writes the label index sections and the label offset table. Prometheus
//!   3.7+ stopped writing them (their TOC entries then equal the postings / postings-table
//!   offsets). Readers never need them; [`IndexWriter`] writes them to stay byte-identical with
//!   2.42 (and readable by pre-2.x readers).
//! - Every label index and postings list starts 4-byte aligned (zero padding before it).
//! - The postings offset table is CRC-checked once at open; the reader keeps only every 32nd
//!   value of each label name (plus the last) in memory and scans at most 32 entries on lookup.
//! - v1 index files (pre-2.0 Prometheus) are rejected with a clear error.
//! - Prometheus's symbol table for blocks cut from the head always contains the empty string
//!   (the head's all-postings key contributes it), so symbol 0 is `""`. Callers that want
//!   byte-identical output must include `""` in the symbols they pass to [`IndexWriter`].
//! - Chunk refs and times are encoded with wrapping arithmetic, as Go does; the writer does not
//!   validate chunk ordering (neither does Prometheus).

mod reader;
mod writer;

pub use reader::IndexReader;
pub use writer::IndexWriter;

/// Magic number at the start of every index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Length of the header (magic + version byte).
pub const HEADER_LEN: usize = 5;
/// Index format version 1 (not supported).
pub const FORMAT_V1: u8 = 1;
/// Index format version 2, the only version read and written.
pub const FORMAT_V2: u8 = 2;
/// Length of the table of contents at the end of the file: six u64 offsets and a CRC.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// The reader keeps every `SAMPLE_FACTOR`-th postings offset table entry of a label name in
/// memory (Prometheus's `symbolFactor`).
pub const SAMPLE_FACTOR: usize = 32;
/// Series entries are aligned to this many bytes; a series id is its offset divided by it.
pub const SERIES_ALIGNMENT: u64 = 16;

/// The (name, value) key of the postings list that holds every series.
pub const ALL_POSTINGS_KEY: (&str, &str) = ("", "");

/// A chunk's metadata as stored in a series entry: its time range and its reference into the
/// block's chunk segment files (`segment << 32 | offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// The table of contents: absolute offsets of the index sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    /// Encodes the TOC with its trailing CRC-32C.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = crate::encoding::EncBuf::with_capacity(TOC_LEN);
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            b.put_be64(v);
        }
        b.put_crc32_of(0);
        b.buf
    }
}

#[cfg(test)]
mod tests;
