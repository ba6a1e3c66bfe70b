//! Series descriptions of the `.test` language (`load` lines and expected-result lines):
//! the series literal `name{l="v", ...}` and the value sequence after it (FORMAT.md 2.3), including
//! native-histogram literals `{{...}}` (2.4), following the token rules of Prometheus's PromQL
//! lexer in series-description mode.

use std::sync::Arc;

use strata_tsdb::labels::{Label, Labels, METRIC_NAME};
use strata_tsdb::storage::STALE_NAN_BITS;

use super::literal::{go_parse_number, unquote, QuoteRules};

/// A series literal as written: optional metric name plus label pairs (values unquoted).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SeriesDesc {
    /// Metric name written before the braces (`foo{...}`); overrides any `__name__` pair.
    pub name: Option<String>,
    /// Label pairs in written order. A bare quoted name inside braces (`{"a.b"}`) appears here as
    /// `("__name__", "a.b")`.
    pub labels: Vec<(String, String)>,
}

impl SeriesDesc {
    /// The label set Prometheus builds from this literal (sorted; empty values dropped; the
    /// metric name outside the braces wins over a `__name__` pair; later duplicates win).
    pub fn to_labels(&self) -> Labels {
        let mut v: Vec<Label> = self
            .labels
            .iter()
            .filter(|(n, _)| self.name.is_none() || n != METRIC_NAME)
            .map(|(n, val)| Label::new(n.as_str(), val.as_str()))
            .collect();
        if let Some(name) = &self.name {
            v.push(Label::new(METRIC_NAME, name.as_str()));
        }
        Labels::new(v)
    }
}

/// Counter-reset hint of a histogram literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

/// A native-histogram literal `{{...}}` with every key of FORMAT.md 2.4 (absent keys default to
/// 0 / empty). Buckets are absolute counts forming one span per sign.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct HistogramLiteral {
    pub schema: i32,
    pub sum: f64,
    pub count: f64,
    /// Zero-bucket count (`z_bucket`).
    pub zero_count: f64,
    /// Zero threshold (`z_bucket_w`).
    pub zero_threshold: f64,
    /// Positive buckets (`buckets`), one span starting at `offset`.
    pub buckets: Vec<f64>,
    pub offset: i32,
    /// Negative buckets (`n_buckets`), one span starting at `n_offset`.
    pub n_buckets: Vec<f64>,
    pub n_offset: i32,
    /// Upper bounds for schema −53 (custom buckets), +Inf implicit.
    pub custom_values: Vec<f64>,
    /// `Some` only when `counter_reset_hint` was written (the hint is then compared).
    pub counter_reset_hint: Option<CounterResetHint>,
}

impl HistogramLiteral {
    /// Schema −53: native histogram with custom buckets.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == -53
    }
}

/// How a histogram sequence item steps from one value to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramOp {
    Add,
    Sub,
}

/// One histogram value of an expanded sequence: `base (op) increment` applied `index` times
/// (Prometheus computes it by repeated histogram addition/subtraction). Histogram arithmetic is
/// left to the (future) histogram engine; this keeps the literal exact.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramValue {
    pub base: Arc<HistogramLiteral>,
    /// `Some` for `{{A}}+{{B}}xN` / `{{A}}-{{B}}xN` items.
    pub step: Option<(HistogramOp, Arc<HistogramLiteral>)>,
    /// Position within the item (0 = the base itself).
    pub index: u64,
    /// Whether the counter-reset hint must be compared: for a plain item, whether the literal
    /// wrote `counter_reset_hint`; for `A±BxN`, whether *B* did (Prometheus's rule).
    pub counter_reset_hint_set: bool,
}

impl HistogramValue {
    /// The literal itself when no arithmetic is needed (index 0 or a repeat item).
    pub fn as_literal(&self) -> Option<&HistogramLiteral> {
        if self.index == 0 || self.step.is_none() {
            Some(&self.base)
        } else {
            None
        }
    }
}

