//! Functions of a range vector: the `*_over_time` family, `rate`/`increase`/`delta` with
//! Prometheus's extrapolation (and the `anchored`/`smoothed` variants), `irate`/`idelta`,
//! `resets`, `changes`, `deriv`/`predict_linear` (least squares with Kahan sums) and
//! `double_exponential_smoothing`.

use super::super::aggregate::{kahan_inc, quantile};
use super::super::eval::Memo;
use super::super::eval::{drop_name, Ctx, Evaluator, IVal};
use super::super::value::Sample;
use super::{absent_labels, annotate, go_g, metric_name, scalar_arg};
use crate::error::{Error, Result};
use crate::parser::{Call, Expr, ValueType};

/// Where and how the range argument was selected.
struct RangeInfo {
    /// Start (exclusive) and end (inclusive) of the range at this step, ms.
    start: i64,
    end: i64,
    /// The range, seconds.
    secs: f64,
    anchored: bool,
    smoothed: bool,
}

const ANCHORED_SAFE: &[&str] = &["changes", "delta", "increase", "rate", "resets"];
const SMOOTHED_SAFE: &[&str] = &["delta", "increase", "rate"];

pub(super) fn call(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let name = c.func.name;
    let t = ctx.ts[i];
    let Some(mi) = c
        .func
        .arg_types
        .iter()
        .position(|a| *a == ValueType::Matrix)
    else {
        return Err(Error::Eval(format!(
            "internal: {name} has no range argument"
        )));
    };
    let marg = c.args[mi].unparen();
    // Windows first (as Prometheus evaluates a subquery argument first), then the scalars.
    let windows = match ev.eval_at(marg, ctx, i)? {
        IVal::Matrix(m) => m,
        other => {
            return Err(Error::Eval(format!(
                "expected range vector argument, got {}",
                other.type_name()
            )))
        }
    };
    let mut scalars = Vec::new();
    for (k, a) in c.args.iter().enumerate() {
        if k != mi {
            scalars.push(scalar_arg(ev, a, ctx, i)?);
        }
    }
    let info = match marg {
        Expr::MatrixSelector(ms) => {
            let vs = &ms.vector;
            let range = ev.duration_ms(&ms.range, false)?;
            let end = ev.ref_time(vs.at, vs.offset.as_ref(), t)?;
            if vs.anchored && !ANCHORED_SAFE.contains(&name) {
                return Err(Error::Eval(format!(
                    "anchored modifier can only be used with: {} - not with {name}",
                    ANCHORED_SAFE.join(", ")
                )));
            }
            if vs.smoothed && !SMOOTHED_SAFE.contains(&name) {
                return Err(Error::Eval(format!(
                    "smoothed modifier can only be used with: {} - not with {name}",
                    SMOOTHED_SAFE.join(", ")
                )));
            }
            RangeInfo {
                start: end - range,
                end,
                secs: range as f64 / 1000.0,
                anchored: vs.anchored,
                smoothed: vs.smoothed,
            }
        }
        Expr::Subquery(sq) => {
            let range = ev.duration_ms(&sq.range, false)?;
            let end = ev.ref_time(sq.at, sq.offset.as_ref(), t)?;
            RangeInfo {
                start: end - range,
                end,
                secs: range as f64 / 1000.0,
                anchored: false,
                smoothed: false,
            }
        }
        _ => {
            return Err(Error::Eval(format!(
                "ranges only allowed for vector selectors, got {name} argument"
            )))
        }
    };
    let pos = c.args[mi].pos_range();

    if name == "absent_over_time" {
        if !windows.is_empty() {
            return Ok(IVal::Vector(Vec::new()));
        }
        return Ok(IVal::Vector(vec![Sample {
            metric: absent_labels(marg),
            t,
            f: 1.0,
        }]));
    }
    if name == "double_exponential_smoothing" && !windows.is_empty() {
        let (sf, tf) = (scalars[0], scalars[1]);
        if sf <= 0.0 || sf >= 1.0 {
            return Err(Error::Eval(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
            )));
        }
        if tf <= 0.0 || tf >= 1.0 {
            return Err(Error::Eval(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
            )));
        }
    }
    if name == "quantile_over_time" && !windows.is_empty() {
        let q = scalars[0];
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

    let keep_name = name == "first_over_time" || name == "last_over_time";
    let mut out = Vec::with_capacity(windows.len());
    for w in &windows {
        let Some(f) = apply(name, w.samples(), &scalars, &info, t) else {
            continue;
        };
        if name == "rate" || name == "increase" {
            let n = metric_name(&w.metric);
            if !n.is_empty()
                && !n.ends_with("_total")
                && !n.ends_with("_sum")
                && !n.ends_with("_count")
                && !n.ends_with("_bucket")
            {
                let raw = format!(
                    "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {:?}",
                    n
                );
                annotate(ev, false, &raw, pos);
            }
        }
        out.push(Sample {
            metric: if keep_name {
                w.metric.clone()
            } else {
                drop_name(&w.metric)
            },
            t,
            f,
        });
    }
    Ok(IVal::Vector(out))
}

