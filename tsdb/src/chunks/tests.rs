use super::*;
use crate::chunkenc::{encode_xor, XorChunk};
use crate::storage::SampleIterator;

fn chunk(n: usize, base: i64) -> XorChunk {
    let s: Vec<(i64, f64)> = (0..n as i64)
        .map(|i| (base + i * 15_000, i as f64 * 1.5))
        .collect();
    encode_xor(&s).unwrap()
}

#[test]
fn write_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::new(dir.path()).unwrap();
    let c1 = chunk(120, 0);
    let c2 = chunk(7, 1_000_000);
    let r1 = w.write_chunk(Encoding::Xor, c1.bytes()).unwrap();
    let refs = w
        .write_chunks(&[(Encoding::Xor, c2.bytes()), (Encoding::Xor, c1.bytes())])
        .unwrap();
    w.close().unwrap();
    assert_eq!(
        r1, 8,
        "first chunk right after the header of segment index 0"
    );
    assert_eq!(refs[0], 8 + 2 + 1 + c1.bytes().len() as u64 + 4);

    let raw = std::fs::read(dir.path().join("000001")).unwrap();
    assert_eq!(&raw[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);

    let r = ChunkReader::open(dir.path()).unwrap();
    assert_eq!(r.num_segments(), 1);
    assert_eq!(r.size(), raw.len() as u64);
    let (enc, data) = r.chunk(r1).unwrap();
    assert_eq!(enc, Encoding::Xor);
    assert_eq!(data, c1.bytes());
    assert_eq!(r.chunk(refs[0]).unwrap().1, c2.bytes());
    let mut it = r.xor_iterator(refs[0]).unwrap();
    assert!(it.seek(1_000_000 + 3 * 15_000));
    assert_eq!(it.at(), (1_045_000, 4.5));

    let all: Vec<_> = r.segment_chunks(0).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].chunk_ref, r1);
    assert_eq!(all[1].chunk_ref, refs[0]);
    assert_eq!(all[2].data, c1.bytes());
}

#[test]
fn owning_handle_outlives_reader() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::new(dir.path()).unwrap();
    let c = chunk(50, 0);
    let rf = w.write_chunk(Encoding::Xor, c.bytes()).unwrap();
    w.close().unwrap();
    let r = ChunkReader::open(dir.path()).unwrap();
    let (_, b) = r.chunk_bytes(rf).unwrap();
    let mut it = r.xor_iterator(rf).unwrap();
    drop(r);
    assert_eq!(&b[..], c.bytes());
    let mut n = 0;
    while it.next() {
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn segments_are_cut_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunk(120, 0);
    let len = c.bytes().len() as u64;
    let est = 5 + 1 + len + 4; // Prometheus' per-chunk size estimate
                               // Room for exactly three estimated chunks after the header.
    let seg = 8 + 3 * est;
    let mut w = ChunkWriter::with_segment_size(dir.path(), seg).unwrap();
    // A batch of 5 chunks: the first three fit, then a cut.
    let batch: Vec<_> = (0..5).map(|_| (Encoding::Xor, c.bytes())).collect();
    let refs = w.write_chunks(&batch).unwrap();
    let segs: Vec<u32> = refs.iter().map(|&r| unpack_chunk_ref(r).0).collect();
    assert_eq!(segs, vec![0, 0, 0, 1, 1]);
    // Segment 1 holds 2 chunks (actual size 2+1+len+4 each, 3 bytes under the estimate): the
    // next batch's first chunk still fits by the estimate, its second does not.
    let refs2 = w.write_chunks(&batch[..2]).unwrap();
    assert_eq!(unpack_chunk_ref(refs2[0]).0, 1);
    assert_eq!(unpack_chunk_ref(refs2[1]), (2, 8));
    // A single chunk bigger than a segment still goes somewhere (its own segment).
    let big = vec![0u8; seg as usize * 2];
    let r = w.write_chunk(Encoding::Xor, &big).unwrap();
    assert_eq!(unpack_chunk_ref(r), (3, 8));
    w.close().unwrap();

    let names: Vec<u64> = sequence_files(dir.path())
        .unwrap()
        .iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(names, vec![1, 2, 3, 4]);
    let r = ChunkReader::open(dir.path()).unwrap();
    for rf in refs.iter().chain(&refs2) {
        assert_eq!(r.chunk(*rf).unwrap().1, c.bytes());
    }
    let total: usize = (0..r.num_segments())
        .map(|i| r.segment_chunks(i).unwrap().count())
        .sum();
    assert_eq!(total, 8);
}