/// One step of a value sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum SampleValue {
    /// `_`: no sample at this step.
    Omitted,
    /// A float; `stale` is the staleness-marker NaN (bits `0x7ff0000000000002`).
    Float(f64),
    /// A native histogram.
    Histogram(HistogramValue),
}

impl SampleValue {
    pub fn is_histogram(&self) -> bool {
        matches!(self, SampleValue::Histogram(_))
    }
    pub fn as_float(&self) -> Option<f64> {
        match self {
            SampleValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Largest `xN` accepted (Prometheus has no limit; this bounds memory on hostile input).
pub const MAX_REPEAT: u64 = 1 << 24;

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}
fn is_alpha(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}
fn is_alnum(c: u8) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// Character cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.as_bytes().get(self.pos + k).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("{}:{}: {msg}", 1, self.pos + 1)
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// A quoted string token (`"…"`, `'…'`, `` `…` ``), unquoted with PromQL rules.
    fn string(&mut self) -> Result<String, String> {
        let start = self.pos;
        let Some(q) = self.peek().filter(|c| matches!(c, b'"' | b'\'' | b'`')) else {
            return Err(self.err("expected a quoted string"));
        };
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted string")),
                Some(b'\\') if q != b'`' => self.pos += 2,
                Some(c) if c == q => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = self
            .s
            .get(start..self.pos)
            .ok_or_else(|| self.err("unterminated quoted string"))?;
        unquote(raw, QuoteRules::PromQL).map_err(|e| self.err(e))
    }

    /// A number token in series-description mode (PromQL `scanNumber`: digits, one `.`, one
    /// exponent with optional sign, `_` separators, no hex), which must not be followed by an
    /// alphanumeric character other than `x`.
    fn number_token(&mut self) -> Result<&'a str, String> {
        let start = self.pos;
        let b = self.s.as_bytes();
        let mut i = self.pos;
        let mut dot = false;
        let mut exp = false;
        let bad = |i: usize| {
            format!(
                "1:{}: bad number syntax: {:?}",
                start + 1,
                String::from_utf8_lossy(&b[start..(i + 1).min(b.len())])
            )
        };
        while i < b.len() {
            match b[i] {
                b'0'..=b'9' => i += 1,
                b'.' if !dot && !exp => {
                    dot = true;
                    i += 1;
                    if i < b.len() && matches!(b[i], b'_' | b'.') {
                        return Err(bad(i));
                    }
                }
                b'e' | b'E' if !exp => {
                    exp = true;
                    i += 1;
                    if i < b.len() && matches!(b[i], b'+' | b'-') {
                        i += 1;
                    }
                    if i >= b.len() || matches!(b[i], b'.' | b'_' | b'e' | b'E') {
                        return Err(bad(i));
                    }
                }
                b'_' => {
                    i += 1;
                    if i >= b.len() || matches!(b[i], b'.' | b'_' | b'e' | b'E') {
                        return Err(bad(i));
                    }
                }
                b'.' | b'e' | b'E' => return Err(bad(i)),
                _ => break,
            }
        }
        if i == start {
            return Err(bad(i));
        }
        if i < b.len() && b[i] != b'x' && is_alnum(b[i]) {
            return Err(bad(i));
        }
        self.pos = i;
        Ok(&self.s[start..i])
    }

    /// A number as parsed by PromQL's `number` (integer syntax first, then float).
    fn number(&mut self) -> Result<f64, String> {
        let at = self.pos;
        let tok = self.number_token()?;
        go_parse_number(tok).ok_or_else(|| format!("1:{}: error parsing number: {tok:?}", at + 1))
    }

