//! OpenMetrics 1.0 text parser (nom), matching Prometheus's `model/textparse/openmetricsparse.go`.
//!
//! [`OpenMetricsParser`] walks a borrowed exposition body line by line and yields [`Entry`]s:
//! `# HELP`, `# TYPE`, `# UNIT` metadata, samples (with optional float-seconds timestamp,
//! converted to integer milliseconds as Prometheus does, and optional exemplar), and the
//! mandatory final `# EOF`. The grammar is Prometheus's, which is stricter than the Prometheus
//! text format: single spaces only, no other comments, no blank lines, no whitespace inside
//! label sets. Quoted UTF-8 metric names (`{"my.metric",a="b"}`) and quoted label names are
//! accepted as in Prometheus 3. Strings are borrowed from the input unless an escape had to be
//! resolved.
//!
//! As in Prometheus: label values `le` (in a histogram) and `quantile` (in a summary) are
//! normalised (`"1"` becomes `"1.0"`), where "the family's type" is the last `# TYPE` seen; NaN
//! values are made canonical; `_created` series are ordinary samples unless
//! [`OpenMetricsParser::skip_created_series`] is set. Errors carry a 1-based line and column.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till};
use nom::combinator::value;

use crate::error::{Error, Result, SyntaxError};
use crate::textparse::lex::{
    expect, into_lex_error, label_set, metric_name, parse_timestamp_seconds, parse_value, quoted,
    starts_metric_name, sym, token, unescape, LabelSetRules, LexError, LexResult,
};
use crate::textparse::{normalize_label_value, Cursor};
pub use crate::textparse::{Entry, Exemplar, LabelPair, MetricType, Sample};

/// Streaming OpenMetrics parser over a borrowed body; an iterator of entries. After the first
/// error, or after [`Entry::Eof`], it yields nothing more.
#[derive(Debug, Clone)]
pub struct OpenMetricsParser<'a> {
    cur: Cursor<'a>,
    /// Type from the last `# TYPE` line (Prometheus keeps it across families).
    typ: MetricType,
    skip_created: bool,
    done: bool,
}

#[derive(Clone, Copy)]
enum Keyword {
    Help,
    Type,
    Unit,
    Eof,
}

fn run<'a, T>(r: LexResult<'a, T>) -> Result<(&'a str, T), LexError<'a>> {
    r.map_err(into_lex_error)
}

/// Consumes the line end; reports a missing `# EOF` at end of input and `what` otherwise.
fn end_of_line<'a>(i: &'a str, what: &'static str) -> Result<&'a str, LexError<'a>> {
    if let Some(rest) = i.strip_prefix('\n') {
        Ok(rest)
    } else if i.is_empty() {
        Err(LexError::new(i, SyntaxError::MissingEof))
    } else {
        Err(LexError::expected(i, what))
    }
}

