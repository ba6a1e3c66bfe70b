//! The PromQL abstract syntax tree produced by [`crate::parser::parse`].
//!
//! Shapes follow Prometheus 3's `promql/parser/ast.go`, in Rust form:
//!
//! * every node knows its byte range in the query ([`PosRange`]); positions are *ignored by
//!   equality* so that `parse(print(ast)) == ast` holds and tests can compare trees built by hand;
//! * times are integer **milliseconds** (offsets may be negative, `@` timestamps are ms since the
//!   epoch);
//! * a range, subquery step or offset is a [`Duration`]: either a constant (already folded by the
//!   parser, as Prometheus's engine would fold it before evaluation) or a [`DurationExpr`] that uses
//!   `step()` / `range()` and must be computed by the evaluator per query
//!   ([`DurationExpr::eval_secs`] / [`Duration::resolve_ms`]);
//! * the type checking of Prometheus's `checkAST` has been done: an `Expr` handed out by the parser
//!   is well-typed, [`Expr::value_type`] is its result type, and
//!   [`BinaryExpr::matching`] is `Some` exactly when both operands are instant vectors.
//!
//! Experimental Prometheus features (enabled by default here, see
//! [`crate::parser::ParseOptions`]) are marked **experimental** below.

use std::fmt;

use strata_tsdb::Matcher;

pub use super::functions::{Function, FUNCTIONS};

/// A byte range `[start, end)` in the query text.
///
/// **Equality ignores positions**: two `PosRange`s always compare equal, so that ASTs compare by
/// structure only.
#[derive(Clone, Copy, Debug, Default)]
pub struct PosRange {
    pub start: usize,
    pub end: usize,
}

impl PartialEq for PosRange {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PosRange {}

impl PosRange {
    pub fn new(start: usize, end: usize) -> Self {
        PosRange { start, end }
    }

    /// The smallest range covering both.
    pub fn merge(self, o: PosRange) -> PosRange {
        PosRange {
            start: self.start.min(o.start),
            end: self.end.max(o.end),
        }
    }

    /// `line:col` of `start` in `query` (1-based; column in bytes), as Prometheus's
    /// `PositionRange.StartPosInput` — used in parse errors and in annotations (`... (1:6)`).
    pub fn start_pos_input(&self, query: &str) -> String {
        if query.is_empty() {
            return "unknown position".to_string();
        }
        let pos = self.start;
        if pos > query.len() {
            return "invalid position".to_string();
        }
        let mut line = 1;
        let mut last_nl: isize = -1;
        for (i, b) in query.as_bytes()[..pos].iter().enumerate() {
            if *b == b'\n' {
                last_nl = i as isize;
                line += 1;
            }
        }
        format!("{}:{}", line, pos as isize - last_nl)
    }
}

/// The four PromQL value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    Scalar,
    String,
    /// Instant vector.
    Vector,
    /// Range vector (matrix).
    Matrix,
}

impl ValueType {
    /// The name Prometheus uses in error messages (`instant vector`, `range vector`, ...).
    pub fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::String => "string",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
        }
    }

    /// The name used in the HTTP API's `resultType` (`scalar`, `string`, `vector`, `matrix`).
    pub fn api_name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::String => "string",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.documented())
    }
}

/// A PromQL expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number: `1`, `0x1f`, `1e3`, `Inf`, `NaN`, or a duration used as a number (`1m` → 60).
    /// A leading `-`/`+` on a literal is folded into it (`-1` is a literal, as in Prometheus).
    NumberLiteral { val: f64, pos: PosRange },
    /// A string literal, unquoted (escapes resolved).
    StringLiteral { val: String, pos: PosRange },
    /// `name{matchers}` with optional modifiers.
    VectorSelector(VectorSelector),
    /// `selector[range]`.
    MatrixSelector(MatrixSelector),
    /// `expr[range:step]`.
    Subquery(SubqueryExpr),
    /// `func(args...)`.
    Call(Call),
    /// `op [by|without (labels)] ([param,] expr)`.
    Aggregate(AggregateExpr),
    /// `lhs op [bool] [on|ignoring (..)] [group_left|group_right (..)] [fill..] rhs`.
    Binary(BinaryExpr),
    /// `-expr` / `+expr` where `expr` is not a number literal.
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
        pos: PosRange,
    },
    /// `(expr)`.
    Paren { expr: Box<Expr>, pos: PosRange },
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Pos,
}

