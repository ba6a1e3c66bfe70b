//! Prometheus text exposition format 0.0.4 parser (nom), matching Prometheus 3's
//! `model/textparse/promparse.go` and its lexer `promlex.l`.
//!
//! [`PromTextParser`] walks a borrowed body line by line and yields the shared
//! [`Entry`] type: `# HELP` and `# TYPE` metadata and samples with an optional integer
//! millisecond timestamp. Other comments and blank lines are skipped; there is no `# EOF`,
//! no `# UNIT` and no exemplars. The grammar is Prometheus's, more lenient than OpenMetrics:
//! spaces and tabs anywhere between tokens (also at the start of a line and inside label sets),
//! commas between labels optional, a trailing comma allowed, raw newlines allowed inside quoted
//! strings, quoted UTF-8 metric names (`{"my.metric",a="b"}`) and label names as in Prometheus
//! 3. Label values unescape `\\`, `\"`, `\n`; HELP text only `\\` and `\n`. Values are Go
//! `ParseFloat` floats (`NaN`, `+Inf`, `-Inf`, ...; NaN made canonical), timestamps `[0-9]+`
//! as `i64`.
//!
//! Also as in Prometheus: `le` (histogram) and `quantile` (summary) label values are
//! normalised (`"1"` becomes `"1.0"`) according to the last `# TYPE` seen; the first line
//! starting with a NUL byte (or a `#` comment containing one) ends the input without error.
//! A malformed line is an error carrying its 1-based line and column, after which the
//! iterator stops (the scrape fails). Strings borrow from the input unless an escape had to be
//! resolved.

use std::borrow::Cow;

use crate::error::{Error, Result, SyntaxError};
use crate::textparse::lex::{
    blanks, expect, into_lex_error, label_set, metric_name, parse_timestamp_ms, parse_value,
    quoted, starts_metric_name, token_till, unescape_help, LabelSetRules, LexError, LexResult,
};
use crate::textparse::{normalize_label_value, Cursor};
pub use crate::textparse::{Entry, LabelPair, MetricType, Sample};

/// Streaming Prometheus text-format parser over a borrowed body; an iterator of entries that
/// stops after the first error.
#[derive(Debug, Clone)]
pub struct PromTextParser<'a> {
    cur: Cursor<'a>,
    /// Type from the last `# TYPE` line (Prometheus keeps it across families).
    typ: MetricType,
    done: bool,
}

/// What one line amounts to.
enum Step<'a> {
    /// An entry, and the input after its line.
    Entry(&'a str, Entry<'a>),
    /// A blank or comment line; the input after it.
    Skip(&'a str),
    /// The end of the input (or a NUL byte that Prometheus's lexer takes for it).
    End,
}

