//! Which bucket blocks to compact together, as Thanos's default planner decides.
//!
//! Blocks are grouped by resolution and external labels (the group key is
//! `<resolution>@<labels hash>`, Thanos's `DefaultGroupKey`); replica labels given with
//! `--deduplication.replica-label` are removed from the external labels first so that replicas
//! share a group and are merged vertically. Within a group the plan is Prometheus's leveled
//! plan over the compaction ranges 2h, 8h, 2d, 14d, with Thanos's handling of
//! `no-compact-mark.json`: marked blocks never join a plan, and a range holding one is split
//! around it without creating gaps.

use std::collections::{BTreeMap, HashSet};

use strata_tsdb::block::meta::BlockMeta;
use strata_tsdb::labels::Labels;
use ulid::Ulid;

const H: i64 = 3_600_000;

/// Thanos's default compaction ranges: 2h, 8h, 2d, 14d.
pub const DEFAULT_RANGES: [i64; 4] = [2 * H, 8 * H, 48 * H, 14 * 24 * H];

/// The resolution of a block (0 when it has no `thanos` section).
pub fn resolution(m: &BlockMeta) -> i64 {
    m.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
}

/// The external labels of a block.
pub fn external_labels(m: &BlockMeta) -> BTreeMap<String, String> {
    m.thanos
        .as_ref()
        .map(|t| t.labels.clone())
        .unwrap_or_default()
}

/// Thanos's group key: `<resolution>@<hash of the external labels>`.
pub fn group_key(res: i64, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    format!("{res}@{}", Labels::from_pairs(&pairs).stable_hash())
}

/// Blocks sharing resolution and external labels.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: String,
    pub resolution: i64,
    /// External labels with replica labels removed.
    pub labels: BTreeMap<String, String>,
    /// Sorted by min time (then ULID).
    pub blocks: Vec<BlockMeta>,
}

/// Groups blocks, dropping `replica_labels` from their external labels. Groups are sorted by
/// key, blocks by min time.
pub fn group_blocks(metas: &[BlockMeta], replica_labels: &[String]) -> Vec<Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for m in metas {
        let mut labels = external_labels(m);
        for r in replica_labels {
            labels.remove(r);
        }
        let res = resolution(m);
        let key = group_key(res, &labels);
        groups
            .entry(key.clone())
            .or_insert_with(|| Group {
                key,
                resolution: res,
                labels,
                blocks: Vec::new(),
            })
            .blocks
            .push(m.clone());
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    for g in &mut out {
        g.blocks.sort_by_key(|b| (b.min_time, b.ulid));
    }
    out
}

/// Blocks of a group made redundant by another block of the group: all their sources are
/// included in another block's sources (strictly more, or the same sources and a smaller ULID).
/// Thanos removes these after a compaction whose sources were not yet marked. Of blocks with
/// identical sources (two compactors ran the same plan) the one with the smallest ULID is
/// kept and only the others are returned: at least one block of every source set survives.
pub fn redundant_blocks(blocks: &[BlockMeta]) -> Vec<Ulid> {
    let sets: Vec<HashSet<Ulid>> = blocks
        .iter()
        .map(|b| b.compaction.sources.iter().copied().collect())
        .collect();
    let mut out = Vec::new();
    for (i, a) in blocks.iter().enumerate() {
        if sets[i].is_empty() {
            continue;
        }
        let covered = blocks.iter().enumerate().any(|(j, b)| {
            j != i
                && sets[i].is_subset(&sets[j])
                && (sets[j].len() > sets[i].len() || b.ulid < a.ulid)
        });
        if covered {
            out.push(a.ulid);
        }
    }
    out
}

/// Thanos's default plan for one group: `blocks` sorted by min time, `no_compact` the blocks
/// carrying a no-compact mark. Returns the blocks to merge, in min-time order (empty: nothing
/// to do).
pub fn plan(blocks: &[BlockMeta], no_compact: &HashSet<Ulid>, ranges: &[i64]) -> Vec<Ulid> {
    if blocks.is_empty() {
        return Vec::new();
    }
    let mut not_excluded: Vec<&BlockMeta> = blocks
        .iter()
        .filter(|m| !no_compact.contains(&m.ulid))
        .collect();
    let ov = overlapping(&not_excluded);
    if !ov.is_empty() {
        return ov;
    }
    // The newest block (by min time) is left alone: it was probably just uploaded.
    let newest = &blocks[blocks.len() - 1];
    if !no_compact.contains(&newest.ulid) {
        not_excluded.pop();
    }
    let older: Vec<&BlockMeta> = blocks[..blocks.len() - 1].iter().collect();
    let sel = select(&older, no_compact, ranges);
    if !sel.is_empty() {
        return sel;
    }
    // A big enough block with more than 5% tombstones is rewritten alone.
    if let Some(&half) = ranges.get(ranges.len() / 2) {
        for m in not_excluded.iter().rev() {
            if m.max_time - m.min_time < half {
                break;
            }
            if m.stats.num_tombstones as f64 / (m.stats.num_series + 1) as f64 > 0.05 {
                return vec![m.ulid];
            }
        }
    }
    Vec::new()
}

fn overlapping(ms: &[&BlockMeta]) -> Vec<Ulid> {
    if ms.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut global_maxt = ms[0].max_time;
    for i in 1..ms.len() {
        if ms[i].min_time < global_maxt {
            if out.is_empty() {
                out.push(ms[i - 1].ulid);
            }
            out.push(ms[i].ulid);
        } else if !out.is_empty() {
            break;
        }
        global_maxt = global_maxt.max(ms[i].max_time);
    }
    out
}

