//! Aggregation operators (`sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `count_values`, `limitk`, `limit_ratio`) with Prometheus's
//! numerics: Kahan–Neumaier summation, incremental mean on overflow, Welford variance.

use std::collections::HashMap;

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::Labels;

use super::cache::{Interner, Marks};
use super::eval::{Ctx, Evaluator, IVal};
use super::value::Sample;
use crate::error::{Error, Result};
use crate::parser::{AggregateExpr, AggregateOp};

/// Kahan–Neumaier summation step: adds `inc` to `sum` with compensation `c`.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus's `quantile` over a set of values (NaN sorts first).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| nan_first_cmp(*a, *b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Ascending order with NaN first (Go's `vectorByValueHeap`).
pub(crate) fn nan_first_cmp(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Less,
        (false, true) => Greater,
        _ => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

fn group_labels(m: &Labels, a: &AggregateExpr) -> Labels {
    let names: Vec<&str> = a.grouping.iter().map(|s| s.as_str()).collect();
    if a.without {
        let mut n = names;
        n.push(METRIC_NAME);
        n.push(super::eval::DROPPED_NAME);
        n.push(super::eval::TYPE_LABEL);
        n.push(super::eval::UNIT_LABEL);
        m.without(&n)
    } else {
        let mut key = m.keep_only(&names);
        // `by (__name__)` groups by the name even when delayed name removal has marked it
        // for dropping (Prometheus still has it at that point).
        if names.contains(&METRIC_NAME) {
            if let Some(n) = m.get(super::eval::DROPPED_NAME) {
                let mut b = key.builder();
                b.set(METRIC_NAME, n);
                key = b.build();
            }
        }
        key
    }
}

/// True if the group key of `m` carries a metric name that is marked for dropping.
fn drops_grouped_name(m: &Labels, a: &AggregateExpr) -> bool {
    !a.without && a.grouping.iter().any(|g| g == METRIC_NAME) && m.has(super::eval::DROPPED_NAME)
}

/// Per-query state of one aggregation node: the group of every input series (by label-set
/// identity, see [`super::cache`]) and the output labels of every group.
#[derive(Default)]
pub(crate) struct AggCache {
    /// Group id and "marked name is grouped" flag of each input series.
    groups: Interner<bool>,
    /// Per-step slot of each group id in the step's group list.
    marks: Marks,
    /// The output labels of a group whose grouped name is to be dropped.
    dropped: Vec<Option<Labels>>,
}

impl AggCache {
    fn group_of(&mut self, m: &Labels, a: &AggregateExpr) -> (u32, bool) {
        self.groups
            .get(m, |m| (group_labels(m, a), drops_grouped_name(m, a)))
    }
}

#[derive(Default)]
struct Group {
    labels: Labels,
    id: u32,
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    incremental_mean: bool,
    /// Some input had its grouped metric name marked for dropping.
    drop_name: bool,
    values: Vec<f64>,
    samples: Vec<Sample>,
}

pub(crate) fn eval(ev: &mut Evaluator, a: &AggregateExpr, ctx: &Ctx, i: usize) -> Result<IVal> {
    let param = match &a.param {
        Some(p) => Some(ev.eval_at(p, ctx, i)?),
        None => None,
    };
    let input = match ev.eval_at(&a.expr, ctx, i)? {
        IVal::Vector(v) => v,
        other => {
            return Err(Error::Eval(format!(
                "expected instant vector in aggregation, got {}",
                other.type_name()
            )))
        }
    };
    let fparam = match &param {
        Some(IVal::Scalar(f)) => Some(*f),
        _ => None,
    };
    match a.op {
        AggregateOp::Topk
        | AggregateOp::Bottomk
        | AggregateOp::Limitk
        | AggregateOp::LimitRatio => {
            let node = a as *const AggregateExpr as usize;
            let mut cache = ev.agg_caches.remove(&node).unwrap_or_default();
            let r = k_aggregation(ev, a, fparam.unwrap_or(f64::NAN), input, &mut cache);
            ev.agg_caches.insert(node, cache);
            return r;
        }
        AggregateOp::CountValues => {
            let label = match &param {
                Some(IVal::Str(s)) => s.clone(),
                _ => {
                    return Err(Error::Eval(
                        "count_values requires a string parameter".into(),
                    ))
                }
            };
            return count_values(a, &label, input);
        }
        _ => {}
    }
    if a.op == AggregateOp::Quantile {
        let q = fparam.unwrap_or(f64::NAN);
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            let pos = a.param.as_ref().map(|p| p.pos_range()).unwrap_or(a.pos);
            ev.annotations.warn_at(
                format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    crate::parser::format_float(q)
                ),
                pos,
            );
        }
    }
    let node = a as *const AggregateExpr as usize;
    let mut cache = ev.agg_caches.remove(&node).unwrap_or_default();
    let out = aggregate(a, fparam, input, &mut cache);
    ev.agg_caches.insert(node, cache);
    Ok(IVal::Vector(out))
}

