//! Interop with real Prometheus 2.42: `promtool tsdb create-blocks-from openmetrics` writes
//! blocks; our readers must understand every index, meta.json and tombstones file, and our
//! writers must reproduce them byte for byte.
//!
//! Requires `promtool` on PATH (Debian's `prometheus` package); fails loudly without it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_tsdb::block::meta::{read_meta, write_meta};
use strata_tsdb::index::{ChunkMeta, IndexReader, IndexWriter};
use strata_tsdb::tombstones;
use strata_tsdb::Labels;

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 3;
const STEP_S: i64 = 30;

/// 50 series across a few metrics and label names, with a non-ASCII value and a value that
/// needs escaping.
fn input_series() -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for i in 0..50 {
        let metric = format!("metric_{}", i % 4);
        let mut ls = vec![
            ("instance".to_string(), format!("host-{i:02}:9100")),
            ("job".to_string(), ["node", "api", "db"][i % 3].to_string()),
        ];
        if i % 5 == 0 {
            ls.push(("region".to_string(), "europe-west-é".to_string()));
        }
        if i % 7 == 0 {
            ls.push(("path".to_string(), format!("/a\"b\\c/{i}")));
        }
        out.push((metric, ls));
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_openmetrics(path: &Path) -> BTreeSet<Labels> {
    let series = input_series();
    let mut by_metric: BTreeMap<&str, Vec<&Vec<(String, String)>>> = BTreeMap::new();
    for (m, ls) in &series {
        by_metric.entry(m).or_default().push(ls);
    }
    let mut s = String::new();
    let mut expect = BTreeSet::new();
    for (m, lss) in &by_metric {
        writeln!(s, "# TYPE {m} gauge").unwrap();
        for ls in lss {
            let body: Vec<String> = ls
                .iter()
                .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
                .collect();
            let body = body.join(",");
            let mut pairs: Vec<(String, String)> = (*ls).clone();
            pairs.push(("__name__".into(), m.to_string()));
            expect.insert(Labels::from_pairs(&pairs));
            let mut t = START_S;
            let mut v = 0.0f64;
            while t < START_S + HOURS * 3600 {
                v += 1.5;
                writeln!(s, "{m}{{{body}}} {v} {t}").unwrap();
                t += STEP_S;
            }
        }
    }
    s.push_str("# EOF\n");
    std::fs::write(path, s).unwrap();
    expect
}

fn run_promtool(input: &Path, out: &Path) {
    let res = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(input)
        .arg(out)
        .output();
    let o = match res {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run promtool ({e}); this test needs Prometheus 2.42's promtool on PATH \
             (Debian package `prometheus`)"
        ),
    };
    assert!(
        o.status.success(),
        "promtool failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn block_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    v
}

#[test]
fn promtool_blocks_read_and_rewrite_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.om");
    let expect = write_openmetrics(&input);
    assert_eq!(expect.len(), 50);
    let out = tmp.path().join("blocks");
    run_promtool(&input, &out);
    let blocks = block_dirs(&out);
    assert!(blocks.len() >= 2, "3h of data must span two 2h blocks");

    let mut seen_series = BTreeSet::new();
    let mut total_samples_range = 0i64;
    for dir in &blocks {
        let meta = read_meta(dir).unwrap();
        let index_path = dir.join("index");
        let r = IndexReader::open_file(&index_path).unwrap();

        // --- Series and chunk metas.
        let all = r.all_postings().unwrap();
        assert_eq!(all.len(), meta.stats.num_series);
        let mut series = Vec::new();
        let mut num_chunks = 0;
        for id in &all {
            let (l, c) = r.series_labels(id).unwrap();
            assert!(expect.contains(&l), "unexpected series {l}");
            assert!(!c.is_empty());
            for m in &c {
                assert!(m.min_time <= m.max_time);
                assert!(m.min_time >= meta.min_time && m.max_time < meta.max_time);
            }
            assert!(c.windows(2).all(|w| w[0].max_time < w[1].min_time));
            num_chunks += c.len() as u64;
            seen_series.insert(l.clone());
            series.push((id, l, c));
        }
        assert_eq!(num_chunks, meta.stats.num_chunks);
        assert!(
            series.windows(2).all(|w| w[0].1 < w[1].1),
            "ids follow label order"
        );
        total_samples_range += meta.max_time - meta.min_time;

        // --- Label names, values and postings match what the series say.
        let mut pairs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for (id, l, _) in &series {
            for x in l.iter() {
                pairs
                    .entry((x.name.to_string(), x.value.to_string()))
                    .or_default()
                    .push(*id);
            }
        }
        let names: BTreeSet<String> = pairs.keys().map(|(n, _)| n.clone()).collect();
        assert_eq!(r.label_names(), names.into_iter().collect::<Vec<_>>());
        assert!(r.label_names().contains(&"region".to_string()));
        for n in r.label_names() {
            let want: Vec<String> = pairs
                .keys()
                .filter(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .collect();
            assert_eq!(r.label_values(&n).unwrap(), want, "values of {n}");
        }
        for ((n, v), ids) in &pairs {
            let got: Vec<u32> = r.postings(n, v).unwrap().iter().collect();
            assert_eq!(&got, ids, "postings {n}={v}");
        }
        let region = r.postings("region", "europe-west-é").unwrap();
        assert_eq!(region.len(), 10);
        let api = r
            .postings_for_label_matching("job", |v| v == "api")
            .unwrap();
        assert_eq!(
            api.len(),
            expect
                .iter()
                .filter(|l| l.get("job") == Some("api"))
                .count() as u64
        );

        // --- Symbols are exactly the label strings plus "": Prometheus's head contributes the
        // empty string (its all-postings key) to every block's symbol table.
        let mut syms: BTreeSet<String> = series
            .iter()
            .flat_map(|(_, l, _)| {
                l.iter()
                    .flat_map(|x| [x.name.to_string(), x.value.to_string()])
                    .collect::<Vec<_>>()
            })
            .collect();
        syms.insert(String::new());
        let got: Vec<String> = r.symbols().map(|s| s.to_string()).collect();
        assert_eq!(got, syms.into_iter().collect::<Vec<_>>());

        // --- Our writer reproduces the file byte for byte.
        let ours_dir = tempfile::tempdir().unwrap();
        let ours = ours_dir.path().join("index");
        let mut w = IndexWriter::create(&ours).unwrap();
        w.add_symbols(r.symbols()).unwrap();
        for (_, l, c) in &series {
            let c: Vec<ChunkMeta> = c.clone();
            w.add_series(l, &c).unwrap();
        }
        w.close().unwrap();
        let theirs = std::fs::read(&index_path).unwrap();
        let mine = std::fs::read(&ours).unwrap();
        assert_eq!(
            mine.len(),
            theirs.len(),
            "index size differs from promtool's"
        );
        if let Some(i) = mine.iter().zip(&theirs).position(|(a, b)| a != b) {
            panic!(
                "index differs from promtool's at byte {i} (of {})",
                theirs.len()
            );
        }
        // Our reader agrees with itself on our copy.
        let r2 = IndexReader::open_file(&ours).unwrap();
        assert_eq!(r2.toc(), r.toc());

        // --- meta.json round-trips byte for byte.
        let meta_dir = tempfile::tempdir().unwrap();
        write_meta(meta_dir.path(), &meta).unwrap();
        assert_eq!(
            std::fs::read(meta_dir.path().join("meta.json")).unwrap(),
            std::fs::read(dir.join("meta.json")).unwrap(),
            "meta.json differs"
        );
        assert_eq!(meta.compaction.level, 1);
        assert_eq!(meta.compaction.sources, vec![meta.ulid]);
        assert!(meta.thanos.is_none());

        // --- tombstones: promtool writes an empty file; we read it and write the same bytes.
        let t = tombstones::read_file(dir).unwrap();
        assert!(t.is_empty());
        let tdir = tempfile::tempdir().unwrap();
        tombstones::write_file(tdir.path(), &t).unwrap();
        assert_eq!(
            std::fs::read(tdir.path().join("tombstones")).unwrap(),
            std::fs::read(dir.join("tombstones")).unwrap()
        );
    }
    assert_eq!(seen_series, expect, "every input series is in some block");
    assert!(total_samples_range > 0);
}