    /// A word (`[A-Za-z_][A-Za-z0-9_:]*`, the keyword/identifier lexer).
    fn word(&mut self) -> &'a str {
        self.take_while(|c| is_alnum(c) || c == b':')
    }

    /// PromQL `number` in value position: a number token or the keywords `Inf`/`NaN`.
    fn number_or_keyword(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(c)
                if c.is_ascii_digit()
                    || (c == b'.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number()
            }
            Some(c) if is_alpha(c) => {
                let at = self.pos;
                let w = self.word();
                match w.to_ascii_lowercase().as_str() {
                    "inf" => Ok(f64::INFINITY),
                    "nan" => Ok(f64::NAN),
                    _ => Err(format!(
                        "1:{}: unexpected identifier {w:?} in series values, expected number",
                        at + 1
                    )),
                }
            }
            _ => Err(self.err("expected number")),
        }
    }

    /// A repetition count after `x`: `strconv.ParseUint(tok, 10, 64)`.
    fn repeat_count(&mut self) -> Result<u64, String> {
        if !self.eat(b'x') {
            return Err(self.err("expected 'x<count>'"));
        }
        let at = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
            return Err(self.err("expected repetition count after 'x'"));
        }
        let tok = self.number_token()?;
        let n = tok
            .parse::<u64>()
            .map_err(|_| format!("1:{}: invalid repetition in series values: {tok:?}", at + 1))?;
        if n > MAX_REPEAT {
            return Err(format!(
                "1:{}: repetition {n} exceeds the supported maximum {MAX_REPEAT}",
                at + 1
            ));
        }
        Ok(n)
    }
}

/// Parses the series literal at the start of `line`, returning it and the byte offset after it.
fn parse_metric(c: &mut Cursor<'_>) -> Result<SeriesDesc, String> {
    let mut desc = SeriesDesc::default();
    match c.peek() {
        Some(ch) if is_alpha(ch) || ch == b':' => {
            let w = c.word();
            let lw = w.to_ascii_lowercase();
            if lw == "inf" || lw == "nan" {
                return Err(c.err(format!("unexpected number {w:?}, expected metric name")));
            }
            desc.name = Some(w.to_string());
            if c.peek() == Some(b'{') {
                parse_label_set(c, &mut desc)?;
            }
        }
        Some(b'{') => parse_label_set(c, &mut desc)?,
        _ => return Err(c.err("expected metric name or label set")),
    }
    Ok(desc)
}

fn parse_label_set(c: &mut Cursor<'_>, desc: &mut SeriesDesc) -> Result<(), String> {
    if !c.eat(b'{') {
        return Err(c.err("expected '{'"));
    }
    c.skip_spaces();
    if c.eat(b'}') {
        return Ok(());
    }
    loop {
        c.skip_spaces();
        let name_is_ident;
        let name = match c.peek() {
            Some(ch) if is_alpha(ch) => {
                name_is_ident = true;
                c.take_while(is_alnum).to_string()
            }
            Some(b'"' | b'\'' | b'`') => {
                name_is_ident = false;
                c.string()?
            }
            _ => {
                return Err(c.err("unexpected character in label set, expected identifier or \"}\""))
            }
        };
        c.skip_spaces();
        if c.eat(b'=') {
            c.skip_spaces();
            let value = c.string()?;
            desc.labels.push((name, value));
        } else if !name_is_ident {
            desc.labels.push((METRIC_NAME.to_string(), name));
        } else {
            return Err(c.err("unexpected character in label set, expected \"=\""));
        }
        c.skip_spaces();
        if c.eat(b'}') {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err(c.err("unexpected character in label set, expected \",\" or \"}\""));
        }
        c.skip_spaces();
        if c.eat(b'}') {
            return Ok(());
        }
    }
}

fn parse_counter_reset_hint(w: &str) -> Option<CounterResetHint> {
    Some(match w.to_ascii_lowercase().as_str() {
        "unknown" => CounterResetHint::Unknown,
        "reset" => CounterResetHint::Reset,
        "not_reset" => CounterResetHint::NotReset,
        "gauge" => CounterResetHint::Gauge,
        _ => return None,
    })
}

