use super::*;

const M: i64 = 60_000;

/// 15 one-minute samples of a counter that resets after 7.
fn counter_data() -> Vec<(i64, f64)> {
    (0..15)
        .map(|i| {
            let v = if i < 8 { i } else { i - 8 };
            (i * M, v as f64)
        })
        .collect()
}

#[test]
fn raw_to_5m_matches_hand_computed_aggregates() {
    let out = downsample_raw(&counter_data(), RES_5M).unwrap();
    assert_eq!(out.len(), 1);
    let c = &out[0];
    // Windows end at 299999 and 599999; the last is clamped to the last sample (840000).
    assert_eq!((c.mint, c.maxt), (299_999, 840_000));
    let ts = [299_999, 599_999, 840_000];
    let at = |vals: [f64; 3]| -> Vec<(i64, f64)> { ts.iter().copied().zip(vals).collect() };
    assert_eq!(
        c.chunk.samples(AggrType::Count).unwrap(),
        at([5.0, 5.0, 5.0])
    );
    // 0..4 | 5,6,7,0,1 | 2..6
    assert_eq!(
        c.chunk.samples(AggrType::Sum).unwrap(),
        at([10.0, 19.0, 20.0])
    );
    assert_eq!(c.chunk.samples(AggrType::Min).unwrap(), at([0.0, 0.0, 2.0]));
    assert_eq!(c.chunk.samples(AggrType::Max).unwrap(), at([4.0, 7.0, 6.0]));
    // First raw value, running totals with the reset added back, then the last raw value
    // repeated at the last window's timestamp.
    assert_eq!(
        c.chunk.samples(AggrType::Counter).unwrap(),
        vec![
            (0, 0.0),
            (299_999, 4.0),
            (599_999, 8.0),
            (840_000, 13.0),
            (840_000, 6.0)
        ]
    );
    assert_eq!(c.chunk.num_samples(), 3);
}

#[test]
fn stale_markers_and_nans_are_skipped() {
    let mut d = counter_data();
    d.insert(3, (3 * M - 1, strata_tsdb::storage::stale_nan()));
    d.push((20 * M, f64::NAN));
    let a = downsample_raw(&d, RES_5M).unwrap();
    let b = downsample_raw(&counter_data(), RES_5M).unwrap();
    assert_eq!(
        a[0].chunk.samples(AggrType::Sum).unwrap(),
        b[0].chunk.samples(AggrType::Sum).unwrap()
    );
}

#[test]
fn encode_decode_round_trip_and_absent_aggregates() {
    let mut parts: [Option<XorChunk>; 5] = Default::default();
    parts[AggrType::Sum as usize] =
        Some(strata_tsdb::chunkenc::encode_xor(&[(1, 1.5), (2, 2.5)]).unwrap());
    parts[AggrType::Counter as usize] =
        Some(strata_tsdb::chunkenc::encode_xor(&[(5, 7.0)]).unwrap());
    let c = AggrChunk::encode(&parts);
    // Count absent: a single zero length byte first.
    assert_eq!(c.bytes()[0], 0);
    assert!(c.get(AggrType::Count).unwrap().is_none());
    assert!(c.get(AggrType::Max).unwrap().is_none());
    assert_eq!(c.samples(AggrType::Sum).unwrap(), vec![(1, 1.5), (2, 2.5)]);
    assert_eq!(c.samples(AggrType::Counter).unwrap(), vec![(5, 7.0)]);
    let back = AggrChunk::new(c.bytes().to_vec());
    assert_eq!(
        back.get(AggrType::Sum).unwrap().unwrap().bytes(),
        parts[1].as_ref().unwrap().bytes()
    );
    // Truncated data is an error, not a panic.
    let cut = AggrChunk::new(c.bytes()[..4].to_vec());
    assert!(cut.get(AggrType::Counter).is_err());
    assert!(AggrChunk::new(vec![0xff; 3]).get(AggrType::Sum).is_err());
}

#[test]
fn counter_resets_across_chunks() {
    let first = downsample_raw(&counter_data(), RES_5M).unwrap();
    // The next chunk starts below the previous chunk's last raw value (6): a reset.
    let next: Vec<(i64, f64)> = (15..20).map(|i| (i * M, (i - 13) as f64)).collect();
    let second = downsample_raw(&next, RES_5M).unwrap();
    let chunks = vec![first[0].chunk.clone(), second[0].chunk.clone()];
    let s = counter_series(&chunks).unwrap();
    // 13 at the end of the first chunk; then +2 (reset to 2) ... +6 → 19.
    assert_eq!(s.first(), Some(&(0, 0.0)));
    assert!(s.contains(&(840_000, 13.0)), "{s:?}");
    assert_eq!(s.last().unwrap().1, 19.0, "{s:?}");
    // Monotonic.
    assert!(s.windows(2).all(|w| w[1].1 >= w[0].1 && w[1].0 > w[0].0));
}

#[test]
fn five_minutes_to_one_hour_matches_raw() {
    // Three hours of a counter at 1/min that resets every 100 minutes.
    let raw: Vec<(i64, f64)> = (0..180).map(|i| (i * M, (i % 100) as f64)).collect();
    let five = downsample_raw(&raw, RES_5M).unwrap();
    let chunks: Vec<AggrChunk> = five.iter().map(|c| c.chunk.clone()).collect();
    let hour = downsample_aggr(
        &chunks,
        five[0].mint,
        five[five.len() - 1].maxt,
        RES_5M,
        RES_1H,
    )
    .unwrap();
    let mut count = Vec::new();
    let mut sum = Vec::new();
    let mut min = Vec::new();
    let mut max = Vec::new();
    for c in &hour {
        count.extend(c.chunk.samples(AggrType::Count).unwrap());
        sum.extend(c.chunk.samples(AggrType::Sum).unwrap());
        min.extend(c.chunk.samples(AggrType::Min).unwrap());
        max.extend(c.chunk.samples(AggrType::Max).unwrap());
    }
    for h in 0..3i64 {
        let vals: Vec<f64> = raw
            .iter()
            .filter(|s| s.0 / RES_1H == h)
            .map(|s| s.1)
            .collect();
        assert_eq!(count[h as usize].1, vals.len() as f64);
        assert_eq!(sum[h as usize].1, vals.iter().sum::<f64>());
        assert_eq!(
            min[h as usize].1,
            vals.iter().cloned().fold(f64::MAX, f64::min)
        );
        assert_eq!(
            max[h as usize].1,
            vals.iter().cloned().fold(f64::MIN, f64::max)
        );
    }
    // Total increase of the raw counter with resets: 99 + 79 = 178 (0..99, then 0..79).
    let cs = counter_series(&hour.iter().map(|c| c.chunk.clone()).collect::<Vec<_>>()).unwrap();
    assert_eq!(cs.last().unwrap().1 - cs[0].1, 178.0, "{cs:?}");
}

#[test]
fn window_and_chunk_count() {
    assert_eq!(current_window(0, RES_5M), 299_999);
    assert_eq!(current_window(299_999, RES_5M), 299_999);
    assert_eq!(current_window(300_000, RES_5M), 599_999);
    // 40h of 1/min data at 5m = 480 windows → 4 chunks of ≤ 140.
    assert_eq!(target_chunk_count(0, 40 * RES_1H, M, RES_5M, 2400), 4);
}
