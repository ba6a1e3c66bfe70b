//! Parsing a whole `.test` file into [`Command`]s (FORMAT.md sections 1, 2.1, 2.2, 2.5, 2.6),
//! mirroring promqltest's `test.parse`. Expressions are kept as raw text; the engine's parser
//! parses them when the runner executes the eval.

use std::sync::OnceLock;

use regex::Regex;
use strata_tsdb::labels::Labels;

use super::literal::{go_parse_number, parse_duration_ms, unquote, QuoteRules};
use super::series::{parse_series_desc, parse_series_line, SampleValue, SeriesDesc, MAX_REPEAT};
use super::ScriptError;

/// One command of a script, with the 1-based line number of its first line.
#[derive(Clone, Debug)]
pub struct Command {
    pub line: usize,
    pub kind: CommandKind,
}

#[derive(Clone, Debug)]
pub enum CommandKind {
    /// `clear`: drop all data.
    Clear,
    /// `load <step>` / `load_with_nhcb <step>`.
    Load(LoadCommand),
    /// `eval ...`.
    Eval(Box<EvalCommand>),
}

/// A `load` block.
#[derive(Clone, Debug)]
pub struct LoadCommand {
    /// Sample *i* of each series is at `i * step_ms`.
    pub step_ms: i64,
    /// `load_with_nhcb`: classic histogram families also become NHCB series.
    pub with_nhcb: bool,
    /// Series in first-appearance order; a later line with the same label set replaced the
    /// earlier one in place.
    pub series: Vec<LoadSeries>,
}

/// One series line of a `load` block.
#[derive(Clone, Debug)]
pub struct LoadSeries {
    pub line: usize,
    pub desc: SeriesDesc,
    /// `desc.to_labels()`, computed once.
    pub labels: Labels,
    /// One entry per step.
    pub values: Vec<SampleValue>,
    /// From a preceding `name{...}@st` line: per-step start-timestamp offset (ms, relative to the
    /// sample's own timestamp), `None` where omitted. Same length as `values`.
    pub start_timestamps: Option<Vec<Option<i64>>>,
}

/// Query shape of an eval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalKind {
    Instant {
        at_ms: i64,
    },
    Range {
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    },
}

/// Deprecated `eval_<mod>` header variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyModifier {
    Fail,
    Warn,
    Ordered,
    Info,
}

/// `expect <type>` kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectKind {
    Ordered,
    Fail,
    Warn,
    NoWarn,
    Info,
    NoInfo,
}

/// How an `expect` line (or a deprecated `expected_fail_*` line) matches a message.
#[derive(Clone, Debug)]
pub enum TextMatch {
    /// No `msg:`/`regex:` part. Prometheus uses the regex `^.*$` here, which (without the `s`
    /// flag) does not match text containing a newline; [`TextMatch::matches`] reproduces that.
    Any,
    /// `msg: <text>`: exact equality.
    Exact(String),
    /// `regex: <re>`: unanchored search.
    Regex(Regex),
}

impl TextMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            TextMatch::Any => !s.contains('\n'),
            TextMatch::Exact(m) => m == s,
            TextMatch::Regex(r) => r.is_match(s),
        }
    }
}

impl PartialEq for TextMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TextMatch::Any, TextMatch::Any) => true,
            (TextMatch::Exact(a), TextMatch::Exact(b)) => a == b,
            (TextMatch::Regex(a), TextMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// One `expect` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub line: usize,
    pub kind: ExpectKind,
    pub matcher: TextMatch,
}

/// `expect range vector from <t> to <t> step <d>`: the instant query returns a matrix whose
/// points are compared at `start + i*step`; the query is evaluated at `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeVectorExpect {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

