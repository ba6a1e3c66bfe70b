//! Turning one fetched scrape into appends (Prometheus's `scrapeLoopAppender.append`,
//! `report`, `reportStale` and the outer part of `scrapeAndReport`): parse, label, limit,
//! append by cached reference, staleness markers for series that disappeared, the synthetic
//! report series, then commit — or roll everything back when the scrape fails, in which case
//! only the staleness markers and the report (with `up` 0) are committed.
//!
//! All of it is synchronous; the loop runs it on a blocking thread.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use strata_tsdb::storage::{is_stale_nan, stale_nan, Appender, SeriesRef};
use strata_tsdb::{Label, Labels};

use super::cache::{series_key, ScrapeCache, REPORT_SERIES};
use super::labels::{check_labels, mutate_sample_labels, public_target_labels, report_labels};
use super::{Appendable, ScrapeTarget};
use crate::error::{Error, Result};
use crate::scrape_format::parser_for_with_fallback;
use crate::textparse::Entry;

/// Samples more than this far in the future are out of bounds (Prometheus's `maxAheadTime`).
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// What a loop needs besides its cache: the target and the label sets derived from it once.
pub(crate) struct LoopConfig {
    pub target: ScrapeTarget,
    pub sample_target_labels: Vec<Label>,
    pub report_labels: Vec<Labels>,
}

impl LoopConfig {
    pub fn new(target: ScrapeTarget) -> Self {
        let sample_target_labels = public_target_labels(&target.labels);
        let report_labels = report_labels(&sample_target_labels);
        Self {
            target,
            sample_target_labels,
            report_labels,
        }
    }
}

/// The counts reported in the synthetic series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Samples in the exposition (`scrape_samples_scraped`).
    pub total: usize,
    /// Samples left after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub added: usize,
    /// Series new to the cache (`scrape_series_added`).
    pub series_added: usize,
}

