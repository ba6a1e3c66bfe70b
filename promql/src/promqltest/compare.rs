//! How promqltest compares a query outcome with an eval's expectations (FORMAT.md 3):
//! `almost.Equal` float tolerance, series matching by label set, ordering only under
//! `expect ordered`, matrix sortedness, annotation and failure expectations. The runner converts
//! the engine's result into a [`GotResult`] and calls [`compare_result`] and friends.
//! Histogram values cannot be compared yet: such cases yield [`Mismatch::Unsupported`].

use std::sync::OnceLock;

use regex::Regex;
use strata_tsdb::labels::Labels;
use strata_tsdb::storage::is_stale_nan;

use super::script::{EvalCommand, EvalKind, ExpectKind, LegacyModifier, TextMatch};
use super::series::SampleValue;

/// Relative tolerance used for all float comparisons.
pub const DEFAULT_EPSILON: f64 = 0.000001;

/// Prometheus's `util/almost.Equal`: a stale marker equals only a stale marker; any two NaNs are
/// equal; exact equality (so `Inf == Inf`); if either side is 0 or the magnitude sum is
/// subnormal, `|a−b| < ε·MIN_NORMAL`; else `|a−b| / min(|a|+|b|, MAX) < ε`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    crate::engine::almost_equal(a, b, epsilon)
}

/// A point value produced by the engine. Histogram contents are opaque here (a rendering for
/// messages) until the engine supports them.
#[derive(Clone, Debug, PartialEq)]
pub enum GotValue {
    Float(f64),
    Histogram(String),
}

/// One element of an instant-vector result.
#[derive(Clone, Debug, PartialEq)]
pub struct GotSample {
    pub labels: Labels,
    pub value: GotValue,
}

/// One series of a matrix result.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GotSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, String)>,
}

/// A query result as seen by the comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum GotResult {
    Vector(Vec<GotSample>),
    Matrix(Vec<GotSeries>),
    Scalar(f64),
    String(String),
}

/// Why a comparison did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The result differs from the expectation (the test fails).
    Failed(String),
    /// The comparison needs native-histogram support that does not exist yet.
    Unsupported(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Failed(m) => write!(f, "{m}"),
            Mismatch::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

fn fail<T>(msg: String) -> Result<T, Mismatch> {
    Err(Mismatch::Failed(msg))
}

/// Matrix results must be sorted by label set (`labels.Compare`).
pub fn check_matrix_sorted(series: &[GotSeries]) -> Result<(), String> {
    for (i, w) in series.windows(2).enumerate() {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but matrix is not sorted: series at index {} with labels {} sorts before series at index {} with labels {}",
                i + 1,
                w[1].labels,
                i,
                w[0].labels
            ));
        }
    }
    Ok(())
}

/// Compares a successful result with the eval's expected result (`compareResult`).
pub fn compare_result(ev: &EvalCommand, got: &GotResult) -> Result<(), Mismatch> {
    match got {
        GotResult::Matrix(mat) => compare_matrix(ev, mat),
        GotResult::Vector(vec) => compare_vector(ev, vec),
        GotResult::Scalar(v) => {
            let Some((_, exp)) = ev.expected_scalar else {
                return fail(format!(
                    "expected vector or matrix result, but got scalar {v}"
                ));
            };
            if !almost_equal(exp, *v, DEFAULT_EPSILON) {
                return fail(format!("expected scalar {exp} but got {v}"));
            }
            Ok(())
        }
        GotResult::String(s) => {
            let exp = ev.expected_string.as_deref().unwrap_or("");
            if exp != s {
                return fail(format!("expected string \"{exp}\" but got \"{s}\""));
            }
            Ok(())
        }
    }
}

