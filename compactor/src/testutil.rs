//! Test helpers: real blocks written with the storage engine and uploaded to a bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::block::{write_block, Block, SeriesToWrite};
use strata_tsdb::compact::encode_chunks;
use strata_tsdb::labels::{Labels, Matcher};
use strata_tsdb::storage::Querier;
use ulid::Ulid;

use crate::bucket::{self, Bucket};

/// Writes a block over `[mint, maxt)` with `n` series `m{i="…"}`, a sample every `step` ms
/// valued `f(i, t)`; returns its meta (level 1).
pub fn write_local(
    dir: &Path,
    mint: i64,
    maxt: i64,
    step: i64,
    n: usize,
    f: impl Fn(usize, i64) -> f64,
) -> BlockMeta {
    let mut symbols: BTreeSet<Arc<str>> = BTreeSet::from([Arc::from("")]);
    let mut series = Vec::new();
    for i in 0..n {
        let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
        for x in l.iter() {
            symbols.insert(x.name.clone());
            symbols.insert(x.value.clone());
        }
        let samples: Vec<(i64, f64)> = (0..)
            .map(|k| mint + k * step)
            .take_while(|&t| t < maxt)
            .map(|t| (t, f(i, t)))
            .collect();
        series.push((l, samples));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut it = series.into_iter().map(|(labels, s)| {
        Ok(SeriesToWrite {
            labels,
            chunks: encode_chunks(&s)?,
        })
    });
    let meta = BlockMeta::new(Ulid::new(), mint, maxt);
    write_block(dir, meta, &symbols, &mut it)
        .expect("write block")
        .expect("non-empty block")
}

/// Writes a block like [`write_local`] and uploads it with external labels and resolution 0.
pub async fn upload(
    bucket: &Bucket,
    tmp: &Path,
    labels: &[(&str, &str)],
    mint: i64,
    maxt: i64,
    step: i64,
    f: impl Fn(usize, i64) -> f64,
) -> BlockMeta {
    let mut meta = write_local(tmp, mint, maxt, step, 2, f);
    let lab: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.thanos = Some(ThanosMeta {
        labels: lab,
        source: "sidecar".into(),
        ..Default::default()
    });
    let dir = tmp.join(meta.ulid.to_string());
    bucket::upload_block(bucket, &dir, &meta)
        .await
        .expect("upload");
    meta
}

/// Every sample of every series of a local block, by series labels.
pub fn read_all(dir: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let b = Block::open(dir).expect("open block");
    let q = b.querier(i64::MIN, i64::MAX);
    let mut out = BTreeMap::new();
    for s in q.select(true, None, &[Matcher::equal("__name__", "m")]) {
        let s = s.expect("series");
        let mut it = s.iterator();
        let mut v = Vec::new();
        while it.next() {
            v.push(it.at());
        }
        assert!(it.err().is_none());
        out.insert(s.labels().get("i").unwrap_or_default().to_string(), v);
    }
    out
}