/// A metric name in a metadata line: unquoted, or quoted (may contain escapes). Returns the
/// raw text (quotes stripped, escapes kept, as Prometheus uses it for the UNIT check) and the
/// unescaped name.
fn meta_name(i: &str) -> Result<(&str, &str, Cow<'_, str>), LexError<'_>> {
    if i.starts_with('"') {
        let (rest, q) = run(quoted(true, "metric name")(i))?;
        Ok((rest, q.raw, q.unescape()))
    } else {
        let (rest, n) = run(metric_name(i))?;
        Ok((rest, n, Cow::Borrowed(n)))
    }
}

impl<'a> OpenMetricsParser<'a> {
    /// A parser over `input`.
    pub fn new(input: &'a str) -> Self {
        OpenMetricsParser {
            cur: Cursor::new(input),
            typ: MetricType::Unknown,
            skip_created: false,
            done: false,
        }
    }

    /// A parser over raw bytes (a scrape body). Entries before the first invalid UTF-8 byte are
    /// parsed normally; reaching that byte is an [`SyntaxError::InvalidUtf8`] error at its
    /// position (Prometheus rejects such bodies too, though with other messages).
    pub fn from_bytes(input: &'a [u8]) -> Self {
        OpenMetricsParser {
            cur: Cursor::from_bytes(input),
            ..Self::new("")
        }
    }

    /// Drop `_created` series of counters, summaries and histograms instead of yielding them
    /// (Prometheus's `WithOMParserSTSeriesSkipped`).
    pub fn skip_created_series(mut self, skip: bool) -> Self {
        self.skip_created = skip;
        self
    }

    /// The type declared by the last `# TYPE` line so far (`Unknown` before any).
    pub fn current_type(&self) -> MetricType {
        self.typ
    }

    /// Byte offset of the next line to parse.
    pub fn offset(&self) -> usize {
        self.cur.offset()
    }

    fn error(&self, e: LexError<'a>) -> Error {
        self.cur.error(e)
    }

    fn parse_line(&mut self) -> Result<(&'a str, Entry<'a>), LexError<'a>> {
        let i = self.cur.rest;
        match i.chars().next() {
            None => Err(LexError::new(i, SyntaxError::MissingEof)),
            Some('#') => self.comment_line(i),
            Some(c) if c == '{' || starts_metric_name(c) => {
                let (rest, s) = self.sample_line(i)?;
                Ok((rest, Entry::Sample(s)))
            }
            Some(_) => Err(LexError::expected(
                i,
                "metric name, '{' or '#' at start of line",
            )),
        }
    }

    fn comment_line(&mut self, i: &'a str) -> Result<(&'a str, Entry<'a>), LexError<'a>> {
        let (i, _) = run(sym('#', "'#'")(i))?;
        let (i, _) = run(sym(' ', "space after '#'")(i))?;
        let (i, kw) = run(expect(
            "HELP, TYPE, UNIT or EOF after '# '",
            alt((
                value(Keyword::Help, tag("HELP")),
                value(Keyword::Type, tag("TYPE")),
                value(Keyword::Unit, tag("UNIT")),
                value(Keyword::Eof, tag("EOF")),
            )),
        )(i))?;
        let space_what = match kw {
            Keyword::Eof => {
                let i = i.strip_prefix('\n').unwrap_or(i);
                if !i.is_empty() || self.cur.bad_utf8 {
                    return Err(LexError::new(i, SyntaxError::DataAfterEof));
                }
                return Ok((i, Entry::Eof));
            }
            Keyword::Help => "space after HELP",
            Keyword::Type => "space after TYPE",
            Keyword::Unit => "space after UNIT",
        };
        let (i, _) = run(sym(' ', space_what)(i))?;
        let (i, raw_name, name) = meta_name(i)?;
        let (i, _) = run(sym(' ', "space and text after metric name")(i))?;
        let (i, text) = run(take_till::<_, _, LexError<'a>>(|c| c == '\n')(i))?;
        let rest = end_of_line(i, "end of line")?;
        let entry = match kw {
            Keyword::Help => Entry::Help {
                name,
                text: unescape(text),
            },
            Keyword::Type => match MetricType::from_openmetrics(text) {
                Some(typ) => {
                    self.typ = typ;
                    Entry::Type { name, typ }
                }
                None => {
                    return Err(LexError::new(
                        text,
                        SyntaxError::InvalidMetricType(text.to_string()),
                    ))
                }
            },
            Keyword::Unit => {
                let unit = text;
                let ok = unit.is_empty()
                    || (raw_name.len() > unit.len()
                        && raw_name.ends_with(unit)
                        && raw_name.as_bytes()[raw_name.len() - unit.len() - 1] == b'_');
                if !ok {
                    return Err(LexError::new(
                        unit,
                        SyntaxError::UnitNotSuffix {
                            unit: unit.to_string(),
                            metric: raw_name.to_string(),
                        },
                    ));
                }
                Entry::Unit { name, unit }
            }
            Keyword::Eof => Entry::Eof,
        };
        Ok((rest, entry))
    }

    fn sample_line(&self, line: &'a str) -> Result<(&'a str, Sample<'a>), LexError<'a>> {
        let (mut i, mut name) = if line.starts_with('{') {
            (line, None)
        } else {
            let (rest, n) = run(metric_name(line))?;
            (rest, Some(Cow::Borrowed(n)))
        };
        let mut labels = Vec::new();
        if i.starts_with('{') {
            let (rest, set) = run(label_set(i, &LabelSetRules::OM_SERIES, name.is_some()))?;
            if set.name.is_some() {
                name = set.name;
            }
            labels = set.labels;
            i = rest;
        }
        let Some(name) = name else {
            return Err(LexError::new(line, SyntaxError::MetricNameNotSet));
        };
        for (n, v) in labels.iter_mut() {
            if matches!(&**n, "le" | "quantile") {
                *v = normalize_label_value(self.typ, n, std::mem::take(v));
            }
        }

        let (i, _) = run(sym(' ', "space before value")(i))?;
        let (mut i, tok) = run(token("sample value")(i))?;
        let value = parse_value(tok, "sample value")?;

        let mut timestamp_ms = None;
        if i.starts_with(' ') && !i.starts_with(" # {") {
            let (rest, tok) = run(token("timestamp")(&i[1..]))?;
            timestamp_ms = Some(parse_timestamp_seconds(tok, "timestamp")?);
            i = rest;
        }

        let mut exemplar = None;
        if i.starts_with(" # {") {
            let (rest, ex) = exemplar_part(&i[3..])?;
            exemplar = Some(ex);
            i = rest;
        }
        let what = match (timestamp_ms.is_some(), exemplar.is_some()) {
            (_, true) => "end of line after exemplar",
            (true, false) => "exemplar or end of line after timestamp",
            (false, false) => "timestamp, exemplar or end of line after value",
        };
        let rest = end_of_line(i, what)?;
        Ok((
            rest,
            Sample {
                name,
                labels,
                value,
                timestamp_ms,
                exemplar,
            },
        ))
    }

    fn is_skipped(&self, s: &Sample<'_>) -> bool {
        self.skip_created
            && self.typ.has_created()
            && s.name.len() > "_created".len()
            && s.name.ends_with("_created")
    }
}

/// `{labels} value [timestamp]` after `" # "`.
fn exemplar_part(i: &str) -> Result<(&str, Exemplar<'_>), LexError<'_>> {
    let (i, set) = run(label_set(i, &LabelSetRules::OM_EXEMPLAR, false))?;
    let (i, _) = run(sym(' ', "space before exemplar value")(i))?;
    let (mut i, tok) = run(token("exemplar value")(i))?;
    let value = parse_value(tok, "exemplar value")?;
    let mut timestamp_ms = None;
    if let Some(rest) = i.strip_prefix(' ') {
        let (rest, tok) = run(token("exemplar timestamp")(rest))?;
        timestamp_ms = Some(parse_timestamp_seconds(tok, "exemplar timestamp")?);
        i = rest;
    }
    Ok((
        i,
        Exemplar {
            labels: set.labels,
            value,
            timestamp_ms,
        },
    ))
}

impl<'a> Iterator for OpenMetricsParser<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.parse_line() {
                Ok((rest, entry)) => {
                    self.cur.rest = rest;
                    match &entry {
                        Entry::Eof => self.done = true,
                        Entry::Sample(s) if self.is_skipped(s) => continue,
                        _ => {}
                    }
                    return Some(Ok(entry));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.error(e)));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for OpenMetricsParser<'_> {}

/// Parses a whole body. On success the entries are returned without the final
/// [`Entry::Eof`] (whose presence success implies).
pub fn parse_all(text: &str) -> Result<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    for e in OpenMetricsParser::new(text) {
        match e? {
            Entry::Eof => break,
            e => out.push(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
