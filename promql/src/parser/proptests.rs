//! Property tests: printing then parsing a random well-typed AST gives the same AST, and the
//! parser never panics on arbitrary or mutated input.
//!
//! The number of cases follows proptest's `PROPTEST_CASES` environment variable (default 256);
//! e.g. `PROPTEST_CASES=1000000 cargo test -p strata-promql --release fuzz` runs a million
//! inputs.

use proptest::prelude::*;
use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{MatchType, Matcher};

use super::tests::ast_eq;
use super::*;

const NAMES: &[&str] = &[
    "foo",
    "bar_total",
    "a:b:c",
    "by",
    "sum",
    "offset",
    "start",
    "step",
    "fill",
    "and",
];
const LABELS: &[&str] = &[
    "job",
    "instance",
    "on",
    "by",
    "a.b",
    "le",
    "__name__x",
    "ünï",
];
const VALUES: &[&str] = &["", "x", "a\"b", "ü\n\t", "a.*", "b|c", "\\"];

fn pos() -> PosRange {
    PosRange::default()
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    (
        0..4u8,
        prop::sample::select(LABELS),
        prop::sample::select(VALUES),
    )
        .prop_map(|(t, n, v)| {
            let typ = [
                MatchType::Equal,
                MatchType::NotEqual,
                MatchType::Regexp,
                MatchType::NotRegexp,
            ][t as usize];
            let v = if matches!(typ, MatchType::Regexp | MatchType::NotRegexp) && v == "\\" {
                "x"
            } else {
                v
            };
            Matcher::new(typ, n, v).unwrap_or_else(|_| Matcher::equal(n, v))
        })
}

fn arb_at() -> impl Strategy<Value = Option<AtModifier>> {
    prop_oneof![
        3 => Just(None),
        1 => (-10_000_000_000i64..10_000_000_000).prop_map(|t| Some(AtModifier::Timestamp(t))),
        1 => Just(Some(AtModifier::Start)),
        1 => Just(Some(AtModifier::End)),
    ]
}

fn arb_dyn_dur() -> BoxedStrategy<DurationExpr> {
    let leaf = prop_oneof![Just(DurationExpr::Step), Just(DurationExpr::Range)];
    leaf.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| DurationExpr::Paren(Box::new(e))),
            inner
                .clone()
                .prop_map(|e| DurationExpr::Neg(Box::new(DurationExpr::Paren(Box::new(e))))),
            (inner.clone(), 1..100_000u32).prop_map(|(e, n)| DurationExpr::MinOf(
                Box::new(e),
                Box::new(DurationExpr::Number(n as f64 / 1000.0))
            )),
            (inner.clone(), 0..6u8, 1..1000u32).prop_map(|(e, o, n)| {
                let op = [
                    DurationOp::Add,
                    DurationOp::Sub,
                    DurationOp::Mul,
                    DurationOp::Div,
                    DurationOp::Mod,
                    DurationOp::Pow,
                ][o as usize];
                let l = match e {
                    e @ (DurationExpr::Binary { .. } | DurationExpr::Neg(_)) => {
                        DurationExpr::Paren(Box::new(e))
                    }
                    e => e,
                };
                DurationExpr::Binary {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(DurationExpr::Number(n as f64)),
                }
            }),
        ]
    })
    .boxed()
}

fn arb_range() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (1..100_000_000i64).prop_map(Duration::Ms),
        1 => arb_dyn_dur().prop_map(|e| Duration::Expr(Box::new(e))),
    ]
}

fn arb_offset() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        3 => Just(None),
        2 => (1..100_000_000i64, any::<bool>()).prop_map(|(v, neg)| Some(Duration::Ms(if neg { -v } else { v }))),
        1 => arb_dyn_dur().prop_map(|e| Some(Duration::Expr(Box::new(match e {
            e @ DurationExpr::Binary { .. } => DurationExpr::Paren(Box::new(e)),
            e => e,
        })))),
    ]
}

fn arb_vs() -> impl Strategy<Value = VectorSelector> {
    (
        prop::option::of(prop::sample::select(NAMES)),
        prop::collection::vec(arb_matcher(), 0..3),
        arb_offset(),
        arb_at(),
        0..4u8,
    )
        .prop_map(|(name, mut matchers, offset, at, ext)| {
            match name {
                Some(n) => matchers.push(Matcher::equal(METRIC_NAME, n)),
                None => matchers.push(Matcher::equal(METRIC_NAME, "my.metric")),
            }
            VectorSelector {
                name: name.map(str::to_string),
                matchers,
                offset,
                at,
                anchored: ext == 1,
                smoothed: ext == 2,
                bypass_empty_matcher_check: false,
                pos: pos(),
            }
        })
}

