//! The evaluator proper: evaluation contexts (the list of timestamps being evaluated), selector
//! loading with forward-only cursors, subqueries, and the per-step dispatch of every node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use strata_tsdb::storage::{is_stale_nan, Queryable, SampleIterator, SelectHints};
use strata_tsdb::Labels;

use super::value::{Annotations, QueryResult, Sample, Series, Value, Window};
use super::{aggregate, binary, functions, EngineOptions};
use crate::error::{Error, Result};
use crate::parser::{
    AtModifier, Duration, Expr, MatrixSelector, SubqueryExpr, UnaryOp, VectorSelector,
};

/// The value of a node at one step.
#[derive(Clone, Debug)]
pub(crate) enum IVal {
    Scalar(f64),
    Str(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Window>),
}

impl IVal {
    pub fn type_name(&self) -> &'static str {
        match self {
            IVal::Scalar(_) => "scalar",
            IVal::Str(_) => "string",
            IVal::Vector(_) => "instant vector",
            IVal::Matrix(_) => "range vector",
        }
    }
}

/// The timestamps a (sub)expression is evaluated at.
pub(crate) struct Ctx {
    pub id: usize,
    pub ts: Vec<i64>,
    /// The step of this evaluation (0 for an instant query).
    #[allow(dead_code)]
    pub step: i64,
}

/// One loaded series with its cursors.
pub(crate) struct Loaded {
    pub metric: Labels,
    pub data: Arc<Vec<(i64, f64)>>,
    /// Vector lookups: number of samples with t <= the last reference time.
    cur: usize,
    /// Range windows: `data[lo..hi]` is the current window.
    lo: usize,
    hi: usize,
    last_ref: i64,
}

impl Loaded {
    fn new(metric: Labels, data: Vec<(i64, f64)>) -> Self {
        Self {
            metric,
            data: Arc::new(data),
            cur: 0,
            lo: 0,
            hi: 0,
            last_ref: i64::MIN,
        }
    }

    fn rewind_if_needed(&mut self, r: i64) {
        if r < self.last_ref {
            self.cur = 0;
            self.lo = 0;
            self.hi = 0;
        }
        self.last_ref = r;
    }

    /// The newest sample at or before `r`, if any.
    fn at_or_before(&mut self, r: i64) -> Option<(i64, f64)> {
        self.rewind_if_needed(r);
        let d = &self.data;
        while self.cur < d.len() && d[self.cur].0 <= r {
            self.cur += 1;
        }
        if self.cur == 0 {
            None
        } else {
            Some(d[self.cur - 1])
        }
    }

    /// Moves the window to `(r - range, r]`.
    pub(crate) fn window(&mut self, r: i64, range: i64) -> (usize, usize) {
        self.rewind_if_needed(r);
        let d = &self.data;
        let lower = r.saturating_sub(range);
        while self.lo < d.len() && d[self.lo].0 <= lower {
            self.lo += 1;
        }
        if self.hi < self.lo {
            self.hi = self.lo;
        }
        while self.hi < d.len() && d[self.hi].0 <= r {
            self.hi += 1;
        }
        (self.lo, self.hi)
    }
}

/// The result of an expression over all steps of a context, computed series by series
/// (see [`functions::call_all_steps`]) and served step by step.
#[derive(Default)]
pub(crate) struct Memo {
    /// Output labels and `(step index, value)` points of each series, in load order.
    series: Vec<(Labels, Vec<(u32, f64)>)>,
    /// Two series have the same output labels (then every step is checked for duplicates).
    maybe_dup: bool,
    /// Per-series position of the next point to serve, and the last step served.
    cursors: Vec<usize>,
    last_step: Option<usize>,
}

impl Memo {
    pub(crate) fn push(&mut self, metric: Labels, points: Vec<(u32, f64)>) {
        self.series.push((metric, points));
    }

