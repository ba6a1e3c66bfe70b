use std::collections::{BTreeMap, BTreeSet};

use roaring::RoaringBitmap;

use super::*;
use crate::error::Error;
use crate::labels::{Label, Labels};

/// Test series in sorted order, each with its chunk metas.
fn test_series(n: usize) -> Vec<(Labels, Vec<ChunkMeta>)> {
    let mut set = BTreeSet::new();
    for i in 0..n {
        let mut pairs = vec![
            ("__name__".to_string(), format!("metric_{}", i % 5)),
            ("instance".to_string(), format!("host-{i:04}")),
            ("job".to_string(), format!("job{}", i % 3)),
        ];
        if i % 2 == 0 {
            pairs.push(("zone".to_string(), format!("z{}", i % 4)));
        }
        set.insert(Labels::from_pairs(&pairs));
    }
    let mut chunk_ref = 8u64;
    set.into_iter()
        .enumerate()
        .map(|(i, l)| {
            let chunks = (0..(1 + i % 4) as i64)
                .map(|c| {
                    let m = ChunkMeta {
                        min_time: -1000 + c * 7_200_000 + i as i64,
                        max_time: -1000 + c * 7_200_000 + 7_199_000,
                        chunk_ref,
                    };
                    chunk_ref += 100 + (i as u64 % 7);
                    m
                })
                .collect();
            (l, chunks)
        })
        .collect()
}

fn symbols_of(series: &[(Labels, Vec<ChunkMeta>)]) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for (l, _) in series {
        for x in l.iter() {
            s.insert(x.name.to_string());
            s.insert(x.value.to_string());
        }
    }
    s
}

fn write_index(dir: &std::path::Path, series: &[(Labels, Vec<ChunkMeta>)]) -> Vec<u8> {
    let path = dir.join("index");
    let mut w = IndexWriter::create(&path).unwrap();
    w.add_symbols(symbols_of(series)).unwrap();
    for (l, c) in series {
        w.add_series(l, c).unwrap();
    }
    w.close().unwrap();
    std::fs::read(&path).unwrap()
}

/// Calls every accessor; returns the first error. Used to check that corrupt input errors
/// instead of panicking.
fn exercise(bytes: &[u8]) -> crate::Result<()> {
    let r = IndexReader::open(bytes, "/x/index")?;
    let _ = r.symbols().count();
    let mut ls = Vec::new();
    let mut cs = Vec::new();
    for id in r.all_postings()? {
        r.series(id, &mut ls, &mut cs)?;
    }
    for n in r.label_names() {
        for v in r.label_values(&n)? {
            r.postings(&n, &v)?;
        }
        r.postings_for_label_matching(&n, |_| true)?;
    }
    Ok(())
}