/// Wraps `e` in parentheses unless it is a primary expression.
fn primary(e: Expr) -> Expr {
    match e {
        Expr::Binary(_) | Expr::Unary { .. } | Expr::NumberLiteral { .. } => Expr::Paren {
            expr: Box::new(e),
            pos: pos(),
        },
        e => e,
    }
}

fn operand(e: Expr, op: BinaryOp, is_lhs: bool) -> Expr {
    let wrap = match &e {
        Expr::Binary(b) => {
            let (p, q) = (b.op.precedence(), op.precedence());
            p < q || (p == q && (is_lhs == op.is_right_assoc()))
        }
        Expr::Unary { .. } => is_lhs && op == BinaryOp::Pow,
        _ => false,
    };
    if wrap {
        Expr::Paren {
            expr: Box::new(e),
            pos: pos(),
        }
    } else {
        e
    }
}

fn binary(
    op: BinaryOp,
    l: Expr,
    r: Expr,
    matching: Option<VectorMatching>,
    return_bool: bool,
) -> Expr {
    Expr::Binary(BinaryExpr {
        op,
        lhs: Box::new(operand(l, op, true)),
        rhs: Box::new(operand(r, op, false)),
        return_bool,
        matching,
    })
}

fn arb_scalar_leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (0.0..1e12f64).prop_map(Expr::number),
        Just(Expr::number(f64::NAN)),
        Just(Expr::Call(Call {
            func: get_function("time").unwrap(),
            args: vec![],
            pos: pos()
        })),
    ]
}

const ARITH: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Mod,
    BinaryOp::Pow,
    BinaryOp::Atan2,
];
const CMP: &[BinaryOp] = &[
    BinaryOp::Eql,
    BinaryOp::Neq,
    BinaryOp::Gtr,
    BinaryOp::Lss,
    BinaryOp::Gte,
    BinaryOp::Lte,
];
const SET: &[BinaryOp] = &[BinaryOp::And, BinaryOp::Or, BinaryOp::Unless];

fn arb_vector_matching(set: bool) -> impl Strategy<Value = VectorMatching> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(LABELS), 0..3),
        0..3u8,
        prop::collection::vec(prop::sample::select(&["x", "y", "group_left"][..]), 0..2),
        0..4u8,
    )
        .prop_map(move |(on, labels, card, include, fill)| {
            let labels: Vec<String> = labels.into_iter().map(String::from).collect();
            let card = if set {
                VectorMatchCardinality::ManyToMany
            } else {
                [
                    VectorMatchCardinality::OneToOne,
                    VectorMatchCardinality::ManyToOne,
                    VectorMatchCardinality::OneToMany,
                ][card as usize]
            };
            let grouped = matches!(
                card,
                VectorMatchCardinality::ManyToOne | VectorMatchCardinality::OneToMany
            );
            let include = if grouped {
                include
                    .into_iter()
                    .map(String::from)
                    .filter(|l| !labels.contains(l))
                    .collect()
            } else {
                vec![]
            };
            let (fill_lhs, fill_rhs) = if set {
                (None, None)
            } else {
                match fill {
                    0 => (None, None),
                    1 => (Some(0.0), Some(0.0)),
                    2 => (Some(-1.5), None),
                    _ => (Some(1e7), Some(2.0)),
                }
            };
            VectorMatching {
                card,
                on,
                labels,
                include,
                fill_lhs,
                fill_rhs,
            }
        })
}

fn arb_scalar(depth: u32) -> BoxedStrategy<Expr> {
    if depth == 0 {
        return arb_scalar_leaf().boxed();
    }
    let d = depth - 1;
    prop_oneof![
        2 => arb_scalar_leaf(),
        1 => arb_vector(d).prop_map(|v| Expr::Call(Call { func: get_function("scalar").unwrap(), args: vec![v], pos: pos() })),
        1 => arb_scalar(d).prop_map(|e| Expr::Paren { expr: Box::new(e), pos: pos() }),
        1 => (arb_scalar(d), prop::sample::select(ARITH), arb_scalar(d)).prop_map(|(l, op, r)| binary(op, l, r, None, false)),
        1 => (arb_scalar(d), prop::sample::select(CMP), arb_scalar(d)).prop_map(|(l, op, r)| binary(op, l, r, None, true)),
        1 => arb_scalar(d).prop_map(|e| Expr::Unary { op: UnaryOp::Neg, expr: Box::new(match e {
            e @ Expr::NumberLiteral { .. } => Expr::Paren { expr: Box::new(e), pos: pos() },
            e @ Expr::Binary(_) if !matches!(&e, Expr::Binary(b) if b.op == BinaryOp::Pow) => Expr::Paren { expr: Box::new(e), pos: pos() },
            e => e,
        }), pos: pos() }),
    ]
    .boxed()
}