    /// Computes the duplicate flag once all series are in.
    pub(crate) fn finish(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.series.len());
        self.maybe_dup = !self.series.iter().all(|s| seen.insert(&s.0));
        self.cursors = vec![0; self.series.len()];
    }

    /// The samples at step `i` (stamped with time `t`).
    fn at_step(&mut self, i: usize, t: i64) -> Vec<Sample> {
        if self.last_step.is_some_and(|l| i <= l) {
            for (c, s) in self.cursors.iter_mut().zip(&self.series) {
                *c = s.1.partition_point(|p| (p.0 as usize) < i);
            }
        }
        self.last_step = Some(i);
        let mut out = Vec::with_capacity(self.series.len());
        for (c, (metric, points)) in self.cursors.iter_mut().zip(&self.series) {
            if let Some(&(k, f)) = points.get(*c) {
                if k as usize == i {
                    *c += 1;
                    out.push(Sample {
                        metric: metric.clone(),
                        t,
                        f,
                    });
                }
            }
        }
        out
    }

    /// The whole result as range-query series, in the order the per-step evaluation would
    /// have first produced them.
    fn into_series(self, ts: &[i64]) -> Vec<Series> {
        let mut series = self.series;
        series.sort_by_key(|s| s.1.first().map_or(u32::MAX, |p| p.0));
        series
            .into_iter()
            .filter(|s| !s.1.is_empty())
            .map(|(metric, points)| Series {
                metric,
                floats: points
                    .into_iter()
                    .map(|(k, f)| (ts[k as usize], f))
                    .collect(),
            })
            .collect()
    }
}

/// Evaluation state of one query.
pub(crate) struct Evaluator<'a> {
    queryable: &'a dyn Queryable,
    pub opts: Arc<EngineOptions>,
    /// The query's own start and end (for `@ start()` / `@ end()` and `range()`).
    pub query_start: i64,
    pub query_end: i64,
    /// The top-level step (for `step()`).
    pub query_step: i64,
    deadline: Instant,
    cancel: Option<super::CancelFlag>,
    pub samples_loaded: usize,
    pub annotations: Annotations,
    vectors: HashMap<(usize, usize), Vec<Loaded>>,
    matrices: HashMap<(usize, usize), Vec<Loaded>>,
    next_ctx: usize,
    /// Series-at-a-time results of calls, by (call address, context id); `None` when the call
    /// does not qualify.
    memos: HashMap<(usize, usize), Option<Memo>>,
    /// Per-series group caches of aggregation nodes, by node address.
    pub agg_caches: HashMap<usize, aggregate::AggCache>,
    /// Per-series matching caches of binary operator nodes, by node address.
    pub bin_caches: HashMap<usize, binary::BinCache>,
    /// Per-query state of the functions (annotations merged across steps).
    pub fn_state: functions::FnState,
    /// The function each selector feeds (see [`super::hints`]), passed to storage.
    pub select_funcs: HashMap<usize, &'static str>,
}

/// Runs a query (see [`super::Engine::exec`]).
pub(crate) fn run(
    q: &dyn Queryable,
    opts: Arc<EngineOptions>,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    cancel: Option<super::CancelFlag>,
) -> Result<QueryResult> {
    let deadline = Instant::now() + opts.timeout;
    let prev_mode = set_delayed_name_removal(opts.delayed_name_removal);
    let res = run_inner(q, opts, expr, (start, end, step), deadline, cancel);
    set_delayed_name_removal(prev_mode);
    res
}