fn compare_matrix(ev: &EvalCommand, mat: &[GotSeries]) -> Result<(), Mismatch> {
    if ev.is_ordered() {
        return fail("expected ordered result, but query returned a matrix".into());
    }
    if ev.expected_scalar.is_some() {
        return fail("expected scalar result, but got matrix".into());
    }
    check_matrix_sorted(mat).map_err(Mismatch::Failed)?;
    let (start, end, step) = ev.value_grid().unwrap_or_else(|| {
        let t = ev.eval_time_ms();
        (t, t, 0)
    });
    let mut unsupported = None;
    for s in mat {
        let Some(exp) = ev.expected_series.iter().find(|e| e.labels == s.labels) else {
            return fail(format!(
                "unexpected metric {} in result, has {} float points and {} histogram points",
                s.labels,
                s.floats.len(),
                s.histograms.len()
            ));
        };
        let mut exp_floats = Vec::new();
        let mut exp_hists = Vec::new();
        for (i, v) in exp.values.iter().enumerate() {
            let t = start.saturating_add((i as i64).saturating_mul(step));
            if t > end {
                return fail(format!(
                    "expected {} points for {}, but query time range cannot return this many points",
                    exp.values.len(),
                    exp.labels
                ));
            }
            match v {
                SampleValue::Histogram(_) => exp_hists.push(t),
                SampleValue::Float(f) => exp_floats.push((t, *f)),
                SampleValue::Omitted => {}
            }
        }
        if exp_floats.len() != s.floats.len() || exp_hists.len() != s.histograms.len() {
            return fail(format!(
                "expected {} float points and {} histogram points for {}, but got {} float points {:?} and {} histogram points",
                exp_floats.len(),
                exp_hists.len(),
                exp.labels,
                s.floats.len(),
                s.floats,
                s.histograms.len()
            ));
        }
        for (i, (&(et, ef), &(at, af))) in exp_floats.iter().zip(&s.floats).enumerate() {
            if et != at {
                return fail(format!(
                    "expected float value at index {i} for {} to have timestamp {et}, but it had timestamp {at} (result has {:?})",
                    exp.labels, s.floats
                ));
            }
            if !almost_equal(af, ef, DEFAULT_EPSILON) {
                return fail(format!(
                    "expected float value at index {i} (t={at}) for {} to be {ef}, but got {af} (result has {:?})",
                    exp.labels, s.floats
                ));
            }
        }
        for (i, (&et, (at, _))) in exp_hists.iter().zip(&s.histograms).enumerate() {
            if et != *at {
                return fail(format!(
                    "expected histogram value at index {i} for {} to have timestamp {et}, but it had timestamp {at}",
                    exp.labels
                ));
            }
            unsupported.get_or_insert_with(|| {
                format!("comparing native histogram values for {}", exp.labels)
            });
        }
    }
    for e in &ev.expected_series {
        if !mat.iter().any(|s| s.labels == e.labels) {
            return fail(format!("expected metric {} not found", e.labels));
        }
    }
    match unsupported {
        Some(m) => Err(Mismatch::Unsupported(m)),
        None => Ok(()),
    }
}

fn compare_vector(ev: &EvalCommand, vec: &[GotSample]) -> Result<(), Mismatch> {
    if ev.expected_scalar.is_some() {
        return fail("expected scalar result, but got vector".into());
    }
    let mut unsupported = None;
    for (pos, v) in vec.iter().enumerate() {
        let Some(exp) = ev.expected_series.iter().find(|e| e.labels == v.labels) else {
            return fail(match &v.value {
                GotValue::Float(f) => {
                    format!("unexpected metric {} in result, has value {f}", v.labels)
                }
                GotValue::Histogram(h) => {
                    format!("unexpected metric {} in result, has value {h}", v.labels)
                }
            });
        };
        if ev.is_ordered() && exp.position != pos + 1 {
            return fail(format!(
                "expected metric {} at position {} but was at {}",
                v.labels,
                exp.position,
                pos + 1
            ));
        }
        let Some(exp0) = exp.values.first() else {
            return fail(format!("no expected value given for {}", exp.labels));
        };
        match (exp0, &v.value) {
            (SampleValue::Histogram(_), GotValue::Float(f)) => {
                return fail(format!(
                    "expected histogram for {} but got float value {f}",
                    v.labels
                ))
            }
            (SampleValue::Float(_) | SampleValue::Omitted, GotValue::Histogram(h)) => {
                return fail(format!(
                    "expected float value for {} but got histogram {h}",
                    v.labels
                ))
            }
            (SampleValue::Histogram(_), GotValue::Histogram(_)) => {
                unsupported.get_or_insert_with(|| {
                    format!("comparing native histogram values for {}", v.labels)
                });
            }
            (SampleValue::Float(_) | SampleValue::Omitted, GotValue::Float(f)) => {
                // Prometheus compares an omitted (`_`) expectation as the value 0.
                let e = exp0.as_float().unwrap_or(0.0);
                if !almost_equal(e, *f, DEFAULT_EPSILON) {
                    return fail(format!("expected {e} for {} but got {f}", v.labels));
                }
            }
        }
    }
    for e in &ev.expected_series {
        if !vec.iter().any(|s| s.labels == e.labels) {
            return fail(format!("expected metric {} not found", e.labels));
        }
    }
    match unsupported {
        Some(m) => Err(Mismatch::Unsupported(m)),
        None => Ok(()),
    }
}

