//! `prometheus.yml`: the scrape agent's configuration, read with Prometheus 3's semantics.
//!
//! [`Config::from_yaml`] / [`Config::load`] parse an unmodified Prometheus configuration file,
//! apply Prometheus's defaults and inheritance (per-job intervals, timeouts and limits from
//! `global`), and validate it the way Prometheus does (duplicate job names, timeout greater than
//! interval, relabeling rules, HTTP client exclusions, remote-write queue bounds...). Unknown keys
//! are errors naming the key, its path and its line and column. Sections Prometheus knows but
//! Strata does not implement (`rule_files`, `alerting`, other `*_sd_configs`, `oauth2`...) are
//! accepted and listed by [`Config::unsupported`] so that the server can warn about them.
//!
//! Submodules: [`duration`] (Prometheus durations and byte sizes) and [`http`] (the HTTP client
//! settings shared by scrape jobs and remote-write endpoints).

pub mod duration;
pub mod http;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use self::duration::{ByteSize, Duration};
pub use self::http::{Authorization, BasicAuth, HttpClientConfig, Secret, TlsConfig, TlsVersion};
use crate::error::{Error, Result};
use crate::relabel::RelabelConfig;

/// Service-discovery mechanisms Prometheus knows (`<name>_sd_configs`) that Strata accepts in a
/// scrape config but does not run. `static_configs` and `file_sd_configs` are implemented.
pub const UNSUPPORTED_SD_MECHANISMS: &[&str] = &[
    "aws",
    "azure",
    "consul",
    "digitalocean",
    "dns",
    "docker",
    "dockerswarm",
    "ec2",
    "ecs",
    "elasticache",
    "eureka",
    "gce",
    "hetzner",
    "http",
    "ionos",
    "kubernetes",
    "kuma",
    "lightsail",
    "linode",
    "marathon",
    "msk",
    "nerve",
    "nomad",
    "oci",
    "openstack",
    "outscale",
    "ovhcloud",
    "puppetdb",
    "rds",
    "scaleway",
    "serverset",
    "stackit",
    "triton",
    "uyuni",
    "vultr",
];

/// The whole configuration file.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub global: GlobalConfig,
    /// Glob patterns of extra files holding `scrape_configs:`. [`Config::load`] reads them and
    /// appends their jobs to [`Config::scrape_configs`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scrape_config_files: Vec<PathBuf>,
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Accepted, not implemented: the raw YAML of `rule_files`, `alerting`, `remote_read`,
    /// `storage`, `tracing`, `otlp`, `runtime` when present.
    #[serde(flatten)]
    pub unimplemented_sections: BTreeMap<String, yaml_serde::Value>,
    #[serde(skip)]
    source: String,
    #[serde(skip)]
    path: Option<PathBuf>,
}

/// `global:`. Every duration is resolved (never zero after loading, except `rule_query_offset`).
#[derive(Clone, Debug, Serialize)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    pub evaluation_interval: Duration,
    pub rule_query_offset: Duration,
    /// Labels added to every series sent to remote storage. `$VAR`/`${VAR}` in values are
    /// replaced by environment variables at load time (`$$` is a literal `$`), as Prometheus 3.
    pub external_labels: BTreeMap<String, String>,
    pub query_log_file: Option<PathBuf>,
    pub scrape_failure_log_file: Option<PathBuf>,
    pub body_size_limit: ByteSize,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub keep_dropped_targets: u64,
    pub metric_name_validation_scheme: ValidationScheme,
    pub metric_name_escaping_scheme: Option<String>,
    pub scrape_native_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    pub always_scrape_classic_histograms: bool,
    pub extra_scrape_metrics: bool,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            scrape_protocols: None,
            evaluation_interval: Duration::from_secs(60),
            rule_query_offset: Duration::ZERO,
            external_labels: BTreeMap::new(),
            query_log_file: None,
            scrape_failure_log_file: None,
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            keep_dropped_targets: 0,
            metric_name_validation_scheme: ValidationScheme::Utf8,
            metric_name_escaping_scheme: None,
            scrape_native_histograms: false,
            convert_classic_histograms_to_nhcb: false,
            always_scrape_classic_histograms: false,
            extra_scrape_metrics: false,
        }
    }
}

/// Which label names are valid: any non-empty UTF-8 (`utf8`, Prometheus 3's default) or
/// `[a-zA-Z_][a-zA-Z0-9_]*` (`legacy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationScheme {
    #[default]
    Utf8,
    Legacy,
}

impl ValidationScheme {
    /// Prometheus's `IsValidLabelName` under this scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            ValidationScheme::Utf8 => !name.is_empty(),
            ValidationScheme::Legacy => strata_tsdb::labels::is_legacy_label_name(name),
        }
    }
}

/// A scrape protocol offered in the `Accept` header, most preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ScrapeProtocol {
    PrometheusProto,
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0_0_4,
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText1_0_0,
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText0_0_1,
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText1_0_0,
}

impl ScrapeProtocol {
    /// The protocol the scraper offers for this setting; `None` for `PrometheusProto`, which
    /// Strata does not scrape (it is left out of the `Accept` header). Accept headers and
    /// parser choice live in [`crate::scrape_format`].
    pub fn text_protocol(self) -> Option<crate::scrape_format::ScrapeProtocol> {
        use crate::scrape_format::ScrapeProtocol as P;
        match self {
            ScrapeProtocol::PrometheusProto => None,
            ScrapeProtocol::PrometheusText0_0_4 => Some(P::PrometheusText0_0_4),
            ScrapeProtocol::PrometheusText1_0_0 => Some(P::PrometheusText1_0_0),
            ScrapeProtocol::OpenMetricsText0_0_1 => Some(P::OpenMetricsText0_0_1),
            ScrapeProtocol::OpenMetricsText1_0_0 => Some(P::OpenMetricsText1_0_0),
        }
    }

