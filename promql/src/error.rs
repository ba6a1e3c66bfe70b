//! The crate's single error type.
//!
//! Parse errors carry the byte range of the offending input and display exactly like
//! Prometheus's `ParseErr`: `<line>:<col>: parse error: <message>`.

use std::fmt;

use crate::parser::ast::PosRange;

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error of `strata-promql`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text is not valid PromQL (syntax or type error found at parse time).
    #[error("{0}")]
    Parse(ParseError),
    /// A duration string (`1h30m`, query-API `step=` / `timeout=` values) is malformed.
    #[error("{0}")]
    InvalidDuration(String),
    /// A query failed while being evaluated (Prometheus's `execution` error type).
    #[error("{0}")]
    Eval(String),
    /// The query ran past its timeout (Prometheus's `timeout` error type).
    #[error("{0}")]
    Timeout(String),
    /// The query was cancelled by its caller (Prometheus's `canceled` error type), e.g. because
    /// the HTTP client went away.
    #[error("{0}")]
    Canceled(String),
    /// The query would load more samples than allowed (`--query.max-samples`).
    #[error("{0}")]
    TooManySamples(String),
    /// An error from the storage layer.
    #[error(transparent)]
    Storage(#[from] strata_tsdb::Error),
}

/// A parse error at a position of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte range in the query (zero-based, end exclusive).
    pub pos: PosRange,
    /// Human-readable `line:col` of `pos.start` (1-based line and column; the column counts bytes,
    /// as Prometheus does), or `unknown position` for an empty query.
    pub location: String,
    /// The message, worded as Prometheus words it (e.g. `unexpected <op:+>`).
    pub msg: String,
}

impl ParseError {
    /// Builds an error for `query`, computing the `line:col` of `pos.start`.
    pub fn new(query: &str, pos: PosRange, msg: impl Into<String>) -> Self {
        ParseError {
            pos,
            location: pos.start_pos_input(query),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: parse error: {}", self.location, self.msg)
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(e)
    }
}