/// `[f f ...]` bucket list: at least one item, single spaces between, optional trailing space.
fn parse_bucket_list(c: &mut Cursor<'_>) -> Result<Vec<f64>, String> {
    if !c.eat(b'[') {
        return Err(c.err("expected '[' to open a bucket list"));
    }
    let mut out = Vec::new();
    loop {
        let neg = c.eat(b'-');
        let v = c.number_or_keyword()?;
        out.push(if neg { -v } else { v });
        let spaced = c.skip_spaces();
        if c.eat(b']') {
            return Ok(out);
        }
        if !spaced {
            return Err(c.err("invalid character in buckets description"));
        }
    }
}

fn parse_int(c: &mut Cursor<'_>) -> Result<i64, String> {
    let neg = c.eat(b'-');
    let at = c.pos;
    let tok = c.number_token()?;
    let v: u64 = tok
        .parse()
        .map_err(|_| format!("1:{}: invalid integer {tok:?}", at + 1))?;
    let v = i64::try_from(v).map_err(|_| format!("1:{}: integer out of range", at + 1))?;
    Ok(if neg { -v } else { v })
}

fn parse_signed_or_unsigned(c: &mut Cursor<'_>) -> Result<f64, String> {
    let neg = c.eat(b'-');
    let v = c.number_or_keyword()?;
    Ok(if neg { -v } else { v })
}

/// Parses `{{ key:value ... }}` starting at `{{`.
fn parse_histogram(c: &mut Cursor<'_>) -> Result<HistogramLiteral, String> {
    if !(c.eat(b'{') && c.eat(b'{')) {
        return Err(c.err("expected '{{'"));
    }
    let mut h = HistogramLiteral::default();
    let mut seen: Vec<String> = Vec::new();
    let mut first = true;
    loop {
        let spaced = c.skip_spaces();
        if c.peek() == Some(b'}') && c.peek_at(1) == Some(b'}') {
            c.pos += 2;
            return Ok(h);
        }
        // Grammar: `{{` map [SPACE] `}}` or `{{` [SPACE] `}}`: no space before the first key.
        if first == spaced {
            return Err(c.err("unexpected space or character in histogram description"));
        }
        first = false;
        let at = c.pos;
        if !c.peek().is_some_and(is_alpha) {
            return Err(c.err("histogram description incomplete"));
        }
        let key = c.take_while(is_alpha).to_ascii_lowercase();
        if !c.eat(b':') {
            return Err(format!(
                "1:{}: missing `:` for histogram descriptor {key:?}",
                at + 1
            ));
        }
        if seen.contains(&key) {
            return Err(format!(
                "1:{}: duplicate key \"{key}\" in histogram",
                at + 1
            ));
        }
        match key.as_str() {
            "schema" => {
                h.schema = i32::try_from(parse_int(c)?).map_err(|_| c.err("schema out of range"))?
            }
            "sum" => h.sum = parse_signed_or_unsigned(c)?,
            "count" => h.count = parse_signed_or_unsigned(c)?,
            "z_bucket" => h.zero_count = parse_signed_or_unsigned(c)?,
            "z_bucket_w" => h.zero_threshold = c.number_or_keyword()?,
            "buckets" => h.buckets = parse_bucket_list(c)?,
            "n_buckets" => h.n_buckets = parse_bucket_list(c)?,
            "custom_values" => h.custom_values = parse_bucket_list(c)?,
            "offset" => {
                h.offset = i32::try_from(parse_int(c)?).map_err(|_| c.err("offset out of range"))?
            }
            "n_offset" => {
                h.n_offset =
                    i32::try_from(parse_int(c)?).map_err(|_| c.err("n_offset out of range"))?
            }
            "counter_reset_hint" => {
                let wat = c.pos;
                let w = c.take_while(is_alpha);
                h.counter_reset_hint = Some(
                    parse_counter_reset_hint(w)
                        .ok_or_else(|| format!("1:{}: bad counter_reset_hint {w:?}", wat + 1))?,
                );
            }
            _ => {
                return Err(format!(
                    "1:{}: bad histogram descriptor found: {key:?}",
                    at + 1
                ))
            }
        }
        seen.push(key);
    }
}