/// `@` modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtModifier {
    /// `@ <float seconds>`, stored as milliseconds since the epoch.
    Timestamp(i64),
    /// `@ start()`: the query's start time.
    Start,
    /// `@ end()`: the query's end time.
    End,
}

/// A range, subquery step or offset.
#[derive(Clone, Debug, PartialEq)]
pub enum Duration {
    /// A constant, in milliseconds (offsets may be negative).
    Ms(i64),
    /// **Experimental** (duration expressions): a duration computed at query time because it
    /// uses `step()` or `range()`.
    Expr(Box<DurationExpr>),
}

impl Duration {
    /// The constant value, if known at parse time.
    pub fn as_ms(&self) -> Option<i64> {
        match self {
            Duration::Ms(v) => Some(*v),
            Duration::Expr(_) => None,
        }
    }

    /// Resolves the duration for a query with the given step and range (end − start), both in
    /// ms, applying Prometheus's rules (`duration must be greater than 0` unless
    /// `allow_negative`, NaN/Inf rejected, result truncated to whole milliseconds).
    pub fn resolve_ms(
        &self,
        step_ms: i64,
        range_ms: i64,
        allow_negative: bool,
    ) -> Result<i64, String> {
        match self {
            Duration::Ms(v) => Ok(*v),
            Duration::Expr(e) => {
                let secs = e.eval_secs(step_ms, range_ms)?;
                secs_to_duration_ms(secs, allow_negative)
            }
        }
    }
}

/// Checks a computed duration (in seconds) and converts it to ms as Prometheus's engine does.
pub(crate) fn secs_to_duration_ms(secs: f64, allow_negative: bool) -> Result<i64, String> {
    if secs.is_nan() || secs.is_infinite() {
        return Err("duration is NaN or infinite".into());
    }
    if secs <= 0.0 && !allow_negative {
        return Err("duration must be greater than 0".into());
    }
    if !(-9_223_372_036.854_775..=9_223_372_036.854_775).contains(&secs) {
        return Err("duration is out of range".into());
    }
    Ok((secs * 1000.0) as i64)
}

/// **Experimental**: an arithmetic duration expression (`[5m + step()]`, `offset -(step()*2)`).
/// Values are in seconds (a duration literal `5m` is 300, a plain number `2` is 2).
#[derive(Clone, Debug, PartialEq)]
pub enum DurationExpr {
    /// A duration literal or number, in seconds.
    Number(f64),
    /// `step()`: the query step (0 for instant queries).
    Step,
    /// `range()`: the query range, end − start (0 for instant queries).
    Range,
    /// `-e` (unary plus is dropped).
    Neg(Box<DurationExpr>),
    /// `(e)`; kept so printing round-trips.
    Paren(Box<DurationExpr>),
    /// `lhs op rhs` with `+ - * / % ^`.
    Binary {
        op: DurationOp,
        lhs: Box<DurationExpr>,
        rhs: Box<DurationExpr>,
    },
    /// `min_of(a, b)`.
    MinOf(Box<DurationExpr>, Box<DurationExpr>),
    /// `max_of(a, b)`.
    MaxOf(Box<DurationExpr>, Box<DurationExpr>),
}