fn arb_matrix(depth: u32) -> BoxedStrategy<Expr> {
    let ms = (arb_vs(), arb_range()).prop_map(|(mut vs, range)| {
        let (offset, at) = (vs.offset.take(), vs.at.take());
        vs.offset = offset;
        vs.at = at;
        Expr::MatrixSelector(MatrixSelector {
            vector: vs,
            range,
            pos: pos(),
        })
    });
    if depth == 0 {
        return ms.boxed();
    }
    prop_oneof![
        3 => ms,
        // A subquery range must start with a number: Prometheus's lexer rejects `[step():...]`
        // ("unexpected colon before duration in duration expression").
        1 => (arb_vector(depth - 1), (1..100_000_000i64).prop_map(Duration::Ms), prop::option::of(arb_range()), arb_offset(), arb_at()).prop_map(|(e, range, step, offset, at)| {
            Expr::Subquery(SubqueryExpr { expr: Box::new(primary(e)), range, step, offset, at, pos: pos() })
        }),
    ]
    .boxed()
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call(Call {
        func: get_function(name).unwrap(),
        args,
        pos: pos(),
    })
}

fn arb_vector(depth: u32) -> BoxedStrategy<Expr> {
    let leaf = arb_vs().prop_map(Expr::VectorSelector);
    if depth == 0 {
        return leaf.boxed();
    }
    let d = depth - 1;
    let labels = prop::collection::vec(prop::sample::select(LABELS).prop_map(String::from), 0..3);
    prop_oneof![
        3 => leaf,
        1 => (arb_vector(d), 0..8u8, labels, any::<bool>()).prop_map(|(e, o, grouping, without)| {
            let op = [AggregateOp::Sum, AggregateOp::Avg, AggregateOp::Count, AggregateOp::Min, AggregateOp::Max, AggregateOp::Group, AggregateOp::Stddev, AggregateOp::Stdvar][o as usize];
            Expr::Aggregate(AggregateExpr { op, expr: Box::new(e), param: None, grouping, without, pos: pos() })
        }),
        1 => (arb_vector(d), arb_scalar(d), 0..5u8).prop_map(|(e, p, o)| {
            let op = [AggregateOp::Topk, AggregateOp::Bottomk, AggregateOp::Quantile, AggregateOp::Limitk, AggregateOp::LimitRatio][o as usize];
            Expr::Aggregate(AggregateExpr { op, expr: Box::new(e), param: Some(Box::new(p)), grouping: vec![], without: false, pos: pos() })
        }),
        1 => arb_vector(d).prop_map(|e| Expr::Aggregate(AggregateExpr { op: AggregateOp::CountValues, expr: Box::new(e), param: Some(Box::new(Expr::string("v"))), grouping: vec!["x".into()], without: true, pos: pos() })),
        1 => arb_matrix(d).prop_map(|m| call("rate", vec![m])),
        1 => arb_vector(d).prop_map(|v| call("abs", vec![v])),
        1 => (arb_vector(d), arb_scalar(d)).prop_map(|(v, s)| call("round", vec![v, s])),
        1 => arb_scalar(d).prop_map(|s| call("vector", vec![s])),
        1 => Just(call("day_of_month", vec![])),
        1 => (arb_scalar(d), arb_vector(d)).prop_map(|(s, v)| call("histogram_quantile", vec![s, v])),
        1 => arb_vector(d).prop_map(|v| call("label_replace", vec![v, Expr::string("dst"), Expr::string("$1"), Expr::string("src"), Expr::string("(.*)")])),
        1 => arb_vector(d).prop_map(|v| call("sort_by_label", vec![v, Expr::string("a"), Expr::string("b")])),
        1 => arb_vector(d).prop_map(|e| Expr::Paren { expr: Box::new(e), pos: pos() }),
        1 => arb_vector(d).prop_map(|e| Expr::Unary { op: UnaryOp::Neg, expr: Box::new(match e {
            e @ Expr::Binary(_) if !matches!(&e, Expr::Binary(b) if b.op == BinaryOp::Pow) => Expr::Paren { expr: Box::new(e), pos: pos() },
            e => e,
        }), pos: pos() }),
        2 => (arb_vector(d), prop::sample::select(ARITH), arb_vector(d), arb_vector_matching(false)).prop_map(|(l, op, r, m)| binary(op, l, r, Some(m), false)),
        1 => (arb_vector(d), prop::sample::select(CMP), arb_vector(d), arb_vector_matching(false), any::<bool>()).prop_map(|(l, op, r, m, b)| binary(op, l, r, Some(m), b)),
        1 => (arb_vector(d), prop::sample::select(SET), arb_vector(d), arb_vector_matching(true)).prop_map(|(l, op, r, m)| binary(op, l, r, Some(m), false)),
        1 => (arb_vector(d), prop::sample::select(ARITH), arb_scalar(d), any::<bool>()).prop_map(|(v, op, s, flip)| if flip { binary(op, s, v, None, false) } else { binary(op, v, s, None, false) }),
    ]
    .boxed()
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    prop_oneof![
        4 => arb_vector(3),
        2 => arb_scalar(3),
        1 => arb_matrix(2),
        1 => "[a-zé\"\\\\\n]{0,8}".prop_map(|s| Expr::string(&s)),
    ]
}

