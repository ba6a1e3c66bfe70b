//! The segment layer's constants and file naming: segment files named by an 8-digit,
//! zero-padded decimal index (`00000000`, `00000001`, ...), written in 32 KiB pages; every
//! record fragment has a 7-byte header `type:u8 | len:be16 | crc32c:be32`.
//!
//! The fragment type byte is `[3 bits reserved][zstd flag][snappy flag][3-bit fragment type]`
//! with fragment types 0 (rest of page is zero padding), 1 full, 2 first, 3 middle, 4 last.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Size of a page; fragments never cross a page boundary.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Size of a fragment header.
pub const RECORD_HEADER_SIZE: usize = 7;
/// Prometheus's default segment size (128 MiB).
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;

/// Flag bit in the fragment type byte: the record is snappy (block format) compressed.
pub const SNAPPY_MASK: u8 = 1 << 3;
/// Flag bit in the fragment type byte: the record is zstd compressed (Prometheus 3).
pub const ZSTD_MASK: u8 = 1 << 4;
/// Mask of the fragment type in the type byte.
pub const FRAG_TYPE_MASK: u8 = SNAPPY_MASK - 1;

/// Fragment types (the low three bits of a fragment's type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FragType {
    /// The rest of the page is zero padding.
    PageTerm = 0,
    Full = 1,
    First = 2,
    Middle = 3,
    Last = 4,
}

impl FragType {
    /// The fragment type of a header byte, `None` for the invalid values 5..7.
    pub fn from_header(b: u8) -> Option<FragType> {
        match b & FRAG_TYPE_MASK {
            0 => Some(FragType::PageTerm),
            1 => Some(FragType::Full),
            2 => Some(FragType::First),
            3 => Some(FragType::Middle),
            4 => Some(FragType::Last),
            _ => None,
        }
    }
}

/// Path of segment `index` in `dir`.
pub fn segment_name(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}"))
}

/// One segment file found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    pub index: u64,
    pub path: PathBuf,
}

/// Segment files in `dir` sorted by index. Names that are not all decimal digits are ignored
/// (as Prometheus ignores names `strconv.Atoi` rejects). Errors if the indexes have a gap.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentRef>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read WAL directory", dir, e))?;
    let mut refs = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read WAL directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(index) = name.parse::<u64>() else {
            continue;
        };
        if !ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        refs.push(SegmentRef {
            index,
            path: ent.path(),
        });
    }
    refs.sort_by_key(|r| r.index);
    for w in refs.windows(2) {
        if w[0].index + 1 != w[1].index {
            return Err(Error::Invalid(format!(
                "WAL segments in {} are not sequential: {} is followed by {}",
                dir.display(),
                w[0].index,
                w[1].index
            )));
        }
    }
    Ok(refs)
}

/// The range `(first, last)` of segment indexes in `dir`, `None` when there are none.
pub fn segments(dir: &Path) -> Result<Option<(u64, u64)>> {
    let refs = list_segments(dir)?;
    Ok(match (refs.first(), refs.last()) {
        (Some(f), Some(l)) => Some((f.index, l.index)),
        _ => None,
    })
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    match f.sync_all() {
        Ok(()) => Ok(()),
        // Some filesystems refuse fsync on directories; that is not worth failing over.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(Error::io("fsync directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            segment_name(dir.path(), 12).file_name().unwrap(),
            "00000012"
        );
        assert_eq!(segments(dir.path()).unwrap(), None);
        for i in [3u64, 4, 5] {
            fs::write(segment_name(dir.path(), i), b"").unwrap();
        }
        fs::write(dir.path().join("00000006.tmp"), b"").unwrap();
        fs::create_dir(dir.path().join("checkpoint.00000002")).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), Some((3, 5)));
        fs::write(segment_name(dir.path(), 7), b"").unwrap();
        assert!(segments(dir.path()).is_err());
    }

    #[test]
    fn frag_types() {
        assert_eq!(FragType::from_header(0x09), Some(FragType::Full));
        assert_eq!(FragType::from_header(0x04), Some(FragType::Last));
        assert_eq!(FragType::from_header(0x05), None);
        assert_eq!(FragType::from_header(0), Some(FragType::PageTerm));
    }
}