    /// Prometheus's default offer: OpenMetrics 1.0.0, 0.0.1, Prometheus text 1.0.0, 0.0.4.
    pub const DEFAULT: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The default when native histograms are scraped: protobuf first.
    pub const DEFAULT_PROTO_FIRST: [ScrapeProtocol; 5] = [
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];
}

/// One `scrape_configs` entry (a job). After loading every inherited value is resolved.
#[derive(Clone, Debug, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    /// Default `true`.
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    /// Extra query parameters for every scrape (`?name=value`); only the first value of each is
    /// also exposed as a `__param_<name>` label.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<ScrapeProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    pub scrape_native_histograms: bool,
    pub always_scrape_classic_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_failure_log_file: Option<PathBuf>,
    /// Default `/metrics`.
    pub metrics_path: String,
    /// `http` (default) or `https`.
    pub scheme: String,
    /// Ask for gzip (default `true`).
    pub enable_compression: bool,
    /// 0 = no limit. Limits left at 0 inherit `global`'s.
    pub body_size_limit: ByteSize,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub native_histogram_bucket_limit: u64,
    pub native_histogram_min_bucket_factor: f64,
    pub keep_dropped_targets: u64,
    pub metric_name_validation_scheme: ValidationScheme,
    pub metric_name_escaping_scheme: String,
    pub extra_scrape_metrics: bool,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// `<name>_sd_configs` keys present but not implemented, in file order.
    #[serde(skip)]
    pub unsupported_sd_configs: Vec<String>,
    #[serde(skip)]
    pending: Pending,
}

/// Values whose "unset" differs from any explicit value; resolved against `global`.
#[derive(Clone, Debug, Default)]
struct Pending {
    scrape_protocols: Option<Vec<ScrapeProtocol>>,
    scrape_native_histograms: Option<bool>,
    always_scrape_classic_histograms: Option<bool>,
    convert_classic_histograms_to_nhcb: Option<bool>,
    extra_scrape_metrics: Option<bool>,
    metric_name_validation_scheme: Option<ValidationScheme>,
    metric_name_escaping_scheme: Option<String>,
}

/// `static_configs` entry: a list of `host:port` targets sharing labels.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub targets: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs` entry. `files` are paths ending in `.json`, `.yml` or `.yaml`; the last
/// path component may contain a `*` glob.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileSdConfig {
    pub files: Vec<PathBuf>,
    /// Full re-read interval (default 5m); changes are also picked up by polling mtimes.
    pub refresh_interval: Duration,
}

impl<'de> Deserialize<'de> for FileSdConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default, deserialize_with = "nullable")]
            files: Vec<String>,
            #[serde(default)]
            refresh_interval: Option<Duration>,
        }
        duration::deserialize_checked(d, |raw: Raw| {
            if raw.files.is_empty() {
                return Err(
                    "file service discovery config must contain at least one path name".into(),
                );
            }
            for f in &raw.files {
                if !valid_file_sd_name(f) {
                    return Err(format!("path name {f:?} is not valid for file discovery"));
                }
            }
            Ok(FileSdConfig {
                files: raw.files.into_iter().map(PathBuf::from).collect(),
                refresh_interval: raw
                    .refresh_interval
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(300)),
            })
        })
    }
}

/// Prometheus's `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
fn valid_file_sd_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if !matches!(ext, "json" | "yml" | "yaml" | "JSON" | "YML" | "YAML") {
        return false;
    }
    match stem.find('*') {
        None => true,
        Some(i) => !stem[i + 1..].contains('/') && !stem[i + 1..].contains('*'),
    }
}

/// Which protobuf message a remote-write endpoint receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ProtobufMessage {
    /// Remote write 1.0.
    #[default]
    #[serde(rename = "prometheus.WriteRequest")]
    WriteV1,
    /// Remote write 2.0.
    #[serde(rename = "io.prometheus.write.v2.Request")]
    WriteV2,
}

/// One `remote_write` endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteWriteConfig {
    pub url: String,
    /// Default 30s.
    pub remote_timeout: Duration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Optional; unique among endpoints when set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    pub round_robin_dns: bool,
    pub protobuf_message: ProtobufMessage,
    pub failed_request_logging: bool,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    /// Accepted, not implemented: `sigv4`, `azuread`, `google_iam` (raw YAML).
    #[serde(flatten)]
    pub unimplemented_auth: BTreeMap<String, yaml_serde::Value>,
}

/// `queue_config` of a remote-write endpoint. Defaults as Prometheus.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Samples buffered per shard (10000).
    pub capacity: i64,
    /// 50.
    pub max_shards: i64,
    /// 1.
    pub min_shards: i64,
    /// 2000.
    pub max_samples_per_send: i64,
    /// 5s.
    pub batch_send_deadline: Duration,
    /// 30ms.
    pub min_backoff: Duration,
    /// 5s.
    pub max_backoff: Duration,
    /// Retry on HTTP 429. Prometheus 3 defaults this to `false`.
    #[serde(rename = "retry_on_http_429")]
    pub retry_on_http_429: bool,
    /// Samples older than this are not sent; 0 = no limit.
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
            sample_age_limit: Duration::ZERO,
        }
    }
}

