//! Runs `.test` scripts: `load` blocks go through the real tsdb appender into a real (in-memory)
//! head, `eval` commands go through the parser and the engine, and results are compared with
//! Prometheus's rules ([`super::compare`]). Evals that involve native histograms (in the expected
//! result, or by referring to series loaded with histogram values) are reported as unsupported,
//! which counts as failed.

use std::collections::HashSet;
use std::sync::Arc;

use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::storage::Appender;

use super::compare::{
    check_annotations, check_expected_failure, check_matrix_sorted, compare_result, GotResult,
    GotSample, GotSeries, GotValue, Mismatch,
};
use super::script::{parse_script, CommandKind, EvalCommand, EvalKind, LoadCommand};
use crate::engine::{Engine, EngineOptions, QueryOptions, Value};

/// The outcome of one eval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Unsupported(String),
}

/// What one file produced.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub unsupported: usize,
    /// `(line, expression, reason)` of every failed or unsupported eval.
    pub failures: Vec<(usize, String, String)>,
    /// A script that could not be parsed at all.
    pub script_error: Option<String>,
}

impl FileReport {
    /// Failed plus unsupported (unsupported counts as failed).
    pub fn not_passed(&self) -> usize {
        self.failed + self.unsupported
    }
}

/// The engine configuration Prometheus's test scripts assume.
pub fn test_engine() -> Engine {
    Engine::new(EngineOptions {
        delayed_name_removal: true,
        max_samples: 50_000_000,
        ..Default::default()
    })
}

fn new_storage() -> Arc<Head> {
    Head::in_memory(HeadOptions {
        // Accept loads in any order: test data is not appended in time order across blocks.
        chunk_range: i64::MAX / 4,
        ooo_window: i64::MAX / 4,
        ..Default::default()
    })
}

/// Runs a whole script.
pub fn run_script(name: &str, text: &str, engine: &Engine) -> FileReport {
    let mut rep = FileReport {
        name: name.to_string(),
        ..Default::default()
    };
    let cmds = match parse_script(text) {
        Ok(c) => c,
        Err(e) => {
            rep.script_error = Some(e.to_string());
            return rep;
        }
    };
    let mut head = new_storage();
    let mut hist_names: HashSet<String> = HashSet::new();
    for cmd in cmds {
        match cmd.kind {
            CommandKind::Clear => {
                head = new_storage();
                hist_names.clear();
            }
            CommandKind::Load(l) => {
                if let Err(e) = load(&head, &l, &mut hist_names) {
                    rep.script_error = Some(format!("line {}: load failed: {e}", cmd.line));
                    return rep;
                }
            }
            CommandKind::Eval(ev) => {
                let outcome = run_eval(&head, &ev, engine, &hist_names);
                match outcome {
                    Outcome::Passed => rep.passed += 1,
                    Outcome::Failed(why) => {
                        rep.failed += 1;
                        rep.failures.push((ev.line, ev.expr.clone(), why));
                    }
                    Outcome::Unsupported(why) => {
                        rep.unsupported += 1;
                        rep.failures.push((
                            ev.line,
                            ev.expr.clone(),
                            format!("unsupported: {why}"),
                        ));
                    }
                }
            }
        }
    }
    rep
}

fn load(head: &Arc<Head>, l: &LoadCommand, hist_names: &mut HashSet<String>) -> Result<(), String> {
    let mut app = head.appender();
    app.set_min_valid_time(i64::MIN);
    for (series, exp) in l.expand() {
        let labels = series.labels.clone();
        if !exp.histograms.is_empty() {
            if let Some(n) = labels.metric_name() {
                hist_names.insert(n.to_string());
            }
        }
        if l.with_nhcb {
            if let Some(n) = labels.metric_name() {
                for suffix in ["_bucket", "_count", "_sum"] {
                    if let Some(base) = n.strip_suffix(suffix) {
                        hist_names.insert(base.to_string());
                    }
                }
            }
        }
        for (t, v) in exp.floats {
            app.append(&labels, t, v)
                .map_err(|e| format!("{labels} @ {t}: {e}"))?;
        }
    }
    app.commit().map_err(|e| e.to_string())
}