fn run_inner(
    q: &dyn Queryable,
    opts: Arc<EngineOptions>,
    expr: &Expr,
    (start, end, step): (i64, i64, i64),
    deadline: Instant,
    cancel: Option<super::CancelFlag>,
) -> Result<QueryResult> {
    let mut ev = Evaluator {
        queryable: q,
        opts,
        query_start: start,
        query_end: end,
        query_step: step,
        deadline,
        cancel,
        samples_loaded: 0,
        annotations: Annotations::default(),
        vectors: HashMap::new(),
        matrices: HashMap::new(),
        next_ctx: 0,
        memos: HashMap::new(),
        agg_caches: HashMap::new(),
        bin_caches: HashMap::new(),
        fn_state: functions::FnState::default(),
        select_funcs: super::hints::selector_funcs(expr),
    };
    let value = if step == 0 {
        let ctx = ev.new_ctx(vec![start], 0);
        match ev.eval_at(expr, &ctx, 0)? {
            IVal::Scalar(v) => Value::Scalar { t: start, v },
            IVal::Str(v) => Value::String { t: start, v },
            IVal::Vector(v) => {
                let v: Vec<Sample> = v
                    .into_iter()
                    .map(|s| Sample {
                        metric: finish_labels(s.metric),
                        t: start,
                        f: s.f,
                    })
                    .collect();
                check_unique(&IVal::Vector(v.clone()))?;
                Value::Vector(v)
            }
            IVal::Matrix(m) => {
                let ext = match expr.unparen() {
                    Expr::MatrixSelector(ms) if ms.vector.anchored || ms.vector.smoothed => {
                        let range = ev.duration_ms(&ms.range, false)?;
                        let r = ev.ref_time(ms.vector.at, ms.vector.offset.as_ref(), start)?;
                        Some((r - range, r, ms.vector.smoothed))
                    }
                    _ => None,
                };
                Value::Matrix(
                    m.into_iter()
                        .filter_map(|w| {
                            let floats = match ext {
                                Some((mint, maxt, smoothed)) => {
                                    extend_floats(w.samples(), mint, maxt, smoothed)
                                }
                                None => w.samples().to_vec(),
                            };
                            (!floats.is_empty()).then(|| Series {
                                floats,
                                metric: finish_labels(w.metric),
                            })
                        })
                        .collect(),
                )
            }
        }
    } else {
        if step < 0 || end < start {
            return Err(Error::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        let vt = expr.value_type();
        if !matches!(
            vt,
            crate::parser::ValueType::Scalar | crate::parser::ValueType::Vector
        ) {
            return Err(Error::Eval(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                vt.documented()
            )));
        }
        let n = ((end - start) / step) as usize + 1;
        let ts: Vec<i64> = (0..n).map(|i| start + i as i64 * step).collect();
        let ctx = ev.new_ctx(ts, step);
        let mut m = ev.eval_range(expr, &ctx)?;
        if opts_delayed(&ev) {
            m = merge_after_name_removal(m)?;
        }
        m.sort_by(|a, b| a.metric.cmp(&b.metric));
        Value::Matrix(m)
    };
    functions::finish(&mut ev);
    Ok(QueryResult {
        value,
        annotations: ev.annotations,
        total_samples: ev.samples_loaded,
    })
}

impl<'a> Evaluator<'a> {
    pub fn new_ctx(&mut self, ts: Vec<i64>, step: i64) -> Ctx {
        self.next_ctx += 1;
        Ctx {
            id: self.next_ctx,
            ts,
            step,
        }
    }

    /// Fails the query when its timeout has passed or its caller cancelled it.
    pub fn check_deadline(&self) -> Result<()> {
        if self.cancel.as_ref().is_some_and(|c| c.is_canceled()) {
            return Err(Error::Canceled(
                "query was canceled in query execution".into(),
            ));
        }
        if Instant::now() > self.deadline {
            return Err(Error::Timeout("query timed out in query execution".into()));
        }
        Ok(())
    }

    fn add_samples(&mut self, n: usize) -> Result<()> {
        self.samples_loaded += n;
        if self.samples_loaded > self.opts.max_samples {
            return Err(Error::TooManySamples(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Resolves a duration (constant or duration expression) in ms.
    pub fn duration_ms(&self, d: &Duration, allow_negative: bool) -> Result<i64> {
        d.resolve_ms(
            self.query_step,
            self.query_end - self.query_start,
            allow_negative,
        )
        .map_err(Error::Eval)
    }

    fn at_base(&self, at: Option<AtModifier>, t: i64) -> i64 {
        match at {
            Some(AtModifier::Timestamp(ts)) => ts,
            Some(AtModifier::Start) => self.query_start,
            Some(AtModifier::End) => self.query_end,
            None => t,
        }
    }

    /// The reference time of a selector with `@`/`offset` at evaluation time `t`.
    pub(crate) fn ref_time(
        &self,
        at: Option<AtModifier>,
        offset: Option<&Duration>,
        t: i64,
    ) -> Result<i64> {
        let off = match offset {
            Some(d) => self.duration_ms(d, true)?,
            None => 0,
        };
        Ok(self.at_base(at, t) - off)
    }

    /// Loads the series of `vs` with samples in `[mint, maxt]`.
    fn load(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        range: i64,
        drop_stale: bool,
    ) -> Result<Vec<Loaded>> {
        let q = self.queryable.querier(mint, maxt)?;
        let hints = SelectHints {
            start: mint,
            end: maxt,
            step: self.query_step,
            func: self
                .select_funcs
                .get(&super::hints::key(vs))
                .map(|f| f.to_string()),
            range,
        };
        let mut out = Vec::new();
        let mut total = 0;
        for s in q.select(true, Some(&hints), &vs.matchers) {
            let s = s?;
            let mut it = s.iterator();
            let mut data = Vec::new();
            while it.next() {
                let (t, v) = it.at();
                if drop_stale && is_stale_nan(v) {
                    continue;
                }
                data.push((t, v));
            }
            if let Some(e) = it.err() {
                return Err(Error::Eval(format!("reading series {}: {e}", s.labels())));
            }
            if data.is_empty() {
                continue;
            }
            total += data.len();
            out.push(Loaded::new(s.labels().clone(), data));
        }
        self.add_samples(total)?;
        self.check_deadline()?;
        Ok(out)
    }

    /// The span of reference times of a selector over the context.
    fn ref_span(
        &self,
        at: Option<AtModifier>,
        offset: Option<&Duration>,
        ctx: &Ctx,
    ) -> Result<(i64, i64)> {
        let first = *ctx.ts.first().unwrap_or(&0);
        let last = *ctx.ts.last().unwrap_or(&0);
        Ok((
            self.ref_time(at, offset, first)?,
            self.ref_time(at, offset, last)?,
        ))
    }

    fn vector_selector(&mut self, vs: &VectorSelector, ctx: &Ctx, i: usize) -> Result<Vec<Sample>> {
        if vs.smoothed {
            return self.smoothed_vector_selector(vs, ctx, i);
        }
        let key = (vs as *const VectorSelector as usize, ctx.id);
        let lookback = self.opts.lookback_delta;
        if !self.vectors.contains_key(&key) {
            let (lo, hi) = self.ref_span(vs.at, vs.offset.as_ref(), ctx)?;
            let loaded = self.load(vs, lo.saturating_sub(lookback) + 1, hi, 0, false)?;
            self.vectors.insert(key, loaded);
        }
        let r = self.ref_time(vs.at, vs.offset.as_ref(), ctx.ts[i])?;
        let series = self
            .vectors
            .get_mut(&key)
            .ok_or(Error::Eval("internal: selector not loaded".into()))?;
        let mut out = Vec::with_capacity(series.len());
        for s in series.iter_mut() {
            if let Some((t, v)) = s.at_or_before(r) {
                if t > r - lookback && !is_stale_nan(v) {
                    out.push(Sample {
                        metric: s.metric.clone(),
                        t,
                        f: v,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A `smoothed` vector selector: the value at the reference time interpolated linearly
    /// between the samples around it (within the lookback delta on either side), or the last
    /// value when there is none after it.
    fn smoothed_vector_selector(
        &mut self,
        vs: &VectorSelector,
        ctx: &Ctx,
        i: usize,
    ) -> Result<Vec<Sample>> {
        let key = (vs as *const VectorSelector as usize, ctx.id);
        let lb = self.opts.lookback_delta;
        if !self.matrices.contains_key(&key) {
            let (lo, hi) = self.ref_span(vs.at, vs.offset.as_ref(), ctx)?;
            let loaded = self.load(
                vs,
                lo.saturating_sub(lb) + 1,
                hi.saturating_add(lb),
                0,
                true,
            )?;
            self.matrices.insert(key, loaded);
        }
        let r = self.ref_time(vs.at, vs.offset.as_ref(), ctx.ts[i])?;
        let series = self
            .matrices
            .get_mut(&key)
            .ok_or(Error::Eval("internal: selector not loaded".into()))?;
        let mut out = Vec::new();
        for s in series.iter_mut() {
            let (lo, hi) = s.window(r.saturating_add(lb), 2 * lb);
            let w = &s.data[lo..hi];
            let j = w.partition_point(|p| p.0 < r);
            let v = if j < w.len() && w[j].0 == r {
                w[j].1
            } else if j > 0 && j < w.len() {
                interpolate(w[j - 1], w[j], r)
            } else if j > 0 {
                w[j - 1].1
            } else {
                continue;
            };
            out.push(Sample {
                metric: s.metric.clone(),
                t: r,
                f: v,
            });
        }
        Ok(out)
    }

    /// A range selector's windows at step `i`. `anchored` windows reach one lookback delta
    /// further back, `smoothed` ones also one further ahead: the functions allowed on them
    /// (rate, increase, delta, changes, resets) pick or interpolate the boundary values.
    fn matrix_selector(&mut self, ms: &MatrixSelector, ctx: &Ctx, i: usize) -> Result<Vec<Window>> {
        let (key, range, back, ahead) = self.load_matrix(ms, ctx)?;
        let vs = &ms.vector;
        let r = self.ref_time(vs.at, vs.offset.as_ref(), ctx.ts[i])?;
        self.windows(key, r.saturating_add(ahead), range + back + ahead)
    }

    /// Loads a range selector's series for all of `ctx` (once): the map key, the range, and
    /// how far windows reach back and ahead beyond it.
    fn load_matrix(
        &mut self,
        ms: &MatrixSelector,
        ctx: &Ctx,
    ) -> Result<((usize, usize), i64, i64, i64)> {
        let vs = &ms.vector;
        let range = self.duration_ms(&ms.range, false)?;
        let lb = self.opts.lookback_delta;
        let (back, ahead) = match (vs.anchored, vs.smoothed) {
            (true, _) => (lb, 0),
            (_, true) => (lb, lb),
            _ => (0, 0),
        };
        let key = (ms as *const MatrixSelector as usize, ctx.id);
        if !self.matrices.contains_key(&key) {
            let (lo, hi) = self.ref_span(vs.at, vs.offset.as_ref(), ctx)?;
            let loaded = self.load(
                vs,
                lo.saturating_sub(range + back) + 1,
                hi.saturating_add(ahead),
                range,
                true,
            )?;
            self.matrices.insert(key, loaded);
        }
        Ok((key, range, back, ahead))
    }

    /// Loads a range selector for all of `ctx` and hands its series over (for series-at-a-time
    /// evaluation), with the selector's reference time at every step.
    pub(crate) fn load_matrix_all_steps(
        &mut self,
        ms: &MatrixSelector,
        ctx: &Ctx,
    ) -> Result<(Vec<Loaded>, Vec<i64>)> {
        let (key, ..) = self.load_matrix(ms, ctx)?;
        let vs = &ms.vector;
        let refs = ctx
            .ts
            .iter()
            .map(|&t| self.ref_time(vs.at, vs.offset.as_ref(), t))
            .collect::<Result<Vec<_>>>()?;
        let mut loaded = self.matrices.remove(&key).unwrap_or_default();
        for s in &mut loaded {
            s.cur = 0;
            s.lo = 0;
            s.hi = 0;
            s.last_ref = i64::MIN;
        }
        Ok((loaded, refs))
    }

    /// The series-at-a-time result of call `c` over `ctx`, if it qualifies (computed once).
    fn memo_for(&mut self, c: &crate::parser::Call, ctx: &Ctx) -> Result<Option<&mut Memo>> {
        let key = (c as *const crate::parser::Call as usize, ctx.id);
        if !self.memos.contains_key(&key) {
            let m = functions::call_all_steps(self, c, ctx)?;
            self.memos.insert(key, m);
        }
        Ok(self.memos.get_mut(&key).and_then(|m| m.as_mut()))
    }

    /// The non-empty windows `(end - range, end]` of the series loaded under `key`.
    fn windows(&mut self, key: (usize, usize), end: i64, range: i64) -> Result<Vec<Window>> {
        let series = self
            .matrices
            .get_mut(&key)
            .ok_or(Error::Eval("internal: range data not loaded".into()))?;
        let mut out = Vec::new();
        for s in series.iter_mut() {
            let (lo, hi) = s.window(end, range);
            if hi > lo {
                out.push(Window {
                    metric: s.metric.clone(),
                    data: s.data.clone(),
                    lo,
                    hi,
                });
            }
        }
        Ok(out)
    }

    fn subquery(&mut self, sq: &SubqueryExpr, ctx: &Ctx, i: usize) -> Result<Vec<Window>> {
        let range = self.duration_ms(&sq.range, false)?;
        let key = (sq as *const SubqueryExpr as usize, ctx.id);
        if !self.matrices.contains_key(&key) {
            let step = match &sq.step {
                Some(s) => self.duration_ms(s, false)?,
                None => self.opts.default_eval_interval,
            };
            if step <= 0 {
                return Err(Error::Eval("subquery step must be greater than 0".into()));
            }
            let (lo, hi) = self.ref_span(sq.at, sq.offset.as_ref(), ctx)?;
            // First step-aligned timestamp after lo - range (Go's truncating division).
            let from = lo - range;
            let mut start = step * (from / step);
            if start <= from {
                start += step;
            }
            let mut ts = Vec::new();
            let mut t = start;
            while t <= hi {
                ts.push(t);
                t += step;
            }
            let sub = self.new_ctx(ts, step);
            let series = self.eval_range(&sq.expr, &sub)?;
            let loaded = series
                .into_iter()
                .map(|s| Loaded::new(s.metric, s.floats))
                .collect();
            self.matrices.insert(key, loaded);
        }
        let r = self.ref_time(sq.at, sq.offset.as_ref(), ctx.ts[i])?;
        self.windows(key, r, range)
    }

    /// Evaluates `e` at step `i` of `ctx`.
    pub fn eval_at(&mut self, e: &Expr, ctx: &Ctx, i: usize) -> Result<IVal> {
        match e {
            Expr::NumberLiteral { val, .. } => Ok(IVal::Scalar(*val)),
            Expr::StringLiteral { val, .. } => Ok(IVal::Str(val.clone())),
            Expr::Paren { expr, .. } => self.eval_at(expr, ctx, i),
            Expr::Unary { op, expr, .. } => {
                let v = self.eval_at(expr, ctx, i)?;
                match (op, v) {
                    (UnaryOp::Pos, v) => Ok(v),
                    (UnaryOp::Neg, IVal::Scalar(f)) => Ok(IVal::Scalar(-f)),
                    (UnaryOp::Neg, IVal::Vector(v)) => Ok(IVal::Vector(
                        v.into_iter()
                            .map(|s| Sample {
                                metric: drop_name(&s.metric),
                                t: s.t,
                                f: -s.f,
                            })
                            .collect(),
                    )),
                    (_, v) => Err(Error::Eval(format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                        v.type_name()
                    ))),
                }
            }
            Expr::VectorSelector(vs) => Ok(IVal::Vector(self.vector_selector(vs, ctx, i)?)),
            Expr::MatrixSelector(ms) => Ok(IVal::Matrix(self.matrix_selector(ms, ctx, i)?)),
            Expr::Subquery(sq) => Ok(IVal::Matrix(self.subquery(sq, ctx, i)?)),
            Expr::Call(c) => {
                if let Some(m) = self.memo_for(c, ctx)? {
                    let dup = m.maybe_dup;
                    let v = IVal::Vector(m.at_step(i, ctx.ts[i]));
                    if dup {
                        check_unique(&v)?;
                    }
                    return Ok(v);
                }
                let v = functions::call(self, c, ctx, i)?;
                check_unique(&v)?;
                Ok(v)
            }
            Expr::Aggregate(a) => aggregate::eval(self, a, ctx, i),
            Expr::Binary(b) => binary::eval(self, b, ctx, i),
        }
    }

    /// Evaluates `e` at every timestamp of `ctx` into series (a scalar becomes one series with
    /// no labels).
    pub fn eval_range(&mut self, e: &Expr, ctx: &Ctx) -> Result<Vec<Series>> {
        if let Expr::Call(c) = e.unparen() {
            if self.memo_for(c, ctx)?.is_some_and(|m| !m.maybe_dup) {
                let key = (c as *const crate::parser::Call as usize, ctx.id);
                if let Some(Some(m)) = self.memos.remove(&key) {
                    self.check_deadline()?;
                    let out = m.into_series(&ctx.ts);
                    self.add_samples(out.iter().map(|s| s.floats.len()).sum())?;
                    return Ok(out);
                }
            }
        }
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for i in 0..ctx.ts.len() {
            self.check_deadline()?;
            let t = ctx.ts[i];
            match self.eval_at(e, ctx, i)? {
                IVal::Scalar(v) => {
                    if out.is_empty() {
                        out.push(Series {
                            metric: Labels::empty(),
                            floats: Vec::with_capacity(ctx.ts.len()),
                        });
                    }
                    out[0].floats.push((t, v));
                }
                IVal::Vector(v) => {
                    let mut points = 0;
                    for s in v {
                        let idx = match index.get(&s.metric) {
                            Some(&k) => k,
                            None => {
                                index.insert(s.metric.clone(), out.len());
                                out.push(Series {
                                    metric: s.metric,
                                    floats: Vec::new(),
                                });
                                out.len() - 1
                            }
                        };
                        let f = &mut out[idx].floats;
                        if f.last().is_some_and(|p| p.0 == t) {
                            return Err(Error::Eval(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        f.push((t, s.f));
                        points += 1;
                    }
                    self.add_samples(points)?;
                }
                other => {
                    return Err(Error::Eval(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Linear interpolation between two points at time `t`.
pub(crate) fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64) -> f64 {
    p1.1 + (p2.1 - p1.1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// Prometheus's `extendFloats`: the points of an anchored/smoothed window restricted to
/// `(mint, maxt)` plus synthetic points at both boundaries (picked, or interpolated when smoothed).
pub(crate) fn extend_floats(
    floats: &[(i64, f64)],
    mint: i64,
    maxt: i64,
    smoothed: bool,
) -> Vec<(i64, f64)> {
    if floats.is_empty() {
        return Vec::new();
    }
    let mut last = floats.len() - 1;
    let first = floats[..last]
        .partition_point(|p| p.0 <= mint)
        .saturating_sub(1);
    if smoothed {
        last = floats[..last].partition_point(|p| p.0 < maxt);
    }
    if floats[last].0 <= mint {
        return Vec::new();
    }
    let left = if smoothed && floats[first].0 < mint {
        interpolate(floats[first], floats[first + 1], mint)
    } else {
        floats[first].1
    };
    let right = if smoothed && last > 0 && floats[last].0 > maxt {
        interpolate(floats[last - 1], floats[last], maxt)
    } else {
        floats[last].1
    };
    let mut fi = first as isize;
    let mut li = last as isize;
    if floats[first].0 <= mint {
        fi += 1;
    }
    if floats[last].0 >= maxt {
        li -= 1;
    }
    let mut out = Vec::with_capacity((li - fi + 3).max(2) as usize);
    out.push((mint, left));
    if li >= fi {
        out.extend_from_slice(&floats[fi as usize..=li as usize]);
    }
    out.push((maxt, right));
    out
}

/// With delayed name removal, a dropped metric name moves to this label until the end of the
/// query, so that intermediate results keep series apart exactly as Prometheus's `DropName`
/// flag does; it is removed before results leave the engine.
pub(crate) const DROPPED_NAME: &str = "__strata_dropped_name__";
/// Prometheus 3's type and unit metadata labels.
pub(crate) const TYPE_LABEL: &str = "__type__";
pub(crate) const UNIT_LABEL: &str = "__unit__";

thread_local! {
    static DELAYED_NAME_REMOVAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sets the name-removal mode for queries evaluated on this thread; returns the previous mode.
pub(crate) fn set_delayed_name_removal(on: bool) -> bool {
    DELAYED_NAME_REMOVAL.with(|c| c.replace(on))
}

/// The labels with the metric name dropped (or, with delayed name removal, marked for dropping).
pub(crate) fn drop_name(l: &Labels) -> Labels {
    let Some(name) = l.get(strata_tsdb::labels::METRIC_NAME) else {
        return l.clone();
    };
    // The type and unit labels describe the metric the name names; they go with it (with
    // delayed removal, at the end of the query: until then they still take part in matching).
    if DELAYED_NAME_REMOVAL.with(|c| c.get()) {
        let mut b = l.builder();
        b.del(strata_tsdb::labels::METRIC_NAME);
        b.set(DROPPED_NAME, name);
        b.build()
    } else {
        l.without(&[strata_tsdb::labels::METRIC_NAME, TYPE_LABEL, UNIT_LABEL])
    }
}

/// Removes the delayed-removal marker (the final step of delayed name removal).
pub(crate) fn finish_labels(l: Labels) -> Labels {
    if l.has(DROPPED_NAME) {
        l.without(&[DROPPED_NAME, TYPE_LABEL, UNIT_LABEL])
    } else {
        l
    }
}

/// Delayed name removal's last step for a range result: series that differed only by their
/// (now removed) names are merged; two points at the same time are an error.
fn merge_after_name_removal(m: Vec<Series>) -> Result<Vec<Series>> {
    let mut out: Vec<Series> = Vec::with_capacity(m.len());
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in m {
        let metric = finish_labels(s.metric);
        match index.get(&metric) {
            Some(&i) => {
                let f = &mut out[i].floats;
                f.extend(s.floats);
                f.sort_by_key(|p| p.0);
                if f.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(Error::Eval(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
            }
            None => {
                index.insert(metric.clone(), out.len());
                out.push(Series {
                    metric,
                    floats: s.floats,
                });
            }
        }
    }
    Ok(out)
}

fn opts_delayed(ev: &Evaluator) -> bool {
    ev.opts.delayed_name_removal
}

/// Prometheus's check that a vector never holds two samples with the same labels.
pub(crate) fn check_unique(v: &IVal) -> Result<()> {
    if let IVal::Vector(v) = v {
        if v.len() > 1 {
            let mut seen = std::collections::HashSet::with_capacity(v.len());
            for s in v {
                if !seen.insert(&s.metric) {
                    return Err(Error::Eval(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}
