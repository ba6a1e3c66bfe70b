//! Compaction and retention: writing the head's oldest range as a block, merging N blocks into
//! one (overlapping blocks included: a vertical merge that deduplicates identical samples),
//! Prometheus's level-compaction planner, and time/size retention.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use ulid::Ulid;

use crate::block::meta::{BlockDesc, BlockMeta, BlockMetaCompaction};
use crate::block::{write_block, Block, ChunkToWrite, SeriesToWrite};
use crate::chunkenc::{Encoding, XorChunk, XorIterator};
use crate::error::Result;
use crate::head::{ChunkData, Head};
use crate::index::ChunkMeta;
use crate::labels::Labels;
use crate::storage::SampleIterator;

/// Samples per chunk when compaction re-encodes (Prometheus: 120).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// `steps` ranges starting at `min`, each `step_size` times the previous (Prometheus's
/// `ExponentialBlockRanges`; the default is `(2h, 10, 3)`).
pub fn exponential_block_ranges(min: i64, steps: usize, step_size: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(steps);
    let mut r = min;
    for _ in 0..steps {
        out.push(r);
        r = r.saturating_mul(step_size);
    }
    out
}

/// The compaction ranges Prometheus uses for a retention: 2h·3ⁿ, capped at 10% of retention
/// and at 31 days.
pub fn default_ranges(block_range: i64, retention: i64) -> Vec<i64> {
    let mut max = 31 * 24 * 3_600_000i64;
    if retention > 0 {
        max = max.min(retention / 10);
    }
    let mut r: Vec<i64> = exponential_block_ranges(block_range, 10, 3)
        .into_iter()
        .filter(|&x| x <= max)
        .collect();
    if r.is_empty() {
        r.push(block_range);
    }
    r
}

/// Encodes time-ordered samples into XOR chunks of at most `SAMPLES_PER_CHUNK` samples.
pub fn encode_chunks(samples: &[(i64, f64)]) -> Result<Vec<ChunkToWrite>> {
    let mut out = Vec::with_capacity(samples.len() / SAMPLES_PER_CHUNK + 1);
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let mut c = XorChunk::new();
        for &(t, v) in part {
            c.append(t, v)?;
        }
        out.push(ChunkToWrite {
            mint: part[0].0,
            maxt: part[part.len() - 1].0,
            encoding: Encoding::Xor,
            num_samples: part.len() as u64,
            data: Arc::from(c.bytes()),
        });
    }
    Ok(out)
}

fn decode_into(bytes: Arc<[u8]>, out: &mut Vec<(i64, f64)>) -> Result<()> {
    let mut it = XorIterator::new(bytes);
    while it.next() {
        out.push(it.at());
    }
    if let Some(e) = it.err() {
        return Err(crate::Error::InvalidChunk(e));
    }
    Ok(())
}

/// The sample count in a chunk's 2-byte header. An aggregate chunk (Thanos's downsampled
/// chunk) counts the samples of its first sub-chunk, the per-window counts: one per window.
fn chunk_num_samples(enc: crate::chunkenc::Encoding, data: &[u8]) -> u64 {
    let data = match enc {
        crate::chunkenc::Encoding::Aggr => match crate::encoding::uvarint(data) {
            // `len | encoding byte | chunk`; the length covers the chunk bytes.
            Some((len, n)) if len > 0 => data.get(n + 1..).unwrap_or(&[]),
            _ => &[],
        },
        _ => data,
    };
    match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]) as u64,
        _ => 0,
    }
}

/// Merges samples sorted per source into one time-ordered list; on equal timestamps the
/// earlier source wins (identical samples collapse into one).
fn merge_samples(mut parts: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all: Vec<(i64, usize, f64)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        all.extend(p.iter().map(|&(t, v)| (t, i, v)));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    all.dedup_by(|b, a| a.0 == b.0);
    all.into_iter().map(|(t, _, v)| (t, v)).collect()
}

