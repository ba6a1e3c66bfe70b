//! nom lexing pieces shared by the text exposition formats: metric and label names, quoted
//! strings with Prometheus escapes, label sets, float values and timestamps.
//!
//! Every piece is a nom parser over `&str` with the error type [`LexError`], which keeps the
//! unparsed input at the failure point (so the caller can turn it into a line and column) and a
//! [`SyntaxError`] saying what was expected. Pieces never allocate unless a string contains an
//! escape sequence.

use std::borrow::Cow;

use nom::bytes::complete::{take_till1, take_while};
use nom::character::complete::satisfy;
use nom::combinator::{all_consuming, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::recognize_float;
use nom::sequence::pair;
use nom::IResult;

use crate::error::{FloatError, Found, SyntaxError};

/// A lexing failure: where (`rest` is the unparsed input at the offending character) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct LexError<'a> {
    pub rest: &'a str,
    pub kind: SyntaxError,
}

impl<'a> LexError<'a> {
    /// "expected `what`, found <first character of rest>".
    pub fn expected(rest: &'a str, what: &'static str) -> Self {
        LexError {
            rest,
            kind: SyntaxError::Expected {
                what,
                found: Found::at(rest),
            },
        }
    }

    pub fn new(rest: &'a str, kind: SyntaxError) -> Self {
        LexError { rest, kind }
    }
}

impl<'a> ParseError<&'a str> for LexError<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        LexError::expected(input, "valid input")
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// Result of a lexing piece.
pub type LexResult<'a, T> = IResult<&'a str, T, LexError<'a>>;

/// Turns a nom error (of any flavour) into the [`LexError`] it carries.
pub fn into_lex_error(e: nom::Err<LexError<'_>>) -> LexError<'_> {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        // Only streaming parsers return Incomplete; all pieces here are complete parsers.
        nom::Err::Incomplete(_) => LexError::new("", SyntaxError::MissingEof),
    }
}

/// Runs `p`; if it fails, reports "expected `what`" at the position where it started.
pub fn expect<'a, O>(
    what: &'static str,
    mut p: impl FnMut(&'a str) -> LexResult<'a, O>,
) -> impl FnMut(&'a str) -> LexResult<'a, O> {
    move |i| p(i).map_err(|_| nom::Err::Error(LexError::expected(i, what)))
}

/// Builds an error result "expected `what`" at `rest`.
pub fn fail<'a, T>(rest: &'a str, what: &'static str) -> LexResult<'a, T> {
    Err(nom::Err::Error(LexError::expected(rest, what)))
}

/// Consumes exactly the character `c`, or reports "expected `what`".
pub fn sym<'a>(c: char, what: &'static str) -> impl FnMut(&'a str) -> LexResult<'a, char> {
    move |i: &'a str| match i.strip_prefix(c) {
        Some(rest) => Ok((rest, c)),
        None => fail(i, what),
    }
}

fn is_metric_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_metric_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_label_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `c` can begin an unquoted metric name.
pub fn starts_metric_name(c: char) -> bool {
    is_metric_name_start(c)
}

/// An unquoted metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn metric_name(i: &str) -> LexResult<'_, &str> {
    expect(
        "metric name",
        recognize(pair(
            satisfy(is_metric_name_start),
            take_while(is_metric_name_char),
        )),
    )(i)
}

/// An unquoted label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(i: &str) -> LexResult<'_, &str> {
    expect(
        "label name",
        recognize(pair(
            satisfy(is_label_name_start),
            take_while(is_label_name_char),
        )),
    )(i)
}

/// The inside of a double-quoted string, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted<'a> {
    /// The text between the quotes, escapes not yet resolved.
    pub raw: &'a str,
    /// Whether `raw` contains a backslash (so [`Quoted::unescape`] must allocate).
    pub escaped: bool,
}

impl<'a> Quoted<'a> {
    /// The string with `\\`, `\"` and `\n` resolved; borrowed when there was no escape.
    pub fn unescape(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(unescape_str(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }
}

/// Resolves Prometheus label-value escapes `\\`, `\"`, `\n`. Any other backslash sequence is
/// kept verbatim (Go's `strings.Replacer` semantics used by Prometheus), as is a trailing `\`.
pub fn unescape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut look = chars.clone();
        match look.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars = look;
    }
    out
}

