//! The recursive-descent (precedence-climbing) parser over the lexer's tokens. It follows the
//! grammar of Prometheus's `generated_parser.y`, including its operator precedences, the
//! keywords usable as metric or label names, and its error messages.
//!
//! Every error is final: the first error Prometheus would record is the one it reports, so the
//! parser stops at the first one.

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{MatchType, Matcher};

use super::ast::*;
use super::functions::get_function;
use super::lexer::{lex, Token, T};
use super::ParseOptions;
use crate::error::ParseError;

/// Maximum nesting of the parser's recursion (parentheses, function calls, unary operators...).
pub const MAX_NESTING: usize = 256;
/// Maximum depth of the produced tree (binary operator chains count one level per operator).
pub const MAX_TREE_DEPTH: usize = 2048;

type PResult<T> = Result<T, ParseError>;

pub(crate) struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    i: usize,
    opts: ParseOptions,
    nesting: usize,
    tree_depth: usize,
}

fn binop(t: T) -> Option<BinaryOp> {
    Some(match t {
        T::Add => BinaryOp::Add,
        T::Sub => BinaryOp::Sub,
        T::Mul => BinaryOp::Mul,
        T::Div => BinaryOp::Div,
        T::Mod => BinaryOp::Mod,
        T::Pow => BinaryOp::Pow,
        T::Atan2 => BinaryOp::Atan2,
        T::Eqlc => BinaryOp::Eql,
        T::Neq => BinaryOp::Neq,
        T::Gtr => BinaryOp::Gtr,
        T::Lss => BinaryOp::Lss,
        T::Gte => BinaryOp::Gte,
        T::Lte => BinaryOp::Lte,
        T::Land => BinaryOp::And,
        T::Lor => BinaryOp::Or,
        T::Lunless => BinaryOp::Unless,
        T::TrimUpper => BinaryOp::TrimUpper,
        T::TrimLower => BinaryOp::TrimLower,
        _ => return None,
    })
}

/// Tokens that may name a metric (`metric_identifier` in the grammar).
fn is_metric_identifier(t: T) -> bool {
    matches!(
        t,
        T::Identifier
            | T::MetricIdentifier
            | T::Agg(_)
            | T::By
            | T::Fill
            | T::FillLeft
            | T::FillRight
            | T::Land
            | T::Lor
            | T::Lunless
            | T::Offset
            | T::Without
            | T::Start
            | T::End
            | T::Step
            | T::Range
            | T::Anchored
            | T::Smoothed
            | T::MaxOf
            | T::MinOf
    )
}

/// Tokens that may be a label name in grouping lists (`maybe_label`).
fn is_maybe_label(t: T) -> bool {
    matches!(
        t,
        T::Identifier
            | T::MetricIdentifier
            | T::Agg(_)
            | T::Bool
            | T::By
            | T::GroupLeft
            | T::GroupRight
            | T::Fill
            | T::FillLeft
            | T::FillRight
            | T::Ignoring
            | T::Land
            | T::Lor
            | T::Lunless
            | T::Offset
            | T::On
            | T::Start
            | T::End
            | T::Atan2
            | T::Step
            | T::Range
            | T::Anchored
            | T::Smoothed
            | T::MaxOf
            | T::MinOf
    )
}

/// Parses a PromQL number as Prometheus does (`strconv.ParseInt(s, 0, 64)`, then `ParseFloat`).
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Ok(f64::INFINITY),
        "-inf" => return Ok(f64::NEG_INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    let clean: String = s.chars().filter(|c| *c != '_').collect();
    if let Some(hex) = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        return i64::from_str_radix(hex, 16).map(|v| v as f64).map_err(|_| {
            format!(
                "strconv.ParseFloat: parsing {}: invalid syntax",
                super::lexer::go_quote(s)
            )
        });
    }
    if clean.len() > 1 && clean.starts_with('0') && clean.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = i64::from_str_radix(&clean[1..], 8) {
            return Ok(v as f64);
        }
    }
    if let Ok(v) = clean.parse::<i64>() {
        return Ok(v as f64);
    }
    match clean.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            super::lexer::go_quote(s)
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            super::lexer::go_quote(s)
        )),
    }
}

/// Prometheus's `model.ParseDuration`, in milliseconds, with Go's quoting in errors.
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, String> {
    strata_tsdb::duration::parse_duration_ms(s).map_err(|e| e.message_with(&super::lexer::go_quote))
}

fn duration_literal_out_of_range(secs: f64) -> bool {
    let bound = i64::MAX as f64 / 1e9;
    !(-bound..=bound).contains(&secs)
}

