//! Pieces shared by the text exposition-format parsers (OpenMetrics in [`crate::openmetrics`],
//! Prometheus text 0.0.4 in [`crate::promtext`]): the parsed [`Entry`], [`Sample`] and
//! [`Exemplar`], [`MetricType`], metric-family suffix rules,
//! conversion to [`strata_tsdb::Labels`], OpenMetrics float formatting for `le`/`quantile`
//! normalisation, and the nom lexing pieces in [`lex`].

pub mod lex;
#[cfg(test)]
pub(crate) mod testdata;

use std::borrow::Cow;

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{Label, Labels};

use crate::error::{Error, Result};
pub use lex::LabelPair;

/// Where a text parser stands in its body: the (valid UTF-8 part of the) input, the suffix
/// still to parse, and whether the original bytes continue with invalid UTF-8. Shared by both
/// text parsers, which differ only in their grammar.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    /// The whole (valid UTF-8 part of the) input; error positions are computed against it.
    pub input: &'a str,
    /// What is still to be parsed; always a suffix of `input`.
    pub rest: &'a str,
    /// The original bytes continue past `input` with invalid UTF-8.
    pub bad_utf8: bool,
}

impl<'a> Cursor<'a> {
    pub fn new(input: &'a str) -> Self {
        Cursor {
            input,
            rest: input,
            bad_utf8: false,
        }
    }

    /// A cursor over raw bytes: the valid UTF-8 prefix, marked when invalid bytes follow, so
    /// that reaching them is an [`crate::error::SyntaxError::InvalidUtf8`] error at their position.
    pub fn from_bytes(input: &'a [u8]) -> Self {
        match std::str::from_utf8(input) {
            Ok(s) => Self::new(s),
            Err(e) => Cursor {
                bad_utf8: true,
                ..Self::new(std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default())
            },
        }
    }

    /// Byte offset of the next line to parse.
    pub fn offset(&self) -> usize {
        self.input.len() - self.rest.len()
    }

    /// A lexing error as the crate's error, with its line and column; an error at the end of
    /// the valid UTF-8 prefix of a body that continues with invalid bytes is reported as
    /// invalid UTF-8.
    pub fn error(&self, e: lex::LexError<'a>) -> Error {
        let base = self.input.as_ptr() as usize;
        let at = e.rest.as_ptr() as usize;
        let offset = if at >= base && at <= base + self.input.len() {
            at - base
        } else {
            self.input.len()
        };
        let mut kind = e.kind;
        if self.bad_utf8
            && offset == self.input.len()
            && kind != crate::error::SyntaxError::DataAfterEof
        {
            kind = crate::error::SyntaxError::InvalidUtf8;
        }
        let (line, column) = lex::line_col(self.input, offset);
        Error::Syntax { line, column, kind }
    }
}

/// A metric family type as declared by `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    Stateset,
    /// `unknown` in OpenMetrics (`untyped` in the Prometheus text format); also the type before
    /// any `# TYPE` line.
    #[default]
    Unknown,
}

