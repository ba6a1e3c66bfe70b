//! Type checking of a parsed tree, as Prometheus's `checkAST`: argument types and counts,
//! binary-operator rules (`bool`, set operators, vector matching), aggregation parameters,
//! subqueries, and the "at least one non-empty matcher" rule. It also normalises the tree the
//! way Prometheus does (set operators become many-to-many; vector matching is dropped when an
//! operand is not an instant vector; the `info()` label selector is marked).

use strata_tsdb::labels::METRIC_NAME;

use super::ast::*;
use super::lexer::go_quote;
use crate::error::ParseError;

pub(crate) struct Checker<'a> {
    pub input: &'a str,
}

type CResult<T> = Result<T, ParseError>;

impl Checker<'_> {
    fn err(&self, pos: PosRange, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.input, pos, msg)
    }

    fn expect_type(&self, e: &mut Expr, want: ValueType, ctx: &str) -> CResult<()> {
        let t = self.check(e)?;
        if t != want {
            return Err(self.err(
                e.pos_range(),
                format!(
                    "expected type {} in {ctx}, got {}",
                    want.documented(),
                    t.documented()
                ),
            ));
        }
        Ok(())
    }

    /// The range of the operator text between two operands.
    fn op_range(&self, lhs: &Expr, rhs: &Expr) -> PosRange {
        let b = self.input.as_bytes();
        let mut start = lhs.pos_range().end;
        while start < b.len() && matches!(b[start], b' ' | b'\t' | b'\n' | b'\r') {
            start += 1;
        }
        let mut end = rhs.pos_range().start.max(start);
        while end > start && matches!(b.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            end -= 1;
        }
        PosRange::new(start, end)
    }

    pub fn check(&self, e: &mut Expr) -> CResult<ValueType> {
        match e {
            Expr::NumberLiteral { .. } | Expr::StringLiteral { .. } => {}
            Expr::Paren { expr, .. } => {
                self.check(expr)?;
            }
            Expr::Aggregate(a) => {
                self.expect_type(&mut a.expr, ValueType::Vector, "aggregation expression")?;
                if let Some(p) = a.param.as_mut() {
                    let want = if a.op == AggregateOp::CountValues {
                        ValueType::String
                    } else {
                        ValueType::Scalar
                    };
                    self.expect_type(p, want, "aggregation parameter")?;
                }
            }
            Expr::Binary(b) => {
                let lt = self.check(&mut b.lhs)?;
                let rt = self.check(&mut b.rhs)?;
                if b.return_bool && !b.op.is_comparison() {
                    return Err(self.err(
                        self.op_range(&b.lhs, &b.rhs),
                        "bool modifier can only be used on comparison operators",
                    ));
                }
                if b.op.is_comparison()
                    && !b.return_bool
                    && lt == ValueType::Scalar
                    && rt == ValueType::Scalar
                {
                    return Err(self.err(
                        self.op_range(&b.lhs, &b.rhs),
                        "comparisons between scalars must use BOOL modifier",
                    ));
                }
                let op_range = self.op_range(&b.lhs, &b.rhs);
                let whole = b.lhs.pos_range().merge(b.rhs.pos_range());
                if let Some(vm) = b.matching.as_mut() {
                    if b.op.is_set() && vm.card == VectorMatchCardinality::OneToOne {
                        vm.card = VectorMatchCardinality::ManyToMany;
                    }
                    if vm.on {
                        for l in &vm.labels {
                            if vm.include.contains(l) {
                                return Err(self.err(
                                    op_range,
                                    format!(
                                        "label {} must not occur in ON and GROUP clause at once",
                                        go_quote(l)
                                    ),
                                ));
                            }
                        }
                    }
                }
                if lt != ValueType::Scalar && lt != ValueType::Vector {
                    return Err(self.err(
                        b.lhs.pos_range(),
                        "binary expression must contain only scalar and instant vector types",
                    ));
                }
                if rt != ValueType::Scalar && rt != ValueType::Vector {
                    return Err(self.err(
                        b.rhs.pos_range(),
                        "binary expression must contain only scalar and instant vector types",
                    ));
                }
                if lt != ValueType::Vector || rt != ValueType::Vector {
                    if let Some(vm) = &b.matching {
                        if !vm.labels.is_empty() {
                            return Err(self.err(
                                whole,
                                "vector matching only allowed between instant vectors",
                            ));
                        }
                        if vm.fill_lhs.is_some() || vm.fill_rhs.is_some() {
                            return Err(self.err(
                                whole,
                                "filling in missing series only allowed between instant vectors",
                            ));
                        }
                    }
                    b.matching = None;
                } else if b.op.is_set() {
                    if let Some(vm) = &b.matching {
                        if matches!(
                            vm.card,
                            VectorMatchCardinality::OneToMany | VectorMatchCardinality::ManyToOne
                        ) {
                            return Err(self.err(
                                whole,
                                format!(
                                    "no grouping allowed for {} operation",
                                    go_quote(b.op.as_str())
                                ),
                            ));
                        }
                        if vm.card != VectorMatchCardinality::ManyToMany {
                            return Err(
                                self.err(whole, "set operations must always be many-to-many")
                            );
                        }
                        if vm.fill_lhs.is_some() || vm.fill_rhs.is_some() {
                            return Err(self.err(
                                whole,
                                "filling in missing series not allowed for set operators",
                            ));
                        }
                    }
                }
                if (lt == ValueType::Scalar || rt == ValueType::Scalar) && b.op.is_set() {
                    return Err(self.err(
                        whole,
                        format!(
                            "set operator {} not allowed in binary scalar expression",
                            go_quote(b.op.as_str())
                        ),
                    ));
                }
            }
            Expr::Call(c) => {
                let f = c.func;
                let nargs = f.arg_types.len();
                let name = go_quote(f.name);
                if f.variadic == 0 {
                    if nargs != c.args.len() {
                        return Err(self.err(
                            c.pos,
                            format!(
                                "expected {nargs} argument(s) in call to {name}, got {}",
                                c.args.len()
                            ),
                        ));
                    }
                } else {
                    let na = nargs - 1;
                    if na > c.args.len() {
                        return Err(self.err(
                            c.pos,
                            format!(
                                "expected at least {na} argument(s) in call to {name}, got {}",
                                c.args.len()
                            ),
                        ));
                    }
                    let max = na as i64 + f.variadic as i64;
                    if f.variadic > 0 && max < c.args.len() as i64 {
                        return Err(self.err(
                            c.pos,
                            format!(
                                "expected at most {max} argument(s) in call to {name}, got {}",
                                c.args.len()
                            ),
                        ));
                    }
                }
                if f.name == "info" && c.args.len() > 1 {
                    let pos = c.pos;
                    let arg = &mut c.args[1];
                    let t = arg.value_type();
                    if t != ValueType::Vector {
                        return Err(self.err(
                            pos,
                            format!(
                                "expected type instant vector in call to function {name}, got {}",
                                t.documented()
                            ),
                        ));
                    }
                    let arg_pos = arg.pos_range();
                    match arg {
                        Expr::VectorSelector(vs) if vs.name.is_some() => {
                            return Err(self.err(
                                arg_pos,
                                "expected label selectors only, got vector selector instead",
                            ))
                        }
                        Expr::VectorSelector(vs) => vs.bypass_empty_matcher_check = true,
                        _ => return Err(self.err(arg_pos, "expected label selectors only")),
                    }
                }
                for (i, arg) in c.args.iter_mut().enumerate() {
                    let idx = if i >= nargs {
                        if f.variadic == 0 {
                            break;
                        }
                        nargs - 1
                    } else {
                        i
                    };
                    let t = self.check(arg)?;
                    if t != f.arg_types[idx] {
                        return Err(self.err(
                            arg.pos_range(),
                            format!(
                                "expected type {} in call to function {name}, got {}",
                                f.arg_types[idx].documented(),
                                t.documented()
                            ),
                        ));
                    }
                }
            }
            Expr::Unary { expr, pos, .. } => {
                let t = self.check(expr)?;
                if t != ValueType::Scalar && t != ValueType::Vector {
                    return Err(self.err(
                        *pos,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(t.documented())
                        ),
                    ));
                }
            }
            Expr::Subquery(s) => {
                let t = self.check(&mut s.expr)?;
                if t != ValueType::Vector {
                    return Err(self.err(
                        s.pos,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.api_name()
                        ),
                    ));
                }
            }
            Expr::MatrixSelector(m) => self.check_vs(&m.vector)?,
            Expr::VectorSelector(vs) => self.check_vs(vs)?,
        }
        Ok(e.value_type())
    }

    fn check_vs(&self, vs: &VectorSelector) -> CResult<()> {
        if let Some(name) = &vs.name {
            let n = vs.matchers.len().saturating_sub(1);
            for m in &vs.matchers[..n] {
                if m.name == METRIC_NAME {
                    return Err(self.err(
                        vs.pos,
                        format!(
                            "metric name must not be set twice: {} or {}",
                            go_quote(name),
                            go_quote(&m.value)
                        ),
                    ));
                }
            }
            return Ok(());
        }
        if !vs.bypass_empty_matcher_check && vs.matchers.iter().all(|m| m.matches("")) {
            return Err(self.err(
                vs.pos,
                "vector selector must contain at least one non-empty matcher",
            ));
        }
        Ok(())
    }
}