/// Rounds literal seconds to ms (Prometheus rounds to ns; Strata keeps ms).
fn secs_to_ms_round(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// A duration expression being parsed, with the position of its first token.
struct DurParsed {
    expr: DurationExpr,
    pos: PosRange,
    /// A plain (possibly signed) literal, not parenthesised.
    literal: bool,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str, opts: ParseOptions) -> Self {
        Parser {
            input,
            toks: lex(input),
            i: 0,
            opts,
            nesting: 0,
            tree_depth: 0,
        }
    }

    fn err(&self, pos: PosRange, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.input, pos, msg)
    }

    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_t(&self) -> T {
        self.peek().t
    }

    fn peek2_t(&self) -> T {
        self.toks[(self.i + 1).min(self.toks.len() - 1)].t
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn tok_range(t: &Token) -> PosRange {
        PosRange::new(t.pos, t.end())
    }

    /// `unexpected <token>[ in <ctx>][, expected <exp>]`, or the lexer's error if the current token
    /// is one.
    fn unexpected(&self, ctx: &str, expected: &str) -> ParseError {
        let t = self.peek();
        if t.t == T::Error {
            return self.err(PosRange::new(t.pos, self.input.len()), t.val.clone());
        }
        let mut msg = format!("unexpected {}", t.desc());
        if !ctx.is_empty() {
            msg.push_str(" in ");
            msg.push_str(ctx);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        self.err(Self::tok_range(t), msg)
    }

    fn expect(&mut self, t: T, ctx: &str, expected: &str) -> PResult<Token> {
        if self.peek_t() == t {
            Ok(self.bump())
        } else {
            Err(self.unexpected(ctx, expected))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.nesting += 1;
        self.tree_depth += 1;
        if self.nesting > MAX_NESTING || self.tree_depth > MAX_TREE_DEPTH {
            let t = self.peek();
            return Err(self.err(
                PosRange::new(t.pos, t.end()),
                format!("expression nesting is too deep (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
        self.tree_depth -= 1;
    }

    /// Parses a whole expression (`START_EXPRESSION expr EOF`).
    pub(crate) fn parse_top(&mut self) -> PResult<Expr> {
        if self.peek_t() == T::Eof {
            return Err(self.err(PosRange::new(0, 0), "no expression found in input"));
        }
        let e = self.parse_expr()?;
        if self.peek_t() != T::Eof {
            return Err(self.unexpected("", ""));
        }
        Ok(e)
    }

    /// Parses `START_METRIC_SELECTOR vector_selector EOF`.
    pub(crate) fn parse_selector_top(&mut self) -> PResult<VectorSelector> {
        let t = self.peek_t();
        let vs = if t == T::LBrace || is_metric_identifier(t) {
            self.parse_vector_selector()?
        } else {
            return Err(self.unexpected("", ""));
        };
        if self.peek_t() != T::Eof {
            return Err(self.unexpected("", ""));
        }
        Ok(vs)
    }

    fn parse_expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.parse_binary(1);
        self.leave();
        r
    }

    fn parse_binary(&mut self, min_prec: u8) -> PResult<Expr> {
        let lhs = self.parse_unary()?;
        let saved_depth = self.tree_depth;
        let r = self.parse_binary_rest(lhs, min_prec);
        self.tree_depth = saved_depth;
        r
    }

    fn parse_binary_rest(&mut self, mut lhs: Expr, min_prec: u8) -> PResult<Expr> {
        while let Some(op) = binop(self.peek_t()) {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.bump();
            self.tree_depth += 1;
            if self.tree_depth > MAX_TREE_DEPTH {
                let t = self.peek();
                return Err(self.err(
                    PosRange::new(t.pos, t.end()),
                    format!("expression is too deeply nested (more than {MAX_TREE_DEPTH} levels)"),
                ));
            }
            let (return_bool, matching) = self.parse_bin_modifiers()?;
            let next = if op.is_right_assoc() { prec } else { prec + 1 };
            self.enter()?;
            let rhs = self.parse_binary(next);
            self.leave();
            let rhs = rhs?;
            lhs = Expr::Binary(BinaryExpr {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool,
                matching: Some(matching),
            });
        }
        Ok(lhs)
    }

    fn parse_bin_modifiers(&mut self) -> PResult<(bool, VectorMatching)> {
        let mut vm = VectorMatching::default();
        let return_bool = if self.peek_t() == T::Bool {
            self.bump();
            true
        } else {
            false
        };
        if matches!(self.peek_t(), T::On | T::Ignoring) {
            vm.on = self.bump().t == T::On;
            vm.labels = self.parse_grouping_labels()?;
            match self.peek_t() {
                T::GroupLeft | T::GroupRight => {
                    vm.card = if self.bump().t == T::GroupLeft {
                        VectorMatchCardinality::ManyToOne
                    } else {
                        VectorMatchCardinality::OneToMany
                    };
                    if self.peek_t() == T::LParen {
                        vm.include = self.parse_grouping_labels()?;
                    }
                }
                _ => {}
            }
        }
        let start = self.peek().pos;
        match self.peek_t() {
            T::Fill => {
                self.bump();
                let v = self.parse_fill_value()?;
                vm.fill_lhs = Some(v);
                vm.fill_rhs = Some(v);
            }
            T::FillLeft => {
                self.bump();
                vm.fill_lhs = Some(self.parse_fill_value()?);
                if self.peek_t() == T::FillRight {
                    self.bump();
                    vm.fill_rhs = Some(self.parse_fill_value()?);
                }
            }
            T::FillRight => {
                self.bump();
                vm.fill_rhs = Some(self.parse_fill_value()?);
                if self.peek_t() == T::FillLeft {
                    self.bump();
                    vm.fill_lhs = Some(self.parse_fill_value()?);
                }
            }
            _ => {}
        }
        if (vm.fill_lhs.is_some() || vm.fill_rhs.is_some())
            && !self.opts.enable_binop_fill_modifiers
        {
            let end = self.toks[self.i.saturating_sub(1)].end();
            return Err(self.err(
                PosRange::new(start, end),
                "binop fill modifiers are experimental and not enabled",
            ));
        }
        Ok((return_bool, vm))
    }

    fn parse_fill_value(&mut self) -> PResult<f64> {
        self.expect(T::LParen, "", "")?;
        let neg = match self.peek_t() {
            T::Add => {
                self.bump();
                false
            }
            T::Sub => {
                self.bump();
                true
            }
            _ => false,
        };
        let v = match self.peek_t() {
            T::Number | T::Duration => {
                let t = self.bump();
                self.number_value(&t)?
            }
            _ => return Err(self.unexpected("", "")),
        };
        self.expect(T::RParen, "", "")?;
        Ok(if neg { -v } else { v })
    }

    fn number_value(&self, t: &Token) -> PResult<f64> {
        match t.t {
            T::Number => parse_number(&t.val)
                .map_err(|e| self.err(Self::tok_range(t), format!("error parsing number: {e}"))),
            _ => parse_duration_ms(&t.val)
                .map(|ms| ms as f64 / 1000.0)
                .map_err(|e| self.err(Self::tok_range(t), e)),
        }
    }

    /// `( label, ... )`.
    fn parse_grouping_labels(&mut self) -> PResult<Vec<String>> {
        if self.peek_t() != T::LParen {
            return Err(self.unexpected("grouping opts", "\"(\""));
        }
        self.bump();
        let mut labels = Vec::new();
        if self.peek_t() == T::RParen {
            self.bump();
            return Ok(labels);
        }
        loop {
            let t = self.peek().clone();
            if is_maybe_label(t.t) {
                self.bump();
                labels.push(t.val.clone());
            } else if t.t == T::Str {
                self.bump();
                let v = self.unquote(&t)?;
                if v.is_empty() {
                    return Err(self.err(
                        Self::tok_range(&t),
                        format!(
                            "invalid label name for grouping: {}",
                            super::lexer::go_quote(&v)
                        ),
                    ));
                }
                labels.push(v);
            } else {
                return Err(self.unexpected("grouping opts", "label"));
            }
            match self.peek_t() {
                T::Comma => {
                    self.bump();
                    if self.peek_t() == T::RParen {
                        self.bump();
                        return Ok(labels);
                    }
                }
                T::RParen => {
                    self.bump();
                    return Ok(labels);
                }
                _ => return Err(self.unexpected("grouping opts", "\",\" or \")\"")),
            }
        }
    }

    fn parse_unary(&mut self) -> PResult<Expr> {
        match self.peek_t() {
            T::Add | T::Sub => {
                let op_tok = self.bump();
                self.enter()?;
                let operand = self.parse_binary(BinaryOp::Pow.precedence());
                self.leave();
                let operand = operand?;
                let end = operand.pos_range().end;
                Ok(match operand {
                    Expr::NumberLiteral { val, .. } => Expr::NumberLiteral {
                        val: if op_tok.t == T::Sub { -val } else { val },
                        pos: PosRange::new(op_tok.pos, end),
                    },
                    e => Expr::Unary {
                        op: if op_tok.t == T::Sub {
                            UnaryOp::Neg
                        } else {
                            UnaryOp::Pos
                        },
                        expr: Box::new(e),
                        pos: PosRange::new(op_tok.pos, end),
                    },
                })
            }
            _ => self.parse_postfix(),
        }
    }

    fn last_end(&self) -> usize {
        self.toks[self.i.saturating_sub(1)].end()
    }

    fn parse_postfix(&mut self) -> PResult<Expr> {
        let mut e = self.parse_primary()?;
        loop {
            match self.peek_t() {
                T::LBracket => e = self.parse_range_or_subquery(e)?,
                T::Offset => e = self.parse_offset(e)?,
                T::At => e = self.parse_at(e)?,
                T::Anchored | T::Smoothed => {
                    let anchored = self.bump().t == T::Anchored;
                    e = self.set_anchored_smoothed(e, anchored)?;
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn set_anchored_smoothed(&mut self, mut e: Expr, anchored: bool) -> PResult<Expr> {
        let name = if anchored { "anchored" } else { "smoothed" };
        let range = e.pos_range();
        if !self.opts.enable_extended_range_selectors {
            return Err(self.err(
                range,
                format!("{name} modifier is experimental and not enabled"),
            ));
        }
        let vs = match &mut e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(m) => &mut m.vector,
            Expr::Subquery(_) => {
                return Err(self.err(
                    range,
                    format!("{name} modifier is not supported for subqueries"),
                ))
            }
            _ => return Err(self.err(range, format!("{name} modifier not implemented"))),
        };
        if anchored {
            vs.anchored = true;
        } else {
            vs.smoothed = true;
        }
        if vs.anchored && vs.smoothed {
            return Err(self.err(
                range,
                "anchored and smoothed modifiers cannot be used together",
            ));
        }
        Ok(e)
    }

    fn set_end(e: &mut Expr, end: usize) {
        match e {
            Expr::VectorSelector(v) => v.pos.end = end,
            Expr::MatrixSelector(m) => m.pos.end = end,
            Expr::Subquery(s) => s.pos.end = end,
            _ => {}
        }
    }

    fn parse_offset(&mut self, mut e: Expr) -> PResult<Expr> {
        self.bump();
        let d = self.parse_offset_duration()?;
        let range = e.pos_range();
        let slot = match &mut e {
            Expr::VectorSelector(v) => &mut v.offset,
            Expr::MatrixSelector(m) => &mut m.vector.offset,
            Expr::Subquery(s) => &mut s.offset,
            _ => {
                return Err(self.err(
                    range,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                ))
            }
        };
        if slot.is_some() {
            return Err(self.err(range, "offset may not be set multiple times"));
        }
        *slot = Some(d);
        let end = self.last_end();
        Self::set_end(&mut e, end);
        Ok(e)
    }

    fn parse_at(&mut self, mut e: Expr) -> PResult<Expr> {
        self.bump();
        let at = match self.peek_t() {
            T::Start | T::End => {
                let t = self.bump();
                self.expect(T::LParen, "", "")?;
                self.expect(T::RParen, "", "")?;
                if t.t == T::Start {
                    AtModifier::Start
                } else {
                    AtModifier::End
                }
            }
            T::Add | T::Sub | T::Number | T::Duration => {
                let neg = match self.peek_t() {
                    T::Sub => {
                        self.bump();
                        true
                    }
                    T::Add => {
                        self.bump();
                        false
                    }
                    _ => false,
                };
                if !matches!(self.peek_t(), T::Number | T::Duration) {
                    return Err(self.unexpected("@", "timestamp"));
                }
                let t = self.bump();
                let mut v = self.number_value(&t)?;
                if neg {
                    v = -v;
                }
                if !v.is_finite() || v >= i64::MAX as f64 || v <= i64::MIN as f64 {
                    let shown = if v.is_nan() {
                        "NaN".to_string()
                    } else if v.is_infinite() {
                        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
                    } else {
                        format!("{v:.6}")
                    };
                    return Err(self.err(
                        e.pos_range(),
                        format!("timestamp out of bounds for @ modifier: {shown}"),
                    ));
                }
                AtModifier::Timestamp((v * 1000.0).round() as i64)
            }
            _ => return Err(self.unexpected("@", "timestamp")),
        };
        let range = e.pos_range();
        let slot = match &mut e {
            Expr::VectorSelector(v) => &mut v.at,
            Expr::MatrixSelector(m) => &mut m.vector.at,
            Expr::Subquery(s) => &mut s.at,
            _ => {
                return Err(self.err(
                    range,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                ))
            }
        };
        if slot.is_some() {
            return Err(self.err(range, "@ <timestamp> may not be set multiple times"));
        }
        *slot = Some(at);
        let end = self.last_end();
        Self::set_end(&mut e, end);
        Ok(e)
    }

    fn parse_range_or_subquery(&mut self, e: Expr) -> PResult<Expr> {
        let lb = self.bump();
        if !self.starts_duration_expr() {
            return Err(self.unexpected(
                "subquery or range selector",
                "number, duration, step(), or range()",
            ));
        }
        let range = self.parse_positive_duration()?;
        match self.peek_t() {
            T::RBracket => {
                let rb = self.bump();
                let vs = match e {
                    Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => vs,
                    other => {
                        let msg = match &other {
                            Expr::VectorSelector(vs) if vs.offset.is_some() => {
                                "no offset modifiers allowed before range"
                            }
                            Expr::VectorSelector(_) => "no @ modifiers allowed before range",
                            _ => "ranges only allowed for vector selectors",
                        };
                        return Err(self.err(PosRange::new(lb.pos, rb.end()), msg));
                    }
                };
                let start = vs.pos.start;
                Ok(Expr::MatrixSelector(MatrixSelector {
                    vector: vs,
                    range,
                    pos: PosRange::new(start, rb.end()),
                }))
            }
            T::Colon => {
                self.bump();
                let step = if self.peek_t() == T::RBracket {
                    None
                } else if self.starts_duration_expr() {
                    Some(self.parse_positive_duration()?)
                } else {
                    return Err(self.unexpected(
                        "subquery selector",
                        "number, duration, step(), range(), or \"]\"",
                    ));
                };
                if self.peek_t() != T::RBracket {
                    return Err(self.unexpected("subquery selector", "\"]\""));
                }
                let rb = self.bump();
                let start = e.pos_range().start;
                Ok(Expr::Subquery(SubqueryExpr {
                    expr: Box::new(e),
                    range,
                    step,
                    offset: None,
                    at: None,
                    pos: PosRange::new(start, rb.end()),
                }))
            }
            _ => Err(self.unexpected("subquery or range", "\":\" or \"]\"")),
        }
    }

    fn starts_duration_expr(&self) -> bool {
        matches!(
            self.peek_t(),
            T::Number
                | T::Duration
                | T::Add
                | T::Sub
                | T::LParen
                | T::Step
                | T::Range
                | T::MinOf
                | T::MaxOf
        )
    }

    /// `positive_duration_expr`: a range or subquery step.
    fn parse_positive_duration(&mut self) -> PResult<Duration> {
        let d = self.parse_dur_binary(1)?;
        if let DurationExpr::Number(v) = d.expr {
            if d.literal {
                if v <= 0.0 {
                    return Err(self.err(d.pos, "duration must be greater than 0"));
                }
                return Ok(Duration::Ms(secs_to_ms_round(v)));
            }
        }
        self.finish_duration(d, false)
    }

    /// Folds a constant duration expression, or keeps it for the evaluator.
    fn finish_duration(&self, d: DurParsed, allow_negative: bool) -> PResult<Duration> {
        if !self.opts.experimental_duration_expr {
            return Err(self.err(d.pos, "experimental duration expression is not enabled"));
        }
        if d.expr.is_dynamic() {
            return Ok(Duration::Expr(Box::new(d.expr)));
        }
        let secs = d.expr.eval_secs(0, 0).map_err(|m| self.err(d.pos, m))?;
        secs_to_duration_ms(secs, allow_negative)
            .map(Duration::Ms)
            .map_err(|m| self.err(d.pos, m))
    }

    /// `offset_duration_expr`.
    fn parse_offset_duration(&mut self) -> PResult<Duration> {
        let start = self.peek().pos;
        let neg = match self.peek_t() {
            T::Sub => {
                self.bump();
                Some(true)
            }
            T::Add => {
                self.bump();
                Some(false)
            }
            _ => None,
        };
        let atom = match self.peek_t() {
            T::Number | T::Duration | T::Step | T::Range | T::MinOf | T::MaxOf | T::LParen => {
                self.parse_dur_atom()?
            }
            _ => return Err(self.unexpected("offset", "number, duration, step(), or range()")),
        };
        let literal = atom.literal;
        let mut expr = atom.expr;
        if neg == Some(true) {
            expr = match expr {
                DurationExpr::Number(v) if literal => DurationExpr::Number(-v),
                e => DurationExpr::Neg(Box::new(e)),
            };
        }
        let pos = PosRange::new(start, self.last_end());
        if literal {
            if let DurationExpr::Number(v) = expr {
                if duration_literal_out_of_range(v) {
                    return Err(self.err(pos, "duration out of range"));
                }
                return Ok(Duration::Ms(secs_to_ms_round(v)));
            }
        }
        self.finish_duration(
            DurParsed {
                expr,
                pos,
                literal: false,
            },
            true,
        )
    }

    fn dur_op(t: T) -> Option<DurationOp> {
        Some(match t {
            T::Add => DurationOp::Add,
            T::Sub => DurationOp::Sub,
            T::Mul => DurationOp::Mul,
            T::Div => DurationOp::Div,
            T::Mod => DurationOp::Mod,
            T::Pow => DurationOp::Pow,
            _ => return None,
        })
    }

    fn dur_prec(op: DurationOp) -> u8 {
        match op {
            DurationOp::Add | DurationOp::Sub => 4,
            DurationOp::Mul | DurationOp::Div | DurationOp::Mod => 5,
            DurationOp::Pow => 6,
        }
    }

    fn parse_dur_binary(&mut self, min_prec: u8) -> PResult<DurParsed> {
        self.enter()?;
        let r = self.parse_dur_binary_inner(min_prec);
        self.leave();
        r
    }

    fn parse_dur_binary_inner(&mut self, min_prec: u8) -> PResult<DurParsed> {
        let mut lhs = self.parse_dur_unary()?;
        while let Some(op) = Self::dur_op(self.peek_t()) {
            let prec = Self::dur_prec(op);
            if prec < min_prec {
                break;
            }
            let op_tok = self.bump();
            if !self.starts_duration_expr() {
                return Err(self.unexpected("", ""));
            }
            let rhs = self.parse_dur_binary(if op == DurationOp::Pow {
                prec
            } else {
                prec + 1
            })?;
            if matches!(op, DurationOp::Div | DurationOp::Mod) && rhs.literal {
                if let DurationExpr::Number(v) = rhs.expr {
                    if v == 0.0 {
                        let what = if op == DurationOp::Div {
                            "division by zero"
                        } else {
                            "modulo by zero"
                        };
                        return Err(self.err(Self::tok_range(&op_tok), what));
                    }
                }
            }
            let pos = lhs.pos.merge(rhs.pos);
            lhs = DurParsed {
                expr: DurationExpr::Binary {
                    op,
                    lhs: Box::new(lhs.expr),
                    rhs: Box::new(rhs.expr),
                },
                pos,
                literal: false,
            };
        }
        Ok(lhs)
    }

    fn parse_dur_unary(&mut self) -> PResult<DurParsed> {
        match self.peek_t() {
            T::Add | T::Sub => {
                let op = self.bump();
                if !self.starts_duration_expr() {
                    return Err(self.unexpected("", ""));
                }
                let inner = self.parse_dur_binary(6)?;
                let pos = PosRange::new(op.pos, inner.pos.end);
                if op.t == T::Add {
                    return Ok(DurParsed { pos, ..inner });
                }
                Ok(match inner.expr {
                    DurationExpr::Number(v) if inner.literal => {
                        if duration_literal_out_of_range(-v) {
                            return Err(self.err(pos, "duration out of range"));
                        }
                        DurParsed {
                            expr: DurationExpr::Number(-v),
                            pos,
                            literal: true,
                        }
                    }
                    e => DurParsed {
                        expr: DurationExpr::Neg(Box::new(e)),
                        pos,
                        literal: false,
                    },
                })
            }
            _ => self.parse_dur_atom(),
        }
    }

    fn parse_dur_atom(&mut self) -> PResult<DurParsed> {
        let t = self.peek().clone();
        match t.t {
            T::Number | T::Duration => {
                self.bump();
                let v = self.number_value(&t)?;
                if duration_literal_out_of_range(v) {
                    return Err(self.err(Self::tok_range(&t), "duration out of range"));
                }
                Ok(DurParsed {
                    expr: DurationExpr::Number(v),
                    pos: Self::tok_range(&t),
                    literal: true,
                })
            }
            T::Step | T::Range => {
                self.bump();
                self.expect(T::LParen, "", "")?;
                let rp = self.expect(T::RParen, "", "")?;
                Ok(DurParsed {
                    expr: if t.t == T::Step {
                        DurationExpr::Step
                    } else {
                        DurationExpr::Range
                    },
                    pos: PosRange::new(t.pos, rp.end()),
                    literal: false,
                })
            }
            T::MinOf | T::MaxOf => {
                self.bump();
                self.expect(T::LParen, "", "")?;
                let a = self.parse_dur_binary(1)?;
                self.expect(T::Comma, "", "")?;
                let b = self.parse_dur_binary(1)?;
                let rp = self.expect(T::RParen, "", "")?;
                let (a, b) = (Box::new(a.expr), Box::new(b.expr));
                Ok(DurParsed {
                    expr: if t.t == T::MinOf {
                        DurationExpr::MinOf(a, b)
                    } else {
                        DurationExpr::MaxOf(a, b)
                    },
                    pos: PosRange::new(t.pos, rp.end()),
                    literal: false,
                })
            }
            T::LParen => {
                self.bump();
                if !self.starts_duration_expr() {
                    return Err(self.unexpected("", ""));
                }
                let inner = self.parse_dur_binary(1)?;
                let rp = self.expect(T::RParen, "", "")?;
                Ok(DurParsed {
                    expr: DurationExpr::Paren(Box::new(inner.expr)),
                    pos: PosRange::new(t.pos, rp.end()),
                    literal: false,
                })
            }
            _ => Err(self.unexpected("", "")),
        }
    }

    fn unquote(&self, t: &Token) -> PResult<String> {
        unquote_string(&t.val).map_err(|e| {
            self.err(
                Self::tok_range(t),
                format!(
                    "error unquoting string {}: {e}",
                    super::lexer::go_quote(&t.val)
                ),
            )
        })
    }

    fn parse_primary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        match t.t {
            T::Number | T::Duration => {
                self.bump();
                let val = self.number_value(&t)?;
                Ok(Expr::NumberLiteral {
                    val,
                    pos: Self::tok_range(&t),
                })
            }
            T::Str => {
                self.bump();
                Ok(Expr::StringLiteral {
                    val: self.unquote(&t)?,
                    pos: Self::tok_range(&t),
                })
            }
            T::LParen => {
                self.bump();
                let inner = self.parse_expr()?;
                let rp = self.expect(T::RParen, "", "")?;
                Ok(Expr::Paren {
                    expr: Box::new(inner),
                    pos: PosRange::new(t.pos, rp.end()),
                })
            }
            T::LBrace => Ok(Expr::VectorSelector(self.parse_vector_selector()?)),
            T::Agg(op) if matches!(self.peek2_t(), T::LParen | T::By | T::Without) => {
                self.parse_aggregate(op)
            }
            T::Identifier | T::Start | T::End | T::Step | T::Range | T::MaxOf | T::MinOf
                if self.peek2_t() == T::LParen =>
            {
                self.parse_call()
            }
            t if is_metric_identifier(t) => Ok(Expr::VectorSelector(self.parse_vector_selector()?)),
            _ => Err(self.unexpected("", "")),
        }
    }

    fn parse_call(&mut self) -> PResult<Expr> {
        let name_tok = self.bump();
        let name = name_tok.val.as_str();
        let name_range = Self::tok_range(&name_tok);
        let Some(func) = get_function(name) else {
            return Err(self.err(
                name_range,
                format!(
                    "unknown function with name {}",
                    super::lexer::go_quote(name)
                ),
            ));
        };
        if func.experimental && !self.opts.enable_experimental_functions {
            return Err(self.err(
                name_range,
                format!("function {} is not enabled", super::lexer::go_quote(name)),
            ));
        }
        self.enter()?;
        let args = self.parse_call_args();
        self.leave();
        let args = args?;
        Ok(Expr::Call(Call {
            func,
            args,
            pos: PosRange::new(name_tok.pos, self.last_end()),
        }))
    }

    /// `( expr, ... )`.
    fn parse_call_args(&mut self) -> PResult<Vec<Expr>> {
        self.expect(T::LParen, "", "")?;
        let mut args = Vec::new();
        if self.peek_t() == T::RParen {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.parse_expr()?);
            match self.peek_t() {
                T::Comma => {
                    let c = self.bump();
                    if self.peek_t() == T::RParen {
                        return Err(self.err(
                            Self::tok_range(&c),
                            "trailing commas not allowed in function call args",
                        ));
                    }
                }
                T::RParen => {
                    self.bump();
                    return Ok(args);
                }
                _ => return Err(self.unexpected("", "")),
            }
        }
    }

    fn parse_aggregate(&mut self, op: AggregateOp) -> PResult<Expr> {
        let op_tok = self.bump();
        let mut grouping = None;
        if matches!(self.peek_t(), T::By | T::Without) {
            let without = self.bump().t == T::Without;
            grouping = Some((without, self.parse_grouping_labels()?));
        }
        if self.peek_t() != T::LParen {
            return Err(self.unexpected("aggregation", ""));
        }
        self.enter()?;
        let args = self.parse_call_args();
        self.leave();
        let mut args = args?;
        if grouping.is_none() && matches!(self.peek_t(), T::By | T::Without) {
            let without = self.bump().t == T::Without;
            grouping = Some((without, self.parse_grouping_labels()?));
        }
        let pos = PosRange::new(op_tok.pos, self.last_end());
        if args.is_empty() {
            return Err(self.err(pos, "no arguments for aggregate expression provided"));
        }
        let mut desired = 1;
        if op.has_param() {
            if op.is_experimental() && !self.opts.enable_experimental_functions {
                return Err(self.err(
                    pos,
                    format!(
                        "{}() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
                        op.name()
                    ),
                ));
            }
            desired = 2;
        }
        if args.len() != desired {
            return Err(self.err(
                pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {desired}, got {}",
                    args.len()
                ),
            ));
        }
        let expr = args.pop().map(Box::new);
        let param = args.pop().map(Box::new);
        let (without, grouping) = grouping.unwrap_or((false, Vec::new()));
        Ok(Expr::Aggregate(AggregateExpr {
            op,
            expr: expr
                .ok_or_else(|| self.err(pos, "no arguments for aggregate expression provided"))?,
            param,
            grouping,
            without,
            pos,
        }))
    }

    /// `metric_identifier [label_matchers] | label_matchers`.
    fn parse_vector_selector(&mut self) -> PResult<VectorSelector> {
        let first = self.peek().clone();
        let mut name = None;
        if first.t != T::LBrace {
            self.bump();
            name = Some(first.val.clone());
        }
        let mut matchers = Vec::new();
        let mut end = first.end();
        if self.peek_t() == T::LBrace {
            self.bump();
            matchers = self.parse_label_matchers()?;
            end = self.last_end();
        }
        if let Some(n) = &name {
            matchers.push(Matcher::equal(METRIC_NAME, n.as_str()));
        }
        Ok(VectorSelector {
            name,
            matchers,
            offset: None,
            at: None,
            anchored: false,
            smoothed: false,
            bypass_empty_matcher_check: false,
            pos: PosRange::new(first.pos, end),
        })
    }

    /// The inside of `{...}`; the `{` is consumed.
    fn parse_label_matchers(&mut self) -> PResult<Vec<Matcher>> {
        let mut out = Vec::new();
        if self.peek_t() == T::RBrace {
            self.bump();
            return Ok(out);
        }
        loop {
            out.push(self.parse_label_matcher()?);
            match self.peek_t() {
                T::Comma => {
                    self.bump();
                    if self.peek_t() == T::RBrace {
                        self.bump();
                        return Ok(out);
                    }
                }
                T::RBrace => {
                    self.bump();
                    return Ok(out);
                }
                _ => return Err(self.unexpected("label matching", "\",\" or \"}\"")),
            }
        }
    }

    fn parse_label_matcher(&mut self) -> PResult<Matcher> {
        let label = self.peek().clone();
        let name = match label.t {
            T::Identifier => label.val.clone(),
            T::Str => self.unquote(&label)?,
            _ => return Err(self.unexpected("label matching", "identifier or \"}\"")),
        };
        self.bump();
        let typ = match self.peek_t() {
            T::Eql => MatchType::Equal,
            T::Neq => MatchType::NotEqual,
            T::EqlRegex => MatchType::Regexp,
            T::NeqRegex => MatchType::NotRegexp,
            _ if label.t == T::Str => {
                // `{"metric.name"}`: a quoted metric name.
                return Ok(Matcher::equal(METRIC_NAME, name));
            }
            _ => return Err(self.unexpected("label matching", "label matching operator")),
        };
        self.bump();
        if self.peek_t() != T::Str {
            return Err(self.unexpected("label matching", "string"));
        }
        let value_tok = self.bump();
        let value = self.unquote(&value_tok)?;
        Matcher::new(typ, name, value).map_err(|e| {
            self.err(
                PosRange::new(label.pos, value_tok.end()),
                regex_error_message(&e),
            )
        })
    }
}

fn regex_error_message(e: &strata_tsdb::Error) -> String {
    match e {
        strata_tsdb::Error::InvalidRegex { detail, .. } => {
            format!(
                "error parsing regexp: {}",
                detail.lines().last().unwrap_or(detail).trim()
            )
        }
        other => other.to_string(),
    }
}

/// Which quoted strings [`unquote_bytes`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteRules {
    /// Prometheus `strutil.Unquote` (PromQL string literals): `"…"`, `'…'` of any length,
    /// `` `…` ``.
    PromQL,
    /// Go `strconv.Unquote`: like PromQL, but a `'…'` literal holds exactly one character and a
    /// raw string no carriage return.
    Go,
}

/// Unquotes a complete quoted literal (quotes included) into its bytes; `None` when it is not
/// one. Escapes: `\a \b \f \n \r \t \v \\`, the enclosing quote, `\xHH`, `\uHHHH`,
/// `\UHHHHHHHH`, `\ooo`. Back-quoted strings are raw. `\x` and octal escapes may yield bytes
/// that are not UTF-8; callers decide what to do with those.
pub fn unquote_bytes(s: &str, rules: QuoteRules) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] {
        return None;
    }
    let quote = b[0];
    let inner = &s[1..s.len() - 1];
    if quote == b'`' {
        if inner.contains('`') || (rules == QuoteRules::Go && inner.contains('\r')) {
            return None;
        }
        return Some(inner.as_bytes().to_vec());
    }
    if (quote != b'"' && quote != b'\'') || inner.contains('\n') {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let mut count = 0usize;
    while let Some(c) = chars.next() {
        count += 1;
        if c as u32 == u32::from(quote) {
            return None;
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' | '"' if e as u32 == u32::from(quote) => Some(e as u8),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..n {
                v = v * radix + chars.next()?.to_digit(radix)?;
            }
            Some(v)
        };
        match e {
            'x' => out.push(take(2, 16)? as u8),
            'u' | 'U' => {
                let v = take(if e == 'u' { 4 } else { 8 }, 16)?;
                let ch = char::from_u32(v)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let v = (e as u32 - '0' as u32) * 64 + take(2, 8)?;
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    if rules == QuoteRules::Go && quote == b'\'' && count != 1 {
        return None;
    }
    Some(out)
}

/// Unquotes a PromQL string literal (`"..."`, `'...'` or `` `...` ``) with Go escapes.
/// `\x..` and octal escapes that produce bytes which are not UTF-8 are replaced (U+FFFD):
/// Rust strings cannot hold them.
pub fn unquote_string(s: &str) -> Result<String, String> {
    let out = unquote_bytes(s, QuoteRules::PromQL).ok_or_else(|| "invalid syntax".to_string())?;
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