/// The plain aggregations (all but the `k` ones and `count_values`) at one step.
fn aggregate(
    a: &AggregateExpr,
    fparam: Option<f64>,
    input: Vec<Sample>,
    cache: &mut AggCache,
) -> Vec<Sample> {
    let mut order: Vec<Group> = Vec::new();
    cache.marks.next_step(cache.groups.len());
    for s in input {
        let (id, dropped) = cache.group_of(&s.metric, a);
        let f = s.f;
        let gi = match cache.marks.get(id) {
            Some(g) => {
                let g = g as usize;
                order[g].drop_name |= dropped;
                g
            }
            None => {
                cache.marks.set(id, order.len() as u32);
                let mut g = Group {
                    labels: cache.groups.value(id).clone(),
                    id,
                    value: f,
                    mean: f,
                    count: 1.0,
                    drop_name: dropped,
                    ..Default::default()
                };
                match a.op {
                    AggregateOp::Stddev | AggregateOp::Stdvar => {
                        g.value = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        };
                    }
                    AggregateOp::Quantile => g.values.push(f),
                    AggregateOp::Group => g.value = 1.0,
                    _ => {}
                }
                order.push(g);
                continue;
            }
        };
        let g = &mut order[gi];
        match a.op {
            AggregateOp::Sum => {
                let (v, c) = kahan_inc(f, g.value, g.kahan_c);
                g.value = v;
                g.kahan_c = c;
            }
            AggregateOp::Avg => {
                g.count += 1.0;
                if !g.incremental_mean {
                    let (v, c) = kahan_inc(f, g.value, g.kahan_c);
                    if !v.is_infinite() {
                        g.value = v;
                        g.kahan_c = c;
                        continue;
                    }
                    g.incremental_mean = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.kahan_c /= g.count - 1.0;
                }
                let q = (g.count - 1.0) / g.count;
                let (m, c) = kahan_inc(f / g.count, q * g.mean, q * g.kahan_c);
                g.mean = m;
                g.kahan_c = c;
            }
            AggregateOp::Group => {}
            AggregateOp::Max if g.value < f || g.value.is_nan() => g.value = f,
            AggregateOp::Min if g.value > f || g.value.is_nan() => g.value = f,
            AggregateOp::Count => g.count += 1.0,
            AggregateOp::Stddev | AggregateOp::Stdvar => {
                g.count += 1.0;
                let delta = f - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (f - g.mean);
            }
            AggregateOp::Quantile => g.values.push(f),
            _ => {}
        }
    }
    let q = fparam.unwrap_or(f64::NAN);
    let out = order
        .into_iter()
        .map(|mut g| {
            let f = match a.op {
                AggregateOp::Avg => {
                    if g.incremental_mean {
                        g.mean + g.kahan_c
                    } else {
                        g.value / g.count + g.kahan_c / g.count
                    }
                }
                AggregateOp::Count => g.count,
                AggregateOp::Stdvar => g.value / g.count,
                AggregateOp::Stddev => (g.value / g.count).sqrt(),
                AggregateOp::Quantile => quantile(q, &mut g.values),
                AggregateOp::Sum => g.value + g.kahan_c,
                _ => g.value,
            };
            let metric = if g.drop_name {
                let k = g.id as usize;
                if cache.dropped.len() <= k {
                    cache.dropped.resize(k + 1, None);
                }
                cache.dropped[k]
                    .get_or_insert_with(|| super::eval::drop_name(&g.labels))
                    .clone()
            } else {
                g.labels
            };
            Sample { metric, t: 0, f }
        })
        .collect();
    cache.groups.end_step();
    out
}

