//! `info(v [, {data label selector}])` (experimental): adds the data labels of info series
//! (`target_info` by default) that share the identifying labels `instance` and `job` with a
//! series of `v`, as Prometheus's `promql/info.go` does, step by step.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use strata_tsdb::labels::{MatchType, METRIC_NAME};
use strata_tsdb::{Labels, Matcher};

use super::super::eval::{Ctx, Evaluator, IVal};
use super::super::value::Sample;
use super::{label_value, vector_arg};
use crate::error::{Error, Result};
use crate::parser::{AtModifier, Call, Duration, Expr, PosRange, VectorSelector};

const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The name matchers that select info series: given positive ones as they are, negative ones
/// behind a synthetic `__name__=~".+_info"`, none as `__name__="target_info"`.
fn effective_name_matchers(ms: &[Matcher]) -> Result<Vec<Matcher>> {
    if ms
        .iter()
        .any(|m| matches!(m.typ, MatchType::Equal | MatchType::Regexp))
    {
        return Ok(ms.to_vec());
    }
    if !ms.is_empty() {
        let mut v = vec![Matcher::new(MatchType::Regexp, METRIC_NAME, ".+_info")?];
        v.extend(ms.iter().cloned());
        return Ok(v);
    }
    Ok(vec![Matcher::equal(METRIC_NAME, "target_info")])
}

/// The `@` and total offset (ms) of the first vector selector in `e`, shifted by enclosing
/// subqueries until one of them has an `@`.
fn first_selector_time(
    ev: &Evaluator,
    e: &Expr,
    subqueries: &mut Vec<(Option<AtModifier>, i64)>,
) -> Result<Option<(Option<AtModifier>, i64)>> {
    let off = |d: &Option<Duration>| -> Result<i64> {
        match d {
            Some(d) => ev.duration_ms(d, true),
            None => Ok(0),
        }
    };
    match e {
        Expr::VectorSelector(vs) => {
            let mut at = vs.at;
            let mut offset = off(&vs.offset)?;
            for (sq_at, sq_off) in subqueries.iter().rev() {
                if at.is_some() {
                    break;
                }
                offset += sq_off;
                at = *sq_at;
            }
            Ok(Some((at, offset)))
        }
        Expr::MatrixSelector(ms) => {
            first_selector_time(ev, &Expr::VectorSelector(ms.vector.clone()), subqueries)
        }
        Expr::Subquery(sq) => {
            subqueries.push((sq.at, off(&sq.offset)?));
            let r = first_selector_time(ev, &sq.expr, subqueries);
            subqueries.pop();
            r
        }
        Expr::Call(c) => {
            for a in &c.args {
                if let Some(r) = first_selector_time(ev, a, subqueries)? {
                    return Ok(Some(r));
                }
            }
            Ok(None)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                if let Some(r) = first_selector_time(ev, p, subqueries)? {
                    return Ok(Some(r));
                }
            }
            first_selector_time(ev, &a.expr, subqueries)
        }
        Expr::Binary(b) => match first_selector_time(ev, &b.lhs, subqueries)? {
            Some(r) => Ok(Some(r)),
            None => first_selector_time(ev, &b.rhs, subqueries),
        },
        Expr::Paren { expr, .. } | Expr::Unary { expr, .. } => {
            first_selector_time(ev, expr, subqueries)
        }
        Expr::NumberLiteral { .. } | Expr::StringLiteral { .. } => Ok(None),
    }
}

/// The selector of the candidate info series of this call (built once per query, so that the
/// evaluator loads them once).
fn info_selector(ev: &mut Evaluator, c: &Call, selector: &[Matcher]) -> Result<Arc<Expr>> {
    let key = c as *const Call as usize;
    if let Some(e) = ev.fn_state.info_selectors.get(&key) {
        return Ok(e.clone());
    }
    let (at, offset) = first_selector_time(ev, &c.args[0], &mut Vec::new())?.unwrap_or((None, 0));
    let mut matchers: Vec<Matcher> = selector
        .iter()
        .filter(|m| m.name != METRIC_NAME)
        .cloned()
        .collect();
    let names: Vec<Matcher> = selector
        .iter()
        .filter(|m| m.name == METRIC_NAME)
        .cloned()
        .collect();
    matchers.extend(effective_name_matchers(&names)?);
    let e = Arc::new(Expr::VectorSelector(VectorSelector {
        name: None,
        matchers,
        offset: (offset != 0).then_some(Duration::Ms(offset)),
        at,
        anchored: false,
        smoothed: false,
        bypass_empty_matcher_check: true,
        pos: PosRange::default(),
    }));
    ev.fn_state.info_selectors.insert(key, e.clone());
    Ok(e)
}