impl QueueConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.max_shards <= 0 {
            return Err("remote write queue max_shards must be positive".into());
        }
        if self.min_shards <= 0 {
            return Err("remote write queue min_shards must be positive".into());
        }
        if self.min_shards > self.max_shards {
            return Err("remote write queue min_shards must not be greater than max_shards".into());
        }
        if self.max_samples_per_send <= 0 {
            return Err("remote write queue max_samples_per_send must be positive".into());
        }
        if self.capacity <= 0 {
            return Err("remote write queue capacity must be positive".into());
        }
        if self.max_backoff < self.min_backoff {
            return Err("remote write queue max_backoff must not be less than min_backoff".into());
        }
        Ok(())
    }
}

/// `metadata_config` (accepted; metadata sending is up to the remote-write implementation).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: i64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 2000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization
// ---------------------------------------------------------------------------------------------

/// Deserializes `null` (an empty YAML value) as the type's default, as Go's yaml does.
pub(crate) fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Top-level keys Prometheus knows and Strata does not implement.
const UNIMPLEMENTED_TOP_LEVEL: &[&str] = &[
    "runtime",
    "alerting",
    "rule_files",
    "storage",
    "tracing",
    "remote_read",
    "otlp",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "nullable")]
    global: RawGlobal,
    #[serde(default, deserialize_with = "nullable")]
    scrape_config_files: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    scrape_configs: Vec<Option<ScrapeConfig>>,
    #[serde(default, deserialize_with = "nullable")]
    remote_write: Vec<Option<RemoteWriteConfig>>,
    #[serde(default)]
    runtime: Option<yaml_serde::Value>,
    #[serde(default)]
    alerting: Option<yaml_serde::Value>,
    #[serde(default)]
    rule_files: Option<yaml_serde::Value>,
    #[serde(default)]
    storage: Option<yaml_serde::Value>,
    #[serde(default)]
    tracing: Option<yaml_serde::Value>,
    #[serde(default)]
    remote_read: Option<yaml_serde::Value>,
    #[serde(default)]
    otlp: Option<yaml_serde::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGlobal {
    scrape_interval: Duration,
    scrape_timeout: Duration,
    #[serde(deserialize_with = "nullable")]
    scrape_protocols: Option<Vec<ScrapeProtocol>>,
    evaluation_interval: Duration,
    rule_query_offset: Duration,
    query_log_file: Option<String>,
    scrape_failure_log_file: Option<String>,
    #[serde(deserialize_with = "nullable")]
    external_labels: BTreeMap<String, String>,
    body_size_limit: ByteSize,
    sample_limit: u64,
    target_limit: u64,
    label_limit: u64,
    label_name_length_limit: u64,
    label_value_length_limit: u64,
    keep_dropped_targets: u64,
    metric_name_validation_scheme: Option<String>,
    metric_name_escaping_scheme: Option<String>,
    scrape_native_histograms: Option<bool>,
    convert_classic_histograms_to_nhcb: bool,
    always_scrape_classic_histograms: bool,
    extra_scrape_metrics: Option<bool>,
}

fn parse_validation_scheme(
    s: Option<&str>,
) -> std::result::Result<Option<ValidationScheme>, String> {
    match s {
        None | Some("") => Ok(None),
        Some("utf8") => Ok(Some(ValidationScheme::Utf8)),
        Some("legacy") => Ok(Some(ValidationScheme::Legacy)),
        Some(o) => Err(format!(
            "unknown name validation method specified, must be either '', 'legacy' or 'utf8', got {o}"
        )),
    }
}

const ESCAPING_SCHEMES: &[&str] = &["allow-utf-8", "underscores", "dots", "values"];

impl<'de> Deserialize<'de> for ScrapeConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(ScrapeVisitor)
    }
}

struct ScrapeVisitor;

fn unknown_field<E: de::Error>(key: &str, section: &str) -> E {
    E::custom(format!("unknown field `{key}` in {section}"))
}

fn check_duplicate<E: de::Error>(
    seen: &mut HashSet<String>,
    key: &str,
) -> std::result::Result<(), E> {
    if seen.insert(key.to_string()) {
        Ok(())
    } else {
        Err(E::custom(format!("field `{key}` is set more than once")))
    }
}