impl MetricType {
    /// The OpenMetrics 1.0 spelling (`untyped` is not valid there).
    pub fn from_openmetrics(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::Stateset,
            "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The Prometheus text format 0.0.4 spelling (`promparse.go`): `counter`, `gauge`,
    /// `histogram`, `summary`, `untyped` only.
    pub fn from_prom_text(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Sample-name suffixes a family of this type may use (OpenMetrics 1.0).
    pub fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Summary => &["_count", "_sum", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::Stateset | MetricType::Unknown => &[],
        }
    }

    /// Whether `_created` series of this type carry a start timestamp (Prometheus's
    /// `typeRequiresST`).
    pub fn has_created(self) -> bool {
        matches!(
            self,
            MetricType::Counter | MetricType::Summary | MetricType::Histogram
        )
    }
}

/// The family name of a sample named `sample_name` in a family of type `typ`: the name with
/// the type's suffix (`_total`, `_bucket`, `_count`, `_sum`, `_created`, ...) removed, or the
/// name itself when it has none.
pub fn family_name(sample_name: &str, typ: MetricType) -> &str {
    for suffix in typ.suffixes() {
        if let Some(base) = sample_name.strip_suffix(suffix) {
            if !base.is_empty() {
                return base;
            }
        }
    }
    sample_name
}

/// One parsed line of an exposition body (OpenMetrics or Prometheus text). The Prometheus
/// text parser never yields [`Entry::Unit`] or [`Entry::Eof`].
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text` (text unescaped: `\\`, `\n`, and in OpenMetrics also `\"`).
    Help {
        name: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    /// `# TYPE name type`.
    Type { name: Cow<'a, str>, typ: MetricType },
    /// `# UNIT name unit` (unit may be empty).
    Unit { name: Cow<'a, str>, unit: &'a str },
    /// A sample line.
    Sample(Sample<'a>),
    /// The final `# EOF`; the iterator ends after it.
    Eof,
}

/// An exemplar attached to a sample (`# {labels} value [timestamp]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    pub labels: Vec<LabelPair<'a>>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Exemplar<'_> {
    /// The exemplar's labels as a sorted label set (checked like series labels).
    pub fn to_labels(&self) -> Result<Labels> {
        build_labels(None, &self.labels)
    }

    pub fn into_owned(self) -> Exemplar<'static> {
        Exemplar {
            labels: owned_pairs(self.labels),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// One sample line. Strings borrow from the input unless an escape had to be resolved (or, for
/// `le`/`quantile`, the value was re-formatted the way Prometheus normalises it).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The metric name, unescaped if it was quoted.
    pub name: Cow<'a, str>,
    /// Labels in input order, without `__name__`.
    pub labels: Vec<LabelPair<'a>>,
    pub value: f64,
    /// The sample's own timestamp in milliseconds, if it had one.
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar<'a>>,
}

impl Sample<'_> {
    /// The value of label `name` (not `__name__`).
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The series labels including `__name__`, sorted. Empty values are dropped (Prometheus
    /// treats them as absent); an empty or duplicate label name is [`Error::InvalidLabels`].
    pub fn to_labels(&self) -> Result<Labels> {
        build_labels(Some(&self.name), &self.labels)
    }

    pub fn into_owned(self) -> Sample<'static> {
        Sample {
            name: Cow::Owned(self.name.into_owned()),
            labels: owned_pairs(self.labels),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            exemplar: self.exemplar.map(Exemplar::into_owned),
        }
    }
}

fn owned_pairs(v: Vec<LabelPair<'_>>) -> Vec<LabelPair<'static>> {
    v.into_iter()
        .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
        .collect()
}

fn build_labels(name: Option<&str>, pairs: &[LabelPair<'_>]) -> Result<Labels> {
    let mut v: Vec<Label> = Vec::with_capacity(pairs.len() + 1);
    if let Some(name) = name {
        v.push(Label::new(METRIC_NAME, name));
    }
    for (n, val) in pairs {
        if n.is_empty() {
            return Err(Error::InvalidLabels("empty label name".into()));
        }
        v.push(Label::new(n.as_ref(), val.as_ref()));
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::InvalidLabels(format!(
            "duplicate label name {:?}",
            &*w[0].name
        )));
    }
    Ok(Labels::new(v))
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`: shortest round-trip digits, exponent form
/// (`1e+06`, `1.5e-07`, at least two exponent digits) when the decimal exponent is < -4 or
/// >= 6 (strconv uses precision 6 for that decision when formatting shortest).
fn format_go_g(f: f64) -> String {
    // Rust's `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`.
    let e = format!("{f:e}");
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m, x.parse::<i32>().unwrap_or(0)),
        None => return e,
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.unsigned_abs())
    } else {
        // Rust's Display never uses an exponent and is also shortest round-trip.
        format!("{f}")
    }
}

/// Prometheus's `labels.FormatOpenMetricsFloat`: Go `%g` formatting with `.0` appended when the
/// result has neither `.` nor `e`; `NaN`, `+Inf`, `-Inf` spelled that way.
pub fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let mut s = format_go_g(f);
    if !s.contains(['e', '.']) {
        s.push_str(".0");
    }
    s
}

/// Prometheus's `normalizeFloatsInLabelValues`: for a summary's `quantile` or a histogram's
/// `le`, a value that parses as a float is re-formatted OpenMetrics-style (`"1"` becomes
/// `"1.0"`). Stays borrowed when the text is already canonical.
pub fn normalize_label_value<'a>(typ: MetricType, name: &str, value: Cow<'a, str>) -> Cow<'a, str> {
    let applies = (typ == MetricType::Summary && name == "quantile")
        || (typ == MetricType::Histogram && name == "le");
    if !applies {
        return value;
    }
    // Go's ParseFloat (without the `_`/`p` restriction; hex floats are not handled here).
    let parsed = if value.bytes().any(|b| b == b'_') {
        None
    } else {
        lex::parse_float(&value).ok()
    };
    match parsed {
        Some(f) => {
            // Common bucket bounds without formatting (and without allocating).
            let fixed = if f == f64::INFINITY {
                Some("+Inf")
            } else if f == 1.0 {
                Some("1.0")
            } else if f == 0.0 {
                Some("0.0")
            } else {
                None
            };
            if let Some(fixed) = fixed {
                return if value == fixed {
                    value
                } else {
                    Cow::Owned(fixed.to_string())
                };
            }
            let s = format_openmetrics_float(f);
            if s == value {
                value
            } else {
                Cow::Owned(s)
            }
        }
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn om_float_format_matches_go() {
        for (f, want) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.25, "0.25"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-8.999999999999979e-05, "-8.999999999999979e-05"),
            (123456789.0, "1.23456789e+08"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(format_openmetrics_float(f), want, "{f}");
        }
    }

    #[test]
    fn normalisation() {
        let n = |t, l, v: &'static str| normalize_label_value(t, l, Cow::Borrowed(v));
        assert_eq!(n(MetricType::Histogram, "le", "1"), "1.0");
        assert!(matches!(
            n(MetricType::Histogram, "le", "1.0"),
            Cow::Borrowed(_)
        ));
        assert_eq!(n(MetricType::Histogram, "le", "+Inf"), "+Inf");
        assert_eq!(n(MetricType::Histogram, "le", "c"), "c");
        assert_eq!(n(MetricType::Summary, "quantile", "0"), "0.0");
        assert_eq!(n(MetricType::Counter, "le", "1"), "1");
        assert_eq!(n(MetricType::Summary, "le", "1"), "1");
    }

    #[test]
    fn families() {
        assert_eq!(family_name("foo_total", MetricType::Counter), "foo");
        assert_eq!(family_name("foo_created", MetricType::Counter), "foo");
        assert_eq!(family_name("foo_bucket", MetricType::Histogram), "foo");
        assert_eq!(family_name("foo_gsum", MetricType::GaugeHistogram), "foo");
        assert_eq!(
            family_name("fizz_created", MetricType::Gauge),
            "fizz_created"
        );
        assert_eq!(family_name("_total", MetricType::Counter), "_total");
    }

    #[test]
    fn labels_conversion() {
        let s = Sample {
            name: "m".into(),
            labels: vec![("b".into(), "2".into()), ("a".into(), "".into())],
            value: 1.0,
            timestamp_ms: None,
            exemplar: None,
        };
        let l = s.to_labels().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("__name__"), Some("m"));
        assert_eq!(l.get("b"), Some("2"));
        let dup = Sample {
            labels: vec![("b".into(), "2".into()), ("b".into(), "3".into())],
            ..s.clone()
        };
        assert!(matches!(dup.to_labels(), Err(Error::InvalidLabels(_))));
        let empty = Sample {
            labels: vec![("".into(), "x".into())],
            ..s
        };
        assert!(matches!(empty.to_labels(), Err(Error::InvalidLabels(_))));
    }
}