fn validate_annotations_of_kind(
    ev: &EvalCommand,
    kind: ExpectKind,
    actual: &[String],
    name: &str,
) -> Result<(), String> {
    let expected: Vec<&TextMatch> = ev.expects(kind).map(|e| &e.matcher).collect();
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!(
            "expected {name} annotations but none were found for query {:?} (line {})",
            ev.expr, ev.line
        ));
    }
    for e in &expected {
        if !actual.iter().any(|a| e.matches(a)) {
            return Err(format!(
                "expected {name} annotation matching {e:?} but no matching annotation was found for query {:?} (line {}), found: {actual:?}",
                ev.expr, ev.line
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.matches(a)) {
            return Err(format!(
                "unexpected {name} annotation {a:?} found for query {} (line {})",
                ev.expr, ev.line
            ));
        }
    }
    Ok(())
}

/// Checks annotations (`checkAnnotations`). `warnings`/`infos` are rendered as Prometheus does:
/// `PromQL warning: <text> (<line>:<col>)` / `PromQL info: <text> (<line>:<col>)`. When the eval
/// has no warn/no_warn/info/no_info expectation (and no legacy variant), nothing is checked.
pub fn check_annotations(
    ev: &EvalCommand,
    warnings: &[String],
    infos: &[String],
) -> Result<(), String> {
    if ev.legacy == Some(LegacyModifier::Warn) && warnings.is_empty() {
        return Err(format!(
            "expected warnings evaluating query {:?} (line {}) but got none",
            ev.expr, ev.line
        ));
    }
    if ev.legacy == Some(LegacyModifier::Info) && infos.is_empty() {
        return Err(format!(
            "expected info annotations evaluating query {:?} (line {}) but got none",
            ev.expr, ev.line
        ));
    }
    validate_annotations_of_kind(ev, ExpectKind::Warn, warnings, "warn")?;
    validate_annotations_of_kind(ev, ExpectKind::Info, infos, "info")?;
    if ev.expects(ExpectKind::NoWarn).next().is_some() && !warnings.is_empty() {
        return Err(format!(
            "unexpected warning annotations evaluating query {:?} (line {}): {warnings:?}",
            ev.expr, ev.line
        ));
    }
    if ev.expects(ExpectKind::NoInfo).next().is_some() && !infos.is_empty() {
        return Err(format!(
            "unexpected info annotations evaluating query {:?} (line {}): {infos:?}",
            ev.expr, ev.line
        ));
    }
    Ok(())
}

/// For an eval expected to fail (`is_fail()`), checks the error message
/// (`checkExpectedFailure`): the deprecated `expected_fail_*` line, then the first `expect fail`.
pub fn check_expected_failure(ev: &EvalCommand, err: &str) -> Result<(), String> {
    match &ev.expected_fail {
        Some(TextMatch::Exact(m)) if !m.is_empty() && m != err => {
            return Err(format!(
                "expected error {m:?} evaluating query {:?} (line {}), but got: {err}",
                ev.expr, ev.line
            ))
        }
        Some(TextMatch::Regex(r)) if !r.is_match(err) => {
            return Err(format!(
            "expected error matching pattern {:?} evaluating query {:?} (line {}), but got: {err}",
            r.as_str(),
            ev.expr,
            ev.line
        ))
        }
        _ => {}
    }
    if let Some(e) = ev.expects(ExpectKind::Fail).next() {
        if !e.matcher.matches(err) {
            return Err(format!(
                "expected error matching {:?} evaluating query {:?} (line {}), but got: {err}",
                e.matcher, ev.expr, ev.line
            ));
        }
    }
    Ok(())
}

/// Whether the extra range-mode re-check of an instant eval (FORMAT.md 3, check 2) applies:
/// not for range evals, `expect range vector`/`expect string`, ordered results, or expressions
/// calling `start()`, `end()`, `range()` or `step()`.
pub fn wants_range_mode_check(ev: &EvalCommand) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"(start|end|range|step)\(\)").ok());
    matches!(ev.kind, EvalKind::Instant { .. })
        && !ev.exclude_from_range_check
        && !ev.is_ordered()
        && !re.as_ref().is_some_and(|r| r.is_match(&ev.expr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promqltest::script::{parse_script, CommandKind};
    use strata_tsdb::storage::stale_nan;

    fn eval(src: &str) -> EvalCommand {
        match parse_script(src).unwrap().remove(0).kind {
            CommandKind::Eval(e) => *e,
            k => panic!("{k:?}"),
        }
    }
    fn l(s: &str) -> Labels {
        crate::promqltest::series::parse_series_desc(s)
            .unwrap()
            .to_labels()
    }

    #[test]
    fn almost_equal_rules() {
        let e = DEFAULT_EPSILON;
        assert!(almost_equal(1.0, 1.0, e));
        assert!(almost_equal(1.0, 1.0 + 1e-7, e));
        assert!(!almost_equal(1.0, 1.0 + 1e-5, e));
        assert!(almost_equal(f64::NAN, -f64::NAN, e));
        assert!(!almost_equal(f64::NAN, 1.0, e));
        assert!(almost_equal(stale_nan(), stale_nan(), e));
        assert!(!almost_equal(stale_nan(), f64::NAN, e));
        assert!(!almost_equal(f64::NAN, stale_nan(), e));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, e));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, e));
        assert!(!almost_equal(f64::INFINITY, f64::MAX, e));
        // No absolute tolerance around zero.
        assert!(!almost_equal(0.0, 1e-300, e));
        assert!(almost_equal(0.0, -0.0, e));
        assert!(almost_equal(0.0, 1e-322, e), "diff below eps*MIN_NORMAL");
        assert!(almost_equal(f64::MAX, f64::MAX * (1.0 - 1e-9), e));
    }

    #[test]
    fn vector_comparison() {
        let ev = eval("eval instant at 1m foo\n  foo{a=\"1\"} 1\n  foo{a=\"2\"} 2\n");
        let s = |a: &str, v| GotSample {
            labels: l(&format!("foo{{a=\"{a}\"}}")),
            value: GotValue::Float(v),
        };
        assert_eq!(
            compare_result(&ev, &GotResult::Vector(vec![s("2", 2.0), s("1", 1.0)])),
            Ok(())
        );
        assert!(compare_result(&ev, &GotResult::Vector(vec![s("1", 1.0)])).is_err());
        assert!(compare_result(&ev, &GotResult::Vector(vec![s("1", 1.0), s("2", 2.1)])).is_err());
        assert!(compare_result(
            &ev,
            &GotResult::Vector(vec![s("1", 1.0), s("2", 2.0), s("3", 3.0)])
        )
        .is_err());
        assert!(compare_result(&ev, &GotResult::Scalar(1.0)).is_err());

        let ev = eval(
            "eval instant at 1m sort(foo)\n  expect ordered\n  foo{a=\"1\"} 1\n  foo{a=\"2\"} 2\n",
        );
        assert_eq!(
            compare_result(&ev, &GotResult::Vector(vec![s("1", 1.0), s("2", 2.0)])),
            Ok(())
        );
        assert!(matches!(
            compare_result(&ev, &GotResult::Vector(vec![s("2", 2.0), s("1", 1.0)])),
            Err(Mismatch::Failed(_))
        ));

        let ev = eval("eval instant at 1m foo\n  foo{a=\"1\"} {{sum:1}}\n");
        let h = GotSample {
            labels: l("foo{a=\"1\"}"),
            value: GotValue::Histogram("{{sum:1}}".into()),
        };
        assert!(matches!(
            compare_result(&ev, &GotResult::Vector(vec![h])),
            Err(Mismatch::Unsupported(_))
        ));
        assert!(matches!(
            compare_result(&ev, &GotResult::Vector(vec![s("1", 1.0)])),
            Err(Mismatch::Failed(_))
        ));

        // No expected lines: result must be empty.
        let ev = eval("eval instant at 1m foo\n");
        assert_eq!(compare_result(&ev, &GotResult::Vector(vec![])), Ok(()));
        assert!(compare_result(&ev, &GotResult::Vector(vec![s("1", 1.0)])).is_err());
    }

    #[test]
    fn scalar_string_matrix() {
        let ev = eval("eval instant at 1m 1+1\n  2\n");
        assert_eq!(compare_result(&ev, &GotResult::Scalar(2.0)), Ok(()));
        assert!(compare_result(&ev, &GotResult::Scalar(2.1)).is_err());
        assert!(compare_result(&ev, &GotResult::Vector(vec![])).is_err());

        let ev = eval("eval instant at 1m \"a\"\n  expect string \"a\"\n");
        assert_eq!(compare_result(&ev, &GotResult::String("a".into())), Ok(()));
        assert!(compare_result(&ev, &GotResult::String("b".into())).is_err());

        let ev = eval(
            "eval range from 0 to 2m step 1m foo\n  foo{a=\"1\"} 1 _ 3\n  foo{a=\"2\"} 1+1x2\n",
        );
        let m = |a: &str, pts: Vec<(i64, f64)>| GotSeries {
            labels: l(&format!("foo{{a=\"{a}\"}}")),
            floats: pts,
            histograms: vec![],
        };
        let good = vec![
            m("1", vec![(0, 1.0), (120_000, 3.0)]),
            m("2", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
        ];
        assert_eq!(
            compare_result(&ev, &GotResult::Matrix(good.clone())),
            Ok(())
        );
        let mut unsorted = good.clone();
        unsorted.swap(0, 1);
        assert!(compare_result(&ev, &GotResult::Matrix(unsorted)).is_err());
        let mut bad_ts = good.clone();
        bad_ts[0].floats[1].0 = 60_000;
        assert!(compare_result(&ev, &GotResult::Matrix(bad_ts)).is_err());
        let ev_long = eval("eval range from 0 to 1m step 1m foo\n  foo{a=\"1\"} 1 2 3\n");
        assert!(compare_result(
            &ev_long,
            &GotResult::Matrix(vec![m("1", vec![(0, 1.0), (60_000, 2.0)])])
        )
        .is_err());

        // expect range vector: grid from the directive.
        let ev = eval("eval instant at 1m foo[1m]\n  expect range vector from 10s to 30s step 10s\n  foo{a=\"1\"} 1 2 3\n");
        assert_eq!(ev.eval_time_ms(), 30_000);
        let got = vec![m("1", vec![(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)])];
        assert_eq!(compare_result(&ev, &GotResult::Matrix(got)), Ok(()));
    }

    #[test]
    fn annotations_and_failures() {
        let ev = eval("eval instant at 1m foo\n  expect warn regex: bad (thing|stuff)\n  expect warn msg: exact\n");
        assert!(check_annotations(&ev, &["bad thing".into(), "exact".into()], &[]).is_ok());
        assert!(
            check_annotations(&ev, &["bad thing".into()], &[]).is_err(),
            "exact unmatched"
        );
        assert!(check_annotations(
            &ev,
            &["bad thing".into(), "exact".into(), "other".into()],
            &[]
        )
        .is_err());
        assert!(check_annotations(&ev, &[], &[]).is_err());
        assert!(
            check_annotations(
                &ev,
                &["bad stuff".into(), "exact".into()],
                &["any info".into()]
            )
            .is_ok(),
            "infos unchecked"
        );

        let ev = eval("eval instant at 1m foo\n  expect no_warn\n  expect no_info\n");
        assert!(check_annotations(&ev, &[], &[]).is_ok());
        assert!(check_annotations(&ev, &["w".into()], &[]).is_err());
        assert!(check_annotations(&ev, &[], &["i".into()]).is_err());

        let ev = eval("eval instant at 1m foo\n");
        assert!(
            check_annotations(&ev, &["w".into()], &["i".into()]).is_ok(),
            "unchecked by default"
        );

        let ev = eval("eval_warn instant at 1m foo\n");
        assert!(check_annotations(&ev, &[], &[]).is_err());
        assert!(check_annotations(&ev, &["w".into()], &[]).is_ok());

        let ev = eval("eval instant at 1m foo\n  expect fail regex: vector cannot contain\n");
        assert!(ev.is_fail());
        assert!(check_expected_failure(&ev, "x: vector cannot contain metrics").is_ok());
        assert!(check_expected_failure(&ev, "other").is_err());
        let ev = eval("eval instant at 1m foo\n  expect fail\n");
        assert!(check_expected_failure(&ev, "anything").is_ok());
        let ev = eval("eval_fail instant at 1m foo\n  expected_fail_message boom\n");
        assert!(check_expected_failure(&ev, "boom").is_ok());
        assert!(check_expected_failure(&ev, "boom!").is_err());
        let ev = eval("eval_fail instant at 1m foo\n  expected_fail_regexp bo+m\n");
        assert!(check_expected_failure(&ev, "a booom").is_ok());
        assert!(check_expected_failure(&ev, "bam").is_err());
    }

    #[test]
    fn range_mode_check_rules() {
        assert!(wants_range_mode_check(&eval("eval instant at 1m foo\n")));
        assert!(!wants_range_mode_check(&eval(
            "eval instant at 1m foo + step()\n"
        )));
        assert!(!wants_range_mode_check(&eval(
            "eval instant at 1m sort(foo)\n  expect ordered\n"
        )));
        assert!(!wants_range_mode_check(&eval(
            "eval_ordered instant at 1m sort(foo)\n"
        )));
        assert!(!wants_range_mode_check(&eval(
            "eval range from 0 to 1m step 1m foo\n"
        )));
        assert!(!wants_range_mode_check(&eval(
            "eval instant at 1m \"a\"\n  expect string \"a\"\n"
        )));
    }
}