/// Writes the head's data in `[mint, maxt)` as a new level-1 block in `parent`.
pub fn write_head_block(
    parent: &Path,
    head: &Head,
    mint: i64,
    maxt: i64,
) -> Result<Option<BlockMeta>> {
    let series = head.sorted_series();
    // Prometheus's head index always holds the empty string among its symbols.
    let mut symbols: BTreeSet<Arc<str>> = BTreeSet::from([Arc::from("")]);
    let mut todo: Vec<SeriesToWrite> = Vec::new();
    for s in &series {
        let mut chunks: Vec<ChunkToWrite> = Vec::new();
        let mut loose: Vec<(i64, f64)> = Vec::new();
        {
            let d = s.data.lock();
            for c in &d.done {
                if c.mint >= mint && c.maxt < maxt {
                    let data: Arc<[u8]> = match &c.data {
                        ChunkData::Mem(b) => b.clone(),
                        ChunkData::Disk(r) => Arc::from(&*head.read_disk_chunk(*r)?),
                    };
                    chunks.push(ChunkToWrite {
                        mint: c.mint,
                        maxt: c.maxt,
                        encoding: Encoding::Xor,
                        num_samples: c.num_samples as u64,
                        data,
                    });
                } else if c.maxt >= mint && c.mint < maxt {
                    // A chunk straddling the boundary: keep only the samples inside.
                    let data: Arc<[u8]> = match &c.data {
                        ChunkData::Mem(b) => b.clone(),
                        ChunkData::Disk(r) => Arc::from(&*head.read_disk_chunk(*r)?),
                    };
                    let mut v = Vec::new();
                    decode_into(data, &mut v)?;
                    loose.extend(v.into_iter().filter(|s| s.0 >= mint && s.0 < maxt));
                }
            }
            if let Some(o) = &d.open {
                let n = o.chunk.num_samples();
                if n > 0 && o.mint >= mint && o.maxt < maxt {
                    chunks.push(ChunkToWrite {
                        mint: o.mint,
                        maxt: o.maxt,
                        encoding: Encoding::Xor,
                        num_samples: n as u64,
                        data: Arc::from(o.chunk.bytes()),
                    });
                } else if n > 0 && o.maxt >= mint && o.mint < maxt {
                    let mut v = Vec::new();
                    decode_into(Arc::from(o.chunk.bytes()), &mut v)?;
                    loose.extend(v.into_iter().filter(|s| s.0 >= mint && s.0 < maxt));
                }
            }
            let ooo: Vec<(i64, f64)> = d
                .ooo
                .iter()
                .filter(|s| s.0 >= mint && s.0 < maxt)
                .copied()
                .collect();
            if !ooo.is_empty() || !loose.is_empty() {
                // Re-encode everything in range, merged in time order.
                let mut inorder = std::mem::take(&mut loose);
                for c in chunks.drain(..) {
                    decode_into(c.data, &mut inorder)?;
                }
                inorder.sort_by_key(|s| s.0);
                chunks = encode_chunks(&merge_samples(vec![inorder, ooo]))?;
            }
        }
        if chunks.is_empty() {
            continue;
        }
        for l in s.labels.iter() {
            symbols.insert(l.name.clone());
            symbols.insert(l.value.clone());
        }
        todo.push(SeriesToWrite {
            labels: s.labels.clone(),
            chunks,
        });
    }
    let meta = BlockMeta::new(Ulid::new(), mint, maxt);
    let mut it = todo.into_iter().map(Ok);
    write_block(parent, meta, &symbols, &mut it)
}

