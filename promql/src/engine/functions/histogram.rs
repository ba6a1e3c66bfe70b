//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` on classic
//! histograms: series grouped by all labels but `le`, whose value is the bucket's upper bound.
//! Buckets are sorted, duplicates coalesced, tiny float deltas ignored and monotonicity forced
//! as Prometheus does (`promql/quantile.go`).

use std::collections::HashMap;

use strata_tsdb::Labels;

use super::super::eval::{drop_name, Ctx, Evaluator, IVal};
use super::super::value::Sample;
use super::{annotate, go_g, metric_name, scalar_arg, string_arg, vector_arg, MonotonicityInfo};
use crate::error::Result;
use crate::parser::ast::PosRange;
use crate::parser::Call;

/// Relative difference between adjacent buckets treated as float noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

const MONOTONICITY_INFO: &str = "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)";

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// The result of [`bucket_quantile`] with what had to be fixed.
#[derive(Debug, PartialEq)]
pub(crate) struct QuantileResult {
    pub value: f64,
    pub forced_monotonic: bool,
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
}

/// Go's `strconv.ParseFloat` for the `le` label (Rust's parser accepts the same spellings of
/// infinities and NaN, case-insensitively).
fn parse_le(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match out.last_mut() {
            Some(l) if l.upper == b.upper => l.count += b.count,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// `almost.Equal` of Prometheus's util.
fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Forces the counts to be non-decreasing; returns (forced, min bucket, max bucket, max diff).
fn ensure_monotonic(buckets: &mut [Bucket]) -> (bool, f64, f64, f64) {
    let (mut forced, mut min_b, mut max_b, mut max_diff) =
        (false, f64::INFINITY, f64::NEG_INFINITY, 0.0);
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            min_b = min_b.min(b.upper);
            max_b = max_b.max(b.upper);
            if prev - curr > max_diff {
                max_diff = prev - curr;
            }
            continue;
        }
        prev = curr;
    }
    (forced, min_b, max_b, max_diff)
}

/// Prometheus's `BucketQuantile`: the q-quantile by linear interpolation within the bucket.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> QuantileResult {
    let mut r = QuantileResult {
        value: f64::NAN,
        forced_monotonic: false,
        min_bucket: f64::INFINITY,
        max_bucket: f64::NEG_INFINITY,
        max_diff: 0.0,
    };
    if q.is_nan() {
        return r;
    }
    if q < 0.0 {
        r.value = f64::NEG_INFINITY;
        return r;
    }
    if q > 1.0 {
        r.value = f64::INFINITY;
        return r;
    }
    sort_and_coalesce(&mut buckets);
    if buckets.last().map(|b| b.upper) != Some(f64::INFINITY) {
        return r;
    }
    let (forced, min_b, max_b, max_diff) = ensure_monotonic(&mut buckets);
    r.forced_monotonic = forced;
    r.min_bucket = min_b;
    r.max_bucket = max_b;
    r.max_diff = max_diff;
    let n = buckets.len();
    if n < 2 {
        return r;
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return r;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    r.value = if b == n - 1 {
        buckets[n - 2].upper
    } else if b == 0 && buckets[0].upper <= 0.0 {
        buckets[0].upper
    } else {
        let mut start = 0.0;
        let end = buckets[b].upper;
        let mut count = buckets[b].count;
        if b > 0 {
            start = buckets[b - 1].upper;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    r
}

/// Prometheus's `BucketFraction`: the estimated fraction of observations in
/// `[lower, upper]`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    sort_and_coalesce(&mut buckets);
    if buckets.last().map(|b| b.upper) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (k, b) in buckets.iter().enumerate() {
        if k > 0 {
            lower_bound = buckets[k - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| -> f64 {
            if lower_bound == f64::NEG_INFINITY {
                return b.count;
            }
            rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Groups classic-histogram bucket samples by their labels without `le` (in first-seen
/// order), warning about missing or malformed `le` labels.
fn group_buckets(ev: &mut Evaluator, v: Vec<Sample>, pos: PosRange) -> Vec<(Labels, Vec<Bucket>)> {
    let delayed = ev.opts.delayed_name_removal;
    let mut order: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let le = s.metric.get_or_empty("le");
        let Some(upper) = parse_le(le) else {
            let mut raw = format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?}",
                le
            );
            let name = metric_name(&s.metric);
            if delayed && !name.is_empty() {
                raw.push_str(&format!(" for metric name {name:?}"));
            }
            annotate(ev, true, &raw, pos);
            continue;
        };
        let key = s.metric.without(&["le"]);
        let k = match index.get(&key) {
            Some(&k) => k,
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, Vec::new()));
                order.len() - 1
            }
        };
        order[k].1.push(Bucket { upper, count: s.f });
    }
    order
}

fn validate_quantile(ev: &mut Evaluator, q: f64, pos: PosRange) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        annotate(
            ev,
            true,
            &format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                go_g(q)
            ),
            pos,
        );
    }
}

