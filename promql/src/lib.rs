//! PromQL for Strata: a nom parser producing a typed AST, the evaluator (instant and range
//! queries with Prometheus 3 semantics, every function and aggregation), and the runner for
//! Prometheus's `.test` scripts. The engine reads storage only through
//! [`strata_tsdb::storage::Queryable`].

pub mod engine;
pub mod error;
pub mod parser;
pub mod promqltest;

pub use engine::{Engine, EngineOptions};
pub use error::{Error, ParseError, Result};