pub(super) fn call(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let base = vector_arg(ev, &c.args[0], ctx, i)?;
    let selector: Vec<Matcher> = match c.args.get(1).map(|a| a.unparen()) {
        Some(Expr::VectorSelector(vs)) => vs.matchers.clone(),
        _ => Vec::new(),
    };
    let name_matchers: Vec<Matcher> = if c.args.len() > 1 {
        selector
            .iter()
            .filter(|m| m.name == METRIC_NAME)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let effective = effective_name_matchers(&name_matchers)?;
    // Data label matchers by label name (the name matchers only choose info metrics).
    let mut data: HashMap<&str, Vec<&Matcher>> = HashMap::new();
    for m in &selector {
        if m.name != METRIC_NAME {
            data.entry(m.name.as_str()).or_default().push(m);
        }
    }
    // Info series themselves are not enriched.
    let ignored: Vec<bool> = base
        .iter()
        .map(|s| {
            let n = label_value(&s.metric, METRIC_NAME);
            effective.iter().all(|m| m.matches(n))
        })
        .collect();
    let mut id_values: HashMap<&str, HashSet<String>> = HashMap::new();
    for (s, ign) in base.iter().zip(&ignored) {
        if *ign {
            continue;
        }
        for l in IDENTIFYING {
            let v = s.metric.get_or_empty(l);
            if !v.is_empty() {
                id_values.entry(l).or_default().insert(v.to_string());
            }
        }
    }
    let infos: Vec<Sample> = if id_values.is_empty() {
        Vec::new()
    } else {
        let sel = info_selector(ev, c, &selector)?;
        vector_arg(ev, &sel, ctx, i)?
            .into_iter()
            .filter(|s| {
                id_values
                    .iter()
                    .all(|(l, vals)| vals.contains(s.metric.get_or_empty(l)))
            })
            .collect()
    };
    let sig = |name: &str, m: &Labels| -> (String, String, String) {
        (
            name.to_string(),
            m.get_or_empty("instance").to_string(),
            m.get_or_empty("job").to_string(),
        )
    };
    // The newest info sample per signature.
    let mut by_sig: HashMap<(String, String, String), &Sample> = HashMap::new();
    let mut info_names: BTreeSet<&str> = BTreeSet::new();
    for s in &infos {
        let name = s.metric.get_or_empty(METRIC_NAME);
        info_names.insert(name);
        let k = sig(name, &s.metric);
        match by_sig.get(&k) {
            Some(prev) if prev.t > s.t => {}
            Some(prev) if prev.t == s.t => {
                return Err(Error::Eval(format!(
                    "found duplicate series for info metric: existing {} @ {}, new {} @ {}",
                    prev.metric, prev.t, s.metric, s.t
                )))
            }
            _ => {
                by_sig.insert(k, s);
            }
        }
    }
    let mut out = Vec::with_capacity(base.len());
    for (bs, ign) in base.into_iter().zip(ignored) {
        if ign {
            out.push(bs);
            continue;
        }
        let mut add = Labels::empty().builder();
        let mut seen = 0;
        for name in &info_names {
            let Some(is) = by_sig.get(&sig(name, &bs.metric)) else {
                continue;
            };
            seen += 1;
            for l in is.metric.iter() {
                let (n, v) = (&*l.name, &*l.value);
                if n == METRIC_NAME || (!data.is_empty() && !data.contains_key(n)) {
                    continue;
                }
                if let Some(prev) = add.get(n) {
                    if !prev.is_empty() && prev != v {
                        return Err(Error::Eval(format!("conflicting label: {n}")));
                    }
                }
                if bs.metric.has(n) {
                    continue;
                }
                add.set(n, v);
            }
        }
        if seen == 0 && data.values().flatten().any(|m| !m.matches("")) {
            continue;
        }
        let extra = add.build();
        let metric = if extra.is_empty() {
            bs.metric
        } else {
            let mut b = bs.metric.builder();
            for l in extra.iter() {
                b.set(&l.name, &l.value);
            }
            b.build()
        };
        out.push(Sample { metric, ..bs });
    }
    Ok(IVal::Vector(out))
}