impl<'de> Visitor<'de> for ScrapeVisitor {
    type Value = ScrapeConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scrape config mapping")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<ScrapeConfig, A::Error> {
        let mut c = ScrapeConfig::empty();
        let mut seen = HashSet::new();
        let mut validation: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            check_duplicate(&mut seen, &key)?;
            match key.as_str() {
                "job_name" => c.job_name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                "honor_labels" => c.honor_labels = map.next_value()?,
                "honor_timestamps" => c.honor_timestamps = map.next_value()?,
                "track_timestamps_staleness" => c.track_timestamps_staleness = map.next_value()?,
                "params" => {
                    c.params = map
                        .next_value::<Option<BTreeMap<String, Vec<String>>>>()?
                        .unwrap_or_default()
                }
                "scrape_interval" => c.scrape_interval = map.next_value()?,
                "scrape_timeout" => c.scrape_timeout = map.next_value()?,
                "scrape_protocols" => c.pending.scrape_protocols = map.next_value()?,
                "fallback_scrape_protocol" => c.fallback_scrape_protocol = map.next_value()?,
                "scrape_native_histograms" => {
                    c.pending.scrape_native_histograms = map.next_value()?
                }
                "always_scrape_classic_histograms" => {
                    c.pending.always_scrape_classic_histograms = map.next_value()?
                }
                "convert_classic_histograms_to_nhcb" => {
                    c.pending.convert_classic_histograms_to_nhcb = map.next_value()?
                }
                "scrape_failure_log_file" => {
                    c.scrape_failure_log_file = map
                        .next_value::<Option<String>>()?
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                }
                "metrics_path" => c.metrics_path = map.next_value()?,
                "scheme" => c.scheme = map.next_value()?,
                "enable_compression" => c.enable_compression = map.next_value()?,
                "body_size_limit" => c.body_size_limit = map.next_value()?,
                "sample_limit" => c.sample_limit = map.next_value()?,
                "target_limit" => c.target_limit = map.next_value()?,
                "label_limit" => c.label_limit = map.next_value()?,
                "label_name_length_limit" => c.label_name_length_limit = map.next_value()?,
                "label_value_length_limit" => c.label_value_length_limit = map.next_value()?,
                "native_histogram_bucket_limit" => {
                    c.native_histogram_bucket_limit = map.next_value()?
                }
                "native_histogram_min_bucket_factor" => {
                    c.native_histogram_min_bucket_factor = map.next_value()?
                }
                "keep_dropped_targets" => c.keep_dropped_targets = map.next_value()?,
                "metric_name_validation_scheme" => validation = map.next_value()?,
                "metric_name_escaping_scheme" => {
                    c.pending.metric_name_escaping_scheme = map
                        .next_value::<Option<String>>()?
                        .filter(|s| !s.is_empty())
                }
                "extra_scrape_metrics" => c.pending.extra_scrape_metrics = map.next_value()?,
                "static_configs" => {
                    c.static_configs = map
                        .next_value::<Option<Vec<StaticConfig>>>()?
                        .unwrap_or_default()
                }
                "file_sd_configs" => {
                    c.file_sd_configs = map
                        .next_value::<Option<Vec<FileSdConfig>>>()?
                        .unwrap_or_default()
                }
                "relabel_configs" => {
                    c.relabel_configs = non_null_rules(map.next_value()?, "target relabeling")?
                }
                "metric_relabel_configs" => {
                    c.metric_relabel_configs =
                        non_null_rules(map.next_value()?, "metric relabeling")?
                }
                k if c.http_client.take_field(k, &mut map)? => {}
                k if k
                    .strip_suffix("_sd_configs")
                    .is_some_and(|m| UNSUPPORTED_SD_MECHANISMS.contains(&m)) =>
                {
                    map.next_value::<IgnoredAny>()?;
                    c.unsupported_sd_configs.push(k.to_string());
                }
                k => return Err(unknown_field(k, "scrape config")),
            }
        }
        c.pending.metric_name_validation_scheme =
            parse_validation_scheme(validation.as_deref()).map_err(de::Error::custom)?;
        if c.job_name.is_empty() {
            return Err(de::Error::custom("job_name is empty"));
        }
        c.http_client.validate().map_err(de::Error::custom)?;
        if !matches!(c.scheme.as_str(), "http" | "https") {
            return Err(de::Error::custom(format!(
                "scheme {:?} is not supported, must be http or https",
                c.scheme
            )));
        }
        // Prometheus rejects URLs used as static targets unless relabeling may fix them.
        if c.relabel_configs.is_empty() {
            for sc in &c.static_configs {
                for t in &sc.targets {
                    if t.contains('/') {
                        return Err(de::Error::custom(format!("{t:?} is not a valid hostname")));
                    }
                }
            }
        }
        Ok(c)
    }
}

fn non_null_rules<E: de::Error>(
    v: Option<Vec<Option<RelabelConfig>>>,
    what: &str,
) -> std::result::Result<Vec<RelabelConfig>, E> {
    v.unwrap_or_default()
        .into_iter()
        .map(|r| r.ok_or_else(|| E::custom(format!("empty or null {what} rule"))))
        .collect()
}

