//! The PromQL evaluator. It reads storage only through [`strata_tsdb::storage::Queryable`].
//!
//! Evaluation works like Prometheus's: an expression is evaluated for a list of timestamps (one
//! for an instant query, `start..=end` by `step` for a range query). Selectors load and decode
//! the samples they need for the whole list once, then every step looks them up with cursors
//! that only move forward (the lookback window of a vector selector, the sliding `(t-range, t]`
//! window of a range selector), so nothing is re-read per step. Subqueries evaluate their inner
//! expression once over the union of their windows, aligned to the subquery step.

mod aggregate;
mod binary;
mod cache;
mod eval;
mod functions;
mod hints;
mod value;

pub use value::{Annotations, QueryResult, Sample, Series, Value};

/// Prometheus's `almost.Equal` (used by `histogram_quantile`'s monotonicity fix and by the
/// test-script comparison).
pub fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    functions::histogram::almost_equal(a, b, eps)
}

use std::sync::Arc;
use std::time::Duration;

use strata_tsdb::storage::Queryable;

use crate::error::Result;
use crate::parser::{self, Expr};

/// Engine limits and defaults (Prometheus's flag defaults).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `--query.lookback-delta`, ms.
    pub lookback_delta: i64,
    /// `--query.max-samples`.
    pub max_samples: usize,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// Step of subqueries without an explicit step, ms (Prometheus: the rule evaluation
    /// interval, 1m by default).
    pub default_eval_interval: i64,
    /// Prometheus's `promql-delayed-name-removal` feature: `__name__` is removed at the end of
    /// the query instead of by each function and operator (Prometheus's test scripts assume it).
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_eval_interval: 60 * 1000,
            delayed_name_removal: false,
        }
    }
}

/// Per-query overrides of the engine options.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    pub lookback_delta: Option<i64>,
    pub timeout: Option<Duration>,
    /// Set by the caller to stop the query; checked where the timeout is, so a cancelled query
    /// ends with [`crate::Error::Canceled`] at its next step.
    pub cancel: Option<CancelFlag>,
}

/// A shared flag that cancels a running query when set.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<std::sync::atomic::AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the query to stop.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A PromQL engine.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    pub opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// Parses and evaluates `query` at time `t` (ms).
    pub fn query_instant(&self, q: &dyn Queryable, query: &str, t: i64) -> Result<QueryResult> {
        let expr = parser::parse(query)?;
        self.exec(q, &expr, t, t, 0, &QueryOptions::default())
    }

    /// Parses and evaluates `query` from `start` to `end` (inclusive) every `step` ms.
    pub fn query_range(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult> {
        let expr = parser::parse(query)?;
        self.exec(q, &expr, start, end, step, &QueryOptions::default())
    }

    /// Evaluates a parsed expression. `step == 0` means an instant query at `start` (which must
    /// equal `end`). Range queries of expressions that are not instant vectors or scalars are
    /// errors, as in Prometheus.
    pub fn exec(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        qo: &QueryOptions,
    ) -> Result<QueryResult> {
        let mut opts = self.opts.clone();
        if let Some(l) = qo.lookback_delta {
            opts.lookback_delta = l;
        }
        if let Some(t) = qo.timeout {
            opts.timeout = t;
        }
        eval::run(q, Arc::new(opts), expr, start, end, step, qo.cancel.clone())
    }
}

#[cfg(test)]
mod tests;