proptest! {
    #[test]
    fn print_then_parse_round_trips(e in arb_expr()) {
        let printed = e.to_string();
        let parsed = parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
        prop_assert!(ast_eq(&parsed, &e), "printed: {}\nparsed: {:?}\norig: {:?}", printed, parsed, e);
        prop_assert_eq!(parsed.to_string(), printed);
    }
}

const SEEDS: &[&str] = &[
    "sum by (job) (rate(http_requests_total{job=~\"api.*\"}[5m] offset 1h @ 100)) > bool on(job) group_left(x) 1",
    "topk(3, -foo[1m:10s] @ end()) or {\"a.b\"=\"c\", __name__!=\"x\"}",
    "histogram_quantile(0.9, sum(rate(x_bucket[step()+1m] anchored)) without(le)) ^ -2 ^ 2",
    "label_replace(foo, 'a', `b`, \"\\x41\\u00e9\", \"(.*)\") + fill_left(1) fill_right(-2) bar",
    "foo offset -(min_of(step(), 2s)-5)+8000 # comment\n unless count_values(\"v\", x)",
];

fn arb_mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS),
        prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<u8>()), 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut b = seed.as_bytes().to_vec();
            for (idx, kind, byte) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let i = idx.index(b.len());
                match kind {
                    0 => b[i] = byte,
                    1 => {
                        b.remove(i);
                    }
                    2 => b.insert(i, byte),
                    _ => {
                        let j = idx.index(b.len().min(i + 8).max(1));
                        let chunk = b[j.min(i)..i.max(j)].to_vec();
                        b.splice(i..i, chunk);
                    }
                }
            }
            b
        })
}

proptest! {
    #[test]
    fn fuzz_parser_never_panics_on_mutations(bytes in arb_mutated()) {
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(e) = parse(&s) {
            // Whatever parses must print to something that parses again.
            let printed = e.to_string();
            prop_assert!(parse(&printed).is_ok(), "{} printed as {}", s, printed);
        }
        let _ = parse_metric_selector(&s);
    }

    #[test]
    fn fuzz_parser_never_panics_on_random_text(s in "[ -~\\n\\té☺]{0,60}") {
        let _ = parse(&s);
    }

    #[test]
    fn fuzz_parser_never_panics_on_token_soup(toks in prop::collection::vec(prop::sample::select(&[
        "foo", "{", "}", "(", ")", "[", "]", ":", ",", "=", "=~", "!=", "\"a\"", "1", "5m", "-", "+", "*", "^", "/",
        "offset", "@", "start()", "by", "without", "sum", "topk", "rate", "on", "group_left", "bool", "==", "and",
        "step()", "min_of", "anchored", "fill", "Inf", "0x1f", "#c\n", "</", "atan2",
    ][..]), 0..25)) {
        let s = toks.join(" ");
        let _ = parse(&s);
        let s = toks.concat();
        let _ = parse(&s);
    }
}
