//! `label_replace` and `label_join`: they rewrite series labels and keep everything else,
//! including the metric name (setting `__name__` also cancels a pending delayed removal).

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::Labels;

use super::super::eval::{Ctx, Evaluator, IVal, DROPPED_NAME};
use super::{label_value, string_arg, vector_arg};
use crate::error::{Error, Result};
use crate::parser::Call;

/// Prometheus's UTF-8 label name validation: any non-empty string.
fn valid_label_name(n: &str) -> bool {
    !n.is_empty() && !n.contains('\u{FFFD}')
}

/// Sets `dst` to `value` on `m`; setting the metric name cancels a delayed name removal.
fn set_label(m: &Labels, dst: &str, value: &str) -> Labels {
    let mut b = m.builder();
    b.set(dst, value);
    if dst == METRIC_NAME {
        b.del(DROPPED_NAME);
    }
    b.build()
}

pub(super) fn label_replace(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let dst = string_arg(ev, &c.args[1], ctx, i)?;
    let repl = string_arg(ev, &c.args[2], ctx, i)?;
    let src = string_arg(ev, &c.args[3], ctx, i)?;
    let re_str = string_arg(ev, &c.args[4], ctx, i)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        Error::Eval(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut v = vector_arg(ev, &c.args[0], ctx, i)?;
    for s in v.iter_mut() {
        let src_val = label_value(&s.metric, &src).to_string();
        if let Some(caps) = re.captures(&src_val) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.metric = set_label(&s.metric, &dst, &res);
        }
    }
    Ok(IVal::Vector(v))
}

pub(super) fn label_join(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let dst = string_arg(ev, &c.args[1], ctx, i)?;
    let sep = string_arg(ev, &c.args[2], ctx, i)?;
    let mut srcs = Vec::new();
    for a in &c.args[3..] {
        let s = string_arg(ev, a, ctx, i)?;
        if !valid_label_name(&s) {
            return Err(Error::Eval(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(Error::Eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut v = vector_arg(ev, &c.args[0], ctx, i)?;
    for s in v.iter_mut() {
        let joined = srcs
            .iter()
            .map(|n| label_value(&s.metric, n))
            .collect::<Vec<_>>()
            .join(&sep);
        s.metric = set_label(&s.metric, &dst, &joined);
    }
    Ok(IVal::Vector(v))
}
