//! Tests of the WAL writer, reader, repair and checkpoints.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::Arc;

fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn compressible(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add((i / 50) as u8)).collect()
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    WalReader::open(dir)
        .unwrap()
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

/// Every record with its segment, start and end offsets.
fn read_positions(dir: &Path) -> Vec<(Vec<u8>, u64, u64, u64)> {
    let mut r = WalReader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let rec = rec.to_vec();
        out.push((rec, r.segment(), r.record_start(), r.offset()));
    }
    out
}

/// Fragment headers of a segment file: (offset, type byte, length).
fn fragments(data: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == 0 {
            i = (i / PAGE_SIZE + 1) * PAGE_SIZE;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 1], data[i + 2]]) as usize;
        out.push((i, data[i], len));
        i += 7 + len;
    }
    out
}

#[test]
fn records_round_trip_with_all_fragment_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut want = vec![
        Vec::new(),
        b"x".to_vec(),
        random_bytes(&mut rng, 100),
        random_bytes(&mut rng, PAGE_SIZE - 7),
        random_bytes(&mut rng, PAGE_SIZE + 5),
        random_bytes(&mut rng, 5 * PAGE_SIZE + 123),
        compressible(200_000, 3),
    ];
    for i in 0..200 {
        let n = rng.gen_range(0..3000);
        want.push(if i % 2 == 0 {
            random_bytes(&mut rng, n)
        } else {
            compressible(n, i as u8)
        });
    }
    {
        let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        for chunk in want.chunks(7) {
            let refs: Vec<&[u8]> = chunk.iter().map(|v| v.as_slice()).collect();
            w.log(&refs).unwrap();
        }
        w.close().unwrap();
    }
    assert_eq!(read_all(dir.path()), want);

    let data = fs::read(segment_name(dir.path(), 0)).unwrap();
    assert_eq!(data.len() % PAGE_SIZE, 0, "closed segment is page aligned");
    let frags = fragments(&data);
    // No fragment crosses a page boundary, and every kind occurs.
    for &(off, _, len) in &frags {
        assert_eq!(off / PAGE_SIZE, (off + 7 + len - 1) / PAGE_SIZE);
    }
    for kind in 1..=4u8 {
        assert!(frags.iter().any(|f| f.1 & 7 == kind), "kind {kind} missing");
    }
    // The 5-page random record: first, then middles, then last, uncompressed.
    let big = frags
        .windows(2)
        .position(|w| w[0].1 == 2 && w[1].1 == 3)
        .unwrap();
    let middles = frags[big + 1..].iter().take_while(|f| f.1 == 3).count();
    assert!(middles >= 4, "{middles} middle fragments");
    assert_eq!(frags[big + 1 + middles].1, 4);
}

#[test]
fn snappy_flag_only_when_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let comp = compressible(1000, 1);
    let rand = random_bytes(&mut rng, 1000);
    let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    w.log(&[&comp, &rand]).unwrap();
    w.set_compression(false);
    w.log(&[&comp]).unwrap();
    w.close().unwrap();
    let data = fs::read(segment_name(dir.path(), 0)).unwrap();
    let frags = fragments(&data);
    assert_eq!(frags.len(), 3);
    assert_eq!(frags[0].1, 0x09);
    assert!(frags[0].2 < 200);
    assert_eq!(frags[1].1, 0x01);
    assert_eq!(frags[1].2, 1000);
    assert_eq!(frags[2].1, 0x01);
    assert_eq!(read_all(dir.path()), vec![comp.clone(), rand, comp]);
}

#[test]
fn segment_rollover_and_oversized_records() {
    let dir = tempfile::tempdir().unwrap();
    let seg_size = 2 * PAGE_SIZE;
    let mut rng = StdRng::seed_from_u64(3);
    let mut want = Vec::new();
    {
        let mut w = Wal::open(dir.path(), seg_size).unwrap();
        w.set_compression(false);
        for i in 0..60 {
            let n = if i == 30 {
                5 * PAGE_SIZE
            } else {
                rng.gen_range(1..10_000)
            };
            let rec = random_bytes(&mut rng, n);
            w.log(&[&rec]).unwrap();
            want.push(rec);
        }
        w.close().unwrap();
    }
    let (first, last) = segments(dir.path()).unwrap().unwrap();
    assert_eq!(first, 0);
    assert!(last >= 5, "expected several segments, got {last}");
    let mut oversized = 0;
    for s in list_segments(dir.path()).unwrap() {
        let len = fs::metadata(&s.path).unwrap().len() as usize;
        assert_eq!(len % PAGE_SIZE, 0);
        if len > seg_size {
            oversized += 1;
        }
    }
    assert_eq!(
        oversized, 1,
        "only the 5-page record gets an oversized segment"
    );
    // Records never span segments: each record's fragments live in one file.
    let pos = read_positions(dir.path());
    assert_eq!(pos.len(), want.len());
    for ((rec, _, start, end), w) in pos.iter().zip(&want) {
        assert_eq!(rec, w);
        assert!(end > start);
    }
}