impl ScrapeConfig {
    /// A job with Prometheus's per-job defaults and nothing inherited yet.
    fn empty() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            honor_labels: false,
            honor_timestamps: true,
            track_timestamps_staleness: false,
            params: BTreeMap::new(),
            scrape_interval: Duration::ZERO,
            scrape_timeout: Duration::ZERO,
            scrape_protocols: Vec::new(),
            fallback_scrape_protocol: None,
            scrape_native_histograms: false,
            always_scrape_classic_histograms: false,
            convert_classic_histograms_to_nhcb: false,
            scrape_failure_log_file: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            enable_compression: true,
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            native_histogram_bucket_limit: 0,
            native_histogram_min_bucket_factor: 0.0,
            keep_dropped_targets: 0,
            metric_name_validation_scheme: ValidationScheme::Utf8,
            metric_name_escaping_scheme: String::new(),
            extra_scrape_metrics: false,
            http_client: HttpClientConfig::default(),
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            unsupported_sd_configs: Vec::new(),
            pending: Pending::default(),
        }
    }

    /// A job named `job_name` with every default resolved against `global` (for programmatic
    /// use and tests).
    pub fn new(job_name: &str, global: &GlobalConfig) -> Result<Self> {
        let mut c = ScrapeConfig::empty();
        c.job_name = job_name.to_string();
        c.resolve(global).map_err(|message| Error::Config {
            path: None,
            message,
        })?;
        Ok(c)
    }

    /// Prometheus's `ScrapeConfig.Validate`: inherit from `global`, check the timeout, the
    /// protocols, the name validation/escaping schemes and the relabel rules.
    fn resolve(&mut self, g: &GlobalConfig) -> std::result::Result<(), String> {
        let job = &self.job_name;
        if self.scrape_interval.is_zero() {
            self.scrape_interval = g.scrape_interval;
        }
        if self.scrape_timeout > self.scrape_interval {
            return Err(format!(
                "scrape timeout greater than scrape interval for scrape config with job name {job:?}"
            ));
        }
        if self.scrape_timeout.is_zero() {
            self.scrape_timeout = g.scrape_timeout.min(self.scrape_interval);
        }
        macro_rules! inherit {
            ($($f:ident),*) => { $( if self.$f == zero_of(&self.$f) { self.$f = g.$f; } )* };
        }
        inherit!(
            body_size_limit,
            sample_limit,
            target_limit,
            label_limit,
            label_name_length_limit,
            label_value_length_limit,
            keep_dropped_targets
        );
        if self.scrape_failure_log_file.is_none() {
            self.scrape_failure_log_file = g.scrape_failure_log_file.clone();
        }
        let p = std::mem::take(&mut self.pending);
        self.scrape_native_histograms = p
            .scrape_native_histograms
            .unwrap_or(g.scrape_native_histograms);
        self.extra_scrape_metrics = p.extra_scrape_metrics.unwrap_or(g.extra_scrape_metrics);
        self.always_scrape_classic_histograms = p
            .always_scrape_classic_histograms
            .unwrap_or(g.always_scrape_classic_histograms);
        self.convert_classic_histograms_to_nhcb = p
            .convert_classic_histograms_to_nhcb
            .unwrap_or(g.convert_classic_histograms_to_nhcb);
        self.scrape_protocols = match (p.scrape_protocols, &g.scrape_protocols) {
            (Some(v), _) => v,
            (None, Some(v)) => v.clone(),
            (None, None) if self.scrape_native_histograms => {
                ScrapeProtocol::DEFAULT_PROTO_FIRST.to_vec()
            }
            (None, None) => ScrapeProtocol::DEFAULT.to_vec(),
        };
        validate_protocols(&self.scrape_protocols)
            .map_err(|e| format!("{e} for scrape config with job name {job:?}"))?;

        let local_unset = p.metric_name_validation_scheme.is_none();
        self.metric_name_validation_scheme = p
            .metric_name_validation_scheme
            .unwrap_or(g.metric_name_validation_scheme);
        let global_escaping = match g.metric_name_escaping_scheme.as_deref() {
            Some(s) => s.to_string(),
            None if g.metric_name_validation_scheme == ValidationScheme::Legacy => {
                "underscores".into()
            }
            None => "allow-utf-8".into(),
        };
        self.metric_name_escaping_scheme = match p.metric_name_escaping_scheme {
            Some(s) => s,
            None if local_unset => global_escaping,
            None if self.metric_name_validation_scheme == ValidationScheme::Legacy => {
                "underscores".into()
            }
            None => "allow-utf-8".into(),
        };
        if !ESCAPING_SCHEMES.contains(&self.metric_name_escaping_scheme.as_str()) {
            return Err(format!(
                "unknown scrape config name escaping method specified, must be one of 'allow-utf-8', 'underscores', 'dots', or 'values', got {:?}",
                self.metric_name_escaping_scheme
            ));
        }
        if self.metric_name_escaping_scheme == "allow-utf-8"
            && self.metric_name_validation_scheme != ValidationScheme::Utf8
        {
            return Err(
                "utf8 metric names requested but validation scheme is not set to UTF8".into(),
            );
        }
        let scheme = self.metric_name_validation_scheme;
        for (what, rules) in [
            ("relabel_configs", &mut self.relabel_configs),
            ("metric_relabel_configs", &mut self.metric_relabel_configs),
        ] {
            for (i, r) in rules.iter_mut().enumerate() {
                r.validate(scheme)
                    .map_err(|e| format!("{what}[{i}]: {e}"))?;
            }
        }
        Ok(())
    }

    fn set_directory(&mut self, dir: &Path) {
        self.http_client.set_directory(dir);
        http::join_dir(dir, &mut self.scrape_failure_log_file);
        for f in &mut self.file_sd_configs {
            for p in &mut f.files {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
    }

    /// Settings of this job that are accepted but not implemented.
    fn unsupported(&self) -> Vec<String> {
        let mut v: Vec<String> = self.unsupported_sd_configs.clone();
        v.extend(self.http_client.unsupported().into_iter().map(String::from));
        if self.scrape_native_histograms {
            v.push("scrape_native_histograms".into());
        }
        if self.convert_classic_histograms_to_nhcb {
            v.push("convert_classic_histograms_to_nhcb".into());
        }
        if self.scrape_failure_log_file.is_some() {
            v.push("scrape_failure_log_file".into());
        }
        v
    }
}

fn zero_of<T: Default>(_: &T) -> T {
    T::default()
}

fn validate_protocols(ps: &[ScrapeProtocol]) -> std::result::Result<(), String> {
    if ps.is_empty() {
        return Err("scrape_protocols cannot be empty".into());
    }
    let mut seen = HashSet::new();
    for p in ps {
        if !seen.insert(*p) {
            return Err(format!(
                "duplicated protocol in scrape_protocols, got {ps:?}"
            ));
        }
    }
    Ok(())
}

/// Checks that `u` is an absolute URL.
pub(crate) fn validate_url(u: &str) -> std::result::Result<(), String> {
    reqwest::Url::parse(u)
        .map(|_| ())
        .map_err(|e| format!("invalid URL {u:?}: {e}"))
}

/// Remote-write headers Prometheus does not let a configuration set.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

impl<'de> Deserialize<'de> for RemoteWriteConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(RemoteWriteVisitor)
    }
}