/// Series-at-a-time evaluation of a range function whose range argument is a matrix selector
/// (Prometheus's `rangeEval` fast path): every loaded series is walked once across all steps of
/// `ctx`, its output labels computed once. `None` when the call does not qualify (other
/// arguments not number literals, a single step, functions whose result depends on all
/// series at a step, like `absent_over_time`).
pub(crate) fn call_all_steps(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Option<Memo>> {
    let name = c.func.name;
    if ctx.ts.len() < 2
        || matches!(
            name,
            "absent_over_time" | "double_exponential_smoothing" | "quantile_over_time"
        )
    {
        return Ok(None);
    }
    let Some(mi) = c
        .func
        .arg_types
        .iter()
        .position(|a| *a == ValueType::Matrix)
    else {
        return Ok(None);
    };
    let Expr::MatrixSelector(ms) = c.args[mi].unparen() else {
        return Ok(None);
    };
    let mut scalars = Vec::new();
    for (k, a) in c.args.iter().enumerate() {
        if k != mi {
            match a.unparen() {
                Expr::NumberLiteral { val, .. } => scalars.push(*val),
                _ => return Ok(None),
            }
        }
    }
    // Loading first, then the modifier checks, as the per-step path does.
    let (mut loaded, refs) = ev.load_matrix_all_steps(ms, ctx)?;
    let vs = &ms.vector;
    if vs.anchored && !ANCHORED_SAFE.contains(&name) {
        return Err(Error::Eval(format!(
            "anchored modifier can only be used with: {} - not with {name}",
            ANCHORED_SAFE.join(", ")
        )));
    }
    if vs.smoothed && !SMOOTHED_SAFE.contains(&name) {
        return Err(Error::Eval(format!(
            "smoothed modifier can only be used with: {} - not with {name}",
            SMOOTHED_SAFE.join(", ")
        )));
    }
    let range = ev.duration_ms(&ms.range, false)?;
    let lb = ev.opts.lookback_delta;
    let (back, ahead) = match (vs.anchored, vs.smoothed) {
        (true, _) => (lb, 0),
        (_, true) => (lb, lb),
        _ => (0, 0),
    };
    let secs = range as f64 / 1000.0;
    let pos = c.args[mi].pos_range();
    let keep_name = name == "first_over_time" || name == "last_over_time";
    let counter_check = name == "rate" || name == "increase";
    let mut memo = Memo::default();
    for s in loaded.iter_mut() {
        let mut points = Vec::new();
        for (k, &r) in refs.iter().enumerate() {
            let (lo, hi) = s.window(r.saturating_add(ahead), range + back + ahead);
            if hi <= lo {
                continue;
            }
            let info = RangeInfo {
                start: r - range,
                end: r,
                secs,
                anchored: vs.anchored,
                smoothed: vs.smoothed,
            };
            if let Some(f) = apply(name, &s.data[lo..hi], &scalars, &info, ctx.ts[k]) {
                points.push((k as u32, f));
            }
        }
        if points.is_empty() {
            continue;
        }
        if counter_check {
            let n = metric_name(&s.metric);
            if !n.is_empty()
                && !n.ends_with("_total")
                && !n.ends_with("_sum")
                && !n.ends_with("_count")
                && !n.ends_with("_bucket")
            {
                let raw = format!(
                    "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {:?}",
                    n
                );
                annotate(ev, false, &raw, pos);
            }
        }
        let metric = if keep_name {
            s.metric.clone()
        } else {
            drop_name(&s.metric)
        };
        memo.push(metric, points);
    }
    memo.finish();
    Ok(Some(memo))
}

/// The function's value for one window, `None` for no output.
fn apply(name: &str, s: &[(i64, f64)], scalars: &[f64], info: &RangeInfo, t: i64) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    Some(match name {
        "rate" | "increase" | "delta" => {
            let counter = name != "delta";
            let is_rate = name == "rate";
            if info.anchored || info.smoothed {
                return extended_rate(s, info, counter, is_rate);
            }
            return extrapolated_rate(s, info.start, info.end, info.secs, counter, is_rate);
        }
        "irate" | "idelta" => return instant_value(s, name == "irate"),
        "avg_over_time" => avg_over_time(s),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for &(_, v) in s {
                (sum, c) = kahan_inc(v, sum, c);
            }
            if sum.is_infinite() {
                sum
            } else {
                sum + c
            }
        }
        "count_over_time" => s.len() as f64,
        "present_over_time" => 1.0,
        "first_over_time" => s[0].1,
        "last_over_time" => s[s.len() - 1].1,
        "ts_of_first_over_time" => s[0].0 as f64 / 1000.0,
        "ts_of_last_over_time" => s[s.len() - 1].0 as f64 / 1000.0,
        "max_over_time" => compare_over_time(s, |cur, m| cur > m || m.is_nan()).1,
        "min_over_time" => compare_over_time(s, |cur, m| cur < m || m.is_nan()).1,
        "ts_of_max_over_time" => {
            compare_over_time(s, |cur, m| cur >= m || m.is_nan()).0 as f64 / 1000.0
        }
        "ts_of_min_over_time" => {
            compare_over_time(s, |cur, m| cur <= m || m.is_nan()).0 as f64 / 1000.0
        }
        "stddev_over_time" => variance(s).sqrt(),
        "stdvar_over_time" => variance(s),
        "quantile_over_time" => {
            let mut vals: Vec<f64> = s.iter().map(|p| p.1).collect();
            quantile(scalars[0], &mut vals)
        }
        "mad_over_time" => {
            if s.iter().any(|p| p.1.is_nan()) {
                return Some(f64::NAN);
            }
            let mut vals: Vec<f64> = s.iter().map(|p| p.1).collect();
            let median = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
            quantile(0.5, &mut dev)
        }
        "changes" | "resets" => {
            let first = if info.anchored {
                anchored_first(s, info.start)?
            } else {
                0
            };
            let s = &s[first..];
            let n = s
                .windows(2)
                .filter(|p| {
                    let (prev, cur) = (p[0].1, p[1].1);
                    if name == "changes" {
                        cur != prev && !(cur.is_nan() && prev.is_nan())
                    } else {
                        cur < prev
                    }
                })
                .count();
            n as f64
        }
        "deriv" => {
            if s.len() < 2 {
                return None;
            }
            linear_regression(s, s[0].0).0
        }
        "predict_linear" => {
            if s.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(s, t);
            slope * scalars[0] + intercept
        }
        "double_exponential_smoothing" => {
            return double_exponential_smoothing(s, scalars[0], scalars[1])
        }
        _ => return None,
    })
}