/// One expected series line.
#[derive(Clone, Debug)]
pub struct ExpectedSeries {
    pub line: usize,
    pub desc: SeriesDesc,
    pub labels: Labels,
    /// Instant query: exactly one value (unless `expect range vector`). Range query / range
    /// vector: one entry per step from the start, `Omitted` where no point is expected.
    pub values: Vec<SampleValue>,
    /// 1-based position used by `expect ordered` (Prometheus's counter: body lines so far that
    /// are not `expect <type>` lines).
    pub position: usize,
}

/// An `eval` command.
#[derive(Clone, Debug)]
pub struct EvalCommand {
    /// 1-based line of the `eval` header.
    pub line: usize,
    /// The raw PromQL expression text.
    pub expr: String,
    /// Byte offset of `expr` within the header line (for error positions).
    pub expr_offset: usize,
    pub kind: EvalKind,
    /// `eval_fail` / `eval_warn` / `eval_ordered` / `eval_info`.
    pub legacy: Option<LegacyModifier>,
    /// All `expect <type>` lines in order.
    pub expectations: Vec<Expectation>,
    /// Deprecated `expected_fail_message <text>` / `expected_fail_regexp <re>` (after `eval_fail`).
    pub expected_fail: Option<TextMatch>,
    pub range_vector: Option<RangeVectorExpect>,
    /// `expect string "..."`. When the query returns a string and this is `None`, Prometheus
    /// compares against the empty string.
    pub expected_string: Option<String>,
    /// A bare-number line: the result must be a scalar (ends the block; any series lines before
    /// it are ignored by the comparison, as in Prometheus).
    pub expected_scalar: Option<(usize, f64)>,
    /// Expected series in first-appearance order (a repeated label set replaced the earlier
    /// entry in place). Empty with no scalar means the result must be empty.
    pub expected_series: Vec<ExpectedSeries>,
    /// Excluded from the extra range-mode re-check (`expect range vector` / `expect string`).
    pub exclude_from_range_check: bool,
}

impl EvalCommand {
    /// `expect fail` or `eval_fail`.
    pub fn is_fail(&self) -> bool {
        self.legacy == Some(LegacyModifier::Fail) || self.has(ExpectKind::Fail)
    }
    /// `expect ordered` or `eval_ordered`.
    pub fn is_ordered(&self) -> bool {
        self.legacy == Some(LegacyModifier::Ordered) || self.has(ExpectKind::Ordered)
    }
    pub fn is_range(&self) -> bool {
        matches!(self.kind, EvalKind::Range { .. })
    }
    fn has(&self, k: ExpectKind) -> bool {
        self.expectations.iter().any(|e| e.kind == k)
    }
    /// The `expect` lines of one kind.
    pub fn expects(&self, k: ExpectKind) -> impl Iterator<Item = &Expectation> {
        self.expectations.iter().filter(move |e| e.kind == k)
    }
    /// Time an instant query is evaluated at (`to` of `expect range vector` if given).
    pub fn eval_time_ms(&self) -> i64 {
        match (self.kind, self.range_vector) {
            (_, Some(rv)) => rv.end_ms,
            (EvalKind::Instant { at_ms }, None) => at_ms,
            (EvalKind::Range { end_ms, .. }, None) => end_ms,
        }
    }
    /// `(start, end, step)` the expected values of a series are aligned to, for range queries and
    /// `expect range vector`; `None` for plain instant queries.
    pub fn value_grid(&self) -> Option<(i64, i64, i64)> {
        match (self.kind, self.range_vector) {
            (_, Some(rv)) => Some((rv.start_ms, rv.end_ms, rv.step_ms)),
            (
                EvalKind::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                },
                None,
            ) => Some((start_ms, end_ms, step_ms)),
            _ => None,
        }
    }
    /// Whether the expression text or any expected value involves native histograms
    /// (a `{{` literal in an expected line). Data-side involvement needs the load history.
    pub fn expects_histograms(&self) -> bool {
        self.expected_series
            .iter()
            .any(|s| s.values.iter().any(SampleValue::is_histogram))
    }
}