struct RemoteWriteVisitor;

impl<'de> Visitor<'de> for RemoteWriteVisitor {
    type Value = RemoteWriteConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a remote_write mapping")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<RemoteWriteConfig, A::Error> {
        let mut c = RemoteWriteConfig {
            url: String::new(),
            remote_timeout: Duration::from_secs(30),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            name: String::new(),
            send_exemplars: false,
            send_native_histograms: false,
            round_robin_dns: false,
            protobuf_message: ProtobufMessage::WriteV1,
            failed_request_logging: false,
            http_client: HttpClientConfig::remote_write_default(),
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            unimplemented_auth: BTreeMap::new(),
        };
        let mut seen = HashSet::new();
        let mut url: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            check_duplicate(&mut seen, &key)?;
            match key.as_str() {
                "url" => url = map.next_value()?,
                "remote_timeout" => c.remote_timeout = map.next_value()?,
                "headers" => {
                    c.headers = map
                        .next_value::<Option<BTreeMap<String, String>>>()?
                        .unwrap_or_default()
                }
                "write_relabel_configs" => {
                    c.write_relabel_configs =
                        non_null_rules(map.next_value()?, "relabeling rule in remote write config")?
                }
                "name" => c.name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                "send_exemplars" => c.send_exemplars = map.next_value()?,
                "send_native_histograms" => c.send_native_histograms = map.next_value()?,
                "round_robin_dns" => c.round_robin_dns = map.next_value()?,
                "protobuf_message" => c.protobuf_message = map.next_value()?,
                "failed_request_logging" => c.failed_request_logging = map.next_value()?,
                "queue_config" => {
                    c.queue_config = map.next_value::<Option<QueueConfig>>()?.unwrap_or_default()
                }
                "metadata_config" => {
                    c.metadata_config = map
                        .next_value::<Option<MetadataConfig>>()?
                        .unwrap_or_default()
                }
                k @ ("sigv4" | "azuread" | "google_iam") => {
                    let v: yaml_serde::Value = map.next_value()?;
                    c.unimplemented_auth.insert(k.to_string(), v);
                }
                k if c.http_client.take_field(k, &mut map)? => {}
                k => return Err(unknown_field(k, "remote_write config")),
            }
        }
        match url {
            Some(u) if !u.is_empty() => {
                validate_url(&u).map_err(de::Error::custom)?;
                c.url = u;
            }
            _ => return Err(de::Error::custom("url for remote_write is empty")),
        }
        for h in c.headers.keys() {
            let lower = h.to_ascii_lowercase();
            if lower == "authorization" {
                return Err(de::Error::custom("authorization header must be changed via the basic_auth, authorization, oauth2, sigv4, azuread or google_iam parameter"));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(de::Error::custom(format!(
                    "{h} is a reserved header. It must not be changed"
                )));
            }
        }
        c.http_client.validate().map_err(de::Error::custom)?;
        c.queue_config.validate().map_err(de::Error::custom)?;
        let mut auth = Vec::new();
        if c.http_client.basic_auth.is_some() {
            auth.push("basic_auth");
        }
        if c.http_client.authorization.is_some() {
            auth.push("authorization");
        }
        if c.http_client.oauth2.is_some() {
            auth.push("oauth2");
        }
        for k in c.unimplemented_auth.keys() {
            auth.push(k.as_str());
        }
        if auth.len() > 1 {
            return Err(de::Error::custom(format!(
                "at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam must be configured. Currently configured: {auth:?}"
            )));
        }
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Parses and validates configuration text. Relative file paths are kept as written and
    /// `scrape_config_files` are not read (use [`Config::load`] for both).
    pub fn from_yaml(text: &str) -> Result<Config> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a configuration file. Relative paths inside it (credential
    /// files, TLS files, `file_sd_configs` files, `scrape_config_files`) are resolved against
    /// the file's directory, and the jobs of `scrape_config_files` are appended.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: Some(path.to_path_buf()),
            message: format!("reading configuration: {e}"),
        })?;
        let mut cfg = Self::parse(&text, Some(path))?;
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        cfg.set_directory(&dir);
        cfg.load_scrape_config_files()?;
        Ok(cfg)
    }

    /// Parses with `path` used for error messages only.
    fn parse(text: &str, path: Option<&Path>) -> Result<Config> {
        let err = |message: String| Error::Config {
            path: path.map(Path::to_path_buf),
            message,
        };
        let raw: RawConfig = if is_empty_document(text) {
            RawConfig::default()
        } else {
            yaml_serde::from_str(text).map_err(|e| err(e.to_string()))?
        };
        let mut cfg = Config::from_raw(raw, &|k: &str| std::env::var(k)).map_err(err)?;
        cfg.source = text.to_string();
        cfg.path = path.map(Path::to_path_buf);
        Ok(cfg)
    }

    fn from_raw(
        raw: RawConfig,
        getenv: &dyn Fn(&str) -> std::result::Result<String, std::env::VarError>,
    ) -> std::result::Result<Config, String> {
        let global = resolve_global(raw.global, getenv)?;
        for f in &raw.scrape_config_files {
            if !valid_glob_path(f) {
                return Err(format!("invalid scrape config file path {f:?}"));
            }
        }
        let mut unimplemented_sections = BTreeMap::new();
        for (k, v) in [
            ("runtime", raw.runtime),
            ("alerting", raw.alerting),
            ("rule_files", raw.rule_files),
            ("storage", raw.storage),
            ("tracing", raw.tracing),
            ("remote_read", raw.remote_read),
            ("otlp", raw.otlp),
        ] {
            if let Some(v) = v {
                unimplemented_sections.insert(k.to_string(), v);
            }
        }
        debug_assert!(unimplemented_sections
            .keys()
            .all(|k| UNIMPLEMENTED_TOP_LEVEL.contains(&k.as_str())));
        let mut scrape_configs = Vec::new();
        let mut jobs = HashSet::new();
        for (i, sc) in raw.scrape_configs.into_iter().enumerate() {
            let mut sc = sc.ok_or_else(|| {
                format!("scrape_configs[{i}]: empty or null scrape config section")
            })?;
            sc.resolve(&global)
                .map_err(|e| format!("scrape_configs[{i}]: {e}"))?;
            if !jobs.insert(sc.job_name.clone()) {
                return Err(format!(
                    "scrape_configs[{i}]: found multiple scrape configs with job name {:?}",
                    sc.job_name
                ));
            }
            scrape_configs.push(sc);
        }
        let mut remote_write = Vec::new();
        let mut names = HashSet::new();
        for (i, rw) in raw.remote_write.into_iter().enumerate() {
            let mut rw = rw.ok_or_else(|| {
                format!("remote_write[{i}]: empty or null remote write config section")
            })?;
            if !rw.name.is_empty() && !names.insert(rw.name.clone()) {
                return Err(format!(
                    "remote_write[{i}]: found multiple remote write configs with job name {:?}",
                    rw.name
                ));
            }
            for (j, r) in rw.write_relabel_configs.iter_mut().enumerate() {
                r.validate(global.metric_name_validation_scheme)
                    .map_err(|e| format!("remote_write[{i}].write_relabel_configs[{j}]: {e}"))?;
            }
            remote_write.push(rw);
        }
        Ok(Config {
            global,
            scrape_config_files: raw
                .scrape_config_files
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            scrape_configs,
            remote_write,
            unimplemented_sections,
            source: String::new(),
            path: None,
        })
    }

    fn set_directory(&mut self, dir: &Path) {
        http::join_dir(dir, &mut self.global.query_log_file);
        http::join_dir(dir, &mut self.global.scrape_failure_log_file);
        for p in &mut self.scrape_config_files {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        for sc in &mut self.scrape_configs {
            sc.set_directory(dir);
        }
        for rw in &mut self.remote_write {
            rw.http_client.set_directory(dir);
        }
    }

    /// Prometheus's `GetScrapeConfigs`: read every file matching `scrape_config_files`.
    fn load_scrape_config_files(&mut self) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ScrapeConfigsFile {
            #[serde(default, deserialize_with = "nullable")]
            scrape_configs: Vec<Option<ScrapeConfig>>,
        }
        let mut jobs: HashSet<String> = self
            .scrape_configs
            .iter()
            .map(|s| s.job_name.clone())
            .collect();
        for pattern in self.scrape_config_files.clone() {
            for file in crate::discovery::glob(&pattern) {
                let err = |message: String| Error::Config {
                    path: Some(file.clone()),
                    message,
                };
                let text =
                    std::fs::read_to_string(&file).map_err(|e| err(format!("reading: {e}")))?;
                let parsed: ScrapeConfigsFile = if is_empty_document(&text) {
                    ScrapeConfigsFile {
                        scrape_configs: Vec::new(),
                    }
                } else {
                    yaml_serde::from_str(&text).map_err(|e| err(e.to_string()))?
                };
                let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
                for (i, sc) in parsed.scrape_configs.into_iter().enumerate() {
                    let mut sc = sc.ok_or_else(|| {
                        err(format!(
                            "scrape_configs[{i}]: empty or null scrape config section"
                        ))
                    })?;
                    sc.resolve(&self.global)
                        .map_err(|e| err(format!("scrape_configs[{i}]: {e}")))?;
                    if !jobs.insert(sc.job_name.clone()) {
                        return Err(err(format!(
                            "found multiple scrape configs with job name {:?}",
                            sc.job_name
                        )));
                    }
                    sc.set_directory(&dir);
                    self.scrape_configs.push(sc);
                }
            }
        }
        Ok(())
    }

    /// The configuration text as read (for `/api/v1/status/config`; it may contain secrets,
    /// prefer [`Config::to_yaml`] for display).
    pub fn source_text(&self) -> &str {
        &self.source
    }

    /// The file this configuration was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The effective configuration (defaults and inheritance applied) as YAML, with secrets
    /// shown as `<secret>`, like Prometheus's `/api/v1/status/config`.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self)
            .unwrap_or_else(|e| format!("# error rendering configuration: {e}\n"))
    }

    /// The scrape job named `job`.
    pub fn scrape_config(&self, job: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|s| s.job_name == job)
    }

    /// Everything present in the file that Prometheus would act on but Strata ignores, as
    /// paths such as `rule_files`, `scrape_configs[2].kubernetes_sd_configs`,
    /// `remote_write[0].sigv4`. Empty when everything configured is implemented.
    pub fn unsupported(&self) -> Vec<String> {
        let mut v: Vec<String> = self.unimplemented_sections.keys().cloned().collect();
        if self.global.query_log_file.is_some() {
            v.push("global.query_log_file".into());
        }
        if self.global.scrape_failure_log_file.is_some() {
            v.push("global.scrape_failure_log_file".into());
        }
        for (i, sc) in self.scrape_configs.iter().enumerate() {
            for what in sc.unsupported() {
                v.push(format!("scrape_configs[{i}].{what}"));
            }
        }
        for (i, rw) in self.remote_write.iter().enumerate() {
            for k in rw.unimplemented_auth.keys() {
                v.push(format!("remote_write[{i}].{k}"));
            }
            for what in rw.http_client.unsupported() {
                v.push(format!("remote_write[{i}].{what}"));
            }
        }
        v
    }
}

