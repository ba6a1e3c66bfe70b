//! WAL positions and the per-queue delivery watermark.
//!
//! A [`WalPosition`] is `(segment, offset)`: the offset is the end of a record (or 0), so a
//! position names a record boundary. Positions order lexicographically. A queue's *delivered*
//! position means: every sample of every record ending at or before it was acknowledged by the
//! remote (or given up on, for 4xx answers). The [`Watermark`] computes that position from
//! out-of-order shard acknowledgements; [`save`] / [`load`] persist it (write temporary file,
//! fsync, rename) in `remote-<name>-<hash>.pos`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use strata_tsdb::Error as TsdbError;

use crate::error::Result;

/// A record boundary in the WAL: `offset` bytes into segment `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

impl WalPosition {
    pub const fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }
}

/// First line of a position file.
const POS_MAGIC: &str = "strata-remote-write-position v1";

/// Name of the position file of a queue: `remote-<sanitised name>-<xxh64(url) hex>.pos`.
pub fn position_file_name(name: &str, url: &str) -> String {
    let clean: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = xxhash_rust::xxh64::xxh64(url.as_bytes(), 0);
    if clean.is_empty() {
        format!("remote-{hash:016x}.pos")
    } else {
        format!("remote-{clean}-{hash:016x}.pos")
    }
}

/// Writes `pos` to `path` atomically (temporary file, fsync, rename).
pub fn save(path: &Path, pos: WalPosition) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = format!(
        "{POS_MAGIC}\nsegment {}\noffset {}\n",
        pos.segment, pos.offset
    );
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    };
    write().map_err(|e| TsdbError::io("write remote-write position", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TsdbError::io("rename remote-write position", &tmp, e))?;
    Ok(())
}

/// Reads a position file: `Ok(None)` when it does not exist, an error naming the file when it
/// is unreadable or malformed.
pub fn load(path: &Path) -> Result<Option<WalPosition>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TsdbError::io("read remote-write position", path, e).into()),
    };
    let bad = |detail: &str| -> crate::Error {
        TsdbError::corrupt("remote-write position file", path, 0, detail.to_string()).into()
    };
    let mut lines = text.lines();
    if lines.next() != Some(POS_MAGIC) {
        return Err(bad("missing header line"));
    }
    let mut field = |name: &str| -> Result<u64> {
        let line = lines.next().ok_or_else(|| bad("truncated"))?;
        let v = line
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| bad(&format!("expected {name}")))?;
        v.parse::<u64>()
            .map_err(|_| bad(&format!("invalid {name} {v:?}")))
    };
    let segment = field("segment")?;
    let offset = field("offset")?;
    Ok(Some(WalPosition { segment, offset }))
}

/// Tracks which records were fully delivered. Records are registered in WAL order with a
/// sequence number and the number of samples handed to shards; shards acknowledge samples in
/// any order across shards. The delivered position advances over the longest prefix of fully
/// acknowledged records.
#[derive(Debug)]
pub struct Watermark {
    pending: BTreeMap<u64, (u64, WalPosition)>,
    delivered: WalPosition,
}

impl Watermark {
    pub fn new(delivered: WalPosition) -> Self {
        Self {
            pending: BTreeMap::new(),
            delivered,
        }
    }

    /// The position below which everything was delivered.
    pub fn delivered(&self) -> WalPosition {
        self.delivered
    }

    /// Records still waiting for acknowledgements.
    pub fn pending_records(&self) -> usize {
        self.pending.len()
    }

    /// Registers record `seq` (sequence numbers strictly increase), ending at `end`, whose
    /// `samples` samples were (or are about to be) handed to shards.
    pub fn register(&mut self, seq: u64, samples: u64, end: WalPosition) {
        if samples == 0 && self.pending.is_empty() {
            self.delivered = self.delivered.max(end);
            return;
        }
        self.pending.insert(seq, (samples, end));
        self.advance();
    }

    /// Acknowledges `n` samples of record `seq`.
    pub fn ack(&mut self, seq: u64, n: u64) {
        if let Some(e) = self.pending.get_mut(&seq) {
            e.0 = e.0.saturating_sub(n);
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(e) = self.pending.first_entry() {
            if e.get().0 != 0 {
                break;
            }
            let (_, pos) = e.remove();
            self.delivered = self.delivered.max(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_advances_over_acknowledged_prefix_only() {
        let p = |s, o| WalPosition::new(s, o);
        let mut w = Watermark::new(p(0, 0));
        w.register(1, 0, p(0, 10));
        assert_eq!(w.delivered(), p(0, 10));
        w.register(2, 3, p(0, 20));
        w.register(3, 0, p(0, 30));
        w.register(4, 2, p(1, 5));
        assert_eq!(w.delivered(), p(0, 10));
        w.ack(4, 2); // later record first: no progress
        assert_eq!(w.delivered(), p(0, 10));
        w.ack(2, 1);
        w.ack(2, 1);
        assert_eq!(w.delivered(), p(0, 10));
        w.ack(2, 1);
        assert_eq!(w.delivered(), p(1, 5));
        assert_eq!(w.pending_records(), 0);
    }

    #[test]
    fn position_file_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let name = position_file_name("my remote/1", "http://x/api");
        assert!(name.starts_with("remote-my_remote_1-") && name.ends_with(".pos"));
        assert_ne!(name, position_file_name("my remote/1", "http://y/api"));
        let path = dir.path().join(name);
        assert_eq!(load(&path).unwrap(), None);
        save(&path, WalPosition::new(7, 32768)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(WalPosition::new(7, 32768)));
        fs::write(&path, "garbage").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("remote-my_remote_1"), "{err}");
    }
}