/// Index of the anchor sample of an `anchored` window: the last sample at or before the
/// range start, or 0 if there is none; `None` when no sample lies after the range start.
fn anchored_first(s: &[(i64, f64)], range_start: i64) -> Option<usize> {
    let le = s.partition_point(|p| p.0 <= range_start);
    if le >= s.len() {
        return None;
    }
    Some(le.saturating_sub(1))
}

/// `(timestamp, value)` of the sample selected by `better(candidate, current)`, scanning in
/// time order starting with the first sample.
fn compare_over_time(s: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let (mut ts, mut m) = s[0];
    for &(t, v) in s {
        if better(v, m) {
            m = v;
            ts = t;
        }
    }
    (ts, m)
}

/// Prometheus's `avg_over_time`: Kahan-compensated direct mean, switching to an incremental
/// mean if the sum overflows.
fn avg_over_time(s: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (s[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (k, &(_, f)) in s[1..].iter().enumerate() {
        count = (k + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance with Kahan-compensated Welford updates (`stdvar_over_time`).
fn variance(s: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in s {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `rate`, `increase` and `delta`: the change over the window extrapolated towards the range
/// boundaries (not beyond 1.1× the average sample interval, and for counters not below
/// zero), per second for `rate`.
pub(crate) fn extrapolated_rate(
    s: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let n1 = s.len() - 1;
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[n1];
    let mut result = last_v - first_v;
    if is_counter {
        for p in s.windows(2) {
            if p[1].1 < p[0].1 {
                result += p[0].1;
            }
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n1 as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= range_secs;
    }
    Some(result * factor)
}

fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, is_counter: bool) -> f64 {
    let (mut y1, y2) = (p1.1, p2.1);
    if is_counter && y2 < y1 {
        y1 = 0.0;
    }
    y1 + (y2 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// `rate`/`increase`/`delta` of an `anchored` or `smoothed` range (Prometheus's
/// `extendedRate`): the window includes samples before (and, smoothed, after) the range.
fn extended_rate(
    f: &[(i64, f64)],
    info: &RangeInfo,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let (range_start, range_end) = (info.start, info.end);
    let mut last = f.len() - 1;
    let first = f[..last]
        .partition_point(|p| p.0 <= range_start)
        .saturating_sub(1);
    if info.smoothed {
        last = f[..last].partition_point(|p| p.0 < range_end);
    }
    if f[last].0 <= range_start {
        return None;
    }
    if info.smoothed && f[first].0 > range_end {
        return None;
    }
    let left = if info.smoothed && f[first].0 < range_start {
        interpolate(f[first], f[first + 1], range_start, is_counter)
    } else {
        f[first].1
    };
    let right = if info.smoothed && last > 0 && f[last].0 > range_end {
        interpolate(f[last - 1], f[last], range_end, is_counter)
    } else {
        f[last].1
    };
    let mut result = right - left;
    if is_counter {
        let mut fi = first;
        let mut li = last as i64;
        if f[fi].0 <= range_start {
            fi += 1;
        }
        if f[last].0 >= range_end {
            li -= 1;
        }
        let inner: &[(i64, f64)] = if li >= fi as i64 {
            &f[fi..=li as usize]
        } else {
            &[]
        };
        let mut correction = 0.0;
        let mut prev = left;
        for p in inner {
            if p.1 < prev {
                correction += prev;
            }
            prev = p.1;
        }
        if right < prev {
            correction += prev;
        }
        result += correction;
    }
    if is_rate {
        result /= info.secs;
    }
    Some(result)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_value(s: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (t0, v0) = s[s.len() - 2];
    let (t1, v1) = s[s.len() - 1];
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let mut r = v1;
    if !is_rate || v1 >= v0 || v1.is_nan() || v0.is_nan() {
        r = v1 - v0;
    }
    if is_rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

/// Least-squares fit of the samples with x in seconds relative to `intercept_time`:
/// `(slope, intercept at intercept_time)`.
pub(crate) fn linear_regression(s: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = s[0].1;
    let mut const_y = true;
    for (k, &(t, v)) in s.iter().enumerate() {
        if const_y && k > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Holt's linear (double exponential) smoothing with smoothing factor `sf` and trend factor
/// `tf`; needs two samples.
fn double_exponential_smoothing(s: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let trend = |k: usize, s0: f64, s1: f64, b: f64| -> f64 {
        if k == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let mut s0 = 0.0;
    let mut s1 = s[0].1;
    let mut b = s[1].1 - s[0].1;
    for (k, &(_, v)) in s.iter().enumerate().skip(1) {
        let x = sf * v;
        b = trend(k - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn rate_extrapolates_to_range_boundaries() {
        // Samples every 60s from 0..=240 (values 0..=40): range (0, 300] at t=300.
        let s: Vec<(i64, f64)> = (1..=4).map(|k| (k * 60_000, (k * 10) as f64)).collect();
        // increase: 30 over 180s sampled; to_start 60 (< 66 threshold) but the zero point is
        // at 10/30*180 = 60s -> 60; to_end 60 -> factor (180+60+60)/180.
        let inc = extrapolated_rate(&s, 0, 300_000, 300.0, true, false).unwrap();
        assert!(close(inc, 30.0 * 300.0 / 180.0));
        let r = extrapolated_rate(&s, 0, 300_000, 300.0, true, true).unwrap();
        assert!(close(r, inc / 300.0));
    }

    #[test]
    fn rate_counter_zero_point_and_resets() {
        // Counter starting near zero: extrapolation to the left stops at the zero point.
        let s = vec![(100_000, 1.0), (160_000, 7.0), (220_000, 13.0)];
        // to_start = 100s >= 66 -> 30; zero point = 120 * 1/12 = 10s -> 10; to_end = 80 -> 30.
        let inc = extrapolated_rate(&s, 0, 300_000, 300.0, true, false).unwrap();
        assert!(close(inc, 12.0 * (120.0 + 10.0 + 30.0) / 120.0));
        // delta does not apply the zero-point rule.
        let d = extrapolated_rate(&s, 0, 300_000, 300.0, false, false).unwrap();
        assert!(close(d, 12.0 * (120.0 + 30.0 + 30.0) / 120.0));
        // A reset adds the value before it.
        let s = vec![(0, 10.0), (60_000, 20.0), (120_000, 5.0)];
        let inc = extrapolated_rate(&s, -1, 120_000, 120.0, true, false).unwrap();
        // result = 5 - 10 + 20 = 15; to_start = 0.001 -> zero point 120*10/15=80 not smaller.
        assert!(close(inc, 15.0 * (120.0 + 0.001) / 120.0));
        assert!(extrapolated_rate(&s[..1], 0, 1, 1.0, true, true).is_none());
    }

    #[test]
    fn irate_and_idelta() {
        let s = vec![(0, 5.0), (10_000, 10.0), (20_000, 4.0)];
        assert_eq!(instant_value(&s, true), Some(0.4)); // reset: 4 / 10s
        assert_eq!(instant_value(&s, false), Some(-6.0));
    }

    #[test]
    fn regression_with_intercept_time() {
        let s: Vec<(i64, f64)> = (0..10).map(|k| (k * 1000, 2.0 * k as f64 + 1.0)).collect();
        let (slope, icpt) = linear_regression(&s, 0);
        assert!(close(slope, 2.0) && close(icpt, 1.0));
        let (slope, icpt) = linear_regression(&s, 20_000);
        assert!(close(slope, 2.0) && close(icpt, 41.0));
        let c = vec![(0, 3.0), (1000, 3.0)];
        assert_eq!(linear_regression(&c, 0), (0.0, 3.0));
        let inf = vec![(0, f64::INFINITY), (1000, f64::INFINITY)];
        assert!(linear_regression(&inf, 0).0.is_nan());
    }

    #[test]
    fn holt_winters() {
        // Prometheus's functions.test: values 0,10,...,100 with sf=0.01, tf=0.1.
        let s: Vec<(i64, f64)> = (0..=10).map(|k| (k * 60_000, 10.0 * k as f64)).collect();
        let v = double_exponential_smoothing(&s, 0.5, 0.5).unwrap();
        // A perfectly linear series is reproduced exactly.
        assert!(close(v, 100.0));
        assert!(double_exponential_smoothing(&s[..1], 0.5, 0.5).is_none());
    }

    #[test]
    fn averages_and_variance() {
        let s = vec![(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)];
        assert_eq!(avg_over_time(&s), 2.5);
        assert!(close(variance(&s), 1.25));
        let big = vec![(0, f64::MAX), (1, f64::MAX), (2, f64::MAX)];
        assert!(close(avg_over_time(&big), f64::MAX));
    }

    #[test]
    fn extended_rate_anchored() {
        let info = RangeInfo {
            start: 60_000,
            end: 120_000,
            secs: 60.0,
            anchored: true,
            smoothed: false,
        };
        // Anchor sample at 50s (before the range), then 90s and 120s.
        let s = vec![(50_000, 1.0), (90_000, 4.0), (120_000, 7.0)];
        assert_eq!(extended_rate(&s, &info, true, false), Some(6.0));
        let info = RangeInfo {
            smoothed: true,
            anchored: false,
            ..info
        };
        // Smoothed: interpolate at 60s between 50s and 90s -> 1.75; right = 7.
        let r = extended_rate(&s, &info, true, false).unwrap();
        assert!(close(r, 5.25));
    }
}
