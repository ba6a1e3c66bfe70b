//! The server's self-metrics, served at `/metrics` in the Prometheus text format
//! (`prometheus-client`). [`Metrics`] holds `pub` handles the write path increments
//! (ingested and rejected samples, WAL fsyncs); the query API records query durations itself;
//! head statistics are read from the database at scrape time.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use strata_tsdb::db::Db;

/// Label set with one `reason` label (rejected samples).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Label set with one `handler` label (HTTP endpoints, query kinds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub handler: String,
}

/// Label set of HTTP request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub handler: String,
    pub code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1ms .. ~65s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Self-metrics handles. Cloning a handle (`Counter`, `Gauge`, `Histogram`) shares the value.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The database whose WAL fsyncs feed `wal_fsyncs` (and what was fed so far).
    db: Mutex<Option<Arc<Db>>>,
    fsyncs_seen: std::sync::atomic::AtomicU64,
    /// Samples written to storage by the write path (`strata_ingest_samples_total`).
    pub samples_ingested: Counter,
    /// Samples refused, by reason (`strata_ingest_samples_rejected_total{reason}`); use
    /// [`Metrics::rejected`].
    pub samples_rejected: Family<ReasonLabels, Counter>,
    /// Exemplars stored (`strata_ingest_exemplars_total`).
    pub exemplars_ingested: Counter,
    /// Metadata entries received (`strata_ingest_metadata_total`).
    pub metadata_ingested: Counter,
    /// Series in the head; refreshed from the database at each scrape when one is attached.
    pub head_series: Gauge,
    /// WAL fsyncs (`strata_tsdb_wal_fsyncs_total`), incremented by whoever commits.
    pub wal_fsyncs: Counter,
    /// Duration of WAL fsyncs, seconds.
    pub wal_fsync_duration: Histogram,
    /// Duration of queries by kind (`query`, `query_range`, `series`, `labels`,
    /// `label_values`, `query_exemplars`), seconds.
    pub query_duration: HistogramFamily<HandlerLabels>,
    /// Queries running or waiting for a slot.
    pub queries_in_flight: Gauge,
    /// Queries cancelled because the client went away before the answer.
    pub queries_canceled: Counter,
    /// HTTP requests by handler and status code.
    pub http_requests: Family<HttpLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut reg = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            db: Mutex::new(None),
            fsyncs_seen: std::sync::atomic::AtomicU64::new(0),
            samples_ingested: Counter::default(),
            samples_rejected: Family::default(),
            exemplars_ingested: Counter::default(),
            metadata_ingested: Counter::default(),
            head_series: Gauge::default(),
            wal_fsyncs: Counter::default(),
            wal_fsync_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            query_duration: Family::new_with_constructor(latency_histogram),
            queries_in_flight: Gauge::default(),
            queries_canceled: Counter::default(),
            http_requests: Family::default(),
        };
        reg.register(
            "strata_ingest_samples",
            "Samples appended to storage by the write path",
            m.samples_ingested.clone(),
        );
        reg.register(
            "strata_ingest_samples_rejected",
            "Samples rejected by the write path, by reason",
            m.samples_rejected.clone(),
        );
        reg.register(
            "strata_ingest_exemplars",
            "Exemplars stored in the in-memory exemplar store",
            m.exemplars_ingested.clone(),
        );
        reg.register(
            "strata_ingest_metadata",
            "Metric metadata entries received",
            m.metadata_ingested.clone(),
        );
        reg.register(
            "strata_tsdb_head_series",
            "Series in the head block",
            m.head_series.clone(),
        );
        reg.register(
            "strata_tsdb_wal_fsyncs",
            "WAL fsync calls",
            m.wal_fsyncs.clone(),
        );
        reg.register(
            "strata_tsdb_wal_fsync_duration_seconds",
            "Duration of WAL fsync calls",
            m.wal_fsync_duration.clone(),
        );
        reg.register(
            "strata_query_duration_seconds",
            "Duration of API queries by handler",
            m.query_duration.clone(),
        );
        reg.register(
            "strata_queries_in_flight",
            "Queries running or queued",
            m.queries_in_flight.clone(),
        );
        reg.register(
            "strata_queries_canceled",
            "Queries cancelled because the client went away",
            m.queries_canceled.clone(),
        );
        reg.register(
            "strata_http_requests",
            "HTTP API requests by handler and status code",
            m.http_requests.clone(),
        );
        *m.registry.lock() = reg;
        m
    }

    /// The counter of samples rejected for `reason` (e.g. `out_of_order`, `out_of_bounds`,
    /// `duplicate`, `invalid_labels`).
    pub fn rejected(&self, reason: &str) -> Counter {
        self.samples_rejected.get_or_create_owned(&ReasonLabels {
            reason: reason.to_string(),
        })
    }

    /// Observes the duration of a query of kind `handler`.
    pub fn observe_query(&self, handler: &str, seconds: f64) {
        self.query_duration
            .get_or_create(&HandlerLabels {
                handler: handler.to_string(),
            })
            .observe(seconds);
    }

    /// Counts an HTTP request.
    pub fn count_request(&self, handler: &str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                handler: handler.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Adds head statistics of `db` (read at each scrape) to the exposition.
    pub fn attach_db(&self, db: Arc<Db>) {
        *self.db.lock() = Some(db.clone());
        self.registry
            .lock()
            .register_collector(Box::new(HeadCollector { db }));
    }

    /// Registers an extra collector (for other subsystems' metrics).
    pub fn register_collector(&self, c: Box<dyn Collector>) {
        self.registry.lock().register_collector(c);
    }

    /// Registers an extra metric under `name` with `help`.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.lock().register(name, help, metric);
    }

    /// The exposition in the text format (OpenMetrics text, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        if let Some(db) = self.db.lock().as_ref() {
            let now = db.head().wal_fsyncs();
            let before = self
                .fsyncs_seen
                .swap(now, std::sync::atomic::Ordering::AcqRel);
            self.wal_fsyncs.inc_by(now.saturating_sub(before));
        }
        let mut out = String::new();
        let reg = self.registry.lock();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
            tracing::error!(error = %e, "encoding self-metrics");
        }
        out
    }
}

