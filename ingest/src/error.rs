//! The ingest crate's one error type.
//!
//! Exposition-format parsers report [`Error::Syntax`] with the 1-based line and column of the
//! offending character and a [`SyntaxError`] saying what was expected and what was found, e.g.
//! `line 12 column 7: expected label value in double quotes, found '''`.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while bringing samples in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed exposition text. `line` and `column` are 1-based; the column counts Unicode
    /// scalar values (characters), not bytes.
    #[error("line {line} column {column}: {kind}")]
    Syntax {
        line: usize,
        column: usize,
        kind: SyntaxError,
    },
    /// A parsed series whose label set Prometheus would reject (empty or duplicate names).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A scrape response whose `Content-Type` selects no parser.
    #[error("{0}")]
    ContentType(crate::scrape_format::ContentTypeError),
    /// An error from the storage engine.
    #[error(transparent)]
    Storage(#[from] strata_tsdb::Error),
    // --- http / scrape ---
    /// An HTTP client setting that is invalid or that the client cannot honour.
    #[error("HTTP client setting {setting}: {detail}")]
    HttpSetting {
        setting: &'static str,
        detail: String,
    },
    /// A scrape that failed (HTTP error, timeout, body too large, limits exceeded).
    #[error("{0}")]
    Scrape(String),
    // --- config ---
    /// An invalid or unreadable configuration: `prometheus.yml`, a `file_sd` target file, a
    /// relabeling rule or a target's labels. `path` is the file when one is involved; `message`
    /// names the offending field (e.g. `scrape_configs[1].scrape_interval: not a valid duration
    /// string: "1x" at line 7 column 22`).
    #[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config {
        path: Option<std::path::PathBuf>,
        message: String,
    },
    /// A discovered target whose labels Prometheus would reject after relabeling (no address,
    /// a bad `__scrape_interval__`...). The message names the group and target.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    // --- agent ---
    /// Agent mode (storage, remote-write queues) could not do what was asked.
    #[error("agent: {0}")]
    Agent(String),
}

impl Error {
    /// The syntax error kind, when this is a syntax error.
    pub fn syntax_kind(&self) -> Option<&SyntaxError> {
        match self {
            Error::Syntax { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// `(line, column)` of a syntax error.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Error::Syntax { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}

/// What is wrong at a syntax error's position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    /// A token or character other than the one the grammar requires.
    #[error("expected {what}, found {found}")]
    Expected { what: &'static str, found: Found },
    /// The input ended without the mandatory `# EOF` line.
    #[error("data does not end with # EOF")]
    MissingEof,
    /// Something follows the `# EOF` line.
    #[error("unexpected data after # EOF")]
    DataAfterEof,
    /// `# TYPE` with a type the format does not define.
    #[error("invalid metric type {0:?}")]
    InvalidMetricType(String),
    /// `# UNIT` whose unit is not a `_`-separated suffix of the metric name.
    #[error("unit {unit:?} not a suffix of metric {metric:?}")]
    UnitNotSuffix { unit: String, metric: String },
    /// A number (value or timestamp) that does not parse.
    #[error("invalid {what} {text:?}: {reason}")]
    InvalidNumber {
        what: &'static str,
        text: String,
        reason: FloatError,
    },
    /// A timestamp that parses but is NaN or infinite.
    #[error("invalid {what} {text:?}: must be a finite number")]
    NonFiniteTimestamp { what: &'static str, text: String },
    /// A label set `{...}` without a quoted metric name and no name before it.
    #[error("metric name not set")]
    MetricNameNotSet,
    /// A second metric name inside a label set, or one after an unquoted name.
    #[error("metric name already set")]
    MetricNameAlreadySet,
    /// A NUL byte inside an exemplar label value (Prometheus rejects these).
    #[error("NUL byte in exemplar label value")]
    NulInExemplar,
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

/// Why a number failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FloatError {
    /// `_`, `p` or `P` (Go-style digit separators and hex floats are not allowed).
    #[error("unsupported character in float")]
    UnsupportedChar,
    /// Not a decimal float, `NaN` or `[+-]Inf`.
    #[error("invalid syntax")]
    Syntax,
    /// A finite-looking number too large for `f64`.
    #[error("value out of range")]
    OutOfRange,
}

/// What was found where something else was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    EndOfInput,
    EndOfLine,
    Char(char),
}

impl Found {
    /// Describes the first character of `rest` (the unparsed input at the error).
    pub fn at(rest: &str) -> Found {
        match rest.chars().next() {
            None => Found::EndOfInput,
            Some('\n') => Found::EndOfLine,
            Some(c) => Found::Char(c),
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::EndOfInput => f.write_str("end of input"),
            Found::EndOfLine => f.write_str("end of line"),
            Found::Char(' ') => f.write_str("space"),
            Found::Char('\t') => f.write_str("tab"),
            Found::Char('\0') => f.write_str("NUL byte"),
            Found::Char('\'') => f.write_str("'\\''"),
            Found::Char(c) => write!(f, "'{}'", c.escape_debug()),
        }
    }
}