#[test]
fn corruption_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::new(dir.path()).unwrap();
    let c = chunk(30, 0);
    let r1 = w.write_chunk(Encoding::Xor, c.bytes()).unwrap();
    let r2 = w.write_chunk(Encoding::Xor, c.bytes()).unwrap();
    w.close().unwrap();
    let path = dir.path().join("000001");
    let mut raw = std::fs::read(&path).unwrap();
    let flip = r2 as usize + 5;
    raw[flip] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();

    let r = ChunkReader::open(dir.path()).unwrap();
    assert!(r.chunk(r1).is_ok());
    let e = r.chunk(r2).unwrap_err().to_string();
    assert!(
        e.contains("000001") && e.contains(&format!("offset {r2}")),
        "{e}"
    );
    assert!(e.contains("checksum"), "{e}");
    let results: Vec<_> = r.segment_chunks(0).unwrap().collect();
    assert_eq!(results.len(), 2);
    assert!(results[1].is_err());
    // Out-of-range references.
    assert!(r.chunk(new_chunk_ref(5, 8)).is_err());
    assert!(r.chunk(new_chunk_ref(0, 3)).is_err());
    assert!(r.chunk(new_chunk_ref(0, raw.len() as u32 + 10)).is_err());
    drop(r);

    // Truncated file: the last chunk is reported as truncated.
    std::fs::write(&path, &raw[..raw.len() - 3]).unwrap();
    let r = ChunkReader::open(dir.path()).unwrap();
    let e = r.chunk(r2).unwrap_err().to_string();
    assert!(e.contains("needs"), "{e}");
    drop(r);

    // Bad magic.
    raw[0] = 0;
    std::fs::write(&path, &raw).unwrap();
    let e = ChunkReader::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("magic"), "{e}");
    std::fs::write(&path, [1u8, 2]).unwrap();
    assert!(ChunkReader::open(dir.path()).is_err());
}

#[test]
fn unknown_encoding_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let mut b = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
    let data = [0u8, 0];
    b.push(2);
    b.push(9);
    b.extend_from_slice(&data);
    let crc = crate::encoding::crc32(&[9, 0, 0]);
    b.extend_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.path().join("000001"), &b).unwrap();
    let r = ChunkReader::open(dir.path()).unwrap();
    let e = r.chunk(8).unwrap_err().to_string();
    assert!(e.contains("unknown chunk encoding 9"), "{e}");
}

#[test]
fn garbage_segments_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::new(dir.path()).unwrap();
    let c = chunk(40, 0);
    for _ in 0..5 {
        w.write_chunk(Encoding::Xor, c.bytes()).unwrap();
    }
    w.close().unwrap();
    let path = dir.path().join("000001");
    let good = std::fs::read(&path).unwrap();
    for _ in 0..200 {
        let mut b = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(8..b.len());
            b[i] = rng.gen();
        }
        b.truncate(rng.gen_range(8..=b.len()));
        std::fs::write(&path, &b).unwrap();
        let r = ChunkReader::open(dir.path()).unwrap();
        for ch in r.segment_chunks(0).unwrap().flatten() {
            let mut it = crate::chunkenc::XorIterator::new(ch.data);
            while it.next() {}
        }
        for off in 0..b.len() as u32 + 2 {
            let _ = r.chunk(new_chunk_ref(0, off));
        }
    }
}
