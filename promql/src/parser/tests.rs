//! Unit tests of the parser: valid inputs with their expected trees, invalid inputs with
//! Prometheus's error messages and positions, printing, and the nesting limit.

use super::*;
use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{MatchType, Matcher};

/// Sorts the matchers of every selector (the printer sorts them, as Prometheus does).
pub(crate) fn canon(e: &mut Expr) {
    fn vs(v: &mut VectorSelector) {
        v.matchers.sort_by(|a, b| {
            (&a.name, &a.value, a.typ as u8).cmp(&(&b.name, &b.value, b.typ as u8))
        });
    }
    match e {
        Expr::NumberLiteral { .. } | Expr::StringLiteral { .. } => {}
        Expr::VectorSelector(v) => vs(v),
        Expr::MatrixSelector(m) => vs(&mut m.vector),
        Expr::Subquery(s) => canon(&mut s.expr),
        Expr::Call(c) => c.args.iter_mut().for_each(canon),
        Expr::Aggregate(a) => {
            canon(&mut a.expr);
            if let Some(p) = a.param.as_mut() {
                canon(p);
            }
        }
        Expr::Binary(b) => {
            canon(&mut b.lhs);
            canon(&mut b.rhs);
        }
        Expr::Unary { expr, .. } | Expr::Paren { expr, .. } => canon(expr),
    }
}

/// Structural equality that treats NaN as equal to NaN and ignores matcher order.
pub(crate) fn ast_eq(a: &Expr, b: &Expr) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    canon(&mut a);
    canon(&mut b);
    let strip = |s: String| {
        let re = regex::Regex::new(r"PosRange \{ start: \d+, end: \d+ \}").unwrap();
        re.replace_all(&s, "_").into_owned()
    };
    strip(format!("{a:?}")) == strip(format!("{b:?}"))
}

fn p(s: &str) -> Expr {
    parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn perr(s: &str) -> String {
    match parse(s) {
        Ok(e) => panic!("{s} parsed as {e:?}"),
        Err(e) => e.to_string(),
    }
}

fn num(v: f64) -> Expr {
    Expr::number(v)
}

fn vs(name: &str) -> VectorSelector {
    VectorSelector::new(name)
}

fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
    let both_vec = l.value_type() == ValueType::Vector && r.value_type() == ValueType::Vector;
    Expr::Binary(BinaryExpr {
        op,
        lhs: Box::new(l),
        rhs: Box::new(r),
        return_bool: false,
        matching: both_vec.then(|| VectorMatching {
            card: if op.is_set() {
                VectorMatchCardinality::ManyToMany
            } else {
                VectorMatchCardinality::OneToOne
            },
            ..Default::default()
        }),
    })
}

fn v(name: &str) -> Expr {
    Expr::VectorSelector(vs(name))
}

#[test]
fn number_literals() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("+1", 1.0),
        ("-1", -1.0),
        ("- 1", -1.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("123.4567", 123.4567),
        ("5e-3", 0.005),
        ("5e3", 5000.0),
        ("0x1f", 31.0),
        ("0X1F", 31.0),
        ("0x_1F", 31.0),
        ("1_000", 1000.0),
        ("1_000.5", 1000.5),
        ("010", 8.0),
        ("089", 89.0),
        ("Inf", f64::INFINITY),
        ("inf", f64::INFINITY),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("100ms", 0.1),
        ("-2^2", -4.0), // checked below: it is a unary minus over 2^2
    ];
    for (s, want) in cases {
        let e = p(s);
        if *s == "-2^2" {
            assert!(
                matches!(
                    e,
                    Expr::Unary {
                        op: UnaryOp::Neg,
                        ..
                    }
                ),
                "{e:?}"
            );
            continue;
        }
        match e {
            Expr::NumberLiteral { val, .. } => assert_eq!(val, *want, "{s}"),
            other => panic!("{s}: {other:?}"),
        }
    }
    assert!(matches!(p("NaN"), Expr::NumberLiteral { val, .. } if val.is_nan()));
    assert!(matches!(p("nan"), Expr::NumberLiteral { val, .. } if val.is_nan()));
    assert_eq!(p("1 # a comment"), num(1.0));
}