impl LoadCommand {
    pub fn has_histograms(&self) -> bool {
        self.series
            .iter()
            .any(|s| s.values.iter().any(SampleValue::is_histogram))
    }
}

// Go's `\s` is ASCII `[\t\n\f\r ]`.
const WS: &str = r"[\t\n\f\r ]";

struct Patterns {
    load: Regex,
    eval_instant: Regex,
    eval_range: Regex,
    expect: Regex,
    expect_range: Regex,
    space: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: String| Regex::new(&s.replace("\\s", WS)).unwrap_or_else(|e| panic!("{e}"));
        Patterns {
            load: re(r"^load(?:_(with_nhcb))?\s+(.+?)$".into()),
            eval_instant: re(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$".into()),
            eval_range: re(r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$".into()),
            expect: re(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$".into()),
            expect_range: re(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$".into()),
            space: Regex::new("[\t ]+").unwrap_or_else(|e| panic!("{e}")),
        }
    })
}

/// Trimmed lines with comment lines blanked (FORMAT.md 1).
fn get_lines(input: &str) -> Vec<&str> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect()
}

/// Parses a whole script.
pub fn parse_script(input: &str) -> Result<Vec<Command>, ScriptError> {
    let lines = get_lines(input);
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = patterns()
            .space
            .splitn(l, 2)
            .next()
            .unwrap_or("")
            .to_lowercase();
        let line = i + 1;
        let kind = if word == "clear" {
            CommandKind::Clear
        } else if word.starts_with("load") {
            let (next, load) = parse_load(&lines, i)?;
            i = next;
            CommandKind::Load(load)
        } else if word.starts_with("eval") {
            let (next, eval) = parse_eval(&lines, i)?;
            i = next;
            CommandKind::Eval(Box::new(eval))
        } else {
            return Err(ScriptError::new(line, format!("invalid command {l:?}")));
        };
        cmds.push(Command { line, kind });
        i += 1;
    }
    Ok(cmds)
}

/// `name{...}@st` lines: the first whitespace-separated token ends with `@st`.
fn is_st_line(l: &str) -> bool {
    l.find([' ', '\t'])
        .is_some_and(|sp| l[..sp].ends_with("@st"))
}

/// Parses a load block starting at `lines[i]`; returns the index of its last line.
fn parse_load(lines: &[&str], mut i: usize) -> Result<(usize, LoadCommand), ScriptError> {
    let header = lines[i];
    let Some(caps) = patterns().load.captures(header) else {
        return Err(ScriptError::new(
            i + 1,
            "invalid load command. (load[_with_nhcb] <step:duration>)",
        ));
    };
    let with_nhcb = caps.get(1).is_some();
    let step = caps.get(2).map_or("", |m| m.as_str());
    let step_ms = parse_duration_ms(step)
        .map_err(|e| ScriptError::new(i + 1, format!("invalid step definition {step:?}: {e}")))?;
    let mut cmd = LoadCommand {
        step_ms,
        with_nhcb,
        series: Vec::new(),
    };
    let mut pending_st: Option<(usize, Labels, Vec<Option<i64>>)> = None;
    while i + 1 < lines.len() {
        let def = lines[i + 1];
        if def.is_empty() {
            break;
        }
        i += 1;
        let line = i + 1;
        if is_st_line(def) {
            if let Some((st_line, ..)) = pending_st {
                return Err(ScriptError::new(
                    st_line,
                    "@st line has no following sample line",
                ));
            }
            let (labels, offsets) = parse_st_line(def).map_err(|e| ScriptError::new(line, e))?;
            pending_st = Some((line, labels, offsets));
            continue;
        }
        let (desc, values) = parse_series_line(def).map_err(|e| ScriptError::new(line, e))?;
        let labels = desc.to_labels();
        let mut start_timestamps = None;
        if let Some((st_line, st_labels, offsets)) = pending_st.take() {
            if st_labels != labels {
                return Err(ScriptError::new(
                    st_line,
                    "@st metric does not match the following sample line metric",
                ));
            }
            if offsets.len() != values.len() {
                return Err(ScriptError::new(
                    st_line,
                    format!(
                        "@st line has {} values but sample line has {}",
                        offsets.len(),
                        values.len()
                    ),
                ));
            }
            start_timestamps = Some(offsets);
        }
        let s = LoadSeries {
            line,
            desc,
            labels,
            values,
            start_timestamps,
        };
        match cmd.series.iter_mut().find(|o| o.labels == s.labels) {
            Some(old) => *old = s,
            None => cmd.series.push(s),
        }
    }
    if let Some((st_line, ..)) = pending_st {
        return Err(ScriptError::new(
            st_line,
            "@st line has no following sample line",
        ));
    }
    Ok((i, cmd))
}

