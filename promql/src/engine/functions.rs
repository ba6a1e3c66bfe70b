//! PromQL functions (Prometheus 3's `promql/functions.go` and the special cases its engine
//! evaluates itself), float samples only.
//!
//! This module owns the dispatch ([`call`]), argument helpers, annotations with Prometheus's
//! exact texts and positions, and the instant-vector functions (math, trigonometry, clamping,
//! rounding, `scalar`/`vector`/`time`, `timestamp`, `absent`, sorting). The rest lives in
//! submodules: [`range`] (`*_over_time`, the rate family, regression, smoothing), [`labelfns`]
//! (`label_replace`, `label_join`), [`date`] (time-of-day functions), [`histogram`]
//! (`histogram_quantile`/`histogram_fraction` on classic `le` buckets) and [`info`].
//!
//! Native histograms are not stored by Strata, so the native-histogram functions
//! (`histogram_count`, `histogram_sum`, ...) always return an empty vector.

mod date;
pub(crate) mod histogram;
mod info;
mod labelfns;
mod range;

pub(crate) use range::call_all_steps;

use std::cmp::Ordering;

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{Labels, Matcher};

use super::eval::{drop_name, Ctx, Evaluator, IVal, DROPPED_NAME};
use super::value::Sample;
use crate::error::{Error, Result};
use crate::parser::ast::PosRange;
use crate::parser::{Call, Expr};

/// Per-query state of the functions: annotations that Prometheus merges across steps.
#[derive(Debug, Default)]
pub(crate) struct FnState {
    monotonicity: Vec<MonotonicityInfo>,
    /// The candidate info-series selector of each `info` call, by call address.
    info_selectors: std::collections::HashMap<usize, std::sync::Arc<Expr>>,
}

/// `histogram_quantile` had to force bucket monotonicity (merged over the query like
/// Prometheus's `histogramQuantileForcedMonotonicityErr`).
#[derive(Debug)]
struct MonotonicityInfo {
    raw: String,
    pos: PosRange,
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    count: usize,
}

/// Renders the merged annotations at the end of a query.
pub(crate) fn finish(ev: &mut Evaluator) {
    for m in std::mem::take(&mut ev.fn_state.monotonicity) {
        ev.annotations.info_at(
            format!(
                "{}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {}",
                m.raw,
                go_g(m.min_bucket),
                go_g(m.max_bucket),
                go_g_prec(m.max_diff, 2),
                m.count,
                date::rfc3339(m.min_ts / 1000),
                date::rfc3339(m.max_ts / 1000),
            ),
            m.pos,
        );
    }
}

/// Adds a warning (or info) `raw` about the expression at `pos` unless one with the same
/// text was already added (Prometheus deduplicates on the text without position and keeps the
/// first position).
pub(crate) fn annotate(ev: &mut Evaluator, warn: bool, raw: &str, pos: PosRange) {
    let set = if warn {
        &ev.annotations.warnings
    } else {
        &ev.annotations.infos
    };
    let dup = set.iter().any(|s| {
        s.strip_prefix(raw)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('\u{1}'))
    });
    if dup {
        return;
    }
    if warn {
        ev.annotations.warn_at(raw, pos);
    } else {
        ev.annotations.info_at(raw, pos);
    }
}

/// Go's `%g` (shortest representation).
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Shortest %g uses the exponent form when exp < -4 or exp >= 6.
    if !(-4..6).contains(&exp) {
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    format!("{v}")
}

/// Go's `%.<prec>g`.
pub(crate) fn go_g_prec(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return go_g(v);
    }
    let p = prec.max(1);
    let sci = format!("{:.*e}", p - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= p as i32 {
        format!(
            "{}e{}{:02}",
            strip(mant),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip(&format!("{:.*}", decimals, v))
    }
}

/// The value of a label, looking through a metric name dropped with delayed name removal
/// (Prometheus keeps `__name__` until the end of the query in that mode).
pub(crate) fn label_value<'a>(m: &'a Labels, name: &str) -> &'a str {
    match m.get(name) {
        Some(v) => v,
        None if name == METRIC_NAME => m.get_or_empty(DROPPED_NAME),
        None => "",
    }
}

/// The metric name of a series (see [`label_value`]).
pub(crate) fn metric_name(m: &Labels) -> &str {
    label_value(m, METRIC_NAME)
}