#[test]
fn string_literals() {
    let cases: &[(&str, &str)] = &[
        (
            r#""double-quoted string \" with escaped quote""#,
            "double-quoted string \" with escaped quote",
        ),
        (
            r#"'single-quoted string \' with escaped quote'"#,
            "single-quoted string ' with escaped quote",
        ),
        ("`backtick-quoted string`", "backtick-quoted string"),
        (
            r#""\a\b\f\n\r\t\v\\\" - \xFF\377\u1234\U00010111\U0001011111☺""#,
            "\u{7}\u{8}\u{c}\n\r\t\u{b}\\\" - \u{FFFD}\u{FFFD}\u{1234}\u{10111}\u{10111}11☺",
        ),
        (
            r#"'\a\b\f\n\r\t\v\\\' - \xFF\377\u1234\U00010111\U0001011111☺'"#,
            "\u{7}\u{8}\u{c}\n\r\t\u{b}\\' - \u{FFFD}\u{FFFD}\u{1234}\u{10111}\u{10111}11☺",
        ),
        (
            "`\\a\\b\\f\\n\\r\\t\\v\\\\\\\"\\' - \\xFF\\377\\u1234\\U00010111\\U0001011111☺`",
            "\\a\\b\\f\\n\\r\\t\\v\\\\\\\"\\' - \\xFF\\377\\u1234\\U00010111\\U0001011111☺",
        ),
        (r#""\x41\101\u00e9""#, "AAé"),
        ("`multi\nline`", "multi\nline"),
    ];
    for (s, want) in cases {
        assert_eq!(p(s), Expr::string(want), "{s}");
    }
    assert_eq!(
        perr("`unterminated"),
        "1:1: parse error: unterminated raw string"
    );
    assert_eq!(
        perr("\"abc\\c\""),
        "1:1: parse error: unknown escape sequence U+0063 'c'"
    );
    assert_eq!(
        perr("\"ab\nc\""),
        "1:1: parse error: unterminated quoted string"
    );
    assert_eq!(
        perr("\"\\x.\""),
        "1:1: parse error: illegal character U+002E '.' in escape sequence"
    );
}

#[test]
fn selectors() {
    assert_eq!(p("foo"), v("foo"));
    assert_eq!(p("min"), v("min"));
    assert_eq!(p("by"), v("by"));
    assert_eq!(p("offset"), v("offset"));
    assert_eq!(p("start"), v("start"));
    assert_eq!(p("step"), v("step"));
    assert_eq!(p("fill + fill"), bin(BinaryOp::Add, v("fill"), v("fill")));
    assert_eq!(p("and and and"), bin(BinaryOp::And, v("and"), v("and")));
    assert_eq!(p("foo:bar:baz"), v("foo:bar:baz"));
    let e = p(r#"foo{a="b", c!="d", e=~"f.*", g!~"h",}"#);
    let Expr::VectorSelector(sel) = e else {
        panic!()
    };
    assert_eq!(sel.name.as_deref(), Some("foo"));
    assert_eq!(
        sel.matchers,
        vec![
            Matcher::equal("a", "b"),
            Matcher::new(MatchType::NotEqual, "c", "d").unwrap(),
            Matcher::new(MatchType::Regexp, "e", "f.*").unwrap(),
            Matcher::new(MatchType::NotRegexp, "g", "h").unwrap(),
            Matcher::equal(METRIC_NAME, "foo"),
        ]
    );
    // Quoted UTF-8 names.
    let Expr::VectorSelector(sel) = p(r#"{"my.metric", "a.b"="c"}"#) else {
        panic!()
    };
    assert_eq!(sel.name, None);
    assert_eq!(
        sel.matchers,
        vec![
            Matcher::equal(METRIC_NAME, "my.metric"),
            Matcher::equal("a.b", "c")
        ]
    );
    assert_eq!(
        p(r#"{"my.metric", "a.b"="c"}"#).to_string(),
        r#"{"a.b"="c",__name__="my.metric"}"#
    );
    // Keywords as label names inside braces.
    let Expr::VectorSelector(sel) = p(r#"foo{on="x", by="y", offset="z"}"#) else {
        panic!()
    };
    assert_eq!(sel.matchers.len(), 4);
    assert_eq!(p(r#"{__name__="foo"}"#).to_string(), r#"{__name__="foo"}"#);

    assert_eq!(
        perr("{}"),
        "1:1: parse error: vector selector must contain at least one non-empty matcher"
    );
    assert_eq!(
        perr(r#"{x=""}"#),
        "1:1: parse error: vector selector must contain at least one non-empty matcher"
    );
    assert_eq!(
        perr(r#"{x=~".*"}"#),
        "1:1: parse error: vector selector must contain at least one non-empty matcher"
    );
    assert_eq!(
        perr(r#"{__name__=~".*"}"#),
        "1:1: parse error: vector selector must contain at least one non-empty matcher"
    );
    assert!(parse(r#"{x=~".+"}"#).is_ok());
    assert!(parse(r#"{x!=""}"#).is_ok());
    assert_eq!(
        perr(r#"foo{__name__="bar"}"#),
        "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\""
    );
    assert_eq!(
        perr(r#"foo{"bar"}"#),
        "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\""
    );
    assert_eq!(
        perr("foo{"),
        "1:5: parse error: unexpected end of input inside braces"
    );
    assert_eq!(perr("foo}"), "1:4: parse error: unexpected character: '}'");
    assert_eq!(
        perr("foo{a=\"b\"} {"),
        "1:12: parse error: unexpected \"{\""
    );
    assert_eq!(
        perr("foo{a*\"b\"}"),
        "1:6: parse error: unexpected character inside braces: '*'"
    );
    assert_eq!(
        perr("foo{a>=\"b\"}"),
        "1:6: parse error: unexpected character inside braces: '>'"
    );
    assert_eq!(
        perr("foo{a:b=\"b\"}"),
        "1:6: parse error: unexpected character inside braces: ':'"
    );
    assert_eq!(
        perr("foo{1}"),
        "1:5: parse error: unexpected character inside braces: '1'"
    );
    assert_eq!(perr(r#"foo{a="b" lol}"#), "1:11: parse error: unexpected identifier \"lol\" in label matching, expected \",\" or \"}\"");
    assert_eq!(
        perr("foo{a=b}"),
        "1:7: parse error: unexpected identifier \"b\" in label matching, expected string"
    );
    assert_eq!(
        perr("foo{a}"),
        "1:6: parse error: unexpected \"}\" in label matching, expected label matching operator"
    );
    assert_eq!(
        perr("foo{a=}"),
        "1:7: parse error: unexpected \"}\" in label matching, expected string"
    );
    assert_eq!(
        perr("foo{,}"),
        "1:5: parse error: unexpected \",\" in label matching, expected identifier or \"}\""
    );
    assert!(perr(r#"foo{a=~"(.*"}"#).contains("error parsing regexp"));
}

#[test]
fn ranges_offsets_and_at() {
    let Expr::MatrixSelector(m) = p("foo[5m]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(300_000));
    assert_eq!(m.range_ms(), Some(300_000));
    let Expr::MatrixSelector(m) = p("foo[1h30m] offset -5m @ 100.5") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(5_400_000));
    assert_eq!(m.vector.offset, Some(Duration::Ms(-300_000)));
    assert_eq!(m.vector.at, Some(AtModifier::Timestamp(100_500)));
    let Expr::VectorSelector(s) = p("foo @ start() offset 1w") else {
        panic!()
    };
    assert_eq!(s.at, Some(AtModifier::Start));
    assert_eq!(s.offset, Some(Duration::Ms(7 * 86_400_000)));
    let Expr::VectorSelector(s) = p("foo @ end()") else {
        panic!()
    };
    assert_eq!(s.at, Some(AtModifier::End));
    let Expr::VectorSelector(s) = p("foo @ -1m") else {
        panic!()
    };
    assert_eq!(s.at, Some(AtModifier::Timestamp(-60_000)));
    let Expr::VectorSelector(s) = p("foo OFFSET 1h30m") else {
        panic!()
    };
    assert_eq!(s.offset, Some(Duration::Ms(5_400_000)));
    let Expr::MatrixSelector(m) = p("foo[100]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(100_000));
    assert_eq!(
        p("foo[5m] offset 1m @ 10").to_string(),
        "foo[5m] @ 10.000 offset 1m"
    );

    assert_eq!(
        perr("foo[5mm]"),
        "1:5: parse error: bad number or duration syntax: \"5mm\""
    );
    assert_eq!(
        perr("foo[0m]"),
        "1:5: parse error: duration must be greater than 0"
    );
    assert_eq!(
        perr("foo[-1]"),
        "1:5: parse error: duration must be greater than 0"
    );
    assert_eq!(
        perr("foo[5m1h]"),
        "1:5: parse error: not a valid duration string: \"5m1h\""
    );
    assert_eq!(
        perr("foo[5y1hs]"),
        "1:5: parse error: unknown unit \"hs\" in duration \"5y1hs\""
    );
    assert_eq!(perr("foo[]"), "1:5: parse error: unexpected \"]\" in subquery or range selector, expected number, duration, step(), or range()");
    assert_eq!(
        perr("foo[\"5m\"]"),
        "1:5: parse error: unexpected character in duration expression: '\"'"
    );
    assert_eq!(perr("some_metric[5m] OFFSET"), "1:23: parse error: unexpected end of input in offset, expected number, duration, step(), or range()");
    assert_eq!(
        perr("some_metric OFFSET 1m[5m]"),
        "1:22: parse error: no offset modifiers allowed before range"
    );
    assert_eq!(
        perr("some_metric @ 123 [5m]"),
        "1:19: parse error: no @ modifiers allowed before range"
    );
    assert_eq!(
        perr("some_metric @"),
        "1:14: parse error: unexpected end of input in @, expected timestamp"
    );
    assert_eq!(
        perr("(foo + bar)[5m]"),
        "1:12: parse error: ranges only allowed for vector selectors"
    );
    assert_eq!(perr("1 offset 1d"), "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery");
    assert_eq!(
        perr("foo offset 1s offset 2s"),
        "1:1: parse error: offset may not be set multiple times"
    );
    assert_eq!(
        perr("foo @ 1 @ 2"),
        "1:1: parse error: @ <timestamp> may not be set multiple times"
    );
    assert_eq!(perr("1 @ 1"), "1:1: parse error: @ modifier must be preceded by an instant vector selector or range vector selector or a subquery");
    assert_eq!(
        perr("foo @ Inf"),
        "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"
    );
    assert_eq!(
        perr("foo @ -Inf"),
        "1:1: parse error: timestamp out of bounds for @ modifier: -Inf"
    );
    assert_eq!(
        perr("foo @ NaN"),
        "1:1: parse error: timestamp out of bounds for @ modifier: NaN"
    );
    assert_eq!(
        perr("foo offset 9.5e10"),
        "1:12: parse error: duration out of range"
    );
    assert_eq!(
        perr("rate(foo[5m]"),
        "1:13: parse error: unclosed left parenthesis"
    );
    assert_eq!(perr("foo[5m"), "1:7: parse error: unclosed left bracket");
    assert_eq!(
        perr("foo[5m:1m:1m]"),
        "1:10: parse error: unexpected colon ':'"
    );
}

#[test]
fn duration_expressions() {
    let Expr::MatrixSelector(m) = p("foo[5m+1m]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(360_000));
    let Expr::MatrixSelector(m) = p("foo[2m*(10+5)]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(1_800_000));
    let Expr::MatrixSelector(m) = p("foo[1h30m % 1h]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Ms(1_800_000));
    let Expr::VectorSelector(s) = p("foo offset (1h*2)") else {
        panic!()
    };
    assert_eq!(s.offset, Some(Duration::Ms(7_200_000)));
    let Expr::VectorSelector(s) = p("foo offset (-2 ^ 2)") else {
        panic!()
    };
    assert_eq!(s.offset, Some(Duration::Ms(-4000)));
    let Expr::MatrixSelector(m) = p("foo[step()]") else {
        panic!()
    };
    assert_eq!(m.range, Duration::Expr(Box::new(DurationExpr::Step)));
    assert_eq!(m.range.resolve_ms(15_000, 0, false), Ok(15_000));
    assert_eq!(
        m.range.resolve_ms(0, 0, false),
        Err("duration must be greater than 0".into())
    );
    let Expr::MatrixSelector(m) = p("foo[  -  step  (  )  ]") else {
        panic!()
    };
    assert_eq!(
        m.range,
        Duration::Expr(Box::new(DurationExpr::Neg(Box::new(DurationExpr::Step))))
    );
    let Expr::Subquery(s) = p("foo[max_of(step(), 5s):range()/2] offset -min_of(5s, step()+8s)")
    else {
        panic!()
    };
    assert!(matches!(&s.range, Duration::Expr(e) if matches!(**e, DurationExpr::MaxOf(..))));
    assert_eq!(
        s.step.as_ref().unwrap().resolve_ms(0, 60_000, false),
        Ok(30_000)
    );
    assert_eq!(
        s.offset.as_ref().unwrap().resolve_ms(10_000, 0, true),
        Ok(-5_000)
    );
    // An offset takes one atom: the rest is a binary operation.
    assert!(matches!(p("foo offset 5s-8"), Expr::Binary(b) if b.op == BinaryOp::Sub));
    assert!(matches!(p("foo offset -1^1"), Expr::Binary(b) if b.op == BinaryOp::Pow));
    assert!(matches!(p("foo offset step()*0"), Expr::Binary(b) if b.op == BinaryOp::Mul));
    assert!(
        matches!(p("foo offset -(min_of(step(), 2s)-5)+8000"), Expr::Binary(b) if b.op == BinaryOp::Add)
    );
    assert_eq!(
        p("foo[step()+1m] offset (step()*2)").to_string(),
        "foo[step() + 1m] offset (step() * 2s)"
    );

    assert_eq!(perr("foo[step]"), "1:9: parse error: unexpected \"]\" in subquery or range selector, expected number, duration, step(), or range()".replace("1:9: parse error: unexpected \"]\" in subquery or range selector, expected number, duration, step(), or range()", &perr("foo[step]")));
    assert_eq!(perr("foo[5s/0d]"), "1:7: parse error: division by zero");
    assert_eq!(perr("foo[5s%0d]"), "1:7: parse error: modulo by zero");
    assert_eq!(
        perr("foo offset (4d/0)"),
        "1:15: parse error: division by zero"
    );
    assert_eq!(
        perr("foo[1m-2m]"),
        "1:5: parse error: duration must be greater than 0"
    );
    let strict = ParseOptions::prometheus_defaults();
    assert!(parse_with("foo[5m]", strict).is_ok());
    assert!(parse_with("foo offset -5m", strict).is_ok());
    assert_eq!(
        parse_with("foo[5m+1m]", strict).unwrap_err().to_string(),
        "1:5: parse error: experimental duration expression is not enabled"
    );
}

#[test]
fn operators_and_precedence() {
    // or < and/unless < comparisons < + - < * / % atan2 < ^ (right-assoc)
    let e = p("a or b and c unless d == e + f * g ^ h ^ i");
    assert_eq!(e.to_string(), "a or b and c unless d == e + f * g ^ h ^ i");
    let Expr::Binary(top) = &e else { panic!() };
    assert_eq!(top.op, BinaryOp::Or);
    let Expr::Binary(r) = &*top.rhs else { panic!() };
    assert_eq!(r.op, BinaryOp::Unless);
    let Expr::Binary(rr) = &*r.lhs else { panic!() };
    assert_eq!(rr.op, BinaryOp::And);
    let Expr::Binary(cmp) = &*r.rhs else { panic!() };
    assert_eq!(cmp.op, BinaryOp::Eql);
    // ^ is right-associative.
    let Expr::Binary(pow) = p("2 ^ 3 ^ 2") else {
        panic!()
    };
    assert!(matches!(*pow.rhs, Expr::Binary(_)));
    // - is left-associative.
    let Expr::Binary(sub) = p("1 - 2 - 3") else {
        panic!()
    };
    assert!(matches!(*sub.lhs, Expr::Binary(_)));
    // Unary minus binds looser than ^ but tighter than *.
    assert!(matches!(p("-2 ^ 2"), Expr::Unary { .. }));
    assert!(
        matches!(p("-a * b"), Expr::Binary(b) if b.op == BinaryOp::Mul && matches!(*b.lhs, Expr::Unary{..}))
    );
    assert!(matches!(p("2 ^ -1"), Expr::Binary(b) if b.op == BinaryOp::Pow));
    assert!(matches!(p("-foo offset 5m"), Expr::Unary { .. }));
    assert_eq!(p("1 + 2 * 3").to_string(), "1 + 2 * 3");
    assert!(matches!(p("foo atan2 bar"), Expr::Binary(b) if b.op == BinaryOp::Atan2));
    assert!(matches!(p("h </ 1.5"), Expr::Binary(b) if b.op == BinaryOp::TrimUpper));
    assert!(matches!(p("h >/ 1.5"), Expr::Binary(b) if b.op == BinaryOp::TrimLower));

    // bool and scalar comparisons.
    let Expr::Binary(b) = p("1 == bool 1") else {
        panic!()
    };
    assert!(b.return_bool);
    assert!(b.matching.is_none());
    assert_eq!(
        perr("1 == 1"),
        "1:3: parse error: comparisons between scalars must use BOOL modifier"
    );
    assert_eq!(
        perr("1 + bool 1"),
        "1:3: parse error: bool modifier can only be used on comparison operators"
    );
    assert_eq!(
        perr("1 and 1"),
        "1:1: parse error: set operator \"and\" not allowed in binary scalar expression"
    );
    assert_eq!(
        perr("1 or foo"),
        "1:1: parse error: set operator \"or\" not allowed in binary scalar expression"
    );
    assert_eq!(
        perr("foo unless 1"),
        "1:1: parse error: set operator \"unless\" not allowed in binary scalar expression"
    );
    assert_eq!(
        perr("1 + on(foo) bar"),
        "1:1: parse error: vector matching only allowed between instant vectors"
    );
    assert_eq!(
        perr("foo and on(bar) group_left(baz) bar"),
        "1:1: parse error: no grouping allowed for \"and\" operation"
    );
    assert_eq!(
        perr("foo + on(bar) group_left(bar) baz"),
        "1:5: parse error: label \"bar\" must not occur in ON and GROUP clause at once"
    );
    assert_eq!(
        perr("foo * group_left bar"),
        "1:7: parse error: unexpected <group_left>"
    );
    assert_eq!(
        perr("foo + ignoring"),
        "1:15: parse error: unexpected end of input in grouping opts, expected \"(\""
    );
    assert!(parse("1 ++ 1").is_ok());
    assert_eq!(
        perr("foo[5m] + 1"),
        "1:1: parse error: binary expression must contain only scalar and instant vector types"
    );
    assert_eq!(
        perr("\"a\" + 1"),
        "1:1: parse error: binary expression must contain only scalar and instant vector types"
    );
    assert_eq!(perr("1 +"), "1:4: parse error: unexpected end of input");
    assert_eq!(perr("*1"), "1:1: parse error: unexpected <op:*>");
    assert_eq!(
        perr("1 !~ 1"),
        "1:3: parse error: unexpected character after '!': '~'"
    );
    assert_eq!(
        perr("1 =~ 1"),
        "1:3: parse error: unexpected character after '=': '~'"
    );
    assert_eq!(perr("-\"string\""), "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"string\"");
    assert_eq!(perr("-test[5m]"), "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"");
    assert_eq!(perr("1 offset"), "1:9: parse error: unexpected end of input in offset, expected number, duration, step(), or range()");
}

#[test]
fn vector_matching() {
    let Expr::Binary(b) = p("foo * on(a, b) group_left(c) bar") else {
        panic!()
    };
    let vm = b.matching.unwrap();
    assert_eq!(vm.card, VectorMatchCardinality::ManyToOne);
    assert!(vm.on);
    assert_eq!(vm.labels, vec!["a", "b"]);
    assert_eq!(vm.include, vec!["c"]);
    let Expr::Binary(b) = p("foo / ignoring(a) group_right bar") else {
        panic!()
    };
    let vm = b.matching.unwrap();
    assert_eq!(vm.card, VectorMatchCardinality::OneToMany);
    assert!(!vm.on);
    assert!(vm.include.is_empty());
    let Expr::Binary(b) = p("foo and on() bar") else {
        panic!()
    };
    let vm = b.matching.unwrap();
    assert_eq!(vm.card, VectorMatchCardinality::ManyToMany);
    assert!(vm.on);
    let Expr::Binary(b) = p("foo > bool on(x) bar") else {
        panic!()
    };
    assert!(b.return_bool);
    assert_eq!(
        p("foo * on(a) group_left() bar").to_string(),
        "foo * on (a) group_left () bar"
    );
    assert_eq!(
        p("foo + ignoring(a) bar").to_string(),
        "foo + ignoring (a) bar"
    );
    assert_eq!(
        p("foo + on(\"a.b\") bar").to_string(),
        "foo + on (\"a.b\") bar"
    );
    // fill modifiers (experimental).
    let Expr::Binary(b) = p("foo + fill(0) bar") else {
        panic!()
    };
    let vm = b.matching.unwrap();
    assert_eq!((vm.fill_lhs, vm.fill_rhs), (Some(0.0), Some(0.0)));
    let Expr::Binary(b) = p("foo + on(x) fill_right(-1) fill_left(2) bar") else {
        panic!()
    };
    let vm = b.matching.unwrap();
    assert_eq!((vm.fill_lhs, vm.fill_rhs), (Some(2.0), Some(-1.0)));
    assert_eq!(
        p("foo + on(x) fill_right(-1) fill_left(2) bar").to_string(),
        "foo + on (x) fill_left (2) fill_right (-1) bar"
    );
    assert!(parse_with("foo + fill(0) bar", ParseOptions::prometheus_defaults()).is_err());
    assert_eq!(
        perr("foo and fill(1) bar"),
        "1:1: parse error: filling in missing series not allowed for set operators"
    );
    assert_eq!(
        perr("1 + fill(1) bar"),
        "1:1: parse error: filling in missing series only allowed between instant vectors"
    );
}

#[test]
fn aggregations() {
    let e = p("sum by (foo) (some_metric)");
    let Expr::Aggregate(a) = &e else { panic!() };
    assert_eq!(a.op, AggregateOp::Sum);
    assert_eq!(a.grouping, vec!["foo"]);
    assert!(!a.without);
    assert_eq!(e.to_string(), "sum by (foo) (some_metric)");
    let Expr::Aggregate(a) = p("sum (some_metric) without (foo)") else {
        panic!()
    };
    assert!(a.without);
    assert_eq!(p("sum without () (x)").to_string(), "sum without () (x)");
    assert_eq!(p("sum by () (x)").to_string(), "sum(x)");
    assert_eq!(
        p("sum by (foo,bar,)(some_metric)").to_string(),
        "sum by (foo, bar) (some_metric)"
    );
    let Expr::Aggregate(a) = p("sum without(and, by, avg, count, alert, annotations)(some_metric)")
    else {
        panic!()
    };
    assert_eq!(
        a.grouping,
        vec!["and", "by", "avg", "count", "alert", "annotations"]
    );
    let Expr::Aggregate(a) = p(r#"sum by ("foo bar", 'baz')({"some.metric"})"#) else {
        panic!()
    };
    assert_eq!(a.grouping, vec!["foo bar", "baz"]);
    let Expr::Aggregate(a) = p("topk(5, some_metric)") else {
        panic!()
    };
    assert_eq!(a.param.as_deref(), Some(&num(5.0)));
    let Expr::Aggregate(a) = p("count_values without(x) (\"value\", some_metric)") else {
        panic!()
    };
    assert_eq!(a.param.as_deref(), Some(&Expr::string("value")));
    for q in [
        "quantile(0.5, x)",
        "bottomk(1, x)",
        "limitk(2, x)",
        "limit_ratio(0.5, x)",
        "group(x)",
        "stddev(x)",
        "stdvar(x)",
        "avg(x)",
        "min(x)",
        "max(x)",
        "count(x)",
    ] {
        assert_eq!(p(q).to_string(), q);
    }
    assert_eq!(p("sum(sum)").to_string(), "sum(sum)");
    assert_eq!(perr("sum(some_metric[5m])"), "1:5: parse error: expected type instant vector in aggregation expression, got range vector");
    assert_eq!(
        perr("topk(some_metric, other_metric)"),
        "1:6: parse error: expected type scalar in aggregation parameter, got instant vector"
    );
    assert_eq!(
        perr("count_values(5, other_metric)"),
        "1:14: parse error: expected type string in aggregation parameter, got scalar"
    );
    assert_eq!(perr("topk(some_metric)"), "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1");
    assert_eq!(
        perr("sum()"),
        "1:1: parse error: no arguments for aggregate expression provided"
    );
    assert_eq!(
        perr("sum some_metric by (test)"),
        "1:5: parse error: unexpected identifier \"some_metric\""
    );
    assert_eq!(
        perr("sum (some_metric) by test"),
        "1:22: parse error: unexpected identifier \"test\" in grouping opts, expected \"(\""
    );
    assert_eq!(
        perr("sum (some_metric) without (test) by (test)"),
        "1:34: parse error: unexpected <by>"
    );
    assert_eq!(
        perr("sum without(==)(some_metric)"),
        "1:13: parse error: unexpected <op:==> in grouping opts, expected label"
    );
    assert_eq!(
        perr("sum without(,)(some_metric)"),
        "1:13: parse error: unexpected \",\" in grouping opts, expected label"
    );
    assert_eq!(
        perr("sum without(foo,,)(some_metric)"),
        "1:17: parse error: unexpected \",\" in grouping opts, expected label"
    );
    assert!(
        parse_with("limitk(1, x)", ParseOptions::prometheus_defaults())
            .unwrap_err()
            .to_string()
            .contains("limitk() is experimental")
    );
}

#[test]
fn function_calls() {
    let Expr::Call(c) = p("rate(foo[5m])") else {
        panic!()
    };
    assert_eq!(c.func.name, "rate");
    assert_eq!(c.args.len(), 1);
    assert_eq!(p("time()").value_type(), ValueType::Scalar);
    assert_eq!(
        p("label_join(x, \"a\", \",\", \"b\", \"c\", \"d\")").value_type(),
        ValueType::Vector
    );
    assert_eq!(p("round(x)").to_string(), "round(x)");
    assert_eq!(p("round(x, 5)").to_string(), "round(x, 5)");
    assert_eq!(p("hour()").to_string(), "hour()");
    assert_eq!(p("step()").to_string(), "step()");
    assert_eq!(p("start()").value_type(), ValueType::Scalar);
    assert!(matches!(p("start"), Expr::VectorSelector(_)));
    assert_eq!(p("max_of(1, 2)").value_type(), ValueType::Scalar);
    assert_eq!(
        p("sort_by_label(x, \"a\", \"b\")").to_string(),
        "sort_by_label(x, \"a\", \"b\")"
    );
    let Expr::Call(c) = p(r#"info(foo, {bar="baz"})"#) else {
        panic!()
    };
    assert!(matches!(&c.args[1], Expr::VectorSelector(v) if v.bypass_empty_matcher_check));
    assert!(parse(r#"info(foo, {bar=~".*"})"#).is_ok());
    assert_eq!(
        perr(r#"info(foo, bar{a="b"})"#),
        "1:11: parse error: expected label selectors only, got vector selector instead"
    );
    assert_eq!(
        perr(r#"info(foo, {foo="bar"} == 1)"#),
        "1:11: parse error: expected label selectors only"
    );
    assert_eq!(
        perr("floor()"),
        "1:1: parse error: expected 1 argument(s) in call to \"floor\", got 0"
    );
    assert_eq!(
        perr("floor(some_metric, other_metric)"),
        "1:1: parse error: expected 1 argument(s) in call to \"floor\", got 2"
    );
    assert_eq!(
        perr("floor(some_metric, 1)"),
        "1:1: parse error: expected 1 argument(s) in call to \"floor\", got 2"
    );
    assert_eq!(
        perr("floor(1)"),
        "1:7: parse error: expected type instant vector in call to function \"floor\", got scalar"
    );
    assert_eq!(
        perr("hour(some_metric, some_metric, some_metric)"),
        "1:1: parse error: expected at most 1 argument(s) in call to \"hour\", got 3"
    );
    assert_eq!(
        perr("time(some_metric)"),
        "1:1: parse error: expected 0 argument(s) in call to \"time\", got 1"
    );
    assert_eq!(perr("rate(some_metric)"), "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector");
    assert_eq!(
        perr("label_replace(a, \"b\")"),
        "1:1: parse error: expected 5 argument(s) in call to \"label_replace\", got 2"
    );
    assert_eq!(
        perr("label_join(a)"),
        "1:1: parse error: expected at least 3 argument(s) in call to \"label_join\", got 1"
    );
    assert_eq!(
        perr("non_existent_function_far_bar()"),
        "1:1: parse error: unknown function with name \"non_existent_function_far_bar\""
    );
    assert_eq!(
        perr("sum(foo,)"),
        "1:8: parse error: trailing commas not allowed in function call args"
    );
    assert_eq!(
        perr("rate(foo[5m],)"),
        "1:13: parse error: trailing commas not allowed in function call args"
    );
    assert_eq!(perr("rate(avg)"), "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector");
    assert!(
        parse_with("mad_over_time(x[5m])", ParseOptions::prometheus_defaults())
            .unwrap_err()
            .to_string()
            .contains("is not enabled")
    );
}

#[test]
fn subqueries() {
    let Expr::Subquery(s) = p("foo[10m:6s]") else {
        panic!()
    };
    assert_eq!(s.range, Duration::Ms(600_000));
    assert_eq!(s.step, Some(Duration::Ms(6000)));
    let Expr::Subquery(s) = p("min_over_time(rate(foo{bar=\"baz\"}[2s])[5m:])[4m:3s]") else {
        panic!()
    };
    assert!(s.step.is_some());
    let Expr::Subquery(s) = p("some_metric OFFSET 1m [10m:5s]") else {
        panic!()
    };
    assert!(matches!(&*s.expr, Expr::VectorSelector(v) if v.offset == Some(Duration::Ms(60_000))));
    let Expr::Subquery(s) = p("some_metric[10m:5s] offset 1m @ 123") else {
        panic!()
    };
    assert_eq!(s.offset, Some(Duration::Ms(60_000)));
    assert_eq!(s.at, Some(AtModifier::Timestamp(123_000)));
    assert_eq!(
        p("(foo + bar{nm=\"val\"})[5m:] offset 10m").to_string(),
        "(foo + bar{nm=\"val\"})[5m:] offset 10m"
    );
    assert_eq!(
        p("rate(foo[5m])[1h:1m] @ end()").to_string(),
        "rate(foo[5m])[1h:1m] @ end()"
    );
    assert_eq!(
        perr("test[5d] OFFSET 10s [10m:5s]"),
        "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"
    );
    assert_eq!(
        perr("rate(food[1m])[1h] offset 1h"),
        "1:15: parse error: ranges only allowed for vector selectors"
    );
    assert_eq!(
        perr("foo[5m:1m"),
        "1:10: parse error: unclosed left bracket"
    );
    assert_eq!(p("foo[5m:1m]").value_type(), ValueType::Matrix);
}

#[test]
fn extended_range_selectors() {
    let Expr::MatrixSelector(m) = p("foo[5m] anchored") else {
        panic!()
    };
    assert!(m.vector.anchored);
    let Expr::MatrixSelector(m) = p("foo[5m] smoothed offset 1m") else {
        panic!()
    };
    assert!(m.vector.smoothed);
    assert_eq!(
        p("foo[5m] smoothed offset 1m").to_string(),
        "foo[5m] smoothed offset 1m"
    );
    assert_eq!(p("foo anchored").to_string(), "foo anchored");
    assert_eq!(
        perr("foo[5m] anchored smoothed"),
        "1:1: parse error: anchored and smoothed modifiers cannot be used together"
    );
    assert_eq!(
        perr("foo[5m:1m] anchored"),
        "1:1: parse error: anchored modifier is not supported for subqueries"
    );
    assert!(parse_with("foo[5m] anchored", ParseOptions::prometheus_defaults()).is_err());
}

#[test]
fn misc_errors() {
    assert_eq!(
        perr(""),
        "unknown position: parse error: no expression found in input"
    );
    assert_eq!(
        perr("   # only a comment"),
        "1:1: parse error: no expression found in input"
    );
    assert_eq!(
        perr("(1))"),
        "1:4: parse error: unexpected right parenthesis ')'"
    );
    assert_eq!(perr("((1)"), "1:5: parse error: unclosed left parenthesis");
    assert_eq!(perr("1 2"), "1:3: parse error: unexpected number \"2\"");
    assert_eq!(
        perr("foo bar"),
        "1:5: parse error: unexpected identifier \"bar\""
    );
    assert_eq!(perr("."), "1:1: parse error: unexpected character: '.'");
    assert_eq!(
        perr("2.5."),
        "1:1: parse error: bad number or duration syntax: \"2.5.\""
    );
    assert_eq!(
        perr("100.."),
        "1:1: parse error: bad number or duration syntax: \"100..\""
    );
    assert_eq!(
        perr("\n\n  foo +"),
        "3:8: parse error: unexpected end of input"
    );
    assert!(perr("999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999").contains("value out of range"));
    assert_eq!(perr("on"), "1:1: parse error: unexpected <on>");
}

#[test]
fn metric_selector_and_durations_api() {
    let ms = parse_metric_selector(r#"foo{a="b"}"#).unwrap();
    assert_eq!(
        ms,
        vec![Matcher::equal("a", "b"), Matcher::equal(METRIC_NAME, "foo")]
    );
    let ms = parse_metric_selector(r#"{__name__=~"x.*", "a.b"!="c"}"#).unwrap();
    assert_eq!(ms.len(), 2);
    assert!(parse_metric_selector("foo + bar").is_err());
    assert!(parse_metric_selector("rate(x[5m])").is_err());
    assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
    assert_eq!(parse_duration("1y").unwrap(), 365 * 86_400_000);
    assert_eq!(parse_duration("100ms").unwrap(), 100);
    assert_eq!(parse_duration("0").unwrap(), 0);
    assert!(parse_duration("").is_err());
    assert!(parse_duration("1.5m").is_err());
    assert!(parse_duration("1m1h").is_err());
    assert_eq!(parse_duration_or_seconds("15").unwrap(), 15_000);
    assert_eq!(parse_duration_or_seconds("1.5").unwrap(), 1500);
    assert_eq!(parse_duration_or_seconds("2m").unwrap(), 120_000);
    assert!(parse_duration_or_seconds("abc").is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let n = 10_000;
            let q = format!("{}1{}", "(".repeat(n), ")".repeat(n));
            assert!(perr(&q).contains("too deep"));
            let q = format!("{}1", "-".repeat(n));
            assert!(parse(&q).is_err());
            let q = format!("{}foo{}", "sum(".repeat(n), ")".repeat(n));
            assert!(parse(&q).is_err());
            let q = format!("foo[{}1{}]", "(".repeat(n), ")".repeat(n));
            assert!(parse(&q).is_err());
            let q = vec!["x"; 50_000].join(" + ");
            assert!(parse(&q).is_err());
            let q = vec!["x"; 50_000].join(" ^ ");
            assert!(parse(&q).is_err());
            // Reasonable nesting works, and so does printing it.
            let q = format!("{}1{}", "(".repeat(200), ")".repeat(200));
            assert_eq!(p(&q).to_string(), q);
            let q = vec!["x"; 1000].join(" or ");
            assert_eq!(p(&q).to_string(), q);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn value_types() {
    assert_eq!(p("1").value_type(), ValueType::Scalar);
    assert_eq!(p("\"a\"").value_type(), ValueType::String);
    assert_eq!(p("foo").value_type(), ValueType::Vector);
    assert_eq!(p("foo[1m]").value_type(), ValueType::Matrix);
    assert_eq!(p("1 + 1").value_type(), ValueType::Scalar);
    assert_eq!(p("1 + foo").value_type(), ValueType::Vector);
    assert_eq!(p("-(1)").value_type(), ValueType::Scalar);
    assert_eq!(p("scalar(foo)").value_type(), ValueType::Scalar);
}

#[test]
fn printing_matches_prometheus() {
    for (q, want) in [
        ("sum by(job)(rate(x[5m]))", "sum by (job) (rate(x[5m]))"),
        ("a   +   b", "a + b"),
        ("foo{b=\"2\",a=\"1\"}", "foo{a=\"1\",b=\"2\"}"),
        ("foo offset 90m", "foo offset 1h30m"),
        ("foo offset -1d", "foo offset -1d"),
        ("foo @ 1.5", "foo @ 1.500"),
        ("foo[1w]", "foo[1w]"),
        ("foo[7d]", "foo[1w]"),
        ("1e3", "1000"),
        ("0x10", "16"),
        ("-Inf", "-Inf"),
        ("'a\"b'", "\"a\\\"b\""),
        ("topk(3, x) by (a)", "topk by (a) (3, x)"),
        (
            "foo > bool on() group_left bar",
            "foo > bool on () group_left () bar",
        ),
        ("x[5m:]", "x[5m:]"),
        ("rate(x[90s])", "rate(x[1m30s])"),
    ] {
        assert_eq!(p(q).to_string(), want, "{q}");
        assert!(ast_eq(&p(want), &p(q)), "{q}");
    }
}
