//! The PromQL parser of Prometheus 3: lexer ([`lexer`], nom scanners), parser ([`grammar`],
//! precedence climbing over tokens), type checker (`check`, Prometheus's `checkAST`), the AST
//! ([`ast`]), the function table ([`functions`]) and the printer ([`printer`], `Display for Expr`).
//!
//! Entry points: [`parse`] (all experimental features on, as Prometheus's test engine runs),
//! [`parse_with`] with [`ParseOptions`], [`parse_metric_selector`] (`match[]` parameters),
//! [`parse_duration`] and [`parse_duration_or_seconds`].
//!
//! Errors are [`crate::Error::Parse`] displaying as Prometheus does, e.g.
//! `1:5: parse error: unexpected <op:+>`.

pub mod ast;
mod check;
pub mod functions;
mod grammar;
pub mod lexer;
pub mod printer;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use ast::*;
pub use functions::{get_function, Function, FUNCTIONS};
pub use grammar::{unquote_bytes, unquote_string, QuoteRules, MAX_NESTING, MAX_TREE_DEPTH};
pub use printer::{format_duration_ms, format_float};

use strata_tsdb::Matcher;

use crate::error::{Error, ParseError, Result};

/// Which experimental Prometheus features the parser accepts. [`Default`] enables all of them
/// (as Prometheus's own test engine does); [`ParseOptions::prometheus_defaults`] disables all
/// (as a Prometheus server started without feature flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Experimental functions (`sort_by_label`, `mad_over_time`, `info`, `limitk`, ...).
    pub enable_experimental_functions: bool,
    /// Duration expressions (`[5m+1m]`, `offset (1h*2)`, `step()`, `range()`, `min_of`...).
    pub experimental_duration_expr: bool,
    /// `anchored` / `smoothed` modifiers.
    pub enable_extended_range_selectors: bool,
    /// `fill()`, `fill_left()`, `fill_right()` binary-operator modifiers.
    pub enable_binop_fill_modifiers: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            enable_experimental_functions: true,
            experimental_duration_expr: true,
            enable_extended_range_selectors: true,
            enable_binop_fill_modifiers: true,
        }
    }
}

impl ParseOptions {
    /// Every experimental feature off.
    pub fn prometheus_defaults() -> Self {
        ParseOptions {
            enable_experimental_functions: false,
            experimental_duration_expr: false,
            enable_extended_range_selectors: false,
            enable_binop_fill_modifiers: false,
        }
    }
}

/// Parses and type-checks a PromQL expression with every experimental feature enabled.
pub fn parse(input: &str) -> Result<Expr> {
    parse_with(input, ParseOptions::default())
}

/// Parses and type-checks a PromQL expression.
pub fn parse_with(input: &str, opts: ParseOptions) -> Result<Expr> {
    let mut p = grammar::Parser::new(input, opts);
    let mut e = p.parse_top().map_err(Error::Parse)?;
    check::Checker { input }
        .check(&mut e)
        .map_err(Error::Parse)?;
    Ok(e)
}

/// Parses a series selector (`foo{a="b"}`, `{__name__=~"x.*"}`) as used by `match[]` API
/// parameters, returning its matchers (the metric name as a `__name__` matcher last).
///
/// Like Prometheus's `ParseMetricSelector`, it does not require a non-empty matcher; callers that
/// need one check it themselves.
pub fn parse_metric_selector(input: &str) -> Result<Vec<Matcher>> {
    let mut p = grammar::Parser::new(input, ParseOptions::default());
    let vs = p.parse_selector_top().map_err(Error::Parse)?;
    Ok(vs.matchers)
}

/// Parses a Prometheus duration (`1h30m`, `1y`, `100ms`, `0`) into milliseconds.
/// Units must appear at most once, largest first (`model.ParseDuration`).
pub fn parse_duration(s: &str) -> Result<i64> {
    grammar::parse_duration_ms(s).map_err(Error::InvalidDuration)
}

/// Parses an HTTP API duration parameter: a float number of seconds (`15`, `1.5`) or a Prometheus
/// duration (`1m`), into milliseconds (as Prometheus's `parseDuration` in `web/api/v1`).
pub fn parse_duration_or_seconds(s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms >= i64::MAX as f64 || ms <= i64::MIN as f64 {
            return Err(Error::InvalidDuration(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            )));
        }
        return Ok(ms.round() as i64);
    }
    grammar::parse_duration_ms(s)
        .map_err(|_| Error::InvalidDuration(format!("cannot parse {s:?} to a valid duration")))
}

/// Returns the parse error of `input`, if any (convenience for tests and tools).
pub fn parse_error(input: &str) -> Option<ParseError> {
    match parse(input) {
        Err(Error::Parse(e)) => Some(e),
        _ => None,
    }
}
