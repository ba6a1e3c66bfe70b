//! Reading downsampled blocks: which of Thanos's aggregates (count, sum, min, max, counter)
//! stands in for a series' raw samples, chosen by the function the selector feeds (the select
//! hint), and the decoding of a series' aggregate chunks into plain samples.
//!
//! The choice is Thanos's: `min`/`min_*` read min, `max`/`max_*` max, `count`/`count_*`
//! count, `sum_*` sum, `rate`/`increase`/`irate`/`resets` the counter (resets removed, across
//! the series' chunks), and everything else the window average sum / count.

use bytes::Bytes;
use strata_compactor::downsample::{counter_series, AggrChunk, AggrType};
use strata_tsdb::chunkenc::{decode_xor, Encoding};
use strata_tsdb::{Error, Result};

use super::block::AGGR_CHUNK_ENCODING;

/// What a downsampled series is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggrRead {
    /// One aggregate as is.
    One(AggrType),
    /// sum / count per window.
    Average,
    /// The counter aggregate with resets removed.
    Counter,
}

impl AggrRead {
    /// The aggregate for a selector fed to function `func` (`None`: a plain selector).
    pub fn for_func(func: Option<&str>) -> AggrRead {
        let f = func.unwrap_or("");
        if f == "min" || f.starts_with("min_") {
            AggrRead::One(AggrType::Min)
        } else if f == "max" || f.starts_with("max_") {
            AggrRead::One(AggrType::Max)
        } else if f == "count" || f.starts_with("count_") {
            AggrRead::One(AggrType::Count)
        } else if f.starts_with("sum_") {
            // Plain `sum` wants the series' values, which the average gives.
            AggrRead::One(AggrType::Sum)
        } else if matches!(f, "rate" | "increase" | "irate" | "resets") {
            AggrRead::Counter
        } else {
            AggrRead::Average
        }
    }
}

/// Decodes a series' chunks of a downsampled block (each `encoding byte + data`, in time
/// order) into the samples `read` stands for. A raw XOR chunk in such a block is read as it is.
pub fn decode_series(chunks: &[&Bytes], read: AggrRead) -> Result<Vec<(i64, f64)>> {
    let bad = |e: strata_compactor::Error| Error::InvalidChunk(e.to_string());
    let mut out = Vec::new();
    let mut aggrs = Vec::new();
    for b in chunks {
        match b.first() {
            Some(&AGGR_CHUNK_ENCODING) => aggrs.push(AggrChunk::new(&b[1..])),
            Some(&e) if e == Encoding::Xor.as_u8() => {
                flush(&mut aggrs, read, &mut out).map_err(bad)?;
                decode_xor(&b[1..], &mut out)?;
            }
            Some(&e) => return Err(Error::UnknownEncoding(e)),
            None => return Err(Error::InvalidChunk("empty chunk".into())),
        }
    }
    flush(&mut aggrs, read, &mut out).map_err(bad)?;
    Ok(out)
}