#[test]
fn reopen_starts_a_new_segment_and_reads_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        w.log(&[b"one", b"two"]).unwrap();
        // Dropped without close: the page is flushed on drop.
    }
    let mut seen = Vec::new();
    let mut w = Wal::open_with_replay(dir.path(), DEFAULT_SEGMENT_SIZE, |seg, rec| {
        seen.push((seg, rec.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(0, b"one".to_vec()), (0, b"two".to_vec())]);
    assert_eq!(w.current_segment(), 1);
    assert!(w.repair_report().is_none());
    w.log(&[b"three"]).unwrap();
    w.flush().unwrap();
    // Readable while the writer is open (unpadded last page).
    assert_eq!(
        read_all(dir.path()),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert_eq!(w.segments().unwrap(), (0, 1));
    let before = w.fsync_count();
    w.sync().unwrap();
    assert_eq!(w.fsync_count(), before + 1);
    assert_eq!(w.next_segment().unwrap(), 2);
    w.log(&[b"four"]).unwrap();
    w.truncate(2).unwrap();
    assert_eq!(w.segments().unwrap(), (2, 2));
    // The active segment is never deleted.
    w.truncate(100).unwrap();
    assert_eq!(w.segments().unwrap(), (2, 2));
    w.close().unwrap();
    assert!(w.log(&[b"x"]).is_err());
    assert_eq!(read_all(dir.path()), vec![b"four".to_vec()]);
    assert!(Wal::open(dir.path(), 1000).is_err());
}

/// Writes a WAL (several segments, multi-page records) and returns the records with their
/// positions.
fn write_sample_wal(dir: &Path, rng: &mut StdRng, compress: bool) -> Vec<(Vec<u8>, u64, u64, u64)> {
    let mut w = Wal::open(dir, 4 * PAGE_SIZE).unwrap();
    w.set_compression(compress);
    for i in 0..40 {
        let n = match i % 5 {
            0 => rng.gen_range(PAGE_SIZE..3 * PAGE_SIZE),
            _ => rng.gen_range(0..2000),
        };
        let rec = if compress && i % 2 == 0 {
            compressible(n, i as u8)
        } else {
            random_bytes(rng, n)
        };
        w.log(&[&rec]).unwrap();
    }
    w.close().unwrap();
    read_positions(dir)
}

/// Reopens a damaged WAL, checks the surviving records are `want`, appends and reads back.
fn check_reopen(dir: &Path, want: &[Vec<u8>]) {
    let mut w = Wal::open(dir, 4 * PAGE_SIZE).unwrap();
    let got = read_all(dir);
    assert_eq!(got.len(), want.len());
    assert!(got == want);
    w.log(&[b"after repair", &compressible(70_000, 9)]).unwrap();
    w.close().unwrap();
    let got = read_all(dir);
    assert_eq!(got.len(), want.len() + 2);
    assert_eq!(got[want.len()], b"after repair");
    // A further reopen finds nothing to repair.
    let w = Wal::open(dir, 4 * PAGE_SIZE).unwrap();
    assert!(w.repair_report().is_none());
}

#[test]
fn torn_tail_is_repaired_at_any_offset() {
    let mut rng = StdRng::seed_from_u64(4);
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let recs = write_sample_wal(dir.path(), &mut rng, round % 2 == 0);
        let last_seg = recs.last().unwrap().1;
        let path = segment_name(dir.path(), last_seg);
        let len = fs::metadata(&path).unwrap().len();
        let cut = match round {
            0 => 0,
            1 => len - 1,
            2 => 3, // inside the first header
            _ => rng.gen_range(0..len),
        };
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let want: Vec<Vec<u8>> = recs
            .iter()
            .filter(|r| r.1 < last_seg || r.3 <= cut)
            .map(|r| r.0.clone())
            .collect();
        check_reopen(dir.path(), &want);
    }
}

#[test]
fn flipped_bytes_in_last_page_are_repaired() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let recs = write_sample_wal(dir.path(), &mut rng, false);
        let last_seg = recs.last().unwrap().1;
        let last_end = recs.last().unwrap().3;
        let path = segment_name(dir.path(), last_seg);
        let mut data = fs::read(&path).unwrap();
        let page_start = (last_end - 1) / PAGE_SIZE as u64 * PAGE_SIZE as u64;
        let at = rng.gen_range(page_start..data.len() as u64);
        data[at as usize] ^= rng.gen_range(1..=255u8);
        fs::write(&path, &data).unwrap();
        let want: Vec<Vec<u8>> = recs
            .iter()
            .filter(|r| r.1 < last_seg || r.3 <= at)
            .map(|r| r.0.clone())
            .collect();
        check_reopen(dir.path(), &want);
    }
}

