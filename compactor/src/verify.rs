//! Bucket verification (`strata bucket verify`): a downloaded block is opened (meta, index
//! tables and series CRCs, chunk segment headers are checked by `Block::open`), then every
//! series' chunks are read (chunk CRCs), checked to lie inside the block's time range, in order
//! and without overlap, and decoded (XOR chunks, and every sub-chunk of aggregate chunks).
//! Overlapping blocks within a compaction group are reported too.

use std::path::Path;

use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::block::Block;
use strata_tsdb::chunkenc::{decode_xor, Encoding};
use ulid::Ulid;

use crate::downsample::{AggrChunk, AggrType};
use crate::error::{Error, Result};
use crate::planner;

/// What a verified block holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCheck {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
}

fn bad(id: &Ulid, detail: String) -> Error {
    Error::Corrupt {
        key: id.to_string(),
        detail,
    }
}

/// Checks the block in `dir` thoroughly; the error names the block and what is wrong.
pub fn verify_block(dir: &Path) -> Result<BlockCheck> {
    let b = Block::open(dir)?;
    let id = b.ulid();
    let (mint, maxt) = (b.min_time(), b.max_time());
    let mut out = BlockCheck::default();
    let ids = b.index().all_postings()?;
    let mut samples = Vec::new();
    for r in b.series_iter(ids) {
        let (sid, labels, metas) = r?;
        out.series += 1;
        for (i, m) in metas.iter().enumerate() {
            if m.min_time > m.max_time || m.min_time < mint || m.max_time >= maxt {
                return Err(bad(
                    &id,
                    format!(
                        "series {sid} {labels}: chunk [{}, {}] outside the block's range [{mint}, {maxt})",
                        m.min_time, m.max_time
                    ),
                ));
            }
            if i > 0 && metas[i - 1].max_time >= m.min_time {
                return Err(bad(
                    &id,
                    format!(
                        "series {sid} {labels}: chunks out of order or overlapping at chunk {i}"
                    ),
                ));
            }
            let (enc, data) = b.chunk_bytes(m.chunk_ref)?;
            out.chunks += 1;
            match enc {
                Encoding::Xor => {
                    samples.clear();
                    decode_xor(&data, &mut samples)
                        .map_err(|e| bad(&id, format!("series {sid} chunk {i}: {e}")))?;
                    out.samples += samples.len() as u64;
                }
                Encoding::Aggr => {
                    let c = AggrChunk::new(data);
                    for t in AggrType::ALL {
                        let s = c.samples(t).map_err(|e| {
                            bad(&id, format!("series {sid} chunk {i} {}: {e}", t.name()))
                        })?;
                        if t == AggrType::Count {
                            out.samples += s.len() as u64;
                        }
                    }
                }
                other => {
                    return Err(bad(
                        &id,
                        format!(
                            "series {sid} chunk {i}: {} chunks cannot be verified",
                            other.name()
                        ),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Pairs of blocks of the same group (resolution and external labels, replica labels kept)
/// whose time ranges overlap. Redundant blocks ([`redundant_blocks`]: every source is in
/// another block of the group) take no part: they are what a compaction leaves when it is
/// interrupted between uploading its result and marking its sources (or when two compactors
/// ran the same plan), garbage that the next compactor pass marks for deletion.
pub fn find_overlaps(metas: &[BlockMeta]) -> Vec<(String, Ulid, Ulid)> {
    let mut out = Vec::new();
    for mut g in planner::group_blocks(metas, &[]) {
        let redundant = planner::redundant_blocks(&g.blocks);
        g.blocks.retain(|b| !redundant.contains(&b.ulid));
        for (i, a) in g.blocks.iter().enumerate() {
            for b in &g.blocks[i + 1..] {
                if b.min_time < a.max_time && a.min_time < b.max_time {
                    out.push((g.key.clone(), a.ulid, b.ulid));
                }
            }
        }
    }
    out
}

/// Blocks whose data another block of their group holds entirely (by compaction sources);
/// the compactor's next pass marks them for deletion.
pub fn redundant_blocks(metas: &[BlockMeta]) -> Vec<Ulid> {
    planner::group_blocks(metas, &[])
        .iter()
        .flat_map(|g| planner::redundant_blocks(&g.blocks))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write_local;

    #[test]
    fn good_and_damaged_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let m = write_local(tmp.path(), 0, 3_600_000, 60_000, 3, |_, t| t as f64);
        let dir = tmp.path().join(m.ulid.to_string());
        let c = verify_block(&dir).unwrap();
        assert_eq!(
            c,
            BlockCheck {
                series: 3,
                chunks: 3,
                samples: 180
            }
        );
        // Flip a byte inside the chunk data: the CRC check names the block.
        let seg = dir.join("chunks/000001");
        let mut b = std::fs::read(&seg).unwrap();
        let n = b.len();
        b[n - 10] ^= 0xff;
        std::fs::write(&seg, b).unwrap();
        let e = verify_block(&dir).unwrap_err().to_string();
        assert!(
            e.contains("checksum") || e.contains(&m.ulid.to_string()),
            "{e}"
        );
    }

    #[test]
    fn overlaps_within_groups() {
        let a = BlockMeta::new(Ulid::from(1u128), 0, 10);
        let b = BlockMeta::new(Ulid::from(2u128), 5, 15);
        let c = BlockMeta::new(Ulid::from(3u128), 15, 20);
        let o = find_overlaps(&[a.clone(), b.clone(), c]);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].1, o[0].2), (Ulid::from(1u128), Ulid::from(2u128)));
        // A compaction result next to its unmarked sources is garbage, not an overlap.
        let mut d = BlockMeta::new(Ulid::from(4u128), 0, 15);
        d.compaction.sources = vec![a.ulid, b.ulid];
        assert!(find_overlaps(&[a, b, d]).is_empty());
    }
}