/// Resolves the Prometheus text format's HELP escapes `\\` and `\n` only (`\"` stays as is);
/// borrowed when there is no backslash.
pub fn unescape_help(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('\\') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        if let Some(r) = after.strip_prefix('\\') {
            out.push('\\');
            rest = r;
        } else if let Some(r) = after.strip_prefix('n') {
            out.push('\n');
            rest = r;
        } else {
            out.push('\\');
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Resolves escapes if `s` has any (borrowed otherwise).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if s.contains('\\') {
        Cow::Owned(unescape_str(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// A double-quoted string `"(\\.|[^\\"])*"`. When `allow_newline` is false a raw newline (or a
/// backslash before one) ends the line before the closing quote and is an error, as in label
/// values. `what` names the expected token when the opening quote is missing.
pub fn quoted<'a>(
    allow_newline: bool,
    what: &'static str,
) -> impl FnMut(&'a str) -> LexResult<'a, Quoted<'a>> {
    move |i: &'a str| {
        let Some(body) = i.strip_prefix('"') else {
            return fail(i, what);
        };
        let bytes = body.as_bytes();
        let mut escaped = false;
        let mut k = 0;
        while k < bytes.len() {
            match bytes[k] {
                b'"' => {
                    return Ok((
                        &body[k + 1..],
                        Quoted {
                            raw: &body[..k],
                            escaped,
                        },
                    ))
                }
                b'\\' => {
                    escaped = true;
                    match bytes.get(k + 1) {
                        // The escaped character is any character but a newline; skipping one
                        // byte is enough since UTF-8 continuation bytes never match above.
                        Some(b'\n') | None => break,
                        Some(_) => k += 2,
                    }
                }
                b'\n' if !allow_newline => return fail(&body[k..], "closing '\"'"),
                _ => k += 1,
            }
        }
        // Unterminated: point at the end of the line (or input).
        let at = if k < bytes.len() { k + 1 } else { k };
        fail(&body[at.min(bytes.len())..], "closing '\"'")
    }
}

/// A whitespace-delimited token `[^ \n]+` (a value or timestamp before number parsing).
pub fn token<'a>(what: &'static str) -> impl FnMut(&'a str) -> LexResult<'a, &'a str> {
    expect(what, take_till1(|c| c == ' ' || c == '\n'))
}

/// A token of characters for which `stop` is false (at least one).
pub fn token_till<'a>(
    what: &'static str,
    stop: fn(char) -> bool,
) -> impl FnMut(&'a str) -> LexResult<'a, &'a str> {
    expect(what, take_till1(stop))
}

/// Go's `strconv.ParseFloat` as Prometheus uses it: decimal floats with optional exponent,
/// `[+-]Inf`/`[+-]Infinity` and unsigned `NaN` (case-insensitive); `_`, `p`, `P` rejected
/// (no digit separators or hex floats); finite-looking numbers beyond `f64` are out of range.
pub fn parse_float(s: &str) -> Result<f64, FloatError> {
    if s.bytes().any(|b| matches!(b, b'_' | b'p' | b'P')) {
        return Err(FloatError::UnsupportedChar);
    }
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Ok(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    if all_consuming(recognize_float::<&str, ()>)(s).is_err() {
        return Err(FloatError::Syntax);
    }
    let v: f64 = s.parse().map_err(|_| FloatError::Syntax)?;
    if v.is_infinite() {
        return Err(FloatError::OutOfRange);
    }
    Ok(v)
}

/// Prometheus's canonical NaN (`value.NormalNaN`), distinct from the staleness marker.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Parses a sample or exemplar value token: [`parse_float`], with any NaN made canonical.
pub fn parse_value<'a>(tok: &'a str, what: &'static str) -> Result<f64, LexError<'a>> {
    match parse_float(tok) {
        Ok(v) if v.is_nan() => Ok(f64::from_bits(NORMAL_NAN_BITS)),
        Ok(v) => Ok(v),
        Err(reason) => Err(LexError::new(
            tok,
            SyntaxError::InvalidNumber {
                what,
                text: tok.to_string(),
                reason,
            },
        )),
    }
}

/// Parses a timestamp in float seconds (OpenMetrics) into integer milliseconds the way
/// Prometheus does: `int64(seconds * 1000)`, truncating toward zero (saturating in Rust where
/// Go's conversion is undefined). NaN and infinities are rejected.
pub fn parse_timestamp_seconds<'a>(tok: &'a str, what: &'static str) -> Result<i64, LexError<'a>> {
    match parse_float(tok) {
        Ok(v) if v.is_finite() => Ok((v * 1000.0) as i64),
        Ok(_) => Err(LexError::new(
            tok,
            SyntaxError::NonFiniteTimestamp {
                what,
                text: tok.to_string(),
            },
        )),
        Err(reason) => Err(LexError::new(
            tok,
            SyntaxError::InvalidNumber {
                what,
                text: tok.to_string(),
                reason,
            },
        )),
    }
}

/// Parses an integer-millisecond timestamp token (`[0-9]+`, as the Prometheus text lexer
/// accepts) into `i64`; values beyond `i64::MAX` are out of range (Go's `strconv.ParseInt`).
pub fn parse_timestamp_ms<'a>(tok: &'a str, what: &'static str) -> Result<i64, LexError<'a>> {
    tok.parse::<i64>().map_err(|_| {
        let reason = if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) {
            FloatError::OutOfRange
        } else {
            FloatError::Syntax
        };
        LexError::new(
            tok,
            SyntaxError::InvalidNumber {
                what,
                text: tok.to_string(),
                reason,
            },
        )
    })
}

/// One parsed label: name and value, borrowed from the input unless unescaping was needed.
pub type LabelPair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// What a label set may contain and how it may be spaced: the strict OpenMetrics rules are
/// [`LabelSetRules::OM_SERIES`] and [`LabelSetRules::OM_EXEMPLAR`], the lenient Prometheus text
/// 0.0.4 rules (`promlex.l`) are [`LabelSetRules::PROM_SERIES`].
#[derive(Debug, Clone, Copy)]
pub struct LabelSetRules {
    /// A quoted string followed by `,` or `}` is the metric name (`{"my.metric",a="b"}`).
    pub metric_name: bool,
    /// Quoted label names may span lines (Prometheus's lexers allow it for series labels).
    pub newline_in_quoted_names: bool,
    /// Label values may contain raw newlines (the Prometheus text lexer allows it).
    pub newline_in_values: bool,
    /// NUL bytes are allowed inside label values.
    pub nul_in_values: bool,
    /// NUL bytes are allowed inside quoted label (or metric) names.
    pub nul_in_quoted_names: bool,
    /// Spaces and tabs may appear around every token inside the braces.
    pub whitespace: bool,
    /// Consecutive labels need no `,` between them (`{a="1" b="2"}`).
    pub comma_optional: bool,
}

impl LabelSetRules {
    pub const OM_SERIES: LabelSetRules = LabelSetRules {
        metric_name: true,
        newline_in_quoted_names: true,
        newline_in_values: false,
        nul_in_values: true,
        nul_in_quoted_names: true,
        whitespace: false,
        comma_optional: false,
    };
    pub const OM_EXEMPLAR: LabelSetRules = LabelSetRules {
        metric_name: false,
        newline_in_quoted_names: false,
        newline_in_values: false,
        nul_in_values: false,
        nul_in_quoted_names: true,
        whitespace: false,
        comma_optional: false,
    };
    pub const PROM_SERIES: LabelSetRules = LabelSetRules {
        metric_name: true,
        newline_in_quoted_names: true,
        newline_in_values: true,
        nul_in_values: true,
        nul_in_quoted_names: false,
        whitespace: true,
        comma_optional: true,
    };
}

/// A parsed `{...}`: an optional quoted metric name found inside, and the labels in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSet<'a> {
    pub name: Option<Cow<'a, str>>,
    pub labels: Vec<LabelPair<'a>>,
}