/// `metric{labels}@st <offsets>`.
fn parse_st_line(def: &str) -> Result<(Labels, Vec<Option<i64>>), String> {
    let sp = def
        .find([' ', '\t'])
        .ok_or("invalid @st line: missing value sequence")?;
    let metric = def[..sp].strip_suffix("@st").unwrap_or(&def[..sp]);
    let desc = parse_series_desc(metric)
        .map_err(|e| format!("invalid @st line metric {metric:?}: {e}"))?;
    let mut out = Vec::new();
    for item in def[sp..].split_ascii_whitespace() {
        parse_st_item(item, &mut out)
            .map_err(|e| format!("invalid @st sequence: invalid ST item {item:?}: {e}"))?;
    }
    Ok((desc.to_labels(), out))
}

fn parse_st_item(item: &str, out: &mut Vec<Option<i64>>) -> Result<(), String> {
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: u64 = n.parse().map_err(|_| "invalid repeat count")?;
        if n == 0 || n > MAX_REPEAT {
            return Err("invalid repeat count".into());
        }
        out.extend((0..n).map(|_| None));
        return Ok(());
    }
    let (base, rest) = parse_duration_prefix(item)?;
    if rest.is_empty() {
        out.push(Some(base));
        return Ok(());
    }
    let count = |s: &str| -> Result<u64, String> {
        s.parse::<u64>()
            .ok()
            .filter(|&n| n <= MAX_REPEAT)
            .ok_or_else(|| "invalid repeat count".to_string())
    };
    if let Some(n) = rest.strip_prefix('x') {
        let n = count(n)?;
        out.extend((0..=n).map(|_| Some(base)));
        return Ok(());
    }
    let negative = match rest.as_bytes()[0] {
        b'+' => false,
        b'-' => true,
        c => {
            return Err(format!(
                "unexpected character {:?} after duration",
                c as char
            ))
        }
    };
    let (mut delta, rest2) =
        parse_duration_prefix(&rest[1..]).map_err(|e| format!("invalid step duration: {e}"))?;
    if negative {
        delta = -delta;
    }
    let n = rest2
        .strip_prefix('x')
        .ok_or("expected 'x<count>' after step duration")?;
    let n = count(n)?;
    let mut off = base;
    for _ in 0..=n {
        out.push(Some(off));
        off = off.wrapping_add(delta);
    }
    Ok(())
}

/// A signed single-group duration (`-1m`, `59999ms`, `0s`) at the start of `s`, stopping at
/// `x`/`+`/`-`; returns milliseconds and the rest.
fn parse_duration_prefix(s: &str) -> Result<(i64, &str), String> {
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b[0] {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return Err(format!("expected digits in duration {s:?}"));
    }
    while i < b.len() && b[i].is_ascii_alphabetic() && b[i] != b'x' {
        i += 1;
    }
    let ms = parse_duration_ms(&s[start..i])
        .map_err(|e| format!("invalid duration {:?}: {e}", &s[start..i]))?;
    Ok((if negative { -ms } else { ms }, &s[i..]))
}

