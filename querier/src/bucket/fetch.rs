//! Fetching chunks of a bucket block with ranged GETs: planning which byte ranges of a chunk
//! segment object to request (one range per run of wanted chunks whose gaps are at most
//! `gap` bytes), and cutting the chunks out of the fetched bytes.
//!
//! A chunk reference gives only where a chunk starts. Its end is bounded by a hint (the start
//! of the series' next chunk in the same segment, which the index tells), by the start of the
//! next wanted chunk of the same segment (chunks do not overlap), or else estimated as
//! `start + MAX_CHUNK_ESTIMATE`; always clamped to the object's size. When a chunk
//! turns out longer than estimated, the caller fetches it again with its exact length.

use std::ops::Range;

use bytes::Bytes;
use strata_tsdb::chunks::SEGMENT_HEADER_SIZE;
use strata_tsdb::encoding::{crc32, uvarint};
use strata_tsdb::Error;

/// How many bytes past a chunk's start are fetched when nothing bounds it sooner (Thanos uses
/// the same figure). A longer chunk costs one more GET.
pub const MAX_CHUNK_ESTIMATE: u64 = 16_000;

/// One planned GET: the byte range and the wanted chunk offsets inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRange {
    pub range: Range<u64>,
    pub offsets: Vec<u64>,
}

/// Plans the GETs for the chunks starting at the given offsets (any order, duplicates
/// allowed), each with an optional bound of its end, of a segment object of `size` bytes.
/// Wanted chunks closer than `gap` bytes share a GET.
pub fn plan_ranges(chunks: &[(u64, Option<u64>)], size: u64, gap: u64) -> Vec<PlannedRange> {
    let mut offs: Vec<(u64, Option<u64>)> = chunks.to_vec();
    offs.sort_unstable();
    offs.dedup_by_key(|c| c.0);
    let mut out: Vec<PlannedRange> = Vec::new();
    for (i, &(o, hint)) in offs.iter().enumerate() {
        let mut end = o.saturating_add(MAX_CHUNK_ESTIMATE).min(size);
        if let Some(h) = hint.filter(|&h| h > o) {
            end = end.min(h);
        }
        if let Some(&(next, _)) = offs.get(i + 1) {
            end = end.min(next);
        }
        let end = end.max(o);
        match out.last_mut() {
            Some(last) if o <= last.range.end.saturating_add(gap) => {
                last.range.end = last.range.end.max(end);
                last.offsets.push(o);
            }
            _ => out.push(PlannedRange {
                range: o..end,
                offsets: vec![o],
            }),
        }
    }
    out
}

/// What was found at a chunk offset inside fetched bytes.
#[derive(Debug)]
pub enum Cut {
    /// The chunk: its encoding byte followed by its data (CRC checked).
    Chunk(Bytes),
    /// The fetched bytes end before the chunk does; it needs `len` bytes from its start.
    Short { len: u64 },
}

/// Cuts the chunk starting at absolute offset `off` out of `buf`, which holds the object's
/// bytes from absolute offset `base`. `what` names the object in errors.
pub fn cut_chunk(buf: &Bytes, base: u64, off: u64, what: &str) -> Result<Cut, Error> {
    let corrupt = |d: String| Error::corrupt("chunk", what, off, d);
    if off < SEGMENT_HEADER_SIZE as u64 {
        return Err(corrupt("chunk offset inside the segment header".into()));
    }
    let rel = off
        .checked_sub(base)
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r <= buf.len())
        .ok_or_else(|| corrupt("chunk offset outside the fetched range".into()))?;
    let b = &buf[rel..];
    let Some((len, n)) = uvarint(&b[..b.len().min(5)]) else {
        if b.len() < 5 {
            return Ok(Cut::Short {
                len: 5 + 1 + 4 + MAX_CHUNK_ESTIMATE,
            });
        }
        return Err(corrupt("invalid chunk length varint".into()));
    };
    let need = (n as u64)
        .checked_add(1)
        .and_then(|x| x.checked_add(len))
        .and_then(|x| x.checked_add(4))
        .filter(|&x| x <= u32::MAX as u64)
        .ok_or_else(|| corrupt(format!("chunk length {len} too large")))?;
    if (b.len() as u64) < need {
        return Ok(Cut::Short { len: need });
    }
    let need = need as usize;
    let body = &b[n..need - 4];
    let c = &b[need - 4..need];
    let want = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    let got = crc32(body);
    if got != want {
        return Err(corrupt(format!(
            "checksum mismatch: stored {want:#010x}, computed {got:#010x}"
        )));
    }
    Ok(Cut::Chunk(buf.slice(rel + n..rel + need - 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_merge_nearby_chunks_and_bound_estimates() {
        // Three adjacent chunks and one far away: two GETs.
        let p = plan_ranges(&no_hints(&[100_000, 8, 200, 500, 8]), 2_000_000, 1024);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].offsets, vec![8, 200, 500]);
        assert_eq!(p[0].range, 8..500 + MAX_CHUNK_ESTIMATE);
        assert_eq!(p[1].range, 100_000..100_000 + MAX_CHUNK_ESTIMATE);
        // Each estimate ends where the next wanted chunk starts, so touching chunks merge
        // even with no gap allowed.
        let p = plan_ranges(&no_hints(&[8, 200, 500, 1000]), 2_000_000, 0);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].range, 8..1000 + MAX_CHUNK_ESTIMATE);
        let p = plan_ranges(&no_hints(&[8, 100_000]), 2_000_000, 1024);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].range, 8..8 + MAX_CHUNK_ESTIMATE);
        // Clamped to the object's size.
        let p = plan_ranges(&no_hints(&[8]), 300, 0);
        assert_eq!(p[0].range, 8..300);
        // A large gap setting merges far chunks into one request.
        let p = plan_ranges(&no_hints(&[8, 100_000]), 2_000_000, 200_000);
        assert_eq!(p.len(), 1);
        // A hint bounds the last chunk of a run.
        let p = plan_ranges(&[(8, Some(300)), (5000, None)], 2_000_000, 0);
        assert_eq!(p[0].range, 8..300);
        assert_eq!(p[1].range, 5000..5000 + MAX_CHUNK_ESTIMATE);
    }

    fn no_hints(o: &[u64]) -> Vec<(u64, Option<u64>)> {
        o.iter().map(|&o| (o, None)).collect()
    }

    #[test]
    fn cuts_chunks_and_reports_short_ones() {
        // A chunk: len=3, enc=1, data "abc", crc over enc+data.
        let mut seg = vec![0u8; 8];
        let body = [1u8, b'a', b'b', b'c'];
        seg.push(3);
        seg.extend_from_slice(&body);
        seg.extend_from_slice(&crc32(&body).to_be_bytes());
        let buf = Bytes::from(seg.clone());
        match cut_chunk(&buf, 0, 8, "x").unwrap() {
            Cut::Chunk(b) => assert_eq!(&b[..], &body),
            c => panic!("{c:?}"),
        }
        let short = Bytes::from(seg[8..11].to_vec());
        match cut_chunk(&short, 8, 8, "x").unwrap() {
            Cut::Short { len } => assert_eq!(len, 1 + 4 + 4),
            c => panic!("{c:?}"),
        }
        let mut bad = seg.clone();
        let l = bad.len();
        bad[l - 1] ^= 1;
        let e = cut_chunk(&Bytes::from(bad), 0, 8, "blk/chunks/000001").unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(cut_chunk(&buf, 0, 2, "x").is_err());
        assert!(cut_chunk(&buf, 100, 8, "x").is_err());
    }
}
