//! Tombstones: deleted time ranges per series, and the block's `tombstones` file.
//!
//! File layout (Prometheus v2.42 `tsdb/tombstones/tombstones.go`; the format document's
//! "last 8 bytes are an offset" paragraph is stale):
//!
//! ```text
//! magic 0x0130BA30 <4b> | version 1 <1b> | { series ref <uvarint64> mint <varint64> maxt <varint64> }* | CRC32 <4b>
//! ```
//!
//! The CRC-32C covers the stones only (not the magic, not the version byte), so an empty file is
//! the 9 bytes `01 30 ba 30 01 00 00 00 00`. A missing file means "no tombstones". Files are
//! written to `tombstones.tmp`, fsynced, renamed over `tombstones`, and the directory fsynced.
//! Stones are written in ascending series-ref order (Prometheus writes Go map order, which
//! readers must not rely on).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::encoding::{crc32, DecBuf, EncBuf};
use crate::error::{Error, Result};

/// File name of the tombstones file inside a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number at the start of a tombstones file.
pub const MAGIC_TOMBSTONE: u32 = 0x0130_BA30;
/// The only tombstones format version.
pub const TOMBSTONE_FORMAT_V1: u8 = 1;

/// A closed time interval `[mint, maxt]` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    pub mint: i64,
    pub maxt: i64,
}

impl Interval {
    pub fn new(mint: i64, maxt: i64) -> Self {
        Self { mint, maxt }
    }

    /// Is `t` inside the interval (bounds included)?
    pub fn in_bounds(&self, t: i64) -> bool {
        t >= self.mint && t <= self.maxt
    }

    /// Is the whole interval inside one of `ivs`?
    pub fn is_subrange(&self, ivs: &Intervals) -> bool {
        ivs.iter()
            .any(|r| r.in_bounds(self.mint) && r.in_bounds(self.maxt))
    }
}

/// Sorted, non-overlapping, non-adjacent intervals (adjacent ones are merged, since time is
/// discrete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n`, merging it with every interval it overlaps or touches.
    pub fn add(&mut self, n: Interval) {
        let v = &mut self.0;
        // First interval that ends at or after n.mint - 1 (could merge).
        let lo = v.partition_point(|x| x.maxt < n.mint.saturating_sub(1));
        // First interval starting after n.maxt + 1 (cannot merge).
        let hi = lo + v[lo..].partition_point(|x| x.mint <= n.maxt.saturating_add(1));
        if lo == hi {
            v.insert(lo, n);
            return;
        }
        let merged = Interval {
            mint: n.mint.min(v[lo].mint),
            maxt: n.maxt.max(v[hi - 1].maxt),
        };
        v[lo] = merged;
        v.drain(lo + 1..hi);
    }

    /// Is `t` inside one of the intervals?
    pub fn contains(&self, t: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < t);
        self.0.get(i).is_some_and(|x| x.mint <= t)
    }

    /// Is all of `[mint, maxt]` inside a single interval?
    pub fn covers(&self, mint: i64, maxt: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < mint);
        self.0
            .get(i)
            .is_some_and(|x| x.mint <= mint && maxt <= x.maxt)
    }

    /// Does any interval intersect `[mint, maxt]`?
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < mint);
        self.0.get(i).is_some_and(|x| x.mint <= maxt)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Interval> {
        self.0.iter()
    }
    pub fn as_slice(&self) -> &[Interval] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Interval> for Intervals {
    fn from_iter<T: IntoIterator<Item = Interval>>(iter: T) -> Self {
        let mut out = Intervals::new();
        for i in iter {
            out.add(i);
        }
        out
    }
}

/// Deleted intervals per series reference (a series id in a block, a series ref in the head).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    map: BTreeMap<u64, Intervals>,
}

impl Tombstones {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a deleted interval for series `series_ref`.
    pub fn add_interval(&mut self, series_ref: u64, iv: Interval) {
        self.map.entry(series_ref).or_default().add(iv);
    }

    /// The deleted intervals of `series_ref`, if any.
    pub fn get(&self, series_ref: u64) -> Option<&Intervals> {
        self.map.get(&series_ref)
    }

    /// Iterates series refs in ascending order with their intervals.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Intervals)> + '_ {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    /// Number of series with tombstones.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total number of intervals (Prometheus's `Total`, the `numTombstones` stat).
    pub fn total(&self) -> u64 {
        self.map.values().map(|v| v.len() as u64).sum()
    }

