//! Prometheus's `.test` script language (promqltest): the data model and parser for whole
//! scripts ([`script`]), series literals and value sequences including native-histogram
//! literals ([`series`]), Go-compatible literal parsing ([`literal`]), expansion of `load`
//! series into samples ([`expand`]), and the result-comparison rules the runner applies
//! ([`compare`]). The spec is `shared/prometheus/promql-tests/FORMAT.md`; the reference
//! implementation is Prometheus's `promql/promqltest/test.go`.

pub mod compare;
pub mod expand;
pub mod literal;
pub mod runner;
pub mod script;
pub mod series;

pub use compare::{almost_equal, DEFAULT_EPSILON};
pub use script::{
    parse_script, Command, CommandKind, EvalCommand, EvalKind, ExpectKind, Expectation,
    ExpectedSeries, LegacyModifier, LoadCommand, LoadSeries, RangeVectorExpect, TextMatch,
};
pub use series::{
    CounterResetHint, HistogramLiteral, HistogramOp, HistogramValue, SampleValue, SeriesDesc,
};

/// A script parse error, with the 1-based line it refers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ScriptError {
    pub line: usize,
    pub msg: String,
}

impl ScriptError {
    pub fn new(line: usize, msg: impl Into<String>) -> Self {
        ScriptError {
            line,
            msg: msg.into(),
        }
    }
}
