//! Parses real-world query corpora: every query of the PromQL compliance tester
//! (`shared/prometheus/compliance/promql-test-queries.yml`, templates expanded) and every `eval`
//! expression of Prometheus's `.test` scripts (`shared/prometheus/promql-tests/*.test`).

use super::*;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/prometheus");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("test corpus {path} is missing: {e}"))
}

/// One compliance test case.
struct Case {
    query: String,
    variant_args: Vec<String>,
    should_fail: bool,
}

fn yaml_scalar(v: &str) -> String {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        v.to_string()
    }
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut in_cases = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if t == "test_cases:" {
            in_cases = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_cases = false;
        }
        if !in_cases {
            continue;
        }
        let mut body = t;
        if let Some(rest) = t.strip_prefix("- ").or_else(|| (t == "-").then_some("")) {
            cases.push(Case {
                query: String::new(),
                variant_args: Vec::new(),
                should_fail: false,
            });
            body = rest.trim();
            if body.starts_with('#') {
                continue;
            }
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if let Some(q) = body.strip_prefix("query:") {
            case.query = yaml_scalar(q);
        } else if let Some(v) = body.strip_prefix("variant_args:") {
            let v = v.trim().trim_start_matches('[').trim_end_matches(']');
            case.variant_args = v
                .split(',')
                .map(yaml_scalar)
                .filter(|s| !s.is_empty())
                .collect();
        } else if let Some(v) = body.strip_prefix("should_fail:") {
            case.should_fail = v.trim() == "true";
        }
    }
    cases
}

fn variant_values(name: &str) -> Vec<&'static str> {
    match name {
        "range" => vec!["1s", "15s", "1m", "5m", "15m", "1h"],
        "offset" => vec!["1m", "5m", "10m"],
        "simpleAggrOp" => vec!["sum", "avg", "max", "min", "count", "stddev", "stdvar"],
        "simpleTimeAggrOp" => vec![
            "sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last",
        ],
        "topBottomOp" => vec!["topk", "bottomk"],
        "quantile" => vec![
            "-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5",
        ],
        "arithBinOp" => vec!["+", "-", "*", "/", "%", "^"],
        "compBinOp" => vec!["==", "!=", "<", ">", "<=", ">="],
        "binOp" => vec![
            "+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=",
        ],
        "simpleMathFunc" => vec![
            "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round",
        ],
        "extrapolatedRateFunc" => vec!["delta", "rate", "increase"],
        "clampFunc" => vec!["clamp_min", "clamp_max"],
        "instantRateFunc" => vec!["idelta", "irate"],
        "dateFunc" => vec![
            "day_of_month",
            "day_of_week",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        ],
        "smoothingFactor" | "trendFactor" => vec!["0.1", "0.5", "0.8"],
        other => panic!("unknown template variable {other}"),
    }
}

fn expand(case: &Case) -> Vec<String> {
    let mut out = vec![case.query.clone()];
    for arg in &case.variant_args {
        let placeholder = format!("{{{{.{arg}}}}}");
        out = out
            .iter()
            .flat_map(|q| {
                let ph = &placeholder;
                variant_values(arg)
                    .into_iter()
                    .map(move |v| q.replace(ph, v))
            })
            .collect();
    }
    for q in &out {
        assert!(!q.contains("{{"), "unexpanded template in {q}");
    }
    out
}

#[test]
fn compliance_queries_parse() {
    let text = read(&format!("{SHARED}/compliance/promql-test-queries.yml"));
    let cases = parse_cases(&text);
    assert_eq!(cases.len(), 118, "template count");
    let mut total = 0;
    let mut parse_failures_expected = 0;
    let mut bad = Vec::new();
    for case in &cases {
        for q in expand(case) {
            total += 1;
            match parse(&q) {
                Ok(e) => {
                    // The printed form must parse back to the same tree.
                    let printed = e.to_string();
                    let again = parse(&printed)
                        .unwrap_or_else(|err| panic!("{q} printed as {printed}: {err}"));
                    assert!(super::tests::ast_eq(&again, &e), "{q} -> {printed}");
                }
                Err(err) if case.should_fail => {
                    parse_failures_expected += 1;
                    eprintln!("expected failure at parse time: {q}: {err}");
                }
                Err(err) => bad.push(format!("{q}: {err}")),
            }
        }
    }
    eprintln!("compliance: {total} queries, {} parsed, {parse_failures_expected} should_fail rejected by the parser", total - parse_failures_expected - bad.len());
    assert_eq!(total, 539);
    assert!(
        bad.is_empty(),
        "queries that failed to parse:\n{}",
        bad.join("\n")
    );
    // Only `{__name__=~".*"}` is a parse-time failure; the other should_fail cases
    // (label_replace/label_join with bad arguments) fail at evaluation.
    assert_eq!(parse_failures_expected, 1);
}

struct Eval {
    file: String,
    line: usize,
    expr: String,
    expect_fail: bool,
}

fn collect_evals() -> Vec<Eval> {
    let dir = format!("{SHARED}/promql-tests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("test corpus {dir} is missing: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 21,
        "expected the 21 Prometheus .test files in {dir}"
    );
    let instant = regex::Regex::new(
        r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$",
    )
    .unwrap();
    let range = regex::Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let mut evals = Vec::new();
    for f in files {
        let text = read(f.to_str().unwrap());
        let lines: Vec<&str> = text.split('\n').map(|l| l.trim()).collect();
        for (i, l) in lines.iter().enumerate() {
            let (variant, expr) = if let Some(c) = instant.captures(l) {
                (c.get(1).map(|m| m.as_str()), c.get(3).unwrap().as_str())
            } else if let Some(c) = range.captures(l) {
                (c.get(1).map(|m| m.as_str()), c.get(5).unwrap().as_str())
            } else {
                continue;
            };
            let mut expect_fail = variant == Some("fail");
            for l2 in &lines[i + 1..] {
                if l2.is_empty() || l2.starts_with('#') {
                    break;
                }
                if l2.starts_with("expect fail") {
                    expect_fail = true;
                }
            }
            evals.push(Eval {
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                line: i + 1,
                expr: expr.to_string(),
                expect_fail,
            });
        }
    }
    evals
}

#[test]
fn test_script_expressions_parse() {
    let evals = collect_evals();
    let mut ok = 0;
    let mut failed_expected = 0;
    let mut bad = Vec::new();
    for ev in &evals {
        match parse(&ev.expr) {
            Ok(e) => {
                ok += 1;
                let printed = e.to_string();
                match parse(&printed) {
                    Ok(again) => assert!(
                        super::tests::ast_eq(&again, &e),
                        "{}:{} {} -> {printed}",
                        ev.file,
                        ev.line,
                        ev.expr
                    ),
                    Err(err) => panic!(
                        "{}:{} {} printed as {printed}: {err}",
                        ev.file, ev.line, ev.expr
                    ),
                }
            }
            Err(_) if ev.expect_fail => failed_expected += 1,
            Err(err) => bad.push(format!("{}:{}: {}: {err}", ev.file, ev.line, ev.expr)),
        }
    }
    let n_fail = evals.iter().filter(|e| e.expect_fail).count();
    eprintln!(
        ".test evals: {} expressions, {ok} parsed, {failed_expected} of {n_fail} `expect fail` rejected by the parser, {} unexpected parse failures",
        evals.len(),
        bad.len()
    );
    assert!(evals.len() > 2000);
    assert!(
        bad.is_empty(),
        "expressions that failed to parse:\n{}",
        bad.join("\n")
    );
}
