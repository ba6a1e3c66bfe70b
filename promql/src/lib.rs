//! PromQL for Strata: a nom parser producing a typed AST, the evaluator (instant and range
//! queries with Prometheus 3 semantics, every function and aggregation), and the runner for
//! Prometheus's `.test` scripts. The engine reads storage only through
//! [`strata_tsdb::storage::Queryable`].
pub mod promqltest;
