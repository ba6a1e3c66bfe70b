//! Query results: scalars, strings, instant vectors and matrices, with the warnings and info
//! annotations Prometheus attaches to a response.

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_tsdb::Labels;

use crate::parser::PosRange;

/// One sample of an instant vector. `t` is the evaluation time in results; inside the engine
/// vector-selector samples carry their own timestamp (needed by `timestamp()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub metric: Labels,
    pub t: i64,
    pub f: f64,
}

/// A series of a matrix: labels and `(timestamp ms, value)` points in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub metric: Labels,
    pub floats: Vec<(i64, f64)>,
}

/// The result of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name of the result type (`scalar`, `string`, `vector`, `matrix`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Warnings and infos, deduplicated, in a stable order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    pub warnings: BTreeSet<String>,
    pub infos: BTreeSet<String>,
}

/// Separates an annotation's text from the byte offset of the expression it refers to.
const POS_MARK: char = '\u{1}';

impl Annotations {
    /// A warning without a position.
    pub fn warn(&mut self, s: impl Into<String>) {
        self.warnings.insert(s.into());
    }
    /// An info annotation without a position.
    pub fn info(&mut self, s: impl Into<String>) {
        self.infos.insert(s.into());
    }
    /// A warning about the expression at `pos`; rendered as `<text> (<line>:<col>)`.
    pub fn warn_at(&mut self, s: impl Into<String>, pos: PosRange) {
        self.warnings
            .insert(format!("{}{POS_MARK}{}", s.into(), pos.start));
    }
    /// An info annotation about the expression at `pos`.
    pub fn info_at(&mut self, s: impl Into<String>, pos: PosRange) {
        self.infos
            .insert(format!("{}{POS_MARK}{}", s.into(), pos.start));
    }

    fn render_set(set: &BTreeSet<String>, query: &str) -> Vec<String> {
        let mut out: Vec<String> = set
            .iter()
            .map(|s| match s.split_once(POS_MARK) {
                Some((msg, off)) => {
                    let start = off.parse().unwrap_or(0);
                    let loc = PosRange { start, end: start }.start_pos_input(query);
                    format!("{msg} ({loc})")
                }
                None => s.clone(),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The warnings as Prometheus prints them, positions resolved against the query text.
    pub fn warnings(&self, query: &str) -> Vec<String> {
        Self::render_set(&self.warnings, query)
    }

    /// The info annotations as Prometheus prints them.
    pub fn infos(&self, query: &str) -> Vec<String> {
        Self::render_set(&self.infos, query)
    }
}

/// A query's value plus annotations and statistics.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
    /// Samples loaded from storage.
    pub total_samples: usize,
}

/// A window of a loaded series: `data[lo..hi]`, shared without copying.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub metric: Labels,
    pub data: Arc<Vec<(i64, f64)>>,
    pub lo: usize,
    pub hi: usize,
}

impl Window {
    pub fn samples(&self) -> &[(i64, f64)] {
        &self.data[self.lo..self.hi]
    }
}