/// Skips spaces and tabs (`[ \t]*`).
pub fn blanks(i: &str) -> &str {
    i.trim_start_matches([' ', '\t'])
}

/// A label set: `{` then `name="value"` pairs separated by `,` (a trailing comma allowed),
/// names unquoted or quoted, then `}`; spacing and separators as `rules` allow. `has_name` says
/// whether a metric name was already given before the brace (a quoted one inside is then an
/// error).
pub fn label_set<'a>(
    i: &'a str,
    rules: &LabelSetRules,
    has_name: bool,
) -> LexResult<'a, LabelSet<'a>> {
    let ws = |i: &'a str| if rules.whitespace { blanks(i) } else { i };
    let (i, _) = sym('{', "'{'")(i)?;
    let mut i = ws(i);
    let mut set = LabelSet::default();
    let mut name_set = has_name;
    loop {
        if let Some(rest) = i.strip_prefix('}') {
            return Ok((rest, set));
        }
        let start = i;
        let (rest, name, quoted_name) = if i.starts_with('"') {
            let (rest, q) = quoted(rules.newline_in_quoted_names, "label name")(i)?;
            if !rules.nul_in_quoted_names {
                if let Some(pos) = q.raw.find('\0') {
                    return fail(&q.raw[pos..], "closing '\"' of label name");
                }
            }
            (rest, q.unescape(), true)
        } else {
            match label_name(i) {
                Ok((rest, n)) => (rest, Cow::Borrowed(n), false),
                Err(_) => return fail(i, "label name or '}'"),
            }
        };
        i = ws(rest);
        if quoted_name && (i.starts_with(',') || i.starts_with('}')) {
            if !rules.metric_name {
                return fail(i, "'=' after label name");
            }
            if name_set {
                return Err(nom::Err::Error(LexError::new(
                    start,
                    SyntaxError::MetricNameAlreadySet,
                )));
            }
            name_set = true;
            set.name = Some(name);
            if let Some(rest) = i.strip_prefix(',') {
                i = ws(rest);
            }
            continue;
        }
        let (rest, _) = sym('=', "'=' after label name")(i)?;
        let (rest, value) =
            quoted(rules.newline_in_values, "label value in double quotes")(ws(rest))?;
        if !rules.nul_in_values {
            if let Some(pos) = value.raw.find('\0') {
                return Err(nom::Err::Error(LexError::new(
                    &value.raw[pos..],
                    SyntaxError::NulInExemplar,
                )));
            }
        }
        set.labels.push((name, value.unescape()));
        i = ws(rest);
        if let Some(rest) = i.strip_prefix(',') {
            i = ws(rest);
        } else if !i.starts_with('}') && !rules.comma_optional {
            return fail(i, "',' or '}' after label value");
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `input`.
pub fn line_col(input: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(input, offset.min(input.len()));
    let before = &input[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(metric_name("a:b_1 2"), Ok((" 2", "a:b_1")));
        assert_eq!(metric_name("_x{"), Ok(("{", "_x")));
        assert!(metric_name("1a").is_err());
        assert_eq!(label_name("a_1="), Ok(("=", "a_1")));
        // Colons are not allowed in label names.
        assert_eq!(label_name("a:b"), Ok((":b", "a")));
        assert!(label_name(":b").is_err());
    }

    #[test]
    fn quoted_strings() {
        let mut q = quoted(false, "x");
        let (rest, v) = q(r#""a\"b\\c\nd" tail"#).unwrap();
        assert_eq!(rest, " tail");
        assert!(v.escaped);
        assert_eq!(v.unescape(), "a\"b\\c\nd");
        let (_, v) = q(r#""plain""#).unwrap();
        assert!(matches!(v.unescape(), Cow::Borrowed("plain")));
        let (_, v) = q(r#""ü\x€""#).unwrap();
        assert_eq!(v.unescape(), "ü\\x€");
        assert!(q("\"ab\ncd\"").is_err());
        assert!(q("\"ab\\\ncd\"").is_err());
        assert!(q("\"abc").is_err());
        assert!(q("\"abc\\").is_err());
        let mut ql = quoted(true, "x");
        assert_eq!(ql("\"ab\ncd\"").unwrap().1.raw, "ab\ncd");
    }

    #[test]
    fn unescape_rules() {
        assert_eq!(unescape_str(r"\\n"), "\\n");
        assert_eq!(unescape_str(r"a\"), "a\\");
        assert_eq!(unescape_str(r#"\x\\\"\n"#), "\\x\\\"\n");
        assert!(matches!(unescape("abc"), Cow::Borrowed(_)));
    }

    #[test]
    fn floats_follow_go() {
        assert_eq!(parse_float("1"), Ok(1.0));
        assert_eq!(parse_float("-1.5e3"), Ok(-1500.0));
        assert_eq!(parse_float("4.9351e-05"), Ok(4.9351e-05));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert_eq!(parse_float("1."), Ok(1.0));
        assert_eq!(parse_float("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_float("-inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float("Infinity"), Ok(f64::INFINITY));
        assert!(parse_float("nan").unwrap().is_nan());
        assert!(parse_float("NaN").unwrap().is_nan());
        assert_eq!(parse_float("+NaN"), Err(FloatError::Syntax));
        assert_eq!(parse_float("1_2"), Err(FloatError::UnsupportedChar));
        assert_eq!(parse_float("0x1p-3"), Err(FloatError::UnsupportedChar));
        assert_eq!(parse_float("0x10"), Err(FloatError::Syntax));
        assert_eq!(parse_float("true"), Err(FloatError::Syntax));
        assert_eq!(parse_float("1z"), Err(FloatError::Syntax));
        assert_eq!(parse_float(""), Err(FloatError::Syntax));
        assert_eq!(parse_float("."), Err(FloatError::Syntax));
        assert_eq!(parse_float("1e"), Err(FloatError::Syntax));
        assert_eq!(parse_float("1e400"), Err(FloatError::OutOfRange));
        assert_eq!(parse_float("1e-400"), Ok(0.0));
        assert_eq!(parse_value("NaN", "v").unwrap().to_bits(), NORMAL_NAN_BITS);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_seconds("123.123", "t"), Ok(123123));
        assert_eq!(parse_timestamp_seconds("-1.5", "t"), Ok(-1500));
        assert_eq!(
            parse_timestamp_seconds("1520430001", "t"),
            Ok(1520430001000)
        );
        assert!(parse_timestamp_seconds("NaN", "t").is_err());
        assert!(parse_timestamp_seconds("-Inf", "t").is_err());
    }

    #[test]
    fn label_sets() {
        let (rest, s) =
            label_set(r#"{a="1",b="x\"y",} 1"#, &LabelSetRules::OM_SERIES, true).unwrap();
        assert_eq!(rest, " 1");
        assert_eq!(s.name, None);
        assert_eq!(s.labels.len(), 2);
        assert_eq!(s.labels[1].1, "x\"y");
        let (_, s) = label_set(
            r#"{q="0.9","http.status"}"#,
            &LabelSetRules::OM_SERIES,
            false,
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("http.status"));
        let (_, s) = label_set("{}", &LabelSetRules::OM_SERIES, true).unwrap();
        assert!(s.labels.is_empty());
        assert!(label_set(r#"{"a"}"#, &LabelSetRules::OM_SERIES, true).is_err());
        assert!(label_set(r#"{"a"}"#, &LabelSetRules::OM_EXEMPLAR, false).is_err());
        assert!(label_set("{a=\"\0\"}", &LabelSetRules::OM_EXEMPLAR, false).is_err());
        assert!(label_set("{a=\"\0\"}", &LabelSetRules::OM_SERIES, true).is_ok());
    }

    #[test]
    fn positions() {
        let s = "ab\ncdé f\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 2), (1, 3));
        assert_eq!(line_col(s, 3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(s, 3 + 4), (2, 4));
        assert_eq!(line_col(s, s.len()), (3, 1));
    }
}
