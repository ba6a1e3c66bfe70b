use super::*;
use crate::chunkenc::{encode_xor, XorChunk, XorIterator};
use crate::storage::SampleIterator;

fn chunk(n: usize, base: i64) -> XorChunk {
    let s: Vec<(i64, f64)> = (0..n as i64).map(|i| (base + i * 1000, i as f64)).collect();
    encode_xor(&s).unwrap()
}

fn rec_len(c: &XorChunk) -> usize {
    25 + crate::encoding::uvarint_len(c.bytes().len() as u64) + c.bytes().len() + 4
}

fn replay(m: &ChunkDiskMapper) -> Vec<HeadChunkMeta> {
    let mut out = Vec::new();
    m.iterate_all(|c| {
        out.push(*c);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn write_read_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    let c1 = chunk(120, 0);
    let c2 = chunk(5, 500_000);
    let r1 = m
        .write_chunk(7, 0, 119_000, Encoding::Xor, c1.bytes())
        .unwrap();
    let r2 = m
        .write_chunk_with(9, 500_000, 504_000, Encoding::Xor, true, c2.bytes())
        .unwrap();
    assert_eq!(unpack_head_chunk_ref(r1), (1, 8));
    assert_eq!(unpack_head_chunk_ref(r2), (1, (8 + rec_len(&c1)) as u32));
    // Reading back while the data is still buffered flushes and maps it.
    let (enc, ooo, b) = m.chunk(r1).unwrap();
    assert_eq!((enc, ooo), (Encoding::Xor, false));
    assert_eq!(&b[..], c1.bytes());
    let (_, ooo, b2) = m.chunk(r2).unwrap();
    assert!(ooo);
    let mut it = XorIterator::new(b2);
    assert!(it.seek(503_000));
    assert_eq!(it.at(), (503_000, 3.0));
    m.close().unwrap();
    drop(m);

    let raw = std::fs::read(dir.path().join("000001")).unwrap();
    assert_eq!(&raw[..8], &[0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0]);
    assert_eq!(&raw[8..16], &7u64.to_be_bytes());
    assert_eq!(raw[8 + 24], 1);

    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    let got = replay(&m);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        HeadChunkMeta {
            series_ref: 7,
            chunk_ref: r1,
            mint: 0,
            maxt: 119_000,
            num_samples: 120,
            encoding: Encoding::Xor,
            ooo: false
        }
    );
    assert_eq!(
        (got[1].series_ref, got[1].num_samples, got[1].ooo),
        (9, 5, true)
    );
    assert_eq!(m.chunk(r2).unwrap().2.as_ref(), c2.bytes());
    // A reopened mapper writes into a new file.
    let r3 = m.write_chunk(1, 1, 2, Encoding::Xor, c2.bytes()).unwrap();
    assert_eq!(unpack_head_chunk_ref(r3), (2, 8));
    assert_eq!(m.file_seqs(), vec![1, 2]);
}

#[test]
fn files_are_cut_at_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(100, 0);
    let rec = rec_len(&c);
    let m = ChunkDiskMapper::with_max_file_size(dir.path(), (8 + 3 * rec) as u64).unwrap();
    let refs: Vec<_> = (0..7)
        .map(|i| {
            m.write_chunk(i, i as i64, i as i64 + 99_000, Encoding::Xor, c.bytes())
                .unwrap()
        })
        .collect();
    let seqs: Vec<u32> = refs.iter().map(|&r| unpack_head_chunk_ref(r).0).collect();
    assert_eq!(seqs, vec![1, 1, 1, 2, 2, 2, 3]);
    for r in &refs {
        assert_eq!(m.chunk(*r).unwrap().2.as_ref(), c.bytes());
    }
    m.fsync().unwrap();
    drop(m);
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    let got = replay(&m);
    assert_eq!(got.iter().map(|c| c.chunk_ref).collect::<Vec<_>>(), refs);
}

#[test]
fn torn_tail_is_truncated_and_later_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(60, 0);
    let rec = rec_len(&c);
    {
        let m = ChunkDiskMapper::with_max_file_size(dir.path(), (8 + 3 * rec) as u64).unwrap();
        for i in 0..6 {
            m.write_chunk(i + 1, 0, 59_000, Encoding::Xor, c.bytes())
                .unwrap();
        }
        m.close().unwrap();
    }
    // Tear the last record of the last file.
    let p2 = dir.path().join("000002");
    let len = std::fs::metadata(&p2).unwrap().len();
    let f = OpenOptions::new().write(true).open(&p2).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    let got = replay(&m);
    assert_eq!(got.len(), 5);
    assert_eq!(
        std::fs::metadata(&p2).unwrap().len(),
        (8 + 2 * rec) as u64,
        "torn record cut off"
    );
    drop(m);

    // Corrupt a record in the middle of file 1: its tail and file 2 go.
    let p1 = dir.path().join("000001");
    let mut raw = std::fs::read(&p1).unwrap();
    raw[8 + rec + 30] ^= 0xff;
    std::fs::write(&p1, &raw).unwrap();
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    let got = replay(&m);
    assert_eq!(got.len(), 1);
    assert_eq!(m.file_seqs(), vec![1]);
    assert!(!p2.exists());
    assert_eq!(std::fs::metadata(&p1).unwrap().len(), (8 + rec) as u64);
    // Replay again: clean now.
    assert_eq!(replay(&m).len(), 1);
    // Writing continues in file 2.
    let r = m.write_chunk(1, 0, 1, Encoding::Xor, c.bytes()).unwrap();
    assert_eq!(unpack_head_chunk_ref(r).0, 2);
    m.close().unwrap();
    drop(m);
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    assert_eq!(replay(&m).len(), 2);
}