#[test]
fn corruption_in_an_older_segment_drops_everything_after_it() {
    let mut rng = StdRng::seed_from_u64(6);
    let dir = tempfile::tempdir().unwrap();
    let recs = write_sample_wal(dir.path(), &mut rng, true);
    let last_seg = recs.last().unwrap().1;
    assert!(last_seg >= 2);
    // Damage the 2nd record of segment 1.
    let victim = recs.iter().filter(|r| r.1 == 1).nth(1).unwrap().clone();
    let path = segment_name(dir.path(), 1);
    let mut data = fs::read(&path).unwrap();
    data[victim.2 as usize + 7] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let want: Vec<Vec<u8>> = recs
        .iter()
        .filter(|r| r.1 == 0 || (r.1 == 1 && r.3 <= victim.2))
        .map(|r| r.0.clone())
        .collect();
    {
        let w = Wal::open(dir.path(), 4 * PAGE_SIZE).unwrap();
        let rep = w.repair_report().unwrap();
        assert_eq!(rep.segment, 1);
        assert_eq!(rep.truncated_at, victim.2);
        assert_eq!(rep.deleted_segments, (2..=last_seg).collect::<Vec<_>>());
        assert_eq!(w.current_segment(), 2);
    }
    assert_eq!(read_all(dir.path()), want);
}

#[test]
fn reader_reports_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    w.set_compression(false);
    w.log(&[b"aaaa", b"bbbb"]).unwrap();
    w.close().unwrap();
    let path = segment_name(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    data[11 + 8] ^= 1; // data of the 2nd record (header at 11)
    fs::write(&path, &data).unwrap();
    let mut r = WalReader::open(dir.path()).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap(), b"aaaa");
    let e = r.next_record().unwrap_err();
    assert!(e.is_corruption());
    assert_eq!((e.segment, e.offset, e.record_start), (0, 11, 11));
    assert!(e.to_string().contains("00000000"), "{e}");
    assert!(r.next_record().unwrap().is_none());
    let e: Error = e.into();
    assert!(matches!(e, Error::Corrupt { offset: 11, .. }));
}

#[test]
fn garbage_segments_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let n = rng.gen_range(0..3 * PAGE_SIZE);
        let mut data = random_bytes(&mut rng, n);
        // Sometimes make it plausible: valid-looking headers.
        if rng.gen_bool(0.5) && n > 7 {
            data[0] = 0x09;
            data[1] = 0x00;
            data[2] = 0x40;
        }
        fs::write(segment_name(dir.path(), 0), &data).unwrap();
        let mut r = WalReader::open(dir.path()).unwrap();
        while let Ok(Some(_)) = r.next_record() {}
        // Open repairs whatever this is.
        let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        w.log(&[b"ok"]).unwrap();
        w.close().unwrap();
        assert_eq!(read_all(dir.path()).last().unwrap(), b"ok");
    }
}

fn series(r: u64) -> RefSeries {
    RefSeries {
        r,
        labels: crate::Labels::from_pairs(&[("__name__", "m"), ("id", &r.to_string())]),
    }
}