fn k_aggregation(
    ev: &mut Evaluator,
    a: &AggregateExpr,
    param: f64,
    input: Vec<Sample>,
    cache: &mut AggCache,
) -> Result<IVal> {
    let mut ratio = 0.0;
    let mut k = 0usize;
    match a.op {
        AggregateOp::LimitRatio => {
            if param.is_nan() {
                return Err(Error::Eval("Ratio value is NaN".into()));
            }
            ratio = param;
            if !(-1.0..=1.0).contains(&ratio) {
                ev.annotations.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                    crate::parser::format_float(param),
                    if ratio < 0.0 { -1 } else { 1 }
                ));
                ratio = ratio.clamp(-1.0, 1.0);
            }
        }
        _ => {
            if param.is_nan() {
                return Err(Error::Eval("Parameter value is NaN".into()));
            }
            if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&param) {
                return Err(Error::Eval(format!(
                    "Scalar value {} overflows int64",
                    crate::parser::format_float(param)
                )));
            }
            let kk = param as i64;
            if kk < 1 {
                return Ok(IVal::Vector(Vec::new()));
            }
            k = (kk as usize).min(input.len());
        }
    }
    let mut order: Vec<Group> = Vec::new();
    cache.marks.next_step(cache.groups.len());
    for s in input {
        let (id, _) = cache.group_of(&s.metric, a);
        let gi = match cache.marks.get(id) {
            Some(g) => g as usize,
            None => {
                cache.marks.set(id, order.len() as u32);
                order.push(Group {
                    id,
                    ..Default::default()
                });
                order.len() - 1
            }
        };
        let g = &mut order[gi];
        match a.op {
            AggregateOp::Topk | AggregateOp::Bottomk => {
                let top = a.op == AggregateOp::Topk;
                // "Worse" means: would be dropped first.
                let worse = |x: f64, y: f64| -> bool {
                    if top {
                        // NaN is the smallest for topk.
                        (x.is_nan() && !y.is_nan()) || x < y
                    } else {
                        (x.is_nan() && !y.is_nan()) || x > y
                    }
                };
                if g.samples.len() < k {
                    g.samples.push(s);
                } else if let Some((wi, _)) =
                    g.samples
                        .iter()
                        .enumerate()
                        .fold(None::<(usize, f64)>, |acc, (i, x)| match acc {
                            None => Some((i, x.f)),
                            Some((bi, bf)) => {
                                if worse(x.f, bf) {
                                    Some((i, x.f))
                                } else {
                                    Some((bi, bf))
                                }
                            }
                        })
                {
                    if worse(g.samples[wi].f, s.f) {
                        g.samples[wi] = s;
                    }
                }
            }
            AggregateOp::Limitk if g.samples.len() < k => g.samples.push(s),
            AggregateOp::LimitRatio => {
                let offset = s.metric.stable_hash() as f64 / u64::MAX as f64;
                if (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio) {
                    g.samples.push(s);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for mut g in order {
        match a.op {
            AggregateOp::Topk => g
                .samples
                .sort_by(|x, y| nan_first_cmp(y.f, x.f).then(std::cmp::Ordering::Equal)),
            AggregateOp::Bottomk => g.samples.sort_by(|x, y| {
                // Ascending, NaN last.
                match (x.f.is_nan(), y.f.is_nan()) {
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => x.f.partial_cmp(&y.f).unwrap_or(std::cmp::Ordering::Equal),
                }
            }),
            _ => {}
        }
        out.extend(g.samples);
    }
    cache.groups.end_step();
    Ok(IVal::Vector(out))
}

fn count_values(a: &AggregateExpr, label: &str, input: Vec<Sample>) -> Result<IVal> {
    if label.is_empty() || !label.chars().all(|c| c != '\u{0}') {
        return Err(Error::Eval(format!("invalid label name {label:?}")));
    }
    let mut order: Vec<(Labels, f64)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let mut b = group_labels(&s.metric, a).builder();
        b.set(label, &crate::parser::format_float(s.f));
        let key = b.build();
        match index.get(&key) {
            Some(&i) => order[i].1 += 1.0,
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, 1.0));
            }
        }
    }
    Ok(IVal::Vector(
        order
            .into_iter()
            .map(|(metric, f)| Sample { metric, t: 0, f })
            .collect(),
    ))
}