/// Operators of duration expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DurationOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl DurationExpr {
    /// True if the value depends on the query (`step()` / `range()` inside).
    pub fn is_dynamic(&self) -> bool {
        match self {
            DurationExpr::Number(_) => false,
            DurationExpr::Step | DurationExpr::Range => true,
            DurationExpr::Neg(e) | DurationExpr::Paren(e) => e.is_dynamic(),
            DurationExpr::Binary { lhs, rhs, .. }
            | DurationExpr::MinOf(lhs, rhs)
            | DurationExpr::MaxOf(lhs, rhs) => lhs.is_dynamic() || rhs.is_dynamic(),
        }
    }

    /// Computes the value in seconds for a query with the given step and range (both ms).
    /// Errors: `division by zero`, `modulo by zero`.
    pub fn eval_secs(&self, step_ms: i64, range_ms: i64) -> Result<f64, String> {
        Ok(match self {
            DurationExpr::Number(v) => *v,
            DurationExpr::Step => step_ms as f64 / 1000.0,
            DurationExpr::Range => range_ms as f64 / 1000.0,
            DurationExpr::Neg(e) => -e.eval_secs(step_ms, range_ms)?,
            DurationExpr::Paren(e) => e.eval_secs(step_ms, range_ms)?,
            DurationExpr::MinOf(a, b) => {
                let (a, b) = (
                    a.eval_secs(step_ms, range_ms)?,
                    b.eval_secs(step_ms, range_ms)?,
                );
                go_min(a, b)
            }
            DurationExpr::MaxOf(a, b) => {
                let (a, b) = (
                    a.eval_secs(step_ms, range_ms)?,
                    b.eval_secs(step_ms, range_ms)?,
                );
                go_max(a, b)
            }
            DurationExpr::Binary { op, lhs, rhs } => {
                let l = lhs.eval_secs(step_ms, range_ms)?;
                let r = rhs.eval_secs(step_ms, range_ms)?;
                match op {
                    DurationOp::Add => l + r,
                    DurationOp::Sub => l - r,
                    DurationOp::Mul => l * r,
                    DurationOp::Div => {
                        if r == 0.0 {
                            return Err("division by zero".into());
                        }
                        l / r
                    }
                    DurationOp::Mod => {
                        if r == 0.0 {
                            return Err("modulo by zero".into());
                        }
                        l % r
                    }
                    DurationOp::Pow => l.powf(r),
                }
            }
        })
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// An instant vector selector.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorSelector {
    /// The metric name written before the braces (`foo{...}`), if any. A name given inside the
    /// braces (`{__name__="foo"}` or `{"foo"}`) is only a matcher.
    pub name: Option<String>,
    /// All matchers. When `name` is set, the last one is `__name__="<name>"` (as in Prometheus).
    pub matchers: Vec<Matcher>,
    /// `offset`, ms (negative = into the future).
    pub offset: Option<Duration>,
    /// `@` modifier.
    pub at: Option<AtModifier>,
    /// **Experimental** (extended range selectors): `anchored` modifier.
    pub anchored: bool,
    /// **Experimental** (extended range selectors): `smoothed` modifier.
    pub smoothed: bool,
    /// True for the second argument of `info()`, which may match the empty string only.
    pub bypass_empty_matcher_check: bool,
    pub pos: PosRange,
}

impl VectorSelector {
    /// A plain `name` selector (for building ASTs by hand).
    pub fn new(name: &str) -> Self {
        VectorSelector {
            name: Some(name.to_string()),
            matchers: vec![Matcher::equal(strata_tsdb::labels::METRIC_NAME, name)],
            offset: None,
            at: None,
            anchored: false,
            smoothed: false,
            bypass_empty_matcher_check: false,
            pos: PosRange::default(),
        }
    }
}

/// A range vector selector `vs[range]`. Modifiers (`offset`, `@`, `anchored`, `smoothed`)
/// live in `vector`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixSelector {
    pub vector: VectorSelector,
    /// The range (> 0 when constant).
    pub range: Duration,
    pub pos: PosRange,
}

