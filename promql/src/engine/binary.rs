//! Binary operators: scalar/scalar, vector/scalar and vector/vector arithmetic and comparisons
//! with Prometheus's vector matching (one-to-one, many-to-one, one-to-many, and the
//! experimental `fill` modifiers), and the set operators `and`, `or`, `unless`.

use std::collections::HashSet;

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::Labels;

use super::cache::{FxHashMap, Interner, Marks};
use super::eval::{check_unique, drop_name, Ctx, Evaluator, IVal};
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

/// Per-query state of one vector/vector operator node: matching signatures and result labels
/// by series identity (see [`super::cache`]) and the per-step bookkeeping over their ids.
#[derive(Default)]
pub(crate) struct BinCache {
    sigs: Interner<()>,
    results: Interner<(), (usize, usize)>,
    /// Per step: the "one" side's index by signature id.
    right: Marks,
    /// Per step: signatures matched (one-to-one) or with some match (many-to-one).
    matched: Marks,
    /// Per step: `(signature id, result id)` pairs produced (many-to-one).
    many: FxHashMap<u64, ()>,
    /// Per step: result ids in the output.
    out: Marks,
}

/// Evaluates a binary expression at step `i`; the result is checked for duplicate labels.
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
        (IVal::Vector(v), IVal::Scalar(s)) => {
            let v = IVal::Vector(vector_scalar(b, v, s, false));
            check_unique(&v)?;
            Ok(v)
        }
        (IVal::Scalar(s), IVal::Vector(v)) => {
            let v = IVal::Vector(vector_scalar(b, v, s, true));
            check_unique(&v)?;
            Ok(v)
        }
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
                _ => {
                    // Checks uniqueness itself.
                    let node = b as *const BinaryExpr as usize;
                    let mut cache = ev.bin_caches.remove(&node).unwrap_or_default();
                    let out = vector_binop(b.op, l, r, m, b.return_bool, &mut cache);
                    ev.bin_caches.insert(node, cache);
                    return Ok(IVal::Vector(out?));
                }
            };
            let v = IVal::Vector(out);
            check_unique(&v)?;
            Ok(v)
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
    cache: &mut BinCache,
) -> Result<Vec<Sample>> {
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
    {
        return Ok(Vec::new());
    }
    let one_to_many = m.card == VectorMatchCardinality::OneToMany;
    let one_to_one = m.card == VectorMatchCardinality::OneToOne;
    let (lhs, rhs) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    // The "one" side, by signature.
    let nsigs = cache.sigs.len();
    cache.right.next_step(nsigs);
    cache.matched.next_step(nsigs);
    cache.out.next_step(cache.results.len());
    cache.many.clear();
    let mut rsigs = Vec::with_capacity(rhs.len());
    for (i, rs) in rhs.iter().enumerate() {
        let (sig, ()) = cache.sigs.get(&rs.metric, |l| (signature(l, m), ()));
        if let Some(j) = cache.right.get(sig) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut a, mut b) = (rs.metric.to_string(), rhs[j as usize].metric.to_string());
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            return Err(Error::Eval(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side",
                cache.sigs.value(sig)
            )));
        }
        cache.right.set(sig, i as u32);
        rsigs.push(sig);
    }
    let mut out = Vec::new();
    // Two output samples with the same labels (reported after matching, as the separate
    // uniqueness check would).
    let mut dup = false;
    let mut do_op = |ls: &Sample,
                     rs: &Sample,
                     sig: u32,
                     cache: &mut BinCache,
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
        let (res, ()) = cache.results.get_pair(&ls.metric, &rs.metric, |l, r| {
            (result_metric(l, r, op, m, return_bool), ())
        });
        if one_to_one {
            if cache.matched.get(sig).is_some() {
                return Err(Error::Eval(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            cache.matched.set(sig, 0);
        } else {
            cache.matched.set(sig, 0);
            if cache
                .many
                .insert(((sig as u64) << 32) | res as u64, ())
                .is_some()
            {
                return Err(Error::Eval(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
        }
        if !keep && !return_bool {
            return Ok(());
        }
        if cache.out.get(res).is_some() {
            dup = true;
        }
        cache.out.set(res, 0);
        out.push(Sample {
            metric: cache.results.value(res).clone(),
            t: ls.t,
            f: value,
        });
        Ok(())
    };
    for ls in &lhs {
        let (sig, ()) = cache.sigs.get(&ls.metric, |l| (signature(l, m), ()));
        let rs = match cache.right.get(sig) {
            Some(j) => rhs[j as usize].clone(),
            None => match m.fill_rhs {
                Some(f) => Sample {
                    metric: cache.sigs.value(sig).clone(),
                    t: ls.t,
                    f,
                },
                None => continue,
            },
        };
        do_op(ls, &rs, sig, cache, &mut out)?;
    }
    if let Some(fill) = m.fill_lhs {
        for (rs, &sig) in rhs.iter().zip(&rsigs) {
            if cache.matched.get(sig).is_some() {
                continue;
            }
            let ls = Sample {
                metric: cache.sigs.value(sig).clone(),
                t: rs.t,
                f: fill,
            };
            do_op(&ls, rs, sig, cache, &mut out)?;
        }
    }
    if dup {
        return Err(Error::Eval(
            "vector cannot contain metrics with the same labelset".into(),
        ));
    }
    cache.sigs.end_step();
    cache.results.end_step();
    Ok(out)
}