pub(crate) fn vector_arg(ev: &mut Evaluator, e: &Expr, ctx: &Ctx, i: usize) -> Result<Vec<Sample>> {
    match ev.eval_at(e, ctx, i)? {
        IVal::Vector(v) => Ok(v),
        other => Err(Error::Eval(format!(
            "expected instant vector argument, got {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn scalar_arg(ev: &mut Evaluator, e: &Expr, ctx: &Ctx, i: usize) -> Result<f64> {
    match ev.eval_at(e, ctx, i)? {
        IVal::Scalar(f) => Ok(f),
        other => Err(Error::Eval(format!(
            "expected scalar argument, got {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn string_arg(ev: &mut Evaluator, e: &Expr, ctx: &Ctx, i: usize) -> Result<String> {
    match ev.eval_at(e, ctx, i)? {
        IVal::Str(s) => Ok(s),
        other => Err(Error::Eval(format!(
            "expected string argument, got {}",
            other.type_name()
        ))),
    }
}

/// Go's `math.Max` (NaN wins; +0 over -0).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else {
        a.max(b)
    }
}

/// Go's `math.Min` (NaN wins; -0 over +0).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else {
        a.min(b)
    }
}

/// Applies `f` to every sample's value, dropping the metric name.
fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            metric: drop_name(&s.metric),
            t: s.t,
            f: f(s.f),
        })
        .collect()
}

fn simple_math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Evaluates a function call at step `i`.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let name = c.func.name;
    let t = ctx.ts[i];
    if let Some(f) = simple_math(name) {
        let v = vector_arg(ev, &c.args[0], ctx, i)?;
        return Ok(IVal::Vector(map_values(v, f)));
    }
    if c.func.arg_types.contains(&crate::parser::ValueType::Matrix) {
        return range::call(ev, c, ctx, i);
    }
    match name {
        "time" => Ok(IVal::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(IVal::Scalar(std::f64::consts::PI)),
        "start" => Ok(IVal::Scalar(ev.query_start as f64 / 1000.0)),
        "end" => Ok(IVal::Scalar(ev.query_end as f64 / 1000.0)),
        "range" => Ok(IVal::Scalar(
            (ev.query_end - ev.query_start) as f64 / 1000.0,
        )),
        "step" => Ok(IVal::Scalar(ev.query_step as f64 / 1000.0)),
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, &c.args[0], ctx, i)?;
            let b = scalar_arg(ev, &c.args[1], ctx, i)?;
            Ok(IVal::Scalar(if name == "min_of" {
                go_min(a, b)
            } else {
                go_max(a, b)
            }))
        }
        "vector" => {
            let f = scalar_arg(ev, &c.args[0], ctx, i)?;
            Ok(IVal::Vector(vec![Sample {
                metric: Labels::empty(),
                t,
                f,
            }]))
        }
        "scalar" => {
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            Ok(IVal::Scalar(if v.len() == 1 { v[0].f } else { f64::NAN }))
        }
        "timestamp" => {
            // Of a vector selector: the samples' own timestamps; of anything else: the
            // evaluation time (Prometheus evaluates other arguments into step-aligned points).
            let own = matches!(&c.args[0], Expr::VectorSelector(_));
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            Ok(IVal::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        metric: drop_name(&s.metric),
                        t: s.t,
                        f: if own { s.t } else { t } as f64 / 1000.0,
                    })
                    .collect(),
            ))
        }
        // Strata stores no start timestamps: Prometheus returns nothing in that case.
        "start_timestamp" => {
            vector_arg(ev, &c.args[0], ctx, i)?;
            Ok(IVal::Vector(Vec::new()))
        }
        "absent" => {
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            if !v.is_empty() {
                return Ok(IVal::Vector(Vec::new()));
            }
            Ok(IVal::Vector(vec![Sample {
                metric: absent_labels(&c.args[0]),
                t,
                f: 1.0,
            }]))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            let (lo, hi) = match name {
                "clamp" => (
                    scalar_arg(ev, &c.args[1], ctx, i)?,
                    scalar_arg(ev, &c.args[2], ctx, i)?,
                ),
                "clamp_min" => (scalar_arg(ev, &c.args[1], ctx, i)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, scalar_arg(ev, &c.args[1], ctx, i)?),
            };
            if hi < lo {
                return Ok(IVal::Vector(Vec::new()));
            }
            Ok(IVal::Vector(map_values(v, |f| go_max(lo, go_min(hi, f)))))
        }
        "round" => {
            let v = vector_arg(ev, &c.args[0], ctx, i)?;
            let to_nearest = match c.args.get(1) {
                Some(a) => scalar_arg(ev, a, ctx, i)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            Ok(IVal::Vector(map_values(v, |f| {
                (f * inv + 0.5).floor() / inv
            })))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => sort(ev, c, ctx, i),
        "label_replace" => labelfns::label_replace(ev, c, ctx, i),
        "label_join" => labelfns::label_join(ev, c, ctx, i),
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => date::call(ev, c, ctx, i),
        "histogram_quantile" | "histogram_fraction" | "histogram_quantiles" => {
            histogram::call(ev, c, ctx, i)
        }
        // Native histograms only: Strata has none, so the result is always empty.
        "histogram_avg" | "histogram_count" | "histogram_sum" | "histogram_stddev"
        | "histogram_stdvar" => {
            vector_arg(ev, &c.args[0], ctx, i)?;
            Ok(IVal::Vector(Vec::new()))
        }
        "info" => info::call(ev, c, ctx, i),
        _ => Err(Error::Eval(format!("function {name:?} is not supported"))),
    }
}