/// Expands one histogram item (`{{A}}`, `{{A}}xN`, `{{A}}+{{B}}xN`, `{{A}}-{{B}}xN`).
fn parse_histogram_item(c: &mut Cursor<'_>, out: &mut Vec<SampleValue>) -> Result<(), String> {
    let base = parse_histogram(c)?;
    let base_hint = base.counter_reset_hint.is_some();
    let base = Arc::new(base);
    match c.peek() {
        Some(b'x') => {
            let n = c.repeat_count()?;
            for _ in 0..=n {
                out.push(SampleValue::Histogram(HistogramValue {
                    base: base.clone(),
                    step: None,
                    index: 0,
                    counter_reset_hint_set: base_hint,
                }));
            }
        }
        Some(op @ (b'+' | b'-')) => {
            c.pos += 1;
            let at = c.pos;
            let inc = parse_histogram(c)?;
            let n = c.repeat_count()?;
            if n >= 1 && base.schema > inc.schema {
                return Err(format!(
                    "1:{}: error combining histograms: cannot merge from schema {} to {}",
                    at + 1,
                    inc.schema,
                    base.schema
                ));
            }
            let hint = inc.counter_reset_hint.is_some();
            let op = if op == b'+' {
                HistogramOp::Add
            } else {
                HistogramOp::Sub
            };
            let inc = Arc::new(inc);
            for i in 0..=n {
                out.push(SampleValue::Histogram(HistogramValue {
                    base: base.clone(),
                    step: Some((op, inc.clone())),
                    index: i,
                    counter_reset_hint_set: hint,
                }));
            }
        }
        _ => out.push(SampleValue::Histogram(HistogramValue {
            base,
            step: None,
            index: 0,
            counter_reset_hint_set: base_hint,
        })),
    }
    Ok(())
}

/// Parses one float item (`7`, `-2.5`, `_`, `_xN`, `stale`, `axN`, `a+bxN`, `a-bxN`).
fn parse_float_item(c: &mut Cursor<'_>, out: &mut Vec<SampleValue>) -> Result<(), String> {
    if c.peek() == Some(b'_') {
        c.pos += 1;
        if c.peek() == Some(b'x') {
            let n = c.repeat_count()?;
            out.extend((0..n).map(|_| SampleValue::Omitted));
        } else {
            out.push(SampleValue::Omitted);
        }
        return Ok(());
    }
    // series_value: `stale` | number | signed number.
    let start = match c.peek() {
        Some(s @ (b'+' | b'-')) => {
            c.pos += 1;
            let v = c.number_or_keyword()?;
            if s == b'-' {
                -v
            } else {
                v
            }
        }
        Some(ch) if is_alpha(ch) && ch != b'x' => {
            let save = c.pos;
            let w = c.word();
            if w == "stale" {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                c.pos = save;
                c.number_or_keyword()?
            }
        }
        _ => c.number_or_keyword()?,
    };
    match c.peek() {
        Some(b'x') => {
            let n = c.repeat_count()?;
            out.extend((0..=n).map(|_| SampleValue::Float(start)));
        }
        Some(s @ (b'+' | b'-')) => {
            c.pos += 1;
            let mut d = c.number_or_keyword()?;
            if s == b'-' {
                d = -d;
            }
            let n = c.repeat_count()?;
            // Prometheus accumulates by repeated addition (`$1 += $2`), not a + i*b.
            let mut v = start;
            for _ in 0..=n {
                out.push(SampleValue::Float(v));
                v += d;
            }
        }
        _ => out.push(SampleValue::Float(start)),
    }
    Ok(())
}

