//! Turning a `load` series into timestamped samples: step *i* is at `i * step_ms`, `_` yields
//! nothing, `stale` keeps its staleness-marker bits, histograms are reported separately (the
//! float engine does not store them yet), and `@st` offsets become absolute start timestamps.

use super::script::{LoadCommand, LoadSeries};
use super::series::{HistogramValue, SampleValue};

/// Samples of one load series, split by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpandedSeries {
    /// `(timestamp ms, value)` in time order; stale markers have bits `0x7ff0000000000002`.
    pub floats: Vec<(i64, f64)>,
    /// `(timestamp ms, histogram)` in time order.
    pub histograms: Vec<(i64, HistogramValue)>,
    /// Absolute start timestamp (ms) per float sample, aligned with `floats`, when the series had
    /// an `@st` line (`None` where the offset was `_`).
    pub float_start_timestamps: Option<Vec<Option<i64>>>,
    /// Same for `histograms`.
    pub histogram_start_timestamps: Option<Vec<Option<i64>>>,
}

/// Expands one load series with the block's step.
pub fn expand_series(series: &LoadSeries, step_ms: i64) -> ExpandedSeries {
    let mut out = ExpandedSeries::default();
    let with_st = series.start_timestamps.as_ref();
    let mut fst = with_st.map(|_| Vec::new());
    let mut hst = with_st.map(|_| Vec::new());
    for (i, v) in series.values.iter().enumerate() {
        let ts = (i as i64).wrapping_mul(step_ms);
        let st = with_st.and_then(|s| s.get(i).copied().flatten().map(|o| ts.wrapping_add(o)));
        match v {
            SampleValue::Omitted => {}
            SampleValue::Float(f) => {
                out.floats.push((ts, *f));
                if let Some(v) = fst.as_mut() {
                    v.push(st);
                }
            }
            SampleValue::Histogram(h) => {
                out.histograms.push((ts, h.clone()));
                if let Some(v) = hst.as_mut() {
                    v.push(st);
                }
            }
        }
    }
    out.float_start_timestamps = fst;
    out.histogram_start_timestamps = hst;
    out
}

/// Float samples only (`_` skipped, histograms ignored): what a float-only storage can load.
pub fn float_samples(series: &LoadSeries, step_ms: i64) -> Vec<(i64, f64)> {
    expand_series(series, step_ms).floats
}

impl LoadCommand {
    /// Expands every series of the block, in order.
    pub fn expand(&self) -> Vec<(&LoadSeries, ExpandedSeries)> {
        self.series
            .iter()
            .map(|s| (s, expand_series(s, self.step_ms)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promqltest::script::{parse_script, CommandKind};
    use strata_tsdb::storage::STALE_NAN_BITS;

    fn load(src: &str) -> LoadCommand {
        match parse_script(src).unwrap().remove(0).kind {
            CommandKind::Load(l) => l,
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn readme_example() {
        // FORMAT.md 2.3: t=0:5, 1m:2, 2m:5, 3m:8, 4m:(nothing), 5m:stale, 6m:histogram.
        let l = load("load 1m\n  m 5 2+3x2 _ stale {{schema:1 sum:3 count:22 buckets:[5 10 7]}}\n");
        let e = &l.expand()[0].1;
        assert_eq!(
            &e.floats[..4],
            &[(0, 5.0), (60_000, 2.0), (120_000, 5.0), (180_000, 8.0)]
        );
        assert_eq!(e.floats[4].0, 300_000);
        assert_eq!(e.floats[4].1.to_bits(), STALE_NAN_BITS);
        assert_eq!(e.floats.len(), 5);
        assert_eq!(e.histograms.len(), 1);
        assert_eq!(e.histograms[0].0, 360_000);
        assert_eq!(e.histograms[0].1.base.buckets, vec![5.0, 10.0, 7.0]);
        assert!(e.float_start_timestamps.is_none());
        assert_eq!(float_samples(&l.series[0], l.step_ms).len(), 5);
    }

    #[test]
    fn start_timestamps() {
        let l = load("load 1m\n  m{a=\"b\"}@st _ -30s -1m+10sx1\n  m{a=\"b\"} 1 _ 3 4\n");
        let e = &l.expand()[0].1;
        assert_eq!(e.floats, vec![(0, 1.0), (120_000, 3.0), (180_000, 4.0)]);
        assert_eq!(
            e.float_start_timestamps,
            Some(vec![None, Some(120_000 - 60_000), Some(180_000 - 50_000)])
        );
    }
}