/// The labels of `absent`/`absent_over_time`'s result: the equality matchers of a selector
/// argument (a label matched more than once, or by other matcher types, is left out).
pub(crate) fn absent_labels(arg: &Expr) -> Labels {
    let ms: &[Matcher] = match arg {
        Expr::VectorSelector(vs) => &vs.matchers,
        Expr::MatrixSelector(m) => &m.vector.matchers,
        _ => return Labels::empty(),
    };
    let mut b = Labels::empty().builder();
    let mut has = std::collections::HashSet::new();
    for m in ms {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.typ == strata_tsdb::labels::MatchType::Equal && !has.contains(m.name.as_str()) {
            b.set(&m.name, &m.value);
            has.insert(m.name.as_str());
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

/// Go's insertion sort (what `sort.Sort` does for up to 12 elements), so that ties and NaNs
/// end up exactly where Prometheus puts them.
fn go_insertion_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sort(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let name = c.func.name;
    if ctx.ts.len() > 1 {
        annotate(
            ev,
            true,
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels",
            c.pos,
        );
    }
    let mut v = vector_arg(ev, &c.args[0], ctx, i)?;
    match name {
        "sort" | "sort_desc" => {
            let desc = name == "sort_desc";
            // Prometheus sorts with the reversed "NaN first" heap order, so NaN ends up last.
            let less = |a: &Sample, b: &Sample| -> bool {
                if b.f.is_nan() {
                    return true;
                }
                if desc {
                    b.f < a.f
                } else {
                    b.f > a.f
                }
            };
            if v.len() <= 12 {
                go_insertion_sort(&mut v, less);
            } else {
                v.sort_by(|a, b| match (a.f.is_nan(), b.f.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => {
                        let o = a.f.partial_cmp(&b.f).unwrap_or(Ordering::Equal);
                        if desc {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                });
            }
        }
        _ => {
            let mut names = Vec::new();
            for a in &c.args[1..] {
                names.push(string_arg(ev, a, ctx, i)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let (x, y) = (label_value(&a.metric, n), label_value(&b.metric, n));
                    if x == y {
                        continue;
                    }
                    let o = if natsort_less(x, y) {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                    return if desc { o.reverse() } else { o };
                }
                let o = a.metric.cmp(&b.metric);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
    }
    Ok(IVal::Vector(v))
}

/// Splits into runs of ASCII digits and runs of anything else.
fn natsort_chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut start = 0;
    for k in 1..=b.len() {
        if k == b.len() || b[k].is_ascii_digit() != b[start].is_ascii_digit() {
            if start < k {
                out.push(&s[start..k]);
            }
            start = k;
        }
    }
    out
}

/// `github.com/facette/natsort.Compare`: does `a` precede `b` in natural order?
fn natsort_less(a: &str, b: &str) -> bool {
    let ca = natsort_chunks(a);
    let cb = natsort_chunks(b);
    for (k, x) in ca.iter().enumerate() {
        if k >= cb.len() {
            return false;
        }
        let y = cb[k];
        let xi = x.parse::<i64>();
        let yi = y.parse::<i64>();
        if let (Ok(xi), Ok(yi)) = (&xi, &yi) {
            if xi == yi {
                if k == ca.len() - 1 {
                    return true;
                } else if k == cb.len() - 1 {
                    return false;
                }
                continue;
            }
            return xi < yi;
        }
        if *x == y {
            if k == ca.len() - 1 {
                return true;
            } else if k == cb.len() - 1 {
                return false;
            }
            continue;
        }
        return *x < y;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formatting() {
        assert_eq!(go_g(1.5), "1.5");
        assert_eq!(go_g(-0.5), "-0.5");
        assert_eq!(go_g(1e6), "1e+06");
        assert_eq!(go_g(123456.0), "123456");
        assert_eq!(go_g(0.0001), "0.0001");
        assert_eq!(go_g(0.00001), "1e-05");
        assert_eq!(go_g(f64::INFINITY), "+Inf");
        assert_eq!(go_g_prec(3.0, 2), "3");
        assert_eq!(go_g_prec(12.0, 2), "12");
        assert_eq!(go_g_prec(123.0, 2), "1.2e+02");
        assert_eq!(go_g_prec(0.25, 2), "0.25");
        assert_eq!(go_g_prec(0.256, 2), "0.26");
    }

    #[test]
    fn natural_order() {
        assert!(natsort_less("a2", "a10"));
        assert!(!natsort_less("a10", "a2"));
        assert!(natsort_less("abc", "abd"));
        assert!(natsort_less("1", "1"));
        assert!(natsort_less("x", "x1"));
        assert_eq!(natsort_chunks("ab12cd3"), vec!["ab", "12", "cd", "3"]);
    }
}