/// Appends the samples of the aggregate chunks gathered so far, and clears them.
fn flush(
    aggrs: &mut Vec<AggrChunk>,
    read: AggrRead,
    out: &mut Vec<(i64, f64)>,
) -> strata_compactor::Result<()> {
    match read {
        AggrRead::Counter => out.extend(counter_series(aggrs)?),
        AggrRead::One(t) => {
            for c in aggrs.iter() {
                out.extend(c.samples(t)?);
            }
        }
        AggrRead::Average => {
            for c in aggrs.iter() {
                let sums = c.samples(AggrType::Sum)?;
                let counts = c.samples(AggrType::Count)?;
                // Both are written window by window at the same timestamps.
                out.extend(
                    sums.iter()
                        .zip(&counts)
                        .filter(|(s, c)| s.0 == c.0 && c.1 > 0.0)
                        .map(|(s, c)| (s.0, s.1 / c.1)),
                );
            }
        }
    }
    aggrs.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_compactor::downsample::downsample_raw;

    fn chunk_bytes(raw: &[(i64, f64)], res: i64) -> Vec<Bytes> {
        downsample_raw(raw, res)
            .expect("downsample")
            .into_iter()
            .map(|m| {
                let mut b = vec![AGGR_CHUNK_ENCODING];
                b.extend_from_slice(m.chunk.bytes());
                Bytes::from(b)
            })
            .collect()
    }

    #[test]
    fn functions_pick_thanos_aggregates() {
        assert_eq!(AggrRead::for_func(None), AggrRead::Average);
        assert_eq!(AggrRead::for_func(Some("sum")), AggrRead::Average);
        assert_eq!(
            AggrRead::for_func(Some("sum_over_time")),
            AggrRead::One(AggrType::Sum)
        );
        assert_eq!(
            AggrRead::for_func(Some("max_over_time")),
            AggrRead::One(AggrType::Max)
        );
        assert_eq!(
            AggrRead::for_func(Some("min")),
            AggrRead::One(AggrType::Min)
        );
        assert_eq!(
            AggrRead::for_func(Some("count_over_time")),
            AggrRead::One(AggrType::Count)
        );
        assert_eq!(AggrRead::for_func(Some("rate")), AggrRead::Counter);
        assert_eq!(AggrRead::for_func(Some("avg_over_time")), AggrRead::Average);
    }

    #[test]
    fn decodes_each_aggregate() {
        const RES: i64 = 300_000;
        // A counter sampled every 15 s for 10 h, reset to 0 every 3 h.
        let raw: Vec<(i64, f64)> = (0..2400)
            .map(|i| {
                let t = 1_000 + i * 15_000;
                (t, ((i % 720) * 2) as f64)
            })
            .collect();
        // Two chunks, as a block's series would have them; the split is mid-window.
        let mut bytes = chunk_bytes(&raw[..1210], RES);
        bytes.extend(chunk_bytes(&raw[1210..], RES));
        let refs: Vec<&Bytes> = bytes.iter().collect();

        let counts = decode_series(&refs, AggrRead::One(AggrType::Count)).expect("count");
        assert_eq!(counts.iter().map(|s| s.1).sum::<f64>(), raw.len() as f64);
        let maxes = decode_series(&refs, AggrRead::One(AggrType::Max)).expect("max");
        assert_eq!(maxes.iter().map(|s| s.1).fold(f64::MIN, f64::max), 1438.0);
        let mins = decode_series(&refs, AggrRead::One(AggrType::Min)).expect("min");
        assert_eq!(mins.iter().map(|s| s.1).fold(f64::MAX, f64::min), 0.0);
        let sums = decode_series(&refs, AggrRead::One(AggrType::Sum)).expect("sum");
        let raw_sum: f64 = raw.iter().map(|s| s.1).sum();
        assert!((sums.iter().map(|s| s.1).sum::<f64>() - raw_sum).abs() < 1e-6);
        // Averages lie between the window's min and max.
        let avgs = decode_series(&refs, AggrRead::Average).expect("avg");
        assert_eq!(avgs.len(), counts.len());
        for ((a, mn), mx) in avgs.iter().zip(&mins).zip(&maxes) {
            assert!(mn.1 <= a.1 && a.1 <= mx.1, "{a:?} {mn:?} {mx:?}");
        }
        // The counter is monotonic and its total increase is the raw one with resets.
        let ctr = decode_series(&refs, AggrRead::Counter).expect("counter");
        assert!(ctr.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let mut increase = 0.0;
        for w in raw.windows(2) {
            increase += if w[1].1 >= w[0].1 {
                w[1].1 - w[0].1
            } else {
                w[1].1
            };
        }
        let got = ctr[ctr.len() - 1].1 - ctr[0].1;
        assert!((got - increase).abs() < 1e-9, "{got} vs {increase}");
    }
}