fn parse_expect(def: &str, line: usize) -> Result<Expectation, String> {
    let caps = patterns().expect.captures(def.trim()).ok_or(
        "invalid expect statement, must match `expect <type> <match_type>: <string>` format",
    )?;
    let kind = match caps.get(1).map_or("", |m| m.as_str()) {
        "ordered" => ExpectKind::Ordered,
        "fail" => ExpectKind::Fail,
        "warn" => ExpectKind::Warn,
        "no_warn" => ExpectKind::NoWarn,
        "info" => ExpectKind::Info,
        "no_info" => ExpectKind::NoInfo,
        other => return Err(format!("invalid expected error/annotation type {other}")),
    };
    let text = caps.get(3).map_or("", |m| m.as_str()).trim();
    let matcher = match caps.get(2).map(|m| m.as_str()) {
        None => TextMatch::Any,
        Some("msg") => TextMatch::Exact(text.to_string()),
        Some(_) => TextMatch::Regex(
            Regex::new(text).map_err(|_| format!("invalid regex {text} for {kind:?}"))?,
        ),
    };
    Ok(Expectation {
        line,
        kind,
        matcher,
    })
}

fn validate_expects(cmd: &EvalCommand) -> Result<(), String> {
    let n = |k| cmd.expects(k).count();
    if n(ExpectKind::Info) > 0 && n(ExpectKind::NoInfo) > 0 {
        return Err("invalid expect lines, info and no_info cannot be used together".into());
    }
    if n(ExpectKind::Warn) > 0 && n(ExpectKind::NoWarn) > 0 {
        return Err("invalid expect lines, warn and no_warn cannot be used together".into());
    }
    if n(ExpectKind::Fail) > 1 {
        return Err("invalid expect lines, multiple expect fail lines are not allowed".into());
    }
    Ok(())
}