#[test]
fn zero_tail_and_empty_last_file_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(10, 0);
    {
        let m = ChunkDiskMapper::open(dir.path()).unwrap();
        m.write_chunk(3, 0, 9000, Encoding::Xor, c.bytes()).unwrap();
        m.close().unwrap();
    }
    // Preallocated zeros after the data (as Prometheus leaves), and an empty next file.
    let p1 = dir.path().join("000001");
    let mut raw = std::fs::read(&p1).unwrap();
    let data_len = raw.len();
    raw.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&p1, &raw).unwrap();
    std::fs::write(dir.path().join("000002"), []).unwrap();
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    assert_eq!(m.file_seqs(), vec![1]);
    assert_eq!(replay(&m).len(), 1);
    assert_eq!(std::fs::metadata(&p1).unwrap().len(), raw.len() as u64);
    assert!(data_len < raw.len());
}

#[test]
fn bad_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("000001"), [9u8, 9, 9, 9, 1, 0, 0, 0]).unwrap();
    std::fs::write(
        dir.path().join("000002"),
        [0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0],
    )
    .unwrap();
    let e = ChunkDiskMapper::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("magic") && e.contains("000001"), "{e}");
    std::fs::write(
        dir.path().join("000001"),
        [0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0],
    )
    .unwrap();
    std::fs::rename(dir.path().join("000002"), dir.path().join("000004")).unwrap();
    let e = ChunkDiskMapper::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("sequential"), "{e}");
}

#[test]
fn truncate_before_removes_old_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(10, 0);
    let rec = rec_len(&c);
    let m = ChunkDiskMapper::with_max_file_size(dir.path(), (8 + 2 * rec) as u64).unwrap();
    // Files: 1 = [0..100], 2 = [100..300], 3 = [300..400] (current).
    let w = |s: u64, a: i64, b: i64| m.write_chunk(s, a, b, Encoding::Xor, c.bytes()).unwrap();
    w(1, 0, 50);
    w(2, 0, 100);
    w(1, 100, 200);
    w(2, 150, 300);
    let r5 = w(1, 300, 400);
    assert_eq!(m.file_seqs(), vec![1, 2, 3]);
    assert_eq!(m.truncate_before(100).unwrap(), 0, "file 1 holds maxt 100");
    assert_eq!(m.truncate_before(101).unwrap(), 1);
    assert_eq!(m.file_seqs(), vec![2, 3]);
    assert!(!dir.path().join("000001").exists());
    // The current file is never removed, but the next write goes to a new file.
    assert_eq!(m.truncate_before(i64::MAX).unwrap(), 1);
    assert_eq!(m.file_seqs(), vec![3]);
    assert_eq!(m.chunk(r5).unwrap().2.as_ref(), c.bytes());
    let r6 = w(1, 400, 500);
    assert_eq!(unpack_head_chunk_ref(r6).0, 4);
    assert_eq!(m.truncate_files_before(4).unwrap(), 1);
    assert_eq!(m.file_seqs(), vec![4]);
    assert!(m.chunk(r5).is_err());
    m.fsync().unwrap();
    assert_eq!(m.size().unwrap(), (8 + rec) as u64);
}

#[test]
fn unreplayed_files_are_not_truncated_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(10, 0);
    {
        let m = ChunkDiskMapper::open(dir.path()).unwrap();
        m.write_chunk(1, 0, 10, Encoding::Xor, c.bytes()).unwrap();
        m.close().unwrap();
    }
    let m = ChunkDiskMapper::open(dir.path()).unwrap();
    assert_eq!(m.truncate_before(1000).unwrap(), 0);
    replay(&m);
    assert_eq!(m.truncate_before(1000).unwrap(), 1);
}

#[test]
fn garbage_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(30, 0);
    {
        let m = ChunkDiskMapper::open(dir.path()).unwrap();
        for i in 0..4 {
            m.write_chunk(i + 1, 0, 29_000, Encoding::Xor, c.bytes())
                .unwrap();
        }
        m.close().unwrap();
    }
    let p = dir.path().join("000001");
    let good = std::fs::read(&p).unwrap();
    for _ in 0..100 {
        let mut b = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(8..b.len());
            b[i] = rng.gen();
        }
        b.truncate(rng.gen_range(8..=b.len()));
        std::fs::write(&p, &b).unwrap();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap().path();
            if f != p {
                std::fs::remove_file(f).unwrap();
            }
        }
        let m = ChunkDiskMapper::open(dir.path()).unwrap();
        let metas = replay(&m);
        for meta in metas {
            let (_, _, data) = m.chunk(meta.chunk_ref).unwrap();
            let mut it = XorIterator::new(data);
            while it.next() {}
        }
        for off in (0..b.len() as u32 + 2).step_by(3) {
            let _ = m.chunk(new_head_chunk_ref(1, off));
        }
    }
}