#[test]
fn checkpoint_keeps_exactly_the_wanted_records() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(WAL_DIR_NAME);
    let mut w = Wal::open(&dir, 2 * PAGE_SIZE).unwrap();
    let mut buf = Vec::new();
    for r in 1..=10u64 {
        buf.clear();
        encode_series(&[series(r)], &mut buf);
        w.log(&[&buf]).unwrap();
    }
    for t in 0..100i64 {
        let samples: Vec<RefSample> = (1..=10u64)
            .map(|r| RefSample { r, t, v: t as f64 })
            .collect();
        buf.clear();
        encode_samples(&samples, &mut buf);
        w.log(&[&buf]).unwrap();
    }
    buf.clear();
    encode_tombstones(
        &[
            Stone {
                r: 2,
                intervals: vec![(0, 10)],
            },
            Stone {
                r: 4,
                intervals: vec![(0, 70)],
            },
            Stone {
                r: 5,
                intervals: vec![(60, 80)],
            },
        ],
        &mut buf,
    );
    w.log(&[&buf, &[200u8, 1, 2][..]]).unwrap();
    let seg = w.next_segment().unwrap();
    w.log(&[b"\x02"]).unwrap(); // after the checkpoint range
    let keep = |r: u64| r & 1 == 0;
    let stats = checkpoint(&dir, 0, seg - 1, keep, 50).unwrap();
    assert_eq!(stats.total_series, 10);
    assert_eq!(stats.dropped_series, 5);
    assert_eq!(stats.total_samples, 1000);
    assert_eq!(stats.dropped_samples, 1000 - 5 * 50);
    assert_eq!(stats.total_tombstones, 3);
    assert_eq!(stats.dropped_tombstones, 2);
    assert_eq!(stats.dropped_other_records, 1);

    let (cp, idx) = last_checkpoint(&dir).unwrap().unwrap();
    assert_eq!(idx, seg - 1);
    assert_eq!(cp, dir.join(format!("checkpoint.{:08}", seg - 1)));
    assert!(!dir.join(format!("checkpoint.{:08}.tmp", seg - 1)).exists());

    let (mut got_series, mut got_samples, mut got_stones) = (Vec::new(), Vec::new(), Vec::new());
    let mut intern = |s: &str| -> Arc<str> { s.into() };
    for rec in WalReader::open(&cp).unwrap() {
        let rec = rec.unwrap();
        match record_type(&rec) {
            RecordType::Series => decode_series(&rec, &mut got_series, &mut intern).unwrap(),
            RecordType::Samples => decode_samples(&rec, &mut got_samples).unwrap(),
            RecordType::Tombstones => decode_tombstones(&rec, &mut got_stones).unwrap(),
            t => panic!("unexpected record type {t:?}"),
        }
    }
    let want_series: Vec<RefSeries> = (1..=10).filter(|&r| keep(r)).map(series).collect();
    assert_eq!(got_series, want_series);
    let want_samples: Vec<RefSample> = (50..100i64)
        .flat_map(|t| {
            (1..=10u64)
                .filter(|&r| keep(r))
                .map(move |r| RefSample { r, t, v: t as f64 })
        })
        .collect();
    assert_eq!(got_samples, want_samples);
    assert_eq!(
        got_stones,
        vec![Stone {
            r: 4,
            intervals: vec![(0, 70)]
        }]
    );

    // The head truncates; reopening validates only the segments after the checkpoint.
    w.truncate(seg).unwrap();
    w.close().unwrap();
    let mut replayed = Vec::new();
    let w = Wal::open_with_replay(&dir, 2 * PAGE_SIZE, |s, r| {
        replayed.push((s, r.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(replayed, vec![(seg, b"\x02".to_vec())]);
    let seg2 = w.current_segment();
    drop(w);

    // A second checkpoint builds on the first, drops more, and deletes the first.
    let stats = checkpoint(&dir, seg, seg2 - 1, |r| r == 4, 90).unwrap();
    assert_eq!(stats.total_series, 5);
    assert_eq!(stats.dropped_series, 4);
    assert_eq!(stats.total_samples, 250);
    assert_eq!(stats.dropped_samples, 250 - 10);
    assert!(!cp.exists());
    assert_eq!(last_checkpoint(&dir).unwrap().unwrap().1, seg2 - 1);
    // A gap after the last checkpoint is refused.
    assert!(checkpoint(&dir, seg2 + 5, seg2 + 6, |_| true, 0).is_err());
}

#[test]
fn torn_record_at_a_page_boundary_is_reported_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    w.set_compression(false);
    w.log(&[&vec![7u8; PAGE_SIZE + 100]]).unwrap();
    w.close().unwrap();
    let path = segment_name(dir.path(), 0);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(PAGE_SIZE as u64).unwrap();
    drop(f);
    let e = WalReader::open(dir.path())
        .unwrap()
        .next_record()
        .unwrap_err();
    assert_eq!((e.offset, e.record_start), (PAGE_SIZE as u64, 0));
    assert!(e.to_string().contains("torn"), "{e}");
    let w = Wal::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    assert_eq!(w.repair_report().unwrap().truncated_at, 0);
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}