/// Per-sample append errors that are counted and skipped rather than failing the scrape.
#[derive(Default)]
struct AppendErrors {
    out_of_order: usize,
    duplicates: usize,
    out_of_bounds: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `append_ref`, falling back to the labels when the storage no longer knows the reference
/// (it dropped the series in the meantime).
fn append_cached(
    app: &mut dyn Appender,
    r: SeriesRef,
    labels: &Labels,
    t: i64,
    v: f64,
) -> strata_tsdb::Result<SeriesRef> {
    match app.append_ref(r, t, v) {
        Err(strata_tsdb::Error::UnknownSeriesRef(_)) => app.append(labels, t, v),
        other => other,
    }
}

/// Appends staleness markers at `t` for the series of the previous scrape that are not in the
/// current one. Out-of-order and duplicate markers (the series came back through another
/// loop) are ignored.
fn update_stale_markers(cache: &mut ScrapeCache, app: &mut dyn Appender, t: i64) -> Result<()> {
    for (r, labels) in cache.stale() {
        match append_cached(app, r, &labels, t, stale_nan()) {
            Ok(_)
            | Err(strata_tsdb::Error::OutOfOrderSample)
            | Err(strata_tsdb::Error::DuplicateSampleForTimestamp)
            | Err(strata_tsdb::Error::OutOfBounds) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An empty (or failed) scrape: staleness markers for everything of the previous scrape, and
/// the iteration ends without flushing the cache.
pub(crate) fn append_empty(cache: &mut ScrapeCache, app: &mut dyn Appender, t: i64) -> Result<()> {
    let res = update_stale_markers(cache, app, t);
    cache.iter_done(false);
    res
}

/// Appends one scraped body at default timestamp `t`. On error nothing must be committed:
/// the caller rolls back. The counts are meaningful either way.
pub(crate) fn append_scrape(
    cfg: &LoopConfig,
    cache: &mut ScrapeCache,
    app: &mut dyn Appender,
    body: &[u8],
    content_type: Option<&str>,
    t: i64,
) -> (Counts, Result<()>) {
    let mut counts = Counts::default();
    let res = append_body(cfg, cache, app, body, content_type, t, &mut counts);
    if res.is_ok() {
        cache.iter_done(true);
    }
    (counts, res)
}

fn append_body(
    cfg: &LoopConfig,
    cache: &mut ScrapeCache,
    app: &mut dyn Appender,
    body: &[u8],
    content_type: Option<&str>,
    default_t: i64,
    counts: &mut Counts,
) -> Result<()> {
    let p = &*cfg.target.params;
    let (parser, warning) = parser_for_with_fallback(content_type, body, p.fallback_protocol)?;
    if let Some(w) = warning {
        tracing::debug!(target_url = %cfg.target.url, "invalid content type on scrape, using fallback: {w}");
    }
    let max_t = now_ms().saturating_add(MAX_AHEAD_MS);
    let mut errs = AppendErrors::default();
    let mut appended_for_limit = 0usize;
    let mut sample_limit_hit = false;
    let mut key = String::new();
    let mut result = Ok(());

    for entry in parser {
        let s = match entry {
            Ok(Entry::Sample(s)) => s,
            Ok(Entry::Type { name, typ }) => {
                cache.set_metadata(&name, |m| std::mem::replace(&mut m.typ, typ) != typ);
                continue;
            }
            Ok(Entry::Help { name, text }) => {
                cache.set_metadata(&name, |m| {
                    let changed = m.help != *text;
                    if changed {
                        m.help = text.into_owned();
                    }
                    changed
                });
                continue;
            }
            Ok(Entry::Unit { name, unit }) => {
                cache.set_metadata(&name, |m| {
                    let changed = m.unit != unit;
                    if changed {
                        m.unit = unit.to_string();
                    }
                    changed
                });
                continue;
            }
            Ok(Entry::Eof) => continue,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        counts.total += 1;
        let parsed_t = if p.honor_timestamps {
            s.timestamp_ms
        } else {
            None
        };
        let t = parsed_t.unwrap_or(default_t);
        series_key(&s, &mut key);
        if cache.get_dropped(&key) {
            continue;
        }
        let (cached, already_scraped) = match cache.get(&key) {
            Some((e, already)) => (Some((e.r, e.labels.clone())), already),
            None => (None, false),
        };
        let labels = match &cached {
            Some((_, l)) => l.clone(),
            None => {
                let l = match mutate_sample_labels(
                    &s,
                    &cfg.sample_target_labels,
                    p.honor_labels,
                    p.metric_relabel.as_ref(),
                ) {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        cache.add_dropped(&key);
                        continue;
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                if let Err(e) = check_labels(
                    &l,
                    p.label_limit,
                    p.label_name_length_limit,
                    p.label_value_length_limit,
                ) {
                    result = Err(e);
                    break;
                }
                l
            }
        };
        let track = parsed_t.is_none() || p.track_timestamps_staleness;

        let duplicate = already_scraped && parsed_t.is_none();
        // Staleness markers of known series bypass the limit.
        if !duplicate && p.sample_limit > 0 && (cached.is_none() || !is_stale_nan(s.value)) {
            appended_for_limit += 1;
        }
        if duplicate {
            errs.duplicates += 1;
        } else if p.sample_limit > 0 && appended_for_limit > p.sample_limit {
            // Keep parsing so the scraped-samples count is right.
            sample_limit_hit = true;
        } else if t > max_t {
            errs.out_of_bounds += 1;
        } else {
            let res = match &cached {
                Some((r, l)) => append_cached(app, *r, l, t, s.value),
                None => app.append(&labels, t, s.value),
            };
            match res {
                Ok(r) => {
                    if let Some((old, _)) = &cached {
                        if *old != r {
                            cache.move_ref(*old, r);
                            if let Some((e, _)) = cache.get(&key) {
                                e.r = r;
                            }
                        }
                        if track {
                            cache.track(r, &labels);
                        }
                    } else {
                        cache.add(&key, r, labels.clone());
                        if track {
                            cache.track(r, &labels);
                        }
                        if !sample_limit_hit {
                            counts.series_added += 1;
                        }
                    }
                }
                Err(strata_tsdb::Error::OutOfOrderSample) => errs.out_of_order += 1,
                Err(strata_tsdb::Error::DuplicateSampleForTimestamp) => errs.duplicates += 1,
                Err(strata_tsdb::Error::OutOfBounds) => errs.out_of_bounds += 1,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        counts.added += 1;
    }
    if result.is_ok() && sample_limit_hit {
        result = Err(Error::Scrape("sample limit exceeded".into()));
    }
    let url = &cfg.target.url;
    if errs.out_of_order > 0 {
        tracing::warn!(target_url = %url, num_dropped = errs.out_of_order, "error on ingesting out-of-order samples");
    }
    if errs.duplicates > 0 {
        tracing::warn!(target_url = %url, num_dropped = errs.duplicates, "error on ingesting samples with different value but same timestamp");
    }
    if errs.out_of_bounds > 0 {
        tracing::warn!(target_url = %url, num_dropped = errs.out_of_bounds, "error on ingesting samples that are too old or are too far into the future");
    }
    result?;
    update_stale_markers(cache, app, default_t)
}

/// Appends the synthetic series at `t` with `values` in [`super::labels::REPORT_NAMES`]
/// order. Out-of-order and duplicate samples are ignored (a restarted loop).
pub(crate) fn report(
    cfg: &LoopConfig,
    cache: &mut ScrapeCache,
    app: &mut dyn Appender,
    t: i64,
    values: [f64; REPORT_SERIES],
) -> Result<()> {
    for (i, v) in values.into_iter().enumerate() {
        let labels = &cfg.report_labels[i];
        let res = match cache.report_refs[i] {
            Some(r) => append_cached(app, r, labels, t, v),
            None => app.append(labels, t, v),
        };
        match res {
            Ok(r) => cache.report_refs[i] = Some(r),
            Err(strata_tsdb::Error::OutOfOrderSample)
            | Err(strata_tsdb::Error::DuplicateSampleForTimestamp) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Result of fetching a target: the body and its content type, or why it failed.
pub(crate) type Fetched = std::result::Result<(Vec<u8>, Option<String>), String>;

/// One complete scrape iteration after the fetch: append (or stale-mark on failure), report,
/// commit. Returns the counts and the scrape error, if any.
pub(crate) fn process(
    cfg: &LoopConfig,
    cache: &mut ScrapeCache,
    appendable: &dyn Appendable,
    fetched: &Fetched,
    t: i64,
    start: Instant,
) -> (Counts, Option<String>) {
    let url = &cfg.target.url;
    let mut app = match appendable.appender() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(target_url = %url, "cannot get an appender: {e}");
            return (Counts::default(), Some(format!("appender: {e}")));
        }
    };
    let mut counts = Counts::default();
    let mut scrape_err: Option<String> = None;
    let failure = match fetched {
        Ok((body, ct)) if !body.is_empty() => {
            let (c, res) = append_scrape(cfg, cache, &mut *app, body, ct.as_deref(), t);
            counts = c;
            res.err().map(|e| e.to_string())
        }
        Ok(_) => {
            // An empty body: like a failed fetch for staleness, but the target is up.
            if let Err(ae) = append_empty(cache, &mut *app, t) {
                tracing::warn!(target_url = %url, "append of staleness markers failed: {ae}");
                let _ = app.rollback();
            }
            None
        }
        Err(e) => {
            // The fetch failed: every series of the last scrape goes stale.
            if let Err(ae) = append_empty(cache, &mut *app, t) {
                tracing::warn!(target_url = %url, "append of staleness markers failed: {ae}");
                let _ = app.rollback();
            }
            scrape_err = Some(e.clone());
            None
        }
    };
    if let Some(e) = failure {
        // Nothing of a failed scrape is stored; all series of the previous scrape go stale.
        tracing::debug!(target_url = %url, "append failed: {e}");
        let _ = app.rollback();
        cache.cur.clear();
        if let Err(ae) = append_empty(cache, &mut *app, t) {
            tracing::warn!(target_url = %url, "append of staleness markers failed: {ae}");
            let _ = app.rollback();
        }
        scrape_err = Some(e);
    }
    let up = if scrape_err.is_none() { 1.0 } else { 0.0 };
    let values = [
        up,
        start.elapsed().as_secs_f64(),
        counts.total as f64,
        counts.added as f64,
        counts.series_added as f64,
    ];
    match report(cfg, cache, &mut *app, t, values) {
        Err(e) => {
            tracing::warn!(target_url = %url, "appending scrape report failed: {e}");
            let _ = app.rollback();
        }
        Ok(()) => {
            if let Err(e) = app.commit() {
                tracing::error!(target_url = %url, "scrape commit failed: {e}");
            }
        }
    }
    drop(app);
    for (family, m) in cache.take_metadata_changes() {
        appendable.record_metadata(&family, m.typ.as_str(), &m.help, &m.unit);
    }
    (counts, scrape_err)
}

/// End of a loop's run: staleness markers for the last scrape's series and the report
/// series, at `t`.
pub(crate) fn process_end_of_run(
    cfg: &LoopConfig,
    cache: &mut ScrapeCache,
    appendable: &dyn Appendable,
    t: i64,
) {
    let url = &cfg.target.url;
    let mut app = match appendable.appender() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(target_url = %url, "stale append: cannot get an appender: {e}");
            return;
        }
    };
    if let Err(e) = append_empty(cache, &mut *app, t) {
        tracing::warn!(target_url = %url, "stale append failed: {e}");
        let _ = app.rollback();
    }
    if let Err(e) = report(cfg, cache, &mut *app, t, [stale_nan(); REPORT_SERIES]) {
        tracing::warn!(target_url = %url, "stale report failed: {e}");
        let _ = app.rollback();
        return;
    }
    if let Err(e) = app.commit() {
        tracing::warn!(target_url = %url, "stale commit failed: {e}");
    }
}