impl MatrixSelector {
    /// The constant range in ms (None if it is a duration expression).
    pub fn range_ms(&self) -> Option<i64> {
        self.range.as_ms()
    }
}

/// A subquery `expr[range:step] @ .. offset ..`.
#[derive(Clone, Debug, PartialEq)]
pub struct SubqueryExpr {
    pub expr: Box<Expr>,
    pub range: Duration,
    /// `None` = default resolution (the engine's default evaluation interval).
    pub step: Option<Duration>,
    pub offset: Option<Duration>,
    pub at: Option<AtModifier>,
    pub pos: PosRange,
}

/// A function call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The function's signature (from [`FUNCTIONS`]).
    pub func: &'static Function,
    pub args: Vec<Expr>,
    pub pos: PosRange,
}

/// Aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    /// **Experimental**.
    Limitk,
    /// **Experimental**.
    LimitRatio,
}

impl AggregateOp {
    pub const ALL: [AggregateOp; 14] = [
        AggregateOp::Sum,
        AggregateOp::Avg,
        AggregateOp::Count,
        AggregateOp::Min,
        AggregateOp::Max,
        AggregateOp::Group,
        AggregateOp::Stddev,
        AggregateOp::Stdvar,
        AggregateOp::Topk,
        AggregateOp::Bottomk,
        AggregateOp::CountValues,
        AggregateOp::Quantile,
        AggregateOp::Limitk,
        AggregateOp::LimitRatio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggregateOp::Sum => "sum",
            AggregateOp::Avg => "avg",
            AggregateOp::Count => "count",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Group => "group",
            AggregateOp::Stddev => "stddev",
            AggregateOp::Stdvar => "stdvar",
            AggregateOp::Topk => "topk",
            AggregateOp::Bottomk => "bottomk",
            AggregateOp::CountValues => "count_values",
            AggregateOp::Quantile => "quantile",
            AggregateOp::Limitk => "limitk",
            AggregateOp::LimitRatio => "limit_ratio",
        }
    }

    /// Looks an aggregation up by (lower-case) name.
    pub fn from_name(s: &str) -> Option<AggregateOp> {
        AggregateOp::ALL.into_iter().find(|o| o.name() == s)
    }

    /// Takes a parameter (`topk(3, x)`).
    pub fn has_param(self) -> bool {
        matches!(
            self,
            AggregateOp::Topk
                | AggregateOp::Bottomk
                | AggregateOp::CountValues
                | AggregateOp::Quantile
                | AggregateOp::Limitk
                | AggregateOp::LimitRatio
        )
    }

    pub fn is_experimental(self) -> bool {
        matches!(self, AggregateOp::Limitk | AggregateOp::LimitRatio)
    }
}

/// An aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateExpr {
    pub op: AggregateOp,
    pub expr: Box<Expr>,
    /// The parameter of `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`.
    pub param: Option<Box<Expr>>,
    /// `by (...)` / `without (...)` labels, in the written order.
    pub grouping: Vec<String>,
    /// True for `without`.
    pub without: bool,
    pub pos: PosRange,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
    /// **Experimental** `</`: trims the upper part of native histograms (`h </ 1.5`).
    TrimUpper,
    /// **Experimental** `>/`: trims the lower part of native histograms.
    TrimLower,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Atan2 => "atan2",
            BinaryOp::Eql => "==",
            BinaryOp::Neq => "!=",
            BinaryOp::Gtr => ">",
            BinaryOp::Lss => "<",
            BinaryOp::Gte => ">=",
            BinaryOp::Lte => "<=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Unless => "unless",
            BinaryOp::TrimUpper => "</",
            BinaryOp::TrimLower => ">/",
        }
    }

    /// `== != > < >= <=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eql
                | BinaryOp::Neq
                | BinaryOp::Gtr
                | BinaryOp::Lss
                | BinaryOp::Gte
                | BinaryOp::Lte
        )
    }

    /// `and or unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    /// Binding strength, higher binds tighter: `or`=1, `and unless`=2, comparisons and trims=3,
    /// `+ -`=4, `* / % atan2`=5, `^`=6 (right-associative).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Eql
            | BinaryOp::Neq
            | BinaryOp::Gtr
            | BinaryOp::Lss
            | BinaryOp::Gte
            | BinaryOp::Lte
            | BinaryOp::TrimUpper
            | BinaryOp::TrimLower => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::Atan2 => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub fn is_right_assoc(self) -> bool {
        self == BinaryOp::Pow
    }
}

