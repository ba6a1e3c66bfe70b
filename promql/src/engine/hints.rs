//! The function each selector of a query feeds, for [`SelectHints::func`]: storage can then
//! choose what to read (the bucket store picks a downsampled aggregate by it). As in
//! Prometheus, it is the nearest enclosing function call or aggregation, looking through
//! parentheses, unary operators, range selectors and subqueries; a binary operator in
//! between means none.
//!
//! [`SelectHints::func`]: strata_tsdb::storage::SelectHints

use std::collections::HashMap;

use crate::parser::{Expr, VectorSelector};

/// The enclosing function name of every vector selector in `e`, keyed by the selector's
/// address (selectors fed by no function are absent).
pub(crate) fn selector_funcs(e: &Expr) -> HashMap<usize, &'static str> {
    let mut out = HashMap::new();
    walk(e, None, &mut out);
    out
}

/// The key of `vs` in [`selector_funcs`]'s map.
pub(crate) fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

fn walk(e: &Expr, func: Option<&'static str>, out: &mut HashMap<usize, &'static str>) {
    match e {
        Expr::NumberLiteral { .. } | Expr::StringLiteral { .. } => {}
        Expr::VectorSelector(vs) => {
            if let Some(f) = func {
                out.insert(key(vs), f);
            }
        }
        Expr::MatrixSelector(ms) => {
            if let Some(f) = func {
                out.insert(key(&ms.vector), f);
            }
        }
        Expr::Subquery(sq) => walk(&sq.expr, func, out),
        Expr::Paren { expr, .. } | Expr::Unary { expr, .. } => walk(expr, func, out),
        Expr::Call(c) => {
            for a in &c.args {
                walk(a, Some(c.func.name), out);
            }
        }
        Expr::Aggregate(a) => {
            walk(&a.expr, Some(a.op.name()), out);
            if let Some(p) = &a.param {
                walk(p, Some(a.op.name()), out);
            }
        }
        Expr::Binary(b) => {
            walk(&b.lhs, None, out);
            walk(&b.rhs, None, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funcs(q: &str) -> Vec<(String, &'static str)> {
        let e = crate::parser::parse(q).expect("parse");
        let m = selector_funcs(&e);
        let mut out = Vec::new();
        collect(&e, &m, &mut out);
        out
    }

    fn collect(e: &Expr, m: &HashMap<usize, &'static str>, out: &mut Vec<(String, &'static str)>) {
        let mut visit = |vs: &VectorSelector| {
            out.push((
                vs.name.clone().unwrap_or_default(),
                m.get(&key(vs)).copied().unwrap_or(""),
            ))
        };
        match e {
            Expr::VectorSelector(vs) => visit(vs),
            Expr::MatrixSelector(ms) => visit(&ms.vector),
            Expr::Subquery(sq) => collect(&sq.expr, m, out),
            Expr::Paren { expr, .. } | Expr::Unary { expr, .. } => collect(expr, m, out),
            Expr::Call(c) => c.args.iter().for_each(|a| collect(a, m, out)),
            Expr::Aggregate(a) => collect(&a.expr, m, out),
            Expr::Binary(b) => {
                collect(&b.lhs, m, out);
                collect(&b.rhs, m, out);
            }
            _ => {}
        }
    }

    #[test]
    fn nearest_function_or_aggregation() {
        assert_eq!(funcs("rate(x[5m])"), vec![("x".into(), "rate")]);
        assert_eq!(funcs("sum(rate(x[5m]))"), vec![("x".into(), "rate")]);
        assert_eq!(funcs("max by (a) (y)"), vec![("y".into(), "max")]);
        assert_eq!(
            funcs("-(avg_over_time(z[1h]))"),
            vec![("z".into(), "avg_over_time")]
        );
        assert_eq!(
            funcs("max_over_time(rate(c[5m])[1h:5m])"),
            vec![("c".into(), "rate")]
        );
        assert_eq!(
            funcs("min_over_time(g[1h:])"),
            vec![("g".into(), "min_over_time")]
        );
        assert_eq!(
            funcs("sum(a / b) + c"),
            vec![("a".into(), ""), ("b".into(), ""), ("c".into(), "")]
        );
    }
}
