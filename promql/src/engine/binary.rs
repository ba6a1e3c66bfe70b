//! Binary operators: scalar/scalar, vector/scalar and vector/vector arithmetic and comparisons
//! with Prometheus's vector matching (one-to-one, many-to-one, one-to-many, and the
//! experimental `fill` modifiers), and the set operators `and`, `or`, `unless`.

use std::collections::{HashMap, HashSet};

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::Labels;

use super::eval::{drop_name, Ctx, Evaluator, IVal};
use super::value::Sample;
use crate::error::{Error, Result};
use crate::parser::{BinaryExpr, BinaryOp, VectorMatchCardinality, VectorMatching};

/// Applies `op` to two floats: `(value, keep)`. For comparisons `value` is the left operand and
/// `keep` the comparison's outcome.
pub(crate) fn float_op(op: BinaryOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinaryOp::Add => (l + r, true),
        BinaryOp::Sub => (l - r, true),
        BinaryOp::Mul => (l * r, true),
        BinaryOp::Div => (l / r, true),
        BinaryOp::Pow => (l.powf(r), true),
        BinaryOp::Mod => (l % r, true),
        BinaryOp::Atan2 => (l.atan2(r), true),
        BinaryOp::Eql => (l, l == r),
        BinaryOp::Neq => (l, l != r),
        BinaryOp::Gtr => (l, l > r),
        BinaryOp::Lss => (l, l < r),
        BinaryOp::Gte => (l, l >= r),
        BinaryOp::Lte => (l, l <= r),
        // Set and trim operators never reach here with floats.
        _ => (l, true),
    }
}

/// Operators whose result is no longer the metric the name describes.
fn drops_name(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Pow
            | BinaryOp::Mod
            | BinaryOp::Atan2
    )
}