    /// Removes the tombstones of the given series.
    pub fn delete(&mut self, refs: impl IntoIterator<Item = u64>) {
        for r in refs {
            self.map.remove(&r);
        }
    }

    /// Drops every interval that ends before `before` (Prometheus's `TruncateBefore`).
    pub fn truncate_before(&mut self, before: i64) {
        self.map.retain(|_, ivs| {
            ivs.0.retain(|iv| iv.maxt >= before);
            !ivs.is_empty()
        });
    }

    /// Encodes the version byte and the stones (no magic, no CRC), like Prometheus's `Encode`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = EncBuf::new();
        b.put_byte(TOMBSTONE_FORMAT_V1);
        for (r, ivs) in self.iter() {
            for iv in ivs.iter() {
                b.put_uvarint(r);
                b.put_varint(iv.mint);
                b.put_varint(iv.maxt);
            }
        }
        b.buf
    }

    /// Decodes what [`Tombstones::encode`] produced. `path` and `base` (the offset of `b` in
    /// the file) are used in error messages.
    pub fn decode(b: &[u8], path: &Path, base: u64) -> Result<Self> {
        let corrupt =
            |at: usize, d: String| Error::corrupt("tombstones", path, base + at as u64, d);
        let mut d = DecBuf::new(b);
        let v = d.byte().map_err(|e| corrupt(e.offset(), e.to_string()))?;
        if v != TOMBSTONE_FORMAT_V1 {
            return Err(corrupt(0, format!("invalid tombstone format {v:#x}")));
        }
        let mut t = Tombstones::new();
        while !d.is_empty() {
            let stone = (|| {
                Ok::<_, crate::encoding::DecodeError>((d.uvarint()?, d.varint()?, d.varint()?))
            })();
            let (r, mint, maxt) = stone.map_err(|e| corrupt(e.offset(), e.to_string()))?;
            t.add_interval(r, Interval { mint, maxt });
        }
        Ok(t)
    }
}

/// Reads `dir/tombstones`; a missing file is an empty set.
pub fn read_file(dir: impl AsRef<Path>) -> Result<Tombstones> {
    read_file_with_size(dir).map(|(t, _)| t)
}

/// Reads `dir/tombstones` and also returns the file's size (0 when missing).
pub fn read_file_with_size(dir: impl AsRef<Path>) -> Result<(Tombstones, u64)> {
    let path = dir.as_ref().join(TOMBSTONES_FILENAME);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Tombstones::new(), 0)),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    if b.len() < 9 {
        return Err(Error::corrupt(
            "tombstones",
            &path,
            0,
            format!("file of {} bytes is too small", b.len()),
        ));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != MAGIC_TOMBSTONE {
        return Err(Error::corrupt(
            "tombstones",
            &path,
            0,
            format!("invalid magic number {magic:#010x}"),
        ));
    }
    let crc_at = b.len() - 4;
    let exp = u32::from_be_bytes([b[crc_at], b[crc_at + 1], b[crc_at + 2], b[crc_at + 3]]);
    if crc32(&b[5..crc_at]) != exp {
        return Err(Error::corrupt(
            "tombstones",
            &path,
            crc_at as u64,
            "checksum mismatch",
        ));
    }
    let t = Tombstones::decode(&b[4..crc_at], &path, 4)?;
    Ok((t, b.len() as u64))
}