#[test]
fn round_trip_every_accessor() {
    let dir = tempfile::tempdir().unwrap();
    let series = test_series(300);
    let bytes = write_index(dir.path(), &series);

    // Over a Vec and over a memory map.
    let r = IndexReader::open(bytes.clone(), dir.path().join("index")).unwrap();
    let m = IndexReader::open_file(dir.path().join("index")).unwrap();
    assert_eq!(r.size(), bytes.len() as u64);
    assert_eq!(m.size(), bytes.len() as u64);
    assert_eq!(r.toc(), m.toc());

    let syms = symbols_of(&series);
    let got: Vec<String> = r.symbols().map(|s| s.to_string()).collect();
    assert_eq!(got, syms.iter().cloned().collect::<Vec<_>>());

    // Expected postings by (name, value), series ids in order.
    let all = r.all_postings().unwrap();
    assert_eq!(all.len(), series.len() as u64);
    let ids: Vec<u32> = all.iter().collect();
    let mut expect: BTreeMap<(String, String), RoaringBitmap> = BTreeMap::new();
    let mut ls = Vec::new();
    let mut cs = Vec::new();
    for (id, (l, c)) in ids.iter().zip(&series) {
        r.series(*id, &mut ls, &mut cs).unwrap();
        assert_eq!(&Labels::from_sorted(ls.clone()), l);
        assert_eq!(&cs, c);
        let (l2, c2) = m.series_labels(*id).unwrap();
        assert_eq!((&l2, &c2), (l, c));
        for x in l.iter() {
            expect
                .entry((x.name.to_string(), x.value.to_string()))
                .or_default()
                .insert(*id);
        }
    }
    // Series ids are offsets / 16, increasing in label order.
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let names: BTreeSet<String> = expect.keys().map(|(n, _)| n.clone()).collect();
    assert_eq!(r.label_names(), names.iter().cloned().collect::<Vec<_>>());
    for n in &names {
        let vals: Vec<String> = expect
            .keys()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(r.label_values(n).unwrap(), vals);
        let shared = r.label_values_shared(n).unwrap();
        assert_eq!(shared.len(), vals.len());
    }
    for ((n, v), bm) in &expect {
        assert_eq!(&r.postings(n, v).unwrap(), bm, "{n}={v}");
        assert_eq!(&m.postings(n, v).unwrap(), bm, "{n}={v}");
    }
    // Absent pairs and names are empty, including values before/after/between existing ones.
    for (n, v) in [
        ("instance", "a"),
        ("instance", "host-0000x"),
        ("instance", "zzz"),
        ("nope", "x"),
        ("", "x"),
        ("job", ""),
    ] {
        assert!(r.postings(n, v).unwrap().is_empty(), "{n}={v}");
    }
    assert!(r.label_values("nope").unwrap().is_empty());

    let u = r
        .postings_for_values(
            "instance",
            &["host-0001", "host-0299", "host-0150", "missing"],
        )
        .unwrap();
    let mut want = RoaringBitmap::new();
    for v in ["host-0001", "host-0299", "host-0150"] {
        want |= &expect[&("instance".to_string(), v.to_string())];
    }
    assert_eq!(u, want);

    let jobs = r
        .postings_for_label_matching("job", |v| v != "job1")
        .unwrap();
    let want = &expect[&("job".into(), "job0".into())] | &expect[&("job".into(), "job2".into())];
    assert_eq!(jobs, want);
    let zone = r.postings_for_label_matching("zone", |_| true).unwrap();
    assert_eq!(zone.len(), 150);

    // Label strings are shared with the symbol table.
    r.series(ids[0], &mut ls, &mut cs).unwrap();
    let sym = r.symbols().find(|s| ***s == *ls[0].name).unwrap();
    assert!(std::sync::Arc::ptr_eq(sym, &ls[0].name));
}

#[test]
fn layout_matches_prometheus_rules() {
    let dir = tempfile::tempdir().unwrap();
    let series = test_series(40);
    let bytes = write_index(dir.path(), &series);
    let r = IndexReader::open(&bytes[..], "index").unwrap();
    let toc = *r.toc();
    assert_eq!(toc.symbols, 5);
    // TOC series/postings offsets are taken before padding.
    assert!(toc.series < toc.label_indices);
    assert!(toc.label_indices <= toc.postings);
    assert!(toc.postings < toc.label_indices_table);
    assert!(toc.label_indices_table < toc.postings_table);
    for id in r.all_postings().unwrap() {
        assert!(id as u64 * 16 >= toc.series);
    }
    // The first label index is 4-byte aligned and indexes the first label name.
    let li = toc.label_indices.div_ceil(4) * 4;
    let b = &bytes[li as usize..];
    assert_eq!(&b[4..8], &1u32.to_be_bytes());
    assert_eq!(
        u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize,
        r.label_values("__name__").unwrap().len()
    );
    // The all-postings list comes first after padding.
    let p = toc.postings.div_ceil(4) * 4;
    let b = &bytes[p as usize..];
    assert_eq!(
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize,
        series.len()
    );
}

#[test]
fn empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    IndexWriter::create(&path).unwrap().close().unwrap();
    let r = IndexReader::open_file(&path).unwrap();
    assert!(r.all_postings().unwrap().is_empty());
    assert!(r.label_names().is_empty());
    assert_eq!(r.symbols().count(), 0);
}

#[test]
fn writer_rejects_misuse() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::create(dir.path().join("index")).unwrap();
    w.add_symbols(["a", "b"]).unwrap();
    assert!(w.add_symbol("a").is_err());
    let ab = Labels::from_pairs(&[("a", "b")]);
    let aa = Labels::from_pairs(&[("a", "a")]);
    assert!(w.add_series(&Labels::empty(), &[]).is_err());
    w.add_series(&ab, &[]).unwrap();
    assert!(w.add_series(&ab, &[]).is_err());
    assert!(w.add_series(&aa, &[]).is_err());
    assert!(w.add_symbol("c").is_err());
    let missing = Labels::from_pairs(&[("b", "zz")]);
    assert!(matches!(
        w.add_series(&missing, &[]),
        Err(Error::Invalid(_))
    ));
    w.close().unwrap();
}