/// Cardinality of a vector match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorMatchCardinality {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// How the two vectors of a binary operation are matched.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorMatching {
    /// `OneToOne` by default, `ManyToOne` for `group_left`, `OneToMany` for `group_right`,
    /// `ManyToMany` for set operators.
    pub card: VectorMatchCardinality,
    /// True for `on(...)`, false for `ignoring(...)` or no clause.
    pub on: bool,
    /// The `on`/`ignoring` label list.
    pub labels: Vec<String>,
    /// The `group_left`/`group_right` label list (labels copied from the "one" side).
    pub include: Vec<String>,
    /// **Experimental** `fill(v)` / `fill_left(v)`: value used for a missing left-hand series.
    pub fill_lhs: Option<f64>,
    /// **Experimental** `fill(v)` / `fill_right(v)`: value used for a missing right-hand series.
    pub fill_rhs: Option<f64>,
}

impl Default for VectorMatching {
    fn default() -> Self {
        VectorMatching {
            card: VectorMatchCardinality::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
            fill_lhs: None,
            fill_rhs: None,
        }
    }
}

/// A binary operation.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryExpr {
    pub op: BinaryOp,
    pub lhs: Box<Expr>,
    pub rhs: Box<Expr>,
    /// `bool` modifier (comparisons only): return 0/1 instead of filtering.
    pub return_bool: bool,
    /// Present iff both sides are instant vectors.
    pub matching: Option<VectorMatching>,
}

impl Expr {
    /// The type the expression evaluates to.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::NumberLiteral { .. } => ValueType::Scalar,
            Expr::StringLiteral { .. } => ValueType::String,
            Expr::VectorSelector(_) | Expr::Aggregate(_) => ValueType::Vector,
            Expr::MatrixSelector(_) | Expr::Subquery(_) => ValueType::Matrix,
            Expr::Call(c) => c.func.return_type,
            Expr::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar
                    && b.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Unary { expr, .. } | Expr::Paren { expr, .. } => expr.value_type(),
        }
    }

    /// The byte range of the expression in the query, as Prometheus computes it.
    pub fn pos_range(&self) -> PosRange {
        match self {
            Expr::NumberLiteral { pos, .. }
            | Expr::StringLiteral { pos, .. }
            | Expr::Unary { pos, .. }
            | Expr::Paren { pos, .. } => *pos,
            Expr::VectorSelector(v) => v.pos,
            Expr::MatrixSelector(m) => m.pos,
            Expr::Subquery(s) => s.pos,
            Expr::Call(c) => c.pos,
            Expr::Aggregate(a) => a.pos,
            Expr::Binary(b) => b.lhs.pos_range().merge(b.rhs.pos_range()),
        }
    }

    /// Removes any number of enclosing parentheses.
    pub fn unparen(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren { expr, .. } = e {
            e = expr;
        }
        e
    }

    /// Convenience constructor of a number literal (position 0).
    pub fn number(val: f64) -> Expr {
        Expr::NumberLiteral {
            val,
            pos: PosRange::default(),
        }
    }

    /// Convenience constructor of a string literal (position 0).
    pub fn string(val: &str) -> Expr {
        Expr::StringLiteral {
            val: val.to_string(),
            pos: PosRange::default(),
        }
    }
}