/// Writes `dir/tombstones` atomically (temp file, fsync, rename, directory fsync) and returns
/// its size in bytes.
pub fn write_file(dir: impl AsRef<Path>, t: &Tombstones) -> Result<u64> {
    let dir = dir.as_ref();
    let path = dir.join(TOMBSTONES_FILENAME);
    let tmp = dir.join(format!("{TOMBSTONES_FILENAME}.tmp"));
    let res = write_tmp(&tmp, t).and_then(|size| {
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        sync_dir(dir)?;
        Ok(size)
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn write_tmp(tmp: &PathBuf, t: &Tombstones) -> Result<u64> {
    let body = t.encode();
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&MAGIC_TOMBSTONE.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body[1..]).to_be_bytes());
    let mut f = File::create(tmp).map_err(|e| Error::io("create", tmp, e))?;
    f.write_all(&out).map_err(|e| Error::io("write", tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", tmp, e))?;
    Ok(out.len() as u64)
}

fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ivs(v: &[(i64, i64)]) -> Vec<Interval> {
        v.iter().map(|&(a, b)| Interval::new(a, b)).collect()
    }

    #[test]
    fn add_merges_overlapping_and_adjacent() {
        let mut i = Intervals::new();
        i.add(Interval::new(10, 20));
        i.add(Interval::new(30, 40));
        assert_eq!(i.as_slice(), ivs(&[(10, 20), (30, 40)]));
        i.add(Interval::new(0, 5));
        assert_eq!(i.as_slice(), ivs(&[(0, 5), (10, 20), (30, 40)]));
        i.add(Interval::new(21, 22)); // adjacent to (10,20)
        assert_eq!(i.as_slice(), ivs(&[(0, 5), (10, 22), (30, 40)]));
        i.add(Interval::new(6, 29)); // bridges everything
        assert_eq!(i.as_slice(), ivs(&[(0, 40)]));
        i.add(Interval::new(50, 60));
        i.add(Interval::new(45, 55));
        assert_eq!(i.as_slice(), ivs(&[(0, 40), (45, 60)]));
        i.add(Interval::new(i64::MIN, -10));
        i.add(Interval::new(100, i64::MAX));
        assert_eq!(i.len(), 4);
        assert!(i.contains(i64::MIN) && i.contains(i64::MAX) && i.contains(0));
        assert!(i.contains(40) && !i.contains(41) && i.contains(45) && !i.contains(70));
        assert!(Interval::new(46, 59).is_subrange(&i));
        assert!(!Interval::new(40, 46).is_subrange(&i));
    }

    #[test]
    fn add_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut i = Intervals::new();
            let mut set = std::collections::BTreeSet::new();
            for _ in 0..8 {
                let a = rng.gen_range(0..100);
                let b = a + rng.gen_range(0..10);
                i.add(Interval::new(a, b));
                set.extend(a..=b);
            }
            for t in -1..=111 {
                assert_eq!(i.contains(t), set.contains(&t), "{t} in {i:?}");
            }
            // Sorted, and neither overlapping nor adjacent.
            assert!(i.as_slice().windows(2).all(|w| w[0].maxt + 1 < w[1].mint));
        }
    }

    #[test]
    fn file_round_trip_and_prometheus_empty_bytes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_file(dir.path()).unwrap().is_empty());
        let size = write_file(dir.path(), &Tombstones::new()).unwrap();
        assert_eq!(size, 9);
        assert_eq!(
            std::fs::read(dir.path().join("tombstones")).unwrap(),
            [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]
        );

        let mut t = Tombstones::new();
        t.add_interval(7, Interval::new(-5, 10));
        t.add_interval(7, Interval::new(20, 30));
        t.add_interval(1 << 40, Interval::new(i64::MIN, i64::MAX));
        t.add_interval(3, Interval::new(0, 0));
        let size = write_file(dir.path(), &t).unwrap();
        assert_eq!(
            size,
            std::fs::metadata(dir.path().join("tombstones"))
                .unwrap()
                .len()
        );
        assert!(!dir.path().join("tombstones.tmp").exists());
        let back = read_file(dir.path()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.total(), 4);
        assert_eq!(back.get(7).unwrap().len(), 2);

        let mut tr = back.clone();
        tr.truncate_before(15);
        assert_eq!(tr.total(), 2);
        tr.delete([7]);
        assert_eq!(tr.total(), 1);
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tombstones::new();
        t.add_interval(1, Interval::new(1, 2));
        t.add_interval(300, Interval::new(-100, 200));
        write_file(dir.path(), &t).unwrap();
        let path = dir.path().join("tombstones");
        let good = std::fs::read(&path).unwrap();
        for pos in 0..good.len() {
            let mut b = good.clone();
            b[pos] ^= 0x10;
            std::fs::write(&path, &b).unwrap();
            let e = read_file(dir.path()).expect_err("flipped byte must fail");
            assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        }
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(read_file(dir.path()).is_err(), "len {len}");
        }
        // A valid CRC over undecodable stones is reported with an offset.
        let mut b = vec![0x01, 0x30, 0xba, 0x30, 0x01, 0x80];
        b.extend_from_slice(&crc32(&[0x80]).to_be_bytes());
        std::fs::write(&path, &b).unwrap();
        match read_file(dir.path()) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, 5),
            r => panic!("unexpected {r:?}"),
        }
    }
}