#[test]
fn rejects_bad_header_and_v1() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = write_index(dir.path(), &test_series(3));
    bytes[4] = 1;
    let e = IndexReader::open(&bytes[..], "/d/index")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/d/index") && e.contains("v1"), "{e}");
    bytes[4] = 2;
    bytes[0] = 0;
    let e = IndexReader::open(&bytes[..], "/d/index")
        .unwrap_err()
        .to_string();
    assert!(e.contains("magic") && e.contains("offset 0"), "{e}");
}

#[test]
fn corruption_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_index(dir.path(), &test_series(20));
    let r = IndexReader::open(&bytes[..], "x").unwrap();
    let toc = *r.toc();
    let first_series = r.all_postings().unwrap().min().unwrap();
    drop(r);
    // One byte inside each section.
    let cases = [
        (toc.symbols + 10, "symbol table"),
        (first_series as u64 * 16 + 3, "series"),
        (toc.postings.div_ceil(4) * 4 + 9, "postings list"),
        (toc.postings_table + 12, "postings offset table"),
        (bytes.len() as u64 - 20, "TOC"),
    ];
    for (pos, what) in cases {
        let mut b = bytes.clone();
        b[pos as usize] ^= 0x40;
        let err = exercise(&b).expect_err(what);
        let msg = err.to_string();
        assert!(msg.contains("/x/index"), "{what}: {msg}");
        assert!(
            msg.contains(what) || msg.contains("checksum"),
            "{what}: {msg}"
        );
        match err {
            Error::Corrupt { offset, .. } => {
                assert!(
                    offset <= pos && pos - offset < 200,
                    "{what}: {offset} vs {pos}"
                )
            }
            e => panic!("{what}: unexpected error {e}"),
        }
    }
}

#[test]
fn every_flip_and_truncation_errors_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_index(dir.path(), &test_series(6));
    assert!(exercise(&bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(exercise(&bytes[..len]).is_err(), "truncated to {len}");
    }
    let toc = *IndexReader::open(&bytes[..], "x").unwrap().toc();
    // The legacy label index sections and label offset table are never read (as in
    // Prometheus), so damage there goes unnoticed.
    let unread = |p: u64| {
        (toc.label_indices..toc.postings).contains(&p)
            || (toc.label_indices_table..toc.postings_table).contains(&p)
    };
    for pos in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[pos] ^= bit;
            // Only zero padding and the unread legacy sections may be damaged unnoticed.
            if exercise(&b).is_ok() {
                assert!(
                    bytes[pos] == 0 || unread(pos as u64),
                    "flip of {bit:#x} at {pos} went unnoticed"
                );
            }
        }
    }
}

#[test]
fn series_id_out_of_range_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_index(dir.path(), &test_series(3));
    let r = IndexReader::open(bytes, "idx").unwrap();
    let mut ls: Vec<Label> = Vec::new();
    let mut cs = Vec::new();
    assert!(r.series(0, &mut ls, &mut cs).is_err());
    assert!(r.series(u32::MAX, &mut ls, &mut cs).is_err());
    assert!(r.series(1, &mut ls, &mut cs).is_err());
}

#[test]
fn empty_and_tiny_files_are_corrupt_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    std::fs::write(&path, b"").unwrap();
    let e = IndexReader::open_file(&path).unwrap_err();
    assert!(matches!(e, Error::Corrupt { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains(&*path.to_string_lossy()));
    std::fs::write(&path, [0xba, 0xaa, 0xd7, 0x00, 0x02]).unwrap();
    assert!(IndexReader::open_file(&path).is_err());
}

#[test]
fn reader_is_send_sync_over_owned_and_mapped_bytes() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IndexReader<memmap2::Mmap>>();
    assert_send_sync::<IndexReader<Vec<u8>>>();
    assert_send_sync::<IndexReader<std::sync::Arc<[u8]>>>();
    let dir = tempfile::tempdir().unwrap();
    let bytes: std::sync::Arc<[u8]> = write_index(dir.path(), &test_series(5)).into();
    let r = IndexReader::open(bytes, "shared").unwrap();
    assert_eq!(r.all_postings().unwrap().len(), 5);
}
