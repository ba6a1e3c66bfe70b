//! Choosing blocks by downsampling resolution, as Thanos's store gateway does: for a query of
//! `[mint, maxt]` allowed to read data as coarse as `max_resolution`, take the blocks of the
//! coarsest resolution `<= max_resolution` over the range, and fill every gap they leave
//! (before, between and after them) with blocks of the next finer resolution, recursively
//! down to raw data. So coarse data is used where it exists and raw data fills the rest;
//! with `max_resolution = 0` only raw blocks are read.

/// What the choice needs to know of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan<T> {
    pub id: T,
    pub min_time: i64,
    /// Exclusive.
    pub max_time: i64,
    pub resolution: i64,
}

/// The blocks to read for `[mint, maxt]` (inclusive) at resolutions up to `max_resolution`.
pub fn choose_blocks<T: Copy>(
    blocks: &[BlockSpan<T>],
    mint: i64,
    maxt: i64,
    max_resolution: i64,
) -> Vec<T> {
    // Resolutions, coarsest first, with their blocks sorted by start time.
    let mut res: Vec<i64> = blocks.iter().map(|b| b.resolution).collect();
    res.sort_unstable_by(|a, b| b.cmp(a));
    res.dedup();
    let levels: Vec<Vec<&BlockSpan<T>>> = res
        .iter()
        .map(|r| {
            let mut v: Vec<&BlockSpan<T>> = blocks.iter().filter(|b| b.resolution == *r).collect();
            v.sort_by_key(|b| (b.min_time, b.max_time));
            v
        })
        .collect();
    let Some(start) = res.iter().position(|r| *r <= max_resolution) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    fill(&levels, start, mint, maxt, &mut out);
    out
}

fn fill<T: Copy>(
    levels: &[Vec<&BlockSpan<T>>],
    level: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<T>,
) {
    if mint > maxt || level >= levels.len() {
        return;
    }
    let mut start = mint;
    for b in &levels[level] {
        if b.max_time <= mint {
            continue;
        }
        if b.min_time > maxt {
            break;
        }
        fill(levels, level + 1, start, b.min_time.saturating_sub(1), out);
        out.push(b.id);
        start = start.max(b.max_time);
    }
    fill(levels, level + 1, start, maxt, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn span(id: u32, min: i64, max: i64, res: i64) -> BlockSpan<u32> {
        BlockSpan {
            id,
            min_time: min * H,
            max_time: max * H,
            resolution: res,
        }
    }

    #[test]
    fn coarsest_first_then_finer_fills_gaps() {
        let blocks = [
            span(1, 0, 10, 0),        // raw 0-10h
            span(2, 10, 20, 0),       // raw 10-20h
            span(3, 0, 12, 300_000),  // 5m 0-12h
            span(4, 0, 8, 3_600_000), // 1h 0-8h
            span(5, 30, 40, 300_000), // 5m far away
        ];
        let mut got = choose_blocks(&blocks, 0, 15 * H, 3_600_000);
        got.sort();
        // 1h covers 0-8h, 5m fills 8-12h, raw fills 12-15h.
        assert_eq!(got, vec![2, 3, 4]);
        let mut got = choose_blocks(&blocks, 0, 15 * H, 300_000);
        got.sort();
        assert_eq!(got, vec![2, 3]);
        let mut got = choose_blocks(&blocks, 0, 15 * H, 0);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        // A range fully inside the coarse block needs nothing finer.
        assert_eq!(choose_blocks(&blocks, H, 2 * H, 3_600_000), vec![4]);
        // Nothing allowed below the finest resolution present.
        let only_ds = [span(1, 0, 10, 300_000)];
        assert!(choose_blocks(&only_ds, 0, H, 0).is_empty());
        // A gap at the start is filled from finer data.
        let mut got = choose_blocks(&blocks, 0, 40 * H, 300_000);
        got.sort();
        assert_eq!(got, vec![2, 3, 5]);
    }
}