/// Parses a standalone value sequence (space-separated items; surrounding spaces allowed).
pub fn parse_values(s: &str) -> Result<Vec<SampleValue>, String> {
    let mut c = Cursor { s, pos: 0 };
    let mut out = Vec::new();
    parse_values_at(&mut c, &mut out, false)?;
    Ok(out)
}

/// Items, each preceded by whitespace (except the first when `space_first` is false).
fn parse_values_at(
    c: &mut Cursor<'_>,
    out: &mut Vec<SampleValue>,
    space_first: bool,
) -> Result<(), String> {
    let mut first = true;
    while !c.at_end() {
        let spaced = c.skip_spaces();
        if !spaced && (space_first || !first) {
            return Err(c.err("unexpected character in series values, expected space"));
        }
        first = false;
        if c.at_end() {
            break;
        }
        if c.peek() == Some(b'{') && c.peek_at(1) == Some(b'{') {
            parse_histogram_item(c, out)?;
        } else {
            parse_float_item(c, out)?;
        }
        if !c.at_end() && !c.peek().is_some_and(is_space) {
            return Err(c.err(format!(
                "unexpected character in series values: {:?}",
                c.s.get(c.pos..)
                    .and_then(|r| r.chars().next())
                    .unwrap_or(' ')
            )));
        }
    }
    Ok(())
}

/// Parses a full series description line: `<series literal> <value sequence>`.
pub fn parse_series_line(line: &str) -> Result<(SeriesDesc, Vec<SampleValue>), String> {
    let mut c = Cursor { s: line, pos: 0 };
    let desc = parse_metric(&mut c)?;
    let mut out = Vec::new();
    parse_values_at(&mut c, &mut out, true)?;
    Ok((desc, out))
}