/// Does the eval involve native histograms? FORMAT.md's `nh_any` rule: a histogram literal in
/// the expected result or expression, or the expression naming a series loaded with histogram
/// values since the last `clear` (`__name__` matchers count when any is in scope).
fn involves_histograms(ev: &EvalCommand, hist_names: &HashSet<String>) -> bool {
    if ev.expects_histograms() || ev.expr.contains("{{") {
        return true;
    }
    if hist_names.is_empty() {
        return false;
    }
    if ev.expr.contains("__name__") {
        return true;
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for name in hist_names {
        let mut from = 0;
        while let Some(pos) = ev.expr[from..].find(name.as_str()) {
            let start = from + pos;
            let end = start + name.len();
            let before = ev.expr[..start].chars().next_back();
            let after = ev.expr[end..].chars().next();
            if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
                return true;
            }
            from = end;
        }
    }
    false
}

fn to_got(v: Value) -> GotResult {
    match v {
        Value::Scalar { v, .. } => GotResult::Scalar(v),
        Value::String { v, .. } => GotResult::String(v),
        Value::Vector(s) => GotResult::Vector(
            s.into_iter()
                .map(|s| GotSample {
                    labels: s.metric,
                    value: GotValue::Float(s.f),
                })
                .collect(),
        ),
        Value::Matrix(m) => GotResult::Matrix(
            m.into_iter()
                .map(|s| GotSeries {
                    labels: s.metric,
                    floats: s.floats,
                    histograms: Vec::new(),
                })
                .collect(),
        ),
    }
}

/// Runs one eval against the storage.
pub fn run_eval(
    head: &Arc<Head>,
    ev: &EvalCommand,
    engine: &Engine,
    hist_names: &HashSet<String>,
) -> Outcome {
    if involves_histograms(ev, hist_names) {
        return Outcome::Unsupported("native histograms".into());
    }
    let expr = match crate::parser::parse(&ev.expr) {
        Ok(e) => e,
        Err(e) => {
            let msg = e.to_string();
            if ev.is_fail() {
                return match check_expected_failure(ev, &msg) {
                    Ok(()) => Outcome::Passed,
                    Err(m) => Outcome::Failed(m),
                };
            }
            return Outcome::Failed(format!("parse error: {msg}"));
        }
    };
    let (start, end, step) = match ev.kind {
        EvalKind::Instant { .. } => {
            let t = ev.eval_time_ms();
            (t, t, 0)
        }
        EvalKind::Range {
            start_ms,
            end_ms,
            step_ms,
        } => (start_ms, end_ms, step_ms),
    };
    let res = engine.exec(head, &expr, start, end, step, &QueryOptions::default());
    let res = match res {
        Err(e) => {
            let msg = e.to_string();
            if ev.is_fail() {
                return match check_expected_failure(ev, &msg) {
                    Ok(()) => Outcome::Passed,
                    Err(m) => Outcome::Failed(m),
                };
            }
            return Outcome::Failed(format!("error: {msg}"));
        }
        Ok(r) => r,
    };
    if ev.is_fail() {
        return Outcome::Failed(format!(
            "expected error evaluating query {:?} (line {}) but got none",
            ev.expr, ev.line
        ));
    }
    let warnings = res.annotations.warnings(&ev.expr);
    let infos = res.annotations.infos(&ev.expr);
    let got = to_got(res.value);
    if let GotResult::Matrix(m) = &got {
        if ev.is_range() {
            if let Err(e) = check_matrix_sorted(m) {
                return Outcome::Failed(e);
            }
        }
    }
    if let Err(m) = compare_result(ev, &got) {
        return match m {
            Mismatch::Failed(s) => Outcome::Failed(s),
            Mismatch::Unsupported(s) => Outcome::Unsupported(s),
        };
    }
    if let Err(e) = check_annotations(ev, &warnings, &infos) {
        return Outcome::Failed(e);
    }
    Outcome::Passed
}