fn note_monotonicity(
    ev: &mut Evaluator,
    metric: &Labels,
    pos: PosRange,
    t: i64,
    r: &QuantileResult,
) {
    let mut raw = MONOTONICITY_INFO.to_string();
    let name = metric_name(metric);
    if ev.opts.delayed_name_removal && !name.is_empty() {
        raw.push_str(&format!(" for metric name {name:?}"));
    }
    let st = &mut ev.fn_state.monotonicity;
    if let Some(m) = st.iter_mut().find(|m| m.raw == raw) {
        m.min_ts = m.min_ts.min(t);
        m.max_ts = m.max_ts.max(t);
        m.min_bucket = m.min_bucket.min(r.min_bucket);
        m.max_bucket = m.max_bucket.max(r.max_bucket);
        m.max_diff = m.max_diff.max(r.max_diff);
        m.count += 1;
        return;
    }
    st.push(MonotonicityInfo {
        raw,
        pos,
        min_ts: t,
        max_ts: t,
        min_bucket: r.min_bucket,
        max_bucket: r.max_bucket,
        max_diff: r.max_diff,
        count: 1,
    });
}

/// `labels.FormatOpenMetricsFloat`.
fn openmetrics_float(f: f64) -> String {
    if f == 1.0 {
        return "1.0".into();
    }
    if f == 0.0 {
        return "0.0".into();
    }
    if f == -1.0 {
        return "-1.0".into();
    }
    let s = go_g(f);
    if s.contains(['e', '.']) || !f.is_finite() {
        s
    } else {
        s + ".0"
    }
}