/// Parses just a series literal that must span the whole input (used for `@st` lines).
pub fn parse_series_desc(s: &str) -> Result<SeriesDesc, String> {
    let mut c = Cursor { s, pos: 0 };
    let desc = parse_metric(&mut c)?;
    if !c.at_end() {
        return Err(c.err("unexpected text after series literal"));
    }
    Ok(desc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::storage::is_stale_nan;

    fn floats(s: &str) -> Vec<Option<f64>> {
        parse_values(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .into_iter()
            .map(|v| match v {
                SampleValue::Omitted => None,
                SampleValue::Float(f) => Some(f),
                SampleValue::Histogram(_) => panic!("histogram"),
            })
            .collect()
    }

    #[test]
    fn series_literals() {
        let (d, v) =
            parse_series_line(r#"http_requests{job="api-server", instance="0"} 1"#).unwrap();
        assert_eq!(d.name.as_deref(), Some("http_requests"));
        assert_eq!(
            d.labels,
            vec![
                ("job".into(), "api-server".into()),
                ("instance".into(), "0".into())
            ]
        );
        assert_eq!(v, vec![SampleValue::Float(1.0)]);
        let l = d.to_labels();
        assert_eq!(l.get("__name__"), Some("http_requests"));
        assert_eq!(l.len(), 3);

        let d = parse_series_desc(r#"{__name__="x", a="b",}"#).unwrap();
        assert_eq!(d.to_labels().metric_name(), Some("x"));
        let d = parse_series_desc("{}").unwrap();
        assert!(d.to_labels().is_empty());
        let d = parse_series_desc("foo:bar_1").unwrap();
        assert_eq!(d.name.as_deref(), Some("foo:bar_1"));
        let d =
            parse_series_desc(r#"{"some.metric", "label.with.dots"='x\ny', b=`r\aw`}"#).unwrap();
        let l = d.to_labels();
        assert_eq!(l.metric_name(), Some("some.metric"));
        assert_eq!(l.get("label.with.dots"), Some("x\ny"));
        assert_eq!(l.get("b"), Some("r\\aw"));
        // Name outside the braces wins over __name__.
        let d = parse_series_desc(r#"foo{__name__="bar"}"#).unwrap();
        assert_eq!(d.to_labels().metric_name(), Some("foo"));
        // Empty values are dropped from the label set.
        let d = parse_series_desc(r#"foo{a=""}"#).unwrap();
        assert_eq!(d.to_labels().len(), 1);
        let d = parse_series_desc(r#"{a="é✓"}"#).unwrap();
        assert_eq!(d.to_labels().get("a"), Some("é✓"));

        assert!(
            parse_series_line(r#"foo {a="b"} 1"#).is_err(),
            "no space before braces"
        );
        assert!(
            parse_series_line(r#"foo{a="b"}1"#).is_err(),
            "space before values"
        );
        assert!(parse_series_line(r#"foo{a="b" 1"#).is_err());
        assert!(parse_series_line(r#"foo{a} 1"#).is_err());
        assert!(parse_series_line(r#"foo{a=b} 1"#).is_err());
        assert!(parse_series_line("1 2").is_err());
    }

    #[test]
    fn float_values() {
        assert_eq!(
            floats("7 -2.5 1e3 .5 +3 5."),
            vec![
                Some(7.0),
                Some(-2.5),
                Some(1000.0),
                Some(0.5),
                Some(3.0),
                Some(5.0)
            ]
        );
        let v = floats("NaN Inf +Inf -Inf nan inf");
        assert!(v[0].unwrap().is_nan());
        assert_eq!(
            v[1..4],
            [
                Some(f64::INFINITY),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY)
            ]
        );
        assert!(v[4].unwrap().is_nan());
        assert_eq!(v[5], Some(f64::INFINITY));
        assert_eq!(floats("_ _x3 1"), vec![None, None, None, None, Some(1.0)]);
        assert_eq!(floats("5x2"), vec![Some(5.0); 3]);
        assert_eq!(
            floats("0+10x3"),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(
            floats("1-2x4"),
            vec![Some(1.0), Some(-1.0), Some(-3.0), Some(-5.0), Some(-7.0)]
        );
        assert_eq!(
            floats("-2+4x3"),
            vec![Some(-2.0), Some(2.0), Some(6.0), Some(10.0)]
        );
        assert_eq!(floats("1x0"), vec![Some(1.0)]);
        assert_eq!(floats("Inf+0x1"), vec![Some(f64::INFINITY); 2]);
        assert_eq!(floats("010"), vec![Some(8.0)], "Go base-0 integer parsing");
        assert_eq!(floats("   1   2  "), vec![Some(1.0), Some(2.0)]);
        assert_eq!(floats(""), vec![]);
        // Repeated addition, as Prometheus: 0.1 accumulated differs from 0.1*i.
        let v = floats("0+0.1x10");
        let mut acc = 0.0f64;
        for x in &v {
            assert_eq!(x.unwrap().to_bits(), acc.to_bits());
            acc += 0.1;
        }
        assert_eq!(v[3], Some(0.30000000000000004));
        assert_eq!(v[10], Some(0.9999999999999999), "differs from 0.1 * 10");
        let v = parse_values("stale 1 stale").unwrap();
        assert!(matches!(v[0], SampleValue::Float(f) if is_stale_nan(f)));
        assert!(matches!(v[2], SampleValue::Float(f) if is_stale_nan(f)));
        for bad in [
            "1m", "0x10 5", "1+2", "x3", "1 x3", "_x", "1x", "1x1.5", "foo", "+stale", "1e",
            "1..2", "stalex3", "Infx3", "1{{}}", "1,2",
        ] {
            let r = parse_values(&format!(" {bad}"));
            if bad == "0x10 5" {
                // `0x10` lexes as 0 repeated 11 times (hex is not allowed in series values).
                assert_eq!(r.unwrap().len(), 12);
                continue;
            }
            assert!(r.is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn histogram_literals() {
        let v = parse_values(" {{schema:1 sum:-3.5 count:22 z_bucket:2 z_bucket_w:0.001 buckets:[5 10 7] offset:-1 n_buckets:[1 Inf] n_offset:2 counter_reset_hint:gauge}}").unwrap();
        let SampleValue::Histogram(h) = &v[0] else {
            panic!()
        };
        let l = h.as_literal().unwrap();
        assert_eq!(l.schema, 1);
        assert_eq!(l.sum, -3.5);
        assert_eq!(l.count, 22.0);
        assert_eq!(l.zero_count, 2.0);
        assert_eq!(l.zero_threshold, 0.001);
        assert_eq!(l.buckets, vec![5.0, 10.0, 7.0]);
        assert_eq!(l.offset, -1);
        assert_eq!(l.n_buckets, vec![1.0, f64::INFINITY]);
        assert_eq!(l.n_offset, 2);
        assert_eq!(l.counter_reset_hint, Some(CounterResetHint::Gauge));
        assert!(h.counter_reset_hint_set);

        let v = parse_values(" {{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[0 1 0 ]}}")
            .unwrap();
        let SampleValue::Histogram(h) = &v[0] else {
            panic!()
        };
        assert!(h.base.uses_custom_buckets());
        assert_eq!(h.base.custom_values, vec![5.0, 10.0]);
        assert_eq!(h.base.buckets, vec![0.0, 1.0, 0.0]);
        assert!(!h.counter_reset_hint_set);

        let v = parse_values(" {{}} {{ }} {{schema:0 }}").unwrap();
        assert_eq!(v.len(), 3);
        assert!(
            parse_values("{{ schema:0}}").is_err(),
            "no leading space before a key"
        );
        for x in &v {
            let SampleValue::Histogram(h) = x else {
                panic!()
            };
            assert_eq!(*h.base, HistogramLiteral::default());
        }

        let v = parse_values(" {{sum:1 count:1}}x2 _ {{sum:1}}+{{sum:2 counter_reset_hint:not_reset}}x3 {{sum:9}}-{{sum:1}}x1 5").unwrap();
        assert_eq!(v.len(), 3 + 1 + 4 + 2 + 1);
        let SampleValue::Histogram(h) = &v[2] else {
            panic!()
        };
        assert_eq!((h.index, h.step.is_none()), (0, true));
        assert_eq!(v[3], SampleValue::Omitted);
        let SampleValue::Histogram(h) = &v[6] else {
            panic!()
        };
        assert_eq!(h.index, 2);
        let (op, inc) = h.step.as_ref().unwrap();
        assert_eq!((*op, inc.sum), (HistogramOp::Add, 2.0));
        assert!(
            h.counter_reset_hint_set,
            "hint flag comes from the increment"
        );
        assert!(h.as_literal().is_none());
        let SampleValue::Histogram(h) = &v[9] else {
            panic!()
        };
        assert_eq!(h.step.as_ref().unwrap().0, HistogramOp::Sub);
        assert_eq!(v[10], SampleValue::Float(5.0));

        for bad in [
            "{{sum:1 sum:2}}",
            "{{foo:1}}",
            "{{sum 1}}",
            "{{sum: 1}}",
            "{{buckets:[]}}",
            "{{buckets:[ 1]}}",
            "{{schema:1.5}}",
            "{{sum:+1}}",
            "{{sum:1}}+{{sum:1}}",
            "{{sum:1",
            "{{schema:1}}+{{schema:0}}x1",
            "{{counter_reset_hint:maybe}}",
            "{{sum:1}}{{sum:1}}",
        ] {
            assert!(
                parse_values(&format!(" {bad}")).is_err(),
                "{bad:?} should fail"
            );
        }
        // Schema check only applies when a combination actually happens.
        assert_eq!(
            parse_values(" {{schema:1}}+{{schema:0}}x0").unwrap().len(),
            1
        );
    }
}
