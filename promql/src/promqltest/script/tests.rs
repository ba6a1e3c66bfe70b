use super::*;
use crate::promqltest::series::HistogramOp;
use std::collections::HashSet;

fn parse(src: &str) -> Vec<Command> {
    parse_script(src).unwrap_or_else(|e| panic!("{e}"))
}

fn one_eval(src: &str) -> EvalCommand {
    match parse(src).remove(0).kind {
        CommandKind::Eval(e) => *e,
        k => panic!("{k:?}"),
    }
}

fn err_line(src: &str) -> usize {
    match parse_script(src) {
        Ok(c) => panic!("expected error, got {c:?}"),
        Err(e) => e.line,
    }
}

#[test]
fn commands_and_blocks() {
    let src = "# comment\n\nload 5m\n\thttp{job=\"a\"} 0+10x2\n  http{job=\"b\"} 1\n\nCLEAR\nload_with_nhcb 1m\n  x_bucket{le=\"1\"} 1\n# comment ends block\neval instant at 10m http\n  http{job=\"a\"} 20\n";
    let cmds = parse(src);
    assert_eq!(cmds.len(), 4);
    assert_eq!(cmds[0].line, 3);
    let CommandKind::Load(l) = &cmds[0].kind else {
        panic!()
    };
    assert_eq!(
        (l.step_ms, l.with_nhcb, l.series.len()),
        (300_000, false, 2)
    );
    assert_eq!(l.series[0].line, 4);
    assert_eq!(l.series[0].labels.get("job"), Some("a"));
    assert_eq!(l.series[0].values.len(), 3);
    assert!(matches!(cmds[1].kind, CommandKind::Clear));
    assert_eq!(cmds[1].line, 7);
    let CommandKind::Load(l) = &cmds[2].kind else {
        panic!()
    };
    assert!(l.with_nhcb);
    assert_eq!(l.step_ms, 60_000);
    let CommandKind::Eval(e) = &cmds[3].kind else {
        panic!()
    };
    assert_eq!(e.line, 11);
    assert_eq!(e.expr, "http");
    assert_eq!(e.kind, EvalKind::Instant { at_ms: 600_000 });
    assert_eq!(e.expected_series.len(), 1);
    assert_eq!(e.expected_series[0].line, 12);
    assert_eq!(e.expected_series[0].position, 1);

    // An empty load is fine; a comment line terminates a block.
    let cmds = parse("load 1m\n# c\n");
    assert_eq!(cmds.len(), 1);
    assert_eq!(
        err_line("load 1m\n  a 1\n# c\n  b 2\n"),
        4,
        "b 2 becomes a command"
    );
    assert_eq!(err_line("\n\nfoo bar\n"), 3);
    assert_eq!(err_line("load\n"), 1);
    assert_eq!(err_line("load 5x\n"), 1);
    assert_eq!(err_line("loadx 5m\n"), 1);
    assert_eq!(err_line("load 1m\n  a{ 1\n"), 2);
}

#[test]
fn load_duplicates_replace() {
    let cmds = parse("load 1m\n  a{x=\"1\"} 1\n  b 2\n  {__name__=\"a\", x=\"1\"} 3\n");
    let CommandKind::Load(l) = &cmds[0].kind else {
        panic!()
    };
    assert_eq!(l.series.len(), 2);
    assert_eq!(l.series[0].values, vec![SampleValue::Float(3.0)]);
    assert_eq!(l.series[0].line, 4);
}