fn parse_from_to_step(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let f = parse_duration_ms(from)
        .map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let t = parse_duration_ms(to)
        .map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if t < f {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let s =
        parse_duration_ms(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((f, t, s))
}

/// Parses an eval block starting at `lines[i]`; returns the index of its last line.
fn parse_eval(lines: &[&str], mut i: usize) -> Result<(usize, EvalCommand), ScriptError> {
    let header = lines[i];
    let header_line = i + 1;
    let p = patterns();
    let instant = p.eval_instant.captures(header);
    let range = if instant.is_none() {
        p.eval_range.captures(header)
    } else {
        None
    };
    let (modifier, expr_m, kind_res) = match (&instant, &range) {
        (Some(c), _) => {
            let at = c.get(2).map_or("", |m| m.as_str());
            let kind = parse_duration_ms(at)
                .map(|at_ms| EvalKind::Instant { at_ms })
                .map_err(|e| format!("invalid timestamp definition {at:?}: {e}"));
            (c.get(1), c.get(3), kind)
        }
        (None, Some(c)) => {
            let g = |k: usize| c.get(k).map_or("", |m| m.as_str());
            let kind = parse_from_to_step(g(2), g(3), g(4)).map(|(start_ms, end_ms, step_ms)| {
                EvalKind::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                }
            });
            (c.get(1), c.get(5), kind)
        }
        (None, None) => {
            return Err(ScriptError::new(
                header_line,
                "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from <from> to <to> step <step> <query>'",
            ))
        }
    };
    let Some(expr_m) = expr_m else {
        return Err(ScriptError::new(header_line, "missing expression"));
    };
    let expr_text = expr_m.as_str();
    let expr = expr_text.to_string();
    let fmt_err = |line: usize, msg: String| {
        ScriptError::new(
            line,
            format!("error in eval {expr_text} (line {header_line}): {msg}"),
        )
    };
    let kind = kind_res.map_err(|e| fmt_err(header_line, e))?;
    let legacy = match modifier.map(|m| m.as_str()) {
        Some("fail") => Some(LegacyModifier::Fail),
        Some("warn") => Some(LegacyModifier::Warn),
        Some("ordered") => Some(LegacyModifier::Ordered),
        Some("info") => Some(LegacyModifier::Info),
        _ => None,
    };
    let is_instant = matches!(kind, EvalKind::Instant { .. });
    let mut cmd = EvalCommand {
        line: header_line,
        expr_offset: expr_m.start(),
        expr,
        kind,
        legacy,
        expectations: Vec::new(),
        expected_fail: None,
        range_vector: None,
        expected_string: None,
        expected_scalar: None,
        expected_series: Vec::new(),
        exclude_from_range_check: false,
    };
    let mut j = 0usize;
    while i + 1 < lines.len() {
        let def = lines[i + 1];
        if def.is_empty() {
            break;
        }
        i += 1;
        j += 1;
        let line = i + 1;
        if cmd.legacy == Some(LegacyModifier::Fail) {
            if let Some(rest) = def.strip_prefix("expected_fail_message") {
                cmd.expected_fail = Some(TextMatch::Exact(rest.trim().to_string()));
                break;
            }
            if let Some(rest) = def.strip_prefix("expected_fail_regexp") {
                let pat = rest.trim();
                let re = Regex::new(pat).map_err(|e| {
                    fmt_err(
                        line,
                        format!("invalid regexp '{pat}' for expected_fail_regexp: {e}"),
                    )
                })?;
                cmd.expected_fail = Some(TextMatch::Regex(re));
                break;
            }
        }
        if def.starts_with("expect range vector") {
            let caps = p
                .expect_range
                .captures(def)
                .ok_or_else(|| fmt_err(line, format!("invalid range vector definition {def:?}")))?;
            let g = |k: usize| caps.get(k).map_or("", |m| m.as_str());
            let (start_ms, end_ms, step_ms) =
                parse_from_to_step(g(1), g(2), g(3)).map_err(|e| fmt_err(line, e))?;
            cmd.range_vector = Some(RangeVectorExpect {
                start_ms,
                end_ms,
                step_ms,
            });
            cmd.exclude_from_range_check = true;
            continue;
        }
        if def.starts_with("expect string") {
            let s = parse_expect_string(def).map_err(|e| fmt_err(line, e))?;
            cmd.expected_string = Some(s);
            cmd.exclude_from_range_check = true;
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            let e = parse_expect(def, line).map_err(|e| fmt_err(line, e))?;
            cmd.expectations.push(e);
            j -= 1;
            validate_expects(&cmd).map_err(|e| fmt_err(line, e))?;
            continue;
        }
        if let Some(f) = go_parse_number(def) {
            cmd.expected_scalar = Some((line, f));
            break;
        }
        let (desc, values) = parse_series_line(def).map_err(|e| ScriptError::new(line, e))?;
        if values.len() > 1 && is_instant && cmd.range_vector.is_none() {
            return Err(fmt_err(line, "expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' directive to enable a range vector result for an instant query".into()));
        }
        let labels = desc.to_labels();
        let s = ExpectedSeries {
            line,
            desc,
            labels,
            values,
            position: j,
        };
        match cmd
            .expected_series
            .iter_mut()
            .find(|o| o.labels == s.labels)
        {
            Some(old) => *old = s,
            None => cmd.expected_series.push(s),
        }
    }
    Ok((i, cmd))
}

fn parse_expect_string(line: &str) -> Result<String, String> {
    let quoted = line.strip_prefix("expect string ").unwrap_or(line);
    if line == "expect string" || quoted.is_empty() {
        return Err(
            "expected string literal not valid - a quoted string literal is required".into(),
        );
    }
    unquote(quoted, QuoteRules::Go).map_err(|_| {
        "expected string literal not valid - check that the string is correctly quoted".into()
    })
}

#[cfg(test)]
mod tests;