impl Default for Config {
    /// The configuration of an empty file.
    fn default() -> Self {
        Config {
            global: GlobalConfig::default(),
            scrape_config_files: Vec::new(),
            scrape_configs: Vec::new(),
            remote_write: Vec::new(),
            unimplemented_sections: BTreeMap::new(),
            source: String::new(),
            path: None,
        }
    }
}

/// True when the text holds no YAML content (only comments, blank lines or `---`).
fn is_empty_document(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// Prometheus's `^[^*]*(\*[^/]*)?$` for `rule_files` / `scrape_config_files`.
fn valid_glob_path(p: &str) -> bool {
    match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains('/') && !p[i + 1..].contains('*'),
    }
}

fn resolve_global(
    g: RawGlobal,
    getenv: &dyn Fn(&str) -> std::result::Result<String, std::env::VarError>,
) -> std::result::Result<GlobalConfig, String> {
    let scheme = parse_validation_scheme(g.metric_name_validation_scheme.as_deref())
        .map_err(|e| format!("global: {e}"))?
        .unwrap_or_default();
    for (name, value) in &g.external_labels {
        if !scheme.is_valid_label_name(name) {
            return Err(format!(
                "global.external_labels: {name:?} is not a valid label name"
            ));
        }
        let _ = value; // Rust strings are always valid UTF-8.
    }
    let scrape_interval = if g.scrape_interval.is_zero() {
        Duration::from_secs(60)
    } else {
        g.scrape_interval
    };
    if g.scrape_timeout > scrape_interval {
        return Err("global: global scrape timeout greater than scrape interval".into());
    }
    let scrape_timeout = if g.scrape_timeout.is_zero() {
        Duration::from_secs(10).min(scrape_interval)
    } else {
        g.scrape_timeout
    };
    if let Some(ps) = &g.scrape_protocols {
        validate_protocols(ps).map_err(|e| format!("global: {e} for global config"))?;
    }
    if let Some(e) = &g.metric_name_escaping_scheme {
        if !e.is_empty() && !ESCAPING_SCHEMES.contains(&e.as_str()) {
            return Err(format!(
                "global: unknown global name escaping method specified, must be one of 'allow-utf-8', 'underscores', 'dots', or 'values', got {e:?}"
            ));
        }
    }
    let external_labels = g
        .external_labels
        .into_iter()
        .map(|(k, v)| {
            let v = expand_env(&v, getenv);
            (k, v)
        })
        .collect();
    Ok(GlobalConfig {
        scrape_interval,
        scrape_timeout,
        scrape_protocols: g.scrape_protocols,
        evaluation_interval: if g.evaluation_interval.is_zero() {
            Duration::from_secs(60)
        } else {
            g.evaluation_interval
        },
        rule_query_offset: g.rule_query_offset,
        external_labels,
        query_log_file: g
            .query_log_file
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        scrape_failure_log_file: g
            .scrape_failure_log_file
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        body_size_limit: g.body_size_limit,
        sample_limit: g.sample_limit,
        target_limit: g.target_limit,
        label_limit: g.label_limit,
        label_name_length_limit: g.label_name_length_limit,
        label_value_length_limit: g.label_value_length_limit,
        keep_dropped_targets: g.keep_dropped_targets,
        metric_name_validation_scheme: scheme,
        metric_name_escaping_scheme: g.metric_name_escaping_scheme.filter(|s| !s.is_empty()),
        scrape_native_histograms: g.scrape_native_histograms.unwrap_or(false),
        convert_classic_histograms_to_nhcb: g.convert_classic_histograms_to_nhcb,
        always_scrape_classic_histograms: g.always_scrape_classic_histograms,
        extra_scrape_metrics: g.extra_scrape_metrics.unwrap_or(false),
    })
}