pub(super) fn call(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let t = ctx.ts[i];
    match c.func.name {
        "histogram_quantile" => {
            let q = scalar_arg(ev, &c.args[0], ctx, i)?;
            let v = vector_arg(ev, &c.args[1], ctx, i)?;
            validate_quantile(ev, q, c.args[0].pos_range());
            let pos = c.args[1].pos_range();
            let mut out = Vec::new();
            for (metric, buckets) in group_buckets(ev, v, pos) {
                let r = bucket_quantile(q, buckets);
                if r.forced_monotonic {
                    note_monotonicity(ev, &metric, pos, t, &r);
                }
                out.push(Sample {
                    metric: drop_name(&metric),
                    t,
                    f: r.value,
                });
            }
            Ok(IVal::Vector(out))
        }
        "histogram_quantiles" => {
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            let label = string_arg(ev, &c.args[1], ctx, i)?;
            let mut qs = Vec::new();
            for a in &c.args[2..] {
                let q = scalar_arg(ev, a, ctx, i)?;
                validate_quantile(ev, q, a.pos_range());
                qs.push(q);
            }
            let pos = c.args[0].pos_range();
            let groups = group_buckets(ev, v, pos);
            let mut out = Vec::new();
            for &q in &qs {
                for (metric, buckets) in &groups {
                    let r = bucket_quantile(q, buckets.clone());
                    if r.forced_monotonic {
                        note_monotonicity(ev, metric, pos, t, &r);
                    }
                    let mut b = drop_name(metric).builder();
                    b.set(&label, &openmetrics_float(q));
                    out.push(Sample {
                        metric: b.build(),
                        t,
                        f: r.value,
                    });
                }
            }
            Ok(IVal::Vector(out))
        }
        _ => {
            // histogram_fraction(lower, upper, v)
            let lower = scalar_arg(ev, &c.args[0], ctx, i)?;
            let upper = scalar_arg(ev, &c.args[1], ctx, i)?;
            let v = vector_arg(ev, &c.args[2], ctx, i)?;
            let pos = c.args[2].pos_range();
            let out = group_buckets(ev, v, pos)
                .into_iter()
                .map(|(metric, buckets)| Sample {
                    metric: drop_name(&metric),
                    t,
                    f: bucket_fraction(lower, upper, buckets),
                })
                .collect();
            Ok(IVal::Vector(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates_within_bucket() {
        let buckets = b(&[(0.1, 10.0), (0.2, 30.0), (f64::INFINITY, 40.0)]);
        let r = bucket_quantile(0.5, buckets.clone());
        // rank 20 lies in (0.1, 0.2]: 0.1 + 0.1 * (10 / 20).
        assert!((r.value - 0.15).abs() < 1e-12);
        assert!(!r.forced_monotonic);
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(bucket_quantile(0.9, buckets.clone()).value, 0.2);
        assert_eq!(
            bucket_quantile(-1.0, buckets.clone()).value,
            f64::NEG_INFINITY
        );
        assert_eq!(bucket_quantile(2.0, buckets).value, f64::INFINITY);
        // No +Inf bucket: NaN.
        assert!(bucket_quantile(0.5, b(&[(1.0, 1.0)])).value.is_nan());
    }

    #[test]
    fn quantile_forces_monotonicity() {
        // Prometheus's histograms.test "nonmonotonic_bucket" at 50m (x10 each).
        let buckets = b(&[
            (0.1, 20.0),
            (1.0, 10.0),
            (10.0, 50.0),
            (100.0, 40.0),
            (1000.0, 90.0),
            (f64::INFINITY, 80.0),
        ]);
        let r = bucket_quantile(0.01, buckets.clone());
        assert!((r.value - 0.0045).abs() < 1e-12);
        assert!(r.forced_monotonic);
        assert_eq!(
            (r.min_bucket, r.max_bucket, r.max_diff),
            (1.0, f64::INFINITY, 10.0)
        );
        assert!((bucket_quantile(0.5, buckets.clone()).value - 8.5).abs() < 1e-12);
        assert!((bucket_quantile(0.99, buckets).value - 979.75).abs() < 1e-9);
    }

    #[test]
    fn quantile_ignores_float_noise() {
        let buckets = b(&[(1.0, 10.0), (2.0, 10.0 - 1e-14), (f64::INFINITY, 20.0)]);
        assert!(!bucket_quantile(0.5, buckets).forced_monotonic);
    }

    #[test]
    fn fraction_of_classic_buckets() {
        let buckets = b(&[(1.0, 10.0), (2.0, 30.0), (f64::INFINITY, 40.0)]);
        assert_eq!(bucket_fraction(0.0, 1.0, buckets.clone()), 0.25);
        assert_eq!(bucket_fraction(1.0, 1.5, buckets.clone()), 0.25);
        assert_eq!(bucket_fraction(2.0, 1.0, buckets.clone()), 0.0);
        assert_eq!(
            bucket_fraction(f64::NEG_INFINITY, f64::INFINITY, buckets),
            1.0
        );
    }

    #[test]
    fn openmetrics_floats() {
        assert_eq!(openmetrics_float(1.0), "1.0");
        assert_eq!(openmetrics_float(0.5), "0.5");
        assert_eq!(openmetrics_float(2.0), "2.0");
        assert_eq!(openmetrics_float(f64::NAN), "NaN");
    }
}