#[test]
fn start_timestamp_lines() {
    let cmds = parse(
        "load 1m\n  m{t=\"a\"}@st _ _ -30s-1mx1 -1m+1sx0 _x2 0s\n  m{t=\"a\"} 1 2 3 4 5 6 7 8\n  n 1\n",
    );
    let CommandKind::Load(l) = &cmds[0].kind else {
        panic!()
    };
    assert_eq!(
        l.series[0].start_timestamps,
        Some(vec![
            None,
            None,
            Some(-30_000),
            Some(-90_000),
            Some(-60_000),
            None,
            None,
            Some(0)
        ])
    );
    assert!(l.series[1].start_timestamps.is_none());
    let st = parse("load 1m\n  d@st -59999msx2 +5s\n  d 1 2 3 4\n");
    let CommandKind::Load(l) = &st[0].kind else {
        panic!()
    };
    assert_eq!(
        l.series[0].start_timestamps,
        Some(vec![
            Some(-59_999),
            Some(-59_999),
            Some(-59_999),
            Some(5_000)
        ])
    );
    // Errors: mismatched metric, count, dangling, bad items.
    assert_eq!(err_line("load 1m\n  a@st 0s\n  b 1\n"), 2);
    assert_eq!(err_line("load 1m\n  a@st 0s 0s\n  a 1\n"), 2);
    assert_eq!(err_line("load 1m\n  a 1\n  a@st 0s\n"), 3);
    assert_eq!(err_line("load 1m\n  a@st 0s\n  a@st 0s\n  a 1\n"), 2);
    for bad in ["_x0", "1m30s", "5", "1mx", "1m+1m", "1m*1mx2", "xx"] {
        assert!(
            parse_script(&format!("load 1m\n  a@st {bad}\n  a 1\n")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn eval_headers() {
    let e = one_eval("eval instant at 1h30m sum(rate(x[5m])) by (job)\n");
    assert_eq!(e.kind, EvalKind::Instant { at_ms: 5_400_000 });
    assert_eq!(e.expr, "sum(rate(x[5m])) by (job)");
    assert_eq!(e.expr_offset, "eval instant at 1h30m ".len());
    assert!(e.expected_series.is_empty() && e.expected_scalar.is_none());

    let e = one_eval("eval range from 0 to 10m step 1m   foo + 1\n");
    assert_eq!(
        e.kind,
        EvalKind::Range {
            start_ms: 0,
            end_ms: 600_000,
            step_ms: 60_000
        }
    );
    assert_eq!(e.expr, "foo + 1");
    assert_eq!(e.value_grid(), Some((0, 600_000, 60_000)));

    for (hdr, m) in [
        ("eval_fail instant at 0 foo", LegacyModifier::Fail),
        ("eval_warn instant at 0 foo", LegacyModifier::Warn),
        (
            "eval_info range from 0 to 1m step 1m foo",
            LegacyModifier::Info,
        ),
        ("eval_ordered instant at 0 foo", LegacyModifier::Ordered),
    ] {
        assert_eq!(one_eval(hdr).legacy, Some(m), "{hdr}");
    }
    assert!(one_eval("eval_fail instant at 0 foo").is_fail());
    assert!(one_eval("eval_ordered instant at 0 foo").is_ordered());

    assert_eq!(err_line("eval_ordered range from 0 to 1m step 1m foo\n"), 1);
    assert_eq!(err_line("eval instant foo\n"), 1, "missing at");
    assert_eq!(err_line("eval instant at 1x foo\n"), 1);
    assert_eq!(err_line("eval range from 5m to 1m step 1m foo\n"), 1);
    assert_eq!(err_line("eval range from 0 to 1m foo\n"), 1);
    assert_eq!(err_line("evaluate foo\n"), 1);
}

#[test]
fn eval_bodies() {
    let e = one_eval(
        "eval instant at 1m foo\n  expect no_warn\n  expect info msg: PromQL info: x (1:1)\n  expect info regex: PromQL info: .* \\([0-9]+:[0-9]+\\)\n  foo{a=\"1\"} 1\n  expect ordered\n  {a=\"2\"} -Inf\n",
    );
    assert_eq!(e.expectations.len(), 4);
    assert_eq!(e.expectations[0].kind, ExpectKind::NoWarn);
    assert_eq!(e.expectations[0].matcher, TextMatch::Any);
    assert_eq!(e.expectations[0].line, 2);
    assert_eq!(
        e.expectations[1].matcher,
        TextMatch::Exact("PromQL info: x (1:1)".into())
    );
    assert!(e.expectations[2]
        .matcher
        .matches("PromQL info: foo bar (3:14)"));
    assert!(!e.expectations[2].matcher.matches("PromQL info: foo bar"));
    assert!(e.is_ordered());
    assert_eq!(e.expected_series.len(), 2);
    // Positions skip `expect` lines.
    assert_eq!(e.expected_series[0].position, 1);
    assert_eq!(e.expected_series[1].position, 2);
    assert_eq!(
        e.expected_series[1].values,
        vec![SampleValue::Float(f64::NEG_INFINITY)]
    );
    assert!(e.expected_series[1].labels.metric_name().is_none());

    // Scalar line ends the block.
    let cmds = parse("eval instant at 1m 1 + 1\n  2\nclear\n");
    assert_eq!(cmds.len(), 2);
    let CommandKind::Eval(e) = &cmds[0].kind else {
        panic!()
    };
    assert_eq!(e.expected_scalar, Some((2, 2.0)));
    for (txt, v) in [
        ("NaN", f64::NAN),
        ("-Inf", f64::NEG_INFINITY),
        ("0x10", 16.0),
        ("1e-3", 0.001),
        ("-0.5", -0.5),
    ] {
        let e = one_eval(&format!("eval instant at 0 x\n  {txt}\n"));
        let got = e.expected_scalar.unwrap().1;
        assert!(got == v || (got.is_nan() && v.is_nan()), "{txt}");
    }
    assert_eq!(err_line("eval instant at 1m 1\n  2\n  3\n"), 3);

    // expect string, both quote styles.
    let e = one_eval("eval instant at 50m (\"Foo\")\n  expect string \" Foo \"\n");
    assert_eq!(e.expected_string.as_deref(), Some(" Foo "));
    assert!(e.exclude_from_range_check);
    let e = one_eval("eval instant at 50m `Foo`\n  expect string `Foo`\n");
    assert_eq!(e.expected_string.as_deref(), Some("Foo"));
    let e = one_eval("eval instant at 50m \"\"\n  expect string \"\"\n");
    assert_eq!(e.expected_string.as_deref(), Some(""));
    assert_eq!(err_line("eval instant at 0 \"a\"\n  expect string\n"), 2);
    assert_eq!(
        err_line("eval instant at 0 \"a\"\n  expect string Foo\n"),
        2
    );

    // expect range vector.
    let e = one_eval("eval instant at 1m foo[1m]\n  expect range vector from 10s to 1m step 10s\n  foo 1 2 3 4 5 6\n");
    assert_eq!(
        e.range_vector,
        Some(RangeVectorExpect {
            start_ms: 10_000,
            end_ms: 60_000,
            step_ms: 10_000
        })
    );
    assert_eq!(e.eval_time_ms(), 60_000);
    assert_eq!(e.expected_series[0].values.len(), 6);
    assert_eq!(
        e.expected_series[0].position, 2,
        "range-vector line counts, as in Prometheus"
    );
    assert_eq!(
        err_line("eval instant at 1m foo\n  foo 1 2\n"),
        2,
        "multiple values need range vector"
    );
    assert_eq!(
        err_line("eval instant at 1m foo\n  expect range vector from 1m to 0 step 1s\n"),
        2
    );

    // Range eval bodies with gaps and histograms.
    let e = one_eval("eval range from 0 to 3m step 1m foo\n  foo{a=\"1\"} 1 _ 3 {{sum:1}}\n  foo{a=\"2\"} _x2 1x1\n");
    assert_eq!(e.expected_series[0].values[1], SampleValue::Omitted);
    assert!(e.expects_histograms());
    assert_eq!(e.expected_series[1].values.len(), 4);

    // Duplicate expected series: the later replaces the earlier.
    let e = one_eval("eval instant at 0 foo\n  foo 1\n  {__name__=\"foo\"} 2\n");
    assert_eq!(e.expected_series.len(), 1);
    assert_eq!(e.expected_series[0].values, vec![SampleValue::Float(2.0)]);
    assert_eq!(e.expected_series[0].position, 2);
}

#[test]
fn expect_line_rules() {
    let e = one_eval("eval instant at 0 foo\n  expect fail msg:   some error  \n");
    assert!(e.is_fail());
    assert_eq!(
        e.expectations[0].matcher,
        TextMatch::Exact("some error".into())
    );
    let e = one_eval("eval instant at 0 foo\n  expect warn\n  expect warn regex: a.c\n");
    assert_eq!(e.expects(ExpectKind::Warn).count(), 2);
    // Invalid combinations and syntax.
    assert_eq!(
        err_line("eval instant at 0 foo\n  expect info\n  expect no_info\n"),
        3
    );
    assert_eq!(
        err_line("eval instant at 0 foo\n  expect no_warn\n  expect warn\n"),
        3
    );
    assert_eq!(
        err_line("eval instant at 0 foo\n  expect fail\n  expect fail\n"),
        3
    );
    assert_eq!(err_line("eval instant at 0 foo\n  expect bogus\n"), 2);
    assert_eq!(err_line("eval instant at 0 foo\n  expect fail msg:\n"), 2);
    assert_eq!(
        err_line("eval instant at 0 foo\n  expect fail regex: (\n"),
        2
    );
    assert_eq!(
        err_line("eval instant at 0 foo\n  expect fail message: x\n"),
        2
    );
    // `expect{}` is a series named expect.
    let e = one_eval("eval instant at 0 expect\n  expect{} 1\n");
    assert_eq!(e.expected_series[0].labels.metric_name(), Some("expect"));
    // Deprecated failure details end the block, only after eval_fail.
    let cmds = parse("eval_fail instant at 0 foo\n  expected_fail_message  boom here \nclear\n");
    let CommandKind::Eval(e) = &cmds[0].kind else {
        panic!()
    };
    assert_eq!(e.expected_fail, Some(TextMatch::Exact("boom here".into())));
    assert_eq!(cmds.len(), 2);
    let e = one_eval("eval_fail instant at 0 foo\n  expected_fail_regexp b.*m\n");
    assert!(matches!(&e.expected_fail, Some(TextMatch::Regex(r)) if r.as_str() == "b.*m"));
    assert_eq!(
        err_line("eval instant at 0 foo\n  expected_fail_message boom\n"),
        2
    );
}

#[test]
fn histogram_sequences_in_loads() {
    let cmds = parse(
        "load 5m\n  h {{schema:0 sum:5 count:4 buckets:[1 2 1]}}+{{sum:1 count:1 buckets:[1]}}x3\n",
    );
    let CommandKind::Load(l) = &cmds[0].kind else {
        panic!()
    };
    assert!(l.has_histograms());
    let v = &l.series[0].values;
    assert_eq!(v.len(), 4);
    let SampleValue::Histogram(h) = &v[3] else {
        panic!()
    };
    assert_eq!(h.index, 3);
    assert_eq!(h.step.as_ref().map(|s| s.0), Some(HistogramOp::Add));
}

fn corpus_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/prometheus/promql-tests"
    ))
}

/// Names of identifiers in an expression (`[A-Za-z_:][A-Za-z0-9_:]*`), plus quoted strings.
fn expr_names(expr: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut cur = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            cur.push(c);
        } else {
            if !cur.is_empty() && !cur.starts_with(|d: char| d.is_ascii_digit()) {
                out.insert(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    for part in expr.split('"').skip(1).step_by(2) {
        out.insert(part.to_string());
    }
    out
}

#[derive(Default, Debug)]
struct Stats {
    evals: usize,
    instant: usize,
    range: usize,
    loads: usize,
    loads_nhcb: usize,
    loads_hist: usize,
    loads_nh_any: usize,
    clears: usize,
    nh_result: usize,
    nh_data: usize,
    nh_any: usize,
    fail: usize,
    warn: usize,
    info: usize,
    ordered: usize,
}

fn stats(cmds: &[Command]) -> Stats {
    let mut s = Stats::default();
    let mut hist_names: HashSet<String> = HashSet::new();
    for c in cmds {
        match &c.kind {
            CommandKind::Clear => {
                s.clears += 1;
                hist_names.clear();
            }
            CommandKind::Load(l) => {
                s.loads += 1;
                if l.with_nhcb {
                    s.loads_nhcb += 1;
                    for ser in &l.series {
                        if let Some(n) = ser.labels.metric_name() {
                            for suf in ["_bucket", "_count", "_sum"] {
                                if let Some(base) = n.strip_suffix(suf) {
                                    hist_names.insert(base.to_string());
                                }
                            }
                        }
                    }
                }
                if l.has_histograms() {
                    s.loads_hist += 1;
                }
                s.loads_nh_any += usize::from(l.has_histograms() || l.with_nhcb);
                for ser in &l.series {
                    if ser.values.iter().any(SampleValue::is_histogram) {
                        if let Some(n) = ser.labels.metric_name() {
                            hist_names.insert(n.to_string());
                        }
                    }
                }
            }
            CommandKind::Eval(e) => {
                s.evals += 1;
                if e.is_range() {
                    s.range += 1;
                } else {
                    s.instant += 1;
                }
                let result = e.expects_histograms();
                let names = expr_names(&e.expr);
                let data = names.iter().any(|n| hist_names.contains(n))
                    || (names.contains("__name__") && !hist_names.is_empty());
                s.nh_result += usize::from(result);
                s.nh_data += usize::from(data);
                s.nh_any += usize::from(result || data);
                s.fail += usize::from(e.is_fail());
                s.warn += usize::from(
                    e.legacy == Some(LegacyModifier::Warn)
                        || e.expects(ExpectKind::Warn).next().is_some(),
                );
                s.info += usize::from(
                    e.legacy == Some(LegacyModifier::Info)
                        || e.expects(ExpectKind::Info).next().is_some(),
                );
                s.ordered += usize::from(e.is_ordered());
            }
        }
    }
    s
}

/// Parses every upstream `.test` file and reconciles the eval count with an independent line
/// count (FORMAT.md section 4 reports 2214 evals: 1885 instant, 329 range).
#[test]
fn parses_every_upstream_file() {
    let dir = corpus_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("promql-tests directory {} missing: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        21,
        "expected the 21 upstream .test files in {}",
        dir.display()
    );
    let mut total = Stats::default();
    let mut counted_evals = 0;
    let mut counted_loads = 0;
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let line_evals = src.lines().filter(|l| l.trim().starts_with("eval")).count();
        let line_loads = src.lines().filter(|l| l.trim().starts_with("load")).count();
        counted_evals += line_evals;
        counted_loads += line_loads;
        match parse_script(&src) {
            Ok(cmds) => {
                let s = stats(&cmds);
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                eprintln!(
                    "{name}: evals {} (instant {}, range {}) nh_result {} nh_data {} nh_any {} fail {} warn {} info {} ordered {} loads {} (nhcb {}, with histograms {}) clears {}",
                    s.evals, s.instant, s.range, s.nh_result, s.nh_data, s.nh_any, s.fail, s.warn, s.info, s.ordered, s.loads, s.loads_nhcb, s.loads_hist, s.clears
                );
                assert_eq!(s.evals, line_evals, "{name}: eval count vs line count");
                assert_eq!(s.loads, line_loads, "{name}: load count vs line count");
                total.evals += s.evals;
                total.instant += s.instant;
                total.range += s.range;
                total.loads += s.loads;
                total.loads_nhcb += s.loads_nhcb;
                total.loads_hist += s.loads_hist;
                total.loads_nh_any += s.loads_nh_any;
                total.clears += s.clears;
                total.nh_result += s.nh_result;
                total.nh_data += s.nh_data;
                total.nh_any += s.nh_any;
                total.fail += s.fail;
                total.warn += s.warn;
                total.info += s.info;
                total.ordered += s.ordered;
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    eprintln!("TOTAL {total:?}");
    assert!(
        failures.is_empty(),
        "parse failures:\n{}",
        failures.join("\n")
    );
    assert_eq!(counted_evals, 2214);
    assert_eq!(total.evals, 2214);
    assert_eq!((total.instant, total.range), (1885, 329));
    // FORMAT.md's `loads` column (310) includes the 33 `load_with_nhcb` blocks.
    assert_eq!(counted_loads, 310);
    assert_eq!(
        (total.loads, total.loads_nhcb, total.clears),
        (310, 33, 231)
    );
    assert_eq!(total.nh_result, 254);
    // Name-based heuristic, same definition as FORMAT.md section 4.
    assert_eq!((total.nh_data, total.nh_any), (917, 917));
    assert_eq!(total.loads_hist, 134);
    assert_eq!(
        total.loads_nh_any, 167,
        "134 with {{...}} values + 33 load_with_nhcb, disjoint"
    );
    assert_eq!(
        (total.fail, total.warn, total.info, total.ordered),
        (35, 90, 132, 24)
    );
}

/// Truncated and mangled corpus lines must produce errors, never panics.
#[test]
fn mangled_corpus_lines_do_not_panic() {
    let dir = corpus_dir();
    let mut n = 0usize;
    for name in [
        "native_histograms.test",
        "functions.test",
        "start_timestamps.test",
    ] {
        let src = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
        for line in src.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let cuts: Vec<usize> = line.char_indices().map(|(i, _)| i).step_by(5).collect();
            for &cut in &cuts {
                let part = &line[..cut];
                let _ = crate::promqltest::series::parse_series_line(part);
                let _ = crate::promqltest::series::parse_values(&line[cut..]);
                let _ = parse_script(&format!("load 1m\n  {part}\n"));
                let _ = parse_script(&format!("eval instant at 1m x\n  {part}é\n"));
                n += 1;
            }
        }
    }
    assert!(n > 1000);
    for bad in [
        "a 1x99999999999",
        "a 1+1x18446744073709551615",
        "a{b=\"\\",
        "a{b=\"\\é\"} 1",
        "a 1.é",
        "a é",
    ] {
        assert!(
            parse_script(&format!("load 1m\n  {bad}\n")).is_err(),
            "{bad}"
        );
    }
    assert!(parse_script("load 1m\n  a@st 0sx99999999999\n  a 1\n").is_err());
}