/// Go's `os.Expand` with `$$` meaning `$`: `$NAME` and `${NAME}` are replaced by the variable
/// (empty when unset); malformed `${` / `${}` are dropped; a `$` followed by nothing nameable
/// stays.
pub(crate) fn expand_env(
    s: &str,
    getenv: &dyn Fn(&str) -> std::result::Result<String, std::env::VarError>,
) -> String {
    let lookup = |name: &str| -> String {
        if name == "$" {
            "$".into()
        } else {
            getenv(name).unwrap_or_default()
        }
    };
    let b = s.as_bytes();
    let special =
        |c: u8| matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit();
    let mut out = String::with_capacity(s.len());
    let mut i = 0; // start of pending literal text
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[i..j]);
            let rest = &s[j + 1..];
            let rb = rest.as_bytes();
            // (name, width consumed after '$')
            let (name, w): (&str, usize) = if rb[0] == b'{' {
                if rb.len() > 2 && special(rb[1]) && rb[2] == b'}' {
                    (&rest[1..2], 3)
                } else {
                    match rest[1..].find('}') {
                        Some(0) => ("", 2),
                        Some(k) => (&rest[1..1 + k], k + 2),
                        None => ("", 1),
                    }
                }
            } else if special(rb[0]) {
                (&rest[..1], 1)
            } else {
                let n = rb
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (&rest[..n], n)
            };
            if name.is_empty() && w > 0 {
                // Bad syntax: the characters are eaten.
            } else if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(&lookup(name));
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    if i <= s.len() {
        out.push_str(&s[i.min(s.len())..]);
    }
    out
}