fn run<'a, T>(r: LexResult<'a, T>) -> Result<(&'a str, T), LexError<'a>> {
    r.map_err(into_lex_error)
}

/// Characters that end a sample value (`[^{ \t\n]` in `promlex.l`; NUL also ends tokens there).
fn ends_value(c: char) -> bool {
    matches!(c, '{' | ' ' | '\t' | '\n' | '\0')
}

impl<'a> PromTextParser<'a> {
    /// A parser over `input`.
    pub fn new(input: &'a str) -> Self {
        PromTextParser {
            cur: Cursor::new(input),
            typ: MetricType::Unknown,
            done: false,
        }
    }

    /// A parser over raw bytes (a scrape body). Entries before the first invalid UTF-8 byte are
    /// parsed normally; reaching that byte is an [`SyntaxError::InvalidUtf8`] error at its
    /// position.
    pub fn from_bytes(input: &'a [u8]) -> Self {
        PromTextParser {
            cur: Cursor::from_bytes(input),
            ..Self::new("")
        }
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

    /// Consumes the line end: a newline, or the end of the input (not of valid UTF-8).
    fn end_of_line(&self, i: &'a str, what: &'static str) -> Result<&'a str, LexError<'a>> {
        if let Some(rest) = i.strip_prefix('\n') {
            Ok(rest)
        } else if i.is_empty() && !self.cur.bad_utf8 {
            Ok(i)
        } else if i.is_empty() {
            Err(LexError::new(i, SyntaxError::InvalidUtf8))
        } else {
            Err(LexError::expected(i, what))
        }
    }

    /// The rest of a comment line; `nul_ends` when a NUL byte ends the whole input (a `#`
    /// comment lexed in Prometheus's initial state).
    fn skip_comment(&self, i: &'a str, nul_ends: bool) -> Result<Step<'a>, LexError<'a>> {
        let stop = if nul_ends {
            i.find(['\n', '\0'])
        } else {
            i.find('\n')
        };
        match stop {
            Some(p) if i.as_bytes()[p] == 0 => Ok(Step::End),
            Some(p) => Ok(Step::Skip(&i[p + 1..])),
            None => Ok(Step::Skip(self.end_of_line(&i[i.len()..], "end of line")?)),
        }
    }

    fn parse_line(&mut self) -> Result<Step<'a>, LexError<'a>> {
        let i = blanks(self.cur.rest);
        match i.chars().next() {
            None if self.cur.bad_utf8 => Err(LexError::new(i, SyntaxError::InvalidUtf8)),
            None | Some('\0') => Ok(Step::End),
            Some('\n') => Ok(Step::Skip(&i[1..])),
            Some('#') => self.comment_line(&i[1..]),
            Some(c) if c == '{' || starts_metric_name(c) => {
                let (rest, s) = self.sample_line(i)?;
                Ok(Step::Entry(rest, Entry::Sample(s)))
            }
            Some(_) => Err(LexError::expected(
                i,
                "metric name, '{' or '#' at start of line",
            )),
        }
    }

    /// A line after its `#`.
    fn comment_line(&mut self, after_hash: &'a str) -> Result<Step<'a>, LexError<'a>> {
        let i = blanks(after_hash);
        if i.len() == after_hash.len() {
            // `#` not followed by a blank: always a plain comment.
            return self.skip_comment(i, true);
        }
        for (kw, is_help) in [("HELP", true), ("TYPE", false)] {
            if let Some(r) = i.strip_prefix(kw) {
                let after = blanks(r);
                if after.len() < r.len() {
                    return self.metadata(after, is_help);
                }
            }
        }
        if i.starts_with('\0') {
            return Ok(Step::End);
        }
        self.skip_comment(i, false)
    }

    /// `name text` after `# HELP ` or `# TYPE `.
    fn metadata(&mut self, i: &'a str, is_help: bool) -> Result<Step<'a>, LexError<'a>> {
        let what = if is_help {
            "metric name after HELP"
        } else {
            "metric name after TYPE"
        };
        let (rest, name) = if i.starts_with('"') {
            let (rest, q) = run(quoted(true, what)(i))?;
            if let Some(p) = q.raw.find('\0') {
                return Err(LexError::expected(&q.raw[p..], "closing '\"'"));
            }
            (rest, q.unescape())
        } else {
            let (rest, n) = run(expect(what, metric_name)(i))?;
            (rest, Cow::Borrowed(n))
        };
        let len = rest.find('\n').unwrap_or(rest.len());
        let raw = &rest[..len];
        let after = self.end_of_line(&rest[len..], "end of line")?;
        if raw.starts_with('\0') {
            return Err(LexError::expected(raw, "end of line after metadata"));
        }
        // Prometheus's lexer takes the rest of the line as the text and drops its first
        // character (normally the separating blank); blanks alone (NULs ignored) are no text.
        let text = if raw.bytes().all(|b| matches!(b, b' ' | b'\t' | 0)) {
            &raw[raw.len()..]
        } else {
            let mut chars = raw.chars();
            match chars.next() {
                Some(c) if c.is_ascii() => chars.as_str(),
                // Dropping one byte of a multi-byte character leaves invalid UTF-8.
                _ if is_help => return Err(LexError::new(raw, SyntaxError::InvalidUtf8)),
                _ => {
                    return Err(LexError::new(
                        raw,
                        SyntaxError::InvalidMetricType(raw.to_string()),
                    ))
                }
            }
        };
        let entry = if is_help {
            Entry::Help {
                name,
                text: unescape_help(text),
            }
        } else {
            let Some(typ) = MetricType::from_prom_text(text) else {
                return Err(LexError::new(
                    text,
                    SyntaxError::InvalidMetricType(text.to_string()),
                ));
            };
            self.typ = typ;
            Entry::Type { name, typ }
        };
        Ok(Step::Entry(after, entry))
    }

    fn sample_line(&self, line: &'a str) -> Result<(&'a str, Sample<'a>), LexError<'a>> {
        let (i, mut name) = if line.starts_with('{') {
            (line, None)
        } else {
            let (rest, n) = run(metric_name(line))?;
            (rest, Some(Cow::Borrowed(n)))
        };
        let mut i = blanks(i);
        let mut labels = Vec::new();
        if i.starts_with('{') {
            let (rest, set) = run(label_set(i, &LabelSetRules::PROM_SERIES, name.is_some()))?;
            if set.name.is_some() {
                name = set.name;
            }
            labels = set.labels;
            i = blanks(rest);
        }
        let Some(name) = name else {
            return Err(LexError::new(line, SyntaxError::MetricNameNotSet));
        };
        if matches!(self.typ, MetricType::Histogram | MetricType::Summary) {
            for (n, v) in labels.iter_mut() {
                if matches!(&**n, "le" | "quantile") {
                    *v = normalize_label_value(self.typ, n, std::mem::take(v));
                }
            }
        }

        let (i, tok) = run(token_till("sample value", ends_value)(i))?;
        let value = parse_value(tok, "sample value")?;
        let mut i = blanks(i);
        let mut timestamp_ms = None;
        let digits = i.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            timestamp_ms = Some(parse_timestamp_ms(&i[..digits], "timestamp")?);
            i = blanks(&i[digits..]);
        }
        let what = if timestamp_ms.is_some() {
            "end of line after timestamp"
        } else {
            "timestamp or end of line after value"
        };
        let rest = self.end_of_line(i, what)?;
        Ok((
            rest,
            Sample {
                name,
                labels,
                value,
                timestamp_ms,
                exemplar: None,
            },
        ))
    }
}

impl<'a> Iterator for PromTextParser<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.parse_line() {
                Ok(Step::Entry(rest, entry)) => {
                    self.cur.rest = rest;
                    return Some(Ok(entry));
                }
                Ok(Step::Skip(rest)) => self.cur.rest = rest,
                Ok(Step::End) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.error(e)));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for PromTextParser<'_> {}

/// Parses a whole body into its entries.
pub fn parse_all(text: &str) -> Result<Vec<Entry<'_>>> {
    PromTextParser::new(text).collect()
}

#[cfg(test)]
mod tests;