/// Merges `blocks` into one new block in `parent` (level = max level + 1). Overlapping chunks
/// are decoded, merged with duplicates removed and re-encoded; others are copied as they are.
/// Tombstones are applied.
pub fn compact_blocks(parent: &Path, blocks: &[Arc<Block>]) -> Result<Option<BlockMeta>> {
    let mut symbols: BTreeSet<Arc<str>> = BTreeSet::new();
    for b in blocks {
        symbols.extend(b.index().symbols().cloned());
    }
    let mint = blocks.iter().map(|b| b.min_time()).min().unwrap_or(0);
    let maxt = blocks.iter().map(|b| b.max_time()).max().unwrap_or(0);
    let mut sources: Vec<Ulid> = Vec::new();
    let mut parents = Vec::new();
    let mut level = 0;
    for b in blocks {
        let m = b.meta();
        sources.extend(m.compaction.sources.iter().copied());
        parents.push(BlockDesc {
            ulid: m.ulid,
            min_time: m.min_time,
            max_time: m.max_time,
        });
        level = level.max(m.compaction.level);
    }
    sources.sort();
    sources.dedup();
    let mut meta = BlockMeta::new(Ulid::new(), mint, maxt);
    meta.compaction = BlockMetaCompaction {
        level: level + 1,
        sources,
        parents,
        ..Default::default()
    };

    // Per block, a cursor over its series in label order.
    let mut cursors: Vec<_> = Vec::new();
    for b in blocks {
        let ids = b.index().all_postings()?;
        cursors.push(b.series_iter(ids).peekable());
    }
    let blocks_v: Vec<Arc<Block>> = blocks.to_vec();
    let mut merged = std::iter::from_fn(|| {
        loop {
            // Smallest labels among cursor heads.
            let mut min: Option<Labels> = None;
            for c in cursors.iter_mut() {
                match c.peek() {
                    Some(Ok((_, l, _))) if min.as_ref().is_none_or(|m| l < m) => {
                        min = Some(l.clone());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = c.next() {
                            return Some(Err(e));
                        }
                    }
                    None => {}
                }
            }
            let labels = min?;
            let mut parts: Vec<(usize, u32, Vec<ChunkMeta>)> = Vec::new();
            for (i, c) in cursors.iter_mut().enumerate() {
                if matches!(c.peek(), Some(Ok((_, l, _))) if *l == labels) {
                    if let Some(Ok((id, _, metas))) = c.next() {
                        parts.push((i, id, metas));
                    }
                }
            }
            match merge_series_chunks(&blocks_v, &labels, parts) {
                Ok(Some(s)) => return Some(Ok(s)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    })
    .inspect(|r: &Result<SeriesToWrite>| {
        if let Err(e) = r {
            tracing::error!(error = %e, "compaction input error");
        }
    });
    write_block(parent, meta, &symbols, &mut merged)
}

/// The chunks of one series gathered from several blocks, merged.
fn merge_series_chunks(
    blocks: &[Arc<Block>],
    labels: &Labels,
    parts: Vec<(usize, u32, Vec<ChunkMeta>)>,
) -> Result<Option<SeriesToWrite>> {
    let mut all: Vec<(usize, ChunkMeta, Option<crate::tombstones::Intervals>)> = Vec::new();
    for (bi, id, metas) in parts {
        let deleted = blocks[bi].tombstones().get(id as u64).cloned();
        for m in metas {
            if deleted
                .as_ref()
                .is_some_and(|d| d.covers(m.min_time, m.max_time))
            {
                continue;
            }
            all.push((bi, m, deleted.clone()));
        }
    }
    if all.is_empty() {
        return Ok(None);
    }
    all.sort_by_key(|(_, m, _)| (m.min_time, m.max_time));
    let overlapping = all.windows(2).any(|w| w[1].1.min_time <= w[0].1.max_time);
    let partial_deletes = all.iter().any(|(_, m, d)| {
        d.as_ref()
            .is_some_and(|d| d.overlaps(m.min_time, m.max_time))
    });
    if !overlapping && !partial_deletes {
        let mut chunks = Vec::with_capacity(all.len());
        for (bi, m, _) in all {
            let (enc, data) = blocks[bi].chunk_bytes(m.chunk_ref)?;
            chunks.push(ChunkToWrite {
                mint: m.min_time,
                maxt: m.max_time,
                encoding: enc,
                num_samples: chunk_num_samples(enc, &data),
                data,
            });
        }
        return Ok(Some(SeriesToWrite {
            labels: labels.clone(),
            chunks,
        }));
    }
    // Decode per source block, then merge.
    let mut per_block: Vec<Vec<(i64, f64)>> = vec![Vec::new(); blocks.len()];
    for (bi, m, d) in all {
        let (_, data) = blocks[bi].chunk_bytes(m.chunk_ref)?;
        let mut v = Vec::new();
        decode_into(data, &mut v)?;
        if let Some(d) = d {
            v.retain(|s| !d.contains(s.0));
        }
        per_block[bi].extend(v);
    }
    for v in per_block.iter_mut() {
        v.sort_by_key(|s| s.0);
        v.dedup_by_key(|s| s.0);
    }
    let merged = merge_samples(per_block.into_iter().filter(|v| !v.is_empty()).collect());
    if merged.is_empty() {
        return Ok(None);
    }
    Ok(Some(SeriesToWrite {
        labels: labels.clone(),
        chunks: encode_chunks(&merged)?,
    }))
}

/// A block's identity and time range, as the planner sees it.
#[derive(Clone, Debug)]
pub struct PlanBlock {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
    pub num_series: u64,
    pub num_tombstones: u64,
    pub failed: bool,
}

impl From<&BlockMeta> for PlanBlock {
    fn from(m: &BlockMeta) -> Self {
        Self {
            ulid: m.ulid,
            min_time: m.min_time,
            max_time: m.max_time,
            num_series: m.stats.num_series,
            num_tombstones: m.stats.num_tombstones,
            failed: m.compaction.failed,
        }
    }
}

/// Prometheus's leveled planner: the first group of overlapping blocks if any; otherwise a
/// group of blocks filling one of the larger ranges (excluding the newest block); otherwise a
/// big block with more than 5% tombstones. Returns the blocks to merge.
pub fn plan(blocks: &[PlanBlock], ranges: &[i64]) -> Vec<Ulid> {
    let mut dms: Vec<PlanBlock> = blocks.to_vec();
    dms.sort_by_key(|b| b.min_time);
    let ov = overlapping(&dms);
    if !ov.is_empty() {
        return ov;
    }
    if dms.is_empty() {
        return Vec::new();
    }
    dms.pop();
    let sel = select_dirs(&dms, ranges);
    if !sel.is_empty() {
        return sel;
    }
    if ranges.is_empty() {
        return Vec::new();
    }
    for m in dms.iter().rev() {
        if m.max_time - m.min_time < ranges[ranges.len() / 2] {
            if m.num_tombstones > 0 && m.num_tombstones >= m.num_series {
                return vec![m.ulid];
            }
            break;
        }
        if m.num_tombstones as f64 / (m.num_series + 1) as f64 > 0.05 {
            return vec![m.ulid];
        }
    }
    Vec::new()
}

fn overlapping(ds: &[PlanBlock]) -> Vec<Ulid> {
    if ds.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<Ulid> = Vec::new();
    let mut global_maxt = ds[0].max_time;
    for i in 1..ds.len() {
        if ds[i].min_time < global_maxt {
            if out.is_empty() {
                out.push(ds[i - 1].ulid);
            }
            out.push(ds[i].ulid);
        } else if out.len() > 1 {
            break;
        }
        global_maxt = global_maxt.max(ds[i].max_time);
    }
    out
}

fn split_by_range(ds: &[PlanBlock], tr: i64) -> Vec<Vec<PlanBlock>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ds.len() {
        let m = &ds[i];
        let t0 = m.min_time.div_euclid(tr) * tr;
        if m.max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < ds.len() {
            if ds[i].min_time < t0 || ds[i].max_time > t0 + tr {
                break;
            }
            group.push(ds[i].clone());
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

fn select_dirs(ds: &[PlanBlock], ranges: &[i64]) -> Vec<Ulid> {
    if ranges.len() < 2 || ds.is_empty() {
        return Vec::new();
    }
    let high = ds[ds.len() - 1].min_time;
    for &iv in &ranges[1..] {
        for p in split_by_range(ds, iv) {
            if p.iter().any(|b| b.failed) {
                continue;
            }
            let mint = p[0].min_time;
            let maxt = p[p.len() - 1].max_time;
            if (maxt - mint == iv || maxt <= high) && p.len() > 1 {
                return p.iter().map(|b| b.ulid).collect();
            }
        }
    }
    Vec::new()
}

/// Blocks beyond time retention: `blocks` sorted newest (by max time) first; a block is deletable
/// when the newest block's max time is at least `retention` past its max time. The newest block
/// is never deleted by time.
pub fn beyond_time_retention(blocks: &[PlanBlock], retention: i64) -> Vec<Ulid> {
    if blocks.is_empty() || retention <= 0 {
        return Vec::new();
    }
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 && blocks[0].max_time - b.max_time >= retention {
            return blocks[i..].iter().map(|b| b.ulid).collect();
        }
    }
    Vec::new()
}

/// Blocks beyond size retention: `blocks` (newest first) with their sizes; once the running
/// total (starting at `head_size`) exceeds `max_bytes`, that block and all older ones go.
pub fn beyond_size_retention(blocks: &[(Ulid, u64)], head_size: u64, max_bytes: u64) -> Vec<Ulid> {
    if max_bytes == 0 {
        return Vec::new();
    }
    let mut total = head_size;
    for (i, (_, sz)) in blocks.iter().enumerate() {
        total += sz;
        if total > max_bytes {
            return blocks[i..].iter().map(|b| b.0).collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn pb(n: u128, mint: i64, maxt: i64) -> PlanBlock {
        PlanBlock {
            ulid: Ulid::from(n),
            min_time: mint,
            max_time: maxt,
            num_series: 1,
            num_tombstones: 0,
            failed: false,
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            exponential_block_ranges(2 * H, 4, 3),
            vec![2 * H, 6 * H, 18 * H, 54 * H]
        );
        let r = default_ranges(2 * H, 15 * 24 * H);
        assert_eq!(*r.last().unwrap(), 18 * H);
    }

    #[test]
    fn planner_levels() {
        let ranges = exponential_block_ranges(2 * H, 3, 3);
        // Three 2h blocks filling 6h plus a newer one: the first three are compacted.
        let bs = vec![
            pb(1, 0, 2 * H),
            pb(2, 2 * H, 4 * H),
            pb(3, 4 * H, 6 * H),
            pb(4, 6 * H, 8 * H),
        ];
        assert_eq!(
            plan(&bs, &ranges),
            vec![Ulid::from(1), Ulid::from(2), Ulid::from(3)]
        );
        // Only two blocks in the window and the newest excluded: nothing.
        assert!(plan(&bs[..3], &ranges).is_empty());
        // Overlap wins.
        let bs = vec![pb(1, 0, 2 * H), pb(2, H, 3 * H), pb(3, 4 * H, 6 * H)];
        assert_eq!(plan(&bs, &ranges), vec![Ulid::from(1), Ulid::from(2)]);
    }

    #[test]
    fn retention() {
        let bs = vec![pb(3, 4 * H, 6 * H), pb(2, 2 * H, 4 * H), pb(1, 0, 2 * H)];
        assert_eq!(beyond_time_retention(&bs, 4 * H), vec![Ulid::from(1)]);
        assert!(beyond_time_retention(&bs, 5 * H).is_empty());
        let sized = vec![
            (Ulid::from(3), 10),
            (Ulid::from(2), 10),
            (Ulid::from(1), 10),
        ];
        assert_eq!(
            beyond_size_retention(&sized, 5, 24),
            vec![Ulid::from(2), Ulid::from(1)]
        );
    }

    #[test]
    fn merges_samples_first_source_wins() {
        let m = merge_samples(vec![vec![(1, 1.0), (3, 3.0)], vec![(2, 2.0), (3, 9.0)]]);
        assert_eq!(m, vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
    }
}