/// Head and block statistics read from the database at scrape time.
struct HeadCollector {
    db: Arc<Db>,
}

impl std::fmt::Debug for HeadCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeadCollector")
    }
}

impl Collector for HeadCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let head = self.db.head();
        let st = &head.stats;
        let counters: [(&str, &str, u64); 7] = [
            (
                "strata_tsdb_head_samples_appended",
                "Samples appended to the head",
                st.samples_appended.load(Relaxed),
            ),
            (
                "strata_tsdb_out_of_order_samples",
                "Samples rejected as out of order",
                st.out_of_order_samples.load(Relaxed),
            ),
            (
                "strata_tsdb_duplicate_samples",
                "Samples rejected as duplicates with a different value",
                st.duplicate_samples.load(Relaxed),
            ),
            (
                "strata_tsdb_out_of_bounds_samples",
                "Samples rejected as older than the head's minimum valid time",
                st.out_of_bounds_samples.load(Relaxed),
            ),
            (
                "strata_tsdb_head_series_created",
                "Series created in the head",
                st.series_created.load(Relaxed),
            ),
            (
                "strata_tsdb_head_series_removed",
                "Series removed from the head",
                st.series_removed.load(Relaxed),
            ),
            (
                "strata_tsdb_head_chunks_created",
                "Chunks created in the head",
                st.chunks_created.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let min = head.min_time();
        let max = head.max_time();
        let gauges: [(&str, &str, i64); 4] = [
            (
                "strata_tsdb_head_min_time",
                "Lowest timestamp in the head, ms",
                if min == i64::MAX { 0 } else { min },
            ),
            (
                "strata_tsdb_head_max_time",
                "Highest timestamp in the head, ms",
                if max == i64::MIN { 0 } else { max },
            ),
            (
                "strata_tsdb_blocks_loaded",
                "Persistent blocks loaded",
                self.db.blocks().len() as i64,
            ),
            (
                "strata_tsdb_storage_blocks_bytes",
                "Bytes of the loaded blocks",
                self.db.blocks().iter().map(|b| b.size() as i64).sum(),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::new();
        m.samples_ingested.inc_by(5);
        m.rejected("out_of_order").inc();
        m.observe_query("query", 0.01);
        let text = m.encode();
        assert!(text.contains("strata_ingest_samples_total 5"), "{text}");
        assert!(
            text.contains("strata_ingest_samples_rejected_total{reason=\"out_of_order\"} 1"),
            "{text}"
        );
        assert!(text.contains("strata_query_duration_seconds_count{handler=\"query\"} 1"));
    }
}