fn split_by_range<'a>(ms: &[&'a BlockMeta], tr: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ms.len() {
        let t0 = ms[i].min_time.div_euclid(tr) * tr;
        if ms[i].max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < ms.len() && ms[i].max_time <= t0 + tr {
            group.push(ms[i]);
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

fn select(ms: &[&BlockMeta], no_compact: &HashSet<Ulid>, ranges: &[i64]) -> Vec<Ulid> {
    if ranges.len() < 2 || ms.is_empty() {
        return Vec::new();
    }
    let high = ms[ms.len() - 1].min_time;
    for &iv in &ranges[1..] {
        for p in split_by_range(ms, iv) {
            if p.iter().any(|m| m.compaction.failed) || p.len() < 2 {
                continue;
            }
            let mint = p[0].min_time;
            let maxt = p[p.len() - 1].max_time;
            if maxt - mint != iv && maxt > high {
                continue;
            }
            // Excluded blocks split the range; take the first run of two or more.
            let mut last_excluded = 0;
            for (i, m) in p.iter().enumerate() {
                if !no_compact.contains(&m.ulid) {
                    continue;
                }
                if i - last_excluded > 1 {
                    return p[last_excluded..i].iter().map(|m| m.ulid).collect();
                }
                last_excluded = i + 1;
            }
            if p.len().saturating_sub(last_excluded) > 1 {
                return p[last_excluded..].iter().map(|m| m.ulid).collect();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::block::meta::ThanosMeta;

    fn bm(n: u128, mint: i64, maxt: i64) -> BlockMeta {
        BlockMeta::new(Ulid::from(n), mint, maxt)
    }

    fn ids(v: &[u128]) -> Vec<Ulid> {
        v.iter().map(|&n| Ulid::from(n)).collect()
    }

    #[test]
    fn five_2h_blocks_give_one_8h_plan() {
        let bs: Vec<BlockMeta> = (0..5)
            .map(|i| bm(i + 1, i as i64 * 2 * H, (i as i64 + 1) * 2 * H))
            .collect();
        let none = HashSet::new();
        assert_eq!(plan(&bs, &none, &DEFAULT_RANGES), ids(&[1, 2, 3, 4]));
        // Four blocks: the newest is excluded and 0-6h does not fill 8h yet.
        assert!(plan(&bs[..4], &none, &DEFAULT_RANGES).is_empty());
    }

    #[test]
    fn overlaps_come_first() {
        let bs = vec![bm(1, 0, 2 * H), bm(2, H, 3 * H), bm(3, 4 * H, 6 * H)];
        assert_eq!(plan(&bs, &HashSet::new(), &DEFAULT_RANGES), ids(&[1, 2]));
    }

    #[test]
    fn no_compact_marks_split_ranges() {
        let bs: Vec<BlockMeta> = (0..5)
            .map(|i| bm(i + 1, i as i64 * 2 * H, (i as i64 + 1) * 2 * H))
            .collect();
        let marked: HashSet<Ulid> = [Ulid::from(2)].into();
        assert_eq!(plan(&bs, &marked, &DEFAULT_RANGES), ids(&[3, 4]));
        let marked: HashSet<Ulid> = [Ulid::from(3)].into();
        assert_eq!(plan(&bs, &marked, &DEFAULT_RANGES), ids(&[1, 2]));
        // An overlapping marked block is not merged.
        let ov = vec![bm(1, 0, 2 * H), bm(2, H, 3 * H)];
        let marked: HashSet<Ulid> = [Ulid::from(2)].into();
        assert!(plan(&ov, &marked, &DEFAULT_RANGES).is_empty());
    }

    #[test]
    fn grouping_drops_replica_labels() {
        let mut a = bm(1, 0, 2 * H);
        let mut b = bm(2, 0, 2 * H);
        let mut c = bm(3, 0, 2 * H);
        for (m, r, res) in [(&mut a, "a", 0), (&mut b, "b", 0), (&mut c, "a", 300_000)] {
            let mut t = ThanosMeta::default();
            t.labels.insert("cluster".into(), "eu".into());
            t.labels.insert("replica".into(), r.into());
            t.downsample.resolution = res;
            m.thanos = Some(t);
        }
        let all = vec![a, b, c];
        assert_eq!(group_blocks(&all, &[]).len(), 3);
        let g = group_blocks(&all, &["replica".to_string()]);
        assert_eq!(g.len(), 2);
        let raw = g.iter().find(|g| g.resolution == 0).unwrap();
        assert_eq!(raw.blocks.len(), 2);
        assert_eq!(raw.labels.len(), 1);
        assert!(raw.key.starts_with("0@"));
    }

    #[test]
    fn redundant_blocks_are_found() {
        let a = bm(1, 0, 2 * H);
        let b = bm(2, 2 * H, 4 * H);
        let mut c = bm(3, 0, 4 * H);
        c.compaction.sources = ids(&[1, 2]);
        assert_eq!(redundant_blocks(&[a, b, c.clone()]), ids(&[1, 2]));
        // Two outputs of the same plan: only the larger ULID goes, never both.
        let mut d = bm(4, 0, 4 * H);
        d.compaction.sources = ids(&[1, 2]);
        let mut e = bm(5, 0, 4 * H);
        e.compaction.sources = ids(&[1, 2]);
        assert_eq!(redundant_blocks(&[c.clone(), d.clone()]), ids(&[4]));
        assert_eq!(redundant_blocks(&[e.clone(), d.clone()]), ids(&[5]));
        assert_eq!(redundant_blocks(&[e, d, c]), ids(&[5, 4]));
    }
}