pub(crate) fn eval(ev: &mut Evaluator, b: &BinaryExpr, ctx: &Ctx, i: usize) -> Result<IVal> {
    let lhs = ev.eval_at(&b.lhs, ctx, i)?;
    let rhs = ev.eval_at(&b.rhs, ctx, i)?;
    match (lhs, rhs) {
        (IVal::Scalar(l), IVal::Scalar(r)) => {
            let (v, keep) = float_op(b.op, l, r);
            if b.op.is_comparison() {
                Ok(IVal::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(IVal::Scalar(v))
            }
        }
        (IVal::Vector(v), IVal::Scalar(s)) => Ok(IVal::Vector(vector_scalar(b, v, s, false))),
        (IVal::Scalar(s), IVal::Vector(v)) => Ok(IVal::Vector(vector_scalar(b, v, s, true))),
        (IVal::Vector(l), IVal::Vector(r)) => {
            let default = VectorMatching {
                card: if b.op.is_set() {
                    VectorMatchCardinality::ManyToMany
                } else {
                    VectorMatchCardinality::OneToOne
                },
                ..Default::default()
            };
            let m = b.matching.as_ref().unwrap_or(&default);
            let out = match b.op {
                BinaryOp::And => vector_and(l, r, m),
                BinaryOp::Or => vector_or(l, r, m),
                BinaryOp::Unless => vector_unless(l, r, m),
                _ => vector_binop(b.op, l, r, m, b.return_bool)?,
            };
            Ok(IVal::Vector(out))
        }
        (l, r) => Err(Error::Eval(format!(
            "binary operator {} not defined between {} and {}",
            b.op.as_str(),
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(b: &BinaryExpr, v: Vec<Sample>, s: f64, swap: bool) -> Vec<Sample> {
    let mut out = Vec::with_capacity(v.len());
    for smp in v {
        let (l, r) = if swap { (s, smp.f) } else { (smp.f, s) };
        let (mut value, keep) = float_op(b.op, l, r);
        // A comparison keeps the vector element's value even when the scalar is on the left.
        if b.op.is_comparison() && swap {
            value = r;
        }
        if b.return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let metric = if drops_name(b.op) || b.return_bool {
            drop_name(&smp.metric)
        } else {
            smp.metric
        };
        out.push(Sample {
            metric,
            t: smp.t,
            f: value,
        });
    }
    out
}

/// The matching signature of a series: its `on` labels, or all labels but the `ignoring` ones
/// and the metric name.
fn signature(l: &Labels, m: &VectorMatching) -> Labels {
    if m.on {
        let names: Vec<&str> = m.labels.iter().map(|s| s.as_str()).collect();
        l.keep_only(&names)
    } else {
        let mut names: Vec<&str> = m.labels.iter().map(|s| s.as_str()).collect();
        names.push(METRIC_NAME);
        names.push(super::eval::DROPPED_NAME);
        l.without(&names)
    }
}

fn vector_and(l: Vec<Sample>, r: Vec<Sample>, m: &VectorMatching) -> Vec<Sample> {
    if l.is_empty() || r.is_empty() {
        return Vec::new();
    }
    let right: HashSet<Labels> = r.iter().map(|s| signature(&s.metric, m)).collect();
    l.into_iter()
        .filter(|s| right.contains(&signature(&s.metric, m)))
        .collect()
}

fn vector_or(l: Vec<Sample>, r: Vec<Sample>, m: &VectorMatching) -> Vec<Sample> {
    if l.is_empty() {
        return r;
    }
    if r.is_empty() {
        return l;
    }
    let left: HashSet<Labels> = l.iter().map(|s| signature(&s.metric, m)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !left.contains(&signature(&s.metric, m))),
    );
    out
}

fn vector_unless(l: Vec<Sample>, r: Vec<Sample>, m: &VectorMatching) -> Vec<Sample> {
    if l.is_empty() || r.is_empty() {
        return l;
    }
    let right: HashSet<Labels> = r.iter().map(|s| signature(&s.metric, m)).collect();
    l.into_iter()
        .filter(|s| !right.contains(&signature(&s.metric, m)))
        .collect()
}

/// The labels of a vector/vector result.
fn result_metric(
    l: &Labels,
    r: &Labels,
    op: BinaryOp,
    m: &VectorMatching,
    return_bool: bool,
) -> Labels {
    let mut b = if return_bool || drops_name(op) {
        drop_name(l).builder()
    } else {
        l.builder()
    };
    if m.card == VectorMatchCardinality::OneToOne {
        if m.on {
            let keep: Vec<&str> = m.labels.iter().map(|s| s.as_str()).collect();
            let cur = b.build();
            b = cur.keep_only(&keep).builder();
        } else {
            for n in &m.labels {
                b.del(n);
            }
        }
    }
    for n in &m.include {
        match r.get(n) {
            Some(v) => {
                b.set(n, v);
            }
            None => {
                b.del(n);
            }
        }
    }
    b.build()
}

fn vector_binop(
    op: BinaryOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &VectorMatching,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
    {
        return Ok(Vec::new());
    }
    let one_to_many = m.card == VectorMatchCardinality::OneToMany;
    let (lhs, rhs) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    // The "one" side, by signature.
    let mut right: HashMap<Labels, usize> = HashMap::with_capacity(rhs.len());
    for (i, rs) in rhs.iter().enumerate() {
        let sig = signature(&rs.metric, m);
        if let Some(&j) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut a, mut b) = (rs.metric.to_string(), rhs[j].metric.to_string());
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            return Err(Error::Eval(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
        right.insert(sig, i);
    }
    struct Matched {
        one: HashSet<Labels>,
        many: HashMap<Labels, HashSet<Labels>>,
    }
    let mut st = Matched {
        one: HashSet::new(),
        many: HashMap::new(),
    };
    let mut out = Vec::new();
    let do_op = |ls: &Sample,
                 rs: &Sample,
                 sig: &Labels,
                 st: &mut Matched,
                 out: &mut Vec<Sample>|
     -> Result<()> {
        let (fl, fr) = if one_to_many {
            (rs.f, ls.f)
        } else {
            (ls.f, rs.f)
        };
        let (mut value, keep) = float_op(op, fl, fr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        }
        let metric = result_metric(&ls.metric, &rs.metric, op, m, return_bool);
        if m.card == VectorMatchCardinality::OneToOne {
            if !st.one.insert(sig.clone()) {
                return Err(Error::Eval(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else if !st
            .many
            .entry(sig.clone())
            .or_default()
            .insert(metric.clone())
        {
            return Err(Error::Eval(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        if !keep && !return_bool {
            return Ok(());
        }
        out.push(Sample {
            metric,
            t: ls.t,
            f: value,
        });
        Ok(())
    };
    for ls in &lhs {
        let sig = signature(&ls.metric, m);
        let rs = match right.get(&sig) {
            Some(&j) => rhs[j].clone(),
            None => match m.fill_rhs {
                Some(f) => Sample {
                    metric: sig.clone(),
                    t: ls.t,
                    f,
                },
                None => continue,
            },
        };
        do_op(ls, &rs, &sig, &mut st, &mut out)?;
    }
    if let Some(fill) = m.fill_lhs {
        for rs in &rhs {
            let sig = signature(&rs.metric, m);
            let matched = if m.card == VectorMatchCardinality::OneToOne {
                st.one.contains(&sig)
            } else {
                st.many.get(&sig).is_some_and(|s| !s.is_empty())
            };
            if matched {
                continue;
            }
            let ls = Sample {
                metric: sig.clone(),
                t: rs.t,
                f: fill,
            };
            do_op(&ls, rs, &sig, &mut st, &mut out)?;
        }
    }
    Ok(out)
}
