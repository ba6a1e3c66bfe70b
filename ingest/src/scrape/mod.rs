//! Scraping (Prometheus 3's `scrape` package): one loop per target that fetches the exposition
//! page at a fixed, hash-spread offset within the interval, parses it, merges the target labels
//! into every series, applies metric relabeling and limits, appends the samples plus the
//! synthetic `up`/`scrape_*` series, and writes staleness markers for series that vanish
//! ([`scrape_loop`]); and the [`ScrapeManager`] that diffs the wanted pools and targets
//! against the running loops.
//!
//! Inputs are plain structs ([`ScrapePool`], [`ScrapeTarget`], [`ScrapeParams`]); the
//! configuration layer builds them. Storage is reached through [`Appendable`].

mod append;
mod cache;
mod labels;
mod manager;
mod scrape_loop;
mod scraper;
mod service;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strata_tsdb::storage::Appender;
use strata_tsdb::Labels;

use crate::error::Result;
use crate::http::HttpSettings;
pub use crate::scrape_format::{EscapingScheme, ScrapeProtocol, DEFAULT_SCRAPE_PROTOCOLS};
pub use manager::{ActiveTarget, DroppedTarget, ScrapeManager, ScrapePool, TargetsSnapshot};
pub use scrape_loop::{scrape_offset, target_hash};
pub use service::ScrapeService;

/// Metric relabeling: `None` (or an empty label set) drops the series.
pub type MetricRelabelFn = Arc<dyn Fn(&Labels) -> Option<Labels> + Send + Sync>;

/// Something scrapes can append to: the TSDB, a bare head, the agent's WAL storage.
pub trait Appendable: Send + Sync {
    /// A new appender for one scrape (committed or rolled back by the caller).
    fn appender(&self) -> Result<Box<dyn Appender + '_>>;

    /// A target exposed new or changed metadata for a metric family (`typ` in Prometheus's
    /// lower-case spelling: `counter`, `gauge`, …, `unknown`). Ignored by default.
    fn record_metadata(&self, _family: &str, _typ: &str, _help: &str, _unit: &str) {}
}

impl Appendable for strata_tsdb::db::Db {
    fn appender(&self) -> Result<Box<dyn Appender + '_>> {
        Ok(Box::new(strata_tsdb::db::Db::appender(self)?))
    }
}

impl Appendable for Arc<strata_tsdb::head::Head> {
    fn appender(&self) -> Result<Box<dyn Appender + '_>> {
        Ok(Box::new(strata_tsdb::head::Head::appender(self)))
    }
}

/// The per-pool scrape settings (a scrape config's fields that are the same for every
/// target). Loops compare them by `Arc` identity: reuse the same `Arc` when the configuration
/// did not change, or every target of the pool restarts.
#[derive(Clone)]
pub struct ScrapeParams {
    /// The job name (for logs).
    pub job: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    /// Maximum samples per scrape after metric relabeling (0 = none).
    pub sample_limit: usize,
    /// Maximum labels per series (0 = none).
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    /// Maximum uncompressed body size in bytes (0 = none).
    pub body_size_limit: u64,
    /// Protocols to ask for, in preference order.
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Parser to use when the response's `Content-Type` is missing or unusable.
    pub fallback_protocol: Option<ScrapeProtocol>,
    /// The `escaping=` value sent in the `Accept` header.
    pub escaping: EscapingScheme,
    /// Ask for gzip (`Accept-Encoding: gzip`) instead of `identity`.
    pub enable_compression: bool,
    pub http: HttpSettings,
    pub metric_relabel: Option<MetricRelabelFn>,
}

impl Default for ScrapeParams {
    /// Prometheus 3's defaults.
    fn default() -> Self {
        Self {
            job: String::new(),
            honor_labels: false,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            scrape_protocols: DEFAULT_SCRAPE_PROTOCOLS.to_vec(),
            fallback_protocol: None,
            escaping: EscapingScheme::AllowUtf8,
            enable_compression: true,
            http: HttpSettings::default(),
            metric_relabel: None,
        }
    }
}

impl fmt::Debug for ScrapeParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeParams")
            .field("job", &self.job)
            .field("honor_labels", &self.honor_labels)
            .field("honor_timestamps", &self.honor_timestamps)
            .field(
                "track_timestamps_staleness",
                &self.track_timestamps_staleness,
            )
            .field("sample_limit", &self.sample_limit)
            .field("label_limit", &self.label_limit)
            .field("label_name_length_limit", &self.label_name_length_limit)
            .field("label_value_length_limit", &self.label_value_length_limit)
            .field("body_size_limit", &self.body_size_limit)
            .field("scrape_protocols", &self.scrape_protocols)
            .field("fallback_protocol", &self.fallback_protocol)
            .field("enable_compression", &self.enable_compression)
            .field("metric_relabel", &self.metric_relabel.is_some())
            .finish_non_exhaustive()
    }
}

/// One target to scrape.
#[derive(Clone, Debug)]
pub struct ScrapeTarget {
    /// Final target labels (after relabeling; includes `job` and `instance`). Labels starting
    /// with `__` are not attached to samples.
    pub labels: Labels,
    /// The labels before relabeling (for `/api/v1/targets`).
    pub discovered_labels: Labels,
    /// The full URL to scrape, query parameters included.
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub params: Arc<ScrapeParams>,
}

/// Last scrape outcome of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetHealth {
    #[default]
    Unknown,
    Up,
    Down,
}

impl TargetHealth {
    /// `"unknown"`, `"up"`, `"down"` as in the targets API.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Unknown => "unknown",
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
        }
    }
}

/// Status of a target's scrape loop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetStatus {
    pub health: TargetHealth,
    /// The last scrape's error (`None` when it succeeded).
    pub last_error: Option<String>,
    /// Timestamp of the last scrape.
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Option<Duration>,
    /// Samples exposed in the last scrape (before metric relabeling).
    pub last_samples: usize,
    /// Scrapes done so far by this loop.
    pub scrapes: u64,
}
